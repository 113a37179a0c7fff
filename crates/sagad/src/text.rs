//! Text that reaches the saga log or an error message: PostgreSQL cannot store a NUL character (in
//! `text` or `jsonb`), so one is refused at the edge with `INVALID_ARGUMENT` rather than failing the
//! write; and an error message echoes at most [`MAX_ECHO`] characters of what the caller sent.

use crate::status::bad_request;
use saga_core::JsonMap;
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
pub(crate) fn refuse_nul_in_payload(payload: &JsonMap) -> Result<(), Status> {
    match saga_core::storable::nul_path(payload, "payload") {
        Some(path) => Err(nul_refusal(&path)),
        None => Ok(()),
    }
}

fn nul_refusal(field: &str) -> Status {
    bad_request(format!(
        "{} contains a NUL character (\\u0000), which the saga log cannot store",
        clip(field)
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn payload(value: serde_json::Value) -> JsonMap {
        let serde_json::Value::Object(map) = value else {
            unreachable!("objects only")
        };
        map
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
