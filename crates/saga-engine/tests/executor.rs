//! The engine against a scripted participant over real gRPC and a real PostgreSQL saga log, with
//! millisecond timings so retries, deadlines and timeouts run in well under a second.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use saga_core::{Definition, FailureReason, SagaId, SagaStatus, StepStatus};
use saga_engine::{Engine, EngineSettings, Participants, StartRequest};
use saga_proto::v1::saga_participant_server::{SagaParticipant, SagaParticipantServer};
use saga_proto::v1::{StepRequest, StepResponse};
use saga_store::{PgStore, SagaStore};
use saga_testkit::TestDatabase;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// What the scripted participant does for one call.
#[derive(Clone, Debug)]
enum Behavior {
    Ok,
    Refuse,
    Unavailable,
    Hang,
    /// Answer OK once the gate opens.
    Gate(Arc<tokio::sync::Semaphore>),
}

type ScriptFn = dyn Fn(&str, &str, u32) -> Behavior + Send + Sync;

/// One call the participant received: step, action, attempt, idempotency key, metadata key.
type Call = (String, String, u32, String, String);

#[derive(Clone)]
struct Scripted {
    script: Arc<ScriptFn>,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl Scripted {
    async fn answer(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResponse>, Status> {
        let metadata_key = request
            .metadata()
            .get("x-idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let r = request.into_inner();
        self.calls.lock().expect("lock").push((
            r.step.clone(),
            r.action.clone(),
            r.attempt,
            r.idempotency_key.clone(),
            metadata_key,
        ));
        match (self.script)(&r.step, &r.action, r.attempt) {
            Behavior::Ok => Ok(Response::new(StepResponse {
                output: Some(saga_proto::json_to_struct(
                    json!({ format!("{}_done", r.step): r.attempt })
                        .as_object()
                        .cloned()
                        .expect("object"),
                )),
            })),
            Behavior::Refuse => Err(Status::failed_precondition("scripted refusal")),
            Behavior::Unavailable => Err(Status::unavailable("scripted outage")),
            Behavior::Hang => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            Behavior::Gate(gate) => {
                drop(gate.acquire().await.expect("gate"));
                Ok(Response::new(StepResponse { output: None }))
            }
        }
    }
}

#[tonic::async_trait]
impl SagaParticipant for Scripted {
    async fn execute(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResponse>, Status> {
        self.answer(request).await
    }

    async fn compensate(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResponse>, Status> {
        self.answer(request).await
    }
}

const DEFINITION: &str = r"
name: shop
version: 1
timeout: 5s
step_timeout: 2s
retry:        {max_attempts: 3, initial_backoff: 5ms, multiplier: 2.0, max_backoff: 20ms, jitter: 0.0}
compensation: {max_attempts: 3, initial_backoff: 5ms, multiplier: 2.0, max_backoff: 20ms, jitter: 0.0}
steps:
  - {name: RESERVE, participant: shop, action: Reserve, compensate: Unreserve}
  - {name: CHARGE,  participant: shop, action: Charge,  compensate: Refund, timeout: 150ms}
  - {name: SHIP,    participant: shop, action: Ship, pivot: true}
";

struct Harness {
    engine: Arc<Engine<PgStore>>,
    store: PgStore,
    participant: String,
    definition: Arc<Definition>,
    calls: Arc<Mutex<Vec<Call>>>,
    /// Stops the participant server and the engine.
    shutdown: CancellationToken,
    /// Stops the engine only.
    engine_shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    _db: TestDatabase,
}

impl Harness {
    async fn start(
        script: impl Fn(&str, &str, u32) -> Behavior + Send + Sync + 'static,
        adjust: impl FnOnce(&mut Definition),
    ) -> Self {
        let db = TestDatabase::create("saga_engine").await;
        let store = PgStore::connect(&db.url(), 4).await.expect("connect");
        store.migrate().await.expect("migrate");

        let calls = Arc::new(Mutex::new(Vec::new()));
        let participant = Scripted {
            script: Arc::new(script),
            calls: calls.clone(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(SagaParticipantServer::new(participant))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    stop.cancelled_owned(),
                )
                .await
                .expect("participant server");
        });

        let participants = Participants::new(&HashMap::from([(
            "shop".to_owned(),
            format!("http://{addr}"),
        )]))
        .expect("participants");
        let known: HashSet<String> = participants.names();
        let mut definition = Definition::from_yaml(DEFINITION, &known).expect("definition");
        adjust(&mut definition);
        let definition = Arc::new(definition);
        let engine_shutdown = shutdown.child_token();
        let engine = Engine::new(
            store.clone(),
            participants,
            HashMap::from([("shop".to_owned(), definition.clone())]),
            &EngineSettings {
                max_in_flight: 16,
                ..EngineSettings::default()
            },
            engine_shutdown.clone(),
        );
        Self {
            engine_shutdown,
            engine,
            store,
            participant: format!("http://{addr}"),
            definition,
            calls,
            shutdown,
            server,
            _db: db,
        }
    }

    async fn start_saga(&self) -> SagaId {
        let created = self
            .engine
            .start(StartRequest {
                started_by: None,
                saga_type: "shop".into(),
                payload: json!({"userId": "u1"})
                    .as_object()
                    .cloned()
                    .expect("object"),
                idempotency_key: None,
            })
            .await
            .expect("start");
        created.saga.id
    }

    async fn wait_terminal(&self, id: SagaId) -> saga_core::Saga {
        let poll = async {
            loop {
                let saga = self.store.load(id).await.expect("load").expect("exists");
                if saga.status.is_terminal() {
                    return saga;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), poll)
            .await
            .expect("saga finishes within 10s")
    }

    /// Another coordinator instance on the same saga log and participant, with its own shutdown token.
    fn second_instance(
        &self,
        settings: EngineSettings,
    ) -> (Arc<Engine<PgStore>>, CancellationToken) {
        let participants = Participants::new(&HashMap::from([(
            "shop".to_owned(),
            self.participant.clone(),
        )]))
        .expect("participants");
        let shutdown = CancellationToken::new();
        let engine = Engine::new(
            self.store.clone(),
            participants,
            HashMap::from([("shop".to_owned(), self.definition.clone())]),
            &settings,
            shutdown.clone(),
        );
        (engine, shutdown)
    }

    fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, action, attempt, _, _)| format!("{action}#{attempt}"))
            .collect()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.engine.drain(Duration::from_secs(5)).await;
        self.server.await.expect("server");
    }
}

fn statuses(saga: &saga_core::Saga) -> Vec<StepStatus> {
    saga.steps.iter().map(|s| s.status).collect()
}

#[tokio::test]
async fn transient_errors_are_retried_with_the_same_idempotency_key_until_the_step_succeeds() {
    let h = Harness::start(
        |step, _, attempt| match (step, attempt) {
            ("CHARGE", 1 | 2) => Behavior::Unavailable,
            _ => Behavior::Ok,
        },
        |_| {},
    )
    .await;
    let id = h.start_saga().await;
    let saga = h.wait_terminal(id).await;
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.steps[1].attempts, 3);
    assert_eq!(saga.state["CHARGE_done"], 3);
    assert_eq!(
        h.calls(),
        ["Reserve#1", "Charge#1", "Charge#2", "Charge#3", "Ship#1"]
    );
    let keys: HashSet<(String, String)> = h
        .calls
        .lock()
        .expect("lock")
        .iter()
        .filter(|c| c.0 == "CHARGE")
        .map(|c| (c.3.clone(), c.4.clone()))
        .collect();
    assert_eq!(
        keys,
        HashSet::from([(
            format!("{id}:CHARGE:execute"),
            format!("{id}:CHARGE:execute")
        )]),
        "one key across retries, in the request and in metadata"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_refusal_compensates_completed_steps_and_stops() {
    let h = Harness::start(
        |step, _, _| match step {
            "CHARGE" => Behavior::Refuse,
            _ => Behavior::Ok,
        },
        |_| {},
    )
    .await;
    let saga = h.wait_terminal(h.start_saga().await).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(
        statuses(&saga),
        [
            StepStatus::Compensated,
            StepStatus::Failed,
            StepStatus::Skipped
        ]
    );
    assert_eq!(h.calls(), ["Reserve#1", "Charge#1", "Unreserve#1"]);
    h.stop().await;
}

#[tokio::test]
async fn a_step_that_never_answers_hits_its_deadline_and_is_compensated_because_it_may_have_happened()
 {
    let h = Harness::start(
        |_, action, _| match action {
            "Charge" => Behavior::Hang,
            _ => Behavior::Ok,
        },
        |_| {},
    )
    .await;
    let started = std::time::Instant::now();
    let saga = h.wait_terminal(h.start_saga().await).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(
        saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::StepFailed)
    );
    assert!(
        saga.steps[1]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("DEADLINE_EXCEEDED"),
        "{:?}",
        saga.steps[1].last_error
    );
    assert_eq!(
        h.calls(),
        [
            "Reserve#1",
            "Charge#1",
            "Charge#2",
            "Charge#3",
            "Refund#1",
            "Unreserve#1"
        ]
    );
    // Three 150ms deadlines plus backoff: the step's own timeout applied, not the 2s default.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    h.stop().await;
}

#[tokio::test]
async fn the_saga_deadline_compensates_a_saga_that_keeps_retrying() {
    let h = Harness::start(
        |_, action, _| match action {
            "Charge" => Behavior::Unavailable,
            _ => Behavior::Ok,
        },
        |d| {
            d.timeout = Some(Duration::from_millis(200));
            d.retry.max_attempts = 1000;
        },
    )
    .await;
    let saga = h.wait_terminal(h.start_saga().await).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(
        saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::TimedOut)
    );
    assert_eq!(
        statuses(&saga)[..2],
        [StepStatus::Compensated, StepStatus::Compensated]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_compensation_that_keeps_failing_parks_the_saga_in_failed() {
    let h = Harness::start(
        |_, action, _| match action {
            "Charge" => Behavior::Refuse,
            "Unreserve" => Behavior::Unavailable,
            _ => Behavior::Ok,
        },
        |_| {},
    )
    .await;
    let saga = h.wait_terminal(h.start_saga().await).await;
    assert_eq!(saga.status, SagaStatus::Failed);
    assert_eq!(
        saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::CompensationFailed)
    );
    assert_eq!(saga.steps[0].compensation_attempts, 3);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_during_a_retry_wait_leaves_the_saga_running_in_the_log() {
    let h = Harness::start(
        |step, _, _| match step {
            "CHARGE" => Behavior::Unavailable,
            _ => Behavior::Ok,
        },
        |d| {
            d.retry.initial_backoff = Duration::from_secs(60);
            d.retry.max_backoff = Duration::from_secs(60);
        },
    )
    .await;
    let id = h.start_saga().await;
    // Wait until the first CHARGE failure is committed and the saga sleeps towards its retry.
    let poll = async {
        loop {
            let saga = h.store.load(id).await.expect("load").expect("exists");
            if saga.next_attempt_at.is_some() {
                return saga;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let waiting = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("retry scheduled");
    assert_eq!(waiting.steps[1].status, StepStatus::Running);

    h.shutdown.cancel();
    assert!(
        h.engine.drain(Duration::from_secs(2)).await,
        "drain ends without waiting out the backoff"
    );
    let after = h.store.load(id).await.expect("load").expect("exists");
    assert_eq!(after.status, SagaStatus::Running);
    assert_eq!(
        after.revision, waiting.revision,
        "nothing written after shutdown"
    );
    h.stop().await;
}

#[tokio::test]
async fn an_instance_that_lost_its_lease_mid_call_cannot_write_its_stale_result() {
    // Instance A's CHARGE call and then instance B's are each held until the test opens their gate.
    let gates = [
        Arc::new(tokio::sync::Semaphore::new(0)),
        Arc::new(tokio::sync::Semaphore::new(0)),
    ];
    let charges = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = {
        let gates = gates.clone();
        Harness::start(
            move |step, _, _| match step {
                "CHARGE" => {
                    let n = charges.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    gates
                        .get(n)
                        .map_or(Behavior::Ok, |gate| Behavior::Gate(gate.clone()))
                }
                _ => Behavior::Ok,
            },
            |d| d.steps[1].timeout = Some(Duration::from_secs(5)),
        )
        .await
    };
    let charge_calls = |n: usize| {
        let h = &h;
        async move {
            let poll = async {
                while h.calls().iter().filter(|c| c.starts_with("Charge")).count() < n {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(5), poll)
                .await
                .expect("CHARGE called");
        }
    };
    let id = h.start_saga().await;
    charge_calls(1).await;

    // A stalls (its call hangs, it renews nothing) past its lease; B's recovery loop takes the saga
    // over and calls CHARGE again.
    sqlx::query("UPDATE sagas SET lease_until = now() - interval '1 second' WHERE id = $1")
        .bind(id.0)
        .execute(h.store.pool())
        .await
        .expect("expire A's lease");
    let (b, b_shutdown) = h.second_instance(EngineSettings {
        recovery_interval: Duration::from_millis(20),
        ..EngineSettings::default()
    });
    b.run_background();
    charge_calls(2).await;
    let before = h.store.load(id).await.expect("load").expect("exists");
    assert_eq!(before.epoch, 2, "B holds the saga at the second epoch");

    // A resumes first: its call answers, and its write — at the very revision it read — is refused.
    gates[0].add_permits(1);
    h.engine_shutdown.cancel();
    assert!(
        h.engine.drain(Duration::from_secs(5)).await,
        "A's executor ended after its refused write"
    );
    let after_a = h.store.load(id).await.expect("load").expect("exists");
    assert_eq!(
        after_a.revision, before.revision,
        "A's stale result changed nothing"
    );
    assert_eq!(after_a.steps[1].status, StepStatus::Pending);

    // B's call answers and B finishes the saga.
    gates[1].add_permits(1);
    let saga = h.wait_terminal(id).await;
    assert_eq!(
        saga.status,
        SagaStatus::Completed,
        "{saga:#?} {:?}",
        h.calls()
    );
    let succeeded: Vec<usize> = h
        .store
        .history(id)
        .await
        .expect("history")
        .expect("saga")
        .iter()
        .filter_map(|e| match e.event {
            saga_core::HistoryEvent::StepSucceeded { step, .. } => Some(step),
            _ => None,
        })
        .collect();
    assert_eq!(succeeded, [0, 1, 2], "each step recorded once");
    assert_eq!(h.calls(), ["Reserve#1", "Charge#1", "Charge#1", "Ship#1"]);
    b_shutdown.cancel();
    b.drain(Duration::from_secs(5)).await;
    h.shutdown.cancel();
    h.server.await.expect("server");
}

#[tokio::test]
async fn a_long_retry_wait_releases_the_lease_and_the_recovery_loop_resumes_the_saga_when_due() {
    let h = Harness::start(
        |step, _, attempt| match (step, attempt) {
            ("CHARGE", 1) => Behavior::Unavailable,
            _ => Behavior::Ok,
        },
        |d| {
            d.retry.initial_backoff = Duration::from_millis(300);
            d.retry.max_backoff = Duration::from_millis(300);
        },
    )
    .await;
    // Its own recovery loop scans only hourly: only planning for the due time can resume the saga.
    let (engine, shutdown) = h.second_instance(EngineSettings {
        hold_wait: Duration::from_millis(100),
        recovery_interval: Duration::from_secs(3600),
        ..EngineSettings::default()
    });
    engine.run_background();
    let started = std::time::Instant::now();
    let id = engine
        .start(StartRequest {
            started_by: None,
            saga_type: "shop".into(),
            payload: serde_json::Map::new(),
            idempotency_key: None,
        })
        .await
        .expect("start")
        .saga
        .id;
    let saga = h.wait_terminal(id).await;
    let took = started.elapsed();
    assert_eq!(saga.status, SagaStatus::Completed);
    assert!(
        took < Duration::from_secs(2),
        "resumed {took:?} after start; the retry was due after 300 ms"
    );
    let claims = h
        .store
        .history(id)
        .await
        .expect("history")
        .expect("saga")
        .iter()
        .filter(|e| matches!(e.event, saga_core::HistoryEvent::SagaClaimed { .. }))
        .count();
    assert_eq!(claims, 1, "released for the wait, claimed back when due");
    assert_eq!(saga.epoch, 2);
    shutdown.cancel();
    engine.drain(Duration::from_secs(5)).await;
    h.stop().await;
}
