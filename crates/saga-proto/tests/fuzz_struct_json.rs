//! Fuzzed `google.protobuf.Struct` ↔ JSON: deep nesting, non-finite numbers, NUL characters and huge
//! strings never panic the conversion, always give JSON that serializes, and JSON survives the round
//! trip unchanged.
//!
//! CI runs proptest's default number of cases; `PROPTEST_CASES=20000 cargo test -p saga-proto --test
//! fuzz_struct_json` runs longer.

use proptest::prelude::*;
use prost::Message;
use saga_proto::{json_to_struct, struct_to_json};
use saga_testkit::strategies::payload;
use serde_json::{Map, Number, Value as Json};

fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        (-(1i64 << 53)..(1i64 << 53)).prop_map(|n| Json::Number(n.into())),
        any::<f64>()
            .prop_filter("finite, fractional", |f| f.is_finite() && f.fract() != 0.0)
            .prop_map(|f| Json::Number(Number::from_f64(f).expect("finite"))),
        "\\PC{0,12}".prop_map(Json::String),
    ];
    leaf.prop_recursive(30, 100, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::btree_map("\\PC{0,8}", inner, 0..4)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_struct_becomes_json_that_serializes(original in payload(40, 200_000)) {
        let json = struct_to_json(original.clone());
        let text = serde_json::to_string(&json).expect("always serializable: no NaN or infinity");
        let parsed: Map<String, Json> = serde_json::from_str(&text).expect("parses back");
        prop_assert_eq!(parsed.len(), original.fields.len());
        // And back to the wire: encodable, with every key kept.
        let again = json_to_struct(json);
        prop_assert_eq!(again.fields.len(), original.fields.len());
        prop_assert!(again.encoded_len() > 0 || original.fields.is_empty());
    }

    #[test]
    fn json_objects_survive_the_round_trip(object in prop::collection::btree_map("\\PC{0,8}", json(), 0..6)) {
        let object: Map<String, Json> = object.into_iter().collect();
        prop_assert_eq!(struct_to_json(json_to_struct(object.clone())), object);
    }
}
