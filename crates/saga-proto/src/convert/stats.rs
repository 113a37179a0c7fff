//! `GetStats`' answer in wire form.

use std::time::Duration;

use saga_core::{Counts, FailureCount, Percentiles, Stats, Stuck, StuckSaga};

use super::timestamp;
use crate::v1 as pb;

impl From<&Stats> for pb::GetStatsResponse {
    fn from(stats: &Stats) -> Self {
        Self {
            since: Some(timestamp(stats.since)),
            until: Some(timestamp(stats.until)),
            total: Some(pb::SagaStats::from(&stats.total)),
            by_type: stats.by_type.iter().map(pb::SagaStats::from).collect(),
            failure_reasons: stats
                .failure_reasons
                .iter()
                .map(pb::FailureReasonCount::from)
                .collect(),
            stuck: stats
                .stuck
                .iter()
                .map(|stuck| stuck_saga(stuck, stats.until))
                .collect(),
            stuck_count: stats.stuck_count,
        }
    }
}

impl From<&Counts> for pb::SagaStats {
    fn from(counts: &Counts) -> Self {
        Self {
            saga_type: counts.saga_type.clone().unwrap_or_default(),
            started: counts.started,
            completed: counts.completed,
            compensated: counts.compensated,
            failed: counts.failed,
            running: counts.running,
            compensating: counts.compensating,
            parked: counts.parked,
            success_rate: counts.success_rate(),
            compensation_rate: counts.compensation_rate(),
            failure_rate: counts.failure_rate(),
            duration: counts.durations.as_ref().map(pb::DurationPercentiles::from),
        }
    }
}

impl From<&Percentiles> for pb::DurationPercentiles {
    fn from(p: &Percentiles) -> Self {
        Self {
            p50: Some(duration(p.p50)),
            p95: Some(duration(p.p95)),
            p99: Some(duration(p.p99)),
        }
    }
}

impl From<&FailureCount> for pb::FailureReasonCount {
    fn from(f: &FailureCount) -> Self {
        Self {
            saga_type: f.saga_type.clone(),
            reason: pb::FailureReason::from(f.reason).into(),
            step: f.step.clone().unwrap_or_default(),
            count: f.count,
            sample_error: f.sample_error.clone(),
            last_finished_at: Some(timestamp(f.last_finished_at)),
            sample_saga_id: f.sample_saga_id.to_string(),
        }
    }
}

/// A stuck saga in wire form, its age taken at `now`.
fn stuck_saga(stuck: &StuckSaga, now: chrono::DateTime<chrono::Utc>) -> pb::StuckSaga {
    let (reason, claimable_since) = match stuck.why {
        Stuck::RunningTooLong => (pb::StuckReason::RunningTooLong, None),
        Stuck::Unclaimed { since } => (pb::StuckReason::Unclaimed, Some(timestamp(since))),
    };
    pb::StuckSaga {
        saga_id: stuck.id.to_string(),
        saga_type: stuck.saga_type.clone(),
        status: pb::SagaStatus::from(stuck.status).into(),
        current_step: stuck.current_step.clone().unwrap_or_default(),
        reason: reason.into(),
        age: Some(duration(
            (now - stuck.created_at).to_std().unwrap_or_default(),
        )),
        created_at: Some(timestamp(stuck.created_at)),
        owner: stuck.owner.clone().unwrap_or_default(),
        claimable_since,
    }
}

/// A wire duration; the durations here (ages, saga durations) are far inside its range.
fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or_default()
}
