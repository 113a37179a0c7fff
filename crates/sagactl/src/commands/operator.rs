//! `sagactl abort ID --reason R`, `sagactl retry ID --reason R` and
//! `sagactl resolve ID --step S --outcome O --note N --reason R`.

use prost::{Message, Name};
use saga_proto::v1::{
    AbortSagaRequest, ResolveOutcome, ResolveSagaRequest, RetrySagaRequest, Saga,
};

use crate::cli::{OperatorArgs, Output, ResolveArgs};
use crate::connect::Client;
use crate::exit::{Failure, Outcome};
use crate::json;
use crate::render::outcome;

/// Aborts the saga and prints its status right after.
pub async fn abort(
    client: &mut Client,
    args: OperatorArgs,
    output: Output,
) -> Result<Outcome, Failure> {
    let request = AbortSagaRequest {
        saga_id: args.id,
        reason: args.reason,
    };
    let response = client.abort_saga(request).await?.into_inner();
    report(output, "aborted", &response, response.saga.as_ref())
}

/// Retries the parked saga and prints its status right after.
pub async fn retry(
    client: &mut Client,
    args: OperatorArgs,
    output: Output,
) -> Result<Outcome, Failure> {
    let request = RetrySagaRequest {
        saga_id: args.id,
        reason: args.reason,
    };
    let response = client.retry_saga(request).await?.into_inner();
    report(output, "retried", &response, response.saga.as_ref())
}

/// Records the parked step as done by hand and prints the saga's status right after.
pub async fn resolve(
    client: &mut Client,
    args: ResolveArgs,
    output: Output,
) -> Result<Outcome, Failure> {
    let request = ResolveSagaRequest {
        saga_id: args.id,
        step: args.step,
        outcome: ResolveOutcome::from(args.outcome).into(),
        note: args.note,
        reason: args.reason,
    };
    let response = client.resolve_saga(request).await?.into_inner();
    report(output, "resolved", &response, response.saga.as_ref())
}

/// The answer as JSON, or one line: `aborted saga ID: now COMPENSATING (ABORTED: ...)`.
fn report<M: Message + Name>(
    output: Output,
    action: &str,
    response: &M,
    saga: Option<&Saga>,
) -> Result<Outcome, Failure> {
    if !json::printed(output, response)?
        && let Some(saga) = saga
    {
        println!("{action} saga {}: now {}", saga.saga_id, outcome(saga));
    }
    Ok(Outcome::Done)
}
