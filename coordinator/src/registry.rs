//! The registry: nodes, their config and history, and the request log.
//!
//! Pure data and deterministic functions: [`Registry::apply`] depends only on the command and
//! the log index, never on clocks, randomness or hash-map order, so every replica that applies
//! the same log holds the same registry (compare [`Registry::digest`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use plotter2_node::Address;
use plotter2_node::bundle::{FileIndex, Hash};
use plotter2_node::manifest::{Manifest, TaskDef};
use plotter2_node::nodeconf::{self, Assignment, Effective};
use plotter2_node::protocol::{
    ApiError, AttemptRecord, BundleDetail, BundleRef, BundleVersion, ChildView, Event, EventKind,
    NodeView, RequestId, RequestRecord, RequestStatus, RunId, RunOutcome, RunRecord, RunState,
    UserName, WriteOp, WriteReceipt,
};
use plotter2_node::sweep::{self, Sweep};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::types::Command;

/// Most assignments one request may carry.
pub const MAX_ASSIGNMENTS: usize = 1000;
/// Most files one bundle may hold.
pub const MAX_BUNDLE_FILES: usize = 1_000_000;

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
    pub index: FileIndex,
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
            files: self.index.files().len() as u64,
            bytes: self.index.total_bytes(),
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
    nodes: BTreeMap<Address, Arc<NodeRecord>>,
    /// The request log; entry `i` has `seq == i + 1`.
    requests: Vec<Arc<RequestRecord>>,
    by_id: BTreeMap<RequestId, u64>,
    /// Every run, in creation order.
    #[serde(default)]
    runs: BTreeMap<RunId, Arc<RunRecord>>,
    /// Runs waiting for a worker: what the leader (re)publishes.
    #[serde(default)]
    queued: std::collections::BTreeSet<RunId>,
    /// The first succeeded run of each fingerprint: what an equal run reuses.
    #[serde(default)]
    succeeded: BTreeMap<Hash, RunId>,
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
            queued: Default::default(),
            succeeded: BTreeMap::new(),
        }
    }
}

