//! Publishing events: while this node leads, the events of every request it applies go out on
//! `p2.event.<kind>.<address subject>` (see `plotter2_node::protocol::events`). They are hints:
//! a new leader starts from where the log stands, and a consumer that missed some reads them
//! from the log.

use bytes::Bytes;
use plotter2_node::Address;
use plotter2_node::protocol;

use crate::state_machine::StateMachine;

/// Publishes events until `stop` fires.
pub async fn run(
    nats: async_nats::Client,
    sm: StateMachine,
    mut applied: tokio::sync::watch::Receiver<u64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let root = Address::root();
    let mut published = match sm.read() {
        Ok(st) => st.registry.request_count(),
        Err(e) => {
            tracing::error!("state machine: {e}");
            return;
        }
    };
    loop {
        let records = match sm.read() {
            Ok(st) => st.registry.requests_after(published),
            Err(e) => {
                tracing::error!("state machine: {e}");
                return;
            }
        };
        for rec in &records {
            for event in rec.events_within(&root) {
                let body = match protocol::encode(&event) {
                    Ok(b) => Bytes::from(b),
                    Err(e) => {
                        tracing::error!("encoding an event of request {}: {e}", rec.seq);
                        continue;
                    }
                };
                // A hint that NATS does not take is found in the log by whoever needs it.
                if let Err(e) = nats.publish(event.subject(), body).await {
                    tracing::debug!("publishing an event of request {}: {e}", rec.seq);
                }
            }
            published = rec.seq;
        }
        tokio::select! {
            _ = stop.changed() => return,
            r = applied.changed() => if r.is_err() { return },
        }
    }
}
