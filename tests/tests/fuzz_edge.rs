//! Fuzzed `StartSaga` requests against a real sagad (in-process, real socket, real PostgreSQL): any
//! request gets one of the statuses a caller can act on — never `INTERNAL`, `UNKNOWN`, `UNAVAILABLE` or
//! `OUT_OF_RANGE` —, a saga is written only when one is accepted, and sagad keeps serving.
//!
//! CI runs proptest's default number of cases; `PROPTEST_CASES=5000 cargo test -p e2e-tests --test
//! fuzz_edge` runs longer.

use e2e_tests::in_process::InProcess;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use saga_proto::v1::StartSagaRequest;
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,16}",
        Just(String::new()),
        Just("a\u{0}b".to_owned()),
        (0usize..3000).prop_map(|n| "x".repeat(n)),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Kind::NullValue(0)),
        any::<bool>().prop_map(Kind::BoolValue),
        prop_oneof![
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(1e308)
        ]
        .prop_map(Kind::NumberValue),
        text().prop_map(Kind::StringValue),
    ];
    leaf.prop_recursive(8, 24, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|kinds| {
                Kind::ListValue(ListValue {
                    values: kinds.into_iter().map(|k| Value { kind: Some(k) }).collect(),
                })
            }),
            prop::collection::btree_map(text(), inner, 0..3).prop_map(|fields| {
                Kind::StructValue(Struct {
                    fields: fields
                        .into_iter()
                        .map(|(k, v)| (k, Value { kind: Some(v) }))
                        .collect(),
                })
            }),
        ]
    })
    .prop_map(|kind| Value { kind: Some(kind) })
}

fn start_request() -> impl Strategy<Value = StartSagaRequest> {
    let saga_type = prop_oneof![
        Just("purchase_plan".to_owned()),
        Just("withdrawal".to_owned()),
        text(),
    ];
    let payload = prop::option::weighted(
        0.9,
        prop::collection::btree_map(text(), value(), 0..4).prop_map(|fields| Struct {
            fields: fields.into_iter().collect(),
        }),
    );
    (saga_type, payload, text()).prop_map(|(saga_type, payload, idempotency_key)| {
        StartSagaRequest {
            saga_type,
            payload,
            idempotency_key,
        }
    })
}

#[test]
fn arbitrary_start_requests_get_a_clear_status_write_only_when_accepted_and_never_stop_sagad() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sagad = runtime.block_on(InProcess::start(|_| {}));
    let endpoint = format!("http://{}", sagad.addr);
    let (client, health) = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(endpoint)
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        (
            SagaCoordinatorClient::new(channel.clone()),
            HealthClient::new(channel),
        )
    });
    let mut runner = TestRunner::new(Config::default());
    let result = runner.run(&start_request(), |request| {
        let (mut client, mut health) = (client.clone(), health.clone());
        runtime.block_on(async {
            let before = sagad.rows().await.0;
            let answer = client.start_saga(request).await;
            let after = sagad.rows().await.0;
            match answer {
                Ok(response) => {
                    let written = i64::from(response.into_inner().created);
                    prop_assert_eq!(after, before + written, "one saga per accepted start");
                }
                Err(status) => {
                    prop_assert!(
                        matches!(
                            status.code(),
                            Code::InvalidArgument
                                | Code::NotFound
                                | Code::ResourceExhausted
                                | Code::PermissionDenied
                        ),
                        "unexpected {status:?}"
                    );
                    prop_assert!(status.message().len() < 600, "{status:?}");
                    prop_assert_eq!(after, before, "a refusal writes nothing");
                }
            }
            health
                .check(HealthCheckRequest::default())
                .await
                .map_err(|e| TestCaseError::fail(format!("sagad stopped serving: {e}")))?;
            Ok(())
        })
    });
    runtime.block_on(sagad.stop());
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
