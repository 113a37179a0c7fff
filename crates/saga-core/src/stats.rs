//! Statistics over the saga log (`GetStats`): what the sagas of a time window came to, why the failed
//! ones failed, and which active sagas are stuck.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{FailureReason, SagaId, SagaStatus};

/// What to compute statistics over, with every default already applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    /// Sagas that finished (or started) this long ago or less.
    pub window: Duration,
    /// Only sagas of this type.
    pub saga_type: Option<String>,
    /// An active saga started this long ago or more is stuck.
    pub stuck_after: Duration,
    /// An active saga claimable this long ago or more, and not claimed, is stuck.
    pub unclaimed_after: Duration,
    /// At most this many failure reasons and stuck sagas.
    pub limit: u32,
}

/// The statistics, all read from one snapshot of the saga log.
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// Start of the window (`until` minus the window).
    pub since: DateTime<Utc>,
    /// When the snapshot was taken, by the saga log's clock.
    pub until: DateTime<Utc>,
    /// Every saga of the query; `saga_type` is `None`.
    pub total: Counts,
    /// One entry per saga type with anything to count, ordered by type.
    pub by_type: Vec<Counts>,
    /// The most frequent failure reasons of the window's finished sagas, most frequent first.
    pub failure_reasons: Vec<FailureCount>,
    /// Stuck sagas, unclaimed ones first, then oldest first; at most the query's limit.
    pub stuck: Vec<StuckSaga>,
    /// How many sagas are stuck in all.
    pub stuck_count: u64,
}

/// What the sagas of one type (or all of them) came to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// The type; `None` for the total.
    pub saga_type: Option<String>,
    /// Started in the window.
    pub started: u64,
    /// Finished `COMPLETED` in the window.
    pub completed: u64,
    /// Finished `COMPENSATED` in the window.
    pub compensated: u64,
    /// Parked in `FAILED` in the window (and still parked).
    pub failed: u64,
    /// `RUNNING` now.
    pub running: u64,
    /// `COMPENSATING` now.
    pub compensating: u64,
    /// `FAILED` now, whenever they parked.
    pub parked: u64,
    /// Durations of the sagas that finished in the window; `None` when none did.
    pub durations: Option<Percentiles>,
}

impl Counts {
    /// Sagas that finished in the window, whatever their outcome.
    pub fn finished(&self) -> u64 {
        self.completed + self.compensated + self.failed
    }

    /// The share of the window's finished sagas that completed; 0 when none finished.
    pub fn success_rate(&self) -> f64 {
        self.share(self.completed)
    }

    /// The share of the window's finished sagas that were compensated; 0 when none finished.
    pub fn compensation_rate(&self) -> f64 {
        self.share(self.compensated)
    }

    /// The share of the window's finished sagas that parked in `FAILED`; 0 when none finished.
    pub fn failure_rate(&self) -> f64 {
        self.share(self.failed)
    }

    /// Adds `other`'s counts (not its durations: percentiles do not add up).
    pub fn add_counts(&mut self, other: &Self) {
        self.started += other.started;
        self.completed += other.completed;
        self.compensated += other.compensated;
        self.failed += other.failed;
        self.running += other.running;
        self.compensating += other.compensating;
        self.parked += other.parked;
    }

    fn share(&self, part: u64) -> f64 {
        match self.finished() {
            0 => 0.0,
            // Counts stay far below 2^52, where f64 is exact.
            finished => part as f64 / finished as f64,
        }
    }
}

/// Continuous percentiles of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// The median.
    pub p50: Duration,
    /// The 95th percentile.
    pub p95: Duration,
    /// The 99th percentile.
    pub p99: Duration,
}

/// How many of the window's finished sagas did not complete for one reason at one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureCount {
    /// Their type.
    pub saga_type: String,
    /// Why they did not complete.
    pub reason: FailureReason,
    /// The step they failed at; `None` when they attempted none.
    pub step: Option<String>,
    /// How many sagas.
    pub count: u64,
    /// The failure message of the latest of them.
    pub sample_error: String,
    /// The latest of them.
    pub sample_saga_id: SagaId,
    /// When the latest of them finished.
    pub last_finished_at: DateTime<Utc>,
}

/// An active saga nobody may be moving along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StuckSaga {
    /// The saga.
    pub id: SagaId,
    /// Its type.
    pub saga_type: String,
    /// `RUNNING` or `COMPENSATING`.
    pub status: SagaStatus,
    /// The step being executed or compensated.
    pub current_step: Option<String>,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// The instance holding its lease, if any.
    pub owner: Option<String>,
    /// Why it is stuck.
    pub why: Stuck,
}

/// Why an active saga counts as stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stuck {
    /// Active for longer than the query's `stuck_after`.
    RunningTooLong,
    /// Claimable since this time (lease expired or released, retry time passed), longer than the
    /// query's `unclaimed_after`, and no instance claimed it.
    Unclaimed {
        /// Since when any instance could have claimed it.
        since: DateTime<Utc>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_shares_of_the_finished_sagas_and_zero_when_none_finished() {
        let counts = Counts {
            completed: 6,
            compensated: 3,
            failed: 1,
            running: 100,
            parked: 7,
            ..Counts::default()
        };
        assert_eq!(counts.finished(), 10);
        assert!((counts.success_rate() - 0.6).abs() < 1e-12);
        assert!((counts.compensation_rate() - 0.3).abs() < 1e-12);
        assert!((counts.failure_rate() - 0.1).abs() < 1e-12);
        let idle = Counts {
            running: 4,
            ..Counts::default()
        };
        assert_eq!(
            (
                idle.success_rate(),
                idle.compensation_rate(),
                idle.failure_rate()
            ),
            (0.0, 0.0, 0.0)
        );
    }

    #[test]
    fn adding_counts_sums_every_count_and_keeps_the_durations() {
        let p = Duration::from_secs;
        let mut total = Counts {
            durations: Some(Percentiles {
                p50: p(1),
                p95: p(2),
                p99: p(3),
            }),
            ..Counts::default()
        };
        let one = Counts {
            saga_type: Some("a".to_owned()),
            started: 1,
            completed: 2,
            compensated: 3,
            failed: 4,
            running: 5,
            compensating: 6,
            parked: 7,
            durations: None,
        };
        total.add_counts(&one);
        total.add_counts(&one);
        assert_eq!(
            (
                total.started,
                total.completed,
                total.compensated,
                total.failed,
                total.running,
                total.compensating,
                total.parked
            ),
            (2, 4, 6, 8, 10, 12, 14)
        );
        assert_eq!(total.saga_type, None);
        assert_eq!(total.durations.map(|d| d.p99), Some(p(3)));
    }
}
