//! `PgStore` against a real PostgreSQL, one fresh database per test.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DurationRound, TimeDelta, Utc};
use saga_core::{
    Command, Definition, FailureReason, HistoryEvent, Input, JsonMap, Label, Labels, ListFilter,
    ResolvedAs, Saga, SagaId, SagaStatus, StepStatus, apply, next_command,
};
use saga_store::{LeaseAfter, Owner, PgStore, SagaStore, StoreError, Wakeups};
use saga_testkit::TestDatabase;
use serde_json::json;

const DEFINITION: &str = r"
name: purchase_plan
version: 2
timeout: 5m
steps:
  - {name: CREATE_ORDER,    participant: billing, action: CreateOrder,    compensate: CancelOrder}
  - {name: ALLOCATE_DEVICE, participant: device,  action: AllocateDevice, compensate: ReleaseDevice}
  - {name: ACTIVATE_ORDER,  participant: billing, action: ActivateOrder}
";

/// The instance the tests write as.
fn owner() -> Owner {
    Owner {
        name: "test-instance".to_owned(),
        lease: std::time::Duration::from_secs(30),
    }
}

async fn store() -> (PgStore, TestDatabase) {
    let db = TestDatabase::create("saga_store").await;
    let store = PgStore::connect(&db.url(), 4).await.expect("connect");
    store.migrate().await.expect("migrate");
    (store, db)
}

fn new_saga(key: Option<&str>) -> Saga {
    let participants: HashSet<String> = ["billing", "device"].map(String::from).into();
    let definition = Definition::from_yaml(DEFINITION, &participants).expect("valid");
    // PostgreSQL keeps microseconds; round so the round trip compares equal.
    let now = Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .expect("truncate");
    let payload: JsonMap = json!({"userId": "u1", "amountCents": 2999})
        .as_object()
        .cloned()
        .expect("object");
    Saga::new(Arc::new(definition), payload, key.map(String::from), now)
}

async fn event_kinds(store: &PgStore, id: SagaId) -> Vec<String> {
    sqlx::query_scalar("SELECT kind FROM saga_events WHERE saga_id = $1 ORDER BY id")
        .bind(id.0)
        .fetch_all(store.pool())
        .await
        .expect("events")
}

/// Executes the next step of `saga` with `result` and commits the transition.
async fn step(
    store: &PgStore,
    saga: &Saga,
    result: Result<JsonMap, saga_core::StepFailure>,
) -> Saga {
    let now = Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .expect("truncate");
    let Command::Execute { index, attempt } = next_command(saga, now) else {
        panic!("expected an execute command")
    };
    let input = Input::Executed {
        index,
        attempt,
        started_at: now,
        result,
    };
    let transition = apply(saga, input, now, 0.5).expect("valid input");
    let committed = store
        .commit(&transition, &owner(), LeaseAfter::Keep)
        .await
        .expect("commit");
    Saga {
        revision: committed.revision,
        epoch: committed.epoch,
        ..transition.saga
    }
}

