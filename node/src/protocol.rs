//! Messages between plotter2 processes: every one travels in a versioned [`Envelope`] encoded
//! with rmp-serde's named (map) encoding, so added fields and reordering stay compatible.
//!
//! Subjects: requests go to `p2.api.<verb>` (served by the raft leader only, in one queue
//! group); every coordinator answers `p2.node.status` for `cluster status`.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Address;
use crate::bundle::{FileIndex, Hash};
use crate::manifest::{Manifest, TaskDef};
use crate::nodeconf::{Assignment, Effective};
use crate::sweep::Sweep;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Prefix of request subjects: `p2.api.<verb>`.
pub const API_PREFIX: &str = "p2.api";
/// Queue group the leader serves `p2.api.>` in.
pub const API_QUEUE: &str = "p2-coordinators";
/// Every coordinator answers here with its [`NodeStatus`].
pub const STATUS_SUBJECT: &str = "p2.node.status";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("not a plotter2 message ({0}); send an rmp-serde envelope {{v, body}}")]
    Garbage(String),
    #[error(
        "protocol version {got} is not supported: this plotter2 speaks version {PROTOCOL_VERSION}; upgrade the older side"
    )]
    Version { got: u32 },
    #[error("malformed message: {0}")]
    Decode(String),
    #[error("could not encode message: {0}")]
    Encode(String),
}

/// The wire wrapper: a version and a body.
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    pub v: u32,
    pub body: T,
}

#[derive(Deserialize)]
struct VersionProbe {
    v: u32,
}

/// Encodes `body` in an envelope of the current version.
pub fn encode<T: Serialize>(body: &T) -> Result<Vec<u8>, ProtocolError> {
    rmp_serde::to_vec_named(&Envelope {
        v: PROTOCOL_VERSION,
        body,
    })
    .map_err(|e| ProtocolError::Encode(e.to_string()))
}

/// Decodes an envelope, refusing other versions before looking at the body.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ProtocolError> {
    let probe: VersionProbe =
        rmp_serde::from_slice(bytes).map_err(|e| ProtocolError::Garbage(e.to_string()))?;
    if probe.v != PROTOCOL_VERSION {
        return Err(ProtocolError::Version { got: probe.v });
    }
    let env: Envelope<T> =
        rmp_serde::from_slice(bytes).map_err(|e| ProtocolError::Decode(e.to_string()))?;
    Ok(env.body)
}

/// A client-chosen request id (a ULID): the same id sent twice is applied once.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(ulid::Ulid);

impl RequestId {
    pub fn new() -> Self {
        Self(ulid::Ulid::new())
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.0)
    }
}

impl FromStr for RequestId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ulid::Ulid::from_string(s).map(Self).map_err(|e| {
            format!(
                "request id {s:?} is not a ULID ({e}); ids look like 01JD3Z8V2K9Q4Y7N5M6X1B0C2D"
            )
        })
    }
}

crate::serde_as_text!(RequestId);

/// Who asked: 1–64 characters of letters, digits and `_ . @ -`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

impl UserName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "user name {s:?} must be 1-64 characters of letters, digits, _ . @ -"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserName({})", self.0)
    }
}

impl FromStr for UserName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

crate::serde_as_text!(UserName);

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
    /// Records a bundle whose blobs are already in the object store as a new version of
    /// `addr` (created if missing). The same bundle id at the same address is one version.
    Ingest {
        addr: Address,
        bundle: Hash,
        index: FileIndex,
        manifest: Box<Manifest>,
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
}

/// One item of an [`WriteOp::Attempts`] report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "update", rename_all = "snake_case")]
pub enum AttemptUpdate {
    /// The worker took delivery `attempt` of the run (its claim): refused when the run ended
    /// or moved on to another attempt. The same delivery taken over by another worker (its
    /// first worker died) is accepted, and recorded as another attempt record.
    Started {
        node: Address,
        run: RunId,
        attempt: u32,
    },
    /// The attempt ended. A success's output becomes a bundle version of `node` (once,
    /// however often it is reported); a failure is retried while `retries` allow.
    Finished {
        node: Address,
        run: RunId,
        attempt: u32,
        outcome: RunOutcome,
        /// The attempt's stdout+stderr, stored as a blob.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log: Option<Hash>,
    },
    /// Nobody runs the attempt any more (its worker stopped answering and its delivery is
    /// gone): it ends as lost and the run is queued again, up to [`MAX_LOST`] times.
    Lost {
        node: Address,
        run: RunId,
        attempt: u32,
        reason: String,
    },
}

/// A run whose attempts were lost this many times fails instead of being queued again (a task
/// that kills its worker every time must not go round forever).
pub const MAX_LOST: u32 = 3;

impl AttemptUpdate {
    pub fn run(&self) -> RunId {
        match self {
            AttemptUpdate::Started { run, .. }
            | AttemptUpdate::Finished { run, .. }
            | AttemptUpdate::Lost { run, .. } => *run,
        }
    }

