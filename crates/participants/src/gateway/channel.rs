//! The simulated payment channel. Like real ones it knows a payment by the merchant's order number (one
//! payment per order however often it is asked), refuses amounts over its limit, and can cancel a
//! payment, giving back the money of a paid one. That it may take the money and answer late, or never,
//! is the `late:` and `apply-then-fail` faults' part.

use sqlx::PgConnection;
use uuid::Uuid;

use saga_participant::StepError;

/// The most one payment may be on `channel_id`; refuses a channel that does not exist or is disabled.
pub(super) async fn limit(tx: &mut PgConnection, channel_id: &str) -> Result<i64, StepError> {
    let channel: Option<(i64, bool)> =
        sqlx::query_as("SELECT max_amount_cents, enabled FROM gateway.channels WHERE id = $1")
            .bind(channel_id)
            .fetch_optional(&mut *tx)
            .await?;
    match channel {
        None => Err(StepError::not_found(format!(
            "payment channel {channel_id} does not exist"
        ))),
        Some((_, false)) => Err(StepError::failed_precondition(format!(
            "payment channel {channel_id} is disabled"
        ))),
        Some((limit, true)) => Ok(limit),
    }
}

/// Takes `amount_cents` for the order: the channel accepts the request (CREATED), then takes the money
/// (PAID). Returns the channel payment's id.
pub(super) async fn pay(
    tx: &mut PgConnection,
    order_id: Uuid,
    channel_id: &str,
    amount_cents: i64,
) -> Result<Uuid, StepError> {
    let limit = limit(tx, channel_id).await?;
    if amount_cents > limit {
        return Err(StepError::failed_precondition(format!(
            "payment channel {channel_id} takes at most {limit} cents, {amount_cents} asked"
        )));
    }
    let (payment_id, status): (Uuid, String) = sqlx::query_as(
        "INSERT INTO gateway.channel_payments (id, order_id, channel_id, amount_cents, status)
         VALUES ($1, $2, $3, $4, 'CREATED')
         ON CONFLICT (order_id) DO UPDATE SET requests = channel_payments.requests + 1
         RETURNING id, status",
    )
    .bind(Uuid::now_v7())
    .bind(order_id)
    .bind(channel_id)
    .bind(amount_cents)
    .fetch_one(&mut *tx)
    .await?;
    if status == "CANCELLED" {
        return Err(StepError::failed_precondition(format!(
            "the channel payment {payment_id} of order {order_id} was cancelled"
        )));
    }
    sqlx::query(
        "UPDATE gateway.channel_payments SET status = 'PAID', paid_at = now()
         WHERE id = $1 AND status = 'CREATED'",
    )
    .bind(payment_id)
    .execute(&mut *tx)
    .await?;
    Ok(payment_id)
}

/// Cancels the order's payment, accepted or paid; returns how many it cancelled.
pub(super) async fn cancel(tx: &mut PgConnection, order_id: Uuid) -> Result<u64, StepError> {
    Ok(sqlx::query(
        "UPDATE gateway.channel_payments SET status = 'CANCELLED', cancelled_at = now()
         WHERE order_id = $1 AND status IN ('CREATED', 'PAID')",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?
    .rows_affected())
}
