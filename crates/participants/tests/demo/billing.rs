use anyhow::Result;
use participants::Service::Billing;
use serde_json::json;
use tonic::Code;
use uuid::Uuid;

use crate::support::{Demo, compensate, execute, id};

#[tokio::test]
async fn validate_plan_quotes_the_price_of_an_active_plan() -> Result<()> {
    let demo = Demo::start().await?;
    let payload = json!({"userId": "u1", "planId": "pro"});

    let quoted = demo
        .execute(
            Billing,
            execute(Uuid::new_v4(), "VALIDATE_PLAN", "ValidatePlan", 1, &payload),
        )
        .await?;

    assert_eq!(json!(quoted), json!({"planId": "pro", "amountCents": 2999}));
    demo.stop().await
}

#[tokio::test]
async fn validate_plan_refuses_unknown_inactive_and_incomplete_requests() -> Result<()> {
    let demo = Demo::start().await?;
    let cases = [
        (
            json!({"userId": "u1", "planId": "gold"}),
            Code::NotFound,
            "plan gold does not exist",
        ),
        (
            json!({"userId": "u1", "planId": "legacy"}),
            Code::FailedPrecondition,
            "plan legacy is not active",
        ),
        (
            json!({"planId": "pro"}),
            Code::InvalidArgument,
            "missing field \"userId\" in payload",
        ),
        (
            json!({"userId": "u1"}),
            Code::InvalidArgument,
            "missing field \"planId\" in payload",
        ),
    ];

    for (payload, code, message) in cases {
        let status = demo
            .execute(
                Billing,
                execute(Uuid::new_v4(), "VALIDATE_PLAN", "ValidatePlan", 1, &payload),
            )
            .await
            .expect_err("refused");
        assert_eq!(
            (status.code(), status.message()),
            (code, message),
            "{payload}"
        );
    }
    demo.stop().await
}

#[tokio::test]
async fn create_order_writes_a_pending_order_at_the_plan_price() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    // A price in the payload is ignored: billing charges what its own plan table says.
    let payload = json!({"userId": "u1", "planId": "basic", "amountCents": 1});

    let created = demo
        .execute(
            Billing,
            execute(saga, "CREATE_ORDER", "CreateOrder", 1, &payload),
        )
        .await?;

    let order_id = id(&created, "orderId");
    assert_eq!(created["amountCents"], json!(999));
    let row: (Uuid, String, String, i64, String) = sqlx::query_as(
        "SELECT saga_id, user_id, plan_id, amount_cents, status FROM billing.orders WHERE id = $1",
    )
    .bind(order_id)
    .fetch_one(&demo.db.pool)
    .await?;
    assert_eq!(
        row,
        (saga, "u1".into(), "basic".into(), 999, "PENDING".into())
    );
    demo.stop().await
}

#[tokio::test]
async fn create_order_refuses_an_unknown_or_inactive_plan_and_writes_no_order() -> Result<()> {
    let demo = Demo::start().await?;
    let cases = [
        ("gold", Code::NotFound, "plan gold does not exist"),
        (
            "legacy",
            Code::FailedPrecondition,
            "plan legacy is not active",
        ),
    ];

    for (plan, code, message) in cases {
        let status = demo
            .execute(
                Billing,
                execute(
                    Uuid::new_v4(),
                    "CREATE_ORDER",
                    "CreateOrder",
                    1,
                    &json!({"userId": "u1", "planId": plan}),
                ),
            )
            .await
            .expect_err("refused");
        assert_eq!((status.code(), status.message()), (code, message), "{plan}");
    }
    assert_eq!(
        demo.db.count("SELECT count(*) FROM billing.orders").await?,
        0
    );
    demo.stop().await
}

#[tokio::test]
async fn activate_order_moves_a_pending_order_to_active() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let payload = json!({"userId": "u1", "planId": "pro"});
    let created = demo
        .execute(
            Billing,
            execute(saga, "CREATE_ORDER", "CreateOrder", 1, &payload),
        )
        .await?;
    let order_id = id(&created, "orderId");

    let activated = demo
        .execute(
            Billing,
            execute(
                saga,
                "ACTIVATE_ORDER",
                "ActivateOrder",
                1,
                &json!({"orderId": order_id}),
            ),
        )
        .await?;

    assert_eq!(json!(activated), json!({"orderStatus": "ACTIVE"}));
    let status: String = sqlx::query_scalar("SELECT status FROM billing.orders WHERE id = $1")
        .bind(order_id)
        .fetch_one(&demo.db.pool)
        .await?;
    assert_eq!(status, "ACTIVE");
    demo.stop().await
}

