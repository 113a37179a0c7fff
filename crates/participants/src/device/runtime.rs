//! The simulated container runtime: the containers it runs are rows, so tests can see what is running.

use sqlx::PgConnection;
use uuid::Uuid;

use saga_participant::StepError;

/// Starts a container for the user; returns its id.
pub(super) async fn start(
    tx: &mut PgConnection,
    saga_id: Uuid,
    user_id: &str,
) -> Result<Uuid, StepError> {
    let container_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO device.containers (id, saga_id, user_id, status) VALUES ($1, $2, $3, 'RUNNING')",
    )
    .bind(container_id)
    .bind(saga_id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    Ok(container_id)
}

/// Whether `container_id` is running for `user_id`.
pub(super) async fn is_running(
    tx: &mut PgConnection,
    container_id: Uuid,
    user_id: &str,
) -> Result<bool, StepError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM device.containers
                        WHERE id = $1 AND user_id = $2 AND status = 'RUNNING')",
    )
    .bind(container_id)
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await?)
}

/// Destroys the saga's running containers (only `container_id` when given); returns how many.
pub(super) async fn destroy(
    tx: &mut PgConnection,
    saga_id: Uuid,
    container_id: Option<Uuid>,
) -> Result<u64, StepError> {
    Ok(sqlx::query(
        "UPDATE device.containers SET status = 'DESTROYED', updated_at = now()
         WHERE saga_id = $1 AND ($2::uuid IS NULL OR id = $2) AND status = 'RUNNING'",
    )
    .bind(saga_id)
    .bind(container_id)
    .execute(&mut *tx)
    .await?
    .rows_affected())
}
