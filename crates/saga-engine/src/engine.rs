//! [`Engine`]: accepts sagas, owns the tasks that drive them, and carries out operator actions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use saga_core::{
    Definition, Input, JsonMap, Labels, ListFilter, RecordedEvent, ResolvedAs, Saga, SagaId,
    SagaStatus, SagaSummary, Stats, StatsQuery, apply,
};
use saga_shutdown::{TaskFailure, Tasks};
use saga_store::{Created, LeaseAfter, Owner, SagaStore, StoreError};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::clock::Clock;
use crate::committer::Committer;
use crate::lease::LocalLease;
use crate::metrics::Metrics;
use crate::watch::{SagaWatch, Watchers};
use crate::{EngineError, Participants, executor};

/// How often an operator action re-reads and re-applies when the saga keeps changing under it.
const OPERATOR_ATTEMPTS: usize = 10;

/// Engine limits and timings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Sagas this instance drives at once; beyond it `start` answers [`EngineError::Overloaded`] and the
    /// recovery loop claims no more.
    pub max_in_flight: usize,
    /// `WatchSaga` streams open at once on this instance; beyond it `watch` answers
    /// [`EngineError::TooManyWatches`].
    pub max_watches: usize,
    /// How long a lease lasts; renewed every third of it. A crashed instance's sagas are taken over
    /// about this long after its last renewal.
    pub lease: Duration,
    /// Retry waits longer than this release the lease (the wake-up time is already in the saga log), so
    /// any instance continues the saga; shorter ones wait in memory.
    pub hold_wait: Duration,
    /// How often the recovery loop looks for due sagas when nothing wakes it earlier.
    pub recovery_interval: Duration,
    /// Most sagas claimed per recovery pass.
    pub claim_batch: u32,
    /// Finished sagas older than this are deleted; `None` keeps them forever.
    pub retention: Option<Duration>,
}

