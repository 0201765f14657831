//! Runs in the registry: creating them from a `run` request (sweeps and `needs` included),
//! reusing equal succeeded runs, and moving them through their attempts (claimed, finished,
//! lost, cancelled), with the runs that wait for them following.
//!
//! Like the rest of the registry these are pure functions of the registry and the command:
//! each returns a [`Plan`] that [`Registry::apply`] installs whole, or an error that changes
//! nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use plotter2_node::Address;
use plotter2_node::bundle::Hash;
use plotter2_node::manifest::TaskDef;
use plotter2_node::nodeconf::{self, Assignment};
use plotter2_node::protocol::{
    ApiError, AttemptRecord, AttemptUpdate, BundleRef, EventKind, MAX_LOST, Need, RunId,
    RunOutcome, RunRecord, RunState,
};
use plotter2_node::sweep::{self, Sweep};
use serde_json::{Map, Value};

use crate::registry::{Plan, Registry, StoredBundle, no_node, plan_assignments};
use crate::types::Command;

/// What a `run` request asks for.
pub(crate) struct RunAsk<'a> {
    pub addr: &'a Address,
    pub task: &'a str,
    pub set: &'a [Assignment],
    pub sweep: &'a [Sweep],
    /// Run the asked task even when an equal succeeded run could be reused (its needs are
    /// still reused).
    pub force: bool,
}

/// The runs one request creates at one node: task name → index in `plan.runs`, so a task
/// needed twice (a diamond) runs once.
type Made = BTreeMap<String, usize>;

impl Registry {
    /// Runs of `ask.task`: at `ask.addr`, or one per sweep combination at new nodes
    /// `addr/sweep-<n>/<combination>` whose own config is the combination; each with the runs
    /// of the tasks it needs, created first.
    pub(crate) fn plan_run(
        &self,
        cmd: &Command,
        seq: u64,
        ask: &RunAsk<'_>,
        plan: &mut Plan,
    ) -> Result<(), ApiError> {
        let addr = ask.addr;
        self.find_task(addr, ask.task)?;
        self.plan_lineage(addr, &mut plan.events)?;
        let combos = sweep::expand(ask.sweep).map_err(|e| ApiError::bad_request(e.to_string()))?;
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
        let mut n = 0u32;
        for (node, new_own) in targets {
            let config = self.effective(&node, new_own.as_ref());
            let mut at = TaskSite {
                cmd,
                seq,
                ask,
                node: &node,
                config: &config,
                made: Made::new(),
                path: Vec::new(),
            };
            self.plan_task_run(&mut at, ask.task, &mut n, plan)?;
        }
        Ok(())
    }

