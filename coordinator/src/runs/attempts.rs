//! Moving runs through their attempts: claimed, finished, lost and cancelled, with the runs
//! that wait for them following.

use plotter2_node::Address;
use plotter2_node::bundle::Hash;
use plotter2_node::protocol::{
    ApiError, AttemptRecord, AttemptUpdate, BundleRef, MAX_LOST, RunId, RunOutcome, RunRecord,
    RunState,
};

use crate::registry::{Plan, Registry, StoredBundle};
use crate::types::Command;

impl Registry {
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

    pub(super) fn plan_finished(
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
                    // An output may go below the run's node (a report's handoff), never
                    // elsewhere; the worker checked the manifest against this address.
                    // A target that cannot be made (an archived node) keeps it at the node.
                    let at = match out.manifest.meta.address.clone() {
                        Some(a) if a.is_within(&r.node) && a != r.node => {
                            self.plan_lineage(&a, &mut plan.events).ok().map(|()| a)
                        }
                        _ => None,
                    };
                    let (version, new) = plan.add_bundle(
                        self,
                        at.as_ref().unwrap_or(&r.node),
                        StoredBundle {
                            version: 0,
                            id: out.bundle,
                            run: Some(r.id),
                            files: out.files,
                            bytes: out.bytes,
                            manifest: out.manifest.clone(),
                            user: cmd.user.clone(),
                            time_ms: cmd.time_ms,
                            request: cmd.id,
                        },
                        out.paths.clone(),
                    );
                    // Early cutoff: an output its node already holds adds no version, and
                    // sets nothing off.
                    r.output = Some(BundleRef {
                        version,
                        id: out.bundle,
                        existing: !new,
                        at,
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
    pub(super) fn settle(&self, run: RunRecord, time_ms: u64, plan: &mut Plan) {
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
