//! The test harness: a scripted participant over real gRPC, a real PostgreSQL saga log, and engines on
//! it, with millisecond timings so retries, deadlines and timeouts run in well under a second.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use saga_core::{
    Definition, ListFilter, RecordedEvent, Saga, SagaId, SagaSummary, Stats, StatsQuery,
    StepStatus, Transition,
};
use saga_engine::{Clock, Engine, EngineSettings, Participants, StartRequest};
use saga_proto::v1::saga_participant_server::{SagaParticipant, SagaParticipantServer};
use saga_proto::v1::{StepRequest, StepResponse};
use saga_store::{
    Claimed, Committed, Created, CreatedAndCommitted, LeaseAfter, Owner, ParkedAndStuck, PgStore,
    SagaStore, StoreError,
};
use saga_testkit::TestDatabase;
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

/// What the scripted participant does for one call.
#[derive(Clone, Debug)]
pub enum Behavior {
    Ok,
    Refuse,
    Unavailable,
    Hang,
    /// Answer OK once the gate opens.
    Gate(Arc<tokio::sync::Semaphore>),
    /// Answer OK after this long.
    Slow(Duration),
    /// Answer OK with an output PostgreSQL's jsonb cannot store (a NUL character).
    NulOutput,
}

pub type ScriptFn = dyn Fn(&str, &str, u32) -> Behavior + Send + Sync;

/// One call the participant received: step, action, attempt, idempotency key, metadata key.
pub type Call = (String, String, u32, String, String);

/// Every call the participant received, in order; a test waits on it for a call to arrive.
pub type CallLog = Arc<watch::Sender<Vec<Call>>>;

#[derive(Clone)]
pub struct Scripted {
    script: Arc<ScriptFn>,
    calls: CallLog,
    /// Calls being answered now, and the most at once so far.
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

/// Counts a call in flight for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
        self.calls.send_modify(|calls| {
            calls.push((
                r.step.clone(),
                r.action.clone(),
                r.attempt,
                r.idempotency_key.clone(),
                metadata_key,
            ));
        });
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        let _in_flight = InFlight(self.in_flight.clone());
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
            Behavior::Slow(took) => {
                tokio::time::sleep(took).await;
                Ok(Response::new(StepResponse { output: None }))
            }
            Behavior::NulOutput => Ok(Response::new(StepResponse {
                output: Some(saga_proto::json_to_struct(
                    saga_testkit::unstorable::output(),
                )),
            })),
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

pub const DEFINITION: &str = r"
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

pub struct Harness {
    pub engine: Arc<Engine<PgStore>>,
    pub store: PgStore,
    pub participant: String,
    pub definition: Arc<Definition>,
    pub calls: CallLog,
    /// The most calls the participant answered at once.
    pub peak: Arc<AtomicUsize>,
    /// Stops the participant server and the engine.
    pub shutdown: CancellationToken,
    /// Stops the engine only.
    pub engine_shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<()>,
    pub _db: TestDatabase,
}

impl Harness {
    pub async fn start(
        script: impl Fn(&str, &str, u32) -> Behavior + Send + Sync + 'static,
        adjust: impl FnOnce(&mut Definition),
    ) -> Self {
        let settings = EngineSettings {
            max_in_flight: 16,
            ..EngineSettings::default()
        };
        Self::start_with(script, adjust, &settings).await
    }

    /// Starts the participant and engine A with `settings`.
    pub async fn start_with(
        script: impl Fn(&str, &str, u32) -> Behavior + Send + Sync + 'static,
        adjust: impl FnOnce(&mut Definition),
        settings: &EngineSettings,
    ) -> Self {
        let db = TestDatabase::create("saga_engine").await;
        let store = PgStore::connect(&db.url(), 4).await.expect("connect");
        store.migrate().await.expect("migrate");

        let calls = CallLog::new(watch::Sender::new(Vec::new()));
        let peak = Arc::new(AtomicUsize::new(0));
        let participant = Scripted {
            script: Arc::new(script),
            calls: calls.clone(),
            in_flight: Arc::default(),
            peak: peak.clone(),
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

        let participants = Participants::new(
            &HashMap::from([("shop".to_owned(), format!("http://{addr}"))]),
            16,
            None,
        )
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
            settings,
            engine_shutdown.clone(),
        );
        Self {
            engine_shutdown,
            engine,
            store,
            participant: format!("http://{addr}"),
            definition,
            calls,
            peak,
            shutdown,
            server,
            _db: db,
        }
    }

