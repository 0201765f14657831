//! Where a bundle version came from and what came of it (`lineage`), and why a run ran the way
//! it did (`explain`).
//!
//! A lineage is a graph, not a tree: a code bundle read by a thousand sweep runs is one
//! version node with a thousand edges, and each version and run is listed once. It is flat
//! (versions and runs in lists, referring to each other by `address@version` and run id), so
//! a long history neither nests deeper than a decoder allows nor repeats itself.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Address;
use crate::bundle::Hash;

use super::*;

/// The most versions and runs one lineage answer holds: a walk over a large history stops
/// there and says so (`truncated`).
pub const LINEAGE_LIMIT: usize = 10_000;

/// A bundle version by where it is: `address@version`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VersionAt {
    pub address: Address,
    pub version: u64,
}

impl fmt::Display for VersionAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.address, self.version)
    }
}

/// The answer to [`ReadOp::Lineage`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    /// The version asked about; `versions[0]`.
    pub root: VersionAt,
    /// The walk went to what the root made (its readers, their outputs, …), not to what made
    /// it.
    pub downstream: bool,
    /// Every version reached, each once, in the order reached (nearest first).
    pub versions: Vec<VersionNode>,
    /// Every run reached, each once, in the order reached.
    pub runs: Vec<RunNode>,
    /// The walk stopped at [`LINEAGE_LIMIT`] nodes: some reads, readers or outputs lead to a
    /// version or run that is not listed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// One bundle version in a lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionNode {
    pub address: Address,
    pub version: u64,
    pub bundle: Hash,
    pub made: Made,
    /// Runs that made this same bundle here again and so added no version (cut off): nothing
    /// downstream of them was set off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reproduced_by: Vec<RunId>,
    /// Downstream only: the runs that read it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_by: Vec<RunId>,
}

impl VersionNode {
    pub fn at(&self) -> VersionAt {
        VersionAt {
            address: self.address.clone(),
            version: self.version,
        }
    }
}

/// How a bundle version came to be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Made {
    /// Pushed (ingested) by `user` through `request`.
    Pushed {
        user: UserName,
        request: RequestId,
        time_ms: u64,
    },
    /// The output of `run` (a run that reused an earlier run's output included).
    Run { run: RunId },
}

/// One run in a lineage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunNode {
    pub id: RunId,
    pub task: String,
    pub node: Address,
    pub defined_at: Address,
    pub state: RunState,
    pub params: Map<String, Value>,
    pub outcome: Outcome,
    /// The rule that created it and its trigger; `None` for a run someone asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Box<Cause>>,
    /// What it read: its code, inputs, selected versions and needed runs' outputs.
    pub reads: Vec<Read>,
    /// Where its output is, once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<VersionAt>,
}

/// One bundle a run read, and where it is a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Read {
    #[serde(flatten)]
    pub role: ReadRole,
    pub bundle: Hash,
    /// `None` only if the bundle is no version of the nodes the run read from (not expected:
    /// versions are never deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<VersionAt>,
}

/// Why a run read a bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "as", rename_all = "snake_case")]
pub enum ReadRole {
    /// The bundle whose package defines the task.
    Code,
    /// The latest pushed bundle of a node from where the task is defined down to the run's
    /// node.
    Input,
    /// A version one of the task's named inputs selected, with its node's own config.
    Selected {
        input: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        params: BTreeMap<String, Value>,
    },
    /// The output of a run it needed.
    Need { task: String, run: RunId },
}

impl fmt::Display for ReadRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadRole::Code => write!(f, "code"),
            ReadRole::Input => write!(f, "input"),
            ReadRole::Selected { input, .. } => write!(f, "input {input}"),
            ReadRole::Need { task, .. } => write!(f, "need {task}"),
        }
    }
}

/// How a run turned out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// It has not ended.
    Open { state: RunState },
    /// It ran and succeeded; its output, if any, is a new version.
    Executed,
    /// It did not run: an equal run (the same fingerprint) had succeeded, and this one took
    /// its output.
    Reused { from: RunId },
    /// It ran, but its output was already `address@version`: no version was added and nothing
    /// downstream was set off (early cutoff).
    CutOff { address: Address, version: u64 },
    Failed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Cancelled {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl Outcome {
    pub fn of(run: &RunRecord) -> Self {
        match run.state {
            RunState::Waiting | RunState::Queued | RunState::Running => {
                Outcome::Open { state: run.state }
            }
            RunState::Failed => Outcome::Failed {
                reason: run.reason.clone(),
            },
            RunState::Cancelled => Outcome::Cancelled {
                reason: run.reason.clone(),
            },
            RunState::Succeeded => match (&run.reused_from, &run.output) {
                (Some(from), _) => Outcome::Reused { from: *from },
                (None, Some(out)) if out.existing => Outcome::CutOff {
                    address: out.at.clone().unwrap_or_else(|| run.node.clone()),
                    version: out.version,
                },
                (None, _) => Outcome::Executed,
            },
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Open { state } => write!(f, "not ended ({})", state_word(*state)),
            Outcome::Executed => write!(f, "executed"),
            Outcome::Reused { from } => write!(f, "reused from {from}"),
            Outcome::CutOff { address, version } => {
                write!(f, "cut off: its output was already {address}@{version}")
            }
            Outcome::Failed { reason: Some(r) } => write!(f, "failed: {r}"),
            Outcome::Failed { reason: None } => write!(f, "failed"),
            Outcome::Cancelled { reason: Some(r) } => write!(f, "{r}"),
            Outcome::Cancelled { reason: None } => write!(f, "cancelled"),
        }
    }
}

fn state_word(state: RunState) -> &'static str {
    match state {
        RunState::Waiting => "waiting",
        RunState::Queued => "queued",
        RunState::Running => "running",
        RunState::Succeeded => "succeeded",
        RunState::Failed => "failed",
        RunState::Cancelled => "cancelled",
    }
}

