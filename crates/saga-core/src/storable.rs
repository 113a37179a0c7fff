//! What the saga log can store of a JSON value: PostgreSQL's `jsonb` refuses the NUL character (`\u0000`)
//! in any string or key. Checked at the edges (payloads, participant outputs) so that such data is
//! answered for, instead of failing a write deep inside the engine.

use serde_json::Value;

use crate::JsonMap;

/// Where in `map` (named `root`, e.g. `payload`) the first string or key holding a NUL character is:
/// `payload.a.b[2]`, or `a key of payload.a`.
pub fn nul_path(map: &JsonMap, root: &str) -> Option<String> {
    map.iter().find_map(|(key, value)| {
        if key.contains('\0') {
            Some(format!("a key of {root}"))
        } else {
            value_nul_path(value, &format!("{root}.{key}"))
        }
    })
}

fn value_nul_path(value: &Value, at: &str) -> Option<String> {
    match value {
        Value::String(s) if s.contains('\0') => Some(at.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| value_nul_path(item, &format!("{at}[{i}]"))),
        Value::Object(map) => nul_path(map, at),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> JsonMap {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn finds_a_nul_in_strings_and_keys_at_any_depth() {
        let at = |value| nul_path(&map(value), "payload");
        assert_eq!(at(json!({"a": "ok", "b": [1, "x", null]})), None);
        assert_eq!(
            at(json!({"a": {"b": ["ok", "n\u{0}l"]}})).as_deref(),
            Some("payload.a.b[1]")
        );
        assert_eq!(
            at(json!({"a": {"k\u{0}": 1}})).as_deref(),
            Some("a key of payload.a")
        );
    }
}
