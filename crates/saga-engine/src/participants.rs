//! gRPC clients to participant services, and how their answers map onto the state machine's errors.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use saga_core::{Direction, ErrorKind, JsonMap, Saga, StepError};
use saga_proto::v1::StepRequest;
use saga_proto::v1::saga_participant_client::SagaParticipantClient;
use saga_proto::{json_to_struct, struct_to_json};
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::EngineError;

/// Connections are attempted for at most this long before the call counts as a transient failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One lazily connected client per participant service.
#[derive(Debug, Clone)]
pub struct Participants {
    clients: HashMap<String, SagaParticipantClient<Channel>>,
}

impl Participants {
    /// Builds clients for `endpoints` (participant name → URI). Nothing connects until the first call, so a
    /// participant that is down at start-up only delays the sagas that need it.
    pub fn new(endpoints: &HashMap<String, String>) -> Result<Self, EngineError> {
        let clients = endpoints
            .iter()
            .map(|(name, uri)| {
                let endpoint = Endpoint::from_shared(uri.clone())
                    .map_err(|source| EngineError::InvalidEndpoint {
                        participant: name.clone(),
                        endpoint: uri.clone(),
                        source,
                    })?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true);
                Ok((
                    name.clone(),
                    SagaParticipantClient::new(endpoint.connect_lazy()),
                ))
            })
            .collect::<Result<_, EngineError>>()?;
        Ok(Self { clients })
    }

    /// The configured participant names, for validating definitions.
    pub fn names(&self) -> HashSet<String> {
        self.clients.keys().cloned().collect()
    }

    /// Calls one direction of step `index` of `saga`, with the step's deadline.
    pub async fn call(
        &self,
        saga: &Saga,
        index: usize,
        direction: Direction,
        attempt: u32,
    ) -> Result<JsonMap, StepError> {
        let step = &saga.definition.steps[index];
        let action = match direction {
            Direction::Execute => step.action.as_str(),
            Direction::Compensate => step.compensate.as_deref().unwrap_or_default(),
        };
        let Some(client) = self.clients.get(&step.participant) else {
            // Definitions are validated against the configured participants at load, but a saga keeps
            // its snapshot: a participant removed from the configuration since then lands here.
            return Err(StepError {
                kind: ErrorKind::Transient,
                message: format!("participant {:?} is not configured", step.participant),
            });
        };
        let key = saga.idempotency_key_for(index, direction);
        let timeout = saga.definition.timeout_for(index);
        let mut request = tonic::Request::new(StepRequest {
            saga_id: saga.id.to_string(),
            saga_type: saga.saga_type().to_owned(),
            step: step.name.clone(),
            action: action.to_owned(),
            attempt,
            idempotency_key: key.clone(),
            payload: Some(json_to_struct(saga.state.clone())),
        });
        request.set_timeout(timeout);
        if let Ok(value) = MetadataValue::try_from(key.as_str()) {
            request.metadata_mut().insert("x-idempotency-key", value);
        }

        let mut client = client.clone();
        let call = async {
            match direction {
                Direction::Execute => client.execute(request).await,
                Direction::Compensate => client.compensate(request).await,
            }
        };
        let started = Instant::now();
        let deadline_exceeded = || StepError {
            kind: ErrorKind::Transient,
            message: format!("{:?}: no answer within {timeout:?}", Code::DeadlineExceeded),
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(response)) => Ok(response
                .into_inner()
                .output
                .map(struct_to_json)
                .unwrap_or_default()),
            // tonic enforces the grpc-timeout itself and reports it as CANCELLED; say what happened.
            Ok(Err(_)) if started.elapsed() >= timeout => Err(deadline_exceeded()),
            Ok(Err(status)) => Err(classify(&status)),
            Err(_) => Err(deadline_exceeded()),
        }
    }
}

/// Maps a participant's gRPC status onto refusal or transient (DESIGN.md §1).
///
/// Codes the table does not name (CANCELLED, UNIMPLEMENTED, DATA_LOSS, UNAUTHENTICATED) are transient:
/// when in doubt the step may have happened, and retrying is the safe choice.
pub fn classify(status: &Status) -> StepError {
    let kind = match status.code() {
        Code::Aborted
        | Code::FailedPrecondition
        | Code::InvalidArgument
        | Code::NotFound
        | Code::AlreadyExists
        | Code::PermissionDenied
        | Code::OutOfRange => ErrorKind::Refusal,
        _ => ErrorKind::Transient,
    };
    StepError {
        kind,
        message: format!("{:?}: {}", status.code(), status.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn business_refusals_are_definite_and_everything_else_is_retried() {
        let refusals = [
            Code::Aborted,
            Code::FailedPrecondition,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::OutOfRange,
        ];
        let transient = [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::ResourceExhausted,
            Code::Internal,
            Code::Unknown,
            Code::Cancelled,
            Code::Unimplemented,
        ];
        for code in refusals {
            assert_eq!(
                classify(&Status::new(code, "x")).kind,
                ErrorKind::Refusal,
                "{code:?}"
            );
        }
        for code in transient {
            assert_eq!(
                classify(&Status::new(code, "x")).kind,
                ErrorKind::Transient,
                "{code:?}"
            );
        }
    }

    #[test]
    fn the_error_message_keeps_the_code_and_the_participants_words() {
        let e = classify(&Status::failed_precondition("no devices left"));
        assert_eq!(e.message, "FailedPrecondition: no devices left");
    }

    #[test]
    fn an_invalid_endpoint_is_a_configuration_error_naming_the_participant() {
        let endpoints = [("billing".to_owned(), "not a uri".to_owned())].into();
        let err = Participants::new(&endpoints).expect_err("invalid");
        assert!(err.to_string().contains("billing"), "{err}");
    }
}
