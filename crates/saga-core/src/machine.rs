//! The saga state machine as two pure functions.
//!
//! - [`next_command`] reads a saga and the current time and says what the executor must do next.
//! - [`apply`] folds the outcome of that command into a new saga and the history events to append.
//!
//! The executor's loop is: command → call the participant → `apply` → persist the transition (one
//! commit) → next command. Keeping the rules here, free of IO, lets them be tested exhaustively.
//!
//! Rules (DESIGN.md §1–2):
//! - A refusal is definite: no retry; the steps before it are compensated in reverse order.
//! - A transient error is retried with backoff; when retries run out the failed step is compensated too,
//!   because it may have taken effect.
//! - Once the pivot is reached (it is being called, or may have been by an owner that died) the saga
//!   only moves forward: the deadline no longer applies and operators cannot abort. A later step that
//!   fails for good parks the saga in `FAILED` (`FORWARD_FAILED`). A pivot whose outcome stays unknown
//!   parks it as well, since neither direction is safe without an operator.
//! - A compensation never refuses: every error is retried under the compensation policy; when it runs
//!   out the saga parks in `FAILED` (`COMPENSATION_FAILED`).
//! - Past the whole-saga deadline a saga that has not reached its pivot is compensated (`TIMED_OUT`).
//! - Attempts are recorded only after a call returns, so the step a saga was on when it turns to
//!   compensation (deadline, abort) may have run — by this owner or by one that died — and is
//!   compensated. Behind the participant's barrier that is a no-op if it never ran, and it fences a late
//!   delivery of the action.
//! - An operator may abort a running saga that has not reached its pivot (compensate now, `ABORTED`),
//!   and retry a parked one from the step where it stopped, with a fresh attempt budget and a new
//!   delivery generation (a refusal recorded by the participant is not replayed to it).
//! - A compensation marked `manual` is never called: reaching it parks the saga (`COMPENSATION_FAILED`).
//!   An operator who did a parked step's work by hand resolves it — a stuck compensation as
//!   `COMPENSATED`, a stuck forward step as `SUCCEEDED` — and the saga goes on from there: the
//!   compensations before it run, or the steps after it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::saga::Failure;
use crate::{
    FailureReason, JsonMap, Resolution, ResolvedAs, Saga, SagaStatus, StepStatus, backoff,
};

/// What the executor must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Call the forward action of step `index`; this is attempt number `attempt`.
    Execute {
        /// Step index.
        index: usize,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// Call the compensating action of step `index`; this is attempt number `attempt`.
    Compensate {
        /// Step index.
        index: usize,
        /// Attempt number, from 1.
        attempt: u32,
    },
    /// Nothing to do before this time (a retry is scheduled).
    WaitUntil(DateTime<Utc>),
    /// The deadline has passed: apply [`Input::DeadlinePassed`].
    Expire,
    /// The saga is terminal.
    Done,
}

/// How a participant's error is to be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A definite business refusal: the step did not happen and will not.
    Refusal,
    /// The outcome is unknown: the step may or may not have happened.
    Transient,
    /// The participant answered OK, but with an output the saga log cannot record (e.g. a NUL character
    /// in a string): the step happened, and asking again would only replay the same answer. Never a
    /// classification of a gRPC code.
    InvalidOutput,
}

/// A failed step call as the coordinator saw it: how the contract classifies it and what was said. (What a
/// participant's handler returns is the SDK's `StepError`; this is its other end.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// Refusal or transient.
    pub kind: ErrorKind,
    /// What the participant (or the transport) said.
    pub message: String,
}

