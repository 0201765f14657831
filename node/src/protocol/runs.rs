//! Runs and their attempts: records, what workers report, what they receive.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Address;
use crate::bundle::Hash;
use crate::manifest::{Manifest, TaskDef};

use super::*;

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
    /// The output bundle's id; its file index is in the object store under it.
    pub bundle: Hash,
    pub files: u64,
    pub bytes: u64,
    pub manifest: Manifest,
    /// Its files' paths, for rules that match files (see [`WriteOp::Ingest`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

/// The message a worker receives: the run as it was queued (so the worker needs no read
/// before claiming it; the claim itself refuses a run that ended or moved on), and which
/// delivery this is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub run: Box<RunRecord>,
    pub attempt: u32,
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
    /// The bundle versions the task's inputs matched when the run was created, by input name
    /// then address then version; the worker reads the matching files of each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selected: Vec<Selected>,
    /// The rule that created it, and why; `None` for a run someone asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Box<Cause>>,
    /// The trace context (`traceparent`) of the request that created it: every attempt,
    /// however often it is published again, stays in that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// One bundle version a run reads through one of its task's inputs (see
/// [`crate::inputs`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selected {
    /// The input's name.
    pub input: String,
    pub address: Address,
    pub version: u64,
    pub bundle: Hash,
    /// The node's own config as dotted keys (a sweep child's `lr`): its rows' params.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
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
