//! The `saga.v1.SagaParticipant` gRPC service: decodes a step request and runs the handler behind the
//! idempotency barrier, in one database transaction with the business work.

use saga_proto::json_to_struct;
use saga_proto::v1::saga_participant_server::SagaParticipant;
use saga_proto::v1::{StepRequest, StepResponse};
use tonic::{Request, Response, Status};
use tracing::{Instrument, Span, debug, info, info_span, warn};

use crate::barrier::{Barrier, Outcome, Recorded};
use crate::connections::StepConnections;
use crate::{Direction, Refusal, StepCall, StepError, StepHandler, StepOutput};

/// A participant service: a [`StepHandler`] wrapped in the idempotency barrier.
///
/// - A repeated execute or compensate returns the first answer without calling the handler again, and
///   counts the repeat in the row's `replays` column.
/// - A refusal is recorded (the handler's work rolled back) and replayed; a transient error records
///   nothing, so the retry runs the handler afresh.
/// - `INVALID_ARGUMENT` (including an action the handler does not [handle](StepHandler::handles)) writes
///   nothing at all, barrier row included: by gRPC's definition it depends on the request alone, so
///   every repeat gets the same answer without a record.
/// - A compensation for a step that never ran calls nothing and fences the step: a late execute answers
///   `ABORTED` ("null compensation" and "hanging request" protection).
///
/// The barrier table must exist: run [`crate::migrate`] at start-up.
#[derive(Debug)]
pub struct ParticipantService<H> {
    service: String,
    connections: StepConnections,
    handler: H,
}

impl<H: StepHandler> ParticipantService<H> {
    /// Wraps `handler`. `service` names the participant in its barrier rows (e.g. `billing`), so several
    /// services can share one database.
    ///
    /// Steps run on `connections`: a [`sqlx::PgPool`], or [`StepConnections`] built from one and shared
    /// with other services. Their connections are tested neither before a checkout nor after: the
    /// service begins a step's transaction again on another connection when its `BEGIN` finds the
    /// session gone, as a test would have.
    pub fn new(
        service: impl Into<String>,
        connections: impl Into<StepConnections>,
        handler: H,
    ) -> Self {
        Self {
            service: service.into(),
            connections: connections.into(),
            handler,
        }
    }

    /// Validates a request before anything touches the database.
    fn decode(
        &self,
        request: Request<StepRequest>,
        direction: Direction,
    ) -> Result<StepCall, StepError> {
        let call = StepCall::from_request(request)?;
        if !self.handler.handles(direction, &call.action) {
            return Err(StepError::invalid_argument(format!(
                "unknown action {} for service {}",
                call.action, self.service
            )));
        }
        Ok(call)
    }

    async fn execute_step(&self, call: &StepCall, span: &Span) -> Result<StepOutput, StepError> {
        let barrier = Barrier::new(&self.service, call);
        let mut tx = self.connections.begin().await?;
        let claimed = barrier
            .claim(
                &mut tx,
                Direction::Execute,
                Some(&call.idempotency_key),
                Outcome::Succeeded,
            )
            .await?;
        if let Some(recorded) = claimed {
            debug!(parent: span, outcome = ?recorded.outcome(), "replaying the recorded execute outcome");
            barrier.count_replay(&mut tx, Direction::Execute).await?;
            tx.commit().await?;
            return recorded.replay_execute();
        }

        // No savepoint around the handler: on the way to success (nearly every call) it would cost two
        // round trips and a subtransaction. A refusal instead rolls back the whole transaction, claim
        // included, and records itself in a new one; whatever another delivery committed in between is
        // the answer instead (see `record_refusal`).
        match self
            .handler
            .execute(call, &mut tx)
            .instrument(span.clone())
            .await
        {
            Ok(output) => {
                barrier
                    .set_output(&mut tx, Direction::Execute, &output)
                    .await?;
                tx.commit().await?;
                debug!(parent: span, "step executed");
                Ok(output)
            }
            Err(
                invalid @ StepError::Refused {
                    refusal: Refusal::InvalidArgument,
                    ..
                },
            ) => {
                // The claim goes too: an answer that depends on the request alone needs no record.
                tx.rollback().await?;
                info!(parent: span, reason = %invalid, "invalid request");
                Err(invalid)
            }
            Err(StepError::Refused { refusal, message }) => {
                tx.rollback().await?;
                self.record_refusal(call, span, refusal, message).await
            }
            // Rolling back undoes the work and the claim: nothing recorded, the retry runs the handler
            // again. Should the rollback fail, the connection is closed, which rolls back just the same.
            Err(transient) => {
                let _ = tx.rollback().await;
                Err(transient)
            }
        }
    }

