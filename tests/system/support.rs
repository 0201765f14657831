//! Test harness: real `nats-server` and real `plotter2 coordinator` processes on free loopback
//! ports, each test in its own temporary directory. Processes are killed when dropped.
#![allow(dead_code)]

use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plotter2_node::Client;
use plotter2_node::protocol::{NodeStatus, Role, UserName};

pub const BIN: &str = env!("CARGO_BIN_EXE_plotter2");

/// A port nothing listens on, never handed out before in this test process, from outside the
/// kernel's ephemeral range: tests kill servers and restart them on the same port, and a port
/// from that range could meanwhile become the local port of one of the suite's many outgoing
/// connections.
pub fn free_port() -> u16 {
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let mut next = NEXT.lock().unwrap();
    let range = plotter2_node::ports::stable_range();
    // Spread test processes (and benches run beside them) over the range.
    let span = u32::from(*range.end() - *range.start()) + 1;
    let from =
        next.unwrap_or(*range.start() + (std::process::id().wrapping_mul(7919) % span) as u16);
    let port = plotter2_node::ports::free_stable_port(from).expect("a free loopback port");
    *next = Some(if port == *range.end() {
        *range.start()
    } else {
        port + 1
    });
    port
}

/// Every TCP socket on `port` (from /proc/net/tcp), with its state and the process holding
/// it: for the message of a test that finds a port taken.
pub fn who_holds(port: u16) -> String {
    let mut owners = std::collections::HashMap::new();
    for proc_dir in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(fds) = std::fs::read_dir(proc_dir.path().join("fd")) else {
            continue;
        };
        let cmd = std::fs::read_to_string(proc_dir.path().join("cmdline"))
            .unwrap_or_default()
            .replace('\0', " ");
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path()) {
                let link = link.to_string_lossy().into_owned();
                if let Some(inode) = link.strip_prefix("socket:[") {
                    let who = format!("{} {cmd}", proc_dir.file_name().to_string_lossy());
                    owners.insert(inode.trim_end_matches(']').to_owned(), who);
                }
            }
        }
    }
    let mut out = String::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let Some(local) = f.get(1) else { continue };
            let local_port = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if local_port == Some(port) {
                let inode = f.get(9).copied().unwrap_or("?");
                let owner = owners
                    .get(inode)
                    .map(String::as_str)
                    .unwrap_or("no process");
                out += &format!(
                    "  local {} remote {} state {} inode {inode}: {owner}\n",
                    f[1],
                    f.get(2).copied().unwrap_or("?"),
                    f.get(3).copied().unwrap_or("?")
                );
            }
        }
    }
    if out.is_empty() {
        out = format!("  no TCP socket on port {port} now\n");
    }
    out
}

