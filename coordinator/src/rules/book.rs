//! Which rules are in force where.

use plotter2_node::Address;
use plotter2_node::manifest::Rule;
use plotter2_node::nodeconf::RULES_KEY;
use plotter2_node::protocol::RuleRef;
use serde_json::Value;

use crate::registry::{Registry, StoredBundle};

impl Registry {
    /// The rules a node's packages define: those of its latest pushed package that states
    /// rules.
    pub(crate) fn rules_at(&self, at: &Address) -> &[Rule] {
        let Some(&version) = self.rulebooks.get(at) else {
            return &[];
        };
        self.nodes
            .get(at)
            .and_then(|n| {
                n.bundles
                    .get(usize::try_from(version).ok()?.checked_sub(1)?)
            })
            .and_then(|b| b.manifest.contains.package.as_ref()?.rules.as_deref())
            .unwrap_or_default()
    }

    /// Keeps the rulebook index in step with a bundle version about to be stored at `at`.
    pub(crate) fn index_rulebook(&mut self, at: &Address, bundle: &StoredBundle) {
        let states_rules = bundle
            .manifest
            .contains
            .package
            .as_ref()
            .is_some_and(|p| p.rules.is_some());
        if bundle.run.is_none() && states_rules {
            self.rulebooks.insert(at.clone(), bundle.version);
        }
    }

    /// The definition of `rule`, if its node still defines it.
    pub(crate) fn rule_def(&self, rule: &RuleRef) -> Option<Rule> {
        self.rules_at(&rule.at)
            .iter()
            .find(|r| r.name() == rule.name)
            .cloned()
    }

    /// The rules in force at `x`: every rule of `x` and its ancestors, the deepest definition
    /// of each name.
    pub(crate) fn in_force(&self, x: &Address) -> Vec<(RuleRef, Rule)> {
        let mut by_name: std::collections::BTreeMap<&str, (Address, &Rule)> =
            std::collections::BTreeMap::new();
        for a in x.lineage() {
            if !self.rulebooks.contains_key(&a) {
                continue;
            }
            for r in self.rules_at(&a) {
                by_name.insert(r.name(), (a.clone(), r));
            }
        }
        by_name
            .into_iter()
            .map(|(name, (at, r))| {
                (
                    RuleRef {
                        at,
                        name: name.to_owned(),
                    },
                    r.clone(),
                )
            })
            .collect()
    }

    /// The node whose config switches rule `name` off at `x` (the nearest one that says
    /// `rules.<name>` at all decides: `off`/`false` is off, anything else on).
    pub(crate) fn switched_off(&self, x: &Address, name: &str) -> Option<Address> {
        let mut by = None;
        for a in x.lineage() {
            let Some(v) = self
                .nodes
                .get(&a)
                .and_then(|n| n.own.get(RULES_KEY)?.as_object()?.get(name))
            else {
                continue;
            };
            let off = matches!(v, Value::Bool(false)) || v.as_str() == Some("off");
            by = off.then_some(a);
        }
        by
    }
}
