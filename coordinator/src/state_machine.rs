//! The raft state machine: the [`Registry`] in memory, persisted as snapshot files.
//!
//! On start the newest snapshot is loaded; openraft then re-applies the committed log after it
//! (the log store keeps the committed id). The registry sits behind an `Arc`: a snapshot takes a
//! point-in-time reference under the lock and serializes it off the lock and off the runtime,
//! while `apply` goes on (copy-on-write: the first apply after that clones the registry once).
//!
//! A snapshot build (its own task) and a snapshot install (from the leader) can overlap. Both
//! write `snapshot.bin` through [`SnapshotFile`]: one writer at a time, each through its own
//! temp file, and only a snapshot newer than the one on disk replaces it. Otherwise a slow
//! build could put an older state back over an installed one whose log is already purged.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

use crate::log_store::{blocking, from_bytes, to_bytes};
use crate::registry::Registry;
use crate::types::{Applied, LogId, SnapshotMeta, StoredMembership, TypeConfig};

const SNAPSHOT_FILE: &str = "snapshot.bin";

/// The layout of `snapshot.bin` this build writes and reads: an rmp map of `format`, `meta`
/// (openraft's snapshot meta) and `data` (the registry, rmp). Files written before the field
/// existed have the same layout and count as format 1. Format 2: bundle versions hold their
/// file and byte counts, no longer their whole file index (which is a blob in the store).
pub const SNAPSHOT_FORMAT: u32 = 2;

/// The registry and where it stands in the log.
#[derive(Debug, Default)]
pub struct SmState {
    pub registry: Arc<Registry>,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    #[serde(default = "format_one")]
    format: u32,
    meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

fn format_one() -> u32 {
    1
}

/// Read first, so a file of another format is named as such rather than failing to decode.
#[derive(Deserialize)]
struct FormatOnly {
    #[serde(default = "format_one")]
    format: u32,
}

/// Called with each snapshot's meta before it is compared with the file (tests only).
#[cfg(test)]
type StoreHook = Arc<dyn Fn(&SnapshotMeta) + Send + Sync>;

/// `snapshot.bin` and the last log id it holds.
struct SnapshotFile {
    path: PathBuf,
    /// `None` while there is no file; held while a writer compares and replaces it.
    stored: Mutex<Option<Option<LogId>>>,
    #[cfg(test)]
    hook: Mutex<Option<StoreHook>>,
}

impl SnapshotFile {
    fn load(&self) -> io::Result<Option<StoredSnapshot>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |e: io::Error| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a readable snapshot: {e}", self.path.display()),
            )
        };
        let FormatOnly { format } = from_bytes(&bytes).map_err(bad)?;
        if format != SNAPSHOT_FORMAT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} is a snapshot in format {format}, and this plotter2 reads only format \
                     {SNAPSHOT_FORMAT}: run the plotter2 version that wrote it, or remove this \
                     node's registry directory and add the node to the cluster again so it \
                     catches up by snapshot",
                    self.path.display()
                ),
            ));
        }
        from_bytes(&bytes).map(Some).map_err(bad)
    }

    /// Replaces the file with `snap` when `snap` is newer than what it holds, atomically and
    /// durably (own temp file, fsync, rename, fsync the directory). Returns whether it did.
    fn store_if_newer(&self, snap: &StoredSnapshot) -> io::Result<bool> {
        #[cfg(test)]
        {
            let hook = self.hook.lock().map_err(poisoned)?.clone();
            if let Some(hook) = hook {
                hook(&snap.meta);
            }
        }
        let bytes = to_bytes(snap)?;
        let mut stored = self.stored.lock().map_err(poisoned)?;
        if let Some(on_disk) = &*stored
            && snap.meta.last_log_id <= *on_disk
        {
            return Ok(false);
        }
        plotter2_node::home::write_atomic(&self.path, &bytes).map_err(io::Error::other)?;
        *stored = Some(snap.meta.last_log_id);
        Ok(true)
    }
}

