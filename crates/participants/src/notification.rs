//! notification: puts the notifications sagas ask for in an outbox, in the same transaction as the
//! barrier row, so a notification is queued exactly once however often the step is delivered. Sending
//! is the outbox dispatcher's job, outside the demo; a queued notification cannot be taken back, which
//! is why the flows put this step at or after their pivot.

use saga_participant::{Router, StepCall, StepError, StepOutput, output};
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

/// The notification service's actions.
pub(crate) fn router() -> Router {
    Router::new()
        .execute("NotifyAppAvailable", notify_app_available)
        .execute("NotifyOrderCreated", notify_order_created)
}

/// Tells the developer their app is published: `{"notificationId"}`.
async fn notify_app_available(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let message = format!(
        "{} {} is available",
        call.str("appName")?,
        call.str("version")?
    );
    let subject = call.uuid("appId")?;
    queue(
        call,
        tx,
        "APP_AVAILABLE",
        call.str("developerId")?,
        subject,
        &message,
    )
    .await
}

/// Tells the customer their order is placed and paid: `{"notificationId"}`.
async fn notify_order_created(
    call: &StepCall,
    tx: &mut PgConnection,
) -> Result<StepOutput, StepError> {
    let order_id = call.uuid("orderId")?;
    let message = format!(
        "order {order_id}: {} x {}, {} cents paid",
        call.i64("quantity")?,
        call.str("sku")?,
        call.i64("amountCents")?
    );
    queue(
        call,
        tx,
        "ORDER_CREATED",
        call.str("customerId")?,
        order_id,
        &message,
    )
    .await
}

async fn queue(
    call: &StepCall,
    tx: &mut PgConnection,
    topic: &str,
    recipient: &str,
    subject_id: Uuid,
    message: &str,
) -> Result<StepOutput, StepError> {
    let notification_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO notification.outbox (id, saga_id, topic, recipient, subject_id, message)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(notification_id)
    .bind(call.saga_id)
    .bind(topic)
    .bind(recipient)
    .bind(subject_id)
    .bind(message)
    .execute(&mut *tx)
    .await?;
    Ok(output([("notificationId", json!(notification_id))]))
}
