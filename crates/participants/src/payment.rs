//! payment: captures what an order costs (SUCCESS) and gives it back through the payment provider, either
//! as purchase_plan's compensation or through the payment_refund saga (SUCCESS → REFUNDING → REFUNDED).

mod provider;

use saga_participant::{Router, StepCall, StepError, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::input::positive;

/// The payment service's actions.
pub(crate) fn router() -> Router {
    Router::new()
        .execute("Charge", charge)
        .compensate("Refund", refund)
        .execute("MarkRefunding", mark_refunding)
        .compensate("RestorePayment", restore_payment)
        .execute("ProviderRefund", provider_refund)
        .execute("MarkRefunded", mark_refunded)
}

/// Captures `amountCents` for the order: `{"paymentId"}`.
async fn charge(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let user_id = call.str("userId")?;
    let order_id = call.uuid("orderId")?;
    let amount_cents = positive(call, "amountCents")?;
    let payment_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO payment.payments (id, saga_id, order_id, user_id, amount_cents, status)
         VALUES ($1, $2, $3, $4, $5, 'SUCCESS')",
    )
    .bind(payment_id)
    .bind(call.saga_id)
    .bind(order_id)
    .bind(user_id)
    .bind(amount_cents)
    .execute(&mut *tx)
    .await?;
    Ok(output([("paymentId", json!(payment_id))]))
}

/// Gives the saga's payment back through the provider: `{"refundedPayments": n}`. Without a `paymentId`
/// in the payload (the Charge answer was lost) it finds the payment by saga; nothing to refund is fine.
async fn refund(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let payments: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT id, amount_cents FROM payment.payments
         WHERE saga_id = $1 AND ($2::uuid IS NULL OR id = $2) AND status <> 'REFUNDED'
         FOR UPDATE",
    )
    .bind(call.saga_id)
    .bind(call.opt_uuid("paymentId")?)
    .fetch_all(&mut *tx)
    .await?;
    for (payment_id, amount_cents) in &payments {
        provider::refund(tx, *payment_id, *amount_cents).await?;
        set_refunded(tx, *payment_id).await?;
    }
    Ok(output([("refundedPayments", json!(payments.len()))]))
}

/// A payment as the refund saga sees it.
#[derive(sqlx::FromRow)]
struct Payment {
    order_id: Uuid,
    amount_cents: i64,
    status: String,
    refunding_saga_id: Option<Uuid>,
}

impl Payment {
    /// Whether this saga holds the payment in REFUNDING.
    fn refunding_for(&self, saga_id: Uuid) -> bool {
        self.status == "REFUNDING" && self.refunding_saga_id == Some(saga_id)
    }
}

/// SUCCESS → REFUNDING, claimed by this saga: `{"orderId", "amountCents", "paymentStatus"}`. A payment
/// already refunded, or held by another refund, is refused: a payment is refunded at most once.
async fn mark_refunding(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let payment_id = call.uuid("paymentId")?;
    let payment = payment_for_update(tx, payment_id).await?;
    if payment.status != "SUCCESS" {
        return Err(StepError::failed_precondition(format!(
            "payment {payment_id} is {}",
            payment.status.to_lowercase()
        )));
    }
    sqlx::query(
        "UPDATE payment.payments SET status = 'REFUNDING', refunding_saga_id = $2, updated_at = now()
         WHERE id = $1",
    )
    .bind(payment_id)
    .bind(call.saga_id)
    .execute(&mut *tx)
    .await?;
    Ok(output([
        ("orderId", json!(payment.order_id)),
        ("amountCents", json!(payment.amount_cents)),
        ("paymentStatus", json!("REFUNDING")),
    ]))
}

/// REFUNDING → SUCCESS for the payment this saga holds: `{"restoredPayments": n}`.
async fn restore_payment(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let restored = sqlx::query(
        "UPDATE payment.payments SET status = 'SUCCESS', refunding_saga_id = NULL, updated_at = now()
         WHERE refunding_saga_id = $1 AND status = 'REFUNDING'",
    )
    .bind(call.saga_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(output([("restoredPayments", json!(restored))]))
}

/// Asks the provider to return the money of the payment this saga holds: `{"refundId"}`.
async fn provider_refund(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let payment_id = call.uuid("paymentId")?;
    let payment = payment_for_update(tx, payment_id).await?;
    if !payment.refunding_for(call.saga_id) {
        return Err(StepError::failed_precondition(format!(
            "payment {payment_id} is not being refunded by this saga"
        )));
    }
    let refund_id = provider::refund(tx, payment_id, payment.amount_cents).await?;
    Ok(output([("refundId", json!(refund_id))]))
}

/// REFUNDING → REFUNDED once the provider has refunded: `{"paymentStatus": "REFUNDED"}`.
async fn mark_refunded(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let payment_id = call.uuid("paymentId")?;
    let payment = payment_for_update(tx, payment_id).await?;
    if payment.status != "REFUNDED" {
        if !payment.refunding_for(call.saga_id) {
            return Err(StepError::failed_precondition(format!(
                "payment {payment_id} is not being refunded by this saga"
            )));
        }
        if !provider::has_refunded(tx, payment_id).await? {
            return Err(StepError::failed_precondition(format!(
                "the provider has not refunded payment {payment_id}"
            )));
        }
        set_refunded(tx, payment_id).await?;
    }
    Ok(output([("paymentStatus", json!("REFUNDED"))]))
}

async fn payment_for_update(tx: &mut PgConnection, payment_id: Uuid) -> Result<Payment, StepError> {
    sqlx::query_as(
        "SELECT order_id, amount_cents, status, refunding_saga_id FROM payment.payments
         WHERE id = $1 FOR UPDATE",
    )
    .bind(payment_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StepError::not_found(format!("payment {payment_id} does not exist")))
}

async fn set_refunded(tx: &mut PgConnection, payment_id: Uuid) -> Result<(), StepError> {
    sqlx::query(
        "UPDATE payment.payments SET status = 'REFUNDED', refunding_saga_id = NULL, updated_at = now()
         WHERE id = $1",
    )
    .bind(payment_id)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
