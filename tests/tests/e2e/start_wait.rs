//! `StartSaga` with `wait`: the answer comes once the saga is terminal (with its outcome), or when the
//! wait ends (with the status then); a repeat with the same idempotency key waits for the existing saga.

use std::time::{Duration, Instant};

use e2e_tests::{Stack, object};
use saga_proto::v1::{FailureReason, SagaStatus, StartSagaRequest, StartSagaResponse};
use serde_json::{Value, json};
use tonic::Code;

fn waiting(payload: Value, key: &str, wait: Duration) -> StartSagaRequest {
    StartSagaRequest {
        labels: Default::default(),
        saga_type: "purchase_plan".to_owned(),
        payload: Some(object(payload)),
        idempotency_key: key.to_owned(),
        wait: Some(wait.try_into().expect("duration")),
    }
}

async fn start(stack: &mut Stack, request: StartSagaRequest) -> StartSagaResponse {
    stack
        .client
        .start_saga(request)
        .await
        .expect("StartSaga")
        .into_inner()
}

#[tokio::test]
async fn a_start_that_waits_answers_with_the_sagas_outcome() {
    let mut stack = Stack::start().await;
    let done = start(
        &mut stack,
        waiting(
            json!({"userId": "u1", "planId": "pro"}),
            "",
            Duration::from_secs(10),
        ),
    )
    .await;
    assert!(done.created);
    assert_eq!(done.status(), SagaStatus::Completed);
    assert_eq!(done.failure_reason(), FailureReason::Unspecified);

    let refused = start(
        &mut stack,
        waiting(
            json!({"userId": "u2", "planId": "pro", "faults": {"ALLOCATE_DEVICE": "refuse"}}),
            "",
            Duration::from_secs(10),
        ),
    )
    .await;
    assert_eq!(refused.status(), SagaStatus::Compensated);
    assert_eq!(refused.failure_reason(), FailureReason::StepFailed);
    assert!(
        refused.failure_message.contains("ALLOCATE_DEVICE refused"),
        "{}",
        refused.failure_message
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_wait_that_ends_first_answers_running_and_a_repeat_waits_for_the_same_saga() {
    let mut stack = Stack::start().await;
    let slow = json!({"userId": "u1", "planId": "pro", "faults": {"PROCESS_PAYMENT": "delay:1s"}});
    let asked = Instant::now();
    let first = start(
        &mut stack,
        waiting(slow.clone(), "order-7", Duration::from_millis(200)),
    )
    .await;
    let answered = asked.elapsed();
    assert_eq!(first.status(), SagaStatus::Running);
    assert!(
        answered >= Duration::from_millis(200) && answered < Duration::from_millis(900),
        "answered after {answered:?}"
    );

    let repeat = start(
        &mut stack,
        waiting(slow, "order-7", Duration::from_secs(10)),
    )
    .await;
    assert!(!repeat.created, "the same idempotency key is the same saga");
    assert_eq!(repeat.saga_id, first.saga_id);
    assert_eq!(repeat.status(), SagaStatus::Completed);
    stack.stop().await;
}

#[tokio::test]
async fn a_wait_over_a_minute_is_refused_and_writes_nothing() {
    let mut stack = Stack::start().await;
    let refused = stack
        .client
        .start_saga(waiting(
            json!({"userId": "u1", "planId": "pro"}),
            "",
            Duration::from_secs(61),
        ))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("limit of 60s"),
        "{}",
        refused.message()
    );
    let sagas: i64 = sqlx::query_scalar("SELECT count(*) FROM sagas")
        .fetch_one(&stack.saga_db)
        .await
        .expect("count");
    assert_eq!(sagas, 0);
    stack.stop().await;
}
