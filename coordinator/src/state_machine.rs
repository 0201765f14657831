//! The raft state machine: the [`Registry`] in memory, persisted as snapshots in redb.
//!
//! On start the newest snapshot is loaded; openraft then re-applies the committed log after it
//! (the log store keeps the committed id). Snapshots are built under the read lock, so each is a
//! point-in-time view even though openraft builds them beside `apply`.

use std::io::{self, Cursor};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use futures::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::log_store::{blocking, from_bytes, other, to_bytes};
use crate::registry::Registry;
use crate::types::{Applied, LogId, SnapshotMeta, StoredMembership, TypeConfig};

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
const CURRENT: &str = "current";

/// The registry and where it stands in the log.
#[derive(Debug, Default)]
pub struct SmState {
    pub registry: Registry,
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
    db: Arc<Database>,
}

fn poisoned<T>(_: T) -> io::Error {
    io::Error::other("state machine lock poisoned")
}

impl StateMachine {
    /// Opens the state machine from the newest snapshot stored in `db`, if any.
    pub fn open(db: Arc<Database>) -> io::Result<Self> {
        let tx = db.begin_write().map_err(other)?;
        tx.open_table(SNAPSHOT).map_err(other)?;
        tx.commit().map_err(other)?;
        let mut state = SmState::default();
        if let Some(snap) = Self::load(&db)? {
            state.registry = from_bytes(&snap.data)?;
            state.last_applied = snap.meta.last_log_id.clone();
            state.membership = snap.meta.last_membership.clone();
        }
        Ok(Self {
            state: Arc::new(RwLock::new(state)),
            db,
        })
    }

    fn load(db: &Database) -> io::Result<Option<StoredSnapshot>> {
        let tx = db.begin_read().map_err(other)?;
        let table = tx.open_table(SNAPSHOT).map_err(other)?;
        match redb::ReadableTable::get(&table, CURRENT).map_err(other)? {
            Some(v) => from_bytes(v.value()).map(Some),
            None => Ok(None),
        }
    }

    async fn store(&self, snap: StoredSnapshot) -> io::Result<()> {
        let bytes = to_bytes(&snap)?;
        let db = self.db.clone();
        blocking(move || {
            let mut tx = db.begin_write().map_err(other)?;
            tx.set_durability(Durability::Immediate).map_err(other)?;
            tx.open_table(SNAPSHOT)
                .map_err(other)?
                .insert(CURRENT, bytes.as_slice())
                .map_err(other)?;
            tx.commit().map_err(other)
        })
        .await
    }

    /// Read access to the registry as applied so far.
    pub fn read(&self) -> io::Result<RwLockReadGuard<'_, SmState>> {
        self.state.read().map_err(poisoned)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn build_snapshot(
        &mut self,
    ) -> io::Result<openraft::alias::SnapshotOf<TypeConfig, Cursor<Vec<u8>>>> {
        let (meta, data) = {
            let st = self.read()?;
            let meta = SnapshotMeta {
                last_log_id: st.last_applied.clone(),
                last_membership: st.membership.clone(),
            };
            (meta, to_bytes(&st.registry)?)
        };
        self.store(StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
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
        Ok((st.last_applied.clone(), st.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            let answer = {
                let mut st = self.state.write().map_err(poisoned)?;
                st.last_applied = Some(entry.log_id.clone());
                match entry.payload {
                    EntryPayload::Blank => Applied::default(),
                    EntryPayload::Normal(cmd) => {
                        Applied(st.registry.apply(&cmd, entry.log_id.index()))
                    }
                    EntryPayload::Membership(m) => {
                        st.membership = StoredMembership::new(Some(entry.log_id.clone()), m);
                        Applied::default()
                    }
                }
            };
            // Every entry is answered, or a waiting client_write would hang.
            if let Some(r) = responder {
                r.send(answer);
            }
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
        let data = snapshot.into_inner();
        let registry: Registry = from_bytes(&data)?;
        self.store(StoredSnapshot {
            meta: meta.clone(),
            data,
        })
        .await?;
        let mut st = self.state.write().map_err(poisoned)?;
        st.registry = registry;
        st.last_applied = meta.last_log_id.clone();
        st.membership = meta.last_membership.clone();
        tracing::info!(last = ?meta.last_log_id, "snapshot installed");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> io::Result<Option<openraft::alias::SnapshotOf<TypeConfig, Cursor<Vec<u8>>>>> {
        let db = self.db.clone();
        let snap = blocking(move || Self::load(&db)).await?;
        Ok(snap.map(|s| openraft::Snapshot {
            meta: s.meta,
            snapshot: Cursor::new(s.data),
        }))
    }
}
