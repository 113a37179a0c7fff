//! Fuzzed `StartSaga` requests against a real sagad (in-process, real socket, real PostgreSQL): any
//! request gets one of the statuses a caller can act on — never `INTERNAL`, `UNKNOWN`, `UNAVAILABLE` or
//! `OUT_OF_RANGE` —, a saga is written only when one is accepted, and sagad keeps serving.
//!
//! CI runs proptest's default number of cases; `PROPTEST_CASES=5000 cargo test -p e2e-tests --test e2e
//! fuzz_edge` runs longer.

use e2e_tests::in_process::InProcess;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use saga_proto::v1::StartSagaRequest;
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_testkit::strategies::{hostile_text, payload};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn start_request() -> impl Strategy<Value = StartSagaRequest> {
    let saga_type = prop_oneof![
        Just("purchase_plan".to_owned()),
        Just("withdrawal".to_owned()),
        hostile_text(3000),
    ];
    let payload = prop::option::weighted(0.9, payload(8, 3000));
    // Only waits that must be refused (negative, over the minute, out-of-range nanos): a valid one
    // would hold each case until its saga ends.
    let wait = prop::option::weighted(
        0.2,
        (prop_oneof![i64::MIN..0, 61i64..i64::MAX], any::<i32>())
            .prop_map(|(seconds, nanos)| prost_types::Duration { seconds, nanos }),
    );
    (saga_type, payload, hostile_text(3000), wait).prop_map(
        |(saga_type, payload, idempotency_key, wait)| StartSagaRequest {
            labels: Default::default(),
            saga_type,
            payload,
            idempotency_key,
            wait,
        },
    )
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
