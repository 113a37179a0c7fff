//! `sagactl show ID` (the saga and its steps) and `sagactl history ID` (its events).

use comfy_table::Table;
use saga_proto::v1::{
    ErrorKind, FailureReason, GetSagaHistoryRequest, GetStatusRequest, HistoryEvent, Saga,
};

use crate::cli::Output;
use crate::connect::Client;
use crate::exit::{Failure, Outcome, one_line};
use crate::json;
use crate::render::{duration, event_kind, outcome, reason, step_status, table, timestamp};

/// Prints the saga: a block of its fields, then a table of its steps.
pub async fn show(client: &mut Client, saga_id: &str, output: Output) -> Result<Outcome, Failure> {
    let response = client
        .get_status(GetStatusRequest {
            saga_id: saga_id.to_owned(),
        })
        .await?
        .into_inner();
    if json::printed(output, &response)? {
        return Ok(Outcome::Done);
    }
    let saga = response
        .saga
        .ok_or_else(|| Failure::Rpc(tonic::Status::internal("GetStatus answered no saga")))?;
    println!("{}", summary(&saga));
    println!();
    println!("{}", steps(&saga).trim_fmt());
    Ok(Outcome::Done)
}

/// The saga's fields, one per line: name, then value.
fn summary(saga: &Saga) -> String {
    let state = saga
        .state
        .clone()
        .map(|state| serde_json::Value::Object(saga_proto::struct_to_json(state)).to_string())
        .unwrap_or_default();
    let dash = |text: &str| {
        if text.is_empty() {
            "-".to_owned()
        } else {
            text.to_owned()
        }
    };
    let fields = [
        ("saga", saga.saga_id.clone()),
        (
            "type",
            format!("{} v{}", saga.saga_type, saga.definition_version),
        ),
        ("status", outcome(saga)),
        ("current step", dash(&saga.current_step)),
        ("idempotency key", dash(&saga.idempotency_key)),
        ("created", timestamp(saga.created_at.as_ref())),
        ("updated", timestamp(saga.updated_at.as_ref())),
        ("finished", timestamp(saga.finished_at.as_ref())),
        ("revision", saga.revision.to_string()),
        ("state", state),
    ];
    fields
        .iter()
        .map(|(name, value)| format!("{name:<16} {value}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A row per step: status, attempts, how long it took, the last error.
fn steps(saga: &Saga) -> Table {
    let mut rows = table([
        "#",
        "STEP",
        "PARTICIPANT",
        "STATUS",
        "ATTEMPTS",
        "COMPENSATIONS",
        "DURATION",
        "LAST ERROR",
    ]);
    for step in &saga.steps {
        rows.add_row([
            step.index.to_string(),
            step.name.clone(),
            step.participant.clone(),
            step_status(step.status()).to_owned(),
            step.attempts.to_string(),
            step.compensation_attempts.to_string(),
            duration(step.started_at.as_ref(), step.finished_at.as_ref()),
            one_line(&step.last_error),
        ]);
    }
    rows
}

/// Prints the saga's events, one line each, oldest first.
pub async fn history(
    client: &mut Client,
    saga_id: &str,
    output: Output,
) -> Result<Outcome, Failure> {
    let response = client
        .get_saga_history(GetSagaHistoryRequest {
            saga_id: saga_id.to_owned(),
        })
        .await?
        .into_inner();
    if json::printed(output, &response)? {
        return Ok(Outcome::Done);
    }
    for event in &response.events {
        println!("{}", event_line(event));
    }
    Ok(Outcome::Done)
}

/// `<time> <KIND> <step> key=value...`, with only the fields the event has.
fn event_line(event: &HistoryEvent) -> String {
    let mut line = format!(
        "{} {:<22}",
        timestamp(event.recorded_at.as_ref()),
        event_kind(event.kind())
    );
    let mut field = |text: String| {
        line.push(' ');
        line.push_str(&text);
    };
    if !event.step.is_empty() {
        field(event.step.clone());
    }
    if event.attempt > 0 {
        field(format!("attempt={}", event.attempt));
    }
    if event.error_kind() != ErrorKind::Unspecified {
        let kind = event.error_kind().as_str_name();
        field(format!(
            "error_kind={}",
            kind.trim_start_matches("ERROR_KIND_")
        ));
    }
    if event.retry_at.is_some() {
        field(format!("retry_at={}", timestamp(event.retry_at.as_ref())));
    }
    if event.failure_reason() != FailureReason::Unspecified {
        field(format!("reason={}", reason(event.failure_reason())));
    }
    if !event.instance.is_empty() {
        field(format!("instance={} epoch={}", event.instance, event.epoch));
    }
    if !event.operator_reason.is_empty() {
        field(format!(
            "operator_reason={:?}",
            one_line(&event.operator_reason)
        ));
    }
    if !event.error.is_empty() {
        field(format!("error={:?}", one_line(&event.error)));
    }
    line.trim_end().to_owned()
}
