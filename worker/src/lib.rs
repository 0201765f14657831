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
//! - [`log`]: an attempt's stdout and stderr: file, live subject, limit.
//! - [`guard`]: the companion process that kills the tasks when the worker dies.

pub mod execute;
pub mod guard;
pub mod log;
pub mod pool;
pub mod report;

pub use pool::{WorkerConfig, run};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Client(#[from] plotter2_node::client::ClientError),
    #[error(transparent)]
    Tree(#[from] plotter2_node::tree::TreeError),
    #[error(transparent)]
    Store(#[from] plotter2_node::store::StoreError),
    #[error("JetStream: {0}")]
    JetStream(String),
    #[error("{0}")]
    Pool(String),
}

impl WorkerError {
    /// Maps an I/O error on `path` to an error naming it.
    pub fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> WorkerError + '_ {
        move |e| WorkerError::Io(format!("{}: {e}", path.display()))
    }
}
