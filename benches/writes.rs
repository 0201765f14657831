//! Write requests through the full path — client library → NATS → leader → raft on three local
//! coordinators with fsync → reply — at 1, 16 and 256 concurrent clients, beside a 3-member
//! etcd cluster on loopback under the same load (same concurrency, same value size), measured in
//! the same run so the ratio holds on a noisy machine.
//!
//! Run: `cargo bench --bench writes` (needs `nats-server` and `etcd` on PATH; Debian:
//! `apt-get install etcd-server`). `P2_BENCH_SECS` sets the measured seconds per level
//! (default 5), `P2_BENCH_LEVELS` the client counts (default `1,16,256`). It also measures the
//! cost of tracing: the same writes with every coordinator exporting its spans to arize-phoenix
//! (installed as `.ci/run` does; `P2_BENCH_SKIP_TRACING=1` leaves it out).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may stop at the first surprise

#[path = "../tests/system/support.rs"]
mod support;

use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plotter2_node::protocol::{Op, UserName, WriteOp};
use plotter2_node::{Address, Client};

use support::{Cluster, Opts, free_port};

const VALUE_BYTES: usize = 100;

trait Writer: Send + 'static {
    fn write(&mut self, n: u64) -> impl Future<Output = Result<(), String>> + Send;
}

struct Plotter2Writer {
    client: Client,
    addr: Address,
    value: String,
}

