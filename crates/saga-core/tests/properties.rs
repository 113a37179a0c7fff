//! Property test of the state machine: for any definition shape and any sequence of participant answers
//! (success, refusal, transient error, deadline — some of which took effect anyway), crashes of the
//! owner between a call and its record (another owner takes over later, maybe past the deadline),
//! operator aborts and retries, compensations marked manual, and operators resolving a parked saga by
//! doing its stuck step by hand, every saga ends terminal and compensation obeys DESIGN.md §1–2:
//! - compensations run in strict reverse order, each step's effect is undone at most once;
//! - only steps that succeeded or whose outcome is unknown are compensated;
//! - nothing is compensated once the pivot succeeded or may have, and nothing runs forward once
//!   compensation began;
//! - a manual compensation is never called: the saga parks there, and an operator may resolve it;
//! - a compensated saga has undone every effect a participant applied (or an operator, by hand).
//!
//! Participants keep the contract of DESIGN.md §1 (the SDK's barrier): a call repeated after its effect
//! was applied answers as the first one did, and a compensation repeated after it applied is a replay.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use saga_core::{
    Command, Definition, ErrorKind, FailureReason, Input, JsonMap, ResolvedAs, Saga, SagaStatus,
    StepFailure, apply, next_command,
};

/// What a participant does with one call.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Ok,
    Refuse,
    /// UNAVAILABLE; `applied` says whether the effect happened before the error.
    Transient {
        applied: bool,
    },
    /// No answer within the step's deadline; the effect may have happened.
    Deadline {
        applied: bool,
    },
    /// OK, with an output the saga log cannot record: the effect happened.
    UnrecordableOutput,
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        4 => Just(Answer::Ok),
        1 => Just(Answer::Refuse),
        2 => any::<bool>().prop_map(|applied| Answer::Transient { applied }),
        1 => any::<bool>().prop_map(|applied| Answer::Deadline { applied }),
        1 => Just(Answer::UnrecordableOutput),
    ]
}

/// The shape of a definition: per step whether it can be compensated (and if so whether by hand), an
/// optional pivot, retry budgets.
#[derive(Debug, Clone)]
struct Shape {
    compensable: Vec<bool>,
    manual: Vec<bool>,
    pivot: Option<usize>,
    max_attempts: u32,
    compensation_attempts: u32,
    timeout_secs: Option<u64>,
}

fn shape() -> impl Strategy<Value = Shape> {
    (1usize..=6)
        .prop_flat_map(|n| {
            (
                proptest::collection::vec(any::<bool>(), n),
                proptest::collection::vec(proptest::bool::weighted(0.2), n),
                proptest::option::of(0..n),
                1u32..=4,
                1u32..=4,
                proptest::option::of(5u64..120),
            )
        })
        .prop_map(
            |(compensable, manual, pivot, max_attempts, compensation_attempts, timeout_secs)| {
                // Steps at and after the pivot are never compensated, so they cannot declare it.
                let compensable: Vec<bool> = compensable
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| c && pivot.is_none_or(|p| i < p))
                    .collect();
                let manual = manual
                    .iter()
                    .zip(&compensable)
                    .map(|(&m, &c)| m && c)
                    .collect();
                Shape {
                    compensable,
                    manual,
                    pivot,
                    max_attempts,
                    compensation_attempts,
                    timeout_secs,
                }
            },
        )
}

impl Shape {
    fn definition(&self) -> Arc<Definition> {
        let mut yaml = format!(
            "name: prop\nversion: 1\nstep_timeout: 3s\n\
             retry: {{max_attempts: {}, initial_backoff: 1s, multiplier: 2.0, max_backoff: 4s}}\n\
             compensation: {{max_attempts: {}, initial_backoff: 1s, multiplier: 2.0, max_backoff: 4s}}\n",
            self.max_attempts, self.compensation_attempts
        );
        if let Some(t) = self.timeout_secs {
            yaml.push_str(&format!("timeout: {t}s\n"));
        }
        yaml.push_str("steps:\n");
        for (i, &compensable) in self.compensable.iter().enumerate() {
            yaml.push_str(&format!("  - {{name: S{i}, participant: p, action: Do{i}"));
            if compensable {
                yaml.push_str(&format!(", compensate: Undo{i}"));
            }
            if self.manual[i] {
                yaml.push_str(", manual: true");
            }
            if self.pivot == Some(i) {
                yaml.push_str(", pivot: true");
            }
            yaml.push_str("}\n");
        }
        let participants: HashSet<String> = ["p".to_owned()].into();
        Arc::new(
            Definition::from_yaml(&yaml, &participants).expect("generated definition is valid"),
        )
    }
}

