//! `plotter2 push`: a bundle folder streamed to a stager over NATS, both ends.
//!
//! The protocol is content-addressed, so it resumes by itself:
//! 1. `open` (any stager, queue group): "which of these blobs do you need, and from which
//!    offset?" — a blob already in the store is never sent again; a partly received one
//!    continues where it stopped (on the stager that holds the part).
//! 2. chunks to that stager's own subject, published in order with a bounded window of
//!    unacknowledged chunks (flow control and bounded memory on both sides). The last chunk
//!    of a blob is acknowledged once the blob is verified and stored.
//! 3. `commit` (any stager): checks every blob is in the store, reads the manifest from the
//!    stored `manifest.json`, and commits the `ingest` under the pusher's request id and user.
//!    The answer comes only after the coordinator committed.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use plotter2_node::Address;
use plotter2_node::bundle::{FileIndex, Hash};
use plotter2_node::client::{Client, ClientError};
use plotter2_node::manifest::Manifest;
use plotter2_node::progress::Progress;
use plotter2_node::protocol::{self, ApiError, BundleRef, Op, Reply, RequestId, UserName, WriteOp};
use plotter2_node::store::{BlobStore, StoreError};
use serde::{Deserialize, Serialize};

use crate::StagerError;
use crate::pipeline::blocking;
use plotter2_node::tree::{self, MANIFEST};

pub const OPEN_SUBJECT: &str = "p2.stager.push.open";
pub const COMMIT_SUBJECT: &str = "p2.stager.push.commit";
/// Queue group of every stager: `open` and `commit` go to any one of them.
pub const QUEUE: &str = "p2-stagers";
/// Part files of blobs being received, under the spool.
pub const PARTS_DIR: &str = ".push";
/// Largest chunk; smaller when the server's `max_payload` is.
const MAX_CHUNK: usize = 1024 * 1024;
/// Chunks published and not yet acknowledged.
const WINDOW: usize = 8;
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ordinary chunk may wait for its acknowledgement. The last chunk of a blob waits
/// longer: the stager verifies and stores the whole blob first (see [`ack_timeout`]).
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);

/// The wait for the acknowledgement of a chunk ending at `end` of a blob of `size` bytes:
/// storing the blob is allowed 20 MB/s, the slowest store we expect.
fn ack_timeout(end: u64, size: u64) -> Duration {
    if end < size {
        ACK_TIMEOUT
    } else {
        ACK_TIMEOUT + Duration::from_secs(size / 20_000_000)
    }
}

