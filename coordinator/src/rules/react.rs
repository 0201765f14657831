//! The rule engine: what a request set off, and what the rules in force did about it.

use std::collections::VecDeque;

use plotter2_node::Address;
use plotter2_node::bundle::Hash;
use plotter2_node::manifest::{Rule, RuleTrigger};
use plotter2_node::protocol::{
    Cause, Decision, EventKind, RuleRef, RunId, RunRecord, RunState, Trigger, Verdict,
};

use super::{MAX_CHAIN, MAX_REACTIONS, Pending, RECENT};
use crate::registry::{Effects, Plan, Registry};
use crate::runs::RunAsk;
use crate::types::Command;

/// Something a request did that rules may react to.
#[derive(Debug, Clone)]
pub(crate) enum Happened {
    /// A new bundle version; `paths` are its files' paths when they were sent.
    Arrived {
        addr: Address,
        version: u64,
        bundle: Hash,
        run: Option<RunId>,
        paths: Option<Vec<String>>,
        states_rules: bool,
    },
    /// A run ended.
    Ended { run: RunId },
    /// A rule's schedule came due.
    Due { rule: RuleRef, due_ms: u64 },
}

/// The request being applied: what every decision is stamped with.
struct At<'a> {
    cmd: &'a Command,
    seq: u64,
}

impl Registry {
    /// What `plan` sets off, worked out before it is installed (a run has ended when the
    /// registry does not yet hold it as ended).
    pub(crate) fn happenings(&self, plan: &Plan) -> Vec<Happened> {
        let mut out = Vec::new();
        for (addr, b, paths) in &plan.bundles {
            out.push(Happened::Arrived {
                addr: addr.clone(),
                version: b.version,
                bundle: b.id,
                run: b.run,
                paths: paths.clone(),
                states_rules: b.run.is_none()
                    && b.manifest
                        .contains
                        .package
                        .as_ref()
                        .is_some_and(|p| p.rules.is_some()),
            });
        }
        for r in &plan.runs {
            let was_open = self.runs.get(&r.id).is_none_or(|b| !b.state.is_finished());
            if r.state.is_finished() && was_open {
                out.push(Happened::Ended { run: r.id });
            }
        }
        out
    }

    /// Reacts to what request `seq` did, and to the schedules due by its time, until nothing
    /// more follows. Whatever a rule cannot do is recorded as its decision; the request itself
    /// stands.
    pub(crate) fn react(
        &mut self,
        cmd: &Command,
        seq: u64,
        happened: Vec<Happened>,
        fx: &mut Effects,
    ) {
        let mut queue: VecDeque<Happened> = happened.into();
        while let Some((due_ms, rule)) = self.due.first().cloned()
            && due_ms <= cmd.time_ms
        {
            self.due.pop_first();
            queue.push_back(Happened::Due { rule, due_ms });
        }
        let at = At { cmd, seq };
        let mut budget = MAX_REACTIONS;
        while let Some(h) = queue.pop_front() {
            if budget == 0 {
                tracing::error!(
                    seq,
                    "rules: more than {MAX_REACTIONS} reactions to one request; the rest are dropped"
                );
                break;
            }
            budget -= 1;
            let more = match h {
                Happened::Arrived {
                    addr,
                    version,
                    bundle,
                    run,
                    paths,
                    states_rules,
                } => {
                    if states_rules {
                        self.sync_schedules(&addr, cmd.time_ms);
                    }
                    let trigger = Trigger::Bundle {
                        address: addr.clone(),
                        version,
                        bundle,
                        run,
                    };
                    self.on_arrival(&at, &addr, run, paths.as_deref(), trigger, fx)
                }
                Happened::Ended { run } => self.on_ended(&at, run, fx),
                Happened::Due { rule, due_ms } => self.on_due(&at, rule, due_ms, fx),
            };
            queue.extend(more);
        }
    }

    fn on_arrival(
        &mut self,
        at: &At<'_>,
        addr: &Address,
        run: Option<RunId>,
        paths: Option<&[String]>,
        trigger: Trigger,
        fx: &mut Effects,
    ) -> Vec<Happened> {
        let producer = run.and_then(|r| self.runs.get(&r)).cloned();
        let chain = producer
            .as_ref()
            .and_then(|p| p.cause.as_ref())
            .map(|c| c.chain.clone())
            .unwrap_or_default();
        let mut more = Vec::new();
        for (key, rule) in self.in_force(addr) {
            if rule.on != RuleTrigger::Bundle || !in_scope(&key, &rule, addr) {
                continue;
            }
            let own = producer.as_ref().is_some_and(|p| {
                p.cause.as_ref().is_some_and(|c| c.rule == key)
                    || (p.task == rule.run && key.at.resolve(&rule.at).is_ok_and(|a| a == p.node))
            });
            let verdict = if let Some(by) = self.switched_off(addr, &key.name) {
                Verdict::SwitchedOff { by }
            } else if own {
                Verdict::OwnOutput
            } else if let (Some(glob), Some(paths)) = (&rule.files, paths)
                && !paths.iter().any(|p| glob.matches(p))
            {
                Verdict::NoMatch
            } else {
                self.fire_or_coalesce(at, &key, &rule, trigger.clone(), &chain, fx, &mut more)
            };
            self.decide(at, &key, trigger.clone(), verdict);
        }
        more
    }

