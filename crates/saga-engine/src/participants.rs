//! gRPC clients to participant services, and how their answers map onto the state machine's errors.
//!
//! Each participant gets one lazily connected HTTP/2 channel behind a concurrency limit (tower's
//! `ConcurrencyLimit`): beyond `concurrency` calls in flight to one participant, further calls wait in
//! sagad for a slot instead of piling onto a participant that is already slow. The step's deadline starts
//! once the slot is taken, so waiting spends neither the attempt budget nor the per-call timeout; only the
//! saga's own deadline bounds the wait.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use saga_core::contract::GrpcCode;
use saga_core::{Direction, ErrorKind, JsonMap, Saga, StepDefinition, StepFailure};
use saga_proto::contract::{
    GENERATION_HEADER, IDEMPOTENCY_KEY_HEADER, TRACEPARENT_HEADER, grpc_code,
};
use saga_proto::v1::StepRequest;
use saga_proto::v1::saga_participant_client::SagaParticipantClient;
use saga_proto::{json_to_struct, struct_to_json};
use tonic::Status;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tower::ServiceExt;
use tower::limit::ConcurrencyLimit;
use tracing::{Instrument, info_span};

/// Shortest deadline given to a call, so one started right at the saga deadline can still answer.
const MIN_CALL_TIMEOUT: Duration = Duration::from_millis(10);

/// Connections are attempted for at most this long before the call counts as a transient failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A participant's channel behind its concurrency limit (clones share the limit).
type LimitedChannel = ConcurrencyLimit<Channel>;

/// A participant endpoint in the configuration that is not a valid URI (or cannot take the TLS
/// settings): a start-up error.
#[derive(Debug, thiserror::Error)]
#[error("participant {participant:?} has an invalid endpoint {endpoint:?}")]
pub struct InvalidEndpoint {
    /// Participant name.
    pub participant: String,
    /// The configured endpoint.
    pub endpoint: String,
    /// Why it is invalid.
    #[source]
    pub source: tonic::transport::Error,
}

/// One lazily connected, concurrency-limited client per participant service.
#[derive(Debug, Clone)]
pub struct Participants {
    clients: HashMap<String, LimitedChannel>,
}

impl Participants {
    /// Builds clients for `endpoints` (participant name → URI), each allowing `concurrency` calls in
    /// flight. `https://` endpoints are called over TLS with `tls` (the CA that signs the participants'
    /// certificates and, for mTLS, sagad's client identity); a participant whose certificate `tls` does
    /// not trust fails its calls as transport errors: transient, so retried. Nothing connects until the
    /// first call, so a participant that is down at start-up only delays the sagas that need it.
    pub fn new(
        endpoints: &HashMap<String, String>,
        concurrency: usize,
        tls: Option<&ClientTlsConfig>,
    ) -> Result<Self, InvalidEndpoint> {
        let clients = endpoints
            .iter()
            .map(|(name, uri)| {
                let invalid = |source| InvalidEndpoint {
                    participant: name.clone(),
                    endpoint: uri.clone(),
                    source,
                };
                let mut endpoint = Endpoint::from_shared(uri.clone())
                    .map_err(invalid)?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .tcp_nodelay(true);
                if let Some(tls) = tls.filter(|_| uri.starts_with("https://")) {
                    endpoint = endpoint.tls_config(tls.clone()).map_err(invalid)?;
                }
                let channel = ConcurrencyLimit::new(endpoint.connect_lazy(), concurrency.max(1));
                Ok((name.clone(), channel))
            })
            .collect::<Result<_, InvalidEndpoint>>()?;
        Ok(Self { clients })
    }

    /// The configured participant names, for validating definitions.
    pub fn names(&self) -> HashSet<String> {
        self.clients.keys().cloned().collect()
    }

