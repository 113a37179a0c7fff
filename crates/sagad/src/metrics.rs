//! The Prometheus endpoint: `GET /metrics` on a plain HTTP/1 listener of its own (`metrics_addr`),
//! serving the engine's metrics, `sagad_build_info` and the usual `process_*` metrics in the Prometheus
//! text format. Every other path is 404.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use saga_engine::Metrics;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::debug;

mod process;

/// The path Prometheus scrapes.
pub const PATH: &str = "/metrics";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// A bound, not yet serving metrics endpoint.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    registry: Arc<Registry>,
}

impl MetricsServer {
    /// Binds `addr` and prepares the registry: the engine's `metrics`, the build info and the
    /// process metrics.
    pub async fn bind(addr: SocketAddr, metrics: &Metrics) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        Ok(Self {
            listener,
            local_addr,
            registry: Arc::new(registry(metrics)),
        })
    }

    /// The bound address (the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown`; connections still open then are closed (a scrape is safe to repeat).
    pub async fn run(self, shutdown: CancellationToken) {
        let mut connections = JoinSet::new();
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = self.listener.accept() => accepted,
                // Reap finished connections so the set does not grow with every scrape.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    debug!(error = %e, "cannot accept a metrics connection");
                    continue;
                }
            };
            let registry = Arc::clone(&self.registry);
            connections.spawn(async move {
                let service = service_fn(move |request| answer(Arc::clone(&registry), request));
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(error = %e, "metrics connection failed");
                }
            });
        }
    }
}

/// The registry sagad serves.
fn registry(metrics: &Metrics) -> Registry {
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let build = Family::<BuildLabels, Gauge>::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
        })
        .set(1);
    registry.register(
        "sagad_build_info",
        "Always 1; the version label says which sagad this is",
        build,
    );
    registry.register_collector(Box::new(process::ProcessCollector));
    registry
}

async fn answer(
    registry: Arc<Registry>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let respond = |status, content_type, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = header::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        Ok(response)
    };
    if request.uri().path() != PATH {
        return respond(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    let mut text = String::new();
    match prometheus_text::encode(&mut text, &registry) {
        Ok(()) => respond(StatusCode::OK, prometheus_text::CONTENT_TYPE, text),
        Err(_) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "cannot encode the metrics\n".into(),
        ),
    }
}
