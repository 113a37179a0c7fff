//! Failure semantics end to end: retries with backoff, refusals, deadlines, compensation retries, parking,
//! the operator verbs and the history — real `sagad` and `demo-participants` processes on PostgreSQL,
//! faults injected through the saga payload.
//!
//! The definitions here are the shipped `purchase_plan` with millisecond backoffs and timeouts, so the
//! behaviour under test (waiting between attempts, deadlines) is real but quick.

use std::time::{Duration, Instant};

use e2e_tests::definitions::{policy, purchase_plan_as, write_dir};
use e2e_tests::{Stack, object, wait_terminal, watch_until};
use saga_proto::v1::{
    AbortSagaRequest, EventKind, FailureReason, GetSagaHistoryRequest, HistoryEvent,
    RetrySagaRequest, Saga, SagaStatus, StartSagaRequest, StepStatus, WatchSagaRequest,
    WatchSagaResponse,
};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio_stream::StreamExt;

/// Backoffs of the `purchase_plan` used here: 100 ms doubling, ±20%.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const JITTER: f64 = 0.2;

/// Test definitions on the shipped `purchase_plan` steps: `purchase_plan` with quick retries, one with a
/// short ALLOCATE_DEVICE deadline, one with a one-second saga deadline, one that waits a minute between
/// attempts.
fn definitions() -> TempDir {
    let minutes = |m: u64| Duration::from_secs(60 * m);
    write_dir(&[
        purchase_plan_as("purchase_plan", |d| {
            d.timeout = Some(minutes(5));
            d.step_timeout = Duration::from_secs(10);
            d.retry = policy(3, 100, 2.0, 1000, JITTER);
            d.compensation = policy(4, 20, 2.0, 200, 0.2);
        }),
        purchase_plan_as("purchase_plan_short_timeout", |d| {
            d.retry = policy(2, 10, 2.0, 100, 0.2);
            d.steps[2].timeout = Some(Duration::from_millis(300));
        }),
        purchase_plan_as("purchase_plan_deadline", |d| {
            d.timeout = Some(Duration::from_secs(1));
            d.step_timeout = Duration::from_secs(30);
        }),
        purchase_plan_as("purchase_plan_slow_retry", |d| {
            d.retry = policy(3, 60_000, 2.0, 60_000, 0.2);
        }),
    ])
}

async fn start(stack: &mut Stack, saga_type: &str, faults: Value) -> String {
    stack
        .start_saga(
            saga_type,
            json!({"userId": "u1", "planId": "pro", "faults": faults}),
        )
        .await
}

async fn open_watch(stack: &mut Stack, saga_id: &str) -> tonic::Streaming<WatchSagaResponse> {
    stack
        .client
        .watch_saga(WatchSagaRequest {
            saga_id: saga_id.to_owned(),
        })
        .await
        .expect("WatchSaga")
        .into_inner()
}

async fn history(stack: &mut Stack, saga_id: &str) -> Vec<HistoryEvent> {
    stack
        .client
        .get_saga_history(GetSagaHistoryRequest {
            saga_id: saga_id.to_owned(),
        })
        .await
        .expect("GetSagaHistory")
        .into_inner()
        .events
}

/// The history as `KIND step:attempt` lines, the way an operator reads it.
fn story(events: &[HistoryEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let kind = e.kind().as_str_name().trim_start_matches("EVENT_KIND_");
            if e.step.is_empty() {
                kind.to_owned()
            } else {
                format!("{kind} {}:{}", e.step, e.attempt)
            }
        })
        .collect()
}

fn millis_between(a: &prost_types::Timestamp, b: &prost_types::Timestamp) -> f64 {
    (b.seconds - a.seconds) as f64 * 1000.0 + f64::from(b.nanos - a.nanos) / 1e6
}

fn step<'a>(saga: &'a Saga, name: &str) -> &'a saga_proto::v1::Step {
    saga.steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}"))
}

