//! The idempotency barrier against real PostgreSQL, driven through gRPC like the coordinator drives it.
//! Each test gets a fresh database from `saga_testkit` (server from `SAGA_TEST_PG`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use saga_participant::{ParticipantService, StepCall, StepError, StepHandler, StepOutput, output};
use saga_proto::v1::StepRequest;
use saga_proto::v1::saga_participant_client::SagaParticipantClient;
use saga_proto::{json_to_struct, struct_to_json};
use saga_testkit::TestDatabase;
use serde_json::{Map, Value, json};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use uuid::Uuid;

/// A handler that counts its calls and leaves a `ledger` row per call, so a test can tell whether the
/// handler ran and whether its work committed.
#[derive(Clone, Default)]
struct Recorder {
    executions: Arc<AtomicUsize>,
    compensations: Arc<AtomicUsize>,
    /// When set, an execute signals `entered` after writing its row and waits for `release`.
    gate: Option<Arc<Gate>>,
}

#[derive(Default)]
struct Gate {
    entered: Notify,
    release: Notify,
}

impl Recorder {
    fn executions(&self) -> usize {
        self.executions.load(Ordering::SeqCst)
    }

    fn compensations(&self) -> usize {
        self.compensations.load(Ordering::SeqCst)
    }
}

impl StepHandler for Recorder {
    async fn execute(
        &self,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> Result<StepOutput, StepError> {
        let run = self.executions.fetch_add(1, Ordering::SeqCst) + 1;
        write_ledger(tx, call, "execute").await?;
        if let Some(gate) = &self.gate {
            gate.entered.notify_one();
            gate.release.notified().await;
        }
        match call.action.as_str() {
            "Refuse" => Err(StepError::failed_precondition("out of stock")),
            "RefuseUntilRetried" if call.generation == 0 => Err(StepError::failed_precondition(
                "out of stock until restocked",
            )),
            "Invalid" => Err(StepError::invalid_argument("sku must be a string")),
            "FlakyOnce" if call.attempt == 1 => Err(StepError::unavailable("warehouse is down")),
            _ => Ok(output([("run", json!(run))])),
        }
    }

    async fn compensate(
        &self,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> Result<StepOutput, StepError> {
        let run = self.compensations.fetch_add(1, Ordering::SeqCst) + 1;
        write_ledger(tx, call, "compensate").await?;
        Ok(output([("undone", json!(run))]))
    }
}

async fn write_ledger(
    tx: &mut PgConnection,
    call: &StepCall,
    entry: &str,
) -> Result<(), StepError> {
    sqlx::query("INSERT INTO ledger (saga_id, step, entry) VALUES ($1, $2, $3)")
        .bind(call.saga_id)
        .bind(&call.step)
        .bind(entry)
        .execute(tx)
        .await?;
    Ok(())
}

/// A participant served on port 0 against a fresh database.
struct Participant {
    /// The test's own reads; the service has a pool of its own.
    pool: PgPool,
    /// The service's pool, built as the SDK recommends: no connection test before each checkout.
    addr: SocketAddr,
    client: SagaParticipantClient<Channel>,
    handler: Recorder,
    shutdown: CancellationToken,
    server: JoinHandle<Result<(), saga_participant::ServeError>>,
    /// Dropped after everything above, which may still use it.
    database: TestDatabase,
}

impl Participant {
    async fn start(handler: Recorder) -> Result<Self> {
        let database = TestDatabase::create("sdk_test").await;
        let pool = PgPool::connect(&database.url()).await?;
        saga_participant::migrate(&pool).await?;
        sqlx::query(
            "CREATE TABLE ledger (saga_id uuid NOT NULL, step text NOT NULL, entry text NOT NULL)",
        )
        .execute(&pool)
        .await?;

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let service_pool = PgPool::connect(&database.url()).await?;
        let service = ParticipantService::new("inventory", service_pool, handler.clone());
        let server = tokio::spawn(saga_participant::serve(listener, service, shutdown.clone()));
        let client = SagaParticipantClient::connect(format!("http://{addr}")).await?;
        Ok(Self {
            pool,
            addr,
            client,
            handler,
            shutdown,
            server,
            database,
        })
    }

    async fn execute(&self, request: StepRequest) -> Result<Map<String, Value>, tonic::Status> {
        let response = self.client.clone().execute(request).await?;
        Ok(response
            .into_inner()
            .output
            .map(struct_to_json)
            .unwrap_or_default())
    }

    async fn compensate(&self, request: StepRequest) -> Result<Map<String, Value>, tonic::Status> {
        let response = self.client.clone().compensate(request).await?;
        Ok(response
            .into_inner()
            .output
            .map(struct_to_json)
            .unwrap_or_default())
    }

    async fn ledger(&self, saga_id: Uuid) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT entry FROM ledger WHERE saga_id = $1 ORDER BY entry DESC")
                .bind(saga_id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The `replays` column of the step's barrier row for `direction`.
    async fn replays(&self, saga_id: Uuid, direction: &str) -> Result<i32> {
        Ok(sqlx::query_scalar(
            "SELECT replays FROM saga_barrier WHERE saga_id = $1 AND direction = $2",
        )
        .bind(saga_id)
        .bind(direction)
        .fetch_one(&self.pool)
        .await?)
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

fn step(saga_id: Uuid, action: &str, attempt: u32, direction: &str) -> StepRequest {
    StepRequest {
        saga_id: saga_id.to_string(),
        saga_type: "purchase_plan".to_owned(),
        step: "RESERVE_STOCK".to_owned(),
        action: action.to_owned(),
        attempt,
        idempotency_key: format!("{saga_id}:RESERVE_STOCK:{direction}"),
        payload: Some(json_to_struct(Map::new())),
        generation: 0,
    }
}

fn execute_step(saga_id: Uuid, action: &str, attempt: u32) -> StepRequest {
    step(saga_id, action, attempt, "execute")
}

fn compensate_step(saga_id: Uuid, attempt: u32) -> StepRequest {
    step(saga_id, "Release", attempt, "compensate")
}

#[tokio::test]
async fn a_repeated_execute_returns_the_first_output_and_runs_the_handler_once() -> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    let saga = Uuid::new_v4();

    let first = participant
        .execute(execute_step(saga, "Reserve", 1))
        .await?;
    let repeat = participant
        .execute(execute_step(saga, "Reserve", 2))
        .await?;

    assert_eq!(first["run"], json!(1));
    assert_eq!(repeat, first);
    assert_eq!(participant.handler.executions(), 1);
    assert_eq!(participant.ledger(saga).await?, ["execute"]);
    assert_eq!(participant.replays(saga, "execute").await?, 1);
    participant.stop().await
}

/// One delivery of a step held inside its handler (at the gate) and `count` duplicates of it waiting on
/// its barrier row's lock.
struct Duplicates {
    participant: Arc<Participant>,
    gate: Arc<Gate>,
    saga: Uuid,
    first: Delivery,
    duplicates: Vec<Delivery>,
}

/// An answer to a delivery made in a task of its own.
type Delivery = JoinHandle<Result<Map<String, Value>, tonic::Status>>;

impl Participant {
    /// A participant whose executes stop at a gate: each signals `entered` once its ledger row is
    /// written (its transaction open) and waits for `release`.
    async fn gated() -> Result<(Arc<Self>, Arc<Gate>)> {
        let gate = Arc::new(Gate::default());
        let handler = Recorder {
            gate: Some(gate.clone()),
            ..Recorder::default()
        };
        Ok((Arc::new(Self::start(handler).await?), gate))
    }

    /// Delivers an execute of `action` for `saga` in a task of its own.
    fn spawn_execute(self: &Arc<Self>, saga: Uuid, action: &'static str, attempt: u32) -> Delivery {
        let participant = self.clone();
        tokio::spawn(async move {
            participant
                .execute(execute_step(saga, action, attempt))
                .await
        })
    }
}

impl Duplicates {
    async fn deliver(action: &'static str, count: usize) -> Result<Self> {
        let (participant, gate) = Participant::gated().await?;
        let saga = Uuid::new_v4();
        let deliver = |attempt| participant.spawn_execute(saga, action, attempt);
        let first = deliver(1);
        gate.entered.notified().await;
        let duplicates: Vec<_> = (2..).take(count).map(deliver).collect();
        wait_for_lock_waiters(&participant.pool, count).await?;
        Ok(Self {
            participant,
            gate,
            saga,
            first,
            duplicates,
        })
    }
}

#[tokio::test]
async fn concurrent_duplicates_wait_for_the_first_delivery_and_all_get_its_answer() -> Result<()> {
    const DUPLICATES: usize = 4;
    let Duplicates {
        participant,
        gate,
        saga,
        first,
        duplicates,
    } = Duplicates::deliver("Reserve", DUPLICATES).await?;
    gate.release.notify_one();

    let first = first.await??;
    for duplicate in duplicates {
        assert_eq!(duplicate.await??, first);
    }
    assert_eq!(first["run"], json!(1));
    assert_eq!(participant.handler.executions(), 1);
    assert_eq!(participant.ledger(saga).await?, ["execute"]);
    assert_eq!(
        participant.replays(saga, "execute").await?,
        i32::try_from(DUPLICATES)?
    );

    Arc::into_inner(participant)
        .context("participant still shared")?
        .stop()
        .await
}

#[tokio::test]
async fn concurrent_duplicates_of_a_refused_step_all_get_the_one_recorded_refusal() -> Result<()> {
    const DUPLICATES: usize = 4;
    let Duplicates {
        participant,
        gate,
        saga,
        first,
        duplicates,
    } = Duplicates::deliver("Refuse", DUPLICATES).await?;
    // The refusal rolls back its claim before it records itself, so a waiting duplicate may take the row
    // and run the handler too: let every run through the gate.
    let opener = tokio::spawn({
        let gate = gate.clone();
        async move {
            loop {
                gate.release.notify_one();
                gate.entered.notified().await;
            }
        }
    });

    let mut answers = vec![first.await?];
    for duplicate in duplicates {
        answers.push(duplicate.await?);
    }
    opener.abort();
    for answer in answers {
        let status = answer.expect_err("refused");
        assert_eq!(
            (status.code(), status.message()),
            (Code::FailedPrecondition, "out of stock")
        );
    }
    assert!(
        participant.ledger(saga).await?.is_empty(),
        "no refused run committed its work"
    );
    let recorded: (String, i32) = sqlx::query_as(
        "SELECT outcome, replays FROM saga_barrier WHERE saga_id = $1 AND direction = 'execute'",
    )
    .bind(saga)
    .fetch_one(&participant.pool)
    .await?;
    let runs = i32::try_from(participant.handler.executions())?;
    assert_eq!(recorded.0, "refused");
    assert_eq!(
        recorded.1 + runs,
        i32::try_from(DUPLICATES + 1)?,
        "every delivery either ran the handler or was answered from the row"
    );

    Arc::into_inner(participant)
        .context("participant still shared")?
        .stop()
        .await
}

#[tokio::test]
async fn a_pooled_connection_lost_while_idle_is_replaced_before_the_step_runs() -> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    participant
        .execute(execute_step(Uuid::new_v4(), "Reserve", 1))
        .await?;

    // End every session of the service's connections (back in its pool once the step committed, before
    // the answer), as a server restart would.
    let mut admin = PgConnection::connect(&participant.database.url()).await?;
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut admin)
    .await?;
    assert!(ended >= 1, "the pool held no connection to end");

    let saga = Uuid::new_v4();
    let executed = participant
        .execute(execute_step(saga, "Reserve", 1))
        .await?;
    assert_eq!(executed["run"], json!(2));
    assert_eq!(participant.ledger(saga).await?, ["execute"]);
    participant.stop().await
}

#[tokio::test]
async fn a_call_cancelled_mid_step_ends_its_transaction_at_once_and_the_retry_runs() -> Result<()> {
    let (participant, gate) = Participant::gated().await?;
    let saga = Uuid::new_v4();

    let cancelled = participant.spawn_execute(saga, "Reserve", 1);
    // The claim and the ledger row are written, the transaction open; the caller gives up (its stream
    // is reset and the service drops the step).
    gate.entered.notified().await;
    cancelled.abort();
    assert!(cancelled.await.is_err_and(|e| e.is_cancelled()));

    // The retry claims the same barrier row: it waits for the cancelled transaction to end, which must
    // happen at once, not whenever its connection is next used.
    let retry = participant.spawn_execute(saga, "Reserve", 2);
    tokio::time::timeout(Duration::from_secs(10), gate.entered.notified())
        .await
        .context("the retry still waits for the cancelled step's transaction")?;
    gate.release.notify_one();
    let retried = retry.await??;

    assert_eq!(retried["run"], json!(2));
    assert_eq!(
        participant.ledger(saga).await?,
        ["execute"],
        "the cancelled run's work was rolled back"
    );
    Arc::into_inner(participant)
        .context("participant still shared")?
        .stop()
        .await
}

/// The rules relating the barrier's columns are one CHECK calling `saga_barrier_row_is_valid` (cheaper per
/// statement than three expressions), validated by the SDK's migrations.
#[tokio::test]
async fn the_barrier_table_refuses_rows_that_break_its_rules() -> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    let insert = |direction: &'static str, outcome: &'static str, code: Option<&'static str>| {
        sqlx::query(
            "INSERT INTO saga_barrier (service, saga_id, step, direction, outcome, error_code,
                                       error_message)
             VALUES ('inventory', $1, 'RESERVE', $2, $3, $4, $4)",
        )
        .bind(Uuid::new_v4())
        .bind(direction)
        .bind(outcome)
        .bind(code)
        .execute(&participant.pool)
    };
    let broken = [
        ("compensate", "refused", Some("ABORTED")),
        ("compensate", "cancelled", None),
        ("execute", "skipped", None),
        ("execute", "refused", None),
        ("execute", "succeeded", Some("ABORTED")),
    ];
    for (direction, outcome, code) in broken {
        let err = insert(direction, outcome, code)
            .await
            .expect_err("a row breaking the rules");
        assert!(
            err.to_string().contains("saga_barrier_row_rules"),
            "{direction} {outcome} {code:?}: {err}"
        );
    }
    let kept = [
        ("execute", "refused", Some("ABORTED")),
        ("execute", "cancelled", None),
        ("compensate", "skipped", None),
        ("compensate", "succeeded", None),
    ];
    for (direction, outcome, code) in kept {
        insert(direction, outcome, code).await?;
    }
    let validated: bool = sqlx::query_scalar(
        "SELECT convalidated FROM pg_constraint WHERE conname = 'saga_barrier_row_rules'",
    )
    .fetch_one(&participant.pool)
    .await?;
    assert!(validated, "the migrations validate the rules");
    participant.stop().await
}

