//! Drives one spool entry through its steps: receive → hash → upload → commit → clean, or
//! reject. Every step is journaled before the next starts, so `drive` can be called again on
//! an entry in any state after a crash and does only what is left.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use plotter2_node::bundle::{FileIndex, Hash};
use plotter2_node::client::{Client, ClientError};
use plotter2_node::protocol::{Op, Reply, UserName, WriteOp};
use plotter2_node::retry::{Backoff, Classify};
use plotter2_node::store::{BlobStore, PutJob, sync_filesystem};

use crate::StagerError;
use crate::journal::{Entry, Hashed, Spool, Step};
use plotter2_node::tree::{self, Rejection};

/// Batches of blobs uploaded at once.
const UPLOAD_CONCURRENCY: usize = 4;
/// A batch ends after this many files or bytes.
const UPLOAD_BATCH_FILES: usize = 256;
const UPLOAD_BATCH_BYTES: u64 = 64 * 1024 * 1024;
/// The longest wait between attempts of a step that failed transiently.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// How a step that failed transiently is retried (no deadline: the entry waits in the spool).
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), BACKOFF_MAX);
/// Environment variable naming a step after which the stager kills itself (tests only).
pub const CRASH_ENV: &str = "P2_STAGER_CRASH_AT";

/// What the pipeline needs; shared by every entry.
#[derive(Clone, Debug)]
pub struct Pipeline {
    pub spool: Spool,
    pub inbox: PathBuf,
    pub store: BlobStore,
    pub client: Client,
    pub hash_threads: usize,
    pub crash_at: Option<Step>,
}

/// How an entry ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Committed {
        addr: plotter2_node::Address,
        version: u64,
        bundle: Hash,
        files: u64,
        bytes: u64,
    },
    Rejected(String),
    /// Nothing had been moved in yet; the inbox still holds the folder.
    Abandoned,
}

impl Pipeline {
    pub fn rejected_dir(&self) -> PathBuf {
        self.inbox.join("rejected")
    }

    /// Takes the ready folder `inbox/<name>` into the spool and drives it to the end.
    pub async fn admit(&self, name: &str) -> Result<Outcome, StagerError> {
        let spool = self.spool.clone();
        let name_owned = name.to_owned();
        let entry = blocking(move || spool.create(&name_owned)).await?;
        self.drive(entry).await
    }

    /// Runs `entry` from its journaled step to the end. Transient failures (the store or
    /// the coordinators away, a full disk) are retried with backoff, the entry staying in the
    /// spool; a permanent one sets the bundle aside in `rejected/` with its reason, so the
    /// next bundle goes in. An error comes back only when even that failed.
    pub async fn drive(&self, entry: Entry) -> Result<Outcome, StagerError> {
        let spool = &crate::metrics::stager().spool;
        use std::sync::atomic::Ordering::Relaxed;
        spool.add(1, &[]);
        crate::metrics::IN_SPOOL.fetch_add(1, Relaxed);
        let began = std::time::Instant::now();
        let ended = self.drive_inner(entry).await;
        spool.add(-1, &[]);
        crate::metrics::IN_SPOOL.fetch_sub(1, Relaxed);
        match &ended {
            Ok(Outcome::Committed { files, bytes, .. }) => crate::metrics::committed(
                "inbox",
                *files,
                *bytes,
                Some(began.elapsed().as_secs_f64()),
            ),
            Ok(Outcome::Rejected(_)) => crate::metrics::rejected("inbox"),
            _ => {}
        }
        ended
    }

