//! The payment_create saga end to end (real sagad and demo-participants processes), checked through the
//! gateway's order and the simulated channel's payments after each saga.

use std::time::Duration;

use e2e_tests::{Stack, saga_uuid, step_statuses};
use saga_proto::v1::{FailureReason, Saga, SagaStatus, StepStatus};
use serde_json::{Value, json};

async fn pay(stack: &mut Stack, channel: &str, amount_cents: i64, faults: Value) -> Saga {
    stack
        .run_saga(
            "payment_create",
            json!({"payerId": "p1", "channel": channel, "amountCents": amount_cents, "faults": faults}),
        )
        .await
}

/// The saga's order status and its channel payments' `(amount, status)`.
async fn rows(stack: &Stack, saga: &Saga) -> (Option<String>, Vec<(i64, String)>) {
    let order = sqlx::query_scalar("SELECT status FROM gateway.orders WHERE saga_id = $1")
        .bind(saga_uuid(saga))
        .fetch_optional(&stack.demo_db)
        .await
        .expect("order");
    let payments = sqlx::query_as(
        "SELECT p.amount_cents, p.status FROM gateway.channel_payments p
         JOIN gateway.orders o ON o.id = p.order_id WHERE o.saga_id = $1",
    )
    .bind(saga_uuid(saga))
    .fetch_all(&stack.demo_db)
    .await
    .expect("channel payments");
    (order, payments)
}

fn cancelled(payments: &[(i64, &str)]) -> (Option<String>, Vec<(i64, String)>) {
    (
        Some("CANCELLED".to_owned()),
        payments
            .iter()
            .map(|(amount, status)| (*amount, (*status).to_owned()))
            .collect(),
    )
}

#[tokio::test]
async fn a_payment_opens_the_order_and_the_channel_takes_the_money_once() {
    let mut stack = Stack::start().await;

    let saga = pay(&mut stack, "card", 1500, json!({})).await;

    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    assert_eq!(step_statuses(&saga), [StepStatus::Succeeded; 2]);
    assert_eq!(
        rows(&stack, &saga).await,
        (Some("PAID".to_owned()), vec![(1500, "PAID".to_owned())])
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_order_for_a_disabled_channel_is_refused_and_nothing_is_left() {
    let mut stack = Stack::start().await;

    let saga = pay(&mut stack, "bank_transfer", 1500, json!({})).await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.failure_reason(), FailureReason::StepFailed);
    assert_eq!(
        step_statuses(&saga),
        [StepStatus::Failed, StepStatus::Skipped]
    );
    assert!(
        saga.failure_message.contains("bank_transfer is disabled"),
        "{}",
        saga.failure_message
    );
    assert_eq!(rows(&stack, &saga).await, (None, vec![]));
    stack.stop().await;
}

#[tokio::test]
async fn a_channel_that_refuses_the_amount_takes_nothing_and_the_order_is_cancelled() {
    let mut stack = Stack::start().await;

    let saga = pay(&mut stack, "wallet", 60_000, json!({})).await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(
        step_statuses(&saga),
        [StepStatus::Compensated, StepStatus::Failed]
    );
    assert!(
        saga.failure_message
            .contains("wallet takes at most 50000 cents"),
        "{}",
        saga.failure_message
    );
    assert_eq!(rows(&stack, &saga).await, cancelled(&[]));
    stack.stop().await;
}

#[tokio::test]
async fn a_refused_channel_call_cancels_the_order() {
    let mut stack = Stack::start().await;

    let saga = pay(
        &mut stack,
        "card",
        1500,
        json!({"CALL_PAYMENT_CHANNEL": "refuse"}),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(
        step_statuses(&saga),
        [StepStatus::Compensated, StepStatus::Failed]
    );
    assert_eq!(rows(&stack, &saga).await, cancelled(&[]));
    stack.stop().await;
}

#[tokio::test]
async fn a_channel_that_answers_within_the_deadline_however_late_completes_the_payment() {
    let mut stack = Stack::start().await;

    let saga = pay(
        &mut stack,
        "card",
        1500,
        json!({"CALL_PAYMENT_CHANNEL": "late:300ms"}),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    assert_eq!(saga.steps[1].attempts, 1);
    assert_eq!(
        rows(&stack, &saga).await,
        (Some("PAID".to_owned()), vec![(1500, "PAID".to_owned())])
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_channel_that_took_the_money_but_answers_past_every_deadline_has_its_payment_cancelled() {
    let mut stack = Stack::start_fast(Duration::from_millis(500)).await;

    // The channel takes the money on the first attempt and answers every attempt after the deadline:
    // the step's outcome stays unknown, so the saga cancels the channel payment, then the order.
    let saga = pay(
        &mut stack,
        "card",
        1500,
        json!({"CALL_PAYMENT_CHANNEL": "late:800ms"}),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.steps[1].attempts, 4);
    assert_eq!(
        step_statuses(&saga),
        [StepStatus::Compensated, StepStatus::Compensated]
    );
    assert!(
        saga.failure_message.contains("DEADLINE_EXCEEDED"),
        "{}",
        saga.failure_message
    );
    assert_eq!(rows(&stack, &saga).await, cancelled(&[(1500, "CANCELLED")]));
    stack.stop().await;
}

#[tokio::test]
async fn a_failing_cancellation_is_retried_until_the_channel_payment_is_cancelled() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;

    let saga = pay(
        &mut stack,
        "card",
        1500,
        json!({
            "CALL_PAYMENT_CHANNEL": "apply-then-fail",
            "CALL_PAYMENT_CHANNEL:compensate": "unavailable:2",
            "CREATE_ORDER:compensate": "apply-then-fail:1",
        }),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.steps[1].compensation_attempts, 3);
    assert_eq!(saga.steps[0].compensation_attempts, 2);
    assert_eq!(rows(&stack, &saga).await, cancelled(&[(1500, "CANCELLED")]));
    stack.stop().await;
}
