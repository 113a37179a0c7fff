//! The lead-to-cash order_creation saga end to end (real sagad and demo-participants processes), checked
//! through the stock and reservation, the order and its payment, the customer's used credit and the
//! notification outbox after each saga.

use std::time::Duration;

use e2e_tests::{Stack, saga_uuid, step_statuses};
use saga_proto::v1::{FailureReason, Saga, SagaStatus, StepStatus};
use serde_json::{Value, json};

/// Every test orders desks for this customer (credit limit 5,000,000 cents) at this price.
const CUSTOMER: &str = "acme";
const DESK_CENTS: i64 = 29_900;
const DESKS: i64 = 200;

async fn order(stack: &mut Stack, customer: &str, quantity: i64, faults: Value) -> Saga {
    stack
        .run_saga(
            "order_creation",
            json!({
                "customerId": customer, "sku": "desk", "quantity": quantity,
                "amountCents": quantity * DESK_CENTS, "faults": faults,
            }),
        )
        .await
}

/// Everything an order moves: desk (stock, available), the saga's reservation, order and payment
/// statuses, the customer's used credit and credit usage, and the notifications queued.
#[derive(Debug, PartialEq)]
struct Rows {
    desks: (i64, i64),
    reservation: Option<String>,
    order: Option<String>,
    payment: Option<String>,
    used_credit: i64,
    credit_usage: Option<String>,
    notifications: i64,
}

impl Rows {
    async fn of(stack: &Stack, saga: &Saga) -> Self {
        let id = saga_uuid(saga);
        let db = &stack.demo_db;
        let (desks, reservation, order, payment, used_credit, credit_usage, notifications) =
            sqlx::query_as(
                "SELECT (SELECT stock FROM inventory.products WHERE sku = 'desk'),
                        (SELECT available FROM inventory.products WHERE sku = 'desk'),
                        (SELECT status FROM inventory.reservations WHERE saga_id = $1),
                        (SELECT status FROM sales.orders WHERE saga_id = $1),
                        (SELECT p.status FROM sales.payments p JOIN sales.orders o ON o.id = p.order_id
                         WHERE o.saga_id = $1),
                        (SELECT used_credit_cents FROM customer.customers WHERE id = $2),
                        (SELECT status FROM customer.credit_usages WHERE saga_id = $1),
                        (SELECT count(*) FROM notification.outbox WHERE saga_id = $1)",
            )
            .bind(id)
            .bind(CUSTOMER)
            .fetch_one(db)
            .await
            .map(|row: (i64, i64, _, _, _, i64, _, i64)| {
                ((row.0, row.1), row.2, row.3, row.4, row.5, row.6, row.7)
            })
            .expect("order rows");
        Self {
            desks,
            reservation,
            order,
            payment,
            used_credit,
            credit_usage,
            notifications,
        }
    }

    fn completed(quantity: i64) -> Self {
        Self {
            desks: (DESKS, DESKS - quantity),
            reservation: some("HELD"),
            order: some("PAID"),
            payment: some("CAPTURED"),
            used_credit: quantity * DESK_CENTS,
            credit_usage: some("USED"),
            notifications: 1,
        }
    }

    /// Undone: stock and credit as they were, whatever rows the steps left in their undone state.
    fn undone(
        reservation: Option<&str>,
        order: Option<&str>,
        payment: Option<&str>,
        credit_usage: Option<&str>,
    ) -> Self {
        Self {
            desks: (DESKS, DESKS),
            reservation: reservation.map(str::to_owned),
            order: order.map(str::to_owned),
            payment: payment.map(str::to_owned),
            used_credit: 0,
            credit_usage: credit_usage.map(str::to_owned),
            notifications: 0,
        }
    }
}

fn some(status: &str) -> Option<String> {
    Some(status.to_owned())
}

#[tokio::test]
async fn an_order_holds_the_stock_is_paid_uses_the_credit_and_notifies_the_customer() {
    let mut stack = Stack::start().await;

    let saga = order(&mut stack, CUSTOMER, 2, json!({})).await;

    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    assert_eq!(step_statuses(&saga), [StepStatus::Succeeded; 6]);
    assert_eq!(Rows::of(&stack, &saga).await, Rows::completed(2));
    stack.stop().await;
}

#[tokio::test]
async fn a_suspended_customer_is_refused_before_anything_is_held() {
    let mut stack = Stack::start().await;

    let saga = order(&mut stack, "initech", 1, json!({})).await;

    assert_eq!(saga.steps[0].status(), StepStatus::Failed);
    refused_before_anything_was_held(&stack, &saga, "customer initech is suspended").await;
    stack.stop().await;
}

