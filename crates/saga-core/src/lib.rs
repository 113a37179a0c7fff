//! sagad's pure core: saga definitions (parse, validate), statuses, retry/backoff math and the saga state
//! machine as pure functions. No IO lives here: no tokio, no database, no gRPC.
//!
//! # Layout
//! - [`definition`]: the YAML saga definition, its defaults and validation.
//! - [`contract`]: the participant contract's gRPC codes and which of them are refusals.
//! - [`status`]: saga and step statuses and failure reasons, as enums with stable text forms.
//! - [`saga`]: a saga instance (`Saga`, `Step`, `SagaId`) as the saga log stores it.
//! - [`machine`]: `next_command(saga, now)` says what to do next; `apply(saga, input)` folds an outcome
//!   into a new saga plus the history events to append.
//! - [`backoff`]: retry delays with exponential growth, a cap and jitter.
//! - [`record`]: read models of the saga log (listing summaries, recorded history events).
//! - [`storable`]: what the saga log can store of a JSON value.

pub mod backoff;
pub mod contract;
pub mod definition;
pub mod machine;
pub mod record;
pub mod saga;
pub mod status;
pub mod storable;

pub use definition::{Definition, DefinitionError, RetryPolicy, StepDefinition, UnprovidedNeed};
pub use machine::{
    Command, ErrorKind, HistoryEvent, Input, StepFailure, Transition, apply, next_command,
};
pub use record::{Label, ListFilter, RecordedEvent, SagaSummary};
pub use saga::{Direction, JsonMap, Labels, Resolution, ResolvedAs, Saga, SagaId, Step};
pub use status::{FailureReason, SagaStatus, StepStatus, UnknownStatus};
