//! The gateway service step by step over gRPC: an order paid through the simulated channel, and both
//! steps undone.

use std::time::{Duration, Instant};

use anyhow::Result;
use participants::Service::Gateway;
use serde_json::{Map, Value, json};
use tonic::{Code, Request, Status};
use uuid::Uuid;

use crate::support::{Demo, compensate, execute, id};

/// The order's status and its channel payments' `(amount, status)`.
async fn rows(demo: &Demo, saga: Uuid) -> Result<(Option<String>, Vec<(i64, String)>)> {
    let order = sqlx::query_scalar("SELECT status FROM gateway.orders WHERE saga_id = $1")
        .bind(saga)
        .fetch_optional(&demo.db.pool)
        .await?;
    let payments = sqlx::query_as(
        "SELECT p.amount_cents, p.status FROM gateway.channel_payments p
         JOIN gateway.orders o ON o.id = p.order_id WHERE o.saga_id = $1",
    )
    .bind(saga)
    .fetch_all(&demo.db.pool)
    .await?;
    Ok((order, payments))
}

/// A fresh saga that opened an order on `channel` for `amount_cents`: its id and state.
async fn ordered(demo: &Demo, channel: &str, amount_cents: i64) -> Result<(Uuid, Value)> {
    let saga = Uuid::new_v4();
    let mut state = json!({"payerId": "p1", "channel": channel, "amountCents": amount_cents});
    let output = demo
        .execute(
            Gateway,
            execute(saga, "CREATE_ORDER", "CreateOrder", 1, &state),
        )
        .await?;
    if let Value::Object(state) = &mut state {
        state.extend(output);
    }
    Ok((saga, state))
}

/// Attempt `attempt` of CALL_PAYMENT_CHANNEL.
async fn call_channel(
    demo: &Demo,
    saga: Uuid,
    attempt: u32,
    state: &Value,
) -> Result<Map<String, Value>, Status> {
    let step = ("CALL_PAYMENT_CHANNEL", "CallPaymentChannel");
    demo.execute(Gateway, execute(saga, step.0, step.1, attempt, state))
        .await
}

#[tokio::test]
async fn the_channel_takes_the_money_of_the_order_once_and_the_order_is_paid() -> Result<()> {
    let demo = Demo::start().await?;
    let (saga, state) = ordered(&demo, "card", 1500).await?;
    assert_eq!(
        rows(&demo, saga).await?,
        (Some("CREATED".to_owned()), vec![])
    );

    let paid = call_channel(&demo, saga, 1, &state).await?;

    assert_eq!(paid["orderStatus"], "PAID");
    assert_eq!(
        rows(&demo, saga).await?,
        (Some("PAID".to_owned()), vec![(1500, "PAID".to_owned())])
    );
    let (channel_payment, requests): (Uuid, i32) =
        sqlx::query_as("SELECT id, requests FROM gateway.channel_payments")
            .fetch_one(&demo.db.pool)
            .await?;
    assert_eq!(channel_payment, id(&paid, "channelPaymentId"));
    assert_eq!(requests, 1);
    demo.stop().await
}

#[tokio::test]
async fn compensating_both_steps_cancels_the_channel_payment_then_the_order() -> Result<()> {
    let demo = Demo::start().await?;
    let (saga, state) = ordered(&demo, "wallet", 700).await?;
    call_channel(&demo, saga, 1, &state).await?;

    let cancelled = demo
        .compensate(
            Gateway,
            compensate(
                saga,
                "CALL_PAYMENT_CHANNEL",
                "CancelChannelPayment",
                1,
                &state,
            ),
        )
        .await?;
    assert_eq!(cancelled["cancelledChannelPayments"], 1);
    assert_eq!(
        rows(&demo, saga).await?,
        (
            Some("CREATED".to_owned()),
            vec![(700, "CANCELLED".to_owned())]
        ),
        "the order is back where CREATE_ORDER left it"
    );
    demo.compensate(
        Gateway,
        compensate(saga, "CREATE_ORDER", "CancelOrder", 1, &state),
    )
    .await?;

    assert_eq!(
        rows(&demo, saga).await?,
        (
            Some("CANCELLED".to_owned()),
            vec![(700, "CANCELLED".to_owned())]
        )
    );
    demo.stop().await
}

#[tokio::test]
async fn an_unknown_or_disabled_channel_or_a_bad_amount_refuses_the_order() -> Result<()> {
    let demo = Demo::start().await?;
    let cases = [
        (
            json!({"payerId": "p1", "channel": "cheque", "amountCents": 100}),
            Code::NotFound,
            "payment channel cheque does not exist",
        ),
        (
            json!({"payerId": "p1", "channel": "bank_transfer", "amountCents": 100}),
            Code::FailedPrecondition,
            "payment channel bank_transfer is disabled",
        ),
        (
            json!({"payerId": "p1", "channel": "card", "amountCents": 0}),
            Code::InvalidArgument,
            "amountCents must be positive, got 0",
        ),
    ];
    for (payload, code, message) in cases {
        let status = demo
            .execute(
                Gateway,
                execute(Uuid::new_v4(), "CREATE_ORDER", "CreateOrder", 1, &payload),
            )
            .await
            .expect_err("refused");
        assert_eq!((status.code(), status.message()), (code, message));
    }
    assert_eq!(
        demo.db.count("SELECT count(*) FROM gateway.orders").await?,
        0
    );
    demo.stop().await
}

#[tokio::test]
async fn the_channel_refuses_an_amount_over_its_limit_and_takes_nothing() -> Result<()> {
    let demo = Demo::start().await?;
    let (saga, state) = ordered(&demo, "wallet", 50_001).await?;

    let status = call_channel(&demo, saga, 1, &state)
        .await
        .expect_err("over the limit");

    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "payment channel wallet takes at most 50000 cents, 50001 asked"
    );
    assert_eq!(
        rows(&demo, saga).await?,
        (Some("CREATED".to_owned()), vec![])
    );
    demo.stop().await
}

#[tokio::test]
async fn a_late_channel_takes_the_money_before_the_caller_gives_up_and_the_retry_gets_that_answer()
-> Result<()> {
    let demo = Demo::start().await?;
    let (saga, mut state) = ordered(&demo, "card", 1500).await?;
    state["faults"] = json!({"CALL_PAYMENT_CHANNEL": "late:600ms"});

    let mut impatient = Request::new(execute(
        saga,
        "CALL_PAYMENT_CHANNEL",
        "CallPaymentChannel",
        1,
        &state,
    ));
    impatient.set_timeout(Duration::from_millis(200));
    let status = demo
        .execute(Gateway, impatient)
        .await
        .expect_err("too late");
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    assert_eq!(
        rows(&demo, saga).await?,
        (Some("PAID".to_owned()), vec![(1500, "PAID".to_owned())]),
        "the channel took the money although the caller saw no answer"
    );

    let started = Instant::now();
    let retry = call_channel(&demo, saga, 2, &state).await?;
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "late again"
    );
    let paid: Uuid = sqlx::query_scalar("SELECT id FROM gateway.channel_payments")
        .fetch_one(&demo.db.pool)
        .await?;
    assert_eq!(id(&retry, "channelPaymentId"), paid, "the first answer");
    assert_eq!(
        demo.db
            .count("SELECT count(*) FROM gateway.channel_payments")
            .await?,
        1
    );
    demo.stop().await
}
