//! The memory bound: start many sagas whose first step the noop participant holds (`holdMs` in the
//! payload), so they all stay in flight at once, and read sagad's resident memory while they do. Then one
//! more start beyond the instance's `max_in_flight` must be refused, not queued.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use procfs::process::{Process, all_processes};
use saga_proto::v1::StartSagaRequest;
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use serde_json::json;
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// What to hold.
#[derive(Debug, Clone)]
pub struct Hold {
    pub saga_type: String,
    pub sagas: usize,
    /// How long the participant holds each saga's first step.
    pub hold: Duration,
    /// How long to watch sagad's memory once every saga is in flight.
    pub observe: Duration,
    /// Concurrent `StartSaga` calls while filling up.
    pub starters: usize,
    /// sagad's process id; `None` reads the one process named `sagad`.
    pub sagad_pid: Option<i32>,
}

/// Starts `hold.sagas` held sagas, then reports sagad's peak resident memory and what one more start
/// answered.
pub async fn run(client: SagaCoordinatorClient<Channel>, hold: Hold) -> Result<()> {
    let baseline = sagad_rss(hold.sagad_pid)?;
    let (saga_type, held) = (hold.saga_type.clone(), hold.hold.as_millis());
    let request = move |i: usize| StartSagaRequest {
        saga_type: saga_type.clone(),
        payload: Some(saga_proto::json_to_struct(
            json!({"holdMs": held, "n": i})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )),
        ..StartSagaRequest::default()
    };
    let started = Instant::now();
    let mut starters = JoinSet::new();
    for worker in 0..hold.starters {
        let (mut client, request) = (client.clone(), request.clone());
        let share = (worker..hold.sagas)
            .step_by(hold.starters)
            .collect::<Vec<_>>();
        starters.spawn(async move {
            for i in share {
                client
                    .start_saga(request(i))
                    .await
                    .map_err(|s| anyhow!("StartSaga {i}: {:?}: {}", s.code(), s.message()))?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = starters.join_next().await {
        done.context("starter panicked")??;
    }
    println!(
        "{} sagas in flight after {:.1} s",
        hold.sagas,
        started.elapsed().as_secs_f64()
    );
    let mut peak = 0;
    let watching = Instant::now();
    while watching.elapsed() < hold.observe {
        peak = peak.max(sagad_rss(hold.sagad_pid)?);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mb = |bytes: u64| bytes / (1024 * 1024);
    println!("  sagad RSS before       {} MB", mb(baseline));
    println!("  sagad RSS peak held    {} MB", mb(peak));
    let one_more = client.clone().start_saga(request(hold.sagas)).await;
    match one_more {
        Ok(answer) => println!(
            "  one more start         accepted ({}): max_in_flight is above {}",
            answer.into_inner().saga_id,
            hold.sagas
        ),
        Err(status) => println!(
            "  one more start         {:?}: {}",
            status.code(),
            status.message()
        ),
    }
    Ok(())
}

/// Resident memory of sagad: process `pid`, else the (one) process named `sagad`, which on a machine
/// running other sagad processes may be any of them.
fn sagad_rss(pid: Option<i32>) -> Result<u64> {
    let page = procfs::page_size();
    if let Some(pid) = pid {
        let stat = Process::new(pid)
            .and_then(|p| p.stat())
            .with_context(|| format!("no sagad process {pid}"))?;
        return Ok(stat.rss * page);
    }
    all_processes()
        .context("listing /proc")?
        .flatten()
        .filter_map(|p| p.stat().ok())
        .find(|stat| stat.comm == "sagad")
        .map(|stat| stat.rss * page)
        .context("no sagad process")
}
