//! Step preconditions end to end: a step whose needed state keys are missing is not called, the saga
//! fails with STEP_FAILED naming the keys and compensates what ran; a need nothing provides is a warning
//! when sagad loads the definition, not an error.

use std::process::Stdio;
use std::time::Duration;

use e2e_tests::definitions::{shipped_as, write_dir};
use e2e_tests::{Stack, binary, isolate, saga_uuid, step_statuses};
use saga_proto::v1::{FailureReason, SagaStatus, StepStatus};
use saga_testkit::TestDatabase;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// order_creation, whose PROCESS_PAYMENT also needs a `couponCode` that no step provides.
const COUPON_ORDER: &str = "order_with_coupon";

fn definitions() -> tempfile::TempDir {
    write_dir(&[shipped_as("order_creation", COUPON_ORDER, |definition| {
        definition.steps[3].needs.push("couponCode".to_owned());
    })])
}

#[tokio::test]
async fn a_step_whose_needs_are_missing_is_not_called_and_what_ran_is_compensated() {
    let dir = definitions();
    let mut stack = Stack::start_in(dir.path()).await;
    let order = json!({"customerId": "acme", "sku": "desk", "quantity": 1, "amountCents": 29_900});

    let missing = stack.run_saga(COUPON_ORDER, order.clone()).await;
    let mut null = order.clone();
    null["couponCode"] = json!(null);
    let null = stack.run_saga(COUPON_ORDER, null).await;

    for saga in [&missing, &null] {
        assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
        assert_eq!(saga.failure_reason(), FailureReason::StepFailed);
        assert_eq!(
            saga.failure_message,
            "PROCESS_PAYMENT refused: not called: the saga state lacks the keys the step needs: \
             couponCode"
        );
        assert_eq!(
            step_statuses(saga),
            [
                StepStatus::Succeeded,
                StepStatus::Compensated,
                StepStatus::Compensated,
                StepStatus::Failed,
                StepStatus::Skipped,
                StepStatus::Skipped,
            ]
        );
        assert_eq!(saga.steps[3].attempts, 1);
        // The sales service never saw the step: no barrier row, no payment; the order is cancelled
        // and the desk released.
        let (payment_calls, payments, order, reservation): (i64, i64, String, String) =
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM saga_barrier
                         WHERE saga_id = $1 AND step = 'PROCESS_PAYMENT'),
                        (SELECT count(*) FROM sales.payments p JOIN sales.orders o ON o.id = p.order_id
                         WHERE o.saga_id = $1),
                        (SELECT status FROM sales.orders WHERE saga_id = $1),
                        (SELECT status FROM inventory.reservations WHERE saga_id = $1)",
            )
            .bind(saga_uuid(saga))
            .fetch_one(&stack.demo_db)
            .await
            .expect("rows");
        assert_eq!(
            (
                payment_calls,
                payments,
                order.as_str(),
                reservation.as_str()
            ),
            (0, 0, "CANCELLED", "RELEASED")
        );
    }

    let mut with_coupon = order;
    with_coupon["couponCode"] = json!("SPRING");
    let saga = stack.run_saga(COUPON_ORDER, with_coupon).await;
    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    stack.stop().await;
}

#[tokio::test]
async fn a_need_nothing_provides_is_a_warning_at_load_and_sagad_still_serves() {
    let dir = definitions();
    let database = TestDatabase::create("sagad_e2e").await;
    let mut command = tokio::process::Command::new(binary("sagad"));
    isolate(command.as_std_mut());
    let mut sagad = command
        .env("SAGAD_DATABASE_URL", database.url())
        .env("SAGAD_GRPC_ADDR", "127.0.0.1:0")
        .env("SAGAD_DEFINITIONS_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start sagad");
    let mut stdout = BufReader::new(sagad.stdout.take().expect("stdout")).lines();
    let listening = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
        .await
        .expect("sagad answers in time")
        .expect("read stdout")
        .expect("a readiness line");
    assert!(listening.starts_with("sagad listening on "), "{listening}");

    sagad.start_kill().expect("SIGKILL");
    sagad.wait().await.expect("wait");
    let mut stderr = String::new();
    sagad
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .await
        .expect("read stderr");
    let warning = stderr
        .lines()
        .find(|line| line.contains("neither the input nor an earlier step provides"))
        .unwrap_or_else(|| panic!("no warning in {stderr}"));
    for part in ["WARN", COUPON_ORDER, "PROCESS_PAYMENT", "couponCode"] {
        assert!(warning.contains(part), "{warning:?} lacks {part:?}");
    }
}
