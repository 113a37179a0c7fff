//! Correctness at the edges (issue 9): outputs the saga log refuses, rows it cannot decode, leases that
//! may have expired, skewed clocks, full instances, many watchers, overloaded participants.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use saga_core::{FailureReason, HistoryEvent, JsonMap, Saga, SagaStatus};
use saga_engine::{Clock, EngineError, EngineSettings, StartRequest};
use saga_store::{Owner, SagaStore};

use crate::harness::{Behavior, Harness, statuses, wait_terminal_on};

fn history_kinds(events: &[saga_core::RecordedEvent]) -> Vec<&'static str> {
    events.iter().map(|e| e.event.kind()).collect()
}

#[tokio::test]
async fn an_output_the_saga_log_cannot_store_fails_the_step_once_and_compensates_it() {
    let h = Harness::start(
        |step, _, _| match step {
            "CHARGE" => Behavior::NulOutput,
            _ => Behavior::Ok,
        },
        |_| {},
    )
    .await;
    let saga = h.wait_terminal(h.start_saga().await).await;
    assert_eq!(saga.status, SagaStatus::Compensated);
    assert_eq!(
        saga.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::StepFailed)
    );
    let error = saga.steps[1].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("output.note holds a NUL character"),
        "{error}"
    );
    // The charge happened (it answered OK), so it is refunded; it is not asked again.
    assert_eq!(
        h.calls(),
        ["Reserve#1", "Charge#1", "Refund#1", "Unreserve#1"]
    );
    h.stop().await;
}

/// Creates a saga whose owner is gone (its lease already expired), as a crashed instance leaves it.
async fn orphaned(h: &Harness) -> Saga {
    let gone = Owner {
        name: "crashed-instance".to_owned(),
        lease: Duration::from_millis(1),
    };
    let saga = Saga::new(h.definition.clone(), JsonMap::new(), None, Utc::now());
    h.store.create(&saga, &gone).await.expect("create").saga
}

#[tokio::test]
async fn a_row_that_cannot_be_decoded_is_set_aside_without_holding_back_its_claim_batch() {
    let h = Harness::start(|_, _, _| Behavior::Ok, |_| {}).await;
    let good = orphaned(&h).await;
    let newer = orphaned(&h).await;
    // A newer version wrote a definition snapshot with a field this one does not know.
    sqlx::query(
        "UPDATE sagas SET definition = definition || '{\"from_a_newer_version\": true}'
         WHERE id = $1",
    )
    .bind(newer.id.0)
    .execute(h.store.pool())
    .await
    .expect("corrupt");

    let (b, b_shutdown) = h.second_instance(EngineSettings {
        recovery_interval: Duration::from_millis(50),
        ..EngineSettings::default()
    });
    b.run_background();
    let saga = wait_terminal_on(&b, good.id).await;
    assert_eq!(
        saga.status,
        SagaStatus::Completed,
        "the rest of the batch ran"
    );

    let (owner, due_in): (Option<String>, f64) = sqlx::query_as(
        "SELECT owner, EXTRACT(EPOCH FROM next_attempt_at - now())::float8 FROM sagas WHERE id = $1",
    )
    .bind(newer.id.0)
    .fetch_one(h.store.pool())
    .await
    .expect("row");
    assert_eq!(owner, None, "its lease was released");
    assert!(
        (200.0..=300.0).contains(&due_in),
        "set aside for about five minutes, due in {due_in}s"
    );
    let events = h
        .store
        .history(newer.id)
        .await
        .expect("history")
        .expect("saga");
    assert_eq!(
        history_kinds(&events),
        ["SAGA_STARTED", "SAGA_CLAIMED", "SAGA_QUARANTINED"]
    );
    let HistoryEvent::SagaQuarantined { error, owner, .. } = &events[2].event else {
        panic!("{:?}", events[2]);
    };
    assert!(error.contains("from_a_newer_version"), "{error}");
    assert_eq!(owner, b.instance());
    b_shutdown.cancel();
    b.drain(Duration::from_secs(5)).await;
    h.stop().await;
}

