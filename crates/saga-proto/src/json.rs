//! `google.protobuf.Struct` <-> `serde_json` conversions: payloads and outputs travel as Struct on the wire
//! and as JSON objects everywhere else.

use prost_types::{ListValue, Struct, Value, value::Kind};
use serde_json::{Map, Number, Value as Json};

/// Converts a protobuf `Struct` into a JSON object.
///
/// Protobuf numbers are doubles; whole numbers within the exactly representable range become JSON
/// integers so that money in minor units (cents) stays an integer.
pub fn struct_to_json(s: Struct) -> Map<String, Json> {
    s.fields
        .into_iter()
        .map(|(k, v)| (k, value_to_json(v)))
        .collect()
}

/// Converts a JSON object into a protobuf `Struct`.
pub fn json_to_struct(map: Map<String, Json>) -> Struct {
    Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, json_to_value(v)))
            .collect(),
    }
}

/// 2^53: the largest range in which every integer is exactly a double.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

fn value_to_json(v: Value) -> Json {
    match v.kind {
        None | Some(Kind::NullValue(_)) => Json::Null,
        Some(Kind::BoolValue(b)) => Json::Bool(b),
        Some(Kind::StringValue(s)) => Json::String(s),
        Some(Kind::NumberValue(n)) => number_to_json(n),
        Some(Kind::StructValue(s)) => Json::Object(struct_to_json(s)),
        Some(Kind::ListValue(l)) => Json::Array(l.values.into_iter().map(value_to_json).collect()),
    }
}

fn number_to_json(n: f64) -> Json {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        // Exact: the value is integral and within the safe range checked above.
        #[allow(clippy::cast_possible_truncation)]
        return Json::Number(Number::from(n as i64));
    }
    Number::from_f64(n).map_or(Json::Null, Json::Number)
}

fn json_to_value(v: Json) -> Value {
    let kind = match v {
        Json::Null => Kind::NullValue(0),
        Json::Bool(b) => Kind::BoolValue(b),
        Json::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Json::String(s) => Kind::StringValue(s),
        Json::Array(a) => Kind::ListValue(ListValue {
            values: a.into_iter().map(json_to_value).collect(),
        }),
        Json::Object(o) => Kind::StructValue(json_to_struct(o)),
    };
    Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_nested_objects_and_keeps_integers_integral() {
        let original = json!({
            "userId": "u1",
            "amountCents": 1999,
            "ratio": 0.5,
            "tags": ["a", null, true],
            "nested": {"deep": {"n": -3}}
        });
        let Json::Object(map) = original.clone() else {
            unreachable!()
        };
        let back = struct_to_json(json_to_struct(map));
        assert_eq!(Json::Object(back), original);
    }

    #[test]
    fn unrepresentable_numbers_become_null() {
        let s = Struct {
            fields: [(
                "nan".to_owned(),
                Value {
                    kind: Some(Kind::NumberValue(f64::NAN)),
                },
            )]
            .into(),
        };
        assert_eq!(struct_to_json(s)["nan"], Json::Null);
    }
}
