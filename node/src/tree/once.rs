//! A folder that several processes may create at the same time and read as soon as it
//! exists (a worker's code cache): built beside its final name under a name of its own,
//! made durable, then renamed into place once. The final name so only ever names a complete
//! tree, and a complete tree is never replaced, so a reader that finds it can trust it.

use std::future::Future;
use std::path::{Path, PathBuf};

use super::TreeError;
use crate::protocol::BundleDetail;
use crate::store::BlobStore;

/// Who put the tree in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// This call's tree was renamed into place.
    Ours,
    /// Another caller's tree was there first; ours was discarded.
    Theirs,
}

/// Makes `dest` hold what `fill` writes into the folder it is given (which does not exist
/// yet), unless `dest` is already there: `fill` builds beside `dest`, the tree is synced to
/// disk, and renamed to `dest` without replacing anything. When another caller placed its
/// tree first, ours is removed and theirs kept. A failed `fill` leaves nothing behind.
///
/// `dest`'s parent must exist.
pub async fn create_once<F, Fut, E>(dest: &Path, fill: F) -> Result<Placed, E>
where
    F: FnOnce(PathBuf) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: From<TreeError>,
{
    let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("tree");
    // Unique across processes: each builds its own, so nobody writes into another's.
    let building = dest.with_file_name(format!(".{name}.{}.p2build", ulid::Ulid::new()));
    if let Err(e) = fill(building.clone()).await {
        let gone = building.clone();
        let _ = tokio::task::spawn_blocking(move || remove_if_there(&gone)).await;
        return Err(e);
    }
    let to = dest.to_owned();
    let placed = tokio::task::spawn_blocking(move || place(&building, &to))
        .await
        .map_err(TreeError::from)?;
    Ok(placed?)
}

/// [`create_once`] of a stored bundle version: its files, verified against their hashes.
pub async fn materialise_once(
    store: &BlobStore,
    detail: &BundleDetail,
    dest: &Path,
) -> Result<Placed, TreeError> {
    create_once(dest, |building| async move {
        super::materialise(store, detail, &building, false).await
    })
    .await
}

/// Syncs `building` and renames it to `dest` unless `dest` exists.
fn place(building: &Path, dest: &Path) -> Result<Placed, TreeError> {
    // Every file and folder of the tree is on disk before its final name is: after a crash
    // the name never leads to a torn tree. One syncfs instead of an fsync per file.
    crate::store::sync_filesystem(building).map_err(TreeError::io(building))?;
    match rename_noreplace(building, dest) {
        Ok(()) => {
            let parent = dest.parent().unwrap_or(Path::new("."));
            sync_dir(parent).map_err(TreeError::io(parent))?;
            Ok(Placed::Ours)
        }
        Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
            remove_if_there(building).map_err(TreeError::io(building))?;
            Ok(Placed::Theirs)
        }
        Err(e) => {
            let _ = remove_if_there(building);
            Err(TreeError::io(dest)(e))
        }
    }
}

/// `rename(2)` that fails with `EEXIST` instead of replacing `to` (`RENAME_NOREPLACE`). Where
/// the filesystem cannot do that, plain `rename`, which still refuses to replace a folder
/// that is not empty (`ENOTEMPTY`); only an empty tree could then replace an empty tree,
/// which no reader can tell apart.
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    };
    let (f, t) = (c(from)?, c(to)?);
    // SAFETY: renameat2(2) reads the two NUL-terminated paths, which live across the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS) => std::fs::rename(from, to),
        _ => Err(e),
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Writes `files` files into `dir`, yielding between them so the callers interleave.
    async fn fill(dir: PathBuf, files: usize, tag: usize) -> Result<(), TreeError> {
        tokio::fs::create_dir_all(dir.join("sub"))
            .await
            .map_err(TreeError::io(&dir))?;
        for i in 0..files {
            let p = dir.join("sub").join(format!("f{i}"));
            tokio::fs::write(&p, format!("{i}"))
                .await
                .map_err(TreeError::io(&p))?;
            tokio::task::yield_now().await;
        }
        tokio::fs::write(dir.join("by"), tag.to_string())
            .await
            .map_err(TreeError::io(&dir))?;
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_creators_place_one_tree_and_readers_see_it_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("entry");
        let ours = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for tag in 0..8 {
            let (dest, ours) = (dest.clone(), ours.clone());
            tasks.push(tokio::spawn(async move {
                let placed = create_once(&dest, |b| fill(b, 50, tag)).await.unwrap();
                if placed == Placed::Ours {
                    ours.fetch_add(1, Ordering::SeqCst);
                }
                // Whoever placed it, the tree is whole the moment create_once returns.
                let by = std::fs::read_to_string(dest.join("by")).unwrap();
                for i in 0..50 {
                    let f = dest.join("sub").join(format!("f{i}"));
                    assert_eq!(std::fs::read_to_string(&f).unwrap(), i.to_string());
                }
                by
            }));
        }
        let mut by = Vec::new();
        for t in tasks {
            by.push(t.await.unwrap());
        }
        assert_eq!(ours.load(Ordering::SeqCst), 1, "exactly one tree is placed");
        assert!(
            by.windows(2).all(|w| w[0] == w[1]),
            "all read the same tree"
        );
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["entry"], "the losers' trees are gone");
    }

    #[tokio::test]
    async fn a_complete_tree_is_never_replaced_and_a_failed_fill_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("entry");
        assert_eq!(
            create_once(&dest, |b| fill(b, 2, 1)).await.unwrap(),
            Placed::Ours
        );
        assert_eq!(
            create_once(&dest, |b| fill(b, 3, 2)).await.unwrap(),
            Placed::Theirs
        );
        assert_eq!(std::fs::read_to_string(dest.join("by")).unwrap(), "1");
        assert!(!dest.join("sub/f2").exists());

        let other = tmp.path().join("other");
        let failed = create_once(&other, |b| async move {
            fill(b.clone(), 2, 3).await?;
            Err::<(), _>(TreeError::Unexpected("the fill failed".into()))
        })
        .await;
        assert!(failed.is_err());
        let mut names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["entry"], "no half-built tree and no final name");
    }
}