/// One part of what a run's fingerprint hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartName {
    Definition,
    Code,
    Inputs,
    Params,
    Needs,
    Selected,
}

impl fmt::Display for PartName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PartName::Definition => "definition",
            PartName::Code => "code",
            PartName::Inputs => "inputs",
            PartName::Params => "params",
            PartName::Needs => "needs",
            PartName::Selected => "selected",
        })
    }
}

/// A part and its own digest (hashed the way the whole fingerprint is).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    pub part: PartName,
    pub digest: Hash,
}

/// The answer to [`ReadOp::Explain`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    pub run: RunId,
    pub task: String,
    pub node: Address,
    pub defined_at: Address,
    pub state: RunState,
    pub user: UserName,
    pub request: RequestId,
    pub created_ms: u64,
    pub params: Map<String, Value>,
    /// What it read (its code first), resolved to versions.
    pub reads: Vec<Read>,
    /// The parts its fingerprint hashes; a run without needs or selected versions has no such
    /// part (so adding that kind of part changed no earlier fingerprint).
    pub parts: Vec<Part>,
    pub fingerprint: Hash,
    /// The parts hashed together again give `fingerprint` (false: it was planned by an
    /// earlier form of the fingerprint, or a needed run is gone).
    pub fingerprint_checks: bool,
    pub outcome: Outcome,
    /// Asked for with `--force`: run even though an equal run had succeeded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Box<Cause>>,
    /// The latest earlier run of the same task at the same node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// When a rule created it: that rule's recent decisions, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_decisions: Vec<RuleDecision>,
    /// What rules decided about this run ending or its output (fired, or why not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_off: Vec<RuleDecision>,
}

/// The run before, and the parts of the fingerprint that differ from it: why this one ran
/// again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Previous {
    pub run: RunId,
    pub fingerprint: Hash,
    pub outcome: Outcome,
    /// Parts whose digests differ, or that only one of the two has.
    pub changed: Vec<PartName>,
}

/// A rule's decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleDecision {
    pub rule: RuleRef,
    #[serde(flatten)]
    pub decision: Decision,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode, encode};

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }

    #[test]
    fn a_lineage_roundtrips_through_the_wire_encoding_and_json() {
        let at = VersionAt {
            address: addr("/e/sweep-1/lr=0.1"),
            version: 1,
        };
        let lineage = Lineage {
            root: at.clone(),
            downstream: false,
            versions: vec![VersionNode {
                address: at.address.clone(),
                version: 1,
                bundle: Hash::of(b"w"),
                made: Made::Run {
                    run: RunId { seq: 5, n: 0 },
                },
                reproduced_by: vec![RunId { seq: 9, n: 0 }],
                read_by: vec![],
            }],
            runs: vec![],
            truncated: true,
        };
        let back: Lineage = decode(&encode(&lineage).unwrap()).unwrap();
        assert_eq!(back, lineage);
        let json = serde_json::to_value(&lineage).unwrap();
        assert_eq!(json["versions"][0]["made"]["by"], "run");
        assert_eq!(json["versions"][0]["made"]["run"], "r5.0");
        let read = Read {
            role: ReadRole::Selected {
                input: "w".into(),
                params: BTreeMap::from([("lr".to_owned(), serde_json::json!(0.1))]),
            },
            bundle: Hash::of(b"w"),
            at: Some(at),
        };
        let json = serde_json::to_value(&read).unwrap();
        assert_eq!(
            (json["as"].as_str(), json["input"].as_str()),
            (Some("selected"), Some("w"))
        );
        let back: Read = decode(&encode(&read).unwrap()).unwrap();
        assert_eq!(back, read);
        assert_eq!(read.role.to_string(), "input w");
    }

    #[test]
    fn outcome_tells_reused_from_cut_off_from_executed() {
        let mut run: RunRecord = serde_json::from_value(serde_json::json!({
            "id": "r3.0", "node": "/e", "task": "t", "defined_at": "/e",
            "definition": {"kind": "command"}, "params": {}, "code": Hash::of(b"c"),
            "inputs": [], "fingerprint": Hash::of(b"f"), "state": "running",
            "request": RequestId::new(), "user": "tali", "created_ms": 1,
        }))
        .unwrap();
        assert_eq!(
            Outcome::of(&run),
            Outcome::Open {
                state: RunState::Running
            }
        );
        run.state = RunState::Succeeded;
        run.output = Some(BundleRef {
            version: 2,
            id: Hash::of(b"o"),
            existing: false,
            at: None,
        });
        assert_eq!(Outcome::of(&run), Outcome::Executed);
        if let Some(o) = run.output.as_mut() {
            o.existing = true;
            o.at = Some(addr("/e/meta/reports"));
        }
        assert_eq!(
            Outcome::of(&run).to_string(),
            "cut off: its output was already /e/meta/reports@2"
        );
        run.reused_from = Some(RunId { seq: 1, n: 0 });
        assert_eq!(
            Outcome::of(&run),
            Outcome::Reused {
                from: RunId { seq: 1, n: 0 }
            }
        );
    }
}
