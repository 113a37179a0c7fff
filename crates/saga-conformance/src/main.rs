//! `saga-conformance`: checks a running saga participant, in any language, against the participant
//! contract; prints a pass/fail table and exits 1 when a check fails (2 when it cannot run at all).

use std::error::Error;
use std::process::ExitCode;

use clap::Parser;
use saga_conformance::{Target, TargetArgs};

/// Checks a running saga participant against the participant contract (DESIGN.md §1) over gRPC.
#[derive(Debug, Parser)]
#[command(name = "saga-conformance", version)]
struct Cli {
    #[command(flatten)]
    target: TargetArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(err) => {
            eprintln!("saga-conformance: {}", one_line(err.as_ref()));
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<bool, Box<dyn Error>> {
    let target = Target::try_from(cli.target)?;
    println!(
        "checking {} {} / {} at {}",
        target.saga_type, target.action, target.compensate, target.endpoint
    );
    let report = saga_conformance::run(&target).await?;
    println!("{}", report.table());
    println!("{}", report.summary());
    Ok(report.passed())
}

/// The error and its causes on one line.
fn one_line(err: &(dyn Error + 'static)) -> String {
    let mut line = err.to_string();
    let mut cause = err.source();
    while let Some(source) = cause {
        line.push_str(": ");
        line.push_str(&source.to_string());
        cause = source.source();
    }
    line
}
