//! The spool journal: one folder per bundle in flight under the spool directory (`temp/`),
//! holding the bundle's files and `entry.bin`, the last step it reached. Each step is written
//! atomically and fsync'd before the next begins, so a restart resumes every entry from where
//! it stopped.
//!
//! ```text
//! temp/<entry id>/entry.bin    the journal (rmp, replaced atomically at each step)
//! temp/<entry id>/index.txt    the bundle's file index (canonical text), once hashed
//! temp/<entry id>/files/       the bundle, moved or copied from the inbox
//! temp/.trash-<entry id>/      an entry being removed after commit or rejection
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use plotter2_node::Address;
use plotter2_node::bundle::{FileIndex, Hash, IndexParser, read_pieces};
use plotter2_node::home::{write_atomic, write_atomic_with};
use plotter2_node::manifest::Manifest;
use plotter2_node::protocol::{BundleRef, RequestId};
use serde::{Deserialize, Serialize};

use crate::StagerError;

const ENTRY_FILE: &str = "entry.bin";
/// Kept beside the journal, not in it: the journal is rewritten at every step, and an index
/// can hold a million lines.
const INDEX_FILE: &str = "index.txt";
const FILES_DIR: &str = "files";
const TRASH_PREFIX: &str = ".trash-";

/// The steps of a bundle through the spool, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The entry exists; the bundle is being moved in from the inbox.
    Receiving,
    /// The bundle's files are in the spool and durable.
    Received,
    /// Validated and hashed: index, manifest and target are in the journal.
    Hashed,
    /// Every blob is in the object store.
    Uploaded,
    /// The coordinator committed the `ingest`.
    Committed,
    /// Refused: being moved to `inbox/rejected/` with the reason.
    Rejecting,
    /// The entry is gone from the spool (only a crash point, never written).
    Cleaned,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Receiving => "receiving",
            Step::Received => "received",
            Step::Hashed => "hashed",
            Step::Uploaded => "uploaded",
            Step::Committed => "committed",
            Step::Rejecting => "rejecting",
            Step::Cleaned => "cleaned",
        })
    }
}

impl FromStr for Step {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "receiving" => Step::Receiving,
            "received" => Step::Received,
            "hashed" => Step::Hashed,
            "uploaded" => Step::Uploaded,
            "committed" => Step::Committed,
            "rejecting" => Step::Rejecting,
            "cleaned" => Step::Cleaned,
            _ => {
                return Err(format!(
                    "{s:?} is not a spool step: use received, hashed, uploaded, committed or cleaned"
                ));
            }
        })
    }
}

/// What hashing found out about the bundle (its file index is in [`Spool::load_index`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hashed {
    pub addr: Address,
    pub bundle: Hash,
    pub files: u64,
    pub bytes: u64,
    pub manifest: Manifest,
    /// Its files' paths for rules (an entry journaled before they were kept has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

/// One bundle in the spool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    /// The folder's name in the inbox (used again under `rejected/`).
    pub name: String,
    pub step: Step,
    /// The `ingest` request id, fixed at admission so a retried commit is applied once.
    pub request: RequestId,
    #[serde(default)]
    pub hashed: Option<Hashed>,
    #[serde(default)]
    pub committed: Option<BundleRef>,
    #[serde(default)]
    pub rejection: Option<String>,
}

