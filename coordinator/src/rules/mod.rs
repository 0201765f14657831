//! Standing rules, evaluated inside apply: after a request's changes are installed, what they
//! set off (a bundle arriving, a run ending, a schedule coming due) is matched against the
//! rules in force there, and the runs the rules fire are planned and installed by the same
//! apply. So every replica derives the same runs, across a leader change in a burst too.
//!
//! - `book`: which rules are in force where (definitions come from pushed packages; a deeper
//!   rule of the same name replaces an ancestor's; config `rules.<name>=off` switches one off);
//! - `react`: the engine: coalescing, no loops, early cutoff, decisions;
//! - `view`: what `plotter2 rules` reads;
//! - `tick`: the leader's clock for schedules.

use std::collections::VecDeque;

use plotter2_node::protocol::{Decision, RuleRef, RunId, Trigger};
use serde::{Deserialize, Serialize};

mod book;
mod chain;
pub(crate) mod react;
pub mod tick;
mod view;

#[cfg(test)]
mod tests;

/// Decisions a rule keeps, newest last.
pub const RECENT: usize = 20;
/// The longest chain of rules setting each other off; a longer one is refused as a loop.
pub const MAX_CHAIN: usize = 32;
/// Most rule decisions one request may cause: a bound that cannot be reached without a loop,
/// kept so that even a bug cannot make apply run for ever.
pub const MAX_REACTIONS: usize = 100_000;

/// What the registry keeps about one rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleState {
    pub fired: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired: Option<Decision>,
    /// The last run it created, while that run has not ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<RunId>,
    /// Triggers that came while `open` had not ended: one more run when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due_ms: Option<u64>,
    #[serde(default)]
    pub recent: VecDeque<Decision>,
}

/// Triggers coalesced into one run to come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub count: u64,
    pub first: Trigger,
    /// The shortest chain among them: a push (no chain) wins over a rule's output.
    pub chain: Vec<RuleRef>,
}