impl Writer for Plotter2Writer {
    async fn write(&mut self, n: u64) -> Result<(), String> {
        let set = vec![
            format!("v={}{n}", self.value)
                .parse()
                .map_err(|e| format!("{e}"))?,
        ];
        self.client
            .call(Op::Write(WriteOp::Set {
                addr: self.addr.clone(),
                set,
            }))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// etcd's `KV/Put`, declared by hand so no protoc is needed.
mod etcd {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    /// Only the header is of interest; prost skips the rest.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PutResponse {}

    pub struct EtcdWriter {
        pub grpc: tonic::client::Grpc<tonic::transport::Channel>,
        pub key: Vec<u8>,
        pub value: Vec<u8>,
    }

    impl super::Writer for EtcdWriter {
        async fn write(&mut self, n: u64) -> Result<(), String> {
            let mut value = self.value.clone();
            value.extend_from_slice(n.to_string().as_bytes());
            self.grpc.ready().await.map_err(|e| e.to_string())?;
            let path = http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
            let codec = tonic_prost::ProstCodec::<PutRequest, PutResponse>::default();
            self.grpc
                .unary(
                    tonic::Request::new(PutRequest {
                        key: self.key.clone(),
                        value,
                    }),
                    path,
                    codec,
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
}

/// A 3-member etcd cluster on loopback, killed on drop.
struct Etcd {
    _dir: tempfile::TempDir,
    children: Vec<Child>,
    client_urls: Vec<String>,
}

impl Etcd {
    fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let peers: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let clients: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let cluster: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| format!("e{i}=http://127.0.0.1:{p}"))
            .collect();
        let mut children = Vec::new();
        for i in 0..3 {
            let log = std::fs::File::create(dir.path().join(format!("etcd{i}.log"))).unwrap();
            let child = Command::new("etcd")
                .args(["--name", &format!("e{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("e{i}")))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{}", clients[i]),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{}", clients[i]),
                ])
                .args([
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{}", peers[i]),
                ])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{}", peers[i]),
                ])
                .args(["--initial-cluster", &cluster.join(",")])
                .args([
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "p2bench",
                ])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("etcd must be installed: apt-get install etcd-server");
            children.push(child);
        }
        Etcd {
            _dir: dir,
            children,
            client_urls: clients
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect(),
        }
    }

    fn writer(&self, i: usize) -> etcd::EtcdWriter {
        // Like etcdctl with one endpoint: every client talks to the first member.
        let channel = tonic::transport::Endpoint::from_shared(self.client_urls[0].clone())
            .unwrap()
            .tcp_nodelay(true)
            .connect_lazy();
        etcd::EtcdWriter {
            grpc: tonic::client::Grpc::new(channel),
            key: format!("/bench/c{i}").into_bytes(),
            value: vec![b'x'; VALUE_BYTES],
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Figures {
    clients: usize,
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
}

/// Runs every writer flat out: one second of warm-up, then `secs` measured.
async fn measure<W: Writer>(writers: Vec<W>, secs: f64) -> Figures {
    let clients = writers.len();
    let start = Instant::now();
    let warm = start + Duration::from_secs(1);
    let end = warm + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = writers
        .into_iter()
        .map(|mut w| {
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut n = 0u64;
                loop {
                    let t = Instant::now();
                    if t >= end {
                        break;
                    }
                    let ok = w.write(n).await.is_ok();
                    n += 1;
                    if t >= warm {
                        if ok {
                            lat.push(t.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.unwrap();
        all.extend(lat);
        errors += e;
    }
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
    };
    Figures {
        clients,
        per_sec: all.len() as f64 / secs,
        p50: pick(0.50).unwrap_or_default(),
        p99: pick(0.99).unwrap_or_default(),
        errors,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Starts `nodes` coordinators with `opts` and measures writes at each level.
async fn plotter2_levels(nodes: u64, opts: Opts, levels: &[usize], secs: f64) -> Vec<Figures> {
    let max = levels.iter().copied().max().unwrap_or(1);
    let cluster = Cluster::start(nodes, opts).await;
    let user = UserName::parse("bench").unwrap();
    {
        let c = cluster.client().await;
        for i in 0..max {
            c.call(Op::Write(WriteOp::New {
                addr: Address::parse(&format!("/bench/c{i}")).unwrap(),
                set: vec![],
            }))
            .await
            .unwrap();
        }
    }
    let mut ours = Vec::new();
    for &n in levels {
        let mut writers = Vec::new();
        for i in 0..n {
            writers.push(Plotter2Writer {
                client: Client::connect(&cluster.nats.url(), user.clone())
                    .await
                    .unwrap(),
                addr: Address::parse(&format!("/bench/c{i}")).unwrap(),
                value: "x".repeat(VALUE_BYTES),
            });
        }
        let f = measure(writers, secs).await;
        eprintln!(
            "  plotter2 {n:>4} clients: {:>8.0}/s  p50 {} ms  p99 {} ms",
            f.per_sec,
            ms(f.p50),
            ms(f.p99)
        );
        ours.push(f);
    }
    ours
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let secs: f64 = std::env::var("P2_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let levels: Vec<usize> = std::env::var("P2_BENCH_LEVELS")
        .unwrap_or_else(|_| "1,16,256".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Diagnostics only: the figures in notes use the defaults (3 nodes, with etcd).
        let nodes: u64 = std::env::var("P2_BENCH_NODES").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
        let skip_etcd = std::env::var_os("P2_BENCH_SKIP_ETCD").is_some();
        eprintln!("plotter2: {nodes} coordinators + NATS …");
        let ours = plotter2_levels(nodes, Opts::default(), &levels, secs).await;
        // The cost of tracing: the same again with every coordinator exporting its spans
        // to a real OTLP backend.
        if std::env::var_os("P2_BENCH_SKIP_TRACING").is_none() {
            let dir = tempfile::tempdir().unwrap();
            // P2_BENCH_OTLP_ENDPOINT: export elsewhere instead (a backend on another host, so
            // that its work does not share this machine's cores with the coordinators).
            let (endpoint, _phoenix) = match std::env::var("P2_BENCH_OTLP_ENDPOINT") {
                Ok(e) if !e.is_empty() => (e, None),
                _ => {
                    let p = support::Phoenix::start(dir.path());
                    (p.endpoint(), Some(p))
                }
            };
            eprintln!("plotter2 exporting spans to {endpoint} …");
            let opts = Opts {
                env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT".into(), endpoint)],
                ..Opts::default()
            };
            let traced = plotter2_levels(nodes, opts, &levels, secs).await;
            println!();
            println!("the cost of tracing: writes/s with span export off and on");
            println!("{:>7}  {:>10} {:>10}  {:>8}  {:>9} {:>9}", "clients", "off/s", "on/s", "loss", "p50 off", "p50 on");
            for (o, t) in ours.iter().zip(&traced) {
                println!(
                    "{:>7}  {:>10.0} {:>10.0}  {:>7.1}%  {:>6} ms {:>6} ms",
                    o.clients,
                    o.per_sec,
                    t.per_sec,
                    (1.0 - t.per_sec / o.per_sec.max(1e-9)) * 100.0,
                    ms(o.p50),
                    ms(t.p50)
                );
            }
        }
        if skip_etcd {
            return;
        }

        eprintln!("etcd: 3 members …");
        let etcd = Etcd::start();
        let mut probe = etcd.writer(0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while probe.write(0).await.is_err() {
            assert!(Instant::now() < deadline, "etcd cluster did not accept a write within 30s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let version = Command::new("etcd").arg("--version").output().map(|o| o.stdout).unwrap_or_default();
        let version = String::from_utf8_lossy(&version).lines().next().unwrap_or("").to_owned();
        let mut theirs = Vec::new();
        for &n in &levels {
            let mut writers = Vec::new();
            for i in 0..n {
                writers.push(etcd.writer(i));
            }
            let f = measure(writers, secs).await;
            eprintln!("  etcd     {n:>4} clients: {:>8.0}/s  p50 {} ms  p99 {} ms", f.per_sec, ms(f.p50), ms(f.p99));
            theirs.push(f);
        }
        drop(etcd);

        println!();
        println!("writes through the full path, 3 nodes with fsync, {VALUE_BYTES}-byte values, {secs}s per level ({version})");
        println!(
            "{:>7}  {:>12} {:>8} {:>8} {:>6}  {:>12} {:>8} {:>8} {:>6}  {:>7}",
            "clients", "plotter2/s", "p50 ms", "p99 ms", "errors", "etcd/s", "p50 ms", "p99 ms", "errors", "ratio"
        );
        for (o, t) in ours.iter().zip(&theirs) {
            println!(
                "{:>7}  {:>12.0} {:>8} {:>8} {:>6}  {:>12.0} {:>8} {:>8} {:>6}  {:>6.2}x",
                o.clients,
                o.per_sec,
                ms(o.p50),
                ms(o.p99),
                o.errors,
                t.per_sec,
                ms(t.p50),
                ms(t.p99),
                t.errors,
                o.per_sec / t.per_sec.max(1e-9)
            );
        }
    });
}
