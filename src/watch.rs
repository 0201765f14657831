//! `plotter2 watch ADDR`: every event at ADDR and below as it happens, each once and in
//! order. Hints wake it; what it prints it reads from the request log, from the last request
//! it has seen, so events it did not hear about (a dropped connection, a leader change) are
//! printed when it is back.

use std::time::Duration;

use anyhow::{Result, bail};
use plotter2_node::hints::Hints;
use plotter2_node::protocol::{EventKind, EventMessage, EventPage, Op, ReadOp, Reply};
use plotter2_node::{Address, Client};

use crate::output::time;

/// How long it waits for a hint before it reads the log anyway.
const LOOK_EVERY: Duration = Duration::from_secs(2);

pub async fn watch(client: &Client, addr: Address, since: Option<u64>, json: bool) -> Result<()> {
    let mut hints = Hints::subscribe(client.nats(), &addr, None).await?;
    // Subscribed first: what happens between the two is read from the log.
    let mut last = match since {
        Some(seq) => seq,
        None => page(client, &addr, None).await?.upto,
    };
    if !json {
        eprintln!("watching {addr} from request {last} (Ctrl-C stops)");
    }
    let mut unreachable = false;
    loop {
        match catch_up(client, &addr, &mut last, json).await {
            Ok(()) if unreachable => {
                unreachable = false;
                eprintln!("(back: caught up to request {last})");
            }
            Ok(()) => {}
            Err(e) if !unreachable => {
                unreachable = true;
                eprintln!("(cannot read the log: {e}; going on when it answers)");
            }
            Err(_) => {}
        }
        if hints.next_within(LOOK_EVERY).await.is_some() {
            hints.drain();
        }
    }
}

/// Prints every event after `last`, page by page, and moves `last` on.
async fn catch_up(client: &Client, addr: &Address, last: &mut u64, json: bool) -> Result<()> {
    loop {
        let p = page(client, addr, Some(*last)).await?;
        for e in &p.events {
            if json {
                println!("{}", serde_json::to_string(e)?);
            } else {
                println!("{}", line(e));
            }
        }
        let done = p.upto >= p.head || p.upto == *last;
        *last = p.upto;
        if done {
            return Ok(());
        }
    }
}

async fn page(client: &Client, addr: &Address, after: Option<u64>) -> Result<EventPage> {
    let op = Op::Read(ReadOp::Events {
        addr: addr.clone(),
        after,
        limit: None,
    });
    match client.call(op).await? {
        Reply::Events(p) => Ok(p),
        other => bail!("unexpected answer to events: {other:?}"),
    }
}

/// One event in a line.
fn line(e: &EventMessage) -> String {
    let what = match &e.kind {
        EventKind::Created => "created".to_owned(),
        EventKind::ConfigSet { key, value, .. } => format!("set {key}={value}"),
        EventKind::Archived => "archived".to_owned(),
        EventKind::BundleAdded { version, bundle } => format!("bundle v{version} {bundle}"),
        EventKind::RunCreated { run, task } => format!("run {run} of {task} created"),
        EventKind::RunState { run, task, state } => {
            format!(
                "run {run} of {task} {}",
                format!("{state:?}").to_lowercase()
            )
        }
        EventKind::RuleFired { rule, run } => format!("rule {rule} fired run {run}"),
    };
    format!(
        "{}  seq {:<6} {:<12} {}  {what}",
        time(e.time_ms),
        e.seq,
        e.kind.name(),
        e.address
    )
}
