//! inventory: holds stock for an order being created (order_creation). A reservation takes units out of
//! `available` until the saga that made it is undone.
//!
//! A reservation expires 5 minutes after it was made: an order may only be built on it until then (the
//! sales service refuses a lapsed one, and the saga gives the units back). The inventory does not release
//! lapsed reservations by itself: it cannot tell one that no order took from one a paid order holds, and
//! releasing the latter would sell its units twice. Giving stock back is the saga's compensation's job,
//! which sagad runs or parks for an operator.

use chrono::{DateTime, Utc};
use saga_participant::{Router, StepCall, StepError, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::input::positive;

/// The inventory service's actions.
pub(crate) fn router() -> Router {
    Router::new()
        .execute("ReserveInventory", reserve_inventory)
        .compensate("ReleaseReservation", release_reservation)
}

/// Holds `quantity` units of `sku` for 5 minutes: `{"reservationId", "reservationExpiresAt"}`.
async fn reserve_inventory(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let sku = call.str("sku")?;
    let quantity = positive(call, "quantity")?;
    let taken = sqlx::query(
        "UPDATE inventory.products SET available = available - $2, updated_at = now()
         WHERE sku = $1 AND available >= $2",
    )
    .bind(sku)
    .bind(quantity)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if taken == 0 {
        let available: Option<i64> =
            sqlx::query_scalar("SELECT available FROM inventory.products WHERE sku = $1")
                .bind(sku)
                .fetch_optional(&mut *tx)
                .await?;
        return Err(match available {
            None => StepError::not_found(format!("product {sku} does not exist")),
            Some(available) => StepError::failed_precondition(format!(
                "{available} units of {sku} available, {quantity} asked"
            )),
        });
    }
    let reservation_id = Uuid::now_v7();
    let expires_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO inventory.reservations (id, saga_id, sku, quantity, status, expires_at)
         VALUES ($1, $2, $3, $4, 'HELD', now() + interval '5 minutes')
         RETURNING expires_at",
    )
    .bind(reservation_id)
    .bind(call.saga_id)
    .bind(sku)
    .bind(quantity)
    .fetch_one(&mut *tx)
    .await?;
    Ok(output([
        ("reservationId", json!(reservation_id)),
        ("reservationExpiresAt", json!(expires_at.to_rfc3339())),
    ]))
}

/// HELD → RELEASED, the units back to available: `{"releasedReservations": n}`.
async fn release_reservation(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let released: Option<(String, i64)> = sqlx::query_as(
        "UPDATE inventory.reservations SET status = 'RELEASED', updated_at = now()
         WHERE saga_id = $1 AND status = 'HELD'
         RETURNING sku, quantity",
    )
    .bind(call.saga_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((sku, quantity)) = &released {
        sqlx::query(
            "UPDATE inventory.products SET available = available + $2, updated_at = now()
             WHERE sku = $1",
        )
        .bind(sku)
        .bind(quantity)
        .execute(&mut *tx)
        .await?;
    }
    Ok(output([(
        "releasedReservations",
        json!(released.iter().count()),
    )]))
}
