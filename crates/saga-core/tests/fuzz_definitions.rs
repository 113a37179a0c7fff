//! Fuzzed definition files: arbitrary text and near-valid definitions (a shipped one with one field
//! changed or removed) never panic the loader, and every refusal names the field at fault.
//!
//! CI runs proptest's default number of cases; `PROPTEST_CASES=20000 cargo test -p saga-core --test
//! fuzz_definitions` runs longer.

use std::collections::HashSet;

use proptest::prelude::*;
use saga_core::{Definition, DefinitionError};
use serde_norway::{Mapping, Value};

const SHIPPED: &str = include_str!("../../../definitions/purchase_plan.yaml");

fn participants() -> HashSet<String> {
    ["billing", "device", "payment"].map(String::from).into()
}

/// Every path (keys and sequence indexes) to a value in `value`, with the key it ends in.
fn paths(value: &Value, prefix: &mut Vec<Value>, out: &mut Vec<(Vec<Value>, String)>) {
    match value {
        Value::Mapping(map) => {
            for (key, child) in map {
                prefix.push(key.clone());
                out.push((prefix.clone(), key.as_str().unwrap_or_default().to_owned()));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        Value::Sequence(items) => {
            for (i, child) in items.iter().enumerate() {
                prefix.push(Value::from(i));
                paths(child, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

fn parent<'a>(root: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    let mut at = root;
    for key in path {
        at = match (at, key) {
            (Value::Mapping(map), key) => map.get_mut(key)?,
            (Value::Sequence(items), Value::Number(n)) => {
                items.get_mut(usize::try_from(n.as_u64()?).ok()?)?
            }
            _ => return None,
        };
    }
    Some(at)
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::String),
        Just(Value::String("-5s".to_owned())),
        Just(Value::String("99999999999999999999h".to_owned())),
        Just(Value::Mapping(Mapping::new())),
        Just(Value::Sequence(vec![])),
    ]
}

proptest! {
    #[test]
    fn arbitrary_text_is_refused_without_panicking(text in "\\PC{0,400}") {
        let _ = Definition::from_yaml(&text, &participants());
    }

    #[test]
    fn a_shipped_definition_with_one_field_changed_loads_or_names_that_field(
        pick in any::<prop::sample::Index>(),
        replacement in scalar(),
        remove in any::<bool>(),
    ) {
        let mut root: Value = serde_norway::from_str(SHIPPED).expect("shipped yaml");
        let mut all = Vec::new();
        paths(&root, &mut Vec::new(), &mut all);
        let (path, key) = pick.get(&all).clone();
        let (last, up) = path.split_last().expect("non-empty path");
        let Some(Value::Mapping(map)) = parent(&mut root, up) else {
            unreachable!("paths end in mapping keys")
        };
        if remove {
            map.remove(last);
        } else {
            map.insert(last.clone(), replacement);
        }
        let text = serde_norway::to_string(&root).expect("serialize");
        match Definition::from_yaml(&text, &participants()) {
            Ok(_) => {}
            Err(DefinitionError::Invalid { field, .. }) => {
                // The refused field is the changed one (or lies inside it).
                prop_assert!(field.contains(&key), "{field} does not name {key}");
            }
            Err(DefinitionError::Parse(message)) => {
                prop_assert!(
                    message.contains(&key) || message.contains("line"),
                    "{message} does not name {key}"
                );
            }
        }
    }
}
