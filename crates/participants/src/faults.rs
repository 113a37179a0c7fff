//! Fault injection for tests, benchmarks and demos: the saga payload names the steps that misbehave.
//!
//! ```json
//! {"faults": {"ALLOCATE_DEVICE": "refuse", "CREATE_ORDER:compensate": "unavailable:2"}}
//! ```
//! The key is a step name (its execute) or `STEP:compensate` (its compensation). Modes:
//! - `refuse`: FAILED_PRECONDITION, a definite refusal;
//! - `unavailable`: UNAVAILABLE, the step not run;
//! - `hang`: no answer at all; the caller's deadline ends the call, the step not run;
//! - `apply-then-fail`: the step runs for real through the barrier and commits, then the answer is
//!   replaced by UNAVAILABLE, as when a reply is lost; the retry is absorbed by the barrier;
//! - `delay:<duration>` (e.g. `delay:200ms`): waits, then runs the step normally;
//! - `late:<duration>` (e.g. `late:3s`): runs the step for real (it commits), then waits before
//!   answering, like a payment channel that accepted a request and answers late: past the caller's
//!   deadline the caller sees DEADLINE_EXCEEDED although the step happened, and a retry gets the first
//!   answer from the barrier, late again.
//!
//! `unavailable`, `hang` and `apply-then-fail` hit every attempt, or with `:N` (e.g. `hang:1`) only
//! attempts 1..=N; `refuse`, `delay` and `late` hit every attempt.
//!
//! Faults that skip the step sit in front of the SDK's barrier so that they record nothing: a later
//! attempt without the fault runs the step for real.

use std::str::FromStr;
use std::time::Duration;

use prost_types::value::Kind;
use saga_participant::Direction;
use saga_proto::v1::saga_participant_server::SagaParticipant;
use saga_proto::v1::{StepRequest, StepResponse};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::info;

/// The payload field holding the faults.
const FAULTS_FIELD: &str = "faults";

/// A [`SagaParticipant`] that applies the payload's faults around `inner`.
pub(crate) struct FaultInjection<S> {
    inner: S,
    /// Ends `hang` and `delay` faults on shutdown, so a call without a deadline cannot block the drain.
    shutdown: CancellationToken,
}

impl<S: SagaParticipant> FaultInjection<S> {
    pub(crate) fn new(inner: S, shutdown: CancellationToken) -> Self {
        Self { inner, shutdown }
    }

    async fn call(
        &self,
        request: Request<StepRequest>,
        direction: Direction,
    ) -> Result<Response<StepResponse>, Status> {
        let fault = fault_for(request.get_ref(), direction)?
            .filter(|fault| fault.hits_attempt(request.get_ref().attempt));
        let Some(fault) = fault else {
            return self.forward(request, direction).await;
        };
        let step = request.get_ref();
        info!(
            saga_id = %step.saga_id,
            step = %step.step,
            direction = direction.as_str(),
            attempt = step.attempt,
            ?fault,
            "injecting fault"
        );
        match fault {
            Fault::Refuse => Err(Status::failed_precondition("injected fault: refuse")),
            Fault::Unavailable(_) => Err(Status::unavailable("injected fault: unavailable")),
            Fault::Hang(_) => {
                self.shutdown.cancelled().await;
                Err(Status::unavailable(
                    "injected fault: hang ended by shutdown",
                ))
            }
            Fault::Delay(delay) => {
                tokio::select! {
                    () = tokio::time::sleep(delay) => self.forward(request, direction).await,
                    () = self.shutdown.cancelled() => Err(Status::unavailable(
                        "injected fault: delay ended by shutdown",
                    )),
                }
            }
            Fault::ApplyThenFail(_) => {
                let answer = self.forward(request, direction).await;
                info!(applied = answer.is_ok(), "dropping the step's answer");
                Err(Status::unavailable(
                    "injected fault: apply-then-fail, the step ran and its answer was dropped",
                ))
            }
            Fault::Late(wait) => {
                let answer = self.forward(request, direction).await;
                // On shutdown the answer goes out at once: the step has happened either way.
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = self.shutdown.cancelled() => {}
                }
                answer
            }
        }
    }

    async fn forward(
        &self,
        request: Request<StepRequest>,
        direction: Direction,
    ) -> Result<Response<StepResponse>, Status> {
        match direction {
            Direction::Execute => self.inner.execute(request).await,
            Direction::Compensate => self.inner.compensate(request).await,
        }
    }
}

