//! Applying one committed command to the registry: validate, plan every change (nodes,
//! bundles, runs), then install the plan and record the request, so a refused request
//! changes nothing. Depends on `registry` (the data) and `runs` (planning runs).

use std::sync::Arc;

use plotter2_node::Address;
use plotter2_node::nodeconf::Effective;
use plotter2_node::protocol::{
    ApiError, BundleRef, Event, EventKind, Refused, RequestId, RequestRecord, RequestStatus,
    WriteOp, WriteReceipt,
};
use serde_json::{Map, Value};

use crate::types::Command;

use crate::registry::{
    Effects, NodeRecord, Plan, Registry, StoredBundle, check_write, no_node, plan_assignments,
};

/// A rule is in force at its node and below (that is how it is inherited), so it can only
/// watch there; where it runs its task is up to it.
fn check_rule_scopes(
    addr: &Address,
    rules: &[plotter2_node::manifest::Rule],
) -> Result<(), ApiError> {
    for (i, rule) in rules.iter().enumerate() {
        let under = addr.resolve(&rule.under).map_err(|e| {
            ApiError::bad_request(format!(
                "manifest field contains.package.rules[{i}].under: {e}"
            ))
        })?;
        if !under.is_within(addr) {
            return Err(ApiError::bad_request(format!(
                "manifest field contains.package.rules[{i}].under: {under} is not at or below \
                 {addr}, where the rule is defined; a rule watches its own node's subtree \
                 (push it to {under} to watch there)"
            )));
        }
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
        let mut fx = Effects::default();
        let mut runs = Vec::new();
        let mut refused = Vec::new();
        let mut happened = Vec::new();
        let outcome = check_write(&cmd.op).and_then(|()| match &cmd.op {
            WriteOp::Attempts { worker, items, .. } => {
                // Each item is planned against what the items before it left, and applies or
                // is refused alone.
                for (i, item) in items.iter().enumerate() {
                    // Each result is committed in its run's trace, not the batch's.
                    let span = tracing::info_span!("attempt_update", run = %item.run());
                    let trace = self.runs.get(&item.run()).and_then(|r| r.trace.clone());
                    plotter2_node::telemetry::adopt_traceparent(&span, trace.as_deref());
                    let _in = span.enter();
                    match self.plan_attempt(&cmd, worker, item) {
                        Ok(plan) => {
                            happened.extend(self.happenings(&plan));
                            self.install(plan, &cmd, seq, &mut fx);
                        }
                        Err(error) => refused.push(Refused {
                            index: u32::try_from(i).unwrap_or(u32::MAX),
                            run: item.run(),
                            error,
                        }),
                    }
                }
                Ok(())
            }
            op => {
                let plan = self.plan(&cmd, seq)?;
                if matches!(op, WriteOp::Run { .. }) {
                    runs = plan.runs.iter().map(|r| r.id).collect();
                }
                happened.extend(self.happenings(&plan));
                self.install(plan, &cmd, seq, &mut fx);
                Ok(())
            }
        });
        self.react(&cmd, seq, happened, &mut fx);
        let bundle = match (&cmd.op, &outcome) {
            (WriteOp::Ingest { addr, bundle, .. }, Ok(())) => self.nodes.get(addr).and_then(|n| {
                let b = n.bundles.iter().find(|b| b.id == *bundle)?;
                Some(BundleRef {
                    version: b.version,
                    id: b.id,
                    existing: b.request != cmd.id,
                    at: None,
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
            created: fx.created,
            bundle,
            runs,
            refused,
            events: fx.events,
        }));
        self.by_id.insert(cmd.id, seq);
        self.result_of(seq, false)
    }

    /// Makes a plan true: all of it, in order.
    pub(crate) fn install(&mut self, plan: Plan, cmd: &Command, seq: u64, fx: &mut Effects) {
        for (addr, kind) in plan.events {
            fx.events.push((addr.clone(), kind.clone()));
            let event = Event {
                seq,
                request: cmd.id,
                user: cmd.user.clone(),
                time_ms: cmd.time_ms,
                kind,
            };
            if matches!(event.kind, EventKind::Created) {
                fx.created.push(addr.clone());
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
            } else if let Some(node) = self.nodes.get_mut(&addr).map(Arc::make_mut) {
                if matches!(event.kind, EventKind::Archived) {
                    node.archived = true;
                }
                // Config is installed from `plan.configs`, bundles from `plan.bundles`.
                node.history.push(event);
            }
        }
        for (addr, own) in plan.configs {
            if let Some(node) = self.nodes.get_mut(&addr) {
                Arc::make_mut(node).own = own;
            }
        }
        for (addr, stored, _) in plan.bundles {
            self.index_rulebook(&addr, &stored);
            if let Some(node) = self.nodes.get_mut(&addr) {
                Arc::make_mut(node).bundles.push(stored);
            }
        }
        for run in plan.runs {
            if self
                .runs
                .get(&run.id)
                .is_none_or(|was| was.state != run.state)
            {
                fx.events.push((
                    run.node.clone(),
                    EventKind::RunState {
                        run: run.id,
                        task: run.task.clone(),
                        state: run.state,
                    },
                ));
            }
            self.index_run(&run, seq);
            self.runs.insert(run.id, Arc::new(run));
        }
    }

    /// Works out what `cmd` (request number `seq`) does without changing anything.
    fn plan(&self, cmd: &Command, seq: u64) -> Result<Plan, ApiError> {
        let mut plan = Plan::default();
        match &cmd.op {
            WriteOp::New { addr, set } => {
                self.plan_lineage(addr, &mut plan.events)?;
                if !set.is_empty() {
                    let own = self
                        .nodes
                        .get(addr)
                        .map(|n| n.own.clone())
                        .unwrap_or_default();
                    let own = plan_assignments(addr, own, set, &mut plan.events)?;
                    plan.configs.push((addr.clone(), own));
                }
            }
            WriteOp::Set { addr, set } => {
                let node = self.nodes.get(addr).ok_or_else(|| no_node(addr))?;
                if node.archived {
                    return Err(ApiError::bad_request(format!(
                        "{addr} is archived and read-only"
                    )));
                }
                let own = plan_assignments(addr, node.own.clone(), set, &mut plan.events)?;
                plan.configs.push((addr.clone(), own));
            }
            WriteOp::Archive { addr } => {
                let node = self.nodes.get(addr).ok_or_else(|| no_node(addr))?;
                if !node.archived {
                    plan.events.push((addr.clone(), EventKind::Archived));
                }
            }
            WriteOp::Ingest {
                addr,
                bundle,
                files,
                bytes,
                manifest,
                paths,
            } => {
                self.plan_lineage(addr, &mut plan.events)?;
                if let Some(rules) = manifest
                    .contains
                    .package
                    .as_ref()
                    .and_then(|p| p.rules.as_deref())
                {
                    check_rule_scopes(addr, rules)?;
                    self.check_rule_chains(addr, rules)?;
                }
                plan.add_bundle(
                    self,
                    addr,
                    StoredBundle {
                        version: 0,
                        id: *bundle,
                        run: None,
                        files: *files,
                        bytes: *bytes,
                        manifest: (**manifest).clone(),
                        user: cmd.user.clone(),
                        time_ms: cmd.time_ms,
                        request: cmd.id,
                    },
                    paths.clone(),
                );
            }
            WriteOp::Run {
                addr,
                task,
                set,
                sweep,
                force,
            } => {
                let ask = crate::runs::RunAsk {
                    addr,
                    task,
                    set,
                    sweep,
                    force: *force,
                };
                self.plan_run(cmd, seq, &ask, &mut plan)?;
            }
            WriteOp::Cancel { node, run } => self.plan_cancel(cmd, node, run, &mut plan)?,
            // Applied item by item in `apply`.
            WriteOp::Attempts { .. } => {}
            // What it does, firing due schedules, every request does.
            WriteOp::Tick {} => {}
        }
        Ok(plan)
    }

    /// The effective config of `addr`, with `extra` as its own config when it does not exist
    /// yet.
    pub(crate) fn effective(
        &self,
        addr: &Address,
        extra: Option<&Map<String, Value>>,
    ) -> Map<String, Value> {
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

    /// Creates `addr` and its missing ancestors (`mkdir -p`); refuses to pass an archived node.
    pub(crate) fn plan_lineage(
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
                // Once per plan: two outputs of one batch may make the same new node.
                None if events
                    .iter()
                    .any(|(x, k)| *x == a && matches!(k, EventKind::Created)) => {}
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
                refused: rec.refused.clone(),
            }),
        }
    }
}
