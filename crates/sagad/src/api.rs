//! The `saga.v1.SagaCoordinator` service: validates input at the edge, then hands it to the engine.
//! Bad input never reaches the store.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use prost::Message;
use saga_core::{ListFilter, ResolvedAs, SagaId, SagaStatus};
use saga_engine::{Engine, EngineError, Resolve, StartRequest};
use saga_proto::contract::TRACEPARENT_HEADER;
use saga_proto::v1::saga_coordinator_server::SagaCoordinator;
use saga_proto::v1::{
    self as pb, AbortSagaRequest, AbortSagaResponse, GetSagaHistoryRequest, GetSagaHistoryResponse,
    GetStatsRequest, GetStatsResponse, GetStatusRequest, GetStatusResponse, ListSagasRequest,
    ListSagasResponse, ResolveSagaRequest, ResolveSagaResponse, RetrySagaRequest,
    RetrySagaResponse, StartSagaRequest, StartSagaResponse, WatchSagaRequest, WatchSagaResponse,
};
use saga_proto::{history_event, struct_to_json, to_datetime};
use saga_store::PgStore;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::info;

use crate::auth::Principal;
use crate::status::{bad_request, draining, engine_status};
use crate::text::{clip, refuse_nul, refuse_nul_in_payload};
use crate::watch_quota::WatchQuota;
use crate::{labels, page_token, stats};

/// Longest accepted caller idempotency key.
const MAX_IDEMPOTENCY_KEY_LEN: usize = 256;

/// Longest `StartSaga` wait for the outcome.
const MAX_START_WAIT: Duration = Duration::from_secs(60);

/// Longest accepted operator reason.
const MAX_REASON_LEN: usize = 1024;

/// Longest accepted note of what an operator did by hand.
const MAX_NOTE_LEN: usize = 2048;

/// Longest accepted step name (definitions allow no longer).
const MAX_STEP_NAME_LEN: usize = 128;

/// Longest accepted saga type name (definition names are short identifiers).
const MAX_SAGA_TYPE_LEN: usize = 128;

/// `ListSagas` page size when the request leaves it 0, and the largest accepted.
const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 1000;

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchSagaResponse, Status>> + Send>>;

/// The coordinator API.
pub(crate) struct CoordinatorApi {
    pub engine: Arc<Engine<PgStore>>,
    pub max_payload_bytes: usize,
    /// Fires when the server starts shutting down: open `WatchSaga` streams end then, so they do not
    /// hold the graceful shutdown open.
    pub shutdown: CancellationToken,
    /// Open `WatchSaga` streams per principal.
    pub watch_quota: Arc<WatchQuota>,
}

/// The principal the auth layer authenticated; `None` when sagad runs without `auth.tokens_file`.
fn principal<T>(request: &Request<T>) -> Option<Arc<Principal>> {
    request.extensions().get::<Arc<Principal>>().cloned()
}

/// Puts `field` (`saga_id` or `saga_type`, declared by `propagation::grpc_server_span`) on the RPC's
/// span: one span per RPC, naming the saga or saga type the call is about.
fn about(field: &str, value: impl tracing::Value) {
    tracing::Span::current().record(field, value);
}

/// The trace a saga started by `request` belongs to: this RPC's span, a child of the caller's
/// `traceparent` if it sent one.
fn saga_traceparent<T>(request: &Request<T>) -> Option<String> {
    let from_caller = request
        .metadata()
        .get(TRACEPARENT_HEADER)
        .and_then(|value| value.to_str().ok());
    saga_telemetry::propagation::for_new_saga(&tracing::Span::current(), from_caller)
}

/// A saga type as a request names it: required, short, printable in an error message.
pub(crate) fn validate_saga_type(saga_type: &str) -> Result<(), Status> {
    if saga_type.is_empty() {
        return Err(bad_request("saga_type is required, e.g. \"purchase_plan\""));
    }
    if saga_type.len() > MAX_SAGA_TYPE_LEN {
        return Err(bad_request(format!(
            "saga_type is {} bytes; the limit is {MAX_SAGA_TYPE_LEN}",
            saga_type.len()
        )));
    }
    refuse_nul("saga_type", saga_type)
}

