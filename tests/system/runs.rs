//! Runs through real workers: a sweep to completion with outputs and provenance, bad tasks that
//! end failed with their reason while the worker keeps serving, and pools that only see their
//! own subtree.

use std::time::Duration;

use plotter2_node::protocol::RunState;

use crate::support::{
    Cluster, Opts, Stager, Worker, runs_of, wait_for, wait_runs_ended, write_bundle,
};

const LIMIT: Duration = Duration::from_secs(60);

/// A code bundle whose tasks are shell commands (no interpreter beyond sh needed).
fn code_manifest() -> String {
    serde_json::json!({"manifest_version": 1, "contains": {"package": {"tasks": {
        "train": {"kind": "command",
                  "run": ["sh", "train.sh", "{lr}", "{out}"],
                  "params": {"lr": 0.1}, "timeout": "30s", "retries": 1},
        "missing": {"kind": "command", "run": ["no-such-program-p2", "{out}"]},
        "undefined": {"kind": "command", "run": ["sh", "-c", "echo {seed}"]},
        "forever": {"kind": "command", "run": ["sleep", "600"], "timeout": "1s"},
        "chatty": {"kind": "command", "run": ["sh", "-c", "head -c 1000000000 /dev/zero"]},
        "flaky": {"kind": "command", "run": ["sh", "-c", "echo trying; exit 3"], "retries": 1},
        "long": {"kind": "command", "run": ["sh", "-c", "echo started; sleep 600"]}
    }}}})
    .to_string()
}

