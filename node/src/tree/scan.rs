//! Reading a bundle folder from disk: walk it, refuse what a bundle may not hold, read and
//! validate its manifest, and hash every file, spread over the cores. Everything here blocks:
//! call it from `spawn_blocking`.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::Address;
use crate::bundle::{BundlePath, FileEntry, FileIndex, MAX_BUNDLE_FILES, hash_reader};
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

/// One regular file of a bundle on disk.
#[derive(Debug, Clone)]
pub struct LocalFile {
    pub path: BundlePath,
    pub fs_path: PathBuf,
    pub size: u64,
    pub mode: u32,
}

/// A bundle read from disk.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub files: Vec<LocalFile>,
    pub index: FileIndex,
    pub manifest: Manifest,
    /// From the caller's override, else the manifest's `meta.address`.
    pub addr: Address,
}

impl Scanned {
    /// Each index entry with the file on disk it came from (both are sorted by path).
    pub fn entries(&self) -> impl Iterator<Item = (&FileEntry, &LocalFile)> {
        self.index.files().iter().zip(&self.files)
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
    let files = walk(root)?;
    let manifest = read_manifest(root)?;
    let addr = match (addr, &manifest.meta.address) {
        (Some(a), _) | (None, Some(a)) => a.clone(),
        (None, None) => return Err(Rejection::NoAddress),
    };
    let entries = hash_all(&files, threads, linker)?;
    let index = FileIndex::new(entries).map_err(|e| bad(root.display(), e.to_string()))?;
    Ok(Scanned {
        files,
        index,
        manifest,
        addr,
    })
}

/// Every regular file under `root`, sorted by bundle path. Refuses special files, paths that
/// are not valid bundle paths, symlinks that lead out of the bundle or to directories.
pub fn walk(root: &Path) -> Result<Vec<LocalFile>, Rejection> {
    let canonical_root = std::fs::canonicalize(root).map_err(|e| {
        bad(
            root.display(),
            format!("cannot open the bundle folder: {e}"),
        )
    })?;
    let mut out = Vec::new();
    walk_dir(root, &canonical_root, "", 0, &mut out)?;
    if out.len() > MAX_BUNDLE_FILES {
        return Err(bad(
            ".",
            format!(
                "holds {} files; a bundle holds at most {MAX_BUNDLE_FILES}: split it into several bundles",
                out.len()
            ),
        ));
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk_dir(
    dir: &Path,
    root: &Path,
    prefix: &str,
    depth: usize,
    out: &mut Vec<LocalFile>,
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
        out.push(LocalFile {
            path,
            fs_path,
            size: meta.size(),
            mode: meta.mode() & 0o7777,
        });
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

/// Hashes every file with `threads` threads pulling from a shared queue; returns the index
/// entries in `files` order.
pub fn hash_all(
    files: &[LocalFile],
    threads: usize,
    linker: Option<&BlobLinker>,
) -> Result<Vec<FileEntry>, Rejection> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<FileEntry, Rejection>>>> =
        Mutex::new(vec![None; files.len()]);
    let threads = threads.clamp(1, files.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = files.get(i) else { break };
                    let r = hash_one(f, linker);
                    let failed = r.is_err();
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                    if failed {
                        // Stop the others early: one bad file rejects the bundle.
                        next.store(files.len(), Ordering::Relaxed);
                        break;
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some(Some(Err(e))) = results.iter().find(|r| matches!(r, Some(Err(_)))) {
        return Err(e.clone());
    }
    results
        .into_iter()
        .zip(files)
        .map(|(r, f)| match r {
            Some(r) => r,
            None => Err(bad(&f.path, "was not hashed")),
        })
        .collect()
}

fn hash_one(f: &LocalFile, linker: Option<&BlobLinker>) -> Result<FileEntry, Rejection> {
    let mut file = std::fs::File::open(&f.fs_path).map_err(|e| {
        bad(
            &f.path,
            format!("cannot be read ({e}); make it readable by the stager's user"),
        )
    })?;
    let (blob, size) =
        hash_reader(&mut file).map_err(|e| bad(&f.path, format!("read failed: {e}")))?;
    if let Some(l) = linker {
        l.link_own(&blob, &f.fs_path, &file);
    }
    Ok(FileEntry {
        path: f.path.clone(),
        blob,
        size,
        mode: f.mode,
    })
}

/// Threads to hash with: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
