//! Rules through real processes: reports that rebuild themselves when bundles arrive,
//! coalesced, across a leader kill in a burst; a failing report that waits for the next
//! bundle; and `watch`, which prints what it missed while cut off, once.

use std::time::Duration;

use serde_json::Value;

use crate::support::{Cluster, Opts, Proxy, Stager, Worker, runs_of, wait_for, write_bundle};

const E: &str = "/sources/tali/experiment2";

/// A report over every metrics.csv below the node, fired by every bundle that holds one.
fn code_manifest() -> String {
    serde_json::json!({"manifest_version": 1, "contains": {"package": {
        "tasks": {"report": {"kind": "pipeline",
                  "inputs": {"metrics": "bundles/*:metrics.csv"},
                  "steps": [["access", {"from": "metrics", "columns": ["step", "reward"]}],
                            ["label", {"by": ["address"]}],
                            ["matrix", {"metrics": ["reward"], "reduce": ["last"]}],
                            ["handoff", {"to": "meta/reports"}]]}},
        "rules": [{"on": "bundle", "under": ".", "match": "**/metrics.csv", "run": "report"}]}}})
    .to_string()
}

fn data_dir(c: &Cluster, name: &str, rows: &str) -> std::path::PathBuf {
    let dir = c.dir.path().join(name);
    let manifest = format!(r#"{{"manifest_version": 1, "meta": {{"address": "{E}/{name}"}}}}"#);
    write_bundle(&dir, Some(&manifest), &[("metrics.csv", rows.as_bytes())]);
    dir
}

/// A stager and a worker on `c`, and the report and its rule pushed to experiment2.
fn report_rule_on(c: &Cluster) -> (Stager, Worker) {
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(c, &c.dir.path().join("stager"), &store);
    let worker = Worker::start(c, &c.dir.path().join("w1"), &store, "/", "w1");
    let code = c.dir.path().join("code");
    write_bundle(&code, Some(&code_manifest()), &[]);
    stager.cli_ok(&["push", code.to_str().unwrap(), E]);
    (stager, worker)
}

/// `rules --json` once the report rule has nothing open or pending and has fired.
async fn settled(c: &Cluster, limit: Duration) -> Value {
    wait_for(limit, "the report rule to settle", || async {
        let (ok, out, _) = c.cli(&["rules", E, "--json"]);
        let v: Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
        let r = v
            .as_array()?
            .iter()
            .find(|r| r["rule"] == format!("report@{E}"))?;
        let quiet = r.get("open_run").is_none() && r.get("pending").is_none();
        (quiet && r["fired"].as_u64() >= Some(1)).then(|| r.clone())
    })
    .await
}

/// The rows of the latest report's matrix.
fn latest_rows(stager: &Stager) -> Vec<String> {
    let matrix = stager.cli_ok(&["get", &format!("{E}/meta/reports@latest:matrix.csv")]);
    matrix.lines().skip(1).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_quick_bundles_make_at_most_two_reports_and_the_last_covers_all_three() {
    let c = Cluster::start(1, Opts::default()).await;
    let (stager, _worker) = report_rule_on(&c);

    let dirs: Vec<_> = (1..=3)
        .map(|i| data_dir(&c, &format!("run{i}"), &format!("step,reward\n1,0.{i}\n")))
        .collect();
    std::thread::scope(|s| {
        for d in &dirs {
            s.spawn(|| stager.cli_ok(&["push", d.to_str().unwrap()]));
        }
    });
    let rule = settled(&c, Duration::from_secs(60)).await;
    let client = c.client().await;
    let reports: Vec<_> = runs_of(&client, E)
        .await
        .into_iter()
        .filter(|r| r.task == "report")
        .collect();
    assert!(
        (1..=2).contains(&reports.len()),
        "three bundles, at most two report runs: {reports:#?}"
    );
    assert!(reports.iter().all(|r| r.state.is_finished()));
    let last = reports.last().unwrap();
    assert_eq!(rule["last_fired"]["run"], last.id.to_string());
    let rows = latest_rows(&stager);
    assert_eq!(
        rows.len(),
        3,
        "the latest report covers all three: {rows:?}"
    );
    for i in 1..=3 {
        assert!(
            rows.iter().any(|r| r.contains(&format!("run{i}"))),
            "{rows:?}"
        );
    }
    // Its own output, landing under the subtree it watches, fired nothing.
    let text = c.cli_ok(&["rules", E]);
    assert!(text.contains("the output of its own task"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_report_does_not_fire_again_by_itself_and_the_next_bundle_does() {
    let c = Cluster::start(1, Opts::default()).await;
    let (stager, _worker) = report_rule_on(&c);
    // A row with a reward that is not a number fails the report.
    let bad = data_dir(&c, "bad", "step,reward\n1,lots\n");
    stager.cli_ok(&["push", bad.to_str().unwrap()]);
    let client = c.client().await;
    let reports = |runs: Vec<plotter2_node::protocol::RunRecord>| -> Vec<_> {
        runs.into_iter()
            .filter(|r| r.task == "report")
            .collect::<Vec<_>>()
    };
    let failed = wait_for(Duration::from_secs(60), "the report to fail", || async {
        let r = reports(runs_of(&client, E).await);
        (r.len() == 1 && r[0].state.is_finished()).then(|| r[0].clone())
    })
    .await;
    assert_eq!(
        failed.state,
        plotter2_node::protocol::RunState::Failed,
        "{failed:#?}"
    );
    // Rules are decided in the commit that ends the run: with nothing pending, nothing more.
    let rule = settled(&c, Duration::from_secs(10)).await;
    assert_eq!(rule["fired"], 1, "{rule:#}");
    assert_eq!(reports(runs_of(&client, E).await).len(), 1);

    let good = data_dir(&c, "good", "step,reward\n1,0.5\n");
    stager.cli_ok(&["push", good.to_str().unwrap()]);
    let rule = wait_for(
        Duration::from_secs(10),
        "the next bundle to fire",
        || async {
            let (_, out, _) = c.cli(&["rules", E, "--json"]);
            let v: Value = serde_json::from_str(&out).ok()?;
            let r = v.as_array()?.first()?.clone();
            (r["fired"] == 2).then_some(r)
        },
    )
    .await;
    assert_eq!(reports(runs_of(&client, E).await).len(), 2, "{rule:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_cut_off_for_a_while_prints_what_it_missed_once() {
    let c = Cluster::start(1, Opts::default()).await;
    let mut proxy = Proxy::start(c.nats.port).await;
    let out_path = c.dir.path().join("watch.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut watch = std::process::Command::new(env!("CARGO_BIN_EXE_plotter2"))
        .args(["watch", "/w", "--json", "--since", "0", "--timeout", "60"])
        .env("P2_NATS", proxy.url())
        .env("P2_USER", "tali")
        .stdout(out)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = || -> Vec<Value> {
        std::fs::read_to_string(&out_path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let seen = |addr: &str, event: &str| {
        let (addr, event) = (addr.to_owned(), event.to_owned());
        move |v: &Value| v["address"] == addr.as_str() && v["event"] == event.as_str()
    };
    c.cli_ok(&["new", "/w/a"]);
    wait_for(
        Duration::from_secs(20),
        "the watch to print /w/a",
        || async { lines().iter().any(seen("/w/a", "created")).then_some(()) },
    )
    .await;

    proxy.cut().await;
    c.cli_ok(&["new", "/w/b"]);
    c.cli_ok(&["set", "/w/b", "k=1"]);
    c.cli_ok(&["new", "/elsewhere"]);
    assert!(
        !lines().iter().any(seen("/w/b", "created")),
        "it was cut off"
    );
    proxy.restore().await;
    wait_for(Duration::from_secs(30), "the watch to catch up", || async {
        lines().iter().any(seen("/w/b", "config_set")).then_some(())
    })
    .await;
    c.cli_ok(&["new", "/w/c"]);
    wait_for(Duration::from_secs(20), "the watch to go on", || async {
        lines().iter().any(seen("/w/c", "created")).then_some(())
    })
    .await;
    let _ = watch.kill();
    let _ = watch.wait();

    let got = lines();
    let mut keys: Vec<(u64, u64)> = got
        .iter()
        .map(|v| (v["seq"].as_u64().unwrap(), v["index"].as_u64().unwrap()))
        .collect();
    let printed = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), printed, "every event once: {got:#?}");
    assert!(keys.is_sorted(), "in order: {keys:?}");
    let addrs: Vec<&str> = got.iter().filter_map(|v| v["address"].as_str()).collect();
    assert!(addrs.iter().all(|a| a.starts_with("/w")), "{addrs:?}");
    for (a, e) in [
        ("/w", "created"),
        ("/w/a", "created"),
        ("/w/b", "created"),
        ("/w/b", "config_set"),
        ("/w/c", "created"),
    ] {
        assert_eq!(
            got.iter().filter(|v| seen(a, e)(v)).count(),
            1,
            "{a} {e}: {got:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_in_a_burst_of_twenty_bundles_leaves_every_bundle_reported_once() {
    use plotter2_node::protocol::Trigger;
    let mut c = Cluster::start(3, Opts::default()).await;
    let (stager, _worker) = report_rule_on(&c);
    let dirs: Vec<_> = (1..=20)
        .map(|i| data_dir(&c, &format!("run{i}"), &format!("step,reward\n1,{i}\n")))
        .collect();
    let leader = c.wait_leader(Duration::from_secs(20)).await;

    // Four pushers of five bundles each; the leader is killed once five are acknowledged.
    let (acked, acks) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        for part in dirs.chunks(5) {
            let acked = acked.clone();
            let stager = &stager;
            s.spawn(move || {
                for d in part {
                    stager.cli_ok(&["push", d.to_str().unwrap()]);
                    let _ = acked.send(());
                }
            });
        }
        drop(acked);
        for _ in 0..5 {
            acks.recv().unwrap();
        }
        c.coord(leader).kill9();
    });
    c.wait_leader(Duration::from_secs(20)).await;
    c.coord(leader).restart();

    settled(&c, Duration::from_secs(120)).await;
    let statuses = c.wait_converged(Duration::from_secs(30)).await;
    assert_eq!(statuses.len(), 3);
    assert!(
        statuses
            .iter()
            .all(|s| s.state_digest == statuses[0].state_digest),
        "every replica derived the same runs: {statuses:#?}"
    );
    let rows = latest_rows(&stager);
    assert_eq!(rows.len(), 20, "every bundle is covered: {rows:?}");

    let client = c.client().await;
    let reports: Vec<_> = runs_of(&client, E)
        .await
        .into_iter()
        .filter(|r| r.task == "report")
        .collect();
    let mut triggers: Vec<String> = reports
        .iter()
        .map(
            |r| match &r.cause.as_ref().expect("made by the rule").trigger {
                Trigger::Coalesced { first, .. } => first.to_string(),
                t => t.to_string(),
            },
        )
        .collect();
    let n = triggers.len();
    triggers.sort();
    triggers.dedup();
    assert_eq!(triggers.len(), n, "no trigger fired twice: {triggers:#?}");
    eprintln!("{n} report runs for 20 bundles");
    assert!(n < 20, "bursts coalesce: {n} report runs for 20 bundles");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_by_the_leaders_clock_when_nothing_else_is_committed() {
    let c = Cluster::start(1, Opts::default()).await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
    let _worker = Worker::start(&c, &c.dir.path().join("w1"), &store, "/", "w1");
    let code = c.dir.path().join("code");
    let manifest = serde_json::json!({"manifest_version": 1, "contains": {"package": {
        "tasks": {"tick": {"kind": "command", "run": ["true"]}},
        "rules": [{"on": "schedule", "every": "1s", "run": "tick"}]}}});
    write_bundle(&code, Some(&manifest.to_string()), &[]);
    stager.cli_ok(&["push", code.to_str().unwrap(), E]);
    let rule = wait_for(
        Duration::from_secs(30),
        "the schedule to fire twice",
        || async {
            let (_, out, _) = c.cli(&["rules", E, "--json"]);
            let v: Value = serde_json::from_str(&out).ok()?;
            let r = v.as_array()?.first()?.clone();
            (r["fired"].as_u64() >= Some(2)).then_some(r)
        },
    )
    .await;
    assert!(rule["next_due_ms"].as_u64().is_some(), "{rule:#}");
    // The ticks are requests of their own, by plotter2.
    let requests = c.cli_json(&["requests", "--json"]);
    let ticks = requests
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verb"] == "tick" && r["user"] == "plotter2")
        .count();
    assert!(ticks >= 1, "{requests:#}");
}
