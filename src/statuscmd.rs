//! `plotter2 status`: the key figures of the whole cluster at one glance — who leads in which
//! term, how far each coordinator lags, the runs waiting and running, each worker's slots and
//! each stager's spool — from the answers that come within a short window.

use std::time::Duration;

use anyhow::Result;
use plotter2_node::Client;
use plotter2_node::protocol::{
    NodeStatus, Role, STAGER_STATUS_SUBJECT, StagerStatus, WORKER_STATUS_SUBJECT, WorkerStatus,
};
use serde::Serialize;

use crate::output::print_json;

/// How long answers are gathered.
const WINDOW: Duration = Duration::from_millis(400);

#[derive(Serialize)]
struct Status {
    leader: Option<u64>,
    term: Option<u64>,
    /// The most committed entries any coordinator has not applied yet, and the most log
    /// entries any coordinator is behind the leader.
    apply_lag: u64,
    replication_lag: u64,
    digests_equal: bool,
    queued_runs: u64,
    running_runs: u64,
    coordinators: Vec<NodeStatus>,
    workers: Vec<WorkerStatus>,
    stagers: Vec<StagerStatus>,
}

pub async fn status(client: &Client, json: bool) -> Result<()> {
    let (coordinators, workers, stagers) = tokio::join!(
        client.cluster_status(WINDOW),
        client.gather::<WorkerStatus>(WORKER_STATUS_SUBJECT, WINDOW),
        client.gather::<StagerStatus>(STAGER_STATUS_SUBJECT, WINDOW),
    );
    let (coordinators, mut workers, mut stagers) = (coordinators?, workers?, stagers?);
    workers.sort_by(|a, b| a.name.cmp(&b.name));
    stagers.sort_by(|a, b| a.name.cmp(&b.name));
    let leading = coordinators.iter().find(|c| c.role == Role::Leader);
    let head = leading.and_then(|l| l.last_log_index).unwrap_or(0);
    let status = Status {
        leader: leading.map(|l| l.id),
        term: leading.map(|l| l.term),
        apply_lag: coordinators
            .iter()
            .map(|c| {
                c.committed_index
                    .unwrap_or(0)
                    .saturating_sub(c.applied_index.unwrap_or(0))
            })
            .max()
            .unwrap_or(0),
        replication_lag: coordinators
            .iter()
            .map(|c| head.saturating_sub(c.last_log_index.unwrap_or(0)))
            .max()
            .unwrap_or(0),
        digests_equal: coordinators.windows(2).all(|w| {
            w[0].applied_index != w[1].applied_index || w[0].state_digest == w[1].state_digest
        }),
        queued_runs: leading.map_or(0, |l| l.queued_runs),
        running_runs: leading.map_or(0, |l| l.running_runs),
        coordinators,
        workers,
        stagers,
    };
    if json {
        return print_json(&status);
    }
    print!("{}", text(&status));
    Ok(())
}

fn text(s: &Status) -> String {
    let mut out = String::new();
    let who = match (s.leader, s.term) {
        (Some(l), Some(t)) => format!("leader {l} in term {t}"),
        _ => "NO LEADER: writes wait until a majority of coordinators runs".to_owned(),
    };
    out += &format!(
        "coordinators  {} answering; {who}; replication lag {} entries, apply lag {}{}\n",
        s.coordinators.len(),
        s.replication_lag,
        s.apply_lag,
        if s.digests_equal {
            ""
        } else {
            "; STATE DIGESTS DIFFER at the same index"
        }
    );
    for c in &s.coordinators {
        out += &format!(
            "  {} {:<9} term {:<4} log {:<8} applied {:<8} pid {}\n",
            c.id,
            c.role.to_string(),
            c.term,
            c.last_log_index.unwrap_or(0),
            c.applied_index.unwrap_or(0),
            c.pid
        );
    }
    out += &format!(
        "runs          {} queued, {} running\n",
        s.queued_runs, s.running_runs
    );
    let busy: u64 = s.workers.iter().map(|w| w.busy).sum();
    let slots: u64 = s.workers.iter().map(|w| w.slots).sum();
    out += &format!(
        "workers       {} answering; {busy} of {slots} slots busy\n",
        s.workers.len()
    );
    for w in &s.workers {
        out += &format!(
            "  {:<20} serves {:<24} {}/{} busy, {} in hand, pid {}\n",
            w.name,
            w.serve.to_string(),
            w.busy,
            w.slots,
            w.in_hand,
            w.pid
        );
    }
    let spool: u64 = s.stagers.iter().map(|x| x.spool).sum();
    out += &format!(
        "stagers       {} answering; {spool} bundle(s) in their spools\n",
        s.stagers.len()
    );
    for x in &s.stagers {
        out += &format!(
            "  {:<20} spool {:<6} inbox {}  pid {}\n",
            x.name, x.spool, x.inbox, x.pid
        );
    }
    out
}
