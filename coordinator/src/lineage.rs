//! `lineage`: how a bundle version was made, down to the pushes, or (downstream) what was
//! made from it.
//!
//! A breadth-first walk over the registry that lists each version and run once, so a code
//! bundle read by every run of a sweep is one node with many edges (a DAG, not a tree that
//! grows with every path), and that stops at [`LINEAGE_LIMIT`] nodes. Finding the runs that
//! made a version again (cut off) or read one (downstream) scans every run once per answer:
//! fine for now; an index kept by apply would make it as cheap as the answer.

use std::collections::{BTreeMap, VecDeque};

use plotter2_node::Address;
use plotter2_node::bundle::Hash;
use plotter2_node::protocol::{
    ApiError, LINEAGE_LIMIT, Lineage, Made, Outcome, Read, ReadRole, RunId, RunNode, RunRecord,
    VersionAt, VersionNode,
};

use crate::registry::{Registry, StoredBundle};

impl Registry {
    /// The lineage of version `version` of `addr` (the latest when `None`): upstream, what
    /// made it; `downstream`, what was made from it.
    pub fn lineage(
        &self,
        addr: &Address,
        version: Option<u64>,
        downstream: bool,
    ) -> Result<Lineage, ApiError> {
        self.lineage_within(addr, version, downstream, LINEAGE_LIMIT)
    }

    /// [`Registry::lineage`] of at most `limit` versions and runs.
    pub(crate) fn lineage_within(
        &self,
        addr: &Address,
        version: Option<u64>,
        downstream: bool,
        limit: usize,
    ) -> Result<Lineage, ApiError> {
        let root = VersionAt {
            address: addr.clone(),
            version: self.bundle(addr, version)?.version.version,
        };
        let mut walk = Walk::new(self, downstream, limit);
        walk.add_version(&root);
        while let Some(item) = walk.todo.pop_front() {
            match item {
                Item::Version(i) => walk.expand_version(i),
                Item::Run(i) => walk.expand_run(i),
            }
        }
        Ok(Lineage {
            root,
            downstream,
            versions: walk.versions,
            runs: walk.runs,
            truncated: walk.truncated,
        })
    }

    /// Version `at`, if the registry has it.
    pub(crate) fn stored_at(&self, at: &VersionAt) -> Option<&StoredBundle> {
        let i = usize::try_from(at.version.checked_sub(1)?).ok()?;
        self.nodes.get(&at.address)?.bundles.get(i)
    }

    /// The version bundle `id` is at `addr`, if it is one there.
    fn version_of(&self, addr: &Address, id: Hash) -> Option<VersionAt> {
        let b = self.nodes.get(addr)?.bundles.iter().find(|b| b.id == id)?;
        Some(VersionAt {
            address: addr.clone(),
            version: b.version,
        })
    }

    /// Who made version `b` of `addr`: its push, or the run whose output it is.
    pub(crate) fn made_by(&self, addr: &Address, b: &StoredBundle) -> Made {
        let Some(producer) = b.run else {
            return Made::Pushed {
                user: b.user.clone(),
                request: b.request,
                time_ms: b.time_ms,
            };
        };
        let here = VersionAt {
            address: addr.clone(),
            version: b.version,
        };
        let lands_here = |r: &RunRecord| landing(r).as_ref() == Some(&here);
        if self.runs.get(&producer).is_some_and(|r| lands_here(r)) {
            return Made::Run { run: producer };
        }
        // A run that reused `producer`'s output recorded a copy of it here (keeping the
        // producer's id on the copy): it is one of the runs of the request that recorded it.
        let reuser = self.by_id.get(&b.request).and_then(|&seq| {
            self.runs
                .range(RunId { seq, n: 0 }..=RunId { seq, n: u32::MAX })
                .map(|(_, r)| r)
                .find(|r| r.reused_from.is_some() && lands_here(r))
        });
        Made::Run {
            run: reuser.map_or(producer, |r| r.id),
        }
    }

