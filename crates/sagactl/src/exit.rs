//! How a run ends: the exit codes `sagactl --help` documents, and the one-line error messages.

use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use saga_proto::contract::code_name;
use saga_proto::v1::SagaStatus;
use tonic::Code;

/// The exit codes, as `sagactl --help` and the README list them.
pub const HELP: &str = "\
Exit codes:
  0  done; for `watch` and `start --wait`: the saga COMPLETED
  1  any other error (an internal error in sagad, an unreadable certificate file, ...)
  2  usage: unknown flag, missing or malformed argument
  3  refused: NOT_FOUND, INVALID_ARGUMENT, FAILED_PRECONDITION, ALREADY_EXISTS, OUT_OF_RANGE
  4  sagad unavailable: cannot connect, UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED
  5  not allowed: UNAUTHENTICATED, PERMISSION_DENIED
  6  the saga ended COMPENSATED
  7  the saga ended FAILED (parked for an operator)
  8  the wait ended (--wait, --timeout) before the saga did";

/// What a command achieved when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command did what was asked; a followed saga COMPLETED.
    Done,
    /// A followed saga ended COMPENSATED.
    Compensated,
    /// A followed saga ended FAILED (parked).
    Parked,
}

impl Outcome {
    /// The process exit code for this outcome.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Self::Done => 0,
            Self::Compensated => 6,
            Self::Parked => 7,
        })
    }
}

/// Why a command failed.
#[derive(Debug)]
pub enum Failure {
    /// sagad answered an RPC with an error status.
    Rpc(tonic::Status),
    /// No connection to sagad could be made.
    Connect {
        /// The address tried.
        addr: String,
        /// The transport's error chain, as one line.
        cause: String,
    },
    /// Flags that parse but do not fit together (exit code 2, like clap's own usage errors).
    Usage(String),
    /// Something on this side failed: a file that cannot be read, output that cannot be written.
    Local(String),
    /// The wait for a saga ran out (exit code 8).
    WaitEnded {
        /// The saga.
        saga_id: String,
        /// Its status when the wait ended.
        status: SagaStatus,
        /// How long was waited.
        waited: Duration,
    },
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Rpc(status) => match status.code() {
                Code::NotFound
                | Code::InvalidArgument
                | Code::FailedPrecondition
                | Code::AlreadyExists
                | Code::OutOfRange => 3,
                Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => 4,
                Code::Unauthenticated | Code::PermissionDenied => 5,
                _ => 1,
            },
            Self::Connect { .. } => 4,
            Self::Usage(_) => 2,
            Self::Local(_) => 1,
            Self::WaitEnded { .. } => 8,
        })
    }
}

impl From<tonic::Status> for Failure {
    fn from(status: tonic::Status) -> Self {
        Self::Rpc(status)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rpc(status) => write!(
                f,
                "{}: {}",
                code_name(status.code()),
                one_line(status.message())
            ),
            Self::Connect { addr, cause } => {
                write!(f, "UNAVAILABLE: cannot connect to {addr}: {cause}")
            }
            Self::Usage(message) => write!(f, "usage: {message}"),
            Self::Local(message) => write!(f, "{message}"),
            Self::WaitEnded {
                saga_id,
                status,
                waited,
            } => write!(
                f,
                "saga {saga_id} still {} after {}",
                crate::render::saga_status(*status),
                humantime::format_duration(*waited)
            ),
        }
    }
}

/// `text` with line breaks folded into spaces, so that every error and event stays on one line.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An error and its causes, as one line.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    one_line(&line)
}