async fn order_status(stack: &Stack, saga_id: &str) -> String {
    sqlx::query_scalar("SELECT status FROM billing.orders WHERE saga_id = $1::uuid")
        .bind(saga_id)
        .fetch_one(&stack.demo_db)
        .await
        .expect("order row")
}

#[tokio::test]
async fn transient_errors_are_retried_with_backoff_and_every_attempt_is_in_the_history() {
    let defs = definitions();
    let mut stack = Stack::start_in(defs.path()).await;
    let id = start(
        &mut stack,
        "purchase_plan",
        json!({"PROCESS_PAYMENT": "unavailable:2"}),
    )
    .await;
    let saga = stack.wait_terminal(&id).await;
    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    assert_eq!(step(&saga, "PROCESS_PAYMENT").attempts, 3);

    let events = history(&mut stack, &id).await;
    assert_eq!(
        story(&events),
        [
            "SAGA_STARTED",
            "STEP_SUCCEEDED VALIDATE_PLAN:1",
            "STEP_SUCCEEDED CREATE_ORDER:1",
            "STEP_SUCCEEDED ALLOCATE_DEVICE:1",
            "STEP_FAILED PROCESS_PAYMENT:1",
            "STEP_FAILED PROCESS_PAYMENT:2",
            "STEP_SUCCEEDED PROCESS_PAYMENT:3",
            "STEP_SUCCEEDED ACTIVATE_ORDER:1",
            "SAGA_COMPLETED",
        ]
    );
    // Each failure says what happened and when the retry is due; the retry waited for it.
    for (n, failed) in events
        .iter()
        .filter(|e| e.kind() == EventKind::StepFailed)
        .enumerate()
    {
        assert!(failed.error.contains("UNAVAILABLE"), "{}", failed.error);
        assert_eq!(failed.error_kind(), saga_proto::v1::ErrorKind::Transient);
        let retry_at = failed.retry_at.expect("retry scheduled");
        let scheduled = millis_between(failed.recorded_at.as_ref().expect("time"), &retry_at);
        let nominal = INITIAL_BACKOFF.as_secs_f64() * 1000.0 * 2f64.powi(n as i32);
        // retry_at is computed just before the commit that records the event, so the commit's own
        // latency (allowed up to 50 ms on a loaded machine) shortens the measured span, never lengthens it.
        assert!(
            scheduled >= nominal * (1.0 - JITTER) - 50.0
                && scheduled <= nominal * (1.0 + JITTER) + 1.0,
            "attempt {} retry scheduled {scheduled:.1} ms out, policy says {nominal} ms ±20%",
            n + 1
        );
        let next = &events[events.iter().position(|e| e == failed).expect("in list") + 1];
        let waited = millis_between(&retry_at, next.recorded_at.as_ref().expect("time"));
        assert!(
            waited >= 0.0,
            "attempt ran {waited:.1} ms before its retry time"
        );
    }
    assert_eq!(order_status(&stack, &id).await, "ACTIVE");
    stack.stop().await;
}

#[tokio::test]
async fn a_refusal_is_not_retried_and_the_steps_before_it_are_compensated() {
    let defs = definitions();
    let mut stack = Stack::start_in(defs.path()).await;
    let id = start(
        &mut stack,
        "purchase_plan",
        json!({"ALLOCATE_DEVICE": "refuse"}),
    )
    .await;
    let saga = stack.wait_terminal(&id).await;
    assert_eq!(saga.status(), SagaStatus::Compensated);
    assert_eq!(saga.failure_reason(), FailureReason::StepFailed);
    let device = step(&saga, "ALLOCATE_DEVICE");
    assert_eq!(device.attempts, 1);
    assert_eq!(device.status(), StepStatus::Failed);
    assert_eq!(
        device.compensation_attempts, 0,
        "a refused step is not undone"
    );
    let events = history(&mut stack, &id).await;
    let refusal = events
        .iter()
        .find(|e| e.kind() == EventKind::StepFailed)
        .expect("failure event");
    assert_eq!(refusal.error_kind(), saga_proto::v1::ErrorKind::Refusal);
    assert_eq!(refusal.retry_at, None);
    assert_eq!(order_status(&stack, &id).await, "CANCELLED");
    stack.stop().await;
}

