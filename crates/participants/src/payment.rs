//! payment: captures the order's amount, refunds it when the saga compensates.

use saga_participant::{StepCall, StepError, StepHandler, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Service;

/// The payment service's step handler.
pub(crate) struct Payment;

impl StepHandler for Payment {
    async fn execute(
        &self,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> Result<StepOutput, StepError> {
        match call.action.as_str() {
            "Charge" => charge(call, tx).await,
            other => Err(Service::Payment.unknown_action(other)),
        }
    }

    async fn compensate(
        &self,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> Result<StepOutput, StepError> {
        match call.action.as_str() {
            "Refund" => refund(call, tx).await,
            other => Err(Service::Payment.unknown_action(other)),
        }
    }
}

/// Captures `amountCents` for the order: `{"paymentId"}`.
async fn charge(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let user_id = call.str("userId")?;
    let order_id = call.uuid("orderId")?;
    let amount_cents = call.i64("amountCents")?;
    if amount_cents <= 0 {
        return Err(StepError::invalid_argument(format!(
            "amountCents must be positive, got {amount_cents}"
        )));
    }
    let payment_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO payments (id, saga_id, order_id, user_id, amount_cents, status)
         VALUES ($1, $2, $3, $4, $5, 'CAPTURED')",
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

/// Refunds the saga's payment: `{"refundedPayments": n}`. Without a `paymentId` in the payload it finds
/// the payment by saga; finding nothing to refund is fine.
async fn refund(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let refunded = sqlx::query(
        "UPDATE payments SET status = 'REFUNDED', updated_at = now()
         WHERE saga_id = $1 AND ($2::uuid IS NULL OR id = $2) AND status = 'CAPTURED'",
    )
    .bind(call.saga_id)
    .bind(call.opt_uuid("paymentId")?)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(output([("refundedPayments", json!(refunded))]))
}
