//! Saga and step statuses and failure reasons. Each has one stable upper-case text form, used by the SQL
//! CHECK constraints and the history log; the proto enums carry the same names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A text form that names no known status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownStatus {
    kind: &'static str,
    value: String,
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stable text form stored in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStatus { kind: $kind, value: s.to_owned() }),
                }
            }
        }
    };
}

text_enum! {
    /// Where a saga is in its life cycle.
    SagaStatus, "saga status" {
        /// Executing steps forward.
        Running => "RUNNING",
        /// Undoing completed steps in reverse order.
        Compensating => "COMPENSATING",
        /// Every step succeeded.
        Completed => "COMPLETED",
        /// Every completed step was compensated.
        Compensated => "COMPENSATED",
        /// Parked for an operator.
        Failed => "FAILED",
    }
}

impl SagaStatus {
    /// Terminal statuses: nothing more happens without an operator.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Compensated | Self::Failed)
    }
}

text_enum! {
    /// Where one step is.
    StepStatus, "step status" {
        /// Not attempted yet.
        Pending => "PENDING",
        /// Attempted, outcome not settled (waiting to retry).
        Running => "RUNNING",
        /// The participant answered OK.
        Succeeded => "SUCCEEDED",
        /// Refused, or out of retries without needing compensation.
        Failed => "FAILED",
        /// Being compensated (or waiting for a compensation retry).
        Compensating => "COMPENSATING",
        /// The compensation answered OK.
        Compensated => "COMPENSATED",
        /// Never executed: the saga stopped before reaching it.
        Skipped => "SKIPPED",
    }
}

text_enum! {
    /// Why a saga did not complete.
    FailureReason, "failure reason" {
        /// A step was refused, or ran out of retries.
        StepFailed => "STEP_FAILED",
        /// The whole-saga deadline passed.
        TimedOut => "TIMED_OUT",
        /// An operator aborted the saga.
        Aborted => "ABORTED",
        /// A compensation ran out of attempts.
        CompensationFailed => "COMPENSATION_FAILED",
        /// A step at or after the pivot failed for good.
        ForwardFailed => "FORWARD_FAILED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_text_form() {
        for s in SagaStatus::ALL {
            assert_eq!(s.as_str().parse::<SagaStatus>(), Ok(*s));
        }
        for s in StepStatus::ALL {
            assert_eq!(s.as_str().parse::<StepStatus>(), Ok(*s));
        }
        for r in FailureReason::ALL {
            assert_eq!(r.as_str().parse::<FailureReason>(), Ok(*r));
        }
    }

    #[test]
    fn unknown_text_is_an_error_naming_the_kind() {
        let err = "DONE".parse::<SagaStatus>().unwrap_err();
        assert_eq!(err.to_string(), "unknown saga status \"DONE\"");
    }

    #[test]
    fn only_finished_statuses_are_terminal() {
        let terminal: Vec<_> = SagaStatus::ALL.iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(
            terminal,
            [
                &SagaStatus::Completed,
                &SagaStatus::Compensated,
                &SagaStatus::Failed
            ]
        );
    }
}
