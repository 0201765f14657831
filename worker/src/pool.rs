//! A worker pool: the durable pull consumer of one subtree on the `P2_TASKS` work queue, and
//! the loop that keeps `slots` attempts running.
//!
//! Workers serving the same address share one consumer (the work is split between them);
//! pools of different subtrees must not overlap, which the work-queue stream itself enforces:
//! an overlapping pool is refused with a clear error. Each delivery is acknowledged only after
//! its result is committed, and kept alive with in-progress acks while it runs, so a worker
//! that dies mid-run has its delivery redelivered to another.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use plotter2_node::Address;
use plotter2_node::client::{Client, ClientError};
use plotter2_node::protocol::{
    self, ErrorKind, Op, ReadOp, Reply, RunRecord, TASK_PREFIX, TASK_STREAM, TaskMessage, WriteOp,
};

use crate::WorkerError;
use crate::execute::{self, Sandboxes};

/// A delivery not acknowledged (or kept alive) for this long goes to another worker.
const ACK_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker in run records (letters, digits, - and _).
    pub name: String,
    pub serve: Address,
    pub slots: usize,
    pub client: Client,
    pub sandboxes: Sandboxes,
}

/// The durable consumer's name for a pool: readable prefix, hash for uniqueness.
fn durable_name(serve: &Address) -> String {
    let hash = blake3::hash(serve.to_string().as_bytes()).to_hex();
    let readable: String = serve
        .segments()
        .last()
        .unwrap_or("root")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect();
    format!("pool-{readable}-{}", &hash[..16])
}

/// Runs until `shutdown` resolves.
pub async fn run(
    config: WorkerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let js = jetstream::new(config.client.nats().clone());
    let stream = plotter2_coordinator_stream(&js).await?;
    let subject = config.serve.to_subject(TASK_PREFIX);
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &durable_name(&config.serve),
            jetstream::consumer::pull::Config {
                durable_name: Some(durable_name(&config.serve)),
                filter_subjects: vec![subject.clone(), format!("{subject}.>")],
                ack_wait: ACK_WAIT,
                max_ack_pending: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            let text = e.to_string();
            if text.contains("not unique") || text.contains("overlap") {
                WorkerError::Pool(format!(
                    "cannot serve {}: another worker pool serves an overlapping subtree ({text}). \
                     Pools must not overlap: serve disjoint subtrees, or exactly the same address to share one pool",
                    config.serve
                ))
            } else {
                WorkerError::JetStream(format!("consumer for {}: {text}", config.serve))
            }
        })?;
    tracing::info!(serve = %config.serve, slots = config.slots, worker = %config.name, "worker ready");
    let slots = Arc::new(tokio::sync::Semaphore::new(config.slots.max(1)));
    let config = Arc::new(config);
    let work = async {
        loop {
            // Pull only as many deliveries as there are free slots, so none waits in a buffer
            // while its ack timer runs.
            let first = slots
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| WorkerError::Io(e.to_string()))?;
            let mut permits = vec![first];
            while let Ok(p) = slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            let batch = consumer
                .fetch()
                .max_messages(permits.len())
                .expires(Duration::from_secs(5))
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("fetching runs: {e}; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            while let Some(msg) = batch.next().await {
                let Ok(msg) = msg else { continue };
                let Some(permit) = permits.pop() else { break };
                let config = config.clone();
                tokio::spawn(async move {
                    handle(&config, msg).await;
                    drop(permit);
                });
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), WorkerError>(())
    };
    tokio::select! {
        r = work => r,
        () = shutdown => Ok(()),
    }
}

async fn plotter2_coordinator_stream(
    js: &jetstream::Context,
) -> Result<jetstream::stream::Stream, WorkerError> {
    // The leader creates the stream; a worker that starts first waits for it.
    let mut backoff = Duration::from_millis(100);
    loop {
        match js.get_stream(TASK_STREAM).await {
            Ok(s) => return Ok(s),
            Err(e) => {
                tracing::info!("waiting for stream {TASK_STREAM}: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// One delivery: check the run still wants it, claim it, run it, report, acknowledge.
async fn handle(config: &WorkerConfig, msg: jetstream::Message) {
    let task: TaskMessage = match protocol::decode(&msg.payload) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!("dropping an unreadable delivery: {e}");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    let client = &config.client;
    let run: RunRecord = *task.run;
    let started = Op::Write(WriteOp::RunStarted {
        node: run.node.clone(),
        run: run.id,
        attempt: task.attempt,
        worker: config.name.clone(),
    });
    match client.call(started).await {
        Ok(_) => {}
        Err(ClientError::Api(e)) if e.kind == ErrorKind::BadRequest => {
            // Ended or superseded meanwhile.
            let _ = msg.ack().await;
            return;
        }
        Err(e) => {
            tracing::warn!(run = %run.id, "cannot claim the run: {e}; it will be redelivered");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            return;
        }
    }
    tracing::info!(run = %run.id, node = %run.node, task = %run.task, attempt = task.attempt, "running");
    let progress_msg = msg.clone();
    // Keep the delivery alive while the attempt runs.
    let ticker = tokio::spawn(async move {
        let mut t = tokio::time::interval(ACK_WAIT / 3);
        loop {
            t.tick().await;
            let _ = progress_msg.ack_with(AckKind::Progress).await;
        }
    });
    let cancelled = watch_cancel(client, &run);
    let (outcome, log_path) = execute::attempt(
        &config.sandboxes,
        client,
        &run,
        task.attempt,
        &config.name,
        cancelled,
    )
    .await;
    let log = store_log(&config.sandboxes, &log_path).await;
    let finished = Op::Write(WriteOp::RunFinished {
        node: run.node.clone(),
        run: run.id,
        attempt: task.attempt,
        outcome,
        log,
    });
    let committed = client.call(finished).await;
    ticker.abort();
    match committed {
        Ok(_) => {
            let _ = msg.ack().await;
        }
        Err(e) => {
            tracing::warn!(run = %run.id, "cannot report the result: {e}; the run will be redelivered");
        }
    }
}

/// Resolves when the run is cancelled (checked every two seconds while it runs).
async fn watch_cancel(client: &Client, run: &RunRecord) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await; // the first tick is immediate; the run was just claimed
    loop {
        tick.tick().await;
        if let Ok(Reply::Run(r)) = client.call(Op::Read(ReadOp::Run { id: run.id })).await
            && r.state == plotter2_node::protocol::RunState::Cancelled
        {
            return;
        }
    }
}

/// Stores the attempt's log as a blob; `None` (and a warning) when that fails, since the
/// attempt's result matters more than its log.
async fn store_log(
    boxes: &Sandboxes,
    path: &std::path::Path,
) -> Option<plotter2_node::bundle::Hash> {
    let p = path.to_owned();
    let hashed = tokio::task::spawn_blocking(move || {
        std::fs::File::open(&p).and_then(plotter2_node::bundle::hash_reader)
    })
    .await;
    let (hash, size) = match hashed {
        Ok(Ok((_, 0))) | Err(_) | Ok(Err(_)) => return None, // nothing (or nothing readable) to keep
        Ok(Ok(h)) => h,
    };
    match boxes.store.put_file(&hash, path, size, false).await {
        Ok(_) => Some(hash),
        Err(e) => {
            tracing::warn!("cannot store the log {}: {e}", path.display());
            None
        }
    }
}
