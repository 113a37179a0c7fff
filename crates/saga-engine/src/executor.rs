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
//! already assumes of the step that was in flight. An executor whose lease may have expired (its local
//! deadline passed without a renewal) makes no further call: another instance may be driving the saga.

use std::sync::Arc;
use std::time::{Duration, Instant};

use saga_core::{
    Command, Direction, ErrorKind, Input, JsonMap, Saga, StepFailure, apply, next_command,
};
use saga_store::{Committed, LeaseAfter, SagaStore, StoreError};
use tracing::{debug, error, info, warn};

use crate::Engine;
use crate::engine::DriverHandle;
use crate::metrics::Outcome;

/// Pause between attempts to commit a transition while the database is failing.
const COMMIT_RETRY: Duration = Duration::from_millis(500);

/// How long a saga whose transition the saga log refuses is set aside before any instance tries again.
pub(crate) const QUARANTINE: Duration = Duration::from_secs(300);

/// What carrying out a command led to.
enum Next {
    /// An outcome to fold into the saga and commit.
    Record(Input),
    /// Nothing to record: ask the core again (a wait ended, a queued call met the saga deadline).
    Again,
    /// Leave the saga: finished, stopped, shutting down, or the lease may be gone.
    Stop,
}

/// Drives `saga` until it is terminal, its write is fenced off, `stop` fires, or shutdown.
pub(crate) async fn drive<S: SagaStore>(engine: &Engine<S>, mut saga: Saga, driver: &DriverHandle) {
    loop {
        if engine.shutdown.is_cancelled() {
            debug!("shutdown: leaving saga for recovery");
            return;
        }
        let command = next_command(&saga, engine.clock.now());
        // Awaited in its own statement: awaited in the `match` scrutinee, the call's future would stay
        // in this future's layout beside `record`'s instead of sharing its space, in every saga's task.
        let next = carry_out(engine, &saga, command, driver).await;
        match next {
            Next::Record(input) => match record(engine, saga, input, driver).await {
                Some(next) => saga = next,
                None => return,
            },
            Next::Again => {}
            Next::Stop => return,
        }
    }
}

/// Carries out one command of the core: waits, or calls a participant.
async fn carry_out<S: SagaStore>(
    engine: &Engine<S>,
    saga: &Saga,
    command: Command,
    driver: &DriverHandle,
) -> Next {
    let (index, direction, attempt) = match command {
        Command::Done => {
            let reason = saga.failure.as_ref().map(|f| f.reason.as_str());
            info!(status = %saga.status, reason, "saga finished");
            return Next::Stop;
        }
        Command::WaitUntil(at) => {
            let wait = (at - engine.clock.now()).to_std().unwrap_or_default();
            return tokio::select! {
                () = tokio::time::sleep(wait) => Next::Again,
                () = engine.shutdown.cancelled() => Next::Again,
                () = driver.stop.cancelled() => Next::Stop,
            };
        }
        Command::Expire => return Next::Record(Input::DeadlinePassed),
        Command::Execute { index, attempt } => (index, Direction::Execute, attempt),
        Command::Compensate { index, attempt } => (index, Direction::Compensate, attempt),
    };
    if !driver.lease.holds() {
        warn!(
            "lease may have expired without a renewal; leaving the saga to whichever instance holds it"
        );
        return Next::Stop;
    }
    if direction == Direction::Execute
        && let Some(refusal) = unmet_needs(saga, index)
    {
        let step = &saga.definition.steps[index].name;
        warn!(step = %step, attempt, error = %refusal.message, "step not called: its needs are unmet");
        engine
            .metrics
            .step_attempt(saga, index, direction, Outcome::Refusal, None);
        return Next::Record(Input::Executed {
            index,
            attempt,
            started_at: engine.clock.now(),
            result: Err(refusal),
        });
    }
    call_step(engine, saga, index, direction, attempt, driver).await
}

