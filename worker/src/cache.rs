//! The code cache: one folder per code bundle id under `<home>/service/.cache`, shared by
//! every worker process of a home (`plotter2 up --workers N`).
//!
//! An entry is trusted when its name exists: it is only ever the target of one atomic
//! rename of a fully written, verified and synced tree ([`create_once`]), and is never
//! replaced or changed afterwards. Two processes that fill the same entry at once each build
//! their own beside it; the first rename wins and the other's tree is discarded.

use std::future::Future;
use std::path::{Path, PathBuf};

use plotter2_node::bundle::Hash;
use plotter2_node::tree::create_once;

use crate::WorkerError;

/// The cache of one worker process.
#[derive(Debug)]
pub struct CodeCache {
    dir: PathBuf,
    /// Held while an entry is filled: attempts of new code in this process wait for the
    /// first fill instead of fetching it again.
    filling: tokio::sync::Mutex<()>,
}

impl CodeCache {
    /// The cache in `dir` (created when first filled).
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            filling: Default::default(),
        }
    }

    /// Where the entry of `code` is (or would be).
    pub fn entry(&self, code: &Hash) -> PathBuf {
        self.dir.join(code.hex())
    }

    /// The complete tree of `code`: the entry when it is there, else filled by `fill` (given
    /// the folder to write, which does not exist yet) and placed.
    pub async fn get_or_fill<F, Fut>(&self, code: &Hash, fill: F) -> Result<PathBuf, WorkerError>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<(), WorkerError>>,
    {
        let entry = self.entry(code);
        if exists(&entry).await? {
            return Ok(entry);
        }
        let _one = self.filling.lock().await;
        // Filled meanwhile, by this process or another.
        if exists(&entry).await? {
            return Ok(entry);
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(WorkerError::io(&self.dir))?;
        let placed = create_once(&entry, fill).await?;
        tracing::debug!(%code, ?placed, "code cached");
        Ok(entry)
    }
}

async fn exists(path: &Path) -> Result<bool, WorkerError> {
    tokio::fs::try_exists(path)
        .await
        .map_err(WorkerError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A code tree of `files` files, written one by one as a fetch writes them.
    async fn fill(dir: PathBuf, files: usize) -> Result<(), WorkerError> {
        for i in 0..files {
            let sub = dir.join(format!("d{}", i % 7));
            tokio::fs::create_dir_all(&sub)
                .await
                .map_err(WorkerError::io(&sub))?;
            let p = sub.join(format!("f{i}.py"));
            tokio::fs::write(&p, format!("print({i})\n"))
                .await
                .map_err(WorkerError::io(&p))?;
        }
        Ok(())
    }

    /// Several workers sharing one home (each with its own cache handle, as separate
    /// processes have) take attempts of the same new code at once: each fills or finds the
    /// entry and copies it into its sandbox, as `execute` does. Each copy must be whole: an
    /// entry replaced while another worker copies from it fails that copy with "No such file
    /// or directory" (issue 9).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn workers_sharing_a_cache_never_see_an_entry_missing_or_half_written() {
        const FILES: usize = 300;
        const WORKERS: usize = 6;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("service");
        for round in 0..5u8 {
            let code = Hash::from(blake3::hash(&[round]));
            let mut tasks = Vec::new();
            for w in 0..WORKERS {
                let cache = Arc::new(CodeCache::new(root.join(".cache")));
                let sandbox = root.join(format!("r{round}-a1-w{w}"));
                tasks.push(tokio::spawn(async move {
                    let tree = cache.get_or_fill(&code, |d| fill(d, FILES)).await?;
                    let (from, to) = (tree.clone(), sandbox.clone());
                    tokio::task::spawn_blocking(move || plotter2_node::tree::copy_tree(&from, &to))
                        .await??;
                    Ok::<PathBuf, WorkerError>(sandbox)
                }));
            }
            for t in tasks {
                let sandbox = t
                    .await
                    .unwrap()
                    .unwrap_or_else(|e| panic!("set-up failed: {e}"));
                let copied = walk(&sandbox);
                assert_eq!(copied.len(), FILES, "{} is whole", sandbox.display());
                for (rel, body) in copied {
                    let i: usize = rel
                        .rsplit_once("/f")
                        .and_then(|(_, n)| n.strip_suffix(".py"))
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert_eq!(body, format!("print({i})\n"), "{rel}");
                }
            }
        }
        let mut left: Vec<_> = std::fs::read_dir(root.join(".cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 5, "one entry per code, no leftovers: {left:?}");
        assert!(left.iter().all(|n| !n.starts_with('.')), "{left:?}");
    }

    fn walk(dir: &Path) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for d in std::fs::read_dir(dir).unwrap() {
            let d = d.unwrap();
            for f in std::fs::read_dir(d.path()).unwrap() {
                let f = f.unwrap();
                out.push((
                    format!(
                        "{}/{}",
                        d.file_name().to_string_lossy(),
                        f.file_name().to_string_lossy()
                    ),
                    std::fs::read_to_string(f.path()).unwrap(),
                ));
            }
        }
        out
    }
}