/// An outcome to fold into a saga.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The forward call of step `index` returned.
    Executed {
        /// Step index.
        index: usize,
        /// The attempt number the command carried.
        attempt: u32,
        /// When the call started.
        started_at: DateTime<Utc>,
        /// The output, or the error.
        result: Result<JsonMap, StepFailure>,
    },
    /// The compensating call of step `index` returned.
    Compensated {
        /// Step index.
        index: usize,
        /// The attempt number the command carried.
        attempt: u32,
        /// OK, or the error (always retried).
        result: Result<(), StepFailure>,
    },
    /// The whole-saga deadline passed.
    DeadlinePassed,
    /// An operator asked to stop forward progress and compensate.
    Abort {
        /// Why, in the operator's words; kept in the history.
        reason: String,
        /// The authenticated principal who asked; `None` when sagad runs without authentication.
        by: Option<String>,
    },
    /// An operator asked to resume a parked (`FAILED`) saga where it stopped.
    Retry {
        /// Why, in the operator's words; kept in the history.
        reason: String,
        /// The authenticated principal who asked; `None` when sagad runs without authentication.
        by: Option<String>,
    },
    /// An operator did the work of the step a parked (`FAILED`) saga stopped at by hand, and asks it to
    /// go on from there.
    Resolve {
        /// The step's name; it must be the one the saga is parked at.
        step: String,
        /// What the step now counts as: `Compensated` for a stuck compensation, `Succeeded` for a
        /// stuck forward step.
        outcome: ResolvedAs,
        /// What was done, in the operator's words.
        note: String,
        /// Why, in the operator's words.
        reason: String,
        /// The authenticated principal who asked; `None` when sagad runs without authentication.
        by: Option<String>,
    },
}

/// One entry of a saga's append-only history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HistoryEvent {
    /// `StartSaga` accepted the saga.
    SagaStarted,
    /// A forward call answered OK.
    StepSucceeded {
        /// Step index.
        step: usize,
        /// Attempt number.
        attempt: u32,
    },
    /// A forward call failed.
    StepFailed {
        /// Step index.
        step: usize,
        /// Attempt number.
        attempt: u32,
        /// The error.
        error: StepFailure,
        /// When it will be retried; `None` when it will not.
        retry_at: Option<DateTime<Utc>>,
    },
    /// The saga turned to compensation.
    CompensationStarted {
        /// Why.
        reason: FailureReason,
    },
    /// A compensating call answered OK.
    StepCompensated {
        /// Step index.
        step: usize,
        /// Attempt number.
        attempt: u32,
    },
    /// A compensating call failed.
    CompensationFailed {
        /// Step index.
        step: usize,
        /// Attempt number.
        attempt: u32,
        /// The error.
        error: StepFailure,
        /// When it will be retried; `None` when attempts ran out.
        retry_at: Option<DateTime<Utc>>,
    },
    /// Every step succeeded.
    SagaCompleted,
    /// Every completed step was compensated.
    SagaCompensated,
    /// The saga parked in `FAILED` for an operator.
    SagaParked {
        /// Why.
        reason: FailureReason,
    },
    /// An operator aborted the saga.
    SagaAborted {
        /// The operator's reason.
        reason: String,
        /// The principal who aborted it; absent in events written before authentication existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// An instance claimed the saga to drive it: its previous owner died, stopped, or released it for a
    /// long wait. Written by the saga log's claim, never by [`apply`].
    SagaClaimed {
        /// The claiming instance.
        owner: String,
        /// The lease epoch it holds.
        epoch: i64,
    },
    /// An instance could not decode the saga's stored row (e.g. a definition snapshot written by a newer
    /// version during a rolling upgrade) and set it aside until `retry_at`, when any instance may claim
    /// it again. Written by the saga log, never by [`apply`].
    SagaQuarantined {
        /// The instance that could not decode it.
        owner: String,
        /// What could not be decoded.
        error: String,
        /// When it may be claimed again.
        retry_at: DateTime<Utc>,
    },
    /// An operator resumed a parked saga at `step`, with a fresh attempt budget.
    SagaRetried {
        /// The step that runs again.
        step: usize,
        /// The operator's reason.
        reason: String,
        /// The principal who resumed it; absent in events written before authentication existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// An operator did the work of the step the saga was parked at by hand (`ResolveSaga`).
    StepResolved {
        /// The step.
        step: usize,
        /// What it now counts as.
        outcome: ResolvedAs,
        /// What was done.
        note: String,
        /// The operator's reason.
        reason: String,
        /// The principal who resolved it; `None` when sagad runs without authentication.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
}

impl HistoryEvent {
    /// The event's kind as stored in the `saga_events.kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SagaStarted => "SAGA_STARTED",
            Self::StepSucceeded { .. } => "STEP_SUCCEEDED",
            Self::StepFailed { .. } => "STEP_FAILED",
            Self::CompensationStarted { .. } => "COMPENSATION_STARTED",
            Self::StepCompensated { .. } => "STEP_COMPENSATED",
            Self::CompensationFailed { .. } => "COMPENSATION_FAILED",
            Self::SagaCompleted => "SAGA_COMPLETED",
            Self::SagaCompensated => "SAGA_COMPENSATED",
            Self::SagaParked { .. } => "SAGA_PARKED",
            Self::SagaAborted { .. } => "SAGA_ABORTED",
            Self::SagaRetried { .. } => "SAGA_RETRIED",
            Self::SagaClaimed { .. } => "SAGA_CLAIMED",
            Self::SagaQuarantined { .. } => "SAGA_QUARANTINED",
            Self::StepResolved { .. } => "STEP_RESOLVED",
        }
    }
}

