//! Raft RPC between coordinators over plain TCP: length-delimited frames, each a versioned
//! rmp-serde envelope (the same [`plotter2_node::protocol`] encoding as the bus).
//!
//! One connection per (peer, openraft client), one RPC in flight on it. A failed connection is
//! dropped and reported as `Unreachable` so openraft backs off; the next RPC reconnects.

use std::future::Future;
use std::io::Cursor;
use std::time::Duration;

use bytes::Bytes;
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
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::types::{NodeId, Raft, SnapshotMeta, TypeConfig, Vote};

/// Largest frame accepted: snapshots travel whole.
const MAX_FRAME: usize = 1 << 30;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Serialize, Deserialize)]
enum RaftRpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    TransferLeader(TransferLeaderRequest<TypeConfig>),
}

#[derive(Serialize, Deserialize)]
enum RaftReply {
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    Snapshot(SnapshotResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    /// The peer could not serve the RPC (shutting down, or the request was malformed).
    Refused(String),
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

/// Makes [`PeerClient`]s for openraft.
#[derive(Clone, Default)]
pub struct Network;

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            addr: node.addr.clone(),
            conn: None,
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    conn: Option<Framed<TcpStream, LengthDelimitedCodec>>,
}

impl PeerClient {
    async fn call(
        &mut self,
        rpc: &RaftRpc,
        ttl: Duration,
    ) -> Result<RaftReply, RPCError<TypeConfig>> {
        let payload =
            protocol::encode(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        match tokio::time::timeout(ttl, self.exchange(Bytes::from(payload))).await {
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

    async fn exchange(&mut self, payload: Bytes) -> Result<RaftReply, RPCError<TypeConfig>> {
        let unreachable = |what: String| RPCError::Unreachable(Unreachable::from_string(what));
        if self.conn.is_none() {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
                .await
                .map_err(|_| unreachable(format!("connect to {} timed out", self.addr)))?
                .map_err(|e| unreachable(format!("connect to {}: {e}", self.addr)))?;
            let _ = stream.set_nodelay(true);
            self.conn = Some(Framed::new(stream, codec()));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(unreachable("no connection".into()));
        };
        conn.send(payload)
            .await
            .map_err(|e| unreachable(format!("send to {}: {e}", self.addr)))?;
        let frame = conn
            .next()
            .await
            .ok_or_else(|| unreachable(format!("{} closed the connection", self.addr)))?
            .map_err(|e| unreachable(format!("read from {}: {e}", self.addr)))?;
        protocol::decode(&frame).map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }
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
        match self.call(&RaftRpc::Append(rpc), option.hard_ttl()).await? {
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
        let rpc = RaftRpc::Snapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = self.call(&rpc, option.hard_ttl()) => match res? {
                RaftReply::Snapshot(r) => Ok(r),
                _ => Err(wrong_reply(self.target).into()),
            },
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

async fn serve_connection(stream: TcpStream, raft: Raft) -> Result<(), String> {
    let mut conn = Framed::new(stream, codec());
    while let Some(frame) = conn.next().await {
        let frame = frame.map_err(|e| format!("bad frame: {e}"))?;
        // A frame we cannot read ends the connection; the peer reconnects, nothing else stops.
        let rpc: RaftRpc =
            protocol::decode(&frame).map_err(|e| format!("undecodable raft RPC: {e}"))?;
        let reply = handle(&raft, rpc).await;
        let bytes = protocol::encode(&reply).map_err(|e| e.to_string())?;
        conn.send(Bytes::from(bytes))
            .await
            .map_err(|e| format!("send reply: {e}"))?;
    }
    Ok(())
}

async fn handle(raft: &Raft, rpc: RaftRpc) -> RaftReply {
    let refused = |e: &dyn std::fmt::Display| RaftReply::Refused(e.to_string());
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
        RaftRpc::Snapshot { vote, meta, data } => raft
            .install_full_snapshot(
                vote,
                openraft::Snapshot {
                    meta,
                    snapshot: Cursor::new(data),
                },
            )
            .await
            .map(RaftReply::Snapshot)
            .unwrap_or_else(|e| refused(&e)),
        RaftRpc::TransferLeader(r) => raft
            .handle_transfer_leader(r)
            .await
            .map(RaftReply::TransferLeader)
            .unwrap_or_else(|e| refused(&e)),
    }
}
