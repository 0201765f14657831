//! The run indexes (queued, running, succeeded, dependents) kept in step with each change,
//! and the reads over runs.

use std::sync::Arc;

use plotter2_node::Address;
use plotter2_node::protocol::{ApiError, RunId, RunRecord, RunState};

use crate::registry::{Registry, no_node};

impl Registry {
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

    /// The first free run number of request `seq` (its runs so far are installed).
    pub(crate) fn next_run_n(&self, seq: u64) -> u32 {
        self.runs
            .range(RunId { seq, n: 0 }..=RunId { seq, n: u32::MAX })
            .next_back()
            .map_or(0, |(id, _)| id.n.saturating_add(1))
    }

    /// A copy of run `id`, which must be at `node`.
    pub(super) fn run_at(&self, node: &Address, id: &RunId) -> Result<RunRecord, ApiError> {
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

    /// How many runs wait for a worker.
    pub fn queued_count(&self) -> u64 {
        self.queued.len() as u64
    }

    /// How many runs a worker has claimed and not finished.
    pub fn running_count(&self) -> u64 {
        self.running.len() as u64
    }

    /// Runs waiting for a worker and runs claimed, by the pool their task asks for
    /// (`default` when it names none).
    pub fn runs_per_pool(&self) -> std::collections::BTreeMap<String, (u64, u64)> {
        let mut out = std::collections::BTreeMap::<String, (u64, u64)>::new();
        let pool_of = |id: &RunId| {
            self.runs
                .get(id)
                .and_then(|r| r.definition.pool.clone())
                .unwrap_or_else(|| "default".to_owned())
        };
        for id in self.queued.keys() {
            out.entry(pool_of(id)).or_default().0 += 1;
        }
        for id in &self.running {
            out.entry(pool_of(id)).or_default().1 += 1;
        }
        out
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