fn chunk_subject(stager: &str) -> String {
    format!("p2.stager.{stager}.chunk")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open {
    /// Each distinct blob of the bundle with its size.
    blobs: Vec<(Hash, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Opened {
    stager: String,
    /// Blobs to send, each from an offset (non-zero when a part was already received).
    need: Vec<(Hash, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Chunk {
    blob: Hash,
    size: u64,
    offset: u64,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChunkAck {
    blob: Hash,
    /// The offset the stager expects next for this blob.
    next: u64,
    /// The blob is complete, verified and in the store.
    stored: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Commit {
    id: RequestId,
    user: UserName,
    /// `None`: the manifest's `meta.address`.
    addr: Option<Address>,
    index: FileIndex,
}

/// What a committed push answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pushed {
    pub address: Address,
    pub bundle: BundleRef,
    /// Bytes actually sent (less than the bundle when the stager had some already).
    pub sent_bytes: u64,
    pub total_bytes: u64,
    pub files: u64,
}

type Answer<T> = Result<T, ApiError>;

/// Why a push failed for good (what was transient was retried until the deadline).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The stager refused the bundle or a chunk (bad input: pushing again will not help).
    #[error("the stager refused the push: {0}")]
    Refused(String),
    /// Transient failures went on past the deadline.
    #[error(
        "push did not complete within {}s; last: {last}. Is a stager running (`plotter2 up` runs one)? \
         Pushing again sends only what is missing.",
        .after.as_secs()
    )]
    Deadline { after: Duration, last: String },
    /// A file of the bundle could not be read while it was sent.
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An answer that does not decode: the stager speaks another protocol version.
    #[error("undecodable answer from a stager: {0}")]
    Protocol(#[from] protocol::ProtocolError),
    /// Subscribing to the push subjects failed (the stager side).
    #[error("subscribing to {subject}: {source}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
}

impl plotter2_node::retry::Classify for PushError {
    fn class(&self) -> plotter2_node::retry::ErrorClass {
        use plotter2_node::retry::ErrorClass::{Permanent, Transient};
        match self {
            PushError::Read { source, .. } => plotter2_node::retry::io_class(source),
            PushError::Subscribe { .. } => Transient,
            PushError::Refused(_) | PushError::Deadline { .. } | PushError::Protocol(_) => {
                Permanent
            }
        }
    }
}

fn encode<T: Serialize>(v: &T) -> Bytes {
    // Encoding our own plain structs cannot fail; an empty payload would be refused anyway.
    Bytes::from(protocol::encode(v).unwrap_or_default())
}

// ---------------------------------------------------------------------------------------
// Receiver (runs inside the stager).

/// Serves `open`, `commit` and this stager's chunks until the task is aborted.
pub async fn serve(client: Client, name: String, store: BlobStore, parts: PathBuf) {
    if let Err(e) = serve_inner(client, name, store, parts).await {
        tracing::error!(error = %e, "push receiver stopped");
    }
}

async fn serve_inner(
    client: Client,
    name: String,
    store: BlobStore,
    parts: PathBuf,
) -> Result<(), StagerError> {
    tokio::fs::create_dir_all(&parts)
        .await
        .map_err(StagerError::io(&parts))?;
    let nats = client.nats().clone();
    let nats_err = |subject: &str| {
        let subject = subject.to_owned();
        move |source| PushError::Subscribe { subject, source }
    };
    let mut opens = nats
        .queue_subscribe(OPEN_SUBJECT, QUEUE.into())
        .await
        .map_err(nats_err(OPEN_SUBJECT))?;
    let mut commits = nats
        .queue_subscribe(COMMIT_SUBJECT, QUEUE.into())
        .await
        .map_err(nats_err(COMMIT_SUBJECT))?;
    let chunks_subject = chunk_subject(&name);
    let mut chunks = nats
        .subscribe(chunks_subject.clone())
        .await
        .map_err(nats_err(&chunks_subject))?;
    let receiver = Arc::new(Receiver {
        name,
        store,
        parts,
        client,
    });
    loop {
        tokio::select! {
            Some(msg) = opens.next() => {
                let r = receiver.clone();
                tokio::spawn(async move { r.answer(msg, |b| r.open(b)).await });
            }
            Some(msg) = commits.next() => {
                let r = receiver.clone();
                tokio::spawn(async move { r.answer(msg, |b| r.commit(b)).await });
            }
            // Chunks are handled one at a time, in arrival order: a blob's chunks arrive in
            // the order they were published.
            Some(msg) = chunks.next() => {
                receiver.answer(msg, |b| receiver.chunk(b)).await;
            }
            else => return Ok(()),
        }
    }
}

struct Receiver {
    name: String,
    store: BlobStore,
    parts: PathBuf,
    client: Client,
}

impl Receiver {
    async fn answer<'a, T, F, Fut>(&'a self, msg: async_nats::Message, handle: F)
    where
        T: Serialize,
        F: FnOnce(Bytes) -> Fut,
        Fut: Future<Output = Answer<T>> + 'a,
    {
        let Some(reply) = msg.reply.clone() else {
            return;
        };
        let answer = handle(msg.payload).await;
        if let Err(e) = self.client.nats().publish(reply, encode(&answer)).await {
            tracing::warn!(error = %e, "could not answer a pusher");
        }
    }

    fn part_path(&self, blob: &Hash) -> PathBuf {
        self.parts.join(format!("{}.part", blob.hex()))
    }

    async fn open(&self, body: Bytes) -> Answer<Opened> {
        let open: Open = protocol::decode(&body)?;
        let need = futures::stream::iter(open.blobs)
            .map(|(blob, _size)| async move {
                let has = self
                    .store
                    .has_blob(&blob)
                    .await
                    .map_err(|e| internal(e.to_string()))?;
                if has {
                    return Ok::<_, ApiError>(None);
                }
                let from = tokio::fs::metadata(self.part_path(&blob))
                    .await
                    .map_or(0, |m| m.len());
                Ok(Some((blob, from)))
            })
            .buffered(16)
            .try_filter_map(|x| async move { Ok(x) })
            .try_collect::<Vec<_>>()
            .await?;
        Ok(Opened {
            stager: self.name.clone(),
            need,
        })
    }

    async fn chunk(&self, body: Bytes) -> Answer<ChunkAck> {
        let c: Chunk = protocol::decode(&body)?;
        let path = self.part_path(&c.blob);
        let end = c.offset + c.data.len() as u64;
        if end > c.size {
            return Err(ApiError::bad_request(format!(
                "chunk of {} ends at {end}, past its size {}",
                c.blob, c.size
            )));
        }
        let (blob, size, offset) = (c.blob, c.size, c.offset);
        let written = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)?;
                let have = f.metadata()?.len();
                if have != offset {
                    return Ok(have);
                }
                f.write_all_at(&c.data, offset)?;
                if end == size {
                    f.sync_all()?;
                }
                Ok(end)
            })
            .await
        };
        let next = match written {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(internal(format!("{}: {e}", path.display()))),
            Err(e) => return Err(internal(e.to_string())),
        };
        if next != end || end != size {
            return Ok(ChunkAck {
                blob,
                next,
                stored: false,
            });
        }
        // The blob is complete: the store verifies it as it takes it; drop the part.
        match self.store.put_file(&blob, &path, size, true).await {
            Ok(_) => {}
            Err(StoreError::Mismatch { got, .. }) => {
                let _ = tokio::fs::remove_file(&path).await;
                return Err(ApiError::bad_request(format!(
                    "the bytes sent for {blob} hash to {got}; the file changed while it was pushed — push again"
                )));
            }
            Err(e) => return Err(internal(e.to_string())),
        }
        self.store
            .sync()
            .await
            .map_err(|e| internal(e.to_string()))?;
        let _ = tokio::fs::remove_file(&path).await;
        Ok(ChunkAck {
            blob,
            next: size,
            stored: true,
        })
    }

    async fn commit(&self, body: Bytes) -> Answer<Pushed> {
        let c: Commit = protocol::decode(&body)?;
        let mut blobs: Vec<Hash> = c.index.files().iter().map(|f| f.blob).collect();
        blobs.sort();
        blobs.dedup();
        let missing: Vec<Hash> = futures::stream::iter(blobs)
            .map(|b| async move { (b, self.store.has_blob(&b).await) })
            .buffer_unordered(16)
            .filter_map(|(b, has)| async move { (!matches!(has, Ok(true))).then_some(b) })
            .collect()
            .await;
        if let Some(first) = missing.first() {
            return Err(ApiError::bad_request(format!(
                "{} blob(s) of the bundle are not in the store (first: {first}); push again to send them",
                missing.len()
            )));
        }
        let Some(entry) = c.index.get(MANIFEST) else {
            return Err(ApiError::bad_request(
                tree::Rejection::NoManifest.to_string(),
            ));
        };
        let bytes = self
            .store
            .get_blob(&entry.blob)
            .await
            .map_err(|e| internal(e.to_string()))?;
        let manifest =
            Manifest::from_json(&bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let addr = match (c.addr.as_ref(), &manifest.meta.address) {
            (Some(a), _) | (None, Some(a)) => a.clone(),
            (None, None) => {
                return Err(ApiError::bad_request(
                    tree::Rejection::NoAddress.to_string(),
                ));
            }
        };
        let as_user = Client::with_nats(self.client.nats().clone(), c.user);
        let op = Op::Write(WriteOp::Ingest {
            addr: addr.clone(),
            bundle: c.index.id(),
            index: c.index.clone(),
            manifest: Box::new(manifest),
        });
        match as_user.call_with_id(c.id, op).await {
            Ok(Reply::Written(r)) => match r.bundle {
                Some(bundle) => Ok(Pushed {
                    address: addr,
                    bundle,
                    sent_bytes: 0,
                    total_bytes: c.index.total_bytes(),
                    files: c.index.files().len() as u64,
                }),
                None => Err(internal("the coordinator's answer has no bundle version")),
            },
            Ok(other) => Err(internal(format!("unexpected answer to ingest: {other:?}"))),
            Err(ClientError::Api(e)) => Err(e),
            Err(e) => Err(ApiError::new(protocol::ErrorKind::NoQuorum, e.to_string())),
        }
    }
}

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(protocol::ErrorKind::Internal, message)
}

