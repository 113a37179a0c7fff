//! The device_creation saga end to end (real sagad and demo-participants processes), checked through the
//! user's quota, the device records and the simulated container runtime after each saga.

use std::time::Duration;

use e2e_tests::{Stack, saga_uuid, state_uuid, step_statuses};
use saga_proto::v1::{Saga, SagaStatus, StepStatus};
use serde_json::{Value, json};

async fn create_device(stack: &mut Stack, user: &str, faults: Value) -> Saga {
    stack
        .run_saga("device_creation", json!({"userId": user, "faults": faults}))
        .await
}

/// What device_creation leaves behind for a saga: its device's status, its container's status, and the
/// user's quota use.
#[derive(Debug, PartialEq)]
struct Rows {
    device: Option<String>,
    container: Option<String>,
    quota_used: Option<i32>,
}

impl Rows {
    async fn of(stack: &Stack, saga: &Saga, user: &str) -> Self {
        let device: Option<String> =
            sqlx::query_scalar("SELECT status FROM device.devices WHERE saga_id = $1")
                .bind(saga_uuid(saga))
                .fetch_optional(&stack.demo_db)
                .await
                .expect("device");
        let container =
            sqlx::query_scalar("SELECT status FROM device.containers WHERE saga_id = $1")
                .bind(saga_uuid(saga))
                .fetch_optional(&stack.demo_db)
                .await
                .expect("container");
        let quota_used =
            sqlx::query_scalar("SELECT used_devices FROM device.quotas WHERE user_id = $1")
                .bind(user)
                .fetch_optional(&stack.demo_db)
                .await
                .expect("quota");
        Self {
            device,
            container,
            quota_used,
        }
    }

    fn new(device: Option<&str>, container: Option<&str>, quota_used: i32) -> Self {
        Self {
            device: device.map(str::to_owned),
            container: container.map(str::to_owned),
            quota_used: Some(quota_used),
        }
    }
}

#[tokio::test]
async fn a_created_device_is_ready_in_its_running_container_and_counted_in_the_quota() {
    let mut stack = Stack::start().await;

    let saga = create_device(&mut stack, "u1", json!({})).await;

    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    assert_eq!(step_statuses(&saga), [StepStatus::Succeeded; 5]);
    assert_eq!(
        Rows::of(&stack, &saga, "u1").await,
        Rows::new(Some("READY"), Some("RUNNING"), 1)
    );
    let container: uuid::Uuid =
        sqlx::query_scalar("SELECT container_id FROM device.devices WHERE id = $1")
            .bind(state_uuid(&saga, "deviceId"))
            .fetch_one(&stack.demo_db)
            .await
            .expect("device");
    assert_eq!(container, state_uuid(&saga, "containerId"));
    stack.stop().await;
}

#[tokio::test]
async fn a_user_without_quota_left_is_refused_before_anything_is_created() {
    let mut stack = Stack::start().await;
    sqlx::query("INSERT INTO device.quotas (user_id, max_devices) VALUES ('u1', 0)")
        .execute(&stack.demo_db)
        .await
        .expect("quota");

    let saga = create_device(&mut stack, "u1", json!({})).await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.steps[0].status(), StepStatus::Failed);
    assert!(
        saga.failure_message.contains("quota"),
        "{}",
        saga.failure_message
    );
    assert_eq!(
        Rows::of(&stack, &saga, "u1").await,
        Rows::new(None, None, 0)
    );
    stack.stop().await;
}

/// Refuses step `name` (number `step`, from 1) and checks that what the steps before it created is gone.
async fn refused_at(step: usize, name: &str, expected: Rows) {
    let mut stack = Stack::start().await;

    let saga = create_device(&mut stack, "u1", json!({name: "refuse"})).await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    let mut statuses = vec![StepStatus::Succeeded]; // CHECK_QUOTA has nothing to undo
    statuses.resize(step - 1, StepStatus::Compensated);
    statuses.push(StepStatus::Failed);
    statuses.resize(5, StepStatus::Skipped);
    assert_eq!(step_statuses(&saga), statuses);
    assert_eq!(Rows::of(&stack, &saga, "u1").await, expected);
    stack.stop().await;
}

#[tokio::test]
async fn a_refused_container_creates_nothing() {
    refused_at(2, "CREATE_CONTAINER", Rows::new(None, None, 0)).await;
}

#[tokio::test]
async fn a_refused_device_record_destroys_the_container() {
    refused_at(
        3,
        "CREATE_DEVICE_RECORD",
        Rows::new(None, Some("DESTROYED"), 0),
    )
    .await;
}

#[tokio::test]
async fn a_refused_initialization_releases_the_device_and_destroys_the_container() {
    refused_at(
        4,
        "INITIALIZE_DEVICE",
        Rows::new(Some("RELEASED"), Some("DESTROYED"), 0),
    )
    .await;
}

#[tokio::test]
async fn a_refused_quota_update_resets_releases_and_destroys() {
    refused_at(
        5,
        "UPDATE_QUOTA_USAGE",
        Rows::new(Some("RELEASED"), Some("DESTROYED"), 0),
    )
    .await;
}

#[tokio::test]
async fn a_quota_increment_whose_answers_are_lost_is_given_back_by_its_compensation() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;

    let saga = create_device(
        &mut stack,
        "u1",
        json!({"UPDATE_QUOTA_USAGE": "apply-then-fail"}),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.steps[4].status(), StepStatus::Compensated);
    assert_eq!(
        Rows::of(&stack, &saga, "u1").await,
        Rows::new(Some("RELEASED"), Some("DESTROYED"), 0)
    );
    stack.stop().await;
}

#[tokio::test]
async fn concurrent_creations_past_the_quota_complete_up_to_it_and_compensate_the_rest() {
    let mut stack = Stack::start().await;
    sqlx::query("INSERT INTO device.quotas (user_id, max_devices) VALUES ('u1', 2)")
        .execute(&stack.demo_db)
        .await
        .expect("quota");

    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(
            stack
                .start_saga("device_creation", json!({"userId": "u1"}))
                .await,
        );
    }
    let mut completed = 0;
    for id in &ids {
        let saga = stack.wait_terminal(id).await;
        match saga.status() {
            SagaStatus::Completed => completed += 1,
            SagaStatus::Compensated => {}
            other => panic!("saga {id} ended {other:?}: {saga:#?}"),
        }
    }

    assert_eq!(completed, 2);
    let (ready, running, used): (i64, i64, i32) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM device.devices WHERE status = 'READY'),
                (SELECT count(*) FROM device.containers WHERE status = 'RUNNING'),
                (SELECT used_devices FROM device.quotas WHERE user_id = 'u1')",
    )
    .fetch_one(&stack.demo_db)
    .await
    .expect("rows");
    assert_eq!((ready, running, used), (2, 2, 2));
    stack.stop().await;
}
