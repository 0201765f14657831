//! Reading a bundle folder from disk: walk it, refuse what a bundle may not hold, read and
//! validate its manifest, and hash every file, spread over the cores. Everything here blocks:
//! call it from `spawn_blocking`.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Address;
use crate::bundle::{BundlePath, FileEntry, FileIndex, Hash, MAX_BUNDLE_FILES, hash_reader};
use crate::manifest::{Manifest, ManifestError};
use crate::store::BlobLinker;

/// The manifest's name at the bundle root.
pub const MANIFEST: &str = "manifest.json";
/// A completion marker at the bundle root; not part of the bundle.
pub const READY: &str = "READY";
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// Directory nesting beyond this is refused (and keeps a symlink loop from recursing forever).
const MAX_DEPTH: usize = 64;

/// Why a folder is not a bundle. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{path}: {why}")]
    File { path: String, why: String },
    #[error(
        "the bundle has no manifest.json at its root: add one, at least {{\"manifest_version\": 1, \"meta\": {{\"address\": \"/where/it/goes\"}}}}"
    )]
    NoManifest,
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(
        "the bundle names no target address: set meta.address in manifest.json, or push it with `plotter2 push DIR ADDR`"
    )]
    NoAddress,
    #[error("the coordinator refused the bundle: {0}")]
    Refused(String),
}

fn bad(path: impl std::fmt::Display, why: impl Into<String>) -> Rejection {
    Rejection::File {
        path: path.to_string(),
        why: why.into(),
    }
}

/// One regular file of a bundle on disk (at its root joined with `path`).
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub path: BundlePath,
    pub size: u64,
    pub mode: u32,
}

/// A bundle read from disk.
#[derive(Debug, Clone)]
pub struct Scanned {
    /// The folder it was read from.
    pub root: PathBuf,
    pub index: FileIndex,
    pub manifest: Manifest,
    /// From the caller's override, else the manifest's `meta.address`.
    pub addr: Address,
}

impl Scanned {
    /// Where the file of index entry `entry` lies on disk.
    pub fn file_path(&self, entry: &FileEntry) -> PathBuf {
        self.root.join(entry.path.as_str())
    }
}

/// Walks, validates and hashes the bundle at `root`, using up to `threads` threads.
pub fn scan(root: &Path, addr: Option<&Address>, threads: usize) -> Result<Scanned, Rejection> {
    scan_into(root, addr, threads, None)
}

/// [`scan`], and each file that is the caller's own goes into the local store `linker`
/// points at as soon as it is hashed (see [`BlobLinker::link_own`]): one read of each file
/// instead of one to hash it and one to store it.
pub fn scan_into(
    root: &Path,
    addr: Option<&Address>,
    threads: usize,
    linker: Option<&BlobLinker>,
) -> Result<Scanned, Rejection> {
    // The walk makes the index's entries themselves, and hashing fills their blobs in
    // place: a million files are held once, not once per step.
    let mut entries = Vec::new();
    // Overwritten by the hashing below.
    let unhashed = Hash::of(b"");
    walk_into(root, &mut |path, _size, mode| {
        entries.push(FileEntry {
            path,
            blob: unhashed,
            size: 0,
            mode,
        })
    })?;
    let manifest = read_manifest(root)?;
    let addr = match (addr, &manifest.meta.address) {
        (Some(a), _) | (None, Some(a)) => a.clone(),
        (None, None) => return Err(Rejection::NoAddress),
    };
    // In path order before hashing, so the first bad file reported is the first by path
    // (and the index below need not sort again).
    entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    hash_all(root, &mut entries, threads, linker)?;
    let index = FileIndex::new(entries).map_err(|e| bad(root.display(), e.to_string()))?;
    Ok(Scanned {
        root: root.to_owned(),
        index,
        manifest,
        addr,
    })
}

