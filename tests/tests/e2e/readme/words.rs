//! The README's expectation comments about a saga, checked against its `GetStatus` answer. Prose is
//! allowed around these forms, which are what the test reads:
//! - `SAGA_STATUS_X`, `FAILURE_REASON_X`: the saga's status, its failure reason;
//! - `STEP STEP_STATUS_X`, `every step STEP_STATUS_X`: one step's status, or every step's;
//! - `STEP attempts N`, `STEP compensation attempts N`: a step's forward or compensation attempts;
//! - `state: key, key, ...`: keys the saga's state holds.
//!
//! Any other enum-like word (`STEP_STATUS_X` with no step before it, `EVENT_KIND_X`, ...) is an error,
//! so that an expectation the test cannot check never passes unread.

use serde_json::Value;

/// Checks `saga` (the `saga` object of a GetStatus answer, as grpcurl prints it) against `text`.
pub fn check_saga(text: &str, saga: &Value) -> Result<(), String> {
    let words = words(text);
    let steps: Vec<&Value> = saga["steps"]
        .as_array()
        .map(|s| s.iter().collect())
        .unwrap_or_default();
    let step = |name: &str| steps.iter().copied().find(|s| s["name"] == name);
    let mut index = 0;
    while index < words.len() {
        let word = words[index].as_str();
        let next = |n: usize| words.get(index + n).map(String::as_str);
        if word.starts_with("SAGA_STATUS_") {
            expect(&saga["status"], word, "the saga's status")?;
        } else if word.starts_with("FAILURE_REASON_") {
            expect(&saga["failureReason"], word, "the saga's failure reason")?;
        } else if word == "every" && next(1) == Some("step") {
            let status = next(2)
                .filter(|w| w.starts_with("STEP_STATUS_"))
                .ok_or("`every step` needs a STEP_STATUS_")?;
            if steps.is_empty() {
                return Err("the saga has no steps".to_owned());
            }
            for s in &steps {
                expect(&s["status"], status, &format!("step {}", s["name"]))?;
            }
            index += 2;
        } else if let Some(s) = step(word) {
            match (next(1), next(2), next(3)) {
                (Some(status), _, _) if status.starts_with("STEP_STATUS_") => {
                    expect(&s["status"], status, &format!("{word}'s status"))?;
                    index += 1;
                }
                (Some("attempts"), Some(n), _) => {
                    expect(&s["attempts"], n, &format!("{word}'s attempts"))?;
                    index += 2;
                }
                (Some("compensation"), Some("attempts"), Some(n)) => {
                    let field = &s["compensationAttempts"];
                    expect(field, n, &format!("{word}'s compensation attempts"))?;
                    index += 3;
                }
                _ => {}
            }
        } else if word == "state" && next(1) == Some(":") {
            index += 2;
            while let Some(key) = words
                .get(index)
                .filter(|w| w.starts_with(|c: char| c.is_ascii_lowercase()))
            {
                if saga["state"].get(key.as_str()).is_none() {
                    return Err(format!("the state has no {key}: {}", saga["state"]));
                }
                index += 1;
            }
            continue;
        } else if is_enum_like(word) && steps.iter().all(|s| s["name"] != word) {
            return Err(format!(
                "cannot check {word:?} here: see the forms in tests/tests/e2e/readme/words.rs"
            ));
        }
        index += 1;
    }
    Ok(())
}

/// Whether `text` names something the checks read (then it must be written as those forms).
pub fn mentions_an_enum(text: &str) -> bool {
    words(text).iter().any(|w| {
        [
            "SAGA_STATUS_",
            "STEP_STATUS_",
            "FAILURE_REASON_",
            "EVENT_KIND_",
            "ERROR_KIND_",
        ]
        .iter()
        .any(|prefix| w.starts_with(prefix))
    })
}

/// Words and `:` separators; other punctuation dropped.
fn words(text: &str) -> Vec<String> {
    text.replace(':', " : ")
        .split(|c: char| c.is_whitespace() || ",;().".contains(c))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn is_enum_like(word: &str) -> bool {
    word.contains('_')
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
}

/// `value` (a string, or a number that grpcurl prints as one) equals `wanted`. grpcurl leaves out
/// zero values, so a missing number reads as 0.
fn expect(value: &Value, wanted: &str, what: &str) -> Result<(), String> {
    let actual = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Null => "0".to_owned(),
        other => other.to_string(),
    };
    if actual == wanted {
        Ok(())
    } else {
        Err(format!("{what} is {actual}, the README says {wanted}"))
    }
}

#[test]
fn reads_statuses_steps_attempts_and_state_keys() {
    let saga = serde_json::json!({
        "status": "SAGA_STATUS_COMPENSATED",
        "failureReason": "FAILURE_REASON_STEP_FAILED",
        "steps": [
            {"name": "CREATE_ORDER", "status": "STEP_STATUS_COMPENSATED", "attempts": 1, "compensationAttempts": 3},
            {"name": "ALLOCATE_DEVICE", "status": "STEP_STATUS_FAILED", "attempts": 1}
        ],
        "state": {"orderId": "o1"}
    });
    let ok = "GetStatus: SAGA_STATUS_COMPENSATED, FAILURE_REASON_STEP_FAILED, CREATE_ORDER \
              STEP_STATUS_COMPENSATED, CREATE_ORDER compensation attempts 3, ALLOCATE_DEVICE attempts 1, \
              and the state: orderId";
    assert_eq!(check_saga(ok, &saga), Ok(()));
    assert!(check_saga("SAGA_STATUS_COMPLETED", &saga).is_err());
    assert!(check_saga("CREATE_ORDER compensation attempts 2", &saga).is_err());
    assert!(check_saga("every step STEP_STATUS_COMPENSATED", &saga).is_err());
    assert!(check_saga("state: deviceId", &saga).is_err());
    assert!(
        check_saga("five steps STEP_STATUS_SUCCEEDED", &saga).is_err(),
        "unreadable: an error"
    );
    assert!(
        check_saga("ALLOCATE_DEVICE compensation attempts 0", &saga).is_ok(),
        "absent is zero"
    );
    assert!(
        mentions_an_enum("ends SAGA_STATUS_FAILED") && !mentions_an_enum("the order is cancelled")
    );
}
