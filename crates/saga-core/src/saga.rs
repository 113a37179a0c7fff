//! A saga instance as the saga log stores it: identity, status, the definition snapshot it runs, its
//! accumulated state and the state of every step.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Definition, FailureReason, SagaStatus, StepStatus};

/// A JSON object: saga payloads, state and step outputs.
pub type JsonMap = serde_json::Map<String, serde_json::Value>;

/// A saga's labels: business keys its caller knows it by (`orderId` → `123`), set at start.
pub type Labels = BTreeMap<String, String>;

/// A saga's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SagaId(pub Uuid);

impl SagaId {
    /// A fresh, time-ordered id (UUIDv7), so ids sort roughly by creation time and index well.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for SagaId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SagaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for SagaId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Which way a step call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The forward action.
    Execute,
    /// The compensating action.
    Compensate,
}

impl Direction {
    /// Lower-case text form, used in idempotency keys.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Execute => "execute",
            Self::Compensate => "compensate",
        }
    }
}

/// A saga and everything the coordinator needs to continue it.
#[derive(Debug, Clone, PartialEq)]
pub struct Saga {
    /// The saga's id.
    pub id: SagaId,
    /// The definition snapshot the saga started with.
    pub definition: Arc<Definition>,
    /// Life-cycle status.
    pub status: SagaStatus,
    /// Why the saga did not (or will not) complete.
    pub failure: Option<Failure>,
    /// Start payload merged with every succeeded step's output.
    pub state: JsonMap,
    /// One entry per definition step, same order.
    pub steps: Vec<Step>,
    /// The caller's idempotency key.
    pub idempotency_key: Option<String>,
    /// The authenticated principal that started the saga; `None` when sagad runs without authentication.
    pub started_by: Option<String>,
    /// Business keys given at start, by which `ListSagas` finds the saga; never change afterwards.
    pub labels: Labels,
    /// The saga's W3C trace context (`traceparent`), set at start: every participant call, on whichever
    /// instance drives the saga, continues this trace. The core only carries it.
    pub traceparent: Option<String>,
    /// The earliest time the next call may be made (set while waiting to retry).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Whole-saga deadline.
    pub deadline_at: Option<DateTime<Utc>>,
    /// Optimistic-concurrency revision: every write to the saga log requires the revision it read.
    pub revision: i64,
    /// Lease epoch the reader holds: it increases on every takeover, and a write names the epoch it holds
    /// so that an instance that lost the saga cannot overwrite its successor. The state machine ignores it.
    pub epoch: i64,
    /// When the saga was accepted.
    pub created_at: DateTime<Utc>,
    /// When the saga log last changed.
    pub updated_at: DateTime<Utc>,
    /// When the saga reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A failure reason with the message that explains it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The reason code.
    pub reason: FailureReason,
    /// What happened, for a person.
    pub message: String,
}

/// What has happened to one step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Step {
    /// Status.
    pub status: StepStatus,
    /// Forward attempts made.
    pub attempts: u32,
    /// Compensation attempts made.
    pub compensation_attempts: u32,
    /// The last error a participant answered.
    pub last_error: Option<String>,
    /// The output of the successful forward call.
    pub output: Option<JsonMap>,
    /// When the first forward attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the step reached a settled status.
    pub finished_at: Option<DateTime<Utc>>,
    /// Operator retries of this step so far (`RetrySaga`). Sent with every call: a participant that
    /// recorded a refusal in an earlier generation runs the step again.
    pub generation: u32,
    /// An attempt of this step may have taken effect without its OK being recorded (a transient error,
    /// a call in flight when the saga turned, an output that could not be recorded). Kept across
    /// operator retries, so a later refusal still counts the step as possibly done.
    pub maybe_applied: bool,
    /// Set when an operator did the step's parked work by hand (`ResolveSaga`): who, when, why, what.
    pub resolution: Option<Resolution>,
}

/// What an operator did by hand for a step the saga parked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    /// What the step now counts as.
    pub outcome: ResolvedAs,
    /// What was done, in the operator's words (e.g. "reversed at the bank by phone, ref 4711").
    pub note: String,
    /// Why, in the operator's words.
    pub reason: String,
    /// The authenticated principal who resolved it; `None` when sagad runs without authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When it was recorded.
    pub at: DateTime<Utc>,
}

