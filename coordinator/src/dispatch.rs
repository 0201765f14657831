//! Dispatch: the raft log is the source of truth, JetStream is delivery. While this node leads,
//! every queued run is published to the `P2_TASKS` work-queue stream on the subject of its
//! node's address, with `Nats-Msg-Id = <run>/<attempt>` so a re-publish within the stream's
//! duplicate window is dropped. A new leader publishes everything still queued; and because
//! JetStream may lose unsynced messages when NATS restarts, runs that stay queued are published
//! again every [`REPUBLISH_AFTER`] (workers skip deliveries of runs that already ended).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

use async_nats::jetstream;
use bytes::Bytes;
use plotter2_node::protocol::{self, RunId, RunRecord, TASK_PREFIX, TASK_STREAM};

use crate::state_machine::StateMachine;

/// How long a queued run may wait for a worker before it is published again.
pub const REPUBLISH_AFTER: Duration = Duration::from_secs(30);
/// Publishes in flight before their acks are awaited.
const PUBLISH_BATCH: usize = 256;
/// How long the stream drops a message id it has seen.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The work-queue stream, created when missing.
pub async fn ensure_stream(js: &jetstream::Context) -> Result<jetstream::stream::Stream, String> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: TASK_STREAM.to_owned(),
        subjects: vec![TASK_PREFIX.to_owned(), format!("{TASK_PREFIX}.>")],
        retention: jetstream::stream::RetentionPolicy::WorkQueue,
        storage: jetstream::stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("creating stream {TASK_STREAM}: {e}"))
}

/// Publishes queued runs until `stop` fires; wakes when something is applied, and looks only
/// at what was queued since it last looked, except on each tick (and after a failure), when
/// it goes through every queued run for those due to be published again.
pub async fn run(
    nats: async_nats::Client,
    sm: StateMachine,
    mut applied: tokio::sync::watch::Receiver<u64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let js = jetstream::new(nats);
    // (run, attempt) → when this leader last published it.
    let mut published: HashMap<(RunId, u32), Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let mut stream_ready = false;
    // Requests up to this seq have had their queued runs published.
    let mut seen = 0u64;
    let mut full_scan = true;
    loop {
        if !stream_ready {
            match ensure_stream(&js).await {
                Ok(_) => stream_ready = true,
                Err(e) => tracing::warn!("{e}; retrying"),
            }
        }
        if stream_ready {
            let due = match sm.read() {
                Ok(st) => {
                    let reg = &st.registry;
                    let due = if full_scan {
                        published.retain(|(id, attempt), _| reg.is_queued(id, *attempt));
                        reg.queued_runs()
                            .into_iter()
                            .filter(|r| {
                                published
                                    .get(&(r.id, r.attempt))
                                    .is_none_or(|t| t.elapsed() >= REPUBLISH_AFTER)
                            })
                            .collect()
                    } else {
                        reg.queued_since(seen)
                    };
                    seen = reg.request_count();
                    due
                }
                Err(e) => {
                    tracing::error!("state machine: {e}");
                    return;
                }
            };
            full_scan = false;
            if !publish(&js, &due, &mut published).await {
                // What was not published is found by the next full scan.
                stream_ready = false;
                full_scan = true;
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            r = applied.changed() => if r.is_err() { return },
            _ = tick.tick() => full_scan = true,
        }
    }
}

/// Publishes `runs`; false when JetStream failed (some may not have been published).
async fn publish(
    js: &jetstream::Context,
    runs: &[Arc<RunRecord>],
    published: &mut HashMap<(RunId, u32), Instant>,
) -> bool {
    // In batches: each unacknowledged publish holds one of the client's in-flight permits, so
    // publishing everything before awaiting any ack would deadlock.
    for batch in runs.chunks(PUBLISH_BATCH) {
        let mut acks = Vec::with_capacity(batch.len());
        for run in batch {
            let (id, attempt) = (run.id, run.attempt);
            let body = match protocol::encode(&TaskMessageRef { run, attempt }) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    tracing::error!("encoding {id}: {e}");
                    continue;
                }
            };
            let mut msg = jetstream::message::PublishMessage::build()
                .payload(body)
                .message_id(format!("{id}/{attempt}"));
            // The run's own trace, however often (and by whichever leader) it is published.
            if let Some(tp) = &run.trace {
                msg = msg.header("traceparent", tp.as_str());
            }
            let span = tracing::info_span!("dispatch", run = %id, attempt);
            plotter2_node::telemetry::adopt_traceparent(&span, run.trace.as_deref());
            let sent = js
                .send_publish(run.node.to_subject(TASK_PREFIX), msg)
                .instrument(span)
                .await;
            match sent {
                Ok(ack) => acks.push(((id, attempt), ack)),
                Err(e) => {
                    tracing::warn!("publishing {id}: {e}");
                    return false;
                }
            }
        }
        let mut ok = true;
        for (key, ack) in acks {
            match ack.await {
                Ok(_) => {
                    published.insert(key, Instant::now());
                }
                Err(e) => {
                    tracing::warn!("run {} not acknowledged by JetStream: {e}", key.0);
                    ok = false;
                }
            }
        }
        if !ok {
            return false;
        }
    }
    true
}

/// The wire form of [`protocol::TaskMessage`], encoded from the stored run without copying it.
#[derive(serde::Serialize)]
struct TaskMessageRef<'a> {
    run: &'a RunRecord,
    attempt: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotter2_node::protocol::TaskMessage;

    #[test]
    fn a_task_message_encoded_from_the_stored_run_decodes_as_a_task_message() {
        let mut reg = crate::registry::Registry::default();
        let code = crate::testing::code_at(
            "/e",
            serde_json::json!({"t": {"kind": "command", "run": ["true"]}}),
        );
        crate::testing::apply(&mut reg, code).unwrap();
        let run = crate::testing::run("/e", "t", &["x=1"], &[]);
        crate::testing::apply(&mut reg, run).unwrap();
        let stored = reg.queued_runs().remove(0);
        let bytes = protocol::encode(&TaskMessageRef {
            run: &stored,
            attempt: 1,
        })
        .unwrap();
        let back: TaskMessage = protocol::decode(&bytes).unwrap();
        assert_eq!(*back.run, *stored);
        assert_eq!(back.attempt, 1);
    }
}
