//! `sagactl abort ID --reason R` and `sagactl retry ID --reason R`.

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
    let response = client
        .abort_saga(AbortSagaRequest {
            saga_id: args.id,
            reason: args.reason,
        })
        .await?
        .into_inner();
    match output {
        Output::Json => json::print(&response)?,
        Output::Table => report("aborted", response.saga.as_ref()),
    }
    Ok(Outcome::Done)
}

/// Retries the parked saga and prints its status right after.
pub async fn retry(
    client: &mut Client,
    args: OperatorArgs,
    output: Output,
) -> Result<Outcome, Failure> {
    let response = client
        .retry_saga(RetrySagaRequest {
            saga_id: args.id,
            reason: args.reason,
        })
        .await?
        .into_inner();
    match output {
        Output::Json => json::print(&response)?,
        Output::Table => report("retried", response.saga.as_ref()),
    }
    Ok(Outcome::Done)
}

fn report(action: &str, saga: Option<&Saga>) {
    if let Some(saga) = saga {
        println!("{action} saga {}: now {}", saga.saga_id, outcome(saga));
    }
}
