//! Bad input at sagad's edge: each case gets a clear status and nothing reaches the saga log.
//! sagad runs in-process here (`Application::build` on port 0); no participant is needed.

use e2e_tests::{object, repo_root};
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::{GetStatusRequest, StartSagaRequest};
use saga_testkit::TestDatabase;
use sagad::{Application, Settings};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

struct Coordinator {
    client: SagaCoordinatorClient<Channel>,
    pool: sqlx::PgPool,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    _db: TestDatabase,
}

impl Coordinator {
    async fn start(adjust: impl FnOnce(&mut Settings)) -> Self {
        let db = TestDatabase::create("sagad_edge").await;
        let mut settings = Settings {
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            database_url: db.url(),
            definitions_dir: repo_root().join("definitions"),
            // Nothing listens here: sagas that get past the edge simply wait to retry.
            participants: ["billing", "device", "payment", "withdrawal"]
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
        let client = SagaCoordinatorClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let pool = sqlx::PgPool::connect(&db.url()).await.expect("pool");
        Self {
            client,
            pool,
            shutdown,
            server,
            _db: db,
        }
    }

    async fn rows(&self) -> (i64, i64) {
        sqlx::query_as("SELECT (SELECT count(*) FROM sagas), (SELECT count(*) FROM saga_events)")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.expect("server task");
        self.pool.close().await;
    }
}

fn start(saga_type: &str, payload: Option<serde_json::Value>) -> StartSagaRequest {
    StartSagaRequest {
        saga_type: saga_type.to_owned(),
        payload: payload.map(object),
        idempotency_key: String::new(),
    }
}

#[tokio::test]
async fn bad_start_requests_get_clear_statuses_and_write_nothing() {
    let mut c = Coordinator::start(|_| {}).await;
    let cases = [
        (
            start("refund_everything", Some(json!({"a": 1}))),
            Code::NotFound,
            "purchase_plan",
        ),
        (
            start("", Some(json!({"a": 1}))),
            Code::InvalidArgument,
            "saga_type is required",
        ),
        (
            start("purchase_plan", None),
            Code::InvalidArgument,
            "payload is required",
        ),
        (
            start("purchase_plan", Some(json!({"blob": "x".repeat(2000)}))),
            Code::InvalidArgument,
            "the limit is 1024 bytes",
        ),
        (
            StartSagaRequest {
                idempotency_key: "k".repeat(300),
                ..start("purchase_plan", Some(json!({"a": 1})))
            },
            Code::InvalidArgument,
            "idempotency_key",
        ),
    ];
    for (request, code, message) in cases {
        let status = c
            .client
            .start_saga(request)
            .await
            .expect_err("must be refused");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(message),
            "{:?} lacks {message:?}",
            status.message()
        );
    }
    assert_eq!(
        c.rows().await,
        (0, 0),
        "bad input never reaches the saga log"
    );
    c.stop().await;
}

#[tokio::test]
async fn malformed_and_unknown_saga_ids_are_told_apart() {
    let mut c = Coordinator::start(|_| {}).await;
    let malformed = c
        .client
        .get_status(GetStatusRequest {
            saga_id: "not-a-uuid".to_owned(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(
        malformed.message().contains("not a UUID"),
        "{}",
        malformed.message()
    );

    let unknown_id = "0193a5f2-7c1e-7d30-9b1a-2f4c6e8a0b1c";
    let unknown = c
        .client
        .get_status(GetStatusRequest {
            saga_id: unknown_id.to_owned(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(
        unknown.message().contains(unknown_id),
        "{}",
        unknown.message()
    );
    c.stop().await;
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_saga() {
    let mut c = Coordinator::start(|_| {}).await;
    let request = StartSagaRequest {
        idempotency_key: "order-7".to_owned(),
        ..start(
            "purchase_plan",
            Some(json!({"userId": "u1", "planId": "pro"})),
        )
    };
    let first = c
        .client
        .start_saga(request.clone())
        .await
        .expect("first")
        .into_inner();
    let second = c
        .client
        .start_saga(request)
        .await
        .expect("second")
        .into_inner();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.saga_id, second.saga_id);
    assert_eq!(c.rows().await.0, 1);
    c.stop().await;
}

#[tokio::test]
async fn beyond_max_in_flight_start_saga_answers_resource_exhausted_without_writing() {
    let mut c = Coordinator::start(|s| s.max_in_flight = 1).await;
    let payload = Some(json!({"userId": "u1", "planId": "pro"}));
    // The first saga cannot reach its participants and stays in flight, waiting to retry.
    c.client
        .start_saga(start("purchase_plan", payload.clone()))
        .await
        .expect("first saga accepted");
    let status = c
        .client
        .start_saga(start("purchase_plan", payload))
        .await
        .expect_err("second saga refused");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("in flight"),
        "{}",
        status.message()
    );
    assert_eq!(c.rows().await.0, 1);
    c.stop().await;
}
