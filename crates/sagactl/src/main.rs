//! `sagactl`: the operator's command line for sagad. It starts, lists, shows, follows and repairs sagas
//! over the same gRPC API services use, prints tables for people and the proto messages as JSON for
//! scripts, and says how a followed saga ended through its exit code (see [`exit`]).

mod cli;
mod commands;
mod connect;
mod exit;
mod follow;
mod json;
mod render;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::exit::Failure;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli).await {
        Ok(outcome) => outcome.exit_code(),
        Err(failure) => {
            // One line: scripts read the exit code, people read this.
            eprintln!("sagactl: {failure}");
            Failure::exit_code(&failure)
        }
    }
}