/// Makes one call of step `index` and turns its answer into the input to record.
async fn call_step<S: SagaStore>(
    engine: &Engine<S>,
    saga: &Saga,
    index: usize,
    direction: Direction,
    attempt: u32,
    driver: &DriverHandle,
) -> Next {
    let started_at = engine.clock.now();
    let step = &saga.definition.steps[index].name;
    let calling = Instant::now();
    let call = engine
        .participants
        .call(saga, index, direction, attempt, started_at);
    let result = tokio::select! {
        result = call => result,
        () = driver.stop.cancelled() => {
            debug!(step = %step, attempt, "call abandoned: the saga was taken over");
            return Next::Stop;
        }
    };
    // Nothing was sent: the saga deadline passed while the call waited for a slot to the participant.
    let Some(result) = result else {
        return Next::Again;
    };
    let (outcome, took) = (Outcome::of(&result), Some(calling.elapsed()));
    engine
        .metrics
        .step_attempt(saga, index, direction, outcome, took);
    if let Err(e) = &result {
        warn!(step = %step, attempt, direction = direction.as_str(), kind = ?e.kind, error = %e.message, "step attempt failed");
    }
    Next::Record(match direction {
        Direction::Execute => Input::Executed {
            index,
            attempt,
            started_at,
            result: result.and_then(recordable),
        },
        Direction::Compensate => Input::Compensated {
            index,
            attempt,
            result: result.map(drop),
        },
    })
}

/// The refusal for step `index` when the saga state lacks keys the step needs.
fn unmet_needs(saga: &Saga, index: usize) -> Option<StepFailure> {
    let missing = saga.definition.steps[index].missing_keys(&saga.state);
    (!missing.is_empty()).then(|| StepFailure {
        kind: ErrorKind::Refusal,
        message: format!(
            "not called: the saga state lacks the keys the step needs: {}",
            missing.join(", ")
        ),
    })
}

/// An OK answer whose output the saga log cannot store (PostgreSQL's `jsonb` refuses the NUL character)
/// is a failure of a step that happened: asking again would only replay the same answer.
fn recordable(output: JsonMap) -> Result<JsonMap, StepFailure> {
    match saga_core::storable::nul_path(&output, "output") {
        None => Ok(output),
        Some(path) => Err(StepFailure {
            kind: ErrorKind::InvalidOutput,
            message: format!(
                "answered OK with an output the saga log cannot store: {path} holds a NUL character"
            ),
        }),
    }
}

/// Folds `input` into `saga` and commits the transition; returns the saga as committed, or `None` when
/// the executor must leave it.
async fn record<S: SagaStore>(
    engine: &Engine<S>,
    saga: Saga,
    input: Input,
    driver: &DriverHandle,
) -> Option<Saga> {
    let mut input = input;
    let mut refused_once = false;
    loop {
        let now = engine.clock.now();
        let transition = match apply(&saga, input.clone(), now, fastrand::f64()) {
            Ok(t) => t,
            Err(mismatch) => {
                // Only reachable through a bug: the input was built from this very saga's command.
                error!(%mismatch, "state machine rejected its own command");
                return None;
            }
        };
        // A long wait hands the saga to whichever instance is free when it is due (the wake-up time is
        // in this very commit); a short one keeps the lease and waits here.
        let lease = match next_command(&transition.saga, now) {
            Command::WaitUntil(at)
                if (at - now).to_std().unwrap_or_default() > engine.settings.hold_wait =>
            {
                LeaseAfter::Release
            }
            _ => LeaseAfter::Keep,
        };
        let transition = Arc::new(transition);
        let committed = match commit(engine, &transition, lease, driver).await? {
            Ok(committed) => committed,
            Err(refused) => {
                // The saga log refused the data itself; writing it again would fail the same way.
                match (refused_once, as_invalid_output(&input, &refused)) {
                    (false, Some(failed)) => {
                        refused_once = true;
                        input = failed;
                        continue;
                    }
                    _ => {
                        quarantine(engine, &saga, &refused).await;
                        return None;
                    }
                }
            }
        };
        let transition = Arc::try_unwrap(transition).unwrap_or_else(|shared| (*shared).clone());
        let before = saga.status;
        let mut saga = transition.saga;
        saga.revision = committed.revision;
        saga.epoch = committed.epoch;
        engine.committed(before, &saga);
        if lease == LeaseAfter::Release {
            debug!(next_attempt_at = ?saga.next_attempt_at, "long wait: lease released for any instance to continue");
            // The recovery loop may be asleep for its whole scan interval: let it plan for this
            // wake-up time, so this instance claims the saga when it is due if no other did.
            engine.recovery_wake.notify_one();
            return None;
        }
        return Some(saga);
    }
}

