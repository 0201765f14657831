//! The pusher's end (the CLI): scan the folder, open, send what the store lacks, commit.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use plotter2_node::client::Client;
use plotter2_node::progress::Progress;
use plotter2_node::tree;

use super::*;
use crate::StagerError;
use crate::pipeline::blocking;

/// One distinct blob of the bundle, and where its bytes are.
struct Blob {
    hash: Hash,
    size: u64,
    source: Source,
}

/// A path or a shared buffer: cheap to clone either way.
#[derive(Clone)]
enum Source {
    File(PathBuf),
    /// The bundle's file index, which exists only in memory.
    Memory(Bytes),
}

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
    let started = Instant::now();
    let root = dir.to_owned();
    let override_addr = addr.clone();
    let (index, blobs) = blocking(move || {
        let scanned = tree::scan(&root, override_addr.as_ref(), tree::default_threads())?;
        let text = Bytes::from(scanned.index.canonical());
        let index = Blob {
            // The id is the hash of this text: hash it rather than format it again.
            hash: Hash::of(&text),
            size: text.len() as u64,
            source: Source::Memory(text),
        };
        let mut blobs: Vec<Blob> = scanned
            .index
            .files()
            .iter()
            .map(|e| Blob {
                hash: e.blob,
                size: e.size,
                source: Source::File(scanned.file_path(e)),
            })
            .collect();
        blobs.sort_unstable_by_key(|b| b.hash);
        blobs.dedup_by_key(|b| b.hash);
        Ok((index, blobs))
    })
    .await?;
    tracing::debug!(blobs = blobs.len(), took = ?started.elapsed(), "push: folder scanned");
    let id = RequestId::new();
    let start = Instant::now();
    let mut tally = Tally::new(&blobs, progress);
    let mut backoff = Duration::from_millis(200);
    loop {
        match attempt(client, &index, &blobs, addr.clone(), id, &mut tally).await {
            Ok(mut pushed) => {
                pushed.sent_bytes = tally.sent;
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

fn retry(e: impl std::fmt::Display) -> Attempt {
    Attempt::Retry(e.to_string())
}

/// A refusal is final; anything else the stager answers is worth another attempt.
fn judged(e: ApiError) -> Attempt {
    if e.kind.retryable() || e.kind == protocol::ErrorKind::Internal {
        Attempt::Retry(e.message)
    } else {
        Attempt::Final(PushError::Refused(e.message).into())
    }
}

async fn request<T: for<'de> Deserialize<'de>>(
    nats: &async_nats::Client,
    subject: &str,
    body: Bytes,
    timeout: Duration,
) -> Result<T, Attempt> {
    // The push's open and commit carry its trace, so the stager's ingest joins it.
    let mut headers = async_nats::HeaderMap::new();
    plotter2_node::telemetry::inject_context(&mut headers);
    let msg = tokio::time::timeout(
        timeout,
        nats.request_with_headers(subject.to_owned(), headers, body),
    )
    .await
    .map_err(|_| Attempt::Retry(format!("no answer on {subject} within {timeout:?}")))?
    .map_err(|e| Attempt::Retry(format!("{subject}: {e}")))?;
    let answer: Answer<T> =
        protocol::decode(&msg.payload).map_err(|e| Attempt::Final(PushError::from(e).into()))?;
    answer.map_err(judged)
}

async fn attempt(
    client: &Client,
    index: &Blob,
    blobs: &[Blob],
    addr: Option<Address>,
    id: RequestId,
    tally: &mut Tally<'_>,
) -> Result<Pushed, Attempt> {
    let nats = client.nats();
    let chunk_size = (nats.server_info().max_payload.saturating_sub(4096)).clamp(4096, MAX_CHUNK);
    let open = encode(&Open { bundle: index.hash });
    let mut opened: Opened = request(nats, OPEN_SUBJECT, open.clone(), OPEN_TIMEOUT).await?;
    if let Some(from) = opened.index_from {
        send(nats, &opened.stager, vec![(index, from)], chunk_size, None).await?;
        opened = request(nats, OPEN_SUBJECT, open, OPEN_TIMEOUT).await?;
        if opened.index_from.is_some() {
            return Err(Attempt::Retry(format!(
                "the store still lacks the file index {} after it was sent",
                index.hash
            )));
        }
    }
    let partial: HashMap<u32, u64> = opened.partial.iter().copied().collect();
    let todo: Vec<(&Blob, u64)> = blobs
        .iter()
        .enumerate()
        .filter(|(i, _)| bit(&opened.need, *i))
        .map(|(i, b)| {
            let from = u32::try_from(i)
                .ok()
                .and_then(|i| partial.get(&i))
                .copied()
                .unwrap_or(0);
            (b, from)
        })
        .collect();
    tally.opened(blobs, &todo);
    let t = Instant::now();
    let n = todo.len();
    send(nats, &opened.stager, todo, chunk_size, Some(tally)).await?;
    tracing::debug!(blobs = n, took = ?t.elapsed(), "push: blobs sent");
    let t = Instant::now();
    let commit = Commit {
        id,
        user: client.user().clone(),
        addr,
        bundle: index.hash,
    };
    let pushed = request(nats, COMMIT_SUBJECT, encode(&commit), COMMIT_TIMEOUT).await;
    tracing::debug!(took = ?t.elapsed(), "push: committed");
    pushed
}

/// What one data message carries.
enum Plan<'a> {
    Pack(Vec<&'a Blob>),
    Chunk {
        blob: &'a Blob,
        offset: u64,
        len: usize,
    },
}

/// What the acknowledgement of a data message must say, and what it tells the progress.
struct Expect {
    /// A chunk: its blob and the offset it ends at.
    chunk: Option<(Hash, u64)>,
    bytes: u64,
    /// Blobs the message completes.
    files: u64,
    /// Bytes the stager verifies and stores before it acknowledges.
    storing: u64,
}

/// Wire bytes a packed blob costs beside its data (its hash as text, the framing).
const PACK_OVERHEAD: usize = 128;

/// Groups small blobs into packs and cuts large ones (and those partly sent) into chunks.
fn plan(todo: Vec<(&Blob, u64)>, chunk_size: usize) -> Vec<Plan<'_>> {
    let pack_max = (chunk_size / PACK_FRACTION) as u64;
    let mut plans = Vec::new();
    let (mut pack, mut pack_bytes) = (Vec::new(), 0usize);
    for (blob, from) in todo {
        if from == 0 && blob.size <= pack_max {
            let cost = blob.size as usize + PACK_OVERHEAD;
            if pack_bytes + cost > chunk_size || pack.len() >= PACK_BLOBS {
                plans.push(Plan::Pack(std::mem::take(&mut pack)));
                pack_bytes = 0;
            }
            pack.push(blob);
            pack_bytes += cost;
            continue;
        }
        let mut offset = from;
        while offset < blob.size {
            let len = chunk_size.min((blob.size - offset) as usize);
            plans.push(Plan::Chunk { blob, offset, len });
            offset += len as u64;
        }
    }
    if !pack.is_empty() {
        plans.push(Plan::Pack(pack));
    }
    plans
}

fn read_at(source: &Source, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    match source {
        Source::File(path) => {
            let mut buf = vec![0u8; len];
            std::fs::File::open(path)?.read_exact_at(&mut buf, offset)?;
            Ok(buf)
        }
        Source::Memory(bytes) => {
            let start = usize::try_from(offset).unwrap_or(usize::MAX);
            bytes
                .get(start..start.saturating_add(len))
                .map(<[u8]>::to_vec)
                .ok_or_else(|| std::io::ErrorKind::UnexpectedEof.into())
        }
    }
}

fn unreadable(source: &Source) -> impl Fn(std::io::Error) -> Attempt + '_ {
    move |e| {
        let path = match source {
            Source::File(p) => p.clone(),
            Source::Memory(_) => PathBuf::from("(the bundle's file index)"),
        };
        Attempt::Final(PushError::Read { path, source: e }.into())
    }
}

/// Reads and encodes the `seq`th data message (off the runtime).
async fn load(seq: u64, plan: Plan<'_>) -> Result<(Bytes, Expect), Attempt> {
    match plan {
        Plan::Pack(blobs) => {
            let jobs: Vec<(Hash, u64, Source)> = blobs
                .iter()
                .map(|b| (b.hash, b.size, b.source.clone()))
                .collect();
            let files = jobs.len() as u64;
            let bytes = jobs.iter().map(|j| j.1).sum();
            let read = tokio::task::spawn_blocking(move || {
                jobs.iter()
                    .map(|(blob, size, source)| {
                        let len = usize::try_from(*size).unwrap_or(usize::MAX);
                        read_at(source, 0, len)
                            .map(|data| Packed { blob: *blob, data })
                            .map_err(|e| (source.clone(), e))
                    })
                    .collect::<Result<Vec<Packed>, _>>()
            })
            .await
            .map_err(retry)?;
            let packed = read.map_err(|(source, e)| unreadable(&source)(e))?;
            let body = encode(&Data::Pack { seq, blobs: packed });
            Ok((
                body,
                Expect {
                    chunk: None,
                    bytes,
                    files,
                    storing: bytes,
                },
            ))
        }
        Plan::Chunk { blob, offset, len } => {
            let source = blob.source.clone();
            let data = tokio::task::spawn_blocking(move || read_at(&source, offset, len))
                .await
                .map_err(retry)?
                .map_err(unreadable(&blob.source))?;
            let end = offset + len as u64;
            let last = end == blob.size;
            let body = encode(&Data::Chunk {
                seq,
                blob: blob.hash,
                size: blob.size,
                offset,
                data,
            });
            Ok((
                body,
                Expect {
                    chunk: Some((blob.hash, end)),
                    bytes: len as u64,
                    files: u64::from(last),
                    storing: if last { blob.size } else { len as u64 },
                },
            ))
        }
    }
}

/// Messages read ahead of the window.
const READ_AHEAD: usize = 4;

/// Sends `todo` (each blob from its offset) to `stager`, keeping at most [`WINDOW`] data
/// messages unacknowledged. `tally`, when given, hears what the stager acknowledged.
async fn send(
    nats: &async_nats::Client,
    stager: &str,
    todo: Vec<(&Blob, u64)>,
    chunk_size: usize,
    mut tally: Option<&mut Tally<'_>>,
) -> Result<(), Attempt> {
    let plans = plan(todo, chunk_size);
    if plans.is_empty() {
        return Ok(());
    }
    let inbox = nats.new_inbox();
    let mut acks = nats.subscribe(inbox.clone()).await.map_err(retry)?;
    let subject = data_subject(stager);
    let mut loaded = futures::stream::iter(plans.into_iter().zip(0u64..))
        .map(|(plan, seq)| async move { load(seq, plan).await.map(|l| (seq, l)) })
        .buffered(READ_AHEAD);
    let mut outstanding: HashMap<u64, Expect> = HashMap::new();
    let mut exhausted = false;
    loop {
        while !exhausted && outstanding.len() < WINDOW {
            match loaded.next().await {
                None => exhausted = true,
                Some(l) => {
                    let (seq, (body, expect)) = l?;
                    nats.publish_with_reply(subject.clone(), inbox.clone(), body)
                        .await
                        .map_err(retry)?;
                    outstanding.insert(seq, expect);
                }
            }
        }
        if outstanding.is_empty() {
            return Ok(());
        }
        let storing = outstanding.values().map(|e| e.storing).max().unwrap_or(0);
        let msg = tokio::time::timeout(ack_timeout(storing), acks.next())
            .await
            .map_err(|_| Attempt::Retry(format!("stager {stager} stopped acknowledging")))?
            .ok_or_else(|| Attempt::Retry("acknowledgements ended".into()))?;
        if msg
            .status
            .is_some_and(|s| s == async_nats::StatusCode::NO_RESPONDERS)
        {
            return Err(Attempt::Retry(format!("stager {stager} is gone")));
        }
        let ack: Answer<DataAck> = protocol::decode(&msg.payload)
            .map_err(|e| Attempt::Final(PushError::from(e).into()))?;
        let ack = ack.map_err(|e| {
            if e.kind == protocol::ErrorKind::BadRequest {
                Attempt::Final(PushError::Refused(e.message).into())
            } else {
                Attempt::Retry(e.message)
            }
        })?;
        // An acknowledgement of an earlier attempt's message is not ours.
        let Some(expect) = outstanding.remove(&ack.seq) else {
            continue;
        };
        if let Some((blob, end)) = expect.chunk
            && ack.next != end
        {
            // The stager holds a different prefix (it restarted, or another pusher sent the
            // same blob): open again to learn where to resume.
            return Err(Attempt::Retry(format!(
                "stager expects {blob} from offset {}",
                ack.next
            )));
        }
        if let Some(t) = tally.as_deref_mut() {
            t.sent(expect.bytes, if ack.stored { expect.files } else { 0 });
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
    fn new(blobs: &[Blob], out: &'a dyn Progress) -> Self {
        out.length(blobs.len() as u64, blobs.iter().map(|b| b.size).sum());
        Self {
            sent: 0,
            held_files: 0,
            held_bytes: 0,
            out,
        }
    }

    /// A stager answered `open`: it holds everything but `todo` (less what it has of each).
    fn opened(&mut self, blobs: &[Blob], todo: &[(&Blob, u64)]) {
        let missing: u64 = todo
            .iter()
            .map(|(b, from)| b.size.saturating_sub(*from))
            .sum();
        let total: u64 = blobs.iter().map(|b| b.size).sum();
        self.held_files = (blobs.len() - todo.len().min(blobs.len())) as u64;
        self.held_bytes = total.saturating_sub(missing);
        self.out.position(self.held_files, self.held_bytes);
    }

    /// `bytes` more were acknowledged, and `files` more blobs are whole in the store.
    fn sent(&mut self, bytes: u64, files: u64) {
        self.sent += bytes;
        self.held_bytes += bytes;
        self.held_files += files;
        self.out.position(self.held_files, self.held_bytes);
    }
}
