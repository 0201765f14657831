//! Raft membership changes and each coordinator's status.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterChange {
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        })
    }
}

/// What one coordinator says about itself on [`STATUS_SUBJECT`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: u64,
    pub raft_addr: String,
    pub role: Role,
    pub pid: u32,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    /// Voters and learners as this node knows them: id → raft address.
    pub voters: Vec<(u64, String)>,
    pub learners: Vec<(u64, String)>,
    /// blake3 of the whole registry state at `applied_index`.
    pub state_digest: String,
    /// Milliseconds since a majority last acknowledged this leader (leaders only).
    pub quorum_ack_age_ms: Option<u64>,
    /// Runs waiting for a worker and runs claimed, as this node has applied them.
    #[serde(default)]
    pub queued_runs: u64,
    #[serde(default)]
    pub running_runs: u64,
}
