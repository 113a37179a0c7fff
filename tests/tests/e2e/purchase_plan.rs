//! The purchase_plan saga end to end: real `sagad` and `demo-participants` processes, real gRPC, real
//! PostgreSQL, checked through the API and through the participants' own tables.

use std::time::Duration;

use e2e_tests::{Stack, saga_uuid, step_statuses};
use saga_proto::struct_to_json;
use saga_proto::v1::{FailureReason, SagaStatus, StepStatus};
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

#[tokio::test]
async fn a_purchase_completes_with_an_active_order_an_allocated_device_and_a_successful_payment() {
    let mut stack = Stack::start().await;
    let saga_id = stack
        .start_saga("purchase_plan", json!({"userId": "u1", "planId": "pro"}))
        .await;
    let saga = stack.wait_terminal(&saga_id).await;

    assert_eq!(saga.status(), SagaStatus::Completed, "{saga:#?}");
    assert_eq!(saga.failure_reason(), FailureReason::Unspecified);
    assert_eq!(saga.definition_version, 1);
    assert_eq!(saga.steps.len(), 5);
    assert_eq!(step_statuses(&saga), [StepStatus::Succeeded; 5]);
    for step in &saga.steps {
        assert_eq!(step.attempts, 1, "{}", step.name);
        let (started, finished) = (
            step.started_at.expect("started"),
            step.finished_at.expect("finished"),
        );
        assert!(
            (finished.seconds, finished.nanos) >= (started.seconds, started.nanos),
            "{}",
            step.name
        );
    }
    assert!(saga.finished_at.is_some());
    assert!(saga.current_step.is_empty());

    // Every step's output was merged into the state, and later steps used earlier outputs.
    let state = struct_to_json(saga.state.clone().expect("state"));
    assert_eq!(state["userId"], "u1");
    assert_eq!(state["amountCents"], 2999);
    let order_id: Uuid = state["orderId"]
        .as_str()
        .expect("orderId")
        .parse()
        .expect("uuid");
    let device_id: Uuid = state["deviceId"]
        .as_str()
        .expect("deviceId")
        .parse()
        .expect("uuid");
    let payment_id: Uuid = state["paymentId"]
        .as_str()
        .expect("paymentId")
        .parse()
        .expect("uuid");

    let saga_uuid: Uuid = saga_id.parse().expect("uuid");
    let order =
        sqlx::query("SELECT status, amount_cents, saga_id FROM billing.orders WHERE id = $1")
            .bind(order_id)
            .fetch_one(&stack.demo_db)
            .await
            .expect("order row");
    assert_eq!(order.get::<String, _>("status"), "ACTIVE");
    assert_eq!(order.get::<i64, _>("amount_cents"), 2999);
    assert_eq!(order.get::<Uuid, _>("saga_id"), saga_uuid);
    let device: String = sqlx::query_scalar("SELECT status FROM device.devices WHERE id = $1")
        .bind(device_id)
        .fetch_one(&stack.demo_db)
        .await
        .expect("device row");
    assert_eq!(device, "ALLOCATED");
    let payment = sqlx::query("SELECT status, amount_cents FROM payment.payments WHERE id = $1")
        .bind(payment_id)
        .fetch_one(&stack.demo_db)
        .await
        .expect("payment row");
    assert_eq!(payment.get::<String, _>("status"), "SUCCESS");
    assert_eq!(payment.get::<i64, _>("amount_cents"), 2999);

    // The saga log: one commit per step outcome after the start (revision counts them), and the history.
    let revision: i64 = sqlx::query_scalar("SELECT revision FROM sagas WHERE id = $1")
        .bind(saga_uuid)
        .fetch_one(&stack.saga_db)
        .await
        .expect("saga row");
    assert_eq!(revision, 5);
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM saga_events WHERE saga_id = $1 ORDER BY id")
            .bind(saga_uuid)
            .fetch_all(&stack.saga_db)
            .await
            .expect("events");
    assert_eq!(
        kinds,
        [
            "SAGA_STARTED",
            "STEP_SUCCEEDED",
            "STEP_SUCCEEDED",
            "STEP_SUCCEEDED",
            "STEP_SUCCEEDED",
            "STEP_SUCCEEDED",
            "SAGA_COMPLETED"
        ]
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_refused_device_allocation_cancels_the_order_and_never_charges() {
    let mut stack = Stack::start().await;
    let saga_id = stack
        .start_saga(
            "purchase_plan",
            json!({"userId": "u2", "planId": "basic", "faults": {"ALLOCATE_DEVICE": "refuse"}}),
        )
        .await;
    let saga = stack.wait_terminal(&saga_id).await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.failure_reason(), FailureReason::StepFailed);
    assert!(
        saga.failure_message.contains("ALLOCATE_DEVICE"),
        "{}",
        saga.failure_message
    );
    assert_eq!(
        step_statuses(&saga),
        [
            StepStatus::Succeeded, // VALIDATE_PLAN has nothing to undo
            StepStatus::Compensated,
            StepStatus::Failed,
            StepStatus::Skipped,
            StepStatus::Skipped,
        ]
    );
    assert_eq!(saga.steps[1].compensation_attempts, 1);
    assert_eq!(saga.steps[2].attempts, 1, "a refusal is not retried");
    assert!(
        saga.steps[2].last_error.contains("FAILED_PRECONDITION"),
        "{}",
        saga.steps[2].last_error
    );
    assert_eq!(
        (saga.steps[3].attempts, saga.steps[4].attempts),
        (0, 0),
        "later steps never called"
    );

    let saga_uuid: Uuid = saga_id.parse().expect("uuid");
    let order: String = sqlx::query_scalar("SELECT status FROM billing.orders WHERE saga_id = $1")
        .bind(saga_uuid)
        .fetch_one(&stack.demo_db)
        .await
        .expect("order row");
    assert_eq!(order, "CANCELLED");
    let devices: i64 = sqlx::query_scalar("SELECT count(*) FROM device.devices WHERE saga_id = $1")
        .bind(saga_uuid)
        .fetch_one(&stack.demo_db)
        .await
        .expect("count");
    let payments: i64 =
        sqlx::query_scalar("SELECT count(*) FROM payment.payments WHERE saga_id = $1")
            .bind(saga_uuid)
            .fetch_one(&stack.demo_db)
            .await
            .expect("count");
    assert_eq!((devices, payments), (0, 0));
    // The participants' own record of every call they received (their idempotency barrier): nothing
    // for the steps after the refusal.
    let later_calls: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM saga_barrier
         WHERE saga_id = $1 AND step IN ('PROCESS_PAYMENT', 'ACTIVATE_ORDER')",
    )
    .bind(saga_uuid)
    .fetch_one(&stack.demo_db)
    .await
    .expect("count");
    assert_eq!(later_calls, 0);
    stack.stop().await;
}