const TRAIN_SH: &[u8] =
    b"echo \"training with lr $1\"\nprintf 'lr,%s\\n' \"$1\" > \"$2/weights.csv\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_runs_to_completion_and_bad_tasks_fail_with_reasons() {
    let c = Cluster::start(1, Opts::default()).await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
    let _worker = Worker::start(&c, &c.dir.path().join("w1"), &store, "/", "w1");
    let code = c.dir.path().join("code");
    write_bundle(&code, Some(&code_manifest()), &[("train.sh", TRAIN_SH)]);
    let addr = "/sources/tali/experiment2";
    stager.cli_ok(&["push", code.to_str().unwrap(), addr]);
    let client = c.client().await;

    c.cli_ok(&["run", addr, "train", "--sweep", "lr=0.1,0.2,0.15,0.05,0.01"]);
    let runs = wait_runs_ended(&client, addr, 5, LIMIT).await;
    for r in &runs {
        assert_eq!(r.state, RunState::Succeeded, "{} {:?}", r.id, r.reason);
        assert_eq!(r.attempts.len(), 1, "{}", r.id);
        assert_eq!(r.attempts[0].worker, "w1");
        let out = r.output.as_ref().expect("output bundle");
        assert_eq!(out.version, 1);
    }
    let weights = stager.cli_ok(&["get", &format!("{addr}/sweep-1/lr=0.15@latest:weights.csv")]);
    assert_eq!(weights, "lr,0.15\n");
    let show = c.cli_json(&["show", &format!("{addr}/sweep-1/lr=0.15"), "--json"]);
    let meta = &show["bundles"][0]["manifest"]["meta"];
    assert_eq!(meta["task"], "train");
    assert_eq!(meta["params"]["lr"], 0.15);
    assert!(meta["run"].as_str().unwrap().starts_with('r'));
    assert!(meta["code"].as_str().unwrap().starts_with("b3:"));

    // The same sweep again reuses every output (nothing runs); --force runs again.
    c.cli_ok(&[
        "run",
        addr,
        "train",
        "--sweep",
        "lr=0.1,0.2,0.15,0.05,0.01",
        "--wait",
    ]);
    let again: Vec<_> = runs_of(&client, &format!("{addr}/sweep-2")).await;
    assert_eq!(again.len(), 5);
    for r in &again {
        assert_eq!(r.state, RunState::Succeeded);
        assert!(r.reused_from.is_some() && r.attempts.is_empty(), "{r:?}");
    }
    let weights = stager.cli_ok(&["get", &format!("{addr}/sweep-2/lr=0.15@latest:weights.csv")]);
    assert_eq!(weights, "lr,0.15\n");
    c.cli_ok(&[
        "run", addr, "train", "--sweep", "lr=0.15", "--force", "--wait",
    ]);
    let forced = runs_of(&client, &format!("{addr}/sweep-3")).await;
    assert_eq!(forced[0].attempts.len(), 1, "forced runs execute");
    assert_eq!(forced[0].reused_from, None);

    // Bad tasks end failed, each with a reason that says what happened.
    for (task, why) in [
        ("missing", "cannot start \"no-such-program-p2\""),
        ("undefined", "no param \"seed\""),
        ("forever", "timed out"),
        ("chatty", "more than 64 MiB"),
        ("flaky", "exit status 3"),
    ] {
        c.cli_ok(&["run", addr, task]);
        let target = addr.to_string();
        let r = wait_for(LIMIT, &format!("task {task} to end"), || {
            let client = client.clone();
            let target = target.clone();
            async move {
                runs_of(&client, &target)
                    .await
                    .into_iter()
                    .find(|r| r.task == task && r.state.is_finished())
            }
        })
        .await;
        assert_eq!(r.state, RunState::Failed, "{task}");
        let reason = r.reason.clone().unwrap_or_default();
        assert!(reason.contains(why), "{task}: {reason}");
        if task == "flaky" {
            assert_eq!(r.attempts.len(), 2, "retried once");
            assert!(
                reason.contains("trying"),
                "the log tail is in the reason: {reason}"
            );
        }
    }
    // The worker still serves; --wait returns once the run ended.
    let out = c.cli_ok(&["run", addr, "train", "--set", "lr=0.5", "--wait"]);
    assert!(out.contains("succeeded"), "{out}");
    let (ok, _, err) = c.cli(&["run", addr, "flaky", "--wait"]);
    assert!(
        !ok && err.contains("exit status 3"),
        "--wait fails with the reason: {err}"
    );

    // Logs: every attempt's, from the store.
    let r015 = runs
        .iter()
        .find(|r| r.node.to_string().ends_with("lr=0.15"))
        .unwrap();
    let log = stager.cli_ok(&["logs", &r015.id.to_string()]);
    assert_eq!(log, "training with lr 0.15\n");
    let flaky = runs_of(&client, addr)
        .await
        .into_iter()
        .find(|r| r.task == "flaky")
        .unwrap();
    let log = stager.cli_ok(&["logs", &flaky.id.to_string()]);
    assert_eq!(
        log.matches("[plotter2] exit status 3").count(),
        2,
        "both attempts, each with its reason: {log}"
    );

    // A running run: its log so far comes from its worker; cancel kills it.
    c.cli_ok(&["run", addr, "long"]);
    let long = wait_for(LIMIT, "the long run to start", || async {
        runs_of(&client, addr)
            .await
            .into_iter()
            .find(|r| r.task == "long" && r.state == RunState::Running)
    })
    .await;
    let id = long.id.to_string();
    wait_for(LIMIT, "the running log to show output", || async {
        let (ok, out, _) = stager.cli(&["logs", &id]);
        (ok && out.contains("started")).then_some(())
    })
    .await;
    c.cli_ok(&["cancel", &id]);
    let ended = wait_for(LIMIT, "the cancelled attempt to report", || async {
        let r = runs_of(&client, addr)
            .await
            .into_iter()
            .find(|r| r.id == long.id)?;
        r.attempts.last()?.finished_ms?;
        Some(r)
    })
    .await;
    assert_eq!(ended.state, RunState::Cancelled);
    assert!(
        ended
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("cancelled by tali")
    );
    let log = stager.cli_ok(&["logs", &id]);
    assert!(
        log.contains("started") && log.contains("cancelled"),
        "{log}"
    );
    let (ok, _, err) = c.cli(&["cancel", &id]);
    assert!(!ok && err.contains("already ended"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_only_see_their_subtree_and_may_not_overlap() {
    let c = Cluster::start(1, Opts::default()).await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
    let _a = Worker::start(&c, &c.dir.path().join("wa"), &store, "/lab/a", "wa");
    let _b = Worker::start(&c, &c.dir.path().join("wb"), &store, "/lab/b", "wb");
    let code = c.dir.path().join("code");
    write_bundle(&code, Some(&code_manifest()), &[("train.sh", TRAIN_SH)]);
    stager.cli_ok(&["push", code.to_str().unwrap(), "/lab"]);
    c.cli_ok(&["new", "/lab/a"]);
    c.cli_ok(&["new", "/lab/b"]);
    c.cli_ok(&["run", "/lab/a", "train", "--sweep", "lr=1,2,3"]);
    c.cli_ok(&["run", "/lab/b", "train", "--sweep", "lr=4,5,6"]);
    let client = c.client().await;
    for (sub, worker) in [("/lab/a", "wa"), ("/lab/b", "wb")] {
        let runs = wait_runs_ended(&client, sub, 3, LIMIT).await;
        for r in runs {
            assert_eq!(r.state, RunState::Succeeded, "{:?}", r.reason);
            assert!(
                r.attempts.iter().all(|a| a.worker == worker),
                "{} ran on {:?}",
                r.id,
                r.attempts
            );
        }
    }
    // A pool inside another pool's subtree is refused, saying why.
    let mut overlapping =
        Worker::start(&c, &c.dir.path().join("wx"), &store, "/lab/a/sweep-1", "wx");
    let status = overlapping.wait_exit(LIMIT);
    assert!(!status.success());
    let log = std::fs::read_to_string(c.dir.path().join("wx/wx.log")).unwrap();
    assert!(log.contains("must not overlap"), "{log}");
}

/// A sweep of `n` runs that each take about a second, at `addr`.
fn slow_code(dir: &std::path::Path) {
    let manifest = serde_json::json!({"manifest_version": 1, "contains": {"package": {"tasks": {
        "slow": {"kind": "command",
                 "run": ["sh", "-c", "sleep 1; echo {lr} > {out}/result.txt"],
                 "params": {"lr": 0}}}}}});
    write_bundle(
        dir,
        Some(&manifest.to_string()),
        &[("README", b"slow task")],
    );
}

/// Every run succeeded and each run node holds exactly one bundle version (stored once).
async fn assert_each_output_once(c: &Cluster, runs: &[plotter2_node::protocol::RunRecord]) {
    let client = c.client().await;
    for r in runs {
        assert_eq!(r.state, RunState::Succeeded, "{} {:?}", r.id, r.reason);
        let versions = crate::support::bundles_of(&client, &r.node.to_string()).await;
        assert_eq!(versions.len(), 1, "{}: output stored once", r.node);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_sweep_loses_nothing() {
    let c = Cluster::start(1, Opts::default()).await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
    let mut w1 = Worker::start(&c, &c.dir.path().join("w1"), &store, "/", "w1");
    let _w2 = Worker::start(&c, &c.dir.path().join("w2"), &store, "/", "w2");
    let code = c.dir.path().join("code");
    slow_code(&code);
    stager.cli_ok(&["push", code.to_str().unwrap(), "/exp"]);
    c.cli_ok(&["run", "/exp", "slow", "--sweep", "lr=1,2,3,4,5,6,7,8,9,10"]);
    let client = c.client().await;
    wait_for(LIMIT, "w1 to be running a run", || async {
        runs_of(&client, "/exp").await.into_iter().find(|r| {
            r.state == RunState::Running && r.attempts.last().is_some_and(|a| a.worker == "w1")
        })
    })
    .await;
    w1.kill9();
    let runs = wait_runs_ended(&client, "/exp", 10, Duration::from_secs(90)).await;
    assert_each_output_once(&c, &runs).await;
    let taken_over = runs.iter().filter(|r| r.attempts.len() > 1).count();
    assert!(taken_over >= 1, "w1's runs were redelivered to w2");
    for r in runs.iter().filter(|r| r.attempts.len() > 1) {
        assert_eq!(r.attempts.last().unwrap().worker, "w2");
    }
}

/// A stager and one worker on `c`, a 10-run sweep of the slow task at /exp, and the moment
/// its first run is running.
async fn slow_sweep_started(c: &Cluster) -> (Stager, Worker, plotter2_node::Client) {
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(c, &c.dir.path().join("stager"), &store);
    let worker = Worker::start(c, &c.dir.path().join("w1"), &store, "/", "w1");
    let code = c.dir.path().join("code");
    slow_code(&code);
    stager.cli_ok(&["push", code.to_str().unwrap(), "/exp"]);
    c.cli_ok(&["run", "/exp", "slow", "--sweep", "lr=1,2,3,4,5,6,7,8,9,10"]);
    let client = c.client().await;
    wait_for(LIMIT, "a run to start", || async {
        runs_of(&client, "/exp")
            .await
            .into_iter()
            .find(|r| r.state == RunState::Running)
    })
    .await;
    (stager, worker, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_sweep_loses_and_duplicates_nothing() {
    let mut c = Cluster::start(3, Opts::default()).await;
    let (_stager, _w, client) = slow_sweep_started(&c).await;
    let leader = c.wait_leader(LIMIT).await;
    c.coord(leader).kill9();
    let runs = wait_runs_ended(&client, "/exp", 10, Duration::from_secs(90)).await;
    assert_each_output_once(&c, &runs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_mid_sweep_loses_nothing() {
    let mut c = Cluster::start(1, Opts::default()).await;
    let (_stager, _w, client) = slow_sweep_started(&c).await;
    c.nats.restart();
    let runs = wait_runs_ended(&client, "/exp", 10, Duration::from_secs(120)).await;
    assert_each_output_once(&c, &runs).await;
}

/// Thousands of queued runs are all published (publishing everything before awaiting acks
/// once stalled at the client's 5,000 in-flight limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_sweep_is_published_whole() {
    let c = Cluster::start(1, Opts::default()).await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
    let code = c.dir.path().join("code");
    slow_code(&code);
    stager.cli_ok(&["push", code.to_str().unwrap(), "/big"]);
    let n = 6000;
    let values: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    c.cli_ok(&[
        "run",
        "/big",
        "slow",
        "--sweep",
        &format!("lr={}", values.join(",")),
    ]);
    let js = async_nats::jetstream::new(c.client().await.nats().clone());
    wait_for(LIMIT, "all runs on the work queue", || {
        let js = js.clone();
        async move {
            let mut stream = js
                .get_stream(plotter2_node::protocol::TASK_STREAM)
                .await
                .ok()?;
            let info = stream.info().await.ok()?;
            (info.state.messages == n as u64).then_some(())
        }
    })
    .await;
}
