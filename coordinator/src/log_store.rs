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
//!
//! The first failed write is final: every later write fails with it, unwritten, so the log
//! on disk never gets a hole that a later batch would then acknowledge past, and
//! [`LogStore::failed`] tells the node to stop. Opening checks that the log has no hole.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, watch};

use crate::types::{Entry, LogId, TypeConfig, Vote};

pub(crate) const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const LAST_PURGED: &str = "last_purged";

/// Entries kept in memory once durable (newer, not yet durable ones are always kept).
const CACHE_KEEP: usize = 8192;

/// Environment variable (tests only): the first write of a batch holding this log index or a
/// later one fails, once, as a failing disk would.
pub const FAIL_LOG_WRITE_ENV: &str = "P2_COORD_FAIL_LOG_WRITE_AT";

/// How to open a [`LogStore`].
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// The last log index the state machine's snapshot covers: entries up to it may be gone
    /// (a purge not yet written when the node stopped), entries after it must all be there.
    pub covered: Option<u64>,
    /// Fault injection, see [`FAIL_LOG_WRITE_ENV`].
    pub fail_write_at: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum LogOpenError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(
        "the raft log has a hole: entries {missing_from} to {missing_to} are missing, and it \
         must hold every entry from {from} to its last, {last}"
    )]
    Hole {
        from: u64,
        missing_from: u64,
        missing_to: u64,
        last: u64,
    },
}

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
    /// The first write error, once there was one.
    failed: Arc<watch::Sender<Option<String>>>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> Result<Self, LogOpenError> {
        Self::open(db, LogOptions::default())
    }

    pub fn open(db: Arc<Database>, opts: LogOptions) -> Result<Self, LogOpenError> {
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
        let from = [last_purged.map(|l| l.index()), opts.covered]
            .into_iter()
            .flatten()
            .max()
            .map(|i| i + 1)
            .unwrap_or(0);
        check_contiguous(&db, from)?;
        tracing::info!(?last_purged, last = ?last_index, "raft log opened");
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
        let failed = Arc::new(watch::channel(None).0);
        let state = Flusher {
            db: db.clone(),
            view: view.clone(),
            failed: failed.clone(),
            fail_at: opts.fail_write_at,
        };
        std::thread::Builder::new()
            .name("raft-log-flush".into())
            .spawn(move || state.run(ops))
            .map_err(LogOpenError::Io)?;
        Ok(Self {
            db,
            view,
            flusher,
            failed,
        })
    }

    /// Resolves with the first write error: from then on the store writes nothing, and the
    /// node must stop (openraft alone would keep serving reads and elections).
    pub fn failed(&self) -> impl std::future::Future<Output = String> + Send + 'static {
        let mut rx = self.failed.subscribe();
        async move {
            let why = rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|w| w.clone());
            match why {
                Some(why) => why,
                // The store is gone without a failure: nothing to report, ever.
                None => std::future::pending().await,
            }
        }
    }

    /// The last purged log id, as far as this store has been told.
    pub fn purged(&self) -> io::Result<Option<LogId>> {
        Ok(self.view()?.last_purged)
    }

    fn sticky(&self) -> Option<io::Error> {
        self.failed.borrow().as_deref().map(sticky_err)
    }

    fn view(&self) -> io::Result<MutexGuard<'_, View>> {
        self.view
            .lock()
            .map_err(|_| other("log view lock poisoned"))
    }

    fn queue(&self, op: Op) -> io::Result<()> {
        if let Some(e) = self.sticky() {
            return Err(e);
        }
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

fn sticky_err(why: &str) -> io::Error {
    other(format!(
        "the raft log takes no more writes after an earlier one failed: {why}"
    ))
}

/// Checks that the log holds every index from `from` to its last entry.
fn check_contiguous(db: &Database, from: u64) -> Result<(), LogOpenError> {
    let tx = db.begin_read().map_err(other)?;
    let table = tx.open_table(LOG).map_err(other)?;
    let Some(last) = table.last().map_err(other)?.map(|(k, _)| k.value()) else {
        return Ok(());
    };
    if last < from {
        return Ok(());
    }
    // Cheap in the usual case: the table's length is kept, and little or nothing lies below.
    let mut below = 0u64;
    for item in table.range::<u64>(..from).map_err(other)? {
        item.map_err(other)?;
        below += 1;
    }
    let held = table.len().map_err(other)? - below;
    if held == last - from + 1 {
        return Ok(());
    }
    let mut expect = from;
    for item in table.range::<u64>(from..).map_err(other)? {
        let (k, _) = item.map_err(other)?;
        let k = k.value();
        if k != expect {
            return Err(LogOpenError::Hole {
                from,
                missing_from: expect,
                missing_to: k - 1,
                last,
            });
        }
        expect = k + 1;
    }
    Ok(())
}

/// The lowest and highest index in the raft log stored in `db_path`, which no process may
/// have open (for tools and tests that inspect a stopped node).
pub fn stored_log_range(
    db_path: &std::path::Path,
) -> io::Result<Option<std::ops::RangeInclusive<u64>>> {
    let db = Database::open(db_path).map_err(other)?;
    let tx = db.begin_read().map_err(other)?;
    let table = match tx.open_table(LOG) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(other(e)),
    };
    let first = table.first().map_err(other)?.map(|(k, _)| k.value());
    let last = table.last().map_err(other)?.map(|(k, _)| k.value());
    Ok(first.zip(last).map(|(f, l)| f..=l))
}

/// The flusher thread's state.
struct Flusher {
    db: Arc<Database>,
    view: Arc<Mutex<View>>,
    failed: Arc<watch::Sender<Option<String>>>,
    fail_at: Option<u64>,
}

