//! Pipeline tasks through a real worker: inputs selected across a node's bundles and its
//! children, run by datter in a process of its own, the results stored as the node's next
//! version; bad data fails the run naming the step and the file while the worker keeps
//! serving, and so does a pipeline stopped by its timeout or a cancel; bad steps are refused
//! when the manifest is pushed.

use crate::support::{Cluster, Opts, Stager, Worker, runs_of, wait_for, write_bundle};

fn code_manifest() -> String {
    serde_json::json!({"manifest_version": 1, "contains": {"package": {"tasks": {
        "report": {"kind": "pipeline",
                   "inputs": {"metrics": "bundles/*:metrics.csv"},
                   "steps": [["access", {"from": "metrics", "columns": ["step", "reward"]}],
                             ["label", {"by": ["address"]}],
                             ["matrix", {"metrics": ["reward"], "reduce": ["last", "max"]}]]},
        "page": {"kind": "pipeline",
                 "inputs": {"metrics": "bundles/*:metrics.csv"},
                 "steps": ["access", ["matrix", {"metrics": ["reward"], "reduce": ["max"]}],
                           ["report", {"title": "experiment2 <rewards>"}], "handoff"]},
        "bounded": {"kind": "pipeline", "memory": "1MiB",
                    "inputs": {"big": "big@latest:big.csv"}, "steps": ["access", "mean"]},
        // A picture of 16384² pixels takes far longer than its timeout to draw and encode.
        "slow": {"kind": "pipeline", "timeout": "2s",
                 "inputs": {"metrics": "bundles/*:metrics.csv"},
                 "steps": ["access", ["frame", {"width": 16384, "height": 16384}],
                           ["plot", {"x": "step", "y": "reward"}]]},
        "slower": {"kind": "pipeline",
                   "inputs": {"metrics": "bundles/*:metrics.csv"},
                   "steps": ["access", ["frame", {"width": 16384, "height": 16384}],
                             ["plot", {"x": "step", "y": "reward"}], ["frame", {"width": 16384, "height": 16384}],
                             ["plot", {"x": "step", "y": "reward"}]]},
        "broken": {"kind": "pipeline",
                   "inputs": {"bad": "ragged@latest:bad.csv"},
                   "steps": ["access", "label", "mean"]}
    }}}})
    .to_string()
}

