//! Client verbs: build the request, send it, print the answer (`--json` or a table).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use plotter2_node::protocol::{
    ClusterOp, EventKind, NodeStatus, Op, ReadOp, Reply, RequestRecord, RequestStatus, Role,
    TREE_LIMIT, TreeView, WriteOp,
};
use plotter2_node::{Address, Client, Home};
use serde::Serialize;

use crate::cli::{ClusterCommand, Command, Global};
use crate::output::{self, Table};

pub async fn run(global: &Global, command: Command) -> Result<()> {
    let client = crate::connect::connect(global).await?;
    let (op, json) = match command {
        Command::New { addr, set, json } => (Op::Write(WriteOp::New { addr, set }), json),
        Command::Set { addr, set, json } => (Op::Write(WriteOp::Set { addr, set }), json),
        Command::Archive { addr, json } => (Op::Write(WriteOp::Archive { addr }), json),
        Command::Ls {
            addr,
            all,
            recursive: false,
            page,
            json,
        } => {
            if page.limit.is_some() || page.after.is_some() {
                bail!("--limit and --after page a whole subtree: add -R (or use `plotter2 tree`)");
            }
            (Op::Read(ReadOp::Ls { addr, all }), json)
        }
        Command::Ls {
            addr,
            all,
            recursive: true,
            page,
            json,
        }
        | Command::Tree {
            addr,
            all,
            page,
            json,
        } => {
            let op = Op::Read(ReadOp::Tree {
                addr: addr.clone(),
                all,
                after: page.after,
                limit: page.limit,
            });
            let Reply::Tree(tree) = client.call(op).await? else {
                bail!("unexpected answer to tree");
            };
            if json {
                return output::print_json(&tree);
            }
            print!("{}", tree_text(&addr, &tree, all));
            return Ok(());
        }
        Command::Show { addr, json } => (Op::Read(ReadOp::Show { addr }), json),
        Command::History { addr, json } => (Op::Read(ReadOp::History { addr }), json),
        Command::Requests { after, limit, json } => {
            (Op::Read(ReadOp::Requests { after, limit }), json)
        }
        Command::Request { id, json } => (Op::Read(ReadOp::Request { id }), json),
        Command::Run {
            addr,
            task,
            set,
            sweep,
            force,
            wait,
            json,
        } => {
            let op = Op::Write(WriteOp::Run {
                addr: addr.clone(),
                task,
                set,
                sweep,
                force,
            });
            if !wait {
                (op, json)
            } else {
                let Reply::Written(receipt) = client.call(op).await? else {
                    bail!("unexpected answer to run");
                };
                return crate::runcmds::wait(&client, &addr, &receipt.runs, json).await;
            }
        }
        Command::Logs { run, follow } => {
            let home = Home::resolve(global.home.clone())?;
            let store = crate::connect::open_store(global, &home).await?;
            return crate::runcmds::logs(&client, &store, run, follow).await;
        }
        Command::Cancel { run, json } => return crate::runcmds::cancel(&client, run, json).await,
        Command::Rules { addr, json } => return crate::rulecmds::rules(&client, addr, json).await,
        Command::Status { json } => return crate::statuscmd::status(&client, json).await,
        Command::Watch { addr, since, json } => {
            return crate::watch::watch(&client, addr, since, json).await;
        }
        Command::Lineage {
            reference,
            downstream,
            json,
            dot,
        } => {
            let form = crate::lineagecmd::Form::of(json, dot);
            return crate::lineagecmd::lineage(&client, &reference, downstream, form).await;
        }
        Command::Explain { run, json } => {
            return crate::explaincmd::explain(&client, run, json).await;
        }
        Command::Runs { addr, json } => {
            let runs = crate::runcmds::fetch_runs(&client, &addr, None).await?;
            if json {
                return output::print_json(&runs);
            }
            print!("{}", output::runs_table(&runs));
            return Ok(());
        }
        Command::Cluster {
            command: ClusterCommand::Status { json },
        } => return cluster_status(&client, json).await,
        Command::Cluster {
            command:
                ClusterCommand::Add {
                    id,
                    raft_addr,
                    json,
                },
        } => (Op::Cluster(ClusterOp::ClusterAdd { id, raft_addr }), json),
        Command::Cluster {
            command: ClusterCommand::Remove { id, json },
        } => (Op::Cluster(ClusterOp::ClusterRemove { id }), json),
        Command::Push { dir, addr, json } => return push(global, &client, &dir, addr, json).await,
        Command::Get {
            reference,
            to,
            json,
        } => return get(global, &client, &reference, to, json).await,
        Command::Files {
            reference,
            limit,
            after,
            json,
        } => return files(global, &client, &reference, limit, after.as_deref(), json).await,
        Command::Up(_)
        | Command::Coordinator(_)
        | Command::Stager(_)
        | Command::Worker(_)
        | Command::WorkerGuard
        | Command::PipelineRun { .. } => {
            bail!("not a client command")
        }
    };
    let verb = op.verb();
    let target = match &op {
        Op::Write(w) => Some(w.target().to_string()),
        _ => None,
    };
    let reply = client.call(op).await?;
    if json {
        return match reply {
            Reply::Written(r) => output::print_json(&r),
            Reply::Node(n) => output::print_json(&n),
            Reply::Children(c) => output::print_json(&c),
            Reply::Tree(t) => output::print_json(&t),
            Reply::History(h) => output::print_json(&h),
            Reply::Requests(r) => output::print_json(&r),
            Reply::Request(r) => output::print_json(&r),
            Reply::Bundle(b) => output::print_json(&b),
            Reply::Runs(r) => output::print_json(&r),
            Reply::RunStates(r) => output::print_json(&r),
            Reply::Run(r) => output::print_json(&r),
            Reply::Cluster(c) => output::print_json(&c),
            Reply::Rules(r) => output::print_json(&r),
            Reply::Events(e) => output::print_json(&e),
            Reply::Lineage(l) => output::print_json(&l),
            Reply::Explain(e) => output::print_json(&e),
        };
    }
    match reply {
        Reply::Written(r) => {
            let target = target.unwrap_or_default();
            let again = if r.duplicate {
                " (already applied earlier)"
            } else {
                ""
            };
            println!(
                "{verb} {target}: done, request {} seq {}{again}",
                r.id, r.seq
            );
            for c in &r.created {
                println!("  created {c}");
            }
            for run in &r.runs {
                println!("  run {run}");
            }
        }
        Reply::Node(n) => {
            println!("{}", n.address);
            let state = match (n.archived, n.hidden_by_ancestor) {
                (true, _) => "archived",
                (false, true) => "hidden (an ancestor is archived)",
                _ => "active",
            };
            println!("  state    {state}");
            println!(
                "  created  {} (seq {})",
                output::time(n.created_ms),
                n.created_seq
            );
            println!("  history  {} events", n.history_len);
            if !n.bundles.is_empty() {
                println!("bundles:");
                let mut t = Table::new(&["  VERSION", "FILES", "BYTES", "USER", "TIME", "ID"]);
                for b in &n.bundles {
                    t.row(vec![
                        format!("  {}", b.version),
                        b.files.to_string(),
                        b.bytes.to_string(),
                        b.user.to_string(),
                        output::time(b.time_ms),
                        b.id.to_string(),
                    ]);
                }
                print!("{}", t.render());
            }
            println!("own config:");
            print_config(&n.own, None);
            println!("effective config:");
            print_config(&n.effective.config, Some(&n.effective.from));
            if !n.children.is_empty() {
                println!("children:");
                for c in &n.children {
                    let mark = if c.archived { " (archived)" } else { "" };
                    println!("  {}{mark}", c.name);
                }
            }
        }
        Reply::Children(children) => {
            let mut t = Table::new(&["NAME", "CHILDREN", "STATE", "ADDRESS"]);
            for c in children {
                let state = if c.archived { "archived" } else { "" };
                t.row(vec![
                    c.name,
                    c.children.to_string(),
                    state.into(),
                    c.address.to_string(),
                ]);
            }
            print!("{}", t.render());
        }
        Reply::Tree(tree) => print!("{}", tree_text(&Address::root(), &tree, false)),
        Reply::History(events) => {
            let mut t = Table::new(&["SEQ", "TIME", "USER", "EVENT", "REQUEST"]);
            for e in events {
                let what = match &e.kind {
                    EventKind::Created => "created".to_owned(),
                    EventKind::ConfigSet {
                        key,
                        value,
                        previous,
                    } => match previous {
                        Some(p) => format!(
                            "set {key}={} (was {})",
                            output::value(value),
                            output::value(p)
                        ),
                        None => format!("set {key}={}", output::value(value)),
                    },
                    EventKind::Archived => "archived".to_owned(),
                    EventKind::BundleAdded { version, bundle } => {
                        format!("bundle version {version} ({bundle})")
                    }
                    EventKind::RunCreated { run, task } => format!("run {run} of {task}"),
                    EventKind::RunState { run, task, state } => {
                        format!("run {run} of {task} {state:?}")
                    }
                    EventKind::RuleFired { rule, run } => format!("rule {rule} fired {run}"),
                };
                t.row(vec![
                    e.seq.to_string(),
                    output::time(e.time_ms),
                    e.user.to_string(),
                    what,
                    e.request.to_string(),
                ]);
            }
            print!("{}", t.render());
        }
        Reply::Requests(records) => print!("{}", requests_table(&records)),
        Reply::Request(r) => {
            print!("{}", requests_table(std::slice::from_ref(&r)));
            if let Some(e) = &r.error {
                println!("error: {}", e.message);
            }
            println!("payload: {}", serde_json::to_string(&r.payload)?);
        }
        Reply::Bundle(b) => println!(
            "{}@{} {} ({} files)",
            b.address, b.version.version, b.version.id, b.version.files
        ),
        Reply::Runs(runs) => print!("{}", output::runs_table(&runs)),
        Reply::RunStates(states) => {
            for (id, state) in states {
                println!("{id} {}", format!("{state:?}").to_lowercase());
            }
        }
        Reply::Run(r) => print!("{}", output::runs_table(std::slice::from_ref(&*r))),
        Reply::Cluster(c) => println!("voters {:?}, learners {:?}", c.voters, c.learners),
        Reply::Rules(r) => println!("{} rule(s); `plotter2 rules ADDR` describes them", r.len()),
        Reply::Events(e) => println!("{} event(s) up to seq {}", e.events.len(), e.upto),
        Reply::Lineage(l) => println!(
            "{} version(s), {} run(s); `plotter2 lineage ADDR@V` draws them",
            l.versions.len(),
            l.runs.len()
        ),
        Reply::Explain(e) => println!("run {}: {}", e.run, e.outcome),
    }
    Ok(())
}

