//! Command-line arguments: connection and output options shared by every subcommand, then one
//! subcommand per operation.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use saga_conformance::TargetArgs;
use saga_proto::v1::{ResolveOutcome, SagaStatus};
use serde_json::{Map, Value};

use crate::exit;

/// Operate sagad: start sagas, list and inspect them, follow one live, abort, retry or resolve it; and
/// check a participant against the participant contract.
#[derive(Debug, Parser)]
#[command(name = "sagactl", version, after_help = exit::HELP)]
pub struct Cli {
    /// How to reach sagad.
    #[command(flatten)]
    pub connection: Connection,
    /// `table` for people; `json` prints each answer as the proto message in JSON, as grpcurl does.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table, env = "SAGACTL_OUTPUT")]
    pub output: Output,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Tables and lines for people.
    Table,
    /// The proto messages as JSON (lowerCamelCase fields, enum names, defaults left out).
    Json,
}

/// sagad's address and the credentials to present.
#[derive(Debug, Args)]
pub struct Connection {
    /// sagad's gRPC address; `https://` connects with TLS.
    #[arg(
        long,
        global = true,
        env = "SAGACTL_ADDR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub addr: String,
    /// PEM file of the CA that signed sagad's certificate (https only; default: the system's roots).
    #[arg(long, global = true, env = "SAGACTL_CA_CERT", value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate, for a sagad that requires mutual TLS (with --client-key).
    #[arg(long, global = true, env = "SAGACTL_CLIENT_CERT", value_name = "FILE")]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, global = true, env = "SAGACTL_CLIENT_KEY", value_name = "FILE")]
    pub client_key: Option<PathBuf>,
    /// Name sagad's certificate must carry, when it is not the address's host (e.g. behind a
    /// port-forward to localhost).
    #[arg(
        long,
        global = true,
        env = "SAGACTL_TLS_SERVER_NAME",
        value_name = "NAME"
    )]
    pub tls_server_name: Option<String>,
    /// Bearer token, sent as `authorization: Bearer <token>` with every call.
    #[arg(long, global = true, env = "SAGACTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The operations.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Operations on sagad's API.
    #[command(flatten)]
    Sagad(SagadCommand),
    /// Check a running participant against the participant contract (the saga-conformance checks,
    /// over gRPC; sagad is not involved). Exit code 9 when a check fails.
    Conform(ConformArgs),
}

/// The operations that talk to sagad.
#[derive(Debug, Subcommand)]
pub enum SagadCommand {
    /// Start a saga; with --wait, follow it until it ends (the exit code says how).
    Start(StartArgs),
    /// List sagas, newest first: id, type, status, failure reason, current step, age, labels.
    List(ListArgs),
    /// Show one saga: its status, state and a table of its steps.
    Show(SagaRef),
    /// Print a saga's history, one line per event, oldest first.
    History(SagaRef),
    /// Follow a saga live until it ends; the exit code says how it ended.
    Watch(WatchArgs),
    /// Stop a running saga and compensate what it did (before its pivot only).
    Abort(OperatorArgs),
    /// Resume a saga parked in FAILED where it stopped, with fresh attempts.
    Retry(OperatorArgs),
    /// Record the step a parked saga stopped at as done by hand, and let the saga go on from there.
    Resolve(ResolveArgs),
    /// Statistics of a time window: sagas by type and outcome, success and compensation rates,
    /// durations, the top failure reasons, the parked count and the stuck sagas.
    Stats(StatsArgs),
}

/// `sagactl start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The saga definition's name, e.g. purchase_plan.
    #[arg(value_name = "TYPE")]
    pub saga_type: String,
    /// The start payload, a JSON object.
    #[arg(long, value_name = "JSON", value_parser = json_object)]
    pub payload: Map<String, Value>,
    /// Idempotency key: a repeat with the same key and type returns the first saga.
    #[arg(long, value_name = "K")]
    pub key: Option<String>,
    /// Follow the saga until it ends, for at most this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub wait: Option<Duration>,
    /// A business key to find the saga by later (`list --label`), e.g. orderId=123; repeat for several.
    #[arg(long = "label", value_name = "K=V", value_parser = key_value)]
    pub labels: Vec<(String, String)>,
}

/// `sagactl list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only sagas in this status; repeat for several.
    #[arg(long, value_enum, value_name = "STATUS")]
    pub status: Vec<StatusArg>,
    /// Only sagas of this type.
    #[arg(long = "type", value_name = "TYPE")]
    pub saga_type: Option<String>,
    /// Only sagas created within this long (e.g. 1h, 2days).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Only sagas started with this label, e.g. orderId=123.
    #[arg(long, value_name = "K=V", value_parser = key_value)]
    pub label: Option<(String, String)>,
    /// At most this many sagas.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Every matching saga, however many pages that takes (instead of --limit).
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
}

