//! W3C trace context (`traceparent`) in and out of spans: how one saga stays one trace from the StartSaga
//! caller through sagad's saga log, any replica that takes the saga over, and every participant.
//!
//! While spans are not exported these helpers do nothing and cost nothing: the `traceparent` a caller
//! sent is then passed along as it came.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use saga_proto::contract::TRACEPARENT_HEADER as TRACEPARENT;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::exporting;

/// Makes `span` (not yet entered) a child of the span `traceparent` names, so it joins that trace; an
/// absent or malformed `traceparent` leaves it where it is (its parent span's trace, or a new one).
pub fn continue_trace(span: &Span, traceparent: Option<&str>) {
    if !exporting() {
        return;
    }
    let Some(traceparent) = traceparent else {
        return;
    };
    let parent = parse(traceparent);
    if parent.span().span_context().is_valid() {
        // Only fails when the span is disabled or already entered: it then keeps its own parent.
        let _ = span.set_parent(parent);
    }
}

/// The `traceparent` that makes a remote span a child of `span`; `None` while spans are not exported.
pub fn traceparent(span: &Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let context = span.context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove(TRACEPARENT)
}

/// The `traceparent` to store with a new saga started inside `span`, the saga's trace from then on:
/// `span`'s own while spans are exported, else the caller's (`from_caller`) if it is well formed, so it
/// still reaches the participants.
pub fn for_new_saga(span: &Span, from_caller: Option<&str>) -> Option<String> {
    if exporting() {
        return traceparent(span);
    }
    from_caller
        .filter(|value| parse(value).span().span_context().is_valid())
        .map(str::to_owned)
}

/// A `tonic` server's span for one request (`Server::trace_fn`): named after the gRPC method, a child of
/// the caller's `traceparent` when it sent one.
pub fn grpc_server_span(request: &http::Request<()>) -> Span {
    let method = request.uri().path().trim_start_matches('/');
    let span = tracing::info_span!(
        "grpc",
        otel.name = method,
        otel.kind = "server",
        rpc.method = method,
    );
    let traceparent = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    continue_trace(&span, traceparent);
    span
}

/// The remote span a `traceparent` names; an invalid one gives a context without a valid span.
fn parse(traceparent: &str) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&OneHeader(traceparent))
}

/// A carrier holding one `traceparent` value.
struct OneHeader<'a>(&'a str);

impl Extractor for OneHeader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}