#[tokio::test]
async fn an_invalid_argument_writes_nothing_not_even_a_barrier_row() -> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    let saga = Uuid::new_v4();

    let first = participant
        .execute(execute_step(saga, "Invalid", 1))
        .await
        .expect_err("invalid");

    assert_eq!(first.code(), Code::InvalidArgument);
    assert_eq!(first.message(), "sku must be a string");
    assert_eq!(participant.barrier_rows().await?, 0);
    assert!(participant.ledger(saga).await?.is_empty());

    // Nothing fences the step: the same key with a corrected request runs the handler.
    let fixed = participant
        .execute(execute_step(saga, "Reserve", 2))
        .await?;
    assert_eq!(fixed["run"], json!(2));
    assert_eq!(participant.ledger(saga).await?, ["execute"]);
    participant.stop().await
}

#[tokio::test]
async fn a_refusal_is_recorded_without_its_work_and_replayed_to_a_retry() -> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    let saga = Uuid::new_v4();

    let first = participant
        .execute(execute_step(saga, "Refuse", 1))
        .await
        .expect_err("refused");
    let repeat = participant
        .execute(execute_step(saga, "Refuse", 2))
        .await
        .expect_err("refused again");

    assert_eq!(first.code(), Code::FailedPrecondition);
    assert_eq!(first.message(), "out of stock");
    assert_eq!(repeat.code(), first.code());
    assert_eq!(repeat.message(), first.message());
    assert_eq!(participant.handler.executions(), 1);
    assert!(
        participant.ledger(saga).await?.is_empty(),
        "refused work rolled back"
    );
    participant.stop().await
}

