//! Serves a participant on a listener the caller bound (port 0 in tests), with gRPC health.

use saga_proto::v1::saga_participant_server::{SagaParticipant, SagaParticipantServer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// The participant server stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("participant server failed")]
pub struct ServeError(#[from] tonic::transport::Error);

/// Serves `participant` (usually a [`crate::ParticipantService`]) and `grpc.health.v1.Health` on
/// `listener` until `shutdown` is cancelled.
///
/// Health reports `saga.v1.SagaParticipant` `SERVING` while it runs and `NOT_SERVING` once shutdown starts;
/// in-flight calls are then drained before this returns.
pub async fn serve<S: SagaParticipant>(
    listener: TcpListener,
    participant: S,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<SagaParticipantServer<S>>().await;

    // Small request/response pairs: without TCP_NODELAY, Nagle and delayed ACKs add tens of milliseconds.
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let stopped = async move {
        shutdown.cancelled().await;
        health.set_not_serving::<SagaParticipantServer<S>>().await;
    };

    Server::builder()
        .add_service(health_service)
        .add_service(SagaParticipantServer::new(participant))
        .serve_with_incoming_shutdown(incoming, stopped)
        .await?;
    Ok(())
}