// ---------------------------------------------------------------------------------------
// Sender (the CLI).

/// Pushes the bundle folder `dir` to `addr` (or the manifest's `meta.address`) and returns
/// once the coordinator has committed it. Retries from `open` after a lost stager or a
/// disconnect until `deadline`: what a stager already has is not sent again. `progress`
/// hears the bundle's distinct blobs and how many of them the stager holds.
pub async fn push(
    client: &Client,
    dir: &Path,
    addr: Option<Address>,
    deadline: Duration,
    progress: &dyn Progress,
) -> Result<Pushed, StagerError> {
    let root = dir.to_owned();
    let override_addr = addr.clone();
    let scanned = blocking(move || {
        tree::scan(&root, override_addr.as_ref(), tree::default_threads()).map_err(Into::into)
    })
    .await?;
    let mut blobs: Vec<(Hash, u64, PathBuf)> = scanned
        .entries()
        .map(|(e, f)| (e.blob, e.size, f.fs_path.clone()))
        .collect();
    blobs.sort_by_key(|b| b.0);
    blobs.dedup_by(|a, b| a.0 == b.0);
    let id = RequestId::new();
    let start = Instant::now();
    let mut progress = Tally::new(&blobs, progress);
    let mut backoff = Duration::from_millis(200);
    loop {
        match attempt(
            client,
            &blobs,
            &scanned.index,
            addr.clone(),
            id,
            &mut progress,
        )
        .await
        {
            Ok(mut pushed) => {
                pushed.sent_bytes = progress.sent;
                return Ok(pushed);
            }
            Err(Attempt::Final(e)) => return Err(e),
            Err(Attempt::Retry(why)) => {
                if start.elapsed() + backoff > deadline {
                    return Err(PushError::Deadline {
                        after: deadline,
                        last: why,
                    }
                    .into());
                }
                tracing::warn!(%why, "push interrupted; resuming");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

enum Attempt {
    Retry(String),
    Final(StagerError),
}

async fn request<T: for<'de> Deserialize<'de>>(
    nats: &async_nats::Client,
    subject: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<T, Attempt> {
    let msg = tokio::time::timeout(timeout, nats.request(subject.to_owned(), body))
        .await
        .map_err(|_| Attempt::Retry(format!("no answer on {subject} within {timeout:?}")))?
        .map_err(|e| Attempt::Retry(format!("{subject}: {e}")))?;
    let answer: Answer<T> =
        protocol::decode(&msg.payload).map_err(|e| Attempt::Final(PushError::from(e).into()))?;
    answer.map_err(|e| {
        if e.kind.retryable() || e.kind == protocol::ErrorKind::Internal {
            Attempt::Retry(e.message)
        } else {
            Attempt::Final(PushError::Refused(e.message).into())
        }
    })
}

async fn attempt(
    client: &Client,
    blobs: &[(Hash, u64, PathBuf)],
    index: &FileIndex,
    addr: Option<Address>,
    id: RequestId,
    progress: &mut Tally<'_>,
) -> Result<Pushed, Attempt> {
    let nats = client.nats();
    let open = Open {
        blobs: blobs.iter().map(|(h, s, _)| (*h, *s)).collect(),
    };
    let opened: Opened = request(nats, OPEN_SUBJECT, encode(&open), OPEN_TIMEOUT).await?;
    progress.opened(blobs, &opened.need);
    let chunk_size = (nats.server_info().max_payload.saturating_sub(4096)).clamp(4096, MAX_CHUNK);
    for (blob, from) in &opened.need {
        let Some((_, size, path)) = blobs.iter().find(|(h, _, _)| h == blob) else {
            continue;
        };
        send_blob(
            nats,
            &opened.stager,
            *blob,
            *size,
            *from,
            path,
            chunk_size,
            progress,
        )
        .await?;
    }
    let commit = Commit {
        id,
        user: client.user().clone(),
        addr,
        index: index.clone(),
    };
    request(nats, COMMIT_SUBJECT, encode(&commit), COMMIT_TIMEOUT).await
}

/// Sends one blob from `from`, keeping at most [`WINDOW`] chunks unacknowledged.
#[allow(clippy::too_many_arguments)]
async fn send_blob(
    nats: &async_nats::Client,
    stager: &str,
    blob: Hash,
    size: u64,
    from: u64,
    path: &Path,
    chunk_size: usize,
    progress: &mut Tally<'_>,
) -> Result<(), Attempt> {
    let retry = |e: &dyn std::fmt::Display| Attempt::Retry(e.to_string());
    let inbox = nats.new_inbox();
    let mut acks = nats.subscribe(inbox.clone()).await.map_err(|e| retry(&e))?;
    let unreadable = |source| {
        Attempt::Final(
            PushError::Read {
                path: path.to_owned(),
                source,
            }
            .into(),
        )
    };
    let file = Arc::new(std::fs::File::open(path).map_err(unreadable)?);
    let subject = chunk_subject(stager);
    let mut offset = from;
    // The offset each unacknowledged chunk ends at, oldest first.
    let mut expected = std::collections::VecDeque::new();
    let mut acked = from;
    let mut broken = None;
    if size == 0 {
        // An empty blob is one empty chunk.
        expected.push_back(0);
        let c = Chunk {
            blob,
            size,
            offset: 0,
            data: Vec::new(),
        };
        nats.publish_with_reply(subject.clone(), inbox.clone(), encode(&c))
            .await
            .map_err(|e| retry(&e))?;
    }
    loop {
        while broken.is_none() && expected.len() < WINDOW && offset < size {
            let len = chunk_size.min((size - offset) as usize);
            let f = file.clone();
            let at = offset;
            let data = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; len];
                f.read_exact_at(&mut buf, at).map(|()| buf)
            })
            .await
            .map_err(|e| retry(&e))?
            .map_err(unreadable)?;
            let c = Chunk {
                blob,
                size,
                offset,
                data,
            };
            nats.publish_with_reply(subject.clone(), inbox.clone(), encode(&c))
                .await
                .map_err(|e| retry(&e))?;
            offset += len as u64;
            expected.push_back(offset);
        }
        let Some(want) = expected.pop_front() else {
            return match broken {
                // The stager holds a different prefix (it restarted, or another pusher sent
                // the same blob): open again to learn where to resume.
                Some(next) => Err(Attempt::Retry(format!(
                    "stager expects {blob} from offset {next}"
                ))),
                None => Ok(()),
            };
        };
        let msg = tokio::time::timeout(ack_timeout(want, size), acks.next())
            .await
            .map_err(|_| Attempt::Retry(format!("stager {stager} stopped acknowledging")))?
            .ok_or_else(|| Attempt::Retry("acknowledgements ended".into()))?;
        if msg
            .status
            .is_some_and(|s| s == async_nats::StatusCode::NO_RESPONDERS)
        {
            return Err(Attempt::Retry(format!("stager {stager} is gone")));
        }
        let ack: Answer<ChunkAck> = protocol::decode(&msg.payload)
            .map_err(|e| Attempt::Final(PushError::from(e).into()))?;
        let ack = ack.map_err(|e| {
            if e.kind == protocol::ErrorKind::BadRequest {
                Attempt::Final(PushError::Refused(e.message).into())
            } else {
                Attempt::Retry(e.message)
            }
        })?;
        if ack.next > acked {
            progress.sent(ack.next - acked, false);
            acked = ack.next;
        }
        if ack.stored {
            progress.sent(0, true);
            return Ok(());
        }
        if ack.next != want {
            broken = Some(ack.next);
        }
    }
}

/// Bytes sent, and how much of the bundle's distinct blobs the stager holds, which is what
/// the caller's [`Progress`] hears.
struct Tally<'a> {
    sent: u64,
    held_files: u64,
    held_bytes: u64,
    out: &'a dyn Progress,
}

impl<'a> Tally<'a> {
    fn new(blobs: &[(Hash, u64, PathBuf)], out: &'a dyn Progress) -> Self {
        out.length(blobs.len() as u64, blobs.iter().map(|b| b.1).sum());
        Self {
            sent: 0,
            held_files: 0,
            held_bytes: 0,
            out,
        }
    }

    /// A stager answered `open`: it holds everything but `need` (`blobs` is sorted by hash).
    fn opened(&mut self, blobs: &[(Hash, u64, PathBuf)], need: &[(Hash, u64)]) {
        let missing: u64 = need
            .iter()
            .filter_map(|(h, from)| {
                let i = blobs.binary_search_by_key(h, |b| b.0).ok()?;
                Some(blobs[i].1.saturating_sub(*from))
            })
            .sum();
        let total: u64 = blobs.iter().map(|b| b.1).sum();
        self.held_files = (blobs.len() - need.len().min(blobs.len())) as u64;
        self.held_bytes = total.saturating_sub(missing);
        self.out.position(self.held_files, self.held_bytes);
    }

    /// `bytes` more were acknowledged; `stored`: a whole blob is in the store.
    fn sent(&mut self, bytes: u64, stored: bool) {
        self.sent += bytes;
        self.held_bytes += bytes;
        self.held_files += u64::from(stored);
        self.out.position(self.held_files, self.held_bytes);
    }
}
