//! Input that can never be written, and input that is too big or too deep, is refused at sagad's edge
//! with a status a client can act on (never "retry later", never `INTERNAL` or `OUT_OF_RANGE`), writes
//! nothing, and is not echoed back at length; and one principal cannot hold every `WatchSaga` stream.

use std::time::Duration;

use e2e_tests::in_process::InProcess;
use e2e_tests::object;
use prost_types::value::Kind;
use prost_types::{Struct, Value};
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::{
    AbortSagaRequest, GetStatusRequest, ListSagasRequest, StartSagaRequest, WatchSagaRequest,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

async fn client(sagad: &InProcess) -> SagaCoordinatorClient<Channel> {
    SagaCoordinatorClient::connect(format!("http://{}", sagad.addr))
        .await
        .expect("connect")
        .max_encoding_message_size(usize::MAX)
}

fn start(payload: Struct) -> StartSagaRequest {
    StartSagaRequest {
        labels: Default::default(),
        saga_type: "purchase_plan".to_owned(),
        payload: Some(payload),
        idempotency_key: String::new(),
        wait: None,
    }
}

fn assert_refused(result: Result<impl std::fmt::Debug, Status>, code: Code, needle: &str) {
    let status = result.expect_err("must be refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(needle),
        "{:?} lacks {needle:?}",
        status.message()
    );
}

#[tokio::test]
async fn a_nul_character_anywhere_is_invalid_argument_not_retry_later() {
    let sagad = InProcess::start(|_| {}).await;
    let mut c = client(&sagad).await;
    let cases = [
        (
            start(object(json!({"userId": "u\u{0}1"}))),
            "payload.userId",
        ),
        (
            start(object(json!({"nested": {"k\u{0}": 1}}))),
            "a key of payload.nested",
        ),
        (
            StartSagaRequest {
                idempotency_key: "order\u{0}42".to_owned(),
                ..start(object(json!({"userId": "u1"})))
            },
            "idempotency_key",
        ),
    ];
    for (request, needle) in cases {
        assert_refused(c.start_saga(request).await, Code::InvalidArgument, needle);
    }
    let listed = c
        .list_sagas(ListSagasRequest {
            saga_type: "purchase\u{0}plan".to_owned(),
            ..ListSagasRequest::default()
        })
        .await;
    assert_refused(listed, Code::InvalidArgument, "saga_type");
    assert_eq!(sagad.rows().await, (0, 0), "nothing written");

    let saga = c
        .start_saga(start(object(json!({"userId": "u1"}))))
        .await
        .expect("a clean saga")
        .into_inner();
    let abort = c
        .abort_saga(AbortSagaRequest {
            saga_id: saga.saga_id,
            reason: "because\u{0}".to_owned(),
        })
        .await;
    assert_refused(abort, Code::InvalidArgument, "reason");
    let aborted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM saga_events WHERE kind = 'SAGA_ABORTED'")
            .fetch_one(&sagad.pool)
            .await
            .expect("count");
    assert_eq!(aborted, 0, "the refused abort wrote nothing");
    sagad.stop().await;
}

/// `{"a": {"a": … {"a": 1}}}`, `depth` objects deep.
fn nested(depth: usize) -> Struct {
    let mut value = Value {
        kind: Some(Kind::NumberValue(1.0)),
    };
    for _ in 0..depth {
        value = Value {
            kind: Some(Kind::StructValue(Struct {
                fields: [("a".to_owned(), value)].into(),
            })),
        };
    }
    match value.kind {
        Some(Kind::StructValue(s)) => s,
        _ => unreachable!("depth is at least one"),
    }
}

#[tokio::test]
async fn a_payload_nested_past_protobufs_limit_is_invalid_argument_naming_the_limit() {
    let sagad = InProcess::start(|_| {}).await;
    let mut c = client(&sagad).await;
    let too_deep = c.start_saga(start(nested(200))).await;
    assert_refused(too_deep, Code::InvalidArgument, "decoding limit of 100");
    assert_eq!(sagad.rows().await, (0, 0));
    c.start_saga(start(nested(20)))
        .await
        .expect("a reasonably nested payload is fine");
    sagad.stop().await;
}

#[tokio::test]
async fn an_oversized_message_is_resource_exhausted_not_out_of_range_and_writes_nothing() {
    let sagad = InProcess::start(|_| {}).await;
    let mut c = client(&sagad).await;
    // Over max_payload_bytes but within the message limit: the payload limit, named.
    let over_payload = c
        .start_saga(start(object(json!({"blob": "x".repeat(4_000)}))))
        .await;
    assert_refused(
        over_payload,
        Code::InvalidArgument,
        "the limit is 1024 bytes",
    );
    // Far over the message limit, and over tonic's own 4 MiB default too.
    for size in [100_000, 5_000_000] {
        let huge = c
            .start_saga(start(object(json!({"blob": "x".repeat(size)}))))
            .await;
        assert_refused(huge, Code::ResourceExhausted, "request message is");
    }
    assert_eq!(sagad.rows().await, (0, 0));
    c.start_saga(start(object(json!({"userId": "u1"}))))
        .await
        .expect("still serving");
    sagad.stop().await;
}

#[tokio::test]
async fn error_messages_echo_at_most_a_few_hundred_bytes_of_the_input() {
    let sagad = InProcess::start(|s| s.max_payload_bytes = 64 * 1024).await;
    let mut c = client(&sagad).await;
    let long = "z".repeat(20_000);
    let errors = [
        c.get_status(GetStatusRequest {
            saga_id: long.clone(),
        })
        .await
        .expect_err("malformed id"),
        c.start_saga(StartSagaRequest {
            saga_type: long.clone(),
            ..start(object(json!({"a": 1})))
        })
        .await
        .expect_err("over-long type"),
        c.start_saga(start(object(json!({ long.clone(): "\u{0}" }))))
            .await
            .expect_err("nul under a long key"),
    ];
    for status in errors {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(
            status.message().len() < 300,
            "{} bytes",
            status.message().len()
        );
    }
    sagad.stop().await;
}

#[tokio::test]
async fn one_principal_cannot_hold_more_watch_streams_than_its_quota() {
    let dir = tempfile::tempdir().expect("dir");
    let hash = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    let tokens = dir.path().join("principals.toml");
    std::fs::write(
        &tokens,
        format!(
            "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{}\"\nroles = [\"client\"]\n\
             [[principal]]\nname = \"b\"\ntoken_sha256 = \"{}\"\nroles = [\"client\"]\n",
            hash("token-a"),
            hash("token-b")
        ),
    )
    .expect("write");
    let sagad = InProcess::start(|s| {
        s.auth.tokens_file = Some(tokens.clone());
        s.limits.max_watches_per_principal = 2;
    })
    .await;
    let mut c = client(&sagad).await;
    let as_token = |token: &str, saga_id: &str| {
        let mut request = Request::new(WatchSagaRequest {
            saga_id: saga_id.to_owned(),
        });
        let bearer = format!("Bearer {token}").parse().expect("ascii");
        request.metadata_mut().insert("authorization", bearer);
        request
    };
    let mut start = Request::new(start(object(json!({"userId": "u1"}))));
    let bearer = "Bearer token-a".parse().expect("ascii");
    start.metadata_mut().insert("authorization", bearer);
    // No participant answers, so the saga stays running and its watches stay open.
    let saga_id = c
        .start_saga(start)
        .await
        .expect("start")
        .into_inner()
        .saga_id;

    let first = c
        .watch_saga(as_token("token-a", &saga_id))
        .await
        .expect("1st");
    let _second = c
        .watch_saga(as_token("token-a", &saga_id))
        .await
        .expect("2nd");
    let third = c.watch_saga(as_token("token-a", &saga_id)).await;
    assert_refused(third, Code::ResourceExhausted, "max_watches_per_principal");
    let _other = c
        .watch_saga(as_token("token-b", &saga_id))
        .await
        .expect("another principal has its own quota");

    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    // The server learns of the closed stream asynchronously (RST_STREAM).
    while c.watch_saga(as_token("token-a", &saga_id)).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sagad.stop().await;
}
