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
        "SELECT saga_id, order_id, user_id, amount_cents, status FROM payment.payments WHERE id = $1",
    )
    .bind(id(&charged, "paymentId"))
    .fetch_one(&demo.db.pool)
    .await?;
    assert_eq!(row, (saga, order, "u1".into(), 2999, "SUCCESS".into()));
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
    assert_eq!(
        demo.db
            .count("SELECT count(*) FROM payment.payments")
            .await?,
        1
    );
    assert_eq!(
        demo.db
            .count("SELECT coalesce(sum(amount_cents), 0)::bigint FROM payment.payments")
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
    assert_eq!(
        demo.db
            .count("SELECT count(*) FROM payment.payments")
            .await?,
        0
    );
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
            .count("SELECT count(*) FROM payment.payments WHERE status = 'REFUNDED'")
            .await?,
        1
    );
    assert_eq!(
        demo.db
            .count("SELECT sum(amount_cents)::bigint FROM payment.provider_refunds")
            .await?,
        999,
        "the provider gave the money back once"
    );
    demo.stop().await
}

/// A captured payment of 2999 cents, and the payload of a refund saga for it.
async fn captured_payment(demo: &Demo) -> Result<(Uuid, serde_json::Value)> {
    captured_by(demo, Uuid::new_v4()).await
}

/// A payment of 2999 cents captured by the purchase saga `saga`.
async fn captured_by(demo: &Demo, saga: Uuid) -> Result<(Uuid, serde_json::Value)> {
    let charged = demo
        .execute(
            Payment,
            execute(
                saga,
                "PROCESS_PAYMENT",
                "Charge",
                1,
                &json!({"userId": "u1", "orderId": Uuid::new_v4(), "amountCents": 2999}),
            ),
        )
        .await?;
    let payment_id = id(&charged, "paymentId");
    Ok((payment_id, json!({"paymentId": payment_id})))
}

async fn payment_status(demo: &Demo, payment_id: Uuid) -> Result<(String, Option<Uuid>)> {
    Ok(
        sqlx::query_as("SELECT status, refunding_saga_id FROM payment.payments WHERE id = $1")
            .bind(payment_id)
            .fetch_one(&demo.db.pool)
            .await?,
    )
}

#[tokio::test]
async fn a_refund_saga_moves_the_payment_to_refunding_then_refunded_with_one_provider_refund()
-> Result<()> {
    let demo = Demo::start().await?;
    let (payment_id, payload) = captured_payment(&demo).await?;
    let saga = Uuid::new_v4();

    let marked = demo
        .execute(
            Payment,
            execute(saga, "SET_REFUNDING_STATUS", "MarkRefunding", 1, &payload),
        )
        .await?;
    assert_eq!(marked["amountCents"], json!(2999));
    assert_eq!(marked["paymentStatus"], json!("REFUNDING"));
    assert_eq!(
        payment_status(&demo, payment_id).await?,
        ("REFUNDING".to_owned(), Some(saga))
    );

    let refunded = demo
        .execute(
            Payment,
            execute(saga, "CALL_PROVIDER_REFUND", "ProviderRefund", 1, &payload),
        )
        .await?;
    id(&refunded, "refundId");
    demo.execute(
        Payment,
        execute(saga, "UPDATE_PAYMENT_STATUS", "MarkRefunded", 1, &payload),
    )
    .await?;

    assert_eq!(
        payment_status(&demo, payment_id).await?,
        ("REFUNDED".to_owned(), None)
    );
    let refunds: (i64, i64) = sqlx::query_as(
        "SELECT count(*), sum(amount_cents)::bigint FROM payment.provider_refunds WHERE payment_id = $1",
    )
    .bind(payment_id)
    .fetch_one(&demo.db.pool)
    .await?;
    assert_eq!(refunds, (1, 2999));

    // A second refund saga for the same payment is refused at its first step.
    let second = demo
        .execute(
            Payment,
            execute(
                Uuid::new_v4(),
                "SET_REFUNDING_STATUS",
                "MarkRefunding",
                1,
                &payload,
            ),
        )
        .await
        .expect_err("refunded once");
    assert_eq!(second.code(), Code::FailedPrecondition);
    assert_eq!(
        second.message(),
        format!("payment {payment_id} is refunded")
    );
    demo.stop().await
}

