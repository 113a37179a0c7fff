//! Command-line arguments: connection and output options shared by every subcommand, then one
//! subcommand per operation.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use saga_proto::v1::SagaStatus;
use serde_json::{Map, Value};

use crate::exit;

/// Operate sagad: start sagas, list and inspect them, follow one live, abort or retry it.
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
    /// Start a saga; with --wait, follow it until it ends (the exit code says how).
    Start(StartArgs),
    /// List sagas, newest first: id, type, status, failure reason, current step, age.
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
    /// At most this many sagas.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Every matching saga, however many pages that takes (instead of --limit).
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
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
    fn a_payload_must_be_a_json_object() {
        assert!(json_object(r#"{"a":1}"#).is_ok());
        assert!(json_object("[1]").unwrap_err().contains("object"));
        assert!(json_object("{").unwrap_err().starts_with("not JSON"));
    }
}
