//! withdrawal: a merchant withdraws part of its balance to its bank account. The amount is frozen
//! (available → frozen), sent by the bank, deducted (frozen → gone), and the withdrawal completed; each
//! step has a compensation that undoes exactly it, so a withdrawal that fails anywhere leaves the
//! balance as it was.
//!
//! The withdrawal row's status says how far the money has moved (FROZEN → TRANSFERRED → DEDUCTED →
//! COMPLETED, or CANCELLED), and every action checks it under a row lock before moving money.

mod bank;

use saga_participant::{Router, StepCall, StepError, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::input::positive;

/// The withdrawal service's actions.
pub(crate) fn router() -> Router {
    Router::new()
        .execute("FreezeBalance", freeze_balance)
        .compensate("UnfreezeBalance", unfreeze_balance)
        .execute("ExecuteBankTransfer", execute_bank_transfer)
        .compensate("ReverseBankTransfer", reverse_bank_transfer)
        .execute("DeductBalance", deduct_balance)
        .compensate("RestoreBalance", restore_balance)
        .execute("CompleteWithdrawal", complete_withdrawal)
        .compensate("ReopenWithdrawal", reopen_withdrawal)
}

/// A withdrawal row, locked by the transaction that read it.
#[derive(sqlx::FromRow)]
struct Withdrawal {
    id: Uuid,
    merchant_id: String,
    amount_cents: i64,
    status: String,
}

/// Moves `amountCents` of the merchant's available balance to frozen and opens the withdrawal:
/// `{"withdrawalId", "withdrawalStatus"}`.
async fn freeze_balance(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let merchant_id = call.str("merchantId")?;
    let amount_cents = positive(call, "amountCents")?;
    let frozen = sqlx::query(
        "UPDATE withdrawal.merchants
         SET available_cents = available_cents - $2, frozen_cents = frozen_cents + $2,
             updated_at = now()
         WHERE id = $1 AND available_cents >= $2",
    )
    .bind(merchant_id)
    .bind(amount_cents)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if frozen == 0 {
        let available: Option<i64> =
            sqlx::query_scalar("SELECT available_cents FROM withdrawal.merchants WHERE id = $1")
                .bind(merchant_id)
                .fetch_optional(&mut *tx)
                .await?;
        return Err(match available {
            None => StepError::not_found(format!("merchant {merchant_id} does not exist")),
            Some(available) => StepError::failed_precondition(format!(
                "merchant {merchant_id} has {available} cents available, {amount_cents} asked"
            )),
        });
    }
    let withdrawal_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO withdrawal.withdrawals (id, saga_id, merchant_id, amount_cents, status)
         VALUES ($1, $2, $3, $4, 'FROZEN')",
    )
    .bind(withdrawal_id)
    .bind(call.saga_id)
    .bind(merchant_id)
    .bind(amount_cents)
    .execute(&mut *tx)
    .await?;
    Ok(status_output(Some(withdrawal_id), "FROZEN"))
}

/// FROZEN → CANCELLED, the frozen amount back to available: `{"withdrawalStatus"}`.
async fn unfreeze_balance(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let withdrawal = saga_withdrawal(tx, call.saga_id, "FROZEN").await?;
    let amount = withdrawal.amount_cents;
    move_balance(tx, &withdrawal.merchant_id, amount, -amount).await?;
    set_status(tx, withdrawal.id, "CANCELLED").await
}

/// FROZEN → TRANSFERRED: the bank sends the amount: `{"transferId", "withdrawalStatus"}`.
async fn execute_bank_transfer(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let withdrawal = payload_withdrawal(call, tx, "FROZEN").await?;
    let transfer_id = bank::transfer(tx, withdrawal.id, withdrawal.amount_cents).await?;
    let mut output = set_status(tx, withdrawal.id, "TRANSFERRED").await?;
    output.insert("transferId".to_owned(), json!(transfer_id));
    Ok(output)
}

/// TRANSFERRED → FROZEN: the bank reverses the transfer: `{"withdrawalStatus"}`.
async fn reverse_bank_transfer(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let withdrawal = saga_withdrawal(tx, call.saga_id, "TRANSFERRED").await?;
    bank::reverse(tx, withdrawal.id).await?;
    set_status(tx, withdrawal.id, "FROZEN").await
}

/// TRANSFERRED → DEDUCTED: the sent amount leaves the frozen balance: `{"withdrawalStatus"}`.
async fn deduct_balance(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let withdrawal = payload_withdrawal(call, tx, "TRANSFERRED").await?;
    move_balance(tx, &withdrawal.merchant_id, 0, -withdrawal.amount_cents).await?;
    set_status(tx, withdrawal.id, "DEDUCTED").await
}

