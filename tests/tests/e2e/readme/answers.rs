//! Checks of grpcurl's answers that need nothing but the answer: what the comment lines after a
//! command say (JSON shapes, `GetStatus: ...`, the error a refusal prints), and what each RPC promises
//! in the README's prose.

use serde_json::Value;

use super::PLACEHOLDER;
use super::words;

/// The comment lines after a command, sorted by what they check.
pub struct Expected<'a> {
    /// JSON objects the answer must contain.
    pub shapes: Vec<&'a str>,
    /// `Code: X` and `Message: ...` lines: the call must fail, and grpcurl print each of them.
    pub errors: Vec<&'a str>,
    /// Other lines, before any `GetStatus:` line.
    pub prose: Vec<&'a str>,
    /// From a `GetStatus:` line to the end: the started saga's expected end state.
    pub get_status: Option<String>,
}

impl<'a> Expected<'a> {
    /// Sorts `lines` (comments without `# `).
    pub fn new(lines: &'a [String]) -> Self {
        // `GetStatus: ...` runs on to the last comment line.
        let split = lines
            .iter()
            .position(|line| line.starts_with("GetStatus:"))
            .unwrap_or(lines.len());
        let (before, after) = lines.split_at(split);
        let (errors, rest): (Vec<&str>, Vec<&str>) = before
            .iter()
            .map(String::as_str)
            .partition(|l| l.starts_with("Code: ") || l.starts_with("Message: "));
        let (shapes, prose) = rest.into_iter().partition(|l| l.starts_with('{'));
        Self {
            shapes,
            errors,
            prose,
            get_status: (!after.is_empty()).then(|| after.join(" ")),
        }
    }

    /// The JSON shapes are in `answer`; prose that names statuses is only allowed where it is read.
    pub fn check_shapes(&self, answer: &Value, reads_prose: bool) -> Result<(), String> {
        for shape in &self.shapes {
            let wanted: Value =
                serde_json::from_str(shape).map_err(|e| format!("expected JSON {shape}: {e}"))?;
            subset(&wanted, answer)
                .map_err(|e| format!("the answer differs from the README's {shape}: {e}"))?;
        }
        match self.prose.iter().find(|line| words::mentions_an_enum(line)) {
            Some(line) if !reads_prose => Err(format!(
                "cannot check {line:?}: write it as `GetStatus: ...` after a StartSaga"
            )),
            _ => Ok(()),
        }
    }
}

/// A refused call: grpcurl failed and printed every `Code:` and `Message:` line the README gives.
pub fn refused(errors: &[&str], success: bool, stderr: &str) -> Result<(), String> {
    if success {
        return Err(format!(
            "the README says it fails with {errors:?}, but it answered"
        ));
    }
    let printed: Vec<&str> = stderr.lines().map(str::trim).collect();
    match errors.iter().find(|line| !printed.contains(line)) {
        Some(missing) => Err(format!("grpcurl did not print {missing:?}: {stderr}")),
        None => Ok(()),
    }
}

/// `list`: the services, one per line, exactly as the README lists them.
pub fn services(stdout: &str, documented: &[&str]) -> Result<(), String> {
    let served: Vec<&str> = stdout.lines().collect();
    if served == documented {
        Ok(())
    } else {
        Err(format!(
            "services {served:?}, the README lists {documented:?}"
        ))
    }
}

/// ListSagas: at least one saga (an empty page shows nothing), each matching the status and label
/// filters, no more than the page size.
pub fn list_sagas(request: &Value, answer: &Value) -> Result<(), String> {
    let sagas = answer["sagas"].as_array().cloned().unwrap_or_default();
    if sagas.is_empty() {
        return Err("no sagas listed: the example shows nothing (add a setup)".to_owned());
    }
    let statuses = request["statuses"].as_array().cloned().unwrap_or_default();
    if let Some(saga) = sagas
        .iter()
        .find(|saga| !statuses.is_empty() && !statuses.contains(&saga["status"]))
    {
        return Err(format!(
            "{} is {}, not one of {statuses:?}",
            saga["sagaId"], saga["status"]
        ));
    }
    let label = &request["label"];
    if let Some(saga) = sagas.iter().find(|saga| {
        label.is_object() && saga["labels"][label["key"].as_str().unwrap_or("")] != label["value"]
    }) {
        return Err(format!(
            "{} has labels {}, not {label}",
            saga["sagaId"], saga["labels"]
        ));
    }
    let size = request["page_size"].as_u64().unwrap_or(100);
    if sagas.len() as u64 > size {
        return Err(format!("{} sagas on a page of {size}", sagas.len()));
    }
    Ok(())
}