/// An operator action taken before call number `at_call`.
#[derive(Debug, Clone, Copy)]
struct Operator {
    at_call: usize,
    /// Whether the call about to be made when the abort lands had already reached the participant
    /// (and took effect) — the executor never learns its answer.
    in_flight_applied: bool,
}

/// The owner dies during call number `at_call`, after the participant did (or did not) apply it and
/// before the outcome is recorded; another owner takes the saga over `resume_after_secs` later (past
/// the lease, and maybe past the saga deadline) from what the saga log holds.
#[derive(Debug, Clone, Copy)]
struct Crash {
    at_call: usize,
    applied: bool,
    resume_after_secs: i64,
}

fn crash() -> impl Strategy<Value = Crash> {
    (0usize..14, any::<bool>(), 1i64..300).prop_map(|(at_call, applied, resume_after_secs)| Crash {
        at_call,
        applied,
        resume_after_secs,
    })
}

/// What the participant saw and did, recorded while driving.
#[derive(Debug, Default)]
struct World {
    /// Whether each step's forward effect is applied and not undone.
    applied: Vec<bool>,
    /// Whether each step's forward effect was ever applied: a repeated delivery then answers OK, as the
    /// barrier replays the first answer.
    ever_applied: Vec<bool>,
    /// Steps that answered OK, or whose effect is unknown to the coordinator.
    maybe_happened: HashSet<usize>,
    /// Indexes of compensations that took effect, in order; a repeated delivery of one is a replay.
    compensated: Vec<usize>,
    /// Whether any compensation was attempted yet.
    compensation_began: bool,
    /// Steps whose stuck work an operator did by hand: nobody may call them again (a participant's
    /// barrier knows nothing of work done by hand, so a call would do it twice).
    done_by_hand: HashSet<usize>,
}

impl World {
    /// A compensation of step `index` is made (`how`: by a call, or by hand): it may only undo a step
    /// that succeeded or may have, and never once the pivot took effect.
    fn compensating(
        &mut self,
        shape: &Shape,
        index: usize,
        how: &str,
    ) -> Result<(), TestCaseError> {
        self.compensation_began = true;
        prop_assert!(
            !self.pivot_applied(shape.pivot),
            "step {index} compensated {how} after the pivot took effect"
        );
        prop_assert!(
            self.maybe_happened.contains(&index),
            "step {index} compensated {how} though it never succeeded nor may have"
        );
        Ok(())
    }

    /// Step `index`'s effect is undone; a repeated compensation that took effect is a replay.
    fn undo(&mut self, index: usize) {
        if !self.compensated.contains(&index) {
            self.applied[index] = false;
            self.compensated.push(index);
        }
    }

    /// Whether the pivot took effect (answered OK, or ran while its answer was lost, while an abort
    /// turned the saga, or while its owner died): from then on nothing may be compensated.
    fn pivot_applied(&self, pivot: Option<usize>) -> bool {
        pivot.is_some_and(|p| self.ever_applied[p])
    }
}

