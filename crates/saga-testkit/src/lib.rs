//! Test support shared by sagad's crates: a fresh PostgreSQL database per test, so tests never see each
//! other's rows and can run in parallel.
//!
//! The server comes from `SAGAD_TEST_PG` (default `postgres://postgres@127.0.0.1:5432`); the README's test
//! command makes sure one is running.

use sqlx::{Connection, Executor, PgConnection};

/// The PostgreSQL server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("SAGAD_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A database created for one test; [`TestDatabase::drop_database`] removes it.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database with a unique name.
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
        let url = format!("{}/{name}", server_url());
        Self { name, url }
    }

    /// The database's connection URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database (and any connections still open to it).
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn drop_database(self) {
        let mut admin = admin_connection().await;
        admin
            .execute(format!(r#"DROP DATABASE IF EXISTS "{}" WITH (FORCE)"#, self.name).as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot drop test database {}: {e}", self.name));
    }
}

async fn admin_connection() -> PgConnection {
    let url = format!("{}/postgres", server_url());
    PgConnection::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url} (is it running?): {e}"))
}
