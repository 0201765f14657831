//! plotter2-coordinator: one raft node of the registry.
//!
//! Owns the raft log and vote ([`log_store`], redb, fsync'd before acknowledging), the registry
//! state machine ([`state_machine`], [`registry`], [`runs`]), raft RPC over TCP ([`network`]),
//! the request API on NATS ([`api`]), served by the leader only, and what the leader does
//! with committed runs: publish them to workers ([`dispatch`]) and find attempts nobody runs
//! any more ([`liveness`]).
//!
//! Must not touch: other roles' code (workers, stagers), the object store. It talks to them
//! only through `plotter2-node`'s protocol over NATS.

pub mod api;
mod apply;
pub mod compaction;
pub mod dispatch;
pub mod events;
pub mod lineage;
pub mod liveness;
pub mod log_store;
pub mod metrics;
pub mod network;
pub mod registry;
pub mod rules;
pub mod runs;
pub mod state_machine;
#[cfg(test)]
mod testing;
pub mod types;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, SnapshotPolicy};

use crate::api::Api;
use crate::log_store::{LogOptions, LogStore};
use crate::network::Network;
use crate::state_machine::StateMachine;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("cannot open the registry at {path}: {message}")]
    Storage { path: PathBuf, message: String },
    #[error(
        "the registry at {path} is in use by another coordinator process; stop it first (or give this one another --id / --data-dir)"
    )]
    Locked { path: PathBuf },
    #[error("cannot listen for raft peers on {addr}: {message}")]
    Listen { addr: String, message: String },
    #[error("raft: {0}")]
    Raft(String),
    #[error("cannot reach NATS at {url}: {message}")]
    Nats { url: String, message: String },
    #[error(
        "the registry at {path} is damaged: {problem}. This node cannot serve it: remove it from \
         the cluster (`plotter2 cluster remove {id}`), delete {path}, start it again and add it \
         back (`plotter2 cluster add {id} <its raft address>`); it then catches up from the \
         others by snapshot"
    )]
    Damaged {
        path: PathBuf,
        id: u64,
        problem: String,
    },
    #[error(
        "coordinator {id} stopped because writing its raft log under {path} failed: {why}. It \
         stops rather than acknowledge anything it could not store; what it did store is \
         intact. Fix the disk, then start it again"
    )]
    LogWrite { path: PathBuf, id: u64, why: String },
    #[error("{name}={value:?} is not valid: {why}")]
    BadEnv {
        name: &'static str,
        value: String,
        why: String,
    },
}

/// A test-only knob from the environment: `None` when unset or empty.
fn env_knob<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, CoordinatorError>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => {
            v.parse()
                .map(Some)
                .map_err(|e: T::Err| CoordinatorError::BadEnv {
                    name,
                    value: v,
                    why: e.to_string(),
                })
        }
        _ => Ok(None),
    }
}

/// Raft timing and log compaction.
#[derive(Debug, Clone)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot after this many log entries, or after as many as the registry holds
    /// requests when that is more (see [`compaction`]).
    pub snapshot_every: u64,
    /// Log entries kept after a snapshot (the rest are purged).
    pub keep_after_snapshot: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 100,
            election_min_ms: 500,
            election_max_ms: 1000,
            snapshot_every: 50_000,
            keep_after_snapshot: 5_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub id: u64,
    /// Where peers reach this node's raft port; also the address it listens on.
    pub raft_addr: String,
    pub nats_url: String,
    /// Directory holding this node's `raft.redb`.
    pub data_dir: PathBuf,
    /// Members to initialize a brand-new cluster with (one node only, once).
    pub init: BTreeMap<u64, String>,
    pub tuning: RaftTuning,
    pub write_timeout: Duration,
    /// Attempts running this long are checked with their workers; see [`liveness`].
    pub lost_after: Duration,
}

