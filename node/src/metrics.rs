//! Metrics: OpenTelemetry instruments, read by the Prometheus scrape endpoint each process
//! serves (`GET /metrics`, see [`serve`]), and also exported over OTLP when
//! `OTEL_METRICS_EXPORTER=otlp` (see [`crate::telemetry`]).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

pub use opentelemetry::KeyValue;
pub use opentelemetry::metrics::{
    Counter, Histogram, Meter, ObservableCounter, ObservableGauge, UpDownCounter,
};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The registry the scrape endpoint reads.
static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();

/// The environment variable (and role flag `--metrics`) naming where to serve `/metrics`.
pub const METRICS_ADDR_ENV: &str = "P2_METRICS_ADDR";

/// plotter2's meter: every instrument hangs off it.
pub fn meter() -> Meter {
    opentelemetry::global::meter("plotter2")
}

/// A meter provider that Prometheus reads, with `otlp` as a second reader when given; it is
/// made the global one.
pub(crate) fn install(
    resource: opentelemetry_sdk::Resource,
    otlp: Option<opentelemetry_otlp::MetricExporter>,
) -> Result<SdkMeterProvider, String> {
    let registry = REGISTRY.get_or_init(prometheus::Registry::new).clone();
    let prometheus = opentelemetry_prometheus::exporter()
        .with_registry(registry)
        .scope_info_enabled(false)
        .build()
        .map_err(|e| e.to_string())?;
    let mut builder = SdkMeterProvider::builder()
        .with_reader(prometheus)
        .with_resource(resource);
    if let Some(exporter) = otlp {
        builder = builder.with_periodic_exporter(exporter);
    }
    let provider = builder.build();
    opentelemetry::global::set_meter_provider(provider.clone());
    Ok(provider)
}

/// The current metrics in Prometheus's text format.
pub fn scrape() -> String {
    use prometheus::Encoder;
    let Some(registry) = REGISTRY.get() else {
        return String::new();
    };
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!("encoding metrics: {e}");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Serves `GET /metrics` on `addr` (HTTP/1.1, one answer per connection) until the task is
/// aborted. Binding happens before this returns, so a taken port is an error here.
pub async fn serve(addr: SocketAddr) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut head = Vec::with_capacity(1024);
                let mut buf = [0u8; 1024];
                // The request line and headers; a scraper sends no body.
                let read = tokio::time::timeout(Duration::from_secs(5), async {
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return false,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    true
                })
                .await;
                if !matches!(read, Ok(true)) {
                    return;
                }
                let line = String::from_utf8_lossy(&head);
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
                    ("200 OK", scrape())
                } else {
                    (
                        "404 Not Found",
                        "plotter2 serves /metrics here\n".to_owned(),
                    )
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    }))
}
