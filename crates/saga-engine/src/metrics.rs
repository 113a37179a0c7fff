//! [`Metrics`]: the engine's Prometheus metrics, recorded where things happen — a start committed, a
//! terminal status committed, a step attempt answered, a claim, a group commit — and read by sagad's
//! `/metrics` endpoint through [`Metrics::register`].
//!
//! Label values come from definitions and fixed enums only (saga type, step name, direction, outcome,
//! status, failure reason), never from saga ids or payloads, so the number of series stays bounded by
//! the definitions.

use std::collections::HashMap;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use saga_core::{Direction, ErrorKind, Saga, SagaStatus, StepFailure};

/// Saga durations, in seconds: from tens of milliseconds (no-op steps) to an hour (long retries); the
/// 180 s bucket is the slow-saga alert's threshold.
const SAGA_SECONDS: [f64; 18] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0,
    1800.0, 3600.0,
];

/// Participant call durations, in seconds: a millisecond up to the longest step timeouts.
const STEP_SECONDS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// Saga-log commit durations, in seconds.
const COMMIT_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    saga_type: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FinishedLabels {
    saga_type: String,
    status: &'static str,
    /// The failure reason's name; empty for a completed saga.
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    saga_type: String,
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    saga_type: String,
    step: String,
    direction: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    saga_type: String,
    step: String,
    direction: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// What a participant's answer to one step attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered OK.
    Ok,
    /// A definite refusal: not retried.
    Refusal,
    /// Outcome unknown: retried.
    Transient,
}

impl Outcome {
    /// The outcome of a call's result.
    pub(crate) fn of<T>(result: &Result<T, StepFailure>) -> Self {
        match result {
            Ok(_) => Self::Ok,
            Err(e) => match e.kind {
                // An OK answer the saga log cannot store is, like a refusal, never asked again.
                ErrorKind::Refusal | ErrorKind::InvalidOutput => Self::Refusal,
                ErrorKind::Transient => Self::Transient,
            },
        }
    }

    const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refusal => "refusal",
            Self::Transient => "transient",
        }
    }
}

/// Parked and stuck sagas of one type, as the saga log counts them for every instance alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LogGauges {
    /// `FAILED` sagas waiting for an operator.
    pub(crate) parked: i64,
    /// Active sagas claimable for a while that no instance has claimed.
    pub(crate) stuck: i64,
}

/// The engine's metrics. Clones share the same series.
#[derive(Debug, Clone)]
pub struct Metrics {
    sagas_started: Family<TypeLabels, Counter>,
    sagas_finished: Family<FinishedLabels, Counter>,
    saga_duration: HistogramFamily<DurationLabels>,
    step_attempts: Family<AttemptLabels, Counter>,
    step_duration: HistogramFamily<StepLabels>,
    sagas_in_flight: Gauge,
    sagas_parked: Family<TypeLabels, Gauge>,
    sagas_stuck: Family<TypeLabels, Gauge>,
    recovery_claims: Counter,
    lease_takeovers: Counter,
    store_commit_duration: Histogram,
}