#[tokio::test]
async fn a_refusal_is_replayed_within_its_generation_and_run_again_after_an_operator_retry()
-> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    let saga = Uuid::new_v4();
    let in_generation = |generation, attempt| StepRequest {
        generation,
        ..execute_step(saga, "RefuseUntilRetried", attempt)
    };

    let refused = participant.execute(in_generation(0, 1)).await;
    let replayed = participant.execute(in_generation(0, 2)).await;
    assert_eq!(
        refused.expect_err("refused").code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        replayed.expect_err("replayed").code(),
        Code::FailedPrecondition
    );
    assert_eq!(
        participant.handler.executions(),
        1,
        "the refusal is replayed"
    );

    // The operator retried the step: generation 1 runs the handler afresh, and succeeds.
    let retried = participant
        .execute(in_generation(1, 1))
        .await
        .expect("ran again");
    assert_eq!(retried["run"], json!(2));
    assert_eq!(
        participant.ledger(saga).await?,
        ["execute"],
        "only the run that succeeded committed"
    );
    // From now on the success is the answer, whatever the generation of a (late or later) delivery.
    for (generation, attempt) in [(1, 2), (0, 3), (2, 1)] {
        let again = participant
            .execute(in_generation(generation, attempt))
            .await
            .expect("success replayed");
        assert_eq!(again, retried, "generation {generation}");
    }
    assert_eq!(participant.handler.executions(), 2);
    assert_eq!(participant.replays(saga, "execute").await?, 4);
    participant.stop().await
}

