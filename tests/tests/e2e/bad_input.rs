//! Bad input at sagad's edge: each case gets a clear status and nothing reaches the saga log.
//! sagad runs in-process here (`Application::build` on port 0); no participant is needed.

use e2e_tests::in_process::InProcess;
use e2e_tests::object;
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::{
    AbortSagaRequest, GetSagaHistoryRequest, GetStatusRequest, Label, ListSagasRequest,
    ResolveOutcome, ResolveSagaRequest, RetrySagaRequest, SagaStatus, StartSagaRequest,
    WatchSagaRequest,
};
use sagad::Settings;
use serde_json::json;
use tonic::Code;
use tonic::transport::Channel;

/// An in-process sagad and a plaintext client.
struct Coordinator {
    client: SagaCoordinatorClient<Channel>,
    sagad: InProcess,
}

impl Coordinator {
    async fn start(adjust: impl FnOnce(&mut Settings)) -> Self {
        let sagad = InProcess::start(adjust).await;
        let client = SagaCoordinatorClient::connect(format!("http://{}", sagad.addr))
            .await
            .expect("connect");
        Self { client, sagad }
    }

    async fn rows(&self) -> (i64, i64) {
        self.sagad.rows().await
    }

    /// Starts a purchase and returns its id. No participant answers, so it sits RUNNING, retrying
    /// VALIDATE_PLAN (1 s backoff), while a test acts on it.
    async fn running_purchase(&mut self) -> String {
        self.client
            .start_saga(start("purchase_plan", Some(json!({"userId": "u1"}))))
            .await
            .expect("start")
            .into_inner()
            .saga_id
    }

    async fn stop(self) {
        self.sagad.stop().await;
    }
}

fn start(saga_type: &str, payload: Option<serde_json::Value>) -> StartSagaRequest {
    StartSagaRequest {
        labels: Default::default(),
        saga_type: saga_type.to_owned(),
        payload: payload.map(object),
        idempotency_key: String::new(),
        wait: None,
    }
}

#[tokio::test]
async fn bad_start_requests_get_clear_statuses_and_write_nothing() {
    let mut c = Coordinator::start(|_| {}).await;
    let cases = [
        (
            start("refund_everything", Some(json!({"a": 1}))),
            Code::NotFound,
            "purchase_plan",
        ),
        (
            start("", Some(json!({"a": 1}))),
            Code::InvalidArgument,
            "saga_type is required",
        ),
        (
            start("purchase_plan", None),
            Code::InvalidArgument,
            "payload is required",
        ),
        (
            start("purchase_plan", Some(json!({"blob": "x".repeat(2000)}))),
            Code::InvalidArgument,
            "the limit is 1024 bytes",
        ),
        (
            StartSagaRequest {
                idempotency_key: "k".repeat(300),
                wait: None,
                ..start("purchase_plan", Some(json!({"a": 1})))
            },
            Code::InvalidArgument,
            "idempotency_key",
        ),
    ];
    for (request, code, message) in cases {
        let status = c
            .client
            .start_saga(request)
            .await
            .expect_err("must be refused");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(
            status.message().contains(message),
            "{:?} lacks {message:?}",
            status.message()
        );
    }
    assert_eq!(
        c.rows().await,
        (0, 0),
        "bad input never reaches the saga log"
    );
    c.stop().await;
}

