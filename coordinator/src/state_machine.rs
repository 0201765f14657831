//! The raft state machine: the [`Registry`] in memory, persisted as snapshot files.
//!
//! On start the newest snapshot is loaded; openraft then re-applies the committed log after it
//! (the log store keeps the committed id). The registry sits behind an `Arc`: a snapshot takes a
//! point-in-time reference under the lock and serializes it off the lock and off the runtime,
//! while `apply` goes on (copy-on-write: the first apply after that clones the registry once).

use std::io::{self, Cursor};
use std::path::PathBuf;
use std::sync::{Arc, RwLock, RwLockReadGuard};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use serde::{Deserialize, Serialize};

use crate::log_store::{blocking, from_bytes, to_bytes};
use crate::registry::Registry;
use crate::types::{Applied, LogId, SnapshotMeta, StoredMembership, TypeConfig};

const SNAPSHOT_FILE: &str = "snapshot.bin";

/// The registry and where it stands in the log.
#[derive(Debug, Default)]
pub struct SmState {
    pub registry: Arc<Registry>,
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// Shared handle: the API reads the registry through [`StateMachine::read`].
#[derive(Clone)]
pub struct StateMachine {
    state: Arc<RwLock<SmState>>,
    /// `<data dir>/snapshot.bin`, replaced atomically.
    snapshot_path: Arc<PathBuf>,
    /// The last applied log index, for those who act on changes (dispatch).
    applied: Arc<tokio::sync::watch::Sender<u64>>,
}

fn poisoned<T>(_: T) -> io::Error {
    io::Error::other("state machine lock poisoned")
}

impl StateMachine {
    /// Opens the state machine from the newest snapshot in `dir`, if any.
    pub fn open(dir: &std::path::Path) -> io::Result<Self> {
        let snapshot_path = Arc::new(dir.join(SNAPSHOT_FILE));
        let mut state = SmState::default();
        if let Some(snap) = Self::load(&snapshot_path)? {
            state.registry = Arc::new(from_bytes(&snap.data)?);
            state.last_applied = snap.meta.last_log_id;
            state.membership = snap.meta.last_membership.clone();
        }
        Ok(Self {
            state: Arc::new(RwLock::new(state)),
            snapshot_path,
            applied: Arc::new(tokio::sync::watch::channel(0).0),
        })
    }

    fn load(path: &std::path::Path) -> io::Result<Option<StoredSnapshot>> {
        match std::fs::read(path) {
            Ok(bytes) => from_bytes(&bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the snapshot file atomically and durably (fsync, rename, fsync the directory).
    fn store(path: &std::path::Path, snap: &StoredSnapshot) -> io::Result<()> {
        let bytes = to_bytes(snap)?;
        plotter2_node::home::write_atomic(path, &bytes).map_err(io::Error::other)
    }

    /// Read access to the registry as applied so far.
    pub fn read(&self) -> io::Result<RwLockReadGuard<'_, SmState>> {
        self.state.read().map_err(poisoned)
    }

    /// Changes whenever entries are applied.
    pub fn subscribe_applied(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
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
        let path = self.snapshot_path.clone();
        let snap_meta = meta.clone();
        let data = blocking(move || {
            let snap = StoredSnapshot {
                meta: snap_meta,
                data: to_bytes(&*registry)?,
            };
            Self::store(&path, &snap)?;
            Ok(snap.data)
        })
        .await?;
        tracing::info!(last = ?meta.last_log_id, bytes = data.len(), "snapshot built");
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
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let path = self.snapshot_path.clone();
        let registry: Registry = blocking(move || {
            let registry = from_bytes(&snap.data)?;
            Self::store(&path, &snap)?;
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
        let path = self.snapshot_path.clone();
        let snap = blocking(move || Self::load(&path)).await?;
        Ok(snap.map(|s| openraft::Snapshot {
            meta: s.meta,
            snapshot: Cursor::new(s.data),
        }))
    }
}
