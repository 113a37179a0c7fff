//! The connection to sagad: plain or TLS (with an optional client certificate for mutual TLS), and the
//! bearer token sent with every call.

use std::path::Path;
use std::time::Duration;

use saga_proto::v1::saga_coordinator_client::SagaCoordinatorClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::cli::Connection;
use crate::exit::{Failure, chain};

/// A coordinator client that sends the token, if any, with every call.
pub type Client = SagaCoordinatorClient<InterceptedService<Channel, BearerToken>>;

/// How long to try to reach sagad before giving up (exit code 4).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Adds `authorization: Bearer <token>` to every request when a token was given.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Connects to sagad as `connection` says. An address without a scheme is taken as `http://`.
pub async fn connect(connection: &Connection) -> Result<Client, Failure> {
    let addr = if connection.addr.contains("://") {
        connection.addr.clone()
    } else {
        format!("http://{}", connection.addr)
    };
    let token = match &connection.token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| Failure::Usage("--token must be printable ASCII".to_owned()))?,
        ),
        None => None,
    };
    let mut endpoint = Endpoint::from_shared(addr.clone())
        .map_err(|e| Failure::Usage(format!("--addr {addr:?} is not a valid address: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT);
    match endpoint.uri().scheme_str() {
        Some("https") => {
            endpoint = endpoint
                .tls_config(tls(connection)?)
                .map_err(|e| Failure::Local(format!("invalid TLS settings: {}", chain(&e))))?;
        }
        Some("http") => {
            let tls_flags = connection.ca_cert.is_some()
                || connection.client_cert.is_some()
                || connection.client_key.is_some()
                || connection.tls_server_name.is_some();
            if tls_flags {
                return Err(Failure::Usage(
                    "--ca-cert, --client-cert, --client-key and --tls-server-name need an https:// address"
                        .to_owned(),
                ));
            }
        }
        _ => {
            return Err(Failure::Usage(format!(
                "--addr {addr:?} must start with http:// or https://"
            )));
        }
    }
    let channel = endpoint.connect().await.map_err(|e| Failure::Connect {
        addr: addr.clone(),
        cause: chain(&e),
    })?;
    Ok(SagaCoordinatorClient::with_interceptor(
        channel,
        BearerToken(token),
    ))
}

/// The TLS settings: the CA to trust (the system's roots by default), the client identity, the name.
fn tls(connection: &Connection) -> Result<ClientTlsConfig, Failure> {
    let mut config = match &connection.ca_cert {
        Some(path) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(path)?)),
        None => ClientTlsConfig::new().with_native_roots(),
    };
    match (&connection.client_cert, &connection.client_key) {
        (Some(cert), Some(key)) => {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        (None, None) => {}
        _ => {
            return Err(Failure::Usage(
                "--client-cert and --client-key go together (a certificate and its key)".to_owned(),
            ));
        }
    }
    if let Some(name) = &connection.tls_server_name {
        config = config.domain_name(name);
    }
    Ok(config)
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Local(format!("cannot read {}: {e}", path.display())))
}
