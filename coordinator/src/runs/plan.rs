//! Planning the runs of a `run` request: the task's nearest definition, sweeps, the runs it
//! needs (first, once each), and reusing an equal succeeded run.

use std::collections::BTreeMap;

use plotter2_node::Address;
use plotter2_node::bundle::Hash;
use plotter2_node::manifest::TaskDef;
use plotter2_node::nodeconf::{self, RULES_KEY};
use plotter2_node::protocol::{ApiError, BundleRef, EventKind, Need, RunId, RunRecord, RunState};
use plotter2_node::sweep::{self};
use serde_json::{Map, Value};

use crate::registry::{Plan, Registry, StoredBundle, no_node, plan_assignments};
use crate::types::Command;

use super::RunAsk;
use super::fingerprint::{fingerprint, unfingerprintable};

/// The runs one request creates at one node: task name → index in `plan.runs`, so a task
/// needed twice (a diamond) runs once.
pub(super) type Made = BTreeMap<String, usize>;

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
        // Rules may create runs under a request that created some already.
        let mut n = self.next_run_n(seq);
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
    pub(super) fn plan_task_run(
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
        for (k, v) in at.config.iter().filter(|(k, _)| *k != RULES_KEY) {
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
        let selected = self.select_inputs(node, task, &def.inputs);
        let of_needs: Vec<(&String, Hash)> = needed
            .iter()
            .map(|(name, i)| (name, plan.runs[*i].fingerprint))
            .collect();
        // Parts a task does not have are left out, so adding a kind of part did not change
        // the fingerprints of runs that lack it.
        let fingerprint = match (of_needs.is_empty(), selected.is_empty()) {
            (true, true) => fingerprint(&(def, &inputs, &params, code.id)),
            (false, true) => fingerprint(&(def, &inputs, &params, code.id, &of_needs)),
            (_, false) => fingerprint(&(def, &inputs, &params, code.id, &of_needs, &selected)),
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
            selected,
            cause: None,
            trace: cmd.trace.clone(),
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
    pub(super) fn plan_reuse(&self, run: &mut RunRecord, cmd: &Command, plan: &mut Plan) {
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
            .get(out.at.as_ref().unwrap_or(&earlier.node))
            .and_then(|n| n.bundles.iter().find(|b| b.id == out.id))
        else {
            return;
        };
        // A handed-off output goes to the same place below this run's node.
        let at = out.at.as_ref().and_then(|a| {
            let mut to = run.node.clone();
            for s in a.segments().skip(earlier.node.depth()) {
                to = to.child(s).ok()?;
            }
            self.plan_lineage(&to, &mut plan.events).ok()?;
            Some(to)
        });
        let (version, _) = plan.add_bundle(
            self,
            at.as_ref().unwrap_or(&run.node),
            StoredBundle {
                user: cmd.user.clone(),
                time_ms: cmd.time_ms,
                request: cmd.id,
                ..stored.clone()
            },
            None,
        );
        run.output = Some(BundleRef {
            version,
            id: out.id,
            existing: true,
            at,
        });
    }

    /// The nearest definition of `task`: on `addr` itself or its closest ancestor, in that
    /// node's latest bundle that defines it.
    pub(super) fn find_task(
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
}

/// Where one run request plans its runs: the node, its config, and what it made there.
pub(super) struct TaskSite<'a> {
    pub(super) cmd: &'a Command,
    pub(super) seq: u64,
    pub(super) ask: &'a RunAsk<'a>,
    pub(super) node: &'a Address,
    pub(super) config: &'a Map<String, Value>,
    pub(super) made: Made,
    /// The chain of needs being planned, to name a cycle.
    pub(super) path: Vec<String>,
}