/// GetSagaHistory of a finished saga: from SAGA_STARTED to its end, sequences increasing.
pub fn history(answer: &Value) -> Result<(), String> {
    let events = answer["events"].as_array().cloned().unwrap_or_default();
    let kind = |event: Option<&Value>| event.map_or(Value::Null, |e| e["kind"].clone());
    expect_eq(
        &kind(events.first()),
        "EVENT_KIND_SAGA_STARTED",
        "the first event",
    )?;
    let last = kind(events.last());
    let ends = [
        "EVENT_KIND_SAGA_COMPLETED",
        "EVENT_KIND_SAGA_COMPENSATED",
        "EVENT_KIND_SAGA_PARKED",
    ];
    if !ends.contains(&last.as_str().unwrap_or("")) {
        return Err(format!("a finished saga's history ends with {last}"));
    }
    let sequences = numbers(&events, |e| &e["sequence"])?;
    if !sequences.windows(2).all(|w| w[0] < w[1]) {
        return Err(format!("sequences do not increase: {sequences:?}"));
    }
    Ok(())
}

/// WatchSaga: one message per change (revisions one apart), ending on a terminal status.
pub fn watch(messages: &[Value]) -> Result<(), String> {
    let revisions = numbers(messages, |m| &m["saga"]["revision"])?;
    if revisions.is_empty() || !revisions.windows(2).all(|w| w[1] == w[0] + 1) {
        return Err(format!("revisions {revisions:?} do not increase by one"));
    }
    let last = &messages[messages.len() - 1]["saga"]["status"];
    let terminal = [
        "SAGA_STATUS_COMPLETED",
        "SAGA_STATUS_COMPENSATED",
        "SAGA_STATUS_FAILED",
    ];
    if !terminal.contains(&last.as_str().unwrap_or("")) {
        return Err(format!("the watch ended on {last}, not a terminal status"));
    }
    Ok(())
}

/// RetrySaga: the saga is moving again, forward or compensating.
pub fn retried(answer: &Value) -> Result<(), String> {
    let status = answer["saga"]["status"].as_str().unwrap_or("");
    if ["SAGA_STATUS_RUNNING", "SAGA_STATUS_COMPENSATING"].contains(&status) {
        Ok(())
    } else {
        Err(format!("a retried saga is {status}"))
    }
}

/// ResolveSaga: the named step counts as the request's outcome, with the note and reason on it.
pub fn resolved(request: &Value, answer: &Value) -> Result<(), String> {
    let saga = &answer["saga"];
    let step = saga["steps"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["name"] == request["step"]))
        .ok_or_else(|| format!("no step {} in the answer", request["step"]))?;
    let outcome = request["outcome"].as_str().unwrap_or("");
    let status = outcome.replace("RESOLVE_OUTCOME_", "STEP_STATUS_");
    expect_eq(&step["status"], status, "the resolved step's status")?;
    let resolution = &step["resolution"];
    expect_eq(&resolution["outcome"], outcome, "the resolution's outcome")?;
    expect_eq(
        &resolution["note"],
        request["note"].clone(),
        "the resolution's note",
    )?;
    expect_eq(
        &resolution["reason"],
        request["reason"].clone(),
        "the resolution's reason",
    )
}

/// The history event of `kind` an operator action wrote: its reason is the request's, and `by` the
/// principal that made the call (absent without authentication).
pub fn operator_event(
    history: &Value,
    kind: &str,
    request: &Value,
    principal: Option<&str>,
) -> Result<(), String> {
    let event = history["events"]
        .as_array()
        .and_then(|events| events.iter().rev().find(|e| e["kind"] == kind))
        .ok_or_else(|| format!("no {kind} in the history"))?;
    expect_eq(
        &event["operatorReason"],
        request["reason"].clone(),
        "its reason",
    )?;
    let by = principal.map_or(Value::Null, Value::from);
    expect_eq(&event["by"], by, &format!("{kind}'s by"))
}

/// uint64 fields, which grpcurl prints as strings.
fn numbers(items: &[Value], field: impl Fn(&Value) -> &Value) -> Result<Vec<u64>, String> {
    items
        .iter()
        .map(|item| {
            field(item)
                .as_str()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("no number in {item}"))
        })
        .collect()
}

/// Every field of `shape` is in `actual` with the same value; a placeholder matches any string.
pub fn subset(shape: &Value, actual: &Value) -> Result<(), String> {
    match (shape, actual) {
        (Value::Object(wanted), Value::Object(have)) => {
            for (key, value) in wanted {
                let got = have.get(key).ok_or_else(|| format!("no {key}"))?;
                subset(value, got).map_err(|e| format!("{key}: {e}"))?;
            }
            Ok(())
        }
        (Value::String(s), Value::String(_)) if s.contains(PLACEHOLDER) => Ok(()),
        // A list of shapes: as many items, each a subset of its counterpart.
        (Value::Array(wanted), Value::Array(have)) if wanted.len() == have.len() => wanted
            .iter()
            .zip(have)
            .enumerate()
            .try_for_each(|(i, (w, h))| subset(w, h).map_err(|e| format!("[{i}]: {e}"))),
        (wanted, have) if wanted == have => Ok(()),
        (wanted, have) => Err(format!("{have}, not {wanted}")),
    }
}