/// Polls `check` until it returns `Some`, or panics after `limit` saying what was awaited.
pub async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn wait_listening(port: u16, limit: Duration) {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let deadline = Instant::now() + limit;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listening on {addr} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on a child we own.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// A real nats-server with JetStream, storing under `dir`.
pub struct Nats {
    pub port: u16,
    dir: PathBuf,
    /// As nats-server writes it: `8MB` (what `plotter2 up` configures), `1MB` (the default).
    max_payload: String,
    child: Option<Child>,
}

impl Nats {
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, "8MB")
    }

    pub fn start_with(dir: &Path, max_payload: &str) -> Self {
        let mut n = Nats {
            port: free_port(),
            dir: dir.to_owned(),
            max_payload: max_payload.to_owned(),
            child: None,
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let conf = self.dir.join("nats.conf");
        std::fs::write(
            &conf,
            format!(
                "listen: \"127.0.0.1:{}\"\nmax_payload: {}\njetstream {{ store_dir: \"{}\" }}\n",
                self.port,
                self.max_payload,
                self.dir.join("js").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(self.dir.join("nats.log")).unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&conf)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("nats-server must be installed (see README / .ci/run)");
        self.child = Some(child);
        wait_listening(self.port, Duration::from_secs(10));
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.spawn();
    }

    /// Kills the server and restarts it with an empty JetStream store: every message it had
    /// not synced is gone, as after a power loss.
    pub fn restart_wiped(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::fs::remove_dir_all(self.dir.join("js")).unwrap();
        self.spawn();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One coordinator process.
pub struct Coord {
    pub id: u64,
    pub raft_addr: String,
    /// Extra environment for its next starts.
    pub env: Vec<(String, String)>,
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Coord {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let child = Command::new(BIN)
            .args(&self.args)
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Where its stdout and stderr go (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("coordinator-{}.log", self.id))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Its registry directory (`<home>/registry/<id>`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("registry").join(self.id.to_string())
    }

    /// Waits for the process to exit by itself, or panics after `limit` with its log's tail.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child.as_mut().expect("coordinator running");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let log = self.log_text();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "coordinator {} did not exit within {limit:?}; its log ends:\n{}",
                    self.id,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn pause(&self) {
        if let Some(c) = &self.child {
            signal(c, libc::SIGSTOP);
        }
    }

    pub fn resume(&self) {
        if let Some(c) = &self.child {
            signal(c, libc::SIGCONT);
        }
    }
}

impl Drop for Coord {
    fn drop(&mut self) {
        self.resume();
        self.kill9();
    }
}

#[derive(Clone, Default)]
pub struct Opts {
    pub snapshot_every: Option<u64>,
    pub keep_logs: Option<u64>,
    pub write_timeout: Option<f64>,
    pub lost_after: Option<f64>,
    /// Environment for every coordinator.
    pub env: Vec<(String, String)>,
    /// The NATS server's `max_payload` (default `8MB`, as `plotter2 up` has it).
    pub max_payload: Option<&'static str>,
}

/// NATS plus N coordinators, node 1 initializing the cluster.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub nats: Nats,
    pub coords: Vec<Coord>,
}

impl Cluster {
    pub async fn start(n: u64, opts: Opts) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nats = Nats::start_with(&dir.path().join("nats"), opts.max_payload.unwrap_or("8MB"));
        let addrs: Vec<String> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()))
            .collect();
        let init: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect();
        let mut coords = Vec::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            let mut args = vec![
                "coordinator".to_string(),
                "--home".into(),
                dir.path().to_string_lossy().into(),
                "--nats".into(),
                nats.url(),
                "--id".into(),
                id.to_string(),
                "--raft-addr".into(),
                addr.clone(),
            ];
            if id == 1 {
                args.extend(["--init".into(), init.join(",")]);
            }
            if let Some(s) = opts.snapshot_every {
                args.extend(["--snapshot-every".into(), s.to_string()]);
            }
            if let Some(k) = opts.keep_logs {
                args.extend(["--keep-logs".into(), k.to_string()]);
            }
            if let Some(w) = opts.write_timeout {
                args.extend(["--write-timeout".into(), w.to_string()]);
            }
            if let Some(l) = opts.lost_after {
                args.extend(["--lost-after".into(), l.to_string()]);
            }
            let mut c = Coord {
                id,
                raft_addr: addr.clone(),
                env: opts.env.clone(),
                args,
                dir: dir.path().to_owned(),
                child: None,
            };
            c.spawn();
            coords.push(c);
        }
        let cluster = Cluster { dir, nats, coords };
        cluster.wait_leader(Duration::from_secs(20)).await;
        cluster
    }

    /// Starts one more coordinator that joins no cluster by itself (for `cluster add`).
    pub fn spawn_extra(&mut self, id: u64) -> String {
        let addr = format!("127.0.0.1:{}", free_port());
        let args = vec![
            "coordinator".to_string(),
            "--home".into(),
            self.dir.path().to_string_lossy().into(),
            "--nats".into(),
            self.nats.url(),
            "--id".into(),
            id.to_string(),
            "--raft-addr".into(),
            addr.clone(),
        ];
        let mut c = Coord {
            id,
            raft_addr: addr.clone(),
            env: Vec::new(),
            args,
            dir: self.dir.path().to_owned(),
            child: None,
        };
        c.spawn();
        self.coords.push(c);
        addr
    }

    pub fn coord(&mut self, id: u64) -> &mut Coord {
        self.coords.iter_mut().find(|c| c.id == id).unwrap()
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.nats.url(), UserName::parse("tester").unwrap())
            .await
            .unwrap()
    }

    pub async fn statuses(&self) -> Vec<NodeStatus> {
        let c = self.client().await;
        c.cluster_status(Duration::from_millis(300)).await.unwrap()
    }

    /// Polls `cluster status` until `check` accepts the answers, or panics after `limit`.
    pub async fn wait_status<T>(
        &self,
        limit: Duration,
        what: &str,
        check: impl Fn(&[NodeStatus]) -> Option<T>,
    ) -> T {
        let client = self.client().await;
        let mut last = Vec::new();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(s) = client.cluster_status(Duration::from_millis(300)).await {
                if let Some(v) = check(&s) {
                    return v;
                }
                last = s;
            }
            // The last answers say why the wait failed.
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; last statuses: {last:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The id of the leader every running coordinator agrees on.
    pub async fn wait_leader(&self, limit: Duration) -> u64 {
        let running: Vec<u64> = self
            .coords
            .iter()
            .filter(|c| c.is_running())
            .map(|c| c.id)
            .collect();
        self.wait_status(limit, "a leader", |s| {
            let leader = s.iter().find(|s| s.role == Role::Leader)?;
            let all_answer = running.iter().all(|id| s.iter().any(|x| x.id == *id));
            (all_answer && s.iter().all(|x| x.leader == Some(leader.id))).then_some(leader.id)
        })
        .await
    }

    /// Waits until every running coordinator has applied the same index, and returns statuses.
    pub async fn wait_converged(&self, limit: Duration) -> Vec<NodeStatus> {
        let n = self.coords.iter().filter(|c| c.is_running()).count();
        self.wait_status(limit, "all coordinators to apply the same log index", |s| {
            let first = s.first()?.applied_index;
            (s.len() == n && first.is_some() && s.iter().all(|x| x.applied_index == first))
                .then(|| s.to_vec())
        })
        .await
    }

    /// Runs the CLI against this cluster; returns (success, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        cli_env(args, &[("P2_NATS", &self.nats.url()), ("P2_USER", "tali")])
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.cli(args);
        assert!(ok, "plotter2 {args:?} failed: {err}");
        out
    }

    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli_ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("plotter2 {args:?} printed no JSON ({e}): {out}"))
    }
}

