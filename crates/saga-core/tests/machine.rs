//! Drives the pure state machine with scripted participants and checks every rule of DESIGN.md §1–2.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use saga_core::machine::Mismatch;
use saga_core::{
    Command, Definition, Direction, ErrorKind, FailureReason, HistoryEvent, Input, JsonMap,
    ResolvedAs, Saga, SagaStatus, StepFailure, StepStatus, apply, next_command,
};
use serde_json::json;

const PURCHASE: &str = r"
name: purchase_plan
version: 1
timeout: 5m
retry: {max_attempts: 3, initial_backoff: 1s, multiplier: 2.0, max_backoff: 30s, jitter: 0.0}
compensation: {max_attempts: 4, initial_backoff: 2s, multiplier: 2.0, max_backoff: 1m, jitter: 0.0}
steps:
  - {name: VALIDATE_PLAN,   participant: billing, action: ValidatePlan}
  - {name: CREATE_ORDER,    participant: billing, action: CreateOrder,   compensate: CancelOrder}
  - {name: ALLOCATE_DEVICE, participant: device,  action: AllocateDevice, compensate: ReleaseDevice}
  - {name: PROCESS_PAYMENT, participant: payment, action: Charge,        compensate: Refund}
  - {name: ACTIVATE_ORDER,  participant: billing, action: ActivateOrder, pivot: true}
  - {name: NOTIFY_USER,     participant: billing, action: Notify}
";

/// A scripted participant answer.
#[derive(Clone, Copy)]
enum Answer {
    Ok,
    Refuse,
    Unavailable,
}

struct Run {
    saga: Saga,
    calls: Vec<(String, Direction, u32)>,
    events: Vec<HistoryEvent>,
}

fn definition() -> Arc<Definition> {
    let participants: HashSet<String> = ["billing", "device", "payment"].map(String::from).into();
    Arc::new(Definition::from_yaml(PURCHASE, &participants).expect("valid definition"))
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

fn payload() -> JsonMap {
    json!({"userId": "u1"})
        .as_object()
        .cloned()
        .expect("object")
}

fn error(kind: ErrorKind) -> StepFailure {
    StepFailure {
        kind,
        message: format!("{kind:?}"),
    }
}

/// Runs a saga to the end with `script(step, direction, attempt)` answering every call; each call takes
/// one simulated second, and waits jump straight to their wake-up time.
fn drive(script: impl Fn(&str, Direction, u32) -> Answer) -> Run {
    drive_until(script, |_| false)
}

fn drive_until(
    script: impl Fn(&str, Direction, u32) -> Answer,
    stop: impl Fn(&Saga) -> bool,
) -> Run {
    let saga = Saga::new(definition(), payload(), None, t0());
    drive_from(saga, t0(), script, stop)
}

/// Drives `saga`, which goes on from a stuck compensation after CREATE_ORDER's, to the end with every
/// call OK: only CancelOrder is called, and the stuck compensation stays on record.
fn cancels_the_order_with_the_failure_on_record(saga: Saga, now: DateTime<Utc>) {
    let rest = drive_ok(saga, now);
    assert_eq!(rest.saga.status, SagaStatus::Compensated);
    assert_eq!(names(&rest), ["CREATE_ORDER:compensate:1"]);
    assert_eq!(
        rest.saga.failure.map(|f| f.reason),
        Some(FailureReason::CompensationFailed),
        "the stuck compensation stays on record"
    );
}

/// Continues driving `saga` from time `now` with every call answering OK, to the end.
fn drive_ok(saga: Saga, now: DateTime<Utc>) -> Run {
    drive_from(saga, now, |_, _, _| Answer::Ok, |_| false)
}

/// Continues driving `saga` from time `now`, as [`drive_until`] does.
fn drive_from(
    mut saga: Saga,
    mut now: DateTime<Utc>,
    script: impl Fn(&str, Direction, u32) -> Answer,
    stop: impl Fn(&Saga) -> bool,
) -> Run {
    let definition = saga.definition.clone();
    let mut run_calls = Vec::new();
    let mut events = Vec::new();
    for _ in 0..1000 {
        if stop(&saga) {
            break;
        }
        let input = match next_command(&saga, now) {
            Command::Done => break,
            Command::WaitUntil(at) => {
                now = at;
                continue;
            }
            Command::Expire => Input::DeadlinePassed,
            Command::Execute { index, attempt } => {
                let name = &definition.steps[index].name;
                run_calls.push((name.clone(), Direction::Execute, attempt));
                let result = match script(name, Direction::Execute, attempt) {
                    Answer::Ok => Ok(json!({ format!("{name}_out"): attempt })
                        .as_object()
                        .cloned()
                        .expect("object")),
                    Answer::Refuse => Err(error(ErrorKind::Refusal)),
                    Answer::Unavailable => Err(error(ErrorKind::Transient)),
                };
                Input::Executed {
                    index,
                    attempt,
                    started_at: now,
                    result,
                }
            }
            Command::Compensate { index, attempt } => {
                let name = &definition.steps[index].name;
                run_calls.push((name.clone(), Direction::Compensate, attempt));
                let result = match script(name, Direction::Compensate, attempt) {
                    Answer::Ok => Ok(()),
                    Answer::Refuse => Err(error(ErrorKind::Refusal)),
                    Answer::Unavailable => Err(error(ErrorKind::Transient)),
                };
                Input::Compensated {
                    index,
                    attempt,
                    result,
                }
            }
        };
        now += Duration::seconds(1);
        let t = apply(&saga, input, now, 0.5).expect("input matches the command");
        events.extend(t.events);
        saga = t.saga;
    }
    Run {
        saga,
        calls: run_calls,
        events,
    }
}

fn statuses(saga: &Saga) -> Vec<StepStatus> {
    saga.steps.iter().map(|s| s.status).collect()
}

fn names(run: &Run) -> Vec<String> {
    run.calls
        .iter()
        .map(|(n, d, a)| format!("{n}:{}:{a}", d.as_str()))
        .collect()
}

use StepStatus::{Compensated, Compensating, Failed, Pending, Skipped, Succeeded};

#[test]
fn happy_path_completes_and_merges_every_output_into_the_state() {
    let run = drive(|_, _, _| Answer::Ok);
    assert_eq!(run.saga.status, SagaStatus::Completed);
    assert_eq!(run.saga.failure, None);
    assert_eq!(statuses(&run.saga), [Succeeded; 6]);
    assert_eq!(run.saga.state["userId"], "u1");
    assert_eq!(run.saga.state["PROCESS_PAYMENT_out"], 1);
    assert!(run.saga.finished_at.is_some());
    assert_eq!(run.events.last(), Some(&HistoryEvent::SagaCompleted));
    assert_eq!(run.calls.len(), 6);
}

#[test]
fn a_refusal_compensates_completed_steps_in_reverse_and_never_calls_later_steps() {
    let run = drive(|step, _, _| match step {
        "ALLOCATE_DEVICE" => Answer::Refuse,
        _ => Answer::Ok,
    });
    assert_eq!(run.saga.status, SagaStatus::Compensated);
    let failure = run.saga.failure.clone().expect("failure recorded");
    assert_eq!(failure.reason, FailureReason::StepFailed);
    assert!(
        failure.message.contains("ALLOCATE_DEVICE refused"),
        "{}",
        failure.message
    );
    // VALIDATE_PLAN has no compensation, so it stays SUCCEEDED.
    assert_eq!(
        statuses(&run.saga),
        [Succeeded, Compensated, Failed, Skipped, Skipped, Skipped]
    );
    assert_eq!(
        names(&run),
        [
            "VALIDATE_PLAN:execute:1",
            "CREATE_ORDER:execute:1",
            "ALLOCATE_DEVICE:execute:1",
            "CREATE_ORDER:compensate:1",
        ]
    );
}

#[test]
fn transient_errors_are_retried_with_growing_backoff_then_succeed() {
    let run = drive(|step, _, attempt| match (step, attempt) {
        ("PROCESS_PAYMENT", 1 | 2) => Answer::Unavailable,
        _ => Answer::Ok,
    });
    assert_eq!(run.saga.status, SagaStatus::Completed);
    assert_eq!(run.saga.steps[3].attempts, 3);
    assert_eq!(run.saga.steps[3].last_error.as_deref(), Some("Transient"));
    let retries: Vec<_> = run
        .events
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::StepFailed { retry_at, .. } => *retry_at,
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 2);
    // The second retry is scheduled one simulated second (the call) plus the doubled 2s backoff
    // after the first.
    let gap = retries[1] - retries[0];
    assert_eq!(gap, Duration::seconds(1 + 2));
}