    pub fn attempt(&self) -> u32 {
        match self {
            AttemptUpdate::Started { attempt, .. }
            | AttemptUpdate::Finished { attempt, .. }
            | AttemptUpdate::Lost { attempt, .. } => *attempt,
        }
    }

    pub fn node(&self) -> &Address {
        match self {
            AttemptUpdate::Started { node, .. }
            | AttemptUpdate::Finished { node, .. }
            | AttemptUpdate::Lost { node, .. } => node,
        }
    }
}

/// An item of a batched request that did not apply, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refused {
    /// Its position in the request's items.
    pub index: u32,
    pub run: RunId,
    pub error: ApiError,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum RunOutcome {
    Succeeded {
        exit: i32,
        /// What the task wrote into `{out}`; its blobs are in the object store.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<Box<RunOutput>>,
    },
    Failed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit: Option<i32>,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutput {
    pub bundle: Hash,
    pub index: FileIndex,
    pub manifest: Manifest,
}

/// Where runs are delivered: `p2.task.<address subject>` on this JetStream work-queue stream.
pub const TASK_STREAM: &str = "P2_TASKS";
pub const TASK_PREFIX: &str = "p2.task";

/// The message a worker receives: the run as it was queued (so the worker needs no read
/// before claiming it; the claim itself refuses a run that ended or moved on), and which
/// delivery this is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub run: Box<RunRecord>,
    pub attempt: u32,
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
    /// One bundle version of a node with its file index; `None` is the latest.
    Bundle {
        addr: Address,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
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
    Run(RunRecord),
    /// In the order asked; a run that does not exist is left out.
    RunStates(Vec<(RunId, RunState)>),
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

/// A run's id: `r<request seq>.<n>`, so runs sort in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId {
    pub seq: u64,
    pub n: u32,
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}.{}", self.seq, self.n)
    }
}

impl FromStr for RunId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a run id; run ids look like r12.3");
        let (seq, n) = s
            .strip_prefix('r')
            .and_then(|r| r.split_once('.'))
            .ok_or_else(bad)?;
        Ok(Self {
            seq: seq.parse().map_err(|_| bad())?,
            n: n.parse().map_err(|_| bad())?,
        })
    }
}

crate::serde_as_text!(RunId);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Waiting for the runs it needs to succeed.
    Waiting,
    /// Ready to run, whether or not the leader has published it yet: publishing is not
    /// written to the log (that would double the log per run), and a new leader re-publishes
    /// every queued run anyway.
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// One execution of a task at a node. Its inputs are fixed when it is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub node: Address,
    pub task: String,
    /// Where the task is defined (the node itself or an ancestor).
    pub defined_at: Address,
    pub definition: TaskDef,
    /// The task's default params, under the node's effective config, under the request's
    /// `--set` (and the sweep combination, through the node's config).
    pub params: Map<String, Value>,
    /// The bundle whose package defines the task.
    pub code: Hash,
    /// The latest bundle of each node from `defined_at` down to `node`, except the code.
    pub inputs: Vec<Hash>,
    /// The runs of the tasks this one `needs`, created with it at the same node; it waits
    /// for them, and each one's output is filled in when it succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<Need>,
    /// blake3 of (definition, inputs, params, code, and the needed runs' fingerprints):
    /// equal fingerprints, equal work.
    pub fingerprint: Hash,
    pub state: RunState,
    pub request: RequestId,
    pub user: UserName,
    pub created_ms: u64,
    /// The delivery being dispatched: 1, then one more per retry after a failure.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// Every time a worker took the run (a crashed worker's delivery taken over included).
    #[serde(default)]
    pub attempts: Vec<AttemptRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<BundleRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// Not executed: the succeeded run with the same fingerprint whose output this reuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused_from: Option<RunId>,
}

fn first_attempt() -> u32 {
    1
}

/// A run another run waits for, and what it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Need {
    pub task: String,
    pub run: RunId,
    /// Set when the needed run succeeded with an output (a bundle version of the same node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<BundleRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptRecord {
    pub attempt: u32,
    pub worker: String,
    pub started_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// stdout+stderr of the attempt, a blob in the object store (`plotter2 logs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<Hash>,
    /// Ended because nobody ran it any more (see [`AttemptUpdate::Lost`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lost: bool,
}

/// Live log chunks of a running attempt, published by its worker (header `offset`).
pub fn log_subject(run: &RunId) -> String {
    format!("p2.log.{}", run.to_string().replace('.', "_"))
}

/// The worker running an attempt answers here with the log so far.
pub fn log_request_subject(run: &RunId) -> String {
    format!("p2.logreq.{}", run.to_string().replace('.', "_"))
}

/// Every worker answers here, with the attempts it holds ([`HeldAttempts`]), so the leader
/// can tell an attempt that runs long from one whose worker is gone. A
/// [`crate::WorkerName`] is one subject token.
pub fn worker_subject(worker: &crate::WorkerName) -> String {
    format!("p2.worker.{worker}")
}

