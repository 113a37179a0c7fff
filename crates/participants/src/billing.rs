//! billing: validates plans and owns the order lifecycle PENDING → ACTIVE, or → CANCELLED when the
//! saga compensates.

use saga_participant::{StepCall, StepError, StepHandler, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Service;

/// The billing service's step handler.
pub(crate) struct Billing;

impl StepHandler for Billing {
    async fn execute(
        &self,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> Result<StepOutput, StepError> {
        match call.action.as_str() {
            "ValidatePlan" => validate_plan(call, tx).await,
            "CreateOrder" => create_order(call, tx).await,
            "ActivateOrder" => activate_order(call, tx).await,
            other => Err(Service::Billing.unknown_action(other)),
        }
    }

    async fn compensate(
        &self,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> Result<StepOutput, StepError> {
        match call.action.as_str() {
            "CancelOrder" => cancel_order(call, tx).await,
            other => Err(Service::Billing.unknown_action(other)),
        }
    }
}

#[derive(sqlx::FromRow)]
struct Plan {
    id: String,
    price_cents: i64,
    active: bool,
}

/// Quotes the plan's price: `{"planId", "amountCents"}`.
async fn validate_plan(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    call.str("userId")?;
    let plan = active_plan(tx, call.str("planId")?).await?;
    Ok(output([
        ("planId", json!(plan.id)),
        ("amountCents", json!(plan.price_cents)),
    ]))
}

/// Creates a PENDING order: `{"orderId", "amountCents"}`.
///
/// The amount is the plan's price from billing's own table, never a price from the payload; returning
/// it makes the order the source of truth for what the payment step charges.
async fn create_order(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let user_id = call.str("userId")?;
    let plan = active_plan(tx, call.str("planId")?).await?;
    let order_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO billing_orders (id, saga_id, user_id, plan_id, amount_cents, status)
         VALUES ($1, $2, $3, $4, $5, 'PENDING')",
    )
    .bind(order_id)
    .bind(call.saga_id)
    .bind(user_id)
    .bind(&plan.id)
    .bind(plan.price_cents)
    .execute(&mut *tx)
    .await?;
    Ok(output([
        ("orderId", json!(order_id)),
        ("amountCents", json!(plan.price_cents)),
    ]))
}

/// PENDING → ACTIVE: `{"orderStatus": "ACTIVE"}`. Activating an active order is a no-op.
async fn activate_order(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let order_id = call.uuid("orderId")?;
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM billing_orders WHERE id = $1 FOR UPDATE")
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
    match status.as_deref() {
        None => {
            return Err(StepError::not_found(format!(
                "order {order_id} does not exist"
            )));
        }
        Some("CANCELLED") => {
            return Err(StepError::failed_precondition(format!(
                "order {order_id} is cancelled"
            )));
        }
        Some(_) => {}
    }
    sqlx::query(
        "UPDATE billing_orders SET status = 'ACTIVE', updated_at = now()
         WHERE id = $1 AND status = 'PENDING'",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    Ok(output([("orderStatus", json!("ACTIVE"))]))
}

/// Cancels the saga's order: `{"cancelledOrders": n}`. Without an `orderId` in the payload (the
/// CreateOrder answer was lost) it finds the order by saga; finding nothing to cancel is fine.
async fn cancel_order(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let cancelled = sqlx::query(
        "UPDATE billing_orders SET status = 'CANCELLED', updated_at = now()
         WHERE saga_id = $1 AND ($2::uuid IS NULL OR id = $2) AND status <> 'CANCELLED'",
    )
    .bind(call.saga_id)
    .bind(call.opt_uuid("orderId")?)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(output([("cancelledOrders", json!(cancelled))]))
}

async fn active_plan(tx: &mut PgConnection, plan_id: &str) -> Result<Plan, StepError> {
    let plan: Option<Plan> =
        sqlx::query_as("SELECT id, price_cents, active FROM billing_plans WHERE id = $1")
            .bind(plan_id)
            .fetch_optional(&mut *tx)
            .await?;
    let plan =
        plan.ok_or_else(|| StepError::not_found(format!("plan {plan_id} does not exist")))?;
    if !plan.active {
        return Err(StepError::failed_precondition(format!(
            "plan {plan_id} is not active"
        )));
    }
    Ok(plan)
}
