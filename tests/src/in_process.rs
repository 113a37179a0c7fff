//! sagad run inside the test process (`Application::build` on port 0, real gRPC over a real socket)
//! against a fresh database. No participant runs: the endpoints point at a closed port, so sagas that
//! get past the edge simply wait to retry. For tests of the edge: input checks, TLS, authentication.

use std::net::SocketAddr;

use saga_testkit::TestDatabase;
use sagad::{Application, Settings};
use tokio_util::sync::CancellationToken;

use crate::definitions::PARTICIPANTS;
use crate::repo_root;

/// A running in-process sagad.
pub struct InProcess {
    /// The bound gRPC address.
    pub addr: SocketAddr,
    /// Pool on its saga log, to check what was written.
    pub pool: sqlx::PgPool,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    _db: TestDatabase,
}

impl InProcess {
    /// Starts sagad with the shipped definitions, `max_payload_bytes` 1024, and whatever `adjust` sets.
    ///
    /// # Panics
    /// When sagad does not start.
    pub async fn start(adjust: impl FnOnce(&mut Settings)) -> Self {
        let db = TestDatabase::create("sagad_edge").await;
        let mut settings = Settings {
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            metrics_addr: Some("127.0.0.1:0".parse().expect("addr")),
            database_url: db.url(),
            definitions_dir: repo_root().join("definitions"),
            participants: PARTICIPANTS
                .map(|p| (p.to_owned(), "http://127.0.0.1:9".to_owned()))
                .into(),
            max_payload_bytes: 1024,
            ..Settings::default()
        };
        adjust(&mut settings);
        let app = Application::build(settings).await.expect("build sagad");
        let addr = app.local_addr();
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let server = tokio::spawn(async move {
            app.run_until_stopped(token).await.expect("serve");
        });
        let pool = sqlx::PgPool::connect(&db.url()).await.expect("pool");
        Self {
            addr,
            pool,
            shutdown,
            server,
            _db: db,
        }
    }

    /// How many sagas and history events the saga log holds.
    pub async fn rows(&self) -> (i64, i64) {
        sqlx::query_as("SELECT (SELECT count(*) FROM sagas), (SELECT count(*) FROM saga_events)")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Stops sagad gracefully and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.expect("server task");
        self.pool.close().await;
    }
}
