//! The engine's error type.

use saga_core::SagaId;
use saga_core::machine::Mismatch;
use saga_store::StoreError;

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No definition has this name.
    #[error("unknown saga type {saga_type:?} (known: {known})")]
    UnknownSagaType {
        /// The requested type.
        saga_type: String,
        /// The loaded definition names, comma separated.
        known: String,
    },
    /// `max_in_flight` sagas are already being driven by this instance.
    #[error("{limit} sagas already in flight on this instance; retry later")]
    Overloaded {
        /// The configured limit.
        limit: usize,
    },
    /// `max_watches` `WatchSaga` streams are already open on this instance.
    #[error(
        "{limit} watches already open on this instance; retry later or watch on another instance"
    )]
    TooManyWatches {
        /// The configured limit.
        limit: usize,
    },
    /// The instance is shutting down and accepts no new sagas.
    #[error("coordinator is shutting down")]
    ShuttingDown,
    /// No saga has this id.
    #[error("no saga with id {0}")]
    NotFound(SagaId),
    /// The saga's state does not allow the operator action; the variant says which rule refused it.
    #[error(transparent)]
    Refused(#[from] Mismatch),
    /// The saga kept changing under an operator action; it was not applied.
    #[error("saga {0} kept changing while the action was being recorded; try again")]
    Contended(SagaId),
    /// The saga log did not answer recently; nothing was written.
    #[error("saga log unavailable; retry later")]
    StoreUnavailable,
    /// The saga log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
