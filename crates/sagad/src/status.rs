//! The one place errors become gRPC statuses. Internal errors reach the caller as a short message and the
//! log as the full cause chain.

use saga_engine::EngineError;
use saga_store::StoreError;
use tonic::Status;
use tracing::error;

/// Maps an engine error to the status a caller can act on.
pub(crate) fn engine_status(err: EngineError) -> Status {
    match &err {
        EngineError::UnknownSagaType { .. } => Status::not_found(err.to_string()),
        EngineError::Overloaded { .. }
        | EngineError::TooManyWatches { .. }
        | EngineError::Store(StoreError::Busy) => Status::resource_exhausted(err.to_string()),
        EngineError::ShuttingDown | EngineError::StoreUnavailable => {
            Status::unavailable(err.to_string())
        }
        EngineError::NotFound(_) => Status::not_found(err.to_string()),
        EngineError::Refused(_) => Status::failed_precondition(err.to_string()),
        // The gRPC code for "a concurrency conflict; retry the whole request".
        EngineError::Contended(_) => Status::aborted(err.to_string()),
        // A row this version cannot read: retrying will not help, an operator must look.
        EngineError::Store(StoreError::Corrupt { .. }) => {
            error!(error = %err, "saga log row cannot be decoded");
            Status::internal(err.to_string())
        }
        EngineError::Store(_) | EngineError::InvalidEndpoint { .. } => {
            error!(error = %err, cause = ?std::error::Error::source(&err), "saga log operation failed");
            Status::unavailable("saga log unavailable; retry later")
        }
    }
}