fn data_manifest(addr: &str) -> String {
    format!(r#"{{"manifest_version": 1, "meta": {{"address": "{addr}"}}}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_reads_its_inputs_across_children_and_bad_data_names_the_file() {
    let c = Cluster::start(1, Opts::default()).await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
    let _worker = Worker::start(&c, &c.dir.path().join("w1"), &store, "/", "w1");
    let addr = "/sources/tali/experiment2";
    let code = c.dir.path().join("code");
    write_bundle(&code, Some(&code_manifest()), &[]);
    stager.cli_ok(&["push", code.to_str().unwrap(), addr]);
    for (child, rows) in [
        ("run1", "step,reward\n1,0.5\n2,0.7\n3,0.6\n"),
        ("run2", "step,reward\n1,0.1\n2,0.9\n"),
    ] {
        let dir = c.dir.path().join(child);
        let at = format!("{addr}/{child}");
        write_bundle(
            &dir,
            Some(&data_manifest(&at)),
            &[("metrics.csv", rows.as_bytes())],
        );
        stager.cli_ok(&["push", dir.to_str().unwrap()]);
    }

    let out = c.cli_ok(&["run", addr, "report", "--wait"]);
    assert!(out.contains("succeeded"), "{out}");
    let matrix = stager.cli_ok(&["get", &format!("{addr}@latest:matrix.csv")]);
    let lines: Vec<&str> = matrix.lines().collect();
    assert_eq!(lines.len(), 3, "a header and one row per child: {matrix}");
    assert!(
        lines[0].contains("reward_last") && lines[0].contains("reward_max"),
        "{matrix}"
    );
    assert!(lines[1].contains("run1") && lines[1].contains("0.6") && lines[1].contains("0.7"));
    assert!(
        lines[2].contains("run2") && lines[2].contains("0.9"),
        "{matrix}"
    );
    let data = stager.cli_ok(&["get", &format!("{addr}@latest:data.csv")]);
    assert!(data.contains("run1") && data.contains("run2"), "{data}");

    // The same inputs again: reused. A new bundle under the node: the report runs anew.
    c.cli_ok(&["run", addr, "report", "--wait"]);
    let client = c.client().await;
    let reports = |runs: Vec<plotter2_node::protocol::RunRecord>| -> Vec<_> {
        runs.into_iter().filter(|r| r.task == "report").collect()
    };
    let runs = reports(runs_of(&client, addr).await);
    assert_eq!(runs.len(), 2);
    assert_eq!(
        runs[1].reused_from,
        Some(runs[0].id),
        "its own report is not its input"
    );
    assert_eq!(
        runs[0].selected.len(),
        3,
        "the code and two children: {:?}",
        runs[0].selected
    );
    let dir = c.dir.path().join("run3");
    let at = format!("{addr}/run3");
    write_bundle(
        &dir,
        Some(&data_manifest(&at)),
        &[("metrics.csv", b"step,reward\n1,2.5\n")],
    );
    stager.cli_ok(&["push", dir.to_str().unwrap()]);
    c.cli_ok(&["run", addr, "report", "--wait"]);
    let runs = reports(runs_of(&client, addr).await);
    assert_eq!(runs[2].reused_from, None, "a new bundle is new input");
    assert_eq!(runs[2].selected.len(), 4);
    let matrix = stager.cli_ok(&["get", &format!("{addr}@latest:matrix.csv")]);
    assert!(
        matrix.contains("run3") && matrix.contains("2.5"),
        "{matrix}"
    );

    // A report page, handed off below the node; run again, it is reused in the same place.
    c.cli_ok(&["run", addr, "page", "--wait"]);
    let reports = format!("{addr}/meta/reports");
    let page = stager.cli_ok(&["get", &format!("{reports}@latest:index.html")]);
    assert!(
        page.contains("<h1>experiment2 &lt;rewards&gt;</h1>"),
        "{page}"
    );
    assert!(
        page.contains("href=\"matrix.csv\"") && page.contains("reward_max"),
        "{page}"
    );
    let matrix = stager.cli_ok(&["get", &format!("{reports}@1:matrix.csv")]);
    assert!(matrix.contains("2.5"), "{matrix}");
    c.cli_ok(&["run", addr, "page", "--wait"]);
    let pages: Vec<_> = runs_of(&client, addr)
        .await
        .into_iter()
        .filter(|r| r.task == "page")
        .collect();
    assert_eq!(pages[1].reused_from, Some(pages[0].id));
    let out = pages[1].output.as_ref().unwrap();
    assert_eq!(
        (out.version, out.at.as_ref().map(|a| a.to_string())),
        (1, Some(reports.clone()))
    );
    let show = c.cli_json(&["show", &reports, "--json"]);
    assert_eq!(
        show["bundles"].as_array().unwrap().len(),
        1,
        "one version: {show}"
    );

    // A ragged CSV fails the run; the reason names the step, the op and the file as the
    // user knows it, and the worker goes on serving.
    let dir = c.dir.path().join("ragged");
    let at = format!("{addr}/ragged");
    write_bundle(
        &dir,
        Some(&data_manifest(&at)),
        &[("bad.csv", b"step,reward\n1,2\n3\n")],
    );
    stager.cli_ok(&["push", dir.to_str().unwrap()]);
    let (ok, _, err) = c.cli(&["run", addr, "broken", "--wait"]);
    assert!(!ok, "a ragged CSV fails the run");
    assert!(err.contains("step 0 (access)"), "{err}");
    assert!(err.contains(&format!("{at}@1:bad.csv")), "{err}");
    // An input larger than the task's memory limit fails the run before it is read.
    let dir = c.dir.path().join("big");
    let at = format!("{addr}/big");
    let mut big = String::from("a,b\n");
    while big.len() < 2 << 20 {
        big.push_str("1.25,2.5\n");
    }
    write_bundle(
        &dir,
        Some(&data_manifest(&at)),
        &[("big.csv", big.as_bytes())],
    );
    stager.cli_ok(&["push", dir.to_str().unwrap()]);
    let (ok, _, err) = c.cli(&["run", addr, "bounded", "--wait"]);
    assert!(!ok, "too large for its memory");
    assert!(
        err.contains("step 0 (access)")
            && err.contains(&format!("{at}@1:big.csv"))
            && err.contains("memory limit of 1 MiB"),
        "{err}"
    );
    let (ok, out, err) = c.cli(&["run", addr, "report", "--wait", "--force"]);
    assert!(
        ok && out.contains("succeeded"),
        "the worker still serves: {out} {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_runs_long_is_stopped_by_its_timeout_and_by_cancel() {
    use plotter2_node::protocol::RunState;
    let c = Cluster::start(1, Opts::default()).await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
    let _worker = Worker::start(&c, &c.dir.path().join("w1"), &store, "/", "w1");
    let addr = "/sources/tali/slow";
    let code = c.dir.path().join("code");
    write_bundle(
        &code,
        Some(&code_manifest()),
        &[("metrics.csv", b"step,reward\n1,0.5\n2,0.7\n")],
    );
    stager.cli_ok(&["push", code.to_str().unwrap(), addr]);
    let client = c.client().await;
    let limit = std::time::Duration::from_secs(60);

    let (ok, _, err) = c.cli(&["run", addr, "slow", "--wait"]);
    assert!(!ok && err.contains("timed out"), "{err}");

    c.cli_ok(&["run", addr, "slower"]);
    let id = wait_for(limit, "the slower run to draw", || async {
        let r = runs_of(&client, addr)
            .await
            .into_iter()
            .find(|r| r.task == "slower" && r.state == RunState::Running)?;
        let id = r.id.to_string();
        let (ok, log, _) = stager.cli(&["logs", &id]);
        (ok && log.contains("step 0 (access)")).then_some(id)
    })
    .await;
    c.cli_ok(&["cancel", &id]);
    let ended = wait_for(limit, "the cancelled pipeline to end", || async {
        let r = runs_of(&client, addr)
            .await
            .into_iter()
            .find(|r| r.id.to_string() == id)?;
        r.attempts.last()?.finished_ms?;
        Some(r)
    })
    .await;
    assert_eq!(ended.state, RunState::Cancelled, "{ended:?}");

    let (ok, out, err) = c.cli(&["run", addr, "report", "--wait"]);
    assert!(
        ok && out.contains("succeeded"),
        "the worker still serves: {out} {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_steps_are_refused_at_push_naming_task_step_op_and_param() {
    let c = Cluster::start(1, Opts::default()).await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
    for (task, want) in [
        (
            serde_json::json!({"kind": "pipeline", "inputs": {"m": "bundles/*:m.csv"},
                               "steps": ["access", ["plott", {}]]}),
            vec!["contains.package.tasks.t.steps[1]", "plott"],
        ),
        (
            serde_json::json!({"kind": "pipeline", "inputs": {"m": "bundles/*:m.csv"},
                               "steps": ["access", ["page", {"size": "ten"}]]}),
            vec!["steps[1]", "\"size\""],
        ),
        (
            serde_json::json!({"kind": "pipeline", "inputs": {"m": "bundles/*:m.csv", "n": ".:n.csv"},
                               "steps": [["access", {"from": "m"}]]}),
            vec!["no step reads the input \"n\""],
        ),
        (
            serde_json::json!({"kind": "pipeline", "inputs": {"m": "bundles/newest:m.csv"},
                               "steps": ["access"]}),
            vec!["contains.package.tasks.t.inputs.m", "*, latest or a number"],
        ),
        (
            serde_json::json!({"kind": "pipeline"}),
            vec!["contains.package.tasks.t.steps", "needs its steps"],
        ),
    ] {
        let manifest = serde_json::json!({"manifest_version": 1,
            "contains": {"package": {"tasks": {"t": task}}}});
        let dir = tempfile::tempdir().unwrap();
        write_bundle(dir.path(), Some(&manifest.to_string()), &[]);
        let (ok, _, err) = stager.cli(&["push", dir.path().to_str().unwrap(), "/x"]);
        assert!(!ok, "refused: {manifest}");
        for w in want {
            assert!(err.contains(w), "{w:?} in: {err}");
        }
    }
}

/// The issue's example as a user runs it: `plotter2 up --workers 2`, the example code bundle,
/// a sweep of `train`, then the report and the clusters, CLI only.
#[test]
fn the_example_runs_end_to_end_through_up() {
    use crate::runs::{Up, cli_within};
    let limit = std::time::Duration::from_secs(120);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut up = Up::two_workers(&home);
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/experiment2");
    let addr = "/sources/tali/experiment2";
    let cli = |args: &[&str]| {
        let (ok, out) = cli_within(&home, args, limit);
        assert!(ok, "plotter2 {args:?}:\n{out}");
        out
    };
    cli(&["push", example]);
    let out = cli(&[
        "run",
        addr,
        "train",
        "--sweep",
        "lr=0.1,0.2,0.15,0.05,0.01",
        "--wait",
    ]);
    assert_eq!(out.matches("succeeded").count(), 5, "{out}");
    // The example's rules rebuild the report from every run's metrics, and compare the
    // sweep when train runs succeed: wait until neither has a run open or pending.
    let deadline = std::time::Instant::now() + limit;
    let rules = loop {
        let rules: serde_json::Value =
            serde_json::from_str(&cli(&["rules", addr, "--json"])).unwrap();
        let quiet = rules.as_array().unwrap().iter().all(|r| {
            r.get("open_run").is_none()
                && r.get("pending").is_none()
                && r["fired"].as_u64() >= Some(1)
        });
        if quiet {
            break rules;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rules did not settle: {rules:#}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(rules.as_array().unwrap().len(), 2, "{rules:#}");
    let compared = cli(&["get", &format!("{addr}/meta/compare@latest:matrix.csv")]);
    assert_eq!(
        compared.lines().count(),
        6,
        "a row per sweep run: {compared}"
    );
    let r = dir.path().join("r");
    cli(&[
        "get",
        &format!("{addr}/meta/reports@latest"),
        "--to",
        r.to_str().unwrap(),
    ]);
    let page = std::fs::read_to_string(r.join("index.html")).unwrap();
    assert!(page.contains("<h1>experiment2</h1>"), "{page}");
    assert!(
        page.contains("<img src=\"1-reward-per-step.png\""),
        "{page}"
    );
    assert!(
        page.contains("reward_last") && page.contains("reward_max"),
        "{page}"
    );
    let png = std::fs::read(r.join("1-reward-per-step.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let svg = std::fs::read_to_string(r.join("1-reward-per-step.svg")).unwrap();
    assert!(
        svg.contains("Reward per step") && svg.contains(">step<"),
        "titled, axes named"
    );
    let matrix = std::fs::read_to_string(r.join("matrix.csv")).unwrap();
    assert_eq!(matrix.lines().count(), 6, "a row per sweep run: {matrix}");

    cli(&["run", addr, "clusters", "--wait"]);
    let svg = cli(&["get", &format!("{addr}/meta/reports@latest:figure-1.svg")]);
    assert!(
        svg.contains("cluster 0") && svg.contains("pc1"),
        "clusters named"
    );
    assert!(!svg.contains("noise"), "the noise is dropped");
    cli(&["run", addr, "seed", "--wait"]);
    let svg = cli(&["get", &format!("{addr}/meta/reports@latest:figure-1.svg")]);
    for lr in ["lr=0.1", "lr=0.2", "lr=0.15", "lr=0.05", "lr=0.01"] {
        assert!(svg.contains(lr), "the legend names {lr}");
    }
    up.stop();
}
