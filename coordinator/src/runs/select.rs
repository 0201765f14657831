//! Picking the bundle versions a run's inputs read, when the run is created: a pure function
//! of the registry, so every replica selects the same, and the run's fingerprint holds them.

use std::collections::BTreeMap;

use plotter2_node::Address;
use plotter2_node::inputs::{InputPattern, Versions};
use plotter2_node::nodeconf;
use plotter2_node::protocol::Selected;

use crate::registry::{Registry, StoredBundle};

impl Registry {
    /// The versions each input of `task` takes at `node` and below, by input name, then
    /// address (the registry's order), then version. The task's own outputs are left out: a
    /// report does not read the reports it made, so running it again on the same data is the
    /// same run. An input that matches nothing selects nothing: the pipeline says so when it
    /// reads it.
    pub(super) fn select_inputs(
        &self,
        node: &Address,
        task: &str,
        inputs: &BTreeMap<String, InputPattern>,
    ) -> Vec<Selected> {
        let mut out = Vec::new();
        if inputs.is_empty() {
            return out;
        }
        let base = node.depth();
        for (name, pattern) in inputs {
            for (addr, record) in self.nodes.range(node..) {
                if !addr.is_within(node) {
                    break;
                }
                let relative: Vec<&str> = addr.segments().skip(base).collect();
                if record.bundles.is_empty() || !pattern.takes_node(&relative) {
                    continue;
                }
                let mut params = nodeconf::leaves(&record.own);
                params.retain(|k, _| k.split('.').next() != Some(nodeconf::RULES_KEY));
                let chosen = match pattern.versions {
                    Versions::All => &record.bundles[..],
                    Versions::Latest => &record.bundles[record.bundles.len() - 1..],
                    Versions::Number(n) => match usize::try_from(n) {
                        Ok(n) if n >= 1 && n <= record.bundles.len() => &record.bundles[n - 1..n],
                        _ => &[],
                    },
                };
                let own_output = |b: &&StoredBundle| {
                    b.run
                        .and_then(|r| self.runs.get(&r))
                        .is_some_and(|r| r.task == task)
                };
                out.extend(chosen.iter().filter(|b| !own_output(b)).map(|b| Selected {
                    input: name.clone(),
                    address: addr.clone(),
                    version: b.version,
                    bundle: b.id,
                    params: params.clone(),
                }));
            }
        }
        out
    }
}