/// The purchase's rows: order status, device statuses, (payment status, provider-refunded cents).
async fn purchase_rows(
    stack: &Stack,
    saga: &saga_proto::v1::Saga,
) -> (Option<String>, Vec<String>, Vec<(String, i64)>) {
    let saga_id = saga_uuid(saga);
    let order = sqlx::query_scalar("SELECT status FROM billing.orders WHERE saga_id = $1")
        .bind(saga_id)
        .fetch_optional(&stack.demo_db)
        .await
        .expect("order");
    let devices = sqlx::query_scalar("SELECT status FROM device.devices WHERE saga_id = $1")
        .bind(saga_id)
        .fetch_all(&stack.demo_db)
        .await
        .expect("devices");
    let payments = sqlx::query_as(
        "SELECT p.status, coalesce(r.amount_cents, 0)::bigint FROM payment.payments p
         LEFT JOIN payment.provider_refunds r ON r.payment_id = p.id WHERE p.saga_id = $1",
    )
    .bind(saga_id)
    .fetch_all(&stack.demo_db)
    .await
    .expect("payments");
    (order, devices, payments)
}

#[tokio::test]
async fn an_order_that_cannot_be_created_leaves_nothing_behind() {
    let mut stack = Stack::start().await;

    let saga = stack
        .run_saga(
            "purchase_plan",
            json!({"userId": "u3", "planId": "pro", "faults": {"CREATE_ORDER": "refuse"}}),
        )
        .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.steps[1].status(), StepStatus::Failed);
    assert_eq!(purchase_rows(&stack, &saga).await, (None, vec![], vec![]));
    stack.stop().await;
}

