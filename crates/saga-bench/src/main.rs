//! `saga-bench`: a load generator for a running sagad. It measures throughput, completion latency, the
//! saga-log writes and PostgreSQL transactions sagad spends per saga, and the CPU time one saga costs
//! sagad, PostgreSQL, the participants and the bench. `saga-bench noop-participant` serves the noop
//! participant the engine benchmark's saga calls (`scripts/bench.sh`, BENCHMARKS.md).
//!
//! How a run works:
//! 1. reads `pg_stat_database.xact_commit` of sagad's database (see [`pg`] for why the bench's own reads
//!    never count) and every process's CPU time (see [`cpu`]);
//! 2. starts `--sagas` sagas with `--concurrency` workers; each worker calls `StartSaga` with `wait`, so
//!    the answer comes when the saga is terminal (no polling), and records the latency from sending
//!    `StartSaga` to that answer;
//! 3. prints sagas, concurrency, wall time, sagas/s, p50/p90/p99/max latency, the final statuses, and the
//!    CPU time per saga of each side;
//! 4. reads each saga's final revision (saga-log writes = revision + 1), waits until PostgreSQL's
//!    statistics settle (an idle backend may publish its last counters only 10 s later; see
//!    [`pg::SETTLE`]), reads the counter again and prints the transactions per saga. Whatever else
//!    commits in that database meanwhile (sagad's recovery scans, lease renewals) is included.
//!
//! Exits non-zero when sagad or its database is unreachable, or any RPC fails.

mod cpu;
mod hold;
mod load;
mod noop;
mod pg;
mod stats;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use saga_proto::v1::SagaStatus;
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use tonic::transport::Endpoint;

use crate::cpu::Side;
use crate::load::{Plan, Report};
use crate::pg::{CommitCounter, Settled};
use crate::stats::Summary;

/// Load generator for sagad: starts sagas and reports throughput, latency, saga-log writes, PostgreSQL
/// transactions and CPU time per saga.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: Args,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Holds many sagas in flight at once (the noop participant holds their first step) and reports
    /// sagad's resident memory, then what one more start beyond them answers.
    Hold {
        /// sagad's gRPC address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        /// Saga definition to start (its first step must be on the noop participant).
        #[arg(long, default_value = "noop")]
        saga_type: String,
        /// How many sagas to hold.
        #[arg(long, short = 'n', default_value_t = 10_000)]
        sagas: usize,
        /// How long the participant holds each first step.
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        hold: Duration,
        /// How long to watch sagad's memory once they are all in flight.
        #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
        observe: Duration,
        /// sagad's process id, whose memory to read; by default the one process named `sagad`.
        #[arg(long)]
        sagad_pid: Option<i32>,
    },
    /// Serves the noop participant (every step answers at once, no state) until stopped.
    NoopParticipant {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50079")]
        listen: String,
    },
}

/// One run.
#[derive(Debug, clap::Args)]
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
    /// sagad's process id (repeat for several): only these count as sagad's CPU time, not every process
    /// named `sagad`.
    #[arg(long = "sagad-pid")]
    sagad_pids: Vec<i32>,
    /// A participant's process id (repeat for several): only these count as the participants' CPU time.
    #[arg(long = "participant-pid")]
    participant_pids: Vec<i32>,
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
    let cli = Cli::parse();
    match cli.command {
        Some(Command::NoopParticipant { listen }) => return noop::serve(&listen).await,
        Some(Command::Hold {
            addr,
            saga_type,
            sagas,
            hold,
            observe,
            sagad_pid,
        }) => {
            let channel = Endpoint::from_shared(addr.clone())
                .with_context(|| format!("--addr {addr} is not a valid URI"))?
                .connect()
                .await
                .with_context(|| format!("cannot reach sagad at {addr}"))?;
            let hold = hold::Hold {
                saga_type,
                sagas,
                hold,
                observe,
                starters: 64,
                sagad_pid,
            };
            return hold::run(SagaCoordinatorClient::new(channel), hold).await;
        }
        None => {}
    }
    let args = cli.run;
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
    let pids = cpu::Pids {
        sagad: args.sagad_pids,
        participants: args.participant_pids,
    };
    let cpu_before = cpu::Sample::take(&pids)?;

    eprintln!(
        "running {} {} sagas against {} with {} workers ...",
        args.sagas, args.saga_type, args.addr, args.concurrency
    );
    let plan = Plan {
        sagas: args.sagas as usize,
        concurrency: args.concurrency as usize,
        saga_type: args.saga_type,
        payload: saga_proto::json_to_struct(payload),
        saga_timeout: args.saga_timeout,
    };
    let report = load::run(SagaCoordinatorClient::new(channel), plan).await?;
    let cpu = cpu::Sample::take(&pids)?.since(&cpu_before);
    print_run(&report, args.sagas, args.concurrency);
    print_cpu(&cpu, args.sagas, &pids);

    let (writes, steps) = counter.footprint(&report.ids).await?;
    eprintln!("waiting (11-15 s) for PostgreSQL statistics to settle ...");
    let settled = counter.settle(pg::SETTLE).await?;
    print_commits(args.sagas, &counter, before, settled, writes, steps);
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
    row(
        "followed by watch",
        report.watched,
        "sagas still running when StartSaga's wait ended",
    );
}

fn print_cpu(cpu: &HashMap<Side, f64>, sagas: u32, pids: &cpu::Pids) {
    let counted = |pids: &[i32], name| {
        if pids.is_empty() {
            format!("{name}: every process of that name")
        } else {
            format!("{name}: pids {pids:?}")
        }
    };
    println!();
    println!(
        "CPU time per saga (user + system, from /proc; {}; {}; PostgreSQL: every server process)",
        counted(&pids.sagad, "sagad"),
        counted(&pids.participants, "participants")
    );
    for side in Side::ALL {
        let seconds = cpu.get(&side).copied().unwrap_or_default();
        row(
            side.name(),
            format!("{:.0} us", seconds * 1e6 / f64::from(sagas)),
            &format!("{seconds:.2} s in all"),
        );
    }
}

fn print_commits(
    sagas: u32,
    counter: &CommitCounter,
    before: i64,
    settled: Settled,
    writes: i64,
    steps: i64,
) {
    println!();
    println!("saga log (database \"{}\")", counter.database());
    #[allow(clippy::cast_precision_loss)] // counts are far below 2^52
    let per_saga = |n: i64| n as f64 / f64::from(sagas);
    row(
        "saga-log writes/saga",
        format!("{:.2}", per_saga(writes)),
        "= mean of (final revision + 1): the insert plus one write per transition",
    );
    if steps > 0 {
        row(
            "happy-path budget",
            steps + 1,
            "= steps + 1 (StartSaga, then one write per step outcome)",
        );
    }
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
    row(
        "transactions/saga",
        format!("{:.2}", per_saga(delta)),
        &format!(
            "= pg_stat_database.xact_commit delta / sagas = {delta} / {sagas}; writes share \
             transactions under group commit; includes sagad's background work (recovery scans, lease \
             renewals) during the run and the wait; the bench's own {} statements share one \
             transaction committed after the last read",
            counter.statements()
        ),
    );
}
