//! The executor against a scripted participant: retries, refusals, deadlines, parking, shutdown, lease
//! takeovers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use saga_core::{FailureReason, SagaStatus, StepStatus};
use saga_engine::{EngineSettings, StartRequest};
use saga_store::SagaStore;

use crate::harness::{Behavior, Harness, statuses, wait_terminal_on};

#[tokio::test]
async fn transient_errors_are_retried_with_the_same_idempotency_key_until_the_step_succeeds() {
    let h = Harness::start(
        |step, _, attempt| match (step, attempt) {
            ("CHARGE", 1 | 2) => Behavior::Unavailable,
            _ => Behavior::Ok,
        },
        |_| {},
    )
    .await;
    let id = h.start_saga().await;
    let saga = h.wait_terminal(id).await;
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(saga.steps[1].attempts, 3);
    assert_eq!(saga.state["CHARGE_done"], 3);
    assert_eq!(
        h.calls(),
        ["Reserve#1", "Charge#1", "Charge#2", "Charge#3", "Ship#1"]
    );
    let keys: HashSet<(String, String)> = h
        .calls
        .borrow()
        .iter()
        .filter(|c| c.0 == "CHARGE")
        .map(|c| (c.3.clone(), c.4.clone()))
        .collect();
    assert_eq!(
        keys,
        HashSet::from([(
            format!("{id}:CHARGE:execute"),
            format!("{id}:CHARGE:execute")
        )]),
        "one key across retries, in the request and in metadata"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_refusal_compensates_completed_steps_and_stops() {
    let h = Harness::start(
        |step, _, _| match step {
            "CHARGE" => Behavior::Refuse,
            _ => Behavior::Ok,
        },
        |_| {},
    )
    .await;
    let saga = h.wait_terminal(h.start_saga().await).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(
        statuses(&saga),
        [
            StepStatus::Compensated,
            StepStatus::Failed,
            StepStatus::Skipped
        ]
    );
    assert_eq!(h.calls(), ["Reserve#1", "Charge#1", "Unreserve#1"]);
    h.stop().await;
}

#[tokio::test]
async fn a_step_that_never_answers_hits_its_deadline_and_is_compensated_because_it_may_have_happened()
 {
    let h = Harness::start(
        |_, action, _| match action {
            "Charge" => Behavior::Hang,
            _ => Behavior::Ok,
        },
        |_| {},
    )
    .await;
    let started = std::time::Instant::now();
    let saga = h.wait_terminal(h.start_saga().await).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(
        saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::StepFailed)
    );
    assert!(
        saga.steps[1]
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("DEADLINE_EXCEEDED"),
        "{:?}",
        saga.steps[1].last_error
    );
    assert_eq!(
        h.calls(),
        [
            "Reserve#1",
            "Charge#1",
            "Charge#2",
            "Charge#3",
            "Refund#1",
            "Unreserve#1"
        ]
    );
    // Three 150ms deadlines plus backoff: the step's own timeout applied, not the 2s default.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    h.stop().await;
}

#[tokio::test]
async fn the_saga_deadline_compensates_a_saga_that_keeps_retrying() {
    let h = Harness::start(
        |_, action, _| match action {
            "Charge" => Behavior::Unavailable,
            _ => Behavior::Ok,
        },
        |d| {
            d.timeout = Some(Duration::from_millis(200));
            d.retry.max_attempts = 1000;
        },
    )
    .await;
    let saga = h.wait_terminal(h.start_saga().await).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(
        saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::TimedOut)
    );
    assert_eq!(
        statuses(&saga)[..2],
        [StepStatus::Compensated, StepStatus::Compensated]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_compensation_that_keeps_failing_parks_the_saga_in_failed() {
    let h = Harness::start(
        |_, action, _| match action {
            "Charge" => Behavior::Refuse,
            "Unreserve" => Behavior::Unavailable,
            _ => Behavior::Ok,
        },
        |_| {},
    )
    .await;
    let saga = h.wait_terminal(h.start_saga().await).await;
    assert_eq!(saga.status, SagaStatus::Failed);
    assert_eq!(
        saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::CompensationFailed)
    );
    assert_eq!(saga.steps[0].compensation_attempts, 3);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_during_a_retry_wait_leaves_the_saga_running_in_the_log() {
    let h = Harness::start(
        |step, _, _| match step {
            "CHARGE" => Behavior::Unavailable,
            _ => Behavior::Ok,
        },
        |d| {
            d.retry.initial_backoff = Duration::from_secs(60);
            d.retry.max_backoff = Duration::from_secs(60);
        },
    )
    .await;
    let id = h.start_saga().await;
    // Follow the saga until the first CHARGE failure is committed and it sleeps towards its retry.
    let mut watch = h.engine.watch(id).await.expect("watch");
    let retry_scheduled = async {
        loop {
            let saga = watch.next().await.expect("the saga is running");
            if saga.next_attempt_at.is_some() {
                return saga;
            }
        }
    };
    let waiting = tokio::time::timeout(Duration::from_secs(5), retry_scheduled)
        .await
        .expect("retry scheduled");
    assert_eq!(waiting.steps[1].status, StepStatus::Running);

    h.shutdown.cancel();
    assert!(
        h.engine.drain(Duration::from_secs(2)).await,
        "drain ends without waiting out the backoff"
    );
    let after = h.store.load(id).await.expect("load").expect("exists");
    assert_eq!(after.status, SagaStatus::Running);
    assert_eq!(
        after.revision, waiting.revision,
        "nothing written after shutdown"
    );
    h.stop().await;
}

#[tokio::test]
async fn an_instance_that_lost_its_lease_mid_call_cannot_write_its_stale_result() {
    // Instance A's CHARGE call and then instance B's are each held until the test opens their gate.
    let gates = [
        Arc::new(tokio::sync::Semaphore::new(0)),
        Arc::new(tokio::sync::Semaphore::new(0)),
    ];
    let charges = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = {
        let gates = gates.clone();
        Harness::start(
            move |step, _, _| match step {
                "CHARGE" => {
                    let n = charges.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    gates
                        .get(n)
                        .map_or(Behavior::Ok, |gate| Behavior::Gate(gate.clone()))
                }
                _ => Behavior::Ok,
            },
            |d| d.steps[1].timeout = Some(Duration::from_secs(5)),
        )
        .await
    };
    let charge_calls = |n: usize| {
        h.wait_for_calls("CHARGE called", move |calls| {
            calls.iter().filter(|c| c.starts_with("Charge")).count() >= n
        })
    };
    let id = h.start_saga().await;
    charge_calls(1).await;

    // A stalls (its call hangs, it renews nothing) past its lease; B's recovery loop takes the saga
    // over and calls CHARGE again.
    sqlx::query("UPDATE sagas SET lease_until = now() - interval '1 second' WHERE id = $1")
        .bind(id.0)
        .execute(h.store.pool())
        .await
        .expect("expire A's lease");
    let (b, b_shutdown) = h.second_instance(EngineSettings {
        recovery_interval: Duration::from_millis(20),
        ..EngineSettings::default()
    });
    b.run_background();
    charge_calls(2).await;
    let before = h.store.load(id).await.expect("load").expect("exists");
    assert_eq!(before.epoch, 2, "B holds the saga at the second epoch");

    // A resumes first: its call answers, and its write — at the very revision it read — is refused.
    gates[0].add_permits(1);
    h.engine_shutdown.cancel();
    assert!(
        h.engine.drain(Duration::from_secs(5)).await,
        "A's executor ended after its refused write"
    );
    let after_a = h.store.load(id).await.expect("load").expect("exists");
    assert_eq!(
        after_a.revision, before.revision,
        "A's stale result changed nothing"
    );
    assert_eq!(after_a.steps[1].status, StepStatus::Pending);

    // B's call answers and B finishes the saga.
    gates[1].add_permits(1);
    let saga = wait_terminal_on(&b, id).await;
    assert_eq!(
        saga.status,
        SagaStatus::Completed,
        "{saga:#?} {:?}",
        h.calls()
    );
    let succeeded: Vec<usize> = h
        .store
        .history(id)
        .await
        .expect("history")
        .expect("saga")
        .iter()
        .filter_map(|e| match e.event {
            saga_core::HistoryEvent::StepSucceeded { step, .. } => Some(step),
            _ => None,
        })
        .collect();
    assert_eq!(succeeded, [0, 1, 2], "each step recorded once");
    assert_eq!(h.calls(), ["Reserve#1", "Charge#1", "Charge#1", "Ship#1"]);
    b_shutdown.cancel();
    b.drain(Duration::from_secs(5)).await;
    h.shutdown.cancel();
    h.server.await.expect("server");
}

#[tokio::test]
async fn a_long_retry_wait_releases_the_lease_and_the_recovery_loop_resumes_the_saga_when_due() {
    let h = Harness::start(
        |step, _, attempt| match (step, attempt) {
            ("CHARGE", 1) => Behavior::Unavailable,
            _ => Behavior::Ok,
        },
        |d| {
            d.retry.initial_backoff = Duration::from_millis(300);
            d.retry.max_backoff = Duration::from_millis(300);
        },
    )
    .await;
    // Its own recovery loop scans only hourly: only planning for the due time can resume the saga.
    let (engine, shutdown) = h.second_instance(EngineSettings {
        hold_wait: Duration::from_millis(100),
        recovery_interval: Duration::from_secs(3600),
        ..EngineSettings::default()
    });
    engine.run_background();
    let started = std::time::Instant::now();
    let id = engine
        .start(StartRequest {
            labels: Default::default(),
            traceparent: None,
            started_by: None,
            saga_type: "shop".into(),
            payload: serde_json::Map::new(),
            idempotency_key: None,
        })
        .await
        .expect("start")
        .saga
        .id;
    let saga = wait_terminal_on(&engine, id).await;
    let took = started.elapsed();
    assert_eq!(saga.status, SagaStatus::Completed);
    assert!(
        took < Duration::from_secs(2),
        "resumed {took:?} after start; the retry was due after 300 ms"
    );
    let claims = h
        .store
        .history(id)
        .await
        .expect("history")
        .expect("saga")
        .iter()
        .filter(|e| matches!(e.event, saga_core::HistoryEvent::SagaClaimed { .. }))
        .count();
    assert_eq!(claims, 1, "released for the wait, claimed back when due");
    assert_eq!(saga.epoch, 2);
    shutdown.cancel();
    engine.drain(Duration::from_secs(5)).await;
    h.stop().await;
}
