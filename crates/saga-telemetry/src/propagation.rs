//! W3C trace context (`traceparent`) in and out of spans: how one saga stays one trace from the StartSaga
//! caller through sagad's saga log, any replica that takes the saga over, and every participant.
//!
//! While spans are not exported these helpers do nothing and cost nothing: the `traceparent` a caller
//! sent is then passed along as it came.

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TraceFlags};
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

/// A participant's handler span: joins the trace `traceparent` names while spans are exported (as
/// [`continue_trace`]); otherwise records it as the span's `traceparent` field, which the span declares
/// `Empty`, so that its log lines still name the caller's trace. While exporting, the field would only
/// repeat the span's own trace and parent, in every exported handler span.
pub fn continue_or_record_trace(span: &Span, traceparent: Option<&str>) {
    continue_or_record(span, traceparent, exporting());
}

/// [`continue_or_record_trace`], told whether spans are exported.
fn continue_or_record(span: &Span, traceparent: Option<&str>, exporting: bool) {
    if exporting {
        continue_trace(span, traceparent);
    } else if let Some(traceparent) = traceparent {
        span.record(TRACEPARENT, traceparent);
    }
}

/// The `traceparent` that makes a remote span a child of `span`; `None` while spans are not exported.
pub fn traceparent(span: &Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    inject(&span.context())
}

/// The `traceparent` to store with a new saga started inside `span`, the saga's trace from then on:
/// `span`'s own while spans are exported, else the caller's (`from_caller`) if it is well formed, so it
/// still reaches the participants.
pub fn for_new_saga(span: &Span, from_caller: Option<&str>) -> Option<String> {
    if exporting() {
        return traceparent(span);
    }
    well_formed(from_caller)
}

/// `traceparent` in its canonical form, if it names a valid remote span.
fn well_formed(traceparent: Option<&str>) -> Option<String> {
    inject(&parse(traceparent?))
}

/// The `traceparent` naming the span of `context` (version 00, only the `sampled` flag), written
/// directly: it is built for every participant call, where the propagator's map of headers would be an
/// allocation and a hash for one value.
fn inject(context: &opentelemetry::Context) -> Option<String> {
    let span = context.span();
    let span = span.span_context();
    span.is_valid().then(|| {
        let flags = span.trace_flags() & TraceFlags::SAMPLED;
        format!(
            "00-{}-{}-{:02x}",
            span.trace_id(),
            span.span_id(),
            flags.to_u8()
        )
    })
}

/// A `tonic` server's span for one request (`Server::trace_fn`), the only span of the RPC: named after
/// the gRPC method, a child of the caller's `traceparent` when it sent one. The handler records the
/// `saga_id` or `saga_type` the call is about on it.
pub fn grpc_server_span(request: &http::Request<()>) -> Span {
    let method = request.uri().path().trim_start_matches('/');
    let span = tracing::info_span!(
        "grpc",
        otel.name = method,
        otel.kind = "server",
        rpc.method = method,
        saga_id = tracing::field::Empty,
        saga_type = tracing::field::Empty,
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
    TraceContextPropagator::new()
        .extract_with_context(&opentelemetry::Context::new(), &OneHeader(traceparent))
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing::field::{Field, Visit};
    use tracing::info_span;
    use tracing::span::{Id, Record};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::*;

    const REMOTE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Runs `test` with spans going to an OpenTelemetry tracer (that exports nowhere).
    fn exported(test: impl FnOnce()) {
        crate::EXPORTING.store(true, Ordering::Relaxed);
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, test);
    }

    #[test]
    fn a_span_continues_the_trace_a_traceparent_names_and_hands_its_own_span_on() {
        exported(|| {
            let drive = info_span!("saga");
            continue_trace(&drive, Some(REMOTE));
            let call = drive.in_scope(|| info_span!("step"));
            let sent = traceparent(&call).expect("a traced span");
            let parts: Vec<&str> = sent.split('-').collect();
            assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "{sent}");
            assert_ne!(
                parts[2], "00f067aa0ba902b7",
                "the call's own span id: {sent}"
            );
        });
    }

    #[test]
    fn a_handler_span_records_the_traceparent_only_while_spans_are_not_exported() {
        /// Keeps the values recorded into spans after their creation.
        #[derive(Clone, Default)]
        struct Recorded(Arc<Mutex<Vec<String>>>);

        impl<S: tracing::Subscriber> Layer<S> for Recorded {
            fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
                struct Values<'a>(&'a mut Vec<String>);
                impl Visit for Values<'_> {
                    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
                        self.0.push(format!("{}={value:?}", field.name()));
                    }
                }
                values.record(&mut Values(&mut self.0.lock().expect("not poisoned")));
            }
        }

        let recorded = Recorded::default();
        let subscriber = tracing_subscriber::registry().with(recorded.clone());
        tracing::subscriber::with_default(subscriber, || {
            let logged = info_span!("step", traceparent = tracing::field::Empty);
            continue_or_record(&logged, Some(REMOTE), false);
            let exported = info_span!("step", traceparent = tracing::field::Empty);
            continue_or_record(&exported, Some(REMOTE), true);
        });
        assert_eq!(
            *recorded.0.lock().expect("not poisoned"),
            [format!("traceparent={REMOTE:?}")]
        );
    }

    #[test]
    fn a_malformed_traceparent_starts_a_trace_of_its_own() {
        exported(|| {
            let drive = info_span!("saga");
            continue_trace(&drive, Some("00-not-a-trace-01"));
            let sent = traceparent(&drive).expect("a traced span");
            assert!(!sent.contains("4bf92f3577b34da6a3ce929d0e0e4736"), "{sent}");
        });
    }

    #[test]
    fn the_traceparent_written_is_the_one_the_w3c_propagator_writes() {
        for flags in ["00", "01", "03"] {
            let context = parse(&format!("{}-{flags}", &REMOTE[..52]));
            let mut carrier = std::collections::HashMap::new();
            TraceContextPropagator::new().inject_context(&context, &mut carrier);
            assert_eq!(inject(&context), carrier.remove(TRACEPARENT), "{flags}");
        }
        assert_eq!(inject(&opentelemetry::Context::new()), None);
    }

    #[test]
    fn a_new_saga_keeps_the_callers_traceparent_only_when_it_is_well_formed() {
        assert_eq!(well_formed(Some(REMOTE)).as_deref(), Some(REMOTE));
        assert_eq!(well_formed(Some("not a traceparent")), None);
        assert_eq!(
            well_formed(Some(
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01"
            )),
            None,
            "W3C allows lower-case hex only"
        );
        assert_eq!(well_formed(None), None);
    }
}
