//! What one saga's spans cost in one process, without the rest of the saga: the spans sagad and a
//! participant make for a 5-step `purchase_plan` (StartSaga's, the saga's, a step attempt and its
//! handler's per step), entered as often as their futures are polled, on one thread, through
//! `saga_telemetry::init` as the binaries install it. Prints the time per saga on that thread and the
//! process's CPU per saga (with export on, the batch exporter's thread too, the last batch flushed).
//!
//! Run it with export off, then on against a collector (the `otlp_sink` example counts spans and
//! nothing else), and compare:
//!
//! ```sh
//! cargo run --release -p e2e-tests --example otlp_sink -- 127.0.0.1:4317 &
//! cargo run --release -p saga-telemetry --example span_cost -- 40000
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317 cargo run --release -p saga-telemetry --example span_cost -- 40000
//! ```
//!
//! It measures the tracing stack, not sagad: in the real processes, among everything else, the same
//! spans cost about three times as much (BENCHMARKS.md).
use std::time::Instant;

use saga_telemetry::propagation::{
    continue_or_record_trace, continue_trace, for_new_saga, grpc_server_span, traceparent,
};
use tracing::{Instrument, info, info_span};

/// Steps of the saga, as `purchase_plan` has five.
const STEPS: [&str; 5] = ["reserve", "charge", "grant", "notify", "record"];

/// Returns after being polled `n + 1` times.
async fn polls(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

/// One saga's spans, polled about as often as sagad's and a demo participant's futures are.
async fn saga(id: u64) {
    let request = http::Request::builder()
        .uri("/saga.v1.SagaCoordinator/StartSaga")
        .body(())
        .expect("a valid request");
    let traceparent_stored = async {
        polls(2).await;
        info!(saga_id = id, saga_type = "purchase_plan", "saga started");
        for_new_saga(&tracing::Span::current(), None)
    }
    .instrument(grpc_server_span(&request))
    .await;
    let drive = info_span!(parent: None, "saga", saga_id = id, saga_type = "purchase_plan");
    continue_trace(&drive, traceparent_stored.as_deref());
    async {
        for step in STEPS {
            let call = info_span!(
                "step",
                otel.kind = "client",
                step,
                attempt = 1u32,
                direction = "execute",
                participant = "billing",
                action = "Charge",
            );
            polls(1).instrument(call.clone()).await;
            let sent = traceparent(&call);
            let handler = info_span!(
                "step",
                otel.kind = "server",
                direction = "execute",
                service = "billing",
                saga_id = id,
                saga_type = "purchase_plan",
                step,
                action = "Charge",
                attempt = 1u32,
                traceparent = tracing::field::Empty,
            );
            continue_or_record_trace(&handler, sent.as_deref());
            async {
                // A barrier transaction: about ten round trips to the participant's database.
                polls(10).instrument(handler).await;
                polls(1).await;
            }
            .instrument(call)
            .await;
            // The outcome's commit.
            polls(2).await;
        }
        info!(status = "COMPLETED", "saga finished");
    }
    .instrument(drive)
    .await;
}

/// utime + stime of this process so far, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("Linux's /proc");
    let after_name = stat.rsplit(") ").next().expect("a stat line");
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks: f64 = fields[11..=12]
        .iter()
        .map(|f| f.parse::<f64>().expect("clock ticks"))
        .sum();
    // USER_HZ, 100 on every Linux this runs on.
    ticks / 100.0
}

fn main() {
    let sagas: u32 = std::env::args()
        .nth(1)
        .map_or(20_000, |n| n.parse().expect("SAGAS is a number"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    runtime.block_on(async {
        let telemetry = saga_telemetry::init("span-cost", saga_telemetry::LogFormat::Text, "error")
            .expect("the OTEL_* variables are valid");
        for id in 0..u64::from(sagas / 4) {
            saga(id).await;
        }
        let (started, cpu) = (Instant::now(), cpu_seconds());
        for id in 0..u64::from(sagas) {
            saga(id).await;
        }
        let wall = started.elapsed().as_secs_f64();
        telemetry.shutdown().await;
        let cpu = cpu_seconds() - cpu;
        let per_saga = |seconds: f64| seconds * 1e6 / f64::from(sagas);
        println!(
            "{sagas} sagas: {:.1} µs per saga on this thread, {:.1} µs of process CPU per saga",
            per_saga(wall),
            per_saga(cpu)
        );
    });
}
