//! `sagactl abort ID --reason R` and `sagactl retry ID --reason R`.

use prost::{Message, Name};
use saga_proto::v1::{AbortSagaRequest, RetrySagaRequest, Saga};

use crate::cli::{OperatorArgs, Output};
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