#[test]
fn exhausted_retries_compensate_the_failed_step_too_because_it_may_have_happened() {
    let run = drive(|step, d, _| match (step, d) {
        ("PROCESS_PAYMENT", Direction::Execute) => Answer::Unavailable,
        _ => Answer::Ok,
    });
    assert_eq!(run.saga.status, SagaStatus::Compensated);
    assert_eq!(run.saga.steps[3].attempts, 3);
    assert_eq!(
        statuses(&run.saga),
        [
            Succeeded,
            Compensated,
            Compensated,
            Compensated,
            Skipped,
            Skipped
        ]
    );
    let compensations: Vec<_> = names(&run)
        .into_iter()
        .filter(|c| c.contains("compensate"))
        .collect();
    assert_eq!(
        compensations,
        [
            "PROCESS_PAYMENT:compensate:1",
            "ALLOCATE_DEVICE:compensate:1",
            "CREATE_ORDER:compensate:1",
        ]
    );
}

#[test]
fn a_step_after_the_pivot_that_fails_for_good_parks_the_saga_without_compensating() {
    let run = drive(|step, _, _| match step {
        "NOTIFY_USER" => Answer::Unavailable,
        _ => Answer::Ok,
    });
    assert_eq!(run.saga.status, SagaStatus::Failed);
    assert_eq!(
        run.saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::ForwardFailed)
    );
    assert_eq!(statuses(&run.saga)[..5], [Succeeded; 5]);
    assert_eq!(run.saga.steps[5].status, Failed);
    assert!(names(&run).iter().all(|c| !c.contains("compensate")));
}

#[test]
fn a_pivot_whose_outcome_stays_unknown_parks_the_saga() {
    let run = drive(|step, _, _| match step {
        "ACTIVATE_ORDER" => Answer::Unavailable,
        _ => Answer::Ok,
    });
    assert_eq!(run.saga.status, SagaStatus::Failed);
    assert_eq!(
        run.saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::ForwardFailed)
    );
    assert_eq!(run.saga.steps[4].attempts, 3);
}

#[test]
fn a_refused_pivot_compensates_the_steps_before_it() {
    let run = drive(|step, _, _| match step {
        "ACTIVATE_ORDER" => Answer::Refuse,
        _ => Answer::Ok,
    });
    assert_eq!(run.saga.status, SagaStatus::Compensated);
    assert_eq!(
        statuses(&run.saga),
        [
            Succeeded,
            Compensated,
            Compensated,
            Compensated,
            Failed,
            Skipped
        ]
    );
}

