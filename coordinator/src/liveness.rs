//! Finds attempts that nobody runs any more. JetStream redelivers a delivery whose worker
//! died, but not one it lost (NATS restarted before syncing it) at the same time: such a run
//! would stay `running` for ever. So, while this node leads, every attempt running for longer
//! than `lost_after` is checked with its worker, which answers on `p2.worker.<name>` with the
//! attempts it holds. An attempt its worker does not hold, or whose worker is not there (no
//! responders), on two checks in a row is committed as lost, and the run is queued again.
//! A check that gets no answer at all (a timeout, NATS unreachable) proves nothing and
//! counts for nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use plotter2_node::protocol::{
    self, AttemptUpdate, HeldAttempts, RequestId, RunId, UserName, WriteOp, worker_subject,
};
use plotter2_node::{Address, WorkerName};

use crate::state_machine::Raft;
use crate::state_machine::StateMachine;
use crate::types::{Command, now_ms};

/// Misses in a row that make an attempt lost.
const MISSES: u32 = 2;
/// How long a worker has to answer.
const ASK_FOR: Duration = Duration::from_secs(2);

/// Checks running attempts until `stop` fires.
pub async fn run(
    nats: async_nats::Client,
    raft: Raft,
    sm: StateMachine,
    lost_after: Duration,
    coordinator: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = (lost_after / 3).max(Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    let mut misses: BTreeMap<(RunId, u32), u32> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        // (run, attempt, node) by the worker that last took the attempt.
        let mut by_worker: BTreeMap<String, Vec<(RunId, u32, Address)>> = BTreeMap::new();
        match sm.read() {
            Ok(st) => {
                for r in st.registry.running_runs() {
                    let Some(a) = r.attempts.iter().rev().find(|a| a.attempt == r.attempt) else {
                        continue;
                    };
                    if now.saturating_sub(a.started_ms) >= lost_after.as_millis() as u64 {
                        by_worker.entry(a.worker.clone()).or_default().push((
                            r.id,
                            r.attempt,
                            r.node.clone(),
                        ));
                    }
                }
            }
            Err(e) => {
                tracing::error!("state machine: {e}");
                return;
            }
        }
        let mut checked = BTreeSet::new();
        let mut lost = Vec::new();
        for (worker, attempts) in by_worker {
            let held = match ask(&nats, &worker).await {
                Answer::Holds(h) => h,
                Answer::Absent => BTreeSet::new(),
                Answer::Unknown => {
                    // Proves nothing either way: keep the counts as they are.
                    checked.extend(attempts.iter().map(|(id, n, _)| (*id, *n)));
                    continue;
                }
            };
            for (id, attempt, node) in attempts {
                checked.insert((id, attempt));
                if held.contains(&(id, attempt)) {
                    misses.remove(&(id, attempt));
                    continue;
                }
                let m = misses.entry((id, attempt)).or_default();
                *m += 1;
                if *m >= MISSES {
                    lost.push(AttemptUpdate::Lost {
                        node,
                        run: id,
                        attempt,
                        reason: format!(
                            "lost: worker {worker} no longer runs it (it stopped answering, or \
                             does not hold the attempt) and its delivery was not taken over"
                        ),
                    });
                }
            }
        }
        misses.retain(|key, _| checked.contains(key));
        if lost.is_empty() {
            continue;
        }
        tracing::warn!(
            count = lost.len(),
            "attempts lost: queuing their runs again"
        );
        for item in &lost {
            misses.remove(&(item.run(), item.attempt()));
        }
        let cmd = Command {
            id: RequestId::new(),
            user: coordinator_user(),
            time_ms: now,
            trace: None,
            op: WriteOp::Attempts {
                pool: Address::root(),
                worker: format!("coordinator-{coordinator}"),
                items: lost,
            },
        };
        if let Err(e) = raft.client_write(cmd).await {
            tracing::warn!("cannot commit lost attempts: {e}; the next check finds them again");
        }
    }
}

enum Answer {
    Holds(BTreeSet<(RunId, u32)>),
    /// Nobody subscribes to the worker's subject: it is gone.
    Absent,
    Unknown,
}

async fn ask(nats: &async_nats::Client, worker: &str) -> Answer {
    // Workers take only valid names, so one that is not cannot answer: it is gone.
    let Ok(name) = WorkerName::parse(worker) else {
        return Answer::Absent;
    };
    let asked =
        tokio::time::timeout(ASK_FOR, nats.request(worker_subject(&name), Bytes::new())).await;
    match asked {
        Ok(Ok(msg)) => match protocol::decode::<HeldAttempts>(&msg.payload) {
            Ok(h) => Answer::Holds(h.attempts.into_iter().collect()),
            Err(e) => {
                tracing::warn!("worker {worker} answered garbage: {e}");
                Answer::Unknown
            }
        },
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Answer::Absent,
        _ => Answer::Unknown,
    }
}

fn coordinator_user() -> UserName {
    // A valid constant name; parse cannot fail on it.
    UserName::parse("coordinator").unwrap_or_else(|_| unreachable!("a valid user name"))
}