    pub async fn start_saga(&self) -> SagaId {
        let created = self
            .engine
            .start(StartRequest {
                labels: Default::default(),
                traceparent: None,
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

    /// Follows the saga's commits (no polling) until it is terminal.
    pub async fn wait_terminal(&self, id: SagaId) -> saga_core::Saga {
        wait_terminal_on(&self.engine, id).await
    }

    /// Another coordinator instance on the same saga log and participant, with its own shutdown token.
    pub fn second_instance(
        &self,
        settings: EngineSettings,
    ) -> (Arc<Engine<PgStore>>, CancellationToken) {
        self.instance(&settings, Clock::default(), 16)
    }

    /// An instance on the same saga log and participant, with its own local clock and participant
    /// concurrency limit.
    pub fn instance(
        &self,
        settings: &EngineSettings,
        clock: Clock,
        participant_concurrency: usize,
    ) -> (Arc<Engine<PgStore>>, CancellationToken) {
        let participants = Participants::new(
            &HashMap::from([("shop".to_owned(), self.participant.clone())]),
            participant_concurrency,
            None,
        )
        .expect("participants");
        let shutdown = CancellationToken::new();
        let engine = Engine::with_clock(
            self.store.clone(),
            participants,
            HashMap::from([("shop".to_owned(), self.definition.clone())]),
            settings,
            shutdown.clone(),
            clock,
        );
        (engine, shutdown)
    }

    /// An instance on the same saga log whose reads for sagas and watches, and recovery scans, are
    /// counted.
    pub fn counting_instance(
        &self,
        settings: &EngineSettings,
    ) -> (Arc<Engine<CountingStore>>, CountingStore, CancellationToken) {
        let participants = Participants::new(
            &HashMap::from([("shop".to_owned(), self.participant.clone())]),
            16,
            None,
        )
        .expect("participants");
        let store = CountingStore {
            inner: self.store.clone(),
            loads: Arc::default(),
            scans: Arc::default(),
        };
        let shutdown = CancellationToken::new();
        let engine = Engine::new(
            store.clone(),
            participants,
            HashMap::from([("shop".to_owned(), self.definition.clone())]),
            settings,
            shutdown.clone(),
        );
        (engine, store, shutdown)
    }

    /// Starts a saga on `engine`.
    pub async fn start_saga_on(engine: &Arc<Engine<PgStore>>) -> SagaId {
        engine
            .start(StartRequest {
                labels: Default::default(),
                traceparent: None,
                started_by: None,
                saga_type: "shop".into(),
                payload: serde_json::Map::new(),
                idempotency_key: None,
            })
            .await
            .expect("start")
            .saga
            .id
    }

    /// Waits until the participant received `call` (e.g. `Charge#1`).
    pub async fn wait_for_call(&self, call: &str) {
        self.wait_for_calls(call, |calls| calls.iter().any(|c| c == call))
            .await;
    }

    /// Waits until the calls so far (as [`Harness::calls`] names them) satisfy `until`; `what` names
    /// the wait in the panic after 5 s.
    pub async fn wait_for_calls(&self, what: &str, until: impl Fn(&[String]) -> bool) {
        let mut log = self.calls.subscribe();
        let arrived = log.wait_for(|calls| until(&names(calls)));
        tokio::time::timeout(Duration::from_secs(5), arrived)
            .await
            .unwrap_or_else(|_| panic!("{what} within 5 s"))
            .expect("the harness keeps the call log");
    }

    pub fn calls(&self) -> Vec<String> {
        names(&self.calls.borrow())
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.engine.drain(Duration::from_secs(5)).await;
        self.server.await.expect("server");
    }
}

/// Calls named `Action#attempt`.
fn names(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .map(|(_, action, attempt, _, _)| format!("{action}#{attempt}"))
        .collect()
}

/// Follows the saga through `engine`'s watch (no polling) until it is terminal; an engine that does not
/// drive the saga must run its background tasks to see another instance's commits.
pub async fn wait_terminal_on<S: SagaStore>(
    engine: &Arc<Engine<S>>,
    id: SagaId,
) -> saga_core::Saga {
    let mut watch = engine.watch(id).await.expect("watch");
    let follow = async {
        let mut last = None;
        while let Some(saga) = watch.next().await {
            last = Some(saga);
        }
        last.expect("a watch yields the saga at least once")
    };
    tokio::time::timeout(Duration::from_secs(10), follow)
        .await
        .expect("saga finishes within 10s")
}

pub fn statuses(saga: &saga_core::Saga) -> Vec<StepStatus> {
    saga.steps.iter().map(|s| s.status).collect()
}

/// A saga log that counts the reads made on behalf of watches (`load_newer`) and of single sagas
/// (`load`), and the recovery loop's scans (`claim_due`, `next_due`), delegating everything to
/// PostgreSQL.
#[derive(Debug, Clone)]
pub struct CountingStore {
    pub inner: PgStore,
    pub loads: Arc<AtomicUsize>,
    pub scans: Arc<AtomicUsize>,
}

impl CountingStore {
    pub fn reads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    pub fn scans(&self) -> usize {
        self.scans.load(Ordering::SeqCst)
    }
}

impl SagaStore for CountingStore {
    type Wakeups = <PgStore as SagaStore>::Wakeups;

    async fn create_many(
        &self,
        sagas: &[&Saga],
        owner: &Owner,
    ) -> Result<Vec<Result<Created, StoreError>>, StoreError> {
        self.inner.create_many(sagas, owner).await
    }

    async fn create_and_commit_many(
        &self,
        sagas: &[&Saga],
        writes: &[(&Transition, LeaseAfter)],
        owner: &Owner,
    ) -> Result<CreatedAndCommitted, StoreError> {
        self.inner
            .create_and_commit_many(sagas, writes, owner)
            .await
    }

    async fn load(&self, id: SagaId) -> Result<Option<Saga>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load(id).await
    }

    async fn commit_many(
        &self,
        writes: &[(&Transition, LeaseAfter)],
        owner: &Owner,
    ) -> Result<Vec<Option<Committed>>, StoreError> {
        self.inner.commit_many(writes, owner).await
    }

    async fn load_newer(&self, known: &[(SagaId, i64)]) -> Result<Vec<Saga>, StoreError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_newer(known).await
    }

    async fn claim_due(&self, owner: &Owner, limit: u32) -> Result<Claimed, StoreError> {
        self.scans.fetch_add(1, Ordering::SeqCst);
        self.inner.claim_due(owner, limit).await
    }

    async fn parked_and_stuck(
        &self,
        stuck_after: Duration,
    ) -> Result<Vec<ParkedAndStuck>, StoreError> {
        self.inner.parked_and_stuck(stuck_after).await
    }

    async fn quarantine(
        &self,
        id: SagaId,
        owner: &Owner,
        error: &str,
        retry_after: Duration,
    ) -> Result<bool, StoreError> {
        self.inner.quarantine(id, owner, error, retry_after).await
    }

    async fn now(&self) -> Result<DateTime<Utc>, StoreError> {
        self.inner.now().await
    }

    async fn next_due(&self) -> Result<Option<Duration>, StoreError> {
        self.scans.fetch_add(1, Ordering::SeqCst);
        self.inner.next_due().await
    }

    async fn renew(&self, owner: &Owner, ids: &[SagaId]) -> Result<Vec<SagaId>, StoreError> {
        self.inner.renew(owner, ids).await
    }

    async fn release(&self, owner: &Owner, ids: Option<&[SagaId]>) -> Result<u64, StoreError> {
        self.inner.release(owner, ids).await
    }

    async fn listen(&self) -> Result<Self::Wakeups, StoreError> {
        self.inner.listen().await
    }

    async fn purge_finished(&self, older_than: Duration, limit: u32) -> Result<u64, StoreError> {
        self.inner.purge_finished(older_than, limit).await
    }

    async fn list(
        &self,
        filter: &ListFilter,
        before: Option<SagaId>,
        limit: u32,
    ) -> Result<Vec<SagaSummary>, StoreError> {
        self.inner.list(filter, before, limit).await
    }

    async fn history(&self, id: SagaId) -> Result<Option<Vec<RecordedEvent>>, StoreError> {
        self.inner.history(id).await
    }

    async fn stats(&self, query: &StatsQuery) -> Result<Stats, StoreError> {
        self.inner.stats(query).await
    }
}