#[tonic::async_trait]
impl<S: SagaParticipant> SagaParticipant for FaultInjection<S> {
    async fn execute(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResponse>, Status> {
        self.call(request, Direction::Execute).await
    }

    async fn compensate(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResponse>, Status> {
        self.call(request, Direction::Compensate).await
    }
}

/// Which attempts a fault hits: `None` every attempt, `Some(n)` attempts 1..=n.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attempts(Option<u32>);

/// How a step misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Refuse,
    Unavailable(Attempts),
    Hang(Attempts),
    ApplyThenFail(Attempts),
    Delay(Duration),
    Late(Duration),
}

impl Fault {
    fn hits_attempt(self, attempt: u32) -> bool {
        match self {
            Fault::Unavailable(Attempts(Some(n)))
            | Fault::Hang(Attempts(Some(n)))
            | Fault::ApplyThenFail(Attempts(Some(n))) => attempt <= n,
            Fault::Refuse
            | Fault::Delay(_)
            | Fault::Late(_)
            | Fault::Unavailable(_)
            | Fault::Hang(_)
            | Fault::ApplyThenFail(_) => true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "expected refuse, unavailable[:N], hang[:N], apply-then-fail[:N], delay:<duration> or late:<duration> (e.g. delay:200ms)"
)]
struct UnknownFault;

impl FromStr for Fault {
    type Err = UnknownFault;

    fn from_str(mode: &str) -> Result<Self, Self::Err> {
        let (name, argument) = match mode.split_once(':') {
            Some((name, argument)) => (name, Some(argument)),
            None => (mode, None),
        };
        let attempts = || match argument {
            None => Ok(Attempts(None)),
            Some(n) => n
                .parse()
                .map(|n| Attempts(Some(n)))
                .map_err(|_| UnknownFault),
        };
        match (name, argument) {
            ("refuse", None) => Ok(Fault::Refuse),
            ("unavailable", _) => attempts().map(Fault::Unavailable),
            ("hang", _) => attempts().map(Fault::Hang),
            ("apply-then-fail", _) => attempts().map(Fault::ApplyThenFail),
            ("delay", Some(delay)) => humantime::parse_duration(delay)
                .map(Fault::Delay)
                .map_err(|_| UnknownFault),
            ("late", Some(wait)) => humantime::parse_duration(wait)
                .map(Fault::Late)
                .map_err(|_| UnknownFault),
            _ => Err(UnknownFault),
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
        let cases = [
            ("refuse", Fault::Refuse),
            ("unavailable", Fault::Unavailable(Attempts(None))),
            ("unavailable:3", Fault::Unavailable(Attempts(Some(3)))),
            ("hang", Fault::Hang(Attempts(None))),
            ("hang:1", Fault::Hang(Attempts(Some(1)))),
            ("apply-then-fail", Fault::ApplyThenFail(Attempts(None))),
            ("apply-then-fail:2", Fault::ApplyThenFail(Attempts(Some(2)))),
            ("delay:200ms", Fault::Delay(Duration::from_millis(200))),
            ("delay:1s", Fault::Delay(Duration::from_secs(1))),
            ("late:3s", Fault::Late(Duration::from_secs(3))),
        ];
        for (mode, fault) in cases {
            assert_eq!(mode.parse::<Fault>().ok(), Some(fault), "{mode}");
        }
        for bad in [
            "",
            "explode",
            "unavailable:",
            "unavailable:-1",
            "refuse:2",
            "delay",
            "delay:soon",
            "late",
            "late:2",
            "hang:x",
        ] {
            assert!(bad.parse::<Fault>().is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn a_bounded_fault_hits_only_the_first_attempts() {
        for fault in [
            Fault::Unavailable(Attempts(Some(2))),
            Fault::Hang(Attempts(Some(2))),
            Fault::ApplyThenFail(Attempts(Some(2))),
        ] {
            assert!(fault.hits_attempt(1), "{fault:?}");
            assert!(fault.hits_attempt(2), "{fault:?}");
            assert!(!fault.hits_attempt(3), "{fault:?}");
        }
        assert!(Fault::Refuse.hits_attempt(9));
        assert!(Fault::Hang(Attempts(None)).hits_attempt(9));
        assert!(Fault::Delay(Duration::from_millis(1)).hits_attempt(9));
        assert!(Fault::Late(Duration::from_millis(1)).hits_attempt(9));
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
            Some(Some(Fault::Hang(Attempts(None))))
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