#[tokio::test]
async fn a_refused_payment_releases_the_device_and_cancels_the_order() {
    let mut stack = Stack::start().await;

    let saga = stack
        .run_saga(
            "purchase_plan",
            json!({"userId": "u4", "planId": "pro", "faults": {"PROCESS_PAYMENT": "refuse"}}),
        )
        .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(
        step_statuses(&saga),
        [
            StepStatus::Succeeded,
            StepStatus::Compensated,
            StepStatus::Compensated,
            StepStatus::Failed,
            StepStatus::Skipped,
        ]
    );
    assert_eq!(
        purchase_rows(&stack, &saga).await,
        (
            Some("CANCELLED".to_owned()),
            vec!["RELEASED".to_owned()],
            vec![]
        )
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_charge_whose_answers_are_all_lost_is_refunded_by_the_provider() {
    let mut stack = Stack::start_fast(Duration::from_secs(2)).await;

    // The money was taken on the first attempt; the saga never heard so. After its retries it
    // compensates the charge too, and the refund gives the money back exactly once.
    let saga = stack
        .run_saga(
            "purchase_plan",
            json!({"userId": "u5", "planId": "pro", "faults": {"PROCESS_PAYMENT": "apply-then-fail"}}),
        )
        .await;

    assert_eq!(saga.status(), SagaStatus::Compensated, "{saga:#?}");
    assert_eq!(saga.steps[3].status(), StepStatus::Compensated);
    assert_eq!(
        purchase_rows(&stack, &saga).await,
        (
            Some("CANCELLED".to_owned()),
            vec!["RELEASED".to_owned()],
            vec![("REFUNDED".to_owned(), 2999)]
        )
    );
    stack.stop().await;
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_the_coordinator_and_health_reports_serving() {
    use tokio_stream::StreamExt;
    use tonic_reflection::pb::{v1, v1alpha};

    let stack = Stack::start().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", stack.sagad_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let Some(Ok(v1::ServerReflectionResponse {
        message_response:
            Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)),
        ..
    })) = responses.next().await
    else {
        panic!("no list_services answer")
    };
    let mut names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
            "saga.v1.SagaCoordinator",
        ],
        "exactly the services sagad answers (not SagaParticipant, which it only calls)"
    );

    // What grpcurl does next: fetch the file defining the service, then each import by name. Both must
    // resolve, or `grpcurl -d '{"payload": {...}}'` cannot encode the Struct.
    use v1::server_reflection_request::MessageRequest;
    let requests = [
        MessageRequest::FileContainingSymbol("saga.v1.SagaCoordinator".to_owned()),
        MessageRequest::FileByFilename("google/protobuf/struct.proto".to_owned()),
        MessageRequest::FileByFilename("google/protobuf/timestamp.proto".to_owned()),
    ]
    .map(|message_request| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message_request),
    });
    let answers: Vec<_> = client
        .server_reflection_info(tokio_stream::iter(requests))
        .await
        .expect("reflection v1")
        .into_inner()
        .collect()
        .await;
    assert_eq!(answers.len(), 3);
    for answer in answers {
        match answer.expect("answer").message_response {
            Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(
                files,
            )) => {
                assert!(!files.file_descriptor_proto.is_empty());
            }
            other => panic!("expected a file descriptor, got {other:?}"),
        }
    }

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection v1alpha")
        .into_inner();
    let Some(Ok(v1alpha::ServerReflectionResponse {
        message_response:
            Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)),
        ..
    })) = responses.next().await
    else {
        panic!("no v1alpha list_services answer")
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "saga.v1.SagaCoordinator")
    );

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "saga.v1.SagaCoordinator".to_owned(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status();
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    stack.stop().await;
}
