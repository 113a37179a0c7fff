//! The checks: each drives the target through one rule of the participant contract (DESIGN.md §1, the
//! SDK README) on a saga id of its own, and judges it from the answers alone.
//!
//! # What can be seen from outside
//! A checker holds no handle on the participant's effects, only on its answers. "Ran once" is therefore
//! judged by answer equality: a repeat, or one of several concurrent duplicates, must return the very
//! output the first delivery returned. That exposes a participant that runs a step twice whenever its
//! output names what the run created (an order id, a transfer id) — which is what a step's output is for.
//! A participant whose output is empty or always the same can run a step twice and still answer alike;
//! the table says so on those rows ("only the answers could show a second run"). Likewise "a fenced
//! action has no effect" is judged from its `ABORTED` answer: the contract makes a refusal mean "nothing
//! happened", but only the participant's own tables can prove it, as the SDKs' tests and sagad's
//! end-to-end tests do.

use std::collections::BTreeSet;

use futures::future::join_all;
use serde_json::{Map, Value};
use tonic::Code;
use uuid::Uuid;

use crate::Direction;
use crate::probe::{Answer, Probe};

/// A check's outcome and what it saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The rule holds.
    Pass(String),
    /// The rule is broken; says how.
    Fail(String),
    /// The check could not run with the arguments given.
    Skip(String),
}

/// One rule of the participant contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    /// A repeated execute answers the first answer.
    RepeatedExecute,
    /// Concurrent duplicate executes run once: every one answers the same.
    ConcurrentExecutes,
    /// A compensation after the action runs once and does not rerun the action.
    RepeatedCompensation,
    /// A compensation with no prior action answers OK.
    CompensationWithoutAction,
    /// An action after its compensation is refused `ABORTED`, on every attempt.
    ActionAfterCompensation,
    /// A compensation racing duplicate executes leaves every execute with one answer.
    CompensationRacingExecutes,
    /// A refusal uses a refusal code and is replayed; its compensation answers OK.
    Refusal,
    /// An operator retry (a later delivery generation) runs a refused step afresh.
    OperatorRetry,
    /// An unknown action is `INVALID_ARGUMENT` and fences nothing.
    UnknownAction,
    /// A malformed request is `INVALID_ARGUMENT`.
    MalformedRequest,
}

impl Check {
    /// Every check, in the order they run and are reported.
    pub const ALL: [Check; 10] = [
        Check::RepeatedExecute,
        Check::ConcurrentExecutes,
        Check::RepeatedCompensation,
        Check::CompensationWithoutAction,
        Check::ActionAfterCompensation,
        Check::CompensationRacingExecutes,
        Check::Refusal,
        Check::OperatorRetry,
        Check::UnknownAction,
        Check::MalformedRequest,
    ];

