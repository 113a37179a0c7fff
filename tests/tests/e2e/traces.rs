//! Traces with a real OTLP receiver in the test process and sagad and the demo participants as real
//! processes exporting to it: one saga is one trace, from the StartSaga caller's span through every step
//! attempt (sagad's client span of the participant call) and participant handler, and it stays one trace
//! when a replica is killed and another takes the saga over. A sagad that exports nothing still passes
//! the caller's trace on.

use std::time::Duration;

use e2e_tests::definitions::{policy, purchase_plan_as, write_dir};
use e2e_tests::otlp::{OtlpReceiver, ReceivedSpan, SpanKind};
use e2e_tests::{
    object, repo_root, start_participants_env, start_sagad, wait_terminal, watch_until,
};
use saga_proto::contract::TRACEPARENT_HEADER;
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::{SagaStatus, StartSagaRequest};
use saga_testkit::TestDatabase;
use serde_json::json;
use tonic::transport::Channel;

/// The caller's trace and span, as its `traceparent` names them.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// `purchase_plan`'s steps, the participant each one calls and the action it asks for.
const STEPS: [(&str, &str, &str); 5] = [
    ("VALIDATE_PLAN", "billing", "ValidatePlan"),
    ("CREATE_ORDER", "billing", "CreateOrder"),
    ("ALLOCATE_DEVICE", "device", "AllocateDevice"),
    ("PROCESS_PAYMENT", "payment", "Charge"),
    ("ACTIVATE_ORDER", "billing", "ActivateOrder"),
];

/// The `traceparent` the caller sends: its trace and span.
fn caller_traceparent() -> String {
    format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")
}

/// Starts a purchase as a caller whose span is `caller_traceparent()`; returns the saga's id.
async fn start_traced_purchase(client: &mut SagaCoordinatorClient<Channel>) -> String {
    let mut request = tonic::Request::new(purchase(json!({})));
    request.metadata_mut().insert(
        TRACEPARENT_HEADER,
        caller_traceparent().parse().expect("ascii metadata"),
    );
    client
        .start_saga(request)
        .await
        .expect("start")
        .into_inner()
        .saga_id
}

async fn client(addr: &str) -> SagaCoordinatorClient<Channel> {
    SagaCoordinatorClient::connect(format!("http://{addr}"))
        .await
        .expect("connect")
}

fn purchase(faults: serde_json::Value) -> StartSagaRequest {
    StartSagaRequest {
        labels: Default::default(),
        saga_type: "purchase_plan".to_owned(),
        payload: Some(object(
            json!({"userId": "u1", "planId": "pro", "faults": faults}),
        )),
        idempotency_key: String::new(),
        wait: None,
    }
}

/// sagad's span for one attempt of `step`.
fn attempt_of(step: &str, attempt: u32) -> impl Fn(&ReceivedSpan) -> bool {
    let (step, attempt) = (step.to_owned(), attempt.to_string());
    move |span| {
        span.service == "sagad"
            && span.name == "step"
            && span.attr("step") == Some(step.as_str())
            && span.attr("attempt") == Some(attempt.as_str())
    }
}

/// The participant handler's span for one attempt of `step` of saga `saga_id`.
fn handler_of(saga_id: &str, step: &str, attempt: u32) -> impl Fn(&ReceivedSpan) -> bool {
    let (saga_id, step, attempt) = (saga_id.to_owned(), step.to_owned(), attempt.to_string());
    move |span| {
        span.service == "demo-participants"
            && span.name == "step"
            && span.attr("saga_id") == Some(saga_id.as_str())
            && span.attr("step") == Some(step.as_str())
            && span.attr("attempt") == Some(attempt.as_str())
    }
}

