//! The per-saga loop: ask the core for the next command, carry it out, commit the transition, repeat,
//! until the saga is terminal or the instance shuts down.
//!
//! Nothing is written before a participant call, only after it: one commit per step outcome. A crash
//! between the call and the commit re-sends the call with the same idempotency key, which participants
//! answer from their barrier.
//!
//! A step whose `needs` are missing from the saga state is refused here, without a call: the participant
//! could only refuse it too, or worse, act on a half-built request.
//!
//! `stop` ends the loop at its next await point, even mid-call: an operator action has been committed and
//! a fresh executor continues from it. The abandoned call's outcome is unknown, which the state machine
//! already assumes of the step that was in flight.

use std::time::Duration;

use chrono::Utc;
use saga_core::{Command, Direction, ErrorKind, Input, Saga, StepError, apply, next_command};
use saga_store::{Committed, LeaseAfter, SagaStore, StoreError};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::Engine;

/// Pause between attempts to commit a transition while the database is failing.
const COMMIT_RETRY: Duration = Duration::from_millis(500);

/// Drives `saga` until it is terminal, its write is fenced off, `stop` fires, or shutdown.
pub(crate) async fn drive<S: SagaStore>(
    engine: &Engine<S>,
    mut saga: Saga,
    stop: &CancellationToken,
) {
    loop {
        if engine.shutdown.is_cancelled() {
            debug!("shutdown: leaving saga for recovery");
            return;
        }
        let input = match next_command(&saga, Utc::now()) {
            Command::Done => {
                let reason = saga.failure.as_ref().map(|f| f.reason.as_str());
                info!(status = %saga.status, reason, "saga finished");
                return;
            }
            Command::WaitUntil(at) => {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                tokio::select! {
                    () = tokio::time::sleep(wait) => continue,
                    () = engine.shutdown.cancelled() => continue,
                    () = stop.cancelled() => return,
                }
            }
            Command::Expire => Input::DeadlinePassed,
            Command::Execute { index, attempt } => {
                let started_at = Utc::now();
                let Some(result) =
                    call(engine, &saga, index, Direction::Execute, attempt, stop).await
                else {
                    return;
                };
                Input::Executed {
                    index,
                    attempt,
                    started_at,
                    result,
                }
            }
            Command::Compensate { index, attempt } => {
                let Some(result) =
                    call(engine, &saga, index, Direction::Compensate, attempt, stop).await
                else {
                    return;
                };
                Input::Compensated {
                    index,
                    attempt,
                    result: result.map(drop),
                }
            }
        };
        let transition = match apply(&saga, input, Utc::now(), fastrand::f64()) {
            Ok(t) => t,
            Err(mismatch) => {
                // Only reachable through a bug: the input was built from this very saga's command.
                error!(%mismatch, "state machine rejected its own command");
                return;
            }
        };
        // A long wait hands the saga to whichever instance is free when it is due (the wake-up time is
        // in this very commit); a short one keeps the lease and waits here.
        let now = Utc::now();
        let lease = match next_command(&transition.saga, now) {
            Command::WaitUntil(at)
                if (at - now).to_std().unwrap_or_default() > engine.settings.hold_wait =>
            {
                LeaseAfter::Release
            }
            _ => LeaseAfter::Keep,
        };
        let Some(committed) = commit(engine, &transition, lease, stop).await else {
            return;
        };
        saga = transition.saga;
        saga.revision = committed.revision;
        saga.epoch = committed.epoch;
        engine.watchers.publish(&saga);
        if lease == LeaseAfter::Release {
            debug!(next_attempt_at = ?saga.next_attempt_at, "long wait: lease released for any instance to continue");
            // The recovery loop may be asleep for its whole scan interval: let it plan for this
            // wake-up time, so this instance claims the saga when it is due if no other did.
            engine.recovery_wake.notify_one();
            return;
        }
    }
}

/// Calls one direction of a step; `None` when `stop` fired first. A forward step whose needed state keys
/// are missing is refused without a call.
async fn call<S: SagaStore>(
    engine: &Engine<S>,
    saga: &Saga,
    index: usize,
    direction: Direction,
    attempt: u32,
    stop: &CancellationToken,
) -> Option<Result<saga_core::JsonMap, StepError>> {
    let step = &saga.definition.steps[index].name;
    if direction == Direction::Execute
        && let Some(refusal) = unmet_needs(saga, index)
    {
        warn!(step = %step, attempt, error = %refusal.message, "step not called: its needs are unmet");
        return Some(Err(refusal));
    }
    let span = info_span!("step", step = %step, attempt, direction = direction.as_str());
    let result = tokio::select! {
        result = engine.participants.call(saga, index, direction, attempt).instrument(span) => result,
        () = stop.cancelled() => {
            debug!(step = %step, attempt, "call abandoned: an operator action took the saga over");
            return None;
        }
    };
    if let Err(e) = &result {
        warn!(step = %step, attempt, direction = direction.as_str(), kind = ?e.kind, error = %e.message, "step attempt failed");
    }
    Some(result)
}

/// The refusal for step `index` when the saga state lacks keys the step needs.
fn unmet_needs(saga: &Saga, index: usize) -> Option<StepError> {
    let missing = saga.definition.steps[index].missing_keys(&saga.state);
    (!missing.is_empty()).then(|| StepError {
        kind: ErrorKind::Refusal,
        message: format!(
            "not called: the saga state lacks the keys the step needs: {}",
            missing.join(", ")
        ),
    })
}

/// Commits a transition, retrying while the database is unavailable. Returns what was committed, or
/// `None` when the saga must be dropped (lease lost or fenced off by an operator action, or shutdown while
/// the database is down).
async fn commit<S: SagaStore>(
    engine: &Engine<S>,
    transition: &saga_core::Transition,
    lease: LeaseAfter,
    stop: &CancellationToken,
) -> Option<Committed> {
    loop {
        let result = engine.store.commit(transition, &engine.owner, lease).await;
        engine.observe(&result);
        match result {
            Ok(committed) => return Some(committed),
            Err(StoreError::Conflict(_)) => {
                warn!("lease lost or saga taken over; leaving it to its new owner");
                return None;
            }
            Err(e) => {
                error!(error = %e, cause = ?std::error::Error::source(&e), "cannot commit saga transition; retrying");
                tokio::select! {
                    () = tokio::time::sleep(COMMIT_RETRY) => {}
                    () = engine.shutdown.cancelled() => return None,
                    () = stop.cancelled() => return None,
                }
            }
        }
    }
}
