//! A real OTLP/gRPC trace receiver: the collector's `TraceService`, served on port 0 in the test process.
//! sagad and the participants export to it (`OTEL_EXPORTER_OTLP_ENDPOINT`); every span it receives is
//! handed to the test through a channel, so tests wait for spans as they arrive.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

/// How long a test waits for a span before giving up.
const SPAN_TIMEOUT: Duration = Duration::from_secs(30);

/// One span as a collector received it, with its resource's identity.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The resource's `service.name`.
    pub service: String,
    /// The resource's `process.pid`, telling replicas apart.
    pub pid: i64,
    /// The span name.
    pub name: String,
    /// Server, client, internal...
    pub kind: SpanKind,
    /// Trace id, hex.
    pub trace_id: String,
    /// Span id, hex.
    pub span_id: String,
    /// The parent's span id, hex; empty for a root span.
    pub parent_span_id: String,
    /// The attributes, each value as text.
    pub attributes: BTreeMap<String, String>,
}

impl ReceivedSpan {
    /// An attribute's value as text, if set.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

impl fmt::Display for ReceivedSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}] {} ({}) trace={} span={} parent={} {:?}",
            self.service,
            self.pid,
            self.name,
            self.kind.as_str_name(),
            self.trace_id,
            self.span_id,
            self.parent_span_id,
            self.attributes
        )
    }
}

/// The receiver: its endpoint, and the spans received so far.
pub struct OtlpReceiver {
    /// `http://127.0.0.1:<port>`, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    arriving: mpsc::UnboundedReceiver<ReceivedSpan>,
    received: Vec<ReceivedSpan>,
    stop: CancellationToken,
}

impl OtlpReceiver {
    /// Serves the trace service on 127.0.0.1, port 0.
    ///
    /// # Panics
    /// When it cannot bind.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("cannot bind 127.0.0.1:0: {e}"));
        let endpoint = format!("http://{}", listener.local_addr().expect("local address"));
        let (sender, arriving) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let server = Server::builder()
            .add_service(TraceServiceServer::new(Collector { sender }))
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener),
                stop.clone().cancelled_owned(),
            );
        tokio::spawn(async move {
            if let Err(e) = server.await {
                eprintln!("OTLP receiver stopped: {e}");
            }
        });
        Self {
            endpoint,
            arriving,
            received: Vec::new(),
            stop,
        }
    }

    /// The environment that makes a sagad or participant process export to this receiver, its batches
    /// sent every 100 ms (so spans arrive before a killed process could send them).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint.clone()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ]
    }

    /// The first span received, or still to come, that satisfies `wanted` (described by `what`).
    ///
    /// # Panics
    /// When none arrives within 30 s.
    pub async fn wait_for(
        &mut self,
        what: &str,
        wanted: impl Fn(&ReceivedSpan) -> bool,
    ) -> ReceivedSpan {
        if let Some(span) = self.received.iter().find(|span| wanted(span)) {
            return span.clone();
        }
        let arrive = async {
            while let Some(span) = self.arriving.recv().await {
                self.received.push(span.clone());
                if wanted(&span) {
                    return span;
                }
            }
            panic!("the OTLP receiver stopped")
        };
        match tokio::time::timeout(SPAN_TIMEOUT, arrive).await {
            Ok(span) => span,
            Err(_) => panic!(
                "no span {what} within {SPAN_TIMEOUT:?}; received:\n{}",
                self.received
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }

    /// Every span received so far (those [`OtlpReceiver::wait_for`] took in).
    pub fn received(&self) -> &[ReceivedSpan] {
        &self.received
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The collector's trace service: forwards every span to the test.
struct Collector {
    sender: mpsc::UnboundedSender<ReceivedSpan>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        for resource_spans in request.into_inner().resource_spans {
            let resource = attributes(
                resource_spans
                    .resource
                    .map(|r| r.attributes)
                    .unwrap_or_default(),
            );
            let service = resource.get("service.name").cloned().unwrap_or_default();
            let pid = resource
                .get("process.pid")
                .and_then(|pid| pid.parse().ok())
                .unwrap_or_default();
            for span in resource_spans
                .scope_spans
                .into_iter()
                .flat_map(|scope| scope.spans)
            {
                // A test that stopped listening no longer cares.
                let _ = self.sender.send(ReceivedSpan {
                    service: service.clone(),
                    pid,
                    name: span.name,
                    kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                    trace_id: hex::encode(span.trace_id),
                    span_id: hex::encode(span.span_id),
                    parent_span_id: hex::encode(span.parent_span_id),
                    attributes: attributes(span.attributes),
                });
            }
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// Key-values as text.
fn attributes(pairs: Vec<KeyValue>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|pair| (pair.key, pair.value.map(text).unwrap_or_default()))
        .collect()
}

fn text(value: AnyValue) -> String {
    match value.value {
        Some(Value::StringValue(s)) => s,
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}