/// Waits for the chain of one step attempt under `drive` (sagad's span driving the saga): sagad's
/// attempt span, which is the client span of the participant call, and the participant's handler span;
/// checks their fields, the parent links and that both are in `drive`'s trace. Returns the handler's
/// span.
async fn step_chain(
    receiver: &mut OtlpReceiver,
    drive: &ReceivedSpan,
    saga_id: &str,
    (step, participant, action): (&str, &str, &str),
    attempt: u32,
) -> ReceivedSpan {
    let on_this_replica = attempt_of(step, attempt);
    let sagad_attempt = receiver
        .wait_for(&format!("sagad attempt {attempt} of {step}"), |span| {
            on_this_replica(span) && span.pid == drive.pid
        })
        .await;
    assert_eq!(sagad_attempt.trace_id, drive.trace_id, "{sagad_attempt}");
    assert_eq!(
        sagad_attempt.parent_span_id, drive.span_id,
        "{sagad_attempt}"
    );
    assert_eq!(sagad_attempt.kind, SpanKind::Client, "{sagad_attempt}");
    assert_eq!(sagad_attempt.attr("direction"), Some("execute"));
    assert_eq!(
        sagad_attempt.attr("participant"),
        Some(participant),
        "{sagad_attempt}"
    );
    assert_eq!(
        sagad_attempt.attr("action"),
        Some(action),
        "{sagad_attempt}"
    );

    let handler = receiver
        .wait_for(
            &format!("participant handler of {step}"),
            handler_of(saga_id, step, attempt),
        )
        .await;
    assert_eq!(handler.trace_id, drive.trace_id, "{handler}");
    assert_eq!(handler.kind, SpanKind::Server, "{handler}");
    assert_eq!(
        handler.parent_span_id, sagad_attempt.span_id,
        "the handler continues sagad's attempt: {handler}"
    );
    assert_eq!(handler.attr("action"), Some(action), "{handler}");
    assert_eq!(handler.attr("saga_type"), Some("purchase_plan"));
    assert_eq!(handler.attr("service"), Some(participant));
    handler
}

#[tokio::test]
async fn a_purchase_is_one_trace_from_the_callers_span_through_every_step_and_participant_handler()
{
    let mut receiver = OtlpReceiver::start().await;
    let saga_db = TestDatabase::create("sagad_traces").await;
    let demo_db = TestDatabase::create("sagad_traces_demo").await;
    let (demo, participants) =
        start_participants_env(&demo_db.url(), "warn", &receiver.env()).await;
    let definitions = repo_root().join("definitions");
    let (sagad, addr) =
        start_sagad(&saga_db.url(), &definitions, &participants, &receiver.env()).await;
    let mut client = client(&addr).await;

    let saga_id = start_traced_purchase(&mut client).await;
    let saga = wait_terminal(&mut client, &saga_id).await;
    assert_eq!(saga.status(), SagaStatus::Completed);

    // The RPC, one span, continues the caller's span and names the saga; the saga's work hangs off it.
    let rpc = receiver
        .wait_for("sagad's StartSaga RPC", |span| {
            span.service == "sagad" && span.name == "saga.v1.SagaCoordinator/StartSaga"
        })
        .await;
    assert_eq!(rpc.trace_id, CALLER_TRACE, "{rpc}");
    assert_eq!(rpc.parent_span_id, CALLER_SPAN, "{rpc}");
    assert_eq!(rpc.kind, SpanKind::Server, "{rpc}");
    assert_eq!(rpc.attr("saga_type"), Some("purchase_plan"), "{rpc}");
    assert_eq!(rpc.attr("saga_id"), Some(saga_id.as_str()), "{rpc}");
    let drive = receiver
        .wait_for("the saga's drive", |span| {
            span.name == "saga" && span.attr("saga_id") == Some(saga_id.as_str())
        })
        .await;
    assert_eq!(drive.trace_id, CALLER_TRACE, "{drive}");
    assert_eq!(drive.parent_span_id, rpc.span_id, "{drive}");
    assert_eq!(drive.attr("saga_type"), Some("purchase_plan"));

    for step in STEPS {
        step_chain(&mut receiver, &drive, &saga_id, step, 1).await;
    }
    // sagad's part of the trace is one span for the RPC, one for the drive and one per step attempt.
    let sagad_spans: Vec<String> = receiver
        .received()
        .iter()
        .filter(|span| span.service == "sagad" && span.trace_id == CALLER_TRACE)
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        sagad_spans.len(),
        2 + STEPS.len(),
        "{}",
        sagad_spans.join("\n")
    );
    // No drive or handler span of this saga went to another trace (the test's own WatchSaga calls do:
    // they are other requests).
    for span in receiver.received() {
        if matches!(span.name.as_str(), "saga" | "step")
            && span.attr("saga_id") == Some(saga_id.as_str())
        {
            assert_eq!(span.trace_id, CALLER_TRACE, "{span}");
        }
    }

    assert!(sagad.terminate().await.success());
    assert!(demo.terminate().await.success());
}