#[tokio::test]
async fn activate_order_refuses_a_missing_order() -> Result<()> {
    let demo = Demo::start().await?;
    let missing = Uuid::new_v4();

    let status = demo
        .execute(
            Billing,
            execute(
                Uuid::new_v4(),
                "ACTIVATE_ORDER",
                "ActivateOrder",
                1,
                &json!({"orderId": missing}),
            ),
        )
        .await
        .expect_err("not found");

    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(status.message(), format!("order {missing} does not exist"));
    demo.stop().await
}

#[tokio::test]
async fn cancel_order_finds_the_order_by_saga_when_the_payload_has_no_order_id() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let payload = json!({"userId": "u1", "planId": "pro"});
    let created = demo
        .execute(
            Billing,
            execute(saga, "CREATE_ORDER", "CreateOrder", 1, &payload),
        )
        .await?;
    let order_id = id(&created, "orderId");

    // The payload the coordinator holds when CreateOrder's answer was lost: no orderId.
    let cancelled = demo
        .compensate(
            Billing,
            compensate(saga, "CREATE_ORDER", "CancelOrder", 1, &payload),
        )
        .await?;

    assert_eq!(cancelled["cancelledOrders"], json!(1));
    let status: String = sqlx::query_scalar("SELECT status FROM billing.orders WHERE id = $1")
        .bind(order_id)
        .fetch_one(&demo.db.pool)
        .await?;
    assert_eq!(status, "CANCELLED");

    let refused = demo
        .execute(
            Billing,
            execute(
                saga,
                "ACTIVATE_ORDER",
                "ActivateOrder",
                1,
                &json!({"orderId": order_id}),
            ),
        )
        .await
        .expect_err("cancelled orders stay cancelled");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    demo.stop().await
}

#[tokio::test]
async fn an_unknown_action_is_an_invalid_argument_naming_the_service() -> Result<()> {
    let demo = Demo::start().await?;
    let payload = json!({"userId": "u1"});

    let forward = demo
        .execute(
            Billing,
            execute(Uuid::new_v4(), "CREATE_ORDER", "MakeOrder", 1, &payload),
        )
        .await
        .expect_err("unknown");
    // A compensating action is not a forward action.
    let backward = demo
        .execute(
            Billing,
            execute(Uuid::new_v4(), "CREATE_ORDER", "CancelOrder", 1, &payload),
        )
        .await
        .expect_err("unknown");

    assert_eq!(forward.code(), Code::InvalidArgument);
    assert_eq!(
        forward.message(),
        "unknown action MakeOrder for service billing"
    );
    assert_eq!(
        backward.message(),
        "unknown action CancelOrder for service billing"
    );
    demo.stop().await
}

#[tokio::test]
async fn mark_order_refunded_moves_only_an_active_order() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let created = demo
        .execute(
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
    let order = json!({"orderId": id(&created, "orderId")});
    let refund = |saga| execute(saga, "UPDATE_ORDER_STATUS", "MarkOrderRefunded", 1, &order);

    let pending = demo
        .execute(Billing, refund(Uuid::new_v4()))
        .await
        .expect_err("a pending order was never paid for");
    assert_eq!(pending.code(), Code::FailedPrecondition);
    assert!(
        pending.message().ends_with("is pending"),
        "{}",
        pending.message()
    );

    demo.execute(
        Billing,
        execute(saga, "ACTIVATE_ORDER", "ActivateOrder", 1, &order),
    )
    .await?;
    let refunded = demo.execute(Billing, refund(Uuid::new_v4())).await?;
    let again = demo.execute(Billing, refund(Uuid::new_v4())).await?;

    assert_eq!(json!(refunded), json!({"orderStatus": "REFUNDED"}));
    assert_eq!(again, refunded, "already refunded is a no-op");
    let status: String = sqlx::query_scalar("SELECT status FROM billing.orders WHERE saga_id = $1")
        .bind(saga)
        .fetch_one(&demo.db.pool)
        .await?;
    assert_eq!(status, "REFUNDED");
    demo.stop().await
}
