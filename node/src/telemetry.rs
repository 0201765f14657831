//! Logging and tracing set-up, and trace context over NATS headers and the environment.
//!
//! Logs go to stderr through `tracing-subscriber`, filtered by `RUST_LOG` (or the role's
//! default). Spans are exported over OTLP/gRPC when an OTLP endpoint is set
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and
//! `OTEL_TRACES_EXPORTER` is not `none`; metrics go over OTLP only when
//! `OTEL_METRICS_EXPORTER=otlp` (a trace backend need not take metrics). Each exporter has a
//! filter of its own, so the log level does not decide what is exported.
//!
//! Context travels as `traceparent`: in NATS headers between processes, in run records across
//! a leader change, and in the `TRACEPARENT` environment variable into a task's process and
//! from whoever starts the CLI.

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The environment variable that carries a trace context into a process.
pub const TRACEPARENT_ENV: &str = "TRACEPARENT";

/// What is exported as spans unless `P2_TRACE_FILTER` says otherwise: plotter2's own spans,
/// never the exporter's (h2, tonic, hyper: they would trace their own exporting).
const DEFAULT_EXPORT_FILTER: &str = "info,openraft=warn,async_nats=warn,h2=off,tonic=off,hyper=off,hyper_util=off,tower=off,reqwest=off";

/// The longest a shutdown waits for exporters to flush.
const SHUTDOWN_WITHIN: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("OTLP exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
    #[error("{name}={value:?}: {why}")]
    Env {
        name: &'static str,
        value: String,
        why: String,
    },
}

/// Holds the exporters; [`TelemetryGuard::shutdown`] flushes them, bounded. Dropping it
/// without that exports nothing more (and never blocks).
#[must_use = "call shutdown().await to flush what is left"]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl TelemetryGuard {
    /// Flushes and stops the exporters on a blocking thread while this runtime goes on
    /// driving their connections (a batch exporter's shutdown blocks, and on a current-thread
    /// runtime with tonic it would wait for itself), for at most [`SHUTDOWN_WITHIN`].
    pub async fn shutdown(mut self) {
        let (tracer, meter) = (self.tracer.take(), self.meter.take());
        if tracer.is_none() && meter.is_none() {
            return;
        }
        let done = tokio::task::spawn_blocking(move || {
            if let Some(t) = tracer {
                let _ = t.shutdown();
            }
            if let Some(m) = meter {
                let _ = m.shutdown();
            }
        });
        let _ = tokio::time::timeout(SHUTDOWN_WITHIN, done).await;
    }
}

/// Whether `name` asks for `none` (case-insensitive).
fn switched_off(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case("none"))
}

fn env_set(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Installs the global subscriber for a process named `service` (e.g. `plotter2-coordinator`).
/// Must run inside a Tokio runtime when OTLP export is on.
pub fn init(service: &'static str, default_filter: &str) -> Result<TelemetryGuard, TelemetryError> {
    let log_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colour only on a terminal: `plotter2 up` sends each role's stderr to a log file.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_filter(log_filter);
    let endpoint = env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| env_set("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let metrics_otlp = env_set("OTEL_METRICS_EXPORTER")
        .is_some_and(|v| v.split(',').any(|e| e.trim().eq_ignore_ascii_case("otlp")));
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let exporter_err = |e: &dyn std::fmt::Display| TelemetryError::Exporter {
        endpoint: endpoint.clone().unwrap_or_default(),
        message: e.to_string(),
    };
    let tracer_provider = match &endpoint {
        Some(_) if !switched_off("OTEL_TRACES_EXPORTER") => {
            // The exporter reads the endpoint (and its timeout) from the environment itself.
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()
                .map_err(|e| exporter_err(&e))?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(spans)
                    .with_resource(resource.clone())
                    .build(),
            )
        }
        _ => None,
    };
    // Metrics are always kept for the scrape endpoint; OTLP only when asked.
    let otlp_metrics = if metrics_otlp {
        Some(
            opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .build()
                .map_err(|e| exporter_err(&e))?,
        )
    } else {
        None
    };
    let meter_provider =
        Some(crate::metrics::install(resource, otlp_metrics).map_err(|e| exporter_err(&e))?);
    let otel = match &tracer_provider {
        Some(provider) => {
            let filter_text =
                env_set("P2_TRACE_FILTER").unwrap_or_else(|| DEFAULT_EXPORT_FILTER.to_owned());
            let filter = EnvFilter::try_new(&filter_text).map_err(|e| TelemetryError::Env {
                name: "P2_TRACE_FILTER",
                value: filter_text.clone(),
                why: e.to_string(),
            })?;
            Some(
                // No file/line/thread/busy-time attributes: they would double what every span
                // costs to encode and send, and the span's name and target say where it is.
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer(service))
                    .with_location(false)
                    .with_threads(false)
                    .with_tracked_inactivity(false)
                    .with_filter(filter),
            )
        }
        None => None,
    };
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    Ok(TelemetryGuard {
        tracer: tracer_provider,
        meter: meter_provider,
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

/// One `traceparent` value as a carrier.
struct One<'a>(Option<&'a str>);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0).flatten()
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

struct Capture(Option<String>);

impl Injector for Capture {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
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
        if cx.span().span_context().is_valid() {
            let _ = span.set_parent(cx);
        }
    }
}

/// Makes `span` a child of the context in a `traceparent` value (a run record's, the
/// `TRACEPARENT` variable's), when it is one.
pub fn adopt_traceparent(span: &tracing::Span, traceparent: Option<&str>) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&One(traceparent)));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The current span's context as a `traceparent` value; `None` when nothing is traced.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = Capture(None);
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut out));
    out.0
}

/// The trace id of the current span, when it is traced.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
