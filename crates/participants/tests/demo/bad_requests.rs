//! Bad requests to every demo service over gRPC: each gets INVALID_ARGUMENT with a message saying what
//! is wrong, and changes no row of any table, barrier included.

use anyhow::Result;
use participants::Service::{self, Billing, Device, Payment, Withdrawal};
use saga_proto::v1::StepRequest;
use serde_json::{Value, json};
use tonic::Code;
use uuid::Uuid;

use crate::support::{Db, Demo, compensate, execute};

/// A digest of every row of every demo table and of the barrier: any insert, update or delete changes it.
async fn snapshot(db: &Db) -> Result<Vec<(String, Option<String>)>> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables
         WHERE table_schema IN ('billing', 'device', 'payment', 'withdrawal')
            OR (table_schema = 'public' AND table_name = 'saga_barrier')
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await?;
    assert_eq!(tables.len(), 11, "every table is covered: {tables:?}");
    let mut digests = Vec::new();
    for table in tables {
        let digest: Option<String> = sqlx::query_scalar(&format!(
            "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM {table} t"
        ))
        .fetch_one(&db.pool)
        .await?;
        digests.push((table, digest));
    }
    Ok(digests)
}

fn uuid() -> Value {
    json!(Uuid::new_v4())
}

#[tokio::test]
async fn missing_or_mistyped_fields_are_invalid_arguments_that_change_nothing() -> Result<()> {
    let demo = Demo::start().await?;
    let before = snapshot(&demo.db).await?;
    let cases: Vec<(Service, &str, Value, String)> = vec![
        (Billing, "ValidatePlan", json!({}), missing("userId")),
        (
            Billing,
            "ValidatePlan",
            json!({"userId": 1, "planId": "pro"}),
            not_a("userId", "a non-empty string"),
        ),
        (
            Billing,
            "CreateOrder",
            json!({"userId": "u1"}),
            missing("planId"),
        ),
        (
            Billing,
            "ActivateOrder",
            json!({"orderId": "nope"}),
            not_a("orderId", "a uuid"),
        ),
        (Billing, "MarkOrderRefunded", json!({}), missing("orderId")),
        (
            Device,
            "AllocateDevice",
            json!({"userId": "u1"}),
            missing("orderId"),
        ),
        (
            Device,
            "ReleaseOrderDevices",
            json!({"orderId": true}),
            not_a("orderId", "a uuid"),
        ),
        (
            Device,
            "CheckQuota",
            json!({"userId": ""}),
            not_a("userId", "a non-empty string"),
        ),
        (
            Device,
            "CreateContainer",
            json!({"userId": ["u1"]}),
            not_a("userId", "a non-empty string"),
        ),
        (
            Device,
            "CreateDeviceRecord",
            json!({"userId": "u1", "containerId": 7}),
            not_a("containerId", "a uuid"),
        ),
        (Device, "InitializeDevice", json!({}), missing("deviceId")),
        (
            Device,
            "IncrementQuotaUsage",
            json!({"userId": null}),
            missing("userId"),
        ),
        (
            Payment,
            "Charge",
            json!({"userId": "u1", "orderId": uuid(), "amountCents": "2999"}),
            not_a("amountCents", "an integer"),
        ),
        (
            Payment,
            "Charge",
            json!({"userId": "u1", "orderId": uuid(), "amountCents": 29.99}),
            not_a("amountCents", "an integer"),
        ),
        (
            Payment,
            "Charge",
            json!({"userId": "u1", "orderId": uuid(), "amountCents": -1}),
            "amountCents must be positive, got -1".to_owned(),
        ),
        (
            Payment,
            "MarkRefunding",
            json!({"paymentId": "p-1"}),
            not_a("paymentId", "a uuid"),
        ),
        (Payment, "ProviderRefund", json!({}), missing("paymentId")),
        (
            Payment,
            "MarkRefunded",
            json!({"paymentId": {}}),
            not_a("paymentId", "a uuid"),
        ),
        (
            Withdrawal,
            "FreezeBalance",
            json!({"merchantId": "acme"}),
            missing("amountCents"),
        ),
        (
            Withdrawal,
            "FreezeBalance",
            json!({"merchantId": "acme", "amountCents": 1e20}),
            not_a("amountCents", "an integer"),
        ),
        (
            Withdrawal,
            "FreezeBalance",
            json!({"merchantId": 5, "amountCents": 100}),
            not_a("merchantId", "a non-empty string"),
        ),
        (
            Withdrawal,
            "ExecuteBankTransfer",
            json!({}),
            missing("withdrawalId"),
        ),
        (
            Withdrawal,
            "DeductBalance",
            json!({"withdrawalId": "w-1"}),
            not_a("withdrawalId", "a uuid"),
        ),
        (
            Withdrawal,
            "CompleteWithdrawal",
            json!({"withdrawalId": 1}),
            not_a("withdrawalId", "a uuid"),
        ),
    ];

    for (service, action, payload, message) in cases {
        let status = demo
            .execute(
                service,
                execute(Uuid::new_v4(), "STEP", action, 1, &payload),
            )
            .await
            .expect_err("invalid");
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, message.as_str()),
            "{service} {action} {payload}"
        );
    }

    assert_eq!(snapshot(&demo.db).await?, before);
    demo.stop().await
}