/// The result of [`apply`]: the new saga and what to append to its history, committed together.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The saga after the input.
    pub saga: Saga,
    /// Indexes of the steps that changed, in order: the rows the store must write.
    pub changed_steps: Vec<usize>,
    /// Events to append, in order.
    pub events: Vec<HistoryEvent>,
    /// The step output this transition merged into the state (its top-level keys replace the state's),
    /// so the store can write the change instead of the whole state.
    pub merged: Option<JsonMap>,
}

/// A command or input that does not fit the saga's current state. The variants say which rule refused it,
/// for the API to map; the text is written for the person who sent the input (an operator's abort of a
/// finished saga lands here).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// A call's outcome that is not the answer the saga waits for (a stale or duplicate outcome).
    #[error("{answered:?} does not answer {next:?}")]
    NotAwaited {
        /// The command the outcome answers.
        answered: Command,
        /// What the saga does next instead.
        next: Command,
    },
    /// Abort at or past the pivot: the saga can only move forward.
    #[error("{}", pivot_text(pivot, *passed))]
    PivotReached {
        /// The pivot step's name.
        pivot: String,
        /// Whether the pivot succeeded (else its outcome is unknown).
        passed: bool,
    },
    /// Abort of a saga that is already compensating.
    #[error("saga is already COMPENSATING")]
    AlreadyCompensating,
    /// Abort of a parked saga.
    #[error("saga is FAILED (parked); fix the cause and use RetrySaga to resume it")]
    AbortParked,
    /// Abort of a finished saga.
    #[error("saga is {0}; there is nothing left to abort")]
    AlreadyFinished(SagaStatus),
    /// Retry or resolve of a saga that is not parked.
    #[error("saga is {status}; only a FAILED (parked) saga can be {verb}")]
    NotParked {
        /// Its status.
        status: SagaStatus,
        /// `retried` or `resolved`.
        verb: &'static str,
    },
    /// A parked saga whose log row leaves nothing to resume (only a hand-edited row gets here).
    #[error("parked saga has no step left to {0}")]
    NothingToResume(&'static str),
    /// Retry of a saga parked at a compensation that only a person can make.
    #[error(
        "the compensation of {0} is manual: RetrySaga cannot run it; do it by hand, then \
         ResolveSaga with outcome COMPENSATED"
    )]
    ManualCompensation(String),
    /// A parked saga whose failure reason the operator verb does not handle.
    #[error("saga parked for {reason:?}, which {verb} does not know how to resume")]
    UnresumableReason {
        /// The failure reason on record.
        reason: Option<FailureReason>,
        /// `RetrySaga` or `ResolveSaga`.
        verb: &'static str,
    },
    /// Resolve naming a step the saga does not have.
    #[error("saga has no step of that name (its steps: {})", .steps.join(", "))]
    NoSuchStep {
        /// The saga's step names.
        steps: Vec<String>,
    },
    /// Resolve naming another step than the one the saga is parked at.
    #[error("saga is parked at step {parked}, not {named}: resolve {parked}")]
    NotParkedAtStep {
        /// Where it is parked.
        parked: String,
        /// The step named.
        named: String,
    },
    /// Resolve with an outcome the parked step cannot have.
    #[error("saga is parked at step {step} because {why}: it can only be resolved as {accepted}")]
    WrongOutcome {
        /// The parked step.
        step: String,
        /// Why it is parked.
        why: &'static str,
        /// The one outcome accepted.
        accepted: StepStatus,
    },
}