#[test]
fn a_refusing_compensation_is_retried_until_it_succeeds() {
    let run = drive(|step, d, attempt| match (step, d, attempt) {
        ("ALLOCATE_DEVICE", Direction::Execute, _) => Answer::Refuse,
        ("CREATE_ORDER", Direction::Compensate, 1..=3) => Answer::Refuse,
        _ => Answer::Ok,
    });
    assert_eq!(run.saga.status, SagaStatus::Compensated);
    assert_eq!(run.saga.steps[1].compensation_attempts, 4);
}

#[test]
fn exhausted_compensation_parks_the_saga_with_compensation_failed() {
    let run = drive(|step, d, _| match (step, d) {
        ("ALLOCATE_DEVICE", Direction::Execute) => Answer::Refuse,
        ("CREATE_ORDER", Direction::Compensate) => Answer::Unavailable,
        _ => Answer::Ok,
    });
    assert_eq!(run.saga.status, SagaStatus::Failed);
    let failure = run.saga.failure.clone().expect("failure");
    assert_eq!(failure.reason, FailureReason::CompensationFailed);
    assert!(
        failure.message.contains("CREATE_ORDER"),
        "{}",
        failure.message
    );
    assert_eq!(run.saga.steps[1].status, Compensating);
    assert_eq!(run.saga.steps[1].compensation_attempts, 4);
    assert_eq!(
        run.events.last(),
        Some(&HistoryEvent::SagaParked {
            reason: FailureReason::CompensationFailed
        })
    );
}

#[test]
fn the_deadline_compensates_a_saga_stuck_retrying_before_its_pivot() {
    // PROCESS_PAYMENT keeps failing; with a huge retry budget the 5m deadline comes first.
    let definition = definition();
    let mut d = (*definition).clone();
    d.retry.max_attempts = 1000;
    d.retry.max_backoff = std::time::Duration::from_secs(60);
    let mut now = t0();
    let mut saga = Saga::new(Arc::new(d), payload(), None, now);
    let mut expired = false;
    loop {
        let input = match next_command(&saga, now) {
            Command::Done => break,
            Command::WaitUntil(at) => {
                now = at;
                continue;
            }
            Command::Expire => {
                expired = true;
                Input::DeadlinePassed
            }
            Command::Execute { index, attempt } => Input::Executed {
                index,
                attempt,
                started_at: now,
                result: if index == 3 {
                    Err(error(ErrorKind::Transient))
                } else {
                    Ok(JsonMap::new())
                },
            },
            Command::Compensate { index, attempt } => Input::Compensated {
                index,
                attempt,
                result: Ok(()),
            },
        };
        now += Duration::seconds(1);
        saga = apply(&saga, input, now, 0.5).expect("valid input").saga;
    }
    assert!(expired);
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(
        saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::TimedOut)
    );
    assert_eq!(
        statuses(&saga),
        [
            Succeeded,
            Compensated,
            Compensated,
            Compensated,
            Skipped,
            Skipped
        ]
    );
}

#[test]
fn an_input_that_does_not_match_the_next_command_is_rejected() {
    let saga = Saga::new(definition(), payload(), None, t0());
    let wrong = Input::Executed {
        index: 2,
        attempt: 1,
        started_at: t0(),
        result: Ok(JsonMap::new()),
    };
    assert!(apply(&saga, wrong, t0(), 0.5).is_err());
    let stale_attempt = Input::Executed {
        index: 0,
        attempt: 2,
        started_at: t0(),
        result: Ok(JsonMap::new()),
    };
    assert!(apply(&saga, stale_attempt, t0(), 0.5).is_err());
}

#[test]
fn current_step_follows_execution_then_compensation() {
    let run = drive_until(
        |step, _, _| match step {
            "PROCESS_PAYMENT" => Answer::Refuse,
            _ => Answer::Ok,
        },
        |s| s.status == SagaStatus::Compensating,
    );
    assert_eq!(run.saga.status, SagaStatus::Compensating);
    assert_eq!(
        run.saga.current_step(),
        Some(2),
        "ALLOCATE_DEVICE is undone first"
    );
    let fresh = Saga::new(definition(), payload(), None, t0());
    assert_eq!(fresh.current_step(), Some(0));
    assert_eq!(statuses(&fresh), [Pending; 6]);
}

#[test]
fn idempotency_keys_are_stable_per_step_and_direction() {
    let saga = Saga::new(definition(), payload(), None, t0());
    let k = saga.idempotency_key_for(2, Direction::Execute);
    assert_eq!(k, format!("{}:ALLOCATE_DEVICE:execute", saga.id));
    assert_ne!(k, saga.idempotency_key_for(2, Direction::Compensate));
    assert_eq!(k, saga.clone().idempotency_key_for(2, Direction::Execute));
}

#[test]
fn an_outcome_that_arrives_after_the_deadline_is_recorded_before_the_saga_expires() {
    let start = t0();
    let saga = Saga::new(definition(), payload(), None, start);
    let Command::Execute { index, attempt } = next_command(&saga, start) else {
        panic!("expected the first step")
    };
    // The call outlives the 5m deadline.
    let late = start + Duration::minutes(6);
    let t = apply(
        &saga,
        Input::Executed {
            index,
            attempt,
            started_at: start,
            result: Ok(JsonMap::new()),
        },
        late,
        0.5,
    )
    .expect("the outcome still answers the call that was made");
    assert_eq!(t.saga.steps[0].status, Succeeded);
    assert_eq!(t.changed_steps, [0]);
    assert_eq!(next_command(&t.saga, late), Command::Expire);

    let expired = apply(&t.saga, Input::DeadlinePassed, late, 0.5).expect("deadline passed");
    assert_eq!(
        expired.saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::TimedOut)
    );
    // CREATE_ORDER shows no attempt, but an owner that died may have called it: it is compensated (a
    // no-op behind the barrier if it never ran); the rest are skipped.
    assert_eq!(expired.saga.status, SagaStatus::Compensating);
    assert_eq!(
        statuses(&expired.saga),
        [Succeeded, Compensating, Skipped, Skipped, Skipped, Skipped]
    );
    assert!(expired.saga.steps[1].maybe_applied);
    assert_eq!(expired.changed_steps, [1, 2, 3, 4, 5]);
    assert_eq!(
        next_command(&expired.saga, late),
        Command::Compensate {
            index: 1,
            attempt: 1
        }
    );
    assert!(
        apply(&saga, Input::DeadlinePassed, start, 0.5).is_err(),
        "the deadline cannot pass before it is due"
    );
}

