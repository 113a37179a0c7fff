//! device_creation: a device provisioned in its own container, counted against the user's quota.
//!
//! CHECK_QUOTA refuses early when the quota is used up, but it reserves nothing: two sagas can both
//! pass it. UPDATE_QUOTA_USAGE is the step that counts, with a conditional increment; when the quota
//! filled up in between, it refuses and the saga compensates the container and the device.

use saga_participant::{StepCall, StepError, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;

use super::runtime;

/// Reports the user's quota, refusing when it is used up: `{"quotaMax", "quotaUsed"}`. A user seen for
/// the first time gets the default quota.
pub(super) async fn check_quota(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let user_id = call.str("userId")?;
    sqlx::query("INSERT INTO device.quotas (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let (max, used): (i32, i32) =
        sqlx::query_as("SELECT max_devices, used_devices FROM device.quotas WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await?;
    if used >= max {
        return Err(quota_exhausted(user_id, max));
    }
    Ok(output([
        ("quotaMax", json!(max)),
        ("quotaUsed", json!(used)),
    ]))
}

/// Starts the device's container: `{"containerId"}`.
pub(super) async fn create_container(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let container_id = runtime::start(tx, call.saga_id, call.str("userId")?).await?;
    Ok(output([("containerId", json!(container_id))]))
}

/// Destroys the saga's container: `{"destroyedContainers": n}`.
pub(super) async fn destroy_container(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let destroyed = runtime::destroy(tx, call.saga_id, call.opt_uuid("containerId")?).await?;
    Ok(output([("destroyedContainers", json!(destroyed))]))
}

/// Records a PROVISIONING device in the saga's running container: `{"deviceId"}`.
pub(super) async fn create_device_record(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let user_id = call.str("userId")?;
    let container_id = call.uuid("containerId")?;
    if !runtime::is_running(tx, container_id, user_id).await? {
        return Err(StepError::failed_precondition(format!(
            "container {container_id} is not running for user {user_id}"
        )));
    }
    let device_id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO device.devices (id, saga_id, user_id, container_id, status)
         VALUES ($1, $2, $3, $4, 'PROVISIONING')",
    )
    .bind(device_id)
    .bind(call.saga_id)
    .bind(user_id)
    .bind(container_id)
    .execute(&mut *tx)
    .await?;
    Ok(output([("deviceId", json!(device_id))]))
}

/// Releases the saga's provisioned device: `{"deletedDevices": n}`.
pub(super) async fn delete_device_record(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let deleted = sqlx::query(
        "UPDATE device.devices SET status = 'RELEASED', updated_at = now()
         WHERE saga_id = $1 AND ($2::uuid IS NULL OR id = $2)
           AND status IN ('PROVISIONING', 'READY')",
    )
    .bind(call.saga_id)
    .bind(call.opt_uuid("deviceId")?)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(output([("deletedDevices", json!(deleted))]))
}

/// PROVISIONING → READY: `{"deviceStatus": "READY"}`. Initializing a ready device is a no-op.
pub(super) async fn initialize_device(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let device_id = call.uuid("deviceId")?;
    let status: Option<String> = sqlx::query_scalar(
        "SELECT status FROM device.devices WHERE id = $1 AND container_id IS NOT NULL FOR UPDATE",
    )
    .bind(device_id)
    .fetch_optional(&mut *tx)
    .await?;
    match status.as_deref() {
        None => {
            return Err(StepError::not_found(format!(
                "device {device_id} does not exist"
            )));
        }
        Some("PROVISIONING") => {
            sqlx::query(
                "UPDATE device.devices SET status = 'READY', updated_at = now() WHERE id = $1",
            )
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        }
        Some("READY") => {}
        Some(other) => {
            return Err(StepError::failed_precondition(format!(
                "device {device_id} is {}",
                other.to_lowercase()
            )));
        }
    }
    Ok(output([("deviceStatus", json!("READY"))]))
}

/// READY → PROVISIONING for the saga's device: `{"resetDevices": n}`.
pub(super) async fn reset_device(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let reset = sqlx::query(
        "UPDATE device.devices SET status = 'PROVISIONING', updated_at = now()
         WHERE saga_id = $1 AND ($2::uuid IS NULL OR id = $2) AND status = 'READY'",
    )
    .bind(call.saga_id)
    .bind(call.opt_uuid("deviceId")?)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok(output([("resetDevices", json!(reset))]))
}

/// Counts the device against the user's quota, refusing when it is full: `{"quotaUsed"}`.
pub(super) async fn increment_quota_usage(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let user_id = call.str("userId")?;
    let used: Option<i32> = sqlx::query_scalar(
        "UPDATE device.quotas SET used_devices = used_devices + 1, updated_at = now()
         WHERE user_id = $1 AND used_devices < max_devices
         RETURNING used_devices",
    )
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    match used {
        Some(used) => Ok(output([("quotaUsed", json!(used))])),
        None => {
            let max: Option<i32> =
                sqlx::query_scalar("SELECT max_devices FROM device.quotas WHERE user_id = $1")
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            Err(match max {
                Some(max) => quota_exhausted(user_id, max),
                None => StepError::not_found(format!("user {user_id} has no device quota")),
            })
        }
    }
}

/// Gives the device's place in the quota back: `{"quotaUsed"}`.
pub(super) async fn decrement_quota_usage(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let used: Option<i32> = sqlx::query_scalar(
        "UPDATE device.quotas SET used_devices = used_devices - 1, updated_at = now()
         WHERE user_id = $1 AND used_devices > 0
         RETURNING used_devices",
    )
    .bind(call.str("userId")?)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(output([("quotaUsed", json!(used))]))
}

fn quota_exhausted(user_id: &str, max: i32) -> StepError {
    StepError::failed_precondition(format!(
        "user {user_id} has used all {max} devices of their quota"
    ))
}
