//! What a step handler answers when it cannot succeed, and the one table that turns it into a gRPC status.
//!
//! The coordinator reads the status code, not the message: a refusal is definite (no retry, the saga
//! compensates), anything else is transient (the same request comes back later). Which codes are refusals
//! is the contract's ([`saga_core::contract`]), shared with the coordinator.

use std::error::Error as StdError;

pub use saga_core::contract::{Refusal, UnknownRefusal};
use saga_proto::contract::tonic_code;
use tonic::{Code, Status};

/// A boxed error kept as the cause of a transient failure, for the logs.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a step did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// A definite business "no". The barrier records it and every retry gets the same answer; the
    /// handler's database work is rolled back.
    #[error("{message}")]
    Refused {
        /// Which refusal status the coordinator sees.
        refusal: Refusal,
        /// Why, for the saga's failure record.
        message: String,
    },
    /// A dependency is down; nothing is recorded and the coordinator retries.
    #[error("{message}")]
    Unavailable {
        /// Short description sent to the caller.
        message: String,
        /// The underlying cause, logged but never sent.
        #[source]
        source: Option<BoxError>,
    },
    /// Something unexpected failed; nothing is recorded and the coordinator retries.
    #[error("{message}")]
    Internal {
        /// Short description sent to the caller.
        message: String,
        /// The underlying cause, logged but never sent.
        #[source]
        source: Option<BoxError>,
    },
}

impl StepError {
    /// A refusal with the given status.
    pub fn refused(refusal: Refusal, message: impl Into<String>) -> Self {
        Self::Refused {
            refusal,
            message: message.into(),
        }
    }

    /// `ABORTED`: the step conflicts with what already happened.
    pub fn aborted(message: impl Into<String>) -> Self {
        Self::refused(Refusal::Aborted, message)
    }

    /// `FAILED_PRECONDITION`: the system is not in a state that allows the step.
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::refused(Refusal::FailedPrecondition, message)
    }

    /// `INVALID_ARGUMENT`: the payload is missing a field or holds a bad value.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::refused(Refusal::InvalidArgument, message)
    }

    /// `NOT_FOUND`: something the step refers to does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::refused(Refusal::NotFound, message)
    }

    /// `ALREADY_EXISTS`: the step would create something that exists.
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::refused(Refusal::AlreadyExists, message)
    }

    /// `PERMISSION_DENIED`: the saga's subject may not do this.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::refused(Refusal::PermissionDenied, message)
    }

    /// `OUT_OF_RANGE`: a value is outside what the step accepts.
    pub fn out_of_range(message: impl Into<String>) -> Self {
        Self::refused(Refusal::OutOfRange, message)
    }

    /// `UNAVAILABLE` without an underlying cause.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
            source: None,
        }
    }

    /// `INTERNAL` caused by `source`.
    pub fn internal(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Internal {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The gRPC status code the coordinator sees.
    pub fn code(&self) -> Code {
        match self {
            Self::Refused { refusal, .. } => tonic_code(refusal.code()),
            Self::Unavailable { .. } => Code::Unavailable,
            Self::Internal { .. } => Code::Internal,
        }
    }
}

impl From<sqlx::Error> for StepError {
    /// Both are transient; the split only tells an operator whether to look at the database's
    /// availability or at the query.
    fn from(err: sqlx::Error) -> Self {
        use sqlx::Error::{Io, PoolClosed, PoolTimedOut, Tls};
        if matches!(err, PoolTimedOut | PoolClosed | Io(_) | Tls(_)) {
            Self::Unavailable {
                message: "database unavailable".to_owned(),
                source: Some(err.into()),
            }
        } else {
            Self::internal("database error", err)
        }
    }
}

impl From<StepError> for Status {
    /// Only the short message crosses the wire; the cause stays in the participant's logs.
    fn from(err: StepError) -> Self {
        Status::new(err.code(), err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_the_code_and_the_short_message_only() {
        let status = Status::from(StepError::failed_precondition("plan legacy is inactive"));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "plan legacy is inactive");

        let status = Status::from(StepError::from(sqlx::Error::RowNotFound));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(status.message(), "database error");

        let status = Status::from(StepError::from(sqlx::Error::PoolTimedOut));
        assert_eq!(status.code(), Code::Unavailable);
    }
}