impl Metrics {
    /// Empty metrics; every saga type in `saga_types` starts with a zero start count, so a rate over
    /// it exists before the first saga of the type.
    pub(crate) fn new<'a>(saga_types: impl IntoIterator<Item = &'a str>) -> Self {
        let metrics = Self {
            sagas_started: Family::default(),
            sagas_finished: Family::default(),
            saga_duration: Family::new_with_constructor(|| Histogram::new(SAGA_SECONDS)),
            step_attempts: Family::default(),
            step_duration: Family::new_with_constructor(|| Histogram::new(STEP_SECONDS)),
            sagas_in_flight: Gauge::default(),
            sagas_parked: Family::default(),
            sagas_stuck: Family::default(),
            recovery_claims: Counter::default(),
            lease_takeovers: Counter::default(),
            store_commit_duration: Histogram::new(COMMIT_SECONDS),
        };
        for saga_type in saga_types {
            // Creates the series, at zero.
            drop(metrics.sagas_started.get_or_create(&type_labels(saga_type)));
        }
        metrics
    }

    /// Adds every metric to `registry` under its `sagad_` name.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "sagad_sagas_started",
            "Sagas accepted and persisted by this instance",
            self.sagas_started.clone(),
        );
        registry.register(
            "sagad_sagas_finished",
            "Sagas this instance moved to a terminal status (COMPLETED, COMPENSATED or FAILED = parked); \
             a saga retried by an operator and finished again counts again",
            self.sagas_finished.clone(),
        );
        registry.register(
            "sagad_saga_duration_seconds",
            "Time from a saga's start to its terminal status",
            self.saga_duration.clone(),
        );
        registry.register(
            "sagad_step_attempts",
            "Participant answers to step calls (and steps refused for unmet needs), by outcome",
            self.step_attempts.clone(),
        );
        registry.register(
            "sagad_step_duration_seconds",
            "Time of one step call, from asking for a slot to the participant to its answer",
            self.step_duration.clone(),
        );
        registry.register(
            "sagad_sagas_in_flight",
            "Sagas this instance is driving now",
            self.sagas_in_flight.clone(),
        );
        registry.register(
            "sagad_sagas_parked",
            "FAILED sagas waiting for an operator, in the saga log shared by all instances (refreshed \
             every few seconds)",
            self.sagas_parked.clone(),
        );
        registry.register(
            "sagad_sagas_stuck",
            "Active sagas due for over a minute that no instance has claimed, in the saga log shared \
             by all instances (refreshed every few seconds)",
            self.sagas_stuck.clone(),
        );
        registry.register(
            "sagad_recovery_claims",
            "Sagas the recovery loop of this instance claimed (due retries, released or expired leases)",
            self.recovery_claims.clone(),
        );
        registry.register(
            "sagad_lease_takeovers",
            "Claimed sagas whose previous owner's lease had expired without being released (a crashed \
             or stalled instance)",
            self.lease_takeovers.clone(),
        );
        registry.register(
            "sagad_store_commit_duration_seconds",
            "Time of one group-commit statement to the saga log (a batch of starts or of transitions)",
            self.store_commit_duration.clone(),
        );
    }

    /// A saga was persisted as new.
    pub(crate) fn started(&self, saga_type: &str) {
        self.sagas_started
            .get_or_create(&type_labels(saga_type))
            .inc();
    }

    /// A write of `saga` committed; `before` is its status before. Counts the saga as finished when the
    /// write made it terminal.
    pub(crate) fn committed(&self, before: SagaStatus, saga: &Saga) {
        if before.is_terminal() || !saga.status.is_terminal() {
            return;
        }
        let status = saga.status.as_str();
        let reason = saga.failure.as_ref().map_or("", |f| f.reason.as_str());
        let saga_type = saga.saga_type().to_owned();
        if let Some(took) = saga
            .finished_at
            .and_then(|finished| (finished - saga.created_at).to_std().ok())
        {
            self.saga_duration
                .get_or_create(&DurationLabels {
                    saga_type: saga_type.clone(),
                    status,
                })
                .observe(took.as_secs_f64());
        }
        self.sagas_finished
            .get_or_create(&FinishedLabels {
                saga_type,
                status,
                reason,
            })
            .inc();
    }

    /// Step `index` of `saga` was attempted in `direction` and came to `outcome`; `took` is how long
    /// the call took, `None` when no call was made.
    pub(crate) fn step_attempt(
        &self,
        saga: &Saga,
        index: usize,
        direction: Direction,
        outcome: Outcome,
        took: Option<Duration>,
    ) {
        let saga_type = saga.saga_type().to_owned();
        let step = saga.definition.steps[index].name.clone();
        let direction = direction.as_str();
        if let Some(took) = took {
            self.step_duration
                .get_or_create(&StepLabels {
                    saga_type: saga_type.clone(),
                    step: step.clone(),
                    direction,
                })
                .observe(took.as_secs_f64());
        }
        self.step_attempts
            .get_or_create(&AttemptLabels {
                saga_type,
                step,
                direction,
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Counts one saga in flight until the guard is dropped.
    pub(crate) fn in_flight(&self) -> InFlight {
        self.sagas_in_flight.inc();
        InFlight(self.sagas_in_flight.clone())
    }

    /// The recovery loop claimed `claimed` sagas, `taken_over` of them from an expired lease.
    pub(crate) fn claimed(&self, claimed: usize, taken_over: usize) {
        self.recovery_claims.inc_by(claimed as u64);
        self.lease_takeovers.inc_by(taken_over as u64);
    }

    /// A group-commit statement took `took`.
    pub(crate) fn commit_took(&self, took: Duration) {
        self.store_commit_duration.observe(took.as_secs_f64());
    }

    /// Sets the parked and stuck gauges from a count of the saga log; a type missing from `counts`
    /// has none.
    pub(crate) fn set_log_gauges(&self, counts: &HashMap<String, LogGauges>) {
        for (saga_type, gauges) in counts {
            let labels = type_labels(saga_type);
            self.sagas_parked.get_or_create(&labels).set(gauges.parked);
            self.sagas_stuck.get_or_create(&labels).set(gauges.stuck);
        }
    }
}

/// One saga being driven; dropping it takes it off `sagad_sagas_in_flight`.
#[derive(Debug)]
pub(crate) struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn type_labels(saga_type: &str) -> TypeLabels {
    TypeLabels {
        saga_type: saga_type.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Arc;

    use prometheus_client::encoding::prometheus_text::encode;
    use saga_core::saga::Failure;
    use saga_core::{Definition, FailureReason, JsonMap};

    use super::*;

    fn saga() -> Saga {
        let participants: HashSet<String> = ["p".to_owned()].into();
        let yaml =
            "name: order\nversion: 1\nsteps:\n  - {name: PAY, participant: p, action: Pay}\n";
        let definition = Arc::new(Definition::from_yaml(yaml, &participants).expect("valid"));
        Saga::new(definition, JsonMap::new(), None, chrono::Utc::now())
    }

    fn scrape(metrics: &Metrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encode");
        text
    }

    #[test]
    fn a_terminal_commit_counts_once_with_its_status_reason_and_duration() {
        let metrics = Metrics::new(["order"]);
        let mut saga = saga();
        saga.status = SagaStatus::Compensated;
        saga.failure = Some(Failure {
            reason: FailureReason::StepFailed,
            message: "PAY refused".to_owned(),
        });
        saga.finished_at = Some(saga.created_at + chrono::Duration::milliseconds(300));
        metrics.committed(SagaStatus::Compensating, &saga);
        // Already terminal before: an operator's note on a finished saga is not a second finish.
        metrics.committed(SagaStatus::Compensated, &saga);
        let text = scrape(&metrics);
        assert!(
            text.contains(
                "sagad_sagas_finished_total{saga_type=\"order\",status=\"COMPENSATED\",reason=\"STEP_FAILED\"} 1\n"
            ),
            "{text}"
        );
        for (le, count) in [("0.25", 0), ("0.5", 1)] {
            let bucket = format!(
                "sagad_saga_duration_seconds_bucket{{saga_type=\"order\",status=\"COMPENSATED\",le=\"{le}\"}} {count}\n"
            );
            assert!(text.contains(&bucket), "{bucket} in {text}");
        }
        assert!(
            text.contains(
                "sagad_saga_duration_seconds_count{saga_type=\"order\",status=\"COMPENSATED\"} 1\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_non_terminal_commit_counts_nothing_and_types_start_at_zero() {
        let metrics = Metrics::new(["order", "refund"]);
        metrics.committed(SagaStatus::Running, &saga());
        let text = scrape(&metrics);
        assert!(!text.contains("sagad_sagas_finished_total{"), "{text}");
        assert!(
            text.contains("sagad_sagas_started_total{saga_type=\"refund\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn step_attempts_are_counted_by_outcome_and_only_calls_are_timed() {
        let metrics = Metrics::new([]);
        let saga = saga();
        let refused: Result<(), StepFailure> = Err(StepFailure {
            kind: ErrorKind::Refusal,
            message: "no".to_owned(),
        });
        let lost: Result<(), StepFailure> = Err(StepFailure {
            kind: ErrorKind::Transient,
            message: "gone".to_owned(),
        });
        let took = Some(Duration::from_millis(3));
        metrics.step_attempt(&saga, 0, Direction::Execute, Outcome::of(&lost), took);
        metrics.step_attempt(
            &saga,
            0,
            Direction::Execute,
            Outcome::of(&Ok::<_, StepFailure>(())),
            took,
        );
        metrics.step_attempt(&saga, 0, Direction::Execute, Outcome::of(&refused), None);
        let text = scrape(&metrics);
        for outcome in ["ok", "refusal", "transient"] {
            let line = format!(
                "sagad_step_attempts_total{{saga_type=\"order\",step=\"PAY\",direction=\"execute\",outcome=\"{outcome}\"}} 1\n"
            );
            assert!(text.contains(&line), "{line} in {text}");
        }
        assert!(
            text.contains(
                "sagad_step_duration_seconds_count{saga_type=\"order\",step=\"PAY\",direction=\"execute\"} 2\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_in_flight_gauge_follows_its_guards() {
        let metrics = Metrics::new([]);
        let first = metrics.in_flight();
        let second = metrics.in_flight();
        drop(first);
        assert!(scrape(&metrics).contains("sagad_sagas_in_flight 1\n"));
        drop(second);
        assert!(scrape(&metrics).contains("sagad_sagas_in_flight 0\n"));
    }
}
