//! `sagactl start TYPE --payload JSON [--key K] [--wait DURATION]`.

use saga_proto::v1::StartSagaRequest;

use crate::cli::{Output, StartArgs};
use crate::connect::Client;
use crate::exit::{Failure, Outcome};
use crate::follow::follow;
use crate::json;
use crate::render::saga_status;

/// Starts the saga and prints its id; with `--wait`, follows it until it ends or the wait runs out.
pub async fn start(
    client: &mut Client,
    args: StartArgs,
    output: Output,
) -> Result<Outcome, Failure> {
    let response = client
        .start_saga(StartSagaRequest {
            saga_type: args.saga_type,
            payload: Some(saga_proto::json_to_struct(args.payload)),
            idempotency_key: args.key.unwrap_or_default(),
            // --wait follows the saga with WatchSaga instead, to show its progress on the way.
            wait: None,
        })
        .await?
        .into_inner();
    match output {
        Output::Json => json::print(&response)?,
        Output::Table if response.created => {
            println!(
                "started saga {} ({})",
                response.saga_id,
                saga_status(response.status())
            );
        }
        Output::Table => println!(
            "saga {} already exists for this key ({})",
            response.saga_id,
            saga_status(response.status())
        ),
    }
    match args.wait {
        Some(wait) => follow(client, &response.saga_id, output, Some(wait)).await,
        None => Ok(Outcome::Done),
    }
}
