//! Raft RPC between coordinators over plain TCP.
//!
//! A frame is a 4-byte big-endian payload length, a kind byte ([`Kind`]), then the payload:
//! a versioned rmp-serde envelope (the same [`plotter2_node::protocol`] encoding as the bus).
//! Each kind has its own size limit, checked on the header before the payload is read, and
//! the read buffer grows only as bytes arrive: a header claiming a huge frame ends the
//! connection at once and costs nothing, and a slow sender costs only what it sent.
//!
//! Snapshots travel in chunks ([`DEFAULT_SNAPSHOT_CHUNK`], one RPC each on one connection,
//! put together by the receiver), so a registry of any size reaches a follower. A batch of
//! log entries larger than [`DEFAULT_APPEND_PART`] goes as consecutive appends, and an RPC's
//! deadline grows with its size.
//!
//! One connection per (peer, openraft client), one RPC in flight on it. A failed connection is
//! dropped and reported as `Unreachable` so openraft backs off; the next RPC reconnects.

use std::future::Future;
use std::io::{self, Cursor};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend};
use plotter2_node::protocol;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Decoder, Encoder, Framed};

use crate::state_machine::Raft;
use crate::types::{Entry, LogId, NodeId, SnapshotMeta, TypeConfig, Vote};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Snapshot bytes per chunk unless the environment says otherwise.
pub const DEFAULT_SNAPSHOT_CHUNK: usize = 4 * MIB;
/// The largest chunk a frame carries (and so the largest [`SNAPSHOT_CHUNK_ENV`] accepted).
pub const MAX_SNAPSHOT_CHUNK: usize = 8 * MIB;
/// Environment variable (tests only): snapshot bytes per chunk, 1 to [`MAX_SNAPSHOT_CHUNK`].
pub const SNAPSHOT_CHUNK_ENV: &str = "P2_COORD_SNAPSHOT_CHUNK";

