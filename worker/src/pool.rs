//! A worker pool: the durable pull consumer of one subtree on the `P2_TASKS` work queue, and
//! the loop that keeps `slots` attempts running.
//!
//! Workers serving the same address share one consumer (the work is split between them);
//! pools of different subtrees must not overlap, which the work-queue stream itself enforces:
//! an overlapping pool is refused with a clear error. Each delivery is acknowledged only after
//! its result is committed, and kept alive with in-progress acks while it runs, so a worker
//! that dies mid-run has its delivery redelivered to another.
//!
//! A slot is held while an attempt runs, not while it is claimed or reported. The worker
//! takes the deliveries its free slots can start, plus, while its recent runs were short,
//! as many as the slots would start within [`CLAIM_AHEAD`]: claims then travel in batches
//! ahead of the slots instead of one round trip per run.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tracing::Instrument;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use plotter2_node::client::Client;
use plotter2_node::protocol::{
    self, AttemptUpdate, HeldAttempts, Op, ReadOp, Reply, RunId, RunOutcome, RunRecord,
    TASK_PREFIX, TASK_STREAM, TaskMessage, worker_subject,
};
use plotter2_node::retry::{Backoff, Classify};
use plotter2_node::{Address, WorkerName};

use crate::WorkerError;
use crate::execute::{self, Ended, Sandboxes};
use crate::report::{NotApplied, Reporter};

/// A delivery not acknowledged (or kept alive) for this long goes to another worker.
const ACK_WAIT: Duration = Duration::from_secs(10);
/// How long a finished attempt's result is offered to unreachable coordinators before its
/// delivery is given up (and so runs again elsewhere).
const REPORT_FOR: Duration = Duration::from_secs(600);
/// Reports of a result, until [`REPORT_FOR`].
const REPORT_RETRY: Backoff =
    Backoff::new(Duration::from_millis(100), Duration::from_secs(5)).with_deadline(REPORT_FOR);
/// Pulls from the work queue, and the wait for the leader to create it.
const QUEUE_RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names this worker in run records and in its liveness subject.
    pub name: WorkerName,
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
        .map_err(|source| {
            let text = source.to_string();
            let serve = config.serve.clone();
            if text.contains("not unique") || text.contains("overlap") {
                WorkerError::Overlapping { serve, source }
            } else {
                WorkerError::Consumer { serve, source }
            }
        })?;
    let held = Held::default();
    let liveness = tokio::spawn(answer_liveness(
        config.client.nats().clone(),
        config.name.clone(),
        held.clone(),
    ));
    tracing::info!(serve = %config.serve, slots = config.slots, worker = %config.name, "worker ready");
    let slots = config.slots.max(1);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(slots));
    let metrics =
        crate::metrics::WorkerMetrics::new(config.name.as_str(), semaphore.clone(), slots);
    let ctx = Arc::new(Ctx {
        reporter: Reporter::start(
            config.client.clone(),
            config.serve.clone(),
            config.name.clone(),
        ),
        config,
        held,
        slots: semaphore,
        pace: Pace::default(),
        in_hand: AtomicUsize::new(0),
        room: tokio::sync::Notify::new(),
        metrics,
    });
    let status = tokio::spawn(answer_status(ctx.clone()));
    let _status = AbortOnDrop(status);
    let work = async {
        let mut failing = QUEUE_RETRY.start();
        loop {
            // Pull only what the slots can start soon: the free slots, plus as many more as
            // they would start within CLAIM_AHEAD at the recent pace. Long runs so never
            // wait behind one another on one worker while another is idle; short ones are
            // claimed ahead, in batches, so a slot never waits for a claim round trip.
            let room = loop {
                let limit = slots + ctx.pace.ahead(slots);
                let held = ctx.in_hand.load(Ordering::Acquire);
                if held < limit {
                    break limit - held;
                }
                ctx.room.notified().await;
            };
            let batch = consumer
                .fetch()
                .max_messages(room)
                .expires(Duration::from_secs(5))
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => {
                    failing = QUEUE_RETRY.start();
                    b
                }
                Err(e) => {
                    // The queue is unreachable (NATS restarting): wait, then pull again
                    // (QUEUE_RETRY has no deadline).
                    let wait = failing.next_delay().unwrap_or(Duration::from_secs(2));
                    tracing::warn!("fetching runs: {e}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            while let Some(msg) = batch.next().await {
                let Ok(msg) = msg else { continue };
                ctx.in_hand.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(handle(ctx.clone(), msg));
            }
        }
        #[allow(unreachable_code)]
        Ok::<(), WorkerError>(())
    };
    let result = tokio::select! {
        r = work => r,
        () = shutdown => Ok(()),
    };
    liveness.abort();
    result
}

