//! Fault injection through the payload, against the demo services in-process over gRPC.

use std::time::{Duration, Instant};

use anyhow::Result;
use participants::Service::{Billing, Device, Payment, Withdrawal};
use serde_json::json;
use tonic::{Code, Request};
use uuid::Uuid;

use crate::support::{Demo, compensate, execute, id};

#[tokio::test]
async fn a_refuse_fault_refuses_without_recording_anything() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let order = Uuid::new_v4();
    let faulty = json!({"userId": "u1", "orderId": order, "faults": {"ALLOCATE_DEVICE": "refuse"}});

    let status = demo
        .execute(
            Device,
            execute(saga, "ALLOCATE_DEVICE", "AllocateDevice", 1, &faulty),
        )
        .await
        .expect_err("refused");

    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "injected fault: refuse");
    assert_eq!(
        demo.db.count("SELECT count(*) FROM device.devices").await?,
        0
    );
    assert_eq!(demo.db.count("SELECT count(*) FROM saga_barrier").await?, 0);

    // Nothing was recorded, so the same step without the fault runs for real.
    let healthy = json!({"userId": "u1", "orderId": order});
    demo.execute(
        Device,
        execute(saga, "ALLOCATE_DEVICE", "AllocateDevice", 2, &healthy),
    )
    .await?;
    assert_eq!(
        demo.db.count("SELECT count(*) FROM device.devices").await?,
        1
    );
    demo.stop().await
}

#[tokio::test]
async fn an_unavailable_n_fault_fails_the_first_n_attempts_then_runs_the_step() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let payload = json!({
        "userId": "u1", "orderId": Uuid::new_v4(), "amountCents": 999,
        "faults": {"PROCESS_PAYMENT": "unavailable:2"}
    });

    for attempt in 1..=2 {
        let status = demo
            .execute(
                Payment,
                execute(saga, "PROCESS_PAYMENT", "Charge", attempt, &payload),
            )
            .await
            .expect_err("unavailable");
        assert_eq!(status.code(), Code::Unavailable, "attempt {attempt}");
        assert_eq!(status.message(), "injected fault: unavailable");
    }
    demo.execute(
        Payment,
        execute(saga, "PROCESS_PAYMENT", "Charge", 3, &payload),
    )
    .await?;

    assert_eq!(
        demo.db
            .count("SELECT count(*) FROM payment.payments")
            .await?,
        1
    );
    demo.stop().await
}

#[tokio::test]
async fn an_unavailable_fault_fails_every_attempt() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let payload = json!({
        "userId": "u1", "orderId": Uuid::new_v4(), "amountCents": 999,
        "faults": {"PROCESS_PAYMENT": "unavailable"}
    });

    for attempt in 1..=5 {
        let status = demo
            .execute(
                Payment,
                execute(saga, "PROCESS_PAYMENT", "Charge", attempt, &payload),
            )
            .await
            .expect_err("unavailable");
        assert_eq!(status.code(), Code::Unavailable, "attempt {attempt}");
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
async fn a_compensate_fault_fails_the_compensation_and_leaves_the_forward_step_alone() -> Result<()>
{
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let payload = json!({
        "userId": "u1", "planId": "pro",
        "faults": {"CREATE_ORDER:compensate": "unavailable"}
    });

    demo.execute(
        Billing,
        execute(saga, "CREATE_ORDER", "CreateOrder", 1, &payload),
    )
    .await?;
    let status = demo
        .compensate(
            Billing,
            compensate(saga, "CREATE_ORDER", "CancelOrder", 1, &payload),
        )
        .await
        .expect_err("unavailable");

    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        demo.db
            .count("SELECT count(*) FROM billing.orders WHERE status = 'PENDING'")
            .await?,
        1
    );
    demo.stop().await
}

#[tokio::test]
async fn a_hang_fault_never_answers_before_the_callers_deadline() -> Result<()> {
    let demo = Demo::start().await?;
    let payload = json!({"userId": "u1", "planId": "pro", "faults": {"VALIDATE_PLAN": "hang"}});
    let deadline = Duration::from_millis(200);
    let mut request = Request::new(execute(
        Uuid::new_v4(),
        "VALIDATE_PLAN",
        "ValidatePlan",
        1,
        &payload,
    ));
    request.set_timeout(deadline);
    let started = Instant::now();

    let status = demo.execute(Billing, request).await.expect_err("no answer");

    // tonic's server enforces `grpc-timeout` by dropping the call and answering CANCELLED.
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    assert!(started.elapsed() >= deadline);
    assert_eq!(demo.db.count("SELECT count(*) FROM saga_barrier").await?, 0);
    demo.stop().await
}

