//! Test helpers: a fresh database per test and the demo services running in-process on port 0.

use anyhow::Result;
use participants::{DemoServices, RunError, Service, Settings};
use saga_proto::v1::StepRequest;
use saga_proto::v1::saga_participant_client::SagaParticipantClient;
use saga_proto::{json_to_struct, struct_to_json};
use saga_testkit::TestDatabase;
use serde_json::{Map, Value};
use sqlx::PgPool;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{IntoRequest, Status};
use uuid::Uuid;

/// The prefix of every database these tests create.
pub const DATABASE_PREFIX: &str = "participants_test";

/// The test's fresh database with a pool on it; dropped (see [`TestDatabase`]) when the test ends.
pub struct Db {
    pub pool: PgPool,
    database: TestDatabase,
}

impl Db {
    pub async fn create() -> Result<Self> {
        let database = TestDatabase::create(DATABASE_PREFIX).await;
        let pool = PgPool::connect(&database.url()).await?;
        Ok(Self { pool, database })
    }

    pub fn url(&self) -> String {
        self.database.url()
    }

    pub async fn count(&self, sql: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(sql).fetch_one(&self.pool).await?)
    }
}

/// The demo services served in-process on port 0 against a fresh database, the app service's storage
/// in a fresh directory.
pub struct Demo {
    pub db: Db,
    pub storage: TempDir,
    clients: Vec<(Service, SagaParticipantClient<Channel>)>,
    shutdown: CancellationToken,
    running: JoinHandle<Result<(), RunError>>,
}

impl Demo {
    pub async fn start() -> Result<Self> {
        let db = Db::create().await?;
        let storage = tempfile::tempdir()?;
        Self::start_on(db, storage).await
    }

    /// Serves the demo services on `db` with the app service's storage in `storage`, as a restart would.
    pub async fn start_on(db: Db, storage: TempDir) -> Result<Self> {
        let services = DemoServices::build(Settings::ephemeral(db.url(), storage.path())).await?;
        let mut clients = Vec::new();
        for (service, addr) in services.local_addrs() {
            clients.push((
                service,
                SagaParticipantClient::connect(format!("http://{addr}")).await?,
            ));
        }
        let shutdown = CancellationToken::new();
        let running = tokio::spawn(services.run_until_stopped(shutdown.clone()));
        Ok(Self {
            db,
            storage,
            clients,
            shutdown,
            running,
        })
    }

    fn client(&self, service: Service) -> SagaParticipantClient<Channel> {
        self.clients
            .iter()
            .find(|(candidate, _)| *candidate == service)
            .map(|(_, client)| client.clone())
            .unwrap_or_else(|| panic!("{service} is not running"))
    }

    pub async fn execute(
        &self,
        service: Service,
        request: impl IntoRequest<StepRequest>,
    ) -> Result<Map<String, Value>, Status> {
        let response = self.client(service).execute(request).await?;
        Ok(response
            .into_inner()
            .output
            .map(struct_to_json)
            .unwrap_or_default())
    }

    pub async fn compensate(
        &self,
        service: Service,
        request: StepRequest,
    ) -> Result<Map<String, Value>, Status> {
        let response = self.client(service).compensate(request).await?;
        Ok(response
            .into_inner()
            .output
            .map(struct_to_json)
            .unwrap_or_default())
    }

    pub async fn stop(self) -> Result<()> {
        self.stop_keeping_state().await.map(drop)
    }

    /// Stops the services and hands back their database and storage, for a restart.
    pub async fn stop_keeping_state(self) -> Result<(Db, TempDir)> {
        self.shutdown.cancel();
        self.running.await??;
        Ok((self.db, self.storage))
    }
}

/// An execute request with the key the coordinator would send.
pub fn execute(
    saga_id: Uuid,
    step: &str,
    action: &str,
    attempt: u32,
    payload: &Value,
) -> StepRequest {
    request(saga_id, step, action, attempt, payload, "execute")
}

/// A compensate request with the key the coordinator would send.
pub fn compensate(
    saga_id: Uuid,
    step: &str,
    action: &str,
    attempt: u32,
    payload: &Value,
) -> StepRequest {
    request(saga_id, step, action, attempt, payload, "compensate")
}

fn request(
    saga_id: Uuid,
    step: &str,
    action: &str,
    attempt: u32,
    payload: &Value,
    direction: &str,
) -> StepRequest {
    let Value::Object(payload) = payload.clone() else {
        panic!("payload must be an object")
    };
    StepRequest {
        saga_id: saga_id.to_string(),
        saga_type: "purchase_plan".to_owned(),
        step: step.to_owned(),
        action: action.to_owned(),
        attempt,
        idempotency_key: format!("{saga_id}:{step}:{direction}"),
        payload: Some(json_to_struct(payload)),
        ..StepRequest::default()
    }
}

/// A uuid from a step output.
pub fn id(output: &Map<String, Value>, field: &str) -> Uuid {
    output
        .get(field)
        .and_then(Value::as_str)
        .and_then(|id| Uuid::parse_str(id).ok())
        .unwrap_or_else(|| panic!("output has no uuid {field}: {output:?}"))
}