/// The raft node over this state machine.
pub type Raft = openraft::Raft<TypeConfig, StateMachine>;

/// Shared handle: the API reads the registry through [`StateMachine::read`].
#[derive(Clone)]
pub struct StateMachine {
    state: Arc<RwLock<SmState>>,
    /// `<data dir>/snapshot.bin`.
    file: Arc<SnapshotFile>,
    /// The last applied log index, for those who act on changes (dispatch).
    applied: Arc<tokio::sync::watch::Sender<u64>>,
}

fn poisoned<T>(_: T) -> io::Error {
    io::Error::other("state machine lock poisoned")
}

impl StateMachine {
    /// Opens the state machine from the snapshot in `dir`, if any. The caller owns `dir`
    /// (it holds the registry's database lock): temp files a crashed writer left are removed.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let path = dir.join(SNAPSHOT_FILE);
        plotter2_node::home::remove_stale_temps(&path).map_err(io::Error::other)?;
        let file = SnapshotFile {
            path,
            stored: Mutex::new(None),
            #[cfg(test)]
            hook: Mutex::new(None),
        };
        let mut state = SmState::default();
        if let Some(snap) = file.load()? {
            state.registry = Arc::new(from_bytes(&snap.data)?);
            state.last_applied = snap.meta.last_log_id;
            state.membership = snap.meta.last_membership.clone();
            *file.stored.lock().map_err(poisoned)? = Some(snap.meta.last_log_id);
        }
        Ok(Self {
            state: Arc::new(RwLock::new(state)),
            file: Arc::new(file),
            applied: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    /// The last log id of the snapshot on disk (`None` when there is none, or it is empty).
    pub fn stored_snapshot(&self) -> io::Result<Option<LogId>> {
        Ok(self.file.stored.lock().map_err(poisoned)?.flatten())
    }

    /// Read access to the registry as applied so far.
    pub fn read(&self) -> io::Result<RwLockReadGuard<'_, SmState>> {
        self.state.read().map_err(poisoned)
    }

    /// Changes whenever entries are applied.
    pub fn subscribe_applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    #[cfg(test)]
    fn set_store_hook(&self, hook: Option<StoreHook>) {
        *self.file.hook.lock().unwrap() = hook;
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(
        &mut self,
    ) -> io::Result<openraft::alias::SnapshotOf<TypeConfig, Cursor<Vec<u8>>>> {
        let (meta, registry) = {
            let st = self.read()?;
            let meta = SnapshotMeta {
                last_log_id: st.last_applied,
                last_membership: st.membership.clone(),
            };
            (meta, st.registry.clone())
        };
        let file = self.file.clone();
        let snap_meta = meta.clone();
        let began = std::time::Instant::now();
        let (data, stored) = blocking(move || {
            let snap = StoredSnapshot {
                format: SNAPSHOT_FORMAT,
                meta: snap_meta,
                data: to_bytes(&*registry)?,
            };
            let stored = file.store_if_newer(&snap)?;
            Ok((snap.data, stored))
        })
        .await?;
        crate::metrics::snapshot_built(data.len() as u64, began.elapsed());
        if stored {
            tracing::info!(last = ?meta.last_log_id, bytes = data.len(), "snapshot built");
        } else {
            // An install overtook this build; openraft also keeps the newer one.
            tracing::info!(last = ?meta.last_log_id, "snapshot built, but a newer one is stored");
        }
        Ok(openraft::Snapshot {
            meta,
            snapshot: Cursor::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let st = self.read()?;
        Ok((st.last_applied, st.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let answer = {
                let mut st = self.state.write().map_err(poisoned)?;
                st.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Applied::default(),
                    EntryPayload::Normal(cmd) => {
                        let span = tracing::info_span!(
                            "apply",
                            index = entry.log_id.index(),
                            verb = cmd.op.verb()
                        );
                        plotter2_node::telemetry::adopt_traceparent(&span, cmd.trace.as_deref());
                        let _in = span.enter();
                        Applied(Arc::make_mut(&mut st.registry).apply(cmd, entry.log_id.index()))
                    }
                    EntryPayload::Membership(m) => {
                        st.membership = StoredMembership::new(Some(entry.log_id), m);
                        Applied::default()
                    }
                }
            };
            // Every entry is answered, or a waiting client_write would hang.
            if let Some(r) = responder {
                r.send(answer);
            }
            self.applied.send_replace(entry.log_id.index());
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Self::SnapshotData,
    ) -> io::Result<()> {
        let snap = StoredSnapshot {
            format: SNAPSHOT_FORMAT,
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let file = self.file.clone();
        let registry: Registry = blocking(move || {
            let registry = from_bytes(&snap.data)?;
            if !file.store_if_newer(&snap)? {
                // openraft installs only snapshots past its committed index, and every
                // stored one is at most that: this would be a bug, never a reason to go back.
                tracing::warn!(last = ?snap.meta.last_log_id, "installed snapshot is not newer than the stored one; the stored one stays");
            }
            Ok(registry)
        })
        .await?;
        let mut st = self.state.write().map_err(poisoned)?;
        st.registry = Arc::new(registry);
        st.last_applied = meta.last_log_id;
        st.membership = meta.last_membership.clone();
        tracing::info!(last = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> io::Result<Option<openraft::alias::SnapshotOf<TypeConfig, Cursor<Vec<u8>>>>> {
        let file = self.file.clone();
        let snap = blocking(move || file.load()).await?;
        Ok(snap.map(|s| openraft::Snapshot {
            meta: s.meta,
            snapshot: Cursor::new(s.data),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use openraft::entry::RaftEntry;
    use plotter2_node::Address;
    use plotter2_node::protocol::{RequestId, UserName, WriteOp};

    use super::*;
    use crate::types::{Command, Entry};

    fn entry(index: u64) -> Entry {
        let cmd = Command {
            id: RequestId::new(),
            user: UserName::parse("tali").unwrap(),
            time_ms: 1000 + index,
            trace: None,
            op: WriteOp::New {
                addr: Address::parse(&format!("/s/n{index}")).unwrap(),
                set: vec![],
            },
        };
        Entry::new_normal(openraft::testing::log_id::<TypeConfig>(1, 1, index), cmd)
    }

    async fn apply(sm: &mut StateMachine, entries: &[Entry]) {
        let items: Vec<io::Result<EntryResponder<TypeConfig>>> =
            entries.iter().map(|e| Ok((e.clone(), None))).collect();
        sm.apply(futures::stream::iter(items)).await.unwrap();
    }

    fn digest(sm: &StateMachine) -> String {
        sm.read().unwrap().registry.digest()
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// A build of an older state that stores after a newer snapshot was installed must not put
    /// the older one back (before, it did: the file went back to index 3 while the log would
    /// already be purged past it). A restart then replays on the installed state and agrees.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_build_overtaken_by_an_install_leaves_the_newer_snapshot() {
        let log: Vec<Entry> = (1..=8).map(entry).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply(&mut sm, &log[..3]).await;

        // The leader's snapshot at index 6.
        let leader_dir = tempfile::tempdir().unwrap();
        let mut leader = StateMachine::open(leader_dir.path()).unwrap();
        apply(&mut leader, &log[..6]).await;
        let newer = leader
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(newer.meta.last_log_id.unwrap().index(), 6);

        // The build of index 3 stops just before it stores, until released.
        let (reached_tx, reached_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let release_rx = Mutex::new(release_rx);
        sm.set_store_hook(Some(Arc::new(move |meta: &SnapshotMeta| {
            if meta.last_log_id.map(|l| l.index()) == Some(3) {
                reached_tx.send(()).unwrap();
                release_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(10))
                    .expect("the test releases the build");
            }
        })));
        let mut builder = sm.get_snapshot_builder().await;
        let build = tokio::spawn(async move { builder.build_snapshot().await });
        tokio::task::spawn_blocking(move || reached_rx.recv_timeout(Duration::from_secs(10)))
            .await
            .unwrap()
            .expect("the build to reach its store");

        sm.install_snapshot(&newer.meta, newer.snapshot)
            .await
            .unwrap();
        release_tx.send(()).unwrap();
        let built = build.await.unwrap().unwrap();
        assert_eq!(built.meta.last_log_id.unwrap().index(), 3);

        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(
            current.meta, newer.meta,
            "the older build replaced the install"
        );
        assert_eq!(sm.stored_snapshot().unwrap(), newer.meta.last_log_id);
        assert_eq!(files_in(dir.path()), vec![SNAPSHOT_FILE.to_owned()]);
        let on_disk: Registry = from_bytes(&current.snapshot.into_inner()).unwrap();
        assert_eq!(on_disk.digest(), digest(&leader));
        assert_eq!(digest(&sm), digest(&leader));

        // Restarted, it loads the installed state and replays the rest to the leader's digest.
        drop(sm);
        let mut restarted = StateMachine::open(dir.path()).unwrap();
        assert_eq!(
            restarted.read().unwrap().last_applied,
            newer.meta.last_log_id
        );
        apply(&mut restarted, &log[6..]).await;
        apply(&mut leader, &log[6..]).await;
        assert_eq!(digest(&restarted), digest(&leader));
    }

    #[tokio::test]
    async fn only_a_newer_snapshot_replaces_the_stored_one() {
        let log: Vec<Entry> = (1..=4).map(entry).collect();
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply(&mut sm, &log).await;
        let at4 = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let old = StoredSnapshot {
            format: SNAPSHOT_FORMAT,
            meta: SnapshotMeta {
                last_log_id: Some(openraft::testing::log_id::<TypeConfig>(1, 1, 2)),
                ..at4.meta.clone()
            },
            data: to_bytes(&Registry::default()).unwrap(),
        };
        assert!(!sm.file.store_if_newer(&old).unwrap());
        assert!(
            !sm.file
                .store_if_newer(&StoredSnapshot {
                    format: SNAPSHOT_FORMAT,
                    meta: at4.meta.clone(),
                    data: Vec::new(),
                })
                .unwrap()
        );
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, at4.meta);
        assert_eq!(current.snapshot.into_inner(), at4.snapshot.into_inner());
    }

    #[test]
    fn a_snapshot_of_an_unknown_format_is_refused_on_open() {
        let dir = tempfile::tempdir().unwrap();
        #[derive(Serialize)]
        struct Future {
            format: u32,
            pages: Vec<u32>,
        }
        let bytes = to_bytes(&Future {
            format: 7,
            pages: vec![1, 2],
        })
        .unwrap();
        std::fs::write(dir.path().join(SNAPSHOT_FILE), bytes).unwrap();
        let err = StateMachine::open(dir.path()).err().expect("refused");
        let msg = err.to_string();
        assert!(
            msg.contains("format 7")
                && msg.contains(&format!("reads only format {SNAPSHOT_FORMAT}")),
            "{msg}"
        );
    }

    /// Files written before the format field existed count as format 1, which this build
    /// refuses by name (format 1 registries hold whole file indexes).
    #[tokio::test]
    async fn a_snapshot_without_a_format_field_is_format_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        apply(&mut sm, &(1..=2).map(entry).collect::<Vec<_>>()).await;
        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        #[derive(Serialize)]
        struct Legacy {
            meta: SnapshotMeta,
            #[serde(with = "serde_bytes")]
            data: Vec<u8>,
        }
        let legacy = to_bytes(&Legacy {
            meta: snap.meta.clone(),
            data: snap.snapshot.into_inner(),
        })
        .unwrap();
        std::fs::write(dir.path().join(SNAPSHOT_FILE), legacy).unwrap();
        let err = StateMachine::open(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("format 1"), "{err}");
    }
}
