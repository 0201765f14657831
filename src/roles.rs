//! Role subcommands: turn flags, env and an optional TOML file into a role's config and run it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use plotter2_coordinator::{CoordinatorConfig, RaftTuning};
use plotter2_node::Home;
use serde::Deserialize;

use crate::cli::{CoordinatorArgs, Global, StagerArgs, WorkerArgs};

/// The TOML form of [`CoordinatorArgs`]; flags and env override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CoordinatorFile {
    id: Option<u64>,
    raft_addr: Option<String>,
    nats: Option<String>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    init: Vec<String>,
    snapshot_every: Option<u64>,
    keep_logs: Option<u64>,
    heartbeat_ms: Option<u64>,
    election_ms: Option<u64>,
    write_timeout: Option<f64>,
    lost_after: Option<f64>,
}

fn parse_members(list: &[String]) -> Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for item in list {
        let (id, addr) = item
            .split_once('=')
            .with_context(|| format!("--init member {item:?} must look like 1=127.0.0.1:7001"))?;
        let id: u64 = id
            .parse()
            .with_context(|| format!("--init member {item:?}: {id:?} is not a node id"))?;
        out.insert(id, addr.to_owned());
    }
    Ok(out)
}

pub fn coordinator_config(global: &Global, args: &CoordinatorArgs) -> Result<CoordinatorConfig> {
    let file: CoordinatorFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{} is not a valid coordinator config", path.display()))?
        }
        None => CoordinatorFile::default(),
    };
    let home = Home::resolve(global.home.clone())?;
    let id = args
        .id
        .or(file.id)
        .context("--id is required (a raft node id > 0)")?;
    if id == 0 {
        bail!("--id must be greater than 0");
    }
    let raft_addr = args
        .raft_addr
        .clone()
        .or(file.raft_addr)
        .context("--raft-addr is required (host:port for raft peers, e.g. 127.0.0.1:7001)")?;
    let nats_url = crate::connect::nats_url(global.nats.clone().or(file.nats), &home)?;
    let defaults = RaftTuning::default();
    let election_min = args
        .election_ms
        .or(file.election_ms)
        .unwrap_or(defaults.election_min_ms);
    let init = if args.init.is_empty() {
        file.init
    } else {
        args.init.clone()
    };
    Ok(CoordinatorConfig {
        id,
        raft_addr,
        nats_url,
        data_dir: args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| home.registry().join(id.to_string())),
        init: parse_members(&init)?,
        tuning: RaftTuning {
            heartbeat_ms: args
                .heartbeat_ms
                .or(file.heartbeat_ms)
                .unwrap_or(defaults.heartbeat_ms),
            election_min_ms: election_min,
            election_max_ms: election_min * 2,
            snapshot_every: args
                .snapshot_every
                .or(file.snapshot_every)
                .unwrap_or(defaults.snapshot_every),
            keep_after_snapshot: args
                .keep_logs
                .or(file.keep_logs)
                .unwrap_or(defaults.keep_after_snapshot),
        },
        write_timeout: seconds(
            "--write-timeout",
            args.write_timeout.or(file.write_timeout).unwrap_or(3.0),
        )?,
        lost_after: seconds(
            "--lost-after",
            args.lost_after.or(file.lost_after).unwrap_or(30.0),
        )?,
    })
}

/// A positive number of seconds given for `flag`.
fn seconds(flag: &str, secs: f64) -> Result<Duration> {
    if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
        bail!("{flag} must be a positive number of seconds, not {secs}");
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Resolves when the process gets SIGINT or SIGTERM.
pub async fn terminated() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

pub async fn run_coordinator(global: &Global, args: &CoordinatorArgs) -> Result<()> {
    let cfg = coordinator_config(global, args)?;
    plotter2_coordinator::run(cfg, terminated()).await?;
    Ok(())
}

/// A NATS-safe default role name: the host name and pid.
fn default_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{}-{}",
        if host.is_empty() { "stager" } else { &host },
        std::process::id()
    )
}

/// `--name`, else a default; checked to be safe in NATS subjects and file names.
fn role_name(flag: Option<String>) -> Result<String> {
    let name = flag.unwrap_or_else(default_name);
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("--name {name:?}: use letters, digits, - and _ only");
    }
    Ok(name)
}

pub async fn run_worker(global: &Global, args: &WorkerArgs) -> Result<()> {
    let home = Home::resolve(global.home.clone())?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => plotter2_node::WorkerName::parse(&default_name())
            .context("the default worker name (host name and pid); choose one with --name")?,
    };
    if args.slots == 0 {
        bail!("--slots must be at least 1");
    }
    let store = crate::connect::open_store(global, &home).await?;
    let nats_url = crate::connect::nats_url(global.nats.clone(), &home)?;
    let client = crate::connect::connect(global).await?;
    let exe = std::env::current_exe().context("finding this program, which runs pipelines")?;
    let config = plotter2_worker::WorkerConfig {
        name,
        serve: args.serve.clone(),
        slots: args.slots,
        client,
        sandboxes: plotter2_worker::execute::Sandboxes::new(
            home.service(),
            store,
            nats_url,
            plotter2_worker::guard::Guard::start(&exe)
                .context("starting the worker's guard process")?,
            exe.clone(),
        ),
    };
    plotter2_worker::run(config, terminated()).await?;
    Ok(())
}

pub async fn run_stager(global: &Global, args: &StagerArgs) -> Result<()> {
    let home = Home::resolve(global.home.clone())?;
    let name = role_name(args.name.clone())?;
    let rescan_every = seconds("--rescan", args.rescan)?;
    let crash_at = match std::env::var(plotter2_stager::pipeline::CRASH_ENV) {
        Ok(step) if !step.is_empty() => Some(step.parse().map_err(anyhow::Error::msg)?),
        _ => None,
    };
    let store = crate::connect::open_store(global, &home).await?;
    let client = crate::connect::connect(global).await?;
    let config = plotter2_stager::StagerConfig {
        name,
        inbox: args.inbox.clone().unwrap_or_else(|| home.inbox()),
        spool: args.spool.clone().unwrap_or_else(|| home.temp()),
        store,
        client,
        rescan_every,
        crash_at,
        hash_threads: plotter2_node::tree::default_threads(),
    };
    plotter2_stager::run(config, terminated()).await?;
    Ok(())
}