fn missing(field: &str) -> String {
    format!("missing field {field:?} in payload")
}

fn not_a(field: &str, expected: &str) -> String {
    format!("field {field:?} must be {expected}")
}

#[tokio::test]
async fn unknown_actions_and_malformed_envelopes_are_invalid_arguments_that_change_nothing()
-> Result<()> {
    let demo = Demo::start().await?;
    let before = snapshot(&demo.db).await?;
    let saga = Uuid::new_v4();
    let payload = json!({"userId": "u1", "planId": "pro"});
    let request = |action: &str| execute(saga, "STEP", action, 1, &payload);
    let with = |change: fn(&mut StepRequest)| {
        let mut request = request("CreateOrder");
        change(&mut request);
        request
    };

    let executes = [
        (
            Billing,
            request("Refund"),
            "unknown action Refund for service billing",
        ),
        (
            Device,
            request("CancelOrder"),
            "unknown action CancelOrder for service device",
        ),
        (Billing, request(""), "missing action"),
        (
            Billing,
            with(|r| r.saga_id = "42".to_owned()),
            "saga_id \"42\" is not a uuid",
        ),
        (Billing, with(|r| r.step.clear()), "missing step"),
        (
            Billing,
            with(|r| r.idempotency_key.clear()),
            "missing idempotency key",
        ),
        (
            Billing,
            execute(
                saga,
                "STEP",
                "CreateOrder",
                1,
                &json!({"userId": "u1", "planId": "pro", "faults": ["STEP"]}),
            ),
            "payload field faults must be an object",
        ),
    ];
    for (service, request, message) in executes {
        let status = demo.execute(service, request).await.expect_err("invalid");
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, message)
        );
    }
    // A compensation the service does not have is refused before the barrier, which would otherwise
    // answer OK for a step that never ran.
    let compensates = [
        (
            Payment,
            "Charge",
            "unknown action Charge for service payment",
        ),
        (
            Withdrawal,
            "Refund",
            "unknown action Refund for service withdrawal",
        ),
    ];
    for (service, action, message) in compensates {
        let status = demo
            .compensate(service, compensate(saga, "STEP", action, 1, &payload))
            .await
            .expect_err("invalid");
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, message)
        );
    }

    assert_eq!(snapshot(&demo.db).await?, before);
    demo.stop().await
}

#[tokio::test]
async fn a_compensation_with_a_mistyped_field_changes_nothing_and_can_be_retried() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    demo.execute(
        Billing,
        execute(
            saga,
            "CREATE_ORDER",
            "CreateOrder",
            1,
            &json!({"userId": "u1", "planId": "pro"}),
        ),
    )
    .await?;
    let before = snapshot(&demo.db).await?;

    let status = demo
        .compensate(
            Billing,
            compensate(
                saga,
                "CREATE_ORDER",
                "CancelOrder",
                1,
                &json!({"orderId": 5}),
            ),
        )
        .await
        .expect_err("invalid");

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), not_a("orderId", "a uuid"));
    assert_eq!(snapshot(&demo.db).await?, before);
    let retried = demo
        .compensate(
            Billing,
            compensate(saga, "CREATE_ORDER", "CancelOrder", 2, &json!({})),
        )
        .await?;
    assert_eq!(retried["cancelledOrders"], json!(1));
    demo.stop().await
}