#[tokio::test]
async fn a_created_saga_loads_back_identically_with_pending_steps_and_a_start_event() {
    let (store, _db) = store().await;
    let saga = new_saga(None);
    let created = store.create(&saga, &owner()).await.expect("create");
    assert!(created.created);
    assert_eq!(created.saga.epoch, 1, "leased to its creator");
    let loaded = store.load(saga.id).await.expect("load").expect("exists");
    assert_eq!(loaded, Saga { epoch: 1, ..saga });
    assert!(loaded.steps.iter().all(|s| s.status == StepStatus::Pending));
    assert_eq!(event_kinds(&store, saga.id).await, ["SAGA_STARTED"]);
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_existing_saga_instead_of_a_second_one() {
    let (store, _db) = store().await;
    let first = new_saga(Some("order-42"));
    let first = store.create(&first, &owner()).await.expect("create").saga;
    let again = new_saga(Some("order-42"));
    let created = store.create(&again, &owner()).await.expect("create again");
    assert!(!created.created);
    assert_eq!(created.saga.id, first.id);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sagas")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(count, 1);
    let other_key = store
        .create(&new_saga(Some("order-43")), &owner())
        .await
        .expect("create");
    assert!(other_key.created);
}

#[tokio::test]
async fn a_commit_writes_step_rows_progress_and_events_and_bumps_the_revision() {
    let (store, _db) = store().await;
    let saga = new_saga(None);
    let saga = store.create(&saga, &owner()).await.expect("create").saga;

    let output: JsonMap = json!({"orderId": "o-1"})
        .as_object()
        .cloned()
        .expect("object");
    let saga = step(&store, &saga, Ok(output)).await;
    assert_eq!(saga.revision, 1);
    let loaded = store.load(saga.id).await.expect("load").expect("exists");
    assert_eq!(loaded, saga);
    assert_eq!(loaded.state["orderId"], "o-1");
    assert_eq!(loaded.steps[0].status, StepStatus::Succeeded);
    assert_eq!(loaded.steps[0].attempts, 1);
    assert_eq!(loaded.current_step(), Some(1));

    let refusal = saga_core::StepFailure {
        kind: saga_core::ErrorKind::Refusal,
        message: "FAILED_PRECONDITION: no devices left".into(),
    };
    let saga = step(&store, &saga, Err(refusal)).await;
    let loaded = store.load(saga.id).await.expect("load").expect("exists");
    assert_eq!(loaded.status, SagaStatus::Compensating);
    assert_eq!(
        loaded.failure.as_ref().map(|f| f.reason),
        Some(FailureReason::StepFailed)
    );
    assert_eq!(
        loaded.steps.iter().map(|s| s.status).collect::<Vec<_>>(),
        [
            StepStatus::Succeeded,
            StepStatus::Failed,
            StepStatus::Skipped
        ]
    );
    assert_eq!(
        event_kinds(&store, saga.id).await,
        [
            "SAGA_STARTED",
            "STEP_SUCCEEDED",
            "STEP_FAILED",
            "COMPENSATION_STARTED"
        ]
    );
    let current: Option<i32> = sqlx::query_scalar("SELECT current_step FROM sagas WHERE id = $1")
        .bind(saga.id.0)
        .fetch_one(store.pool())
        .await
        .expect("current step");
    assert_eq!(current, Some(0), "CREATE_ORDER is compensated next");
}

#[tokio::test]
async fn a_stale_writer_is_rejected_and_changes_nothing() {
    let (store, _db) = store().await;
    let saga = new_saga(None);
    let saga = store.create(&saga, &owner()).await.expect("create").saga;
    let _moved_on = step(&store, &saga, Ok(JsonMap::new())).await;

    // A second writer still holding revision 0 computes its own transition.
    let now = Utc::now();
    let stale = apply(
        &saga,
        Input::Executed {
            index: 0,
            attempt: 1,
            started_at: now,
            result: Ok(json!({"orderId": "stale"})
                .as_object()
                .cloned()
                .expect("object")),
        },
        now,
        0.5,
    )
    .expect("valid input");
    let err = store
        .commit(&stale, &owner(), LeaseAfter::Keep)
        .await
        .expect_err("stale revision must fail");
    assert!(matches!(err, StoreError::Conflict(id) if id == saga.id));
    let loaded = store.load(saga.id).await.expect("load").expect("exists");
    assert_eq!(loaded.revision, 1);
    assert!(!loaded.state.contains_key("orderId"));
    assert_eq!(
        event_kinds(&store, saga.id).await,
        ["SAGA_STARTED", "STEP_SUCCEEDED"]
    );
}

#[tokio::test]
async fn loading_an_unknown_saga_finds_nothing() {
    let (store, _db) = store().await;
    assert_eq!(store.load(SagaId::new()).await.expect("load"), None);
}

#[tokio::test]
async fn the_schema_refuses_statuses_outside_the_enum() {
    let (store, _db) = store().await;
    let saga = new_saga(None);
    let saga = store.create(&saga, &owner()).await.expect("create").saga;
    let err = sqlx::query("UPDATE sagas SET status = 'DONE' WHERE id = $1")
        .bind(saga.id.0)
        .execute(store.pool())
        .await
        .expect_err("check constraint");
    assert!(err.to_string().contains("sagas_status_check"), "{err}");
}

/// The single-column rules live in domains (migration `column_rules_in_domains`), added `NOT VALID` so an
/// upgrade does not scan the log: every new value is still checked.
#[tokio::test]
async fn the_schema_refuses_values_its_domains_rule_out() {
    let (store, _db) = store().await;
    let saga = new_saga(None);
    let saga = store.create(&saga, &owner()).await.expect("create").saga;
    let refusals = [
        (
            "UPDATE sagas SET failure_reason = 'BORED', failure_message = 'x' WHERE id = $1",
            "saga_failure_reason_check",
        ),
        (
            "UPDATE sagas SET definition_version = 0 WHERE id = $1",
            "saga_definition_version_check",
        ),
        (
            "UPDATE saga_steps SET status = 'DONE' WHERE saga_id = $1",
            "saga_step_status_check",
        ),
        (
            "UPDATE saga_steps SET attempts = attempts - 1 WHERE saga_id = $1",
            "saga_count_check",
        ),
        (
            "INSERT INTO saga_events (saga_id, kind, detail) VALUES ($1, 'SAGA_NAPPED', '{}')",
            "saga_event_kind_check",
        ),
    ];
    for (statement, rule) in refusals {
        let err = sqlx::query(statement)
            .bind(saga.id.0)
            .execute(store.pool())
            .await
            .expect_err(statement);
        assert!(err.to_string().contains(rule), "{statement}: {err}");
    }
    let kinds_written = event_kinds(&store, saga.id).await;
    assert_eq!(kinds_written, ["SAGA_STARTED"]);
}

#[tokio::test]
async fn listing_pages_newest_first_and_stays_stable_while_sagas_are_added() {
    let (store, _db) = store().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let saga = new_saga(None);
        let saga = store.create(&saga, &owner()).await.expect("create").saga;
        ids.push(saga.id);
    }
    let filter = ListFilter::default();
    let first = store.list(&filter, None, 2).await.expect("page 1");
    assert_eq!(
        first.iter().map(|s| s.id).collect::<Vec<_>>(),
        [ids[4], ids[3]]
    );
    // A saga started between pages lands before the first page, not inside the next ones.
    store
        .create(&new_saga(None), &owner())
        .await
        .expect("create");
    let second = store
        .list(&filter, Some(first[1].id), 2)
        .await
        .expect("page 2");
    assert_eq!(
        second.iter().map(|s| s.id).collect::<Vec<_>>(),
        [ids[2], ids[1]]
    );
    let third = store
        .list(&filter, Some(second[1].id), 2)
        .await
        .expect("page 3");
    assert_eq!(third.iter().map(|s| s.id).collect::<Vec<_>>(), [ids[0]]);
    assert_eq!(third[0].current_step.as_deref(), Some("CREATE_ORDER"));
    assert_eq!(third[0].saga_type, "purchase_plan");
    assert_eq!(third[0].definition_version, 2);
}

#[tokio::test]
async fn listing_filters_by_status_type_and_creation_time() {
    let (store, _db) = store().await;
    let running = new_saga(None);
    let running = store.create(&running, &owner()).await.expect("create").saga;
    let refused = new_saga(None);
    let refused = store.create(&refused, &owner()).await.expect("create").saga;
    let refusal = saga_core::StepFailure {
        kind: saga_core::ErrorKind::Refusal,
        message: "no".to_owned(),
    };
    let compensated = step(&store, &refused, Err(refusal)).await;
    assert_eq!(compensated.status, SagaStatus::Compensated);

    let only = |statuses: Vec<SagaStatus>| ListFilter {
        statuses,
        ..ListFilter::default()
    };
    let found = store
        .list(&only(vec![SagaStatus::Compensated]), None, 10)
        .await
        .expect("list");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, refused.id);
    assert_eq!(
        found[0].failure.as_ref().map(|f| f.reason),
        Some(FailureReason::StepFailed)
    );
    assert_eq!(found[0].current_step, None);
    let both = store
        .list(
            &only(vec![SagaStatus::Running, SagaStatus::Compensated]),
            None,
            10,
        )
        .await
        .expect("list");
    assert_eq!(both.len(), 2);

    let other_type = ListFilter {
        saga_type: Some("withdrawal".to_owned()),
        ..ListFilter::default()
    };
    assert!(
        store
            .list(&other_type, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    let later = ListFilter {
        created_after: Some(refused.created_at),
        ..ListFilter::default()
    };
    let listed = store.list(&later, None, 10).await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        [refused.id]
    );
    let earlier = ListFilter {
        created_before: Some(refused.created_at),
        ..ListFilter::default()
    };
    let listed = store.list(&earlier, None, 10).await.expect("list");
    assert_eq!(
        listed.iter().map(|s| s.id).collect::<Vec<_>>(),
        [running.id]
    );
}