#[tokio::test]
async fn malformed_and_unknown_saga_ids_are_told_apart() {
    let mut c = Coordinator::start(|_| {}).await;
    let malformed = c
        .client
        .get_status(GetStatusRequest {
            saga_id: "not-a-uuid".to_owned(),
        })
        .await
        .expect_err("malformed");
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(
        malformed.message().contains("not a UUID"),
        "{}",
        malformed.message()
    );

    let unknown_id = "0193a5f2-7c1e-7d30-9b1a-2f4c6e8a0b1c";
    let unknown = c
        .client
        .get_status(GetStatusRequest {
            saga_id: unknown_id.to_owned(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(
        unknown.message().contains(unknown_id),
        "{}",
        unknown.message()
    );
    c.stop().await;
}

#[tokio::test]
async fn a_repeated_idempotency_key_returns_the_first_saga() {
    let mut c = Coordinator::start(|_| {}).await;
    let request = StartSagaRequest {
        idempotency_key: "order-7".to_owned(),
        wait: None,
        ..start(
            "purchase_plan",
            Some(json!({"userId": "u1", "planId": "pro"})),
        )
    };
    let first = c
        .client
        .start_saga(request.clone())
        .await
        .expect("first")
        .into_inner();
    let second = c
        .client
        .start_saga(request)
        .await
        .expect("second")
        .into_inner();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.saga_id, second.saga_id);
    assert_eq!(c.rows().await.0, 1);
    c.stop().await;
}

#[tokio::test]
async fn beyond_max_in_flight_start_saga_answers_resource_exhausted_without_writing() {
    let mut c = Coordinator::start(|s| s.max_in_flight = 1).await;
    let payload = Some(json!({"userId": "u1", "planId": "pro"}));
    // The first saga cannot reach its participants and stays in flight, waiting to retry.
    c.client
        .start_saga(start("purchase_plan", payload.clone()))
        .await
        .expect("first saga accepted");
    let status = c
        .client
        .start_saga(start("purchase_plan", payload))
        .await
        .expect_err("second saga refused");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("in flight"),
        "{}",
        status.message()
    );
    assert_eq!(c.rows().await.0, 1);
    c.stop().await;
}

#[tokio::test]
async fn operator_rpcs_on_unknown_or_malformed_ids_are_told_apart() {
    let c = Coordinator::start(|_| {}).await;
    let unknown = "0193a5f2-7c1e-7d30-9b1a-2f4c6e8a0b1c";
    for (id, code) in [(unknown, Code::NotFound), ("nope", Code::InvalidArgument)] {
        let mut client = c.client.clone();
        let saga_id = id.to_owned();
        let history = client
            .get_saga_history(GetSagaHistoryRequest {
                saga_id: saga_id.clone(),
            })
            .await
            .expect_err("history");
        let watch = client
            .watch_saga(WatchSagaRequest {
                saga_id: saga_id.clone(),
            })
            .await
            .expect_err("watch");
        let reason = "operator test".to_owned();
        let abort = client
            .abort_saga(AbortSagaRequest {
                saga_id: saga_id.clone(),
                reason: reason.clone(),
            })
            .await
            .expect_err("abort");
        let retry = client
            .retry_saga(RetrySagaRequest {
                saga_id: saga_id.clone(),
                reason: reason.clone(),
            })
            .await
            .expect_err("retry");
        let resolve = client
            .resolve_saga(resolution(&saga_id, "CREATE_ORDER"))
            .await
            .expect_err("resolve");
        for status in [history, watch, abort, retry, resolve] {
            assert_eq!(status.code(), code, "{id}: {status:?}");
            assert!(status.message().contains(id), "{}", status.message());
        }
    }
    assert_eq!(c.rows().await, (0, 0));
    c.stop().await;
}

async fn abort(
    c: &mut Coordinator,
    saga_id: &str,
    reason: &str,
) -> Result<tonic::Response<saga_proto::v1::AbortSagaResponse>, tonic::Status> {
    c.client
        .abort_saga(AbortSagaRequest {
            saga_id: saga_id.to_owned(),
            reason: reason.to_owned(),
        })
        .await
}

/// The saga's revision and event count, to show a refused action changed nothing.
async fn footprint(c: &Coordinator, id: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT revision, (SELECT count(*) FROM saga_events WHERE saga_id = $1::uuid)
         FROM sagas WHERE id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&c.sagad.pool)
    .await
    .expect("saga row")
}

#[tokio::test]
async fn operator_actions_that_do_not_fit_the_saga_are_refused_and_change_nothing() {
    let mut c = Coordinator::start(|_| {}).await;
    let id = c.running_purchase().await;

    let retry = c
        .client
        .retry_saga(RetrySagaRequest {
            saga_id: id.clone(),
            reason: "try again".to_owned(),
        })
        .await
        .expect_err("a running saga cannot be retried");
    assert_eq!(retry.code(), Code::FailedPrecondition);
    assert!(
        retry.message().contains("only a FAILED"),
        "{}",
        retry.message()
    );
    let no_reason = abort(&mut c, &id, "  ")
        .await
        .expect_err("a reason is required");
    assert_eq!(no_reason.code(), Code::InvalidArgument);
    assert!(
        no_reason.message().contains("reason is required"),
        "{}",
        no_reason.message()
    );
    // The executor may have recorded an attempt meanwhile; the refused actions recorded nothing.
    let operator_events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM saga_events
         WHERE saga_id = $1::uuid AND kind IN ('SAGA_ABORTED', 'SAGA_RETRIED')",
    )
    .bind(&id)
    .fetch_one(&c.sagad.pool)
    .await
    .expect("count");
    assert_eq!(operator_events, 0);
    let status: String = sqlx::query_scalar("SELECT status FROM sagas WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&c.sagad.pool)
        .await
        .expect("status");
    assert_eq!(status, "RUNNING");

    // Aborted before anything was done: nothing to undo, so it is compensated at once.
    let aborted = abort(&mut c, &id, "caller gave up")
        .await
        .expect("abort")
        .into_inner()
        .saga
        .expect("saga");
    assert_eq!(aborted.status(), SagaStatus::Compensated);
    let finished = footprint(&c, &id).await;
    let again = abort(&mut c, &id, "twice")
        .await
        .expect_err("a finished saga cannot be aborted");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert!(
        again.message().contains("saga is COMPENSATED"),
        "{}",
        again.message()
    );
    assert_eq!(
        footprint(&c, &id).await,
        finished,
        "the refused abort wrote nothing"
    );
    c.stop().await;
}

