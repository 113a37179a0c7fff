//! What people read: short status names, times, durations and ages, and the tables (comfy-table, no
//! borders, so that columns line up in a terminal and split on whitespace in a pipe).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{ContentArrangement, Table, presets};
use prost_types::Timestamp;
use saga_proto::v1::{
    EventKind, FailureReason, ResolveOutcome, Saga, SagaStatus, StepStatus, StuckReason,
};

/// A table with a header row and no borders; print it with [`Table::trim_fmt`] (no trailing blanks).
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header);
    for column in table.column_iter_mut() {
        // Flush left, two blanks between columns, as kubectl prints.
        column.set_padding((0, 2));
    }
    table
}

/// `UNCLAIMED` for `STUCK_REASON_UNCLAIMED`.
pub fn stuck_reason(reason: StuckReason) -> &'static str {
    short(reason.as_str_name(), "STUCK_REASON_")
}

/// `COMPLETED` for `SAGA_STATUS_COMPLETED`.
pub fn saga_status(status: SagaStatus) -> &'static str {
    short(status.as_str_name(), "SAGA_STATUS_")
}

/// `SUCCEEDED` for `STEP_STATUS_SUCCEEDED`.
pub fn step_status(status: StepStatus) -> &'static str {
    short(status.as_str_name(), "STEP_STATUS_")
}

/// `STEP_FAILED` for `FAILURE_REASON_STEP_FAILED`; empty when there is no reason.
pub fn reason(reason: FailureReason) -> &'static str {
    match reason {
        FailureReason::Unspecified => "",
        other => short(other.as_str_name(), "FAILURE_REASON_"),
    }
}

/// `COMPENSATED` for `RESOLVE_OUTCOME_COMPENSATED`.
pub fn resolved_as(outcome: ResolveOutcome) -> &'static str {
    short(outcome.as_str_name(), "RESOLVE_OUTCOME_")
}

/// `orderId=123,region=eu`, sorted by key; empty when there are none.
pub fn labels(labels: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort_unstable();
    pairs.join(",")
}

/// `STEP_SUCCEEDED` for `EVENT_KIND_STEP_SUCCEEDED`.
pub fn event_kind(kind: EventKind) -> &'static str {
    short(kind.as_str_name(), "EVENT_KIND_")
}

fn short(name: &'static str, prefix: &str) -> &'static str {
    name.strip_prefix(prefix).unwrap_or(name)
}

/// A protobuf timestamp as a chrono time.
pub fn time(timestamp: Option<&Timestamp>) -> Option<DateTime<Utc>> {
    timestamp.and_then(saga_proto::to_datetime)
}

/// RFC 3339 with milliseconds, or `-` when unset.
pub fn timestamp(timestamp: Option<&Timestamp>) -> String {
    time(timestamp).map_or_else(
        || "-".to_owned(),
        |t| t.to_rfc3339_opts(SecondsFormat::Millis, true),
    )
}

/// `end - start`: `12ms`, `3.09s`, `2m5s`; empty when either end is unset.
pub fn duration(start: Option<&Timestamp>, end: Option<&Timestamp>) -> String {
    let (Some(start), Some(end)) = (time(start), time(end)) else {
        return String::new();
    };
    elapsed((end - start).to_std().unwrap_or_default())
}

/// `12ms`, `3.09s`, `2m5s`: one word.
pub fn elapsed(elapsed: Duration) -> String {
    if elapsed < Duration::from_secs(1) {
        format!("{}ms", elapsed.as_millis())
    } else if elapsed < Duration::from_secs(60) {
        format!("{:.2}s", elapsed.as_secs_f64())
    } else {
        whole_seconds(elapsed)
    }
}

/// How long ago `since` was, to the second: `3m12s`.
pub fn age(since: Option<&Timestamp>, now: DateTime<Utc>) -> String {
    time(since).map_or_else(String::new, |t| {
        whole_seconds((now - t).to_std().unwrap_or_default())
    })
}

/// `1h2m3s`: one word, so that a table column never splits.
fn whole_seconds(elapsed: Duration) -> String {
    humantime::format_duration(Duration::from_secs(elapsed.as_secs()))
        .to_string()
        .replace(' ', "")
}

/// The saga's outcome line: `COMPENSATED (STEP_FAILED: ...)`.
pub fn outcome(saga: &Saga) -> String {
    let status = saga_status(saga.status());
    match (reason(saga.failure_reason()), saga.failure_message.as_str()) {
        ("", _) => status.to_owned(),
        (reason, "") => format!("{status} ({reason})"),
        (reason, message) => format!("{status} ({reason}: {})", crate::exit::one_line(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, nanos: i32) -> Timestamp {
        Timestamp { seconds, nanos }
    }

    #[test]
    fn names_lose_their_enum_prefix() {
        assert_eq!(saga_status(SagaStatus::Compensated), "COMPENSATED");
        assert_eq!(step_status(StepStatus::Succeeded), "SUCCEEDED");
        assert_eq!(reason(FailureReason::StepFailed), "STEP_FAILED");
        assert_eq!(reason(FailureReason::Unspecified), "");
        assert_eq!(event_kind(EventKind::SagaClaimed), "SAGA_CLAIMED");
        assert_eq!(resolved_as(ResolveOutcome::Succeeded), "SUCCEEDED");
        assert_eq!(stuck_reason(StuckReason::Unclaimed), "UNCLAIMED");
    }

    #[test]
    fn labels_print_sorted_as_one_word() {
        let given = HashMap::from([
            ("region".to_owned(), "eu".to_owned()),
            ("orderId".to_owned(), "123".to_owned()),
        ]);
        assert_eq!(labels(&given), "orderId=123,region=eu");
        assert_eq!(labels(&HashMap::new()), "");
    }

    #[test]
    fn durations_and_ages_are_one_word_each() {
        assert_eq!(
            duration(Some(&at(10, 0)), Some(&at(11, 254_400_000))),
            "1.25s"
        );
        assert_eq!(duration(Some(&at(10, 0)), Some(&at(10, 7_900_000))), "7ms");
        assert_eq!(duration(Some(&at(10, 0)), Some(&at(135, 0))), "2m5s");
        assert_eq!(duration(Some(&at(10, 0)), None), "");
        let now = DateTime::from_timestamp(200, 900_000_000).unwrap();
        assert_eq!(age(Some(&at(8, 0)), now), "3m12s");
        assert_eq!(
            timestamp(Some(&at(0, 5_000_000))),
            "1970-01-01T00:00:00.005Z"
        );
        assert_eq!(timestamp(None), "-");
    }
}
