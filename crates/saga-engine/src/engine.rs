//! [`Engine`]: accepts sagas, owns the tasks that drive them, and carries out operator actions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use saga_core::{
    Definition, Input, JsonMap, ListFilter, RecordedEvent, Saga, SagaId, SagaSummary, apply,
};
use saga_store::{Created, SagaStore, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::watch::{Subscription, Watchers};
use crate::{EngineError, Participants, executor};

/// How often an operator action re-reads and re-applies when the saga keeps changing under it.
const OPERATOR_ATTEMPTS: usize = 10;

/// How often a watch re-reads the saga log, for changes made by another replica (this instance's own
/// commits arrive at once).
const WATCH_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// Engine limits.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Sagas this instance drives at once; beyond it `start` answers [`EngineError::Overloaded`].
    pub max_in_flight: usize,
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
}

/// Accepts sagas, persists them, and drives each to a terminal status.
#[derive(Debug)]
pub struct Engine<S> {
    pub(crate) store: S,
    pub(crate) participants: Participants,
    definitions: HashMap<String, Arc<Definition>>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
    tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
    /// The executor driving each saga on this instance, so an operator action can replace it.
    drivers: Mutex<HashMap<SagaId, Driver>>,
    next_driver: AtomicU64,
    pub(crate) watchers: Arc<Watchers>,
}