/// A worker's answer on [`worker_subject`]: every (run, attempt) it has claimed or is
/// claiming, running or reporting.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeldAttempts {
    pub attempts: Vec<(RunId, u32)>,
}

impl RunState {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    }
}

/// A bundle version of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRef {
    pub version: u64,
    pub id: Hash,
    /// True when this bundle was already that version: nothing new was recorded.
    pub existing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Done,
    Failed,
}

/// One entry of the request log. Nothing in it is ever deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub seq: u64,
    pub id: RequestId,
    pub user: UserName,
    /// Milliseconds since the Unix epoch, stamped by the leader.
    pub time_ms: u64,
    pub verb: String,
    pub target: Address,
    pub status: RequestStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    pub log_index: u64,
    pub payload: WriteOp,
    #[serde(default)]
    pub created: Vec<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refused>,
}

/// One entry of a node's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub request: RequestId,
    pub user: UserName,
    pub time_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    Created,
    ConfigSet {
        key: String,
        value: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<Value>,
    },
    Archived,
    BundleAdded {
        version: u64,
        bundle: Hash,
    },
    RunCreated {
        run: RunId,
        task: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeView {
    pub address: Address,
    pub archived: bool,
    /// True when the node itself is not archived but an ancestor is.
    pub hidden_by_ancestor: bool,
    pub own: Map<String, Value>,
    pub effective: Effective,
    pub children: Vec<ChildView>,
    pub created_seq: u64,
    pub created_ms: u64,
    pub history_len: u64,
    /// Bundle versions, oldest first.
    #[serde(default)]
    pub bundles: Vec<BundleVersion>,
}

/// One immutable bundle version of a node, as `show` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleVersion {
    pub version: u64,
    pub id: Hash,
    /// The run that produced it, when it is a run's output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
    pub files: u64,
    pub bytes: u64,
    pub user: UserName,
    pub time_ms: u64,
    pub request: RequestId,
    pub manifest: Manifest,
}

/// One bundle version with everything needed to materialise it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleDetail {
    pub address: Address,
    #[serde(flatten)]
    pub version: BundleVersion,
    pub index: FileIndex,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildView {
    pub address: Address,
    pub name: String,
    pub archived: bool,
    pub children: u64,
}

/// A page of a subtree, depth first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeView {
    /// `children` counts the children listed (archived ones only with `all`).
    pub nodes: Vec<ChildView>,
    /// Nodes of the subtree after this page.
    pub more: u64,
    /// Where the next page starts (`after`), when `more` is not 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Address>,
}

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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ApiRequest {
        ApiRequest {
            id: RequestId::new(),
            user: UserName::parse("tali").unwrap(),
            op: Op::Write(WriteOp::New {
                addr: Address::parse("/sources/tali/lr=0.1").unwrap(),
                set: vec!["model.depth=3".parse().unwrap()],
            }),
        }
    }

    #[test]
    fn roundtrip() {
        let req = sample();
        let bytes = encode(&req).unwrap();
        let back: ApiRequest = decode(&bytes).unwrap();
        assert_eq!(back.id, req.id);
        assert_eq!(back.op, req.op);
        assert_eq!(req.op.subject(), "p2.api.new");
    }

    #[test]
    fn future_version_is_refused_before_the_body() {
        let bytes = rmp_serde::to_vec_named(&Envelope {
            v: 2,
            body: "anything",
        })
        .unwrap();
        let err = decode::<ApiRequest>(&bytes).unwrap_err();
        assert_eq!(err, ProtocolError::Version { got: 2 });
        assert!(err.to_string().contains("version 2"));
    }

    #[test]
    fn garbage_and_bad_fields_are_errors_not_panics() {
        assert!(matches!(
            decode::<ApiRequest>(b"\xc1\xff garbage"),
            Err(ProtocolError::Garbage(_))
        ));
        assert!(matches!(
            decode::<ApiRequest>(b""),
            Err(ProtocolError::Garbage(_))
        ));
        #[derive(Serialize)]
        struct RawNew<'a> {
            id: String,
            user: &'a str,
            op: Value,
        }
        let raw = RawNew {
            id: RequestId::new().to_string(),
            user: "tali",
            op: serde_json::json!({"write": {"verb": "new", "addr": "/a//b"}}),
        };
        let bytes = rmp_serde::to_vec_named(&Envelope {
            v: PROTOCOL_VERSION,
            body: raw,
        })
        .unwrap();
        let err = decode::<ApiRequest>(&bytes).unwrap_err().to_string();
        assert!(err.contains("empty segment"), "{err}");
    }

    #[test]
    fn names_and_ids_validate() {
        assert!(UserName::parse("tali").is_ok());
        assert!(UserName::parse("").is_err());
        assert!(UserName::parse("a b").is_err());
        assert!("nope".parse::<RequestId>().is_err());
    }
}
