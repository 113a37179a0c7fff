use anyhow::Result;
use participants::Service::Payment;
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

use crate::support::{Demo, compensate, execute, id};

#[tokio::test]
async fn charge_captures_the_amount_for_the_order() -> Result<()> {
    let demo = Demo::start().await?;
    let (saga, order) = (Uuid::new_v4(), Uuid::new_v4());
    let payload = json!({"userId": "u1", "orderId": order, "amountCents": 2999});

    let charged = demo
        .execute(
            Payment,
            execute(saga, "PROCESS_PAYMENT", "Charge", 1, &payload),
        )
        .await?;

    let row: (Uuid, Uuid, String, i64, String) = sqlx::query_as(
        "SELECT saga_id, order_id, user_id, amount_cents, status FROM payments WHERE id = $1",
    )
    .bind(id(&charged, "paymentId"))
    .fetch_one(&demo.db.pool)
    .await?;
    assert_eq!(row, (saga, order, "u1".into(), 2999, "CAPTURED".into()));
    demo.stop().await
}

#[tokio::test]
async fn a_repeated_charge_with_the_same_key_does_not_charge_twice() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let payload = json!({"userId": "u1", "orderId": Uuid::new_v4(), "amountCents": 2999});

    let first = demo
        .execute(
            Payment,
            execute(saga, "PROCESS_PAYMENT", "Charge", 1, &payload),
        )
        .await?;
    let retry = demo
        .execute(
            Payment,
            execute(saga, "PROCESS_PAYMENT", "Charge", 2, &payload),
        )
        .await?;

    assert_eq!(retry, first);
    assert_eq!(demo.db.count("SELECT count(*) FROM payments").await?, 1);
    assert_eq!(
        demo.db
            .count("SELECT coalesce(sum(amount_cents), 0)::bigint FROM payments")
            .await?,
        2999
    );
    demo.stop().await
}

#[tokio::test]
async fn charge_refuses_a_non_positive_or_fractional_amount() -> Result<()> {
    let demo = Demo::start().await?;
    for (amount, message) in [
        (json!(0), "amountCents must be positive, got 0"),
        (json!(-5), "amountCents must be positive, got -5"),
        (json!(9.99), "field \"amountCents\" must be an integer"),
    ] {
        let payload = json!({"userId": "u1", "orderId": Uuid::new_v4(), "amountCents": amount});
        let status = demo
            .execute(
                Payment,
                execute(Uuid::new_v4(), "PROCESS_PAYMENT", "Charge", 1, &payload),
            )
            .await
            .expect_err("refused");
        assert_eq!(
            (status.code(), status.message()),
            (Code::InvalidArgument, message)
        );
    }
    assert_eq!(demo.db.count("SELECT count(*) FROM payments").await?, 0);
    demo.stop().await
}

#[tokio::test]
async fn refund_marks_the_saga_payment_refunded_once() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let payload = json!({"userId": "u1", "orderId": Uuid::new_v4(), "amountCents": 999});
    let charged = demo
        .execute(
            Payment,
            execute(saga, "PROCESS_PAYMENT", "Charge", 1, &payload),
        )
        .await?;

    let refund = compensate(
        saga,
        "PROCESS_PAYMENT",
        "Refund",
        1,
        &json!({"paymentId": id(&charged, "paymentId")}),
    );
    let refunded = demo.compensate(Payment, refund.clone()).await?;
    let repeated = demo.compensate(Payment, refund).await?;

    assert_eq!(refunded["refundedPayments"], json!(1));
    assert_eq!(repeated, refunded);
    assert_eq!(
        demo.db
            .count("SELECT count(*) FROM payments WHERE status = 'REFUNDED'")
            .await?,
        1
    );
    demo.stop().await
}
