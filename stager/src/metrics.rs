//! The stager's metrics: bundles in the spool, what ingest committed (bundles, files,
//! bytes) and how long it took, rejections, and what pushes brought.

use std::sync::OnceLock;
use std::sync::atomic::AtomicI64;

/// Bundles in the spool now (what `plotter2 status` reads; the metric is the same).
pub(crate) static IN_SPOOL: AtomicI64 = AtomicI64::new(0);

use plotter2_node::metrics::{Counter, Histogram, KeyValue, UpDownCounter};

pub(crate) struct StagerMetrics {
    pub spool: UpDownCounter<i64>,
    pub bundles: Counter<u64>,
    pub files: Counter<u64>,
    pub bytes: Counter<u64>,
    pub took: Histogram<f64>,
    pub rejected: Counter<u64>,
}

/// The instruments, made on first use (after telemetry is set up).
pub(crate) fn stager() -> &'static StagerMetrics {
    static METRICS: OnceLock<StagerMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = plotter2_node::metrics::meter();
        StagerMetrics {
            spool: m
                .i64_up_down_counter("p2_stager_spool_entries")
                .with_description("Bundles in the spool, not yet committed or set aside")
                .build(),
            bundles: m
                .u64_counter("p2_stager_ingested_bundles")
                .with_description("Bundles committed, by how they came (inbox, push)")
                .build(),
            files: m
                .u64_counter("p2_stager_ingested_files")
                .with_description("Files of the bundles committed")
                .build(),
            bytes: m
                .u64_counter("p2_stager_ingest")
                .with_unit("By")
                .with_description("Bytes of the bundles committed")
                .build(),
            took: m
                .f64_histogram("p2_stager_ingest_duration")
                .with_unit("s")
                .with_description("From admission to commit")
                .with_boundaries(vec![
                    0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                ])
                .build(),
            rejected: m
                .u64_counter("p2_stager_rejected_bundles")
                .with_description("Bundles refused and set aside (inbox) or refused (push)")
                .build(),
        }
    })
}

/// One committed bundle.
pub(crate) fn committed(via: &'static str, files: u64, bytes: u64, took_s: Option<f64>) {
    let m = stager();
    let via = [KeyValue::new("via", via)];
    m.bundles.add(1, &via);
    m.files.add(files, &via);
    m.bytes.add(bytes, &via);
    if let Some(t) = took_s {
        m.took.record(t, &via);
    }
}

pub(crate) fn rejected(via: &'static str) {
    stager().rejected.add(1, &[KeyValue::new("via", via)]);
}
