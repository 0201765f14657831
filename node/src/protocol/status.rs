//! What workers and stagers say about themselves, for `plotter2 status`: each answers a
//! request on its subject, and the asker gathers the answers for a short while.

use serde::{Deserialize, Serialize};

use crate::Address;

/// Every worker answers here with its [`WorkerStatus`].
pub const WORKER_STATUS_SUBJECT: &str = "p2.status.worker";
/// Every stager answers here with its [`StagerStatus`].
pub const STAGER_STATUS_SUBJECT: &str = "p2.status.stager";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub name: String,
    /// The subtree its pool serves.
    pub serve: Address,
    pub slots: u64,
    /// Slots running an attempt now.
    pub busy: u64,
    /// Deliveries taken and not yet done (claiming, waiting for a slot, running, reporting).
    pub in_hand: u64,
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagerStatus {
    pub name: String,
    pub inbox: String,
    /// Bundles in the spool, not yet committed or set aside.
    pub spool: u64,
    pub pid: u32,
}