#[tokio::test]
async fn a_saga_taken_over_after_its_replica_is_killed_stays_in_its_trace() {
    let mut receiver = OtlpReceiver::start().await;
    let saga_db = TestDatabase::create("sagad_traces_takeover").await;
    let demo_db = TestDatabase::create("sagad_traces_takeover_demo").await;
    let (demo, participants) =
        start_participants_env(&demo_db.url(), "warn", &receiver.env()).await;
    // A failed payment is retried after 3 s, held in memory by the replica driving the saga: the window
    // to kill it in. A dead replica's lease runs out after 1 s and the survivor's scan finds it at once.
    let definitions = write_dir(&[purchase_plan_as("purchase_plan", |d| {
        d.step_timeout = Duration::from_secs(5);
        d.retry = policy(5, 3000, 1.0, 3000, 0.0);
    })]);
    let mut env = receiver.env();
    env.extend([
        ("SAGAD_LEASE", "1s".to_owned()),
        ("SAGAD_HOLD_WAIT", "10s".to_owned()),
        ("SAGAD_RECOVERY_INTERVAL", "200ms".to_owned()),
    ]);
    let (a, a_addr) = start_sagad(&saga_db.url(), definitions.path(), &participants, &env).await;
    let (b, b_addr) = start_sagad(&saga_db.url(), definitions.path(), &participants, &env).await;
    let (a_pid, b_pid) = (i64::from(a.pid()), i64::from(b.pid()));

    let mut a_client = client(&a_addr).await;
    let saga_id = a_client
        .start_saga(purchase(json!({"PROCESS_PAYMENT": "unavailable:1"})))
        .await
        .expect("start")
        .into_inner()
        .saga_id;
    // No traceparent from the caller: A's StartSaga RPC is where the trace starts.
    let start = receiver
        .wait_for("A's StartSaga RPC", |span| {
            span.pid == a_pid && span.name == "saga.v1.SagaCoordinator/StartSaga"
        })
        .await;
    assert_eq!(start.parent_span_id, "", "a root: {start}");
    let first_payment =
        watch_until(&mut a_client, &saga_id, |saga| saga.steps[3].attempts == 1).await;
    assert_eq!(first_payment.status(), SagaStatus::Running);
    a.kill().await;

    let mut b_client = client(&b_addr).await;
    let saga = wait_terminal(&mut b_client, &saga_id).await;
    assert_eq!(saga.status(), SagaStatus::Completed);
    assert_eq!(
        saga.steps[3].attempts, 2,
        "B made the second payment attempt"
    );

    let drive = receiver
        .wait_for("B's drive of the saga", |span| {
            span.pid == b_pid
                && span.name == "saga"
                && span.attr("saga_id") == Some(saga_id.as_str())
        })
        .await;
    assert_eq!(drive.trace_id, start.trace_id, "{drive}");
    assert_eq!(drive.parent_span_id, start.span_id, "{drive}");
    let handler = step_chain(&mut receiver, &drive, &saga_id, STEPS[3], 2).await;
    assert_eq!(handler.trace_id, start.trace_id);
    step_chain(&mut receiver, &drive, &saga_id, STEPS[4], 1).await;

    assert!(b.terminate().await.success());
    assert!(demo.terminate().await.success());
}

#[tokio::test]
async fn a_sagad_that_exports_nothing_passes_the_callers_traceparent_on_to_the_participants() {
    let mut receiver = OtlpReceiver::start().await;
    let saga_db = TestDatabase::create("sagad_traces_passthrough").await;
    let demo_db = TestDatabase::create("sagad_traces_passthrough_demo").await;
    let (demo, participants) =
        start_participants_env(&demo_db.url(), "warn", &receiver.env()).await;
    let definitions = repo_root().join("definitions");
    let (sagad, addr) = start_sagad(&saga_db.url(), &definitions, &participants, &[]).await;
    let mut client = client(&addr).await;

    let saga_id = start_traced_purchase(&mut client).await;
    assert_eq!(
        wait_terminal(&mut client, &saga_id).await.status(),
        SagaStatus::Completed
    );

    let saga_log = sqlx::PgPool::connect(&saga_db.url())
        .await
        .expect("saga log");
    let stored: Option<String> =
        sqlx::query_scalar("SELECT traceparent FROM sagas WHERE id = $1::uuid")
            .bind(&saga_id)
            .fetch_one(&saga_log)
            .await
            .expect("saga row");
    assert_eq!(stored.as_deref(), Some(caller_traceparent().as_str()));
    // With no sagad spans in between, each handler is a direct child of the caller's span.
    for (step, _, _) in STEPS {
        let handler = receiver
            .wait_for(&format!("handler of {step}"), handler_of(&saga_id, step, 1))
            .await;
        assert_eq!(handler.trace_id, CALLER_TRACE, "{handler}");
        assert_eq!(handler.parent_span_id, CALLER_SPAN, "{handler}");
    }
    assert!(
        receiver
            .received()
            .iter()
            .all(|span| span.service != "sagad"),
        "sagad exported nothing"
    );

    saga_log.close().await;
    assert!(sagad.terminate().await.success());
    assert!(demo.terminate().await.success());
}
