//! Tracing set-up shared by sagad and the participant services: logs on stderr (text or JSON), and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, every span exported over OTLP/gRPC so that one saga is one trace
//! across sagad replicas and participants.
//!
//! # Layout
//! - [`init`] and [`Telemetry`]: installs the global subscriber once, from `main`; [`Telemetry::shutdown`]
//!   flushes the spans still queued for export.
//! - `export`: the OTLP pipeline, configured by the standard `OTEL_*` variables.
//! - `log_filter`: `RUST_LOG`'s filter for the log layer, without its per-span work when no directive
//!   names a span.
//! - `logs`: JSON log lines that carry the `trace_id` of the span they were written in.
//! - `traced_or_logged`: the one global filter while spans are exported: info and above for the traces,
//!   and whatever `RUST_LOG` adds for the logs.
//! - `without_enter_exit`: keeps span enters and exits from the layers that pay for them without need.
//! - [`propagation`]: the W3C `traceparent` that carries a trace from the StartSaga caller to sagad's saga
//!   log and on to every participant call.
//!
//! Without `OTEL_EXPORTER_OTLP_ENDPOINT` nothing but the log layer is installed: spans cost what the log
//! filter makes them cost, and the propagation helpers return at once.

mod export;
mod log_filter;
mod logs;
pub mod propagation;
mod traced_or_logged;
mod without_enter_exit;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing::Dispatch;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

pub use export::ExportError;

/// Whether spans are exported, so the propagation helpers can skip their work when they are not.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line; with span export on, each line written inside a span has `trace_id`.
    Json,
}

/// The installed telemetry; [`Telemetry::shutdown`] it before the process exits.
#[derive(Debug)]
#[must_use = "call shutdown before exiting, or queued spans are lost"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the global subscriber: logs on stderr in `format`, filtered by `RUST_LOG` (else
/// `default_filter`, e.g. `info`), and OTLP span export as `service` when `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Call once, from `main`, inside the Tokio runtime
/// (the exporter's gRPC channel lives there).
///
/// The traces take info and above whatever `RUST_LOG` says, so a quiet `RUST_LOG` does not thin them;
/// what `RUST_LOG` enables below info (e.g. `saga_store=debug`) reaches the traces too.
///
/// # Errors
/// When the OTLP exporter cannot be built from the `OTEL_*` variables (e.g. an invalid endpoint).
pub fn init(
    service: &str,
    format: LogFormat,
    default_filter: &str,
) -> Result<Telemetry, ExportError> {
    let directives = std::env::var(EnvFilter::DEFAULT_ENV)
        .ok()
        .filter(|directives| EnvFilter::try_new(directives).is_ok())
        .unwrap_or_else(|| default_filter.to_owned());
    let provider = export::from_env(service)?;
    let exporting = provider.is_some();
    let dispatch = Arc::new(OnceLock::new());
    let log = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let log = match format {
        LogFormat::Text => log.boxed(),
        LogFormat::Json if exporting => log
            .json()
            .flatten_event(true)
            .event_format(logs::WithTraceId::new(
                fmt::format().json().flatten_event(true),
                Arc::clone(&dispatch),
            ))
            .boxed(),
        LogFormat::Json => log.json().flatten_event(true).boxed(),
    };
    let log = log_filter::filtered(log, &directives);
    let subscriber = if let Some(provider) = &provider {
        use opentelemetry::trace::TracerProvider as _;
        let spans = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(env!("CARGO_PKG_NAME")))
            // Busy/idle times and thread names on every span cost more than they tell here.
            .with_tracked_inactivity(false)
            .with_threads(false)
            // Source file, module and line on every span and event: four attributes to build, encode
            // and send each time, where the span's name and fields already say where it comes from.
            .with_location(false)
            .with_target(false)
            // Nothing here reads OpenTelemetry's "current context": parents come from the tracing span
            // tree, and `propagation` asks a span for its context directly. Activating the context on
            // every enter would be work on every poll of every instrumented future, for no reader.
            .with_context_activation(false);
        Dispatch::new(
            tracing_subscriber::registry()
                .with(log)
                .with(without_enter_exit::WithoutEnterExit(spans))
                .with(traced_or_logged::TracedOrLogged::new(&directives)),
        )
    } else {
        Dispatch::new(tracing_subscriber::registry().with(log))
    };
    // Only set when the JSON format is in use; unused otherwise.
    let _ = dispatch.set(subscriber.downgrade());
    subscriber.init();
    EXPORTING.store(exporting, Ordering::Relaxed);
    Ok(Telemetry { provider })
}

/// Whether spans are being exported.
pub(crate) fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

impl Telemetry {
    /// Exports the spans still queued and stops the exporter. Waits at most the exporter's timeout
    /// (`OTEL_EXPORTER_OTLP_TIMEOUT`, 10 s by default) when the collector does not answer.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The flush blocks its thread until the export answers, and the export's gRPC channel needs the
        // runtime's threads meanwhile.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cannot flush the spans queued for export: {e}"),
            Err(e) => eprintln!("cannot flush the spans queued for export: {e}"),
        }
    }
}
