//! `sagad`: the saga orchestrator process.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sagad::{Application, Settings, telemetry};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// A saga orchestrator: runs multi-step business transactions across services to completion or
/// compensation, with a durable saga log in PostgreSQL.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// TOML settings file; `SAGAD_*` environment variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sagad: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let settings = Settings::load(args.config.as_deref())?;
    telemetry::init(settings.log_format);
    let app = Application::build(settings).await?;
    // Machine-readable readiness line: tests and scripts read the real port from it.
    println!("sagad listening on {}", app.local_addr());
    // Second, so that scripts reading the first "listening on" line still find the API.
    if let Some(addr) = app.metrics_addr() {
        println!("metrics listening on {addr}");
    }

    let shutdown = CancellationToken::new();
    let mut terminate = signal(SignalKind::terminate())?;
    let serve = async {
        let result = app.run_until_stopped(shutdown.clone()).await;
        // Also releases the signal watcher when the server fails on its own.
        shutdown.cancel();
        result
    };
    let signals = async {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            () = shutdown.cancelled() => {}
        }
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(serve, signals);
    Ok(result?)
}
