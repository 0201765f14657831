//! Pipelines: named ops with typed params, checked before anything runs, then run over a
//! task's inputs.

mod animate;
mod grid;
mod math;
mod params;
mod registry;
mod repeat;
mod run;
mod sketch;
mod spec;
mod steps;

pub use animate::{MAX_ROWS_DRAWN, MODES as ANIMATE_MODES};
pub use registry::{HANDOFF_DEFAULT, REDUCTIONS, lookup, ops};
pub use run::{
    CLUSTER, Inputs, LABEL, Origin, Output, PARAM_PREFIX, PROVENANCE, RunError, Source,
    StepFailure, Table, run, run_observed,
};
pub use sketch::Drawn;
pub use spec::{OpSpec, ParamSpec, ParamType};
pub use steps::{Step, StepError, check};
