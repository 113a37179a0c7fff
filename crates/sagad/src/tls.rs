//! TLS on the API (rustls): the server configuration built from `tls.*` files, the accept loop that
//! hands tonic finished TLS connections, and the client configuration for `https://` participants.
//!
//! tonic's own `ServerTlsConfig` is fixed at start-up; sagad instead accepts connections itself with
//! `tokio-rustls`, taking the newest [`ServerConfig`] for every new connection, so a rotated certificate
//! or client CA is used from the next connection on (see [`crate::reload`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tracing::debug;

use crate::settings::{ParticipantTlsSettings, TlsSettings};

/// A TLS file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read.
    #[error("{setting}: cannot read {path}")]
    Read {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no usable PEM item of the expected kind.
    #[error("{setting}: {path} holds no PEM {kind}")]
    Empty {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// What was expected.
        kind: &'static str,
    },
    /// The file is PEM, but not valid.
    #[error("{setting}: {path} is not a valid PEM {kind}: {reason}")]
    Invalid {
        /// The setting naming the file.
        setting: &'static str,
        /// The file.
        path: String,
        /// What was expected.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// The certificate, key and CA do not make a configuration (e.g. the key does not match).
    #[error("tls: {0}")]
    Config(String),
}

/// The API's server configuration from `tls.*` (which must have `cert_file` and `key_file`).
pub(crate) fn server_config(settings: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let (Some(cert_file), Some(key_file)) = (&settings.cert_file, &settings.key_file) else {
        return Err(TlsError::Config(
            "tls.cert_file and tls.key_file are both required".to_owned(),
        ));
    };
    let provider = Arc::new(ring::default_provider());
    let chain = certificates("tls.cert_file", cert_file)?;
    let key = private_key("tls.key_file", key_file)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &settings.client_ca_file {
        Some(ca_file) => {
            let roots = roots("tls.client_ca_file", ca_file)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(format!("tls.client_ca_file: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(format!("tls.cert_file and tls.key_file: {e}")))?;
    // gRPC is HTTP/2 only.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// The client configuration for `https://` participants, if `participant_tls.ca_file` is set.
pub(crate) fn participant_config(
    settings: &ParticipantTlsSettings,
) -> Result<Option<ClientTlsConfig>, TlsError> {
    let Some(ca_file) = &settings.ca_file else {
        return Ok(None);
    };
    // Parsed here too, so a bad file fails start-up with its name rather than every call later.
    roots("participant_tls.ca_file", ca_file)?;
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(
        "participant_tls.ca_file",
        ca_file,
    )?));
    if let (Some(cert_file), Some(key_file)) = (&settings.cert_file, &settings.key_file) {
        certificates("participant_tls.cert_file", cert_file)?;
        private_key("participant_tls.key_file", key_file)?;
        config = config.identity(Identity::from_pem(
            read("participant_tls.cert_file", cert_file)?,
            read("participant_tls.key_file", key_file)?,
        ));
    }
    Ok(Some(config))
}

/// TLS connections accepted on `tcp`, each handshake with the newest configuration in `config`.
///
/// Handshakes run concurrently (a slow or silent client does not hold up the others) and must finish
/// within `handshake_timeout`. A failed handshake (a plaintext client, no or an untrusted client
/// certificate) closes that connection and is logged at debug level.
pub(crate) fn incoming(
    tcp: TcpIncoming,
    config: watch::Receiver<Arc<ServerConfig>>,
    handshake_timeout: Duration,
) -> impl Stream<Item = Result<TlsStream<TcpStream>, std::io::Error>> {
    let handshakes: JoinSet<Option<TlsStream<TcpStream>>> = JoinSet::new();
    futures::stream::unfold((tcp, handshakes), move |(mut tcp, mut handshakes)| {
        let config = config.clone();
        async move {
            loop {
                tokio::select! {
                    accepted = tcp.next() => {
                        let stream = match accepted? {
                            Ok(stream) => stream,
                            Err(e) => return Some((Err(e), (tcp, handshakes))),
                        };
                        let acceptor = TlsAcceptor::from(Arc::clone(&config.borrow()));
                        handshakes.spawn(handshake(acceptor, stream, handshake_timeout));
                    }
                    Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                        if let Ok(Some(stream)) = done {
                            return Some((Ok(stream), (tcp, handshakes)));
                        }
                    }
                }
            }
        }
    })
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Option<TlsStream<TcpStream>> {
    let peer = stream.peer_addr().ok();
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(error)) => {
            debug!(?peer, %error, "tls handshake failed");
            None
        }
        Err(_) => {
            debug!(?peer, ?timeout, "tls handshake timed out");
            None
        }
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        setting,
        path: path.display().to_string(),
        source,
    })
}

fn certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let kind = "certificate";
    let pem = read(setting, path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid {
            setting,
            path: path.display().to_string(),
            kind,
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Empty {
            setting,
            path: path.display().to_string(),
            kind,
        });
    }
    Ok(chain)
}

fn private_key(setting: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(setting, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        setting,
        path: path.display().to_string(),
        kind: "private key",
        reason: e.to_string(),
    })
}

fn roots(setting: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in certificates(setting, path)? {
        roots.add(certificate).map_err(|e| TlsError::Invalid {
            setting,
            path: path.display().to_string(),
            kind: "CA certificate",
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}