#[test]
fn a_retry_wait_ends_early_when_the_deadline_comes_first() {
    let mut d = (*definition()).clone();
    d.retry.initial_backoff = std::time::Duration::from_secs(600);
    d.retry.max_backoff = std::time::Duration::from_secs(600);
    let start = t0();
    let saga = Saga::new(Arc::new(d), payload(), None, start);
    let failed = apply(
        &saga,
        Input::Executed {
            index: 0,
            attempt: 1,
            started_at: start,
            result: Err(error(ErrorKind::Transient)),
        },
        start,
        0.5,
    )
    .expect("valid input")
    .saga;
    // The stored wake-up time is the deadline, so whichever instance picks the saga up wakes then.
    assert_eq!(failed.next_attempt_at, Some(start + Duration::minutes(5)));
    assert_eq!(
        next_command(&failed, start),
        Command::WaitUntil(start + Duration::minutes(5)),
        "wake at the 5m deadline, not the 10m retry"
    );
    assert_eq!(
        next_command(&failed, start + Duration::minutes(5)),
        Command::Expire
    );
}

/// Applies an operator input to `run`'s saga one second after its last change.
fn operator(run: &Run, input: Input) -> Result<saga_core::Transition, Mismatch> {
    let now = run.saga.updated_at + Duration::seconds(1);
    apply(&run.saga, input, now, 0.5)
}

fn abort() -> Input {
    Input::Abort {
        reason: "customer cancelled".to_owned(),
        by: Some("ops".to_owned()),
    }
}

fn retry() -> Input {
    Input::Retry {
        reason: "participant fixed".to_owned(),
        by: None,
    }
}

#[test]
fn abort_compensates_the_completed_steps_and_the_one_that_may_be_in_flight() {
    let run = drive_until(|_, _, _| Answer::Ok, |saga| saga.current_step() == Some(2));
    let t = operator(&run, abort()).expect("a running saga can be aborted");
    assert_eq!(t.saga.status, SagaStatus::Compensating);
    let failure = t.saga.failure.clone().expect("failure");
    assert_eq!(failure.reason, FailureReason::Aborted);
    assert!(
        failure.message.contains("customer cancelled"),
        "{}",
        failure.message
    );
    assert_eq!(
        t.events,
        [
            HistoryEvent::SagaAborted {
                reason: "customer cancelled".to_owned(),
                by: Some("ops".to_owned()),
            },
            HistoryEvent::CompensationStarted {
                reason: FailureReason::Aborted
            },
        ]
    );
    // ALLOCATE_DEVICE had not answered yet: it may be running, so it is compensated too.
    assert_eq!(
        statuses(&t.saga),
        [
            Succeeded,
            Succeeded,
            Compensating,
            Skipped,
            Skipped,
            Skipped
        ]
    );
    let rest = drive_ok(t.saga, run.saga.updated_at);
    assert_eq!(rest.saga.status, SagaStatus::Compensated);
    assert_eq!(
        names(&rest),
        ["ALLOCATE_DEVICE:compensate:1", "CREATE_ORDER:compensate:1"]
    );
}

#[test]
fn abort_of_a_step_without_compensation_fails_it_since_its_call_may_be_in_flight() {
    let run = drive_until(|_, _, _| Answer::Ok, |saga| saga.current_step() == Some(0));
    let t = operator(&run, abort()).expect("abortable");
    assert_eq!(t.saga.status, SagaStatus::Compensated);
    assert_eq!(
        statuses(&t.saga),
        [Failed, Skipped, Skipped, Skipped, Skipped, Skipped]
    );
}

#[test]
fn abort_is_refused_once_the_saga_cannot_be_compensated_any_more() {
    let completed = drive(|_, _, _| Answer::Ok);
    let past_pivot = drive_until(|_, _, _| Answer::Ok, |saga| saga.past_pivot());
    let compensating = drive_until(
        |step, d, _| match (step, d) {
            ("ALLOCATE_DEVICE", Direction::Execute) => Answer::Refuse,
            _ => Answer::Ok,
        },
        |saga| saga.status == SagaStatus::Compensating,
    );
    let parked = drive(|step, _, _| match step {
        "NOTIFY_USER" => Answer::Unavailable,
        _ => Answer::Ok,
    });
    let passed_pivot = Mismatch::PivotReached {
        pivot: "ACTIVATE_ORDER".to_owned(),
        passed: true,
    };
    for (run, expected) in [
        (&completed, Mismatch::AlreadyFinished(SagaStatus::Completed)),
        (&past_pivot, passed_pivot),
        (&compensating, Mismatch::AlreadyCompensating),
        (&parked, Mismatch::AbortParked),
    ] {
        let err = operator(run, abort()).expect_err("abort refused");
        assert_eq!(err, expected);
    }
    assert!(
        Mismatch::AbortParked.to_string().contains("RetrySaga"),
        "the refusal says what to do instead"
    );
}

