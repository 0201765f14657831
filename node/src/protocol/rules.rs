//! Rules in the registry: which rule, what set it off, and what it decided each time.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Address;
use crate::bundle::Hash;
use crate::manifest::Rule;

use super::*;

/// A rule by the node whose package defines it and its name: `reward_report@/sources/tali/e2`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleRef {
    pub at: Address,
    pub name: String,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.at)
    }
}

impl FromStr for RuleRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, at) = s
            .split_once('@')
            .ok_or_else(|| format!("{s:?} is not a rule; rules are named NAME@ADDRESS"))?;
        Ok(Self {
            at: Address::parse(at).map_err(|e| format!("{s:?}: {e}"))?,
            name: name.to_owned(),
        })
    }
}

crate::serde_as_text!(RuleRef);

/// What set a rule off (or would have).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "on", rename_all = "snake_case")]
pub enum Trigger {
    /// A bundle version arrived; `run` made it, when it is a run's output.
    Bundle {
        address: Address,
        version: u64,
        bundle: Hash,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run: Option<RunId>,
    },
    /// A run ended.
    Run {
        run: RunId,
        task: String,
        node: Address,
        state: RunState,
    },
    /// A schedule came due (by the leader's clock, as stamped on the request).
    Schedule { due_ms: u64 },
    /// Triggers that arrived while the rule's run was queued or running: one run after it.
    Coalesced { count: u64, first: Box<Trigger> },
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trigger::Bundle {
                address,
                version,
                run,
                ..
            } => {
                write!(f, "bundle {address}@{version}")?;
                if let Some(r) = run {
                    write!(f, " (output of {r})")?;
                }
                Ok(())
            }
            Trigger::Run {
                run,
                task,
                node,
                state,
            } => {
                let state = format!("{state:?}").to_lowercase();
                write!(f, "run {run} of {task} at {node} {state}")
            }
            Trigger::Schedule { due_ms } => write!(f, "schedule due at {due_ms} ms"),
            Trigger::Coalesced { count, first } => {
                write!(
                    f,
                    "{count} trigger(s) while its run was open, the first: {first}"
                )
            }
        }
    }
}

/// Why a rule created a run: the rule, what set it off, and the rules whose runs led to it
/// (the chain, this rule last), which a rule never joins twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub rule: RuleRef,
    pub trigger: Trigger,
    pub chain: Vec<RuleRef>,
}

/// What a rule did about one trigger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// It created `run` (`reused`: an equal run had succeeded, so nothing was executed).
    Fired {
        run: RunId,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        reused: bool,
    },
    /// Its run `into` was queued or running: one more run follows it.
    Coalesced { into: RunId },
    /// A node's config `rules.<name>=off` switched it off there.
    SwitchedOff { by: Address },
    /// The bundle holds no file its `match` matches.
    NoMatch,
    /// The bundle is the output of a run of its own task there: a report does not rerun on
    /// the report it made.
    OwnOutput,
    /// The run's output was the same as a version its node had: nothing new, nothing fired.
    CutOff {
        run: RunId,
        address: Address,
        version: u64,
    },
    /// Firing would close a chain of rules that set each other off.
    WouldLoop { chain: Vec<RuleRef> },
    /// The run could not be created.
    Failed { error: String },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Fired { run, reused: false } => write!(f, "fired: run {run}"),
            Verdict::Fired { run, reused: true } => {
                write!(f, "fired: run {run}, reused (an equal run had succeeded)")
            }
            Verdict::Coalesced { into } => {
                write!(
                    f,
                    "coalesced: its run {into} was open; one more run follows it"
                )
            }
            Verdict::SwitchedOff { by } => write!(f, "switched off by rules.<name>=off at {by}"),
            Verdict::NoMatch => write!(f, "not fired: no file matches"),
            Verdict::OwnOutput => write!(f, "not fired: the output of its own task"),
            Verdict::CutOff {
                run,
                address,
                version,
            } => write!(
                f,
                "not fired: run {run} was cut off (its output is already {address}@{version})"
            ),
            Verdict::WouldLoop { chain } => {
                let names: Vec<String> = chain.iter().map(ToString::to_string).collect();
                write!(f, "not fired: it would loop ({})", names.join(" → "))
            }
            Verdict::Failed { error } => write!(f, "not fired: {error}"),
        }
    }
}

/// One decision of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The request whose commit it followed.
    pub seq: u64,
    pub time_ms: u64,
    pub trigger: Trigger,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// A rule as `plotter2 rules ADDR` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleView {
    pub rule: RuleRef,
    pub definition: Rule,
    /// Where it watches and where it runs.
    pub under: Address,
    pub run_at: Address,
    /// At the asked address: switched off by this node's config (or its ancestor's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switched_off_by: Option<Address>,
    /// At the asked address: a deeper rule of the same name is in force instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<RuleRef>,
    pub fired: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired: Option<Decision>,
    /// Its run that has not ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_run: Option<RunId>,
    /// Triggers waiting for the open run to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Trigger>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due_ms: Option<u64>,
    /// Its latest decisions, oldest first.
    pub recent: Vec<Decision>,
}
