//! Decoding step requests and their metadata.

use super::*;
use saga_proto::json_to_struct;
use serde_json::json;
use tonic::Code;

fn request(payload: Value) -> StepRequest {
    let Value::Object(payload) = payload else {
        panic!("payload must be an object")
    };
    StepRequest {
        saga_id: "0195b1d0-0000-7000-8000-000000000001".to_owned(),
        saga_type: "purchase_plan".to_owned(),
        step: "CREATE_ORDER".to_owned(),
        action: "CreateOrder".to_owned(),
        attempt: 2,
        idempotency_key: "key-1".to_owned(),
        payload: Some(json_to_struct(payload)),
        generation: 0,
    }
}

fn call(payload: Value) -> StepCall {
    StepCall::from_request(Request::new(request(payload))).expect("valid request")
}

fn message(err: StepError) -> String {
    assert_eq!(err.code(), Code::InvalidArgument);
    err.to_string()
}

#[test]
fn decodes_every_field_of_the_request() {
    let call = call(json!({"userId": "u1"}));
    assert_eq!(
        call.saga_id.to_string(),
        "0195b1d0-0000-7000-8000-000000000001"
    );
    assert_eq!(call.saga_type, "purchase_plan");
    assert_eq!(call.step, "CREATE_ORDER");
    assert_eq!(call.action, "CreateOrder");
    assert_eq!(call.attempt, 2);
    assert_eq!(call.idempotency_key, "key-1");
    assert_eq!(call.payload["userId"], json!("u1"));
    assert_eq!(call.traceparent, None);
}

#[test]
fn the_trace_context_comes_from_the_traceparent_metadata() {
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut request = Request::new(request(json!({})));
    request
        .metadata_mut()
        .insert(TRACEPARENT_HEADER, traceparent.parse().expect("ascii"));
    let decoded = StepCall::from_request(request).expect("valid");
    assert_eq!(decoded.traceparent.as_deref(), Some(traceparent));
}

#[test]
fn the_request_key_wins_over_the_metadata_key_which_is_only_a_fallback() {
    let mut with_both = Request::new(request(json!({})));
    with_both.metadata_mut().insert(
        IDEMPOTENCY_KEY_HEADER,
        "from-header".parse().expect("ascii"),
    );
    let decoded = StepCall::from_request(with_both).expect("valid");
    assert_eq!(decoded.idempotency_key, "key-1");

    let mut header_only = request(json!({}));
    header_only.idempotency_key.clear();
    let mut header_only = Request::new(header_only);
    header_only.metadata_mut().insert(
        IDEMPOTENCY_KEY_HEADER,
        "from-header".parse().expect("ascii"),
    );
    let decoded = StepCall::from_request(header_only).expect("valid");
    assert_eq!(decoded.idempotency_key, "from-header");

    let mut neither = request(json!({}));
    neither.idempotency_key.clear();
    let err = StepCall::from_request(Request::new(neither)).expect_err("no key");
    assert_eq!(message(err), "missing idempotency key");
}

#[test]
fn rejects_a_malformed_saga_id_and_missing_names() {
    let mut bad_id = request(json!({}));
    bad_id.saga_id = "nope".to_owned();
    let err = StepCall::from_request(Request::new(bad_id)).expect_err("bad id");
    assert_eq!(message(err), "saga_id \"nope\" is not a uuid");

    let mut no_action = request(json!({}));
    no_action.action.clear();
    let err = StepCall::from_request(Request::new(no_action)).expect_err("no action");
    assert_eq!(message(err), "missing action");
}

#[test]
fn accessors_return_typed_values() {
    let call = call(json!({
        "userId": "u1",
        "amountCents": 2999,
        "orderId": "0195b1d0-0000-7000-8000-0000000000aa",
        "nothing": null
    }));
    assert_eq!(call.str("userId").ok(), Some("u1"));
    assert_eq!(call.opt_str("userId").ok(), Some(Some("u1")));
    assert_eq!(call.opt_str("nothing").ok(), Some(None));
    assert_eq!(call.i64("amountCents").ok(), Some(2999));
    assert_eq!(
        call.uuid("orderId").ok().map(|id| id.to_string()),
        Some("0195b1d0-0000-7000-8000-0000000000aa".to_owned())
    );
    assert_eq!(call.opt_uuid("absent").ok(), Some(None));
}

#[test]
fn accessors_refuse_missing_or_mistyped_fields_with_a_readable_message() {
    let call = call(json!({
        "userId": "", "amountCents": 1.5, "orderId": "x", "planId": 7, "paymentId": 7
    }));
    assert_eq!(
        message(call.str("planName").expect_err("missing")),
        "missing field \"planName\" in payload"
    );
    assert_eq!(
        message(call.str("userId").expect_err("empty")),
        "field \"userId\" must be a non-empty string"
    );
    assert_eq!(
        message(call.opt_str("planId").expect_err("number")),
        "field \"planId\" must be a non-empty string"
    );
    assert_eq!(
        message(call.i64("amountCents").expect_err("fraction")),
        "field \"amountCents\" must be an integer"
    );
    assert_eq!(
        message(call.opt_uuid("orderId").expect_err("not a uuid")),
        "field \"orderId\" must be a uuid"
    );
    assert_eq!(
        message(call.uuid("paymentId").expect_err("a number")),
        "field \"paymentId\" must be a uuid"
    );
}

mod fuzz {
    //! Fuzzed request decoding: whatever arrives (garbage bytes, any field values, NUL characters,
    //! any metadata) decodes to a call or a clear `INVALID_ARGUMENT`, never a panic. CI runs
    //! proptest's default number of cases; `PROPTEST_CASES=20000` runs longer.

    use proptest::prelude::*;
    use prost::Message;

    use super::*;

    fn step_request() -> impl Strategy<Value = StepRequest> {
        let text = || {
            prop_oneof![
                "\\PC{0,24}",
                Just(String::new()),
                Just("a\u{0}b".to_owned())
            ]
        };
        let saga_id = prop_oneof![
            text(),
            any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string())
        ];
        let ids = (saga_id, text(), text(), text());
        (ids, any::<u32>(), text(), any::<u32>()).prop_map(
            |((saga_id, saga_type, step, action), attempt, idempotency_key, generation)| {
                StepRequest {
                    saga_id,
                    saga_type,
                    step,
                    action,
                    attempt,
                    idempotency_key,
                    payload: None,
                    generation,
                }
            },
        )
    }

    proptest! {
        #[test]
        fn any_request_decodes_or_is_invalid_argument(
            request in step_request(),
            header in prop::option::of("[ -~]{0,40}"),
        ) {
            let mut wrapped = Request::new(request.clone());
            if let Some(value) = header.as_deref().and_then(|h| h.parse().ok()) {
                wrapped.metadata_mut().insert(IDEMPOTENCY_KEY_HEADER, value);
            }
            match StepCall::from_request(wrapped) {
                Ok(call) => {
                    prop_assert_eq!(call.saga_id.to_string(), request.saga_id.to_lowercase());
                    prop_assert_eq!(&call.step, &request.step);
                    prop_assert!(!call.idempotency_key.is_empty());
                }
                Err(error) => {
                    prop_assert_eq!(tonic::Status::from(error).code(), Code::InvalidArgument);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(request) = StepRequest::decode(bytes.as_slice()) {
                let _ = StepCall::from_request(Request::new(request));
            }
        }
    }
}
