//! The one place errors become gRPC statuses: every status sagad sends is built here, named by why the
//! request was turned away, so the code a caller (and its retry policy) sees is decided in one table.
//! Internal errors reach the caller as a short message and the log as the full cause chain.

use saga_core::machine::Mismatch;
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
        EngineError::Refused(mismatch) => refusal_status(mismatch),
        // The gRPC code for "a concurrency conflict; retry the whole request".
        EngineError::Contended(_) => Status::aborted(err.to_string()),
        // A row this version cannot read: retrying will not help, an operator must look.
        EngineError::Store(StoreError::Corrupt { .. }) => {
            error!(error = %err, "saga log row cannot be decoded");
            Status::internal(err.to_string())
        }
        EngineError::Store(_) => {
            error!(error = %err, cause = ?std::error::Error::source(&err), "saga log operation failed");
            Status::unavailable("saga log unavailable; retry later")
        }
    }
}

/// An operator verb the saga's state refuses. Most refusals depend on the state (FAILED_PRECONDITION:
/// the same request may succeed once the saga is elsewhere); a step name the saga's definition does not
/// have is wrong whatever the state (INVALID_ARGUMENT).
fn refusal_status(mismatch: &Mismatch) -> Status {
    match mismatch {
        Mismatch::NoSuchStep { .. } => Status::invalid_argument(mismatch.to_string()),
        Mismatch::NotAwaited { .. }
        | Mismatch::PivotReached { .. }
        | Mismatch::AlreadyCompensating
        | Mismatch::AbortParked
        | Mismatch::AlreadyFinished(_)
        | Mismatch::NotParked { .. }
        | Mismatch::NothingToResume(_)
        | Mismatch::ManualCompensation(_)
        | Mismatch::UnresumableReason { .. }
        | Mismatch::NotParkedAtStep { .. }
        | Mismatch::WrongOutcome { .. } => Status::failed_precondition(mismatch.to_string()),
    }
}

/// The request is wrong whatever the saga's state (a malformed field, a value out of range): fix it; a
/// retry of the same request cannot succeed.
pub(crate) fn bad_request(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}

/// No credentials, or credentials that match no principal.
pub(crate) fn unauthenticated(message: impl Into<String>) -> Status {
    Status::unauthenticated(message)
}

/// The principal is known but its grant does not cover this verb or saga type.
pub(crate) fn forbidden(message: impl Into<String>) -> Status {
    Status::permission_denied(message)
}

/// A per-client limit of this instance is reached (open watches, stream rate): retry later.
pub(crate) fn over_limit(message: impl Into<String>) -> Status {
    Status::resource_exhausted(message)
}

/// The request's own time budget ran out before sagad answered.
pub(crate) fn timed_out(message: impl Into<String>) -> Status {
    Status::deadline_exceeded(message)
}

/// This instance is going away: the same request to another instance can succeed.
pub(crate) fn draining(message: impl Into<String>) -> Status {
    Status::unavailable(message)
}