impl CoordinatorApi {
    fn validate_start(
        &self,
        request: StartSagaRequest,
        principal: Option<&Principal>,
        traceparent: Option<String>,
    ) -> Result<StartRequest, Status> {
        validate_saga_type(&request.saga_type)?;
        if let Some(principal) = principal {
            principal.may_start(&request.saga_type)?;
        }
        let Some(payload) = request.payload else {
            return Err(bad_request(
                "payload is required and must be a JSON object, e.g. {\"userId\": \"u1\"}",
            ));
        };
        let size = payload.encoded_len();
        if size > self.max_payload_bytes {
            return Err(bad_request(format!(
                "payload is {size} bytes; the limit is {} bytes",
                self.max_payload_bytes
            )));
        }
        let payload = struct_to_json(payload);
        refuse_nul_in_payload(&payload)?;
        if request.idempotency_key.len() > MAX_IDEMPOTENCY_KEY_LEN {
            return Err(bad_request(format!(
                "idempotency_key is {} bytes; the limit is {MAX_IDEMPOTENCY_KEY_LEN}",
                request.idempotency_key.len()
            )));
        }
        refuse_nul("idempotency_key", &request.idempotency_key)?;
        Ok(StartRequest {
            saga_type: request.saga_type,
            payload,
            idempotency_key: Some(request.idempotency_key).filter(|k| !k.is_empty()),
            started_by: principal.map(|p| p.name.clone()),
            labels: labels::labels(request.labels)?,
            traceparent,
        })
    }
}

/// `StartSaga`'s optional wait: positive, at most [`MAX_START_WAIT`].
fn start_wait(wait: Option<&prost_types::Duration>) -> Result<Option<Duration>, Status> {
    let Some(wait) = wait else {
        return Ok(None);
    };
    let wait = Duration::try_from(*wait).map_err(|_| {
        bad_request(format!(
            "wait {}s {}ns is not a positive duration",
            wait.seconds, wait.nanos
        ))
    })?;
    if wait > MAX_START_WAIT {
        return Err(bad_request(format!(
            "wait {wait:?} is over the limit of {MAX_START_WAIT:?}"
        )));
    }
    Ok(Some(wait).filter(|w| !w.is_zero()))
}

