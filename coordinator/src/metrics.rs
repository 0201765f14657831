//! The coordinator's metrics: requests by verb and outcome with their latency, raft's term,
//! leadership, commit and apply indexes and snapshots, and the runs waiting and running.
//! Gauges are read when scraped, from raft's metrics and the registry.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use openraft::ServerState;
use openraft::type_config::async_runtime::WatchReceiver;
use plotter2_node::metrics::{Counter, Histogram, KeyValue, ObservableCounter, ObservableGauge};

use crate::state_machine::{Raft, StateMachine};

/// Request counters, shared by the API's handlers.
#[derive(Clone)]
pub struct RequestMetrics {
    requests: Counter<u64>,
    latency: Histogram<f64>,
}

impl RequestMetrics {
    pub fn new() -> Self {
        let m = plotter2_node::metrics::meter();
        Self {
            requests: m
                .u64_counter("p2_requests")
                .with_description("Requests answered, by verb and outcome")
                .build(),
            latency: m
                .f64_histogram("p2_request_duration")
                .with_unit("s")
                .with_description("Time to answer a request, by verb")
                .with_boundaries(vec![
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
                ])
                .build(),
        }
    }

    /// One answered request.
    pub fn record(&self, verb: &'static str, outcome: &'static str, took: Duration) {
        let labels = [
            KeyValue::new("verb", verb),
            KeyValue::new("outcome", outcome),
        ];
        self.requests.add(1, &labels);
        self.latency.record(took.as_secs_f64(), &labels[..1]);
    }
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One snapshot built: its size and how long building and storing it took.
pub fn snapshot_built(bytes: u64, took: Duration) {
    use std::sync::OnceLock;
    static SNAPSHOTS: OnceLock<(Histogram<u64>, Histogram<f64>)> = OnceLock::new();
    let (size, time) = SNAPSHOTS.get_or_init(|| {
        let m = plotter2_node::metrics::meter();
        (
            m.u64_histogram("p2_snapshot_size")
                .with_unit("By")
                .with_description("Sizes of the snapshots built")
                .with_boundaries(vec![1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10])
                .build(),
            m.f64_histogram("p2_snapshot_build_duration")
                .with_unit("s")
                .with_description("Time to encode and store a snapshot")
                .with_boundaries(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0])
                .build(),
        )
    });
    size.record(bytes, &[]);
    time.record(took.as_secs_f64(), &[]);
}

/// Gauges over raft and the registry; they are read while this is alive.
pub struct Gauges {
    _gauges: Vec<ObservableGauge<u64>>,
    _leader_changes: ObservableCounter<u64>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for Gauges {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Registers the gauges of coordinator `id`.
pub fn gauges(raft: Raft, sm: StateMachine, id: u64) -> Gauges {
    let m = plotter2_node::metrics::meter();
    let node = KeyValue::new("coordinator", id.to_string());
    let raft_gauge = |name: &'static str, what: &'static str, read: fn(&RaftNumbers) -> u64| {
        let (raft, node) = (raft.clone(), node.clone());
        m.u64_observable_gauge(name)
            .with_description(what)
            .with_callback(move |o| {
                o.observe(read(&RaftNumbers::of(&raft)), std::slice::from_ref(&node))
            })
            .build()
    };
    let mut gauges = vec![
        raft_gauge("p2_raft_term", "The raft term", |n| n.term),
        raft_gauge("p2_raft_leader", "1 while this coordinator leads", |n| {
            u64::from(n.leading)
        }),
        raft_gauge(
            "p2_raft_leader_id",
            "The leader this coordinator knows (0: none)",
            |n| n.leader,
        ),
        raft_gauge("p2_raft_last_log_index", "The last raft log index", |n| {
            n.last_log
        }),
        raft_gauge(
            "p2_raft_commit_index",
            "The committed raft log index",
            |n| n.committed,
        ),
        raft_gauge("p2_raft_applied_index", "The applied raft log index", |n| {
            n.applied
        }),
        raft_gauge(
            "p2_raft_apply_lag",
            "Committed entries not yet applied",
            |n| n.committed.saturating_sub(n.applied),
        ),
        raft_gauge(
            "p2_raft_snapshot_index",
            "The last log index the snapshot covers",
            |n| n.snapshot,
        ),
    ];
    let registry_gauge =
        |name: &'static str, what: &'static str, read: fn(&crate::registry::Registry) -> u64| {
            let (sm, node) = (sm.clone(), node.clone());
            m.u64_observable_gauge(name)
                .with_description(what)
                .with_callback(move |o| {
                    if let Ok(st) = sm.read() {
                        o.observe(read(&st.registry), std::slice::from_ref(&node));
                    }
                })
                .build()
        };
    // Runs waiting and running, by pool: one series per pool, read at each scrape.
    for (name, what, running) in [
        (
            "p2_runs_queued",
            "Runs waiting for a worker, by pool",
            false,
        ),
        (
            "p2_runs_running",
            "Runs a worker has claimed, by pool",
            true,
        ),
    ] {
        let (sm, node) = (sm.clone(), node.clone());
        gauges.push(
            m.u64_observable_gauge(name)
                .with_description(what)
                .with_callback(move |o| {
                    let Ok(st) = sm.read() else { return };
                    let mut per_pool = st.registry.runs_per_pool();
                    // The default pool reads 0 when empty, rather than vanishing.
                    per_pool.entry("default".to_owned()).or_default();
                    for (pool, (q, r)) in per_pool {
                        let labels = [node.clone(), KeyValue::new("pool", pool)];
                        o.observe(if running { r } else { q }, &labels);
                    }
                })
                .build(),
        );
    }
    gauges.push(registry_gauge(
        "p2_requests_committed",
        "Requests in the request log",
        |r| r.request_count(),
    ));
    // Leader changes, as this coordinator saw them.
    let changes = Arc::new(AtomicU64::new(0));
    let seen = changes.clone();
    let leader_changes = m
        .u64_observable_counter("p2_raft_leader_changes")
        .with_description("Times the leader this coordinator knows changed")
        .with_callback(move |o| {
            o.observe(seen.load(Ordering::Relaxed), std::slice::from_ref(&node))
        })
        .build();
    let mut watch = raft.metrics();
    let watcher = tokio::spawn(async move {
        let mut last = watch.borrow_watched().current_leader;
        while watch.changed().await.is_ok() {
            let now = watch.borrow_watched().current_leader;
            if now != last && now.is_some() {
                changes.fetch_add(1, Ordering::Relaxed);
            }
            last = now;
        }
    });
    Gauges {
        _gauges: gauges,
        _leader_changes: leader_changes,
        watcher,
    }
}

/// What the gauges read of raft's metrics, under its watch's lock only briefly.
struct RaftNumbers {
    term: u64,
    leading: bool,
    leader: u64,
    last_log: u64,
    committed: u64,
    applied: u64,
    snapshot: u64,
}

impl RaftNumbers {
    fn of(raft: &Raft) -> Self {
        let metrics = raft.metrics();
        let m = metrics.borrow_watched();
        Self {
            term: m.current_term,
            leading: m.state == ServerState::Leader,
            leader: m.current_leader.unwrap_or(0),
            last_log: m.last_log_index.unwrap_or(0),
            committed: m.local_committed.as_ref().map_or(0, |l| l.index()),
            applied: m.last_applied.as_ref().map_or(0, |l| l.index()),
            snapshot: m.snapshot.as_ref().map_or(0, |l| l.index()),
        }
    }
}