/// `sagactl stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Sagas that finished (or started) within this long (e.g. 15m, 1h, 7days; at most 30 days).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub window: Duration,
    /// Only sagas of this type.
    #[arg(long = "type", value_name = "TYPE")]
    pub saga_type: Option<String>,
    /// An active saga started this long ago counts as stuck (sagad's default: 10m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub stuck_after: Option<Duration>,
    /// An active saga nobody claimed for this long counts as stuck (sagad's default: 1m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub unclaimed_after: Option<Duration>,
    /// At most this many failure reasons and stuck sagas (sagad's default: 10; at most 100).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
}

/// A saga status as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    /// Executing steps forward.
    Running,
    /// Undoing completed steps.
    Compensating,
    /// Every step succeeded.
    Completed,
    /// Every completed step was compensated.
    Compensated,
    /// Parked for an operator.
    Failed,
}

impl From<StatusArg> for SagaStatus {
    fn from(status: StatusArg) -> Self {
        match status {
            StatusArg::Running => Self::Running,
            StatusArg::Compensating => Self::Compensating,
            StatusArg::Completed => Self::Completed,
            StatusArg::Compensated => Self::Compensated,
            StatusArg::Failed => Self::Failed,
        }
    }
}

/// A command about one saga.
#[derive(Debug, Args)]
pub struct SagaRef {
    /// The saga's id.
    #[arg(value_name = "ID")]
    pub id: String,
}

/// `sagactl watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The saga's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Give up after this long (exit code 8) instead of waiting for the end.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub timeout: Option<Duration>,
}

/// `sagactl abort` and `sagactl retry`.
#[derive(Debug, Args)]
pub struct OperatorArgs {
    /// The saga's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// Why, for the saga's history.
    #[arg(long, value_name = "R")]
    pub reason: String,
}

/// `sagactl resolve`.
#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The saga's id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The step the saga is parked at.
    #[arg(long, value_name = "STEP")]
    pub step: String,
    /// What the step's work came to, done by hand.
    #[arg(long, value_enum)]
    pub outcome: OutcomeArg,
    /// What was done by hand, for the saga's history.
    #[arg(long, value_name = "N")]
    pub note: String,
    /// Why, for the saga's history.
    #[arg(long, value_name = "R")]
    pub reason: String,
}

/// What a step done by hand now counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    /// Its compensation was done by hand (a saga parked COMPENSATION_FAILED).
    Compensated,
    /// Its forward action was done by hand (a saga parked FORWARD_FAILED).
    Succeeded,
}

impl From<OutcomeArg> for ResolveOutcome {
    fn from(outcome: OutcomeArg) -> Self {
        match outcome {
            OutcomeArg::Compensated => Self::Compensated,
            OutcomeArg::Succeeded => Self::Succeeded,
        }
    }
}

/// `sagactl conform`: the participant to check, as `saga-conformance` takes it. Its `--addr` is the
/// participant's, not sagad's.
#[derive(Debug, Args)]
pub struct ConformArgs {
    /// The participant and what to send it.
    #[command(flatten)]
    pub target: TargetArgs,
}

/// Parses `K=V` (`--label`): a key before the first `=`, a value after it.
fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!(
            "expected KEY=VALUE, e.g. orderId=123, not {text:?}"
        )),
    }
}

/// Parses `--payload`: JSON, and an object (sagad refuses anything else).
fn json_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the payload must be a JSON object, e.g. '{\"userId\":\"u1\"}'".to_owned()),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn labels_are_key_equals_value() {
        assert_eq!(
            key_value("orderId=12=3"),
            Ok(("orderId".to_owned(), "12=3".to_owned()))
        );
        assert_eq!(key_value("note="), Ok(("note".to_owned(), String::new())));
        assert!(key_value("=1").unwrap_err().contains("KEY=VALUE"));
        assert!(key_value("orderId").is_err());
    }

    #[test]
    fn conform_takes_the_participant_address_and_sagad_keeps_its_own() {
        let cli = Cli::parse_from([
            "sagactl",
            "conform",
            "--addr",
            "127.0.0.1:50061",
            "--action",
            "CreateOrder",
            "--compensate",
            "CancelOrder",
            "--payload",
            "{}",
        ]);
        let Command::Conform(args) = cli.command else {
            panic!("conform parsed as {:?}", cli.command)
        };
        assert_eq!(args.target.addr, "127.0.0.1:50061");
        let cli = Cli::parse_from(["sagactl", "--addr", "http://sagad:50051", "list"]);
        assert_eq!(cli.connection.addr, "http://sagad:50051");
    }

    #[test]
    fn a_payload_must_be_a_json_object() {
        assert!(json_object(r#"{"a":1}"#).is_ok());
        assert!(json_object("[1]").unwrap_err().contains("object"));
        assert!(json_object("{").unwrap_err().starts_with("not JSON"));
    }
}