pub fn cli_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("P2_HOME")
        .env_remove("P2_NATS")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A real `plotter2 stager` process with its own home (inbox, spool) on a cluster.
pub struct Stager {
    pub home: PathBuf,
    pub store: String,
    nats: String,
    /// Test-only crash point for the next start.
    pub crash_at: Option<String>,
    /// Run without the capability to read what its permissions forbid (as root, via
    /// `setpriv`), so an unreadable file is unreadable to it.
    pub unprivileged: bool,
    /// Seconds between inbox rescans without an event (`--rescan`) for the next start.
    pub rescan: f64,
    child: Option<Child>,
}

impl Stager {
    /// A stager using `home` for inbox and spool, and `store` (a URL) for blobs.
    pub fn start(cluster: &Cluster, home: &Path, store: &str) -> Self {
        let mut s = Stager {
            home: home.to_owned(),
            store: store.to_owned(),
            nats: cluster.nats.url(),
            crash_at: None,
            unprivileged: false,
            rescan: 0.5,
            child: None,
        };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        std::fs::create_dir_all(&self.home).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.join("stager.log"))
            .unwrap();
        // SAFETY: geteuid has no preconditions.
        let mut cmd = if self.unprivileged && unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("setpriv");
            let caps = "-dac_override,-dac_read_search";
            c.args(["--bounding-set", caps, "--inh-caps", caps, BIN]);
            c
        } else {
            Command::new(BIN)
        };
        cmd.args(["stager", "--home"])
            .arg(&self.home)
            .args([
                "--nats",
                &self.nats,
                "--store",
                &self.store,
                "--rescan",
                &self.rescan.to_string(),
            ])
            .env("RUST_LOG", "info")
            .env("P2_USER", "stager")
            .envs(S3_TEST_ENV.iter().copied())
            .env_remove(plotter2_stager::pipeline::CRASH_ENV)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(step) = &self.crash_at {
            cmd.env(plotter2_stager::pipeline::CRASH_ENV, step);
        }
        self.child = Some(cmd.spawn().unwrap());
    }

    pub fn inbox(&self) -> PathBuf {
        self.home.join("inbox")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn spool(&self) -> PathBuf {
        self.home.join("temp")
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits for the process to exit by itself (a crash point), or panics after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("stager running");
        let status = wait_for(limit, "the stager to exit", || {
            let s = child.try_wait().unwrap();
            async move { s }
        })
        .await;
        self.child = None;
        status
    }

    /// Runs the CLI with this stager's store and the cluster's NATS.
    pub fn cli(&self, args: &[&str]) -> (bool, String, String) {
        let mut env = vec![
            ("P2_NATS", self.nats.as_str()),
            ("P2_USER", "tali"),
            ("P2_STORE", self.store.as_str()),
        ];
        env.extend(S3_TEST_ENV.iter().copied());
        cli_env(args, &env)
    }

    pub fn cli_ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.cli(args);
        assert!(ok, "plotter2 {args:?} failed: {err}");
        out
    }

    /// Files of the spool, ignoring the push parts folder when it is empty.
    pub fn spool_entries(&self) -> Vec<String> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.spool()).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            if name == ".push" && std::fs::read_dir(e.path()).unwrap().next().is_none() {
                continue;
            }
            out.push(name);
        }
        out
    }
}

