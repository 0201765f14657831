//! The registry: nodes, their config and history, and the request log.
//!
//! Applying commands lives in `apply`, runs in `runs`. Pure data and deterministic
//! functions: [`Registry::apply`] depends only on the command and
//! the log index, never on clocks, randomness or hash-map order, so every replica that applies
//! the same log holds the same registry (compare [`Registry::digest`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use plotter2_node::Address;
use plotter2_node::bundle::Hash;
use plotter2_node::manifest::Manifest;
use plotter2_node::nodeconf::{self, Assignment, Effective};
use plotter2_node::protocol::{
    ApiError, AttemptUpdate, BundleDetail, BundleVersion, ChildView, EVENTS_DEFAULT_LIMIT,
    EVENTS_SCAN_LIMIT, Event, EventKind, EventPage, NodeView, RequestId, RequestRecord, RuleRef,
    RunId, RunOutcome, RunRecord, TREE_DEFAULT_LIMIT, TREE_LIMIT, TreeView, UserName, WriteOp,
};
use plotter2_node::sweep;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::rules::RuleState;

/// Most assignments one request may carry.
pub const MAX_ASSIGNMENTS: usize = 1000;
/// Most attempt updates one request may carry.
pub const MAX_BATCH: usize = 4096;
pub use plotter2_node::bundle::MAX_BUNDLE_FILES;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub own: Map<String, Value>,
    pub archived: bool,
    pub created_seq: u64,
    pub created_ms: u64,
    pub history: Vec<Event>,
    /// Bundle versions, oldest first; version `n` is at index `n - 1`.
    #[serde(default)]
    pub bundles: Vec<StoredBundle>,
}

/// An immutable bundle version: its files (blobs in the object store) and provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBundle {
    pub version: u64,
    pub id: Hash,
    /// The run that produced it, when it is a run's output (such bundles are not inputs of
    /// later runs: a run's inputs are what was pushed, not what runs derived).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunId>,
    /// Files and bytes; the file index itself is a blob under `id` in the object store.
    pub files: u64,
    pub bytes: u64,
    pub manifest: Manifest,
    pub user: UserName,
    pub time_ms: u64,
    pub request: RequestId,
}

impl StoredBundle {
    fn view(&self) -> BundleVersion {
        BundleVersion {
            version: self.version,
            id: self.id,
            run: self.run,
            files: self.files,
            bytes: self.bytes,
            user: self.user.clone(),
            time_ms: self.time_ms,
            request: self.request,
            manifest: self.manifest.clone(),
        }
    }
}

/// Records sit behind `Arc`s so that cloning the registry (copy-on-write after a snapshot took a
/// reference) is shallow: a node is copied only when it is next changed, a request never.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub(crate) nodes: BTreeMap<Address, Arc<NodeRecord>>,
    /// The request log; entry `i` has `seq == i + 1`.
    pub(crate) requests: Vec<Arc<RequestRecord>>,
    pub(crate) by_id: BTreeMap<RequestId, u64>,
    /// Every run, in creation order.
    #[serde(default)]
    pub(crate) runs: BTreeMap<RunId, Arc<RunRecord>>,
    /// Runs waiting for a worker: what the leader (re)publishes, with the request seq that
    /// queued them; `queue` is the same ordered by that seq, so the leader can ask for what
    /// was queued since it last looked instead of going through them all.
    #[serde(default)]
    pub(crate) queued: BTreeMap<RunId, u64>,
    #[serde(default)]
    pub(crate) queue: BTreeSet<(u64, RunId)>,
    /// Runs a worker has claimed: what the leader checks is still being run.
    #[serde(default)]
    pub(crate) running: BTreeSet<RunId>,
    /// The first succeeded run of each fingerprint: what an equal run reuses.
    #[serde(default)]
    pub(crate) succeeded: BTreeMap<Hash, RunId>,
    /// Runs that unfinished runs wait for → the runs waiting for them.
    #[serde(default)]
    pub(crate) dependents: BTreeMap<RunId, Vec<RunId>>,
    /// Nodes whose packages define rules → the version of the package in force there.
    #[serde(default)]
    pub(crate) rulebooks: BTreeMap<Address, u64>,
    /// What each rule did and has open (see `rules`).
    #[serde(default)]
    pub(crate) rules: BTreeMap<RuleRef, RuleState>,
    /// Schedules by when they are due next.
    #[serde(default)]
    pub(crate) due: BTreeSet<(u64, RuleRef)>,
}