/// Runs one coordinator until `shutdown` resolves.
pub async fn run(
    cfg: CoordinatorConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CoordinatorError> {
    let storage_err = |e: &dyn std::fmt::Display| CoordinatorError::Storage {
        path: cfg.data_dir.clone(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&cfg.data_dir).map_err(|e| storage_err(&e))?;
    let db_path = cfg.data_dir.join("raft.redb");
    let db = {
        let path = db_path.clone();
        tokio::task::spawn_blocking(move || redb::Database::create(path))
            .await
            .map_err(|e| storage_err(&e))?
    };
    let db = match db {
        Ok(db) => Arc::new(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            return Err(CoordinatorError::Locked { path: db_path });
        }
        Err(e) => return Err(storage_err(&e)),
    };
    let fail_write_at = env_knob::<u64>(log_store::FAIL_LOG_WRITE_ENV)?;
    let snapshot_chunk = match env_knob::<usize>(network::SNAPSHOT_CHUNK_ENV)? {
        Some(n) if n == 0 || n > network::MAX_SNAPSHOT_CHUNK => {
            return Err(CoordinatorError::BadEnv {
                name: network::SNAPSHOT_CHUNK_ENV,
                value: n.to_string(),
                why: format!("give 1 to {} bytes", network::MAX_SNAPSHOT_CHUNK),
            });
        }
        Some(n) => n,
        None => network::DEFAULT_SNAPSHOT_CHUNK,
    };
    let append_part = match env_knob::<usize>(network::APPEND_PART_ENV)? {
        Some(0) => {
            return Err(CoordinatorError::BadEnv {
                name: network::APPEND_PART_ENV,
                value: "0".into(),
                why: "give at least 1 byte".into(),
            });
        }
        Some(n) => n,
        None => network::DEFAULT_APPEND_PART,
    };
    let data_dir = cfg.data_dir.clone();
    let opened = tokio::task::spawn_blocking(move || {
        let sm = StateMachine::open(&data_dir).map_err(log_store::LogOpenError::Io)?;
        let covered = sm.stored_snapshot()?.map(|l| l.index());
        let opts = LogOptions {
            covered,
            fail_write_at,
        };
        Ok::<_, log_store::LogOpenError>((LogStore::open(db, opts)?, sm))
    })
    .await
    .map_err(|e| storage_err(&e))?;
    let damaged = |problem: String| CoordinatorError::Damaged {
        path: cfg.data_dir.clone(),
        id: cfg.id,
        problem,
    };
    let (log_store, sm) = match opened {
        Ok(pair) => pair,
        Err(e @ log_store::LogOpenError::Hole { .. }) => return Err(damaged(e.to_string())),
        Err(log_store::LogOpenError::Io(e)) => return Err(storage_err(&e)),
    };
    // Every purge follows the snapshot that covers it; a snapshot behind the purge point
    // means the entries between are gone.
    let snapshot = sm.stored_snapshot().map_err(|e| storage_err(&e))?;
    if let Some(purged) = log_store.purged().map_err(|e| storage_err(&e))?
        && snapshot.is_none_or(|s| s.index() < purged.index())
    {
        return Err(damaged(format!(
            "its raft log is purged up to entry {}, but its snapshot ends at {}",
            purged.index(),
            snapshot.map_or("nothing (there is none)".to_owned(), |s| s
                .index()
                .to_string())
        )));
    }
    let log_failed = log_store.failed();

    let t = &cfg.tuning;
    let config = openraft::Config {
        cluster_name: "plotter2".into(),
        heartbeat_interval: t.heartbeat_ms,
        election_timeout_min: t.election_min_ms,
        election_timeout_max: t.election_max_ms,
        // compaction::run decides when; see there why not a fixed interval.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: t.keep_after_snapshot,
        replication_lag_threshold: t.snapshot_every.max(1000),
        enable_pre_vote: Some(true),
        // Replicate as soon as entries are written; the local fsync runs meanwhile.
        broadcast_submitted_on_append: Some(true),
        install_snapshot_timeout: 10_000,
        ..Default::default()
    };
    let config = Arc::new(
        config
            .validate()
            .map_err(|e| CoordinatorError::Raft(e.to_string()))?,
    );
    let raft = openraft::Raft::new(
        cfg.id,
        config,
        Network::new(snapshot_chunk, append_part),
        log_store,
        sm.clone(),
    )
    .await
    .map_err(|e| CoordinatorError::Raft(e.to_string()))?;

    let listener = tokio::net::TcpListener::bind(&cfg.raft_addr)
        .await
        .map_err(|e| CoordinatorError::Listen {
            addr: cfg.raft_addr.clone(),
            message: e.to_string(),
        })?;
    let raft_server = tokio::spawn(network::serve(listener, raft.clone()));

    if !cfg.init.is_empty()
        && !raft
            .is_initialized()
            .await
            .map_err(|e| CoordinatorError::Raft(e.to_string()))?
    {
        let members: BTreeMap<u64, BasicNode> = cfg
            .init
            .iter()
            .map(|(id, a)| (*id, BasicNode::new(a)))
            .collect();
        tracing::info!(?members, "initializing a new cluster");
        raft.initialize(members)
            .await
            .map_err(|e| CoordinatorError::Raft(e.to_string()))?;
    }

    let nats = async_nats::ConnectOptions::new()
        .name(format!("plotter2-coordinator-{}", cfg.id))
        .retry_on_initial_connect()
        .connect(&cfg.nats_url)
        .await
        .map_err(|e| CoordinatorError::Nats {
            url: cfg.nats_url.clone(),
            message: e.to_string(),
        })?;

    let api = Api {
        id: cfg.id,
        raft_addr: cfg.raft_addr.clone(),
        raft: raft.clone(),
        sm,
        nats,
        write_timeout: cfg.write_timeout,
        quorum_stale_after: Duration::from_millis(cfg.tuning.election_max_ms * 2),
        lost_after: cfg.lost_after,
        requests: metrics::RequestMetrics::new(),
    };
    let _gauges = metrics::gauges(raft.clone(), api.sm.clone(), cfg.id);
    let compaction = tokio::spawn(compaction::run(
        raft.clone(),
        api.sm.clone(),
        cfg.tuning.snapshot_every,
    ));
    let status = tokio::spawn(api.clone().run_status_service());
    let leader = tokio::spawn(api.run_leader_service());
    tracing::info!(id = cfg.id, raft = %cfg.raft_addr, nats = %cfg.nats_url, "coordinator running");

    let log_failure = tokio::select! {
        () = shutdown => None,
        why = log_failed => Some(why),
    };
    match &log_failure {
        None => tracing::info!(id = cfg.id, "shutting down"),
        Some(why) => tracing::error!(
            id = cfg.id,
            "stopping: the raft log could not be written ({why}); nothing after it is acknowledged"
        ),
    }
    leader.abort();
    status.abort();
    compaction.abort();
    raft_server.abort();
    let stopped = raft.shutdown().await;
    if let Some(why) = log_failure {
        // openraft may have stopped itself on the error already; the log failure is the news.
        return Err(CoordinatorError::LogWrite {
            path: cfg.data_dir.clone(),
            id: cfg.id,
            why,
        });
    }
    stopped.map_err(|e| CoordinatorError::Raft(e.to_string()))?;
    Ok(())
}