/// `value` is `wanted`.
pub fn expect_eq(value: &Value, wanted: impl Into<Value>, what: &str) -> Result<(), String> {
    let wanted = wanted.into();
    if *value == wanted {
        Ok(())
    } else {
        Err(format!("{what} is {value}, the README says {wanted}"))
    }
}

#[test]
fn shapes_match_as_subsets_with_placeholders() {
    let answer =
        serde_json::json!({"sagaId": "a1", "status": "SAGA_STATUS_RUNNING", "created": true});
    let lines = ["{\"sagaId\": \"019aa4f0-…\", \"created\": true}".to_owned()];
    assert!(Expected::new(&lines).check_shapes(&answer, false).is_ok());
    let lines = ["{\"status\": \"SAGA_STATUS_COMPLETED\"}".to_owned()];
    assert!(Expected::new(&lines).check_shapes(&answer, false).is_err());
    let answer = serde_json::json!({"sagas": [{"sagaId": "a1", "labels": {"orderId": "7"}}]});
    let lines = ["{\"sagas\": [{\"labels\": {\"orderId\": \"7\"}}]}".to_owned()];
    assert!(Expected::new(&lines).check_shapes(&answer, false).is_ok());
    let lines = ["{\"sagas\": [{\"labels\": {\"orderId\": \"8\"}}]}".to_owned()];
    assert!(Expected::new(&lines).check_shapes(&answer, false).is_err());
    let lines = ["{\"sagas\": []}".to_owned()];
    assert!(
        Expected::new(&lines).check_shapes(&answer, false).is_err(),
        "lengths differ"
    );
    let lines = ["ends SAGA_STATUS_FAILED".to_owned()];
    assert!(
        Expected::new(&lines).check_shapes(&answer, false).is_err(),
        "unread status words"
    );
    let lines = [
        "prose".to_owned(),
        "GetStatus: SAGA_STATUS_COMPLETED,".to_owned(),
        "X attempts 2".to_owned(),
    ];
    let expected = Expected::new(&lines);
    assert_eq!(expected.prose, ["prose"]);
    assert_eq!(
        expected.get_status.as_deref(),
        Some("GetStatus: SAGA_STATUS_COMPLETED, X attempts 2")
    );
}

#[test]
fn watch_and_list_checks_catch_gaps_and_strays() {
    let message = |revision: &str, status: &str| serde_json::json!({"saga": {"revision": revision, "status": status}});
    assert!(
        watch(&[
            message("3", "SAGA_STATUS_RUNNING"),
            message("4", "SAGA_STATUS_COMPLETED")
        ])
        .is_ok()
    );
    assert!(
        watch(&[
            message("3", "SAGA_STATUS_RUNNING"),
            message("5", "SAGA_STATUS_COMPLETED")
        ])
        .is_err()
    );
    assert!(watch(&[message("3", "SAGA_STATUS_RUNNING")]).is_err());
    let request = serde_json::json!({"statuses": ["SAGA_STATUS_FAILED"], "page_size": 50});
    let page = |status: &str| serde_json::json!({"sagas": [{"sagaId": "a", "status": status}]});
    assert!(list_sagas(&request, &page("SAGA_STATUS_FAILED")).is_ok());
    assert!(list_sagas(&request, &page("SAGA_STATUS_COMPLETED")).is_err());
    assert!(list_sagas(&request, &serde_json::json!({})).is_err());
    let by_label = serde_json::json!({"label": {"key": "orderId", "value": "7"}});
    let labelled =
        |value: &str| serde_json::json!({"sagas": [{"sagaId": "a", "labels": {"orderId": value}}]});
    assert!(list_sagas(&by_label, &labelled("7")).is_ok());
    assert!(list_sagas(&by_label, &labelled("8")).is_err());
}

#[test]
fn refusals_must_fail_and_print_what_the_readme_says() {
    let stderr =
        "ERROR:\n  Code: PermissionDenied\n  Message: principal x may not call AbortSaga\n";
    let lines = [
        "Code: PermissionDenied".to_owned(),
        "Message: principal x may not call AbortSaga".to_owned(),
        "prose".to_owned(),
    ];
    let expected = Expected::new(&lines);
    assert_eq!(expected.errors.len(), 2);
    assert_eq!(expected.prose, ["prose"]);
    assert!(refused(&expected.errors, false, stderr).is_ok());
    assert!(refused(&expected.errors, true, "").is_err(), "it answered");
    assert!(refused(&["Code: Unauthenticated"], false, stderr).is_err());
}
