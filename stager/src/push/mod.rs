//! `plotter2 push`: a bundle folder streamed to a stager over NATS, both ends.
//!
//! The protocol is content-addressed, so it resumes by itself, and no message grows with the
//! bundle: a bundle of a million files travels in messages of at most one chunk.
//! 1. `open {bundle}` (any stager, queue group). The bundle's file index is a blob whose hash
//!    is the bundle id; when the store lacks it, the answer says so (and from which offset a
//!    part of it was received), the pusher sends it like any blob, and opens again. Once the
//!    index is stored, the answer is a bitmap over the bundle's distinct blobs in hash order:
//!    which ones the store lacks, and for those partly received, from which offset.
//! 2. Data to that stager's own subject: small blobs whole, many in one `pack`; large ones in
//!    `chunk`s, in order. At most [`WINDOW`] messages are unacknowledged (flow control, and
//!    bounded memory on both sides). A pack is acknowledged once its blobs are verified and
//!    stored, the last chunk of a blob once the blob is.
//! 3. `commit {bundle}` (any stager): reads the stored index, checks every blob is in the
//!    store, reads the manifest from the stored `manifest.json`, and commits the `ingest` (id
//!    and counts, not the index) under the pusher's request id and user. The answer comes only
//!    after the coordinator committed.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use plotter2_node::Address;
use plotter2_node::bundle::{FileIndex, Hash};
use plotter2_node::protocol::{self, ApiError, BundleRef, RequestId, UserName};
use serde::{Deserialize, Serialize};

mod receive;
mod send;

pub use receive::serve;
pub use send::push;

pub const OPEN_SUBJECT: &str = "p2.stager.push.open";
pub const COMMIT_SUBJECT: &str = "p2.stager.push.commit";
/// Queue group of every stager: `open` and `commit` go to any one of them.
pub const QUEUE: &str = "p2-stagers";
/// Part files of blobs being received, under the spool.
pub const PARTS_DIR: &str = ".push";
/// Largest data message; smaller when the server's `max_payload` is.
const MAX_CHUNK: usize = 4 * 1024 * 1024;
/// Blobs up to this fraction of a data message travel whole in packs.
const PACK_FRACTION: usize = 4;
/// Most blobs in one pack (each costs a file on the stager's side).
const PACK_BLOBS: usize = 1024;
/// Data messages published and not yet acknowledged, per push.
const WINDOW: usize = 12;
/// Stager tasks that store data messages; a blob's chunks always go to the same one, in order.
const LANES: usize = 4;
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a data message may wait for its acknowledgement, plus the time to store what it
/// completes at 20 MB/s, the slowest store we expect (see [`ack_timeout`]).
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
const COMMIT_TIMEOUT: Duration = Duration::from_secs(120);

fn ack_timeout(storing: u64) -> Duration {
    ACK_TIMEOUT + Duration::from_secs(storing / 20_000_000)
}

fn data_subject(stager: &str) -> String {
    format!("p2.stager.{stager}.chunk")
}

/// The bundle's distinct blobs with their sizes, in hash order: what `open`'s bitmap is over.
fn distinct_blobs(index: &FileIndex) -> Vec<(Hash, u64)> {
    let mut blobs: Vec<(Hash, u64)> = index.files().iter().map(|f| (f.blob, f.size)).collect();
    blobs.sort_unstable_by_key(|b| b.0);
    blobs.dedup_by_key(|b| b.0);
    blobs
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Open {
    bundle: Hash,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Opened {
    stager: String,
    /// The store lacks the bundle's index: send it (from this offset) and open again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    index_from: Option<u64>,
    /// One bit per distinct blob in hash order (bit `i % 8` of byte `i / 8`): set when the
    /// store lacks it.
    #[serde(with = "serde_bytes")]
    need: Vec<u8>,
    /// Needed blobs of which this stager holds a part: (position, bytes received).
    partial: Vec<(u32, u64)>,
}

fn bit(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// One data message: a pack of whole small blobs, or a chunk of a large one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Data {
    Pack {
        seq: u64,
        blobs: Vec<Packed>,
    },
    Chunk {
        seq: u64,
        blob: Hash,
        size: u64,
        offset: u64,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Packed {
    blob: Hash,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DataAck {
    seq: u64,
    /// For a chunk: the offset the stager expects next for its blob.
    next: u64,
    /// Everything the message completes is verified and in the store.
    stored: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Commit {
    id: RequestId,
    user: UserName,
    /// `None`: the manifest's `meta.address`.
    addr: Option<Address>,
    bundle: Hash,
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

fn internal(message: impl Into<String>) -> ApiError {
    ApiError::new(protocol::ErrorKind::Internal, message)
}
