//! The payment_refund saga end to end (real sagad and demo-participants processes): a purchase is bought
//! through purchase_plan, then refunded, and the participants' rows are checked after each saga.

use std::time::Duration;

use e2e_tests::{Stack, saga_uuid, state_uuid, step_statuses};
use saga_proto::v1::{FailureReason, Saga, SagaStatus, StepStatus};
use serde_json::{Value, json};
use uuid::Uuid;

/// A completed purchase of the "pro" plan (2999 cents).
struct Purchase {
    order: Uuid,
    payment: Uuid,
    device: Uuid,
}

async fn purchase(stack: &mut Stack) -> Purchase {
    let saga = stack
        .run_saga("purchase_plan", json!({"userId": "u1", "planId": "pro"}))
        .await;
    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    Purchase {
        order: state_uuid(&saga, "orderId"),
        payment: state_uuid(&saga, "paymentId"),
        device: state_uuid(&saga, "deviceId"),
    }
}

async fn refund(stack: &mut Stack, purchase: &Purchase, faults: Value) -> Saga {
    stack
        .run_saga(
            "payment_refund",
            json!({"paymentId": purchase.payment, "faults": faults}),
        )
        .await
}

/// The rows a refund touches: payment status, provider refunds (count, cents), order and device status.
#[derive(Debug, PartialEq)]
struct Rows {
    payment: String,
    refunds: (i64, i64),
    order: String,
    device: String,
}

impl Rows {
    async fn of(stack: &Stack, purchase: &Purchase) -> Self {
        let payment = sqlx::query_scalar("SELECT status FROM payment.payments WHERE id = $1")
            .bind(purchase.payment)
            .fetch_one(&stack.demo_db)
            .await
            .expect("payment");
        let refunds = sqlx::query_as(
            "SELECT count(*), coalesce(sum(amount_cents), 0)::bigint
             FROM payment.provider_refunds WHERE payment_id = $1",
        )
        .bind(purchase.payment)
        .fetch_one(&stack.demo_db)
        .await
        .expect("refunds");
        let order = sqlx::query_scalar("SELECT status FROM billing.orders WHERE id = $1")
            .bind(purchase.order)
            .fetch_one(&stack.demo_db)
            .await
            .expect("order");
        let device = sqlx::query_scalar("SELECT status FROM device.devices WHERE id = $1")
            .bind(purchase.device)
            .fetch_one(&stack.demo_db)
            .await
            .expect("device");
        Self {
            payment,
            refunds,
            order,
            device,
        }
    }

    fn refunded() -> Self {
        Self::new("REFUNDED", (1, 2999), "REFUNDED", "RELEASED")
    }

    fn untouched() -> Self {
        Self::new("SUCCESS", (0, 0), "ACTIVE", "ALLOCATED")
    }

    fn new(payment: &str, refunds: (i64, i64), order: &str, device: &str) -> Self {
        Self {
            payment: payment.to_owned(),
            refunds,
            order: order.to_owned(),
            device: device.to_owned(),
        }
    }
}

#[tokio::test]
async fn a_refund_returns_the_money_once_and_marks_the_payment_and_order_refunded() {
    let mut stack = Stack::start().await;
    let purchase = purchase(&mut stack).await;

    let saga = refund(&mut stack, &purchase, json!({})).await;

    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    assert_eq!(step_statuses(&saga), [StepStatus::Succeeded; 5]);
    assert_eq!(Rows::of(&stack, &purchase).await, Rows::refunded());
    let refunding_saga: Option<Uuid> =
        sqlx::query_scalar("SELECT refunding_saga_id FROM payment.payments WHERE id = $1")
            .bind(purchase.payment)
            .fetch_one(&stack.demo_db)
            .await
            .expect("payment");
    assert_eq!(refunding_saga, None);
    stack.stop().await;
}

#[tokio::test]
async fn a_refund_the_provider_refuses_restores_the_payment_and_keeps_the_order_active() {
    let mut stack = Stack::start().await;
    let purchase = purchase(&mut stack).await;

    let saga = refund(
        &mut stack,
        &purchase,
        json!({"CALL_PROVIDER_REFUND": "refuse"}),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.failure_reason(), FailureReason::StepFailed);
    assert_eq!(
        step_statuses(&saga),
        [
            StepStatus::Compensated,
            StepStatus::Failed,
            StepStatus::Skipped,
            StepStatus::Skipped,
            StepStatus::Skipped,
        ]
    );
    assert_eq!(Rows::of(&stack, &purchase).await, Rows::untouched());
    stack.stop().await;
}