/// What every delivery's handler shares.
struct Ctx {
    config: WorkerConfig,
    reporter: Reporter,
    held: Held,
    /// One permit per slot: held while an attempt runs.
    slots: Arc<tokio::sync::Semaphore>,
    pace: Pace,
    /// Deliveries taken and not yet run to their end (claiming, waiting for a slot, running).
    in_hand: AtomicUsize,
    /// Signalled when `in_hand` drops.
    room: tokio::sync::Notify,
    metrics: crate::metrics::WorkerMetrics,
}

/// How long a run claimed ahead may expect to wait for a slot.
const CLAIM_AHEAD: Duration = Duration::from_millis(50);
/// Most runs claimed ahead of the slots.
const MAX_AHEAD: usize = 256;

/// The recent pace of this worker's attempts: a moving average of how long they ran.
#[derive(Default)]
struct Pace {
    /// Microseconds; 0 until the first attempt ended.
    avg_us: AtomicU64,
}

impl Pace {
    fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let old = self.avg_us.load(Ordering::Relaxed);
        let new = if old == 0 { us } else { (old * 7 + us) / 8 };
        self.avg_us.store(new.max(1), Ordering::Relaxed);
    }

    /// Runs to claim beyond the slots: what they would start within [`CLAIM_AHEAD`]. None
    /// until the pace is known, so a worker never hoards runs of unknown length.
    fn ahead(&self, slots: usize) -> usize {
        match self.avg_us.load(Ordering::Relaxed) {
            0 => 0,
            avg => {
                let per_slot = CLAIM_AHEAD.as_micros() as u64 / avg;
                usize::try_from(per_slot)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(slots)
                    .min(MAX_AHEAD)
            }
        }
    }
}

/// Counts a delivery out of `in_hand` however its handler ends, and wakes the fetch loop.
struct InHand<'a>(&'a Ctx);

impl Drop for InHand<'_> {
    fn drop(&mut self) {
        self.0.in_hand.fetch_sub(1, Ordering::AcqRel);
        self.0.room.notify_one();
    }
}

/// The attempts this worker holds, from delivery to acknowledgement: its answer to the
/// leader's "are you still running these?".
#[derive(Clone, Default)]
struct Held(Arc<std::sync::Mutex<BTreeSet<(RunId, u32)>>>);

impl Held {
    fn hold(&self, key: (RunId, u32)) -> HeldGuard {
        if let Ok(mut set) = self.0.lock() {
            set.insert(key);
        }
        HeldGuard(self.clone(), key)
    }

    fn list(&self) -> Vec<(RunId, u32)> {
        self.0
            .lock()
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default()
    }
}

/// Lets go of an attempt when its handler ends, however it ends.
struct HeldGuard(Held, (RunId, u32));

impl Drop for HeldGuard {
    fn drop(&mut self) {
        if let Ok(mut set) = (self.0).0.lock() {
            set.remove(&self.1);
        }
    }
}

/// Answers `p2.worker.<name>` with the attempts held.
async fn answer_liveness(nats: async_nats::Client, name: WorkerName, held: Held) {
    let subject = worker_subject(&name);
    let mut sub = match nats.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot subscribe to {subject}: {e}");
            return;
        }
    };
    while let Some(req) = sub.next().await {
        let Some(reply) = req.reply else { continue };
        let answer = HeldAttempts {
            attempts: held.list(),
        };
        if let Ok(bytes) = protocol::encode(&answer) {
            let _ = nats.publish(reply, bytes.into()).await;
        }
    }
}