impl Drop for Stager {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Writes a bundle folder at `dir`: `manifest.json` (when given) and the files.
pub fn write_bundle(dir: &Path, manifest: Option<&str>, files: &[(&str, &[u8])]) {
    std::fs::create_dir_all(dir).unwrap();
    if let Some(m) = manifest {
        std::fs::write(dir.join("manifest.json"), m).unwrap();
    }
    for (path, content) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
}

/// Drops a bundle the safe way: written under `inbox/.incoming/`, then renamed in.
pub fn drop_bundle(inbox: &Path, name: &str, manifest: Option<&str>, files: &[(&str, &[u8])]) {
    let staging = inbox.join(".incoming").join(name);
    write_bundle(&staging, manifest, files);
    std::fs::create_dir_all(inbox).unwrap();
    std::fs::rename(&staging, inbox.join(name)).unwrap();
}

/// A manifest sending the bundle to `addr`.
pub fn manifest_for(addr: &str) -> String {
    format!(r#"{{"manifest_version": 1, "user": "tali", "meta": {{"address": "{addr}"}}}}"#)
}

/// Every file under `root`: relative path → (content, permission bits). For comparing trees.
pub fn read_tree(root: &Path) -> std::collections::BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                let mode = e.metadata().unwrap().permissions().mode() & 0o7777;
                out.insert(rel, (std::fs::read(&p).unwrap(), mode));
            }
        }
    }
    out
}

/// The bundle versions of `addr` as `show --json` reports them (empty when it does not exist).
pub async fn bundles_of(client: &Client, addr: &str) -> Vec<serde_json::Value> {
    use plotter2_node::protocol::{Op, ReadOp, Reply};
    let op = Op::Read(ReadOp::Show {
        addr: plotter2_node::Address::parse(addr).unwrap(),
    });
    match client.call(op).await {
        Ok(Reply::Node(n)) => serde_json::to_value(&n.bundles)
            .unwrap()
            .as_array()
            .unwrap()
            .clone(),
        _ => Vec::new(),
    }
}

/// Waits until `addr` has at least `n` bundle versions; returns them.
pub async fn wait_versions(
    client: &Client,
    addr: &str,
    n: usize,
    limit: Duration,
) -> Vec<serde_json::Value> {
    wait_for(
        limit,
        &format!("{n} bundle version(s) at {addr}"),
        || async {
            let b = bundles_of(client, addr).await;
            (b.len() >= n).then_some(b)
        },
    )
    .await
}

/// Credentials for the test S3 server (it accepts any); harmless for a local store.
pub const S3_TEST_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "plotter2-test"),
    ("AWS_SECRET_ACCESS_KEY", "plotter2-test"),
];

/// A real S3-compatible server (moto's, from PyPI) on a free port, with one bucket.
pub struct S3Server {
    pub port: u16,
    child: Child,
}

impl S3Server {
    pub fn start(dir: &Path) -> Self {
        let port = free_port();
        let log = std::fs::File::create(dir.join("s3.log")).unwrap();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("moto_server must be installed: pip install 'moto[server]' (see .ci/run)");
        wait_listening(port, Duration::from_secs(30));
        // A PUT on the bucket's path creates it.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        use std::io::{Read, Write};
        write!(
            s,
            "PUT /plotter2 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "creating the bucket: {answer}"
        );
        S3Server { port, child }
    }