    /// A short stable name, for tables and tests.
    pub fn id(self) -> &'static str {
        match self {
            Check::RepeatedExecute => "repeated-execute",
            Check::ConcurrentExecutes => "concurrent-executes",
            Check::RepeatedCompensation => "repeated-compensation",
            Check::CompensationWithoutAction => "compensation-without-action",
            Check::ActionAfterCompensation => "action-after-compensation",
            Check::CompensationRacingExecutes => "compensation-racing-executes",
            Check::Refusal => "refusal",
            Check::OperatorRetry => "operator-retry",
            Check::UnknownAction => "unknown-action",
            Check::MalformedRequest => "malformed-request",
        }
    }

    /// The rule, as a sentence.
    pub fn rule(self) -> &'static str {
        match self {
            Check::RepeatedExecute => "a repeated execute answers the first answer",
            Check::ConcurrentExecutes => "concurrent duplicate executes run once",
            Check::RepeatedCompensation => {
                "a compensation runs once; the action then still replays its first answer"
            }
            Check::CompensationWithoutAction => {
                "a compensation with no prior action answers OK, and again when repeated"
            }
            Check::ActionAfterCompensation => {
                "an action after its compensation is refused ABORTED, on every attempt"
            }
            Check::CompensationRacingExecutes => {
                "a compensation racing duplicate executes: all executes get one answer"
            }
            Check::Refusal => {
                "a refusal uses a refusal code and is replayed; its compensation answers OK"
            }
            Check::OperatorRetry => {
                "after an operator retry (generation 1) a refused step runs afresh; its success is replayed"
            }
            Check::UnknownAction => "an unknown action is INVALID_ARGUMENT and fences nothing",
            Check::MalformedRequest => {
                "a saga_id that is not a UUID, or no idempotency key, is INVALID_ARGUMENT"
            }
        }
    }

    /// Runs the check against `probe`'s target, on a saga id of its own.
    pub async fn run(self, probe: &Probe) -> Verdict {
        let saga = Uuid::new_v4();
        let judged = match self {
            Check::RepeatedExecute => repeated_execute(probe, saga).await,
            Check::ConcurrentExecutes => concurrent_executes(probe, saga).await,
            Check::RepeatedCompensation => repeated_compensation(probe, saga).await,
            Check::CompensationWithoutAction => compensation_without_action(probe, saga).await,
            Check::ActionAfterCompensation => action_after_compensation(probe, saga).await,
            Check::CompensationRacingExecutes => compensation_racing_executes(probe, saga).await,
            Check::Refusal => refusal(probe, saga).await,
            Check::OperatorRetry => operator_retry(probe, saga).await,
            Check::UnknownAction => unknown_action(probe, saga).await,
            Check::MalformedRequest => malformed_request(probe, saga).await,
        };
        judged.unwrap_or_else(|verdict| verdict)
    }
}

/// A check's outcome: `Ok` is a pass, `Err` carries the failure (or skip) that ended it early.
type Judged = Result<Verdict, Verdict>;

/// The action name no participant is expected to serve.
const UNKNOWN_ACTION: &str = "SagaConformanceUnknownAction";

async fn repeated_execute(probe: &Probe, saga: Uuid) -> Judged {
    let payload = &probe.target().payload;
    let first = probe.execute(saga, 1, payload).await;
    let output = succeeded(&first)?;
    replayed(&first, &probe.execute(saga, 2, payload).await)?;
    Ok(pass_by_output(
        output,
        "the repeat answered the first answer",
    ))
}

async fn concurrent_executes(probe: &Probe, saga: Uuid) -> Judged {
    let payload = &probe.target().payload;
    let deliveries = (1..).take(probe.target().concurrency);
    let mut answers =
        join_all(deliveries.map(|attempt| probe.execute(saga, attempt, payload))).await;
    answers.push(probe.execute(saga, 99, payload).await);
    for answer in &answers {
        succeeded(answer)?;
    }
    alike(&answers)?;
    let detail = format!(
        "{} concurrent deliveries and a later one answered alike",
        probe.target().concurrency
    );
    Ok(pass_by_output(succeeded(&answers[0])?, &detail))
}

async fn repeated_compensation(probe: &Probe, saga: Uuid) -> Judged {
    let payload = &probe.target().payload;
    let executed = probe.execute(saga, 1, payload).await;
    let output = succeeded(&executed)?;
    // The saga state a compensation sees: the payload with the step's output merged in.
    let mut state = payload.clone();
    state.extend(output.clone());
    compensate_twice(probe, saga, &state).await?;
    let execute_again = probe.execute(saga, 2, payload).await;
    if execute_again != executed {
        return Err(Verdict::Fail(format!(
            "the action answered {executed}, and after its compensation a repeat answered {execute_again}"
        )));
    }
    Ok(pass_by_output(
        output,
        "the repeated compensation and the repeated action replayed their first answers",
    ))
}

async fn compensation_without_action(probe: &Probe, saga: Uuid) -> Judged {
    let answer = compensate_twice(probe, saga, &probe.target().payload).await?;
    Ok(Verdict::Pass(format!("answered {answer} twice")))
}

