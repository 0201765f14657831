//! Runs per second through the whole path — one `run --sweep` request of N runs, committed,
//! dispatched over JetStream, executed by 2 workers × 4 slots, each claim and result
//! committed — for two task kinds: the empty pipeline, which starts no process (the dispatch
//! path alone), and the command `true`. Beside them, measured in the same run: the machine's
//! process-spawn limit, `xargs -P 8` running `true` N times; and, when Python has
//! `dask.distributed`, a Dask LocalCluster with 2 workers running N no-op tasks.
//!
//! Run: `cargo bench --bench runs` (needs `nats-server`; Dask optional:
//! `pip install 'dask[distributed]'`). `P2_BENCH_RUNS` sets N (default 10,000). Then the same
//! runs again with the coordinator and workers exporting spans to arize-phoenix (or to
//! `P2_BENCH_OTLP_ENDPOINT`): the cost of tracing (`P2_BENCH_SKIP_TRACING=1` leaves it out).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may stop at the first surprise

#[path = "../tests/system/support.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use plotter2_node::Client;
use plotter2_node::protocol::{AttemptUpdate, Op, ReadOp, Reply, RunOutcome, WriteOp};
use support::{Cluster, Opts, Stager, Worker, write_bundle};

/// Reads the request log from `after` until `n` runs have finished; returns the last seq read.
async fn wait_finished(client: &Client, mut after: u64, n: usize, start: Instant) -> u64 {
    let mut finished = 0usize;
    while finished < n {
        let Ok(Reply::Requests(page)) = client
            .call(Op::Read(ReadOp::Requests { after, limit: 1000 }))
            .await
        else {
            panic!("requests");
        };
        for r in &page {
            let WriteOp::Attempts { items, .. } = &r.payload else {
                continue;
            };
            for (i, item) in items.iter().enumerate() {
                let refused = r.refused.iter().any(|x| x.index as usize == i);
                if let AttemptUpdate::Finished { outcome, .. } = item
                    && !refused
                {
                    assert!(
                        matches!(outcome, RunOutcome::Succeeded { .. }),
                        "every no-op run succeeds: {outcome:?}"
                    );
                    finished += 1;
                }
            }
        }
        after = page.last().map_or(after, |r| r.seq);
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "{finished}/{n} after 30 min"
        );
        if page.len() < 1000 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    after
}

/// One coordinator, a stager and 2 workers (with `env`), and `n` runs of each task kind as one
/// sweep: how long until all ended, for the empty pipeline and the command `true`.
async fn plotter2_runs(n: usize, env: Vec<(String, String)>) -> (Duration, Duration) {
    let c = Cluster::start(
        1,
        Opts {
            env: env.clone(),
            ..Opts::default()
        },
    )
    .await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
    let _w1 = Worker::start_with_env(&c, &c.dir.path().join("w1"), &store, "/", "w1", &env);
    let _w2 = Worker::start_with_env(&c, &c.dir.path().join("w2"), &store, "/", "w2", &env);
    let code = c.dir.path().join("code");
    let manifest = serde_json::json!({"manifest_version": 1, "contains": {"package": {"tasks": {
        "empty": {"kind": "pipeline", "steps": [], "params": {"i": 0}},
        "true": {"kind": "command", "run": ["true"], "params": {"i": 0}}}}}});
    write_bundle(&code, Some(&manifest.to_string()), &[("README", b"no-op")]);
    stager.cli_ok(&["push", code.to_str().unwrap(), "/bench"]);
    let values: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let sweep = format!("i={}", values.join(","));
    let client = c.client().await.with_deadline(Duration::from_secs(120));
    let mut after = 0;
    let mut times = Vec::new();
    for task in ["empty", "true"] {
        let start = Instant::now();
        c.cli_ok(&["--timeout", "120", "run", "/bench", task, "--sweep", &sweep]);
        let submitted = start.elapsed();
        after = wait_finished(&client, after, n, start).await;
        let total = start.elapsed();
        eprintln!("  plotter2 {task}: submitted in {submitted:?}, all ended in {total:?}");
        times.push(total);
    }
    (times[0], times[1])
}

fn main() {
    let n: usize = std::env::var("P2_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pipeline, command) = rt.block_on(plotter2_runs(n, Vec::new()));
    // The cost of tracing: the same with the coordinator and the workers exporting spans.
    let traced = (std::env::var_os("P2_BENCH_SKIP_TRACING").is_none()).then(|| {
        let dir = tempfile::tempdir().unwrap();
        let (endpoint, phoenix) = match std::env::var("P2_BENCH_OTLP_ENDPOINT") {
            Ok(e) if !e.is_empty() => (e, None),
            _ => {
                let p = support::Phoenix::start(dir.path());
                (p.endpoint(), Some(p))
            }
        };
        eprintln!("plotter2 exporting spans to {endpoint} …");
        let env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), endpoint)];
        let times = rt.block_on(plotter2_runs(n, env));
        drop(phoenix);
        times
    });

    let start = Instant::now();
    let mut xargs = Command::new("xargs")
        .args(["-P", "8", "-n", "1", "true"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = xargs.stdin.take().unwrap();
        for i in 0..n {
            writeln!(stdin, "{i}").unwrap();
        }
    }
    assert!(xargs.wait().unwrap().success());
    let xargs_time = start.elapsed();

    let dask = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import time\nfrom dask.distributed import LocalCluster, Client\n\
                 c = LocalCluster(n_workers=2, threads_per_worker=4, processes=True)\n\
                 cl = Client(c)\nt = time.time()\n\
                 fs = cl.map(lambda i: None, range({n}), pure=False)\ncl.gather(fs)\n\
                 print(time.time() - t)\ncl.close(); c.close()"
            ),
        ])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        });

    let rate = |d: f64| n as f64 / d;
    let xargs_s = xargs_time.as_secs_f64();
    println!();
    println!("{n} runs, one sweep request each, 2 workers x 4 slots, 1 coordinator");
    println!(
        "plotter2 empty pipeline (dispatch path): {:>7.0} runs/s  ({:.3} ms per run)",
        rate(pipeline.as_secs_f64()),
        pipeline.as_secs_f64() * 1000.0 / n as f64
    );
    println!(
        "plotter2 command `true`:                 {:>7.0} runs/s  ({:.3} ms per run; {:.2} ms of slot time per run beyond xargs's)",
        rate(command.as_secs_f64()),
        command.as_secs_f64() * 1000.0 / n as f64,
        (command.as_secs_f64() - xargs_s) * 8.0 * 1000.0 / n as f64
    );
    println!(
        "xargs -P 8 true:                         {:>7.0} runs/s  command/xargs {:.2}",
        rate(xargs_s),
        xargs_s / command.as_secs_f64()
    );
    match dask {
        Some(d) => println!(
            "Dask LocalCluster (2 workers):           {:>7.0} tasks/s  pipeline/Dask {:.1}",
            rate(d),
            d / pipeline.as_secs_f64()
        ),
        None => println!("Dask: not installed (pip install 'dask[distributed]') — skipped"),
    }
    if let Some((tp, tc)) = traced {
        let loss =
            |off: Duration, on: Duration| (1.0 - off.as_secs_f64() / on.as_secs_f64()) * 100.0;
        println!(
            "with span export on: empty pipeline {:>7.0} runs/s ({:.1}% fewer), command `true` {:>7.0} runs/s ({:.1}% fewer)",
            rate(tp.as_secs_f64()),
            loss(pipeline, tp),
            rate(tc.as_secs_f64()),
            loss(command, tc)
        );
    }
}
