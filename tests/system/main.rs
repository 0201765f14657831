//! System tests: the real `plotter2` binary against real `nats-server` processes.
//! Run with `cargo test` (see README); nats-server must be on PATH.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may stop at the first surprise

mod support;

mod bad_input;
mod failover;
mod lineage;
mod observability;
mod pipelines;
mod rules;
mod runs;
mod stager;
mod tour;
mod up;
