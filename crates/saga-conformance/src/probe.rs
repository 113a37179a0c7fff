//! The checker's side of the wire: step requests as the coordinator sends them, and the answers as the
//! checks compare them.

use std::fmt;

use saga_participant::Direction;
use saga_proto::contract::{GENERATION_HEADER, IDEMPOTENCY_KEY_HEADER, code_name, grpc_code};
use saga_proto::v1::StepRequest;
use saga_proto::v1::saga_participant_client::SagaParticipantClient;
use saga_proto::{json_to_struct, struct_to_json};
use serde_json::{Map, Value};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use uuid::Uuid;

use crate::Target;

/// What a participant answered: its output, or a status.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `OK` with this output.
    Ok(Map<String, Value>),
    /// Any other status.
    Status {
        /// The gRPC code.
        code: Code,
        /// The status message.
        message: String,
    },
}

impl Answer {
    /// The answer's gRPC code.
    pub fn code(&self) -> Code {
        match self {
            Answer::Ok(_) => Code::Ok,
            Answer::Status { code, .. } => *code,
        }
    }

    /// Whether the contract (DESIGN.md §1) makes this answer a definite refusal.
    pub fn is_refusal(&self) -> bool {
        grpc_code(self.code()).refusal().is_some()
    }
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Ok(output) => write!(f, "OK {}", Value::Object(output.clone())),
            Answer::Status { code, message } => write!(f, "{} ({message})", code_name(*code)),
        }
    }
}

/// A connected client for one target.
#[derive(Debug, Clone)]
pub struct Probe {
    client: SagaParticipantClient<Channel>,
    target: Target,
}

/// The participant could not be reached at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to the participant at {endpoint}")]
pub struct ConnectError {
    endpoint: String,
    #[source]
    source: tonic::transport::Error,
}

impl Probe {
    /// Connects to the target's endpoint.
    pub async fn connect(target: &Target) -> Result<Self, ConnectError> {
        let error = |source| ConnectError {
            endpoint: target.endpoint.clone(),
            source,
        };
        let channel = Endpoint::from_shared(target.endpoint.clone())
            .map_err(error)?
            .connect_timeout(target.timeout)
            .connect()
            .await
            .map_err(error)?;
        Ok(Self {
            client: SagaParticipantClient::new(channel),
            target: target.clone(),
        })
    }

    /// The target this probe talks to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Delivers `request` the way the coordinator does: the idempotency key and the generation in the
    /// request and in the metadata, with the target's deadline.
    pub async fn deliver(&self, direction: Direction, request: StepRequest) -> Answer {
        let mut call = Request::new(request);
        call.set_timeout(self.target.timeout);
        if let Ok(key) = call.get_ref().idempotency_key.parse() {
            call.metadata_mut().insert(IDEMPOTENCY_KEY_HEADER, key);
        }
        let generation = MetadataValue::from(call.get_ref().generation);
        call.metadata_mut().insert(GENERATION_HEADER, generation);
        let mut client = self.client.clone();
        let answer = match direction {
            Direction::Execute => client.execute(call).await,
            Direction::Compensate => client.compensate(call).await,
        };
        match answer {
            Ok(response) => Answer::Ok(
                response
                    .into_inner()
                    .output
                    .map(struct_to_json)
                    .unwrap_or_default(),
            ),
            Err(status) => Answer::Status {
                code: status.code(),
                message: status.message().to_owned(),
            },
        }
    }

    /// The target's action for `saga`, attempt `attempt`, with `payload`.
    pub async fn execute(&self, saga: Uuid, attempt: u32, payload: &Map<String, Value>) -> Answer {
        self.execute_in(saga, 0, attempt, payload).await
    }

    /// Like [`Probe::execute`], in delivery generation `generation` (an operator retried the step).
    pub async fn execute_in(
        &self,
        saga: Uuid,
        generation: u32,
        attempt: u32,
        payload: &Map<String, Value>,
    ) -> Answer {
        let action = &self.target.action;
        let mut request = self.request(saga, Direction::Execute, action, attempt, payload);
        request.generation = generation;
        self.deliver(Direction::Execute, request).await
    }

    /// The target's compensation for `saga`, attempt `attempt`, with `payload`.
    pub async fn compensate(
        &self,
        saga: Uuid,
        attempt: u32,
        payload: &Map<String, Value>,
    ) -> Answer {
        let request = self.request(
            saga,
            Direction::Compensate,
            &self.target.compensate,
            attempt,
            payload,
        );
        self.deliver(Direction::Compensate, request).await
    }

    /// A step request as the coordinator builds it, with `action` in `direction`, in the first delivery
    /// generation (0: no operator retry).
    pub fn request(
        &self,
        saga: Uuid,
        direction: Direction,
        action: &str,
        attempt: u32,
        payload: &Map<String, Value>,
    ) -> StepRequest {
        StepRequest {
            saga_id: saga.to_string(),
            saga_type: self.target.saga_type.clone(),
            step: self.target.step.clone(),
            action: action.to_owned(),
            attempt,
            idempotency_key: format!("{saga}:{}:{}", self.target.step, direction.as_str()),
            payload: Some(json_to_struct(payload.clone())),
            generation: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_the_contracts_seven_codes() {
        let refusals: Vec<Code> = (0..=16)
            .map(Code::from_i32)
            .filter(|code| {
                Answer::Status {
                    code: *code,
                    message: String::new(),
                }
                .is_refusal()
            })
            .collect();
        assert_eq!(
            refusals,
            [
                Code::InvalidArgument,
                Code::NotFound,
                Code::AlreadyExists,
                Code::PermissionDenied,
                Code::FailedPrecondition,
                Code::Aborted,
                Code::OutOfRange,
            ]
        );
    }
}
