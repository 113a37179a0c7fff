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

    let row: (Uuid, String, Uuid, String) = sqlx::query_as(
        "SELECT saga_id, user_id, order_id, status FROM device.devices WHERE id = $1",
    )
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
    assert_eq!(
        demo.db.count("SELECT count(*) FROM device.devices").await?,
        0
    );
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
    let status: String = sqlx::query_scalar("SELECT status FROM device.devices WHERE id = $1")
        .bind(device_id)
        .fetch_one(&demo.db.pool)
        .await?;
    assert_eq!(status, "RELEASED");
    demo.stop().await
}

/// Runs device_creation's forward steps for `user` in saga `saga`, merging outputs like the coordinator.
async fn provision(
    demo: &Demo,
    saga: Uuid,
    user: &str,
) -> Result<serde_json::Value, tonic::Status> {
    let mut state = json!({"userId": user});
    for (step, action) in [
        ("CHECK_QUOTA", "CheckQuota"),
        ("CREATE_CONTAINER", "CreateContainer"),
        ("CREATE_DEVICE_RECORD", "CreateDeviceRecord"),
        ("INITIALIZE_DEVICE", "InitializeDevice"),
        ("UPDATE_QUOTA_USAGE", "IncrementQuotaUsage"),
    ] {
        let output = demo
            .execute(Device, execute(saga, step, action, 1, &state))
            .await?;
        if let serde_json::Value::Object(state) = &mut state {
            state.extend(output);
        }
    }
    Ok(state)
}

#[tokio::test]
async fn device_creation_runs_a_ready_device_in_a_container_and_counts_it_in_the_quota()
-> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();

    let state = provision(&demo, saga, "u1").await?;

    let device: (String, Uuid, Option<Uuid>) =
        sqlx::query_as("SELECT status, container_id, order_id FROM device.devices WHERE id = $1")
            .bind(id(state.as_object().expect("object"), "deviceId"))
            .fetch_one(&demo.db.pool)
            .await?;
    assert_eq!(device.0, "READY");
    assert_eq!(
        device.1,
        id(state.as_object().expect("object"), "containerId")
    );
    assert_eq!(device.2, None, "not bound to an order");
    let container: String =
        sqlx::query_scalar("SELECT status FROM device.containers WHERE id = $1")
            .bind(device.1)
            .fetch_one(&demo.db.pool)
            .await?;
    assert_eq!(container, "RUNNING");
    let quota: (i32, i32) =
        sqlx::query_as("SELECT max_devices, used_devices FROM device.quotas WHERE user_id = 'u1'")
            .fetch_one(&demo.db.pool)
            .await?;
    assert_eq!(quota, (3, 1), "the default quota, one used");
    demo.stop().await
}

#[tokio::test]
async fn check_quota_refuses_a_user_whose_quota_is_used_up() -> Result<()> {
    let demo = Demo::start().await?;
    sqlx::query(
        "INSERT INTO device.quotas (user_id, max_devices, used_devices) VALUES ('u1', 1, 1)",
    )
    .execute(&demo.db.pool)
    .await?;

    let status = demo
        .execute(
            Device,
            execute(
                Uuid::new_v4(),
                "CHECK_QUOTA",
                "CheckQuota",
                1,
                &json!({"userId": "u1"}),
            ),
        )
        .await
        .expect_err("quota used up");

    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "user u1 has used all 1 devices of their quota"
    );
    demo.stop().await
}

#[tokio::test]
async fn the_quota_increment_refuses_when_another_saga_took_the_last_place_first() -> Result<()> {
    let demo = Demo::start().await?;
    sqlx::query("INSERT INTO device.quotas (user_id, max_devices) VALUES ('u1', 1)")
        .execute(&demo.db.pool)
        .await?;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    // Both pass CHECK_QUOTA before either counts its device.
    for saga in [first, second] {
        demo.execute(
            Device,
            execute(
                saga,
                "CHECK_QUOTA",
                "CheckQuota",
                1,
                &json!({"userId": "u1"}),
            ),
        )
        .await?;
    }

    provision(&demo, first, "u1").await?;
    let status = provision(&demo, second, "u1")
        .await
        .expect_err("the quota filled up");

    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        demo.db
            .count("SELECT used_devices::bigint FROM device.quotas WHERE user_id = 'u1'")
            .await?,
        1
    );
    demo.stop().await
}

#[tokio::test]
async fn device_creation_compensations_undo_each_step_back_to_nothing_running() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let state = provision(&demo, saga, "u1").await?;

    for (step, action) in [
        ("UPDATE_QUOTA_USAGE", "DecrementQuotaUsage"),
        ("INITIALIZE_DEVICE", "ResetDevice"),
        ("CREATE_DEVICE_RECORD", "DeleteDeviceRecord"),
        ("CREATE_CONTAINER", "DestroyContainer"),
    ] {
        demo.compensate(Device, compensate(saga, step, action, 1, &state))
            .await?;
    }

    let db = &demo.db;
    assert_eq!(
        db.count("SELECT used_devices::bigint FROM device.quotas WHERE user_id = 'u1'")
            .await?,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM device.devices WHERE status <> 'RELEASED'")
            .await?,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM device.containers WHERE status <> 'DESTROYED'")
            .await?,
        0
    );
    demo.stop().await
}

#[tokio::test]
async fn a_device_record_needs_the_sagas_running_container() -> Result<()> {
    let demo = Demo::start().await?;
    let missing = Uuid::new_v4();

    let status = demo
        .execute(
            Device,
            execute(
                Uuid::new_v4(),
                "CREATE_DEVICE_RECORD",
                "CreateDeviceRecord",
                1,
                &json!({"userId": "u1", "containerId": missing}),
            ),
        )
        .await
        .expect_err("no container");

    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        format!("container {missing} is not running for user u1")
    );
    assert_eq!(
        demo.db.count("SELECT count(*) FROM device.devices").await?,
        0
    );
    demo.stop().await
}

#[tokio::test]
async fn release_order_devices_releases_every_device_of_a_refunded_order() -> Result<()> {
    let demo = Demo::start().await?;
    let order = Uuid::new_v4();
    demo.execute(
        Device,
        execute(
            Uuid::new_v4(),
            "ALLOCATE_DEVICE",
            "AllocateDevice",
            1,
            &json!({"userId": "u1", "orderId": order}),
        ),
    )
    .await?;

    let released = demo
        .execute(
            Device,
            execute(
                Uuid::new_v4(),
                "RELEASE_DEVICES",
                "ReleaseOrderDevices",
                1,
                &json!({"orderId": order}),
            ),
        )
        .await?;

    assert_eq!(released["releasedDevices"], json!(1));
    assert_eq!(
        demo.db
            .count("SELECT count(*) FROM device.devices WHERE status = 'ALLOCATED'")
            .await?,
        0
    );
    demo.stop().await
}
