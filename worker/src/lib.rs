//! plotter2's worker: pulls runs of one subtree (its pool) from the JetStream work queue, runs
//! `command` tasks in sandboxes under `<home>/service/`, and reports each attempt to the
//! coordinator, with what the task wrote into `{out}` stored as the run node's next bundle.
//!
//! It owns its sandboxes and its code cache; it reads the registry and writes it only through
//! requests (`attempts`: claims and results, batched), and never touches raft state or the
//! stager's spool.
//!
//! - [`pool`]: the durable pull consumer of a subtree, and the loop that fills the slots.
//! - [`report`]: claims and results, sent to the coordinator in batches.
//! - [`execute`]: one attempt: sandbox, argv substitution, process, logs, timeout, output.
//! - [`cache`]: code bundles by id, shared by the worker processes of one home.
//! - [`log`]: an attempt's stdout and stderr: file, live subject, limit.
//! - [`guard`]: the companion process that kills the tasks when the worker dies.

pub mod cache;
pub mod execute;
pub mod guard;
pub mod log;
mod metrics;
mod pipeline;
pub mod pool;
pub mod report;

use std::path::{Path, PathBuf};

use async_nats::jetstream::context::GetStreamError;
use async_nats::jetstream::stream::ConsumerError;
use plotter2_node::Address;
use plotter2_node::bundle::Hash;
use plotter2_node::retry::{Classify, ErrorClass};

pub use pool::{WorkerConfig, run};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// A file or folder of the worker's (sandbox, cache, log) could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Client(#[from] plotter2_node::client::ClientError),
    #[error(transparent)]
    Tree(#[from] plotter2_node::tree::TreeError),
    #[error(transparent)]
    Store(#[from] plotter2_node::store::StoreError),
    /// A blocking task panicked or was cancelled.
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// The work queue stream could not be looked up.
    #[error("the work queue {stream}: {source}")]
    Stream {
        stream: &'static str,
        #[source]
        source: GetStreamError,
    },
    /// The pool's consumer could not be created or opened.
    #[error("the consumer of the pool {serve}: {source}")]
    Consumer {
        serve: Address,
        #[source]
        source: ConsumerError,
    },
    /// Another pool serves a subtree that overlaps this one.
    #[error(
        "cannot serve {serve}: another worker pool serves an overlapping subtree ({source}). \
         Pools must not overlap: serve disjoint subtrees, or exactly the same address to share one pool"
    )]
    Overlapping {
        serve: Address,
        #[source]
        source: ConsumerError,
    },
    /// The coordinator answered a read with something else than asked for.
    #[error("unexpected answer from the coordinator to {request}")]
    Unexpected { request: &'static str },
    /// The run's code bundle is not among its task's node's versions any more.
    #[error("code bundle {code} is no longer at {addr}")]
    CodeGone { code: Hash, addr: Address },
    /// A version read is another bundle than the run was given.
    #[error("{addr}@{version} is {found}, not the bundle {expected} this run was given")]
    WrongBundle {
        addr: Address,
        version: u64,
        found: Hash,
        expected: Hash,
    },
    /// What the task wrote into `{out}` cannot be a bundle.
    #[error("the output in {{out}} is not a valid bundle: {0}")]
    BadOutput(#[source] plotter2_node::tree::Rejection),
}

impl WorkerError {
    /// Maps an I/O error on `path` to an error naming it.
    pub fn io(path: &Path) -> impl Fn(std::io::Error) -> WorkerError + '_ {
        move |source| WorkerError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl Classify for WorkerError {
    fn class(&self) -> ErrorClass {
        match self {
            // The worker's disk, a cache entry removed under it, the network, no leader: the
            // same step may succeed later, here or on another worker.
            WorkerError::Io { .. }
            | WorkerError::Join(_)
            | WorkerError::Stream { .. }
            | WorkerError::Consumer { .. } => ErrorClass::Transient,
            WorkerError::Client(e) => e.class(),
            WorkerError::Tree(e) => e.class(),
            WorkerError::Store(e) => e.class(),
            WorkerError::Overlapping { .. }
            | WorkerError::Unexpected { .. }
            | WorkerError::CodeGone { .. }
            | WorkerError::WrongBundle { .. }
            | WorkerError::BadOutput(_) => ErrorClass::Permanent,
        }
    }
}