    /// Records a refusal whose work (and claim) was rolled back. Between the rollback and this
    /// transaction another delivery of the step may have claimed the row: a duplicate (its outcome
    /// committed first) or a compensation (the step is fenced off). Then that committed outcome is the
    /// answer, so every delivery still gets the one answer the barrier holds, and nothing the refused
    /// run wrote survives either way.
    async fn record_refusal(
        &self,
        call: &StepCall,
        span: &Span,
        refusal: Refusal,
        message: String,
    ) -> Result<StepOutput, StepError> {
        let barrier = Barrier::new(&self.service, call);
        let mut tx = self.connections.begin().await?;
        let recorded = barrier
            .record_refusal(&mut tx, &call.idempotency_key, refusal, &message)
            .await?;
        if let Some(recorded) = recorded {
            // Not counted as a replay: this delivery did run the handler.
            debug!(parent: span, outcome = ?recorded.outcome(), "another delivery recorded the step first");
            tx.commit().await?;
            return recorded.replay_execute();
        }
        tx.commit().await?;
        info!(parent: span, code = %refusal, reason = %message, "step refused");
        Err(StepError::Refused { refusal, message })
    }

    async fn compensate_step(&self, call: &StepCall, span: &Span) -> Result<StepOutput, StepError> {
        let barrier = Barrier::new(&self.service, call);
        let mut tx = self.connections.begin().await?;
        // Claim the execute row first: if an execute is in flight this waits for it to end, and if the
        // forward step never ran, the row marked cancelled fences off a late execute.
        let forward = barrier
            .claim(&mut tx, Direction::Execute, None, Outcome::Cancelled)
            .await?;
        let must_undo = matches!(forward, Some(Recorded::Succeeded(_)));
        let outcome = if must_undo {
            Outcome::Succeeded
        } else {
            Outcome::Skipped
        };
        let claimed = barrier
            .claim(
                &mut tx,
                Direction::Compensate,
                Some(&call.idempotency_key),
                outcome,
            )
            .await?;
        if let Some(recorded) = claimed {
            debug!(parent: span, outcome = ?recorded.outcome(), "replaying the recorded compensate outcome");
            barrier.count_replay(&mut tx, Direction::Compensate).await?;
            tx.commit().await?;
            return recorded.replay_compensate();
        }
        if !must_undo {
            tx.commit().await?;
            debug!(
                parent: span,
                forward = ?forward.as_ref().map(Recorded::outcome),
                "nothing to compensate: the forward step did not commit any work"
            );
            return Ok(StepOutput::new());
        }

        // Any error rolls back: nothing recorded, the coordinator retries (a compensation cannot refuse).
        let output = match self
            .handler
            .compensate(call, &mut tx)
            .instrument(span.clone())
            .await
        {
            Ok(output) => output,
            Err(err) => {
                let _ = tx.rollback().await;
                return Err(err);
            }
        };
        barrier
            .set_output(&mut tx, Direction::Compensate, &output)
            .await?;
        tx.commit().await?;
        debug!(parent: span, "step compensated");
        Ok(output)
    }
}

#[tonic::async_trait]
impl<H: StepHandler> SagaParticipant for ParticipantService<H> {
    async fn execute(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResponse>, Status> {
        let call = self.decode(request, Direction::Execute)?;
        // The span is current only while the handler runs, and for the answer: the barrier's own
        // statements run outside it, its events naming it as their parent. sqlx enters the current span
        // again on every poll of every statement, and the barrier's four statements made about two
        // thirds of the hundred-odd span enters and exits a `purchase_plan` saga cost its participants
        // with span export on. It is entered once more for the answer, whose warning for a failed attempt
        // belongs in it, and ends when it is dropped, as the call ends. (The same holds for `compensate`.)
        let span = step_span(Direction::Execute, &self.service, &call);
        let result = self.execute_step(&call, &span).await;
        span.in_scope(|| answer(result))
    }

    async fn compensate(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResponse>, Status> {
        let call = self.decode(request, Direction::Compensate)?;
        let span = step_span(Direction::Compensate, &self.service, &call);
        let result = self.compensate_step(&call, &span).await;
        span.in_scope(|| answer(result))
    }
}

/// The span a step's handler runs in: a child of the coordinator's call when it sent a `traceparent`, so
/// the handler's work, and any span it opens, is part of the saga's trace.
fn step_span(direction: Direction, service: &str, call: &StepCall) -> tracing::Span {
    let span = info_span!(
        "step",
        otel.kind = "server",
        direction = direction.as_str(),
        service,
        saga_id = %call.saga_id,
        saga_type = call.saga_type.as_str(),
        step = call.step.as_str(),
        action = call.action.as_str(),
        attempt = call.attempt,
        traceparent = tracing::field::Empty,
    );
    saga_telemetry::propagation::continue_or_record_trace(&span, call.traceparent.as_deref());
    span
}

/// Turns a step result into the gRPC answer, logging transient failures with their full cause.
fn answer(result: Result<StepOutput, StepError>) -> Result<Response<StepResponse>, Status> {
    match result {
        Ok(output) => Ok(Response::new(StepResponse {
            output: Some(json_to_struct(output)),
        })),
        Err(err) => {
            if !matches!(err, StepError::Refused { .. }) {
                warn!(
                    error = &err as &dyn std::error::Error,
                    "step attempt failed"
                );
            }
            Err(err.into())
        }
    }
}