#[test]
fn retry_resumes_a_stuck_compensation_with_a_fresh_budget() {
    let parked = drive(|step, d, _| match (step, d) {
        ("ALLOCATE_DEVICE", Direction::Execute) => Answer::Refuse,
        ("CREATE_ORDER", Direction::Compensate) => Answer::Unavailable,
        _ => Answer::Ok,
    });
    assert_eq!(parked.saga.status, SagaStatus::Failed);
    let t = operator(&parked, retry()).expect("a parked saga can be retried");
    assert_eq!(t.saga.status, SagaStatus::Compensating);
    assert_eq!(t.saga.finished_at, None);
    assert_eq!(t.saga.steps[1].compensation_attempts, 0);
    assert_eq!(
        t.events,
        [HistoryEvent::SagaRetried {
            step: 1,
            reason: "participant fixed".to_owned(),
            by: None,
        }]
    );
    cancels_the_order_with_the_failure_on_record(t.saga, parked.saga.updated_at);
}

#[test]
fn retry_resumes_a_step_after_the_pivot_and_the_saga_completes() {
    let parked = drive(|step, _, _| match step {
        "NOTIFY_USER" => Answer::Unavailable,
        _ => Answer::Ok,
    });
    assert_eq!(
        parked.saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::ForwardFailed)
    );
    let t = operator(&parked, retry()).expect("retryable");
    assert_eq!(t.saga.status, SagaStatus::Running);
    assert_eq!(t.saga.failure, None);
    assert_eq!(t.saga.deadline_at, None);
    let rest = drive_ok(t.saga, parked.saga.updated_at);
    assert_eq!(rest.saga.status, SagaStatus::Completed);
    assert_eq!(names(&rest), ["NOTIFY_USER:execute:1"]);
}

#[test]
fn retry_is_refused_unless_the_saga_is_parked() {
    let running = drive_until(|_, _, _| Answer::Ok, |saga| saga.current_step() == Some(1));
    let completed = drive(|_, _, _| Answer::Ok);
    for (run, status) in [
        (&running, SagaStatus::Running),
        (&completed, SagaStatus::Completed),
    ] {
        let err = operator(run, retry()).expect_err("retry refused");
        assert_eq!(
            err,
            Mismatch::NotParked {
                status,
                verb: "retried"
            }
        );
    }
}

#[test]
fn a_refusal_after_a_lost_answer_compensates_the_step_because_the_first_attempt_may_have_happened()
{
    let run = drive(|step, d, attempt| match (step, d, attempt) {
        ("ALLOCATE_DEVICE", Direction::Execute, 1) => Answer::Unavailable,
        ("ALLOCATE_DEVICE", Direction::Execute, _) => Answer::Refuse,
        _ => Answer::Ok,
    });
    assert_eq!(run.saga.status, SagaStatus::Compensated);
    assert_eq!(
        names(&run)[4..],
        ["ALLOCATE_DEVICE:compensate:1", "CREATE_ORDER:compensate:1"]
    );
}

/// Drives `saga` with `answer(step index, attempt)` for forward calls and OK compensations, from `now`,
/// and returns whether the deadline ever expired it.
fn drive_with_deadline_check(
    mut saga: Saga,
    mut now: DateTime<Utc>,
    answer: impl Fn(usize, u32) -> Result<JsonMap, StepFailure>,
) -> (Saga, bool) {
    let mut expired = false;
    for _ in 0..10_000 {
        let input = match next_command(&saga, now) {
            Command::Done => return (saga, expired),
            Command::WaitUntil(at) => {
                now = at;
                continue;
            }
            Command::Expire => {
                expired = true;
                Input::DeadlinePassed
            }
            Command::Execute { index, attempt } => Input::Executed {
                index,
                attempt,
                started_at: now,
                result: answer(index, attempt),
            },
            Command::Compensate { index, attempt } => Input::Compensated {
                index,
                attempt,
                result: Ok(()),
            },
        };
        now += Duration::seconds(1);
        saga = apply(&saga, input, now, 0.5).expect("valid input").saga;
    }
    panic!("saga did not finish")
}

#[test]
fn a_pivot_retried_past_the_saga_deadline_is_never_compensated_around() {
    // ACTIVATE_ORDER (the pivot) fails transiently for longer than the 5m saga deadline: the deadline no
    // longer applies once the pivot is reached, so the saga keeps retrying it and parks when the budget
    // runs out, instead of compensating the payment the pivot may already have built on.
    let mut d = (*definition()).clone();
    d.retry.max_attempts = 20;
    d.retry.max_backoff = std::time::Duration::from_secs(60);
    let saga = Saga::new(Arc::new(d), payload(), None, t0());
    let (saga, expired) = drive_with_deadline_check(saga, t0(), |index, _| {
        if index == 4 {
            Err(error(ErrorKind::Transient))
        } else {
            Ok(JsonMap::new())
        }
    });
    assert!(!expired, "the deadline expired a saga at its pivot");
    assert_eq!(saga.status, SagaStatus::Failed);
    assert_eq!(
        saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::ForwardFailed)
    );
    assert_eq!(saga.steps[4].attempts, 20, "every attempt was made");
    assert!(
        saga.updated_at > t0() + Duration::minutes(5),
        "past the deadline"
    );
    assert_eq!(statuses(&saga)[..4], [Succeeded; 4]);
}

#[test]
fn a_step_taken_over_past_the_deadline_is_compensated_though_no_attempt_was_recorded() {
    // The owner called PROCESS_PAYMENT and died before recording it; the next owner finds the saga past
    // its deadline. The charge may have happened: it is refunded.
    let run = drive_until(|_, _, _| Answer::Ok, |saga| saga.current_step() == Some(3));
    let late = t0() + Duration::minutes(10);
    assert_eq!(next_command(&run.saga, late), Command::Expire);
    let t = apply(&run.saga, Input::DeadlinePassed, late, 0.5).expect("deadline passed");
    assert_eq!(t.saga.steps[3].status, Compensating);
    assert!(t.saga.steps[3].maybe_applied);
    let rest = drive_ok(t.saga, late);
    assert_eq!(rest.saga.status, SagaStatus::Compensated);
    assert_eq!(
        names(&rest),
        [
            "PROCESS_PAYMENT:compensate:1",
            "ALLOCATE_DEVICE:compensate:1",
            "CREATE_ORDER:compensate:1"
        ]
    );
}

