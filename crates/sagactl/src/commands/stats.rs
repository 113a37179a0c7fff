//! `sagactl stats [--window 1h] [--type T] [--stuck-after D] [--unclaimed-after D] [--limit N]`.

use std::time::Duration;

use saga_proto::v1::{GetStatsRequest, GetStatsResponse, SagaStats};

use crate::cli::{Output, StatsArgs};
use crate::connect::Client;
use crate::exit::{Failure, Outcome, one_line};
use crate::json;
use crate::render::{age, elapsed, reason, saga_status, stuck_reason, table, timestamp};

/// What the counts table calls the total row (no saga type can be named so: names are identifiers).
const TOTAL: &str = "(all)";

/// Asks sagad for the window's statistics and prints them: a counts table (one row per type, then the
/// total), the top failure reasons and the stuck sagas.
pub async fn stats(
    client: &mut Client,
    args: StatsArgs,
    output: Output,
) -> Result<Outcome, Failure> {
    let wire = |d: Duration| prost_types::Duration::try_from(d).ok();
    let request = GetStatsRequest {
        window: wire(args.window),
        saga_type: args.saga_type.unwrap_or_default(),
        stuck_after: args.stuck_after.and_then(wire),
        unclaimed_after: args.unclaimed_after.and_then(wire),
        limit: args.limit.unwrap_or_default(),
    };
    let stats = client.get_stats(request).await?.into_inner();
    if !json::printed(output, &stats)? {
        print(&stats);
    }
    Ok(Outcome::Done)
}

fn print(stats: &GetStatsResponse) {
    println!(
        "sagas from {} to {}",
        timestamp(stats.since.as_ref()),
        timestamp(stats.until.as_ref())
    );
    let mut counts = table([
        "TYPE",
        "STARTED",
        "COMPLETED",
        "COMPENSATED",
        "FAILED",
        "RUNNING",
        "COMPENSATING",
        "PARKED",
        "SUCCESS",
        "COMPENSATION",
        "P50",
        "P95",
        "P99",
    ]);
    for row in stats.by_type.iter().chain(&stats.total) {
        counts.add_row(count_row(row));
    }
    println!("{}", counts.trim_fmt());

    println!();
    if stats.failure_reasons.is_empty() {
        println!("failure reasons: none");
    } else {
        println!("failure reasons:");
        let mut reasons = table(["TYPE", "REASON", "STEP", "COUNT", "LATEST", "ERROR"]);
        for r in &stats.failure_reasons {
            reasons.add_row([
                r.saga_type.clone(),
                reason(r.reason()).to_owned(),
                or_dash(&r.step),
                r.count.to_string(),
                r.sample_saga_id.clone(),
                one_line(&r.sample_error),
            ]);
        }
        println!("{}", reasons.trim_fmt());
    }

    println!();
    if stats.stuck.is_empty() {
        println!("stuck sagas: none");
    } else {
        let shown = stats.stuck.len();
        match stats.stuck_count {
            n if n > shown as u64 => println!("stuck sagas: {n} (the first {shown}):"),
            n => println!("stuck sagas: {n}:"),
        }
        let mut stuck = table(["ID", "TYPE", "STATUS", "STEP", "AGE", "WHY", "OWNER"]);
        let now = crate::render::time(stats.until.as_ref()).unwrap_or_default();
        for s in &stats.stuck {
            stuck.add_row([
                s.saga_id.clone(),
                s.saga_type.clone(),
                saga_status(s.status()).to_owned(),
                or_dash(&s.current_step),
                age(s.created_at.as_ref(), now),
                stuck_reason(s.reason()).to_owned(),
                or_dash(&s.owner),
            ]);
        }
        println!("{}", stuck.trim_fmt());
    }
}

/// One row of the counts table.
fn count_row(stats: &SagaStats) -> [String; 13] {
    let percentile =
        |pick: fn(&saga_proto::v1::DurationPercentiles) -> Option<&prost_types::Duration>| {
            stats
                .duration
                .as_ref()
                .and_then(pick)
                .and_then(|d| Duration::try_from(*d).ok())
                .map_or_else(|| "-".to_owned(), elapsed)
        };
    let finished = stats.completed + stats.compensated + stats.failed;
    let rate = |r: f64| {
        if finished == 0 {
            "-".to_owned()
        } else {
            format!("{:.1}%", r * 100.0)
        }
    };
    [
        match stats.saga_type.as_str() {
            "" => TOTAL.to_owned(),
            saga_type => saga_type.to_owned(),
        },
        stats.started.to_string(),
        stats.completed.to_string(),
        stats.compensated.to_string(),
        stats.failed.to_string(),
        stats.running.to_string(),
        stats.compensating.to_string(),
        stats.parked.to_string(),
        rate(stats.success_rate),
        rate(stats.compensation_rate),
        percentile(|p| p.p50.as_ref()),
        percentile(|p| p.p95.as_ref()),
        percentile(|p| p.p99.as_ref()),
    ]
}

/// `text`, or `-` when empty, so that every column holds one word.
fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}
