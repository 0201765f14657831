//! `plotter2 get`: a bundle version (or one file of it) from the object store, verified
//! against its blake3 hashes as it is written.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::TreeError;
use crate::bundle::FileEntry;
use crate::client::Client;
use crate::progress::{Progress, Silent};
use crate::protocol::{BundleDetail, Op, ReadOp, Reply};
use crate::reference::BundleReference;
use crate::store::{BlobStore, FetchJob};
use futures::{StreamExt, TryStreamExt};

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TreeError> + Send + 'static,
) -> Result<T, TreeError> {
    tokio::task::spawn_blocking(f).await?
}

/// Batches of files fetched at once.
const FETCH_CONCURRENCY: usize = 4;
/// A batch ends after this many files or bytes (so progress moves, and one large file does
/// not wait behind many small ones for long).
const BATCH_FILES: usize = 256;
const BATCH_BYTES: u64 = 32 * 1024 * 1024;

/// Asks the coordinator for the version `reference` names.
pub async fn resolve(
    client: &Client,
    reference: &BundleReference,
) -> Result<BundleDetail, TreeError> {
    let op = Op::Read(ReadOp::Bundle {
        addr: reference.addr.clone(),
        version: reference.version.number(),
    });
    match client.call(op).await? {
        Reply::Bundle(d) => Ok(d),
        other => Err(TreeError::Unexpected(format!(
            "to a bundle read: {other:?}"
        ))),
    }
}

/// Writes every file of `detail` under `dest`, which must not exist or be empty; with
/// `replace`, the tree is built beside `dest` and then takes its place. Each file is written
/// beside its final name and renamed once its hash checked out.
pub async fn materialise(
    store: &BlobStore,
    detail: &BundleDetail,
    dest: &Path,
    replace: bool,
) -> Result<(), TreeError> {
    materialise_with(store, detail, dest, replace, &Silent).await
}

/// [`materialise`], telling `progress` the files and bytes written so far.
pub async fn materialise_with(
    store: &BlobStore,
    detail: &BundleDetail,
    dest: &Path,
    replace: bool,
    progress: &dyn Progress,
) -> Result<(), TreeError> {
    if replace {
        let name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("bundle");
        // Unique per call: several tasks of one process may build the same tree at once.
        let building = dest.with_file_name(format!(".{name}.{}", ulid::Ulid::new()));
        let _ = tokio::fs::remove_dir_all(&building).await;
        Box::pin(materialise_with(store, detail, &building, false, progress)).await?;
        let (from, to) = (building.clone(), dest.to_owned());
        return blocking(move || {
            match std::fs::remove_dir_all(&to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(TreeError::io(&to)(e)),
            }
            match std::fs::rename(&from, &to) {
                Ok(()) => Ok(()),
                // Another caller put the same tree there first.
                Err(_) if to.is_dir() => {
                    let _ = std::fs::remove_dir_all(&from);
                    Ok(())
                }
                Err(e) => Err(TreeError::io(&from)(e)),
            }
        })
        .await;
    }
    let root = dest.to_owned();
    blocking(move || {
        match std::fs::read_dir(&root) {
            Ok(mut list) => {
                if list.next().is_some() {
                    return Err(TreeError::NotEmpty { path: root });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(TreeError::io(&root)(e)),
        }
        std::fs::create_dir_all(&root).map_err(TreeError::io(&root))
    })
    .await?;
    let index = store.get_index(&detail.version.id).await?;
    progress.length(index.files().len() as u64, index.total_bytes());
    let fetch = Fetch::plan(index.files(), dest);
    drop(index);
    fetch.run(store, progress).await
}

/// Files to write under a folder: the folders they need, and the files in batches.
pub struct Fetch {
    folders: Vec<std::path::PathBuf>,
    batches: Vec<(Vec<FetchJob>, u64)>,
}

impl Fetch {
    /// Plans writing `files` (entries of an index, in its order) under `dest`.
    pub fn plan<'a>(files: impl IntoIterator<Item = &'a FileEntry>, dest: &Path) -> Fetch {
        let mut folders: Vec<std::path::PathBuf> = Vec::new();
        let mut batches: Vec<(Vec<FetchJob>, u64)> = Vec::new();
        let mut current = (Vec::new(), 0u64);
        for f in files {
            let path = dest.join(f.path.as_str());
            if let Some(parent) = path.parent()
                && folders.last().map(|l| l.as_path()) != Some(parent)
            {
                folders.push(parent.to_owned());
            }
            if current.0.len() >= BATCH_FILES || current.1 >= BATCH_BYTES {
                batches.push(std::mem::take(&mut current));
            }
            current.0.push(FetchJob {
                blob: f.blob,
                dest: path,
                mode: f.mode,
            });
            current.1 += f.size;
        }
        if !current.0.is_empty() {
            batches.push(current);
        }
        Fetch { folders, batches }
    }

    /// Makes every folder in one pass, then writes the files, several batches at once.
    pub async fn run(self, store: &BlobStore, progress: &dyn Progress) -> Result<(), TreeError> {
        let Fetch { folders, batches } = self;
        blocking(move || {
            for f in &folders {
                std::fs::create_dir_all(f).map_err(TreeError::io(f))?;
            }
            Ok(())
        })
        .await?;
        let (files_done, bytes_done) = (&AtomicU64::new(0), &AtomicU64::new(0));
        futures::stream::iter(batches)
            .map(|(jobs, bytes)| async move {
                let n = jobs.len() as u64;
                store.fetch_files(jobs).await?;
                let files = files_done.fetch_add(n, Ordering::Relaxed) + n;
                let bytes = bytes_done.fetch_add(bytes, Ordering::Relaxed) + bytes;
                progress.position(files, bytes);
                Ok::<(), TreeError>(())
            })
            .buffer_unordered(FETCH_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

/// Streams one file of `detail` to stdout.
pub async fn file_to_stdout(
    store: &BlobStore,
    detail: &BundleDetail,
    path: &str,
) -> Result<u64, TreeError> {
    let index = store.get_index(&detail.version.id).await?;
    let Some(f) = index.get(path) else {
        let sample: Vec<&str> = index
            .files()
            .iter()
            .take(5)
            .map(|f| f.path.as_str())
            .collect();
        return Err(TreeError::NoSuchFile {
            bundle: format!("{}@{}", detail.address, detail.version.version),
            path: path.to_owned(),
            count: index.files().len(),
            sample: sample.join(", "),
        });
    };
    Ok(store.fetch_into(&f.blob, std::io::stdout()).await?)
}