/// The saga was compensated for `refusal` with nothing left held: no reservation, order, payment,
/// credit or notification.
async fn refused_before_anything_was_held(stack: &Stack, saga: &Saga, refusal: &str) {
    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.failure_reason(), FailureReason::StepFailed);
    assert!(
        saga.failure_message.contains(refusal),
        "{}",
        saga.failure_message
    );
    assert_eq!(
        Rows::of(stack, saga).await,
        Rows::undone(None, None, None, None)
    );
}

#[tokio::test]
async fn an_order_for_more_than_is_in_stock_is_refused_and_nothing_is_held() {
    let mut stack = Stack::start().await;

    // Five lamps are in stock.
    let lamps = json!({"customerId": CUSTOMER, "sku": "lamp", "quantity": 6, "amountCents": 6000});
    let saga = stack.run_saga("order_creation", lamps).await;

    assert_eq!(
        step_statuses(&saga)[..2],
        [StepStatus::Succeeded, StepStatus::Failed]
    );
    refused_before_anything_was_held(&stack, &saga, "5 units of lamp available, 6 asked").await;
    stack.stop().await;
}

/// Refuses step number `step` (from 1), named `name`, and checks every compensable step before it was
/// undone and the stock and credit are back where they were.
async fn refused_at(step: usize, name: &str, expected: Rows) {
    let mut stack = Stack::start().await;

    let saga = order(&mut stack, CUSTOMER, 2, json!({name: "refuse"})).await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    let mut statuses = vec![StepStatus::Succeeded];
    statuses.resize(step - 1, StepStatus::Compensated);
    statuses.push(StepStatus::Failed);
    statuses.resize(6, StepStatus::Skipped);
    assert_eq!(step_statuses(&saga), statuses);
    assert_eq!(Rows::of(&stack, &saga).await, expected);
    stack.stop().await;
}

#[tokio::test]
async fn a_refused_order_releases_the_reservation() {
    refused_at(
        3,
        "CREATE_ORDER",
        Rows::undone(Some("RELEASED"), None, None, None),
    )
    .await;
}

#[tokio::test]
async fn a_refused_payment_cancels_the_order_and_releases_the_reservation() {
    refused_at(
        4,
        "PROCESS_PAYMENT",
        Rows::undone(Some("RELEASED"), Some("CANCELLED"), None, None),
    )
    .await;
}

#[tokio::test]
async fn a_refused_credit_update_refunds_the_payment_cancels_the_order_and_releases_the_reservation()
 {
    refused_at(
        5,
        "UPDATE_CUSTOMER",
        Rows::undone(Some("RELEASED"), Some("CANCELLED"), Some("REFUNDED"), None),
    )
    .await;
}

#[tokio::test]
async fn a_refused_notification_undoes_the_whole_order_and_nobody_is_told() {
    refused_at(
        6,
        "SEND_NOTIFICATION",
        Rows::undone(
            Some("RELEASED"),
            Some("CANCELLED"),
            Some("REFUNDED"),
            Some("RESTORED"),
        ),
    )
    .await;
}

#[tokio::test]
async fn a_payment_captured_on_every_attempt_whose_answers_are_lost_is_refunded_once() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;

    let saga = order(
        &mut stack,
        CUSTOMER,
        2,
        json!({"PROCESS_PAYMENT": "apply-then-fail", "RESERVE_INVENTORY:compensate": "unavailable:2"}),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.steps[3].attempts, 4);
    assert_eq!(saga.steps[3].status(), StepStatus::Compensated);
    assert_eq!(saga.steps[1].compensation_attempts, 3);
    assert_eq!(
        Rows::of(&stack, &saga).await,
        Rows::undone(Some("RELEASED"), Some("CANCELLED"), Some("REFUNDED"), None)
    );
    let payments: i64 = sqlx::query_scalar("SELECT count(*) FROM sales.payments")
        .fetch_one(&stack.demo_db)
        .await
        .expect("payments");
    assert_eq!(payments, 1, "captured once, however often it was asked");
    stack.stop().await;
}

#[tokio::test]
async fn lost_answers_and_a_hung_call_still_complete_with_one_of_everything() {
    let mut stack = Stack::start_fast(Duration::from_secs(1)).await;

    let saga = order(
        &mut stack,
        CUSTOMER,
        2,
        json!({
            "RESERVE_INVENTORY": "apply-then-fail:2",
            "PROCESS_PAYMENT": "hang:1",
            "UPDATE_CUSTOMER": "apply-then-fail:1",
            "SEND_NOTIFICATION": "apply-then-fail:1",
        }),
    )
    .await;

    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    let attempts: Vec<u32> = saga.steps.iter().map(|step| step.attempts).collect();
    assert_eq!(attempts, [1, 3, 1, 2, 2, 2]);
    assert_eq!(Rows::of(&stack, &saga).await, Rows::completed(2));
    stack.stop().await;
}