/// A subtree as indented names under `root`, with a note on what a cut-short page left out.
fn tree_text(root: &Address, tree: &TreeView, all: bool) -> String {
    let mut out = format!("{root}\n");
    for n in &tree.nodes {
        let indent = "  ".repeat(n.address.depth().saturating_sub(root.depth()));
        let mark = if n.archived { " (archived)" } else { "" };
        let _ = writeln!(out, "{indent}{}{mark}", n.name);
    }
    if let Some(next) = tree.next.as_ref().filter(|_| tree.more > 0) {
        let all = if all { " --all" } else { "" };
        let _ = writeln!(
            out,
            "… {} more nodes below {root}; list them with `plotter2 ls -R {root}{all} --after {next}` \
             (or --limit up to {TREE_LIMIT}, or a deeper address)",
            tree.more
        );
    }
    out
}

async fn push(
    global: &Global,
    client: &Client,
    dir: &std::path::Path,
    addr: Option<plotter2_node::Address>,
    json: bool,
) -> Result<()> {
    let deadline = Duration::from_secs_f64(global.timeout.max(1.0));
    let bar = crate::progress::Transfer::new("push", json);
    let pushed = plotter2_stager::push::push(client, dir, addr, deadline, &bar)
        .await
        .with_context(|| format!("pushing {}", dir.display()))?;
    drop(bar);
    if json {
        return output::print_json(&pushed);
    }
    let b = &pushed.bundle;
    let what = if b.existing {
        "already stored as"
    } else {
        "stored as"
    };
    println!(
        "{} {what} {}@{} ({} files, {} bytes, {} sent)",
        dir.display(),
        pushed.address,
        b.version,
        pushed.files,
        pushed.total_bytes,
        pushed.sent_bytes
    );
    println!("  bundle {}", b.id);
    Ok(())
}

