//! A step output the saga log cannot store, for tests of how a refused row is contained.

use chrono::Utc;
use saga_core::{Input, JsonMap, Saga, Transition, apply};
use serde_json::json;

/// An output PostgreSQL's `jsonb` refuses: it cannot hold a NUL character.
pub fn output() -> JsonMap {
    json!({"note": "a\u{0}b"})
        .as_object()
        .cloned()
        .expect("an object")
}

/// `saga`'s first step succeeding with [`output`]: a transition every statement that carries it fails.
pub fn first_step(saga: &Saga) -> Transition {
    let now = Utc::now();
    let input = Input::Executed {
        index: 0,
        attempt: 1,
        started_at: now,
        result: Ok(output()),
    };
    apply(saga, input, now, 0.5).expect("a valid input")
}