#[test]
fn abort_is_refused_while_the_pivot_may_be_in_flight() {
    let at_pivot = drive_until(|_, _, _| Answer::Ok, |saga| saga.current_step() == Some(4));
    let err = operator(&at_pivot, abort()).expect_err("abort refused at the pivot");
    assert_eq!(
        err,
        Mismatch::PivotReached {
            pivot: "ACTIVATE_ORDER".to_owned(),
            passed: false
        }
    );
    assert!(err.to_string().contains("only move forward"), "{err}");
}

#[test]
fn retry_of_a_refused_step_starts_a_new_generation_and_keeps_its_uncertainty() {
    // NOTIFY_USER (after the pivot) loses an answer, then is refused: the saga parks. A retry gives the
    // step a fresh budget in generation 1 — the participant's barrier runs it again instead of replaying
    // the refusal — and the step stays marked as possibly applied.
    let parked = drive(|step, _, attempt| match (step, attempt) {
        ("NOTIFY_USER", 1) => Answer::Unavailable,
        ("NOTIFY_USER", _) => Answer::Refuse,
        _ => Answer::Ok,
    });
    assert_eq!(parked.saga.status, SagaStatus::Failed);
    assert_eq!(parked.saga.steps[5].generation, 0);
    let t = operator(&parked, retry()).expect("retryable");
    let step = &t.saga.steps[5];
    assert_eq!((step.attempts, step.generation), (0, 1));
    assert!(step.maybe_applied, "an earlier attempt may have happened");
    assert_eq!(t.changed_steps, [5]);

    let again = drive_from(
        t.saga,
        parked.saga.updated_at,
        |_, _, _| Answer::Refuse,
        |_| false,
    );
    assert_eq!(again.saga.status, SagaStatus::Failed, "parks again");
    let t = operator(&again, retry()).expect("retryable again");
    assert_eq!(t.saga.steps[5].generation, 2);
}

#[test]
fn a_refused_pivot_that_may_have_run_in_an_earlier_generation_parks_instead_of_compensating() {
    let definition = definition();
    let mut saga = Saga::new(definition, payload(), None, t0());
    // The pivot's first generation ran out of attempts with unknown outcomes: parked.
    let (parked, _) = drive_with_deadline_check(saga.clone(), t0(), |index, _| {
        if index == 4 {
            Err(error(ErrorKind::Transient))
        } else {
            Ok(JsonMap::new())
        }
    });
    assert_eq!(parked.status, SagaStatus::Failed);
    let now = parked.updated_at + Duration::seconds(1);
    saga = apply(&parked, retry(), now, 0.5).expect("retryable").saga;
    // In generation 1 the participant refuses at once: the pivot may still have happened before.
    let (saga, _) = drive_with_deadline_check(saga, now, |index, _| {
        if index == 4 {
            Err(error(ErrorKind::Refusal))
        } else {
            Ok(JsonMap::new())
        }
    });
    assert_eq!(saga.status, SagaStatus::Failed);
    assert_eq!(
        saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::ForwardFailed)
    );
    assert_eq!(statuses(&saga)[..4], [Succeeded; 4], "nothing compensated");
}

#[test]
fn an_output_that_cannot_be_recorded_fails_the_step_at_once_and_compensates_it_too() {
    let saga = Saga::new(definition(), payload(), None, t0());
    let (saga, _) = drive_with_deadline_check(saga, t0(), |index, _| {
        if index == 2 {
            Err(StepFailure {
                kind: ErrorKind::InvalidOutput,
                message: "answered OK with an output the saga log cannot store".to_owned(),
            })
        } else {
            Ok(JsonMap::new())
        }
    });
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(saga.steps[2].attempts, 1, "not retried");
    assert_eq!(
        statuses(&saga),
        [
            Succeeded,
            Compensated,
            Compensated,
            Skipped,
            Skipped,
            Skipped
        ]
    );
    let failure = saga.failure.expect("failure");
    assert_eq!(failure.reason, FailureReason::StepFailed);
    assert!(
        failure.message.starts_with("ALLOCATE_DEVICE answered OK"),
        "{}",
        failure.message
    );
}

#[test]
fn operator_events_written_before_principals_existed_still_decode() {
    let old = json!({"kind": "SAGA_ABORTED", "reason": "customer cancelled"});
    let event: HistoryEvent = serde_json::from_value(old).expect("old row decodes");
    assert_eq!(
        event,
        HistoryEvent::SagaAborted {
            reason: "customer cancelled".to_owned(),
            by: None
        }
    );
    let new = HistoryEvent::SagaRetried {
        step: 1,
        reason: "fixed".to_owned(),
        by: Some("ops-alice".to_owned()),
    };
    let stored = serde_json::to_value(&new).expect("serialize");
    assert_eq!(stored["by"], "ops-alice");
    assert_eq!(
        serde_json::from_value::<HistoryEvent>(stored).expect("round trip"),
        new
    );
}

/// An operator's `ResolveSaga` of `step` as `outcome`, by "ops-alice".
fn resolve(step: &str, outcome: ResolvedAs) -> Input {
    Input::Resolve {
        step: step.to_owned(),
        outcome,
        note: "done by hand".to_owned(),
        reason: "participant has no API for it".to_owned(),
        by: Some("ops-alice".to_owned()),
    }
}