impl Flusher {
    /// Applies queued writes in order, one fsync'd transaction per batch, then acknowledges
    /// them. After the first failure nothing is written any more and everything fails.
    fn run(mut self, ops: mpsc::Receiver<Op>) {
        let mut broken: Option<String> = None;
        while let Ok(first) = ops.recv() {
            let mut batch = vec![first];
            batch.extend(ops.try_iter());
            let res = match &broken {
                Some(why) => Err(sticky_err(why)),
                None => self
                    .injected(&batch)
                    .and_then(|()| write_batch(&self.db, &batch)),
            };
            if let Err(e) = &res
                && broken.is_none()
            {
                let why = e.to_string();
                tracing::error!(
                    "raft log write failed: {why}; this node stops taking and acknowledging writes"
                );
                // Published before any op of this batch is answered, so nothing queued after
                // the answer can be written.
                self.failed.send_replace(Some(why.clone()));
                broken = Some(why);
            }
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
                && let Ok(mut v) = self.view.lock()
            {
                trim(&mut v, durable_seq);
            }
        }
    }

    /// The injected failure, once, for the first batch that reaches its index.
    fn injected(&mut self, batch: &[Op]) -> io::Result<()> {
        let Some(at) = self.fail_at else {
            return Ok(());
        };
        let reaches = batch.iter().any(|op| match op {
            Op::Append { rows, .. } => rows.iter().any(|(i, _)| *i >= at),
            _ => false,
        });
        if reaches {
            self.fail_at = None;
            return Err(other(format!(
                "injected failure writing the batch holding log index {at} ({FAIL_LOG_WRITE_ENV})"
            )));
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use openraft::type_config::TypeConfigExt;

    use super::*;

    fn blank(index: u64) -> Entry {
        openraft::testing::blank_ent::<TypeConfig>(1, 1, index)
    }

    fn db_in(dir: &tempfile::TempDir) -> Arc<Database> {
        Arc::new(Database::create(dir.path().join("raft.redb")).unwrap())
    }

    /// Appends `indexes` and waits until the flusher answers.
    async fn append(store: &mut LogStore, indexes: std::ops::Range<u64>) -> io::Result<()> {
        let (tx, rx) = TypeConfig::oneshot();
        store
            .append(indexes.map(blank), IOFlushed::signal(tx))
            .await?;
        rx.await.map_err(other)?
    }

    fn keys_on_disk(db: &Database) -> Vec<u64> {
        let tx = db.begin_read().unwrap();
        let table = tx.open_table(LOG).unwrap();
        table
            .iter()
            .unwrap()
            .map(|i| i.unwrap().0.value())
            .collect()
    }

    /// Before, the batch after a failed one was written and acknowledged: the log on disk
    /// had a hole, and openraft heard the entries after it were durable.
    #[tokio::test]
    async fn the_first_failed_write_fails_every_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_in(&dir);
        let opts = LogOptions {
            fail_write_at: Some(5),
            ..Default::default()
        };
        let mut store = LogStore::open(db.clone(), opts).unwrap();
        append(&mut store, 0..3).await.unwrap();
        let failed = store.failed();
        let err = append(&mut store, 3..6).await.unwrap_err();
        assert!(err.to_string().contains("injected"), "{err}");
        let why = tokio::time::timeout(std::time::Duration::from_secs(5), failed)
            .await
            .expect("failed() resolves after the failure");
        assert!(why.contains("log index 5"), "{why}");

        let later = append(&mut store, 6..8).await.unwrap_err();
        assert!(later.to_string().contains("no more writes"), "{later}");
        let vote = store
            .save_vote(&Vote::new(2, 1))
            .await
            .expect_err("a vote after the failure is refused");
        assert!(vote.to_string().contains("no more writes"), "{vote}");
        assert_eq!(keys_on_disk(&db), vec![0, 1, 2]);
    }

    fn write_raw(db: &Database, keys: &[u64], purged: Option<u64>) {
        let tx = db.begin_write().unwrap();
        {
            let mut log = tx.open_table(LOG).unwrap();
            for &k in keys {
                log.insert(k, to_bytes(&blank(k)).unwrap().as_slice())
                    .unwrap();
            }
            let mut meta = tx.open_table(META).unwrap();
            if let Some(p) = purged {
                let id = openraft::testing::log_id::<TypeConfig>(1, 1, p);
                meta.insert(LAST_PURGED, to_bytes(&Some(id)).unwrap().as_slice())
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }

    #[test]
    fn opening_a_log_with_a_hole_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_in(&dir);
        write_raw(&db, &[0, 1, 2, 4, 5], None);
        match LogStore::new(db.clone()) {
            Err(LogOpenError::Hole {
                from: 0,
                missing_from: 3,
                missing_to: 3,
                last: 5,
            }) => {}
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("a log with a hole opened"),
        }
    }

    #[test]
    fn entries_after_the_purge_must_all_be_there() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_in(&dir);
        write_raw(&db, &[7, 8, 9], Some(4));
        let err = LogStore::new(db.clone()).err().expect("a hole at 5..6");
        assert!(
            err.to_string()
                .contains("entries 5 to 6 are missing, and it must hold every entry from 5"),
            "{err}"
        );
    }

    #[test]
    fn a_gap_the_snapshot_covers_is_no_hole() {
        let dir = tempfile::tempdir().unwrap();
        let db = db_in(&dir);
        // Purged to 1, snapshot at 6, purge of 2..=6 not yet written when the node stopped.
        write_raw(&db, &[2, 3, 7, 8], Some(1));
        let opts = LogOptions {
            covered: Some(6),
            ..Default::default()
        };
        LogStore::open(db.clone(), opts).map(|_| ()).unwrap();
    }
}
