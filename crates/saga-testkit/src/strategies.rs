//! proptest strategies for the inputs sagad's fuzz tests throw at it: `google.protobuf.Struct` payloads
//! with hostile text and numbers (NUL characters, huge strings, NaN and infinities).

use proptest::prelude::*;
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};

/// Text as callers may send it: any printable characters, empty, with a NUL inside, or `x` repeated
/// up to `max_len` times.
pub fn hostile_text(max_len: usize) -> impl Strategy<Value = String> + Clone {
    prop_oneof![
        "\\PC{0,12}",
        Just(String::new()),
        Just("nul\u{0}inside".to_owned()),
        (0..=max_len).prop_map(|n| "x".repeat(n)),
    ]
}

/// Any number a `Struct` can carry, the unrepresentable ones included.
pub fn hostile_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(1e308),
        Just(9_007_199_254_740_993.0),
        any::<i32>().prop_map(f64::from),
    ]
}

/// A `Value`: scalars, or lists and structs nested up to `depth` levels, with keys and strings from
/// [`hostile_text`] up to `max_text` long.
pub fn struct_value(depth: u32, max_text: usize) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Kind::NullValue(0)),
        any::<bool>().prop_map(Kind::BoolValue),
        hostile_number().prop_map(Kind::NumberValue),
        hostile_text(max_text).prop_map(Kind::StringValue),
    ];
    let value = |kind| Value { kind: Some(kind) };
    leaf.prop_recursive(depth, depth * 3, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(move |kinds| {
                Kind::ListValue(ListValue {
                    values: kinds.into_iter().map(value).collect(),
                })
            }),
            prop::collection::btree_map(hostile_text(max_text), inner, 0..4).prop_map(
                move |fields| {
                    Kind::StructValue(Struct {
                        fields: fields.into_iter().map(|(k, v)| (k, value(v))).collect(),
                    })
                }
            ),
        ]
    })
    .prop_map(value)
}

/// A `Struct` of up to four fields of [`struct_value`].
pub fn payload(depth: u32, max_text: usize) -> impl Strategy<Value = Struct> {
    prop::collection::btree_map(hostile_text(max_text), struct_value(depth, max_text), 0..4)
        .prop_map(|fields| Struct {
            fields: fields.into_iter().collect(),
        })
}