fn pivot_text(pivot: &str, passed: bool) -> String {
    if passed {
        format!(
            "saga passed its pivot step {pivot} and can only move forward; it cannot be aborted"
        )
    } else {
        format!(
            "saga is at its pivot step {pivot}, whose outcome may already be in effect; it can only \
             move forward and cannot be aborted"
        )
    }
}

/// What to do next with `saga` at time `now`.
pub fn next_command(saga: &Saga, now: DateTime<Utc>) -> Command {
    if saga.status.is_terminal() {
        return Command::Done;
    }
    if deadline_passed(saga, now) {
        return Command::Expire;
    }
    if let Some(at) = saga.next_attempt_at.filter(|&at| at > now) {
        // `apply` already caps a wait at the deadline; a saga log row written otherwise still wakes
        // for it.
        let deadline = saga.active_deadline();
        return Command::WaitUntil(deadline.map_or(at, |d| d.min(at)));
    }
    // Not terminal yet nothing to call: only reachable from a hand-edited saga log row.
    pending_call(saga).unwrap_or(Command::Done)
}

/// The call the saga is waiting on, regardless of time: what an outcome must answer.
fn pending_call(saga: &Saga) -> Option<Command> {
    let index = saga.current_step()?;
    Some(match saga.status {
        SagaStatus::Running => Command::Execute {
            index,
            attempt: saga.steps[index].attempts + 1,
        },
        _ => Command::Compensate {
            index,
            attempt: saga.steps[index].compensation_attempts + 1,
        },
    })
}

fn deadline_passed(saga: &Saga, now: DateTime<Utc>) -> bool {
    saga.active_deadline().is_some_and(|d| d <= now)
}

