//! The noop participant: answers every `Execute` and `Compensate` at once with an empty output, touching
//! no database — so a benchmark of a saga made of its steps measures sagad and its saga log alone. A
//! `holdMs` number in the saga state makes it hold each execute that long first (the memory bound run).

use std::time::Duration;

use anyhow::{Context, Result};
use prost_types::value::Kind;
use saga_proto::v1::saga_participant_server::{SagaParticipant, SagaParticipantServer};
use saga_proto::v1::{StepRequest, StepResponse};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

struct Noop;

#[tonic::async_trait]
impl SagaParticipant for Noop {
    async fn execute(
        &self,
        request: Request<StepRequest>,
    ) -> Result<Response<StepResponse>, Status> {
        let hold = request
            .get_ref()
            .payload
            .as_ref()
            .and_then(|p| p.fields.get("holdMs"))
            .and_then(|v| match v.kind {
                Some(Kind::NumberValue(ms)) if ms > 0.0 => Some(Duration::from_secs_f64(ms / 1e3)),
                _ => None,
            });
        if let Some(hold) = hold {
            tokio::time::sleep(hold).await;
        }
        Ok(Response::new(StepResponse::default()))
    }

    async fn compensate(&self, _: Request<StepRequest>) -> Result<Response<StepResponse>, Status> {
        Ok(Response::new(StepResponse::default()))
    }
}

/// Serves the noop participant on `listen` until the process is stopped; prints its address first.
pub async fn serve(listen: &str) -> Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    println!("noop listening on {}", listener.local_addr()?);
    Server::builder()
        .add_service(SagaParticipantServer::new(Noop))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
        )
        .await
        .context("noop participant failed")
}
