//! Domain → wire conversions for the coordinator API. Generated types stop here: the rest of sagad works
//! with `saga_core` types.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use saga_core::{FailureReason, Saga, SagaStatus, StepStatus};

use crate::json_to_struct;
use crate::v1 as pb;

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
            })
            .collect();
        Self {
            saga_id: saga.id.to_string(),
            saga_type: saga.saga_type().to_owned(),
            definition_version: definition.version,
            status: pb::SagaStatus::from(saga.status).into(),
            failure_reason: saga
                .failure
                .as_ref()
                .map_or(pb::FailureReason::Unspecified, |f| f.reason.into())
                .into(),
            failure_message: saga
                .failure
                .as_ref()
                .map(|f| f.message.clone())
                .unwrap_or_default(),
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
        }
    }
}
