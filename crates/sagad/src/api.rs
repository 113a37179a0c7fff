//! The `saga.v1.SagaCoordinator` service: validates input at the edge, then hands it to the engine.
//! Bad input never reaches the store.

use std::sync::Arc;

use prost::Message;
use saga_core::SagaId;
use saga_engine::{Engine, StartRequest};
use saga_proto::struct_to_json;
use saga_proto::v1::saga_coordinator_server::SagaCoordinator;
use saga_proto::v1::{
    self as pb, GetStatusRequest, GetStatusResponse, StartSagaRequest, StartSagaResponse,
};
use saga_store::PgStore;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::status::engine_status;

/// Longest accepted caller idempotency key.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// The coordinator API.
pub(crate) struct CoordinatorApi {
    pub engine: Arc<Engine<PgStore>>,
    pub max_payload_bytes: usize,
}

impl CoordinatorApi {
    fn validate_start(&self, request: StartSagaRequest) -> Result<StartRequest, Status> {
        if request.saga_type.is_empty() {
            return Err(Status::invalid_argument(
                "saga_type is required, e.g. \"purchase_plan\"",
            ));
        }
        let Some(payload) = request.payload else {
            return Err(Status::invalid_argument(
                "payload is required and must be a JSON object, e.g. {\"userId\": \"u1\"}",
            ));
        };
        let size = payload.encoded_len();
        if size > self.max_payload_bytes {
            return Err(Status::invalid_argument(format!(
                "payload is {size} bytes; the limit is {} bytes",
                self.max_payload_bytes
            )));
        }
        if request.idempotency_key.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(Status::invalid_argument(format!(
                "idempotency_key is {} bytes; the limit is {MAX_IDEMPOTENCY_KEY_LEN}",
                request.idempotency_key.len()
            )));
        }
        Ok(StartRequest {
            saga_type: request.saga_type,
            payload: struct_to_json(payload),
            idempotency_key: Some(request.idempotency_key).filter(|k| !k.is_empty()),
        })
    }
}

fn parse_saga_id(text: &str) -> Result<SagaId, Status> {
    text.parse().map_err(|_| {
        Status::invalid_argument(format!(
            "saga_id {text:?} is not a UUID (expected e.g. 0193a5f2-7c1e-7d30-9b1a-2f4c6e8a0b1c)"
        ))
    })
}

#[tonic::async_trait]
impl SagaCoordinator for CoordinatorApi {
    // Refused requests are the caller's business, not an incident: logged at debug, answered with a status.
    #[instrument(skip_all, fields(saga_type = %request.get_ref().saga_type), err(level = "debug", Display))]
    async fn start_saga(
        &self,
        request: Request<StartSagaRequest>,
    ) -> Result<Response<StartSagaResponse>, Status> {
        let start = self.validate_start(request.into_inner())?;
        let created = self.engine.start(start).await.map_err(engine_status)?;
        Ok(Response::new(StartSagaResponse {
            saga_id: created.saga.id.to_string(),
            status: pb::SagaStatus::from(created.saga.status).into(),
            created: created.created,
        }))
    }

    #[instrument(skip_all, fields(saga_id = %request.get_ref().saga_id), err(level = "debug", Display))]
    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        let id = parse_saga_id(&request.get_ref().saga_id)?;
        let saga = self
            .engine
            .status(id)
            .await
            .map_err(engine_status)?
            .ok_or_else(|| Status::not_found(format!("no saga with id {id}")))?;
        Ok(Response::new(GetStatusResponse {
            saga: Some(pb::Saga::from(&saga)),
        }))
    }
}
