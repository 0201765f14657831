//! plotter2's stager: lossless bundle ingest into object storage.
//!
//! Owns the inbox (watching it, the readiness rule, `rejected/`), the spool journal in
//! `temp/`, uploading blobs, and both ends of `plotter2 push`. Reading a folder as a bundle and
//! writing one back out live in `plotter2_node::tree`, which every role shares. It commits bundles through the coordinator's `ingest`
//! request and never writes the registry itself; it must not touch raft state or other roles'
//! directories.
//!
//! - [`journal`]: the spool and its per-bundle journal.
//! - [`pipeline`]: one bundle through receive → hash → upload → commit → clean (or reject).
//! - [`inbox`]: the watcher and readiness rule.
//! - [`push`]: the push protocol, its receiver and its client.

use std::path::{Path, PathBuf};

use plotter2_node::retry::{Classify, ErrorClass};

pub mod inbox;
pub mod journal;
mod metrics;
pub mod pipeline;
pub mod push;

pub use inbox::{StagerConfig, run};

/// Why the stager could not do something. [`Classify`] tells the pipeline whether to try
/// again (the store or the coordinators are away) or to set the bundle aside with the reason.
#[derive(Debug, thiserror::Error)]
pub enum StagerError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("spool journal {}: {message}", path.display())]
    Journal { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] plotter2_node::store::StoreError),
    #[error(transparent)]
    Client(#[from] plotter2_node::client::ClientError),
    /// The coordinators answered with something the protocol does not allow here.
    #[error("unexpected answer from the coordinators to {request}: {answer}")]
    Unexpected {
        request: &'static str,
        answer: String,
    },
    #[error("watching the inbox {}: {source}", path.display())]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
    #[error(transparent)]
    Rejected(#[from] plotter2_node::tree::Rejection),
    #[error(transparent)]
    Tree(#[from] plotter2_node::tree::TreeError),
    #[error(transparent)]
    Push(#[from] push::PushError),
    #[error(transparent)]
    Home(#[from] plotter2_node::home::HomeError),
    #[error("a blocking task of the stager failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl StagerError {
    /// Maps an I/O error on `path` into an error naming the path.
    pub fn io(path: &Path) -> impl Fn(std::io::Error) -> StagerError + '_ {
        move |source| StagerError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

impl Classify for StagerError {
    fn class(&self) -> ErrorClass {
        match self {
            StagerError::Io { source, .. } => plotter2_node::retry::io_class(source),
            StagerError::Store(e) => e.class(),
            StagerError::Client(e) => e.class(),
            StagerError::Tree(e) => e.class(),
            StagerError::Push(e) => e.class(),
            StagerError::Join(_) | StagerError::Home(_) => ErrorClass::Transient,
            StagerError::Journal { .. }
            | StagerError::Unexpected { .. }
            | StagerError::Watch { .. }
            | StagerError::Rejected(_) => ErrorClass::Permanent,
        }
    }
}