#[tokio::test]
async fn a_step_that_hangs_past_its_deadline_is_retried_then_compensated_including_itself() {
    let defs = definitions();
    let mut stack = Stack::start_in(defs.path()).await;
    let id = start(
        &mut stack,
        "purchase_plan_short_timeout",
        json!({"ALLOCATE_DEVICE": "hang"}),
    )
    .await;
    let saga = stack.wait_terminal(&id).await;
    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    let device = step(&saga, "ALLOCATE_DEVICE");
    assert_eq!(device.attempts, 2);
    assert_eq!(device.status(), StepStatus::Compensated);
    assert!(
        device.last_error.contains("DEADLINE_EXCEEDED"),
        "{}",
        device.last_error
    );
    let events = history(&mut stack, &id).await;
    assert_eq!(
        story(&events)[3..],
        [
            "STEP_FAILED ALLOCATE_DEVICE:1",
            "STEP_FAILED ALLOCATE_DEVICE:2",
            "COMPENSATION_STARTED",
            "STEP_COMPENSATED ALLOCATE_DEVICE:1",
            "STEP_COMPENSATED CREATE_ORDER:1",
            "SAGA_COMPENSATED",
        ]
    );
    assert_eq!(order_status(&stack, &id).await, "CANCELLED");
    stack.stop().await;
}

#[tokio::test]
async fn the_saga_deadline_cuts_a_hanging_call_short_and_compensates_with_timed_out() {
    let defs = definitions();
    let mut stack = Stack::start_in(defs.path()).await;
    let started = Instant::now();
    let id = start(
        &mut stack,
        "purchase_plan_deadline",
        json!({"PROCESS_PAYMENT": "hang"}),
    )
    .await;
    let saga = stack.wait_terminal(&id).await;
    let took = started.elapsed();
    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.failure_reason(), FailureReason::TimedOut);
    assert!(
        saga.failure_message.contains("1s timeout"),
        "{}",
        saga.failure_message
    );
    // The step's own timeout is 30 s; the 1 s saga deadline ended the call.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        step(&saga, "PROCESS_PAYMENT").status(),
        StepStatus::Compensated
    );
    assert_eq!(
        step(&saga, "ALLOCATE_DEVICE").status(),
        StepStatus::Compensated
    );
    assert_eq!(order_status(&stack, &id).await, "CANCELLED");
    stack.stop().await;
}

#[tokio::test]
async fn a_compensation_that_fails_three_times_is_retried_until_it_succeeds() {
    let defs = definitions();
    let mut stack = Stack::start_in(defs.path()).await;
    let id = start(
        &mut stack,
        "purchase_plan",
        json!({"ALLOCATE_DEVICE": "refuse", "CREATE_ORDER:compensate": "unavailable:3"}),
    )
    .await;
    let saga = stack.wait_terminal(&id).await;
    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(step(&saga, "CREATE_ORDER").compensation_attempts, 4);
    let failures = history(&mut stack, &id)
        .await
        .iter()
        .filter(|e| e.kind() == EventKind::CompensationFailed)
        .count();
    assert_eq!(failures, 3);
    assert_eq!(order_status(&stack, &id).await, "CANCELLED");
    stack.stop().await;
}