/// The saga log refused to store a successful step's outcome: record instead that the step happened
/// with an output that cannot be kept. `None` for any other input, whose refusal has no such way out.
fn as_invalid_output(input: &Input, refused: &StoreError) -> Option<Input> {
    match input {
        Input::Executed {
            index,
            attempt,
            started_at,
            result: Ok(_),
        } => Some(Input::Executed {
            index: *index,
            attempt: *attempt,
            started_at: *started_at,
            result: Err(StepFailure {
                kind: ErrorKind::InvalidOutput,
                message: format!("answered OK with an output the saga log refused: {refused}"),
            }),
        }),
        _ => None,
    }
}

/// Commits a transition through the committer, retrying while the database is unavailable or busy.
/// `None` when the saga must be dropped (lease lost or fenced off by an operator action, or shutdown
/// while the database is down); `Some(Err(_))` when the saga log refuses the data itself.
async fn commit<S: SagaStore>(
    engine: &Engine<S>,
    transition: &Arc<saga_core::Transition>,
    lease: LeaseAfter,
    driver: &DriverHandle,
) -> Option<Result<Committed, StoreError>> {
    loop {
        let pause = match engine
            .committer
            .write(Arc::clone(transition), lease)
            .await?
        {
            Ok(Some(committed)) => return Some(Ok(committed)),
            Ok(None) => {
                warn!("lease lost or saga taken over; leaving it to its new owner");
                return None;
            }
            Err(e) if e.is_data_error() => return Some(Err(e)),
            // The pool's acquire timeout already waited, or the database broke a deadlock: try again
            // at once.
            Err(StoreError::Busy) => Duration::ZERO,
            Err(e) if e.is_retryable_conflict() => {
                debug!(error = %e, "commit gave way to another statement; retrying");
                Duration::ZERO
            }
            Err(e) => {
                error!(error = %e, cause = ?std::error::Error::source(&e), "cannot commit saga transition; retrying");
                COMMIT_RETRY
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = engine.shutdown.cancelled() => return None,
            () = driver.stop.cancelled() => return None,
        }
    }
}

/// Sets a saga whose transition the saga log refuses aside for an operator to look at, instead of
/// retrying the same write forever while holding its lease.
async fn quarantine<S: SagaStore>(engine: &Engine<S>, saga: &Saga, refused: &StoreError) {
    error!(error = %refused, "the saga log refuses this saga's transition; setting the saga aside");
    let message = format!("the saga log refused a transition: {refused}");
    if let Err(e) = engine
        .store
        .quarantine(saga.id, &engine.owner, &message, QUARANTINE)
        .await
    {
        warn!(error = %e, "cannot set the saga aside; it moves on when its lease expires");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use saga_core::Definition;
    use saga_store::PgStore;
    use saga_testkit::TestDatabase;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::lease::LocalLease;
    use crate::{EngineSettings, Participants};

    /// What one saga's executor may take. Every saga in flight holds one, so 10,000 sagas in flight
    /// (the default `max_in_flight`) must stay within sagad's 100 MB with this and their data; the
    /// executor once took 18 KB in a release build (and twice that in its task), most of it the gRPC
    /// call's future that only the few sagas holding a participant slot need.
    const EXECUTOR_BUDGET: usize = 4 * 1024;

    #[tokio::test]
    async fn a_saga_in_flight_keeps_its_executor_within_a_few_kilobytes() {
        let db = TestDatabase::create("saga_engine_size").await;
        let store = PgStore::connect(&db.url(), 1).await.expect("saga log");
        let endpoints = [("p".to_owned(), "http://127.0.0.1:1".to_owned())].into();
        let participants = Participants::new(&endpoints, 1, None).expect("participants");
        let yaml = "name: t\nversion: 1\nsteps:\n  - {name: A, participant: p, action: Do}\n";
        let definition = Definition::from_yaml(yaml, &participants.names()).expect("valid");
        let shutdown = CancellationToken::new();
        let engine = Engine::new(
            store,
            participants,
            HashMap::new(),
            &EngineSettings::default(),
            shutdown.clone(),
        );
        let saga = Saga::new(
            Arc::new(definition),
            JsonMap::new(),
            None,
            engine.clock.now(),
        );
        let now = Instant::now();
        let driver = DriverHandle {
            stop: CancellationToken::new(),
            lease: Arc::new(LocalLease::granted(now, now, Duration::from_secs(1))),
        };

        let executor = drive(&engine, saga, &driver);
        let size = std::mem::size_of_val(&executor);

        assert!(
            size <= EXECUTOR_BUDGET,
            "one saga's executor takes {size} bytes, over its budget of {EXECUTOR_BUDGET}"
        );
        drop(executor);
        shutdown.cancel();
    }
}
