//! The lead-to-cash services step by step over gRPC: customer, inventory, sales and notification, through
//! an order that completes, one undone step by step, and their refusals.

use anyhow::Result;
use participants::Service::{self, Customer, Inventory, Notification, Sales};
use serde_json::{Value, json};
use tonic::Code;
use uuid::Uuid;

use crate::support::{Demo, compensate, execute};

/// order_creation's steps: service, step, action.
const FORWARD: [(Service, &str, &str); 6] = [
    (Customer, "VALIDATE_CUSTOMER", "ValidateCustomer"),
    (Inventory, "RESERVE_INVENTORY", "ReserveInventory"),
    (Sales, "CREATE_ORDER", "CreateOrder"),
    (Sales, "PROCESS_PAYMENT", "ProcessPayment"),
    (Customer, "UPDATE_CUSTOMER", "UseCredit"),
    (Notification, "SEND_NOTIFICATION", "NotifyOrderCreated"),
];

/// The compensations, in the order a saga runs them.
const BACKWARD: [(Service, &str, &str); 4] = [
    (Customer, "UPDATE_CUSTOMER", "RestoreCredit"),
    (Sales, "PROCESS_PAYMENT", "RefundPayment"),
    (Sales, "CREATE_ORDER", "CancelOrder"),
    (Inventory, "RESERVE_INVENTORY", "ReleaseReservation"),
];

fn desks(customer: &str, quantity: i64) -> Value {
    json!({"customerId": customer, "sku": "desk", "quantity": quantity, "amountCents": quantity * 29_900})
}

async fn forward(
    demo: &Demo,
    saga: Uuid,
    steps: &[(Service, &str, &str)],
    state: &mut Value,
) -> Result<()> {
    for (service, step, action) in steps {
        let output = demo
            .execute(*service, execute(saga, step, action, 1, state))
            .await?;
        if let Value::Object(state) = state {
            state.extend(output);
        }
    }
    Ok(())
}

/// Everything an order moves: desk (stock, available), the reservation, the order and payment
/// statuses, the customer's used credit and how many notifications the saga queued.
#[derive(Debug, PartialEq)]
struct Rows {
    desks: (i64, i64),
    reservation: Option<String>,
    order: Option<String>,
    payment: Option<String>,
    used_credit: i64,
    notifications: i64,
}

impl Rows {
    async fn of(demo: &Demo, saga: Uuid, customer: &str) -> Result<Self> {
        let pool = &demo.db.pool;
        Ok(Self {
            desks: sqlx::query_as(
                "SELECT stock, available FROM inventory.products WHERE sku = 'desk'",
            )
            .fetch_one(pool)
            .await?,
            reservation: sqlx::query_scalar(
                "SELECT status FROM inventory.reservations WHERE saga_id = $1",
            )
            .bind(saga)
            .fetch_optional(pool)
            .await?,
            order: sqlx::query_scalar("SELECT status FROM sales.orders WHERE saga_id = $1")
                .bind(saga)
                .fetch_optional(pool)
                .await?,
            payment: sqlx::query_scalar(
                "SELECT p.status FROM sales.payments p JOIN sales.orders o ON o.id = p.order_id
                 WHERE o.saga_id = $1",
            )
            .bind(saga)
            .fetch_optional(pool)
            .await?,
            used_credit: sqlx::query_scalar(
                "SELECT used_credit_cents FROM customer.customers WHERE id = $1",
            )
            .bind(customer)
            .fetch_one(pool)
            .await?,
            notifications: sqlx::query_scalar(
                "SELECT count(*) FROM notification.outbox WHERE saga_id = $1",
            )
            .bind(saga)
            .fetch_one(pool)
            .await?,
        })
    }
}

fn some(status: &str) -> Option<String> {
    Some(status.to_owned())
}

#[tokio::test]
async fn an_order_reserves_the_stock_is_paid_uses_the_credit_and_notifies_the_customer()
-> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let mut state = desks("acme", 2);

    forward(&demo, saga, &FORWARD, &mut state).await?;

    assert_eq!(
        Rows::of(&demo, saga, "acme").await?,
        Rows {
            desks: (200, 198),
            reservation: some("HELD"),
            order: some("PAID"),
            payment: some("CAPTURED"),
            used_credit: 59_800,
            notifications: 1,
        }
    );
    let (reservation, expires_in): (Uuid, f64) = sqlx::query_as(
        "SELECT id, extract(epoch FROM expires_at - created_at)::float8
         FROM inventory.reservations WHERE saga_id = $1",
    )
    .bind(saga)
    .fetch_one(&demo.db.pool)
    .await?;
    assert_eq!(expires_in, 300.0, "a reservation is good for 5 minutes");
    let held_by: Uuid = sqlx::query_scalar("SELECT reservation_id FROM sales.orders")
        .fetch_one(&demo.db.pool)
        .await?;
    assert_eq!(held_by, reservation, "the order holds the reservation");
    let (recipient, message): (String, String) =
        sqlx::query_as("SELECT recipient, message FROM notification.outbox")
            .fetch_one(&demo.db.pool)
            .await?;
    assert_eq!(recipient, "acme");
    assert!(
        message.ends_with(": 2 x desk, 59800 cents paid"),
        "{message}"
    );
    demo.stop().await
}