    fn on_ended(&mut self, at: &At<'_>, id: RunId, fx: &mut Effects) -> Vec<Happened> {
        let Some(run) = self.runs.get(&id).cloned() else {
            return Vec::new();
        };
        let mut more = Vec::new();
        // The rule that made it may owe a run to what came meanwhile.
        if let Some(cause) = &run.cause {
            let key = &cause.rule;
            let state = self.rules.entry(key.clone()).or_default();
            if state.open == Some(id) {
                state.open = None;
                if let Some(p) = state.pending.take()
                    && let Some(rule) = self.rule_def(key)
                {
                    let trigger = Trigger::Coalesced {
                        count: p.count,
                        first: Box::new(p.first),
                    };
                    let verdict =
                        self.fire(at, key, &rule, trigger.clone(), &p.chain, fx, &mut more);
                    self.decide(at, key, trigger, verdict);
                }
            }
        }
        // A reused run computed nothing; a cancelled one is no outcome.
        let on = match run.state {
            _ if run.reused_from.is_some() => return more,
            RunState::Succeeded => RuleTrigger::RunSucceeded,
            RunState::Failed => RuleTrigger::RunFailed,
            _ => return more,
        };
        let trigger = Trigger::Run {
            run: id,
            task: run.task.clone(),
            node: run.node.clone(),
            state: run.state,
        };
        let chain = run
            .cause
            .as_ref()
            .map(|c| c.chain.clone())
            .unwrap_or_default();
        for (key, rule) in self.in_force(&run.node) {
            if rule.on != on
                || rule.task.as_deref() != Some(run.task.as_str())
                || !in_scope(&key, &rule, &run.node)
            {
                continue;
            }
            let verdict = if let Some(by) = self.switched_off(&run.node, &key.name) {
                Verdict::SwitchedOff { by }
            } else if let Some(out) = run.output.as_ref().filter(|o| o.existing) {
                Verdict::CutOff {
                    run: id,
                    address: out.at.clone().unwrap_or_else(|| run.node.clone()),
                    version: out.version,
                }
            } else {
                self.fire_or_coalesce(at, &key, &rule, trigger.clone(), &chain, fx, &mut more)
            };
            self.decide(at, &key, trigger.clone(), verdict);
        }
        more
    }

    fn on_due(
        &mut self,
        at: &At<'_>,
        key: RuleRef,
        due_ms: u64,
        fx: &mut Effects,
    ) -> Vec<Happened> {
        let mut more = Vec::new();
        let Some(rule) = self
            .rule_def(&key)
            .filter(|r| r.on == RuleTrigger::Schedule)
        else {
            if let Some(s) = self.rules.get_mut(&key) {
                s.next_due_ms = None;
            }
            return more;
        };
        let trigger = Trigger::Schedule { due_ms };
        let verdict = match self.switched_off(&key.at, &key.name) {
            Some(by) => Verdict::SwitchedOff { by },
            None => self.fire_or_coalesce(at, &key, &rule, trigger.clone(), &[], fx, &mut more),
        };
        self.decide(at, &key, trigger, verdict);
        // The next one counts from now: a schedule missed while nothing ran fires once.
        if let Some(every) = rule.every {
            let next = at.cmd.time_ms.saturating_add(every.0.as_millis() as u64);
            self.rules.entry(key.clone()).or_default().next_due_ms = Some(next);
            self.due.insert((next, key));
        }
        more
    }

