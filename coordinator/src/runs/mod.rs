//! Runs in the registry: creating them from a `run` request (sweeps and `needs` included),
//! reusing equal succeeded runs, and moving them through their attempts (claimed, finished,
//! lost, cancelled), with the runs that wait for them following.
//!
//! Like the rest of the registry these are pure functions of the registry and the command:
//! each returns a [`Plan`] that [`Registry::apply`] installs whole, or an error that changes
//! nothing.
//!
//! - `plan`: a `run` request's runs; `attempts`: what happens to them; `queries`: indexes
//!   and reads; `fingerprint`: what makes two runs equal; `select`: the bundle versions a
//!   run's inputs read; `explain`: a run's fingerprint part by part, and why it ran.

use plotter2_node::Address;
use plotter2_node::nodeconf::Assignment;
use plotter2_node::sweep::Sweep;

mod attempts;
mod explain;
mod fingerprint;
mod plan;
mod queries;
mod select;

/// What a `run` request asks for.
pub(crate) struct RunAsk<'a> {
    pub addr: &'a Address,
    pub task: &'a str,
    pub set: &'a [Assignment],
    pub sweep: &'a [Sweep],
    /// Run the asked task even when an equal succeeded run could be reused (its needs are
    /// still reused).
    pub force: bool,
}

#[cfg(test)]
mod attempt_tests;
#[cfg(test)]
mod tests;
