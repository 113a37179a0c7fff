//! Row shapes exchanged with PostgreSQL and their conversions to and from `saga_core` types.
//!
//! Step rows are read as one JSON array (`jsonb_agg`), which keeps every read a single statement; the
//! writes send them as arrays (see `postgres::writes`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use saga_core::saga::Failure;
use saga_core::{
    Definition, HistoryEvent, JsonMap, Labels, RecordedEvent, Resolution, Saga, SagaId,
    SagaSummary, Step,
};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use uuid::Uuid;

use crate::StoreError;

/// A `saga_steps` row as JSON.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StepRow {
    pub step_index: i32,
    pub name: String,
    pub participant: String,
    pub status: String,
    pub attempts: i64,
    pub compensation_attempts: i64,
    pub output: Option<JsonMap>,
    pub last_error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub generation: i64,
    pub maybe_applied: bool,
    /// Absent from rows written before `ResolveSaga` existed.
    #[serde(default)]
    pub resolution: Option<Resolution>,
}

impl StepRow {
    fn into_step(self, saga_id: SagaId) -> Result<Step, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt { saga_id, message };
        Ok(Step {
            status: self.status.parse().map_err(|e| corrupt(format!("{e}")))?,
            attempts: u32::try_from(self.attempts).map_err(|e| corrupt(e.to_string()))?,
            compensation_attempts: u32::try_from(self.compensation_attempts)
                .map_err(|e| corrupt(e.to_string()))?,
            last_error: self.last_error,
            output: self.output,
            started_at: self.started_at,
            finished_at: self.finished_at,
            generation: u32::try_from(self.generation).map_err(|e| corrupt(e.to_string()))?,
            maybe_applied: self.maybe_applied,
            resolution: self.resolution,
        })
    }
}

/// The step and attempt an event is about, kept in their own columns of `saga_events` (the whole event
/// is its `detail`).
pub(crate) fn event_step(event: &HistoryEvent) -> (Option<usize>, Option<u32>) {
    match event {
        HistoryEvent::StepSucceeded { step, attempt }
        | HistoryEvent::StepFailed { step, attempt, .. }
        | HistoryEvent::StepCompensated { step, attempt }
        | HistoryEvent::CompensationFailed { step, attempt, .. } => (Some(*step), Some(*attempt)),
        HistoryEvent::SagaRetried { step, .. } | HistoryEvent::StepResolved { step, .. } => {
            (Some(*step), None)
        }
        _ => (None, None),
    }
}

/// A `sagas` row with its steps aggregated.
#[derive(Debug, FromRow)]
pub(crate) struct SagaRow {
    pub epoch: i64,
    pub id: Uuid,
    pub definition: sqlx::types::Json<serde_json::Value>,
    pub status: String,
    pub failure_reason: Option<String>,
    pub failure_message: Option<String>,
    pub state: sqlx::types::Json<JsonMap>,
    pub idempotency_key: Option<String>,
    pub started_by: Option<String>,
    pub traceparent: Option<String>,
    pub labels: sqlx::types::Json<Labels>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub deadline_at: Option<DateTime<Utc>>,
    pub revision: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub steps: sqlx::types::Json<Vec<StepRow>>,
}

impl SagaRow {
    pub(crate) fn into_saga(self) -> Result<Saga, StoreError> {
        let saga_id = SagaId(self.id);
        let corrupt = |message: String| StoreError::Corrupt { saga_id, message };
        let definition: Definition = serde_json::from_value(self.definition.0)
            .map_err(|e| corrupt(format!("definition snapshot: {e}")))?;
        let failure = failure(self.failure_reason, self.failure_message)
            .map_err(|e| corrupt(format!("{e}")))?;
        let steps = self
            .steps
            .0
            .into_iter()
            .map(|row| row.into_step(saga_id))
            .collect::<Result<Vec<_>, _>>()?;
        if steps.len() != definition.steps.len() {
            return Err(corrupt(format!(
                "{} step rows for {} definition steps",
                steps.len(),
                definition.steps.len()
            )));
        }
        Ok(Saga {
            id: saga_id,
            definition: Arc::new(definition),
            status: self.status.parse().map_err(|e| corrupt(format!("{e}")))?,
            failure,
            state: self.state.0,
            steps,
            idempotency_key: self.idempotency_key,
            started_by: self.started_by,
            traceparent: self.traceparent,
            labels: self.labels.0,
            next_attempt_at: self.next_attempt_at,
            deadline_at: self.deadline_at,
            revision: self.revision,
            epoch: self.epoch,
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
        })
    }
}

/// A `sagas` row as a listing reads it.
#[derive(Debug, FromRow)]
pub(crate) struct SummaryRow {
    pub id: Uuid,
    pub saga_type: String,
    pub definition_version: i32,
    pub status: String,
    pub failure_reason: Option<String>,
    pub failure_message: Option<String>,
    pub current_step: Option<String>,
    pub idempotency_key: Option<String>,
    pub started_by: Option<String>,
    pub labels: sqlx::types::Json<Labels>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl SummaryRow {
    pub(crate) fn into_summary(self) -> Result<SagaSummary, StoreError> {
        let saga_id = SagaId(self.id);
        let corrupt = |message: String| StoreError::Corrupt { saga_id, message };
        Ok(SagaSummary {
            id: saga_id,
            saga_type: self.saga_type,
            definition_version: u32::try_from(self.definition_version)
                .map_err(|e| corrupt(e.to_string()))?,
            status: self.status.parse().map_err(|e| corrupt(format!("{e}")))?,
            failure: failure(self.failure_reason, self.failure_message)
                .map_err(|e| corrupt(format!("{e}")))?,
            current_step: self.current_step,
            idempotency_key: self.idempotency_key,
            started_by: self.started_by,
            labels: self.labels.0,
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
        })
    }
}

/// A `saga_events` row.
#[derive(Debug, FromRow)]
pub(crate) struct RecordedEventRow {
    pub id: i64,
    pub detail: sqlx::types::Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

impl RecordedEventRow {
    pub(crate) fn into_event(self, saga_id: SagaId) -> Result<RecordedEvent, StoreError> {
        let event = serde_json::from_value(self.detail.0).map_err(|e| StoreError::Corrupt {
            saga_id,
            message: format!("history event {}: {e}", self.id),
        })?;
        Ok(RecordedEvent {
            sequence: self.id,
            recorded_at: self.created_at,
            event,
        })
    }
}

/// The failure columns as a [`Failure`]; the table's CHECK keeps reason and message both set or both null.
fn failure(
    reason: Option<String>,
    message: Option<String>,
) -> Result<Option<Failure>, saga_core::UnknownStatus> {
    match (reason, message) {
        (Some(reason), Some(message)) => Ok(Some(Failure {
            reason: reason.parse()?,
            message,
        })),
        _ => Ok(None),
    }
}