#[tokio::test]
async fn list_sagas_pages_through_everything_and_refuses_tampered_tokens() {
    let mut c = Coordinator::start(|_| {}).await;
    let mut started = Vec::new();
    for _ in 0..5 {
        started.push(c.running_purchase().await);
    }
    let request = |page_token: String| ListSagasRequest {
        statuses: vec![SagaStatus::Running.into()],
        saga_type: "purchase_plan".to_owned(),
        page_size: 2,
        page_token,
        ..ListSagasRequest::default()
    };
    let mut listed = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .client
            .list_sagas(request(token))
            .await
            .expect("ListSagas")
            .into_inner();
        pages += 1;
        listed.extend(page.sagas.into_iter().map(|s| s.saga_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
        if pages == 1 {
            // Tampered and mismatched tokens are refused with a message that says what to do.
            let mut tampered = token.clone().into_bytes();
            tampered[5] = if tampered[5] == b'x' { b'y' } else { b'x' };
            let err = c
                .client
                .list_sagas(request(String::from_utf8(tampered).expect("ascii")))
                .await
                .expect_err("tampered token");
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(
                err.message().contains("not a token this server issued"),
                "{}",
                err.message()
            );
            let other_filter = ListSagasRequest {
                page_token: token.clone(),
                page_size: 2,
                ..ListSagasRequest::default()
            };
            let err = c
                .client
                .list_sagas(other_filter)
                .await
                .expect_err("other filter");
            assert_eq!(err.code(), Code::InvalidArgument);
            assert!(
                err.message().contains("different filters"),
                "{}",
                err.message()
            );
        }
    }
    assert_eq!(pages, 3);
    started.reverse();
    assert_eq!(listed, started, "newest first, each saga once");

    for (bad, expected) in [
        (
            ListSagasRequest {
                page_size: 5000,
                ..ListSagasRequest::default()
            },
            "page_size",
        ),
        (
            ListSagasRequest {
                statuses: vec![99],
                ..ListSagasRequest::default()
            },
            "not a saga status",
        ),
        (
            ListSagasRequest {
                created_after: Some(prost_types::Timestamp {
                    seconds: 2_000_000_000,
                    nanos: 0,
                }),
                created_before: Some(prost_types::Timestamp {
                    seconds: 1_000_000_000,
                    nanos: 0,
                }),
                ..ListSagasRequest::default()
            },
            "created_after must be earlier",
        ),
    ] {
        let err = c.client.list_sagas(bad).await.expect_err("bad request");
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains(expected), "{}", err.message());
    }
    c.stop().await;
}

/// A `ResolveSaga` of `step` as compensated, with a note and a reason.
fn resolution(saga_id: &str, step: &str) -> ResolveSagaRequest {
    ResolveSagaRequest {
        saga_id: saga_id.to_owned(),
        step: step.to_owned(),
        outcome: ResolveOutcome::Compensated.into(),
        note: "cancelled in the billing console".to_owned(),
        reason: "no API for it".to_owned(),
    }
}

#[tokio::test]
async fn resolve_saga_is_checked_at_the_edge_and_refused_unless_the_saga_is_parked() {
    let mut c = Coordinator::start(|_| {}).await;
    let id = c.running_purchase().await;
    let base = resolution(&id, "VALIDATE_PLAN");
    let cases = [
        (
            ResolveSagaRequest {
                step: String::new(),
                ..base.clone()
            },
            "step is required",
        ),
        (
            ResolveSagaRequest {
                step: "S".repeat(200),
                ..base.clone()
            },
            "step is 200 bytes",
        ),
        (
            ResolveSagaRequest {
                outcome: ResolveOutcome::Unspecified.into(),
                ..base.clone()
            },
            "outcome must be RESOLVE_OUTCOME_COMPENSATED",
        ),
        (
            ResolveSagaRequest {
                outcome: 7,
                ..base.clone()
            },
            "outcome must be",
        ),
        (
            ResolveSagaRequest {
                note: " ".to_owned(),
                ..base.clone()
            },
            "note is required: say what was done by hand",
        ),
        (
            ResolveSagaRequest {
                note: "x".repeat(3000),
                ..base.clone()
            },
            "note is 3000 bytes; the limit is 2048",
        ),
        (
            ResolveSagaRequest {
                note: "a\u{0}b".to_owned(),
                ..base.clone()
            },
            "note contains a NUL",
        ),
        (
            ResolveSagaRequest {
                reason: String::new(),
                ..base.clone()
            },
            "reason is required",
        ),
    ];
    for (request, expected) in cases {
        let status = c.client.resolve_saga(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(expected), "{}", status.message());
    }
    let running = c
        .client
        .resolve_saga(base)
        .await
        .expect_err("a running saga cannot be resolved");
    assert_eq!(running.code(), Code::FailedPrecondition);
    assert!(
        running
            .message()
            .contains("saga is RUNNING; only a FAILED (parked) saga can be resolved"),
        "{}",
        running.message()
    );
    let resolved: i64 =
        sqlx::query_scalar("SELECT count(*) FROM saga_events WHERE kind = 'STEP_RESOLVED'")
            .fetch_one(&c.sagad.pool)
            .await
            .expect("count");
    assert_eq!(resolved, 0, "nothing was recorded");
    c.stop().await;
}

