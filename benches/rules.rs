//! Drop-to-report latency: from a bundle's rename into the inbox to the new version of the
//! report its rule rebuilds being listed, split into where the time goes:
//! - ingest: the rename → the ingest committed (the stager sees it, copies, hashes, uploads,
//!   commits; the leader stamps the commit);
//! - rule: the ingest committed → the report run created (the same commit: rules are decided
//!   in apply, so this is 0 unless a run is open and the trigger waits for it);
//! - dispatch: created → claimed by a worker (published on JetStream, fetched, claim committed);
//! - run: claimed → result committed (inputs fetched, the pipeline process, output stored);
//! - listed: result committed → the version seen by a client woken by its event.
//!
//! Two cases: a small report (over 3 to 7 bundles of 100 rows: 2 pushed first, then 5 timed
//! drops), and 100 bundles × 10,000 rows (99 pushed first, the 100th timed). Beside each, in
//! the same run, the reference: the same pipeline run by hand over the same files on local
//! disk (`plotter2 pipeline-run`, no system around it), so the difference is what plotter2
//! adds. One coordinator, a stager and a worker with `plotter2 up`'s defaults.
//!
//! Run: `cargo bench --bench rules` (needs `nats-server`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may stop at the first surprise

#[path = "../tests/system/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use plotter2_node::hints::Hints;
use plotter2_node::pipeline::{PipelinePlan, PlannedFile};
use plotter2_node::protocol::{Op, ReadOp, Reply, RunRecord};
use plotter2_node::{Address, Client};
use support::{Cluster, Opts, Stager, Worker, write_bundle};

const E: &str = "/sources/tali/experiment2";

fn steps() -> serde_json::Value {
    serde_json::json!([["access", {"from": "metrics", "columns": ["step", "reward"]}],
        ["label", {"by": "bundle"}],
        ["frame", {"title": "Reward per step"}], ["axis", {"x": "step", "y": "reward"}],
        ["legend"], ["plot", {"kind": "line"}],
        ["matrix", {"metrics": ["reward"], "reduce": ["last", "max"]}],
        ["report", {"title": "experiment2"}]])
}

fn code(dir: &Path) -> PathBuf {
    let manifest = serde_json::json!({"manifest_version": 1, "contains": {"package": {
        "tasks": {"reward_report": {"kind": "pipeline",
            "inputs": {"metrics": "bundles/*:metrics.csv"}, "steps": steps()}},
        "rules": [{"on": "bundle", "under": ".", "match": "**/metrics.csv", "run": "reward_report"}]}}});
    let d = dir.join("code");
    write_bundle(&d, Some(&manifest.to_string()), &[]);
    d
}