/// Makes every lease renewal fail (an update that only extends `lease_until`), as when the saga log
/// stops answering the heartbeat; claims and commits still work.
async fn break_renewals(h: &Harness) {
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_renewal() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'renewals are broken for this test'; END $$;
         CREATE TRIGGER refuse_renewal BEFORE UPDATE ON sagas FOR EACH ROW
         WHEN (NEW.owner = OLD.owner AND NEW.epoch = OLD.epoch AND NEW.revision = OLD.revision
               AND NEW.lease_until > OLD.lease_until)
         EXECUTE FUNCTION refuse_renewal();",
    )
    .execute(h.store.pool())
    .await
    .expect("trigger");
}

#[tokio::test]
async fn an_executor_whose_lease_may_have_expired_calls_no_participant() {
    // A holds the saga through a 600 ms retry wait with a 300 ms lease it cannot renew; meanwhile B
    // takes the saga over and retries CHARGE. A must not call CHARGE again when its wait ends.
    let settings = EngineSettings {
        lease: Duration::from_millis(300),
        recovery_interval: Duration::from_secs(3600),
        ..EngineSettings::default()
    };
    let h = Harness::start_with(
        |step, _, attempt| match (step, attempt) {
            ("CHARGE", 1) => Behavior::Unavailable,
            _ => Behavior::Ok,
        },
        |d| {
            d.retry.initial_backoff = Duration::from_millis(600);
            d.retry.max_backoff = Duration::from_millis(600);
        },
        &settings,
    )
    .await;
    break_renewals(&h).await;
    h.engine.run_background();
    let id = h.start_saga().await;
    let (b, b_shutdown) = h.second_instance(EngineSettings {
        lease: Duration::from_secs(10),
        recovery_interval: Duration::from_millis(20),
        ..EngineSettings::default()
    });
    b.run_background();
    let saga = wait_terminal_on(&b, id).await;
    assert_eq!(saga.status, SagaStatus::Completed);
    // A's wait ends about 600 ms after its failed attempt: give it the chance to misbehave, then stop it.
    tokio::time::sleep(Duration::from_millis(700)).await;
    h.engine_shutdown.cancel();
    h.engine.drain(Duration::from_secs(5)).await;
    assert_eq!(
        h.calls(),
        ["Reserve#1", "Charge#1", "Charge#2", "Ship#1"],
        "only B retried CHARGE"
    );
    b_shutdown.cancel();
    b.drain(Duration::from_secs(5)).await;
    h.stop().await;
}

#[tokio::test]
async fn leases_are_renewed_while_shutdown_waits_for_calls_in_flight() {
    // A's CHARGE takes 1 s; A is told to stop 100 ms into it, with a 3 s grace period and a 300 ms
    // lease. B would take the saga over if A's lease lapsed during the drain.
    let settings = EngineSettings {
        lease: Duration::from_millis(300),
        ..EngineSettings::default()
    };
    let h = Harness::start_with(
        |step, _, _| match step {
            "CHARGE" => Behavior::Slow(Duration::from_secs(1)),
            _ => Behavior::Ok,
        },
        |d| d.steps[1].timeout = Some(Duration::from_secs(5)),
        &settings,
    )
    .await;
    h.engine.run_background();
    let id = h.start_saga().await;
    let (b, b_shutdown) = h.second_instance(EngineSettings {
        recovery_interval: Duration::from_millis(20),
        ..EngineSettings::default()
    });
    b.run_background();
    h.wait_for_call("Charge#1").await;
    h.engine_shutdown.cancel();
    assert!(h.engine.drain(Duration::from_secs(3)).await, "drained");
    let saga = wait_terminal_on(&b, id).await;
    assert_eq!(saga.status, SagaStatus::Completed);
    assert_eq!(
        h.calls(),
        ["Reserve#1", "Charge#1", "Ship#1"],
        "A's lease held through the drain: its CHARGE was recorded, B only shipped"
    );
    b_shutdown.cancel();
    b.drain(Duration::from_secs(5)).await;
    h.stop().await;
}

fn an_hour_ahead() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::hours(1)
}