fn labelled(pairs: &[(&str, &str)]) -> StartSagaRequest {
    StartSagaRequest {
        labels: pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..start("purchase_plan", Some(json!({"userId": "u1"})))
    }
}

fn by_label(key: &str, value: &str, page_token: String) -> ListSagasRequest {
    ListSagasRequest {
        label: Some(Label {
            key: key.to_owned(),
            value: value.to_owned(),
        }),
        page_size: 1,
        page_token,
        ..ListSagasRequest::default()
    }
}

#[tokio::test]
async fn labels_are_bounded_at_the_edge_shown_with_the_saga_and_filter_a_listing() {
    let mut c = Coordinator::start(|_| {}).await;
    let too_many: Vec<(String, String)> =
        (0..17).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    let too_many: Vec<(&str, &str)> = too_many
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let long_value = "v".repeat(300);
    for (pairs, expected) in [
        (too_many.as_slice(), "17 labels; the limit is 16"),
        (&[("order id", "1")][..], "labels: key \"order id\" must be"),
        (&[("orderId", "")][..], "labels: orderId needs a value"),
        (
            &[("orderId", long_value.as_str())][..],
            "the value of orderId is 300 bytes",
        ),
        (
            &[("orderId", "1\u{0}")][..],
            "labels.orderId contains a NUL",
        ),
    ] {
        let status = c
            .client
            .start_saga(labelled(pairs))
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(expected), "{}", status.message());
    }
    assert_eq!(c.rows().await, (0, 0), "refused labels write nothing");

    let mut ids = Vec::new();
    for (order, region) in [("123", "eu"), ("124", "eu"), ("125", "us")] {
        let started = c
            .client
            .start_saga(labelled(&[("orderId", order), ("region", region)]))
            .await
            .expect("start")
            .into_inner();
        ids.push(started.saga_id);
    }
    let saga = c
        .client
        .get_status(GetStatusRequest {
            saga_id: ids[0].clone(),
        })
        .await
        .expect("GetStatus")
        .into_inner()
        .saga
        .expect("saga");
    assert_eq!(saga.labels.get("orderId").map(String::as_str), Some("123"));
    assert_eq!(saga.labels.get("region").map(String::as_str), Some("eu"));

    let found = c
        .client
        .list_sagas(by_label("orderId", "124", String::new()))
        .await
        .expect("ListSagas")
        .into_inner();
    assert_eq!(found.sagas.len(), 1);
    assert_eq!(found.sagas[0].saga_id, ids[1]);
    assert_eq!(
        found.sagas[0].labels.get("region").map(String::as_str),
        Some("eu")
    );
    assert!(found.next_page_token.is_empty());

    // region=eu one per page: 124, then 123; the token is bound to the label.
    let first = c
        .client
        .list_sagas(by_label("region", "eu", String::new()))
        .await
        .expect("page 1")
        .into_inner();
    assert_eq!(first.sagas[0].saga_id, ids[1]);
    for other in [
        by_label("region", "us", first.next_page_token.clone()),
        ListSagasRequest {
            label: None,
            ..by_label("region", "eu", first.next_page_token.clone())
        },
    ] {
        let err = c.client.list_sagas(other).await.expect_err("other filter");
        assert!(
            err.message().contains("different filters"),
            "{}",
            err.message()
        );
    }
    let second = c
        .client
        .list_sagas(by_label("region", "eu", first.next_page_token))
        .await
        .expect("page 2")
        .into_inner();
    assert_eq!(second.sagas[0].saga_id, ids[0]);
    assert!(second.next_page_token.is_empty());

    let bad = c
        .client
        .list_sagas(by_label("region", "", String::new()))
        .await
        .expect_err("empty value");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(bad.message(), "label: region needs a value");
    c.stop().await;
}
