//! The log layer's filter: `RUST_LOG`'s `EnvFilter`, told of span enters and exits only when it needs them.
//!
//! An `EnvFilter` takes a read lock and a hash lookup on every span enter, exit and close, to find whether
//! one of its span-scoped directives (`target[span]=debug`) names the span; spans are entered on every poll
//! of an instrumented future, and the lock's counter is one cache line that both cores write. Without such
//! directives the answer is always no, so the calls are skipped, and [`filtered`] keeps enters and exits
//! from the log layer altogether (its per-layer filter would look the span up for each).
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::layer::{Context, Filter};
use tracing_subscriber::registry::LookupSpan;

use crate::without_enter_exit::WithoutEnterExit;

/// The log layer `log` behind the filter `directives` (`RUST_LOG`'s syntax) describe; told of span enters
/// and exits only when a span-scoped directive needs them.
pub(crate) fn filtered<S, L>(log: L, directives: &str) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S> + Send + Sync,
{
    let filter = LogFilter::new(directives);
    if filter.span_scoped {
        log.with_filter(filter).boxed()
    } else {
        WithoutEnterExit(log.with_filter(filter)).boxed()
    }
}

/// What `RUST_LOG` (or the default directives) lets through to the logs.
pub(crate) struct LogFilter {
    directives: EnvFilter,
    /// Whether there are span-scoped directives: only then does the filter need to hear of spans.
    span_scoped: bool,
}

impl LogFilter {
    /// The filter `directives` (`RUST_LOG`'s syntax) describe.
    pub(crate) fn new(directives: &str) -> Self {
        Self {
            directives: EnvFilter::new(directives),
            span_scoped: directives.contains('['),
        }
    }
}

impl<S: Subscriber> Filter<S> for LogFilter {
    fn enabled(&self, metadata: &Metadata<'_>, ctx: &Context<'_, S>) -> bool {
        Filter::enabled(&self.directives, metadata, ctx)
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        Filter::<S>::callsite_enabled(&self.directives, metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.directives)
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if self.span_scoped {
            Filter::on_new_span(&self.directives, attrs, id, ctx);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if self.span_scoped {
            Filter::on_record(&self.directives, id, values, ctx);
        }
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        if self.span_scoped {
            Filter::on_enter(&self.directives, id, ctx);
        }
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        if self.span_scoped {
            Filter::on_exit(&self.directives, id, ctx);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if self.span_scoped {
            Filter::on_close(&self.directives, id, ctx);
        }
    }
}