/// Every regular file under `root`, sorted by bundle path. Refuses special files, paths that
/// are not valid bundle paths, symlinks that lead out of the bundle or to directories.
pub fn walk(root: &Path) -> Result<Vec<LocalFile>, Rejection> {
    let mut out = Vec::new();
    walk_into(root, &mut |path, size, mode| {
        out.push(LocalFile { path, size, mode })
    })?;
    out.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Hands each regular file under `root` to `sink` (path, size, mode), in no set order, and
/// refuses a folder of more files than a bundle holds.
fn walk_into(root: &Path, sink: &mut dyn FnMut(BundlePath, u64, u32)) -> Result<(), Rejection> {
    let canonical_root = std::fs::canonicalize(root).map_err(|e| {
        bad(
            root.display(),
            format!("cannot open the bundle folder: {e}"),
        )
    })?;
    let mut count = 0usize;
    let mut counted = |path, size, mode| {
        count += 1;
        sink(path, size, mode);
    };
    walk_dir(root, &canonical_root, "", 0, &mut counted)?;
    if count > MAX_BUNDLE_FILES {
        return Err(bad(
            ".",
            format!(
                "holds {count} files; a bundle holds at most {MAX_BUNDLE_FILES}: split it into several bundles"
            ),
        ));
    }
    Ok(())
}

fn walk_dir(
    dir: &Path,
    root: &Path,
    prefix: &str,
    depth: usize,
    out: &mut dyn FnMut(BundlePath, u64, u32),
) -> Result<(), Rejection> {
    let shown = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}/{name}")
        }
    };
    if depth > MAX_DEPTH {
        return Err(bad(
            if prefix.is_empty() { "." } else { prefix },
            format!("folders nest deeper than {MAX_DEPTH} levels; flatten the bundle"),
        ));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| {
        bad(
            if prefix.is_empty() { "." } else { prefix },
            format!("cannot list this folder ({e}); make it readable by the stager's user"),
        )
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| bad(prefix, format!("cannot list this folder: {e}")))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(bad(
                shown(&name.to_string_lossy()),
                "the name is not valid UTF-8; rename it",
            ));
        };
        let rel = shown(name);
        if depth == 0 && name == READY {
            continue;
        }
        let fs_path = entry.path();
        let meta = std::fs::symlink_metadata(&fs_path)
            .map_err(|e| bad(&rel, format!("cannot read its metadata: {e}")))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            walk_dir(&fs_path, root, &rel, depth + 1, out)?;
            continue;
        }
        let meta = if ft.is_symlink() {
            let target = std::fs::canonicalize(&fs_path)
                .map_err(|e| bad(&rel, format!("is a symlink that leads nowhere ({e})")))?;
            if !target.starts_with(root) {
                return Err(bad(
                    &rel,
                    format!(
                        "is a symlink to {}, outside the bundle; copy the file in instead",
                        target.display()
                    ),
                ));
            }
            let meta = std::fs::metadata(&target)
                .map_err(|e| bad(&rel, format!("cannot read what the symlink leads to: {e}")))?;
            if !meta.is_file() {
                return Err(bad(
                    &rel,
                    "is a symlink to a folder; bundles hold files, so copy the folder in",
                ));
            }
            meta
        } else if ft.is_file() {
            meta
        } else {
            let what = if ft.is_fifo() {
                "a fifo"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "a device file"
            } else {
                "not a regular file"
            };
            return Err(bad(
                &rel,
                format!("is {what}; bundles hold regular files only, so remove it"),
            ));
        };
        let path = BundlePath::parse(&rel).map_err(|e| bad(&rel, e.to_string()))?;
        out(path, meta.size(), meta.mode() & 0o7777);
    }
    Ok(())
}

/// Reads and validates `<root>/manifest.json`.
pub fn read_manifest(root: &Path) -> Result<Manifest, Rejection> {
    let path = root.join(MANIFEST);
    let meta = match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Err(bad(MANIFEST, "is not a regular file")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Rejection::NoManifest),
        Err(e) => return Err(bad(MANIFEST, format!("cannot be read: {e}"))),
    };
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(bad(
            MANIFEST,
            format!(
                "is {} bytes; the limit is {MAX_MANIFEST_BYTES}: keep data in files, not in the manifest",
                meta.len()
            ),
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| bad(MANIFEST, format!("cannot be read: {e}")))?;
    Ok(Manifest::from_json(&bytes)?)
}

/// Hashes the file of every entry (under `root`) with `threads` threads taking runs of
/// entries from a shared queue, filling in each entry's blob and size in place. The first
/// bad file in path order rejects the bundle.
pub fn hash_all(
    root: &Path,
    entries: &mut [FileEntry],
    threads: usize,
    linker: Option<&BlobLinker>,
) -> Result<(), Rejection> {
    /// Entries a thread takes at once: few enough to spread a small bundle over the threads.
    const RUN: usize = 64;
    let threads = threads.clamp(1, entries.len().div_ceil(RUN).max(1));
    let runs = Mutex::new(entries.chunks_mut(RUN).enumerate());
    let stop = AtomicBool::new(false);
    // Of the failures found before the others stopped, the one first in `entries`.
    let failed: Mutex<Option<(usize, Rejection)>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let next = runs.lock().ok().and_then(|mut r| r.next());
                    let Some((n, run)) = next else { break };
                    for (i, entry) in run.iter_mut().enumerate() {
                        if let Err(e) = hash_one(root, entry, linker) {
                            let at = n * RUN + i;
                            if let Ok(mut f) = failed.lock()
                                && f.as_ref().is_none_or(|(first, _)| at < *first)
                            {
                                *f = Some((at, e));
                            }
                            // Stop the others early: one bad file rejects the bundle.
                            stop.store(true, Ordering::Relaxed);
                            break;
                        }
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

fn hash_one(
    root: &Path,
    entry: &mut FileEntry,
    linker: Option<&BlobLinker>,
) -> Result<(), Rejection> {
    let fs_path = root.join(entry.path.as_str());
    let mut file = std::fs::File::open(&fs_path).map_err(|e| {
        bad(
            &entry.path,
            format!("cannot be read ({e}); make it readable by the stager's user"),
        )
    })?;
    let (blob, size) =
        hash_reader(&mut file).map_err(|e| bad(&entry.path, format!("read failed: {e}")))?;
    if let Some(l) = linker {
        l.link_own(&blob, &fs_path, &file);
    }
    entry.blob = blob;
    entry.size = size;
    Ok(())
}

/// Threads to hash with: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
