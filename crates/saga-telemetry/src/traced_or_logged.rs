//! The subscriber's global filter while spans are exported: what the traces need (info and above, from
//! every target, whatever `RUST_LOG` says) or what the log filter (`RUST_LOG`) lets through. The log layer
//! keeps its own filter on top, so that it prints no more than `RUST_LOG` asks.
//!
//! Why not a filter on the export layer (`Layer::with_filter`), the usual way to give two layers two
//! filters: a per-layer filter looks the span up in the registry on every enter and every exit, to ask
//! whether its layer wants it, and spans are entered on every poll of an instrumented future. A saga's
//! futures are polled dozens of times; in the `span_cost` example those lookups were about a fifth of what
//! exporting a saga's spans costs.
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter, Layer};

use crate::log_filter::LogFilter;

/// The least severe level every trace carries.
const TRACED: LevelFilter = LevelFilter::INFO;

/// Enables what is at [`TRACED`] or above, or what the log filter enables.
pub(crate) struct TracedOrLogged {
    /// A copy of the log filter.
    logs: LogFilter,
}

impl TracedOrLogged {
    /// Info and above, or what the log filter `directives` (`RUST_LOG`'s syntax) enable.
    pub(crate) fn new(directives: &str) -> Self {
        Self {
            logs: LogFilter::new(directives),
        }
    }
}

impl<S: Subscriber> Layer<S> for TracedOrLogged {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // Asked even for what the traces take anyway: this is where the log filter notes the spans its
        // span-scoped directives name.
        let logs = Filter::<S>::callsite_enabled(&self.logs, metadata);
        if TRACED >= *metadata.level() {
            Interest::always()
        } else {
            logs
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        TRACED >= *metadata.level() || Filter::enabled(&self.logs, metadata, &ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        let logs = Filter::<S>::max_level_hint(&self.logs).unwrap_or(LevelFilter::TRACE);
        Some(logs.max(TRACED))
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        Filter::on_new_span(&self.logs, attrs, id, ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        Filter::on_record(&self.logs, id, values, ctx);
    }

    fn on_enter(&self, id: &Id, ctx: Context<'_, S>) {
        Filter::on_enter(&self.logs, id, ctx);
    }

    fn on_exit(&self, id: &Id, ctx: Context<'_, S>) {
        Filter::on_exit(&self.logs, id, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        Filter::on_close(&self.logs, id, ctx);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::{Event, debug, error, info, info_span};
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::without_enter_exit::WithoutEnterExit;

    /// Writes down each span created and each event's message, as `span NAME` / `event MESSAGE`.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl Seen {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut *self.0.lock().expect("not poisoned"))
        }
    }

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            let name = attrs.metadata().name();
            self.0
                .lock()
                .expect("not poisoned")
                .push(format!("span {name}"));
        }

        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            struct Message(String);
            impl tracing::field::Visit for Message {
                fn record_debug(
                    &mut self,
                    field: &tracing::field::Field,
                    value: &dyn std::fmt::Debug,
                ) {
                    if field.name() == "message" {
                        self.0 = format!("{value:?}");
                    }
                }
            }
            let mut message = Message(String::new());
            event.record(&mut message);
            self.0
                .lock()
                .expect("not poisoned")
                .push(format!("event {}", message.0));
        }
    }

    /// Runs `emit` under the subscriber `init` builds while exporting, with `directives` as `RUST_LOG`;
    /// returns what the log layer and the export layer saw.
    fn seen(directives: &str, emit: impl FnOnce()) -> (Vec<String>, Vec<String>) {
        let (logs, traces) = (Seen::default(), Seen::default());
        let subscriber = tracing_subscriber::registry()
            .with(crate::log_filter::filtered(logs.clone(), directives))
            .with(WithoutEnterExit(traces.clone()))
            .with(TracedOrLogged::new(directives));
        tracing::subscriber::with_default(subscriber, emit);
        (logs.take(), traces.take())
    }

    #[test]
    fn a_quiet_log_filter_keeps_info_in_the_traces_and_out_of_the_logs() {
        let (logs, traces) = seen("error", || {
            info_span!("saga").in_scope(|| {
                info!("saga started");
                debug!("a detail");
                error!("a failure");
            });
        });
        assert_eq!(logs, ["event a failure"]);
        assert_eq!(
            traces,
            ["span saga", "event saga started", "event a failure"]
        );
    }

    #[test]
    fn what_the_log_filter_asks_for_below_info_reaches_logs_and_traces_and_nothing_more() {
        let (logs, traces) = seen("warn,saga_telemetry=debug", || {
            debug!("ours");
            debug!(target: "elsewhere", "theirs");
            info!(target: "elsewhere", "their news");
        });
        assert_eq!(logs, ["event ours"]);
        assert_eq!(traces, ["event ours", "event their news"]);
    }

    #[test]
    fn span_scoped_directives_still_apply_inside_their_span() {
        let (logs, _) = seen("error,[saga]=debug", || {
            debug!("outside");
            info_span!("saga").in_scope(|| debug!("inside"));
        });
        assert_eq!(logs, ["span saga", "event inside"]);
    }
}