impl Default for EngineSettings {
    /// The defaults sagad's settings start from (one place for them).
    fn default() -> Self {
        Self {
            max_in_flight: 10_000,
            max_watches: 10_000,
            lease: Duration::from_secs(10),
            hold_wait: Duration::from_secs(2),
            recovery_interval: Duration::from_secs(1),
            claim_batch: 100,
            retention: Some(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// A request to start a saga, already validated at the edge.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Definition name.
    pub saga_type: String,
    /// The start payload.
    pub payload: JsonMap,
    /// Optional caller idempotency key.
    pub idempotency_key: Option<String>,
    /// The authenticated principal starting it; `None` when sagad runs without authentication.
    pub started_by: Option<String>,
    /// Business keys to find the saga by.
    pub labels: Labels,
    /// The trace the saga belongs to (W3C `traceparent`), if any.
    pub traceparent: Option<String>,
}

/// An operator's `ResolveSaga`, already validated at the edge.
#[derive(Debug, Clone)]
pub struct Resolve {
    /// The name of the step the saga is parked at.
    pub step: String,
    /// What the step's work came to, done by hand.
    pub outcome: ResolvedAs,
    /// What was done.
    pub note: String,
    /// Why.
    pub reason: String,
    /// The authenticated principal; `None` when sagad runs without authentication.
    pub by: Option<String>,
}

/// Accepts sagas, persists them, and drives each to a terminal status.
#[derive(Debug)]
pub struct Engine<S> {
    pub(crate) store: S,
    pub(crate) participants: Participants,
    definitions: HashMap<String, Arc<Definition>>,
    pub(crate) in_flight: Arc<Semaphore>,
    pub(crate) settings: EngineSettings,
    /// This instance as the owner of its leases.
    pub(crate) owner: Owner,
    /// Now, on the database clock.
    pub(crate) clock: Clock,
    /// Origin of the executors' local lease deadlines.
    lease_base: Instant,
    /// The executors. One that panics leaves its saga registered (its lease renewed, nobody driving it):
    /// it fires [`Engine::failed`], for the binary to stop and release the leases.
    sagas: Tasks,
    /// The committer, recovery loop, heartbeat, retention and watch refresher; one that panics fires
    /// [`Engine::failed`], for the binary to stop on.
    background: Tasks,
    /// Fired by `drain` once the executors are done: the heartbeat renews their leases until then.
    pub(crate) background_stop: CancellationToken,
    pub(crate) shutdown: CancellationToken,
    /// Wakes the recovery loop early (an in-flight slot freed up while due work was waiting).
    pub(crate) recovery_wake: Notify,
    /// Set when the recovery loop ran out of in-flight slots with work possibly left.
    pub(crate) recovery_starved: AtomicBool,
    /// Wakes the parked/stuck gauge refresh early: a saga this instance wrote entered or left `FAILED`.
    pub(crate) log_gauges_wake: Notify,
    /// Whether the saga log answered the last time it was used; sagad mirrors it into health.
    pub(crate) store_healthy: watch::Sender<bool>,
    /// The executor driving each saga on this instance, so an operator action can replace it.
    drivers: Mutex<HashMap<SagaId, Driver>>,
    next_driver: AtomicU64,
    pub(crate) watchers: Arc<Watchers>,
    /// Writes the saga log for every executor and every start, in batches.
    pub(crate) committer: Committer,
    /// What the engine counts and times, served by sagad's `/metrics`.
    pub(crate) metrics: Metrics,
}

/// One executor task: `stop` ends it at its next await point; `lease` is how long it may act.
#[derive(Debug)]
struct Driver {
    id: u64,
    stop: CancellationToken,
    lease: Arc<LocalLease>,
}

/// What an executor is given besides its saga: when to stop, and its lease's local deadline.
#[derive(Debug)]
pub(crate) struct DriverHandle {
    pub(crate) stop: CancellationToken,
    pub(crate) lease: Arc<LocalLease>,
}

impl<S: SagaStore> Engine<S> {
    /// Creates an engine. `shutdown` stops every saga task after its current call.
    pub fn new(
        store: S,
        participants: Participants,
        definitions: HashMap<String, Arc<Definition>>,
        settings: &EngineSettings,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Self::with_clock(
            store,
            participants,
            definitions,
            settings,
            shutdown,
            Clock::default(),
        )
    }

    /// Creates an engine whose local time comes from `clock` (tests give it a skewed one).
    pub fn with_clock(
        store: S,
        participants: Participants,
        definitions: HashMap<String, Arc<Definition>>,
        settings: &EngineSettings,
        shutdown: CancellationToken,
        clock: Clock,
    ) -> Arc<Self> {
        let (committer, pending) = Committer::new();
        let metrics = Metrics::new(definitions.keys().map(String::as_str));
        let engine = Arc::new(Self {
            store,
            participants,
            definitions,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            owner: Owner {
                name: instance_name(),
                lease: settings.lease,
            },
            clock,
            lease_base: Instant::now(),
            settings: settings.clone(),
            sagas: Tasks::new(),
            background: Tasks::new(),
            background_stop: CancellationToken::new(),
            shutdown,
            recovery_wake: Notify::new(),
            recovery_starved: AtomicBool::new(false),
            log_gauges_wake: Notify::new(),
            store_healthy: watch::Sender::new(true),
            drivers: Mutex::default(),
            next_driver: AtomicU64::new(0),
            watchers: Arc::new(Watchers::new(settings.max_watches)),
            committer,
            metrics,
        });
        let committing = Arc::clone(&engine).commit_loop(pending);
        // No span: the committer is polled for every saga's every transition (about five times per
        // step), and each poll would enter and exit a span that tells nothing its log lines (target
        // `saga_engine::committer`) do not, and whose one exported record would last the process's life.
        // sqlx re-enters the current span on every poll of every statement it runs, too.
        engine.spawn_background("committer", committing, tracing::Span::none());
        engine
    }

    /// The loaded definitions by name.
    pub fn definitions(&self) -> &HashMap<String, Arc<Definition>> {
        &self.definitions
    }

    /// The metrics this engine records.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// This instance's owner name in the saga log's leases.
    pub fn instance(&self) -> &str {
        &self.owner.name
    }

    /// Follows whether the saga log is reachable (false while writes fail).
    pub fn store_health(&self) -> watch::Receiver<bool> {
        self.store_healthy.subscribe()
    }

    /// Measures this instance's clock against the database's, so the times it writes are on the database
    /// clock. Call once before serving; the heartbeat repeats it.
    pub async fn sync_clock(&self) -> Result<(), StoreError> {
        let synced = self.clock.sync(&self.store).await;
        self.observe(&synced);
        synced
    }

    /// Records the outcome of a saga log operation for health reporting. A busy pool says nothing about
    /// the database's health.
    pub(crate) fn observe<T>(&self, result: &Result<T, StoreError>) {
        if matches!(result, Err(StoreError::Busy)) {
            return;
        }
        let healthy = !result.as_ref().is_err_and(StoreError::is_unavailable);
        self.store_healthy.send_if_modified(|current| {
            let changed = *current != healthy;
            *current = healthy;
            changed
        });
    }

    /// Persists a new saga and starts driving it at once; an idempotency key that is already taken returns
    /// the existing saga instead.
    pub async fn start(self: &Arc<Self>, request: StartRequest) -> Result<Created, EngineError> {
        self.start_saga(request, None).await
    }

    /// Like [`Engine::start`], then waits up to `wait` for the saga (new or existing) to be terminal;
    /// returns it as it is then.
    pub async fn start_and_wait(
        self: &Arc<Self>,
        request: StartRequest,
        wait: Duration,
    ) -> Result<(Created, Saga), EngineError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut waiting = None;
        let created = self.start_saga(request, Some(&mut waiting)).await?;
        let mut watch = match waiting {
            // The subscription began before the saga was written: no commit can slip past it.
            Some(subscription) if created.created => {
                SagaWatch::new(subscription, created.saga.clone())
            }
            // An existing saga, maybe driven by another instance: subscribe, then read it.
            _ => {
                let subscription = self.watchers.subscribe_waiter(created.saga.id);
                let saga = self
                    .store
                    .load(created.saga.id)
                    .await?
                    .ok_or(EngineError::NotFound(created.saga.id))?;
                SagaWatch::new(subscription, saga)
            }
        };
        let mut latest = created.saga.clone();
        loop {
            tokio::select! {
                next = watch.next() => match next {
                    Some(saga) => latest = saga,
                    None => return Ok((created, latest)),
                },
                () = tokio::time::sleep_until(deadline) => return Ok((created, latest)),
                () = self.shutdown.cancelled() => return Ok((created, latest)),
            }
        }
    }

    /// Persists and drives a new saga. With `waiter`, subscribes to the saga's commits before writing it
    /// and leaves the subscription there.
    async fn start_saga(
        self: &Arc<Self>,
        request: StartRequest,
        waiter: Option<&mut Option<crate::watch::Subscription>>,
    ) -> Result<Created, EngineError> {
        let definition = self
            .definitions
            .get(&request.saga_type)
            .cloned()
            .ok_or_else(|| self.unknown_type(&request.saga_type))?;
        if self.shutdown.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        // Fail fast while the saga log is known to be down, instead of queueing callers behind it.
        if !*self.store_healthy.borrow() {
            return Err(EngineError::StoreUnavailable);
        }
        // Take the slot before writing, so an accepted saga always has an executor to drive it.
        let permit =
            self.in_flight
                .clone()
                .try_acquire_owned()
                .map_err(|_| EngineError::Overloaded {
                    limit: self.settings.max_in_flight,
                })?;
        let saga = Saga {
            started_by: request.started_by,
            labels: request.labels,
            traceparent: request.traceparent,
            ..Saga::new(
                definition,
                request.payload,
                request.idempotency_key,
                self.clock.now(),
            )
        };
        if let Some(waiter) = waiter {
            *waiter = Some(self.watchers.subscribe_waiter(saga.id));
        }
        let sent = Instant::now();
        let created = self
            .committer
            .start(saga)
            .await
            .ok_or(EngineError::ShuttingDown)??;
        if created.created {
            self.metrics.started(created.saga.saga_type());
            info!(saga_id = %created.saga.id, saga_type = created.saga.saga_type(), "saga started");
            self.spawn_driver(created.saga.clone(), permit, sent);
        }
        Ok(created)
    }

    /// Starts an executor for `saga`, leased to this instance by a statement sent at `leased`, replacing
    /// (stopping) any executor this instance already runs for it.
    pub(crate) fn spawn_driver(
        self: &Arc<Self>,
        saga: Saga,
        permit: OwnedSemaphorePermit,
        leased: Instant,
    ) {
        let id = saga.id;
        let driver = Driver {
            id: self.next_driver.fetch_add(1, Ordering::Relaxed),
            stop: CancellationToken::new(),
            lease: Arc::new(LocalLease::granted(
                self.lease_base,
                leased,
                self.settings.lease,
            )),
        };
        let driver_id = driver.id;
        let handle = DriverHandle {
            stop: driver.stop.clone(),
            lease: Arc::clone(&driver.lease),
        };
        if let Some(replaced) = self.lock_drivers().insert(id, driver) {
            replaced.stop.cancel();
        }
        // A root, not a child of the request or scan that got here: the drive outlives them. Whichever
        // instance drives the saga, and however often, its work joins the saga's one trace instead.
        let span = info_span!(parent: None, "saga", saga_id = %id, saga_type = saga.saga_type());
        saga_telemetry::propagation::continue_trace(&span, saga.traceparent.as_deref());
        let engine = Arc::clone(self);
        self.sagas.spawn(
            "saga executor",
            async move {
                let _in_flight = engine.metrics.in_flight();
                executor::drive(&engine, saga, &handle).await;
                {
                    let mut drivers = engine.lock_drivers();
                    if drivers.get(&id).is_some_and(|d| d.id == driver_id) {
                        drivers.remove(&id);
                    }
                }
                drop(permit);
                if engine.recovery_starved.swap(false, Ordering::Relaxed) {
                    // A slot is free: due work the recovery loop had to leave may now be claimed.
                    engine.recovery_wake.notify_one();
                }
            }
            .instrument(span),
        );
    }

    fn lock_drivers(&self) -> std::sync::MutexGuard<'_, HashMap<SagaId, Driver>> {
        self.drivers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a background task until `background_stop`, tracked so that `drain` waits for it and a panic
    /// in it is reported.
    pub(crate) fn spawn_background(
        &self,
        name: &'static str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
        span: tracing::Span,
    ) {
        self.background.spawn(name, task.instrument(span));
    }

    /// Waits until an executor or a background task has failed (panicked); the binary then stops.
    pub async fn failed(&self) {
        tokio::select! {
            () = self.sagas.failed() => {}
            () = self.background.failed() => {}
        }
    }

    /// The first failure of a background task or else of an executor, if one failed.
    pub fn failure(&self) -> Option<TaskFailure> {
        self.background.failure().or_else(|| self.sagas.failure())
    }

    /// The sagas this instance is driving.
    pub(crate) fn driven(&self) -> Vec<SagaId> {
        self.lock_drivers().keys().copied().collect()
    }

    /// Extends the local lease deadlines of `ids`, renewed by a statement sent at `sent`.
    pub(crate) fn renewed(&self, ids: &[SagaId], sent: Instant) {
        let drivers = self.lock_drivers();
        for id in ids {
            if let Some(driver) = drivers.get(id) {
                driver.lease.renewed(sent);
            }
        }
    }

    /// Stops the executors of sagas whose lease this instance lost.
    pub(crate) fn stop_drivers(&self, ids: &[SagaId]) {
        let drivers = self.lock_drivers();
        for id in ids {
            if let Some(driver) = drivers.get(id) {
                warn!(saga_id = %id, "lease lost; another instance continues this saga");
                driver.stop.cancel();
            }
        }
    }

    /// Operator: stops forward progress of a running saga and compensates what it did. `by` (the
    /// authenticated principal, if any) is recorded in the history next to the reason.
    pub async fn abort(
        self: &Arc<Self>,
        id: SagaId,
        reason: String,
        by: Option<String>,
    ) -> Result<Saga, EngineError> {
        self.operate(id, || Input::Abort {
            reason: reason.clone(),
            by: by.clone(),
        })
        .await
    }

    /// Operator: resumes a parked (`FAILED`) saga where it stopped; `by` as for [`Engine::abort`].
    pub async fn retry(
        self: &Arc<Self>,
        id: SagaId,
        reason: String,
        by: Option<String>,
    ) -> Result<Saga, EngineError> {
        self.operate(id, || Input::Retry {
            reason: reason.clone(),
            by: by.clone(),
        })
        .await
    }

    /// Operator: the step a parked (`FAILED`) saga stopped at was done by hand; records it as `outcome`
    /// with `note` (what was done), `reason` and `by`, and lets the saga go on from there.
    pub async fn resolve(
        self: &Arc<Self>,
        id: SagaId,
        resolution: Resolve,
    ) -> Result<Saga, EngineError> {
        self.operate(id, || Input::Resolve {
            step: resolution.step.clone(),
            outcome: resolution.outcome,
            note: resolution.note.clone(),
            reason: resolution.reason.clone(),
            by: resolution.by.clone(),
        })
        .await
    }

    /// Applies an operator input to the saga as stored, commits it (fenced on the revision read, re-read
    /// and re-applied if an executor committed meanwhile), then drives the saga from there — here if a
    /// slot is free, else by handing its lease to whichever instance has one.
    async fn operate(
        self: &Arc<Self>,
        id: SagaId,
        input: impl Fn() -> Input,
    ) -> Result<Saga, EngineError> {
        if self.shutdown.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        for _ in 0..OPERATOR_ATTEMPTS {
            let saga = self
                .store
                .load(id)
                .await?
                .ok_or(EngineError::NotFound(id))?;
            let before = saga.status;
            let transition = apply(&saga, input(), self.clock.now(), fastrand::f64())?;
            // Taking the lease over fences out whichever executor (here or on another instance) was
            // driving the saga: its next write fails on the epoch.
            let sent = Instant::now();
            let committed = self
                .store
                .commit(&transition, &self.owner, LeaseAfter::TakeOver)
                .await;
            self.observe(&committed);
            match committed {
                Ok(committed) => {
                    let mut saga = transition.saga;
                    saga.revision = committed.revision;
                    saga.epoch = committed.epoch;
                    info!(saga_id = %id, status = %saga.status, events = ?transition.events, "operator action recorded");
                    self.committed(before, &saga);
                    self.continue_after_operator(saga.clone(), sent).await;
                    return Ok(saga);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Contended(id))
    }

    /// Tells whoever follows `saga` that a transition from `before` was committed: its watchers, the
    /// metrics, and the parked gauge when the saga entered or left `FAILED` (operators should see a
    /// parked saga on the next scrape, not up to a refresh interval later).
    pub(crate) fn committed(&self, before: SagaStatus, saga: &Saga) {
        self.metrics.committed(before, saga);
        self.watchers.publish(saga);
        if (before == SagaStatus::Failed) != (saga.status == SagaStatus::Failed) {
            self.log_gauges_wake.notify_one();
        }
    }

    /// Drives a saga an operator action just took over, if it has anything left to do. A full instance
    /// does not sit on it renewing its lease while it waits for a slot: it releases the lease (notifying
    /// the other instances), and its own recovery loop claims it once a slot frees up if nobody did.
    async fn continue_after_operator(self: &Arc<Self>, saga: Saga, leased: Instant) {
        if saga.status.is_terminal() {
            return;
        }
        match Arc::clone(&self.in_flight).try_acquire_owned() {
            Ok(permit) => self.spawn_driver(saga, permit, leased),
            Err(_) => {
                self.recovery_starved.store(true, Ordering::Relaxed);
                // An executor this instance still runs for the saga was fenced out by the takeover.
                self.stop_drivers(&[saga.id]);
                match self.store.release(&self.owner, Some(&[saga.id])).await {
                    Ok(_) => {
                        info!(saga_id = %saga.id, "no free slot here: saga handed to any instance")
                    }
                    Err(e) => {
                        warn!(saga_id = %saga.id, error = %e, "cannot release the saga; it moves on when its lease expires");
                    }
                }
            }
        }
    }

    /// A saga's history, oldest first.
    pub async fn history(&self, id: SagaId) -> Result<Vec<RecordedEvent>, EngineError> {
        self.store
            .history(id)
            .await?
            .ok_or(EngineError::NotFound(id))
    }

    /// Up to `limit` sagas matching `filter` with ids below `before`, newest first.
    pub async fn list(
        &self,
        filter: &ListFilter,
        before: Option<SagaId>,
        limit: u32,
    ) -> Result<Vec<SagaSummary>, EngineError> {
        Ok(self.store.list(filter, before, limit).await?)
    }

    /// Statistics over the saga log for `query` (`GetStats`).
    pub async fn stats(&self, query: &StatsQuery) -> Result<Stats, EngineError> {
        Ok(self.store.stats(query).await?)
    }

    /// Watches saga `id`: its current state first, then every change until it is terminal.
    pub async fn watch(self: &Arc<Self>, id: SagaId) -> Result<SagaWatch, EngineError> {
        // Subscribe before reading, so no commit falls between the read and the subscription.
        let subscription = self.watchers.subscribe(id)?;
        let saga = self
            .store
            .load(id)
            .await?
            .ok_or(EngineError::NotFound(id))?;
        Ok(SagaWatch::new(subscription, saga))
    }

    /// Reads a saga from the saga log.
    pub async fn status(&self, id: SagaId) -> Result<Option<Saga>, EngineError> {
        Ok(self.store.load(id).await?)
    }

    /// Waits up to `grace` for saga tasks to reach a safe point after the shutdown token fired (their
    /// leases renewed meanwhile), stops the background tasks, then releases every lease this instance
    /// holds so other instances continue its sagas at once. Returns false if some saga tasks were still
    /// running.
    pub async fn drain(&self, grace: Duration) -> bool {
        let drained = tokio::time::timeout(grace, self.sagas.wait()).await.is_ok();
        if !drained {
            warn!(
                remaining = self.sagas.len(),
                "saga tasks still running after the shutdown grace period"
            );
        }
        self.background_stop.cancel();
        self.background.wait().await;
        match self.store.release(&self.owner, None).await {
            Ok(released) => info!(released, "leases released"),
            Err(e) => {
                warn!(error = %e, "cannot release leases; other instances take over when they expire");
            }
        }
        drained
    }

    fn unknown_type(&self, saga_type: &str) -> EngineError {
        let mut known: Vec<_> = self.definitions.keys().map(String::as_str).collect();
        known.sort_unstable();
        EngineError::UnknownSagaType {
            saga_type: saga_type.to_owned(),
            known: known.join(", "),
        }
    }
}

/// A name for this process's leases: host, process id and a random suffix, so a restarted process on the
/// same host never holds its predecessor's leases.
fn instance_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sagad".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}
