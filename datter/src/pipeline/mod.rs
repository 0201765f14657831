//! Pipelines: named ops with typed params, checked before anything runs.

mod registry;
mod spec;
mod steps;

pub use registry::{REDUCTIONS, lookup, ops};
pub use spec::{OpSpec, ParamSpec, ParamType};
pub use steps::{Step, StepError, check};