/// The spool directory.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    pub fn open(dir: &Path) -> Result<Self, StagerError> {
        std::fs::create_dir_all(dir).map_err(StagerError::io(dir))?;
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn entry_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    pub fn files_dir(&self, id: &str) -> PathBuf {
        self.entry_dir(id).join(FILES_DIR)
    }

    /// Creates the folder of a new entry and journals it as `Receiving`.
    pub fn create(&self, name: &str) -> Result<Entry, StagerError> {
        let entry = Entry {
            id: ulid::Ulid::new().to_string().to_lowercase(),
            name: name.to_owned(),
            step: Step::Receiving,
            request: RequestId::new(),
            hashed: None,
            committed: None,
            rejection: None,
        };
        let dir = self.entry_dir(&entry.id);
        std::fs::create_dir(&dir).map_err(StagerError::io(&dir))?;
        self.save(&entry)?;
        Ok(entry)
    }

    /// Journals `entry` (atomic replace, fsync'd).
    pub fn save(&self, entry: &Entry) -> Result<(), StagerError> {
        let path = self.entry_dir(&entry.id).join(ENTRY_FILE);
        let bytes = rmp_serde::to_vec_named(entry).map_err(|e| StagerError::Journal {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&path, &bytes).map_err(|e| StagerError::Journal {
            path,
            message: e.to_string(),
        })
    }

    /// Where [`Spool::save_index`] keeps the index of entry `id`.
    pub fn index_path(&self, id: &str) -> PathBuf {
        self.entry_dir(id).join(INDEX_FILE)
    }

    /// Keeps the file index of entry `id` (atomic replace, fsync'd), before the journal says
    /// `Hashed`.
    pub fn save_index(&self, id: &str, index: &FileIndex) -> Result<(), StagerError> {
        let path = self.index_path(id);
        write_atomic_with(&path, |w| index.write_canonical(w)).map_err(|e| StagerError::Journal {
            path,
            message: e.to_string(),
        })
    }

    /// The file index [`Spool::save_index`] kept for entry `id`.
    pub fn load_index(&self, id: &str) -> Result<FileIndex, StagerError> {
        let path = self.index_path(id);
        // Read in pieces: the index of a million files is never held as text as well.
        let file = std::fs::File::open(&path).map_err(StagerError::io(&path))?;
        let mut parser = IndexParser::default();
        read_pieces(file, &mut vec![0u8; 1 << 20], |p| parser.feed(p))
            .map_err(StagerError::io(&path))?;
        parser.finish().map_err(|e| StagerError::Journal {
            path,
            message: e.to_string(),
        })
    }

    /// Every entry in the spool, oldest first. Finishes removals a crash interrupted; a folder
    /// without a journal never got past creation (nothing was moved in) and is removed.
    pub fn load_all(&self) -> Result<Vec<Entry>, StagerError> {
        let mut out = Vec::new();
        let list = std::fs::read_dir(&self.dir).map_err(StagerError::io(&self.dir))?;
        for item in list {
            let item = item.map_err(StagerError::io(&self.dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let path = item.path();
            if name.starts_with(TRASH_PREFIX) {
                std::fs::remove_dir_all(&path).map_err(StagerError::io(&path))?;
                continue;
            }
            if !path.is_dir() || name.starts_with('.') {
                continue;
            }
            let journal = path.join(ENTRY_FILE);
            let bytes = match std::fs::read(&journal) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !path.join(FILES_DIR).exists() {
                        std::fs::remove_dir_all(&path).map_err(StagerError::io(&path))?;
                    } else {
                        tracing::error!(entry = %path.display(), "spool entry has files but no journal; leaving it for an operator");
                    }
                    continue;
                }
                Err(e) => return Err(StagerError::io(&journal)(e)),
            };
            let entry: Entry = rmp_serde::from_slice(&bytes).map_err(|e| StagerError::Journal {
                path: journal.clone(),
                message: e.to_string(),
            })?;
            out.push(entry);
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// Removes an entry: renamed aside first (atomic), so a crash mid-way never leaves a
    /// half-deleted entry that looks alive.
    pub fn remove(&self, id: &str) -> Result<(), StagerError> {
        let dir = self.entry_dir(id);
        let trash = self.dir.join(format!("{TRASH_PREFIX}{id}"));
        std::fs::rename(&dir, &trash).map_err(StagerError::io(&dir))?;
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(StagerError::io(&self.dir))?;
        std::fs::remove_dir_all(&trash).map_err(StagerError::io(&trash))
    }
}
