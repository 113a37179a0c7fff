//! customer: who may order, and how much credit their open orders use (order_creation).
//!
//! VALIDATE_CUSTOMER refuses early (unknown, suspended, not enough credit left) but holds nothing: two
//! sagas can both pass it. UPDATE_CUSTOMER is the check that counts, a conditional increment of the used
//! credit; when a concurrent order used the credit in between, it refuses and the saga compensates.

use saga_participant::{Router, StepCall, StepError, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::input::positive;

/// The customer service's actions.
pub(crate) fn router() -> Router {
    Router::new()
        .execute("ValidateCustomer", validate_customer)
        .execute("UseCredit", use_credit)
        .compensate("RestoreCredit", restore_credit)
}

#[derive(sqlx::FromRow)]
struct Customer {
    status: String,
    credit_limit_cents: i64,
    used_credit_cents: i64,
}

/// Refuses an unknown or suspended customer, or one whose credit left is under `amountCents`:
/// `{"creditLeftCents"}`.
async fn validate_customer(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let customer_id = call.str("customerId")?;
    let amount_cents = positive(call, "amountCents")?;
    let customer: Customer = sqlx::query_as(
        "SELECT status, credit_limit_cents, used_credit_cents FROM customer.customers WHERE id = $1",
    )
    .bind(customer_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| StepError::not_found(format!("customer {customer_id} does not exist")))?;
    if customer.status != "ACTIVE" {
        return Err(StepError::failed_precondition(format!(
            "customer {customer_id} is {}",
            customer.status.to_lowercase()
        )));
    }
    let left = customer.credit_limit_cents - customer.used_credit_cents;
    if left < amount_cents {
        return Err(credit_exhausted(customer_id, left, amount_cents));
    }
    Ok(output([("creditLeftCents", json!(left))]))
}

/// Adds the order's amount to the customer's used credit, refusing when it would pass the limit or the
/// customer is no longer active: `{"usedCreditCents"}`.
async fn use_credit(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let customer_id = call.str("customerId")?;
    let order_id = call.uuid("orderId")?;
    let amount_cents = positive(call, "amountCents")?;
    let used: Option<i64> = sqlx::query_scalar(
        "UPDATE customer.customers
         SET used_credit_cents = used_credit_cents + $2, updated_at = now()
         WHERE id = $1 AND status = 'ACTIVE' AND used_credit_cents + $2 <= credit_limit_cents
         RETURNING used_credit_cents",
    )
    .bind(customer_id)
    .bind(amount_cents)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(used) = used else {
        let customer: Option<Customer> = sqlx::query_as(
            "SELECT status, credit_limit_cents, used_credit_cents FROM customer.customers
             WHERE id = $1",
        )
        .bind(customer_id)
        .fetch_optional(&mut *tx)
        .await?;
        return Err(match customer {
            None => StepError::not_found(format!("customer {customer_id} does not exist")),
            Some(customer) if customer.status != "ACTIVE" => {
                StepError::failed_precondition(format!(
                    "customer {customer_id} is {}",
                    customer.status.to_lowercase()
                ))
            }
            Some(customer) => credit_exhausted(
                customer_id,
                customer.credit_limit_cents - customer.used_credit_cents,
                amount_cents,
            ),
        });
    };
    sqlx::query(
        "INSERT INTO customer.credit_usages (id, saga_id, customer_id, order_id, amount_cents, status)
         VALUES ($1, $2, $3, $4, $5, 'USED')",
    )
    .bind(Uuid::now_v7())
    .bind(call.saga_id)
    .bind(customer_id)
    .bind(order_id)
    .bind(amount_cents)
    .execute(&mut *tx)
    .await?;
    Ok(output([("usedCreditCents", json!(used))]))
}

/// Gives the saga's credit back: USED → RESTORED: `{"restoredCredits": n}`.
async fn restore_credit(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let usage: Option<(String, i64)> = sqlx::query_as(
        "UPDATE customer.credit_usages SET status = 'RESTORED', updated_at = now()
         WHERE saga_id = $1 AND status = 'USED'
         RETURNING customer_id, amount_cents",
    )
    .bind(call.saga_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((customer_id, amount_cents)) = &usage {
        sqlx::query(
            "UPDATE customer.customers
             SET used_credit_cents = used_credit_cents - $2, updated_at = now() WHERE id = $1",
        )
        .bind(customer_id)
        .bind(amount_cents)
        .execute(&mut *tx)
        .await?;
    }
    Ok(output([("restoredCredits", json!(usage.iter().count()))]))
}

fn credit_exhausted(customer_id: &str, left: i64, asked: i64) -> StepError {
    StepError::failed_precondition(format!(
        "customer {customer_id} has {left} cents of credit left, {asked} asked"
    ))
}
