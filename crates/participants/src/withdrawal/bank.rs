//! The simulated bank. It has no idempotency of its own (two requests are two transfers), which is what
//! makes the participant's barrier necessary; a sent transfer can be reversed.

use sqlx::PgConnection;
use uuid::Uuid;

use saga_participant::StepError;

/// Sends `amount_cents` for the withdrawal; returns the transfer's id.
pub(super) async fn transfer(
    tx: &mut PgConnection,
    withdrawal_id: Uuid,
    amount_cents: i64,
) -> Result<Uuid, StepError> {
    let transfer_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO withdrawal.bank_transfers (id, withdrawal_id, amount_cents, status)
         VALUES ($1, $2, $3, 'SENT')",
    )
    .bind(transfer_id)
    .bind(withdrawal_id)
    .bind(amount_cents)
    .execute(&mut *tx)
    .await?;
    Ok(transfer_id)
}

/// Reverses the withdrawal's sent transfers; returns how many.
pub(super) async fn reverse(tx: &mut PgConnection, withdrawal_id: Uuid) -> Result<u64, StepError> {
    Ok(sqlx::query(
        "UPDATE withdrawal.bank_transfers SET status = 'REVERSED', reversed_at = now()
         WHERE withdrawal_id = $1 AND status = 'SENT'",
    )
    .bind(withdrawal_id)
    .execute(&mut *tx)
    .await?
    .rows_affected())
}
