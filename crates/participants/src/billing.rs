//! billing: validates plans and owns the order lifecycle: PENDING → ACTIVE when a purchase completes,
//! PENDING → CANCELLED when it compensates, ACTIVE → REFUNDED when its payment is refunded.

use saga_participant::{Router, StepCall, StepError, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

/// The billing service's actions.
pub(crate) fn router() -> Router {
    Router::new()
        .execute("ValidatePlan", validate_plan)
        .execute("CreateOrder", create_order)
        .compensate("CancelOrder", cancel_order)
        .execute("ActivateOrder", activate_order)
        .execute("MarkOrderRefunded", mark_order_refunded)
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
        "INSERT INTO billing.orders (id, saga_id, user_id, plan_id, amount_cents, status)
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

/// Cancels the saga's order: `{"cancelledOrders": n}`. Without an `orderId` in the payload (the
/// CreateOrder answer was lost) it finds the order by saga; finding nothing to cancel is fine.
async fn cancel_order(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let cancelled = sqlx::query(
        "UPDATE billing.orders SET status = 'CANCELLED', updated_at = now()
         WHERE saga_id = $1 AND ($2::uuid IS NULL OR id = $2) AND status IN ('PENDING', 'PAID')",
    )
    .bind(call.saga_id)
    .bind(call.opt_uuid("orderId")?)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(output([("cancelledOrders", json!(cancelled))]))
}

/// PENDING or PAID → ACTIVE: `{"orderStatus": "ACTIVE"}`. Activating an active order is a no-op.
async fn activate_order(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let order_id = call.uuid("orderId")?;
    move_order(tx, order_id, &["PENDING", "PAID"], "ACTIVE").await
}

/// ACTIVE → REFUNDED, once the order's payment went back: `{"orderStatus": "REFUNDED"}`.
async fn mark_order_refunded(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let order_id = call.uuid("orderId")?;
    move_order(tx, order_id, &["ACTIVE"], "REFUNDED").await
}

/// Moves an order from one of `from` to `to`, or leaves it if it is already there; any other status is
/// a refusal naming it.
async fn move_order(
    tx: &mut PgConnection,
    order_id: Uuid,
    from: &[&str],
    to: &str,
) -> Result<StepOutput, StepError> {
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM billing.orders WHERE id = $1 FOR UPDATE")
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(status) = status else {
        return Err(StepError::not_found(format!(
            "order {order_id} does not exist"
        )));
    };
    if status != to {
        if !from.contains(&status.as_str()) {
            return Err(StepError::failed_precondition(format!(
                "order {order_id} is {}",
                status.to_lowercase()
            )));
        }
        sqlx::query("UPDATE billing.orders SET status = $2, updated_at = now() WHERE id = $1")
            .bind(order_id)
            .bind(to)
            .execute(&mut *tx)
            .await?;
    }
    Ok(output([("orderStatus", json!(to))]))
}

async fn active_plan(tx: &mut PgConnection, plan_id: &str) -> Result<Plan, StepError> {
    let plan: Option<Plan> =
        sqlx::query_as("SELECT id, price_cents, active FROM billing.plans WHERE id = $1")
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