/// What an operator says a parked step's work came to, done by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResolvedAs {
    /// The compensation was done by hand (a saga parked `COMPENSATION_FAILED`).
    Compensated,
    /// The forward action was done by hand (a saga parked `FORWARD_FAILED`).
    Succeeded,
}

impl ResolvedAs {
    /// The step status the outcome stands for.
    pub const fn step_status(self) -> StepStatus {
        match self {
            Self::Compensated => StepStatus::Compensated,
            Self::Succeeded => StepStatus::Succeeded,
        }
    }
}

// Declared by hand: `StepStatus` comes from a macro shared with enums that have no default.
#[allow(clippy::derivable_impls)]
impl Default for StepStatus {
    fn default() -> Self {
        Self::Pending
    }
}

impl Saga {
    /// A new saga about to be persisted by `StartSaga`.
    pub fn new(
        definition: Arc<Definition>,
        payload: JsonMap,
        idempotency_key: Option<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let deadline_at = definition
            .timeout
            .and_then(|t| chrono::Duration::from_std(t).ok())
            .map(|t| now + t);
        Self {
            id: SagaId::new(),
            steps: vec![Step::default(); definition.steps.len()],
            definition,
            status: SagaStatus::Running,
            failure: None,
            state: payload,
            idempotency_key,
            started_by: None,
            labels: Labels::new(),
            traceparent: None,
            next_attempt_at: None,
            deadline_at,
            revision: 0,
            epoch: 0,
            created_at: now,
            updated_at: now,
            finished_at: None,
        }
    }

    /// The saga type (definition name).
    pub fn saga_type(&self) -> &str {
        &self.definition.name
    }

    /// Whether the pivot step has succeeded, after which the saga only moves forward.
    pub fn past_pivot(&self) -> bool {
        self.definition
            .pivot_index()
            .is_some_and(|p| self.steps[p].status == StepStatus::Succeeded)
    }

    /// Whether the saga ran forward up to its pivot: the pivot is being called (or may have been, by an
    /// owner that died) or succeeded. From then on its outcome may be in effect, so the saga only moves
    /// forward.
    pub fn reached_pivot(&self) -> bool {
        self.definition.pivot_index().is_some_and(|p| {
            self.steps[..p]
                .iter()
                .all(|s| s.status == StepStatus::Succeeded)
        })
    }

    /// The whole-saga deadline, while it applies: only running forward before the pivot is reached,
    /// since from there the saga must move forward and a compensation must finish whatever the time.
    pub fn active_deadline(&self) -> Option<DateTime<Utc>> {
        self.deadline_at
            .filter(|_| self.status == SagaStatus::Running && !self.reached_pivot())
    }

    /// The step being executed (while running) or compensated (while compensating).
    pub fn current_step(&self) -> Option<usize> {
        match self.status {
            SagaStatus::Running => self
                .steps
                .iter()
                .position(|s| s.status != StepStatus::Succeeded),
            SagaStatus::Compensating => self.next_to_compensate(),
            _ => None,
        }
    }

    /// The step a parked (`FAILED`) saga stopped at, for an operator to retry or resolve: the compensation
    /// that could not be made, or the forward step that failed for good. `None` unless parked.
    pub fn parked_step(&self) -> Option<usize> {
        match self.failure.as_ref().map(|f| f.reason) {
            _ if self.status != SagaStatus::Failed => None,
            Some(FailureReason::CompensationFailed) => self.next_to_compensate(),
            Some(FailureReason::ForwardFailed) => self
                .steps
                .iter()
                .position(|s| s.status != StepStatus::Succeeded),
            _ => None,
        }
    }

    /// The highest step that still has something to undo.
    pub(crate) fn next_to_compensate(&self) -> Option<usize> {
        (0..self.steps.len())
            .rev()
            .find(|&i| self.needs_compensation(i))
    }

    fn needs_compensation(&self, index: usize) -> bool {
        self.definition.steps[index].compensate.is_some()
            && matches!(
                self.steps[index].status,
                StepStatus::Succeeded | StepStatus::Compensating
            )
    }

    /// The idempotency key for one direction of one step: stable across retries, crashes and replicas.
    pub fn idempotency_key_for(&self, index: usize, direction: Direction) -> String {
        format!(
            "{}:{}:{}",
            self.id,
            self.definition.steps[index].name,
            direction.as_str()
        )
    }
}
