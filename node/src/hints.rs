//! Event hints: a subscription to the events of a subtree (see `protocol::events`). A hint
//! says something changed; whoever acts on it still reads the state, and looks anyway when no
//! hint came for a while, since NATS may drop hints.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::SelectAll;

use crate::Address;
use crate::protocol::{self, EventMessage, event_filters};

/// Hints for the events at an address and below.
pub struct Hints {
    subs: SelectAll<async_nats::Subscriber>,
}

impl Hints {
    /// Subscribes to the events of `kind` (every kind when `None`) at `addr` and below.
    pub async fn subscribe(
        nats: &async_nats::Client,
        addr: &Address,
        kind: Option<&str>,
    ) -> Result<Self, async_nats::SubscribeError> {
        let mut subs = SelectAll::new();
        for subject in event_filters(addr, kind) {
            subs.push(nats.subscribe(subject).await?);
        }
        Ok(Self { subs })
    }

    /// The next hint within `wait`; `None` when none came (or the subscription ended), and
    /// the caller should look anyway. Hints that do not decode are skipped.
    pub async fn next_within(&mut self, wait: Duration) -> Option<EventMessage> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.subs.next())
                .await
                .ok()
                .flatten()?;
            if let Ok(event) = protocol::decode::<EventMessage>(&msg.payload) {
                return Some(event);
            }
        }
    }

    /// The hints that have arrived already, without waiting.
    pub fn drain(&mut self) -> Vec<EventMessage> {
        use futures::FutureExt;
        let mut out = Vec::new();
        while let Some(Some(msg)) = self.subs.next().now_or_never() {
            if let Ok(event) = protocol::decode::<EventMessage>(&msg.payload) {
                out.push(event);
            }
        }
        out
    }
}