#[tokio::test]
async fn history_returns_every_event_in_order_with_operator_actions() {
    let (store, _db) = store().await;
    let saga = new_saga(None);
    let saga = store.create(&saga, &owner()).await.expect("create").saga;
    let saga = step(&store, &saga, Ok(JsonMap::new())).await;
    let abort = Input::Abort {
        reason: "customer asked".to_owned(),
        by: Some("ops-alice".to_owned()),
    };
    let transition = apply(&saga, abort, Utc::now(), 0.5).expect("abortable");
    store
        .commit(&transition, &owner(), LeaseAfter::Keep)
        .await
        .expect("commit");

    let history = store
        .history(saga.id)
        .await
        .expect("history")
        .expect("saga exists");
    let events: Vec<&HistoryEvent> = history.iter().map(|r| &r.event).collect();
    assert_eq!(
        events,
        [
            &HistoryEvent::SagaStarted,
            &HistoryEvent::StepSucceeded {
                step: 0,
                attempt: 1
            },
            &HistoryEvent::SagaAborted {
                reason: "customer asked".to_owned(),
                by: Some("ops-alice".to_owned()),
            },
            &HistoryEvent::CompensationStarted {
                reason: FailureReason::Aborted
            },
        ]
    );
    assert!(history.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(store.history(SagaId::new()).await.expect("history"), None);
}

fn instance(name: &str) -> Owner {
    Owner {
        name: name.to_owned(),
        lease: std::time::Duration::from_secs(30),
    }
}

/// Ends every lease on `id` as if its owner had stopped renewing long ago.
async fn expire_lease(store: &PgStore, id: SagaId) {
    sqlx::query("UPDATE sagas SET lease_until = now() - interval '1 second' WHERE id = $1")
        .bind(id.0)
        .execute(store.pool())
        .await
        .expect("expire");
}

/// The first execute of `saga`, succeeded, as a transition.
fn first_step(saga: &Saga) -> saga_core::Transition {
    let now = Utc::now();
    let input = Input::Executed {
        index: 0,
        attempt: 1,
        started_at: now,
        result: Ok(JsonMap::new()),
    };
    apply(saga, input, now, 0.5).expect("valid input")
}

#[tokio::test]
async fn a_writer_whose_lease_was_taken_over_cannot_commit_even_at_the_current_revision() {
    let (store, _db) = store().await;
    let a = instance("a");
    let b = instance("b");
    let saga = store
        .create(&new_saga(None), &a)
        .await
        .expect("create")
        .saga;
    // A stalls past its lease; B claims the saga.
    expire_lease(&store, saga.id).await;
    let claimed = store.claim_due(&b, 10).await.expect("claim").sagas;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].epoch, 2, "takeover bumps the epoch");
    assert_eq!(
        claimed[0].revision, saga.revision,
        "claiming writes no saga progress"
    );

    // A wakes up and writes the result of its call: refused, although the revision still matches.
    let stale = store.commit(&first_step(&saga), &a, LeaseAfter::Keep).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    assert_eq!(
        event_kinds(&store, saga.id).await,
        ["SAGA_STARTED", "SAGA_CLAIMED"],
        "the takeover is in the history, A's result is not"
    );
    let history = store
        .history(saga.id)
        .await
        .expect("history")
        .expect("saga");
    assert_eq!(
        history[1].event,
        HistoryEvent::SagaClaimed {
            owner: "b".to_owned(),
            epoch: 2
        }
    );

    let fresh = store
        .commit(&first_step(&claimed[0]), &b, LeaseAfter::Keep)
        .await
        .expect("the new owner writes");
    assert_eq!((fresh.revision, fresh.epoch), (1, 2));
}

#[tokio::test]
async fn claims_take_due_sagas_with_free_or_expired_leases_and_never_the_same_one_twice() {
    let (store, _db) = store().await;
    let a = instance("a");
    let held = store
        .create(&new_saga(None), &a)
        .await
        .expect("create")
        .saga;
    let orphaned = store
        .create(&new_saga(None), &a)
        .await
        .expect("create")
        .saga;
    expire_lease(&store, orphaned.id).await;
    // Released while waiting for a retry an hour away: not due yet.
    let waiting = store
        .create(&new_saga(None), &a)
        .await
        .expect("create")
        .saga;
    let mut later = first_step(&waiting);
    later.saga.next_attempt_at = Some(Utc::now() + TimeDelta::hours(1));
    store
        .commit(&later, &a, LeaseAfter::Release)
        .await
        .expect("release");

    let b = instance("b");
    let claimed: Vec<SagaId> = store
        .claim_due(&b, 10)
        .await
        .expect("claim")
        .sagas
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(claimed, [orphaned.id]);
    assert!(
        store
            .claim_due(&b, 10)
            .await
            .expect("claim")
            .sagas
            .is_empty()
    );
    let _ = held;

    // Twenty due sagas, two replicas claiming at once: disjoint sets covering all of them.
    let mut due = Vec::new();
    for _ in 0..20 {
        let s = store
            .create(&new_saga(None), &a)
            .await
            .expect("create")
            .saga;
        expire_lease(&store, s.id).await;
        due.push(s.id);
    }
    let c = instance("c");
    let (left, right) = tokio::join!(store.claim_due(&b, 15), store.claim_due(&c, 15));
    let mut all: Vec<SagaId> = left.expect("claim b").sagas.iter().map(|s| s.id).collect();
    let right: Vec<SagaId> = right.expect("claim c").sagas.iter().map(|s| s.id).collect();
    assert!(
        all.iter().all(|id| !right.contains(id)),
        "a saga claimed twice"
    );
    all.extend(right);
    all.sort();
    due.sort();
    assert_eq!(all, due);
}

#[tokio::test]
async fn renewal_extends_only_the_owners_leases_and_reports_the_lost_ones() {
    let (store, _db) = store().await;
    let a = instance("a");
    let kept = store
        .create(&new_saga(None), &a)
        .await
        .expect("create")
        .saga;
    let lost = store
        .create(&new_saga(None), &a)
        .await
        .expect("create")
        .saga;
    expire_lease(&store, lost.id).await;
    store.claim_due(&instance("b"), 10).await.expect("claim");
    let renewed = store.renew(&a, &[kept.id, lost.id]).await.expect("renew");
    assert_eq!(renewed, [kept.id]);
}