#[tokio::test]
async fn a_step_refused_again_after_an_operator_retry_records_the_later_refusal() -> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    let saga = Uuid::new_v4();
    let in_generation = |generation, attempt| StepRequest {
        generation,
        ..execute_step(saga, "Refuse", attempt)
    };

    for (generation, attempt) in [(0, 1), (1, 1), (1, 2)] {
        let status = participant
            .execute(in_generation(generation, attempt))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::FailedPrecondition, "{generation}");
    }
    // Generation 1 ran the handler afresh and took the row over; its duplicate was replayed.
    assert_eq!(participant.handler.executions(), 2);
    let recorded: (String, i32, i32) = sqlx::query_as(
        "SELECT outcome, generation, replays FROM saga_barrier
         WHERE saga_id = $1 AND direction = 'execute'",
    )
    .bind(saga)
    .fetch_one(&participant.pool)
    .await?;
    assert_eq!(recorded, ("refused".to_owned(), 1, 1));
    assert!(participant.ledger(saga).await?.is_empty());
    participant.stop().await
}

#[tokio::test]
async fn a_transient_error_records_nothing_so_the_retry_runs_the_handler_again() -> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    let saga = Uuid::new_v4();

    let first = participant
        .execute(execute_step(saga, "FlakyOnce", 1))
        .await
        .expect_err("unavailable");
    let retry = participant
        .execute(execute_step(saga, "FlakyOnce", 2))
        .await?;

    assert_eq!(first.code(), Code::Unavailable);
    assert_eq!(retry["run"], json!(2));
    assert_eq!(participant.handler.executions(), 2);
    assert_eq!(
        participant.ledger(saga).await?,
        ["execute"],
        "only the retry's work committed"
    );
    participant.stop().await
}

