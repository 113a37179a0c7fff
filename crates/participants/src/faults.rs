//! Fault injection for tests and demos: the saga payload names the steps that should misbehave.
//!
//! ```json
//! {"faults": {"ALLOCATE_DEVICE": "refuse", "CREATE_ORDER:compensate": "unavailable:2"}}
//! ```
//! The key is a step name (its execute) or `STEP:compensate` (its compensation). Modes: `refuse`
//! (FAILED_PRECONDITION), `unavailable` (UNAVAILABLE on every attempt), `unavailable:N` (UNAVAILABLE
//! for attempts 1..=N, then normal) and `hang` (never answer; the caller's deadline ends the call).
//!
//! Faults are checked in front of the SDK's barrier so that an injected failure records nothing: a
//! later attempt without the fault runs the step for real.

use std::str::FromStr;

use prost_types::value::Kind;
use saga_proto::v1::saga_participant_server::SagaParticipant;
use saga_proto::v1::{StepRequest, StepResponse};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::info;

/// The payload field holding the faults.
const FAULTS_FIELD: &str = "faults";

/// A [`SagaParticipant`] that applies the payload's faults before delegating to `inner`.
pub(crate) struct FaultInjection<S> {
    inner: S,
    /// Ends `hang` faults on shutdown, so a hanging call without a deadline cannot block the drain.
    shutdown: CancellationToken,
}

impl<S> FaultInjection<S> {
    pub(crate) fn new(inner: S, shutdown: CancellationToken) -> Self {
        Self { inner, shutdown }
    }

    async fn inject(&self, request: &StepRequest, direction: Direction) -> Result<(), Status> {
        let Some(fault) = fault_for(request, direction)? else {
            return Ok(());
        };
        if !fault.fails_attempt(request.attempt) {
            return Ok(());
        }
        info!(
            saga_id = %request.saga_id,
            step = %request.step,
            direction = direction.as_str(),
            attempt = request.attempt,
            ?fault,
            "injecting fault"
        );
        match fault {
            Fault::Refuse => Err(Status::failed_precondition("injected fault: refuse")),
            Fault::Unavailable { .. } => Err(Status::unavailable("injected fault: unavailable")),
            Fault::Hang => {
                self.shutdown.cancelled().await;
                Err(Status::unavailable(
                    "injected fault: hang ended by shutdown",
                ))
            }
        }
    }
}

#[tonic::async_trait]
impl<S: SagaParticipant> SagaParticipant for FaultInjection<S> {
    async fn execute(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResponse>, Status> {
        self.inject(request.get_ref(), Direction::Execute).await?;
        self.inner.execute(request).await
    }

    async fn compensate(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResponse>, Status> {
        self.inject(request.get_ref(), Direction::Compensate)
            .await?;
        self.inner.compensate(request).await
    }
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Execute,
    Compensate,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Execute => "execute",
            Direction::Compensate => "compensate",
        }
    }
}

/// How a step misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Refuse,
    /// `None`: every attempt fails; `Some(n)`: attempts 1..=n fail.
    Unavailable {
        failing_attempts: Option<u32>,
    },
    Hang,
}