#[tokio::test]
async fn releasing_all_leases_frees_them_at_once_and_wakes_listeners() {
    let (store, _db) = store().await;
    let a = instance("a");
    let saga = store
        .create(&new_saga(None), &a)
        .await
        .expect("create")
        .saga;
    let mut wakeups = store.listen().await.expect("listen");
    assert_eq!(store.release(&a, None).await.expect("release"), 1);
    tokio::time::timeout(std::time::Duration::from_secs(5), wakeups.recv())
        .await
        .expect("notified within 5 s")
        .expect("notification");
    let claimed = store.claim_due(&instance("b"), 10).await.expect("claim");
    assert_eq!(
        claimed.sagas.iter().map(|s| s.id).collect::<Vec<_>>(),
        [saga.id]
    );
}

#[tokio::test]
async fn retention_deletes_old_finished_sagas_in_batches_with_all_their_rows_and_keeps_parked_ones()
{
    let (store, _db) = store().await;
    let refusal = || saga_core::StepFailure {
        kind: saga_core::ErrorKind::Refusal,
        message: "no".to_owned(),
    };
    // Every saga has a label, so each child table has rows of deleted and of kept sagas.
    let labelled = |order: &str| Saga {
        labels: labels(&[("orderId", order)]),
        ..new_saga(None)
    };
    let mut finished = Vec::new();
    for order in ["o-1", "o-2", "o-3"] {
        let s = store
            .create(&labelled(order), &owner())
            .await
            .expect("create")
            .saga;
        finished.push(step(&store, &s, Err(refusal())).await);
    }
    let running = store
        .create(&labelled("o-4"), &owner())
        .await
        .expect("create")
        .saga;
    // A parked saga is the dead-letter set: it stays whatever its age.
    let parked = store
        .create(&labelled("o-5"), &owner())
        .await
        .expect("create")
        .saga;
    sqlx::query(
        "UPDATE sagas SET status = 'FAILED', failure_reason = 'COMPENSATION_FAILED',
                          failure_message = 'stuck', current_step = NULL, finished_at = now()
         WHERE id = $1",
    )
    .bind(parked.id.0)
    .execute(store.pool())
    .await
    .expect("park");
    sqlx::query(
        "UPDATE sagas SET finished_at = now() - interval '2 days' WHERE finished_at IS NOT NULL",
    )
    .execute(store.pool())
    .await
    .expect("age");
    let day = std::time::Duration::from_secs(86_400);
    assert_eq!(store.purge_finished(day, 2).await.expect("purge"), 2);
    assert_eq!(store.purge_finished(day, 2).await.expect("purge"), 1);
    assert_eq!(store.purge_finished(day, 2).await.expect("purge"), 0);
    let counts: (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM sagas), (SELECT count(*) FROM saga_steps),
                (SELECT count(*) FROM saga_events), (SELECT count(*) FROM saga_labels)",
    )
    .fetch_one(store.pool())
    .await
    .expect("counts");
    assert_eq!(
        counts,
        (2, 6, 2, 2),
        "only the running and the parked saga are left, with their steps, events and labels"
    );
    // The child tables have no foreign keys: the purge itself must leave no row of a deleted saga.
    let orphans: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM saga_steps c
                 WHERE NOT EXISTS (SELECT 1 FROM sagas s WHERE s.id = c.saga_id)),
                (SELECT count(*) FROM saga_events c
                 WHERE NOT EXISTS (SELECT 1 FROM sagas s WHERE s.id = c.saga_id)),
                (SELECT count(*) FROM saga_labels c
                 WHERE NOT EXISTS (SELECT 1 FROM sagas s WHERE s.id = c.saga_id))",
    )
    .fetch_one(store.pool())
    .await
    .expect("orphans");
    assert_eq!(
        orphans,
        (0, 0, 0),
        "no step, event or label outlives its saga"
    );
    assert!(store.load(running.id).await.expect("load").is_some());
    assert!(store.load(parked.id).await.expect("load").is_some());
}

#[tokio::test]
async fn with_a_million_finished_sagas_the_claim_reads_only_the_active_partial_index_of_due_sagas()
{
    let (store, _db) = store().await;
    let started = std::time::Instant::now();
    sqlx::raw_sql(
        "INSERT INTO sagas (id, saga_type, definition_version, definition, status, state,
                            created_at, updated_at, finished_at)
         SELECT gen_random_uuid(), 'purchase_plan', 1, '{}', 'COMPLETED', '{}', now(), now(), now()
         FROM generate_series(1, 1000000);
         ANALYZE sagas;",
    )
    .execute(store.pool())
    .await
    .expect("a million finished sagas");
    let a = instance("a");
    for _ in 0..50 {
        store.create(&new_saga(None), &a).await.expect("create");
    }
    let plan = store.explain_claim_due().await.expect("explain");
    println!(
        "claim plan with 1,000,000 finished sagas (inserted in {:?}):\n{plan}",
        started.elapsed()
    );
    assert!(plan.contains("sagas_due"), "{plan}");
    assert!(!plan.contains("Seq Scan on sagas"), "{plan}");
}

