//! gateway: a payment gateway's payment creation (payment_create). The order is CREATED, then the payment
//! channel takes the money and the order is PAID. Each step has a compensation that undoes exactly it,
//! so a payment that fails anywhere ends with the order CANCELLED and the channel's payment, if the
//! channel made one, CANCELLED too.

mod channel;

use saga_participant::{Router, StepCall, StepError, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::input::positive;

/// The gateway's actions.
pub(crate) fn router() -> Router {
    Router::new()
        .execute("CreateOrder", create_order)
        .compensate("CancelOrder", cancel_order)
        .execute("CallPaymentChannel", call_payment_channel)
        .compensate("CancelChannelPayment", cancel_channel_payment)
}

/// An order, locked by the transaction that read it.
#[derive(sqlx::FromRow)]
struct Order {
    id: Uuid,
    channel_id: String,
    amount_cents: i64,
    status: String,
}

/// Opens a CREATED order of `amountCents` for `payerId` on an open `channel`:
/// `{"orderId", "orderStatus"}`.
async fn create_order(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let payer_id = call.str("payerId")?;
    let channel_id = call.str("channel")?;
    let amount_cents = positive(call, "amountCents")?;
    channel::limit(tx, channel_id).await?;
    let order_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO gateway.orders (id, saga_id, payer_id, channel_id, amount_cents, status)
         VALUES ($1, $2, $3, $4, $5, 'CREATED')",
    )
    .bind(order_id)
    .bind(call.saga_id)
    .bind(payer_id)
    .bind(channel_id)
    .bind(amount_cents)
    .execute(&mut *tx)
    .await?;
    Ok(output([
        ("orderId", json!(order_id)),
        ("orderStatus", json!("CREATED")),
    ]))
}

/// CREATED → CANCELLED for the saga's order: `{"cancelledOrders": n}`. It finds the order by saga, so a
/// lost CreateOrder answer does not matter.
async fn cancel_order(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let cancelled = sqlx::query(
        "UPDATE gateway.orders SET status = 'CANCELLED', updated_at = now()
         WHERE saga_id = $1 AND status = 'CREATED'",
    )
    .bind(call.saga_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(output([("cancelledOrders", json!(cancelled))]))
}

/// CREATED → PAID: the channel takes the order's amount: `{"channelPaymentId", "orderStatus"}`.
async fn call_payment_channel(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let order_id = call.uuid("orderId")?;
    let order: Order = sqlx::query_as(
        "SELECT id, channel_id, amount_cents, status FROM gateway.orders
         WHERE id = $1 AND saga_id = $2 FOR UPDATE",
    )
    .bind(order_id)
    .bind(call.saga_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StepError::not_found(format!("order {order_id} does not exist in this saga")))?;
    if order.status != "CREATED" {
        return Err(StepError::failed_precondition(format!(
            "order {order_id} is {}",
            order.status.to_lowercase()
        )));
    }
    let payment_id = channel::pay(tx, order.id, &order.channel_id, order.amount_cents).await?;
    set_order_status(tx, order.id, "PAID").await?;
    Ok(output([
        ("channelPaymentId", json!(payment_id)),
        ("orderStatus", json!("PAID")),
    ]))
}

/// The channel cancels the saga's payment (giving back the money of a paid one), and the order goes back
/// to CREATED for CancelOrder: `{"cancelledChannelPayments": n}`.
async fn cancel_channel_payment(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let order_id: Option<Uuid> =
        sqlx::query_scalar("SELECT id FROM gateway.orders WHERE saga_id = $1 FOR UPDATE")
            .bind(call.saga_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(order_id) = order_id else {
        return Ok(output([("cancelledChannelPayments", json!(0))]));
    };
    let cancelled = channel::cancel(tx, order_id).await?;
    sqlx::query(
        "UPDATE gateway.orders SET status = 'CREATED', updated_at = now()
         WHERE id = $1 AND status = 'PAID'",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    Ok(output([("cancelledChannelPayments", json!(cancelled))]))
}

async fn set_order_status(
    tx: &mut PgConnection,
    order_id: Uuid,
    status: &str,
) -> Result<(), StepError> {
    sqlx::query("UPDATE gateway.orders SET status = $2, updated_at = now() WHERE id = $1")
        .bind(order_id)
        .bind(status)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
