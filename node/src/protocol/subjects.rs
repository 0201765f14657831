//! NATS subject names and the JetStream stream that carry plotter2's messages.

use super::*;

/// Prefix of request subjects: `p2.api.<verb>`.
pub const API_PREFIX: &str = "p2.api";
/// Queue group the leader serves `p2.api.>` in.
pub const API_QUEUE: &str = "p2-coordinators";
/// Every coordinator answers here with its [`NodeStatus`].
pub const STATUS_SUBJECT: &str = "p2.node.status";

/// Where runs are delivered: `p2.task.<address subject>` on this JetStream work-queue stream.
pub const TASK_STREAM: &str = "P2_TASKS";
pub const TASK_PREFIX: &str = "p2.task";

/// Live log chunks of a running attempt, published by its worker (header `offset`).
pub fn log_subject(run: &RunId) -> String {
    format!("p2.log.{}", run.to_string().replace('.', "_"))
}

/// The worker running an attempt answers here with the log so far.
pub fn log_request_subject(run: &RunId) -> String {
    format!("p2.logreq.{}", run.to_string().replace('.', "_"))
}

/// Every worker answers here, with the attempts it holds ([`HeldAttempts`]), so the leader
/// can tell an attempt that runs long from one whose worker is gone. A
/// [`crate::WorkerName`] is one subject token.
pub fn worker_subject(worker: &crate::WorkerName) -> String {
    format!("p2.worker.{worker}")
}