    /// Gives each schedule rule of `at` a due time, and takes it from rules that are no longer
    /// schedules there.
    fn sync_schedules(&mut self, at: &Address, time_ms: u64) {
        let rules: Vec<Rule> = self.rules_at(at).to_vec();
        let mut keep = std::collections::BTreeSet::new();
        for rule in rules.iter().filter(|r| r.on == RuleTrigger::Schedule) {
            let key = RuleRef {
                at: at.clone(),
                name: rule.name().to_owned(),
            };
            keep.insert(key.clone());
            let Some(every) = rule.every else { continue };
            let state = self.rules.entry(key.clone()).or_default();
            if state.next_due_ms.is_none() {
                let next = time_ms.saturating_add(every.0.as_millis() as u64);
                state.next_due_ms = Some(next);
                self.due.insert((next, key));
            }
        }
        let dropped: Vec<(u64, RuleRef)> = self
            .due
            .iter()
            .filter(|(_, k)| k.at == *at && !keep.contains(k))
            .cloned()
            .collect();
        for (t, k) in dropped {
            self.due.remove(&(t, k.clone()));
            if let Some(s) = self.rules.get_mut(&k) {
                s.next_due_ms = None;
            }
        }
    }

    /// Fires `rule`, unless that would loop, or its run is still open (then the trigger
    /// waits for it, coalesced with any others).
    #[allow(clippy::too_many_arguments)]
    fn fire_or_coalesce(
        &mut self,
        at: &At<'_>,
        key: &RuleRef,
        rule: &Rule,
        trigger: Trigger,
        chain: &[RuleRef],
        fx: &mut Effects,
        more: &mut Vec<Happened>,
    ) -> Verdict {
        if chain.contains(key) || chain.len() >= MAX_CHAIN {
            let mut chain = chain.to_vec();
            chain.push(key.clone());
            return Verdict::WouldLoop { chain };
        }
        let open = self
            .rules
            .get(key)
            .and_then(|s| s.open)
            .filter(|id| self.runs.get(id).is_some_and(|r| !r.state.is_finished()));
        if let Some(into) = open {
            let state = self.rules.entry(key.clone()).or_default();
            match &mut state.pending {
                Some(p) => {
                    p.count += 1;
                    if chain.len() < p.chain.len() {
                        p.chain = chain.to_vec();
                    }
                }
                None => {
                    state.pending = Some(Pending {
                        count: 1,
                        first: trigger,
                        chain: chain.to_vec(),
                    });
                }
            }
            return Verdict::Coalesced { into };
        }
        self.fire(at, key, rule, trigger, chain, fx, more)
    }

    /// Creates the rule's run (and the runs it needs) now.
    #[allow(clippy::too_many_arguments)]
    fn fire(
        &mut self,
        at: &At<'_>,
        key: &RuleRef,
        rule: &Rule,
        trigger: Trigger,
        chain: &[RuleRef],
        fx: &mut Effects,
        more: &mut Vec<Happened>,
    ) -> Verdict {
        let node = match key.at.resolve(&rule.at) {
            Ok(n) => n,
            Err(e) => {
                return Verdict::Failed {
                    error: format!("\"at\": {e}"),
                };
            }
        };
        let ask = RunAsk {
            addr: &node,
            task: &rule.run,
            set: &[],
            sweep: &[],
            force: false,
        };
        let mut plan = Plan::default();
        if let Err(e) = self.plan_run(at.cmd, at.seq, &ask, &mut plan) {
            return Verdict::Failed { error: e.message };
        }
        let mut full = chain.to_vec();
        full.push(key.clone());
        let cause = Box::new(Cause {
            rule: key.clone(),
            trigger,
            chain: full,
        });
        for r in &mut plan.runs {
            r.cause = Some(cause.clone());
        }
        let Some(top) = plan
            .runs
            .last()
            .map(|r: &RunRecord| (r.id, r.state, r.reused_from))
        else {
            return Verdict::Failed {
                error: "no run was planned".to_owned(),
            };
        };
        more.extend(self.happenings(&plan));
        self.install(plan, at.cmd, at.seq, fx);
        fx.events.push((
            node.clone(),
            EventKind::RuleFired {
                rule: key.clone(),
                run: top.0,
            },
        ));
        self.rules.entry(key.clone()).or_default().open = (!top.1.is_finished()).then_some(top.0);
        Verdict::Fired {
            run: top.0,
            reused: top.2.is_some(),
        }
    }

    fn decide(&mut self, at: &At<'_>, key: &RuleRef, trigger: Trigger, verdict: Verdict) {
        let d = Decision {
            seq: at.seq,
            time_ms: at.cmd.time_ms,
            trigger,
            verdict,
        };
        let state = self.rules.entry(key.clone()).or_default();
        if matches!(d.verdict, Verdict::Fired { .. }) {
            state.fired += 1;
            state.last_fired = Some(d.clone());
        }
        state.recent.push_back(d);
        while state.recent.len() > RECENT {
            state.recent.pop_front();
        }
    }
}

/// Whether `x` is in the subtree `rule` watches.
fn in_scope(key: &RuleRef, rule: &Rule, x: &Address) -> bool {
    key.at.resolve(&rule.under).is_ok_and(|u| x.is_within(&u))
}
