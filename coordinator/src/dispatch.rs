//! Dispatch: the raft log is the source of truth, JetStream is delivery. While this node leads,
//! every queued run is published to the `P2_TASKS` work-queue stream on the subject of its
//! node's address, with `Nats-Msg-Id = <run>/<attempt>` so a re-publish within the stream's
//! duplicate window is dropped. A new leader publishes everything still queued; and because
//! JetStream may lose unsynced messages when NATS restarts, runs that stay queued are published
//! again every [`REPUBLISH_AFTER`] (workers skip deliveries of runs that already ended).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use plotter2_node::protocol::{self, RunId, TASK_PREFIX, TASK_STREAM, TaskMessage};

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

/// Publishes queued runs until `stop` fires; wakes when something is applied.
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
    loop {
        if !stream_ready {
            match ensure_stream(&js).await {
                Ok(_) => stream_ready = true,
                Err(e) => tracing::warn!("{e}; retrying"),
            }
        }
        if stream_ready {
            let queued = match sm.read() {
                Ok(st) => st.registry.queued_runs(),
                Err(e) => {
                    tracing::error!("state machine: {e}");
                    return;
                }
            };
            let live: std::collections::HashSet<(RunId, u32)> =
                queued.iter().map(|r| (r.id, r.attempt)).collect();
            published.retain(|key, _| live.contains(key));
            let due: Vec<_> = queued
                .into_iter()
                .filter(|r| {
                    published
                        .get(&(r.id, r.attempt))
                        .is_none_or(|t| t.elapsed() >= REPUBLISH_AFTER)
                })
                .collect();
            // In batches: each unacknowledged publish holds one of the client's in-flight
            // permits, so publishing everything before awaiting any ack would deadlock.
            'batches: for batch in due.chunks(PUBLISH_BATCH) {
                let mut acks = Vec::with_capacity(batch.len());
                for run in batch {
                    let (id, attempt) = (run.id, run.attempt);
                    let message = TaskMessage {
                        run: Box::new((**run).clone()),
                        attempt,
                    };
                    let body = match protocol::encode(&message) {
                        Ok(b) => Bytes::from(b),
                        Err(e) => {
                            tracing::error!("encoding {id}: {e}");
                            continue;
                        }
                    };
                    let msg = jetstream::message::PublishMessage::build()
                        .payload(body)
                        .message_id(format!("{id}/{attempt}"));
                    match js.send_publish(run.node.to_subject(TASK_PREFIX), msg).await {
                        Ok(ack) => acks.push(((id, attempt), ack)),
                        Err(e) => {
                            tracing::warn!("publishing {id}: {e}");
                            stream_ready = false;
                            break;
                        }
                    }
                }
                for (key, ack) in acks {
                    match ack.await {
                        Ok(_) => {
                            published.insert(key, Instant::now());
                        }
                        Err(e) => {
                            tracing::warn!("run {} not acknowledged by JetStream: {e}", key.0);
                            stream_ready = false;
                        }
                    }
                }
                if !stream_ready {
                    break 'batches;
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            r = applied.changed() => if r.is_err() { return },
            _ = tick.tick() => {}
        }
    }
}