    /// Calls one direction of step `index` of `saga` at time `now`, with the step's deadline. `None` when
    /// the saga's deadline passed while the call waited for a slot: nothing was sent.
    ///
    /// The attempt is one client span, `step`, from asking for a slot to the answer; the participant's
    /// handler continues it (its `traceparent` is sent with the call).
    pub async fn call(
        &self,
        saga: &Saga,
        index: usize,
        direction: Direction,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Option<Result<JsonMap, StepFailure>> {
        let step = &saga.definition.steps[index];
        let span = info_span!(
            "step",
            otel.kind = "client",
            step = step.name.as_str(),
            attempt,
            direction = direction.as_str(),
            participant = step.participant.as_str(),
            action = action(step, direction),
        );
        let Some(channel) = self.clients.get(&step.participant) else {
            // Definitions are validated against the configured participants at load, but a saga keeps
            // its snapshot: a participant removed from the configuration since then lands here.
            return Some(Err(StepFailure {
                kind: ErrorKind::Transient,
                message: format!("participant {:?} is not configured", step.participant),
            }));
        };
        // A call never outlives the saga's deadline: past it the saga is compensated anyway, and waiting
        // out a long step timeout (or a long queue) would only delay that.
        let until_deadline = saga
            .active_deadline()
            .map(|d| (d - now).to_std().unwrap_or_default());
        let queued = Instant::now();
        let channel = match take_slot(channel.clone(), until_deadline)
            .instrument(span.clone())
            .await?
        {
            Ok(channel) => channel,
            Err(e) => return Some(Err(failure(step, GrpcCode::Unavailable, e))),
        };
        let left = until_deadline.map(|d| d.saturating_sub(queued.elapsed()));
        let timeout = call_timeout(saga, index, left);
        let mut request = step_request(saga, index, direction, attempt, timeout);
        // The participant's work is a child of this attempt, or, while spans are not exported, of
        // whatever trace the saga's starter sent.
        let traceparent = saga_telemetry::propagation::traceparent(&span)
            .or_else(|| saga.traceparent.clone())
            .and_then(|value| MetadataValue::try_from(value).ok());
        if let Some(traceparent) = traceparent {
            request
                .metadata_mut()
                .insert(TRACEPARENT_HEADER, traceparent);
        }
        // Boxed: the gRPC call's future is several kilobytes, and inline it would size every saga's
        // task, most of which only wait for a slot (or for a retry) and never get this far at once.
        Some(
            Box::pin(send(step, channel, direction, request, timeout))
                .instrument(span)
                .await,
        )
    }
}

/// Waits for one of the participant's concurrency slots, at most `until_deadline`; `None` when the saga's
/// deadline came first. The slot travels with the returned channel until its call is made. A lazy
/// channel's connection errors surface on the call itself, so the error arm is for completeness:
/// transient, the outcome is unknown.
async fn take_slot(
    mut channel: LimitedChannel,
    until_deadline: Option<Duration>,
) -> Option<Result<LimitedChannel, tonic::transport::Error>> {
    let slot = channel.ready();
    let ready = match until_deadline {
        Some(left) => tokio::time::timeout(left, slot).await.ok()?,
        None => slot.await,
    }
    .map(|_| ());
    Some(ready.map(|()| channel))
}

/// Makes the call on a channel holding a slot and maps the answer onto the state machine's terms.
async fn send(
    step: &StepDefinition,
    channel: LimitedChannel,
    direction: Direction,
    request: tonic::Request<StepRequest>,
    timeout: Duration,
) -> Result<JsonMap, StepFailure> {
    let mut client = SagaParticipantClient::new(channel);
    let started = Instant::now();
    let call = async {
        match direction {
            Direction::Execute => client.execute(request).await,
            Direction::Compensate => client.compensate(request).await,
        }
    };
    let deadline_exceeded = || {
        failure(
            step,
            GrpcCode::DeadlineExceeded,
            format_args!("no answer within {timeout:?}"),
        )
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(response)) => Ok(response
            .into_inner()
            .output
            .map(struct_to_json)
            .unwrap_or_default()),
        // tonic enforces the grpc-timeout itself and reports it as CANCELLED; say what happened.
        Ok(Err(_)) if started.elapsed() >= timeout => Err(deadline_exceeded()),
        Ok(Err(status)) => Err(classify(step, &status)),
        Err(_) => Err(deadline_exceeded()),
    }
}

/// The per-call deadline: the step's timeout, cut to what is left of the saga deadline.
fn call_timeout(saga: &Saga, index: usize, until_deadline: Option<Duration>) -> Duration {
    let step_timeout = saga.definition.timeout_for(index);
    until_deadline.map_or(step_timeout, |left| {
        left.max(MIN_CALL_TIMEOUT).min(step_timeout)
    })
}