#[tokio::test]
async fn compensating_every_step_in_reverse_gives_back_stock_money_and_credit() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let mut state = desks("acme", 3);
    forward(&demo, saga, &FORWARD[..5], &mut state).await?;

    for (service, step, action) in BACKWARD {
        demo.compensate(service, compensate(saga, step, action, 1, &state))
            .await?;
    }

    assert_eq!(
        Rows::of(&demo, saga, "acme").await?,
        Rows {
            desks: (200, 200),
            reservation: some("RELEASED"),
            order: some("CANCELLED"),
            payment: some("REFUNDED"),
            used_credit: 0,
            notifications: 0,
        }
    );
    demo.stop().await
}

#[tokio::test]
async fn unknown_suspended_or_overextended_customers_are_refused() -> Result<()> {
    let demo = Demo::start().await?;
    let cases = [
        (
            desks("hooli", 1),
            Code::NotFound,
            "customer hooli does not exist",
        ),
        (
            desks("initech", 1),
            Code::FailedPrecondition,
            "customer initech is suspended",
        ),
        (
            desks("globex", 4),
            Code::FailedPrecondition,
            "customer globex has 100000 cents of credit left, 119600 asked",
        ),
    ];
    for (payload, code, message) in cases {
        let status = demo
            .execute(
                Customer,
                execute(Uuid::new_v4(), FORWARD[0].1, FORWARD[0].2, 1, &payload),
            )
            .await
            .expect_err("refused");
        assert_eq!((status.code(), status.message()), (code, message));
    }
    demo.stop().await
}

#[tokio::test]
async fn credit_another_order_used_since_the_validation_refuses_the_update() -> Result<()> {
    let demo = Demo::start().await?;
    // Two orders of 3 desks (89700 cents) each pass globex's 100000 cents of credit alone.
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let (mut first_state, mut second_state) = (desks("globex", 3), desks("globex", 3));
    forward(&demo, first, &FORWARD[..4], &mut first_state).await?;
    forward(&demo, second, &FORWARD[..4], &mut second_state).await?;
    forward(&demo, first, &FORWARD[4..5], &mut first_state).await?;

    let refused = demo
        .execute(
            Customer,
            execute(second, "UPDATE_CUSTOMER", "UseCredit", 1, &second_state),
        )
        .await
        .expect_err("credit used up");

    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        "customer globex has 10300 cents of credit left, 89700 asked"
    );
    assert_eq!(Rows::of(&demo, second, "globex").await?.used_credit, 89_700);
    demo.stop().await
}

#[tokio::test]
async fn stock_that_is_not_there_is_refused_and_nothing_is_held() -> Result<()> {
    let demo = Demo::start().await?;
    let lamps = json!({"customerId": "acme", "sku": "lamp", "quantity": 6, "amountCents": 600});
    let sofas = json!({"customerId": "acme", "sku": "sofa", "quantity": 1, "amountCents": 600});
    for (payload, code, message) in [
        (
            lamps,
            Code::FailedPrecondition,
            "5 units of lamp available, 6 asked",
        ),
        (sofas, Code::NotFound, "product sofa does not exist"),
    ] {
        let status = demo
            .execute(
                Inventory,
                execute(Uuid::new_v4(), FORWARD[1].1, FORWARD[1].2, 1, &payload),
            )
            .await
            .expect_err("refused");
        assert_eq!((status.code(), status.message()), (code, message));
    }
    assert_eq!(
        demo.db
            .count("SELECT count(*) FROM inventory.reservations")
            .await?,
        0
    );
    demo.stop().await
}

#[tokio::test]
async fn an_order_is_not_built_on_a_lapsed_reservation() -> Result<()> {
    let demo = Demo::start().await?;
    let saga = Uuid::new_v4();
    let mut state = desks("acme", 1);
    forward(&demo, saga, &FORWARD[..2], &mut state).await?;
    // Five minutes later: the state still says when the reservation lapses, and that has passed.
    let lapsed = "2000-01-01T00:00:00+00:00";
    state["reservationExpiresAt"] = json!(lapsed);

    let refused = demo
        .execute(Sales, execute(saga, FORWARD[2].1, FORWARD[2].2, 1, &state))
        .await
        .expect_err("lapsed");

    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(
        refused.message(),
        format!(
            "reservation {} expired at {lapsed}",
            state["reservationId"].as_str().expect("reservationId")
        )
    );
    assert_eq!(Rows::of(&demo, saga, "acme").await?.order, None);
    demo.stop().await
}
