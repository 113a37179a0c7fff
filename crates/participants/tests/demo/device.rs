use anyhow::Result;
use participants::Service::Device;
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

use crate::support::{Demo, compensate, execute, id};

#[tokio::test]
async fn allocate_device_writes_an_allocated_device_for_the_order() -> Result<()> {
    let demo = Demo::start().await?;
    let (saga, order) = (Uuid::new_v4(), Uuid::new_v4());
    let payload = json!({"userId": "u1", "orderId": order});

    let allocated = demo
        .execute(
            Device,
            execute(saga, "ALLOCATE_DEVICE", "AllocateDevice", 1, &payload),
        )
        .await?;

    let row: (Uuid, String, Uuid, String) =
        sqlx::query_as("SELECT saga_id, user_id, order_id, status FROM devices WHERE id = $1")
            .bind(id(&allocated, "deviceId"))
            .fetch_one(&demo.db.pool)
            .await?;
    assert_eq!(row, (saga, "u1".into(), order, "ALLOCATED".into()));
    demo.stop().await
}

#[tokio::test]
async fn allocate_device_refuses_a_malformed_order_id() -> Result<()> {
    let demo = Demo::start().await?;
    let payload = json!({"userId": "u1", "orderId": "order-1"});

    let status = demo
        .execute(
            Device,
            execute(
                Uuid::new_v4(),
                "ALLOCATE_DEVICE",
                "AllocateDevice",
                1,
                &payload,
            ),
        )
        .await
        .expect_err("invalid");

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "field \"orderId\" must be a uuid");
    assert_eq!(demo.db.count("SELECT count(*) FROM devices").await?, 0);
    demo.stop().await
}

#[tokio::test]
async fn release_device_marks_the_saga_device_released() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let payload = json!({"userId": "u1", "orderId": Uuid::new_v4()});
    let allocated = demo
        .execute(
            Device,
            execute(saga, "ALLOCATE_DEVICE", "AllocateDevice", 1, &payload),
        )
        .await?;
    let device_id = id(&allocated, "deviceId");

    let released = demo
        .compensate(
            Device,
            compensate(
                saga,
                "ALLOCATE_DEVICE",
                "ReleaseDevice",
                1,
                &json!({"deviceId": device_id}),
            ),
        )
        .await?;

    assert_eq!(released["releasedDevices"], json!(1));
    let status: String = sqlx::query_scalar("SELECT status FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_one(&demo.db.pool)
        .await?;
    assert_eq!(status, "RELEASED");
    demo.stop().await
}
