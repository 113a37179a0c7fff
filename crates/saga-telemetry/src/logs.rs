//! JSON log lines that carry the trace they belong to, so a log search by `trace_id` finds every line of
//! one saga, on every replica and participant.

use std::fmt;

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats an event with the JSON format `F`, then adds `"trace_id"` when the event happened inside a
/// span that belongs to a trace.
pub(crate) struct WithTraceId<F> {
    json: F,
}

impl<F> WithTraceId<F> {
    pub(crate) fn new(json: F) -> Self {
        Self { json }
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
        // The span the event happened in, whether or not the log filter shows it (`lookup_current`
        // would skip spans the log filter hides).
        let context = tracing::Span::current().context();
        let span = context.span();
        let trace = span.span_context();
        if !trace.is_valid() {
            return self.json.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.json.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&with_field(
            &line,
            "trace_id",
            &trace.trace_id().to_string(),
        ))
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
    use super::*;

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
