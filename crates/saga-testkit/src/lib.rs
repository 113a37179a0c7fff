//! Test support shared by sagad's crates: a fresh PostgreSQL database per test, so tests never see each
//! other's rows and can run in parallel.
//!
//! The server comes from `SAGA_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`); the README's test
//! command makes sure one is running.
//!
//! [`strategies`] holds the proptest strategies the fuzz tests share; [`unstorable`] a step output the
//! saga log refuses.

pub mod strategies;
pub mod unstorable;

use sqlx::{Connection, Executor, PgConnection};

/// The PostgreSQL server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("SAGA_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A database created for one test and dropped when the value is dropped, whether the test passed or
/// panicked — together with any [`TestDatabase::sibling_url`] databases the test created.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
}

impl TestDatabase {
    /// Creates an empty database named `<prefix>_<random>`.
    ///
    /// # Panics
    /// When the server cannot be reached: a test cannot run without it.
    pub async fn create(prefix: &str) -> Self {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_connection().await;
        admin
            .execute(format!(r#"CREATE DATABASE "{name}""#).as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        Self { name }
    }

    /// The database's connection URL.
    pub fn url(&self) -> String {
        format!("{}/{}", server_url(), self.name)
    }

    /// The URL of a database that does not exist yet (`<name>_<suffix>`), dropped along with this one.
    pub fn sibling_url(&self, suffix: &str) -> String {
        format!("{}/{}_{suffix}", server_url(), self.name)
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let prefix = self.name.clone();
        // Drop may run inside a test's runtime, which must not be blocked on: use a private one.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut admin =
                    PgConnection::connect(&format!("{}/postgres", server_url())).await?;
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
                )
                .bind(&prefix)
                .fetch_all(&mut admin)
                .await?;
                for name in names {
                    admin
                        .execute(
                            format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#).as_str(),
                        )
                        .await?;
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })
        });
        if let Ok(Err(e)) = cleanup.join() {
            eprintln!("cannot drop test database {}: {e}", self.name);
        }
    }
}

async fn admin_connection() -> PgConnection {
    let url = format!("{}/postgres", server_url());
    PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url} (is it running?): {e}"))
}
