//! Conversions between domain and wire types for the coordinator API. Generated types stop here: the
//! rest of sagad works with `saga_core` types.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use saga_core::saga::Failure;
use saga_core::{
    Definition, ErrorKind, FailureReason, HistoryEvent, RecordedEvent, Resolution, ResolvedAs,
    Saga, SagaStatus, SagaSummary, StepStatus,
};

use crate::json_to_struct;
use crate::v1 as pb;

mod stats;

impl From<SagaStatus> for pb::SagaStatus {
    fn from(s: SagaStatus) -> Self {
        match s {
            SagaStatus::Running => Self::Running,
            SagaStatus::Compensating => Self::Compensating,
            SagaStatus::Completed => Self::Completed,
            SagaStatus::Compensated => Self::Compensated,
            SagaStatus::Failed => Self::Failed,
        }
    }
}

impl From<StepStatus> for pb::StepStatus {
    fn from(s: StepStatus) -> Self {
        match s {
            StepStatus::Pending => Self::Pending,
            StepStatus::Running => Self::Running,
            StepStatus::Succeeded => Self::Succeeded,
            StepStatus::Failed => Self::Failed,
            StepStatus::Compensating => Self::Compensating,
            StepStatus::Compensated => Self::Compensated,
            StepStatus::Skipped => Self::Skipped,
        }
    }
}

impl From<FailureReason> for pb::FailureReason {
    fn from(r: FailureReason) -> Self {
        match r {
            FailureReason::StepFailed => Self::StepFailed,
            FailureReason::TimedOut => Self::TimedOut,
            FailureReason::Aborted => Self::Aborted,
            FailureReason::CompensationFailed => Self::CompensationFailed,
            FailureReason::ForwardFailed => Self::ForwardFailed,
        }
    }
}

impl TryFrom<pb::SagaStatus> for SagaStatus {
    /// `SAGA_STATUS_UNSPECIFIED` names no status.
    type Error = ();

    fn try_from(s: pb::SagaStatus) -> Result<Self, ()> {
        match s {
            pb::SagaStatus::Unspecified => Err(()),
            pb::SagaStatus::Running => Ok(Self::Running),
            pb::SagaStatus::Compensating => Ok(Self::Compensating),
            pb::SagaStatus::Completed => Ok(Self::Completed),
            pb::SagaStatus::Compensated => Ok(Self::Compensated),
            pb::SagaStatus::Failed => Ok(Self::Failed),
        }
    }
}

impl From<ResolvedAs> for pb::ResolveOutcome {
    fn from(outcome: ResolvedAs) -> Self {
        match outcome {
            ResolvedAs::Compensated => Self::Compensated,
            ResolvedAs::Succeeded => Self::Succeeded,
        }
    }
}

impl TryFrom<pb::ResolveOutcome> for ResolvedAs {
    /// `RESOLVE_OUTCOME_UNSPECIFIED` names no outcome.
    type Error = ();

    fn try_from(outcome: pb::ResolveOutcome) -> Result<Self, ()> {
        match outcome {
            pb::ResolveOutcome::Unspecified => Err(()),
            pb::ResolveOutcome::Compensated => Ok(Self::Compensated),
            pb::ResolveOutcome::Succeeded => Ok(Self::Succeeded),
        }
    }
}

impl From<&Resolution> for pb::StepResolution {
    fn from(r: &Resolution) -> Self {
        Self {
            outcome: pb::ResolveOutcome::from(r.outcome).into(),
            note: r.note.clone(),
            reason: r.reason.clone(),
            by: r.by.clone().unwrap_or_default(),
            resolved_at: Some(timestamp(r.at)),
        }
    }
}

impl From<ErrorKind> for pb::ErrorKind {
    fn from(k: ErrorKind) -> Self {
        match k {
            ErrorKind::Refusal => Self::Refusal,
            ErrorKind::Transient => Self::Transient,
            ErrorKind::InvalidOutput => Self::InvalidOutput,
        }
    }
}

/// A UTC time from a wire timestamp; `None` when it is out of range.
pub fn to_datetime(t: &Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}

/// A wire timestamp from a UTC time.
fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        // Always below 2e9, so it fits.
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

impl From<&Saga> for pb::Saga {
    fn from(saga: &Saga) -> Self {
        let definition = &saga.definition;
        let steps = saga
            .steps
            .iter()
            .zip(&definition.steps)
            .enumerate()
            .map(|(index, (step, def))| pb::Step {
                index: u32::try_from(index).unwrap_or(u32::MAX),
                name: def.name.clone(),
                participant: def.participant.clone(),
                action: def.action.clone(),
                compensate_action: def.compensate.clone().unwrap_or_default(),
                status: pb::StepStatus::from(step.status).into(),
                attempts: step.attempts,
                compensation_attempts: step.compensation_attempts,
                last_error: step.last_error.clone().unwrap_or_default(),
                started_at: step.started_at.map(timestamp),
                finished_at: step.finished_at.map(timestamp),
                generation: step.generation,
                maybe_applied: step.maybe_applied,
                resolution: step.resolution.as_ref().map(pb::StepResolution::from),
                manual_compensation: def.manual,
            })
            .collect();
        Self {
            saga_id: saga.id.to_string(),
            saga_type: saga.saga_type().to_owned(),
            definition_version: definition.version,
            status: pb::SagaStatus::from(saga.status).into(),
            failure_reason: failure_reason(saga.failure.as_ref()).into(),
            failure_message: failure_message(saga.failure.as_ref()),
            current_step: saga
                .current_step()
                .map(|i| definition.steps[i].name.clone())
                .unwrap_or_default(),
            steps,
            state: Some(json_to_struct(saga.state.clone())),
            idempotency_key: saga.idempotency_key.clone().unwrap_or_default(),
            created_at: Some(timestamp(saga.created_at)),
            updated_at: Some(timestamp(saga.updated_at)),
            finished_at: saga.finished_at.map(timestamp),
            revision: u64::try_from(saga.revision).unwrap_or_default(),
            started_by: saga.started_by.clone().unwrap_or_default(),
            labels: saga.labels.clone().into_iter().collect(),
        }
    }
}