impl Default for Registry {
    fn default() -> Self {
        let root = NodeRecord {
            own: Map::new(),
            archived: false,
            created_seq: 0,
            created_ms: 0,
            history: Vec::new(),
            bundles: Vec::new(),
        };
        Self {
            nodes: BTreeMap::from([(Address::root(), Arc::new(root))]),
            requests: Vec::new(),
            by_id: BTreeMap::new(),
            runs: BTreeMap::new(),
            queued: BTreeMap::new(),
            queue: BTreeSet::new(),
            running: BTreeSet::new(),
            succeeded: BTreeMap::new(),
            dependents: BTreeMap::new(),
            rulebooks: BTreeMap::new(),
            rules: BTreeMap::new(),
            due: BTreeSet::new(),
        }
    }
}

pub(crate) fn no_node(addr: &Address) -> ApiError {
    ApiError::not_found(format!(
        "no node at {addr}; create it with `plotter2 new {addr}`"
    ))
}

/// Checks what can be checked without the registry (sizes, counts). The API calls this before
/// proposing, and apply calls it again, so nothing oversized ever reaches the state.
pub fn check_write(op: &WriteOp) -> Result<(), ApiError> {
    let set = match op {
        WriteOp::New { set, .. } | WriteOp::Set { set, .. } | WriteOp::Run { set, .. } => {
            set.as_slice()
        }
        WriteOp::Archive { .. }
        | WriteOp::Ingest { .. }
        | WriteOp::Attempts { .. }
        | WriteOp::Cancel { .. }
        | WriteOp::Tick {} => &[],
    };
    if let WriteOp::Attempts {
        pool,
        worker,
        items,
    } = op
    {
        if items.len() > MAX_BATCH {
            return Err(ApiError::bad_request(format!(
                "{} attempt updates in one request; the limit is {MAX_BATCH}",
                items.len()
            )));
        }
        if worker.is_empty() || worker.len() > 128 {
            return Err(ApiError::bad_request(
                "the worker name must be 1-128 characters",
            ));
        }
        for item in items {
            if !item.node().is_within(pool) {
                return Err(ApiError::bad_request(format!(
                    "run {} is at {}, outside the pool {pool} this report is for",
                    item.run(),
                    item.node()
                )));
            }
            if let AttemptUpdate::Finished {
                outcome:
                    RunOutcome::Succeeded {
                        output: Some(out), ..
                    },
                ..
            } = item
            {
                check_bundle_counts(out.files)?;
                out.manifest
                    .validate()
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
            }
        }
    }
    if let WriteOp::Run { sweep, .. } = op {
        sweep::expand(sweep).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if let WriteOp::Ingest {
        files, manifest, ..
    } = op
    {
        check_bundle_counts(*files)?;
        manifest
            .validate()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if set.len() > MAX_ASSIGNMENTS {
        return Err(ApiError::bad_request(format!(
            "{} settings in one request; the limit is {MAX_ASSIGNMENTS}",
            set.len()
        )));
    }
    for a in set {
        a.check_size()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if matches!(op, WriteOp::Set { set, .. } if set.is_empty()) {
        return Err(ApiError::bad_request("set needs at least one key=value"));
    }
    if matches!(op, WriteOp::Archive { addr } if addr.is_root()) {
        return Err(ApiError::bad_request("the root / cannot be archived"));
    }
    Ok(())
}

/// A bundle holds its manifest, so at least one file, and at most [`MAX_BUNDLE_FILES`]. (The
/// id cannot be checked against the index here: the index is in the object store, which the
/// stager that stored it verified.)
fn check_bundle_counts(files: u64) -> Result<(), ApiError> {
    if files == 0 {
        return Err(ApiError::bad_request(
            "a bundle of 0 files: every bundle holds at least its manifest.json",
        ));
    }
    if files > MAX_BUNDLE_FILES as u64 {
        return Err(ApiError::bad_request(format!(
            "{files} files in one bundle; the limit is {MAX_BUNDLE_FILES}"
        )));
    }
    Ok(())
}

impl Registry {
    pub fn contains(&self, addr: &Address) -> bool {
        self.nodes.contains_key(addr)
    }

    pub fn show(&self, addr: &Address) -> Result<NodeView, ApiError> {
        let node = self.nodes.get(addr).ok_or_else(|| no_node(addr))?;
        let mut effective = Effective::default();
        let mut hidden_by_ancestor = false;
        for a in addr.lineage() {
            if let Some(n) = self.nodes.get(&a) {
                effective.overlay(&a, &n.own);
                hidden_by_ancestor |= a != *addr && n.archived;
            }
        }
        Ok(NodeView {
            address: addr.clone(),
            archived: node.archived,
            hidden_by_ancestor,
            own: node.own.clone(),
            effective,
            children: self.children(addr, true),
            created_seq: node.created_seq,
            created_ms: node.created_ms,
            history_len: node.history.len() as u64,
            bundles: node.bundles.iter().map(StoredBundle::view).collect(),
        })
    }

    /// Version `version` of `addr`'s bundles (the latest when `None`), with its file index.
    pub fn bundle(&self, addr: &Address, version: Option<u64>) -> Result<BundleDetail, ApiError> {
        let node = self.nodes.get(addr).ok_or_else(|| no_node(addr))?;
        let found = match version {
            None => node.bundles.last(),
            Some(v) => v
                .checked_sub(1)
                .and_then(|i| node.bundles.get(usize::try_from(i).ok()?)),
        };
        let b = found.ok_or_else(|| {
            let have = match node.bundles.len() {
                0 => "it has no bundles yet; push one with `plotter2 push DIR ADDR`".to_owned(),
                n => format!("it has versions 1 to {n}"),
            };
            let which = version.map_or("bundle".to_owned(), |v| format!("version {v}"));
            ApiError::not_found(format!("{addr} has no {which}: {have}"))
        })?;
        Ok(BundleDetail {
            address: addr.clone(),
            version: b.view(),
        })
    }

    pub fn ls(&self, addr: &Address, all: bool) -> Result<Vec<ChildView>, ApiError> {
        if !self.nodes.contains_key(addr) {
            return Err(no_node(addr));
        }
        Ok(self.children(addr, all))
    }

    /// Direct children, found by scanning the subtree's contiguous key range.
    pub(crate) fn children(&self, addr: &Address, all: bool) -> Vec<ChildView> {
        let mut out: Vec<ChildView> = Vec::new();
        let depth = addr.depth() + 1;
        for (a, n) in self.nodes.range(addr..).skip(1) {
            if !a.is_within(addr) {
                break;
            }
            if a.depth() == depth {
                if all || !n.archived {
                    out.push(ChildView {
                        address: a.clone(),
                        name: a.name().unwrap_or_default().to_owned(),
                        archived: n.archived,
                        children: 0,
                    });
                }
            } else if let Some(last) = out.last_mut()
                && a.depth() == depth + 1
                && a.is_within(&last.address)
            {
                last.children += 1;
            }
        }
        out
    }

    /// A page of the subtree below `addr`, depth first (see `ReadOp::Tree`): one pass over
    /// the subtree's key range from `after`, which also counts what is past the page.
    pub fn tree(
        &self,
        addr: &Address,
        all: bool,
        after: Option<&Address>,
        limit: Option<u32>,
    ) -> Result<TreeView, ApiError> {
        use std::ops::Bound;
        if !self.nodes.contains_key(addr) {
            return Err(no_node(addr));
        }
        let limit = limit.unwrap_or(TREE_DEFAULT_LIMIT).clamp(1, TREE_LIMIT) as usize;
        // An archived node hides its subtree; one above `after` hides what follows it, too.
        let mut hidden: Option<Address> = None;
        let start = match after {
            None => Bound::Excluded(addr),
            Some(a) if a.is_within(addr) && a != addr => {
                let mut up = Some(a.clone());
                while let Some(p) = up.filter(|p| p != addr) {
                    if !all && self.nodes.get(&p).is_some_and(|n| n.archived) {
                        hidden = Some(p.clone());
                    }
                    up = p.parent();
                }
                Bound::Excluded(a)
            }
            Some(a) => {
                return Err(ApiError::bad_request(format!(
                    "--after {a} is not below {addr}; it continues a listing of {addr} where the last one stopped"
                )));
            }
        };
        let mut nodes: Vec<ChildView> = Vec::new();
        let mut more = 0u64;
        // The listed ancestors of the node at hand: (depth, index in `nodes`).
        let mut line: Vec<(usize, usize)> = Vec::new();
        for (a, n) in self.nodes.range::<Address, _>((start, Bound::Unbounded)) {
            if !a.is_within(addr) {
                break;
            }
            if hidden.as_ref().is_some_and(|h| a.is_within(h)) {
                continue;
            }
            if !all && n.archived {
                hidden = Some(a.clone());
                continue;
            }
            let depth = a.depth();
            while line.last().is_some_and(|(d, _)| *d >= depth) {
                line.pop();
            }
            if let Some((d, i)) = line.last()
                && *d + 1 == depth
            {
                nodes[*i].children += 1;
            }
            if nodes.len() < limit {
                line.push((depth, nodes.len()));
                nodes.push(ChildView {
                    address: a.clone(),
                    name: a.name().unwrap_or_default().to_owned(),
                    archived: n.archived,
                    children: 0,
                });
            } else {
                more += 1;
            }
        }
        let next = (more > 0)
            .then(|| nodes.last().map(|n| n.address.clone()))
            .flatten();
        Ok(TreeView { nodes, more, next })
    }

    pub fn history(&self, addr: &Address) -> Result<Vec<Event>, ApiError> {
        self.nodes
            .get(addr)
            .map(|n| n.history.clone())
            .ok_or_else(|| no_node(addr))
    }

    pub fn requests(&self, after: u64, limit: u32) -> Vec<RequestRecord> {
        self.requests
            .iter()
            .skip(after as usize)
            .take(limit as usize)
            .map(|r| (**r).clone())
            .collect()
    }

    pub fn request(&self, id: &RequestId) -> Result<RequestRecord, ApiError> {
        self.by_id
            .get(id)
            .and_then(|&seq| self.requests.get(seq as usize - 1))
            .map(|r| (**r).clone())
            .ok_or_else(|| {
                ApiError::not_found(format!(
                    "no request with id {id}; list them with `plotter2 requests`"
                ))
            })
    }

    /// The events at `addr` and below of the requests after `after` (see `ReadOp::Events`).
    pub fn events(
        &self,
        addr: &Address,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<EventPage, ApiError> {
        let head = self.request_count();
        let Some(after) = after else {
            return Ok(EventPage {
                events: Vec::new(),
                upto: head,
                head,
            });
        };
        let limit = limit.unwrap_or(EVENTS_DEFAULT_LIMIT).max(1) as usize;
        let mut events = Vec::new();
        let mut upto = after.min(head);
        for rec in self
            .requests
            .iter()
            .skip(usize::try_from(after).unwrap_or(usize::MAX))
            .take(EVENTS_SCAN_LIMIT as usize)
        {
            // Whole requests only, so `upto` says exactly what was looked through.
            if events.len() >= limit {
                break;
            }
            events.extend(rec.events_within(addr));
            upto = rec.seq;
        }
        Ok(EventPage { events, upto, head })
    }

    /// The request records after request `seq`.
    pub fn requests_after(&self, seq: u64) -> Vec<Arc<RequestRecord>> {
        self.requests
            .iter()
            .skip(usize::try_from(seq).unwrap_or(usize::MAX))
            .cloned()
            .collect()
    }

    /// When the next schedule is due, if any rule has one.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.due.first().map(|(t, _)| *t)
    }

    pub fn request_count(&self) -> u64 {
        self.requests.len() as u64
    }

    /// blake3 over the canonical encoding of the whole registry.
    pub fn digest(&self) -> String {
        match rmp_serde::to_vec_named(self) {
            Ok(bytes) => format!("b3:{}", blake3::hash(&bytes).to_hex()),
            Err(e) => format!("unencodable: {e}"),
        }
    }
}

/// What applying one request did, gathered as its plans are installed.
#[derive(Default)]
pub(crate) struct Effects {
    pub created: Vec<Address>,
    pub events: Vec<(Address, EventKind)>,
}

/// What a write will do, worked out before anything changes: all of it or none of it applies.
#[derive(Default)]
pub(crate) struct Plan {
    pub events: Vec<(Address, EventKind)>,
    /// Own configs after the write, of the nodes whose config it sets or creates.
    pub configs: Vec<(Address, Map<String, Value>)>,
    /// New bundle versions (numbered by [`Plan::add_bundle`]), with their files' paths for
    /// rules when they are known.
    pub bundles: Vec<(Address, StoredBundle, Option<Vec<String>>)>,
    /// Runs created or changed, in order; a run appears at most once.
    pub runs: Vec<RunRecord>,
}

impl Plan {
    /// Records `bundle` as the next version of `addr` (with its `bundle_added` event), unless
    /// that bundle already is a version there; returns its version either way, and whether it
    /// is a new one.
    pub fn add_bundle(
        &mut self,
        reg: &Registry,
        addr: &Address,
        mut bundle: StoredBundle,
        paths: Option<Vec<String>>,
    ) -> (u64, bool) {
        let stored = reg
            .nodes
            .get(addr)
            .map(|n| n.bundles.as_slice())
            .unwrap_or_default();
        let planned = self
            .bundles
            .iter()
            .filter(|(a, _, _)| a == addr)
            .map(|(_, b, _)| b);
        let mut count = stored.len() as u64;
        // The same bundle at the same address is one version, however often it arrives.
        for b in stored.iter().chain(planned) {
            if b.id == bundle.id {
                return (b.version, false);
            }
            count = count.max(b.version);
        }
        bundle.version = count + 1;
        self.events.push((
            addr.clone(),
            EventKind::BundleAdded {
                version: bundle.version,
                bundle: bundle.id,
            },
        ));
        let version = bundle.version;
        self.bundles.push((addr.clone(), bundle, paths));
        (version, true)
    }

    /// The run as this plan left it, else as the registry holds it.
    pub fn run(&self, reg: &Registry, id: &RunId) -> Option<RunRecord> {
        match self.runs.iter().rev().find(|r| r.id == *id) {
            Some(r) => Some(r.clone()),
            None => reg.runs.get(id).map(|r| (**r).clone()),
        }
    }

    /// Adds or replaces `run` in the plan.
    pub fn put_run(&mut self, run: RunRecord) {
        match self.runs.iter_mut().find(|r| r.id == run.id) {
            Some(slot) => *slot = run,
            None => self.runs.push(run),
        }
    }
}

/// Applies `set` to a copy of `own`, recording one event per key; returns the new config.
pub(crate) fn plan_assignments(
    addr: &Address,
    mut own: Map<String, Value>,
    set: &[Assignment],
    events: &mut Vec<(Address, EventKind)>,
) -> Result<Map<String, Value>, ApiError> {
    for a in set {
        let previous = lookup(&own, a.key.parts());
        nodeconf::assign(&mut own, a).map_err(|e| ApiError::bad_request(format!("{addr}: {e}")))?;
        events.push((
            addr.clone(),
            EventKind::ConfigSet {
                key: a.key.to_string(),
                value: a.value.clone(),
                previous,
            },
        ));
    }
    Ok(own)
}

fn lookup(own: &Map<String, Value>, parts: &[String]) -> Option<Value> {
    let (first, rest) = parts.split_first()?;
    let mut cur = own.get(first)?;
    for p in rest {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Command;
    use plotter2_node::protocol::UserName;
    use plotter2_node::protocol::{BundleRef, RequestStatus};
    use serde_json::json;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn cmd(op: WriteOp) -> Command {
        Command {
            id: RequestId::new(),
            user: UserName::parse("tali").unwrap(),
            time_ms: 1000,
            trace: None,
            op,
        }
    }

    fn new(a: &str, set: &[&str]) -> WriteOp {
        WriteOp::New {
            addr: addr(a),
            set: set.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

    #[test]
    fn the_issue_tour() {
        let mut r = Registry::default();
        let c = cmd(new(
            "/sources/tali/experiment2",
            &["lr=0.1", "model.depth=3"],
        ));
        let receipt = r.apply(c.clone(), 1).unwrap();
        assert_eq!(receipt.seq, 1);
        assert_eq!(receipt.created.len(), 3, "sources, tali, experiment2");
        r.apply(
            cmd(new("/sources/tali/experiment2/experiment2a", &["lr=0.2"])),
            2,
        )
        .unwrap();
        r.apply(
            cmd(WriteOp::Set {
                addr: addr("/sources/tali/experiment2"),
                set: vec!["optimizer=adam".parse().unwrap()],
            }),
            3,
        )
        .unwrap();
        let v = r
            .show(&addr("/sources/tali/experiment2/experiment2a"))
            .unwrap();
        assert_eq!(Value::Object(v.own.clone()), json!({"lr": 0.2}));
        assert_eq!(
            Value::Object(v.effective.config.clone()),
            json!({"lr": 0.2, "model": {"depth": 3}, "optimizer": "adam"})
        );
        assert_eq!(
            v.effective.from["model.depth"],
            addr("/sources/tali/experiment2")
        );
        assert_eq!(
            v.effective.from["lr"],
            addr("/sources/tali/experiment2/experiment2a")
        );

        // Duplicate id: same answer, nothing applied twice.
        let again = r.apply(c, 9).unwrap();
        assert!(again.duplicate);
        assert_eq!(again.seq, 1);
        assert_eq!(r.request_count(), 3);

        let h = r.history(&addr("/sources/tali/experiment2")).unwrap();
        let kinds: Vec<&str> = h
            .iter()
            .map(|e| match &e.kind {
                EventKind::Created => "created",
                EventKind::ConfigSet { .. } => "set",
                EventKind::Archived => "archived",
                EventKind::BundleAdded { .. } => "bundle",
                EventKind::RunCreated { .. } => "run",
                EventKind::RunState { .. } | EventKind::RuleFired { .. } => "log only",
            })
            .collect();
        assert_eq!(kinds, ["created", "set", "set", "set"]);

        r.apply(
            cmd(WriteOp::Archive {
                addr: addr("/sources/tali/experiment2/experiment2a"),
            }),
            4,
        )
        .unwrap();
        assert!(
            r.ls(&addr("/sources/tali/experiment2"), false)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            r.ls(&addr("/sources/tali/experiment2"), true)
                .unwrap()
                .len(),
            1
        );
        let ls = r.ls(&addr("/sources"), false).unwrap();
        assert_eq!(ls.len(), 1);
        assert_eq!(ls[0].children, 1);
    }

    #[test]
    fn failures_are_logged_and_change_no_node() {
        let mut r = Registry::default();
        r.apply(cmd(new("/a", &["model=3"])), 1).unwrap();
        let before = r.nodes.clone();
        let err = r
            .apply(
                cmd(WriteOp::Set {
                    addr: addr("/a"),
                    set: vec!["lr=1".parse().unwrap(), "model.x=1".parse().unwrap()],
                }),
                2,
            )
            .unwrap_err();
        assert!(err.message.contains("model is a number"), "{}", err.message);
        let err = r
            .apply(
                cmd(WriteOp::Set {
                    addr: addr("/nope"),
                    set: vec!["a=1".parse().unwrap()],
                }),
                3,
            )
            .unwrap_err();
        assert!(err.message.contains("plotter2 new /nope"));
        assert!(
            r.apply(
                cmd(WriteOp::Archive {
                    addr: Address::root()
                }),
                4
            )
            .is_err()
        );
        assert_eq!(r.nodes, before);
        assert_eq!(r.request_count(), 4);
        assert_eq!(r.requests(0, 100)[1].status, RequestStatus::Failed);
    }

    #[test]
    fn tree_lists_the_subtree_depth_first_in_pages_and_hides_archived() {
        let mut r = Registry::default();
        for (i, a) in ["/t/a/x", "/t/a/y/deep", "/t/b", "/t/c/z", "/other"]
            .iter()
            .enumerate()
        {
            r.apply(cmd(new(a, &[])), i as u64 + 1).unwrap();
        }
        r.apply(cmd(WriteOp::Archive { addr: addr("/t/c") }), 9)
            .unwrap();
        let names = |v: &TreeView| -> Vec<String> {
            v.nodes.iter().map(|n| n.address.to_string()).collect()
        };
        let t = r.tree(&addr("/t"), false, None, None).unwrap();
        assert_eq!(
            names(&t),
            ["/t/a", "/t/a/x", "/t/a/y", "/t/a/y/deep", "/t/b"]
        );
        assert_eq!((t.more, t.next.clone()), (0, None));
        let children: Vec<u64> = t.nodes.iter().map(|n| n.children).collect();
        assert_eq!(children, [2, 0, 1, 0, 0]);
        let all = r.tree(&addr("/t"), true, None, None).unwrap();
        assert_eq!(names(&all)[5..], ["/t/c", "/t/c/z"]);
        assert!(all.nodes[5].archived);

        // Pages: the cut says how many are left and where to go on.
        let p1 = r.tree(&addr("/t"), true, None, Some(3)).unwrap();
        assert_eq!(names(&p1), ["/t/a", "/t/a/x", "/t/a/y"]);
        assert_eq!(p1.nodes[0].children, 2, "counted past the page too");
        assert_eq!((p1.more, p1.next.clone()), (4, Some(addr("/t/a/y"))));
        let p2 = r
            .tree(&addr("/t"), true, p1.next.as_ref(), Some(3))
            .unwrap();
        assert_eq!(names(&p2), ["/t/a/y/deep", "/t/b", "/t/c"]);
        assert_eq!(p2.more, 1);
        // Going on from inside an archived subtree without --all shows nothing of it.
        let hid = r
            .tree(&addr("/t"), false, Some(&addr("/t/c")), None)
            .unwrap();
        assert!(hid.nodes.is_empty(), "{:?}", names(&hid));
        assert!(
            r.tree(&addr("/t"), false, Some(&addr("/other")), None)
                .is_err()
        );
        assert!(r.tree(&addr("/nope"), false, None, None).is_err());
    }

    #[test]
    fn replicas_applying_the_same_log_agree() {
        let log: Vec<Command> = (0..50)
            .map(|i| cmd(new(&format!("/x/n{}", i % 7), &[&format!("v={i}")])))
            .collect();
        let mut a = Registry::default();
        let mut b = Registry::default();
        for (i, c) in log.iter().enumerate() {
            let ra = a.apply(c.clone(), i as u64 + 1);
            let rb = b.apply(c.clone(), i as u64 + 1);
            assert_eq!(ra, rb);
        }
        assert_eq!(a.digest(), b.digest());
        let snapshot = rmp_serde::to_vec_named(&a).unwrap();
        let c: Registry = rmp_serde::from_slice(&snapshot).unwrap();
        assert_eq!(c.digest(), a.digest());
    }

    fn ingest(a: &str, files: &[(&str, &[u8])]) -> WriteOp {
        let (index, manifest) = crate::testing::bundle(files, json!({"manifest_version": 1}));
        crate::testing::ingest(a, &index, manifest)
    }

    #[test]
    fn ingest_makes_versions_once_per_bundle() {
        let mut r = Registry::default();
        let first = r.apply(cmd(ingest("/e/x", &[("a.csv", b"1")])), 1).unwrap();
        let b1 = first.bundle.clone().unwrap();
        assert_eq!((b1.version, b1.existing), (1, false));
        assert_eq!(first.created.len(), 2, "created /e and /e/x");
        // The same bundle again (another request): the same version, nothing new.
        let again = r.apply(cmd(ingest("/e/x", &[("a.csv", b"1")])), 2).unwrap();
        assert_eq!(
            again.bundle.unwrap(),
            BundleRef {
                version: 1,
                id: b1.id,
                existing: true,
                at: None,
            }
        );
        let second = r.apply(cmd(ingest("/e/x", &[("a.csv", b"2")])), 3).unwrap();
        assert_eq!(second.bundle.unwrap().version, 2);
        let view = r.show(&addr("/e/x")).unwrap();
        assert_eq!(view.bundles.len(), 2);
        assert_eq!(view.bundles[0].files, 1);
        let added = r
            .history(&addr("/e/x"))
            .unwrap()
            .iter()
            .filter(|e| matches!(e.kind, EventKind::BundleAdded { .. }))
            .count();
        assert_eq!(added, 2);

        // A bundle of no files, or of more than the limit, is refused and changes no node.
        let before = r.nodes.clone();
        for n in [0, MAX_BUNDLE_FILES as u64 + 1] {
            let mut bad = ingest("/e/x", &[("a.csv", b"3")]);
            if let WriteOp::Ingest { files, .. } = &mut bad {
                *files = n;
            }
            let err = r.apply(cmd(bad), 4).unwrap_err();
            assert!(
                err.message.contains(&format!("{n} files")),
                "{}",
                err.message
            );
        }
        assert_eq!(r.nodes, before);
    }
}
