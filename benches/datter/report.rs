//! The `report` part: the issue's `reward_report` pipeline over 100 bundles of 10,000 rows,
//! from `plotter2 run` to the report stored (commit, dispatch, the inputs fetched, datter,
//! the figure drawn, the output stored and committed), beside a numpy + matplotlib script
//! doing the same work on the same files (read them, one line per bundle with a legend, PNG
//! and SVG, the last/max matrix as CSV and an HTML page), timed from its data on disk to its
//! files written, with Python's start-up and imports left out.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::support::{Cluster, Opts, Stager, Worker, manifest_for, write_bundle};

const BUNDLES: usize = 100;
const ROWS: usize = 10_000;

const STEPS: &str = r#"[["access", {"from": "metrics", "columns": ["step", "reward"]}],
  ["label", {"by": "bundle"}],
  ["frame", {"title": "Reward per step"}], ["axis", {"x": "step", "y": "reward"}],
  ["legend"], ["plot", {"kind": "line"}],
  ["matrix", {"metrics": ["reward"], "reduce": ["last", "max"]}],
  ["report", {"title": "experiment2"}]]"#;

const REFERENCE: &str = r#"
import sys, time, os, glob
import numpy as np
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
t = time.perf_counter()
files = sorted(glob.glob(os.path.join(src, "*", "metrics.csv")))
data = [(os.path.basename(os.path.dirname(f)), np.loadtxt(f, delimiter=",", skiprows=1)) for f in files]
fig, ax = plt.subplots(figsize=(8, 5.6), dpi=100)
for name, d in data:
    ax.plot(d[:, 0], d[:, 1], label=name)
ax.set_title("Reward per step"); ax.set_xlabel("step"); ax.set_ylabel("reward")
ax.legend(fontsize=6, ncol=4)
fig.savefig(os.path.join(out, "reward.png")); fig.savefig(os.path.join(out, "reward.svg"))
rows = [(name, d[-1, 1], d[:, 1].max()) for name, d in data]
with open(os.path.join(out, "matrix.csv"), "w") as f:
    f.write("label,reward_last,reward_max\n")
    for r in rows:
        f.write("%s,%r,%r\n" % r)
with open(os.path.join(out, "index.html"), "w") as f:
    f.write("<h1>experiment2</h1><img src='reward.png'><table>")
    for r in rows:
        f.write("<tr><td>%s</td><td>%r</td><td>%r</td></tr>" % r)
    f.write("</table>")
print(time.perf_counter() - t)
"#;

/// Runs this part and prints its figures.
pub fn run() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = Cluster::start(1, Opts::default()).await;
        let store = c.dir.path().join("source").to_string_lossy().into_owned();
        let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
        let _w = Worker::start(&c, &c.dir.path().join("w1"), &store, "/", "w1");
        let addr = "/bench/experiment2";
        let code = c.dir.path().join("code");
        let steps: serde_json::Value = serde_json::from_str(STEPS).unwrap();
        let manifest = serde_json::json!({"manifest_version": 1, "contains": {"package": {
            "tasks": {"reward_report": {"kind": "pipeline",
                "inputs": {"metrics": "bundles/*:metrics.csv"}, "steps": steps}}}}});
        write_bundle(&code, Some(&manifest.to_string()), &[]);
        stager.cli_ok(&["push", code.to_str().unwrap(), addr]);
        let data = c.dir.path().join("data");
        let set_up = Instant::now();
        for b in 0..BUNDLES {
            let dir = data.join(format!("run{b:03}"));
            let mut csv = String::with_capacity(ROWS * 20);
            csv.push_str("step,reward\n");
            let rate = 0.002 + b as f64 * 0.0001;
            for s in 0..ROWS {
                let noise = (((s * 7919 + b * 104_729) % 1000) as f64 / 1000.0 - 0.5) * 0.04;
                let reward = 1.0 - (-(rate * s as f64)).exp() + noise;
                csv.push_str(&format!("{s},{reward:.5}\n"));
            }
            let at = format!("{addr}/run{b:03}");
            write_bundle(
                &dir,
                Some(&manifest_for(&at)),
                &[("metrics.csv", csv.as_bytes())],
            );
            stager.cli_ok(&["push", dir.to_str().unwrap(), &at]);
        }
        eprintln!(
            "  report: {BUNDLES} bundles × {ROWS} rows pushed in {:.1?}",
            set_up.elapsed()
        );

        let mut ours = Vec::new();
        for round in 0..3 {
            // Each round a new bundle, so the run executes instead of reusing the last one.
            let extra = data.join(format!("extra{round}"));
            let notes = format!("{round}");
            write_bundle(
                &extra,
                Some(&manifest_for(addr)),
                &[("notes.txt", notes.as_bytes())],
            );
            stager.cli_ok(&["push", extra.to_str().unwrap(), addr]);
            let start = Instant::now();
            c.cli_ok(&["run", addr, "reward_report", "--wait"]);
            ours.push(start.elapsed().as_secs_f64());
        }
        let runs = c.cli_json(&["runs", addr, "--json"]);
        let last = runs
            .as_array()
            .and_then(|r| r.iter().rev().find(|r| r["task"] == "reward_report"))
            .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        let log = stager.cli_ok(&["logs", &last]);

        let reference = reference(&data, &c.dir.path().join("reference"));
        let best = ours.iter().copied().fold(f64::INFINITY, f64::min);
        println!();
        println!(
            "reward_report, {BUNDLES} bundles × {ROWS} rows, run to stored report (best of 3)"
        );
        println!("  plotter2 (run → report committed): {best:.3} s  (rounds {ours:.3?})");
        match reference {
            Some(r) => println!(
                "  numpy + matplotlib, same work (files → files): {r:.3} s  ratio {:.2}",
                r / best
            ),
            None => println!("  numpy + matplotlib: not installed (pip install numpy matplotlib)"),
        }
        println!("  where the time goes (the run's log):");
        for line in log
            .lines()
            .filter(|l| l.contains(" ms") || l.contains("input "))
        {
            println!("    {line}");
        }
    });
}

/// The reference script's best time of 3, in seconds; `None` without numpy or matplotlib.
fn reference(data: &Path, out: &Path) -> Option<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let o = Command::new("python3")
            .args(["-c", REFERENCE])
            .arg(data)
            .arg(out)
            .env_remove("OPENBLAS_CORETYPE")
            .env_remove("OPENBLAS_L2_SIZE")
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let t: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().ok()?;
        best = best.min(t);
    }
    Some(best)
}
