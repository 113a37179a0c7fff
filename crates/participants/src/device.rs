//! device: allocates a device to a user's order, releases it when the saga compensates.

use saga_participant::{StepCall, StepError, StepHandler, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::Service;

/// The device service's step handler.
pub(crate) struct Device;

impl StepHandler for Device {
    async fn execute(
        &self,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> Result<StepOutput, StepError> {
        match call.action.as_str() {
            "AllocateDevice" => allocate_device(call, tx).await,
            other => Err(Service::Device.unknown_action(other)),
        }
    }

    async fn compensate(
        &self,
        call: &StepCall,
        tx: &mut PgConnection,
    ) -> Result<StepOutput, StepError> {
        match call.action.as_str() {
            "ReleaseDevice" => release_device(call, tx).await,
            other => Err(Service::Device.unknown_action(other)),
        }
    }
}

/// Allocates a device for the order: `{"deviceId"}`.
async fn allocate_device(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let user_id = call.str("userId")?;
    let order_id = call.uuid("orderId")?;
    let device_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO devices (id, saga_id, user_id, order_id, status)
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
async fn release_device(call: &StepCall, tx: &mut PgConnection) -> Result<StepOutput, StepError> {
    let released = sqlx::query(
        "UPDATE devices SET status = 'RELEASED', updated_at = now()
         WHERE saga_id = $1 AND ($2::uuid IS NULL OR id = $2) AND status = 'ALLOCATED'",
    )
    .bind(call.saga_id)
    .bind(call.opt_uuid("deviceId")?)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(output([("releasedDevices", json!(released))]))
}
