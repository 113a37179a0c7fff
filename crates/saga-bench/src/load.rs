//! The load itself: `concurrency` workers share a counter of sagas still to start; each starts one saga
//! with `StartSaga(wait)` — the answer comes when the saga is terminal, no polling — records the latency
//! and takes the next. A saga still running when its wait ends is followed with `WatchSaga`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use prost_types::Struct;
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::{SagaStatus, StartSagaRequest, WatchSagaRequest};
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// What to run.
#[derive(Debug)]
pub struct Plan {
    pub sagas: usize,
    pub concurrency: usize,
    pub saga_type: String,
    pub payload: Struct,
    /// A saga not terminal after this long aborts the run.
    pub saga_timeout: Duration,
}

/// The longest wait `StartSaga` accepts.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// What happened.
#[derive(Debug, Default)]
pub struct Report {
    pub wall: Duration,
    /// StartSaga sent → terminal status seen, one per saga.
    pub latencies: Vec<Duration>,
    /// Sagas by final status.
    pub outcomes: BTreeMap<SagaStatus, u64>,
    /// The sagas, to read their saga-log footprint afterwards.
    pub ids: Vec<String>,
    /// Sagas whose wait ended before they did, followed with WatchSaga.
    pub watched: u64,
}

impl Report {
    fn merge(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        for (status, n) in other.outcomes {
            *self.outcomes.entry(status).or_default() += n;
        }
        self.ids.extend(other.ids);
        self.watched += other.watched;
    }
}

pub fn is_terminal(status: SagaStatus) -> bool {
    matches!(
        status,
        SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Failed
    )
}

/// Runs the plan; the first RPC error stops every worker and is returned.
pub async fn run(client: SagaCoordinatorClient<Channel>, plan: Plan) -> Result<Report> {
    let plan = Arc::new(plan);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..plan.concurrency.min(plan.sagas) {
        workers.spawn(worker(client.clone(), Arc::clone(&plan), Arc::clone(&next)));
    }
    let mut report = Report::default();
    // Returning early drops the JoinSet, which aborts the remaining workers.
    while let Some(joined) = workers.join_next().await {
        report.merge(joined.context("bench worker panicked")??);
    }
    report.wall = started.elapsed();
    Ok(report)
}

async fn worker(
    mut client: SagaCoordinatorClient<Channel>,
    plan: Arc<Plan>,
    next: Arc<AtomicUsize>,
) -> Result<Report> {
    let mut report = Report::default();
    let wait = plan.saga_timeout.min(MAX_WAIT);
    while next.fetch_add(1, Ordering::Relaxed) < plan.sagas {
        let started = Instant::now();
        let answer = client
            .start_saga(StartSagaRequest {
                labels: Default::default(),
                saga_type: plan.saga_type.clone(),
                payload: Some(plan.payload.clone()),
                idempotency_key: String::new(),
                wait: Some(wait.try_into().context("wait as a protobuf duration")?),
            })
            .await
            .map_err(|s| anyhow!("StartSaga failed: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        let mut status = answer.status();
        if !is_terminal(status) {
            report.watched += 1;
            status = follow(&mut client, &answer.saga_id, started, &plan).await?;
        }
        report.latencies.push(started.elapsed());
        *report.outcomes.entry(status).or_default() += 1;
        report.ids.push(answer.saga_id);
    }
    Ok(report)
}

/// Follows a saga whose wait ended first with WatchSaga until it is terminal; its final status.
async fn follow(
    client: &mut SagaCoordinatorClient<Channel>,
    saga_id: &str,
    started: Instant,
    plan: &Plan,
) -> Result<SagaStatus> {
    let failed = |s: tonic::Status| {
        anyhow!(
            "WatchSaga({saga_id}) failed: {:?}: {}",
            s.code(),
            s.message()
        )
    };
    let mut stream = client
        .watch_saga(WatchSagaRequest {
            saga_id: saga_id.to_owned(),
        })
        .await
        .map_err(failed)?
        .into_inner();
    let left = plan.saga_timeout.saturating_sub(started.elapsed());
    let watch = async {
        while let Some(message) = stream.message().await.map_err(failed)? {
            let status = message.saga.context("WatchSaga without a saga")?.status();
            if is_terminal(status) {
                return Ok(status);
            }
        }
        bail!("WatchSaga({saga_id}) ended before the saga did")
    };
    tokio::time::timeout(left, watch).await.map_err(|_| {
        anyhow!(
            "saga {saga_id} not terminal after {} (--saga-timeout)",
            humantime::format_duration(plan.saga_timeout)
        )
    })?
}
