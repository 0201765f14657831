//! The worker's metrics: slots busy, and each attempt's wait (created → started here), run
//! time and outcome, by task kind.

use std::sync::Arc;

use plotter2_node::metrics::{Counter, Histogram, KeyValue, ObservableGauge};

/// The instruments of one worker.
pub(crate) struct WorkerMetrics {
    attempts: Counter<u64>,
    wait: Histogram<f64>,
    run: Histogram<f64>,
    _busy: ObservableGauge<u64>,
}

/// Seconds: from a millisecond to an hour.
fn buckets() -> Vec<f64> {
    vec![
        0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
    ]
}

impl WorkerMetrics {
    pub(crate) fn new(worker: &str, slots: Arc<tokio::sync::Semaphore>, total: usize) -> Self {
        let m = plotter2_node::metrics::meter();
        let me = KeyValue::new("worker", worker.to_owned());
        let busy_me = me.clone();
        Self {
            attempts: m
                .u64_counter("p2_worker_attempts")
                .with_description("Attempts this worker ran, by task kind and outcome")
                .build(),
            wait: m
                .f64_histogram("p2_run_wait")
                .with_unit("s")
                .with_description("From a run's creation to its start on this worker")
                .with_boundaries(buckets())
                .build(),
            run: m
                .f64_histogram("p2_run_duration")
                .with_unit("s")
                .with_description("How long attempts ran on this worker, by task kind")
                .with_boundaries(buckets())
                .build(),
            _busy: m
                .u64_observable_gauge("p2_worker_slots_busy")
                .with_description("Slots running an attempt now")
                .with_callback(move |o| {
                    let free = slots.available_permits();
                    o.observe(
                        total.saturating_sub(free) as u64,
                        std::slice::from_ref(&busy_me),
                    );
                })
                .build(),
        }
    }

    pub(crate) fn started(&self, kind: &'static str, waited_s: f64) {
        self.wait
            .record(waited_s.max(0.0), &[KeyValue::new("kind", kind)]);
    }

    pub(crate) fn ended(&self, kind: &'static str, outcome: &'static str, ran_s: f64) {
        self.attempts.add(
            1,
            &[
                KeyValue::new("kind", kind),
                KeyValue::new("outcome", outcome),
            ],
        );
        self.run.record(ran_s, &[KeyValue::new("kind", kind)]);
    }
}