fn failure_reason(failure: Option<&Failure>) -> pb::FailureReason {
    failure.map_or(pb::FailureReason::Unspecified, |f| f.reason.into())
}

fn failure_message(failure: Option<&Failure>) -> String {
    failure.map(|f| f.message.clone()).unwrap_or_default()
}

impl From<&SagaSummary> for pb::SagaSummary {
    fn from(s: &SagaSummary) -> Self {
        Self {
            saga_id: s.id.to_string(),
            saga_type: s.saga_type.clone(),
            definition_version: s.definition_version,
            status: pb::SagaStatus::from(s.status).into(),
            failure_reason: failure_reason(s.failure.as_ref()).into(),
            failure_message: failure_message(s.failure.as_ref()),
            current_step: s.current_step.clone().unwrap_or_default(),
            idempotency_key: s.idempotency_key.clone().unwrap_or_default(),
            created_at: Some(timestamp(s.created_at)),
            updated_at: Some(timestamp(s.updated_at)),
            finished_at: s.finished_at.map(timestamp),
            started_by: s.started_by.clone().unwrap_or_default(),
            labels: s.labels.clone().into_iter().collect(),
        }
    }
}

/// A history event in wire form; `definition` names the steps.
pub fn history_event(recorded: &RecordedEvent, definition: &Definition) -> pb::HistoryEvent {
    let mut out = pb::HistoryEvent {
        sequence: u64::try_from(recorded.sequence).unwrap_or_default(),
        recorded_at: Some(timestamp(recorded.recorded_at)),
        ..pb::HistoryEvent::default()
    };
    let mut on_step = |step: usize, attempt: u32| {
        out.step_index = u32::try_from(step).ok();
        out.step = definition
            .steps
            .get(step)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        out.attempt = attempt;
    };
    let kind = match &recorded.event {
        HistoryEvent::SagaStarted => pb::EventKind::SagaStarted,
        HistoryEvent::StepSucceeded { step, attempt } => {
            on_step(*step, *attempt);
            pb::EventKind::StepSucceeded
        }
        HistoryEvent::StepCompensated { step, attempt } => {
            on_step(*step, *attempt);
            pb::EventKind::StepCompensated
        }
        HistoryEvent::StepFailed {
            step,
            attempt,
            error,
            retry_at,
        }
        | HistoryEvent::CompensationFailed {
            step,
            attempt,
            error,
            retry_at,
        } => {
            on_step(*step, *attempt);
            out.error = error.message.clone();
            out.error_kind = pb::ErrorKind::from(error.kind).into();
            out.retry_at = retry_at.map(timestamp);
            if matches!(recorded.event, HistoryEvent::StepFailed { .. }) {
                pb::EventKind::StepFailed
            } else {
                pb::EventKind::CompensationFailed
            }
        }
        HistoryEvent::CompensationStarted { reason } => {
            out.failure_reason = pb::FailureReason::from(*reason).into();
            pb::EventKind::CompensationStarted
        }
        HistoryEvent::SagaCompleted => pb::EventKind::SagaCompleted,
        HistoryEvent::SagaCompensated => pb::EventKind::SagaCompensated,
        HistoryEvent::SagaParked { reason } => {
            out.failure_reason = pb::FailureReason::from(*reason).into();
            pb::EventKind::SagaParked
        }
        HistoryEvent::SagaAborted { reason, by } => {
            out.operator_reason = reason.clone();
            out.by = by.clone().unwrap_or_default();
            pb::EventKind::SagaAborted
        }
        HistoryEvent::SagaClaimed { owner, epoch } => {
            out.instance = owner.clone();
            out.epoch = u64::try_from(*epoch).unwrap_or_default();
            pb::EventKind::SagaClaimed
        }
        HistoryEvent::SagaQuarantined {
            owner,
            error,
            retry_at,
        } => {
            out.instance = owner.clone();
            out.error = error.clone();
            out.retry_at = Some(timestamp(*retry_at));
            pb::EventKind::SagaQuarantined
        }
        HistoryEvent::SagaRetried { step, reason, by } => {
            on_step(*step, 0);
            out.operator_reason = reason.clone();
            out.by = by.clone().unwrap_or_default();
            pb::EventKind::SagaRetried
        }
        HistoryEvent::StepResolved {
            step,
            outcome,
            note,
            reason,
            by,
        } => {
            on_step(*step, 0);
            out.resolved_as = pb::ResolveOutcome::from(*outcome).into();
            out.note = note.clone();
            out.operator_reason = reason.clone();
            out.by = by.clone().unwrap_or_default();
            pb::EventKind::StepResolved
        }
    };
    out.kind = kind.into();
    out
}