/// Folds `input` into `saga` at time `now`.
///
/// `jitter_sample` is a uniform random number in `[0, 1)` used to spread retry delays.
pub fn apply(
    saga: &Saga,
    input: Input,
    now: DateTime<Utc>,
    jitter_sample: f64,
) -> Result<Transition, Mismatch> {
    let mut next = saga.clone();
    next.updated_at = now;
    next.next_attempt_at = None;
    let mut events = Vec::new();
    let mut merged = None;
    match input {
        Input::Executed {
            index,
            attempt,
            started_at,
            result,
        } => {
            expect_command(saga, now, Command::Execute { index, attempt })?;
            let s = &mut next.steps[index];
            s.attempts = attempt;
            s.started_at.get_or_insert(started_at);
            match result {
                Ok(output) => {
                    merged = Some(output.clone());
                    succeed(&mut next, index, attempt, output, now, &mut events);
                }
                Err(error) => fail(
                    &mut next,
                    index,
                    attempt,
                    error,
                    now,
                    jitter_sample,
                    &mut events,
                ),
            }
        }
        Input::Compensated {
            index,
            attempt,
            result,
        } => {
            expect_command(saga, now, Command::Compensate { index, attempt })?;
            next.steps[index].compensation_attempts = attempt;
            match result {
                Ok(()) => compensated(&mut next, index, attempt, now, &mut events),
                Err(error) => compensation_failed(
                    &mut next,
                    index,
                    attempt,
                    error,
                    now,
                    jitter_sample,
                    &mut events,
                ),
            }
        }
        Input::DeadlinePassed => {
            expect_command(saga, now, Command::Expire)?;
            let timeout = saga.definition.timeout.map(humantime::format_duration);
            let message = match timeout {
                Some(t) => format!("saga did not finish within its {t} timeout"),
                None => "saga deadline passed".to_owned(),
            };
            settle_current_step(&mut next, now);
            start_compensation(
                &mut next,
                FailureReason::TimedOut,
                message,
                now,
                &mut events,
            );
        }
        Input::Abort { reason, by } => {
            check_abortable(saga)?;
            settle_current_step(&mut next, now);
            let message = format!("aborted by an operator: {reason}");
            events.push(HistoryEvent::SagaAborted { reason, by });
            start_compensation(&mut next, FailureReason::Aborted, message, now, &mut events);
        }
        Input::Retry { reason, by } => {
            let step = resume_parked(&mut next)?;
            events.push(HistoryEvent::SagaRetried { step, reason, by });
        }
        Input::Resolve {
            step,
            outcome,
            note,
            reason,
            by,
        } => {
            let index = check_resolvable(saga, &step, outcome)?;
            let resolution = Resolution {
                outcome,
                note,
                reason,
                by,
                at: now,
            };
            resolve_parked(&mut next, index, resolution, &mut events);
        }
    }
    park_at_manual_compensation(&mut next, now, &mut events);
    // A wait never outlasts the deadline that applies: the stored wake-up time alone then says when the
    // saga is next due, for this instance or any other.
    if let (Some(at), Some(deadline)) = (next.next_attempt_at, next.active_deadline()) {
        next.next_attempt_at = Some(at.min(deadline));
    }
    let changed_steps = (0..next.steps.len())
        .filter(|&i| next.steps[i] != saga.steps[i])
        .collect();
    Ok(Transition {
        saga: next,
        changed_steps,
        events,
        merged,
    })
}

/// Checks that an input answers the command the saga was waiting on. Time is not considered for calls:
/// an outcome that arrives after the deadline (or a retry that fires a little early) is still the answer
/// to that call, and is recorded before the saga expires.
fn expect_command(saga: &Saga, now: DateTime<Utc>, expected: Command) -> Result<(), Mismatch> {
    let matches = match expected {
        Command::Expire => deadline_passed(saga, now),
        call => pending_call(saga) == Some(call),
    };
    if matches {
        Ok(())
    } else {
        Err(Mismatch::NotAwaited {
            answered: expected,
            next: next_command(saga, now),
        })
    }
}

/// Settles the step the saga was on when it stops going forward (deadline, abort). Attempts are recorded
/// only after a call returns, so a call to it may be in flight right now or may have been made by an
/// owner that died, even when the log shows no attempt: it is treated as possibly done — compensated
/// when it can be (a no-op behind the participant's barrier if it never ran, and the barrier fences
/// the late action), failed otherwise.
fn settle_current_step(saga: &mut Saga, now: DateTime<Utc>) {
    let Some(index) = saga.current_step() else {
        return;
    };
    let compensable = saga.definition.steps[index].compensate.is_some();
    let s = &mut saga.steps[index];
    s.maybe_applied = true;
    s.finished_at = Some(now);
    s.status = if compensable {
        StepStatus::Compensating
    } else {
        StepStatus::Failed
    };
}

/// Only a running saga that has not reached its pivot can be aborted.
fn check_abortable(saga: &Saga) -> Result<(), Mismatch> {
    match saga.status {
        SagaStatus::Running if saga.reached_pivot() => Err(Mismatch::PivotReached {
            pivot: saga
                .definition
                .pivot_index()
                .map(|p| saga.definition.steps[p].name.clone())
                .unwrap_or_default(),
            passed: saga.past_pivot(),
        }),
        SagaStatus::Running => Ok(()),
        SagaStatus::Compensating => Err(Mismatch::AlreadyCompensating),
        SagaStatus::Failed => Err(Mismatch::AbortParked),
        done => Err(Mismatch::AlreadyFinished(done)),
    }
}

