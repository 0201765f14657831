//! Events: what the leader publishes after each commit, and how a consumer catches up.
//!
//! Every change a request makes is in its request record's `events`, in order. After the
//! commit the leader publishes each on `p2.event.<kind>.<address subject>` as an
//! [`EventMessage`]. Messages are hints: NATS may drop them (a consumer disconnected, a leader
//! change), so a consumer keeps the request seq it has seen up to and reads the rest of the
//! log (`ReadOp::Events`), which holds every event once and in order.

use serde::{Deserialize, Serialize};

use crate::Address;

use super::*;

/// Prefix of event subjects.
pub const EVENT_PREFIX: &str = "p2.event";

/// One event as published and as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventMessage {
    /// The request that made it.
    pub seq: u64,
    /// Its place among that request's events.
    pub index: u32,
    pub address: Address,
    pub time_ms: u64,
    pub user: UserName,
    #[serde(flatten)]
    pub kind: EventKind,
}

impl EventMessage {
    /// `p2.event.<kind>.<address subject>`.
    pub fn subject(&self) -> String {
        self.address
            .to_subject(&format!("{EVENT_PREFIX}.{}", self.kind.name()))
    }
}

/// The subjects that carry the events of `kind` (every kind when `None`) at `addr` and below.
pub fn event_filters(addr: &Address, kind: Option<&str>) -> Vec<String> {
    let prefix = format!("{EVENT_PREFIX}.{}", kind.unwrap_or("*"));
    let at = addr.to_subject(&prefix);
    vec![at.clone(), format!("{at}.>")]
}

impl RequestRecord {
    /// Its events at `addr` and below, as messages.
    pub fn events_within<'a>(
        &'a self,
        addr: &'a Address,
    ) -> impl Iterator<Item = EventMessage> + 'a {
        self.events
            .iter()
            .enumerate()
            .filter(move |(_, (a, _))| a.is_within(addr))
            .map(|(i, (a, kind))| EventMessage {
                seq: self.seq,
                index: u32::try_from(i).unwrap_or(u32::MAX),
                address: a.clone(),
                time_ms: self.time_ms,
                user: self.user.clone(),
                kind: kind.clone(),
            })
    }
}

/// A page of the log's events at an address and below.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPage {
    pub events: Vec<EventMessage>,
    /// The requests up to this seq have been looked through: ask `after: upto` next.
    pub upto: u64,
    /// The last request committed when this was read.
    pub head: u64,
}

/// The most events one page holds when not told.
pub const EVENTS_DEFAULT_LIMIT: u32 = 1000;
/// The most requests one page looks through, so that a read of a quiet subtree stays short.
pub const EVENTS_SCAN_LIMIT: u64 = 100_000;