fn no_node(addr: &Address) -> ApiError {
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
        | WriteOp::RunStarted { .. }
        | WriteOp::RunFinished { .. }
        | WriteOp::Cancel { .. } => &[],
    };
    if let WriteOp::RunFinished {
        outcome: RunOutcome::Succeeded {
            output: Some(out), ..
        },
        ..
    } = op
    {
        if out.index.id() != out.bundle {
            return Err(ApiError::bad_request(format!(
                "output bundle id {} does not match its file index",
                out.bundle
            )));
        }
        out.manifest
            .validate()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if let WriteOp::Run { sweep, .. } = op {
        sweep::expand(sweep).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if let WriteOp::Ingest {
        bundle,
        index,
        manifest,
        ..
    } = op
    {
        if index.id() != *bundle {
            return Err(ApiError::bad_request(format!(
                "bundle id {bundle} does not match its file index (which hashes to {}); re-hash the bundle",
                index.id()
            )));
        }
        if index.files().len() > MAX_BUNDLE_FILES {
            return Err(ApiError::bad_request(format!(
                "{} files in one bundle; the limit is {MAX_BUNDLE_FILES}",
                index.files().len()
            )));
        }
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

impl Registry {
    /// Applies one committed command at `log_index`. A request id seen before answers its first
    /// result and changes nothing.
    pub fn apply(&mut self, cmd: Command, log_index: u64) -> Result<WriteReceipt, ApiError> {
        if let Some(answer) = self.answer_for(&cmd.id) {
            return answer;
        }
        let seq = self.requests.len() as u64 + 1;
        let planned = check_write(&cmd.op).and_then(|()| self.plan(&cmd, seq));
        let mut created = Vec::new();
        let outcome = planned.map(|plan| {
            for (addr, kind) in plan.events {
                let event = Event {
                    seq,
                    request: cmd.id,
                    user: cmd.user.clone(),
                    time_ms: cmd.time_ms,
                    kind,
                };
                match event.kind {
                    EventKind::Created => {
                        created.push(addr.clone());
                        self.nodes.insert(
                            addr,
                            Arc::new(NodeRecord {
                                own: Map::new(),
                                archived: false,
                                created_seq: seq,
                                created_ms: cmd.time_ms,
                                history: vec![event],
                                bundles: Vec::new(),
                            }),
                        );
                    }
                    _ => {
                        if let Some(node) = self.nodes.get_mut(&addr).map(Arc::make_mut) {
                            match &event.kind {
                                // The config itself is installed from the plan below.
                                EventKind::ConfigSet { .. } => {}
                                EventKind::Archived => node.archived = true,
                                EventKind::BundleAdded { version, bundle } => {
                                    let content = match &cmd.op {
                                        WriteOp::Ingest {
                                            index, manifest, ..
                                        } => Some((index, &**manifest)),
                                        WriteOp::RunFinished {
                                            outcome:
                                                RunOutcome::Succeeded {
                                                    output: Some(out), ..
                                                },
                                            ..
                                        } => Some((&out.index, &out.manifest)),
                                        _ => None,
                                    };
                                    if let Some((index, manifest)) = content {
                                        node.bundles.push(StoredBundle {
                                            version: *version,
                                            id: *bundle,
                                            index: index.clone(),
                                            manifest: manifest.clone(),
                                            user: cmd.user.clone(),
                                            time_ms: cmd.time_ms,
                                            request: cmd.id,
                                        });
                                    }
                                }
                                EventKind::Created | EventKind::RunCreated { .. } => {}
                            }
                            node.history.push(event);
                        }
                    }
                }
            }
            if let (Some(own), Some(node)) = (plan.own, self.nodes.get_mut(cmd.op.target())) {
                Arc::make_mut(node).own = own;
            }
            for (addr, own) in plan.configs {
                if let Some(node) = self.nodes.get_mut(&addr) {
                    Arc::make_mut(node).own = own;
                }
            }
            let created = matches!(cmd.op, WriteOp::Run { .. });
            let mut ids = Vec::with_capacity(plan.runs.len());
            for (addr, stored) in plan.copies {
                if let Some(node) = self.nodes.get_mut(&addr) {
                    Arc::make_mut(node).bundles.push(stored);
                }
            }
            for run in plan.runs {
                if run.state == RunState::Queued {
                    self.queued.insert(run.id);
                } else {
                    self.queued.remove(&run.id);
                }
                if run.state == RunState::Succeeded {
                    self.succeeded.entry(run.fingerprint).or_insert(run.id);
                }
                if created {
                    ids.push(run.id);
                }
                self.runs.insert(run.id, Arc::new(run));
            }
            ids
        });
        let runs = outcome.as_ref().cloned().unwrap_or_default();
        let outcome = outcome.map(|_| ());
        let bundle = match (&cmd.op, &outcome) {
            (WriteOp::Ingest { addr, bundle, .. }, Ok(())) => self.nodes.get(addr).and_then(|n| {
                let b = n.bundles.iter().find(|b| b.id == *bundle)?;
                Some(BundleRef {
                    version: b.version,
                    id: b.id,
                    existing: b.request != cmd.id,
                })
            }),
            _ => None,
        };
        self.requests.push(Arc::new(RequestRecord {
            seq,
            id: cmd.id,
            user: cmd.user.clone(),
            time_ms: cmd.time_ms,
            verb: cmd.op.verb().to_owned(),
            target: cmd.op.target().clone(),
            status: if outcome.is_ok() {
                RequestStatus::Done
            } else {
                RequestStatus::Failed
            },
            error: outcome.as_ref().err().cloned(),
            log_index,
            payload: cmd.op,
            created,
            bundle,
            runs,
        }));
        self.by_id.insert(cmd.id, seq);
        self.result_of(seq, false)
    }

    /// Works out what `cmd` (request number `seq`) does without changing anything.
    fn plan(&self, cmd: &Command, seq: u64) -> Result<Plan, ApiError> {
        let mut plan = Plan::default();
        match &cmd.op {
            WriteOp::Run {
                addr,
                task,
                set,
                sweep,
                force,
            } => {
                self.plan_run(cmd, seq, addr, task, set, sweep, *force, &mut plan)?;
                return Ok(plan);
            }
            WriteOp::RunStarted {
                node,
                run,
                attempt,
                worker,
            } => {
                let mut r = self.run_at(node, run)?;
                if r.state.is_finished() {
                    return Err(ApiError::bad_request(format!(
                        "run {run} has already ended ({:?})",
                        r.state
                    )));
                }
                if *attempt != r.attempt {
                    return Err(ApiError::bad_request(format!(
                        "run {run}: delivery {attempt} is stale; the run is at attempt {}",
                        r.attempt
                    )));
                }
                r.state = RunState::Running;
                r.attempts.push(AttemptRecord {
                    attempt: *attempt,
                    worker: worker.clone(),
                    started_ms: cmd.time_ms,
                    finished_ms: None,
                    exit: None,
                    reason: None,
                    log: None,
                });
                plan.runs.push(r);
                return Ok(plan);
            }
            WriteOp::Cancel { node, run } => {
                let mut r = self.run_at(node, run)?;
                if r.state.is_finished() {
                    return Err(ApiError::bad_request(format!(
                        "run {run} has already ended ({:?})",
                        r.state
                    )));
                }
                r.state = RunState::Cancelled;
                r.finished_ms = Some(cmd.time_ms);
                r.reason = Some(format!("cancelled by {}", cmd.user));
                plan.runs.push(r);
                return Ok(plan);
            }
            WriteOp::RunFinished {
                node,
                run,
                attempt,
                outcome,
                log,
            } => {
                let mut r = self.run_at(node, run)?;
                // Reported twice, or by a delivery that was superseded: nothing to do.
                if r.state.is_finished() || *attempt != r.attempt {
                    if r.state == RunState::Cancelled
                        && let Some(a) = r
                            .attempts
                            .iter_mut()
                            .rev()
                            .find(|a| a.attempt == *attempt && a.finished_ms.is_none())
                    {
                        // The killed attempt still reports its log.
                        a.finished_ms = Some(cmd.time_ms);
                        a.log = *log;
                        a.reason = Some("cancelled".into());
                        plan.runs.push(r);
                    }
                    return Ok(plan);
                }
                let (exit, reason) = match outcome {
                    RunOutcome::Succeeded { exit, .. } => (Some(*exit), None),
                    RunOutcome::Failed { exit, reason } => (*exit, Some(reason.clone())),
                };
                // The attempt's record keeps its log even when the run ended meanwhile.
                if let Some(a) = r.attempts.iter_mut().rev().find(|a| a.attempt == *attempt) {
                    a.finished_ms = Some(cmd.time_ms);
                    a.exit = exit;
                    a.reason = reason.clone();
                    a.log = *log;
                }
                r.exit = exit;
                match outcome {
                    RunOutcome::Succeeded { output, .. } => {
                        r.state = RunState::Succeeded;
                        r.finished_ms = Some(cmd.time_ms);
                        r.reason = None;
                        if let Some(out) = output {
                            let versions = self
                                .nodes
                                .get(node)
                                .map(|n| n.bundles.as_slice())
                                .unwrap_or_default();
                            let version = match versions.iter().find(|b| b.id == out.bundle) {
                                Some(b) => b.version,
                                None => {
                                    let v = versions.len() as u64 + 1;
                                    plan.events.push((
                                        node.clone(),
                                        EventKind::BundleAdded {
                                            version: v,
                                            bundle: out.bundle,
                                        },
                                    ));
                                    v
                                }
                            };
                            r.output = Some(BundleRef {
                                version,
                                id: out.bundle,
                                existing: false,
                            });
                        }
                    }
                    RunOutcome::Failed { .. } if r.attempt <= r.definition.retries => {
                        r.state = RunState::Queued;
                        r.attempt += 1;
                        r.reason = reason;
                    }
                    RunOutcome::Failed { .. } => {
                        r.state = RunState::Failed;
                        r.finished_ms = Some(cmd.time_ms);
                        r.reason = reason;
                    }
                }
                plan.runs.push(r);
                return Ok(plan);
            }
            _ => {}
        }
        let events = &mut plan.events;
        match &cmd.op {
            WriteOp::New { addr, set } => {
                self.plan_lineage(addr, events)?;
                if !set.is_empty() {
                    let own = self
                        .nodes
                        .get(addr)
                        .map(|n| n.own.clone())
                        .unwrap_or_default();
                    plan.own = Some(plan_assignments(addr, own, set, events)?);
                }
            }
            WriteOp::Set { addr, set } => {
                let node = self.nodes.get(addr).ok_or_else(|| no_node(addr))?;
                if node.archived {
                    return Err(ApiError::bad_request(format!(
                        "{addr} is archived and read-only"
                    )));
                }
                plan.own = Some(plan_assignments(addr, node.own.clone(), set, events)?);
            }
            WriteOp::Archive { addr } => {
                let node = self.nodes.get(addr).ok_or_else(|| no_node(addr))?;
                if !node.archived {
                    events.push((addr.clone(), EventKind::Archived));
                }
            }
            WriteOp::Ingest { addr, bundle, .. } => {
                self.plan_lineage(addr, events)?;
                let versions = self
                    .nodes
                    .get(addr)
                    .map(|n| n.bundles.as_slice())
                    .unwrap_or_default();
                // The same bundle at the same address is one version, however often it arrives.
                if !versions.iter().any(|b| b.id == *bundle) {
                    let version = versions.len() as u64 + 1;
                    events.push((
                        addr.clone(),
                        EventKind::BundleAdded {
                            version,
                            bundle: *bundle,
                        },
                    ));
                }
            }
            WriteOp::Run { .. }
            | WriteOp::RunStarted { .. }
            | WriteOp::RunFinished { .. }
            | WriteOp::Cancel { .. } => {}
        }
        Ok(plan)
    }

    /// A copy of run `id`, which must be at `node`.
    fn run_at(&self, node: &Address, id: &RunId) -> Result<RunRecord, ApiError> {
        let r = self.run(id)?;
        if r.node != *node {
            return Err(ApiError::bad_request(format!(
                "run {id} is at {}, not {node}",
                r.node
            )));
        }
        Ok(r)
    }

    /// Runs waiting for a worker, oldest first, with the delivery to publish.
    pub fn queued_runs(&self) -> Vec<Arc<RunRecord>> {
        self.queued
            .iter()
            .filter_map(|id| self.runs.get(id).cloned())
            .collect()
    }

    /// Runs of `task`: at `addr`, or one per sweep combination at new nodes
    /// `addr/sweep-<n>/<combination>` whose own config is the combination.
    #[allow(clippy::too_many_arguments)]
    fn plan_run(
        &self,
        cmd: &Command,
        seq: u64,
        addr: &Address,
        task: &str,
        set: &[Assignment],
        sweep: &[Sweep],
        force: bool,
        plan: &mut Plan,
    ) -> Result<(), ApiError> {
        let (defined_at, code, def) = self.find_task(addr, task)?;
        self.plan_lineage(addr, &mut plan.events)?;
        let combos = sweep::expand(sweep).map_err(|e| ApiError::bad_request(e.to_string()))?;
        // (node, its own config when the run creates it)
        let mut targets: Vec<(Address, Option<Map<String, Value>>)> = Vec::new();
        if combos.is_empty() {
            targets.push((addr.clone(), None));
        } else {
            let bad =
                |e: plotter2_node::address::AddressError| ApiError::bad_request(e.to_string());
            let taken = self
                .children(addr, true)
                .iter()
                .filter(|c| c.name.starts_with("sweep-"))
                .count();
            let base = addr.child(&format!("sweep-{}", taken + 1)).map_err(bad)?;
            plan.events.push((base.clone(), EventKind::Created));
            for c in &combos {
                let node = base.child(&c.segment()).map_err(bad)?;
                plan.events.push((node.clone(), EventKind::Created));
                let own = plan_assignments(&node, Map::new(), &c.set, &mut plan.events)?;
                plan.configs.push((node.clone(), own.clone()));
                targets.push((node, Some(own)));
            }
        }
        for (i, (node, new_own)) in targets.into_iter().enumerate() {
            let mut params = def.params.clone();
            for (k, v) in self.effective(&node, new_own.as_ref()) {
                params.insert(k, v);
            }
            for a in set {
                nodeconf::assign(&mut params, a)
                    .map_err(|e| ApiError::bad_request(format!("--set {}: {e}", a.key)))?;
            }
            let inputs: Vec<Hash> = node
                .lineage()
                .filter(|a| a.is_within(&defined_at))
                .filter_map(|a| self.nodes.get(&a)?.bundles.last().map(|b| b.id))
                .filter(|id| *id != code.id)
                .collect();
            let fingerprint = Hash::of(
                serde_json::to_string(&(&def, &inputs, &params, code.id))
                    .unwrap_or_default()
                    .as_bytes(),
            );
            let id = RunId {
                seq,
                n: u32::try_from(i).unwrap_or(u32::MAX),
            };
            plan.events.push((
                node.clone(),
                EventKind::RunCreated {
                    run: id,
                    task: task.to_owned(),
                },
            ));
            let mut record = RunRecord {
                id,
                node: node.clone(),
                task: task.to_owned(),
                defined_at: defined_at.clone(),
                definition: def.clone(),
                params,
                code: code.id,
                inputs,
                fingerprint,
                state: RunState::Queued,
                request: cmd.id,
                user: cmd.user.clone(),
                created_ms: cmd.time_ms,
                attempt: 1,
                attempts: Vec::new(),
                output: None,
                reason: None,
                exit: None,
                finished_ms: None,
                reused_from: None,
            };
            if !force {
                self.plan_reuse(&mut record, cmd, plan);
            }
            plan.runs.push(record);
        }
        Ok(())
    }

    /// Makes `run` a reuse of the first succeeded run with its fingerprint, when there is one:
    /// it ends at once with that run's output, recorded as a version of its own node too.
    fn plan_reuse(&self, run: &mut RunRecord, cmd: &Command, plan: &mut Plan) {
        let Some(earlier) = self
            .succeeded
            .get(&run.fingerprint)
            .and_then(|id| self.runs.get(id))
        else {
            return;
        };
        run.state = RunState::Succeeded;
        run.finished_ms = Some(cmd.time_ms);
        run.exit = earlier.exit;
        run.reused_from = Some(earlier.id);
        let Some(out) = &earlier.output else {
            return;
        };
        let Some(stored) = self
            .nodes
            .get(&earlier.node)
            .and_then(|n| n.bundles.iter().find(|b| b.id == out.id))
        else {
            return;
        };
        let existing = self
            .nodes
            .get(&run.node)
            .map(|n| n.bundles.as_slice())
            .unwrap_or_default();
        let version = match existing.iter().find(|b| b.id == out.id) {
            Some(b) => b.version,
            None => {
                let v = existing.len() as u64 + 1;
                plan.events.push((
                    run.node.clone(),
                    EventKind::BundleAdded {
                        version: v,
                        bundle: out.id,
                    },
                ));
                plan.copies.push((
                    run.node.clone(),
                    StoredBundle {
                        version: v,
                        user: cmd.user.clone(),
                        time_ms: cmd.time_ms,
                        request: cmd.id,
                        ..stored.clone()
                    },
                ));
                v
            }
        };
        run.output = Some(BundleRef {
            version,
            id: out.id,
            existing: true,
        });
    }

    /// The nearest definition of `task`: on `addr` itself or its closest ancestor, in that
    /// node's latest bundle that defines it.
    fn find_task(
        &self,
        addr: &Address,
        task: &str,
    ) -> Result<(Address, &StoredBundle, &TaskDef), ApiError> {
        if !self.nodes.contains_key(addr) {
            return Err(no_node(addr));
        }
        let lineage: Vec<Address> = addr.lineage().collect();
        let mut known = std::collections::BTreeSet::new();
        for a in lineage.iter().rev() {
            let Some(node) = self.nodes.get(a) else {
                continue;
            };
            for b in node.bundles.iter().rev() {
                let Some(pkg) = &b.manifest.contains.package else {
                    continue;
                };
                if let Some(def) = pkg.tasks.get(task) {
                    return Ok((a.clone(), b, def));
                }
                known.extend(pkg.tasks.keys().cloned());
            }
        }
        let have = if known.is_empty() {
            "none are defined there: push a bundle whose manifest has contains.package.tasks"
                .to_owned()
        } else {
            format!(
                "defined there: {}",
                known.into_iter().collect::<Vec<_>>().join(", ")
            )
        };
        Err(ApiError::not_found(format!(
            "no task {task:?} at {addr} or its ancestors; {have}"
        )))
    }

    /// The effective config of `addr`, with `extra` as its own config when it does not exist
    /// yet.
    fn effective(&self, addr: &Address, extra: Option<&Map<String, Value>>) -> Map<String, Value> {
        let mut effective = Effective::default();
        for a in addr.lineage() {
            if let Some(n) = self.nodes.get(&a) {
                effective.overlay(&a, &n.own);
            }
        }
        if let Some(own) = extra {
            effective.overlay(addr, own);
        }
        effective.config
    }

    /// Runs at `addr` and below, oldest first.
    pub fn runs(&self, addr: &Address) -> Result<Vec<RunRecord>, ApiError> {
        if !self.nodes.contains_key(addr) {
            return Err(no_node(addr));
        }
        Ok(self
            .runs
            .values()
            .filter(|r| r.node.is_within(addr))
            .map(|r| (**r).clone())
            .collect())
    }

    pub fn run(&self, id: &RunId) -> Result<RunRecord, ApiError> {
        self.runs.get(id).map(|r| (**r).clone()).ok_or_else(|| {
            ApiError::not_found(format!("no run {id}; list them with `plotter2 runs ADDR`"))
        })
    }

    /// Creates `addr` and its missing ancestors (`mkdir -p`); refuses to pass an archived node.
    fn plan_lineage(
        &self,
        addr: &Address,
        events: &mut Vec<(Address, EventKind)>,
    ) -> Result<(), ApiError> {
        for a in addr.lineage() {
            match self.nodes.get(&a) {
                Some(n) if n.archived => {
                    return Err(ApiError::bad_request(format!(
                        "{a} is archived; archived nodes keep their name and history, choose another name"
                    )));
                }
                Some(_) => {}
                None => events.push((a, EventKind::Created)),
            }
        }
        Ok(())
    }

    /// The first answer to a request id already applied.
    pub fn answer_for(&self, id: &RequestId) -> Option<Result<WriteReceipt, ApiError>> {
        self.by_id.get(id).map(|&seq| self.result_of(seq, true))
    }

    fn result_of(&self, seq: u64, duplicate: bool) -> Result<WriteReceipt, ApiError> {
        let rec = self
            .requests
            .get((seq as usize).wrapping_sub(1))
            .ok_or_else(|| {
                ApiError::new(
                    plotter2_node::protocol::ErrorKind::Internal,
                    "request log is inconsistent",
                )
            })?;
        match &rec.error {
            Some(e) => Err(e.clone()),
            None => Ok(WriteReceipt {
                seq,
                id: rec.id,
                log_index: rec.log_index,
                duplicate,
                created: rec.created.clone(),
                bundle: rec.bundle.clone(),
                runs: rec.runs.clone(),
            }),
        }
    }

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
            index: b.index.clone(),
        })
    }

    pub fn ls(&self, addr: &Address, all: bool) -> Result<Vec<ChildView>, ApiError> {
        if !self.nodes.contains_key(addr) {
            return Err(no_node(addr));
        }
        Ok(self.children(addr, all))
    }

    /// Direct children, found by scanning the subtree's contiguous key range.
    fn children(&self, addr: &Address, all: bool) -> Vec<ChildView> {
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

/// What a write will do, worked out before anything changes: all of it or none of it applies.
#[derive(Default)]
struct Plan {
    events: Vec<(Address, EventKind)>,
    /// The target's own config after the write, when it changes.
    own: Option<Map<String, Value>>,
    /// Own configs of other nodes the write creates (sweep children).
    configs: Vec<(Address, Map<String, Value>)>,
    runs: Vec<RunRecord>,
    /// Bundles recorded again at another node (a reused run's output).
    copies: Vec<(Address, StoredBundle)>,
}

/// Applies `set` to a copy of `own`, recording one event per key; returns the new config.
fn plan_assignments(
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
    use plotter2_node::protocol::UserName;
    use serde_json::json;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn cmd(op: WriteOp) -> Command {
        Command {
            id: RequestId::new(),
            user: UserName::parse("tali").unwrap(),
            time_ms: 1000,
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
        use plotter2_node::bundle::{BundlePath, FileEntry};
        let index = FileIndex::new(
            files
                .iter()
                .map(|(p, c)| FileEntry {
                    path: BundlePath::parse(p).unwrap(),
                    blob: Hash::of(c),
                    size: c.len() as u64,
                    mode: 0o644,
                })
                .collect(),
        )
        .unwrap();
        let manifest = Manifest::from_json(br#"{"manifest_version": 1}"#).unwrap();
        WriteOp::Ingest {
            addr: addr(a),
            bundle: index.id(),
            index,
            manifest: Box::new(manifest),
        }
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
                existing: true
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

        // A bundle id that does not match its index is refused and changes no node.
        let before = r.nodes.clone();
        let mut bad = ingest("/e/x", &[("a.csv", b"3")]);
        if let WriteOp::Ingest { bundle, .. } = &mut bad {
            *bundle = Hash::of(b"something else");
        }
        let err = r.apply(cmd(bad), 4).unwrap_err();
        assert!(
            err.message.contains("does not match its file index"),
            "{}",
            err.message
        );
        assert_eq!(r.nodes, before);
    }
}

#[cfg(test)]
mod run_tests {
    use super::*;
    use plotter2_node::bundle::{BundlePath, FileEntry};
    use plotter2_node::protocol::{RunOutput, UserName};
    use serde_json::json;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    fn apply(r: &mut Registry, op: WriteOp) -> Result<WriteReceipt, ApiError> {
        let n = r.request_count() + 1;
        r.apply(
            Command {
                id: RequestId::new(),
                user: UserName::parse("tali").unwrap(),
                time_ms: 1000 + n,
                op,
            },
            n,
        )
    }

    /// A code bundle at `a` whose package defines `train` (default lr 0.1).
    fn code(a: &str, script: &[u8]) -> WriteOp {
        let index = FileIndex::new(vec![FileEntry {
            path: BundlePath::parse("train.py").unwrap(),
            blob: Hash::of(script),
            size: script.len() as u64,
            mode: 0o644,
        }])
        .unwrap();
        let manifest = Manifest::from_json(
            json!({"manifest_version": 1, "contains": {"package": {"tasks": {"train": {
                "kind": "command", "run": ["python3", "train.py", "--lr", "{lr}", "--out", "{out}"],
                "params": {"lr": 0.1, "epochs": 3}}}}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        WriteOp::Ingest {
            addr: addr(a),
            bundle: index.id(),
            index,
            manifest: Box::new(manifest),
        }
    }

    fn run(a: &str, task: &str, set: &[&str], sweep: &[&str]) -> WriteOp {
        WriteOp::Run {
            addr: addr(a),
            task: task.into(),
            set: set.iter().map(|s| s.parse().unwrap()).collect(),
            sweep: sweep.iter().map(|s| s.parse().unwrap()).collect(),
            force: false,
        }
    }

    fn setup() -> Registry {
        let mut r = Registry::default();
        apply(&mut r, code("/e/x", b"print(1)")).unwrap();
        apply(
            &mut r,
            WriteOp::Set {
                addr: addr("/e/x"),
                set: vec!["lr=0.3".parse().unwrap(), "model.depth=2".parse().unwrap()],
            },
        )
        .unwrap();
        r
    }

    #[test]
    fn a_run_takes_the_nearest_definition_and_the_effective_config() {
        let mut r = setup();
        apply(
            &mut r,
            WriteOp::New {
                addr: addr("/e/x/child"),
                set: vec!["lr=0.4".parse().unwrap()],
            },
        )
        .unwrap();
        let receipt = apply(&mut r, run("/e/x/child", "train", &["epochs=5"], &[])).unwrap();
        assert_eq!(receipt.runs.len(), 1);
        let rec = r.run(&receipt.runs[0]).unwrap();
        assert_eq!(rec.node, addr("/e/x/child"));
        assert_eq!(rec.defined_at, addr("/e/x"));
        assert_eq!(rec.state, RunState::Queued);
        assert_eq!(
            serde_json::Value::Object(rec.params.clone()),
            json!({"lr": 0.4, "epochs": 5, "model": {"depth": 2}}),
            "task defaults < effective config < --set"
        );
        assert_eq!(rec.code, r.nodes[&addr("/e/x")].bundles[0].id);
        assert!(rec.inputs.is_empty(), "the code bundle is not an input");
        // --set changed the run, not the node.
        assert_eq!(r.show(&addr("/e/x/child")).unwrap().own.get("epochs"), None);
        let history = r.history(&addr("/e/x/child")).unwrap();
        assert!(
            matches!(&history.last().unwrap().kind, EventKind::RunCreated { task, .. } if task == "train")
        );
        assert_eq!(r.runs(&addr("/e")).unwrap().len(), 1);
        assert_eq!(
            r.request(&r.requests[r.requests.len() - 1].id)
                .unwrap()
                .runs,
            receipt.runs
        );
    }

    #[test]
    fn sweeps_make_one_child_and_one_run_per_combination() {
        let mut r = setup();
        let receipt = apply(
            &mut r,
            run("/e/x", "train", &[], &["lr=0.1,0.2", "seed=1,2"]),
        )
        .unwrap();
        assert_eq!(receipt.runs.len(), 4);
        let runs = r.runs(&addr("/e/x")).unwrap();
        let nodes: Vec<String> = runs.iter().map(|x| x.node.to_string()).collect();
        assert_eq!(
            nodes,
            [
                "/e/x/sweep-1/lr=0.1,seed=1",
                "/e/x/sweep-1/lr=0.1,seed=2",
                "/e/x/sweep-1/lr=0.2,seed=1",
                "/e/x/sweep-1/lr=0.2,seed=2"
            ]
        );
        assert_eq!(runs[3].params["lr"], json!(0.2));
        assert_eq!(runs[3].params["seed"], json!(2));
        assert_eq!(runs[3].params["model"], json!({"depth": 2}), "inherited");
        let child = r.show(&addr("/e/x/sweep-1/lr=0.2,seed=2")).unwrap();
        assert_eq!(
            serde_json::Value::Object(child.own),
            json!({"lr": 0.2, "seed": 2})
        );
        assert_eq!(child.effective.from["model.depth"], addr("/e/x"));
        // Distinct params, distinct fingerprints; a second sweep gets its own folder.
        let mut f: Vec<Hash> = runs.iter().map(|x| x.fingerprint).collect();
        f.sort();
        f.dedup();
        assert_eq!(f.len(), 4);
        apply(&mut r, run("/e/x", "train", &[], &["lr=0.5"])).unwrap();
        assert!(r.contains(&addr("/e/x/sweep-2/lr=0.5")));
    }

    #[test]
    fn bad_runs_are_refused_and_change_nothing() {
        let mut r = setup();
        let before = r.runs.len();
        let e = apply(&mut r, run("/e/x", "report", &[], &[])).unwrap_err();
        assert!(
            e.message.contains("no task \"report\"") && e.message.contains("train"),
            "{}",
            e.message
        );
        let e = apply(&mut r, run("/nowhere", "train", &[], &[])).unwrap_err();
        assert!(e.message.contains("no node at /nowhere"), "{}", e.message);
        let e = apply(&mut r, run("/e/x", "train", &[], &["lr=1", "lr=2"])).unwrap_err();
        assert!(e.message.contains("swept twice"), "{}", e.message);
        let e = apply(&mut r, run("/e/x", "train", &["model.depth.x=1"], &[])).unwrap_err();
        assert!(e.message.contains("--set model.depth.x"), "{}", e.message);
        assert_eq!(r.runs.len(), before);
        assert!(!r.contains(&addr("/e/x/sweep-1")));
    }

    #[test]
    fn an_equal_run_reuses_a_succeeded_one_unless_forced() {
        let mut r = setup();
        let first = apply(&mut r, run("/e/x", "train", &[], &["lr=0.1,0.2"]))
            .unwrap()
            .runs;
        // A worker runs the first one to success with an output bundle.
        let rec = r.run(&first[0]).unwrap();
        apply(
            &mut r,
            WriteOp::RunStarted {
                node: rec.node.clone(),
                run: rec.id,
                attempt: 1,
                worker: "w".into(),
            },
        )
        .unwrap();
        let out = match code("/unused", b"weights") {
            WriteOp::Ingest {
                bundle,
                index,
                manifest,
                ..
            } => RunOutput {
                bundle,
                index,
                manifest: *manifest,
            },
            _ => unreachable!(),
        };
        let out_id = out.bundle;
        apply(
            &mut r,
            WriteOp::RunFinished {
                node: rec.node.clone(),
                run: rec.id,
                attempt: 1,
                outcome: RunOutcome::Succeeded {
                    exit: 0,
                    output: Some(Box::new(out)),
                },
                log: None,
            },
        )
        .unwrap();
        assert_eq!(r.run(&rec.id).unwrap().state, RunState::Succeeded);

        // The same sweep again: lr=0.1 is reused (ends at once, output recorded at its new
        // node), lr=0.2 never succeeded and is queued.
        let again = apply(&mut r, run("/e/x", "train", &[], &["lr=0.1,0.2"]))
            .unwrap()
            .runs;
        let reused = r.run(&again[0]).unwrap();
        assert_eq!(reused.state, RunState::Succeeded);
        assert_eq!(reused.reused_from, Some(rec.id));
        assert_eq!(reused.output.as_ref().unwrap().id, out_id);
        assert_eq!(r.show(&reused.node).unwrap().bundles[0].id, out_id);
        assert_eq!(r.run(&again[1]).unwrap().state, RunState::Queued);
        let queued: Vec<RunId> = r.queued_runs().into_iter().map(|q| q.id).collect();
        assert!(!queued.contains(&again[0]) && queued.contains(&again[1]));

        // --force runs it again.
        let mut forced = run("/e/x", "train", &[], &["lr=0.1"]);
        if let WriteOp::Run { force, .. } = &mut forced {
            *force = true;
        }
        let f = apply(&mut r, forced).unwrap().runs;
        assert_eq!(r.run(&f[0]).unwrap().state, RunState::Queued);
    }

    #[test]
    fn runs_are_deterministic_across_replicas() {
        let mut a = setup();
        let mut b = a.clone();
        let op = run("/e/x", "train", &[], &["lr=0.1,0.2,0.15,0.05,0.01"]);
        let cmd = Command {
            id: RequestId::new(),
            user: UserName::parse("tali").unwrap(),
            time_ms: 7,
            op,
        };
        a.apply(cmd.clone(), 9).unwrap();
        b.apply(cmd, 9).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.runs.len(), 5);
    }
}