async fn action_after_compensation(probe: &Probe, saga: Uuid) -> Judged {
    let payload = &probe.target().payload;
    compensation_answered(&probe.compensate(saga, 1, payload).await)?;
    for attempt in 1..=2 {
        let late = probe.execute(saga, attempt, payload).await;
        if late.code() != Code::Aborted {
            return Err(Verdict::Fail(format!(
                "attempt {attempt} of the action after its compensation answered {late}; expected ABORTED"
            )));
        }
    }
    Ok(Verdict::Pass("ABORTED on attempts 1 and 2".to_owned()))
}

async fn compensation_racing_executes(probe: &Probe, saga: Uuid) -> Judged {
    let payload = &probe.target().payload;
    let deliveries = (1..).take(probe.target().concurrency);
    let executes = join_all(deliveries.map(|attempt| probe.execute(saga, attempt, payload)));
    let (mut answers, compensated) = tokio::join!(executes, probe.compensate(saga, 1, payload));
    compensation_answered(&compensated)?;
    answers.push(probe.execute(saga, 99, payload).await);
    if let Some(unexpected) = answers
        .iter()
        .find(|answer| !matches!(answer, Answer::Ok(_)) && answer.code() != Code::Aborted)
    {
        return Err(Verdict::Fail(format!(
            "an execute answered {unexpected}; expected its output, or ABORTED if the compensation came first"
        )));
    }
    alike(&answers)?;
    let order = if answers[0].code() == Code::Aborted {
        "the compensation came first: every execute answered ABORTED"
    } else {
        "the action came first: every execute answered its output, then it was compensated"
    };
    Ok(Verdict::Pass(order.to_owned()))
}

async fn refusal(probe: &Probe, saga: Uuid) -> Judged {
    let payload = refusal_payload(probe)?;
    let first = probe.execute(saga, 1, payload).await;
    refused(&first)?;
    replayed(&first, &probe.execute(saga, 2, payload).await)?;
    compensation_answered(&probe.compensate(saga, 1, payload).await)?;
    Ok(Verdict::Pass(format!("{first}, replayed; compensation OK")))
}

/// The world changed between the refusal and the operator's retry: the retry carries `--payload`, which
/// succeeds, so a participant that replays the old refusal to the new generation shows it.
async fn operator_retry(probe: &Probe, saga: Uuid) -> Judged {
    let refusal = refusal_payload(probe)?;
    let payload = &probe.target().payload;
    refused(&probe.execute(saga, 1, refusal).await)?;
    let retried = probe.execute_in(saga, 1, 1, payload).await;
    if retried.is_refusal() {
        return Err(Verdict::Fail(format!(
            "generation 1 answered {retried}: the refusal was replayed, so an operator retry could never succeed"
        )));
    }
    succeeded(&retried)?;
    for (generation, attempt) in [(1, 2), (0, 3)] {
        let later = probe.execute_in(saga, generation, attempt, payload).await;
        if later != retried {
            return Err(Verdict::Fail(format!(
                "generation 1 answered {retried}, then a generation {generation} delivery answered {later}"
            )));
        }
    }
    Ok(Verdict::Pass(
        "generation 1 ran afresh; its answer replayed to generations 1 and 0".to_owned(),
    ))
}

async fn unknown_action(probe: &Probe, saga: Uuid) -> Judged {
    let payload = &probe.target().payload;
    for direction in [Direction::Execute, Direction::Compensate] {
        let request = probe.request(saga, direction, UNKNOWN_ACTION, 1, payload);
        let answer = probe.deliver(direction, request).await;
        if answer.code() != Code::InvalidArgument {
            return Err(Verdict::Fail(format!(
                "{direction:?} of action {UNKNOWN_ACTION} answered {answer}; expected INVALID_ARGUMENT"
            )));
        }
    }
    let real = probe.execute(saga, 2, payload).await;
    if real.code() == Code::Aborted {
        return Err(Verdict::Fail(format!(
            "after the unknown compensation, the real action answered {real}: an invalid request fenced the step"
        )));
    }
    succeeded(&real)?;
    Ok(Verdict::Pass(
        "INVALID_ARGUMENT both ways, and the step then ran: nothing was fenced".to_owned(),
    ))
}

