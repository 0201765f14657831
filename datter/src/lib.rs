//! Datter: plotter2's own analysis engine.
//!
//! It owns tables of data ([`Frame`]s of typed, NaN-aware [`Column`]s), reading them from files
//! (CSV, JSON, JSONL, NPY), the numeric work done on them (statistics, grouping, ordering,
//! scaling, row expressions, binning, element-wise functions, derivatives, integrals, fits,
//! cosine similarity, and [`learn`]: PCA, k-means, DBSCAN), and running pipelines of named ops
//! over a task's input files. It must not touch NATS, an async runtime, the object store or the
//! registry: the worker, the script host and the benchmarks call it on threads of their own and
//! hand it files on disk.
#![deny(missing_docs)]

pub mod bins;
pub mod calculus;
mod column;
pub mod draw;
pub mod elementwise;
mod error;
pub mod expr;
pub mod fit;
mod frame;
pub mod group;
pub mod learn;
pub mod pipeline;
pub mod read;
pub mod report;
pub mod similarity;
pub mod stats;
pub mod transform;

pub use column::{Column, ColumnKind};
pub use error::{DataError, ReadError};
pub use frame::Frame;