    /// What `run` read, resolved to versions: its code, its inputs (looked up among the nodes
    /// from where the task is defined down to the run's node, in that order, as they were
    /// taken), its selected versions and its needed runs' outputs.
    pub(crate) fn run_reads(&self, run: &RunRecord) -> Vec<Read> {
        let mut out = Vec::with_capacity(1 + run.inputs.len() + run.selected.len());
        out.push(Read {
            role: ReadRole::Code,
            bundle: run.code,
            at: self.version_of(&run.defined_at, run.code),
        });
        let from: Vec<Address> = run
            .node
            .lineage()
            .filter(|a| a.is_within(&run.defined_at))
            .collect();
        // Each node gave at most one input; the same bundle at two of them is two inputs.
        let mut next = 0;
        for id in &run.inputs {
            let found = from
                .iter()
                .enumerate()
                .skip(next)
                .find_map(|(i, a)| Some((i, self.version_of(a, *id)?)));
            if let Some((i, _)) = &found {
                next = i + 1;
            }
            out.push(Read {
                role: ReadRole::Input,
                bundle: *id,
                at: found.map(|(_, at)| at),
            });
        }
        out.extend(run.selected.iter().map(|s| Read {
            role: ReadRole::Selected {
                input: s.input.clone(),
                params: s.params.clone(),
            },
            bundle: s.bundle,
            at: Some(VersionAt {
                address: s.address.clone(),
                version: s.version,
            }),
        }));
        out.extend(run.needs.iter().filter_map(|n| {
            let o = n.output.as_ref()?;
            Some(Read {
                role: ReadRole::Need {
                    task: n.task.clone(),
                    run: n.run,
                },
                bundle: o.id,
                at: Some(VersionAt {
                    address: o.at.clone().unwrap_or_else(|| run.node.clone()),
                    version: o.version,
                }),
            })
        }));
        out
    }

    /// Runs that were cut off, by the version their output already was.
    fn cut_off_runs(&self) -> BTreeMap<VersionAt, Vec<RunId>> {
        let mut out: BTreeMap<VersionAt, Vec<RunId>> = BTreeMap::new();
        for r in self.runs.values() {
            if let Outcome::CutOff { address, version } = Outcome::of(r) {
                out.entry(VersionAt { address, version })
                    .or_default()
                    .push(r.id);
            }
        }
        out
    }

    /// Every run by each bundle id it read: the candidates for "who read this version" (the
    /// same id may be a version of another node, so each is checked against its reads).
    fn readers_by_bundle(&self) -> BTreeMap<Hash, Vec<RunId>> {
        let mut out: BTreeMap<Hash, Vec<RunId>> = BTreeMap::new();
        for r in self.runs.values() {
            let ids = std::iter::once(r.code)
                .chain(r.inputs.iter().copied())
                .chain(r.selected.iter().map(|s| s.bundle))
                .chain(r.needs.iter().filter_map(|n| Some(n.output.as_ref()?.id)));
            for id in ids {
                let readers = out.entry(id).or_default();
                if readers.last() != Some(&r.id) {
                    readers.push(r.id);
                }
            }
        }
        out
    }
}

/// Where a run's output is a version.
pub(crate) fn landing(run: &RunRecord) -> Option<VersionAt> {
    let o = run.output.as_ref()?;
    Some(VersionAt {
        address: o.at.clone().unwrap_or_else(|| run.node.clone()),
        version: o.version,
    })
}

enum Item {
    Version(usize),
    Run(usize),
}

/// One lineage being gathered.
struct Walk<'a> {
    reg: &'a Registry,
    downstream: bool,
    limit: usize,
    versions: Vec<VersionNode>,
    runs: Vec<RunNode>,
    version_ix: BTreeMap<VersionAt, usize>,
    /// Index in `runs`, and whether the run is (or was) queued to be followed.
    run_ix: BTreeMap<RunId, (usize, bool)>,
    todo: VecDeque<Item>,
    cut_off: BTreeMap<VersionAt, Vec<RunId>>,
    readers: BTreeMap<Hash, Vec<RunId>>,
    truncated: bool,
}

