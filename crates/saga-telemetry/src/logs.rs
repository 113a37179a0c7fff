//! JSON log lines that carry the trace they belong to, so a log search by `trace_id` finds every line of
//! one saga, on every replica and participant.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt;
use tracing::dispatcher::WeakDispatch;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats an event with the JSON format `F`, then adds `"trace_id"` when the event happened inside a
/// span that belongs to a trace.
pub(crate) struct WithTraceId<F> {
    json: F,
    /// The subscriber this format is part of, set once it is built: the OpenTelemetry layer keeps each
    /// span's trace there. (Looking it up as the current dispatcher would find none: the event is being
    /// dispatched already.)
    dispatch: Arc<OnceLock<WeakDispatch>>,
}

impl<F> WithTraceId<F> {
    pub(crate) fn new(json: F, dispatch: Arc<OnceLock<WeakDispatch>>) -> Self {
        Self { json, dispatch }
    }

    /// The trace of the span an event happened in, if any.
    fn trace_id(&self, current: Option<&tracing::Id>) -> Option<String> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        let context = tracing_opentelemetry::get_otel_context(current?, &dispatch)?;
        let span = context.span();
        let trace = span.span_context();
        trace.is_valid().then(|| trace.trace_id().to_string())
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // The span the event names as its parent, else the one it happened in, whether or not the log
        // filter shows it (`lookup_current` would skip spans the log filter hides).
        let span = if event.is_contextual() {
            ctx.current_span().id().cloned()
        } else {
            event.parent().cloned()
        };
        let Some(trace_id) = self.trace_id(span.as_ref()) else {
            return self.json.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.json.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&with_field(&line, "trace_id", &trace_id))
    }
}

/// `line` (one JSON object and a newline) with `"key":"value"` added last; any other line as it is.
fn with_field(line: &str, key: &str, value: &str) -> String {
    match line.trim_end().strip_suffix('}') {
        Some(object) => format!("{object},\"{key}\":\"{value}\"}}\n"),
        None => line.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Mutex, PoisonError};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing::{Dispatch, info, info_span};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::fmt;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Log output captured in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_json_line_written_inside_a_traced_span_or_naming_it_as_parent_carries_its_trace_id() {
        let captured = Captured::default();
        let writer = captured.clone();
        let provider = SdkTracerProvider::builder().build();
        let cell = Arc::new(OnceLock::new());
        let format = WithTraceId::new(fmt::format().json().flatten_event(true), Arc::clone(&cell));
        let subscriber = tracing_subscriber::registry()
            .with(
                fmt::layer()
                    .json()
                    .event_format(format)
                    .with_writer(move || writer.clone()),
            )
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let dispatch = Dispatch::new(subscriber);
        cell.set(dispatch.downgrade()).expect("set once");
        let trace_id = tracing::dispatcher::with_default(&dispatch, || {
            let span = info_span!("saga");
            let trace_id = span.in_scope(|| {
                info!("inside");
                tracing::Span::current()
                    .context()
                    .span()
                    .span_context()
                    .trace_id()
            });
            info!(parent: &span, "about it");
            info!("outside");
            trace_id
        });
        let text = String::from_utf8(captured.0.lock().expect("log").clone()).expect("utf-8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0]["message"], "inside");
        assert_eq!(lines[0]["trace_id"], trace_id.to_string());
        assert_eq!(lines[1]["message"], "about it");
        assert_eq!(lines[1]["trace_id"], trace_id.to_string());
        assert_eq!(lines[2]["message"], "outside");
        assert!(lines[2].get("trace_id").is_none(), "{text}");
    }

    #[test]
    fn the_field_goes_last_in_the_object_and_the_line_still_ends_with_a_newline() {
        assert_eq!(
            with_field("{\"message\":\"saga started\"}\n", "trace_id", "4bf9"),
            "{\"message\":\"saga started\",\"trace_id\":\"4bf9\"}\n"
        );
    }

    #[test]
    fn a_line_that_is_not_an_object_is_left_alone() {
        assert_eq!(with_field("plain\n", "trace_id", "4bf9"), "plain\n");
    }
}