fn metrics(rows: usize, seed: usize) -> String {
    let mut s = String::from("step,reward\n");
    for step in 1..=rows {
        let r = 1.0 - (-(step as f64) / (50.0 + seed as f64)).exp();
        s.push_str(&format!("{step},{r:.5}\n"));
    }
    s
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// One timed drop, in milliseconds: total and its parts.
#[derive(Debug, Default, Clone, Copy)]
struct Split {
    total: f64,
    ingest: f64,
    rule: f64,
    dispatch: f64,
    run: f64,
    listed: f64,
}

struct Bench {
    c: Cluster,
    stager: Stager,
    _worker: Worker,
    client: Client,
}

impl Bench {
    async fn start() -> Self {
        let c = Cluster::start(1, Opts::default()).await;
        let store = c.dir.path().join("source").to_string_lossy().into_owned();
        let mut stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
        // `plotter2 up`'s default: a rescan every 2 s behind the inbox's file events.
        stager.kill9();
        stager.rescan = 2.0;
        stager.spawn();
        let worker = Worker::start(&c, &c.dir.path().join("w1"), &store, "/", "w1");
        let client = c.client().await;
        stager.cli_ok(&["push", code(c.dir.path()).to_str().unwrap(), E]);
        Bench {
            c,
            stager,
            _worker: worker,
            client,
        }
    }

    fn bundle_dir(&self, i: usize, rows: usize) -> PathBuf {
        let d = self.c.dir.path().join("data").join(format!("run{i}"));
        let manifest = format!(r#"{{"manifest_version": 1, "meta": {{"address": "{E}/run{i}"}}}}"#);
        let rows = metrics(rows, i);
        write_bundle(&d, Some(&manifest), &[("metrics.csv", rows.as_bytes())]);
        // A copy for the run by hand: the stager takes the dropped folder away.
        let copy = self.reference_file(i);
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::write(copy, rows).unwrap();
        d
    }

    async fn reports(&self) -> u64 {
        let op = Op::Read(ReadOp::Show {
            addr: Address::parse(&format!("{E}/meta/reports")).unwrap(),
        });
        match self.client.call(op).await {
            Ok(Reply::Node(n)) => n.bundles.len() as u64,
            _ => 0,
        }
    }

    async fn report_runs(&self) -> Vec<RunRecord> {
        let op = Op::Read(ReadOp::Runs {
            addr: Address::parse(E).unwrap(),
            after: None,
            limit: None,
        });
        let Ok(Reply::Runs(runs)) = self.client.call(op).await else {
            panic!("runs")
        };
        runs.into_iter()
            .filter(|r| r.task == "reward_report")
            .collect()
    }

    /// Waits, woken by events, until the report has `n` versions.
    async fn wait_reports(&self, hints: &mut Hints, n: u64, limit: Duration) -> Instant {
        let deadline = Instant::now() + limit;
        loop {
            if self.reports().await >= n {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "no report version {n} after {limit:?}"
            );
            hints.next_within(Duration::from_secs(1)).await;
        }
    }

    /// Pushes `dirs` (untimed) and waits until the rule has settled over them.
    async fn preload(&self, dirs: &[PathBuf]) {
        for d in dirs {
            self.stager.cli_ok(&["push", d.to_str().unwrap()]);
        }
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let runs = self.report_runs().await;
            let covered = runs.last().map_or(0, |r| r.selected.len());
            if runs.iter().all(|r| r.state.is_finished()) && covered > dirs.len() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the preload's reports did not settle"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Renames bundle `i` into the inbox and times it to its report.
    async fn drop_and_time(&self, i: usize, rows: usize) -> Split {
        let staged = self.bundle_dir(i, rows);
        let inbox = self.stager.inbox();
        std::fs::create_dir_all(&inbox).unwrap();
        let mut hints = Hints::subscribe(
            self.client.nats(),
            &Address::parse(&format!("{E}/meta/reports")).unwrap(),
            Some("bundle_added"),
        )
        .await
        .unwrap();
        let before = self.reports().await;
        let t0_ms = now_ms();
        let t0 = Instant::now();
        std::fs::rename(&staged, inbox.join(format!("run{i}"))).unwrap();
        let seen = self
            .wait_reports(&mut hints, before + 1, Duration::from_secs(600))
            .await;
        let total = (seen - t0).as_secs_f64() * 1000.0;
        let seen_ms = t0_ms + total as u64;
        let run = self.report_runs().await.pop().unwrap();
        let ingest_ms = match &run.cause.as_ref().unwrap().trigger {
            plotter2_node::protocol::Trigger::Bundle { .. } => run.created_ms,
            other => panic!("a timed drop should fire the rule itself, not {other}"),
        };
        let started = run.attempts.last().unwrap().started_ms;
        let finished = run.finished_ms.unwrap();
        let ms = |a: u64, b: u64| b.saturating_sub(a) as f64;
        Split {
            total,
            ingest: ms(t0_ms, ingest_ms),
            rule: ms(ingest_ms, run.created_ms),
            dispatch: ms(run.created_ms, started),
            run: ms(started, finished),
            listed: ms(finished, seen_ms),
        }
    }

    fn reference_file(&self, i: usize) -> PathBuf {
        self.c
            .dir
            .path()
            .join("by-hand-data")
            .join(format!("run{i}"))
            .join("metrics.csv")
    }

    /// The same pipeline by hand over the bundles' metrics files: `plotter2 pipeline-run`.
    fn by_hand(&self, n: usize) -> f64 {
        let dir = self.c.dir.path().join("by-hand");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("out")).unwrap();
        let files: Vec<PlannedFile> = (1..=n)
            .map(|i| {
                let path = self.reference_file(i);
                PlannedFile {
                    bundle: plotter2_node::bundle::Hash::of(path.to_string_lossy().as_bytes()),
                    address: Address::parse(&format!("{E}/run{i}")).unwrap(),
                    version: 1,
                    file: "metrics.csv".into(),
                    params: Default::default(),
                    path,
                }
            })
            .collect();
        let plan = PipelinePlan {
            node: Address::parse(E).unwrap(),
            task: "reward_report".into(),
            steps: steps().as_array().unwrap().clone(),
            inputs: [("metrics".to_owned(), files)].into(),
        };
        let plan_path = dir.join("pipeline.json");
        std::fs::write(&plan_path, serde_json::to_vec(&plan).unwrap()).unwrap();
        let t = Instant::now();
        let st = std::process::Command::new(env!("CARGO_BIN_EXE_plotter2"))
            .arg("pipeline-run")
            .arg(&plan_path)
            .arg("--out")
            .arg(dir.join("out"))
            .status()
            .unwrap();
        assert!(st.success());
        t.elapsed().as_secs_f64() * 1000.0
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn print_split(what: &str, s: &[Split], reference: f64) {
    let m = |f: fn(&Split) -> f64| median(s.iter().map(f).collect());
    println!(
        "{what}: {:.0} ms drop-to-report (median of {}; ingest {:.0}, rule {:.0}, dispatch {:.0}, \
         run {:.0}, listed {:.0}); the same pipeline by hand {reference:.0} ms ({:.1}× by hand)",
        m(|x| x.total),
        s.len(),
        m(|x| x.ingest),
        m(|x| x.rule),
        m(|x| x.dispatch),
        m(|x| x.run),
        m(|x| x.listed),
        m(|x| x.total) / reference
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = Bench::start().await;
        let pre: Vec<PathBuf> = (1..=2).map(|i| b.bundle_dir(i, 100)).collect();
        b.preload(&pre).await;
        let mut small = Vec::new();
        for i in 3..=7 {
            let s = b.drop_and_time(i, 100).await;
            println!("  drop {i}: {s:.0?}");
            small.push(s);
        }
        let reference = b.by_hand(5);
        print_split(
            "small report (3-7 bundles × 100 rows; by hand over 5)",
            &small,
            reference,
        );
        drop(b);

        let b = Bench::start().await;
        let pre: Vec<PathBuf> = (1..=99).map(|i| b.bundle_dir(i, 10_000)).collect();
        b.preload(&pre).await;
        let big = b.drop_and_time(100, 10_000).await;
        let reference = b.by_hand(100);
        print_split(
            "large report (100 bundles × 10,000 rows)",
            &[big],
            reference,
        );
    });
}
