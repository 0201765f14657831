//! Run verbs that do more than one request: `run --wait`, `logs [-f]`, `cancel`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Result, bail};
use futures::StreamExt;
use plotter2_node::protocol::{
    Op, ReadOp, Reply, RunId, RunRecord, RunState, WriteOp, log_request_subject, log_subject,
};
use plotter2_node::store::BlobStore;
use plotter2_node::{Address, Client};

use plotter2_node::hints::Hints;

use crate::output::{print_json, runs_table};

/// How long a wait goes without a hint before it looks anyway (NATS may drop hints).
const LOOK_ANYWAY: Duration = Duration::from_secs(5);
use crate::progress::RunCounts;

async fn read_run(client: &Client, id: RunId) -> Result<RunRecord> {
    match client.call(Op::Read(ReadOp::Run { id })).await? {
        Reply::Run(r) => Ok(*r),
        other => bail!("unexpected answer: {other:?}"),
    }
}

/// Runs under `addr` (all of them, or those in `only`), oldest first, a page at a time: a
/// large sweep's records do not fit in one answer.
pub async fn fetch_runs(
    client: &Client,
    addr: &Address,
    only: Option<&[RunId]>,
) -> Result<Vec<RunRecord>> {
    const PAGE: u32 = 500;
    let wanted: Option<std::collections::HashSet<RunId>> =
        only.map(|ids| ids.iter().copied().collect());
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let Reply::Runs(page) = client
            .call(Op::Read(ReadOp::Runs {
                addr: addr.clone(),
                after,
                limit: Some(PAGE),
            }))
            .await?
        else {
            bail!("unexpected answer to runs");
        };
        let full = page.len() == PAGE as usize;
        after = page.last().map(|r| r.id);
        out.extend(
            page.into_iter()
                .filter(|r| wanted.as_ref().is_none_or(|w| w.contains(&r.id))),
        );
        if !full || wanted.as_ref().is_some_and(|w| w.len() == out.len()) {
            return Ok(out);
        }
    }
}

/// Waits until every run in `ids` (all under `addr`) has ended; prints them; fails unless all
/// succeeded.
pub async fn wait(client: &Client, addr: &Address, ids: &[RunId], json: bool) -> Result<()> {
    // States are asked in chunks, so a request stays far below NATS's payload limit.
    const CHUNK: usize = 5000;
    let bar = crate::progress::Runs::new(ids.len(), json);
    // Woken by the runs' state events; subscribed before the first look, so no change is
    // missed between the two. Without a hint it looks anyway, now and then.
    let mut hints = Hints::subscribe(client.nats(), addr, Some("run_state")).await?;
    // Ended runs are not asked again: their counts carry over from poll to poll.
    let mut counts = RunCounts::default();
    let mut open: Vec<RunId> = ids.to_vec();
    loop {
        let mut still = Vec::new();
        (counts.running, counts.waiting) = (0, 0);
        for chunk in open.chunks(CHUNK) {
            let Reply::RunStates(states) = client
                .call(Op::Read(ReadOp::RunStates {
                    ids: chunk.to_vec(),
                }))
                .await?
            else {
                bail!("unexpected answer to run_states");
            };
            for (id, state) in states {
                match state {
                    RunState::Succeeded => counts.succeeded += 1,
                    RunState::Failed | RunState::Cancelled => counts.failed += 1,
                    RunState::Running => counts.running += 1,
                    RunState::Queued | RunState::Waiting => counts.waiting += 1,
                }
                if !state.is_finished() {
                    still.push(id);
                }
            }
        }
        open = still;
        bar.show(counts);
        if open.is_empty() {
            break;
        }
        if hints.next_within(LOOK_ANYWAY).await.is_some() {
            hints.drain();
        }
    }
    drop(bar);
    let runs = fetch_runs(client, addr, Some(ids)).await?;
    if json {
        print_json(&runs)?;
    } else {
        print!("{}", runs_table(&runs));
    }
    let bad: Vec<String> = runs
        .iter()
        .filter(|r| r.state != RunState::Succeeded)
        .map(|r| {
            format!(
                "{} {:?}: {}",
                r.id,
                r.state,
                r.reason.as_deref().unwrap_or("")
            )
        })
        .collect();
    if !bad.is_empty() {
        bail!("{} run(s) did not succeed:\n{}", bad.len(), bad.join("\n"));
    }
    Ok(())
}

