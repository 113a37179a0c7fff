//! The README's participant (`examples/inventory.rs`) served over gRPC against real PostgreSQL, so the
//! example people copy is known to work; plus the README check that it shows this very file.

#[path = "../examples/inventory.rs"]
#[allow(dead_code)] // the example's `main` is not called here
mod inventory;

use anyhow::Result;
use saga_participant::ParticipantService;
use saga_proto::json_to_struct;
use saga_proto::v1::StepRequest;
use saga_proto::v1::saga_participant_client::SagaParticipantClient;
use saga_testkit::TestDatabase;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

struct Inventory {
    pool: PgPool,
    client: SagaParticipantClient<Channel>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), saga_participant::ServeError>>,
    _database: TestDatabase,
}

impl Inventory {
    async fn start() -> Result<Self> {
        let database = TestDatabase::create("sdk_example").await;
        let pool = PgPool::connect(&database.url()).await?;
        inventory::migrate(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        sqlx::query("INSERT INTO stock (sku, available) VALUES ('lamp', 1)")
            .execute(&pool)
            .await?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let service = ParticipantService::new("inventory", pool.clone(), inventory::router());
        let server = tokio::spawn(saga_participant::serve(listener, service, shutdown.clone()));
        let client = SagaParticipantClient::connect(format!("http://{addr}")).await?;
        Ok(Self {
            pool,
            client,
            shutdown,
            server,
            _database: database,
        })
    }

    async fn available(&self) -> Result<i32> {
        Ok(
            sqlx::query_scalar("SELECT available FROM stock WHERE sku = 'lamp'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn barrier_rows(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM saga_barrier")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.server.await??;
        Ok(())
    }
}

fn request(saga: Uuid, action: &str, direction: &str, payload: Value) -> StepRequest {
    let Value::Object(payload) = payload else {
        panic!("payload must be an object")
    };
    StepRequest {
        saga_id: saga.to_string(),
        saga_type: "order".to_owned(),
        step: "RESERVE".to_owned(),
        action: action.to_owned(),
        attempt: 1,
        idempotency_key: format!("{saga}:RESERVE:{direction}"),
        payload: Some(json_to_struct(payload)),
        generation: 0,
    }
}

#[tokio::test]
async fn the_example_reserves_once_per_saga_and_releases_on_compensation() -> Result<()> {
    let inventory = Inventory::start().await?;
    let mut client = inventory.client.clone();
    let saga = Uuid::new_v4();
    let reserve = request(saga, "Reserve", "execute", json!({"sku": "lamp"}));

    client.execute(reserve.clone()).await?;
    client.execute(reserve).await?;
    assert_eq!(inventory.available().await?, 0, "reserved once");

    let other = request(Uuid::new_v4(), "Reserve", "execute", json!({"sku": "lamp"}));
    let refused = client.execute(other).await.expect_err("out of stock");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(refused.message(), "lamp is out of stock");

    let release = request(saga, "Release", "compensate", json!({"sku": "lamp"}));
    client.compensate(release.clone()).await?;
    client.compensate(release).await?;
    assert_eq!(inventory.available().await?, 1, "released once");
    inventory.stop().await
}

#[tokio::test]
async fn the_example_rejects_bad_requests_before_writing_anything() -> Result<()> {
    let inventory = Inventory::start().await?;
    let mut client = inventory.client.clone();
    let cases = [
        ("Reserve", json!({}), "missing field \"sku\" in payload"),
        (
            "Reserve",
            json!({"sku": 7}),
            "field \"sku\" must be a non-empty string",
        ),
        (
            "Steal",
            json!({"sku": "lamp"}),
            "unknown action Steal for service inventory",
        ),
        (
            "Release",
            json!({"sku": "lamp"}),
            "unknown action Release for service inventory",
        ),
    ];

    for (action, payload, message) in cases {
        let status = client
            .execute(request(Uuid::new_v4(), action, "execute", payload))
            .await
            .expect_err("invalid");
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, message)
        );
    }

    assert_eq!(inventory.available().await?, 1);
    assert_eq!(inventory.barrier_rows().await?, 0);
    inventory.stop().await
}

#[test]
fn the_readme_shows_the_example_verbatim() {
    let readme = include_str!("../../../README.md");
    let example = include_str!("../examples/inventory.rs");
    assert!(
        readme.contains(example),
        "README.md must contain examples/inventory.rs verbatim; copy the file into its rust block"
    );
}
