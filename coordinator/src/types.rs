//! The raft type configuration and what travels in the log.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use plotter2_node::protocol::{ApiError, RequestId, UserName, WriteOp, WriteReceipt};
use serde::{Deserialize, Serialize};

/// One registry write as committed to the log. The leader stamps `time_ms`; apply never reads
/// a clock, so every replica derives the same state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub id: RequestId,
    pub user: UserName,
    pub time_ms: u64,
    /// The asking request's trace context (`traceparent`), stamped by the leader like the
    /// time: the runs it creates keep it, so their work stays in the request's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    pub op: WriteOp,
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} {} by {}",
            self.id,
            self.op.target().to_string(),
            self.op.verb(),
            self.user
        )
    }
}

/// What applying a [`Command`] answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Applied(pub Result<WriteReceipt, ApiError>);

/// Blank and membership entries answer this.
impl Default for Applied {
    fn default() -> Self {
        Applied(Err(ApiError::new(
            plotter2_node::protocol::ErrorKind::Internal,
            "not an application entry",
        )))
    }
}

openraft::declare_raft_types!(
    /// plotter2's raft types: registry commands in, apply results out.
    pub TypeConfig:
        D = Command,
        R = Applied,
        Node = openraft::BasicNode,
);

pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type NodeId = u64;

/// The leader's clock, in milliseconds since the epoch: it stamps [`Command::time_ms`] and
/// ages attempts. Apply never calls it.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