#[tokio::test]
async fn exhausted_compensation_parks_the_saga_and_retry_finishes_it_once_the_participant_is_fixed()
{
    let defs = definitions();
    let mut stack = Stack::start_in(defs.path()).await;
    // The billing database refuses to change orders: CancelOrder fails with INTERNAL on every attempt.
    sqlx::raw_sql(
        "CREATE FUNCTION maintenance() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'billing.orders is read-only for maintenance'; END $$;
         CREATE TRIGGER maintenance BEFORE UPDATE ON billing.orders
             FOR EACH ROW EXECUTE FUNCTION maintenance();",
    )
    .execute(&stack.demo_db)
    .await
    .expect("install trigger");
    let id = start(
        &mut stack,
        "purchase_plan",
        json!({"ALLOCATE_DEVICE": "refuse"}),
    )
    .await;
    let parked = stack.wait_terminal(&id).await;
    assert_eq!(parked.status(), SagaStatus::Failed, "{parked:#?}");
    assert_eq!(parked.failure_reason(), FailureReason::CompensationFailed);
    assert!(
        parked.failure_message.contains("CREATE_ORDER"),
        "the parked saga names the stuck step: {}",
        parked.failure_message
    );
    let stuck = step(&parked, "CREATE_ORDER");
    assert_eq!(stuck.status(), StepStatus::Compensating);
    assert_eq!(stuck.compensation_attempts, 4);
    assert!(
        stuck.last_error.contains("INTERNAL"),
        "{}",
        stuck.last_error
    );
    assert_eq!(order_status(&stack, &id).await, "PENDING");

    sqlx::raw_sql("DROP TRIGGER maintenance ON billing.orders")
        .execute(&stack.demo_db)
        .await
        .expect("drop trigger");
    let retried = stack
        .client
        .retry_saga(RetrySagaRequest {
            saga_id: id.clone(),
            reason: "billing maintenance is over".to_owned(),
        })
        .await
        .expect("RetrySaga")
        .into_inner()
        .saga
        .expect("saga");
    assert_eq!(retried.status(), SagaStatus::Compensating);
    let saga = stack.wait_terminal(&id).await;
    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(
        step(&saga, "CREATE_ORDER").status(),
        StepStatus::Compensated
    );
    assert_eq!(order_status(&stack, &id).await, "CANCELLED");
    let events = history(&mut stack, &id).await;
    let retry = events
        .iter()
        .find(|e| e.kind() == EventKind::SagaRetried)
        .expect("retry in history");
    assert_eq!(retry.operator_reason, "billing maintenance is over");
    assert_eq!(retry.step, "CREATE_ORDER");
    assert_eq!(
        story(&events)[events.len() - 3..],
        [
            "SAGA_RETRIED CREATE_ORDER:0",
            "STEP_COMPENSATED CREATE_ORDER:1",
            "SAGA_COMPENSATED"
        ]
    );
    stack.stop().await;
}

