//! The load itself: `concurrency` workers share a counter of sagas still to start; each starts one saga,
//! polls `GetStatus` until the saga is terminal, records the latency and takes the next.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use prost_types::Struct;
use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use saga_proto::v1::{GetStatusRequest, SagaStatus, StartSagaRequest};
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// What to run.
#[derive(Debug)]
pub struct Plan {
    pub sagas: usize,
    pub concurrency: usize,
    pub saga_type: String,
    pub payload: Struct,
    /// First wait before polling; doubles after every poll up to `poll_max`.
    pub poll_min: Duration,
    pub poll_max: Duration,
    /// A saga not terminal after this long aborts the run.
    pub saga_timeout: Duration,
}

/// What happened.
#[derive(Debug, Default)]
pub struct Report {
    pub wall: Duration,
    /// StartSaga sent → terminal status seen, one per saga.
    pub latencies: Vec<Duration>,
    /// Sagas by final status.
    pub outcomes: BTreeMap<SagaStatus, u64>,
    pub get_status_calls: u64,
    /// Steps in the saga (from GetStatus), 0 if never polled.
    pub steps: usize,
    /// Sum over the sagas of their final revision + 1: the saga-log writes that moved them (the insert,
    /// then one per committed transition), whatever else the database did meanwhile.
    pub saga_writes: u64,
}

impl Report {
    fn merge(&mut self, other: Self) {
        self.latencies.extend(other.latencies);
        for (status, n) in other.outcomes {
            *self.outcomes.entry(status).or_default() += n;
        }
        self.get_status_calls += other.get_status_calls;
        self.steps = self.steps.max(other.steps);
        self.saga_writes += other.saga_writes;
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
    while next.fetch_add(1, Ordering::Relaxed) < plan.sagas {
        let started = Instant::now();
        let answer = client
            .start_saga(StartSagaRequest {
                saga_type: plan.saga_type.clone(),
                payload: Some(plan.payload.clone()),
                idempotency_key: String::new(),
                wait: None,
            })
            .await
            .map_err(|s| anyhow!("StartSaga failed: {:?}: {}", s.code(), s.message()))?
            .into_inner();
        let mut status = answer.status();
        let mut revision = 0;
        let mut wait = plan.poll_min;
        while !is_terminal(status) {
            if started.elapsed() > plan.saga_timeout {
                bail!(
                    "saga {} still {} after {} (--saga-timeout)",
                    answer.saga_id,
                    status.as_str_name(),
                    humantime::format_duration(plan.saga_timeout)
                );
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(plan.poll_max);
            let saga = client
                .get_status(GetStatusRequest {
                    saga_id: answer.saga_id.clone(),
                })
                .await
                .map_err(|s| {
                    anyhow!(
                        "GetStatus({}) failed: {:?}: {}",
                        answer.saga_id,
                        s.code(),
                        s.message()
                    )
                })?
                .into_inner()
                .saga
                .with_context(|| {
                    format!("GetStatus({}) answered without a saga", answer.saga_id)
                })?;
            report.get_status_calls += 1;
            report.steps = report.steps.max(saga.steps.len());
            revision = saga.revision;
            status = saga.status();
        }
        report.saga_writes += revision + 1;
        report.latencies.push(started.elapsed());
        *report.outcomes.entry(status).or_default() += 1;
    }
    Ok(report)
}