async fn plotter2_coordinator_stream(
    js: &jetstream::Context,
) -> Result<jetstream::stream::Stream, WorkerError> {
    // The leader creates the stream; a worker that starts first waits for it.
    QUEUE_RETRY
        .retry(
            &format!("waiting for the work queue {TASK_STREAM}"),
            || async {
                js.get_stream(TASK_STREAM)
                    .await
                    .map_err(|source| WorkerError::Stream {
                        stream: TASK_STREAM,
                        source,
                    })
            },
        )
        .await
}

/// One delivery: claim it, wait for a slot, run it, free the slot, report the result,
/// acknowledge.
async fn handle(ctx: Arc<Ctx>, msg: jetstream::Message) {
    let task: TaskMessage = match protocol::decode(&msg.payload) {
        Ok(t) => t,
        Err(e) => {
            let _in_hand = InHand(&ctx);
            tracing::warn!("dropping an unreadable delivery: {e}");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    // The attempt is part of the trace of the request that created the run.
    let span = tracing::info_span!("attempt", run = %task.run.id, attempt = task.attempt, task = %task.run.task);
    plotter2_node::telemetry::adopt_traceparent(&span, task.run.trace.as_deref());
    run_attempt(ctx, msg, task).instrument(span).await;
}

async fn run_attempt(ctx: Arc<Ctx>, msg: jetstream::Message, task: TaskMessage) {
    let in_hand = InHand(&ctx);
    let config = &ctx.config;
    let run: RunRecord = *task.run;
    let attempt = task.attempt;
    let _held = ctx.held.hold((run.id, attempt));
    let claim = AttemptUpdate::Started {
        node: run.node.clone(),
        run: run.id,
        attempt,
    };
    match ctx.reporter.send(claim).await {
        Ok(()) => {}
        Err(NotApplied::Refused(e)) => {
            // Ended or superseded meanwhile (or unknown): nobody needs this delivery.
            tracing::debug!(run = %run.id, "not claimed: {e}");
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
    tracing::debug!(run = %run.id, node = %run.node, task = %run.task, attempt, "running");
    // Keep the delivery alive while the attempt runs and its result is reported.
    let keep_alive = KeepAlive::start(msg.clone());
    let Ok(slot) = ctx.slots.acquire().await else {
        return; // the semaphore is never closed
    };
    let began = std::time::Instant::now();
    let kind = match run.definition.kind {
        plotter2_node::manifest::TaskKind::Command => "command",
        plotter2_node::manifest::TaskKind::Pipeline => "pipeline",
        plotter2_node::manifest::TaskKind::Script => "script",
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ctx.metrics
        .started(kind, now_ms.saturating_sub(run.created_ms) as f64 / 1000.0);
    let cancelled = watch_cancel(&config.client, &run);
    let ended = execute::attempt(
        &config.sandboxes,
        &config.client,
        &run,
        attempt,
        &config.name,
        cancelled,
    )
    .await;
    // The slot is for running; reporting needs none.
    ctx.pace.record(began.elapsed());
    let outcome = match &ended {
        Ended::Finished {
            outcome: RunOutcome::Succeeded { .. },
            ..
        } => "succeeded",
        Ended::Finished { .. } => "failed",
        Ended::Retry { .. } => "handed_back",
    };
    ctx.metrics
        .ended(kind, outcome, began.elapsed().as_secs_f64());
    drop(slot);
    drop(in_hand);
    let node = run.node.clone();
    let update = match ended {
        Ended::Finished { outcome, log } => AttemptUpdate::Finished {
            node,
            run: run.id,
            attempt,
            outcome,
            log,
        },
        // The worker's own trouble, not the task's: the attempt ends as lost, which queues
        // the run again (to any worker) instead of failing it.
        Ended::Retry { reason } => {
            tracing::warn!(run = %run.id, attempt, "{reason}; handing the run back");
            AttemptUpdate::Lost {
                node,
                run: run.id,
                attempt,
                reason: format!("worker {}: {reason}; queued again", config.name),
            }
        }
    };
    let reported = report(&ctx.reporter, &run, update).await;
    drop(keep_alive);
    if reported {
        let _ = msg.ack().await;
    }
}

/// Reports how an attempt ended, retrying while that may help. False when it could not be
/// reported: the delivery is then given up, so the run runs again.
async fn report(reporter: &Reporter, run: &RunRecord, update: AttemptUpdate) -> bool {
    let what = format!("reporting the result of run {}", run.id);
    let first = REPORT_RETRY
        .retry(&what, || reporter.send(update.clone()))
        .await;
    let e = match first {
        Ok(()) => return true,
        Err(NotApplied::Refused(e)) => {
            tracing::warn!(run = %run.id, "the result was refused: {e}");
            return true;
        }
        Err(e) => e,
    };
    // A result that can never be sent (too large, say) would run again and again: the run
    // fails instead, saying why.
    if let (
        false,
        AttemptUpdate::Finished {
            node,
            run: id,
            attempt,
            log,
            ..
        },
    ) = (e.is_transient(), &update)
    {
        tracing::error!(run = %run.id, "cannot report the result: {e}; reporting a failure instead");
        let failed = AttemptUpdate::Finished {
            node: node.clone(),
            run: *id,
            attempt: *attempt,
            outcome: RunOutcome::Failed {
                exit: None,
                reason: format!("the worker could not record the attempt's result: {e}"),
            },
            log: *log,
        };
        match REPORT_RETRY
            .retry(&what, || reporter.send(failed.clone()))
            .await
        {
            Ok(()) | Err(NotApplied::Refused(_)) => return true,
            Err(again) => {
                tracing::error!(run = %run.id, "cannot report the failure either: {again}");
                return false;
            }
        }
    }
    tracing::error!(run = %run.id, "cannot report the result: {e}; giving the delivery up, so it runs again");
    false
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Answers `plotter2 status` on [`protocol::WORKER_STATUS_SUBJECT`].
async fn answer_status(ctx: Arc<Ctx>) {
    let nats = ctx.config.client.nats().clone();
    let mut sub = match nats.subscribe(protocol::WORKER_STATUS_SUBJECT).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot answer status requests: {e}");
            return;
        }
    };
    let slots = ctx.config.slots.max(1);
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply else { continue };
        let status = protocol::WorkerStatus {
            name: ctx.config.name.to_string(),
            serve: ctx.config.serve.clone(),
            slots: slots as u64,
            busy: slots.saturating_sub(ctx.slots.available_permits()) as u64,
            in_hand: ctx.in_hand.load(Ordering::Acquire) as u64,
            pid: std::process::id(),
        };
        if let Ok(body) = protocol::encode(&status) {
            let _ = nats.publish(reply, body.into()).await;
        }
    }
}

/// Sends in-progress acks for a delivery until dropped.
struct KeepAlive(tokio::task::JoinHandle<()>);

impl KeepAlive {
    fn start(msg: jetstream::Message) -> Self {
        Self(tokio::spawn(async move {
            let every = ACK_WAIT / 3;
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                t.tick().await;
                let _ = msg.ack_with(AckKind::Progress).await;
            }
        }))
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves when the run is cancelled: told by its state event, or, should that be lost,
/// found by a look every [`CANCEL_LOOK_EVERY`].
async fn watch_cancel(client: &Client, run: &RunRecord) {
    use plotter2_node::protocol::{EventKind, RunState};
    let mut hints = match plotter2_node::hints::Hints::subscribe(
        client.nats(),
        &run.node,
        Some("run_state"),
    )
    .await
    {
        Ok(h) => Some(h),
        Err(e) => {
            tracing::warn!(run = %run.id, "cannot subscribe to its events ({e}); looking every {CANCEL_LOOK_EVERY:?}");
            None
        }
    };
    loop {
        let told = match hints.as_mut() {
            Some(h) => h.next_within(CANCEL_LOOK_EVERY).await,
            None => {
                tokio::time::sleep(CANCEL_LOOK_EVERY).await;
                None
            }
        };
        match told {
            Some(e) => {
                if matches!(e.kind, EventKind::RunState { run: id, state: RunState::Cancelled, .. } if id == run.id)
                {
                    return;
                }
            }
            None => {
                if let Ok(Reply::Run(r)) = client.call(Op::Read(ReadOp::Run { id: run.id })).await
                    && r.state == RunState::Cancelled
                {
                    return;
                }
            }
        }
    }
}

/// How often a running attempt looks whether its run was cancelled when no event said so.
const CANCEL_LOOK_EVERY: Duration = Duration::from_secs(10);
