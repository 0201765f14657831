//! Refusing, at ingest, rules that would set each other off for ever. An edge A → B means a
//! run of A's may set B off: B watches the runs of A's task where A runs it, or B watches
//! every bundle (no `match`) where A's output lands. Rules with a `match` cannot be judged
//! before their outputs exist; the chain each run carries stops those at run time.

use std::collections::BTreeMap;

use plotter2_node::Address;
use plotter2_node::manifest::{Rule, RuleTrigger};
use plotter2_node::protocol::{ApiError, RuleRef};

use crate::registry::Registry;

impl Registry {
    /// Checks the rules that would be in force with `rules` defined at `at`.
    pub(crate) fn check_rule_chains(&self, at: &Address, rules: &[Rule]) -> Result<(), ApiError> {
        let mut all: BTreeMap<RuleRef, (Address, Address, Rule)> = BTreeMap::new();
        let mut add = |def: &Address, r: &Rule| {
            let (Ok(under), Ok(runs_at)) = (def.resolve(&r.under), def.resolve(&r.at)) else {
                return;
            };
            let key = RuleRef {
                at: def.clone(),
                name: r.name().to_owned(),
            };
            all.insert(key, (under, runs_at, r.clone()));
        };
        for def in self.rulebooks.keys().filter(|d| *d != at) {
            for r in self.rules_at(def) {
                add(def, r);
            }
        }
        for r in rules {
            add(at, r);
        }
        let keys: Vec<RuleRef> = all.keys().cloned().collect();
        let sets_off = |a: &RuleRef, b: &RuleRef| -> bool {
            let (Some((_, a_at, a_rule)), Some((b_under, _, b_rule))) = (all.get(a), all.get(b))
            else {
                return false;
            };
            match b_rule.on {
                RuleTrigger::RunSucceeded | RuleTrigger::RunFailed => {
                    b_rule.task.as_deref() == Some(a_rule.run.as_str()) && a_at.is_within(b_under)
                }
                RuleTrigger::Bundle => {
                    a != b
                        && b_rule.files.is_none()
                        && (a_at.is_within(b_under) || b_under.is_within(a_at))
                }
                RuleTrigger::Schedule => false,
            }
        };
        // Depth first from every rule; a rule met again on the path closes a cycle.
        fn visit(
            k: &RuleRef,
            keys: &[RuleRef],
            sets_off: &dyn Fn(&RuleRef, &RuleRef) -> bool,
            done: &mut std::collections::BTreeSet<RuleRef>,
            path: &mut Vec<RuleRef>,
        ) -> Option<Vec<RuleRef>> {
            if let Some(i) = path.iter().position(|p| p == k) {
                let mut cycle = path[i..].to_vec();
                cycle.push(k.clone());
                return Some(cycle);
            }
            if done.contains(k) {
                return None;
            }
            path.push(k.clone());
            for next in keys.iter().filter(|n| sets_off(k, n)) {
                if let Some(c) = visit(next, keys, sets_off, done, path) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(k.clone());
            None
        }
        let mut done = std::collections::BTreeSet::new();
        for k in &keys {
            if let Some(cycle) = visit(k, &keys, &sets_off, &mut done, &mut Vec::new()) {
                let names: Vec<String> = cycle.iter().map(ToString::to_string).collect();
                return Err(ApiError::bad_request(format!(
                    "the rules would set each other off for ever ({}); give one of them a \
                     \"match\" that the others' outputs do not hold, watch another task, or \
                     switch one off",
                    names.join(" → ")
                )));
            }
        }
        Ok(())
    }
}
