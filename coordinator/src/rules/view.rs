//! What `plotter2 rules ADDR` reads: every rule in force at ADDR or defined below it, with
//! what it last did and why it did not when it did not.

use plotter2_node::Address;
use plotter2_node::protocol::{ApiError, RuleRef, RuleView, Trigger};

use crate::registry::{Registry, no_node};

impl Registry {
    pub fn rules_view(&self, addr: &Address) -> Result<Vec<RuleView>, ApiError> {
        if !self.nodes.contains_key(addr) {
            return Err(no_node(addr));
        }
        let in_force = self.in_force(addr);
        let mut out = Vec::new();
        for at in self.rulebooks.keys() {
            if !(addr.is_within(at) || at.is_within(addr)) {
                continue;
            }
            for rule in self.rules_at(at) {
                let key = RuleRef {
                    at: at.clone(),
                    name: rule.name().to_owned(),
                };
                let state = self.rules.get(&key).cloned().unwrap_or_default();
                let here = addr.is_within(at);
                let replaced_by = in_force
                    .iter()
                    .find(|(k, _)| here && k.name == key.name && *k != key)
                    .map(|(k, _)| k.clone());
                out.push(RuleView {
                    under: at.resolve(&rule.under).unwrap_or_else(|_| at.clone()),
                    run_at: at.resolve(&rule.at).unwrap_or_else(|_| at.clone()),
                    switched_off_by: if here {
                        self.switched_off(addr, &key.name)
                    } else {
                        None
                    },
                    replaced_by,
                    fired: state.fired,
                    last_fired: state.last_fired,
                    open_run: state.open,
                    pending: state.pending.map(|p| Trigger::Coalesced {
                        count: p.count,
                        first: Box::new(p.first),
                    }),
                    next_due_ms: state.next_due_ms,
                    recent: state.recent.into_iter().collect(),
                    definition: rule.clone(),
                    rule: key,
                });
            }
        }
        Ok(out)
    }
}
