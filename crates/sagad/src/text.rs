//! Text that reaches the saga log or an error message: PostgreSQL cannot store a NUL character (in
//! `text` or `jsonb`), so one is refused at the edge with `INVALID_ARGUMENT` rather than failing the
//! write; and an error message echoes at most [`MAX_ECHO`] characters of what the caller sent.

use prost_types::value::Kind;
use prost_types::{Struct, Value};
use tonic::Status;

/// Most characters of caller input an error message repeats.
pub(crate) const MAX_ECHO: usize = 64;

/// `text` as an error message may quote it: at most [`MAX_ECHO`] characters, marked when cut.
pub(crate) fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// `INVALID_ARGUMENT` when `text` (the value of `field`) holds a NUL character.
pub(crate) fn refuse_nul(field: &str, text: &str) -> Result<(), Status> {
    if text.contains('\0') {
        return Err(nul_refusal(field));
    }
    Ok(())
}

/// `INVALID_ARGUMENT` naming the first key or string of `payload` that holds a NUL character.
pub(crate) fn refuse_nul_in_payload(payload: &Struct) -> Result<(), Status> {
    match nul_in_struct(payload, "payload") {
        Some(path) => Err(nul_refusal(&path)),
        None => Ok(()),
    }
}

fn nul_refusal(field: &str) -> Status {
    Status::invalid_argument(format!(
        "{} contains a NUL character (\\u0000), which the saga log cannot store",
        clip(field)
    ))
}

/// The path of the first key or string holding a NUL. Recursion is bounded: decoding already refused
/// anything nested deeper than protobuf's limit.
fn nul_in_struct(s: &Struct, path: &str) -> Option<String> {
    s.fields.iter().find_map(|(key, value)| {
        if key.contains('\0') {
            return Some(format!("a key of {path}"));
        }
        nul_in_value(value, &format!("{path}.{key}"))
    })
}

fn nul_in_value(value: &Value, path: &str) -> Option<String> {
    match &value.kind {
        Some(Kind::StringValue(s)) => s.contains('\0').then(|| path.to_owned()),
        Some(Kind::StructValue(s)) => nul_in_struct(s, path),
        Some(Kind::ListValue(list)) => list
            .values
            .iter()
            .enumerate()
            .find_map(|(i, v)| nul_in_value(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn payload(value: serde_json::Value) -> Struct {
        let serde_json::Value::Object(map) = value else {
            unreachable!("objects only")
        };
        saga_proto::json_to_struct(map)
    }

    #[test]
    fn a_nul_anywhere_in_the_payload_is_named() {
        let refused = |v| {
            refuse_nul_in_payload(&payload(v))
                .expect_err("nul")
                .message()
                .to_owned()
        };
        assert!(refused(json!({"a": {"b": ["x", "y\u{0}"]}})).contains("payload.a.b[1]"));
        assert!(refused(json!({"a": {"k\u{0}": 1}})).contains("a key of payload.a"));
        assert!(refuse_nul_in_payload(&payload(json!({"a": ["ok", 1, null]}))).is_ok());
    }

    #[test]
    fn echoes_are_clipped() {
        let long = "é".repeat(10_000);
        let clipped = clip(&long);
        assert_eq!(clipped.chars().count(), MAX_ECHO + 1);
        assert_eq!(clip("short"), "short");
    }
}