#[tokio::test]
async fn with_ten_thousand_sagas_in_flight_the_claim_reads_only_the_due_ones() {
    let (store, _db) = store().await;
    // Ten thousand sagas leased to a live instance, five whose owner is gone.
    sqlx::raw_sql(
        "INSERT INTO sagas (id, saga_type, definition_version, definition, status, state,
                            created_at, updated_at, owner, lease_until, epoch)
         SELECT gen_random_uuid(), 'purchase_plan', 1, '{}', 'RUNNING', '{}', now(), now(),
                'busy', now() + interval '1 hour', 1
         FROM generate_series(1, 10000);
         INSERT INTO sagas (id, saga_type, definition_version, definition, status, state,
                            created_at, updated_at, epoch)
         SELECT gen_random_uuid(), 'purchase_plan', 1, '{}', 'RUNNING', '{}', now(), now(), 1
         FROM generate_series(1, 5);
         ANALYZE sagas;",
    )
    .execute(store.pool())
    .await
    .expect("sagas in flight");
    let plan = store
        .explain_claim_due_run()
        .await
        .expect("explain analyze");
    println!("claim with 10,000 sagas in flight and 5 due:\n{plan}");
    let scan = plan
        .lines()
        .find(|line| line.contains("Index Scan using sagas_due"))
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(scan.contains("rows=5 "), "{scan}");
    assert!(!plan.contains("Rows Removed by Filter"), "{plan}");
    assert!(!plan.contains("Seq Scan on sagas"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_returns_each_saga_as_it_is_after_writes_that_raced_the_claim() {
    // A's leases have expired but A still writes (it is slow, not dead) while B claims. Whatever A
    // committed before B's claim locked a row must be in what B gets back, since B writes at that
    // revision; a write that lost the race is fenced off. Several rounds, to make the race likely.
    let db = TestDatabase::create("saga_store_claim_race").await;
    let store = PgStore::connect(&db.url(), 16).await.expect("connect");
    store.migrate().await.expect("migrate");
    let (a, b) = (instance("a"), instance("b"));
    let (mut claimed_total, mut raced) = (0, 0);
    for _ in 0..5 {
        let mut sagas = Vec::new();
        for _ in 0..200 {
            let saga = store
                .create(&new_saga(None), &a)
                .await
                .expect("create")
                .saga;
            sagas.push(saga);
        }
        sqlx::query("UPDATE sagas SET lease_until = now() - interval '1 second' WHERE owner = 'a'")
            .execute(store.pool())
            .await
            .expect("expire");
        let writes: Vec<_> = sagas
            .iter()
            .map(|saga| {
                let (store, a, transition) = (store.clone(), a.clone(), first_step(saga));
                tokio::spawn(async move { store.commit(&transition, &a, LeaseAfter::Keep).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let claimed = store.claim_due(&b, 200).await.expect("claim").sagas;
        for write in writes {
            write.await.expect("task").ok();
        }
        for saga in &claimed {
            let stored = store.load(saga.id).await.expect("load").expect("saga");
            assert_eq!(
                (saga.revision, saga.epoch),
                (stored.revision, stored.epoch),
                "B got a stale row"
            );
            assert_eq!(saga.steps, stored.steps);
            raced += usize::from(saga.revision == 1);
        }
        claimed_total += claimed.len();
        // The next round's sagas are A's alone.
        sqlx::query("UPDATE sagas SET owner = NULL, lease_until = NULL, status = 'COMPLETED', finished_at = now(), current_step = NULL")
            .execute(store.pool())
            .await
            .expect("settle");
    }
    println!("B claimed {claimed_total} sagas, {raced} of them after A's write had landed");
    assert!(claimed_total > 0);
}

#[tokio::test]
async fn a_pool_that_is_only_busy_is_not_mistaken_for_an_outage() {
    let db = TestDatabase::create("saga_store_busy").await;
    let store = PgStore::connect(&db.url(), 1).await.expect("connect");
    store.migrate().await.expect("migrate");
    // The only connection is held elsewhere: the next query waits out the acquire timeout.
    let held = store.pool().acquire().await.expect("connection");
    let busy = store.load(SagaId::new()).await;
    assert!(matches!(busy, Err(StoreError::Busy)), "{busy:?}");
    assert!(!busy.expect_err("busy").is_unavailable());
    drop(held);
    assert!(store.load(SagaId::new()).await.expect("load").is_none());
}

#[tokio::test]
async fn the_principal_that_started_a_saga_is_stored_loaded_and_listed() {
    let (store, _db) = store().await;
    let saga = Saga {
        started_by: Some("billing-service".to_owned()),
        ..new_saga(None)
    };
    store.create(&saga, &owner()).await.expect("create");
    let loaded = store.load(saga.id).await.expect("load").expect("exists");
    assert_eq!(loaded.started_by.as_deref(), Some("billing-service"));
    let listed = store
        .list(&ListFilter::default(), None, 10)
        .await
        .expect("list");
    assert_eq!(listed[0].started_by.as_deref(), Some("billing-service"));
}

#[tokio::test]
async fn a_sagas_trace_context_is_stored_and_handed_to_the_instance_that_takes_it_over() {
    let (store, _db) = store().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let saga = Saga {
        traceparent: Some(traceparent.to_owned()),
        ..new_saga(None)
    };
    store.create(&saga, &instance("a")).await.expect("create");
    let untraced = new_saga(None);
    store
        .create(&untraced, &instance("a"))
        .await
        .expect("create");
    let loaded = store.load(saga.id).await.expect("load").expect("exists");
    assert_eq!(loaded.traceparent.as_deref(), Some(traceparent));

    expire_lease(&store, saga.id).await;
    let claimed = store
        .claim_due(&instance("b"), 10)
        .await
        .expect("claim")
        .sagas;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].traceparent.as_deref(), Some(traceparent));
    let loaded = store
        .load(untraced.id)
        .await
        .expect("load")
        .expect("exists");
    assert_eq!(loaded.traceparent, None);
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn by_label(key: &str, value: &str) -> ListFilter {
    ListFilter {
        label: Some(Label {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
        ..ListFilter::default()
    }
}

#[tokio::test]
async fn labels_are_stored_loaded_listed_and_filter_a_listing_page_by_page() {
    let (store, _db) = store().await;
    let mut ids = Vec::new();
    for (order, region) in [("o-1", "eu"), ("o-2", "us"), ("o-3", "eu"), ("o-4", "eu")] {
        let saga = Saga {
            labels: labels(&[("orderId", order), ("region", region)]),
            ..new_saga(Some(order))
        };
        store.create(&saga, &owner()).await.expect("create");
        ids.push(saga.id);
    }
    let unlabelled = new_saga(None);
    store.create(&unlabelled, &owner()).await.expect("create");

    let loaded = store.load(ids[1]).await.expect("load").expect("exists");
    assert_eq!(
        loaded.labels,
        labels(&[("orderId", "o-2"), ("region", "us")])
    );
    let plain = store
        .load(unlabelled.id)
        .await
        .expect("load")
        .expect("exists");
    assert!(plain.labels.is_empty());

    let found = store
        .list(&by_label("orderId", "o-2"), None, 10)
        .await
        .expect("list");
    assert_eq!(found.iter().map(|s| s.id).collect::<Vec<_>>(), [ids[1]]);
    assert_eq!(found[0].labels["region"], "us");

    // region=eu, two per page, newest first: o-4 and o-3, then o-1.
    let eu = by_label("region", "eu");
    let first = store.list(&eu, None, 2).await.expect("list");
    assert_eq!(
        first.iter().map(|s| s.id).collect::<Vec<_>>(),
        [ids[3], ids[2]]
    );
    let second = store.list(&eu, Some(ids[2]), 2).await.expect("list");
    assert_eq!(second.iter().map(|s| s.id).collect::<Vec<_>>(), [ids[0]]);
    let eu_failed = ListFilter {
        statuses: vec![SagaStatus::Failed],
        ..eu.clone()
    };
    assert!(
        store
            .list(&eu_failed, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    for (key, value) in [("orderId", "o-9"), ("region", "EU"), ("order", "o-1")] {
        let none = store
            .list(&by_label(key, value), None, 10)
            .await
            .expect("list");
        assert!(none.is_empty(), "{key}={value} matches nothing");
    }

    // A repeated idempotency key returns the first saga and adds no labels.
    let again = Saga {
        labels: labels(&[("orderId", "o-1"), ("extra", "x")]),
        ..new_saga(Some("o-1"))
    };
    let created = store.create(&again, &owner()).await.expect("create");
    assert!(!created.created);
    assert_eq!(
        created.saga.labels,
        labels(&[("orderId", "o-1"), ("region", "eu")])
    );
    assert!(
        store
            .list(&by_label("extra", "x"), None, 10)
            .await
            .expect("list")
            .is_empty()
    );
}

#[tokio::test]
async fn with_100000_labelled_sagas_a_label_filter_walks_its_index_newest_first() {
    let (store, _db) = store().await;
    let started = std::time::Instant::now();
    // Every saga has a unique orderId and one of two regions (50,000 sagas each).
    sqlx::raw_sql(
        "INSERT INTO sagas (id, saga_type, definition_version, definition, status, state,
                            created_at, updated_at, finished_at)
         SELECT gen_random_uuid(), 'purchase_plan', 1, '{}', 'COMPLETED', '{}', now(), now(), now()
         FROM generate_series(1, 100000);
         INSERT INTO saga_labels (saga_id, key, value)
         SELECT id, 'orderId', 'o-' || row_number() OVER () FROM sagas;
         INSERT INTO saga_labels (saga_id, key, value)
         SELECT id, 'region', CASE WHEN n % 2 = 0 THEN 'eu' ELSE 'us' END
         FROM (SELECT id, row_number() OVER () AS n FROM sagas) numbered;
         ANALYZE sagas; ANALYZE saga_labels;",
    )
    .execute(store.pool())
    .await
    .expect("100,000 labelled sagas");
    let some_id: uuid::Uuid = sqlx::query_scalar(
        "SELECT saga_id FROM saga_labels WHERE key = 'region' AND value = 'eu'
         ORDER BY saga_id DESC OFFSET 5000 LIMIT 1",
    )
    .fetch_one(store.pool())
    .await
    .expect("an id");
    let cases = [
        (
            "a unique key, first page",
            by_label("orderId", "o-4711"),
            None,
        ),
        (
            "a key on half the sagas, first page",
            by_label("region", "eu"),
            None,
        ),
        (
            "a key on half the sagas, a later page",
            by_label("region", "eu"),
            Some(SagaId(some_id)),
        ),
    ];
    println!(
        "100,000 sagas with 200,000 labels inserted in {:?}",
        started.elapsed()
    );
    for (what, filter, before) in cases {
        let plan = store
            .explain_list(&filter, before, 101)
            .await
            .expect("explain");
        println!("listing by {what}:\n{plan}");
        assert!(plan.contains("saga_labels_by_value"), "{what}: {plan}");
        assert!(!plan.contains("Seq Scan"), "{what}: {plan}");
        assert!(
            !plan.contains("Sort"),
            "{what}: the index gives the order: {plan}"
        );
        let listed = store.list(&filter, before, 101).await.expect("list");
        assert!(
            listed.windows(2).all(|w| w[0].id > w[1].id),
            "{what}: newest first"
        );
        assert!(before.is_none_or(|b| listed.iter().all(|s| s.id < b)));
        let label = filter.label.as_ref().expect("a label filter");
        assert!(
            listed
                .iter()
                .all(|s| s.labels.get(&label.key) == Some(&label.value)),
            "{what}"
        );
        assert_eq!(
            listed.len(),
            if label.key == "orderId" { 1 } else { 101 },
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_step_resolved_by_hand_is_stored_with_its_resolution_and_history_event() {
    let (store, _db) = store().await;
    let mut saga = new_saga(None);
    let mut manual = (*saga.definition).clone();
    manual.steps[0].manual = true;
    saga.definition = Arc::new(manual);
    let saga = store.create(&saga, &owner()).await.expect("create").saga;
    let saga = step(&store, &saga, Ok(JsonMap::new())).await;
    let refusal = saga_core::StepFailure {
        kind: saga_core::ErrorKind::Refusal,
        message: "no device".to_owned(),
    };
    let parked = step(&store, &saga, Err(refusal)).await;
    assert_eq!(
        parked.status,
        SagaStatus::Failed,
        "CREATE_ORDER's compensation is manual"
    );
    assert_eq!(
        store.load(parked.id).await.expect("load").expect("saga"),
        parked
    );

    let resolve = Input::Resolve {
        step: "CREATE_ORDER".to_owned(),
        outcome: ResolvedAs::Compensated,
        note: "cancelled in the billing console".to_owned(),
        reason: "no API for it".to_owned(),
        by: Some("ops-alice".to_owned()),
    };
    let now = Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .expect("truncate");
    let transition = apply(&parked, resolve, now, 0.5).expect("resolvable");
    let committed = store
        .commit(&transition, &owner(), LeaseAfter::TakeOver)
        .await
        .expect("commit");
    let loaded = store.load(parked.id).await.expect("load").expect("saga");
    assert_eq!(
        loaded,
        Saga {
            revision: committed.revision,
            epoch: committed.epoch,
            ..transition.saga
        }
    );
    assert_eq!(loaded.status, SagaStatus::Compensated);
    let resolution = loaded.steps[0].resolution.clone().expect("resolution");
    assert_eq!(resolution.note, "cancelled in the billing console");
    assert_eq!(resolution.at, now);
    let history = store
        .history(parked.id)
        .await
        .expect("history")
        .expect("saga");
    let kinds: Vec<&str> = history.iter().map(|r| r.event.kind()).collect();
    assert_eq!(
        kinds[kinds.len() - 3..],
        ["SAGA_PARKED", "STEP_RESOLVED", "SAGA_COMPENSATED"]
    );
    assert_eq!(
        history[history.len() - 2].event,
        HistoryEvent::StepResolved {
            step: 0,
            outcome: ResolvedAs::Compensated,
            note: "cancelled in the billing console".to_owned(),
            reason: "no API for it".to_owned(),
            by: Some("ops-alice".to_owned()),
        }
    );
}

#[tokio::test]
async fn one_write_of_a_batch_that_is_fenced_out_changes_nothing_and_the_others_commit() {
    let (store, _db) = store().await;
    let a = instance("a");
    let (sagas, before) = three_sagas_the_middle_one_taken_over(&store, &a).await;

    let transitions: Vec<_> = sagas.iter().map(first_step).collect();
    let writes: Vec<_> = transitions.iter().map(|t| (t, LeaseAfter::Keep)).collect();
    let committed = store.commit_many(&writes, &a).await.expect("one statement");
    only_the_middle_write_failed(&store, &sagas, &committed, &before).await;
}

/// Three sagas `a` created, the middle one since taken over by another instance (as it was then).
async fn three_sagas_the_middle_one_taken_over(store: &PgStore, a: &Owner) -> (Vec<Saga>, Saga) {
    let mut sagas = Vec::new();
    for _ in 0..3 {
        sagas.push(store.create(&new_saga(None), a).await.expect("create").saga);
    }
    expire_lease(store, sagas[1].id).await;
    store.claim_due(&instance("b"), 10).await.expect("claim");
    let before = store.load(sagas[1].id).await.expect("load").expect("saga");
    (sagas, before)
}

/// The first step of the first and last of `sagas` committed; the middle one's write, fenced out,
/// changed nothing (`before`).
async fn only_the_middle_write_failed(
    store: &PgStore,
    sagas: &[Saga],
    committed: &[Option<saga_store::Committed>],
    before: &Saga,
) {
    assert_eq!(
        committed.iter().map(Option::is_some).collect::<Vec<_>>(),
        [true, false, true],
        "the fenced-out write fails alone"
    );
    for (saga, committed) in sagas.iter().zip(committed) {
        let stored = store.load(saga.id).await.expect("load").expect("saga");
        match committed {
            Some(c) => {
                assert_eq!((stored.revision, stored.epoch), (c.revision, c.epoch));
                assert_eq!(stored.steps[0].status, StepStatus::Succeeded);
                assert_eq!(
                    event_kinds(store, saga.id).await,
                    ["SAGA_STARTED", "STEP_SUCCEEDED"]
                );
            }
            None => {
                assert_eq!(&stored, before, "the fenced-out write changed nothing");
                assert_eq!(
                    event_kinds(store, saga.id).await,
                    ["SAGA_STARTED", "SAGA_CLAIMED"]
                );
            }
        }
    }
}

#[tokio::test]
async fn starts_and_transitions_written_together_commit_once_and_stay_fenced_on_their_own() {
    let (store, _db) = store().await;
    let a = instance("a");
    let (running, before) = three_sagas_the_middle_one_taken_over(&store, &a).await;
    let taken = store
        .create(&new_saga(Some("order-7")), &a)
        .await
        .expect("create")
        .saga;

    let fresh = new_saga(Some("order-8"));
    let repeat = new_saga(Some("order-7"));
    let transitions: Vec<_> = running.iter().map(first_step).collect();
    let writes: Vec<_> = transitions.iter().map(|t| (t, LeaseAfter::Keep)).collect();
    let (created, committed) = store
        .create_and_commit_many(&[&fresh, &repeat], &writes, &a)
        .await
        .expect("one statement");

    let writers: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT xmin::text FROM sagas WHERE id = ANY($1)")
            .bind([fresh.id.0, running[0].id.0, running[2].id.0])
            .fetch_all(store.pool())
            .await
            .expect("row versions");
    assert_eq!(
        writers.len(),
        1,
        "the new saga and the transitions are written by one transaction"
    );
    let created: Vec<(SagaId, bool)> = created
        .into_iter()
        .map(|c| c.map(|c| (c.saga.id, c.created)).expect("created"))
        .collect();
    assert_eq!(
        created,
        [(fresh.id, true), (taken.id, false)],
        "a new saga is created, a repeated key answers with the saga that holds it"
    );
    assert_eq!(
        store.load(fresh.id).await.expect("load").expect("stored"),
        Saga {
            epoch: 1,
            ..fresh.clone()
        }
    );
    assert_eq!(event_kinds(&store, fresh.id).await, ["SAGA_STARTED"]);
    only_the_middle_write_failed(&store, &running, &committed, &before).await;
}

#[tokio::test]
async fn a_row_the_database_refuses_fails_starts_and_transitions_written_together_as_a_whole() {
    let (store, _db) = store().await;
    let a = instance("a");
    let running = store
        .create(&new_saga(None), &a)
        .await
        .expect("create")
        .saga;
    let before = store.load(running.id).await.expect("load").expect("saga");
    let refused = saga_testkit::unstorable::first_step(&running);
    let fresh = new_saga(None);

    let error = store
        .create_and_commit_many(&[&fresh], &[(&refused, LeaseAfter::Keep)], &a)
        .await
        .expect_err("the statement fails");
    assert!(error.is_data_error(), "{error}");
    assert_eq!(
        store.load(fresh.id).await.expect("load"),
        None,
        "nothing of the batch was written, so its starts can be written again apart"
    );
    assert_eq!(store.load(running.id).await.expect("load"), Some(before));
}

#[tokio::test]
async fn a_batch_of_starts_inserts_each_saga_once_and_answers_repeated_keys_with_the_first() {
    let (store, _db) = store().await;
    let first = new_saga(Some("order-1"));
    let repeat = new_saga(Some("order-1"));
    let other = new_saga(None);
    let created = store
        .create_many(&[&first, &repeat, &other], &owner())
        .await
        .expect("one statement");
    let outcome: Vec<(SagaId, bool)> = created
        .into_iter()
        .map(|c| c.map(|c| (c.saga.id, c.created)).expect("created"))
        .collect();
    assert_eq!(
        outcome,
        [(first.id, true), (first.id, false), (other.id, true)],
        "the repeated key answers with the first saga"
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM sagas")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn a_claim_counts_as_taken_over_only_the_sagas_whose_owner_let_its_lease_expire() {
    let (store, _db) = store().await;
    let a = instance("a");
    let crashed = store
        .create(&new_saga(None), &a)
        .await
        .expect("create")
        .saga;
    expire_lease(&store, crashed.id).await;
    let handed_over = store
        .create(&new_saga(None), &a)
        .await
        .expect("create")
        .saga;
    store
        .release(&a, Some(&[handed_over.id]))
        .await
        .expect("release");
    let claimed = store.claim_due(&instance("b"), 10).await.expect("claim");
    assert_eq!(claimed.sagas.len(), 2);
    assert_eq!(
        claimed.taken_over, 1,
        "only the expired lease was a takeover"
    );
}

#[tokio::test]
async fn parked_and_stuck_sagas_are_counted_by_type_from_the_saga_log() {
    let (store, _db) = store().await;
    let a = instance("a");
    // Parked: two purchase plans and one refund (typed by hand: the definition is the test's own).
    for saga_type in ["purchase_plan", "purchase_plan", "payment_refund"] {
        let parked = store
            .create(&new_saga(None), &a)
            .await
            .expect("create")
            .saga;
        sqlx::query(
            "UPDATE sagas SET status = 'FAILED', failure_reason = 'COMPENSATION_FAILED',
                              failure_message = 'parked', finished_at = now(), saga_type = $2,
                              owner = NULL, lease_until = NULL
             WHERE id = $1",
        )
        .bind(parked.id.0)
        .bind(saga_type)
        .execute(store.pool())
        .await
        .expect("park");
    }
    // Stuck: claimable for ten minutes. Not stuck: one held by a live lease, one just due.
    let stuck = store
        .create(&new_saga(None), &a)
        .await
        .expect("create")
        .saga;
    sqlx::query(
        "UPDATE sagas SET owner = NULL, lease_until = NULL,
                          next_attempt_at = now() - interval '10 minutes' WHERE id = $1",
    )
    .bind(stuck.id.0)
    .execute(store.pool())
    .await
    .expect("stick");
    store.create(&new_saga(None), &a).await.expect("create");
    let just_due = store
        .create(&new_saga(None), &a)
        .await
        .expect("create")
        .saga;
    expire_lease(&store, just_due.id).await;
    sqlx::query("UPDATE sagas SET lease_until = now() - interval '1 second' WHERE id = $1")
        .bind(just_due.id.0)
        .execute(store.pool())
        .await
        .expect("just due");

    let mut counts = store
        .parked_and_stuck(std::time::Duration::from_secs(60))
        .await
        .expect("count");
    counts.sort_by(|x, y| x.saga_type.cmp(&y.saga_type));
    let counts: Vec<_> = counts
        .into_iter()
        .map(|c| (c.saga_type, c.parked, c.stuck))
        .collect();
    assert_eq!(
        counts,
        [
            ("payment_refund".to_owned(), 1, 0),
            ("purchase_plan".to_owned(), 2, 1)
        ]
    );
}

#[tokio::test]
async fn with_many_finished_sagas_parked_and_stuck_read_only_the_status_and_due_indexes() {
    let (store, _db) = store().await;
    sqlx::raw_sql(
        "INSERT INTO sagas (id, saga_type, definition_version, definition, status, state,
                            created_at, updated_at, finished_at)
         SELECT gen_random_uuid(), 'purchase_plan', 1, '{}', 'COMPLETED', '{}', now(), now(), now()
         FROM generate_series(1, 200000);
         ANALYZE sagas;",
    )
    .execute(store.pool())
    .await
    .expect("finished sagas");
    let plan = store.explain_parked_and_stuck().await.expect("explain");
    println!("parked and stuck with 200,000 finished sagas:\n{plan}");
    assert!(plan.contains("sagas_due"), "{plan}");
    assert!(plan.contains("sagas_by_status"), "{plan}");
    assert!(!plan.contains("Seq Scan on sagas"), "{plan}");
}

#[tokio::test]
async fn a_commit_prepared_while_the_log_was_small_finds_its_saga_by_key_once_the_log_is_large() {
    let db = TestDatabase::create("saga_store").await;
    let store = PgStore::connect(&db.url(), 1).await.expect("connect");
    store.migrate().await.expect("migrate");
    // After five runs PostgreSQL settles on a generic plan, made while `sagas` holds a handful of rows.
    for _ in 0..8 {
        let saga = store
            .create(&new_saga(None), &owner())
            .await
            .expect("create")
            .saga;
        step(&store, &saga, Ok(JsonMap::new())).await;
    }
    // The log grows with no ANALYZE in between (autovacuum off, or not yet come round): nothing tells
    // PostgreSQL to plan again.
    sqlx::raw_sql(
        "INSERT INTO sagas (id, saga_type, definition_version, definition, status, state,
                            created_at, updated_at, finished_at)
         SELECT gen_random_uuid(), 'purchase_plan', 1, '{}', 'COMPLETED', '{}', now(), now(), now()
         FROM generate_series(1, 20000)",
    )
    .execute(store.pool())
    .await
    .expect("finished sagas");
    let saga = store
        .create(&new_saga(None), &owner())
        .await
        .expect("create")
        .saga;
    let done = step(&store, &saga, Ok(JsonMap::new())).await;
    assert_eq!(done.revision, 1);

    // One write at a time: each ran on the writer connection used last, where the plan is cached.
    let plan = store
        .explain_cached_write("UPDATE sagas s")
        .await
        .expect("explain the cached plan")
        .expect("the commit is prepared there, with a generic plan");
    println!("the commit's cached plan with 20,000 sagas:\n{plan}");
    assert!(plan.contains("Index Scan using sagas_pkey"), "{plan}");
    assert!(!plan.contains("Seq Scan on sagas"), "{plan}");
}

#[tokio::test]
async fn a_connection_the_server_ended_while_it_sat_idle_is_replaced_without_an_error() {
    use sqlx::Connection as _;
    let db = TestDatabase::create("saga_store").await;
    let store = PgStore::connect(&db.url(), 2).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
        .create(&new_saga(None), &owner())
        .await
        .expect("create");
    // The server ends every session of the store's pool (as a restart would), unseen by the pool.
    let mut admin = sqlx::PgConnection::connect(&db.url()).await.expect("admin");
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'sagad'",
    )
    .fetch_one(&mut admin)
    .await
    .expect("terminate");
    assert!(ended >= 1, "no pooled session to end");
    // Long enough idle that the checkout tests the connection (no event marks an idle connection's age).
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for _ in 0..3 {
        store
            .create(&new_saga(None), &owner())
            .await
            .expect("a create after the sessions ended");
    }
}