#[tokio::test]
async fn abort_mid_saga_stops_the_hanging_step_and_compensates_everything_done() {
    let defs = definitions();
    let mut stack = Stack::start_in(defs.path()).await;
    let id = start(
        &mut stack,
        "purchase_plan",
        json!({"PROCESS_PAYMENT": "hang"}),
    )
    .await;
    // Watch until the saga is calling PROCESS_PAYMENT (which never answers).
    watch_until(&mut stack.client, &id, |saga| {
        saga.current_step == "PROCESS_PAYMENT"
    })
    .await;
    let aborted = stack
        .client
        .abort_saga(AbortSagaRequest {
            saga_id: id.clone(),
            reason: "customer cancelled at checkout".to_owned(),
        })
        .await
        .expect("AbortSaga")
        .into_inner()
        .saga
        .expect("saga");
    assert_eq!(aborted.status(), SagaStatus::Compensating);
    assert_eq!(aborted.failure_reason(), FailureReason::Aborted);

    let saga = stack.wait_terminal(&id).await;
    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert!(
        saga.failure_message
            .contains("customer cancelled at checkout"),
        "{}",
        saga.failure_message
    );
    // The hanging charge may have been under way, so it was compensated too; nothing went forward.
    assert_eq!(
        saga.steps.iter().map(|s| s.status()).collect::<Vec<_>>(),
        [
            StepStatus::Succeeded,
            StepStatus::Compensated,
            StepStatus::Compensated,
            StepStatus::Compensated,
            StepStatus::Skipped,
        ]
    );
    assert_eq!(order_status(&stack, &id).await, "CANCELLED");
    let charged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payment.payments WHERE saga_id = $1::uuid AND status <> 'REFUNDED'",
    )
    .bind(&id)
    .fetch_one(&stack.demo_db)
    .await
    .expect("payments");
    assert_eq!(charged, 0, "no payment left captured");
    let events = history(&mut stack, &id).await;
    let abort = events
        .iter()
        .find(|e| e.kind() == EventKind::SagaAborted)
        .expect("abort in history");
    assert_eq!(abort.operator_reason, "customer cancelled at checkout");
    stack.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_starts_with_one_idempotency_key_make_one_saga() {
    let defs = definitions();
    let stack = Stack::start_in(defs.path()).await;
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut client = stack.client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .start_saga(StartSagaRequest {
                    labels: Default::default(),
                    saga_type: "purchase_plan".to_owned(),
                    payload: Some(object(json!({"userId": "u1", "planId": "pro"}))),
                    idempotency_key: "checkout-7".to_owned(),
                    wait: None,
                })
                .await
                .expect("StartSaga")
                .into_inner()
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    let id = answers[0].saga_id.clone();
    assert!(
        answers.iter().all(|a| a.saga_id == id),
        "one saga id for all"
    );
    assert_eq!(answers.iter().filter(|a| a.created).count(), 1);
    let sagas: i64 = sqlx::query_scalar("SELECT count(*) FROM sagas")
        .fetch_one(&stack.saga_db)
        .await
        .expect("count");
    assert_eq!(sagas, 1);
    let mut client = stack.client.clone();
    let saga = wait_terminal(&mut client, &id).await;
    assert_eq!(saga.status(), SagaStatus::Completed);
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM billing.orders")
        .fetch_one(&stack.demo_db)
        .await
        .expect("count");
    assert_eq!(orders, 1);
    stack.stop().await;
}

#[tokio::test]
async fn watch_delivers_every_transition_in_order_and_ends_at_the_terminal_one() {
    let defs = definitions();
    let mut stack = Stack::start_in(defs.path()).await;
    // Two transient failures give the watch time to attach before the end, and more transitions.
    let id = start(
        &mut stack,
        "purchase_plan",
        json!({"CREATE_ORDER": "unavailable:2"}),
    )
    .await;
    let mut watch = open_watch(&mut stack, &id).await;
    let mut seen = Vec::new();
    while let Some(message) = watch.next().await {
        seen.push(message.expect("watch message").saga.expect("saga"));
    }
    let last = seen.last().expect("at least one message");
    assert_eq!(last.status(), SagaStatus::Completed);
    // Start + 2 failures + 5 successes = revision 7; every revision from the first seen arrived once.
    assert_eq!(last.revision, 7);
    let revisions: Vec<u64> = seen.iter().map(|s| s.revision).collect();
    let first = revisions[0];
    assert_eq!(revisions, (first..=7).collect::<Vec<_>>(), "{revisions:?}");
    assert!(
        first <= 2,
        "the watch attached late: first revision {first}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_open_watch_ends_with_unavailable_when_sagad_shuts_down_instead_of_holding_it_open() {
    let defs = definitions();
    let mut stack = Stack::start_in(defs.path()).await;
    let id = start(
        &mut stack,
        "purchase_plan_slow_retry",
        json!({"CREATE_ORDER": "unavailable"}),
    )
    .await;
    let mut watch = open_watch(&mut stack, &id).await;
    // Read until CREATE_ORDER's first attempt has failed: then the saga waits a minute, changing nothing.
    loop {
        let saga = watch
            .next()
            .await
            .expect("a message")
            .expect("saga")
            .saga
            .expect("saga");
        assert_eq!(saga.status(), SagaStatus::Running);
        if saga.steps[1].attempts == 1 {
            break;
        }
    }

    let stopping = Instant::now();
    let stop = tokio::spawn(stack.stop());
    let ended = watch.next().await.expect("a final message");
    let status = ended.expect_err("the stream ends with a status");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    stop.await.expect("sagad and participants stop cleanly");
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        stopping.elapsed()
    );
}
