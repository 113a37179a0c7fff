//! The participant under test: where it listens, which action and compensation to drive, with which
//! payloads; and the command-line arguments that describe it (shared with any CLI that embeds the checks).

use std::time::Duration;

use serde_json::{Map, Value};

/// What to check: one action of one participant and its compensation.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The participant's gRPC endpoint, e.g. `http://127.0.0.1:50061`.
    pub endpoint: String,
    /// The forward action, as a saga definition names it (`CreateOrder`).
    pub action: String,
    /// Its compensating action (`CancelOrder`).
    pub compensate: String,
    /// A saga state the action accepts: every check that needs a success sends it.
    pub payload: Map<String, Value>,
    /// A saga state the action must refuse, if the participant has one.
    pub refusal_payload: Option<Map<String, Value>>,
    /// The step name sent with every call; each check uses a fresh saga id, so rows never collide.
    pub step: String,
    /// The saga type sent with every call.
    pub saga_type: String,
    /// Deadline of each call.
    pub timeout: Duration,
    /// How many duplicates the concurrency checks send at once.
    pub concurrency: usize,
}

/// The arguments describing a [`Target`], for `saga-conformance` and any CLI that embeds the checks
/// (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The participant's gRPC address, e.g. http://127.0.0.1:50061 (http:// is assumed when missing).
    #[arg(long)]
    pub addr: String,
    /// The forward action to check, e.g. CreateOrder.
    #[arg(long)]
    pub action: String,
    /// The action's compensation, e.g. CancelOrder.
    #[arg(long)]
    pub compensate: String,
    /// A saga state (JSON object) the action accepts, e.g. '{"userId":"u1","planId":"pro"}'.
    #[arg(long)]
    pub payload: String,
    /// A saga state (JSON object) the action must refuse; without it the refusal check is skipped.
    #[arg(long)]
    pub refusal_payload: Option<String>,
    /// Step name sent with every call.
    #[arg(long, default_value = "CONFORMANCE_CHECK")]
    pub step: String,
    /// Saga type sent with every call.
    #[arg(long, default_value = "conformance")]
    pub saga_type: String,
    /// Deadline of each call (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Duplicates sent at once by the concurrency checks.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(2..=256))]
    pub concurrency: u16,
}

/// An argument that does not describe a target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// A payload argument is not JSON.
    #[error("--{flag} is not valid JSON")]
    Json {
        /// Which flag.
        flag: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A payload argument is JSON but not an object.
    #[error("--{flag} must be a JSON object (a saga state), not {found}")]
    NotAnObject {
        /// Which flag.
        flag: &'static str,
        /// What it was instead.
        found: &'static str,
    },
}

impl TryFrom<TargetArgs> for Target {
    type Error = TargetError;

    fn try_from(args: TargetArgs) -> Result<Self, Self::Error> {
        let endpoint = if args.addr.contains("://") {
            args.addr
        } else {
            format!("http://{}", args.addr)
        };
        Ok(Self {
            endpoint,
            action: args.action,
            compensate: args.compensate,
            payload: object("payload", &args.payload)?,
            refusal_payload: args
                .refusal_payload
                .map(|text| object("refusal-payload", &text))
                .transpose()?,
            step: args.step,
            saga_type: args.saga_type,
            timeout: args.timeout,
            concurrency: usize::from(args.concurrency),
        })
    }
}

fn object(flag: &'static str, text: &str) -> Result<Map<String, Value>, TargetError> {
    match serde_json::from_str(text).map_err(|source| TargetError::Json { flag, source })? {
        Value::Object(map) => Ok(map),
        other => Err(TargetError::NotAnObject {
            flag,
            found: match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        target: TargetArgs,
    }

    fn parse(args: &[&str]) -> Result<Target, TargetError> {
        let mut argv = vec!["saga-conformance"];
        argv.extend_from_slice(args);
        Target::try_from(Cli::parse_from(argv).target)
    }

    const REQUIRED: [&str; 6] = [
        "--addr",
        "127.0.0.1:50061",
        "--action",
        "CreateOrder",
        "--compensate",
        "CancelOrder",
    ];

    #[test]
    fn an_address_without_a_scheme_is_plain_http_and_defaults_fill_the_rest() {
        let mut args = REQUIRED.to_vec();
        args.extend(["--payload", r#"{"userId":"u1"}"#]);
        let target = parse(&args).expect("valid");
        assert_eq!(target.endpoint, "http://127.0.0.1:50061");
        assert_eq!(target.payload["userId"], "u1");
        assert_eq!(target.refusal_payload, None);
        assert_eq!(target.step, "CONFORMANCE_CHECK");
        assert_eq!(target.timeout, Duration::from_secs(10));
        assert_eq!(target.concurrency, 8);
    }

    #[test]
    fn payloads_must_be_json_objects() {
        let mut args = REQUIRED.to_vec();
        args.extend(["--payload", "[1]"]);
        let err = parse(&args).expect_err("array");
        assert_eq!(
            err.to_string(),
            "--payload must be a JSON object (a saga state), not an array"
        );

        let mut args = REQUIRED.to_vec();
        args.extend(["--payload", "{}", "--refusal-payload", "{nope"]);
        let err = parse(&args).expect_err("not json");
        assert_eq!(err.to_string(), "--refusal-payload is not valid JSON");
    }
}
