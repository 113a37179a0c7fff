//! [`Engine`]: accepts sagas and owns the tasks that drive them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use saga_core::{Definition, JsonMap, Saga, SagaId};
use saga_store::{Created, SagaStore};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use crate::{EngineError, Participants, executor};

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
            let span = info_span!("saga", saga_id = %saga.id, saga_type = saga.saga_type());
            let engine = Arc::clone(self);
            self.tasks.spawn(
                async move {
                    executor::drive(&engine, saga).await;
                    drop(permit);
                }
                .instrument(span),
            );
        }
        Ok(created)
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
