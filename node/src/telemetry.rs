//! Logging and tracing set-up, and trace context over NATS headers.
//!
//! Logs go to stderr through `tracing-subscriber` (filter with `RUST_LOG`). When
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans and metrics are also exported over OTLP/gRPC,
//! and `traceparent` headers on NATS messages join one request into one trace.

use std::io::IsTerminal;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
}

/// Flushes and stops exporters when dropped.
#[must_use = "telemetry stops when the guard is dropped"]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(t) = self.tracer.take() {
            let _ = t.shutdown();
        }
        if let Some(m) = self.meter.take() {
            let _ = m.shutdown();
        }
    }
}

/// Installs the global subscriber for a process named `service` (e.g. `plotter2-coordinator`).
/// Must run inside a Tokio runtime when OTLP export is on.
pub fn init(service: &'static str, default_filter: &str) -> Result<TelemetryGuard, TelemetryError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colour only on a terminal: `plotter2 up` sends each role's stderr to a log file.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty());
    let Some(endpoint) = endpoint else {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .try_init();
        return Ok(TelemetryGuard {
            tracer: None,
            meter: None,
        });
    };
    let exporter_err = |e: &dyn std::fmt::Display| TelemetryError::Exporter {
        endpoint: endpoint.clone(),
        message: e.to_string(),
    };
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    // The exporters read OTEL_EXPORTER_OTLP_ENDPOINT themselves.
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| exporter_err(&e))?;
    let tracer_provider = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_resource(resource.clone())
        .build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| exporter_err(&e))?;
    let meter_provider = SdkMeterProvider::builder()
        .with_periodic_exporter(metrics)
        .with_resource(resource)
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    opentelemetry::global::set_meter_provider(meter_provider.clone());
    let tracer = tracer_provider.tracer(service);
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(TelemetryGuard {
        tracer: Some(tracer_provider),
        meter: Some(meter_provider),
    })
}

struct HeaderInjector<'a>(&'a mut async_nats::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct HeaderExtractor<'a>(&'a async_nats::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_ref()).collect()
    }
}

/// Writes the current span's context (`traceparent`) into NATS headers.
pub fn inject_context(headers: &mut async_nats::HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// Makes `span` a child of the context carried in `headers`, if any.
pub fn adopt_context(span: &tracing::Span, headers: Option<&async_nats::HeaderMap>) {
    if let Some(h) = headers {
        let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(h)));
        let _ = span.set_parent(cx);
    }
}