#[tokio::test]
async fn a_payment_held_by_one_refund_saga_is_refused_to_another_and_restored_by_compensation()
-> Result<()> {
    let demo = Demo::start().await?;
    let (payment_id, payload) = captured_payment(&demo).await?;
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());

    demo.execute(
        Payment,
        execute(first, "SET_REFUNDING_STATUS", "MarkRefunding", 1, &payload),
    )
    .await?;
    let refused = demo
        .execute(
            Payment,
            execute(second, "SET_REFUNDING_STATUS", "MarkRefunding", 1, &payload),
        )
        .await
        .expect_err("held by the first saga");
    assert_eq!(
        refused.message(),
        format!("payment {payment_id} is refunding")
    );
    let not_holder = demo
        .execute(
            Payment,
            execute(
                second,
                "CALL_PROVIDER_REFUND",
                "ProviderRefund",
                1,
                &payload,
            ),
        )
        .await
        .expect_err("only the holder may refund");
    assert_eq!(not_holder.code(), Code::FailedPrecondition);

    demo.compensate(
        Payment,
        compensate(first, "SET_REFUNDING_STATUS", "RestorePayment", 1, &payload),
    )
    .await?;

    assert_eq!(
        payment_status(&demo, payment_id).await?,
        ("SUCCESS".to_owned(), None)
    );
    assert_eq!(
        demo.db
            .count("SELECT count(*) FROM payment.provider_refunds")
            .await?,
        0
    );
    demo.stop().await
}

#[tokio::test]
async fn the_provider_refunds_a_payment_once_however_often_it_is_asked() -> Result<()> {
    let demo = Demo::start().await?;
    let purchase = Uuid::new_v4();
    let (payment_id, payload) = captured_by(&demo, purchase).await?;
    let refund = Uuid::new_v4();
    demo.execute(
        Payment,
        execute(refund, "SET_REFUNDING_STATUS", "MarkRefunding", 1, &payload),
    )
    .await?;
    demo.execute(
        Payment,
        execute(
            refund,
            "CALL_PROVIDER_REFUND",
            "ProviderRefund",
            1,
            &payload,
        ),
    )
    .await?;

    // The purchase's own compensation asks the provider again for the same payment.
    let compensated = demo
        .compensate(
            Payment,
            compensate(purchase, "PROCESS_PAYMENT", "Refund", 1, &payload),
        )
        .await?;
    let finished = demo
        .execute(
            Payment,
            execute(refund, "UPDATE_PAYMENT_STATUS", "MarkRefunded", 1, &payload),
        )
        .await?;

    assert_eq!(compensated["refundedPayments"], json!(1));
    assert_eq!(finished["paymentStatus"], json!("REFUNDED"));
    let (refunds, cents, requests): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), sum(amount_cents)::bigint, sum(requests)::bigint
         FROM payment.provider_refunds WHERE payment_id = $1",
    )
    .bind(payment_id)
    .fetch_one(&demo.db.pool)
    .await?;
    assert_eq!(
        (refunds, cents, requests),
        (1, 2999, 2),
        "asked twice, refunded once"
    );
    demo.stop().await
}

#[tokio::test]
async fn mark_refunded_refuses_until_the_provider_has_refunded() -> Result<()> {
    let demo = Demo::start().await?;
    let (payment_id, payload) = captured_payment(&demo).await?;
    let saga = Uuid::new_v4();
    demo.execute(
        Payment,
        execute(saga, "SET_REFUNDING_STATUS", "MarkRefunding", 1, &payload),
    )
    .await?;

    let refused = demo
        .execute(
            Payment,
            execute(saga, "UPDATE_PAYMENT_STATUS", "MarkRefunded", 1, &payload),
        )
        .await
        .expect_err("no refund yet");

    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        format!("the provider has not refunded payment {payment_id}")
    );
    assert_eq!(
        payment_status(&demo, payment_id).await?,
        ("REFUNDING".to_owned(), Some(saga))
    );
    demo.stop().await
}