async fn get(
    global: &Global,
    client: &Client,
    reference: &plotter2_node::reference::BundleReference,
    to: Option<std::path::PathBuf>,
    json: bool,
) -> Result<()> {
    let home = Home::resolve(global.home.clone())?;
    let detail = plotter2_node::tree::resolve(client, reference).await?;
    let store = crate::connect::open_store(global, &home).await?;
    if let Some(path) = &reference.path {
        plotter2_node::tree::file_to_stdout(&store, &detail, path.as_str()).await?;
        return Ok(());
    }
    let (dest, replace) = match to {
        Some(dir) => (dir, false),
        // The managed output folder: a repeated get replaces what is there.
        None => {
            let mut d = home.output();
            for seg in detail.address.segments() {
                d.push(seg);
            }
            (d.join(format!("v{}", detail.version.version)), true)
        }
    };
    let bar = crate::progress::Transfer::new("get", json);
    plotter2_node::tree::materialise_with(&store, &detail, &dest, replace, &bar)
        .await
        .with_context(|| {
            format!(
                "writing {}@{} to {}",
                detail.address,
                detail.version.version,
                dest.display()
            )
        })?;
    drop(bar);
    if json {
        #[derive(Serialize)]
        struct Got<'a> {
            address: &'a plotter2_node::Address,
            version: u64,
            bundle: plotter2_node::bundle::Hash,
            files: u64,
            bytes: u64,
            to: &'a std::path::Path,
        }
        return output::print_json(&Got {
            address: &detail.address,
            version: detail.version.version,
            bundle: detail.version.id,
            files: detail.version.files,
            bytes: detail.version.bytes,
            to: &dest,
        });
    }
    println!(
        "{}@{} ({} files, {} bytes) → {}",
        detail.address,
        detail.version.version,
        detail.version.files,
        detail.version.bytes,
        dest.display()
    );
    Ok(())
}