/// DEDUCTED → TRANSFERRED: the amount is frozen again: `{"withdrawalStatus"}`.
async fn restore_balance(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let withdrawal = saga_withdrawal(tx, call.saga_id, "DEDUCTED").await?;
    move_balance(tx, &withdrawal.merchant_id, 0, withdrawal.amount_cents).await?;
    set_status(tx, withdrawal.id, "TRANSFERRED").await
}

/// DEDUCTED → COMPLETED: `{"withdrawalStatus"}`.
async fn complete_withdrawal(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let withdrawal = payload_withdrawal(call, tx, "DEDUCTED").await?;
    set_status(tx, withdrawal.id, "COMPLETED").await
}

/// COMPLETED → DEDUCTED, so the compensations before it can unwind: `{"withdrawalStatus"}`.
async fn reopen_withdrawal(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let withdrawal = saga_withdrawal(tx, call.saga_id, "COMPLETED").await?;
    set_status(tx, withdrawal.id, "DEDUCTED").await
}

/// The payload's withdrawal, locked, which must belong to this saga and be in `expected`; a forward step
/// refuses anything else.
async fn payload_withdrawal(
    call: &StepCall,
    tx: &mut PgConnection,
    expected: &str,
) -> Result<Withdrawal, StepError> {
    let withdrawal_id = call.uuid("withdrawalId")?;
    let withdrawal: Withdrawal = sqlx::query_as(
        "SELECT id, merchant_id, amount_cents, status FROM withdrawal.withdrawals
         WHERE id = $1 AND saga_id = $2 FOR UPDATE",
    )
    .bind(withdrawal_id)
    .bind(call.saga_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| {
        StepError::not_found(format!(
            "withdrawal {withdrawal_id} does not exist in this saga"
        ))
    })?;
    if withdrawal.status != expected {
        return Err(StepError::failed_precondition(format!(
            "withdrawal {withdrawal_id} is {}, not {}",
            withdrawal.status.to_lowercase(),
            expected.to_lowercase()
        )));
    }
    Ok(withdrawal)
}

/// The saga's withdrawal, locked, for a compensation. The barrier only runs a compensation whose
/// forward step committed and compensations run in reverse order, so the withdrawal must be exactly
/// where that step left it; anything else is a bug worth stopping for (the error is retried, then
/// parks the saga for an operator) rather than money moved on a guess.
async fn saga_withdrawal(
    tx: &mut PgConnection,
    saga_id: Uuid,
    expected: &str,
) -> Result<Withdrawal, StepError> {
    let withdrawal: Option<Withdrawal> = sqlx::query_as(
        "SELECT id, merchant_id, amount_cents, status FROM withdrawal.withdrawals
         WHERE saga_id = $1 FOR UPDATE",
    )
    .bind(saga_id)
    .fetch_optional(&mut *tx)
    .await?;
    match withdrawal {
        Some(withdrawal) if withdrawal.status == expected => Ok(withdrawal),
        found => Err(StepError::internal(
            "withdrawal is not where the step left it",
            format!(
                "saga {saga_id}: expected {expected}, found {:?}",
                found.map(|w| w.status)
            ),
        )),
    }
}

/// Adds the deltas to the merchant's balances; the table's checks refuse a balance below zero.
async fn move_balance(
    tx: &mut PgConnection,
    merchant_id: &str,
    available_delta: i64,
    frozen_delta: i64,
) -> Result<(), StepError> {
    sqlx::query(
        "UPDATE withdrawal.merchants
         SET available_cents = available_cents + $2, frozen_cents = frozen_cents + $3,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(merchant_id)
    .bind(available_delta)
    .bind(frozen_delta)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn set_status(
    tx: &mut PgConnection,
    withdrawal_id: Uuid,
    status: &str,
) -> Result<StepOutput, StepError> {
    sqlx::query("UPDATE withdrawal.withdrawals SET status = $2, updated_at = now() WHERE id = $1")
        .bind(withdrawal_id)
        .bind(status)
        .execute(&mut *tx)
        .await?;
    Ok(status_output(None, status))
}

fn status_output(withdrawal_id: Option<Uuid>, status: &str) -> StepOutput {
    let mut output = output([("withdrawalStatus", json!(status))]);
    if let Some(id) = withdrawal_id {
        output.insert("withdrawalId".to_owned(), json!(id));
    }
    output
}