    async fn drive_inner(&self, mut entry: Entry) -> Result<Outcome, StagerError> {
        let mut delays = BACKOFF.start();
        // How long each step took, for the log line that ends the entry.
        let mut took = String::new();
        loop {
            let before = entry.step;
            let started = std::time::Instant::now();
            match self.step(&mut entry).await {
                Ok(Some(outcome)) => {
                    release_memory();
                    if let Outcome::Committed { addr, version, .. } = &outcome {
                        tracing::info!(name = %entry.name, %addr, version, steps = %took.trim_end_matches(", "), "ingest took");
                    }
                    return Ok(outcome);
                }
                Ok(None) => {
                    if entry.step != before {
                        delays = BACKOFF.start();
                        use std::fmt::Write as _;
                        let _ = write!(
                            took,
                            "{} {:.3}s, ",
                            entry.step,
                            started.elapsed().as_secs_f64()
                        );
                    }
                }
                Err(e) if e.is_transient() => {
                    let wait = delays.next_delay().unwrap_or(BACKOFF_MAX);
                    tracing::warn!(name = %entry.name, step = %entry.step, error = %e, "ingest step failed; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                // Refused before the move into the spool finished: set the original aside
                // where it lies. Once moved in, the spool copy is the one set aside.
                Err(e)
                    if entry.step == Step::Receiving
                        && !tokio::fs::try_exists(self.spool.files_dir(&entry.id))
                            .await
                            .unwrap_or(false) =>
                {
                    let why = e.to_string();
                    tracing::warn!(name = %entry.name, error = %why, "bundle could not be moved in; setting it aside");
                    self.finish_rejecting(&entry, &why, true).await?;
                    return Ok(Outcome::Rejected(why));
                }
                Err(e)
                    if matches!(
                        entry.step,
                        Step::Receiving | Step::Received | Step::Hashed | Step::Uploaded
                    ) =>
                {
                    tracing::warn!(name = %entry.name, step = %entry.step, error = %e, "ingest step failed for good; setting the bundle aside");
                    self.start_rejecting(&mut entry, e.to_string()).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Does the entry's next step. `Some` when the entry has ended.
    async fn step(&self, entry: &mut Entry) -> Result<Option<Outcome>, StagerError> {
        match entry.step {
            Step::Receiving => match self.receive(entry).await? {
                Received::Moved => self.advance(entry, Step::Received).await?,
                Received::Gone => {
                    let spool = self.spool.clone();
                    let id = entry.id.clone();
                    blocking(move || spool.remove(&id)).await?;
                    return Ok(Some(Outcome::Abandoned));
                }
                Received::Refused(why) => {
                    // Nothing was moved in: reject the original where it lies.
                    let why = why.to_string();
                    self.finish_rejecting(entry, &why, true).await?;
                    return Ok(Some(Outcome::Rejected(why)));
                }
            },
            Step::Received => match self.hash(entry).await? {
                Ok(hashed) => {
                    entry.hashed = Some(hashed);
                    self.advance(entry, Step::Hashed).await?;
                }
                Err(why) => self.start_rejecting(entry, why.to_string()).await?,
            },
            Step::Hashed => {
                self.upload(entry).await?;
                self.advance(entry, Step::Uploaded).await?;
            }
            Step::Uploaded => {
                let bundle = self.commit(entry).await?;
                entry.committed = Some(bundle);
                self.advance(entry, Step::Committed).await?;
            }
            Step::Committed => {
                let spool = self.spool.clone();
                let id = entry.id.clone();
                blocking(move || spool.remove(&id)).await?;
                self.crash_point(Step::Cleaned);
                let (Some(h), Some(b)) = (&entry.hashed, &entry.committed) else {
                    return Err(StagerError::Journal {
                        path: self.spool.entry_dir(&entry.id),
                        message: "committed entry without its bundle".into(),
                    });
                };
                tracing::info!(name = %entry.name, addr = %h.addr, version = b.version, bundle = %b.id, "bundle committed");
                return Ok(Some(Outcome::Committed {
                    addr: h.addr.clone(),
                    version: b.version,
                    bundle: b.id,
                    files: h.files,
                    bytes: h.bytes,
                }));
            }
            Step::Rejecting => {
                let why = entry.rejection.clone().unwrap_or_default();
                self.finish_rejecting(entry, &why, false).await?;
                tracing::warn!(name = %entry.name, reason = %why, "bundle rejected");
                return Ok(Some(Outcome::Rejected(why)));
            }
            Step::Cleaned => return Ok(Some(Outcome::Abandoned)),
        }
        Ok(None)
    }

    async fn advance(&self, entry: &mut Entry, step: Step) -> Result<(), StagerError> {
        entry.step = step;
        let spool = self.spool.clone();
        let copy = entry.clone();
        blocking(move || spool.save(&copy)).await?;
        self.crash_point(step);
        Ok(())
    }

    async fn start_rejecting(&self, entry: &mut Entry, why: String) -> Result<(), StagerError> {
        entry.rejection = Some(why);
        self.advance(entry, Step::Rejecting).await
    }

    /// Kills the process without any cleanup when the test-only crash point names `step`.
    fn crash_point(&self, step: Step) {
        if self.crash_at == Some(step) {
            tracing::warn!(%step, "crash point reached: killing the stager");
            // SAFETY: sending a signal to ourselves has no memory-safety preconditions.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }

    /// Moves (or, across filesystems, copies) `inbox/<name>` into the entry and makes it
    /// durable.
    async fn receive(&self, entry: &Entry) -> Result<Received, StagerError> {
        let src = self.inbox.join(&entry.name);
        let dest = self.spool.files_dir(&entry.id);
        let spool_dir = self.spool.dir().to_owned();
        blocking(move || {
            if !dest.exists() {
                if !src.is_dir() {
                    return Ok(Received::Gone);
                }
                match std::fs::rename(&src, &dest) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {
                        // A copy cannot carry special files; check first so the original
                        // is rejected whole instead of half-copied.
                        if let Err(why) = tree::walk(&src) {
                            return Ok(Received::Refused(why));
                        }
                        let partial = dest.with_extension("partial");
                        tree::copy_tree(&src, &partial)?;
                        sync_filesystem(&partial).map_err(StagerError::io(&partial))?;
                        std::fs::rename(&partial, &dest).map_err(StagerError::io(&partial))?;
                        sync_filesystem(&spool_dir).map_err(StagerError::io(&spool_dir))?;
                        std::fs::remove_dir_all(&src).map_err(StagerError::io(&src))?;
                    }
                    Err(e) => return Err(StagerError::io(&src)(e)),
                }
            }
            // One syncfs makes every file moved in durable (data the writer left unsynced
            // included), and the renames with it.
            sync_filesystem(&spool_dir).map_err(StagerError::io(&spool_dir))?;
            Ok(Received::Moved)
        })
        .await
    }

    /// Scans and hashes the bundle; keeps its index beside the journal.
    async fn hash(&self, entry: &Entry) -> Result<Result<Hashed, Rejection>, StagerError> {
        let root = self.spool.files_dir(&entry.id);
        let threads = self.hash_threads;
        let (spool, id) = (self.spool.clone(), entry.id.clone());
        // A local store takes each file as it is hashed; the upload then finds them there.
        let linker = self.store.local_linker();
        blocking(move || {
            let s = match tree::scan_into(&root, None, threads, linker.as_ref()) {
                Ok(s) => s,
                Err(why) => return Ok(Err(why)),
            };
            spool.save_index(&id, &s.index)?;
            Ok(Ok(Hashed {
                addr: s.addr,
                bundle: s.index.id(),
                files: s.index.files().len() as u64,
                bytes: s.index.total_bytes(),
                manifest: s.manifest,
                paths: s.index.paths_for_rules(),
            }))
        })
        .await
    }

    /// Uploads every distinct blob (skipping those the store has), then makes them durable.
    async fn upload(&self, entry: &Entry) -> Result<(), StagerError> {
        let root = self.spool.files_dir(&entry.id);
        // Sorting a million positions is CPU work: off the runtime, with the read.
        let (spool, id) = (self.spool.clone(), entry.id.clone());
        let (index, firsts, batches) = blocking(move || {
            let index = spool.load_index(&id)?;
            let firsts = first_of_each_blob(&index);
            let batches = batch_bounds(&index, &firsts);
            Ok((index, firsts, batches))
        })
        .await?;
        // Batches of files, so a bundle of many small files does not cost a blocking task
        // each; the store verifies each file against its hash as it takes it. Each batch's
        // jobs are made as it goes up, so only the batches in flight are held.
        futures::stream::iter(batches)
            .map(|(from, to)| {
                self.store
                    .put_files(upload_jobs(&index, &root, &firsts[from..to]))
            })
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        drop(firsts);
        // The index last: a stored index names only blobs that are there. Its key is the
        // bundle id, which is what the commit carries instead of the index.
        drop(index);
        let hashed = self.hashed(entry)?;
        let kept = self.spool.index_path(&entry.id);
        let size = tokio::fs::metadata(&kept)
            .await
            .map_err(StagerError::io(&kept))?
            .len();
        // The kept index is the spool's own file and never changes: the store takes it by
        // link, verifying that it hashes to the bundle id.
        self.store
            .put_file(&hashed.bundle, &kept, size, true)
            .await?;
        self.store.sync().await?;
        Ok(())
    }

    /// Commits the `ingest` under the entry's request id, so a retry after a lost answer is
    /// applied once. The client retries what is transient within its deadline; a refusal, or
    /// a request too large for the server, is permanent.
    async fn commit(
        &self,
        entry: &Entry,
    ) -> Result<plotter2_node::protocol::BundleRef, StagerError> {
        let hashed = self.hashed(entry)?;
        let op = Op::Write(WriteOp::Ingest {
            addr: hashed.addr.clone(),
            bundle: hashed.bundle,
            files: hashed.files,
            bytes: hashed.bytes,
            manifest: Box::new(hashed.manifest.clone()),
            paths: hashed.paths.clone(),
        });
        // Provenance: the manifest's user when it names a valid one, else the stager's.
        let client = match hashed
            .manifest
            .user
            .as_deref()
            .and_then(|u| UserName::parse(u).ok())
        {
            Some(user) => Client::with_nats(self.client.nats().clone(), user),
            None => self.client.clone(),
        };
        let reply = match client.call_with_id(entry.request, op).await {
            Ok(reply) => reply,
            Err(ClientError::Api(e)) if !e.kind.retryable() => {
                return Err(Rejection::Refused(e.message).into());
            }
            Err(e) => return Err(e.into()),
        };
        match reply {
            Reply::Written(r) => r.bundle.ok_or(StagerError::Unexpected {
                request: "ingest",
                answer: "a write without a bundle version".into(),
            }),
            other => Err(StagerError::Unexpected {
                request: "ingest",
                answer: format!("{other:?}"),
            }),
        }
    }

    fn hashed<'e>(&self, entry: &'e Entry) -> Result<&'e Hashed, StagerError> {
        entry.hashed.as_ref().ok_or_else(|| StagerError::Journal {
            path: self.spool.entry_dir(&entry.id),
            message: format!("step {} without the hashed bundle", entry.step),
        })
    }

    /// Moves the bundle (from the spool, or with `from_inbox` straight from the inbox: it was
    /// refused before anything was moved in, and its entry is still `Receiving`) to
    /// `inbox/rejected/<name>` beside `<name>.error.txt`, then drops the entry. Safe to repeat
    /// after a crash at any point.
    async fn finish_rejecting(
        &self,
        entry: &Entry,
        why: &str,
        from_inbox: bool,
    ) -> Result<(), StagerError> {
        let rejected = self.rejected_dir();
        let files = if from_inbox {
            self.inbox.join(&entry.name)
        } else {
            self.spool.files_dir(&entry.id)
        };
        let name = entry.name.clone();
        let id = entry.id.clone();
        let spool = self.spool.clone();
        let text = format!(
            "plotter2 stager rejected the bundle {name:?} (spool entry {id}):\n\n{why}\n\n\
             Nothing was stored. Fix the bundle, then move it back into the inbox \
             (write it under inbox/.incoming/ and rename it into inbox/).\n"
        );
        let hashed = entry.hashed.is_some();
        blocking(move || {
            // Past hashing, the index gives each file's mode back (an index that cannot be
            // read leaves the files as they are).
            if hashed && files.exists() {
                match spool.load_index(&id) {
                    Ok(index) => unshare(&files, &index)?,
                    Err(e) => tracing::warn!(error = %e, "rejected bundle's modes not restored"),
                }
            }
            std::fs::create_dir_all(&rejected).map_err(StagerError::io(&rejected))?;
            // The same name may have been rejected before: keep both.
            let mut target = rejected.join(&name);
            let mut error_file = rejected.join(format!("{name}.error.txt"));
            if files.exists() && target.exists() {
                target = rejected.join(format!("{name}.{id}"));
                error_file = rejected.join(format!("{name}.{id}.error.txt"));
            }
            plotter2_node::home::write_atomic(&error_file, text.as_bytes())?;
            if files.exists() {
                std::fs::rename(&files, &target).map_err(StagerError::io(&files))?;
            }
            std::fs::File::open(&rejected)
                .and_then(|d| d.sync_all())
                .map_err(StagerError::io(&rejected))?;
            spool.remove(&id)
        })
        .await
    }
}

/// Gives every file under `root` that the store took by hard link an inode of its own again,
/// with its original mode, so editing a rejected bundle can never change a stored blob.
fn unshare(root: &Path, index: &plotter2_node::bundle::FileIndex) -> Result<(), StagerError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for f in index.files() {
        let path = root.join(f.path.as_str());
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !meta.file_type().is_file() || meta.nlink() < 2 {
            continue;
        }
        let tmp = path.with_file_name(".p2-unshare");
        std::fs::copy(&path, &tmp).map_err(StagerError::io(&path))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(f.mode))
            .map_err(StagerError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(StagerError::io(&path))?;
    }
    Ok(())
}

/// The position in `index` of the first file of each distinct blob, in path order: what an
/// upload sends. Positions, not entries, so a million files cost 4 MiB here.
fn first_of_each_blob(index: &FileIndex) -> Vec<u32> {
    let files = index.files();
    // The index holds at most 2^20 files, so a position fits.
    let mut at: Vec<u32> = (0..files.len())
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    // Stable: of the files with one blob, the first in path order stays first.
    at.sort_by_key(|&i| files[i as usize].blob);
    at.dedup_by_key(|i| files[*i as usize].blob);
    at.sort_unstable();
    at
}

/// Where each upload batch of `firsts` starts and ends: a batch ends after
/// [`UPLOAD_BATCH_FILES`] files or [`UPLOAD_BATCH_BYTES`] bytes.
fn batch_bounds(index: &FileIndex, firsts: &[u32]) -> Vec<(usize, usize)> {
    let mut bounds = Vec::new();
    let (mut from, mut bytes) = (0, 0u64);
    for (n, &i) in firsts.iter().enumerate() {
        if n > from && (n - from >= UPLOAD_BATCH_FILES || bytes >= UPLOAD_BATCH_BYTES) {
            bounds.push((from, n));
            (from, bytes) = (n, 0);
        }
        bytes += index.files()[i as usize].size;
    }
    if from < firsts.len() {
        bounds.push((from, firsts.len()));
    }
    bounds
}

/// The uploads of the files at positions `at` of `index`, which lie under `root`.
fn upload_jobs(index: &FileIndex, root: &Path, at: &[u32]) -> Vec<PutJob> {
    let mut jobs = Vec::with_capacity(at.len());
    for &i in at {
        let f = &index.files()[i as usize];
        jobs.push(PutJob {
            blob: f.blob,
            path: root.join(f.path.as_str()),
            size: f.size,
            // The spool's own files: moved in from the inbox, never written again.
            may_link: true,
        });
    }
    jobs
}

enum Received {
    Moved,
    /// The folder left the inbox before it was moved in.
    Gone,
    /// Refused before anything was moved (only when copying across filesystems).
    Refused(Rejection),
}

/// Hands memory freed by a finished entry back to the system: an index of a million files
/// takes hundreds of MiB while it is worked on, and the allocator would otherwise keep it.
fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs blocking work off the runtime.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StagerError> + Send + 'static,
) -> Result<T, StagerError> {
    tokio::task::spawn_blocking(f).await?
}