#[tokio::test]
async fn a_replica_whose_clock_is_an_hour_ahead_schedules_retries_and_deadlines_on_the_database_clock()
 {
    let h = Harness::start(
        |step, _, attempt| match (step, attempt) {
            ("CHARGE", 1) => Behavior::Unavailable,
            _ => Behavior::Ok,
        },
        |d| {
            d.retry.initial_backoff = Duration::from_millis(500);
            d.retry.max_backoff = Duration::from_millis(500);
            d.timeout = Some(Duration::from_secs(60));
        },
    )
    .await;
    let (skewed, shutdown) = h.instance(
        &EngineSettings {
            hold_wait: Duration::from_millis(100),
            recovery_interval: Duration::from_millis(50),
            ..EngineSettings::default()
        },
        Clock::with_local(an_hour_ahead),
        16,
    );
    skewed.sync_clock().await.expect("clock");
    skewed.run_background();
    let id = Harness::start_saga_on(&skewed).await;
    let mut watch = skewed.watch(id).await.expect("watch");
    let waiting = loop {
        let saga = watch.next().await.expect("running");
        if saga.next_attempt_at.is_some() {
            break saga;
        }
    };
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(h.store.pool())
        .await
        .expect("now");
    let retry_in = waiting.next_attempt_at.expect("retry") - now;
    let deadline_in = waiting.deadline_at.expect("deadline") - now;
    assert!(
        retry_in <= chrono::Duration::seconds(1),
        "retry due in {retry_in} by the database clock"
    );
    assert!(
        deadline_in <= chrono::Duration::seconds(60),
        "deadline in {deadline_in}"
    );
    let saga = wait_terminal_on(&skewed, id).await;
    assert_eq!(saga.status, SagaStatus::Completed);
    shutdown.cancel();
    skewed.drain(Duration::from_secs(5)).await;
    h.stop().await;
}

#[tokio::test]
async fn a_saga_an_operator_retries_on_a_full_instance_is_handed_to_an_instance_with_room() {
    // A parks a saga (its compensation keeps failing), then fills its only slot with a hanging saga.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let unreserve_fails = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let settings = EngineSettings {
        max_in_flight: 1,
        ..EngineSettings::default()
    };
    let h = {
        let (gate, unreserve_fails) = (gate.clone(), unreserve_fails.clone());
        Harness::start_with(
            move |_, action, _| match action {
                "Charge" => Behavior::Refuse,
                "Unreserve" if unreserve_fails.load(Ordering::SeqCst) => Behavior::Unavailable,
                "Reserve" if !unreserve_fails.load(Ordering::SeqCst) => {
                    Behavior::Gate(gate.clone())
                }
                _ => Behavior::Ok,
            },
            |_| {},
            &settings,
        )
        .await
    };
    let parked = h.wait_terminal(h.start_saga().await).await;
    assert_eq!(parked.status, SagaStatus::Failed);
    unreserve_fails.store(false, Ordering::SeqCst);
    let busy = h.start_saga().await;
    let full = h
        .engine
        .start(StartRequest {
            labels: Default::default(),
            traceparent: None,
            started_by: None,
            saga_type: "shop".into(),
            payload: JsonMap::new(),
            idempotency_key: None,
        })
        .await;
    assert!(
        matches!(full, Err(EngineError::Overloaded { limit: 1 })),
        "A is full: {full:?}"
    );
    // A renews the leases of what it drives, including a saga waiting for its slot, if it had one.
    h.engine.run_background();

    let (b, b_shutdown) = h.second_instance(EngineSettings {
        recovery_interval: Duration::from_secs(3600),
        ..EngineSettings::default()
    });
    b.run_background();
    let retried = h
        .engine
        .retry(parked.id, "participant fixed".to_owned(), None)
        .await
        .expect("retry recorded");
    assert_eq!(retried.status, SagaStatus::Compensating);
    // B hears of the released lease at once (NOTIFY) and finishes the compensation.
    let done = wait_terminal_on(&b, parked.id).await;
    assert_eq!(done.status, SagaStatus::Compensated);
    let claimed_by: Vec<String> = h
        .store
        .history(parked.id)
        .await
        .expect("history")
        .expect("saga")
        .into_iter()
        .filter_map(|e| match e.event {
            HistoryEvent::SagaClaimed { owner, .. } => Some(owner),
            _ => None,
        })
        .collect();
    assert_eq!(claimed_by, [b.instance()]);
    gate.add_permits(10);
    let busy = h.wait_terminal(busy).await;
    assert_eq!(busy.status, SagaStatus::Compensated);
    b_shutdown.cancel();
    b.drain(Duration::from_secs(5)).await;
    h.stop().await;
}

