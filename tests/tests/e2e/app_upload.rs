//! The app_upload saga end to end (real sagad and demo-participants processes), checked through the app
//! and object rows, the notification outbox and the files in the app participant's storage directory:
//! no stored package without an AVAILABLE app, no AVAILABLE app without its package.

use std::time::Duration;

use e2e_tests::{Stack, saga_uuid, step_statuses};
use saga_proto::v1::{FailureReason, Saga, SagaStatus, StepStatus};
use serde_json::{Value, json};

/// "chess 1.0.0", base64: the package every test uploads.
const PACKAGE_BASE64: &str = "Y2hlc3MgMS4wLjA=";
/// Its SHA-256, the name of its file in the storage.
const PACKAGE_SHA256: &str = "1d11857fdc8d797c11e52e5858cfd435b96d1e69ec5fa168af4da506be0418e4";

async fn upload(stack: &mut Stack, faults: Value) -> Saga {
    stack
        .run_saga(
            "app_upload",
            json!({
                "developerId": "dev1", "appName": "chess", "version": "1.0.0",
                "packageBase64": PACKAGE_BASE64, "faults": faults,
            }),
        )
        .await
}

/// The app, its objects and notifications, and the storage directory's files.
#[derive(Debug, PartialEq)]
struct Rows {
    app: Option<String>,
    objects: Vec<String>,
    notifications: i64,
    files: Vec<String>,
}

impl Rows {
    async fn of(stack: &Stack, saga: &Saga) -> Self {
        let id = saga_uuid(saga);
        let app = sqlx::query_scalar("SELECT status FROM app.apps WHERE saga_id = $1")
            .bind(id)
            .fetch_optional(&stack.demo_db)
            .await
            .expect("app");
        let objects = sqlx::query_scalar("SELECT status FROM app.objects WHERE saga_id = $1")
            .bind(id)
            .fetch_all(&stack.demo_db)
            .await
            .expect("objects");
        let notifications =
            sqlx::query_scalar("SELECT count(*) FROM notification.outbox WHERE saga_id = $1")
                .bind(id)
                .fetch_one(&stack.demo_db)
                .await
                .expect("notifications");
        let mut files: Vec<String> = std::fs::read_dir(stack.storage.path())
            .expect("storage directory")
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        files.sort();
        Self {
            app,
            objects,
            notifications,
            files,
        }
    }

    fn published() -> Self {
        Self {
            app: Some("AVAILABLE".to_owned()),
            objects: vec!["STORED".to_owned()],
            notifications: 1,
            files: vec![PACKAGE_SHA256.to_owned()],
        }
    }

    /// Undone: the app DELETED, `objects` as given (each DELETED if it was stored), no file, no
    /// notification.
    fn undone(objects: &[&str]) -> Self {
        Self {
            app: Some("DELETED".to_owned()),
            objects: objects.iter().map(|s| (*s).to_owned()).collect(),
            notifications: 0,
            files: vec![],
        }
    }
}

#[tokio::test]
async fn an_upload_stores_the_package_publishes_the_app_and_tells_the_developer() {
    let mut stack = Stack::start().await;

    let saga = upload(&mut stack, json!({})).await;

    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    assert_eq!(step_statuses(&saga), [StepStatus::Succeeded; 4]);
    assert_eq!(Rows::of(&stack, &saga).await, Rows::published());
    assert_eq!(
        std::fs::read(stack.storage.path().join(PACKAGE_SHA256)).expect("package file"),
        b"chess 1.0.0"
    );
    let message: String = sqlx::query_scalar("SELECT message FROM notification.outbox")
        .fetch_one(&stack.demo_db)
        .await
        .expect("notification");
    assert_eq!(message, "chess 1.0.0 is available");
    stack.stop().await;
}

#[tokio::test]
async fn a_second_upload_of_a_published_version_is_refused_and_leaves_the_first_intact() {
    let mut stack = Stack::start().await;
    let first = upload(&mut stack, json!({})).await;

    let second = upload(&mut stack, json!({})).await;

    assert_eq!(second.status(), SagaStatus::Compensated, "{second:#?}");
    assert_eq!(second.steps[0].status(), StepStatus::Failed);
    assert!(
        second
            .failure_message
            .contains("app chess 1.0.0 already exists"),
        "{}",
        second.failure_message
    );
    assert_eq!(Rows::of(&stack, &first).await, Rows::published());
    stack.stop().await;
}

#[tokio::test]
async fn a_refused_upload_deletes_the_record() {
    let mut stack = Stack::start().await;

    let saga = upload(&mut stack, json!({"UPLOAD_TO_STORAGE": "refuse"})).await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(
        step_statuses(&saga)[..2],
        [StepStatus::Compensated, StepStatus::Failed]
    );
    assert_eq!(Rows::of(&stack, &saga).await, Rows::undone(&[]));
    stack.stop().await;
}

#[tokio::test]
async fn a_package_stored_on_every_attempt_whose_answers_are_lost_is_removed_not_leaked() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;

    // The file is written and its row committed, but the coordinator never hears so: the step may have
    // happened, so the saga removes the package too. Before sagad this was the storage leak.
    let saga = upload(&mut stack, json!({"UPLOAD_TO_STORAGE": "apply-then-fail"})).await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.steps[1].attempts, 4);
    assert_eq!(saga.steps[1].status(), StepStatus::Compensated);
    assert_eq!(Rows::of(&stack, &saga).await, Rows::undone(&["DELETED"]));
    stack.stop().await;
}

#[tokio::test]
async fn a_refused_publication_removes_the_package_retrying_until_it_is_gone_and_deletes_the_record()
 {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;

    let saga = upload(
        &mut stack,
        json!({"UPDATE_APP_STATUS": "refuse", "UPLOAD_TO_STORAGE:compensate": "unavailable:2"}),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.steps[1].compensation_attempts, 3);
    assert_eq!(
        step_statuses(&saga),
        [
            StepStatus::Compensated,
            StepStatus::Compensated,
            StepStatus::Failed,
            StepStatus::Skipped
        ]
    );
    assert_eq!(Rows::of(&stack, &saga).await, Rows::undone(&["DELETED"]));
    stack.stop().await;
}

#[tokio::test]
async fn a_notification_that_fails_for_a_while_is_retried_and_never_unpublishes_the_app() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;

    let saga = upload(
        &mut stack,
        json!({"SEND_NOTIFICATION": "unavailable:5", "UPDATE_APP_STATUS": "apply-then-fail:1"}),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    assert_eq!(saga.steps[2].attempts, 2);
    assert_eq!(
        saga.steps[3].attempts, 6,
        "more attempts than before the pivot"
    );
    assert_eq!(Rows::of(&stack, &saga).await, Rows::published());
    stack.stop().await;
}

#[tokio::test]
async fn a_notification_that_can_never_be_queued_parks_the_saga_with_the_app_published() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;

    let saga = upload(&mut stack, json!({"SEND_NOTIFICATION": "unavailable"})).await;

    assert_eq!(saga.status(), SagaStatus::Failed, "{saga:#?}");
    assert_eq!(saga.failure_reason(), FailureReason::ForwardFailed);
    assert_eq!(saga.steps[3].attempts, 10);
    assert_eq!(
        Rows::of(&stack, &saga).await,
        Rows {
            notifications: 0,
            ..Rows::published()
        }
    );
    stack.stop().await;
}
