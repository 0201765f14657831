//! Raft log and vote in redb.
//!
//! Every append is one redb write transaction committed with `Durability::Immediate` (fsync)
//! before openraft is told the entries are flushed. openraft hands over everything that queued
//! up while the previous append was syncing, so concurrent client writes share one fsync
//! (group commit) and throughput grows with concurrency.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::{Entry, LogId, TypeConfig, Vote};

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

pub(crate) fn other<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

pub(crate) fn to_bytes<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    rmp_serde::to_vec_named(v).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(crate) fn from_bytes<T: DeserializeOwned>(b: &[u8]) -> io::Result<T> {
    rmp_serde::from_slice(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Runs blocking redb work off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(other)?
}

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> io::Result<Self> {
        let tx = db.begin_write().map_err(other)?;
        tx.open_table(LOG).map_err(other)?;
        tx.open_table(META).map_err(other)?;
        tx.commit().map_err(other)?;
        Ok(Self { db })
    }

    fn get_meta<T: DeserializeOwned>(db: &Database, key: &str) -> io::Result<Option<T>> {
        let tx = db.begin_read().map_err(other)?;
        let table = tx.open_table(META).map_err(other)?;
        match table.get(key).map_err(other)? {
            Some(v) => from_bytes(v.value()).map(Some),
            None => Ok(None),
        }
    }

    async fn put_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> io::Result<()> {
        let bytes = to_bytes(value)?;
        let db = self.db.clone();
        blocking(move || {
            let mut tx = db.begin_write().map_err(other)?;
            tx.set_durability(durability).map_err(other)?;
            tx.open_table(META)
                .map_err(other)?
                .insert(key, bytes.as_slice())
                .map_err(other)?;
            tx.commit().map_err(other)
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        let db = self.db.clone();
        blocking(move || {
            let tx = db.begin_read().map_err(other)?;
            let table = tx.open_table(LOG).map_err(other)?;
            let mut out = Vec::new();
            for item in table.range::<u64>((start, end)).map_err(other)? {
                let (_, v) = item.map_err(other)?;
                out.push(from_bytes(v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        let db = self.db.clone();
        blocking(move || Self::get_meta(&db, VOTE)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let db = self.db.clone();
        blocking(move || {
            let last_purged: Option<LogId> = Self::get_meta(&db, LAST_PURGED)?;
            let tx = db.begin_read().map_err(other)?;
            let table = tx.open_table(LOG).map_err(other)?;
            let last = match table.last().map_err(other)? {
                Some((_, v)) => Some(from_bytes::<Entry>(v.value())?.log_id),
                None => last_purged.clone(),
            };
            Ok(LogState {
                last_purged_log_id: last_purged,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        // A vote must be on disk before it is sent, or a restart could vote twice in a term.
        self.put_meta(VOTE, vote, Durability::Immediate).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Not synced on its own: it only lets a restart re-apply sooner, and the next append's
        // fsync carries it to disk.
        self.put_meta(COMMITTED, &committed, Durability::None).await
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        let db = self.db.clone();
        blocking(move || Ok(Self::get_meta::<Option<LogId>>(&db, COMMITTED)?.flatten())).await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
    {
        let mut rows = Vec::new();
        for e in entries {
            rows.push((e.log_id.index(), to_bytes(&e)?));
        }
        let db = self.db.clone();
        let res = blocking(move || {
            let mut tx = db.begin_write().map_err(other)?;
            tx.set_durability(Durability::Immediate).map_err(other)?;
            {
                let mut table = tx.open_table(LOG).map_err(other)?;
                for (index, bytes) in &rows {
                    table.insert(*index, bytes.as_slice()).map_err(other)?;
                }
            }
            tx.commit().map_err(other)
        })
        .await;
        match res {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map(|l| l.index() + 1).unwrap_or(0);
        let db = self.db.clone();
        blocking(move || {
            let mut tx = db.begin_write().map_err(other)?;
            tx.set_durability(Durability::Immediate).map_err(other)?;
            tx.open_table(LOG)
                .map_err(other)?
                .retain_in::<u64, _>(from.., |_, _| false)
                .map_err(other)?;
            tx.commit().map_err(other)
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let bytes = to_bytes(&log_id)?;
        let upto = log_id.index();
        let db = self.db.clone();
        blocking(move || {
            let mut tx = db.begin_write().map_err(other)?;
            tx.set_durability(Durability::Immediate).map_err(other)?;
            // Record the purge point in the same transaction that removes the entries.
            tx.open_table(META)
                .map_err(other)?
                .insert(LAST_PURGED, bytes.as_slice())
                .map_err(other)?;
            tx.open_table(LOG)
                .map_err(other)?
                .retain_in::<u64, _>((Bound::Unbounded, Bound::Included(upto)), |_, _| false)
                .map_err(other)?;
            tx.commit().map_err(other)
        })
        .await
    }
}