#[tokio::test]
async fn a_second_refund_of_a_refunded_payment_is_refused_at_its_first_step_and_moves_no_money() {
    let mut stack = Stack::start().await;
    let purchase = purchase(&mut stack).await;
    let first = refund(&mut stack, &purchase, json!({})).await;
    assert_eq!(first.status(), SagaStatus::Completed);

    let second = refund(&mut stack, &purchase, json!({})).await;

    assert_eq!(second.status(), SagaStatus::Compensated, "{second:#?}");
    assert_eq!(second.steps[0].status(), StepStatus::Failed);
    assert!(
        second.steps[0].last_error.contains("is refunded"),
        "{}",
        second.steps[0].last_error
    );
    assert_eq!(Rows::of(&stack, &purchase).await, Rows::refunded());
    stack.stop().await;
}

#[tokio::test]
async fn a_hold_whose_answer_is_always_lost_is_released_by_its_compensation() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;
    let purchase = purchase(&mut stack).await;

    // SET_REFUNDING_STATUS commits on every attempt but no answer arrives: after its retries the saga
    // compensates it too, since it may have happened (it did).
    let saga = refund(
        &mut stack,
        &purchase,
        json!({"SET_REFUNDING_STATUS": "apply-then-fail"}),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.steps[0].status(), StepStatus::Compensated);
    assert_eq!(saga.steps[0].attempts, 4);
    assert_eq!(Rows::of(&stack, &purchase).await, Rows::untouched());
    let replays: i64 = sqlx::query_scalar(
        "SELECT replays::bigint FROM saga_barrier
         WHERE saga_id = $1 AND step = 'SET_REFUNDING_STATUS' AND direction = 'execute'",
    )
    .bind(saga_uuid(&saga))
    .fetch_one(&stack.demo_db)
    .await
    .expect("barrier row");
    assert_eq!(replays, 3, "attempts 2-4 were absorbed");
    stack.stop().await;
}

#[tokio::test]
async fn a_step_refused_after_the_pivot_parks_the_saga_with_the_money_already_returned() {
    let mut stack = Stack::start().await;
    let purchase = purchase(&mut stack).await;

    let saga = refund(
        &mut stack,
        &purchase,
        json!({"UPDATE_ORDER_STATUS": "refuse"}),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Failed, "{saga:#?}");
    assert_eq!(saga.failure_reason(), FailureReason::ForwardFailed);
    assert_eq!(
        step_statuses(&saga),
        [
            StepStatus::Succeeded,
            StepStatus::Succeeded,
            StepStatus::Succeeded,
            StepStatus::Failed,
            StepStatus::Pending,
        ]
    );
    // Past the pivot nothing is undone: an operator finishes the order and the device.
    assert_eq!(
        Rows::of(&stack, &purchase).await,
        Rows::new("REFUNDED", (1, 2999), "ACTIVE", "ALLOCATED")
    );
    stack.stop().await;
}

#[tokio::test]
async fn transient_failures_around_the_pivot_are_retried_until_the_refund_completes() {
    let mut stack = Stack::start_fast(Duration::from_secs(1)).await;
    let purchase = purchase(&mut stack).await;

    let saga = refund(
        &mut stack,
        &purchase,
        json!({
            "CALL_PROVIDER_REFUND": "apply-then-fail:1",
            "UPDATE_PAYMENT_STATUS": "unavailable:2",
            "UPDATE_ORDER_STATUS": "hang:1",
            "RELEASE_DEVICES": "delay:50ms",
        }),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    let attempts: Vec<u32> = saga.steps.iter().map(|step| step.attempts).collect();
    assert_eq!(attempts, [1, 2, 3, 2, 1]);
    assert_eq!(Rows::of(&stack, &purchase).await, Rows::refunded());
    let requests: i32 =
        sqlx::query_scalar("SELECT requests FROM payment.provider_refunds WHERE payment_id = $1")
            .bind(purchase.payment)
            .fetch_one(&stack.demo_db)
            .await
            .expect("refund");
    assert_eq!(
        requests, 1,
        "the retried pivot was answered by the barrier, the provider was asked once"
    );
    stack.stop().await;
}
