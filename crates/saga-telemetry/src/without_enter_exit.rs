//! A layer that is not told when spans are entered and exited: everything else reaches the layer it wraps.
//!
//! Spans are entered and exited on every poll of an instrumented future, dozens of times per saga, and two
//! of the installed layers pay for each without needing it:
//! - the export layer (`tracing-opentelemetry`) takes a registry lookup, a write lock, a mutex and a clock
//!   read on every exit, to end the span at its last exit. Every span here closes as its work ends (its
//!   future or scope is dropped), so the end it records at close is the same instant, read once;
//! - the log layer's per-layer filter looks the span up on every enter and exit, to ask its filter, which
//!   only cares when `RUST_LOG` has span-scoped directives (`log_filter`), and the log layer itself writes
//!   nothing on enters and exits.
//!
//! The registry still keeps each thread's current span, so events and new spans find their parent as
//! before.
use std::any::TypeId;

use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};

/// `L`, without `on_enter` and `on_exit`.
pub(crate) struct WithoutEnterExit<L>(pub(crate) L);

impl<S: Subscriber, L: Layer<S>> Layer<S> for WithoutEnterExit<L> {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.0.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.0.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.0.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.0.enabled(metadata, ctx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, span: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        self.0.on_record(span, values, ctx);
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        self.0.on_follows_from(span, follows, ctx);
    }

    fn event_enabled(&self, event: &Event<'_>, ctx: Context<'_, S>) -> bool {
        self.0.event_enabled(event, ctx)
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        self.0.on_event(event, ctx);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        self.0.on_close(id, ctx);
    }

    fn on_id_change(&self, old: &Id, new: &Id, ctx: Context<'_, S>) {
        self.0.on_id_change(old, new, ctx);
    }

    // How the subscriber finds what a layer holds: the export layer's span contexts (which `propagation`
    // reads through `OpenTelemetrySpanExt`) and a per-layer filter's marker. Without forwarding, both
    // would be lost behind this wrapper.
    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(std::ptr::from_ref(self).cast());
        }
        // SAFETY: the wrapped layer's answer, passed on unchanged, points into `self.0`, which lives as
        // long as `self`: the caller's contract for `self` holds for it.
        unsafe { self.0.downcast_raw(id) }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use tracing::{info, info_span};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Writes down the callbacks a layer hears.
    #[derive(Clone, Default)]
    struct Heard(Arc<Mutex<Vec<&'static str>>>);

    impl Heard {
        fn note(&self, callback: &'static str) {
            self.0.lock().expect("not poisoned").push(callback);
        }
    }

    impl<S: Subscriber> Layer<S> for Heard {
        fn on_new_span(&self, _: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            self.note("new");
        }

        fn on_enter(&self, _: &Id, _: Context<'_, S>) {
            self.note("enter");
        }

        fn on_exit(&self, _: &Id, _: Context<'_, S>) {
            self.note("exit");
        }

        fn on_event(&self, _: &Event<'_>, _: Context<'_, S>) {
            self.note("event");
        }

        fn on_close(&self, _: Id, _: Context<'_, S>) {
            self.note("close");
        }
    }

    /// Keeps the spans exported to it.
    #[derive(Debug, Clone, Default)]
    struct Collected(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collected {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().expect("not poisoned").extend(batch);
            Ok(())
        }
    }

    #[test]
    fn the_wrapped_layer_hears_everything_but_enters_and_exits() {
        let heard = Heard::default();
        let subscriber = tracing_subscriber::registry().with(WithoutEnterExit(heard.clone()));
        tracing::subscriber::with_default(subscriber, || {
            let span = info_span!("step");
            span.in_scope(|| info!("inside"));
            span.in_scope(|| {});
        });
        assert_eq!(
            *heard.0.lock().expect("not poisoned"),
            ["new", "event", "close"]
        );
    }

    #[test]
    fn an_exported_span_keeps_its_context_and_ends_when_it_closes() {
        let collected = Collected::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(collected.clone())
            .build();
        let spans = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(WithoutEnterExit(spans));
        let after_last_exit = tracing::subscriber::with_default(subscriber, || {
            let span = info_span!("step");
            span.in_scope(|| {});
            // Found through the wrapper's `downcast_raw`: without it, no valid context.
            assert!(span.context().span().span_context().is_valid());
            let after_last_exit = SystemTime::now();
            drop(span);
            after_last_exit
        });
        let exported = collected.0.lock().expect("not poisoned");
        assert_eq!(exported.len(), 1);
        assert!(
            exported[0].end_time >= after_last_exit,
            "the span ended at its last exit, not when it closed"
        );
    }
}
