//! Claims and results go to the coordinator in batches: whatever queued up while the previous
//! request was in flight goes in the next one (group commit). A busy worker so costs one
//! `attempts` request, and one raft entry, per batch instead of two per run; an idle one sends
//! each update at once.

use std::sync::Arc;

use plotter2_node::client::{Client, ClientError};
use plotter2_node::protocol::{ApiError, AttemptUpdate, ErrorKind, Op, Refused, Reply, WriteOp};
use plotter2_node::retry::{Classify, ErrorClass};
use plotter2_node::{Address, WorkerName};
use tokio::sync::{mpsc, oneshot};

/// Most updates in one request.
const MAX_ITEMS: usize = 512;
/// Most encoded bytes of updates in one request, so a batch stays well below a stock NATS
/// server's 1 MB payload limit.
const MAX_BYTES: usize = 512 * 1024;

/// Why an update was not applied.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NotApplied {
    /// The registry refused it (the run ended, or moved on to another attempt).
    #[error("refused: {0}")]
    Refused(ApiError),
    /// It could not be sent or answered (shared by every update of the batch); its class
    /// says whether sending it again can help.
    #[error(transparent)]
    Unsent(Arc<ClientError>),
    /// The coordinator answered with something else than a receipt.
    #[error("unexpected answer from the coordinator to attempts")]
    Unexpected,
    /// The reporting loop has ended.
    #[error("the reporter stopped")]
    Stopped,
}

impl Classify for NotApplied {
    fn class(&self) -> ErrorClass {
        match self {
            NotApplied::Unsent(e) => e.class(),
            NotApplied::Refused(_) | NotApplied::Unexpected | NotApplied::Stopped => {
                ErrorClass::Permanent
            }
        }
    }
}

type Pending = (AttemptUpdate, oneshot::Sender<Result<(), NotApplied>>);

/// A handle on the batching loop of one worker.
#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::UnboundedSender<Pending>,
}

impl Reporter {
    /// Starts the loop reporting for `worker` of the pool `pool`.
    pub fn start(client: Client, pool: Address, worker: WorkerName) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_batches(rx, client, pool, worker));
        Self { tx }
    }

    /// Sends `update` in the next batch; resolves when that batch was answered.
    pub async fn send(&self, update: AttemptUpdate) -> Result<(), NotApplied> {
        let (done, answer) = oneshot::channel();
        self.tx
            .send((update, done))
            .map_err(|_| NotApplied::Stopped)?;
        answer.await.unwrap_or(Err(NotApplied::Stopped))
    }
}

/// How much of a batch's size limit an update takes: its encoded size (an output's manifest
/// and an attempt's log tail are what can make one large).
fn weight(update: &AttemptUpdate) -> usize {
    plotter2_node::protocol::encode(update).map_or(MAX_BYTES, |b| b.len())
}

async fn send_batches(
    mut rx: mpsc::UnboundedReceiver<Pending>,
    client: Client,
    pool: Address,
    worker: WorkerName,
) {
    // An update that did not fit in the last batch opens the next.
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut bytes = weight(&first.0);
        let mut batch = vec![first];
        while batch.len() < MAX_ITEMS {
            let Ok(next) = rx.try_recv() else { break };
            bytes += weight(&next.0);
            if bytes > MAX_BYTES {
                carry = Some(next);
                break;
            }
            batch.push(next);
        }
        let (items, waiting): (Vec<AttemptUpdate>, Vec<_>) = batch.into_iter().unzip();
        let answers = send(&client, &pool, &worker, items).await;
        for (done, answer) in waiting.into_iter().zip(answers) {
            let _ = done.send(answer);
        }
    }
}

/// Sends one batch; answers each item. A batch refused as a whole (one bad item makes the
/// request invalid) is sent again item by item, so the others still apply.
async fn send(
    client: &Client,
    pool: &Address,
    worker: &WorkerName,
    items: Vec<AttemptUpdate>,
) -> Vec<Result<(), NotApplied>> {
    let n = items.len();
    let op = |items| {
        Op::Write(WriteOp::Attempts {
            pool: pool.clone(),
            worker: worker.to_string(),
            items,
        })
    };
    match client.call(op(items.clone())).await {
        Ok(Reply::Written(receipt)) => {
            let mut answers: Vec<Result<(), NotApplied>> = (0..n).map(|_| Ok(())).collect();
            for Refused { index, error, .. } in receipt.refused {
                if let Some(a) = answers.get_mut(index as usize) {
                    *a = Err(NotApplied::Refused(error));
                }
            }
            answers
        }
        Ok(other) => {
            tracing::warn!("unexpected answer to attempts: {other:?}");
            (0..n).map(|_| Err(NotApplied::Unexpected)).collect()
        }
        Err(ClientError::Api(e)) if e.kind == ErrorKind::BadRequest && n > 1 => {
            let mut answers = Vec::with_capacity(n);
            for item in items {
                let one = Box::pin(send(client, pool, worker, vec![item])).await;
                answers.extend(one);
            }
            answers
        }
        Err(e) => {
            // An answer about the items refuses them; no leader, no quorum or no answer
            // says nothing about them, and they may be sent again.
            let refusal = !e.is_transient();
            match e {
                ClientError::Api(api) if refusal => (0..n)
                    .map(|_| Err(NotApplied::Refused(api.clone())))
                    .collect(),
                e => {
                    let e = Arc::new(e);
                    (0..n).map(|_| Err(NotApplied::Unsent(e.clone()))).collect()
                }
            }
        }
    }
}
