//! Read models of the saga log: what listing and history queries return.

use chrono::{DateTime, Utc};

use crate::saga::Failure;
use crate::{HistoryEvent, SagaId, SagaStatus};

/// A saga without its steps, state or definition, as a listing shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaSummary {
    /// The saga's id.
    pub id: SagaId,
    /// Definition name.
    pub saga_type: String,
    /// Definition version the saga runs.
    pub definition_version: u32,
    /// Life-cycle status.
    pub status: SagaStatus,
    /// Why it did not complete, if it did not.
    pub failure: Option<Failure>,
    /// Name of the step being executed or compensated.
    pub current_step: Option<String>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// The authenticated principal that started the saga.
    pub started_by: Option<String>,
    /// When the saga was accepted.
    pub created_at: DateTime<Utc>,
    /// When the saga log last changed.
    pub updated_at: DateTime<Utc>,
    /// When the saga reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
}

/// Which sagas to list, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListFilter {
    /// Only these statuses; empty means all.
    pub statuses: Vec<SagaStatus>,
    /// Only this type.
    pub saga_type: Option<String>,
    /// Only sagas created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only sagas created before this time.
    pub created_before: Option<DateTime<Utc>>,
}

/// A history event as committed to the saga log.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    /// Position in the log (increases with every event).
    pub sequence: i64,
    /// When it was committed.
    pub recorded_at: DateTime<Utc>,
    /// The event.
    pub event: HistoryEvent,
}
