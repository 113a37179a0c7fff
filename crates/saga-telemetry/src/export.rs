//! The OTLP/gRPC span pipeline: a batch exporter to the collector the standard `OTEL_*` variables name.
//!
//! Honoured (by the OpenTelemetry SDK itself): `OTEL_EXPORTER_OTLP_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `..._TIMEOUT`, `..._HEADERS`, `..._COMPRESSION`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]` and `OTEL_BSP_*` (batch
//! size, queue size, schedule delay). `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn export
//! off although an endpoint is set.

use opentelemetry::KeyValue;
use opentelemetry_otlp::{ExporterBuildError, SpanExporter};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{EnvResourceDetector, TelemetryResourceDetector};
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The OTLP exporter could not be built from the `OTEL_*` variables.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up OTLP span export: {0}")]
pub struct ExportError(#[from] ExporterBuildError);

/// The tracer provider exporting as `service`, or `None` when no endpoint is configured.
pub(crate) fn from_env(service: &str) -> Result<Option<SdkTracerProvider>, ExportError> {
    if !enabled(|name| std::env::var(name).ok()) {
        return Ok(None);
    }
    let exporter = SpanExporter::builder().with_tonic().build()?;
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource(service, std::env::var("OTEL_SERVICE_NAME").ok()))
            .build(),
    ))
}

/// Whether the variables `var` reads ask for span export.
fn enabled(var: impl Fn(&str) -> Option<String>) -> bool {
    let set = |name| var(name).is_some_and(|value| !value.trim().is_empty());
    let endpoint = set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    endpoint && !disabled
}

/// `service.name` is `service`, unless `OTEL_RESOURCE_ATTRIBUTES` names one, unless `OTEL_SERVICE_NAME`
/// (`env_name`) does (the specification's order); `process.pid` tells replicas on one host apart.
fn resource(service: &str, env_name: Option<String>) -> Resource {
    let mut builder = Resource::builder_empty()
        .with_service_name(service.to_owned())
        .with_detectors(&[
            Box::new(TelemetryResourceDetector),
            Box::new(EnvResourceDetector::new()),
        ]);
    if let Some(name) = env_name.filter(|name| !name.is_empty()) {
        builder = builder.with_service_name(name);
    }
    builder
        .with_attribute(KeyValue::new("process.pid", i64::from(std::process::id())))
        .build()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::{Key, Value};

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn export_is_on_only_when_an_endpoint_is_set_and_not_disabled() {
        assert!(!enabled(vars(&[])));
        assert!(!enabled(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])));
        assert!(enabled(vars(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://collector:4317"
        )])));
        assert!(enabled(vars(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://collector:4317"
        )])));
        assert!(!enabled(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_SDK_DISABLED", "TRUE"),
        ])));
        assert!(!enabled(vars(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])));
    }

    #[test]
    fn the_service_name_is_the_binarys_unless_otel_service_name_overrides_it() {
        let name = |resource: &Resource| resource.get(&Key::new("service.name"));
        assert_eq!(name(&resource("sagad", None)), Some(Value::from("sagad")));
        assert_eq!(
            name(&resource("sagad", Some("orders-sagad".to_owned()))),
            Some(Value::from("orders-sagad"))
        );
        assert_eq!(
            name(&resource("sagad", Some(String::new()))),
            Some(Value::from("sagad"))
        );
    }
}