/// Prints a page of a bundle version's files, read from its index in the object store.
async fn files(
    global: &Global,
    client: &Client,
    reference: &plotter2_node::reference::BundleReference,
    limit: usize,
    after: Option<&str>,
    json: bool,
) -> Result<()> {
    let home = Home::resolve(global.home.clone())?;
    let detail = plotter2_node::tree::resolve(client, reference).await?;
    let store = crate::connect::open_store(global, &home).await?;
    let index = store.get_index(&detail.version.id).await?;
    let dir = reference.path.as_ref().map(|p| p.as_str());
    let (page, more) = index.page(dir, after, limit);
    if let (Some(d), true) = (dir, page.is_empty() && after.is_none()) {
        bail!(
            "{}@{} has no file or folder {d:?}; `plotter2 files {}@{}` lists what it holds",
            detail.address,
            detail.version.version,
            detail.address,
            detail.version.version
        );
    }
    let next = page.last().filter(|_| more > 0).map(|f| f.path.as_str());
    if json {
        #[derive(Serialize)]
        struct Files<'a> {
            address: &'a plotter2_node::Address,
            version: u64,
            bundle: plotter2_node::bundle::Hash,
            files: &'a [plotter2_node::bundle::FileEntry],
            more: usize,
            #[serde(skip_serializing_if = "Option::is_none")]
            next: Option<&'a str>,
        }
        return output::print_json(&Files {
            address: &detail.address,
            version: detail.version.version,
            bundle: detail.version.id,
            files: page,
            more,
            next,
        });
    }
    let mut out = String::new();
    for f in page {
        let _ = writeln!(out, "{:04o} {:>12} {}", f.mode & 0o7777, f.size, f.path);
    }
    print!("{out}");
    if let Some(next) = next {
        println!(
            "… {more} more files; list them with `plotter2 files {}@{}{} --after {next}`",
            detail.address,
            detail.version.version,
            dir.map(|d| format!(":{d}")).unwrap_or_default()
        );
    }
    Ok(())
}

fn print_config(
    config: &serde_json::Map<String, serde_json::Value>,
    from: Option<&std::collections::BTreeMap<String, plotter2_node::Address>>,
) {
    let mut leaves = Vec::new();
    flatten("", config, &mut leaves);
    if leaves.is_empty() {
        println!("  (none)");
        return;
    }
    let mut t = Table::new(&["  KEY", "VALUE", "FROM"]);
    for (k, v) in leaves {
        let src = from
            .and_then(|f| f.get(&k))
            .map(|a| a.to_string())
            .unwrap_or_default();
        t.row(vec![format!("  {k}"), output::value(&v), src]);
    }
    print!("{}", t.render());
}

