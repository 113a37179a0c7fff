//! `PgStore` against a real PostgreSQL, one fresh database per test.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DurationRound, TimeDelta, Utc};
use saga_core::{
    Command, Definition, FailureReason, HistoryEvent, Input, JsonMap, ListFilter, Saga, SagaId,
    SagaStatus, StepStatus, apply, next_command,
};
use saga_store::{PgStore, SagaStore, StoreError};
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
async fn step(store: &PgStore, saga: &Saga, result: Result<JsonMap, saga_core::StepError>) -> Saga {
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
    let revision = store.commit(&transition).await.expect("commit");
    Saga {
        revision,
        ..transition.saga
    }
}

#[tokio::test]
async fn a_created_saga_loads_back_identically_with_pending_steps_and_a_start_event() {
    let (store, _db) = store().await;
    let saga = new_saga(None);
    let created = store.create(&saga).await.expect("create");
    assert!(created.created);
    let loaded = store.load(saga.id).await.expect("load").expect("exists");
    assert_eq!(loaded, saga);
    assert!(loaded.steps.iter().all(|s| s.status == StepStatus::Pending));
    assert_eq!(event_kinds(&store, saga.id).await, ["SAGA_STARTED"]);
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_existing_saga_instead_of_a_second_one() {
    let (store, _db) = store().await;
    let first = new_saga(Some("order-42"));
    store.create(&first).await.expect("create");
    let again = new_saga(Some("order-42"));
    let created = store.create(&again).await.expect("create again");
    assert!(!created.created);
    assert_eq!(created.saga.id, first.id);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sagas")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(count, 1);
    let other_key = store
        .create(&new_saga(Some("order-43")))
        .await
        .expect("create");
    assert!(other_key.created);
}

#[tokio::test]
async fn a_commit_writes_step_rows_progress_and_events_and_bumps_the_revision() {
    let (store, _db) = store().await;
    let saga = new_saga(None);
    store.create(&saga).await.expect("create");

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

    let refusal = saga_core::StepError {
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
    store.create(&saga).await.expect("create");
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
        .commit(&stale)
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
    store.create(&saga).await.expect("create");
    let err = sqlx::query("UPDATE sagas SET status = 'DONE' WHERE id = $1")
        .bind(saga.id.0)
        .execute(store.pool())
        .await
        .expect_err("check constraint");
    assert!(err.to_string().contains("sagas_status_check"), "{err}");
}

#[tokio::test]
async fn listing_pages_newest_first_and_stays_stable_while_sagas_are_added() {
    let (store, _db) = store().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let saga = new_saga(None);
        store.create(&saga).await.expect("create");
        ids.push(saga.id);
    }
    let filter = ListFilter::default();
    let first = store.list(&filter, None, 2).await.expect("page 1");
    assert_eq!(
        first.iter().map(|s| s.id).collect::<Vec<_>>(),
        [ids[4], ids[3]]
    );
    // A saga started between pages lands before the first page, not inside the next ones.
    store.create(&new_saga(None)).await.expect("create");
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
    store.create(&running).await.expect("create");
    let refused = new_saga(None);
    store.create(&refused).await.expect("create");
    let refusal = saga_core::StepError {
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
    store.create(&saga).await.expect("create");
    let saga = step(&store, &saga, Ok(JsonMap::new())).await;
    let abort = Input::Abort {
        reason: "customer asked".to_owned(),
    };
    let transition = apply(&saga, abort, Utc::now(), 0.5).expect("abortable");
    store.commit(&transition).await.expect("commit");

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
                reason: "customer asked".to_owned()
            },
            &HistoryEvent::CompensationStarted {
                reason: FailureReason::Aborted
            },
        ]
    );
    assert!(history.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(store.history(SagaId::new()).await.expect("history"), None);
}