impl Fault {
    fn fails_attempt(self, attempt: u32) -> bool {
        match self {
            Fault::Unavailable {
                failing_attempts: Some(n),
            } => attempt <= n,
            Fault::Refuse | Fault::Unavailable { .. } | Fault::Hang => true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("expected refuse, unavailable, unavailable:N or hang")]
struct UnknownFault;

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(mode: &str) -> Result<Self, Self::Err> {
        match mode {
            "refuse" => Ok(Fault::Refuse),
            "unavailable" => Ok(Fault::Unavailable {
                failing_attempts: None,
            }),
            "hang" => Ok(Fault::Hang),
            _ => {
                let attempts = mode.strip_prefix("unavailable:").ok_or(UnknownFault)?;
                let attempts = attempts.parse().map_err(|_| UnknownFault)?;
                Ok(Fault::Unavailable {
                    failing_attempts: Some(attempts),
                })
            }
        }
    }
}

/// The fault the payload sets for this step and direction, if any. A malformed `faults` field is the
/// caller's mistake and refused as such rather than silently ignored.
fn fault_for(request: &StepRequest, direction: Direction) -> Result<Option<Fault>, Status> {
    let Some(faults) = request
        .payload
        .as_ref()
        .and_then(|payload| payload.fields.get(FAULTS_FIELD))
    else {
        return Ok(None);
    };
    let Some(Kind::StructValue(faults)) = &faults.kind else {
        return Err(Status::invalid_argument(
            "payload field faults must be an object",
        ));
    };
    let key = match direction {
        Direction::Execute => request.step.clone(),
        Direction::Compensate => format!("{}:compensate", request.step),
    };
    let Some(mode) = faults.fields.get(&key) else {
        return Ok(None);
    };
    let Some(Kind::StringValue(mode)) = &mode.kind else {
        return Err(Status::invalid_argument(format!(
            "fault for {key} must be a string"
        )));
    };
    mode.parse()
        .map(Some)
        .map_err(|err| Status::invalid_argument(format!("invalid fault {mode:?} for {key}: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use saga_proto::json_to_struct;
    use serde_json::{Value, json};
    use tonic::Code;

    fn request(step: &str, payload: Value) -> StepRequest {
        let Value::Object(payload) = payload else {
            panic!("payload must be an object")
        };
        StepRequest {
            step: step.to_owned(),
            payload: Some(json_to_struct(payload)),
            ..StepRequest::default()
        }
    }

    #[test]
    fn parses_every_mode() {
        assert_eq!("refuse".parse::<Fault>().ok(), Some(Fault::Refuse));
        assert_eq!("hang".parse::<Fault>().ok(), Some(Fault::Hang));
        assert_eq!(
            "unavailable".parse::<Fault>().ok(),
            Some(Fault::Unavailable {
                failing_attempts: None
            })
        );
        assert_eq!(
            "unavailable:3".parse::<Fault>().ok(),
            Some(Fault::Unavailable {
                failing_attempts: Some(3)
            })
        );
        for bad in ["", "explode", "unavailable:", "unavailable:-1", "refuse:2"] {
            assert!(bad.parse::<Fault>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn a_bounded_unavailable_fails_only_the_first_attempts() {
        let fault = Fault::Unavailable {
            failing_attempts: Some(2),
        };
        assert!(fault.fails_attempt(1));
        assert!(fault.fails_attempt(2));
        assert!(!fault.fails_attempt(3));
        assert!(Fault::Refuse.fails_attempt(9));
    }

    #[test]
    fn the_key_selects_the_step_and_direction() {
        let payload = json!({"faults": {"CHARGE": "refuse", "CHARGE:compensate": "hang"}});
        let charge = request("CHARGE", payload.clone());
        assert_eq!(
            fault_for(&charge, Direction::Execute).ok(),
            Some(Some(Fault::Refuse))
        );
        assert_eq!(
            fault_for(&charge, Direction::Compensate).ok(),
            Some(Some(Fault::Hang))
        );
        let other = request("ALLOCATE_DEVICE", payload);
        assert_eq!(fault_for(&other, Direction::Execute).ok(), Some(None));
        assert_eq!(
            fault_for(&request("CHARGE", json!({})), Direction::Execute).ok(),
            Some(None)
        );
    }

    #[test]
    fn malformed_faults_are_invalid_arguments() {
        for payload in [
            json!({"faults": "refuse"}),
            json!({"faults": {"CHARGE": 1}}),
            json!({"faults": {"CHARGE": "explode"}}),
        ] {
            let status =
                fault_for(&request("CHARGE", payload), Direction::Execute).expect_err("malformed");
            assert_eq!(status.code(), Code::InvalidArgument);
        }
    }
}
