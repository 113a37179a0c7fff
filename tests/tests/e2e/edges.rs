//! Correctness at the edges (issue 9) on real processes: a deadline that passes after a dead replica's
//! charge landed, a pivot whose outcome is unknown at the deadline or under an abort, and an operator retry
//! of a step its participant refused — each checked through the participants' rows.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use e2e_tests::definitions::{policy, purchase_plan_as, shipped_as, write_dir};
use e2e_tests::{
    Process, Stack, object, start_participants, start_sagad, state_uuid, wait_terminal, watch_until,
};
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::{
    AbortSagaRequest, FailureReason, RetrySagaRequest, SagaStatus, StartSagaRequest, StepStatus,
};
use saga_testkit::TestDatabase;
use serde_json::json;
use sqlx::PgPool;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

async fn client(addr: &str) -> SagaCoordinatorClient<Channel> {
    SagaCoordinatorClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

async fn replica(
    saga_db: &str,
    definitions: &Path,
    participants: &BTreeMap<String, String>,
) -> (Process, String) {
    // Leases longer than the saga deadline: the saga expires before anyone can take it over.
    let env = [
        ("SAGAD_LEASE", "4s".to_owned()),
        ("SAGAD_RECOVERY_INTERVAL", "200ms".to_owned()),
    ];
    start_sagad(saga_db, definitions, participants, &env).await
}

#[tokio::test]
async fn a_charge_made_for_a_dead_replica_is_refunded_when_its_successor_finds_the_deadline_passed()
{
    let saga_db = TestDatabase::create("sagad_edges_deadline").await;
    let demo_db = TestDatabase::create("sagad_edges_deadline_demo").await;
    let (demo, participants) = start_participants(&demo_db.url(), "warn").await;
    let defs = write_dir(&[purchase_plan_as("purchase_plan", |d| {
        d.timeout = Some(Duration::from_secs(3));
        d.step_timeout = Duration::from_secs(10);
    })]);
    let (a, a_addr) = replica(&saga_db.url(), defs.path(), &participants).await;

    // A calls PROCESS_PAYMENT, which charges at once and answers only 10 s later (a late answer): the
    // charge has landed while A still waits for it.
    let mut a_client = client(&a_addr).await;
    let id = a_client
        .start_saga(StartSagaRequest {
            labels: Default::default(),
            saga_type: "purchase_plan".to_owned(),
            payload: Some(object(json!({
                "userId": "u1", "planId": "pro", "faults": {"PROCESS_PAYMENT": "late:10s"}
            }))),
            idempotency_key: String::new(),
            wait: None,
        })
        .await
        .expect("start")
        .into_inner()
        .saga_id;
    let demo_pool = PgPool::connect(&demo_db.url()).await.expect("demo db");
    let payment_status = || async {
        sqlx::query_scalar::<_, String>("SELECT status FROM payment.payments WHERE saga_id = $1")
            .bind(Uuid::parse_str(&id).expect("uuid"))
            .fetch_optional(&demo_pool)
            .await
            .expect("payment")
    };
    let charged = async {
        while payment_status().await.is_none() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), charged)
        .await
        .expect("the participant charges while A waits for the answer");

    // A dies; B takes the saga over once A's lease is gone, past the 3 s deadline.
    a.kill().await;
    let (b, b_addr) = replica(&saga_db.url(), defs.path(), &participants).await;
    let saga = wait_terminal(&mut client(&b_addr).await, &id).await;
    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.failure_reason(), FailureReason::TimedOut);
    let payment = &saga.steps[3];
    assert_eq!(payment.name, "PROCESS_PAYMENT");
    assert_eq!(payment.status(), StepStatus::Compensated, "{saga:#?}");
    assert!(payment.maybe_applied);
    assert_eq!(
        payment_status().await.as_deref(),
        Some("REFUNDED"),
        "no customer is charged for a cancelled order"
    );
    let order: String = sqlx::query_scalar("SELECT status FROM billing.orders WHERE saga_id = $1")
        .bind(Uuid::parse_str(&id).expect("uuid"))
        .fetch_one(&demo_pool)
        .await
        .expect("order");
    assert_eq!(order, "CANCELLED");
    let status = b.terminate().await;
    assert!(status.success(), "B exited with {status}");
    demo.terminate().await;
}

/// A stack whose definitions are the shipped ones plus `payment_refund` copies with a 1 s deadline.
async fn refund_stack() -> (Stack, tempfile::TempDir) {
    let defs = write_dir(&[
        purchase_plan_as("purchase_plan", |_| {}),
        shipped_as("payment_refund", "payment_refund", |d| {
            d.timeout = Some(Duration::from_secs(1));
            // The pivot's retry comes after the saga deadline.
            d.steps[1].retry = Some(policy(10, 1500, 1.0, 1500, 0.0));
            d.retry = policy(10, 50, 1.0, 50, 0.0);
            for step in &mut d.steps[2..] {
                step.retry = None;
            }
        }),
    ]);
    (Stack::start_in(defs.path()).await, defs)
}