pub async fn cancel(client: &Client, id: RunId, json: bool) -> Result<()> {
    let run = read_run(client, id).await?;
    let reply = client
        .call(Op::Write(WriteOp::Cancel {
            node: run.node,
            run: id,
        }))
        .await?;
    if json && let Reply::Written(r) = reply {
        return print_json(&r);
    }
    println!("cancelled {id}");
    Ok(())
}

/// Prints every attempt's log; with `follow`, keeps printing the running attempt until the
/// run ends.
pub async fn logs(client: &Client, store: &BlobStore, id: RunId, follow: bool) -> Result<()> {
    let run = read_run(client, id).await?;
    for a in &run.attempts {
        eprintln!("── {id} attempt {} on {} ──", a.attempt, a.worker);
        match (a.log, a.finished_ms) {
            (Some(blob), _) => {
                store.fetch_into(&blob, std::io::stdout()).await?;
            }
            (None, None) => follow_attempt(client, id, follow).await?,
            (None, Some(_)) => eprintln!(
                "(no log: the attempt wrote nothing to stdout or stderr, or its worker could not store it)"
            ),
        }
    }
    if run.attempts.is_empty() {
        eprintln!("{id} has not started yet ({:?})", run.state);
        if follow {
            // Wait for it to start, then follow.
            let mut hints = Hints::subscribe(client.nats(), &run.node, Some("run_state")).await?;
            loop {
                if hints.next_within(LOOK_ANYWAY).await.is_some() {
                    hints.drain();
                }
                let r = read_run(client, id).await?;
                if !r.attempts.is_empty() || r.state.is_finished() {
                    return Box::pin(logs(client, store, id, follow)).await;
                }
            }
        }
    }
    Ok(())
}

/// The running attempt's log so far (asked of its worker), then, with `follow`, what it
/// writes until the run ends.
async fn follow_attempt(client: &Client, id: RunId, follow: bool) -> Result<()> {
    let nats = client.nats();
    // Subscribe first, so nothing written between the two is missed.
    let mut live = nats.subscribe(log_subject(&id)).await?;
    let mut next = 0u64;
    match tokio::time::timeout(
        Duration::from_secs(3),
        nats.request(log_request_subject(&id), bytes::Bytes::new()),
    )
    .await
    {
        Ok(Ok(msg)) => {
            let start = offset_of(&msg).unwrap_or(0);
            std::io::stdout().write_all(&msg.payload)?;
            next = start + msg.payload.len() as u64;
        }
        _ => eprintln!("(the worker did not answer with the log so far)"),
    }
    if !follow {
        eprintln!("(still running; `plotter2 logs {id} -f` follows it)");
        return Ok(());
    }
    let node = read_run(client, id).await?.node;
    let mut hints = Hints::subscribe(nats, &node, Some("run_state")).await?;
    loop {
        tokio::select! {
            m = live.next() => {
                let Some(m) = m else { break };
                let at = offset_of(&m).unwrap_or(next);
                let len = m.payload.len() as u64;
                if at + len <= next {
                    continue; // already printed
                }
                let skip = next.saturating_sub(at) as usize;
                let mut out = std::io::stdout();
                out.write_all(&m.payload[skip..])?;
                out.flush()?;
                next = at + len;
            }
            // A state change of a run there, or a while without one: has it ended?
            _ = hints.next_within(LOOK_ANYWAY) => {
                hints.drain();
                if read_run(client, id).await?.attempts.last().is_some_and(|a| a.finished_ms.is_some()) {
                    break;
                }
            }
        }
    }
    Ok(())
}

fn offset_of(msg: &async_nats::Message) -> Option<u64> {
    msg.headers.as_ref()?.get("offset")?.as_str().parse().ok()
}
