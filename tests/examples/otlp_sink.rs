//! A stand-in OTLP collector for measuring the cost of span export (e.g. with `saga-bench`): accepts the
//! collector's `TraceService/Export` calls on the address given (default `127.0.0.1:4317`), prints its
//! endpoint, then once a second the number of spans received so far, until interrupted.
//!
//! It counts spans without decoding them. A real collector runs on its own machine; this one shares the
//! benchmark's cores with sagad and the participants, so every microsecond it spends building spans it
//! does not need would be charged to the export it stands in for. The test suite's receiver
//! (`e2e_tests::otlp`) decodes everything, for tests that read the spans.
//!
//! `cargo run --release -p e2e-tests --example otlp_sink -- 127.0.0.1:4317`

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Bytes, Context, Poll, Service, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// The export method's path.
const EXPORT: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// `ExportTraceServiceRequest`, read only as deep as needed to count its spans: each span stays the bytes
/// it arrived as.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<ResourceSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ResourceSpans {
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<ScopeSpans>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ScopeSpans {
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<Bytes>,
}

/// `ExportTraceServiceResponse` with no partial success: everything was accepted.
#[derive(Clone, PartialEq, prost::Message)]
struct ExportResponse {}

/// The trace service: counts the spans of every export.
#[derive(Clone, Default)]
struct CountingCollector {
    spans: Arc<AtomicU64>,
}

impl NamedService for CountingCollector {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl Service<http::Request<Body>> for CountingCollector {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let collector = self.clone();
        Box::pin(async move {
            if request.uri().path() != EXPORT {
                return Ok(Status::unimplemented("only Export is served").into_http());
            }
            let mut grpc = Grpc::new(ProstCodec::<ExportResponse, ExportRequest>::default());
            Ok(grpc.unary(collector, request).await)
        })
    }
}

impl UnaryService<ExportRequest> for CountingCollector {
    type Response = ExportResponse;
    type Future = std::future::Ready<Result<Response<ExportResponse>, Status>>;

    fn call(&mut self, request: Request<ExportRequest>) -> Self::Future {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|resource| &resource.scope_spans)
            .map(|scope| scope.spans.len())
            .sum();
        self.spans
            .fetch_add(u64::try_from(spans).unwrap_or(u64::MAX), Ordering::Relaxed);
        std::future::ready(Ok(Response::new(ExportResponse {})))
    }
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4317".to_owned());
    let listener = TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("cannot bind {addr}: {e}"));
    let local = listener.local_addr().expect("local address");
    let collector = CountingCollector::default();
    let spans = Arc::clone(&collector.spans);
    let server = Server::builder()
        .add_service(collector)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        });
    println!("OTLP sink listening on http://{local}");
    let report = async {
        let mut counted = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let received = spans.load(Ordering::Relaxed);
            if received != counted {
                counted = received;
                println!("{counted} spans received");
            }
        }
    };
    tokio::select! {
        served = server => {
            if let Err(e) = served {
                eprintln!("OTLP sink stopped: {e}");
            }
        }
        () = report => {}
    }
}