/// An append frame may carry one entry as large as NATS lets a request be (64 MiB at most).
const MAX_APPEND_FRAME: usize = 128 * MIB;
/// Appends larger than this are split into several, each about this size or one entry.
pub const DEFAULT_APPEND_PART: usize = 8 * MIB;
/// Environment variable (tests only): the append part size in bytes, at least 1.
pub const APPEND_PART_ENV: &str = "P2_COORD_APPEND_PART";
/// The slowest a peer may take in a frame, decode, store and answer it: each RPC may take
/// this much longer than openraft's deadline for it (one heartbeat for an append), or a
/// large entry could never reach a follower in time and would be sent again forever.
const SLOWEST_BYTES_PER_SEC: f64 = 4.0 * MIB as f64;
/// Votes, leader transfers and every reply: small fixed-size structures.
const MAX_SMALL_FRAME: usize = 64 * KIB;
/// A refusal's text is cut to this, so a reply always fits its frame.
const MAX_REFUSAL: usize = 16 * KIB;
const HEADER: usize = 5;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What a frame carries; decides its size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Kind {
    Append = 1,
    Vote = 2,
    SnapshotChunk = 3,
    TransferLeader = 4,
    Reply = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Self> {
        [
            Kind::Append,
            Kind::Vote,
            Kind::SnapshotChunk,
            Kind::TransferLeader,
            Kind::Reply,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }

    fn max_len(self) -> usize {
        match self {
            Kind::Append => MAX_APPEND_FRAME,
            // The chunk plus its vote and meta (the membership: small).
            Kind::SnapshotChunk => MAX_SNAPSHOT_CHUNK + MAX_SMALL_FRAME,
            Kind::Vote | Kind::TransferLeader | Kind::Reply => MAX_SMALL_FRAME,
        }
    }
}

/// The largest frame of any kind: longer claims are refused before the kind byte is read.
const MAX_FRAME: usize = MAX_APPEND_FRAME;

/// Frames as described in the module docs.
#[derive(Default)]
struct FrameCodec;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Decoder for FrameCodec {
    type Item = (Kind, BytesMut);
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Self::Item>> {
        let Some(len) = src.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_FRAME {
            return Err(invalid(format!(
                "a frame of {len} bytes is over the limit of {MAX_FRAME}"
            )));
        }
        let Some(&kind) = src.get(4) else {
            return Ok(None);
        };
        let kind =
            Kind::from_byte(kind).ok_or_else(|| invalid(format!("unknown frame kind {kind}")))?;
        if len > kind.max_len() {
            return Err(invalid(format!(
                "a {kind:?} frame of {len} bytes is over its limit of {}",
                kind.max_len()
            )));
        }
        // No reserve for the whole payload: the buffer grows with what actually arrives.
        if src.len() < HEADER + len {
            return Ok(None);
        }
        src.advance(HEADER);
        Ok(Some((kind, src.split_to(len))))
    }
}

impl Encoder<(Kind, Bytes)> for FrameCodec {
    type Error = io::Error;

    fn encode(&mut self, (kind, payload): (Kind, Bytes), dst: &mut BytesMut) -> io::Result<()> {
        if payload.len() > kind.max_len() {
            return Err(invalid(format!(
                "a {kind:?} frame of {} bytes is over its limit of {}",
                payload.len(),
                kind.max_len()
            )));
        }
        dst.reserve(HEADER + payload.len());
        dst.put_u32(payload.len() as u32);
        dst.put_u8(kind as u8);
        dst.extend_from_slice(&payload);
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct SnapshotChunk {
    vote: Vote,
    meta: SnapshotMeta,
    /// Where `data` starts in the snapshot, and the snapshot's whole length.
    offset: u64,
    total: u64,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
enum RaftRpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    Snapshot(SnapshotChunk),
    TransferLeader(TransferLeaderRequest<TypeConfig>),
}

impl RaftRpc {
    fn kind(&self) -> Kind {
        match self {
            RaftRpc::Append(_) => Kind::Append,
            RaftRpc::Vote(_) | RaftRpc::PreVote(_) => Kind::Vote,
            RaftRpc::Snapshot(_) => Kind::SnapshotChunk,
            RaftRpc::TransferLeader(_) => Kind::TransferLeader,
        }
    }
}

#[derive(Serialize, Deserialize)]
enum RaftReply {
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    /// A snapshot chunk that was not the last arrived; the receiver holds this many bytes.
    SnapshotChunk {
        received: u64,
    },
    Snapshot(SnapshotResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    /// The peer could not serve the RPC (shutting down, or the request was malformed).
    Refused(String),
}

fn refused(e: &dyn std::fmt::Display) -> RaftReply {
    let mut text = e.to_string();
    if text.len() > MAX_REFUSAL {
        let mut cut = MAX_REFUSAL;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    RaftReply::Refused(text)
}

/// Makes [`PeerClient`]s for openraft.
#[derive(Clone)]
pub struct Network {
    snapshot_chunk: usize,
    append_part: usize,
}

impl Network {
    /// `snapshot_chunk` is clamped to 1 to [`MAX_SNAPSHOT_CHUNK`], `append_part` to at
    /// least 1 byte (an append part always holds at least one entry).
    pub fn new(snapshot_chunk: usize, append_part: usize) -> Self {
        Self {
            snapshot_chunk: snapshot_chunk.clamp(1, MAX_SNAPSHOT_CHUNK),
            append_part: append_part.max(1),
        }
    }
}

impl Default for Network {
    fn default() -> Self {
        Self::new(DEFAULT_SNAPSHOT_CHUNK, DEFAULT_APPEND_PART)
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            conn: None,
            snapshot_chunk: self.snapshot_chunk,
            append_part: self.append_part,
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    conn: Option<Framed<TcpStream, FrameCodec>>,
    snapshot_chunk: usize,
    append_part: usize,
}

impl PeerClient {
    async fn call(
        &mut self,
        rpc: &RaftRpc,
        ttl: Duration,
    ) -> Result<RaftReply, RPCError<TypeConfig>> {
        let payload = encode_rpc(rpc)?;
        self.call_encoded(rpc.kind(), payload, ttl).await
    }

    async fn call_encoded(
        &mut self,
        kind: Kind,
        payload: Vec<u8>,
        ttl: Duration,
    ) -> Result<RaftReply, RPCError<TypeConfig>> {
        if payload.len() > kind.max_len() {
            // Not the connection's fault: say so instead of reconnecting in a loop silently.
            tracing::error!(
                target = self.target,
                "a {kind:?} RPC of {} bytes is over its frame limit of {}",
                payload.len(),
                kind.max_len()
            );
            return Err(RPCError::Network(NetworkError::from_string(format!(
                "a {kind:?} RPC of {} bytes is over its frame limit of {}",
                payload.len(),
                kind.max_len()
            ))));
        }
        let ttl = ttl + Duration::from_secs_f64(payload.len() as f64 / SLOWEST_BYTES_PER_SEC);
        match tokio::time::timeout(ttl, self.exchange(kind, Bytes::from(payload))).await {
            Ok(Ok(reply)) => match reply {
                RaftReply::Refused(why) => Err(RPCError::Unreachable(Unreachable::from_string(
                    format!("coordinator {} refused: {why}", self.target),
                ))),
                other => Ok(other),
            },
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                // The answer may still arrive on this connection: never reuse it.
                self.conn = None;
                Err(RPCError::Unreachable(Unreachable::from_string(format!(
                    "coordinator {} at {} did not answer within {ttl:?}",
                    self.target, self.addr
                ))))
            }
        }
    }

    async fn exchange(
        &mut self,
        kind: Kind,
        payload: Bytes,
    ) -> Result<RaftReply, RPCError<TypeConfig>> {
        let unreachable = |what: String| RPCError::Unreachable(Unreachable::from_string(what));
        if self.conn.is_none() {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
                .await
                .map_err(|_| unreachable(format!("connect to {} timed out", self.addr)))?
                .map_err(|e| unreachable(format!("connect to {}: {e}", self.addr)))?;
            let _ = stream.set_nodelay(true);
            self.conn = Some(Framed::new(stream, FrameCodec));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(unreachable("no connection".into()));
        };
        conn.send((kind, payload))
            .await
            .map_err(|e| unreachable(format!("send to {}: {e}", self.addr)))?;
        let (kind, frame) = conn
            .next()
            .await
            .ok_or_else(|| unreachable(format!("{} closed the connection", self.addr)))?
            .map_err(|e| unreachable(format!("read from {}: {e}", self.addr)))?;
        if kind != Kind::Reply {
            return Err(unreachable(format!(
                "{} answered with a {kind:?} frame",
                self.addr
            )));
        }
        protocol::decode(&frame).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    /// Sends an append too large for one frame as consecutive appends of about
    /// `append_part` bytes each. When a later part fails, the earlier ones count: openraft hears
    /// a partial success up to the last entry the follower took.
    async fn append_in_parts(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        ttl: Duration,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let AppendEntriesRequest {
            vote,
            prev_log_id,
            entries,
            leader_commit,
        } = rpc;
        let parts = split_entries(entries, self.append_part)?;
        let count = parts.len();
        tracing::info!(
            target = self.target,
            parts = count,
            "sending a large append in parts"
        );
        let mut prev = prev_log_id;
        for (i, part) in parts.into_iter().enumerate() {
            let last: Option<LogId> = part.last().map(|e| e.log_id);
            // Until the last part a follower cannot know the leader's later entries.
            let commit = if i + 1 == count {
                leader_commit
            } else {
                std::cmp::min(leader_commit, last)
            };
            let req = AppendEntriesRequest {
                vote,
                prev_log_id: prev,
                entries: part,
                leader_commit: commit,
            };
            let reply = self.call(&RaftRpc::Append(req), ttl).await;
            match reply {
                Ok(RaftReply::Append(AppendEntriesResponse::Success)) => prev = last,
                Ok(RaftReply::Append(r @ AppendEntriesResponse::HigherVote(_))) => return Ok(r),
                Ok(RaftReply::Append(r)) if i == 0 => return Ok(r),
                Ok(RaftReply::Append(_)) => {
                    return Ok(AppendEntriesResponse::PartialSuccess(prev));
                }
                Ok(_) => return Err(wrong_reply(self.target)),
                Err(e) if i == 0 => return Err(e),
                Err(e) => {
                    tracing::debug!(target = self.target, "append part {i} failed: {e}");
                    return Ok(AppendEntriesResponse::PartialSuccess(prev));
                }
            }
        }
        Ok(AppendEntriesResponse::Success)
    }
}

/// Groups entries into parts of about `part_bytes` encoded bytes (at least one entry each).
fn split_entries(
    entries: Vec<Entry>,
    part_bytes: usize,
) -> Result<Vec<Vec<Entry>>, RPCError<TypeConfig>> {
    let mut parts = Vec::new();
    let mut part = Vec::new();
    let mut size = 0usize;
    for e in entries {
        let n = rmp_serde::to_vec_named(&e)
            .map_err(|err| RPCError::Network(NetworkError::new(&err)))?
            .len();
        if !part.is_empty() && size + n > part_bytes {
            parts.push(std::mem::take(&mut part));
            size = 0;
        }
        size += n;
        part.push(e);
    }
    if !part.is_empty() {
        parts.push(part);
    }
    Ok(parts)
}

fn encode_rpc(rpc: &RaftRpc) -> Result<Vec<u8>, RPCError<TypeConfig>> {
    protocol::encode(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

fn wrong_reply(target: NodeId) -> RPCError<TypeConfig> {
    RPCError::Network(NetworkError::from_string(format!(
        "coordinator {target} answered the wrong RPC"
    )))
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let ttl = option.hard_ttl();
        let several = rpc.entries.len() > 1;
        let rpc = RaftRpc::Append(rpc);
        let payload = encode_rpc(&rpc)?;
        if several
            && payload.len() > self.append_part
            && let RaftRpc::Append(rpc) = rpc
        {
            return self.append_in_parts(rpc, ttl).await;
        }
        match self.call_encoded(Kind::Append, payload, ttl).await? {
            RaftReply::Append(r) => Ok(r),
            _ => Err(wrong_reply(self.target)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(&RaftRpc::Vote(rpc), option.hard_ttl()).await? {
            RaftReply::Vote(r) => Ok(r),
            _ => Err(wrong_reply(self.target)),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(&RaftRpc::PreVote(rpc), option.hard_ttl()).await? {
            RaftReply::Vote(r) => Ok(r),
            _ => Err(wrong_reply(self.target)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, Cursor<Vec<u8>>>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let ttl = option.hard_ttl();
        let meta = snapshot.meta;
        let data = snapshot.snapshot.into_inner();
        let chunk = self.snapshot_chunk;
        let target = self.target;
        let send = async {
            let total = data.len();
            let mut offset = 0;
            loop {
                let end = total.min(offset + chunk);
                let rpc = RaftRpc::Snapshot(SnapshotChunk {
                    vote,
                    meta: meta.clone(),
                    offset: offset as u64,
                    total: total as u64,
                    data: data[offset..end].to_vec(),
                });
                match self.call(&rpc, ttl).await? {
                    RaftReply::SnapshotChunk { received }
                        if end < total && received == end as u64 =>
                    {
                        offset = end;
                    }
                    RaftReply::Snapshot(r) if end == total => return Ok(r),
                    _ => return Err(StreamingError::from(wrong_reply(target))),
                }
            }
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = send => res,
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(&RaftRpc::TransferLeader(req), option.hard_ttl())
            .await?
        {
            RaftReply::TransferLeader(r) => Ok(r),
            _ => Err(wrong_reply(self.target)),
        }
    }
}

/// Serves raft RPCs from peers until the listener fails.
pub async fn serve(listener: TcpListener, raft: Raft) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let raft = raft.clone();
        tokio::spawn(async move {
            if let Err(why) = serve_connection(stream, raft).await {
                tracing::warn!(%peer, "raft connection closed: {why}");
            }
        });
    }
}

/// A snapshot being received on one connection.
struct Incoming {
    vote: Vote,
    meta: SnapshotMeta,
    total: u64,
    data: Vec<u8>,
    chunks: u32,
}

async fn serve_connection(stream: TcpStream, raft: Raft) -> Result<(), String> {
    let mut conn = Framed::new(stream, FrameCodec);
    let mut incoming: Option<Incoming> = None;
    while let Some(frame) = conn.next().await {
        // A frame we cannot read ends the connection; the peer reconnects, nothing else stops.
        let (kind, frame) = frame.map_err(|e| format!("bad frame: {e}"))?;
        let rpc: RaftRpc =
            protocol::decode(&frame).map_err(|e| format!("undecodable raft RPC: {e}"))?;
        if rpc.kind() != kind {
            return Err(format!("a {kind:?} frame carried a {:?} RPC", rpc.kind()));
        }
        let reply = match rpc {
            RaftRpc::Snapshot(chunk) => receive_chunk(&raft, &mut incoming, chunk).await,
            other => handle(&raft, other).await,
        };
        let bytes = protocol::encode(&reply).map_err(|e| e.to_string())?;
        conn.send((Kind::Reply, Bytes::from(bytes)))
            .await
            .map_err(|e| format!("send reply: {e}"))?;
    }
    Ok(())
}

/// Adds a chunk to the snapshot being received; installs it once whole.
async fn receive_chunk(
    raft: &Raft,
    incoming: &mut Option<Incoming>,
    chunk: SnapshotChunk,
) -> RaftReply {
    let SnapshotChunk {
        vote,
        meta,
        offset,
        total,
        data,
    } = chunk;
    if offset == 0 {
        // Room for what arrives, not for what the first chunk claims is coming.
        let room = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(4 * MAX_SNAPSHOT_CHUNK);
        *incoming = Some(Incoming {
            vote,
            meta: meta.clone(),
            total,
            data: Vec::with_capacity(room),
            chunks: 0,
        });
    }
    let Some(inc) = incoming.as_mut() else {
        return refused(&format!(
            "snapshot chunk at offset {offset} without the chunks before it"
        ));
    };
    let fits = offset
        .checked_add(data.len() as u64)
        .is_some_and(|end| end <= inc.total);
    if inc.vote != vote
        || inc.meta != meta
        || inc.total != total
        || inc.data.len() as u64 != offset
        || !fits
    {
        let had = inc.data.len();
        *incoming = None;
        return refused(&format!(
            "snapshot chunk at offset {offset} of {total} bytes does not follow the {had} bytes received"
        ));
    }
    inc.data.extend_from_slice(&data);
    inc.chunks += 1;
    let received = inc.data.len() as u64;
    if received < inc.total {
        return RaftReply::SnapshotChunk { received };
    }
    let Some(done) = incoming.take() else {
        return refused(&"no snapshot being received");
    };
    tracing::info!(
        last = ?done.meta.last_log_id,
        bytes = done.total,
        chunks = done.chunks,
        "snapshot received"
    );
    raft.install_full_snapshot(
        done.vote,
        openraft::Snapshot {
            meta: done.meta,
            snapshot: Cursor::new(done.data),
        },
    )
    .await
    .map(RaftReply::Snapshot)
    .unwrap_or_else(|e| refused(&e))
}

async fn handle(raft: &Raft, rpc: RaftRpc) -> RaftReply {
    match rpc {
        RaftRpc::Append(r) => raft
            .append_entries(r)
            .await
            .map(RaftReply::Append)
            .unwrap_or_else(|e| refused(&e)),
        RaftRpc::Vote(r) => raft
            .vote(r)
            .await
            .map(RaftReply::Vote)
            .unwrap_or_else(|e| refused(&e)),
        RaftRpc::PreVote(r) => raft
            .pre_vote(r)
            .await
            .map(RaftReply::Vote)
            .unwrap_or_else(|e| refused(&e)),
        RaftRpc::Snapshot(_) => refused(&"snapshot chunks are handled per connection"),
        RaftRpc::TransferLeader(r) => raft
            .handle_transfer_leader(r)
            .await
            .map(RaftReply::TransferLeader)
            .unwrap_or_else(|e| refused(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, kind: u8) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32(len);
        b.put_u8(kind);
        b
    }

    #[test]
    fn a_huge_claim_is_refused_on_the_header() {
        let mut codec = FrameCodec;
        let mut huge = header(1 << 30, Kind::Append as u8);
        let err = codec.decode(&mut huge).unwrap_err();
        assert!(err.to_string().contains("over the limit"), "{err}");
        assert!(huge.capacity() < 1024, "the buffer grew for the claim");
        // Within the largest kind's limit but over a vote's.
        let mut vote = header(MIB as u32, Kind::Vote as u8);
        let err = codec.decode(&mut vote).unwrap_err();
        assert!(err.to_string().contains("Vote frame"), "{err}");
        let mut unknown = header(10, 99);
        assert!(codec.decode(&mut unknown).is_err());
    }

    #[test]
    fn frames_round_trip_and_wait_for_their_bytes() {
        let mut codec = FrameCodec;
        let mut buf = BytesMut::new();
        codec
            .encode((Kind::Vote, Bytes::from_static(b"hello")), &mut buf)
            .unwrap();
        let mut partial = buf.split_to(7);
        assert!(codec.decode(&mut partial).unwrap().is_none());
        partial.unsplit(buf);
        let (kind, payload) = codec.decode(&mut partial).unwrap().unwrap();
        assert_eq!((kind, &payload[..]), (Kind::Vote, &b"hello"[..]));
        let too_big = Bytes::from(vec![0u8; MAX_SMALL_FRAME + 1]);
        assert!(codec.encode((Kind::Reply, too_big), &mut partial).is_err());
    }

    #[test]
    fn large_batches_split_into_parts_of_bounded_size() {
        use openraft::entry::RaftEntry;
        use plotter2_node::protocol::{RequestId, UserName, WriteOp};
        let big = "x".repeat(3 * MIB);
        let entries: Vec<Entry> = (1..=12)
            .map(|i| {
                let cmd = crate::types::Command {
                    id: RequestId::new(),
                    user: UserName::parse("tali").unwrap(),
                    time_ms: i,
                    trace: None,
                    op: WriteOp::Set {
                        addr: plotter2_node::Address::parse("/a").unwrap(),
                        set: vec![plotter2_node::nodeconf::Assignment {
                            key: plotter2_node::nodeconf::ConfigKey::parse("k").unwrap(),
                            value: serde_json::Value::String(big.clone()),
                        }],
                    },
                };
                Entry::new_normal(openraft::testing::log_id::<TypeConfig>(1, 1, i), cmd)
            })
            .collect();
        let parts = split_entries(entries, DEFAULT_APPEND_PART).unwrap();
        assert!(parts.len() >= 3, "{} parts", parts.len());
        let mut next = 1;
        for p in &parts {
            let bytes = protocol::encode(&RaftRpc::Append(AppendEntriesRequest {
                vote: Vote::new(1, 1),
                prev_log_id: None,
                entries: p.clone(),
                leader_commit: None,
            }))
            .unwrap();
            assert!(bytes.len() <= DEFAULT_APPEND_PART + MIB, "{}", bytes.len());
            for e in p {
                assert_eq!(e.log_id.index(), next);
                next += 1;
            }
        }
        assert_eq!(next, 13);
    }
}
