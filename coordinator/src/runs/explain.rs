//! `explain RUN`: the parts of a run's fingerprint, each with its own digest; how it turned
//! out; what asked for it; and, against the run of the same task at the same node before it,
//! which parts changed (why it ran again).

use plotter2_node::bundle::Hash;
use plotter2_node::protocol::{
    ApiError, Decision, ErrorKind, Explanation, Outcome, Part, PartName, Previous, RuleDecision,
    RunId, RunRecord, Trigger, Verdict, WriteOp,
};

use crate::registry::Registry;

use super::fingerprint::fingerprint;

impl Registry {
    pub fn explain(&self, id: &RunId) -> Result<Explanation, ApiError> {
        let run = self.runs.get(id).ok_or_else(|| {
            ApiError::not_found(format!("no run {id}; list them with `plotter2 runs ADDR`"))
        })?;
        let (parts, fingerprint_checks) = self.fingerprint_parts(run)?;
        let previous = match self
            .runs
            .range(..*id)
            .rev()
            .map(|(_, r)| r)
            .find(|r| r.task == run.task && r.node == run.node)
        {
            Some(p) => Some(Previous {
                run: p.id,
                fingerprint: p.fingerprint,
                outcome: Outcome::of(p),
                changed: changed(&parts, &self.fingerprint_parts(p)?.0),
            }),
            None => None,
        };
        let rule_decisions = run
            .cause
            .as_ref()
            .and_then(|c| Some((&c.rule, self.rules.get(&c.rule)?)))
            .map(|(rule, state)| {
                state
                    .recent
                    .iter()
                    .map(|d| RuleDecision {
                        rule: rule.clone(),
                        decision: d.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut set_off: Vec<RuleDecision> = self
            .rules
            .iter()
            .flat_map(|(rule, state)| {
                state
                    .recent
                    .iter()
                    .filter(|d| is_about(d, *id))
                    .map(|d| RuleDecision {
                        rule: rule.clone(),
                        decision: d.clone(),
                    })
            })
            .collect();
        set_off.sort_by_key(|d| d.decision.seq);
        // Its needs were not forced: they are reused when they can be.
        let forced = run.cause.is_none()
            && run
                .id
                .seq
                .checked_sub(1)
                .and_then(|i| self.requests.get(usize::try_from(i).ok()?))
                .is_some_and(|req| {
                    matches!(&req.payload, WriteOp::Run { force: true, task, .. } if *task == run.task)
                });
        Ok(Explanation {
            run: run.id,
            task: run.task.clone(),
            node: run.node.clone(),
            defined_at: run.defined_at.clone(),
            state: run.state,
            user: run.user.clone(),
            request: run.request,
            created_ms: run.created_ms,
            params: run.params.clone(),
            reads: self.run_reads(run),
            parts,
            fingerprint: run.fingerprint,
            fingerprint_checks,
            outcome: Outcome::of(run),
            forced,
            cause: run.cause.clone(),
            previous,
            rule_decisions,
            set_off,
        })
    }

    /// The parts `plan_task_run` hashes into a run's fingerprint, each hashed alone, and
    /// whether hashing them together as it does gives the recorded fingerprint.
    fn fingerprint_parts(&self, run: &RunRecord) -> Result<(Vec<Part>, bool), ApiError> {
        let fail = |part: PartName| {
            move |e: serde_json::Error| {
                ApiError::new(
                    ErrorKind::Internal,
                    format!(
                        "run {}: its {part} cannot be encoded for its fingerprint ({e})",
                        run.id
                    ),
                )
            }
        };
        let of_needs: Vec<(&String, Hash)> = run
            .needs
            .iter()
            .filter_map(|n| Some((&n.task, self.runs.get(&n.run)?.fingerprint)))
            .collect();
        let digest = |part: PartName, h: Result<Hash, serde_json::Error>| {
            h.map(|digest| Part { part, digest }).map_err(fail(part))
        };
        let mut parts = vec![
            digest(PartName::Definition, fingerprint(&run.definition))?,
            digest(PartName::Code, fingerprint(&run.code))?,
            digest(PartName::Inputs, fingerprint(&run.inputs))?,
            digest(PartName::Params, fingerprint(&run.params))?,
        ];
        if !run.needs.is_empty() {
            parts.push(digest(PartName::Needs, fingerprint(&of_needs))?);
        }
        if !run.selected.is_empty() {
            parts.push(digest(PartName::Selected, fingerprint(&run.selected))?);
        }
        let (def, inputs, params, code, selected) = (
            &run.definition,
            &run.inputs,
            &run.params,
            run.code,
            &run.selected,
        );
        // The same tuples as `plan_task_run`: a test holds the two together.
        let whole = match (of_needs.is_empty(), selected.is_empty()) {
            (true, true) => fingerprint(&(def, inputs, params, code)),
            (false, true) => fingerprint(&(def, inputs, params, code, &of_needs)),
            (_, false) => fingerprint(&(def, inputs, params, code, &of_needs, selected)),
        }
        .map_err(fail(PartName::Definition))?;
        let checks = of_needs.len() == run.needs.len() && whole == run.fingerprint;
        Ok((parts, checks))
    }
}

/// The parts whose digests differ between `a` and `b`, or that only one has.
fn changed(a: &[Part], b: &[Part]) -> Vec<PartName> {
    let digest =
        |parts: &[Part], name: PartName| parts.iter().find(|p| p.part == name).map(|p| p.digest);
    let mut names: Vec<PartName> = a.iter().chain(b).map(|p| p.part).collect();
    names.sort();
    names.dedup();
    names.retain(|&n| digest(a, n) != digest(b, n));
    names
}

/// Whether a rule's decision was about run `id`: set off by it ending or by its output, or
/// not fired because it was cut off.
fn is_about(d: &Decision, id: RunId) -> bool {
    fn mentions(t: &Trigger, id: RunId) -> bool {
        match t {
            Trigger::Bundle { run, .. } => *run == Some(id),
            Trigger::Run { run, .. } => *run == id,
            Trigger::Schedule { .. } => false,
            Trigger::Coalesced { first, .. } => mentions(first, id),
        }
    }
    mentions(&d.trigger, id) || matches!(d.verdict, Verdict::CutOff { run, .. } if run == id)
}
