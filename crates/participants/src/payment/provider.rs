//! The simulated payment provider. Its refund API is idempotent on its own, keyed by the payment: asking
//! twice (a retry, or a purchase compensation racing a refund saga) returns the first refund and moves
//! no more money.

use sqlx::PgConnection;
use uuid::Uuid;

use saga_participant::StepError;

/// Refunds `amount_cents` of `payment_id` unless the provider already did; returns the refund's id.
pub(super) async fn refund(
    tx: &mut PgConnection,
    payment_id: Uuid,
    amount_cents: i64,
) -> Result<Uuid, StepError> {
    let (refund_id, refunded_cents): (Uuid, i64) = sqlx::query_as(
        "INSERT INTO payment.provider_refunds (id, payment_id, amount_cents) VALUES ($1, $2, $3)
         ON CONFLICT (payment_id) DO UPDATE SET requests = provider_refunds.requests + 1
         RETURNING id, amount_cents",
    )
    .bind(Uuid::now_v7())
    .bind(payment_id)
    .bind(amount_cents)
    .fetch_one(&mut *tx)
    .await?;
    if refunded_cents != amount_cents {
        return Err(StepError::internal(
            "provider refund does not match the payment",
            format!("payment {payment_id}: refunded {refunded_cents} cents, asked {amount_cents}"),
        ));
    }
    Ok(refund_id)
}

/// Whether the provider has refunded `payment_id`.
pub(super) async fn has_refunded(
    tx: &mut PgConnection,
    payment_id: Uuid,
) -> Result<bool, StepError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM payment.provider_refunds WHERE payment_id = $1)",
    )
    .bind(payment_id)
    .fetch_one(&mut *tx)
    .await?)
}
