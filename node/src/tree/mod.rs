//! A bundle on a filesystem, which every role handles: reading a folder as a bundle (walk,
//! validate, hash), copying a tree, writing a stored bundle version back out of the store,
//! and placing a tree that several processes may create at once (a cache entry).
//!
//! Nothing here talks to raft or decides where a bundle goes; the stager, the worker and the
//! CLI call it.

mod copy;
mod fetch;
mod once;
mod scan;

use std::path::{Path, PathBuf};

pub use copy::copy_tree;
pub use fetch::{Fetch, file_to_stdout, materialise, materialise_with, resolve};
pub(crate) use once::rename_noreplace;
pub use once::{Placed, create_once, materialise_once};
pub use scan::{
    LocalFile, MANIFEST, READY, Rejection, Scanned, default_threads, hash_all, read_manifest, scan,
    scan_into, walk,
};

/// Why a tree could not be copied or written out.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// What was being read or written.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The destination of a materialisation already holds something.
    #[error("{} is not empty; choose another --to folder or empty it", path.display())]
    NotEmpty {
        /// The folder asked for.
        path: PathBuf,
    },
    /// A file asked for by path is not in the bundle.
    #[error("{bundle} has no file {path:?}; it has {count} files, e.g. {sample}")]
    NoSuchFile {
        /// `ADDR@N` of the bundle.
        bundle: String,
        /// The path asked for.
        path: String,
        /// How many files it has.
        count: usize,
        /// A few of its paths.
        sample: String,
    },
    /// Reading or writing a blob failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Asking the coordinator failed.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// The coordinator answered something else than a bundle.
    #[error("unexpected answer from the coordinator: {0}")]
    Unexpected(String),
    /// A blocking task panicked or was cancelled.
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl crate::retry::Classify for TreeError {
    fn class(&self) -> crate::retry::ErrorClass {
        use crate::retry::ErrorClass::{Permanent, Transient};
        match self {
            // A full disk, a folder removed under us: the same call may succeed later.
            TreeError::Io { .. } | TreeError::Join(_) => Transient,
            TreeError::Store(e) => e.class(),
            TreeError::Client(e) => e.class(),
            TreeError::NotEmpty { .. }
            | TreeError::NoSuchFile { .. }
            | TreeError::Unexpected(_) => Permanent,
        }
    }
}

impl TreeError {
    /// Maps an I/O error on `path` into one naming the path.
    pub fn io(path: &Path) -> impl Fn(std::io::Error) -> TreeError + '_ {
        move |source| TreeError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
