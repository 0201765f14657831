//! When to snapshot (and so compact the log).
//!
//! A snapshot serializes the whole registry, which only grows (nothing is ever deleted). A fixed
//! "every N entries" policy would make each write pay more as the registry grows, so a snapshot
//! is taken after `max(every, requests in the registry)` entries: snapshot work per write stays
//! constant, and the retained log stays at most about the size of the state.

use openraft::type_config::async_runtime::WatchReceiver;

use crate::state_machine::Raft;
use crate::state_machine::StateMachine;

/// Entries since the last snapshot after which a new one is due.
pub fn threshold(every: u64, requests: u64) -> u64 {
    every.max(requests).max(1)
}

/// Watches applied progress and triggers snapshots; returns when raft shuts down.
pub async fn run(raft: Raft, sm: StateMachine, every: u64) {
    let mut metrics = raft.metrics();
    let mut triggered_after: Option<u64> = None;
    loop {
        let (applied, snapshot) = {
            let m = metrics.borrow_watched();
            (
                m.last_applied.as_ref().map(|l| l.index()).unwrap_or(0),
                m.snapshot.as_ref().map(|l| l.index()),
            )
        };
        let since = applied - snapshot.unwrap_or(0).min(applied);
        // Cheap test first; the registry lock only when a snapshot may be due.
        if since >= every && triggered_after != Some(snapshot.unwrap_or(0)) {
            let requests = sm.read().map(|st| st.registry.request_count()).unwrap_or(0);
            if since >= threshold(every, requests) {
                triggered_after = Some(snapshot.unwrap_or(0));
                if raft.trigger().snapshot().await.is_err() {
                    return;
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::threshold;

    #[test]
    fn grows_with_the_registry() {
        assert_eq!(threshold(50_000, 10), 50_000);
        assert_eq!(threshold(50_000, 200_000), 200_000);
        assert_eq!(threshold(0, 0), 1);
    }
}