/// Puts a parked saga back where it stopped with a fresh attempt budget for the stuck step, and returns
/// that step's index.
fn resume_parked(saga: &mut Saga) -> Result<usize, Mismatch> {
    let reason = saga.failure.as_ref().map(|f| f.reason);
    if saga.status != SagaStatus::Failed {
        return Err(Mismatch::NotParked {
            status: saga.status,
            verb: "retried",
        });
    }
    saga.finished_at = None;
    match reason {
        Some(FailureReason::CompensationFailed) => {
            // The failure stays on record: the saga is finishing a compensation that once got stuck.
            saga.status = SagaStatus::Compensating;
            let index = saga
                .next_to_compensate()
                .ok_or(Mismatch::NothingToResume("compensate"))?;
            let step = &saga.definition.steps[index];
            if step.manual {
                return Err(Mismatch::ManualCompensation(step.name.clone()));
            }
            let s = &mut saga.steps[index];
            s.compensation_attempts = 0;
            s.generation += 1;
            Ok(index)
        }
        Some(FailureReason::ForwardFailed) => {
            saga.status = SagaStatus::Running;
            saga.failure = None;
            // The operator takes responsibility for going forward: a deadline that passed while the
            // saga was parked must not turn it into a compensation it can no longer safely make.
            saga.deadline_at = None;
            let index = saga
                .current_step()
                .ok_or(Mismatch::NothingToResume("run"))?;
            // A fresh attempt budget in a new delivery generation; `maybe_applied` stays, since an
            // earlier generation's attempt may have taken effect.
            let s = &mut saga.steps[index];
            s.status = StepStatus::Running;
            s.attempts = 0;
            s.generation += 1;
            s.finished_at = None;
            Ok(index)
        }
        reason => Err(Mismatch::UnresumableReason {
            reason,
            verb: "RetrySaga",
        }),
    }
}

/// The index of `step` if the saga is parked at it and `outcome` is what that step can be resolved as; the
/// refusal says what would be accepted.
fn check_resolvable(saga: &Saga, step: &str, outcome: ResolvedAs) -> Result<usize, Mismatch> {
    if saga.status != SagaStatus::Failed {
        return Err(Mismatch::NotParked {
            status: saga.status,
            verb: "resolved",
        });
    }
    let steps = &saga.definition.steps;
    let Some(named) = steps.iter().position(|s| s.name == step) else {
        return Err(Mismatch::NoSuchStep {
            steps: steps.iter().map(|s| s.name.clone()).collect(),
        });
    };
    let reason = saga.failure.as_ref().map(|f| f.reason);
    let (parked, accepted, what) = match (reason, saga.parked_step()) {
        (Some(FailureReason::CompensationFailed), Some(i)) => (
            i,
            ResolvedAs::Compensated,
            "its compensation could not be made",
        ),
        (Some(FailureReason::ForwardFailed), Some(i)) => (
            i,
            ResolvedAs::Succeeded,
            "it failed for good where the saga can only move forward",
        ),
        (reason, _) => {
            return Err(Mismatch::UnresumableReason {
                reason,
                verb: "ResolveSaga",
            });
        }
    };
    let parked_name = &steps[parked].name;
    if named != parked {
        return Err(Mismatch::NotParkedAtStep {
            parked: parked_name.clone(),
            named: step.to_owned(),
        });
    }
    if outcome != accepted {
        return Err(Mismatch::WrongOutcome {
            step: parked_name.clone(),
            why: what,
            accepted: accepted.step_status(),
        });
    }
    Ok(named)
}

