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
    let plan_id = call.str("planId")?;
    let order_id = Uuid::now_v7();
    // One statement reads the plan and writes the order; only when it writes nothing does a second one
    // find out why.
    let amount_cents: Option<i64> = sqlx::query_scalar(
        "INSERT INTO billing.orders (id, saga_id, user_id, plan_id, amount_cents, status)
         SELECT $1, $2, $3, id, price_cents, 'PENDING' FROM billing.plans WHERE id = $4 AND active
         RETURNING amount_cents",
    )
    .bind(order_id)
    .bind(call.saga_id)
    .bind(user_id)
    .bind(plan_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(amount_cents) = amount_cents else {
        active_plan(tx, plan_id).await?;
        // The plan was activated after the insert looked: nothing was written, so a retry is safe.
        return Err(StepError::unavailable(format!(
            "plan {plan_id} changed while ordering"
        )));
    };
    Ok(output([
        ("orderId", json!(order_id)),
        ("amountCents", json!(amount_cents)),
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
    // The usual case is one statement; the status is read only to tell the other cases apart.
    let moved = sqlx::query(
        "UPDATE billing.orders SET status = $2, updated_at = now()
         WHERE id = $1 AND status = ANY($3)",
    )
    .bind(order_id)
    .bind(to)
    .bind(from)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 1 {
        return Ok(output([("orderStatus", json!(to))]));
    }
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM billing.orders WHERE id = $1 FOR UPDATE")
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await?;
    match status {
        None => Err(StepError::not_found(format!(
            "order {order_id} does not exist"
        ))),
        Some(status) if status == to => Ok(output([("orderStatus", json!(to))])),
        // Moved into one of `from` after the update looked: nothing was written, so a retry is safe.
        Some(status) if from.contains(&status.as_str()) => Err(StepError::unavailable(format!(
            "order {order_id} changed while moving it"
        ))),
        Some(status) => Err(StepError::failed_precondition(format!(
            "order {order_id} is {}",
            status.to_lowercase()
        ))),
    }
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
