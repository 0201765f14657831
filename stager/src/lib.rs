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

pub mod inbox;
pub mod journal;
pub mod pipeline;
pub mod push;

pub use inbox::{StagerConfig, run};

#[derive(Debug, thiserror::Error)]
pub enum StagerError {
    #[error("{0}")]
    Io(String),
    #[error("spool journal {path}: {message}")]
    Journal { path: PathBuf, message: String },
    #[error(transparent)]
    Store(#[from] plotter2_node::store::StoreError),
    #[error(transparent)]
    Client(#[from] plotter2_node::client::ClientError),
    #[error("coordinator: {0}")]
    Coordinator(String),
    #[error("watching the inbox {path}: {message}")]
    Watch { path: PathBuf, message: String },
    #[error(transparent)]
    Rejected(#[from] plotter2_node::tree::Rejection),
    #[error(transparent)]
    Tree(#[from] plotter2_node::tree::TreeError),
    #[error("{0}")]
    Push(String),
}

impl StagerError {
    /// Maps an I/O error on `path` into a message naming the path.
    pub fn io(path: &Path) -> impl Fn(std::io::Error) -> StagerError + '_ {
        move |e| StagerError::Io(format!("{}: {e}", path.display()))
    }
}
