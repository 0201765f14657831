//! The coordinator's API: requests (writes, reads, cluster changes), answers and errors.

use serde::{Deserialize, Serialize};

use crate::Address;
use crate::bundle::Hash;
use crate::manifest::Manifest;
use crate::nodeconf::Assignment;
use crate::sweep::Sweep;

use super::*;

/// One ask of the coordinator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiRequest {
    pub id: RequestId,
    pub user: UserName,
    pub op: Op,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Changes the registry: committed to the raft log before the answer.
    Write(WriteOp),
    /// Linearizable reads of the registry.
    Read(ReadOp),
    /// Raft membership.
    Cluster(ClusterOp),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case")]
pub enum WriteOp {
    /// Creates the node and any missing parents (`mkdir -p`), then applies `set`.
    New {
        addr: Address,
        #[serde(default)]
        set: Vec<Assignment>,
    },
    Set {
        addr: Address,
        set: Vec<Assignment>,
    },
    /// Hides a node (and so its subtree) from listings; nothing is deleted.
    Archive {
        addr: Address,
    },
    /// Records a bundle whose blobs, and whose file index (a blob under the bundle id), are
    /// already in the object store as a new version of `addr` (created if missing). The same
    /// bundle id at the same address is one version. Only the id, the counts and the manifest
    /// travel: an index of a million files would not fit in a message or a log entry.
    Ingest {
        addr: Address,
        bundle: Hash,
        files: u64,
        bytes: u64,
        manifest: Box<Manifest>,
        /// Its files' paths, for rules that match files; `None` when there are too many
        /// (see [`crate::bundle::FileIndex::paths_for_rules`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        paths: Option<Vec<String>>,
    },
    /// Creates runs of `task` (defined at `addr` or an ancestor): one at `addr`, or with
    /// sweeps one per combination, at new children `addr/sweep-<n>/<combination>`.
    Run {
        addr: Address,
        task: String,
        /// Overrides for this run's params only (the node's config is unchanged).
        #[serde(default)]
        set: Vec<Assignment>,
        #[serde(default)]
        sweep: Vec<Sweep>,
        /// Run even when a succeeded run with the same fingerprint could be reused.
        #[serde(default)]
        force: bool,
    },
    /// What workers report about attempts (claims and results), and what the leader finds
    /// lost, applied in order as one request. Workers batch them: a busy pool costs one log
    /// entry per batch, not two per run. Every item's node must be within `pool`. An item
    /// that does not apply (a run that ended meanwhile, a stale delivery) is refused alone,
    /// and listed in the receipt's `refused`.
    Attempts {
        pool: Address,
        /// Who reports: the worker's name, recorded on the attempts it starts.
        worker: String,
        items: Vec<AttemptUpdate>,
    },
    /// Ends a run that has not ended; a worker running it kills it.
    Cancel {
        node: Address,
        run: RunId,
    },
    /// The leader's clock, stamped into the log when a rule's schedule comes due and nothing
    /// else was committed meanwhile: applying any request fires the schedules due by its time.
    Tick {},
}

