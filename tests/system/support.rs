//! Test harness: real `nats-server` and real `plotter2 coordinator` processes on free loopback
//! ports, each test in its own temporary directory. Processes are killed when dropped.
#![allow(dead_code)]

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plotter2_node::Client;
use plotter2_node::protocol::{NodeStatus, Role, UserName};

pub const BIN: &str = env!("CARGO_BIN_EXE_plotter2");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
    child: Option<Child>,
}

impl Nats {
    pub fn start(dir: &Path) -> Self {
        let mut n = Nats {
            port: free_port(),
            dir: dir.to_owned(),
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
                "listen: \"127.0.0.1:{}\"\nmax_payload: 8MB\njetstream {{ store_dir: \"{}\" }}\n",
                self.port,
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
    args: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
}

impl Coord {
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("coordinator-{}.log", self.id)))
            .unwrap();
        let child = Command::new(BIN)
            .args(&self.args)
            .env("RUST_LOG", "info")
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
        let nats = Nats::start(&dir.path().join("nats"));
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
            let mut c = Coord {
                id,
                raft_addr: addr.clone(),
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
        let check = &check;
        wait_for(limit, what, || {
            let client = client.clone();
            async move {
                let s = client
                    .cluster_status(Duration::from_millis(300))
                    .await
                    .ok()?;
                check(&s)
            }
        })
        .await
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
