//! The purchase_plan flow driven step by step the way the coordinator drives it: outputs merged into the
//! saga state, compensations in reverse. Checks the cross-service invariants.

use anyhow::Result;
use participants::Service::{self, Billing, Device, Payment};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Demo, compensate, execute};

const FORWARD: [(&str, Service, &str); 5] = [
    ("VALIDATE_PLAN", Billing, "ValidatePlan"),
    ("CREATE_ORDER", Billing, "CreateOrder"),
    ("ALLOCATE_DEVICE", Device, "AllocateDevice"),
    ("PROCESS_PAYMENT", Payment, "Charge"),
    ("ACTIVATE_ORDER", Billing, "ActivateOrder"),
];

#[tokio::test]
async fn a_purchase_activates_a_paid_order_with_its_device() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let mut state = json!({"userId": "u1", "planId": "pro"});

    for (step, service, action) in FORWARD {
        let output = demo
            .execute(service, execute(saga, step, action, 1, &state))
            .await?;
        merge(&mut state, output);
    }

    let (status, amount): (String, i64) =
        sqlx::query_as("SELECT status, amount_cents FROM billing.orders WHERE saga_id = $1")
            .bind(saga)
            .fetch_one(&demo.db.pool)
            .await?;
    assert_eq!((status.as_str(), amount), ("ACTIVE", 2999));
    let paid_devices = demo
        .db
        .count(
            "SELECT count(*) FROM device.devices d
             JOIN billing.orders o ON o.id = d.order_id AND o.status = 'ACTIVE'
             JOIN payment.payments p ON p.order_id = o.id AND p.status = 'SUCCESS' AND p.amount_cents = o.amount_cents
             WHERE d.status = 'ALLOCATED'",
        )
        .await?;
    assert_eq!(paid_devices, 1);
    demo.stop().await
}

#[tokio::test]
async fn a_refused_payment_compensates_into_no_device_and_no_money() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let mut state =
        json!({"userId": "u1", "planId": "basic", "faults": {"PROCESS_PAYMENT": "refuse"}});

    for (step, service, action) in &FORWARD[..3] {
        let output = demo
            .execute(*service, execute(saga, step, action, 1, &state))
            .await?;
        merge(&mut state, output);
    }
    demo.execute(
        Payment,
        execute(saga, "PROCESS_PAYMENT", "Charge", 1, &state),
    )
    .await
    .expect_err("refused");
    demo.compensate(
        Device,
        compensate(saga, "ALLOCATE_DEVICE", "ReleaseDevice", 1, &state),
    )
    .await?;
    demo.compensate(
        Billing,
        compensate(saga, "CREATE_ORDER", "CancelOrder", 1, &state),
    )
    .await?;

    let db = &demo.db;
    assert_eq!(
        db.count("SELECT count(*) FROM billing.orders WHERE status <> 'CANCELLED'")
            .await?,
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM device.devices WHERE status <> 'RELEASED'")
            .await?,
        0
    );
    assert_eq!(db.count("SELECT count(*) FROM payment.payments").await?, 0);
    demo.stop().await
}

fn merge(state: &mut Value, output: serde_json::Map<String, Value>) {
    if let Value::Object(state) = state {
        state.extend(output);
    }
}