    pub fn url(&self) -> String {
        format!(
            "s3://plotter2?endpoint=http://127.0.0.1:{}&region=us-east-1",
            self.port
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `plotter2 worker` process serving one subtree.
pub struct Worker {
    pub name: String,
    pub home: PathBuf,
    child: Child,
}

impl Worker {
    pub fn start(cluster: &Cluster, home: &Path, store: &str, serve: &str, name: &str) -> Self {
        Self::start_with_env(cluster, home, store, serve, name, &[])
    }

    /// [`Worker::start`] with `env` added to its environment.
    pub fn start_with_env(
        cluster: &Cluster,
        home: &Path,
        store: &str,
        serve: &str,
        name: &str,
        env: &[(String, String)],
    ) -> Self {
        std::fs::create_dir_all(home).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(home.join(format!("{name}.log")))
            .unwrap();
        let child = Command::new(BIN)
            .args(["worker", "--home"])
            .arg(home)
            .args([
                "--nats",
                &cluster.nats.url(),
                "--store",
                store,
                "--serve",
                serve,
                "--name",
                name,
                "--slots",
                "4",
            ])
            .env("RUST_LOG", "info")
            .env("P2_USER", "worker")
            .envs(S3_TEST_ENV.iter().copied())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Worker {
            name: name.to_owned(),
            home: home.to_owned(),
            child,
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself; returns its status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "worker {} did not exit",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.trim_start().starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

/// Live (not zombie) processes in process group `pgid`.
pub fn group_members(pgid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // After the command's closing parenthesis: state, ppid, pgrp, ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string() {
            out.push(pid);
        }
    }
    out
}

/// Runs at `addr` and below.
pub async fn runs_of(client: &Client, addr: &str) -> Vec<plotter2_node::protocol::RunRecord> {
    use plotter2_node::protocol::{Op, ReadOp, Reply};
    let op = Op::Read(ReadOp::Runs {
        addr: plotter2_node::Address::parse(addr).unwrap(),
        after: None,
        limit: None,
    });
    match client.call(op).await {
        Ok(Reply::Runs(r)) => r,
        _ => Vec::new(),
    }
}

/// Waits until every run at `addr` and below has ended (and there are `n` of them).
pub async fn wait_runs_ended(
    client: &Client,
    addr: &str,
    n: usize,
    limit: Duration,
) -> Vec<plotter2_node::protocol::RunRecord> {
    wait_for(
        limit,
        &format!("{n} run(s) under {addr} to end"),
        || async {
            let runs = runs_of(client, addr).await;
            (runs.len() == n && runs.iter().all(|r| r.state.is_finished())).then_some(runs)
        },
    )
    .await
}

/// A TCP proxy to a local port that a test can cut (every connection closed, new ones
/// refused) and restore on the same port: a client behind it loses its link, not its process.
pub struct Proxy {
    port: u16,
    target: u16,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    pub async fn start(target: u16) -> Self {
        let mut p = Proxy {
            port: free_port(),
            target,
            tasks: Vec::new(),
            conns: Default::default(),
        };
        p.restore().await;
        p
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Listens again on the same port.
    pub async fn restore(&mut self) {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.set_reuseaddr(true).unwrap();
        sock.bind(format!("127.0.0.1:{}", self.port).parse().unwrap())
            .unwrap();
        let listener = sock.listen(64).unwrap();
        let (target, conns) = (self.target, self.conns.clone());
        self.tasks.push(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                conns.lock().unwrap().push(conn);
            }
        }));
    }

    /// Closes every connection and stops listening; returns once they are closed.
    pub async fn cut(&mut self) {
        let mut all: Vec<_> = self.tasks.drain(..).collect();
        all.extend(self.conns.lock().unwrap().drain(..));
        for t in &all {
            t.abort();
        }
        for t in all {
            let _ = t.await;
        }
    }
}

/// arize-phoenix, a real OTLP trace store (`phoenix serve`), on free ports; killed when
/// dropped. `.ci/run` installs it in a venv of its own.
pub struct Phoenix {
    pub http: u16,
    pub grpc: u16,
    child: Child,
}

impl Phoenix {
    pub fn start(dir: &Path) -> Self {
        let (http, grpc) = (free_port(), free_port());
        let log = std::fs::File::create(dir.join("phoenix.log")).unwrap();
        let child = Command::new(Self::bin())
            .arg("serve")
            .env("PHOENIX_WORKING_DIR", dir.join("phoenix"))
            .env("PHOENIX_PORT", http.to_string())
            .env("PHOENIX_GRPC_PORT", grpc.to_string())
            .env("PHOENIX_HOST", "127.0.0.1")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        wait_listening(http, Duration::from_secs(90));
        wait_listening(grpc, Duration::from_secs(30));
        Phoenix { http, grpc, child }
    }

    /// Where spans go: `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc)
    }

    fn bin() -> PathBuf {
        let candidates = [
            std::env::var("P2_PHOENIX").unwrap_or_default(),
            std::env::var("HOME").unwrap_or_default() + "/.cache/plotter2-phoenix/bin/phoenix",
            "/opt/phoenix/bin/phoenix".to_owned(),
        ];
        candidates
            .iter()
            .filter(|c| !c.is_empty())
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect(
                "arize-phoenix must be installed: .ci/run puts it in ~/.cache/plotter2-phoenix \
                 (python3 -m venv DIR && DIR/bin/pip install arize-phoenix; or set P2_PHOENIX)",
            )
    }
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