/// Runs the purchase with `adjust` applied to its definition, as [`drive`] does.
fn drive_adjusted(
    adjust: impl FnOnce(&mut Definition),
    script: impl Fn(&str, Direction, u32) -> Answer,
) -> Run {
    let mut d = (*definition()).clone();
    adjust(&mut d);
    let saga = Saga::new(Arc::new(d), payload(), None, t0());
    drive_from(saga, t0(), script, |_| false)
}

#[test]
fn a_compensation_resolved_by_hand_lets_the_compensations_before_it_run() {
    let parked = drive(|step, d, _| match (step, d) {
        ("PROCESS_PAYMENT", Direction::Execute) => Answer::Refuse,
        ("ALLOCATE_DEVICE", Direction::Compensate) => Answer::Unavailable,
        _ => Answer::Ok,
    });
    assert_eq!(parked.saga.status, SagaStatus::Failed);
    assert_eq!(parked.saga.parked_step(), Some(2));
    let t = operator(&parked, resolve("ALLOCATE_DEVICE", ResolvedAs::Compensated))
        .expect("a parked compensation can be resolved");
    assert_eq!(t.saga.status, SagaStatus::Compensating);
    assert_eq!(t.saga.finished_at, None);
    assert_eq!(t.changed_steps, [2]);
    let step = &t.saga.steps[2];
    assert_eq!(step.status, Compensated);
    assert_eq!(step.compensation_attempts, 4, "the attempts stay on record");
    let resolution = step.resolution.clone().expect("resolution recorded");
    assert_eq!(
        (resolution.outcome, resolution.by.as_deref()),
        (ResolvedAs::Compensated, Some("ops-alice"))
    );
    assert_eq!(resolution.note, "done by hand");
    assert_eq!(resolution.at, parked.saga.updated_at + Duration::seconds(1));
    assert_eq!(
        t.events,
        [HistoryEvent::StepResolved {
            step: 2,
            outcome: ResolvedAs::Compensated,
            note: "done by hand".to_owned(),
            reason: "participant has no API for it".to_owned(),
            by: Some("ops-alice".to_owned()),
        }]
    );
    cancels_the_order_with_the_failure_on_record(t.saga, parked.saga.updated_at);
}

#[test]
fn resolving_the_last_compensation_finishes_the_saga_at_once() {
    let parked = drive(|step, d, _| match (step, d) {
        ("ALLOCATE_DEVICE", Direction::Execute) => Answer::Refuse,
        ("CREATE_ORDER", Direction::Compensate) => Answer::Unavailable,
        _ => Answer::Ok,
    });
    let t = operator(&parked, resolve("CREATE_ORDER", ResolvedAs::Compensated)).expect("resolved");
    assert_eq!(t.saga.status, SagaStatus::Compensated);
    assert!(t.saga.finished_at.is_some());
    assert_eq!(t.events.last(), Some(&HistoryEvent::SagaCompensated));
    assert_eq!(next_command(&t.saga, t.saga.updated_at), Command::Done);
}

#[test]
fn a_forward_step_resolved_by_hand_moves_the_saga_on_to_the_steps_after_it() {
    // The pivot's outcome stays unknown: parked. The operator checks, finds the order was not activated,
    // activates it by hand and resolves the pivot as SUCCEEDED; NOTIFY_USER then runs.
    let parked = drive(|step, _, _| match step {
        "ACTIVATE_ORDER" => Answer::Unavailable,
        _ => Answer::Ok,
    });
    assert_eq!(parked.saga.parked_step(), Some(4));
    let t = operator(&parked, resolve("ACTIVATE_ORDER", ResolvedAs::Succeeded)).expect("resolved");
    assert_eq!(t.saga.status, SagaStatus::Running);
    assert_eq!(t.saga.failure, None);
    assert_eq!(t.saga.deadline_at, None, "the operator owns going forward");
    assert_eq!(t.saga.steps[4].status, Succeeded);
    assert_eq!(t.saga.steps[4].output, None, "nothing was answered");
    assert_eq!(t.saga.current_step(), Some(5));
    let rest = drive_ok(t.saga, parked.saga.updated_at);
    assert_eq!(rest.saga.status, SagaStatus::Completed);
    assert_eq!(names(&rest), ["NOTIFY_USER:execute:1"]);

    let last = drive(|step, _, _| match step {
        "NOTIFY_USER" => Answer::Refuse,
        _ => Answer::Ok,
    });
    let t = operator(&last, resolve("NOTIFY_USER", ResolvedAs::Succeeded)).expect("resolved");
    assert_eq!(t.saga.status, SagaStatus::Completed);
    assert_eq!(t.events.last(), Some(&HistoryEvent::SagaCompleted));
}