/// The filters of a `ListSagas` request.
fn list_filter(request: &ListSagasRequest) -> Result<ListFilter, Status> {
    let statuses = request
        .statuses
        .iter()
        .map(|&raw| {
            pb::SagaStatus::try_from(raw)
                .ok()
                .and_then(|s| SagaStatus::try_from(s).ok())
                .ok_or_else(|| {
                    bad_request(format!(
                        "statuses: {raw} is not a saga status (use RUNNING, COMPENSATING, COMPLETED, \
                         COMPENSATED or FAILED)"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let time = |field: &str, t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .map(|t| {
                to_datetime(t)
                    .ok_or_else(|| bad_request(format!("{field} is not a valid timestamp")))
            })
            .transpose()
    };
    if !request.saga_type.is_empty() {
        validate_saga_type(&request.saga_type)?;
    }
    let filter = ListFilter {
        statuses,
        saga_type: Some(request.saga_type.clone()).filter(|t| !t.is_empty()),
        created_after: time("created_after", &request.created_after)?,
        created_before: time("created_before", &request.created_before)?,
        label: labels::filter(request.label.as_ref())?,
    };
    if let (Some(after), Some(before)) = (filter.created_after, filter.created_before)
        && after >= before
    {
        return Err(bad_request(
            "created_after must be earlier than created_before",
        ));
    }
    Ok(filter)
}

/// An operator's reason: required, so the history says why.
fn operator_reason(reason: String) -> Result<String, Status> {
    operator_text("reason", reason, "say why", MAX_REASON_LEN)
}

/// Text an operator must give for the history (`field`, trimmed): present (else the refusal asks them to
/// `ask`), at most `limit` bytes, no NUL.
fn operator_text(field: &str, text: String, ask: &str, limit: usize) -> Result<String, Status> {
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(bad_request(format!(
            "{field} is required: {ask}, it is kept in the saga's history"
        )));
    }
    if text.len() > limit {
        return Err(bad_request(format!(
            "{field} is {} bytes; the limit is {limit}",
            text.len()
        )));
    }
    refuse_nul(field, &text)?;
    Ok(text)
}

/// `ResolveSaga`'s request, checked, with `by` as the resolving principal.
fn resolution(request: ResolveSagaRequest, by: Option<String>) -> Result<Resolve, Status> {
    if request.step.is_empty() {
        return Err(bad_request(
            "step is required: the name of the step the saga is parked at",
        ));
    }
    if request.step.len() > MAX_STEP_NAME_LEN {
        return Err(bad_request(format!(
            "step is {} bytes; step names are at most {MAX_STEP_NAME_LEN}",
            request.step.len()
        )));
    }
    refuse_nul("step", &request.step)?;
    let outcome = pb::ResolveOutcome::try_from(request.outcome)
        .ok()
        .and_then(|o| ResolvedAs::try_from(o).ok())
        .ok_or_else(|| {
            bad_request(
                "outcome must be RESOLVE_OUTCOME_COMPENSATED (a parked compensation was done by \
                 hand) or RESOLVE_OUTCOME_SUCCEEDED (a parked forward step was)",
            )
        })?;
    Ok(Resolve {
        step: request.step,
        outcome,
        note: operator_text(
            "note",
            request.note,
            "say what was done by hand",
            MAX_NOTE_LEN,
        )?,
        reason: operator_reason(request.reason)?,
        by,
    })
}

fn parse_saga_id(text: &str) -> Result<SagaId, Status> {
    text.parse().map_err(|_| {
        bad_request(format!(
            "saga_id {:?} is not a UUID (expected e.g. 0193a5f2-7c1e-7d30-9b1a-2f4c6e8a0b1c)",
            clip(text)
        ))
    })
}

#[tonic::async_trait]
impl SagaCoordinator for CoordinatorApi {
    type WatchSagaStream = WatchStream;

    async fn start_saga(
        &self,
        request: Request<StartSagaRequest>,
    ) -> Result<Response<StartSagaResponse>, Status> {
        about("saga_type", request.get_ref().saga_type.as_str());
        let principal = principal(&request);
        let traceparent = saga_traceparent(&request);
        let request = request.into_inner();
        let wait = start_wait(request.wait.as_ref())?;
        let start = self.validate_start(request, principal.as_deref(), traceparent)?;
        let (created, saga) = match wait {
            None => {
                let created = self.engine.start(start).await.map_err(engine_status)?;
                let saga = created.saga.clone();
                (created, saga)
            }
            Some(wait) => self
                .engine
                .start_and_wait(start, wait)
                .await
                .map_err(engine_status)?,
        };
        about("saga_id", tracing::field::display(saga.id));
        let failure = saga.failure.filter(|_| saga.status.is_terminal());
        Ok(Response::new(StartSagaResponse {
            saga_id: saga.id.to_string(),
            status: pb::SagaStatus::from(saga.status).into(),
            created: created.created,
            failure_reason: failure
                .as_ref()
                .map_or(pb::FailureReason::Unspecified, |f| f.reason.into())
                .into(),
            failure_message: failure.map(|f| f.message).unwrap_or_default(),
        }))
    }

    async fn get_status(
        &self,
        request: Request<GetStatusRequest>,
    ) -> Result<Response<GetStatusResponse>, Status> {
        about("saga_id", request.get_ref().saga_id.as_str());
        let saga = self.load(&request.get_ref().saga_id).await?;
        Ok(Response::new(GetStatusResponse {
            saga: Some(pb::Saga::from(&saga)),
        }))
    }

    async fn list_sagas(
        &self,
        request: Request<ListSagasRequest>,
    ) -> Result<Response<ListSagasResponse>, Status> {
        let request = request.into_inner();
        let filter = list_filter(&request)?;
        let page_size = match request.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n > MAX_PAGE_SIZE => {
                return Err(bad_request(format!(
                    "page_size {n} is over the limit of {MAX_PAGE_SIZE}"
                )));
            }
            n => n,
        };
        let after = match request.page_token.as_str() {
            "" => None,
            token => Some(page_token::decode(token, &filter)?),
        };
        // One more than the page, to know whether another page follows.
        let mut sagas = self
            .engine
            .list(&filter, after, page_size + 1)
            .await
            .map_err(engine_status)?;
        let more = sagas.len() > page_size as usize;
        sagas.truncate(page_size as usize);
        let next_page_token = match sagas.last() {
            Some(last) if more => page_token::encode(last.id, &filter),
            _ => String::new(),
        };
        Ok(Response::new(ListSagasResponse {
            sagas: sagas.iter().map(pb::SagaSummary::from).collect(),
            next_page_token,
        }))
    }

    async fn watch_saga(
        &self,
        request: Request<WatchSagaRequest>,
    ) -> Result<Response<Self::WatchSagaStream>, Status> {
        about("saga_id", request.get_ref().saga_id.as_str());
        let id = parse_saga_id(&request.get_ref().saga_id)?;
        let holder = match (principal(&request), request.remote_addr()) {
            (Some(principal), _) => format!("principal {}", principal.name),
            (None, Some(addr)) => format!("client {}", addr.ip()),
            (None, None) => "an unidentified client".to_owned(),
        };
        // Held by the stream: the slot frees when the stream ends or the client goes away.
        let ticket = self.watch_quota.take(holder)?;
        let watch = self.engine.watch(id).await.map_err(engine_status)?;
        let shutdown = self.shutdown.clone();
        let stream = futures::stream::unfold(Some((watch, ticket)), move |watch| {
            let shutdown = shutdown.clone();
            async move {
                let (mut watch, ticket) = watch?;
                let next = tokio::select! {
                    next = watch.next() => Ok(next),
                    () = shutdown.cancelled() => Err(draining(
                        "sagad is shutting down; watch again to continue on another instance",
                    )),
                };
                match next {
                    Ok(Some(saga)) => Some((
                        Ok(WatchSagaResponse {
                            saga: Some(pb::Saga::from(&saga)),
                        }),
                        Some((watch, ticket)),
                    )),
                    Ok(None) => None,
                    // Send the error, then end the stream.
                    Err(status) => Some((Err(status), None)),
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_saga_history(
        &self,
        request: Request<GetSagaHistoryRequest>,
    ) -> Result<Response<GetSagaHistoryResponse>, Status> {
        about("saga_id", request.get_ref().saga_id.as_str());
        let saga = self.load(&request.get_ref().saga_id).await?;
        let events = self.engine.history(saga.id).await.map_err(engine_status)?;
        Ok(Response::new(GetSagaHistoryResponse {
            events: events
                .iter()
                .map(|e| history_event(e, &saga.definition))
                .collect(),
        }))
    }

    async fn abort_saga(
        &self,
        request: Request<AbortSagaRequest>,
    ) -> Result<Response<AbortSagaResponse>, Status> {
        about("saga_id", request.get_ref().saga_id.as_str());
        let by = principal(&request).map(|p| p.name.clone());
        let AbortSagaRequest { saga_id, reason } = request.into_inner();
        let saga = self.operate(Operation::Abort, &saga_id, reason, by).await?;
        Ok(Response::new(AbortSagaResponse { saga: Some(saga) }))
    }

    async fn retry_saga(
        &self,
        request: Request<RetrySagaRequest>,
    ) -> Result<Response<RetrySagaResponse>, Status> {
        about("saga_id", request.get_ref().saga_id.as_str());
        let by = principal(&request).map(|p| p.name.clone());
        let RetrySagaRequest { saga_id, reason } = request.into_inner();
        let saga = self.operate(Operation::Retry, &saga_id, reason, by).await?;
        Ok(Response::new(RetrySagaResponse { saga: Some(saga) }))
    }

    async fn resolve_saga(
        &self,
        request: Request<ResolveSagaRequest>,
    ) -> Result<Response<ResolveSagaResponse>, Status> {
        about("saga_id", request.get_ref().saga_id.as_str());
        let by = principal(&request).map(|p| p.name.clone());
        let request = request.into_inner();
        let id = parse_saga_id(&request.saga_id)?;
        let resolve = resolution(request, by)?;
        info!(
            saga_id = %id,
            step = %resolve.step,
            outcome = ?resolve.outcome,
            note = %resolve.note,
            reason = %resolve.reason,
            by = resolve.by.as_deref(),
            "operator action"
        );
        let saga = self
            .engine
            .resolve(id, resolve)
            .await
            .map_err(engine_status)?;
        Ok(Response::new(ResolveSagaResponse {
            saga: Some(pb::Saga::from(&saga)),
        }))
    }

    async fn get_stats(
        &self,
        request: Request<GetStatsRequest>,
    ) -> Result<Response<GetStatsResponse>, Status> {
        about("saga_type", request.get_ref().saga_type.as_str());
        let query = stats::query(request.get_ref())?;
        let stats = self.engine.stats(&query).await.map_err(engine_status)?;
        Ok(Response::new(GetStatsResponse::from(&stats)))
    }
}

/// The operator actions.
#[derive(Debug, Clone, Copy)]
enum Operation {
    Abort,
    Retry,
}

impl CoordinatorApi {
    /// The saga `saga_id` names, or the status saying why there is none.
    async fn load(&self, saga_id: &str) -> Result<saga_core::Saga, Status> {
        let id = parse_saga_id(saga_id)?;
        self.engine
            .status(id)
            .await
            .map_err(engine_status)?
            .ok_or(EngineError::NotFound(id))
            .map_err(engine_status)
    }

    /// Validates an operator action's input, carries it out and returns the saga right after it.
    async fn operate(
        &self,
        operation: Operation,
        saga_id: &str,
        reason: String,
        by: Option<String>,
    ) -> Result<pb::Saga, Status> {
        let id = parse_saga_id(saga_id)?;
        let reason = operator_reason(reason)?;
        info!(saga_id = %id, ?operation, %reason, by = by.as_deref(), "operator action");
        let saga = match operation {
            Operation::Abort => self.engine.abort(id, reason, by).await,
            Operation::Retry => self.engine.retry(id, reason, by).await,
        }
        .map_err(engine_status)?;
        Ok(pb::Saga::from(&saga))
    }
}