#[tokio::test]
async fn fifty_watchers_of_a_saga_another_replica_drives_cost_one_reload_a_second() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let h = {
        let gate = gate.clone();
        Harness::start(
            move |step, _, _| match step {
                "CHARGE" => Behavior::Gate(gate.clone()),
                _ => Behavior::Ok,
            },
            |d| d.steps[1].timeout = Some(Duration::from_secs(5)),
        )
        .await
    };
    let id = h.start_saga().await;
    // B watches the saga A drives.
    let (b, reads, b_shutdown) = h.counting_instance(&EngineSettings::default());
    b.run_background();
    let mut watches = Vec::new();
    for _ in 0..50 {
        watches.push(b.watch(id).await.expect("watch"));
    }
    // One reload per watcher per second would be 150 reads in three seconds.
    let before = reads.reads();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let spent = reads.reads() - before;
    println!("{spent} reads in 3 s for 50 watchers");
    assert!(spent <= 4, "{spent} reads: reloads are not shared");

    gate.add_permits(1);
    for watch in &mut watches {
        let mut last = None;
        while let Some(saga) = watch.next().await {
            last = Some(saga);
        }
        assert_eq!(last.expect("saga").status, SagaStatus::Completed);
    }
    b_shutdown.cancel();
    b.drain(Duration::from_secs(5)).await;
    h.stop().await;
}

#[tokio::test]
async fn calls_beyond_a_participants_concurrency_limit_wait_without_spending_their_attempt() {
    // Each CHARGE takes 100 ms against a 150 ms step timeout; twelve sagas at once, at most two calls
    // in flight: most wait far longer than the timeout for their slot, and none of that counts.
    let h = Harness::start(
        |step, _, _| match step {
            "CHARGE" => Behavior::Slow(Duration::from_millis(100)),
            _ => Behavior::Ok,
        },
        |_| {},
    )
    .await;
    let (limited, shutdown) = h.instance(&EngineSettings::default(), Clock::default(), 2);
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(Harness::start_saga_on(&limited).await);
    }
    for id in ids {
        let saga = wait_terminal_on(&limited, id).await;
        assert_eq!(saga.status, SagaStatus::Completed, "{:?}", statuses(&saga));
        assert_eq!(saga.steps[1].attempts, 1, "no attempt spent waiting");
    }
    assert_eq!(
        h.peak.load(Ordering::SeqCst),
        2,
        "never more than two at once"
    );
    shutdown.cancel();
    limited.drain(Duration::from_secs(5)).await;
    h.stop().await;
}

#[tokio::test]
async fn a_full_instance_does_not_scan_for_work_it_has_no_slot_for() {
    // B's only slot holds a saga whose CHARGE hangs; an orphaned saga is due all along.
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let h = {
        let gate = gate.clone();
        Harness::start(
            move |step, _, _| match step {
                "CHARGE" => Behavior::Gate(gate.clone()),
                _ => Behavior::Ok,
            },
            |d| d.steps[1].timeout = Some(Duration::from_secs(5)),
        )
        .await
    };
    let (b, store, b_shutdown) = h.counting_instance(&EngineSettings {
        max_in_flight: 1,
        recovery_interval: Duration::from_secs(1),
        ..EngineSettings::default()
    });
    let busy = b
        .start(StartRequest {
            labels: Default::default(),
            traceparent: None,
            started_by: None,
            saga_type: "shop".into(),
            payload: JsonMap::new(),
            idempotency_key: None,
        })
        .await
        .expect("start")
        .saga
        .id;
    h.wait_for_call("Charge#1").await;
    let orphan = orphaned(&h).await;
    b.run_background();
    // Polling for a saga it cannot take would be hundreds of scans a second; waiting for a slot (or the
    // one-second scan interval) is a handful.
    let before = store.scans();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let scans = store.scans() - before;
    println!("{scans} recovery scans in 2 s while full");
    assert!(scans <= 6, "{scans} scans in 2 s");
    // A freed slot wakes the loop at once: the orphan is driven.
    gate.add_permits(1);
    assert_eq!(
        wait_terminal_on(&b, busy).await.status,
        SagaStatus::Completed
    );
    assert_eq!(
        wait_terminal_on(&b, orphan.id).await.status,
        SagaStatus::Completed
    );
    b_shutdown.cancel();
    b.drain(Duration::from_secs(5)).await;
    h.stop().await;
}