#[test]
fn resolve_is_refused_unless_the_saga_is_parked_at_that_step_with_the_outcome_it_needs() {
    let running = drive_until(|_, _, _| Answer::Ok, |saga| saga.current_step() == Some(1));
    let completed = drive(|_, _, _| Answer::Ok);
    let stuck_compensation = drive(|step, d, _| match (step, d) {
        ("PROCESS_PAYMENT", Direction::Execute) => Answer::Refuse,
        ("ALLOCATE_DEVICE", Direction::Compensate) => Answer::Unavailable,
        _ => Answer::Ok,
    });
    let stuck_forward = drive(|step, _, _| match step {
        "NOTIFY_USER" => Answer::Unavailable,
        _ => Answer::Ok,
    });
    use ResolvedAs::{Compensated as C, Succeeded as S};
    let not_parked = |status| Mismatch::NotParked {
        status,
        verb: "resolved",
    };
    let steps = |run: &Run| -> Vec<String> {
        run.saga
            .definition
            .steps
            .iter()
            .map(|s| s.name.clone())
            .collect()
    };
    let wrong_outcome = |step: &str, why, accepted| Mismatch::WrongOutcome {
        step: step.to_owned(),
        why,
        accepted,
    };
    for (run, step, outcome, expected) in [
        (&running, "CREATE_ORDER", C, not_parked(SagaStatus::Running)),
        (
            &completed,
            "NOTIFY_USER",
            S,
            not_parked(SagaStatus::Completed),
        ),
        (
            &stuck_compensation,
            "CREATE_ORDER",
            C,
            Mismatch::NotParkedAtStep {
                parked: "ALLOCATE_DEVICE".to_owned(),
                named: "CREATE_ORDER".to_owned(),
            },
        ),
        (
            &stuck_compensation,
            "SHIP_IT",
            C,
            Mismatch::NoSuchStep {
                steps: steps(&stuck_compensation),
            },
        ),
        (
            &stuck_compensation,
            "ALLOCATE_DEVICE",
            S,
            wrong_outcome(
                "ALLOCATE_DEVICE",
                "its compensation could not be made",
                Compensated,
            ),
        ),
        (
            &stuck_forward,
            "NOTIFY_USER",
            C,
            wrong_outcome(
                "NOTIFY_USER",
                "it failed for good where the saga can only move forward",
                StepStatus::Succeeded,
            ),
        ),
    ] {
        let err = operator(run, resolve(step, outcome)).expect_err("resolve refused");
        assert_eq!(err, expected);
    }
}

#[test]
fn a_manual_compensation_parks_without_a_call_and_goes_on_once_resolved_by_hand() {
    let manual_device = |d: &mut Definition| d.steps[2].manual = true;
    let parked = drive_adjusted(manual_device, |step, _, _| match step {
        "PROCESS_PAYMENT" => Answer::Refuse,
        _ => Answer::Ok,
    });
    assert_eq!(parked.saga.status, SagaStatus::Failed);
    let failure = parked.saga.failure.clone().expect("failure");
    assert_eq!(failure.reason, FailureReason::CompensationFailed);
    assert_eq!(
        failure.message,
        "the compensation of ALLOCATE_DEVICE (ReleaseDevice) is manual: do it by hand, then \
         ResolveSaga with outcome COMPENSATED"
    );
    assert!(
        names(&parked).iter().all(|c| !c.contains("compensate")),
        "nothing called: {:?}",
        names(&parked)
    );
    assert_eq!(parked.saga.steps[2].status, Compensating);
    assert_eq!(parked.saga.steps[2].compensation_attempts, 0);
    assert_eq!(
        parked.events[parked.events.len() - 2..],
        [
            HistoryEvent::CompensationStarted {
                reason: FailureReason::StepFailed
            },
            HistoryEvent::SagaParked {
                reason: FailureReason::CompensationFailed
            }
        ]
    );
    let err = operator(&parked, retry()).expect_err("a retry cannot call a manual compensation");
    assert_eq!(
        err,
        Mismatch::ManualCompensation("ALLOCATE_DEVICE".to_owned())
    );

    let t =
        operator(&parked, resolve("ALLOCATE_DEVICE", ResolvedAs::Compensated)).expect("resolved");
    cancels_the_order_with_the_failure_on_record(t.saga, parked.saga.updated_at);
}

#[test]
fn a_saga_parks_again_at_each_manual_compensation_it_reaches() {
    // PROCESS_PAYMENT's refund and CREATE_ORDER's cancellation are both manual, ALLOCATE_DEVICE's is not:
    // an abort at PROCESS_PAYMENT parks there at once; resolved, the device is released by call, then
    // the saga parks again at CREATE_ORDER.
    let both = |d: &mut Definition| {
        d.steps[1].manual = true;
        d.steps[3].manual = true;
    };
    let mut d = (*definition()).clone();
    both(&mut d);
    let saga = Saga::new(Arc::new(d), payload(), None, t0());
    let at_payment = drive_from(
        saga,
        t0(),
        |_, _, _| Answer::Ok,
        |s| s.current_step() == Some(3),
    );
    let aborted = operator(&at_payment, abort()).expect("abortable");
    assert_eq!(aborted.saga.status, SagaStatus::Failed);
    assert_eq!(aborted.saga.parked_step(), Some(3));
    let now = aborted.saga.updated_at;
    let resolved = apply(
        &aborted.saga,
        resolve("PROCESS_PAYMENT", ResolvedAs::Compensated),
        now + Duration::seconds(1),
        0.5,
    )
    .expect("resolved");
    let rest = drive_ok(resolved.saga, now);
    assert_eq!(names(&rest), ["ALLOCATE_DEVICE:compensate:1"]);
    assert_eq!(rest.saga.status, SagaStatus::Failed);
    assert_eq!(rest.saga.parked_step(), Some(1));
    assert!(
        rest.saga.failure.as_ref().is_some_and(|f| f
            .message
            .contains("compensation of CREATE_ORDER (CancelOrder)")),
        "{:?}",
        rest.saga.failure
    );
}

#[test]
fn a_step_resolved_event_round_trips_and_an_operator_event_without_by_decodes() {
    let event = HistoryEvent::StepResolved {
        step: 1,
        outcome: ResolvedAs::Succeeded,
        note: "activated in the admin console".to_owned(),
        reason: "pivot outcome unknown".to_owned(),
        by: None,
    };
    let stored = serde_json::to_value(&event).expect("serialize");
    assert_eq!(stored["kind"], "STEP_RESOLVED");
    assert_eq!(stored["outcome"], "SUCCEEDED");
    assert!(stored.get("by").is_none());
    assert_eq!(
        serde_json::from_value::<HistoryEvent>(stored).expect("decode"),
        event
    );
}