/// Marks the parked step done by hand and puts the saga back in motion: compensating the steps before it,
/// or running the steps after it.
fn resolve_parked(
    saga: &mut Saga,
    index: usize,
    resolution: Resolution,
    events: &mut Vec<HistoryEvent>,
) {
    let (outcome, now) = (resolution.outcome, resolution.at);
    events.push(HistoryEvent::StepResolved {
        step: index,
        outcome,
        note: resolution.note.clone(),
        reason: resolution.reason.clone(),
        by: resolution.by.clone(),
    });
    let s = &mut saga.steps[index];
    s.status = outcome.step_status();
    s.finished_at = Some(now);
    s.resolution = Some(resolution);
    saga.finished_at = None;
    match outcome {
        // The failure stays on record, as after a retried compensation.
        ResolvedAs::Compensated => saga.status = SagaStatus::Compensating,
        ResolvedAs::Succeeded => {
            saga.status = SagaStatus::Running;
            saga.failure = None;
            // As for a retry: the operator owns going forward now, whatever the deadline said.
            saga.deadline_at = None;
        }
    }
    if saga.current_step().is_none() {
        let done = match outcome {
            ResolvedAs::Compensated => SagaStatus::Compensated,
            ResolvedAs::Succeeded => SagaStatus::Completed,
        };
        finish(saga, done, now, events);
    }
}

/// A compensation marked `manual` is never called: a saga that reaches one parks in `FAILED` until an
/// Step `index`'s compensation answered OK; the saga is compensated once no step is left to undo.
fn compensated(
    saga: &mut Saga,
    index: usize,
    attempt: u32,
    now: DateTime<Utc>,
    events: &mut Vec<HistoryEvent>,
) {
    let s = &mut saga.steps[index];
    s.status = StepStatus::Compensated;
    s.finished_at = Some(now);
    events.push(HistoryEvent::StepCompensated {
        step: index,
        attempt,
    });
    if saga.next_to_compensate().is_none() {
        finish(saga, SagaStatus::Compensated, now, events);
    }
}

/// Step `index`'s compensation failed. A compensation cannot refuse: every error is retried within the
/// compensation policy, and the saga parks (`COMPENSATION_FAILED`) once it runs out.
fn compensation_failed(
    saga: &mut Saga,
    index: usize,
    attempt: u32,
    error: StepFailure,
    now: DateTime<Utc>,
    jitter_sample: f64,
    events: &mut Vec<HistoryEvent>,
) {
    let s = &mut saga.steps[index];
    s.status = StepStatus::Compensating;
    s.last_error = Some(error.message.clone());
    let policy = &saga.definition.compensation;
    let retry_at = (attempt < policy.max_attempts)
        .then(|| now + to_chrono(backoff::delay(policy, attempt, jitter_sample)));
    saga.next_attempt_at = retry_at;
    let message = format!(
        "compensation of {} failed after {attempt} attempts: {}",
        saga.definition.steps[index].name, error.message
    );
    events.push(HistoryEvent::CompensationFailed {
        step: index,
        attempt,
        error,
        retry_at,
    });
    if retry_at.is_none() {
        park(
            saga,
            FailureReason::CompensationFailed,
            message,
            now,
            events,
        );
    }
}

/// operator has done it by hand and resolved it.
fn park_at_manual_compensation(
    saga: &mut Saga,
    now: DateTime<Utc>,
    events: &mut Vec<HistoryEvent>,
) {
    if saga.status != SagaStatus::Compensating {
        return;
    }
    let Some(index) = saga.next_to_compensate() else {
        return;
    };
    let step = &saga.definition.steps[index];
    if !step.manual {
        return;
    }
    let message = format!(
        "the compensation of {} ({}) is manual: do it by hand, then ResolveSaga with outcome \
         COMPENSATED",
        step.name,
        step.compensate.as_deref().unwrap_or_default()
    );
    saga.steps[index].status = StepStatus::Compensating;
    park(
        saga,
        FailureReason::CompensationFailed,
        message,
        now,
        events,
    );
}