#[tokio::test]
async fn a_compensation_before_the_step_ran_undoes_nothing_and_the_late_execute_is_aborted()
-> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    let saga = Uuid::new_v4();

    let compensated = participant.compensate(compensate_step(saga, 1)).await?;
    let late = participant
        .execute(execute_step(saga, "Reserve", 1))
        .await
        .expect_err("aborted");
    let compensated_again = participant.compensate(compensate_step(saga, 2)).await?;

    assert!(compensated.is_empty());
    assert!(compensated_again.is_empty());
    assert_eq!(late.code(), Code::Aborted);
    assert_eq!(late.message(), "step was compensated before it ran");
    assert_eq!(participant.handler.executions(), 0);
    assert_eq!(participant.handler.compensations(), 0);
    assert!(participant.ledger(saga).await?.is_empty());
    assert_eq!(
        participant.replays(saga, "execute").await?,
        1,
        "the late execute"
    );
    assert_eq!(participant.replays(saga, "compensate").await?, 1);
    participant.stop().await
}

#[tokio::test]
async fn a_compensation_after_the_step_ran_calls_the_handler_once_even_when_repeated() -> Result<()>
{
    let participant = Participant::start(Recorder::default()).await?;
    let saga = Uuid::new_v4();

    participant
        .execute(execute_step(saga, "Reserve", 1))
        .await?;
    let first = participant.compensate(compensate_step(saga, 1)).await?;
    let repeat = participant.compensate(compensate_step(saga, 2)).await?;
    let execute_after = participant
        .execute(execute_step(saga, "Reserve", 2))
        .await?;

    assert_eq!(first["undone"], json!(1));
    assert_eq!(repeat, first);
    assert_eq!(
        execute_after["run"],
        json!(1),
        "execute still replays its own answer"
    );
    assert_eq!(participant.handler.executions(), 1);
    assert_eq!(participant.handler.compensations(), 1);
    assert_eq!(participant.ledger(saga).await?, ["execute", "compensate"]);
    assert_eq!(participant.replays(saga, "compensate").await?, 1);
    participant.stop().await
}