/// The request for one call, with the idempotency key and generation also as metadata.
fn step_request(
    saga: &Saga,
    index: usize,
    direction: Direction,
    attempt: u32,
    timeout: Duration,
) -> tonic::Request<StepRequest> {
    let step = &saga.definition.steps[index];
    let key = saga.idempotency_key_for(index, direction);
    let generation = saga.steps[index].generation;
    let mut request = tonic::Request::new(StepRequest {
        saga_id: saga.id.to_string(),
        saga_type: saga.saga_type().to_owned(),
        step: step.name.clone(),
        action: action(step, direction).to_owned(),
        attempt,
        idempotency_key: key.clone(),
        payload: Some(json_to_struct(saga.state.clone())),
        generation,
    });
    request.set_timeout(timeout);
    if let Ok(value) = MetadataValue::try_from(key.as_str()) {
        request.metadata_mut().insert(IDEMPOTENCY_KEY_HEADER, value);
    }
    request
        .metadata_mut()
        .insert(GENERATION_HEADER, MetadataValue::from(generation));
    request
}

/// The participant action a call of `step` in `direction` asks for.
fn action(step: &StepDefinition, direction: Direction) -> &str {
    match direction {
        Direction::Execute => &step.action,
        Direction::Compensate => step.compensate.as_deref().unwrap_or_default(),
    }
}

/// Maps a participant's gRPC status onto refusal or transient: the step's `errors` overrides, else the
/// contract's table ([`GrpcCode::default_kind`]). Codes the table does not name are transient: when in
/// doubt the step may have happened, and retrying is the safe choice.
pub(crate) fn classify(step: &StepDefinition, status: &Status) -> StepFailure {
    failure(step, grpc_code(status.code()), status.message())
}

/// A failure with `code`, classified for `step`; the message keeps the code's name and the words.
fn failure(step: &StepDefinition, code: GrpcCode, detail: impl std::fmt::Display) -> StepFailure {
    StepFailure {
        kind: step.error_kind(code),
        message: format!("{code}: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use saga_core::Definition;
    use saga_core::contract::Refusal;
    use saga_proto::contract::tonic_code;
    use tonic::Code;

    use super::*;

    fn steps() -> Vec<StepDefinition> {
        let participants: HashSet<String> = ["p".to_owned()].into();
        let yaml = "name: t\nversion: 1\nsteps:\n  - {name: A, participant: p, action: Do}\n  - {name: B, participant: p, action: Do, errors: {NOT_FOUND: transient, UNAVAILABLE: refusal}}\n";
        Definition::from_yaml(yaml, &participants)
            .expect("valid")
            .steps
    }

    #[test]
    fn business_refusals_are_definite_and_everything_else_is_retried() {
        let step = &steps()[0];
        let refusals = Refusal::ALL.map(|refusal| tonic_code(refusal.code()));
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
                classify(step, &Status::new(code, "x")).kind,
                ErrorKind::Refusal,
                "{code:?}"
            );
        }
        for code in transient {
            assert_eq!(
                classify(step, &Status::new(code, "x")).kind,
                ErrorKind::Transient,
                "{code:?}"
            );
        }
    }

    #[test]
    fn a_step_can_override_the_classification() {
        let step = &steps()[1];
        assert_eq!(
            classify(step, &Status::not_found("replica lag")).kind,
            ErrorKind::Transient
        );
        assert_eq!(
            classify(step, &Status::unavailable("closed for good")).kind,
            ErrorKind::Refusal
        );
        assert_eq!(
            classify(step, &Status::aborted("no")).kind,
            ErrorKind::Refusal
        );
    }

    #[test]
    fn the_error_message_keeps_the_code_and_the_participants_words() {
        let e = classify(&steps()[0], &Status::failed_precondition("no devices left"));
        assert_eq!(e.message, "FAILED_PRECONDITION: no devices left");
    }

    #[test]
    fn an_invalid_endpoint_is_a_configuration_error_naming_the_participant() {
        let endpoints = [("billing".to_owned(), "not a uri".to_owned())].into();
        let err = Participants::new(&endpoints, 1, None).expect_err("invalid");
        assert!(err.to_string().contains("billing"), "{err}");
    }
}