async fn malformed_request(probe: &Probe, saga: Uuid) -> Judged {
    let payload = &probe.target().payload;
    let action = &probe.target().action;
    let mut bad_id = probe.request(saga, Direction::Execute, action, 1, payload);
    bad_id.saga_id = "not-a-uuid".to_owned();
    let mut no_key = probe.request(saga, Direction::Execute, action, 1, payload);
    no_key.idempotency_key.clear();
    for (what, request) in [
        ("saga_id \"not-a-uuid\"", bad_id),
        ("no idempotency key", no_key),
    ] {
        let answer = probe.deliver(Direction::Execute, request).await;
        if answer.code() != Code::InvalidArgument {
            return Err(Verdict::Fail(format!(
                "{what} answered {answer}; expected INVALID_ARGUMENT"
            )));
        }
    }
    Ok(Verdict::Pass("INVALID_ARGUMENT for both".to_owned()))
}

/// Compensates twice with `state`; both must answer OK, the second as the first. Returns the answer.
async fn compensate_twice(
    probe: &Probe,
    saga: Uuid,
    state: &Map<String, Value>,
) -> Result<Answer, Verdict> {
    let first = probe.compensate(saga, 1, state).await;
    compensation_answered(&first)?;
    replayed(&first, &probe.compensate(saga, 2, state).await)?;
    Ok(first)
}

/// `--refusal-payload`, without which the refusal checks are skipped.
fn refusal_payload(probe: &Probe) -> Result<&Map<String, Value>, Verdict> {
    probe
        .target()
        .refusal_payload
        .as_ref()
        .ok_or_else(|| Verdict::Skip("no --refusal-payload given".to_owned()))
}

/// An answer to `--refusal-payload` must be a refusal, not a success and not a transient code.
fn refused(answer: &Answer) -> Result<(), Verdict> {
    if matches!(answer, Answer::Ok(_)) {
        return Err(Verdict::Fail(format!(
            "the refusal payload was accepted: {answer}"
        )));
    }
    if !answer.is_refusal() {
        return Err(Verdict::Fail(format!(
            "answered {answer}, a transient code: the coordinator would retry it instead of compensating"
        )));
    }
    Ok(())
}

/// The output of an action answer to `--payload`, which must succeed.
fn succeeded(answer: &Answer) -> Result<&Map<String, Value>, Verdict> {
    match answer {
        Answer::Ok(output) => Ok(output),
        other => Err(Verdict::Fail(format!(
            "the action answered {other} to --payload, which must succeed"
        ))),
    }
}

/// A compensation must answer OK: it never refuses, and with nothing to undo it has nothing to fail.
fn compensation_answered(answer: &Answer) -> Result<(), Verdict> {
    match answer {
        Answer::Ok(_) => Ok(()),
        other => Err(Verdict::Fail(format!(
            "a compensation answered {other}; a compensation never refuses"
        ))),
    }
}

/// A repeat must answer exactly what the first delivery answered.
fn replayed(first: &Answer, repeat: &Answer) -> Result<(), Verdict> {
    if repeat == first {
        return Ok(());
    }
    Err(Verdict::Fail(format!(
        "first answer {first}, the repeat answered {repeat}"
    )))
}

/// Deliveries of one step must all get the same answer; a failure names the distinct ones.
fn alike(answers: &[Answer]) -> Result<(), Verdict> {
    let distinct: BTreeSet<String> = answers.iter().map(ToString::to_string).collect();
    if distinct.len() <= 1 {
        return Ok(());
    }
    let shown: Vec<String> = distinct.into_iter().take(3).collect();
    Err(Verdict::Fail(format!(
        "{} deliveries of one step got different answers: {}",
        answers.len(),
        shown.join(" / ")
    )))
}

/// A pass, qualified when the output is too plain for a second run to show in it.
fn pass_by_output(output: &Map<String, Value>, detail: &str) -> Verdict {
    if output.is_empty() {
        Verdict::Pass(format!(
            "{detail}; the output is empty, so only the answers could show a second run"
        ))
    } else {
        Verdict::Pass(detail.to_owned())
    }
}