fn flatten(
    prefix: &str,
    m: &serde_json::Map<String, serde_json::Value>,
    out: &mut Vec<(String, serde_json::Value)>,
) {
    for (k, v) in m {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            serde_json::Value::Object(inner) if !inner.is_empty() => flatten(&key, inner, out),
            _ => out.push((key, v.clone())),
        }
    }
}

fn requests_table(records: &[RequestRecord]) -> String {
    let mut t = Table::new(&["SEQ", "TIME", "USER", "VERB", "TARGET", "STATUS", "ID"]);
    for r in records {
        let status = match r.status {
            RequestStatus::Done => "done",
            RequestStatus::Failed => "failed",
        };
        t.row(vec![
            r.seq.to_string(),
            output::time(r.time_ms),
            r.user.to_string(),
            r.verb.clone(),
            r.target.to_string(),
            status.into(),
            r.id.to_string(),
        ]);
    }
    t.render()
}

/// One row per coordinator: those that answered, and members nobody heard from.
#[derive(Serialize, Default)]
struct StatusRow {
    id: u64,
    raft_addr: String,
    /// leader, follower, candidate, learner, shutdown, or unreachable
    role: String,
    reachable: bool,
    pid: Option<u32>,
    term: Option<u64>,
    leader: Option<u64>,
    last_log_index: Option<u64>,
    committed_index: Option<u64>,
    applied_index: Option<u64>,
    snapshot_index: Option<u64>,
    purged_index: Option<u64>,
    state_digest: Option<String>,
}

impl From<&NodeStatus> for StatusRow {
    fn from(s: &NodeStatus) -> Self {
        Self {
            id: s.id,
            raft_addr: s.raft_addr.clone(),
            role: s.role.to_string(),
            reachable: true,
            pid: Some(s.pid),
            term: Some(s.term),
            leader: s.leader,
            last_log_index: s.last_log_index,
            committed_index: s.committed_index,
            applied_index: s.applied_index,
            snapshot_index: s.snapshot_index,
            purged_index: s.purged_index,
            state_digest: Some(s.state_digest.clone()),
        }
    }
}

async fn cluster_status(client: &Client, json: bool) -> Result<()> {
    let answers = client.cluster_status(Duration::from_millis(500)).await?;
    if answers.is_empty() {
        bail!("no coordinator answered on NATS; is `plotter2 up` (or a coordinator) running?");
    }
    let mut members: std::collections::BTreeMap<u64, String> = Default::default();
    for s in &answers {
        for (id, addr) in s.voters.iter().chain(&s.learners) {
            members.insert(*id, addr.clone());
        }
        members.entry(s.id).or_insert_with(|| s.raft_addr.clone());
    }
    let rows: Vec<StatusRow> = members
        .into_iter()
        .map(|(id, addr)| match answers.iter().find(|s| s.id == id) {
            Some(s) => StatusRow::from(s),
            None => StatusRow {
                id,
                raft_addr: addr,
                role: "unreachable".into(),
                ..Default::default()
            },
        })
        .collect();
    if json {
        return output::print_json(&rows);
    }
    let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    let mut t = Table::new(&[
        "ID",
        "RAFT ADDRESS",
        "ROLE",
        "PID",
        "TERM",
        "LAST LOG",
        "APPLIED",
        "STATE DIGEST",
    ]);
    for r in &rows {
        t.row(vec![
            r.id.to_string(),
            r.raft_addr.clone(),
            r.role.clone(),
            opt(r.pid.map(u64::from)),
            opt(r.term),
            opt(r.last_log_index),
            opt(r.applied_index),
            r.state_digest
                .as_deref()
                .unwrap_or("-")
                .chars()
                .take(19)
                .collect(),
        ]);
    }
    print!("{}", t.render());
    if !answers.iter().any(|s| s.role == Role::Leader) {
        println!("no leader: a majority of voters must be running and reachable");
    }
    Ok(())
}