#[tokio::test]
async fn an_execute_that_arrives_after_its_compensation_is_aborted_and_never_runs() -> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    let saga = Uuid::new_v4();

    // The coordinator gave up on the forward call (its deadline passed while the request was still in
    // the network) and compensated; then the forward request arrives.
    participant.compensate(compensate_step(saga, 1)).await?;
    for attempt in 1..=2 {
        let late = participant
            .execute(execute_step(saga, "Reserve", attempt))
            .await
            .expect_err("fenced");
        assert_eq!(late.code(), Code::Aborted, "attempt {attempt}");
    }

    assert_eq!(participant.handler.executions(), 0);
    assert!(participant.ledger(saga).await?.is_empty());
    assert_eq!(participant.replays(saga, "execute").await?, 2);
    participant.stop().await
}

#[tokio::test]
async fn a_compensation_after_a_refusal_has_nothing_to_undo() -> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    let saga = Uuid::new_v4();

    participant
        .execute(execute_step(saga, "Refuse", 1))
        .await
        .expect_err("refused");
    let compensated = participant.compensate(compensate_step(saga, 1)).await?;

    assert!(compensated.is_empty());
    assert_eq!(participant.handler.compensations(), 0);
    participant.stop().await
}

#[tokio::test]
async fn a_compensation_racing_an_in_flight_execute_waits_for_it_then_undoes_it() -> Result<()> {
    let (participant, gate) = Participant::gated().await?;
    let saga = Uuid::new_v4();

    let execute = participant.spawn_execute(saga, "Reserve", 1);
    gate.entered.notified().await;
    let compensate = tokio::spawn({
        let participant = participant.clone();
        async move { participant.compensate(compensate_step(saga, 1)).await }
    });
    wait_for_lock_waiters(&participant.pool, 1).await?;
    gate.release.notify_one();

    let executed = execute.await??;
    let compensated = compensate.await??;
    assert_eq!(executed["run"], json!(1));
    assert_eq!(compensated["undone"], json!(1));
    assert_eq!(participant.handler.compensations(), 1);
    assert_eq!(participant.ledger(saga).await?, ["execute", "compensate"]);

    Arc::into_inner(participant)
        .context("participant still shared")?
        .stop()
        .await
}

/// Polls until `count` sessions of the test database are blocked on a lock: later claims waiting on the
/// first execute's uncommitted barrier row.
async fn wait_for_lock_waiters(pool: &PgPool, count: usize) -> Result<()> {
    let count = i64::try_from(count)?;
    let waiting = async {
        loop {
            let waiters: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(pool)
            .await?;
            if waiters >= count {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .context("the later requests never waited on the first execute's barrier row")?
}

#[tokio::test]
async fn a_malformed_request_is_rejected_before_the_barrier() -> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    let mut request = execute_step(Uuid::new_v4(), "Reserve", 1);
    request.saga_id = "not-a-uuid".to_owned();

    let status = participant.execute(request).await.expect_err("invalid");

    assert_eq!(status.code(), Code::InvalidArgument);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_barrier")
        .fetch_one(&participant.pool)
        .await?;
    assert_eq!(rows, 0);
    participant.stop().await
}

#[tokio::test]
async fn health_reports_the_participant_service_as_serving() -> Result<()> {
    let participant = Participant::start(Recorder::default()).await?;
    let channel = Channel::from_shared(format!("http://{}", participant.addr))?
        .connect()
        .await?;
    let mut health = HealthClient::new(channel);

    let response = health
        .check(HealthCheckRequest {
            service: "saga.v1.SagaParticipant".to_owned(),
        })
        .await?;

    assert_eq!(response.into_inner().status(), ServingStatus::Serving);
    participant.stop().await
}
