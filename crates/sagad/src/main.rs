//! `sagad`: the saga orchestrator process.

/// jemalloc rather than glibc's allocator: in a profile of a `purchase_plan` run, glibc's malloc and free
/// (with its chunk consolidation) took about a tenth of sagad's and the demo participants' CPU. Measured
/// with `purchase_plan` at 32 workers (BENCHMARKS.md): about 12 % less CPU per saga in sagad and 7 % in
/// the demo participants; 10,000 sagas in flight stay at 74 MB peak.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sagad::{Application, Settings};
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
    let telemetry = saga_telemetry::init("sagad", settings.log_format, "info")?;
    let result = serve(settings).await;
    // Also after a failed start: the spans that explain it are exported.
    telemetry.shutdown().await;
    result
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    // Machine-readable readiness line: tests and scripts read the real port from it.
    println!("sagad listening on {}", app.local_addr());
    // Second, so that scripts reading the first "listening on" line still find the API.
    if let Some(addr) = app.metrics_addr() {
        println!("metrics listening on {addr}");
    }

    // The first SIGINT/SIGTERM drains, a second exits at once.
    let shutdown = CancellationToken::new();
    let serving = app.run_until_stopped(shutdown.clone());
    saga_shutdown::until_stopped("sagad", shutdown, serving).await??;
    Ok(())
}
