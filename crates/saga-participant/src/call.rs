//! One step request, decoded and validated at the edge, with typed accessors for the payload.

use saga_proto::struct_to_json;
use saga_proto::v1::StepRequest;
use serde_json::{Map, Value};
use tonic::Request;
use uuid::Uuid;

use crate::StepError;

pub use saga_proto::contract::{GENERATION_HEADER, IDEMPOTENCY_KEY_HEADER, TRACEPARENT_HEADER};

/// One step request as a handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepCall {
    /// The saga this step belongs to.
    pub saga_id: Uuid,
    /// The saga's definition name, e.g. `purchase_plan`.
    pub saga_type: String,
    /// The step name from the definition, e.g. `ALLOCATE_DEVICE`.
    pub step: String,
    /// The action to run: the forward action for execute, the compensating one for compensate.
    pub action: String,
    /// Attempt number for this direction of this step, from 1.
    pub attempt: u32,
    /// Stable per (saga, step, direction) across retries.
    pub idempotency_key: String,
    /// Delivery generation: 0 until an operator retries the step, then 1, 2, ... A refusal recorded in
    /// an earlier generation is not replayed: the step runs again.
    pub generation: u32,
    /// The saga state so far: the start payload merged with every earlier step's output.
    pub payload: Map<String, Value>,
    /// The W3C `traceparent` the coordinator sent as metadata, if any. The handler already runs in a
    /// span that continues it when spans are exported (see `saga-telemetry`); this is the raw value, for
    /// passing it on to further calls by hand.
    pub traceparent: Option<String>,
}

impl StepCall {
    /// Decodes a request. The request's `idempotency_key` field is authoritative; the
    /// `x-idempotency-key` metadata entry is only a fallback for callers that leave the field empty.
    pub(crate) fn from_request(request: Request<StepRequest>) -> Result<Self, StepError> {
        let header = |name| {
            request
                .metadata()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let header_key = header(IDEMPOTENCY_KEY_HEADER);
        let header_generation = header(GENERATION_HEADER).and_then(|g| g.parse::<u32>().ok());
        let traceparent = header(TRACEPARENT_HEADER);
        let request = request.into_inner();

        let saga_id = Uuid::parse_str(&request.saga_id).map_err(|_| {
            StepError::invalid_argument(format!("saga_id {:?} is not a uuid", request.saga_id))
        })?;
        if request.step.is_empty() {
            return Err(StepError::invalid_argument("missing step"));
        }
        if request.action.is_empty() {
            return Err(StepError::invalid_argument("missing action"));
        }
        let idempotency_key = Some(request.idempotency_key)
            .filter(|key| !key.is_empty())
            .or(header_key)
            .ok_or_else(|| StepError::invalid_argument("missing idempotency key"))?;

        Ok(Self {
            saga_id,
            saga_type: request.saga_type,
            step: request.step,
            action: request.action,
            attempt: request.attempt,
            idempotency_key,
            // The field is authoritative; the metadata entry helps callers that leave it unset.
            generation: match request.generation {
                0 => header_generation.unwrap_or_default(),
                g => g,
            },
            payload: request.payload.map(struct_to_json).unwrap_or_default(),
            traceparent,
        })
    }

    /// A payload field that must be present and not null.
    pub fn field(&self, name: &str) -> Result<&Value, StepError> {
        self.opt_field(name).ok_or_else(|| {
            StepError::invalid_argument(format!("missing field {name:?} in payload"))
        })
    }

    /// A required non-empty string field.
    pub fn str(&self, name: &str) -> Result<&str, StepError> {
        match self.field(name)? {
            Value::String(s) if !s.is_empty() => Ok(s),
            _ => Err(wrong_type(name, "a non-empty string")),
        }
    }

    /// An optional string field: absent or null is `None`, any other non-string is an error.
    pub fn opt_str(&self, name: &str) -> Result<Option<&str>, StepError> {
        self.opt_field(name).map(|_| self.str(name)).transpose()
    }

    /// A required integer field, e.g. an amount in cents.
    pub fn i64(&self, name: &str) -> Result<i64, StepError> {
        self.field(name)?
            .as_i64()
            .ok_or_else(|| wrong_type(name, "an integer"))
    }

    /// A required UUID field (a string in the payload).
    pub fn uuid(&self, name: &str) -> Result<Uuid, StepError> {
        self.field(name)?
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| wrong_type(name, "a uuid"))
    }

    /// An optional UUID field: absent or null is `None`.
    pub fn opt_uuid(&self, name: &str) -> Result<Option<Uuid>, StepError> {
        self.opt_field(name).map(|_| self.uuid(name)).transpose()
    }

    fn opt_field(&self, name: &str) -> Option<&Value> {
        self.payload.get(name).filter(|value| !value.is_null())
    }
}

fn wrong_type(name: &str, expected: &str) -> StepError {
    StepError::invalid_argument(format!("field {name:?} must be {expected}"))
}

#[cfg(test)]
mod tests;