/// One executor task: `stop` ends it at its next await point.
#[derive(Debug)]
struct Driver {
    id: u64,
    stop: CancellationToken,
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
        Arc::new(Self {
            store,
            participants,
            definitions,
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight)),
            max_in_flight: settings.max_in_flight,
            tasks: TaskTracker::new(),
            shutdown,
            drivers: Mutex::default(),
            next_driver: AtomicU64::new(0),
            watchers: Arc::default(),
        })
    }

    /// The loaded definitions by name.
    pub fn definitions(&self) -> &HashMap<String, Arc<Definition>> {
        &self.definitions
    }

    /// Persists a new saga and starts driving it at once; an idempotency key that is already taken returns
    /// the existing saga instead.
    pub async fn start(self: &Arc<Self>, request: StartRequest) -> Result<Created, EngineError> {
        let definition = self
            .definitions
            .get(&request.saga_type)
            .cloned()
            .ok_or_else(|| self.unknown_type(&request.saga_type))?;
        if self.shutdown.is_cancelled() {
            return Err(EngineError::ShuttingDown);
        }
        // Take the slot before writing, so an accepted saga always has an executor to drive it.
        let permit =
            self.in_flight
                .clone()
                .try_acquire_owned()
                .map_err(|_| EngineError::Overloaded {
                    limit: self.max_in_flight,
                })?;
        let saga = Saga::new(
            definition,
            request.payload,
            request.idempotency_key,
            Utc::now(),
        );
        let created = self.store.create(&saga).await?;
        if created.created {
            info!(saga_id = %saga.id, saga_type = saga.saga_type(), "saga started");
            self.spawn_driver(saga, Some(permit));
        }
        Ok(created)
    }

    /// Starts an executor for `saga`, replacing (stopping) any executor this instance already runs for it.
    /// Without a `permit` the task waits for an in-flight slot first.
    fn spawn_driver(self: &Arc<Self>, saga: Saga, permit: Option<OwnedSemaphorePermit>) {
        let id = saga.id;
        let driver = Driver {
            id: self.next_driver.fetch_add(1, Ordering::Relaxed),
            stop: CancellationToken::new(),
        };
        let (driver_id, stop) = (driver.id, driver.stop.clone());
        if let Some(replaced) = self.lock_drivers().insert(id, driver) {
            replaced.stop.cancel();
        }
        let span = info_span!("saga", saga_id = %id, saga_type = saga.saga_type());
        let engine = Arc::clone(self);
        self.tasks.spawn(
            async move {
                let permit = match permit {
                    Some(permit) => Some(permit),
                    None => tokio::select! {
                        permit = Arc::clone(&engine.in_flight).acquire_owned() => permit.ok(),
                        () = stop.cancelled() => None,
                        () = engine.shutdown.cancelled() => None,
                    },
                };
                if permit.is_some() {
                    executor::drive(&engine, saga, &stop).await;
                }
                let mut drivers = engine.lock_drivers();
                if drivers.get(&id).is_some_and(|d| d.id == driver_id) {
                    drivers.remove(&id);
                }
            }
            .instrument(span),
        );
    }

    fn lock_drivers(&self) -> std::sync::MutexGuard<'_, HashMap<SagaId, Driver>> {
        self.drivers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Operator: stops forward progress of a running saga and compensates what it did.
    pub async fn abort(self: &Arc<Self>, id: SagaId, reason: String) -> Result<Saga, EngineError> {
        self.operate(id, || Input::Abort {
            reason: reason.clone(),
        })
        .await
    }

    /// Operator: resumes a parked (`FAILED`) saga where it stopped.
    pub async fn retry(self: &Arc<Self>, id: SagaId, reason: String) -> Result<Saga, EngineError> {
        self.operate(id, || Input::Retry {
            reason: reason.clone(),
        })
        .await
    }

    /// Applies an operator input to the saga as stored, commits it (fenced on the revision read, re-read
    /// and re-applied if an executor committed meanwhile), then drives the saga from there.
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
            let transition = apply(&saga, input(), Utc::now(), fastrand::f64())
                .map_err(|refused| EngineError::Refused(refused.to_string()))?;
            match self.store.commit(&transition).await {
                Ok(revision) => {
                    let mut saga = transition.saga;
                    saga.revision = revision;
                    info!(saga_id = %id, status = %saga.status, events = ?transition.events, "operator action recorded");
                    self.watchers.publish(&saga);
                    self.spawn_driver(saga.clone(), None);
                    return Ok(saga);
                }
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(EngineError::Contended(id))
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

    /// Watches saga `id`: its current state first, then every change until it is terminal.
    pub async fn watch(self: &Arc<Self>, id: SagaId) -> Result<SagaWatch<S>, EngineError> {
        // Subscribe before reading, so no commit falls between the read and the subscription.
        let subscription = self.watchers.subscribe(id);
        let saga = self
            .store
            .load(id)
            .await?
            .ok_or(EngineError::NotFound(id))?;
        Ok(SagaWatch {
            engine: Arc::clone(self),
            id,
            subscription,
            first: Some(saga),
            last_revision: -1,
            done: false,
        })
    }

    /// Reads a saga from the saga log.
    pub async fn status(&self, id: SagaId) -> Result<Option<Saga>, EngineError> {
        Ok(self.store.load(id).await?)
    }

    /// Waits up to `grace` for saga tasks to reach a safe point after the shutdown token fired; returns
    /// false if some were still running. Work they leave is in the saga log, ready to be resumed.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tasks.close();
        let drained = tokio::time::timeout(grace, self.tasks.wait()).await.is_ok();
        if !drained {
            warn!(
                remaining = self.tasks.len(),
                "saga tasks still running after the shutdown grace period"
            );
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

/// A saga's changes as they are committed; see [`Engine::watch`].
#[derive(Debug)]
pub struct SagaWatch<S> {
    engine: Arc<Engine<S>>,
    id: SagaId,
    subscription: Subscription,
    first: Option<Saga>,
    last_revision: i64,
    done: bool,
}

impl<S: SagaStore> SagaWatch<S> {
    /// The next version of the saga; `None` once a terminal one was returned.
    pub async fn next(&mut self) -> Result<Option<Saga>, EngineError> {
        if let Some(saga) = self.first.take() {
            return Ok(Some(self.emit(saga)));
        }
        while !self.done {
            let changed = tokio::select! {
                received = self.subscription.receiver().recv() => match received {
                    Ok(saga) => Some((*saga).clone()),
                    // Fell behind (or the channel was replaced): the saga log has the latest.
                    Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => {
                        self.reload().await?
                    }
                },
                () = tokio::time::sleep(WATCH_RELOAD_INTERVAL) => self.reload().await?,
            };
            if let Some(saga) = changed.filter(|s| s.revision > self.last_revision) {
                return Ok(Some(self.emit(saga)));
            }
        }
        Ok(None)
    }

    async fn reload(&self) -> Result<Option<Saga>, EngineError> {
        Ok(self.engine.store.load(self.id).await?)
    }

    fn emit(&mut self, saga: Saga) -> Saga {
        self.last_revision = saga.revision;
        self.done = saga.status.is_terminal();
        saga
    }
}