/// Buys the pro plan and returns the payment id and the order id.
async fn purchase(stack: &mut Stack) -> (Uuid, Uuid) {
    let saga = stack
        .run_saga("purchase_plan", json!({"userId": "u1", "planId": "pro"}))
        .await;
    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    (state_uuid(&saga, "paymentId"), state_uuid(&saga, "orderId"))
}

/// The payment's status and the provider's refunds of it.
async fn refund_rows(stack: &Stack, payment: Uuid) -> (String, i64) {
    sqlx::query_as(
        "SELECT p.status, (SELECT count(*) FROM payment.provider_refunds r WHERE r.payment_id = p.id)
         FROM payment.payments p WHERE p.id = $1",
    )
    .bind(payment)
    .fetch_one(&stack.demo_db)
    .await
    .expect("payment")
}

#[tokio::test]
async fn a_pivot_whose_answer_was_lost_is_retried_past_the_saga_deadline_instead_of_compensated_around()
 {
    let (mut stack, _defs) = refund_stack().await;
    let (payment, _) = purchase(&mut stack).await;
    // The provider refunds, the answer is lost; the retry is due after the saga's 1 s deadline.
    let saga = stack
        .run_saga(
            "payment_refund",
            json!({"paymentId": payment, "faults": {"CALL_PROVIDER_REFUND": "apply-then-fail:1"}}),
        )
        .await;
    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    assert_eq!(saga.steps[1].attempts, 2);
    assert_eq!(
        refund_rows(&stack, payment).await,
        ("REFUNDED".to_owned(), 1),
        "the money went back once and the payment says so"
    );
    stack.stop().await;
}

#[tokio::test]
async fn abort_is_refused_while_the_pivot_is_in_flight_and_the_saga_completes() {
    let (mut stack, _defs) = refund_stack().await;
    let (payment, _) = purchase(&mut stack).await;
    let id = stack
        .start_saga(
            "payment_refund",
            json!({"paymentId": payment, "faults": {"CALL_PROVIDER_REFUND": "delay:700ms"}}),
        )
        .await;
    watch_until(&mut stack.client, &id, |saga| {
        saga.current_step == "CALL_PROVIDER_REFUND"
    })
    .await;
    let refused = stack
        .client
        .abort_saga(AbortSagaRequest {
            saga_id: id.clone(),
            reason: "customer changed their mind".to_owned(),
        })
        .await
        .expect_err("abort refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("at its pivot step CALL_PROVIDER_REFUND"),
        "{}",
        refused.message()
    );
    let saga = stack.wait_terminal(&id).await;
    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    assert_eq!(
        refund_rows(&stack, payment).await,
        ("REFUNDED".to_owned(), 1)
    );
    stack.stop().await;
}

#[tokio::test]
async fn retry_runs_a_step_its_participant_refused_once_the_cause_is_fixed() {
    let mut stack = Stack::start().await;
    let (payment, order) = purchase(&mut stack).await;
    // Billing's data drifted: the order is PAID, not ACTIVE, so marking it refunded is refused — after
    // the pivot, so the saga parks.
    let demo_db = stack.demo_db.clone();
    let set_order = |status: &'static str| {
        let pool = demo_db.clone();
        async move {
            sqlx::query("UPDATE billing.orders SET status = $2 WHERE id = $1")
                .bind(order)
                .bind(status)
                .execute(&pool)
                .await
                .expect("order");
        }
    };
    set_order("PAID").await;
    let id = stack
        .start_saga("payment_refund", json!({"paymentId": payment}))
        .await;
    let parked = stack.wait_terminal(&id).await;
    assert_eq!(parked.status(), SagaStatus::Failed, "{parked:#?}");
    assert_eq!(parked.failure_reason(), FailureReason::ForwardFailed);
    assert!(
        parked.failure_message.contains("is paid"),
        "{}",
        parked.failure_message
    );

    // The operator fixes the order and retries: the participant runs the step again instead of
    // replaying its recorded refusal.
    set_order("ACTIVE").await;
    stack
        .client
        .retry_saga(RetrySagaRequest {
            saga_id: id.clone(),
            reason: "order status repaired".to_owned(),
        })
        .await
        .expect("retry");
    let saga = stack.wait_terminal(&id).await;
    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    let step = &saga.steps[3];
    assert_eq!(step.name, "UPDATE_ORDER_STATUS");
    assert_eq!((step.generation, step.attempts), (1, 1));
    let order_status: String =
        sqlx::query_scalar("SELECT status FROM billing.orders WHERE id = $1")
            .bind(order)
            .fetch_one(&stack.demo_db)
            .await
            .expect("order");
    assert_eq!(order_status, "REFUNDED");
    stack.stop().await;
}