impl WriteOp {
    pub fn verb(&self) -> &'static str {
        match self {
            WriteOp::New { .. } => "new",
            WriteOp::Set { .. } => "set",
            WriteOp::Archive { .. } => "archive",
            WriteOp::Ingest { .. } => "ingest",
            WriteOp::Run { .. } => "run",
            WriteOp::Attempts { .. } => "attempts",
            WriteOp::Cancel { .. } => "cancel",
            WriteOp::Tick {} => "tick",
        }
    }

    pub fn target(&self) -> &Address {
        match self {
            WriteOp::New { addr, .. }
            | WriteOp::Set { addr, .. }
            | WriteOp::Archive { addr }
            | WriteOp::Ingest { addr, .. }
            | WriteOp::Run { addr, .. } => addr,
            WriteOp::Attempts { pool, .. } => pool,
            WriteOp::Cancel { node, .. } => node,
            WriteOp::Tick {} => Address::root_ref(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case")]
pub enum ReadOp {
    Ls {
        addr: Address,
        #[serde(default)]
        all: bool,
    },
    /// The subtree below `addr`, depth first: at most `limit` nodes (capped at
    /// [`TREE_LIMIT`]) after the address `after`; archived nodes and what is below them only
    /// with `all`.
    Tree {
        addr: Address,
        #[serde(default)]
        all: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<Address>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    Show {
        addr: Address,
    },
    History {
        addr: Address,
    },
    /// Request log entries with `seq > after`, oldest first.
    Requests {
        #[serde(default)]
        after: u64,
        #[serde(default = "default_limit")]
        limit: u32,
    },
    Request {
        id: RequestId,
    },
    /// Runs at `addr` and below, oldest first: those after run `after`, at most `limit` of
    /// them (page through a large subtree; without a limit, all of them).
    Runs {
        addr: Address,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<RunId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// Just the states of these runs (how `run --wait` polls a large sweep cheaply).
    RunStates {
        ids: Vec<RunId>,
    },
    Run {
        id: RunId,
    },
    /// The events at `addr` and below of the requests after `after`, oldest first (see
    /// [`EventPage`]); with no `after`, none, and where the log stands.
    Events {
        addr: Address,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// The rules in force at `addr` or defined below it, with their state.
    Rules {
        addr: Address,
    },
    /// One bundle version of a node with its file index; `None` is the latest.
    Bundle {
        addr: Address,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
    },
    /// How a bundle version was made, down to the pushes (`None` is the latest); with
    /// `downstream`, what was made from it instead. At most [`LINEAGE_LIMIT`] versions and
    /// runs.
    Lineage {
        addr: Address,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        #[serde(default)]
        downstream: bool,
    },
    /// A run's fingerprint part by part, how it turned out and why it ran.
    Explain {
        run: RunId,
    },
}

fn default_limit() -> u32 {
    1000
}

/// The most nodes one `tree` answer holds, and how many it holds when not told: a page of
/// addresses stays far below NATS's payload limit.
pub const TREE_LIMIT: u32 = 10_000;
pub const TREE_DEFAULT_LIMIT: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verb", rename_all = "snake_case")]
pub enum ClusterOp {
    /// Adds a coordinator as a learner, then promotes it to voter once it has caught up.
    ClusterAdd {
        id: u64,
        raft_addr: String,
    },
    ClusterRemove {
        id: u64,
    },
}

impl Op {
    /// The verb, which is also the last token of the request subject.
    pub fn verb(&self) -> &'static str {
        match self {
            Op::Write(w) => w.verb(),
            Op::Read(ReadOp::Ls { .. }) => "ls",
            Op::Read(ReadOp::Tree { .. }) => "tree",
            Op::Read(ReadOp::Show { .. }) => "show",
            Op::Read(ReadOp::History { .. }) => "history",
            Op::Read(ReadOp::Requests { .. }) => "requests",
            Op::Read(ReadOp::Request { .. }) => "request",
            Op::Read(ReadOp::Bundle { .. }) => "bundle",
            Op::Read(ReadOp::Runs { .. }) => "runs",
            Op::Read(ReadOp::Run { .. }) => "run_info",
            Op::Read(ReadOp::RunStates { .. }) => "run_states",
            Op::Read(ReadOp::Rules { .. }) => "rules",
            Op::Read(ReadOp::Events { .. }) => "events",
            Op::Read(ReadOp::Lineage { .. }) => "lineage",
            Op::Read(ReadOp::Explain { .. }) => "explain",
            Op::Cluster(ClusterOp::ClusterAdd { .. }) => "cluster_add",
            Op::Cluster(ClusterOp::ClusterRemove { .. }) => "cluster_remove",
        }
    }

    pub fn subject(&self) -> String {
        format!("{API_PREFIX}.{}", self.verb())
    }
}

/// Every verb the API knows, for "unknown verb" messages.
pub const VERBS: &[&str] = &[
    "new",
    "set",
    "archive",
    "ingest",
    "run",
    "attempts",
    "cancel",
    "tick",
    "ls",
    "tree",
    "show",
    "history",
    "requests",
    "request",
    "bundle",
    "runs",
    "run_info",
    "run_states",
    "rules",
    "events",
    "lineage",
    "explain",
    "cluster_add",
    "cluster_remove",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is wrong; retrying it will not help.
    BadRequest,
    NotFound,
    /// This coordinator is not (or no longer) the leader; retry.
    NotLeader,
    /// The leader cannot reach a majority; retry later.
    NoQuorum,
    UnsupportedVersion,
    Internal,
}

impl ErrorKind {
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::NotLeader | ErrorKind::NoQuorum)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
}

impl From<ProtocolError> for ApiError {
    fn from(e: ProtocolError) -> Self {
        let kind = match e {
            ProtocolError::Version { .. } => ErrorKind::UnsupportedVersion,
            _ => ErrorKind::BadRequest,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// The answer to an [`ApiRequest`].
pub type ApiResponse = Result<Reply, ApiError>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Written(WriteReceipt),
    Node(NodeView),
    Children(Vec<ChildView>),
    Tree(TreeView),
    History(Vec<Event>),
    Requests(Vec<RequestRecord>),
    Request(RequestRecord),
    Bundle(BundleDetail),
    Runs(Vec<RunRecord>),
    Run(Box<RunRecord>),
    /// In the order asked; a run that does not exist is left out.
    RunStates(Vec<(RunId, RunState)>),
    Rules(Vec<RuleView>),
    Events(EventPage),
    Lineage(Box<Lineage>),
    Explain(Box<Explanation>),
    Cluster(ClusterChange),
}

/// What a committed write did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteReceipt {
    pub seq: u64,
    pub id: RequestId,
    /// Raft log index the request was committed at.
    pub log_index: u64,
    /// True when this id had been applied before: nothing was applied again.
    pub duplicate: bool,
    /// Nodes this request created.
    #[serde(default)]
    pub created: Vec<Address>,
    /// For an ingest: the version the bundle is (a new one, or the one it already was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
    /// For a run request: the runs it created.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunId>,
    /// For a batched request: the items that did not apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
}
