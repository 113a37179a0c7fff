//! sales: the lead-to-cash flow's orders (order_creation). An order is built on an inventory reservation
//! (PENDING_PAYMENT), then its payment is captured and it is PAID: an open order. The order and its
//! payment live in one service so that one transaction captures the money and moves the order; each step
//! has a compensation that undoes exactly it.

use chrono::{DateTime, Utc};
use saga_participant::{Router, StepCall, StepError, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::input::positive;

/// The sales service's actions.
pub(crate) fn router() -> Router {
    Router::new()
        .execute("CreateOrder", create_order)
        .compensate("CancelOrder", cancel_order)
        .execute("ProcessPayment", process_payment)
        .compensate("RefundPayment", refund_payment)
}

/// A PENDING_PAYMENT order for `quantity` of `sku` at `amountCents`, holding the reservation, which must
/// not have lapsed: `{"orderId", "orderStatus"}`.
async fn create_order(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let customer_id = call.str("customerId")?;
    let sku = call.str("sku")?;
    let quantity = positive(call, "quantity")?;
    let amount_cents = positive(call, "amountCents")?;
    let reservation_id = call.uuid("reservationId")?;
    let expires_at = call.str("reservationExpiresAt")?;
    let expires_at: DateTime<Utc> = DateTime::parse_from_rfc3339(expires_at)
        .map_err(|_| {
            StepError::invalid_argument(format!(
                "field \"reservationExpiresAt\" must be an RFC 3339 time, got {expires_at:?}"
            ))
        })?
        .into();
    let lapsed: bool = sqlx::query_scalar("SELECT $1 <= now()")
        .bind(expires_at)
        .fetch_one(&mut *tx)
        .await?;
    if lapsed {
        return Err(StepError::failed_precondition(format!(
            "reservation {reservation_id} expired at {}",
            expires_at.to_rfc3339()
        )));
    }
    let order_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO sales.orders
             (id, saga_id, customer_id, sku, quantity, amount_cents, reservation_id, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'PENDING_PAYMENT')",
    )
    .bind(order_id)
    .bind(call.saga_id)
    .bind(customer_id)
    .bind(sku)
    .bind(quantity)
    .bind(amount_cents)
    .bind(reservation_id)
    .execute(&mut *tx)
    .await?;
    Ok(status_output(Some(order_id), "PENDING_PAYMENT"))
}

/// PENDING_PAYMENT → CANCELLED for the saga's order: `{"cancelledOrders": n}`.
async fn cancel_order(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let cancelled = sqlx::query(
        "UPDATE sales.orders SET status = 'CANCELLED', updated_at = now()
         WHERE saga_id = $1 AND status = 'PENDING_PAYMENT'",
    )
    .bind(call.saga_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(output([("cancelledOrders", json!(cancelled))]))
}

/// Captures the order's amount, PENDING_PAYMENT → PAID: `{"paymentId", "orderStatus"}`.
async fn process_payment(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let order_id = call.uuid("orderId")?;
    let order: Option<(i64, String)> = sqlx::query_as(
        "SELECT amount_cents, status FROM sales.orders WHERE id = $1 AND saga_id = $2 FOR UPDATE",
    )
    .bind(order_id)
    .bind(call.saga_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((amount_cents, status)) = order else {
        return Err(StepError::not_found(format!(
            "order {order_id} does not exist in this saga"
        )));
    };
    if status != "PENDING_PAYMENT" {
        return Err(StepError::failed_precondition(format!(
            "order {order_id} is {}",
            status.to_lowercase()
        )));
    }
    let payment_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO sales.payments (id, order_id, amount_cents, status)
         VALUES ($1, $2, $3, 'CAPTURED')",
    )
    .bind(payment_id)
    .bind(order_id)
    .bind(amount_cents)
    .execute(&mut *tx)
    .await?;
    set_status(tx, order_id, "PAID").await?;
    let mut output = status_output(None, "PAID");
    output.insert("paymentId".to_owned(), json!(payment_id));
    Ok(output)
}

/// Refunds the saga's captured payment, PAID → PENDING_PAYMENT so that CancelOrder can cancel the order:
/// `{"refundedPayments": n}`.
async fn refund_payment(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let order_id: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM sales.orders WHERE saga_id = $1 FOR UPDATE")
            .bind(call.saga_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(order_id) = order_id else {
        return Ok(output([("refundedPayments", json!(0))]));
    };
    let refunded = sqlx::query(
        "UPDATE sales.payments SET status = 'REFUNDED', refunded_at = now()
         WHERE order_id = $1 AND status = 'CAPTURED'",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE sales.orders SET status = 'PENDING_PAYMENT', updated_at = now()
         WHERE id = $1 AND status = 'PAID'",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    Ok(output([("refundedPayments", json!(refunded))]))
}

async fn set_status(tx: &mut PgConnection, order_id: Uuid, status: &str) -> Result<(), StepError> {
    sqlx::query("UPDATE sales.orders SET status = $2, updated_at = now() WHERE id = $1")
        .bind(order_id)
        .bind(status)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

fn status_output(order_id: Option<Uuid>, status: &str) -> StepOutput {
    let mut output = output([("orderStatus", json!(status))]);
    if let Some(id) = order_id {
        output.insert("orderId".to_owned(), json!(id));
    }
    output
}
