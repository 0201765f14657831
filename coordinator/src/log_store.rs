//! Raft log and vote in redb, written by one flusher thread.
//!
//! `append` puts the entries into an in-memory cache of the log's recent suffix (so they are
//! readable at once and replication can start) and queues them for the flusher. The flusher
//! takes everything queued — appends, truncations, purges, votes — applies it in order in one
//! redb transaction, commits it with fsync, and only then acknowledges: openraft hears an entry
//! is flushed only once it is on disk, and a vote is saved before `save_vote` returns. Writes
//! that queue up while one fsync runs share the next (group commit), so throughput grows with
//! concurrency, and the leader's fsync overlaps the followers'.
//!
//! Reads of indexes at or above `cache_first` come from the cache, which is authoritative there;
//! older ones from redb. The cache keeps a bounded suffix and drops only entries already durable.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::types::{Entry, LogId, TypeConfig, Vote};

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// Entries kept in memory once durable (newer, not yet durable ones are always kept).
const CACHE_KEEP: usize = 8192;

pub(crate) fn other<E: std::fmt::Display>(e: E) -> io::Error {
    io::Error::other(e.to_string())
}

pub(crate) fn to_bytes<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    rmp_serde::to_vec_named(v).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(crate) fn from_bytes<T: DeserializeOwned>(b: &[u8]) -> io::Result<T> {
    rmp_serde::from_slice(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Runs blocking work off the async runtime.
pub(crate) async fn blocking<T, F>(f: F) -> io::Result<T>
where
    F: FnOnce() -> io::Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(other)?
}

fn copy_err(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

/// A write for the flusher, in the order openraft issued it.
enum Op {
    Append {
        rows: Vec<(u64, Vec<u8>)>,
        committed: Vec<u8>,
        seq: u64,
        done: IOFlushed<TypeConfig>,
    },
    Truncate {
        from: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
    Purge {
        upto: u64,
        record: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
    Vote {
        bytes: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
}

/// What the log looks like including writes the flusher has not made durable yet.
struct View {
    /// Recent entries and the sequence number of the append that wrote them.
    cache: BTreeMap<u64, (Entry, u64)>,
    /// From this index up, `cache` is the whole truth.
    cache_first: u64,
    last_log_id: Option<LogId>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
    next_seq: u64,
}

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    view: Arc<Mutex<View>>,
    flusher: mpsc::Sender<Op>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> io::Result<Self> {
        let tx = db.begin_write().map_err(other)?;
        tx.open_table(LOG).map_err(other)?;
        tx.open_table(META).map_err(other)?;
        tx.commit().map_err(other)?;
        let last_purged: Option<LogId> = get_meta(&db, LAST_PURGED)?;
        let committed = get_meta::<Option<LogId>>(&db, COMMITTED)?.flatten();
        let (last_index, last_log_id) = {
            let tx = db.begin_read().map_err(other)?;
            let table = tx.open_table(LOG).map_err(other)?;
            match table.last().map_err(other)? {
                Some((k, v)) => (
                    Some(k.value()),
                    Some(from_bytes::<Entry>(v.value())?.log_id),
                ),
                None => (None, last_purged),
            }
        };
        let view = View {
            cache: BTreeMap::new(),
            cache_first: last_index.map(|i| i + 1).unwrap_or(0),
            last_log_id,
            last_purged,
            committed,
            next_seq: 1,
        };
        let view = Arc::new(Mutex::new(view));
        let (flusher, ops) = mpsc::channel();
        let (fdb, fview) = (db.clone(), view.clone());
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || flush_loop(fdb, fview, ops))?;
        Ok(Self { db, view, flusher })
    }

    fn view(&self) -> io::Result<MutexGuard<'_, View>> {
        self.view
            .lock()
            .map_err(|_| other("log view lock poisoned"))
    }

    fn queue(&self, op: Op) -> io::Result<()> {
        self.flusher
            .send(op)
            .map_err(|_| other("the raft log flusher thread has stopped"))
    }

    async fn queue_and_wait(
        &self,
        make: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Op,
    ) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.queue(make(tx))?;
        rx.await
            .map_err(|_| other("the raft log flusher thread has stopped"))?
    }
}

fn get_meta<T: DeserializeOwned>(db: &Database, key: &str) -> io::Result<Option<T>> {
    let tx = db.begin_read().map_err(other)?;
    let table = tx.open_table(META).map_err(other)?;
    match table.get(key).map_err(other)? {
        Some(v) => from_bytes(v.value()).map(Some),
        None => Ok(None),
    }
}

/// Applies queued writes in order, one fsync'd transaction per batch, then acknowledges them.
fn flush_loop(db: Arc<Database>, view: Arc<Mutex<View>>, ops: mpsc::Receiver<Op>) {
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        batch.extend(ops.try_iter());
        let res = write_batch(&db, &batch);
        let mut durable_seq = 0;
        for op in batch {
            let r = res.as_ref().map(|_| ()).map_err(copy_err);
            match op {
                Op::Append { seq, done, .. } => {
                    durable_seq = seq;
                    done.io_completed(r);
                }
                Op::Truncate { done, .. } | Op::Purge { done, .. } | Op::Vote { done, .. } => {
                    let _ = done.send(r);
                }
            }
        }
        if res.is_ok()
            && let Ok(mut v) = view.lock()
        {
            trim(&mut v, durable_seq);
        }
    }
}