fn error(kind: ErrorKind) -> StepFailure {
    StepFailure {
        kind,
        message: format!("{kind:?}"),
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

/// The scenario of one case: answers in call order, and what operators and crashes do when.
#[derive(Debug, Clone)]
struct Scenario {
    answers: Vec<Answer>,
    abort: Option<Operator>,
    crashes: Vec<Crash>,
    operator_retries: u32,
    /// How often an operator does a parked saga's stuck step by hand and resolves it.
    operator_resolves: u32,
    /// Whether an operator who may both retry and resolve a parked saga resolves it.
    prefer_resolve: bool,
    jitter: f64,
}

/// Drives a saga to a terminal status and checks every rule on the way; returns the final saga.
fn run(shape: &Shape, scenario: &Scenario) -> Result<(Saga, World), TestCaseError> {
    let definition = shape.definition();
    let n = definition.steps.len();
    let jitter = scenario.jitter;
    let mut now = t0();
    let mut saga = Saga::new(definition.clone(), JsonMap::new(), None, now);
    let mut world = World {
        applied: vec![false; n],
        ever_applied: vec![false; n],
        ..World::default()
    };
    let mut answers = scenario.answers.iter().copied();
    let mut calls = 0usize;
    let mut retries_left = scenario.operator_retries;
    let mut resolves_left = scenario.operator_resolves;

    for _ in 0..10_000 {
        let command = next_command(&saga, now);
        if let (Some(op), Command::Execute { index, .. } | Command::Compensate { index, .. }) =
            (scenario.abort, command)
            && op.at_call == calls
        {
            let input = Input::Abort {
                reason: "test".to_owned(),
                by: None,
            };
            if let Ok(t) = apply(&saga, input, now, jitter) {
                if matches!(command, Command::Execute { .. }) {
                    // The call was on its way: it may have reached the participant before the
                    // compensation fenced it.
                    world.maybe_happened.insert(index);
                    if op.in_flight_applied {
                        apply_forward(&mut world, index);
                    }
                }
                saga = t.saga;
                calls += 1;
                continue;
            }
        }
        let crash = scenario.crashes.iter().find(|c| c.at_call == calls);
        let input = match command {
            Command::Done if saga.status == SagaStatus::Failed => {
                match parked_action(shape, scenario, &saga, retries_left, resolves_left)? {
                    Some(Input::Retry { reason, by }) => {
                        retries_left -= 1;
                        Input::Retry { reason, by }
                    }
                    Some(resolve) => {
                        resolves_left -= 1;
                        by_hand(shape, &saga, &resolve, &mut world)?;
                        resolve
                    }
                    None => return Ok((saga, world)),
                }
            }
            Command::Done => return Ok((saga, world)),
            Command::WaitUntil(at) => {
                prop_assert!(at > now, "waits move forward");
                now = at;
                continue;
            }
            Command::Expire => {
                // The step the saga is on may have been called by an owner that died without a
                // record: it is compensated (a replay-safe no-op behind the barrier if it never ran).
                if let Some(index) = saga.current_step() {
                    world.maybe_happened.insert(index);
                }
                Input::DeadlinePassed
            }
            Command::Execute { index, attempt } => {
                calls += 1;
                prop_assert!(
                    !world.done_by_hand.contains(&index),
                    "step {index} called after it was done by hand"
                );
                prop_assert!(
                    !world.compensation_began || shape.pivot.is_some_and(|p| index >= p),
                    "step {index} ran forward after compensation began"
                );
                // The barrier replays an applied step's first answer; otherwise the script decides.
                let answer = match answers.next().unwrap_or(Answer::Ok) {
                    Answer::Refuse if world.ever_applied[index] => Answer::Ok,
                    other => other,
                };
                if let Some(crash) = crash {
                    world.maybe_happened.insert(index);
                    if crash.applied {
                        apply_forward(&mut world, index);
                    }
                    now += Duration::seconds(crash.resume_after_secs);
                    continue;
                }
                let started_at = now;
                let result = match answer {
                    Answer::Ok => {
                        apply_forward(&mut world, index);
                        world.maybe_happened.insert(index);
                        Ok(JsonMap::new())
                    }
                    Answer::Refuse => Err(error(ErrorKind::Refusal)),
                    Answer::UnrecordableOutput => {
                        apply_forward(&mut world, index);
                        world.maybe_happened.insert(index);
                        Err(error(ErrorKind::InvalidOutput))
                    }
                    Answer::Transient { applied } | Answer::Deadline { applied } => {
                        if applied {
                            apply_forward(&mut world, index);
                        }
                        world.maybe_happened.insert(index);
                        if matches!(answer, Answer::Deadline { .. }) {
                            now += Duration::seconds(3);
                        }
                        Err(error(ErrorKind::Transient))
                    }
                };
                Input::Executed {
                    index,
                    attempt,
                    started_at,
                    result,
                }
            }
            Command::Compensate { index, attempt } => {
                calls += 1;
                prop_assert!(
                    !shape.manual[index],
                    "manual compensation {index} was called"
                );
                prop_assert!(
                    !world.done_by_hand.contains(&index),
                    "compensation {index} called after it was done by hand"
                );
                world.compensating(shape, index, "by a call")?;
                let ok = matches!(answers.next().unwrap_or(Answer::Ok), Answer::Ok);
                if crash.is_some_and(|c| c.applied) || ok {
                    world.undo(index);
                }
                if let Some(crash) = crash {
                    now += Duration::seconds(crash.resume_after_secs);
                    continue;
                }
                let result = if ok {
                    Ok(())
                } else {
                    Err(error(ErrorKind::Transient))
                };
                Input::Compensated {
                    index,
                    attempt,
                    result,
                }
            }
        };
        now += Duration::seconds(1);
        let t = apply(&saga, input, now, jitter)
            .map_err(|e| TestCaseError::fail(format!("machine rejected its own command: {e}")))?;
        saga = t.saga;
    }
    Err(TestCaseError::fail(format!(
        "saga not terminal after 10000 transitions: {:?}",
        saga.status
    )))
}

/// What the operator does with a parked saga: resolve it (always, when the stuck compensation is manual
/// and cannot be retried), retry it, or leave it parked once their budgets are spent.
fn parked_action(
    shape: &Shape,
    scenario: &Scenario,
    saga: &Saga,
    retries_left: u32,
    resolves_left: u32,
) -> Result<Option<Input>, TestCaseError> {
    let reason = saga.failure.as_ref().map(|f| f.reason);
    let Some(index) = saga.parked_step() else {
        return Err(TestCaseError::fail(format!(
            "parked for {reason:?} at no step"
        )));
    };
    let manual = reason == Some(FailureReason::CompensationFailed) && shape.manual[index];
    let resolve = resolves_left > 0 && (manual || scenario.prefer_resolve || retries_left == 0);
    Ok(if resolve {
        Some(Input::Resolve {
            step: format!("S{index}"),
            outcome: match reason {
                Some(FailureReason::CompensationFailed) => ResolvedAs::Compensated,
                _ => ResolvedAs::Succeeded,
            },
            note: "by hand".to_owned(),
            reason: "test".to_owned(),
            by: None,
        })
    } else if retries_left > 0 && !manual {
        Some(Input::Retry {
            reason: "test".to_owned(),
            by: None,
        })
    } else {
        None
    })
}

/// The operator's work by hand before resolving: the stuck compensation undone (if its effect is there),
/// or the stuck forward step done. The same rules hold for it as for a participant's call.
fn by_hand(
    shape: &Shape,
    saga: &Saga,
    resolve: &Input,
    world: &mut World,
) -> Result<(), TestCaseError> {
    let (Input::Resolve { outcome, .. }, Some(index)) = (resolve, saga.parked_step()) else {
        return Err(TestCaseError::fail("not a resolve of a parked step"));
    };
    world.done_by_hand.insert(index);
    match outcome {
        ResolvedAs::Compensated => {
            world.compensating(shape, index, "by hand")?;
            world.undo(index);
        }
        ResolvedAs::Succeeded => {
            apply_forward(world, index);
            world.maybe_happened.insert(index);
        }
    }
    Ok(())
}

/// A forward effect takes place (again, if it was undone: a late action a compensation did not fence).
fn apply_forward(world: &mut World, index: usize) {
    world.applied[index] = true;
    world.ever_applied[index] = true;
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        proptest::collection::vec(answer(), 0..40),
        proptest::option::of((0usize..12, any::<bool>()).prop_map(
            |(at_call, in_flight_applied)| Operator {
                at_call,
                in_flight_applied,
            },
        )),
        proptest::collection::vec(crash(), 0..3),
        0u32..3,
        0u32..3,
        any::<bool>(),
        0.0f64..1.0,
    )
        .prop_map(
            |(
                answers,
                abort,
                crashes,
                operator_retries,
                operator_resolves,
                prefer_resolve,
                jitter,
            )| Scenario {
                answers,
                abort,
                crashes,
                operator_retries,
                operator_resolves,
                prefer_resolve,
                jitter,
            },
        )
}

proptest! {
    // Failures print the minimal input; nothing is persisted into the source tree.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases())
    })]

    #[test]
    fn every_saga_ends_terminal_and_compensation_keeps_its_promises(
        shape in shape(),
        scenario in scenario(),
    ) {
        let (saga, world) = run(&shape, &scenario)?;
        prop_assert!(saga.status.is_terminal(), "{:?}", saga.status);

        let order = &world.compensated;
        prop_assert!(
            order.windows(2).all(|w| w[0] > w[1]),
            "compensations out of reverse order: {order:?}"
        );
        match saga.status {
            SagaStatus::Completed => {
                prop_assert!(order.is_empty(), "a completed saga compensated {order:?}");
                prop_assert!(world.applied.iter().all(|&a| a), "completed with a step not applied");
            }
            SagaStatus::Compensated => {
                for (i, step) in saga.definition.steps.iter().enumerate() {
                    prop_assert!(
                        !(world.applied[i] && step.compensate.is_some()),
                        "compensated saga left step {i}'s effect in place"
                    );
                }
            }
            SagaStatus::Failed => {
                prop_assert!(saga.failure.is_some(), "a parked saga says why");
            }
            other => prop_assert!(false, "not terminal: {other:?}"),
        }
    }
}

/// Cases per run: 2000 by default (under a second), `PROPTEST_CASES` for a longer search.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000)
}