fn succeed(
    saga: &mut Saga,
    index: usize,
    attempt: u32,
    output: JsonMap,
    now: DateTime<Utc>,
    events: &mut Vec<HistoryEvent>,
) {
    let s = &mut saga.steps[index];
    s.status = StepStatus::Succeeded;
    s.finished_at = Some(now);
    saga.state.extend(output.clone());
    s.output = Some(output);
    events.push(HistoryEvent::StepSucceeded {
        step: index,
        attempt,
    });
    if index + 1 == saga.steps.len() {
        finish(saga, SagaStatus::Completed, now, events);
    }
}

fn fail(
    saga: &mut Saga,
    index: usize,
    attempt: u32,
    error: StepFailure,
    now: DateTime<Utc>,
    jitter_sample: f64,
    events: &mut Vec<HistoryEvent>,
) {
    let definition = saga.definition.clone();
    let step = &definition.steps[index];
    let policy = definition.retry_for(index);
    let retry_at = (error.kind == ErrorKind::Transient && attempt < policy.max_attempts)
        .then(|| now + to_chrono(backoff::delay(policy, attempt, jitter_sample)));
    let message = match error.kind {
        ErrorKind::Refusal => format!("{} refused: {}", step.name, error.message),
        ErrorKind::Transient => format!(
            "{} failed after {attempt} attempts: {}",
            step.name, error.message
        ),
        ErrorKind::InvalidOutput => format!("{} {}", step.name, error.message),
    };
    // A refusal is definite for its own attempt only: an earlier attempt (of this or an earlier
    // generation) may have happened with its answer lost, and then so may the step.
    let s = &mut saga.steps[index];
    let may_have_happened = error.kind != ErrorKind::Refusal || s.maybe_applied;
    s.maybe_applied = may_have_happened;
    s.last_error = Some(error.message.clone());
    events.push(HistoryEvent::StepFailed {
        step: index,
        attempt,
        error,
        retry_at,
    });
    if let Some(at) = retry_at {
        s.status = StepStatus::Running;
        saga.next_attempt_at = Some(at);
        return;
    }
    s.finished_at = Some(now);
    s.status = StepStatus::Failed;
    if saga.past_pivot() || (step.pivot && may_have_happened) {
        park(saga, FailureReason::ForwardFailed, message, now, events);
        return;
    }
    saga.steps[index].status = if may_have_happened && step.compensate.is_some() {
        StepStatus::Compensating
    } else {
        StepStatus::Failed
    };
    start_compensation(saga, FailureReason::StepFailed, message, now, events);
}

fn start_compensation(
    saga: &mut Saga,
    reason: FailureReason,
    message: String,
    now: DateTime<Utc>,
    events: &mut Vec<HistoryEvent>,
) {
    for s in &mut saga.steps {
        if matches!(s.status, StepStatus::Pending | StepStatus::Running) {
            s.status = StepStatus::Skipped;
            s.finished_at = Some(now);
        }
    }
    saga.status = SagaStatus::Compensating;
    saga.failure = Some(Failure { reason, message });
    events.push(HistoryEvent::CompensationStarted { reason });
    if saga.next_to_compensate().is_none() {
        finish(saga, SagaStatus::Compensated, now, events);
    }
}

fn park(
    saga: &mut Saga,
    reason: FailureReason,
    message: String,
    now: DateTime<Utc>,
    events: &mut Vec<HistoryEvent>,
) {
    saga.failure = Some(Failure { reason, message });
    events.push(HistoryEvent::SagaParked { reason });
    saga.status = SagaStatus::Failed;
    saga.finished_at = Some(now);
}

fn finish(saga: &mut Saga, status: SagaStatus, now: DateTime<Utc>, events: &mut Vec<HistoryEvent>) {
    saga.status = status;
    saga.finished_at = Some(now);
    events.push(match status {
        SagaStatus::Completed => HistoryEvent::SagaCompleted,
        _ => HistoryEvent::SagaCompensated,
    });
}

fn to_chrono(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
