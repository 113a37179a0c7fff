//! Serves a participant on a listener the caller bound (port 0 in tests), with gRPC health, in plaintext
//! or TLS (optionally requiring client certificates: mTLS).

use std::path::{Path, PathBuf};

use saga_proto::v1::saga_participant_server::{SagaParticipant, SagaParticipantServer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// The participant server stopped with an error.
#[derive(Debug, thiserror::Error)]
#[error("participant server failed")]
pub struct ServeError(#[from] tonic::transport::Error);

/// A TLS file that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}")]
pub struct TlsFileError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub source: std::io::Error,
}

/// The PEM files a participant serves TLS with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain presented to callers.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// When set, callers must present a certificate signed by this CA (mTLS).
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Reads the files into a server configuration (certificates are checked at the first handshake).
    pub fn server_config(&self) -> Result<ServerTlsConfig, TlsFileError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsFileError {
                path: path.to_owned(),
                source,
            })
        };
        let mut config = ServerTlsConfig::new()
            .identity(Identity::from_pem(read(&self.cert)?, read(&self.key)?));
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(config)
    }
}

/// Serves `participant` (usually a [`crate::ParticipantService`]) and `grpc.health.v1.Health` on
/// `listener` in plaintext until `shutdown` is cancelled.
///
/// Health reports `saga.v1.SagaParticipant` `SERVING` while it runs and `NOT_SERVING` once shutdown starts;
/// in-flight calls are then drained before this returns.
pub async fn serve<S: SagaParticipant>(
    listener: TcpListener,
    participant: S,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve_with_tls(listener, participant, None, shutdown).await
}

/// Like [`serve`], over TLS when `tls` is given (see [`TlsFiles::server_config`]); a configuration with a
/// client CA refuses callers without a certificate it signed.
pub async fn serve_with_tls<S: SagaParticipant>(
    listener: TcpListener,
    participant: S,
    tls: Option<ServerTlsConfig>,
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

    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server.tls_config(tls)?;
    }
    server
        .add_service(health_service)
        .add_service(SagaParticipantServer::new(participant))
        .serve_with_incoming_shutdown(incoming, stopped)
        .await?;
    Ok(())
}