#[tokio::test]
async fn a_malformed_fault_is_an_invalid_argument() -> Result<()> {
    let demo = Demo::start().await?;
    let payload = json!({"userId": "u1", "planId": "pro", "faults": {"VALIDATE_PLAN": "explode"}});

    let status = demo
        .execute(
            Billing,
            execute(Uuid::new_v4(), "VALIDATE_PLAN", "ValidatePlan", 1, &payload),
        )
        .await
        .expect_err("invalid");

    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "invalid fault \"explode\" for VALIDATE_PLAN: expected refuse, unavailable[:N], hang[:N], \
         apply-then-fail[:N], delay:<duration> or late:<duration> (e.g. delay:200ms)"
    );
    demo.stop().await
}

#[tokio::test]
async fn apply_then_fail_commits_the_step_loses_the_answer_and_the_retry_gets_the_first_answer()
-> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let payload = json!({
        "userId": "u1", "orderId": Uuid::new_v4(), "amountCents": 999,
        "faults": {"PROCESS_PAYMENT": "apply-then-fail:1"}
    });

    let lost = demo
        .execute(
            Payment,
            execute(saga, "PROCESS_PAYMENT", "Charge", 1, &payload),
        )
        .await
        .expect_err("answer dropped");
    assert_eq!(lost.code(), Code::Unavailable);
    assert_eq!(
        lost.message(),
        "injected fault: apply-then-fail, the step ran and its answer was dropped"
    );
    let committed: (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, status FROM payment.payments WHERE saga_id = $1")
            .bind(saga)
            .fetch_one(&demo.db.pool)
            .await?;
    assert_eq!(committed.1, "SUCCESS", "the charge committed");

    let retry = demo
        .execute(
            Payment,
            execute(saga, "PROCESS_PAYMENT", "Charge", 2, &payload),
        )
        .await?;

    assert_eq!(
        id(&retry, "paymentId"),
        committed.0,
        "the first charge's answer"
    );
    assert_eq!(
        demo.db
            .count("SELECT count(*) FROM payment.payments")
            .await?,
        1
    );
    assert_eq!(
        demo.db
            .count("SELECT sum(replays)::bigint FROM saga_barrier")
            .await?,
        1,
        "the retry was absorbed as a duplicate"
    );
    demo.stop().await
}

#[tokio::test]
async fn apply_then_fail_without_a_bound_loses_every_answer_but_applies_once() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let payload = json!({
        "merchantId": "acme", "amountCents": 500,
        "faults": {"PRE_FREEZE_BALANCE": "apply-then-fail"}
    });

    for attempt in 1..=3 {
        let status = demo
            .execute(
                Withdrawal,
                execute(
                    saga,
                    "PRE_FREEZE_BALANCE",
                    "FreezeBalance",
                    attempt,
                    &payload,
                ),
            )
            .await
            .expect_err("answer dropped");
        assert_eq!(status.code(), Code::Unavailable, "attempt {attempt}");
    }

    let (available, frozen): (i64, i64) = sqlx::query_as(
        "SELECT available_cents, frozen_cents FROM withdrawal.merchants WHERE id = 'acme'",
    )
    .fetch_one(&demo.db.pool)
    .await?;
    assert_eq!((available, frozen), (1_000_000 - 500, 500), "frozen once");
    assert_eq!(
        demo.db
            .count("SELECT sum(replays)::bigint FROM saga_barrier")
            .await?,
        2
    );
    demo.stop().await
}

#[tokio::test]
async fn a_delay_fault_waits_then_runs_the_step() -> Result<()> {
    let demo = Demo::start().await?;
    let payload =
        json!({"userId": "u1", "planId": "pro", "faults": {"CREATE_ORDER": "delay:150ms"}});
    let started = Instant::now();

    let created = demo
        .execute(
            Billing,
            execute(Uuid::new_v4(), "CREATE_ORDER", "CreateOrder", 1, &payload),
        )
        .await?;

    assert!(started.elapsed() >= Duration::from_millis(150));
    id(&created, "orderId");
    assert_eq!(
        demo.db.count("SELECT count(*) FROM billing.orders").await?,
        1
    );
    demo.stop().await
}

#[tokio::test]
async fn a_bounded_hang_fault_hangs_only_the_first_attempts() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let payload =
        json!({"userId": "u1", "orderId": Uuid::new_v4(), "faults": {"ALLOCATE_DEVICE": "hang:1"}});
    let mut first = Request::new(execute(
        saga,
        "ALLOCATE_DEVICE",
        "AllocateDevice",
        1,
        &payload,
    ));
    first.set_timeout(Duration::from_millis(100));

    demo.execute(Device, first).await.expect_err("hangs");
    demo.execute(
        Device,
        execute(saga, "ALLOCATE_DEVICE", "AllocateDevice", 2, &payload),
    )
    .await?;

    assert_eq!(
        demo.db.count("SELECT count(*) FROM device.devices").await?,
        1
    );
    demo.stop().await
}