fn write_batch(db: &Database, batch: &[Op]) -> io::Result<()> {
    let mut tx = db.begin_write().map_err(other)?;
    tx.set_durability(Durability::Immediate).map_err(other)?;
    {
        let mut log = tx.open_table(LOG).map_err(other)?;
        let mut meta = tx.open_table(META).map_err(other)?;
        for op in batch {
            match op {
                Op::Append {
                    rows, committed, ..
                } => {
                    for (index, bytes) in rows {
                        log.insert(*index, bytes.as_slice()).map_err(other)?;
                    }
                    meta.insert(COMMITTED, committed.as_slice())
                        .map_err(other)?;
                }
                Op::Truncate { from, .. } => {
                    log.retain_in::<u64, _>(*from.., |_, _| false)
                        .map_err(other)?;
                }
                Op::Purge { upto, record, .. } => {
                    meta.insert(LAST_PURGED, record.as_slice()).map_err(other)?;
                    log.retain_in::<u64, _>((Bound::Unbounded, Bound::Included(*upto)), |_, _| {
                        false
                    })
                    .map_err(other)?;
                }
                Op::Vote { bytes, .. } => {
                    meta.insert(VOTE, bytes.as_slice()).map_err(other)?;
                }
            }
        }
    }
    tx.commit().map_err(other)
}

/// Drops the oldest cached entries beyond [`CACHE_KEEP`], but only ones already on disk.
fn trim(v: &mut View, durable_seq: u64) {
    while v.cache.len() > CACHE_KEEP {
        let Some((&index, (_, seq))) = v.cache.first_key_value() else {
            break;
        };
        if *seq > durable_seq {
            break;
        }
        v.cache.pop_first();
        v.cache_first = index + 1;
    }
}

/// True when no index `i >= from` satisfies `end`.
fn is_empty(from: u64, end: Bound<u64>) -> bool {
    match end {
        Bound::Included(e) => from > e,
        Bound::Excluded(e) => from >= e,
        Bound::Unbounded => false,
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> io::Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = range.end_bound().cloned();
        let (cache_first, cached) = {
            let v = self.view()?;
            let from = start.max(v.cache_first);
            // BTreeMap::range panics on an inverted range.
            let cached: Vec<Entry> = if is_empty(from, end) {
                Vec::new()
            } else {
                v.cache
                    .range((Bound::Included(from), end))
                    .map(|(_, (e, _))| e.clone())
                    .collect()
            };
            (v.cache_first, cached)
        };
        if start >= cache_first {
            return Ok(cached);
        }
        // The older part lives only in redb; it is never touched by pending writes.
        let below = match end {
            Bound::Included(e) if e < cache_first => Bound::Included(e),
            Bound::Excluded(e) if e <= cache_first => Bound::Excluded(e),
            _ => Bound::Excluded(cache_first),
        };
        if is_empty(start, below) {
            return Ok(cached);
        }
        let db = self.db.clone();
        let mut out = blocking(move || {
            let tx = db.begin_read().map_err(other)?;
            let table = tx.open_table(LOG).map_err(other)?;
            let mut out = Vec::new();
            for item in table
                .range::<u64>((Bound::Included(start), below))
                .map_err(other)?
            {
                let (_, v) = item.map_err(other)?;
                out.push(from_bytes(v.value())?);
            }
            Ok(out)
        })
        .await?;
        out.extend(cached);
        Ok(out)
    }

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        let db = self.db.clone();
        blocking(move || get_meta(&db, VOTE)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let v = self.view()?;
        Ok(LogState {
            last_purged_log_id: v.last_purged,
            last_log_id: v.last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        // A vote must be on disk before it is sent, or a restart could vote twice in a term.
        let bytes = to_bytes(vote)?;
        self.queue_and_wait(|done| Op::Vote { bytes, done }).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        // Written with the next append: it only lets a restart re-apply sooner.
        self.view()?.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.view()?.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut rows = Vec::with_capacity(entries.len());
        for e in &entries {
            rows.push((e.log_id.index(), to_bytes(e)?));
        }
        let op = {
            let mut v = self.view()?;
            let seq = v.next_seq;
            v.next_seq += 1;
            let committed = to_bytes(&v.committed)?;
            if let Some(last) = entries.last() {
                v.last_log_id = Some(last.log_id);
            }
            for e in entries {
                v.cache.insert(e.log_id.index(), (e, seq));
            }
            Op::Append {
                rows,
                committed,
                seq,
                done: callback,
            }
        };
        self.queue(op)
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.as_ref().map(|l| l.index() + 1).unwrap_or(0);
        {
            let mut v = self.view()?;
            v.cache.retain(|&i, _| i < from);
            v.cache_first = v.cache_first.min(from);
            // Only shrink: truncating past the end changes nothing.
            let beyond = v
                .last_log_id
                .as_ref()
                .is_some_and(|cur| cur.index() >= from);
            if beyond {
                v.last_log_id = last_log_id.or_else(|| v.last_purged);
            }
        }
        self.queue_and_wait(|done| Op::Truncate { from, done })
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        let upto = log_id.index();
        let record = to_bytes(&log_id)?;
        {
            let mut v = self.view()?;
            v.cache.retain(|&i, _| i > upto);
            v.cache_first = v.cache_first.max(upto + 1);
            if v.last_log_id.as_ref().is_none_or(|l| l.index() < upto) {
                v.last_log_id = Some(log_id);
            }
            v.last_purged = Some(log_id);
        }
        self.queue_and_wait(|done| Op::Purge { upto, record, done })
            .await
    }
}
