//! `saga-bench`: a load generator for a running sagad. It measures throughput, completion latency and
//! the number of database commits sagad spends per saga.
//!
//! How:
//! 1. reads `pg_stat_database.xact_commit` of sagad's database (see [`pg`] for why the bench's own reads
//!    never count);
//! 2. starts `--sagas` sagas with `--concurrency` workers; each worker calls `StartSaga`, then polls
//!    `GetStatus` (waiting 2 ms, doubling up to 50 ms) until the saga is terminal, and records the latency
//!    from sending `StartSaga` to seeing the terminal status (so it includes up to one poll interval);
//! 3. prints sagas, concurrency, wall time, sagas/s, p50/p90/p99/max latency and the final statuses;
//! 4. waits until PostgreSQL's statistics settle (an idle backend may publish its last counters only
//!    10 s later; see [`pg::SETTLE`]), reads the counter again and prints the delta and
//!    `commits per saga = (delta − GetStatus calls − bench's own commits) / sagas`:
//!    each `GetStatus` is one read transaction on sagad's side, and the bench's own reads share one
//!    transaction committed after the last read, so that term is 0. Whatever else commits in that
//!    database meanwhile (sagad's recovery polls, lease renewals, other clients) is included.
//!
//! Exits non-zero when sagad or its database is unreachable, or any RPC fails.

mod load;
mod pg;
mod stats;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use saga_proto::v1::SagaStatus;
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use tonic::transport::Endpoint;

use crate::load::{Plan, Report};
use crate::pg::{CommitCounter, Settled};
use crate::stats::Summary;

/// Load generator for sagad: starts sagas and reports throughput, latency and commits per saga.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// sagad's gRPC address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// How many sagas to run.
    #[arg(long, short = 'n', default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    sagas: u32,
    /// How many sagas run at once (one worker each).
    #[arg(long, short = 'c', default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: u32,
    /// Saga definition to start.
    #[arg(long, default_value = "purchase_plan")]
    saga_type: String,
    /// Start payload, a JSON object.
    #[arg(long, default_value = r#"{"userId":"bench","planId":"pro"}"#)]
    payload: String,
    /// sagad's PostgreSQL database, whose commits are counted.
    #[arg(
        long,
        env = "SAGAD_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/sagad"
    )]
    database_url: String,
    /// Give up (and fail) if one saga is not terminal after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    saga_timeout: Duration,
}

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line with the whole cause chain, without the backtrace anyhow's Debug adds.
            eprintln!("saga-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn bench() -> Result<()> {
    let args = Args::parse();
    let serde_json::Value::Object(payload) =
        serde_json::from_str(&args.payload).context("--payload is not valid JSON")?
    else {
        bail!("--payload must be a JSON object, got {}", args.payload);
    };

    let channel = Endpoint::from_shared(args.addr.clone())
        .with_context(|| format!("--addr {} is not a valid URI", args.addr))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("cannot reach sagad at {}", args.addr))?;
    let mut counter = CommitCounter::connect(&args.database_url).await?;
    let before = counter.read().await?;

    eprintln!(
        "running {} {} sagas against {} with {} workers ...",
        args.sagas, args.saga_type, args.addr, args.concurrency
    );
    let plan = Plan {
        sagas: args.sagas as usize,
        concurrency: args.concurrency as usize,
        saga_type: args.saga_type,
        payload: saga_proto::json_to_struct(payload),
        poll_min: Duration::from_millis(2),
        poll_max: Duration::from_millis(50),
        saga_timeout: args.saga_timeout,
    };
    let report = load::run(SagaCoordinatorClient::new(channel), plan).await?;
    print_run(&report, args.sagas, args.concurrency);

    eprintln!("waiting (11-15 s) for PostgreSQL statistics to settle ...");
    let settled = counter.settle(pg::SETTLE).await?;
    print_commits(&report, args.sagas, &counter, before, settled);
    counter.finish().await
}

/// One table row: label, value, optional note.
fn row(label: &str, value: impl std::fmt::Display, note: &str) {
    let line = format!("  {label:<22} {:<10} {note}", value.to_string());
    println!("{}", line.trim_end());
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn print_run(report: &Report, sagas: u32, concurrency: u32) {
    println!("run");
    row("sagas", sagas, "");
    row("concurrency", concurrency, "");
    row(
        "wall time",
        format!("{:.3} s", report.wall.as_secs_f64()),
        "",
    );
    row(
        "throughput",
        format!("{:.1}", f64::from(sagas) / report.wall.as_secs_f64()),
        "sagas/s",
    );
    if let Some(s) = Summary::of(report.latencies.clone()) {
        let note = "StartSaga sent -> terminal status seen";
        row("latency p50", ms(s.p50), note);
        row("latency p90", ms(s.p90), "");
        row("latency p99", ms(s.p99), "");
        row("latency max", ms(s.max), "");
    }
    for status in [
        SagaStatus::Completed,
        SagaStatus::Compensated,
        SagaStatus::Failed,
    ] {
        let name = status.as_str_name().trim_start_matches("SAGA_STATUS_");
        row(name, report.outcomes.get(&status).copied().unwrap_or(0), "");
    }
    row("GetStatus calls", report.get_status_calls, "");
}

fn print_commits(
    report: &Report,
    sagas: u32,
    counter: &CommitCounter,
    before: i64,
    settled: Settled,
) {
    println!();
    println!(
        "commits (pg_stat_database.xact_commit of database \"{}\")",
        counter.database()
    );
    let waited = format!("{:.1} s", settled.waited.as_secs_f64());
    if settled.stable {
        row("stats settled after", waited, "");
    } else {
        row(
            "stats still moving",
            waited,
            "gave up waiting: commits made meanwhile (e.g. sagad background work) are in the delta",
        );
    }
    let delta = settled.value - before;
    let calls = i64::try_from(report.get_status_calls).unwrap_or(i64::MAX);
    let own = 0_i64;
    row("delta", delta, "");
    row(
        "GetStatus calls",
        calls,
        "one read transaction each on sagad's side",
    );
    row(
        "bench's own commits",
        own,
        &format!(
            "its {} statements share one transaction, committed after the last read",
            counter.statements()
        ),
    );
    #[allow(clippy::cast_precision_loss)] // commit counts are far below 2^52
    let per_saga = (delta - calls - own) as f64 / f64::from(sagas);
    row(
        "commits per saga",
        format!("{per_saga:.2}"),
        &format!(
            "= (delta - GetStatus calls - bench's own commits) / sagas = ({delta} - {calls} - {own}) / {sagas}; \
             includes sagad's background commits (recovery scans, lease renewals) during the run and the wait"
        ),
    );
    #[allow(clippy::cast_precision_loss)]
    let writes = report.saga_writes as f64 / f64::from(sagas);
    row(
        "saga-log writes/saga",
        format!("{writes:.2}"),
        "= mean of (final revision + 1): the insert plus one commit per transition, background excluded",
    );
    if report.steps > 0 {
        row(
            "happy-path budget",
            report.steps + 1,
            "= steps + 1 (StartSaga, then one commit per step outcome)",
        );
    }
}
