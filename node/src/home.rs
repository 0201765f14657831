//! The plotter2 home (seven managed directories plus the inbox) and `config/cluster.toml`,
//! which tells every command on this machine how to reach the cluster `plotter2 up` started.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("no home directory: pass --home DIR or set P2_HOME (and HOME is unset)")]
    NoHome,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid cluster file: {message}; fix or delete it and run `plotter2 up` again"
    )]
    BadClusterFile { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A plotter2 home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `--home`, else `$P2_HOME`, else `~/.plotter2`.
    pub fn resolve(flag: Option<PathBuf>) -> Result<Self, HomeError> {
        if let Some(p) = flag {
            return Ok(Self::at(p));
        }
        if let Some(p) = std::env::var_os("P2_HOME").filter(|p| !p.is_empty()) {
            return Ok(Self::at(PathBuf::from(p)));
        }
        let home = std::env::var_os("HOME")
            .filter(|p| !p.is_empty())
            .ok_or(HomeError::NoHome)?;
        Ok(Self::at(PathBuf::from(home).join(".plotter2")))
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        // Children run with other working directories: keep the path absolute.
        let root = std::path::absolute(&root).unwrap_or(root);
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    /// Object store root when the store is local.
    pub fn source(&self) -> PathBuf {
        self.root.join("source")
    }
    /// Stager spool.
    pub fn temp(&self) -> PathBuf {
        self.root.join("temp")
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config")
    }
    /// Run sandboxes.
    pub fn service(&self) -> PathBuf {
        self.root.join("service")
    }
    /// Raft logs and state, one directory per coordinator; the JetStream store.
    pub fn registry(&self) -> PathBuf {
        self.root.join("registry")
    }
    pub fn output(&self) -> PathBuf {
        self.root.join("output")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("log")
    }
    pub fn inbox(&self) -> PathBuf {
        self.root.join("inbox")
    }
    pub fn cluster_file(&self) -> PathBuf {
        self.config().join("cluster.toml")
    }

    /// Creates every managed directory (idempotent).
    pub fn create(&self) -> Result<(), HomeError> {
        for dir in [
            self.source(),
            self.temp(),
            self.config(),
            self.service(),
            self.registry(),
            self.output(),
            self.log(),
            self.inbox(),
        ] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        Ok(())
    }
}

/// One coordinator as `plotter2 up` placed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoordinatorEntry {
    pub id: u64,
    pub raft_addr: String,
}

/// `<home>/config/cluster.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFile {
    pub nats_url: String,
    pub nats_port: u16,
    #[serde(default)]
    pub coordinators: Vec<CoordinatorEntry>,
    /// The object store URL when it is not `<home>/source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    /// Where each role `up` runs serves its Prometheus metrics: name → host:port.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub metrics: std::collections::BTreeMap<String, String>,
}

impl ClusterFile {
    /// `Ok(None)` when the file does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>, HomeError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(path)(e)),
        };
        toml::from_str(&text)
            .map(Some)
            .map_err(|e| HomeError::BadClusterFile {
                path: path.to_owned(),
                message: e.to_string(),
            })
    }

    /// Writes atomically: temp file, fsync, rename, fsync the directory.
    pub fn save(&self, path: &Path) -> Result<(), HomeError> {
        let text = toml::to_string_pretty(self).map_err(|e| HomeError::BadClusterFile {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        write_atomic(path, text.as_bytes())
    }
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new content.
///
/// The temp file beside it has a name no other writer uses (process id and a counter), so
/// two writers of the same path never write into one file: the last rename wins whole.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), HomeError> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] of what `write` writes, through a buffer: for contents too large to hold
/// as one piece (a file index of a million lines).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
) -> Result<(), HomeError> {
    let (tmp, mut f) = create_temp_beside(path)?;
    let written = {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
        write(&mut w).and_then(|()| w.flush())
    }
    .and_then(|()| f.sync_all())
    .map_err(io_err(&tmp))
    .and_then(|()| std::fs::rename(&tmp, path).map_err(io_err(path)));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    if let Some(dir) = path.parent() {
        // The rename is durable only once the directory is.
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))?;
    }
    Ok(())
}

/// `.<name>.<pid>.<n>.tmp` beside `path`, created new (never an existing file).
fn create_temp_beside(path: &Path) -> Result<(PathBuf, std::fs::File), HomeError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            // Left by an earlier process with the same id: take the next name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&tmp)(e)),
        }
    }
}

/// Removes temp files [`write_atomic`] left beside `path` when a writer crashed (and the
/// fixed `<stem>.tmp` older versions used). Only for a caller that knows no other process
/// writes `path` now (e.g. it holds the directory's lock). Returns how many it removed.
pub fn remove_stale_temps(path: &Path) -> Result<usize, HomeError> {
    let Some(dir) = path.parent() else {
        return Ok(0);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let legacy = path.with_extension("tmp");
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let ours = file.starts_with(&prefix) && file.ends_with(".tmp");
        if ours || entry.path() == legacy {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&entry.path())(e)),
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_dirs_and_roundtrips_cluster_file() {
        let dir = std::env::temp_dir().join(format!("p2-home-test-{}", std::process::id()));
        let home = Home::at(&dir);
        home.create().unwrap();
        for d in [
            "source", "temp", "config", "service", "registry", "output", "log", "inbox",
        ] {
            assert!(dir.join(d).is_dir(), "{d}");
        }
        assert_eq!(ClusterFile::load(&home.cluster_file()).unwrap(), None);
        let cf = ClusterFile {
            nats_url: "nats://127.0.0.1:4222".into(),
            nats_port: 4222,
            coordinators: vec![CoordinatorEntry {
                id: 1,
                raft_addr: "127.0.0.1:7001".into(),
            }],
            store: None,
            metrics: [("stager".to_owned(), "127.0.0.1:9464".to_owned())].into(),
        };
        cf.save(&home.cluster_file()).unwrap();
        assert_eq!(ClusterFile::load(&home.cluster_file()).unwrap(), Some(cf));
        std::fs::write(home.cluster_file(), "nats_url = 3").unwrap();
        assert!(
            ClusterFile::load(&home.cluster_file())
                .unwrap_err()
                .to_string()
                .contains("not a valid cluster file")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Writers of one path racing: every read sees one writer's bytes whole, never a mix or
    /// a missing file, and no temp file is left. (With one fixed temp name, writers wrote
    /// into each other's temp file and renamed it away under each other.)
    #[test]
    fn concurrent_atomic_writes_never_tear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.bin");
        write_atomic(&path, &[0u8; 64 * 1024]).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let bytes = std::fs::read(&path).unwrap();
                    assert_eq!(bytes.len(), 64 * 1024, "torn length");
                    assert!(bytes.iter().all(|b| *b == bytes[0]), "mixed content");
                    reads += 1;
                }
                reads
            })
        };
        let writers: Vec<_> = (1..=4u8)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        write_atomic(&path, &[w; 64 * 1024]).unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("snapshot.bin")]);
    }

    #[test]
    fn stale_temps_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapshot.bin");
        write_atomic(&path, b"kept").unwrap();
        std::fs::write(dir.path().join(".snapshot.bin.123.0.tmp"), b"x").unwrap();
        std::fs::write(dir.path().join("snapshot.tmp"), b"x").unwrap();
        std::fs::write(dir.path().join(".other.bin.123.0.tmp"), b"x").unwrap();
        assert_eq!(remove_stale_temps(&path).unwrap(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        assert!(dir.path().join(".other.bin.123.0.tmp").exists());
    }
}
