//! What the saga log can store of a JSON value: PostgreSQL's `jsonb` refuses the NUL character (`\u0000`)
//! in any string or key. Checked at the edges (payloads, participant outputs) so that such data is
//! answered for, instead of failing a write deep inside the engine.

use serde_json::Value;

use crate::JsonMap;

/// The path (`$.a.b[2]`) of the first string or key in `map` that holds a NUL character, if any.
pub fn nul_path(map: &JsonMap) -> Option<String> {
    object_nul_path(map, "$")
}

fn object_nul_path(map: &JsonMap, at: &str) -> Option<String> {
    map.iter().find_map(|(key, value)| {
        let here = format!("{at}.{}", key.replace('\0', "\\u0000"));
        if key.contains('\0') {
            Some(here)
        } else {
            value_nul_path(value, &here)
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
        Value::Object(map) => object_nul_path(map, at),
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
        assert_eq!(nul_path(&map(json!({"a": "ok", "b": [1, "x"]}))), None);
        assert_eq!(
            nul_path(&map(json!({"a": {"b": ["ok", "n\u{0}l"]}}))),
            Some("$.a.b[1]".to_owned())
        );
        assert_eq!(
            nul_path(&map(json!({"k\u{0}": 1}))),
            Some("$.k\\u0000".to_owned())
        );
    }
}