    /// Plans the run of `task` at `at.node` after the runs it needs; returns its index in
    /// `plan.runs`.
    fn plan_task_run(
        &self,
        at: &mut TaskSite<'_>,
        task: &str,
        n: &mut u32,
        plan: &mut Plan,
    ) -> Result<usize, ApiError> {
        if let Some(&i) = at.made.get(task) {
            return Ok(i);
        }
        if at.path.iter().any(|t| t == task) {
            at.path.push(task.to_owned());
            return Err(ApiError::bad_request(format!(
                "the tasks' needs form a cycle at {} ({}); a task cannot need itself",
                at.node,
                at.path.join(" → ")
            )));
        }
        // Definitions are looked up from the asked node: nodes a sweep creates have no
        // bundles of their own, so the nearest definition is the same.
        let (defined_at, code, def) = self.find_task(at.ask.addr, task)?;
        at.path.push(task.to_owned());
        let mut needed = Vec::with_capacity(def.needs.len());
        for name in &def.needs {
            needed.push((name.clone(), self.plan_task_run(at, name, n, plan)?));
        }
        at.path.pop();

        let mut params = def.params.clone();
        for (k, v) in at.config {
            params.insert(k.clone(), v.clone());
        }
        for a in at.ask.set {
            nodeconf::assign(&mut params, a)
                .map_err(|e| ApiError::bad_request(format!("--set {}: {e}", a.key)))?;
        }
        let node = at.node;
        let inputs: Vec<Hash> = node
            .lineage()
            .filter(|a| a.is_within(&defined_at))
            .filter_map(|a| {
                let bundles = &self.nodes.get(&a)?.bundles;
                bundles.iter().rev().find(|b| b.run.is_none()).map(|b| b.id)
            })
            .filter(|id| *id != code.id)
            .collect();
        let needs: Vec<Need> = needed
            .iter()
            .map(|(name, i)| Need {
                task: name.clone(),
                run: plan.runs[*i].id,
                output: plan.runs[*i].output.clone(),
            })
            .collect();
        let fingerprint = if needed.is_empty() {
            fingerprint(&(def, &inputs, &params, code.id))
        } else {
            let of_needs: Vec<(&String, Hash)> = needed
                .iter()
                .map(|(name, i)| (name, plan.runs[*i].fingerprint))
                .collect();
            fingerprint(&(def, &inputs, &params, code.id, of_needs))
        }
        .map_err(|e| unfingerprintable(task, node, &e))?;
        let id = RunId { seq: at.seq, n: *n };
        *n += 1;
        plan.events.push((
            node.clone(),
            EventKind::RunCreated {
                run: id,
                task: task.to_owned(),
            },
        ));
        let cmd = at.cmd;
        let mut record = RunRecord {
            id,
            node: node.clone(),
            task: task.to_owned(),
            defined_at: defined_at.clone(),
            definition: def.clone(),
            params,
            code: code.id,
            inputs,
            needs,
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
        if !(at.ask.force && task == at.ask.task) {
            self.plan_reuse(&mut record, cmd, plan);
        }
        let all_done = needed
            .iter()
            .all(|(_, i)| plan.runs[*i].state == RunState::Succeeded);
        if record.state == RunState::Queued && !all_done {
            record.state = RunState::Waiting;
        }
        plan.runs.push(record);
        let i = plan.runs.len() - 1;
        at.made.insert(task.to_owned(), i);
        Ok(i)
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
        let version = plan.add_bundle(
            self,
            &run.node,
            StoredBundle {
                user: cmd.user.clone(),
                time_ms: cmd.time_ms,
                request: cmd.id,
                ..stored.clone()
            },
        );
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

    /// One item of a worker's (or the leader's) report.
    pub(crate) fn plan_attempt(
        &self,
        cmd: &Command,
        worker: &str,
        item: &AttemptUpdate,
    ) -> Result<Plan, ApiError> {
        let mut plan = Plan::default();
        let mut r = self.run_at(item.node(), &item.run())?;
        let id = r.id;
        match item {
            AttemptUpdate::Started { attempt, .. } => {
                if r.state.is_finished() {
                    return Err(ApiError::bad_request(format!(
                        "run {id} has already ended ({:?})",
                        r.state
                    )));
                }
                if r.state == RunState::Waiting || *attempt != r.attempt {
                    return Err(ApiError::bad_request(format!(
                        "run {id}: delivery {attempt} is stale; the run is {:?} at attempt {}",
                        r.state, r.attempt
                    )));
                }
                r.state = RunState::Running;
                r.attempts.push(AttemptRecord {
                    attempt: *attempt,
                    worker: worker.to_owned(),
                    started_ms: cmd.time_ms,
                    finished_ms: None,
                    exit: None,
                    reason: None,
                    log: None,
                    lost: false,
                });
                plan.runs.push(r);
            }
            AttemptUpdate::Finished {
                attempt,
                outcome,
                log,
                ..
            } => self.plan_finished(cmd, r, *attempt, outcome, *log, &mut plan),
            AttemptUpdate::Lost {
                attempt, reason, ..
            } => {
                if r.state != RunState::Running || *attempt != r.attempt {
                    return Err(ApiError::bad_request(format!(
                        "run {id} is not running attempt {attempt} (it is {:?} at attempt {})",
                        r.state, r.attempt
                    )));
                }
                for a in r.attempts.iter_mut().filter(|a| a.attempt == *attempt) {
                    if a.finished_ms.is_none() {
                        a.finished_ms = Some(cmd.time_ms);
                        a.reason = Some(reason.clone());
                        a.lost = true;
                    }
                }
                let lost = lost_attempts(&r);
                if lost >= MAX_LOST {
                    r.state = RunState::Failed;
                    r.finished_ms = Some(cmd.time_ms);
                    r.reason = Some(format!(
                        "its attempts were lost {lost} times (the last: {reason}); \
                         look for what kills its workers, then run it again"
                    ));
                } else {
                    r.state = RunState::Queued;
                    r.attempt += 1;
                    r.reason = Some(reason.clone());
                }
                self.settle(r, cmd.time_ms, &mut plan);
            }
        }
        Ok(plan)
    }

    fn plan_finished(
        &self,
        cmd: &Command,
        mut r: RunRecord,
        attempt: u32,
        outcome: &RunOutcome,
        log: Option<Hash>,
        plan: &mut Plan,
    ) {
        // Reported twice, or by a delivery that was superseded: nothing to do, but a killed
        // attempt of a cancelled run still reports its log.
        if r.state.is_finished() || attempt != r.attempt || r.state != RunState::Running {
            if r.state == RunState::Cancelled
                && let Some(a) = r
                    .attempts
                    .iter_mut()
                    .rev()
                    .find(|a| a.attempt == attempt && a.finished_ms.is_none())
            {
                a.finished_ms = Some(cmd.time_ms);
                a.log = log;
                a.reason = Some("cancelled".into());
                plan.runs.push(r);
            }
            return;
        }
        let (exit, reason) = match outcome {
            RunOutcome::Succeeded { exit, .. } => (Some(*exit), None),
            RunOutcome::Failed { exit, reason } => (*exit, Some(reason.clone())),
        };
        if let Some(a) = r.attempts.iter_mut().rev().find(|a| a.attempt == attempt) {
            a.finished_ms = Some(cmd.time_ms);
            a.exit = exit;
            a.reason = reason.clone();
            a.log = log;
        }
        r.exit = exit;
        match outcome {
            RunOutcome::Succeeded { output, .. } => {
                r.state = RunState::Succeeded;
                r.finished_ms = Some(cmd.time_ms);
                r.reason = None;
                if let Some(out) = output {
                    let version = plan.add_bundle(
                        self,
                        &r.node,
                        StoredBundle {
                            version: 0,
                            id: out.bundle,
                            run: Some(r.id),
                            index: out.index.clone(),
                            manifest: out.manifest.clone(),
                            user: cmd.user.clone(),
                            time_ms: cmd.time_ms,
                            request: cmd.id,
                        },
                    );
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
        self.settle(r, cmd.time_ms, plan);
    }

    pub(crate) fn plan_cancel(
        &self,
        cmd: &Command,
        node: &Address,
        run: &RunId,
        plan: &mut Plan,
    ) -> Result<(), ApiError> {
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
        self.settle(r, cmd.time_ms, plan);
        Ok(())
    }

    /// Puts `run` into the plan, and when it has ended, moves the runs waiting for it: a
    /// success fills in its output, and the last of a run's needs to succeed queues it; a
    /// failure or cancel fails every run that waits for it, and theirs in turn.
    fn settle(&self, run: RunRecord, time_ms: u64, plan: &mut Plan) {
        let mut ended = Vec::new();
        if run.state.is_finished() {
            ended.push(run.id);
        }
        plan.put_run(run);
        while let Some(id) = ended.pop() {
            let Some(done) = plan.run(self, &id) else {
                continue;
            };
            for dep_id in self.dependents.get(&id).into_iter().flatten() {
                let Some(mut dep) = plan.run(self, dep_id) else {
                    continue;
                };
                if dep.state != RunState::Waiting {
                    continue;
                }
                let Some(need) = dep.needs.iter_mut().find(|n| n.run == id) else {
                    continue;
                };
                if done.state == RunState::Succeeded {
                    need.output = done.output.clone();
                    let all = dep.needs.iter().all(|n| {
                        plan.run(self, &n.run)
                            .is_some_and(|r| r.state == RunState::Succeeded)
                    });
                    if all {
                        dep.state = RunState::Queued;
                    }
                } else {
                    let what = match done.state {
                        RunState::Cancelled => "was cancelled".to_owned(),
                        _ => format!(
                            "failed: {}",
                            done.reason.as_deref().unwrap_or("no reason recorded")
                        ),
                    };
                    dep.reason = Some(format!("it needs {} ({id}), which {what}", need.task));
                    dep.state = RunState::Failed;
                    dep.finished_ms = Some(time_ms);
                    ended.push(dep.id);
                }
                plan.put_run(dep);
            }
        }
    }

    /// Keeps the run indexes (queued, running, succeeded, dependents) in step with a run
    /// about to be stored by request `seq`.
    pub(crate) fn index_run(&mut self, run: &RunRecord, seq: u64) {
        let id = run.id;
        if run.state == RunState::Queued {
            if let std::collections::btree_map::Entry::Vacant(e) = self.queued.entry(id) {
                e.insert(seq);
                self.queue.insert((seq, id));
            }
        } else if let Some(at) = self.queued.remove(&id) {
            self.queue.remove(&(at, id));
        }
        if run.state == RunState::Running {
            self.running.insert(id);
        } else {
            self.running.remove(&id);
        }
        if run.state == RunState::Succeeded {
            self.succeeded.entry(run.fingerprint).or_insert(id);
        }
        if run.state == RunState::Waiting && !self.runs.contains_key(&id) {
            for need in &run.needs {
                self.dependents.entry(need.run).or_default().push(id);
            }
        }
        if run.state.is_finished() {
            // Whoever waited for it was settled in the same plan.
            self.dependents.remove(&id);
        }
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

    /// Runs waiting for a worker, in the order they were queued, with the delivery to publish.
    pub fn queued_runs(&self) -> Vec<Arc<RunRecord>> {
        self.queued_since(0)
    }

    /// Runs queued by requests after request `seq` and still waiting for a worker.
    pub fn queued_since(&self, seq: u64) -> Vec<Arc<RunRecord>> {
        let first = (seq + 1, RunId { seq: 0, n: 0 });
        self.queue
            .range(first..)
            .filter_map(|(_, id)| self.runs.get(id).cloned())
            .collect()
    }

    /// Whether delivery `attempt` of run `id` is waiting for a worker.
    pub fn is_queued(&self, id: &RunId, attempt: u32) -> bool {
        self.queued.contains_key(id) && self.runs.get(id).is_some_and(|r| r.attempt == attempt)
    }

    /// Runs a worker has claimed and not finished, oldest first.
    pub fn running_runs(&self) -> Vec<Arc<RunRecord>> {
        self.running
            .iter()
            .filter_map(|id| self.runs.get(id).cloned())
            .collect()
    }

    /// Runs at `addr` and below, oldest first: after run `after`, at most `limit`.
    pub fn runs(
        &self,
        addr: &Address,
        after: Option<RunId>,
        limit: Option<u32>,
    ) -> Result<Vec<RunRecord>, ApiError> {
        use std::ops::Bound;
        if !self.nodes.contains_key(addr) {
            return Err(no_node(addr));
        }
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .runs
            .range((from, Bound::Unbounded))
            .map(|(_, r)| r)
            .filter(|r| r.node.is_within(addr))
            .take(limit.map_or(usize::MAX, |l| l as usize))
            .map(|r| (**r).clone())
            .collect())
    }

    /// The states of `ids`, in that order; unknown ids are left out.
    pub fn run_states(&self, ids: &[RunId]) -> Vec<(RunId, RunState)> {
        ids.iter()
            .filter_map(|id| Some((*id, self.runs.get(id)?.state)))
            .collect()
    }

    pub fn run(&self, id: &RunId) -> Result<RunRecord, ApiError> {
        self.runs.get(id).map(|r| (**r).clone()).ok_or_else(|| {
            ApiError::not_found(format!("no run {id}; list them with `plotter2 runs ADDR`"))
        })
    }
}

/// Where one run request plans its runs: the node, its config, and what it made there.
struct TaskSite<'a> {
    cmd: &'a Command,
    seq: u64,
    ask: &'a RunAsk<'a>,
    node: &'a Address,
    config: &'a Map<String, Value>,
    made: Made,
    /// The chain of needs being planned, to name a cycle.
    path: Vec<String>,
}

/// How many of a run's attempts were lost (each attempt number counts once).
fn lost_attempts(r: &RunRecord) -> u32 {
    let mut lost: Vec<u32> = r
        .attempts
        .iter()
        .filter(|a| a.lost)
        .map(|a| a.attempt)
        .collect();
    lost.dedup();
    u32::try_from(lost.len()).unwrap_or(u32::MAX)
}

/// What [`fingerprint`] hashes first: a new form gets a new tag, so no two forms collide.
const FINGERPRINT_TAG: &[u8] = b"plotter2 run fingerprint v1\n";

/// A run's fingerprint: blake3 over [`FINGERPRINT_TAG`] and the canonical JSON of its parts.
///
/// Canonical JSON: the parts' `serde_json` value, written with every object's keys sorted by
/// their bytes, no whitespace, and `serde_json`'s one form for each string and number. JSON
/// rather than sorted rmp because the parts (task definitions, params) are JSON values already,
/// and the form then does not depend on field order in Rust structs or on how a map iterates.
fn fingerprint(what: &impl serde::Serialize) -> Result<Hash, serde_json::Error> {
    let value = serde_json::to_value(what)?;
    let mut out = FINGERPRINT_TAG.to_vec();
    write_canonical(&value, &mut out)?;
    Ok(Hash::of(&out))
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out)?;
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

/// The refusal of a run whose parts cannot be fingerprinted: hashing anything less than all
/// of them could let it reuse an unrelated run's output.
fn unfingerprintable(task: &str, node: &Address, e: &serde_json::Error) -> ApiError {
    ApiError::new(
        plotter2_node::protocol::ErrorKind::Internal,
        format!(
            "the run of {task} at {node} is refused: its definition, inputs and params cannot \
             be encoded for its fingerprint ({e}), and without one it could reuse an unrelated \
             run's output"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use plotter2_node::bundle::{BundlePath, FileEntry, FileIndex};
    use plotter2_node::manifest::Manifest;
    use plotter2_node::protocol::{RequestId, UserName, WriteOp};
    use serde_json::json;

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
        assert_eq!(r.runs(&addr("/e"), None, None).unwrap().len(), 1);
        assert_eq!(r.request(&receipt.id).unwrap().runs, receipt.runs);
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
        let runs = r.runs(&addr("/e/x"), None, None).unwrap();
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
        let out = output(b"weights");
        let out_id = out.bundle;
        report(&mut r, vec![started(&rec)]);
        report(&mut r, vec![succeeded(&rec, Some(out))]);
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

    #[test]
    fn fingerprints_come_from_a_canonical_form() {
        let value = json!({"b": 2.5, "a": [1, {"d": null, "c": "x\"y"}]});
        let mut out = Vec::new();
        write_canonical(&value, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"a":[1,{"c":"x\"y","d":null}],"b":2.5}"#
        );
        // Field order in a struct and iteration order of a map do not change it.
        #[derive(serde::Serialize)]
        struct Parts {
            zeta: u32,
            alpha: &'static str,
        }
        assert_eq!(
            fingerprint(&Parts {
                zeta: 1,
                alpha: "x"
            })
            .unwrap(),
            fingerprint(&json!({"alpha": "x", "zeta": 1})).unwrap()
        );
        let keys: Vec<String> = (0..64).map(|i| format!("k{i}")).collect();
        let hashed: std::collections::HashMap<&str, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let sorted: BTreeMap<&str, usize> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        assert_eq!(fingerprint(&hashed).unwrap(), fingerprint(&sorted).unwrap());
        assert_ne!(
            fingerprint(&json!({"lr": 0.1})).unwrap(),
            fingerprint(&json!({"lr": 0.2})).unwrap()
        );
    }

    /// Before, two runs whose parts failed to encode both hashed "" and so shared a
    /// fingerprint (and reused each other's outputs); now the run is refused with why.
    #[test]
    fn parts_that_cannot_be_encoded_refuse_the_run() {
        let a: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let b: BTreeMap<(u8, u8), u8> = [((4, 5), 6)].into();
        let err = fingerprint(&a).unwrap_err();
        assert!(fingerprint(&b).is_err());
        let refusal = unfingerprintable("train", &addr("/e"), &err);
        assert_eq!(refusal.kind, plotter2_node::protocol::ErrorKind::Internal);
        assert!(
            refusal
                .message
                .contains("the run of train at /e is refused")
                && refusal.message.contains("key must be a string"),
            "{}",
            refusal.message
        );
    }
}

#[cfg(test)]
mod attempt_tests {
    use super::*;
    use crate::testing::*;
    use plotter2_node::protocol::{RequestStatus, WriteOp};
    use serde_json::json;

    #[test]
    fn a_batch_applies_item_by_item_and_refuses_alone() {
        let mut r = registry_with(json!({"train": {"kind": "command", "run": ["true"]}}));
        let ids = apply(&mut r, run("/e", "train", &[], &["lr=1,2,3"]))
            .unwrap()
            .runs;
        let runs: Vec<RunRecord> = ids.iter().map(|i| r.run(i).unwrap()).collect();
        // Run 0 is claimed and finished in one batch; run 1 is cancelled first, so its claim
        // is refused; run 2 is claimed.
        apply(
            &mut r,
            WriteOp::Cancel {
                node: runs[1].node.clone(),
                run: runs[1].id,
            },
        )
        .unwrap();
        let receipt = report(
            &mut r,
            vec![
                started(&runs[0]),
                succeeded(&runs[0], None),
                started(&runs[1]),
                started(&runs[2]),
            ],
        );
        assert_eq!(receipt.refused.len(), 1, "{:?}", receipt.refused);
        assert_eq!(receipt.refused[0].index, 2);
        assert_eq!(receipt.refused[0].run, runs[1].id);
        assert!(receipt.refused[0].error.message.contains("already ended"));
        assert_eq!(r.run(&ids[0]).unwrap().state, RunState::Succeeded);
        assert_eq!(r.run(&ids[1]).unwrap().state, RunState::Cancelled);
        assert_eq!(r.run(&ids[2]).unwrap().state, RunState::Running);
        assert_eq!(r.run(&ids[2]).unwrap().attempts[0].worker, "w");
        let rec = r.request(&receipt.id).unwrap();
        assert_eq!(rec.status, RequestStatus::Done);
        assert_eq!(rec.refused, receipt.refused);
        assert_eq!(
            r.running_runs().iter().map(|x| x.id).collect::<Vec<_>>(),
            [ids[2]]
        );

        // An item outside the pool refuses the whole report before the log.
        let outside = WriteOp::Attempts {
            pool: addr("/other"),
            worker: "w".into(),
            items: vec![started(&runs[2])],
        };
        let e = apply(&mut r, outside).unwrap_err();
        assert!(
            e.message.contains("outside the pool /other"),
            "{}",
            e.message
        );
    }

    #[test]
    fn needs_run_first_and_hand_over_their_outputs() {
        let mut r = registry_with(json!({
            "train": {"kind": "command", "run": ["true"]},
            "eval": {"kind": "command", "run": ["true"], "needs": ["train"]},
            "report": {"kind": "command", "run": ["true"], "needs": ["train", "eval"]}
        }));
        let ids = apply(&mut r, run("/e", "report", &[], &[])).unwrap().runs;
        let get = |r: &Registry, i: usize| r.run(&ids[i]).unwrap();
        assert_eq!(ids.len(), 3, "train once, though two tasks need it");
        let tasks: Vec<String> = (0..3).map(|i| get(&r, i).task).collect();
        assert_eq!(
            tasks,
            ["train", "eval", "report"],
            "needs are created first"
        );
        assert_eq!(get(&r, 0).state, RunState::Queued);
        assert_eq!(get(&r, 1).state, RunState::Waiting);
        assert_eq!(get(&r, 2).state, RunState::Waiting);
        assert_eq!(r.queued_runs().len(), 1, "only train is published");
        assert_eq!(get(&r, 2).needs.len(), 2);

        let train = get(&r, 0);
        report(&mut r, vec![started(&train)]);
        report(&mut r, vec![succeeded(&train, Some(output(b"weights")))]);
        let eval = get(&r, 1);
        assert_eq!(eval.state, RunState::Queued, "train succeeded: eval may go");
        let out = eval.needs[0]
            .output
            .clone()
            .expect("train's output handed over");
        assert_eq!(out.id, train_output_id());
        assert_eq!(
            get(&r, 2).state,
            RunState::Waiting,
            "report still needs eval"
        );
        assert_eq!(get(&r, 2).needs[0].output, Some(out));

        report(&mut r, vec![started(&eval)]);
        report(&mut r, vec![failed(&eval, "boom")]);
        let rep = get(&r, 2);
        assert_eq!(rep.state, RunState::Failed);
        let reason = rep.reason.unwrap();
        assert!(
            reason.contains("needs eval") && reason.contains("boom"),
            "{reason}"
        );
        assert!(r.dependents.is_empty(), "nothing waits any more");

        // Asked again: train is reused, so eval is queued at once; report waits for it.
        let again = apply(&mut r, run("/e", "report", &[], &[])).unwrap().runs;
        assert_eq!(r.run(&again[0]).unwrap().state, RunState::Succeeded);
        assert_eq!(r.run(&again[1]).unwrap().state, RunState::Queued);
        assert!(r.run(&again[1]).unwrap().needs[0].output.is_some());
        assert_eq!(r.run(&again[2]).unwrap().state, RunState::Waiting);

        // Cancelling a need fails what waits for it.
        apply(
            &mut r,
            WriteOp::Cancel {
                node: addr("/e"),
                run: again[1],
            },
        )
        .unwrap();
        let reason = r.run(&again[2]).unwrap().reason.unwrap();
        assert!(reason.contains("was cancelled"), "{reason}");
    }

    #[test]
    fn a_cycle_of_needs_across_packages_is_refused() {
        let mut r = registry_with(json!({
            "a": {"kind": "command", "run": ["true"], "needs": ["b"]},
            "b": {"kind": "command", "run": ["true"]}
        }));
        apply(
            &mut r,
            code_at(
                "/e/x",
                json!({"b": {"kind": "command", "run": ["true"], "needs": ["a"]}}),
            ),
        )
        .unwrap();
        let before = r.runs.len();
        let e = apply(&mut r, run("/e/x", "a", &[], &[])).unwrap_err();
        assert!(
            e.message.contains("cycle") && e.message.contains("a → b → a"),
            "{}",
            e.message
        );
        assert_eq!(r.runs.len(), before);
    }

    #[test]
    fn lost_attempts_are_queued_again_then_fail() {
        let mut r = registry_with(json!({"train": {"kind": "command", "run": ["true"]}}));
        let id = apply(&mut r, run("/e", "train", &[], &[])).unwrap().runs[0];
        for n in 1..=MAX_LOST {
            let rec = r.run(&id).unwrap();
            assert_eq!(rec.attempt, n);
            report(&mut r, vec![started(&rec)]);
            let lost = AttemptUpdate::Lost {
                node: rec.node.clone(),
                run: id,
                attempt: n,
                reason: "worker w stopped answering".into(),
            };
            let receipt = report(&mut r, vec![lost.clone()]);
            assert!(receipt.refused.is_empty());
            // The same finding again is stale.
            assert_eq!(report(&mut r, vec![lost]).refused.len(), 1);
        }
        let rec = r.run(&id).unwrap();
        assert_eq!(rec.state, RunState::Failed);
        assert!(rec.reason.unwrap().contains("lost 3 times"));
        assert!(rec.attempts.iter().all(|a| a.lost));
        assert!(r.queued_runs().is_empty() && r.running_runs().is_empty());
    }

    #[test]
    fn a_rerun_at_the_same_node_reuses_despite_the_output_it_added() {
        let mut r = registry_with(json!({"train": {"kind": "command", "run": ["true"]}}));
        let id = apply(&mut r, run("/e", "train", &[], &[])).unwrap().runs[0];
        let rec = r.run(&id).unwrap();
        report(&mut r, vec![started(&rec)]);
        report(&mut r, vec![succeeded(&rec, Some(output(b"weights")))]);
        let shown = r.show(&addr("/e")).unwrap();
        assert_eq!(shown.bundles.len(), 2);
        assert_eq!(shown.bundles[1].run, Some(id), "the output records its run");
        let again = apply(&mut r, run("/e", "train", &[], &[])).unwrap().runs[0];
        let again = r.run(&again).unwrap();
        assert_eq!(again.inputs, rec.inputs, "a run's output is not an input");
        assert_eq!(again.reused_from, Some(id));
        assert_eq!(
            r.show(&addr("/e")).unwrap().bundles.len(),
            2,
            "no new version"
        );
    }
}
