//! What reads answer: nodes, bundle versions, children, the tree, the request log.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Address;
use crate::bundle::Hash;
use crate::manifest::Manifest;
use crate::nodeconf::Effective;

use super::*;

/// A bundle version of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRef {
    pub version: u64,
    pub id: Hash,
    /// True when this bundle was already that version: nothing new was recorded.
    pub existing: bool,
    /// Where it is a version, when that is not the run's own node: a pipeline hands its
    /// report off below it (`<node>/meta/reports`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Address>,
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
    /// Everything the request changed, in order, by address: what the leader publishes as
    /// events after the commit, and what a consumer that missed some reads back.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<(Address, EventKind)>,
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
    /// A run moved to `state` (in the request log's events, not in node histories).
    RunState {
        run: RunId,
        task: String,
        state: RunState,
    },
    /// A rule created run `run` (in the request log's events).
    RuleFired {
        rule: RuleRef,
        run: RunId,
    },
}

impl EventKind {
    /// The event's name, which is also its subject's kind token: `p2.event.<name>.<address>`.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::ConfigSet { .. } => "config_set",
            EventKind::Archived => "archived",
            EventKind::BundleAdded { .. } => "bundle_added",
            EventKind::RunCreated { .. } => "run_created",
            EventKind::RunState { .. } => "run_state",
            EventKind::RuleFired { .. } => "rule_fired",
        }
    }
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

/// One bundle version and where it is. Its files are listed by its file index, a blob in the
/// object store under the bundle id (`BlobStore::get_index`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleDetail {
    pub address: Address,
    #[serde(flatten)]
    pub version: BundleVersion,
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
