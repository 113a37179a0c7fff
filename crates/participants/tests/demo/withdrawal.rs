//! The withdrawal service step by step over gRPC: money frozen, sent, deducted, and every step undone.

use anyhow::Result;
use participants::Service::Withdrawal;
use serde_json::{Value, json};
use tonic::Code;
use uuid::Uuid;

use crate::support::{Demo, compensate, execute, id};

const FORWARD: [(&str, &str); 4] = [
    ("PRE_FREEZE_BALANCE", "FreezeBalance"),
    ("EXECUTE_BANK_TRANSFER", "ExecuteBankTransfer"),
    ("DEDUCT_BALANCE", "DeductBalance"),
    ("UPDATE_WITHDRAWAL_STATUS", "CompleteWithdrawal"),
];

const BACKWARD: [(&str, &str); 4] = [
    ("UPDATE_WITHDRAWAL_STATUS", "ReopenWithdrawal"),
    ("DEDUCT_BALANCE", "RestoreBalance"),
    ("EXECUTE_BANK_TRANSFER", "ReverseBankTransfer"),
    ("PRE_FREEZE_BALANCE", "UnfreezeBalance"),
];

/// The merchant's (available, frozen) cents.
async fn balance(demo: &Demo, merchant: &str) -> Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT available_cents, frozen_cents FROM withdrawal.merchants WHERE id = $1",
    )
    .bind(merchant)
    .fetch_one(&demo.db.pool)
    .await?)
}

async fn forward(demo: &Demo, saga: Uuid, steps: &[(&str, &str)], state: &mut Value) -> Result<()> {
    for (step, action) in steps {
        let output = demo
            .execute(Withdrawal, execute(saga, step, action, 1, state))
            .await?;
        if let Value::Object(state) = state {
            state.extend(output);
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_withdrawal_freezes_sends_deducts_and_completes() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let mut state = json!({"merchantId": "globex", "amountCents": 10_000});

    forward(&demo, saga, &FORWARD[..1], &mut state).await?;
    assert_eq!(balance(&demo, "globex").await?, (240_000, 10_000));
    forward(&demo, saga, &FORWARD[1..], &mut state).await?;

    assert_eq!(balance(&demo, "globex").await?, (240_000, 0));
    let withdrawal_id = id(state.as_object().expect("object"), "withdrawalId");
    let status: String =
        sqlx::query_scalar("SELECT status FROM withdrawal.withdrawals WHERE id = $1")
            .bind(withdrawal_id)
            .fetch_one(&demo.db.pool)
            .await?;
    assert_eq!(status, "COMPLETED");
    let transfers: Vec<(i64, String)> = sqlx::query_as(
        "SELECT amount_cents, status FROM withdrawal.bank_transfers WHERE withdrawal_id = $1",
    )
    .bind(withdrawal_id)
    .fetch_all(&demo.db.pool)
    .await?;
    assert_eq!(transfers, [(10_000, "SENT".to_owned())]);
    demo.stop().await
}

#[tokio::test]
async fn compensating_every_step_in_reverse_restores_the_balance_and_reverses_the_transfer()
-> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let mut state = json!({"merchantId": "globex", "amountCents": 10_000});
    forward(&demo, saga, &FORWARD, &mut state).await?;

    for (step, action) in BACKWARD {
        demo.compensate(Withdrawal, compensate(saga, step, action, 1, &state))
            .await?;
    }

    assert_eq!(balance(&demo, "globex").await?, (250_000, 0));
    let statuses: (String, String) = sqlx::query_as(
        "SELECT w.status, t.status FROM withdrawal.withdrawals w
         JOIN withdrawal.bank_transfers t ON t.withdrawal_id = w.id WHERE w.saga_id = $1",
    )
    .bind(saga)
    .fetch_one(&demo.db.pool)
    .await?;
    assert_eq!(statuses, ("CANCELLED".to_owned(), "REVERSED".to_owned()));
    demo.stop().await
}

#[tokio::test]
async fn a_withdrawal_over_the_available_balance_or_for_an_unknown_merchant_is_refused()
-> Result<()> {
    let demo = Demo::start().await?;
    let cases = [
        (
            json!({"merchantId": "globex", "amountCents": 250_001}),
            Code::FailedPrecondition,
            "merchant globex has 250000 cents available, 250001 asked",
        ),
        (
            json!({"merchantId": "initech", "amountCents": 1}),
            Code::NotFound,
            "merchant initech does not exist",
        ),
        (
            json!({"merchantId": "globex", "amountCents": 0}),
            Code::InvalidArgument,
            "amountCents must be positive, got 0",
        ),
    ];

    for (payload, code, message) in cases {
        let status = demo
            .execute(
                Withdrawal,
                execute(
                    Uuid::new_v4(),
                    "PRE_FREEZE_BALANCE",
                    "FreezeBalance",
                    1,
                    &payload,
                ),
            )
            .await
            .expect_err("refused");
        assert_eq!(
            (status.code(), status.message()),
            (code, message),
            "{payload}"
        );
    }
    assert_eq!(balance(&demo, "globex").await?, (250_000, 0));
    assert_eq!(
        demo.db
            .count("SELECT count(*) FROM withdrawal.withdrawals")
            .await?,
        0
    );
    demo.stop().await
}

#[tokio::test]
async fn a_forward_step_refuses_a_withdrawal_of_another_saga() -> Result<()> {
    let demo = Demo::start().await?;
    let mut state = json!({"merchantId": "acme", "amountCents": 100});
    forward(&demo, Uuid::new_v4(), &FORWARD[..1], &mut state).await?;

    let status = demo
        .execute(
            Withdrawal,
            execute(
                Uuid::new_v4(),
                "EXECUTE_BANK_TRANSFER",
                "ExecuteBankTransfer",
                1,
                &state,
            ),
        )
        .await
        .expect_err("not this saga's");

    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        demo.db
            .count("SELECT count(*) FROM withdrawal.bank_transfers")
            .await?,
        0
    );
    demo.stop().await
}
