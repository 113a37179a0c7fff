//! Devices bound to an order: allocated by purchase_plan, released by its compensation or by the refund
//! of the order's payment.

use saga_participant::{StepCall, StepError, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

/// Allocates a device for the order: `{"deviceId"}`.
pub(super) async fn allocate_device(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let user_id = call.str("userId")?;
    let order_id = call.uuid("orderId")?;
    let device_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO device.devices (id, saga_id, user_id, order_id, status)
         VALUES ($1, $2, $3, $4, 'ALLOCATED')",
    )
    .bind(device_id)
    .bind(call.saga_id)
    .bind(user_id)
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    Ok(output([("deviceId", json!(device_id))]))
}

/// Releases the saga's device: `{"releasedDevices": n}`. Without a `deviceId` in the payload it finds the
/// device by saga; finding nothing to release is fine.
pub(super) async fn release_device(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let released = sqlx::query(
        "UPDATE device.devices SET status = 'RELEASED', updated_at = now()
         WHERE saga_id = $1 AND ($2::uuid IS NULL OR id = $2) AND status = 'ALLOCATED'",
    )
    .bind(call.saga_id)
    .bind(call.opt_uuid("deviceId")?)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(output([("releasedDevices", json!(released))]))
}

/// Releases every device of a refunded order: `{"releasedDevices": n}`.
pub(super) async fn release_order_devices(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let released = sqlx::query(
        "UPDATE device.devices SET status = 'RELEASED', updated_at = now()
         WHERE order_id = $1 AND status = 'ALLOCATED'",
    )
    .bind(call.uuid("orderId")?)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(output([("releasedDevices", json!(released))]))
}