impl<'a> Walk<'a> {
    fn new(reg: &'a Registry, downstream: bool, limit: usize) -> Self {
        Self {
            reg,
            downstream,
            limit,
            versions: Vec::new(),
            runs: Vec::new(),
            version_ix: BTreeMap::new(),
            run_ix: BTreeMap::new(),
            todo: VecDeque::new(),
            cut_off: reg.cut_off_runs(),
            readers: if downstream {
                reg.readers_by_bundle()
            } else {
                BTreeMap::new()
            },
            truncated: false,
        }
    }

    /// No room for another node: the answer stops growing and says so.
    fn full(&mut self) -> bool {
        if self.versions.len() + self.runs.len() >= self.limit {
            self.truncated = true;
        }
        self.truncated
    }

    fn add_version(&mut self, at: &VersionAt) {
        if self.version_ix.contains_key(at) || self.full() {
            return;
        }
        let Some(b) = self.reg.stored_at(at) else {
            return;
        };
        self.version_ix.insert(at.clone(), self.versions.len());
        self.todo.push_back(Item::Version(self.versions.len()));
        self.versions.push(VersionNode {
            address: at.address.clone(),
            version: at.version,
            bundle: b.id,
            made: self.reg.made_by(&at.address, b),
            reproduced_by: self.cut_off.get(at).cloned().unwrap_or_default(),
            read_by: Vec::new(),
        });
    }

    /// Lists run `id`; `follow`: walk on from it too (a run only listed, such as one that
    /// made a version again, is followed when the walk reaches it another way).
    fn add_run(&mut self, id: RunId, follow: bool) {
        if let Some((i, followed)) = self.run_ix.get_mut(&id) {
            if follow && !*followed {
                *followed = true;
                self.todo.push_back(Item::Run(*i));
            }
            return;
        }
        if self.full() {
            return;
        }
        let Some(r) = self.reg.runs.get(&id) else {
            return;
        };
        let i = self.runs.len();
        self.run_ix.insert(id, (i, follow));
        if follow {
            self.todo.push_back(Item::Run(i));
        }
        self.runs.push(RunNode {
            id,
            task: r.task.clone(),
            node: r.node.clone(),
            defined_at: r.defined_at.clone(),
            state: r.state,
            params: r.params.clone(),
            outcome: Outcome::of(r),
            cause: r.cause.clone(),
            reads: self.reg.run_reads(r),
            output: landing(r),
        });
    }

    fn expand_version(&mut self, i: usize) {
        let v = &self.versions[i];
        let made = v.made.clone();
        let again = v.reproduced_by.clone();
        let at = v.at();
        let bundle = v.bundle;
        if !self.downstream {
            if let Made::Run { run } = made {
                self.add_run(run, true);
            }
        } else {
            let candidates = self.readers.get(&bundle).cloned().unwrap_or_default();
            let mut read_by = Vec::new();
            for id in candidates {
                let reads_it = self.reg.runs.get(&id).is_some_and(|r| {
                    self.reg
                        .run_reads(r)
                        .iter()
                        .any(|read| read.at.as_ref() == Some(&at))
                });
                if reads_it {
                    read_by.push(id);
                    self.add_run(id, true);
                }
            }
            self.versions[i].read_by = read_by;
        }
        for id in again {
            self.add_run(id, false);
        }
    }

    fn expand_run(&mut self, i: usize) {
        let r = &self.runs[i];
        let next: Vec<VersionAt> = if self.downstream {
            r.output.iter().cloned().collect()
        } else {
            r.reads.iter().filter_map(|read| read.at.clone()).collect()
        };
        for at in &next {
            self.add_version(at);
        }
    }
}

#[cfg(test)]
mod tests;
