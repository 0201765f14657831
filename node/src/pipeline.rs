//! What a worker hands to the process that runs a pipeline (`plotter2 pipeline-run`): the
//! steps, and the files each input matched, each with where it came from. The pipeline runs
//! in a process of its own so that a runaway one (memory, time) takes only itself down, and
//! cancel and timeout stop it like any command.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Address;
use crate::bundle::Hash;

/// The plan's file name in the attempt's sandbox.
pub const PLAN_FILE: &str = "pipeline.json";
/// What the pipeline process says about its output, beside the plan.
pub const RESULT_FILE: &str = "pipeline-result.json";

/// What the pipeline process tells the worker beyond the files in `{out}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineResult {
    /// Where the output is a version, when a `handoff` step sent it below the run's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
}

/// The node a `handoff` to `to` (relative, `meta/reports`) reaches from `node`.
pub fn handoff_target(node: &Address, to: &str) -> Result<Address, crate::AddressError> {
    let mut at = node.clone();
    for segment in to.split('/') {
        at = at.child(segment)?;
    }
    Ok(at)
}

/// One pipeline attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelinePlan {
    /// The run's node: where its output goes.
    pub node: Address,
    /// The task's name.
    pub task: String,
    /// The steps as the manifest wrote them (checked when it was accepted).
    pub steps: Vec<Value>,
    /// Input name → the files it matched, in the order the run selected their bundles and,
    /// within a bundle, by path. Every declared input is here, possibly with no files.
    pub inputs: BTreeMap<String, Vec<PlannedFile>>,
}

/// One input file, on disk in the sandbox, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedFile {
    pub path: PathBuf,
    pub bundle: Hash,
    pub address: Address,
    pub version: u64,
    /// Its path in the bundle.
    pub file: String,
    /// The node's own config as dotted keys.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
}
