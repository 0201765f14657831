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
        "both attempts, each with its reason: {log}\nattempts: {:?}",
        flaky.attempts
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

/// Every run succeeded and its node holds exactly one bundle version produced by it (its
/// output, stored once).
async fn assert_each_output_once(c: &Cluster, runs: &[plotter2_node::protocol::RunRecord]) {
    let client = c.client().await;
    for r in runs {
        assert_eq!(r.state, RunState::Succeeded, "{} {:?}", r.id, r.reason);
        let versions = crate::support::bundles_of(&client, &r.node.to_string()).await;
        let outputs = versions
            .iter()
            .filter(|v| v["run"] == r.id.to_string())
            .count();
        assert_eq!(outputs, 1, "{}: output stored once: {versions:?}", r.node);
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

/// A cluster with a stager and a worker `w1` serving `/`, and a code bundle whose package has
/// `tasks` (and these files) pushed to `addr`.
struct Lab {
    w1: Worker,
    stager: Stager,
    store: String,
    c: Cluster,
}

async fn lab(opts: Opts, tasks: serde_json::Value, files: &[(&str, &[u8])], addr: &str) -> Lab {
    let c = Cluster::start(1, opts).await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
    let w1 = Worker::start(&c, &c.dir.path().join("w1"), &store, "/", "w1");
    let manifest =
        serde_json::json!({"manifest_version": 1, "contains": {"package": {"tasks": tasks}}});
    let code = c.dir.path().join("code");
    write_bundle(&code, Some(&manifest.to_string()), files);
    stager.cli_ok(&["push", code.to_str().unwrap(), addr]);
    Lab {
        w1,
        stager,
        store,
        c,
    }
}

/// A task that needs another runs after it and gets its output; `logs -f` follows a running
/// attempt to its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_hand_outputs_over_and_logs_follow_a_running_attempt() {
    let tasks = serde_json::json!({
        "train": {"kind": "command", "run": ["sh", "train.sh", "{lr}", "{out}"],
                  "params": {"lr": 0.1}},
        "report": {"kind": "command", "needs": ["train"],
                   "run": ["sh", "-c", "cat {needs.train.out}/weights.csv > {out}/report.txt"]},
        "ticker": {"kind": "command",
                   "run": ["sh", "-c", "echo one; sleep 1; echo two; sleep 1; echo three"]}
    });
    // Every part is bound: one left to `..` would be dropped (and killed) at once.
    let Lab {
        c,
        stager,
        store,
        w1: _w1,
    } = lab(Opts::default(), tasks, &[("train.sh", TRAIN_SH)], "/exp").await;

    let runs = c.cli_json(&[
        "run", "/exp", "report", "--set", "lr=0.7", "--wait", "--json",
    ]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "report and the train it needs: {runs:?}");
    assert_eq!(runs[0]["task"], "train");
    assert_eq!(runs[1]["task"], "report");
    for r in runs {
        assert_eq!(r["state"], "succeeded", "{r}");
    }
    assert_eq!(runs[1]["needs"][0]["run"], runs[0]["id"]);
    assert_eq!(runs[1]["needs"][0]["output"], runs[0]["output"]);
    let report = stager.cli_ok(&["get", "/exp@latest:report.txt"]);
    assert_eq!(report, "lr,0.7\n", "report read train's output");
    let show = c.cli_json(&["show", "/exp", "--json"]);
    assert_eq!(
        show["bundles"][2]["run"], runs[1]["id"],
        "outputs record their run"
    );

    // logs -f prints what the running attempt writes, as it writes it, and ends with it.
    let receipt = c.cli_json(&["run", "/exp", "ticker", "--json"]);
    let id = receipt["runs"][0].as_str().unwrap().to_owned();
    let client = c.client().await;
    wait_for(LIMIT, "the ticker to run", || async {
        runs_of(&client, "/exp")
            .await
            .into_iter()
            .find(|r| r.id.to_string() == id && r.state == RunState::Running)
    })
    .await;
    let follow = std::process::Command::new(crate::support::BIN)
        .args(["logs", &id, "-f"])
        .env("P2_NATS", c.nats.url())
        .env("P2_STORE", &store)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(
        LIMIT,
        tokio::task::spawn_blocking(move || follow.wait_with_output().unwrap()),
    )
    .await
    .expect("logs -f ends when the run ends")
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("one\ntwo\nthree\n"), "followed: {text:?}");
}

/// A worker killed with SIGKILL takes its tasks with it: the task's whole process group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_tasks_die_with_it() {
    let tasks = serde_json::json!({
        "stuck": {"kind": "command", "run": ["sh", "-c", "echo $$ > $HOME/pid; sleep 600 & wait"]}
    });
    let Lab {
        c,
        mut w1,
        stager: _stager,
        store: _,
    } = lab(Opts::default(), tasks, &[("README", b"stuck")], "/stuck").await;
    c.cli_ok(&["run", "/stuck", "stuck"]);
    let service = w1.home.join("service");
    let pid: i32 = wait_for(LIMIT, "the task to write its pid", || {
        let service = service.clone();
        async move {
            std::fs::read_dir(&service).ok()?.flatten().find_map(|e| {
                let text = std::fs::read_to_string(e.path().join("pid")).ok()?;
                text.trim().parse().ok()
            })
        }
    })
    .await;
    wait_for(LIMIT, "the task's sleep to start", || async {
        (crate::support::group_members(pid).len() >= 2).then_some(())
    })
    .await;
    w1.kill9();
    wait_for(LIMIT, "the task's process group to die", || async {
        crate::support::group_members(pid).is_empty().then_some(())
    })
    .await;
    assert!(!crate::support::alive(pid));
}

/// A run whose worker died while NATS lost its delivery (restarted without its unsynced
/// store) is found by the leader, recorded as lost, and runs again on another worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_attempt_is_found_and_run_again() {
    let opts = Opts {
        lost_after: Some(2.0),
        ..Opts::default()
    };
    let tasks = serde_json::json!({
        "nap": {"kind": "command", "run": ["sh", "-c", "sleep 4; echo rested > {out}/nap.txt"]}
    });
    let Lab {
        mut c,
        mut w1,
        store,
        stager: _stager,
    } = lab(opts, tasks, &[("README", b"nap")], "/nap").await;
    c.cli_ok(&["run", "/nap", "nap"]);
    let client = c.client().await;
    wait_for(LIMIT, "w1 to run the nap", || async {
        runs_of(&client, "/nap")
            .await
            .into_iter()
            .find(|r| r.state == RunState::Running)
    })
    .await;
    w1.kill9();
    c.nats.restart_wiped();
    let _w2 = Worker::start(&c, &c.dir.path().join("w2"), &store, "/", "w2");
    let runs = wait_runs_ended(&client, "/nap", 1, LIMIT).await;
    let r = &runs[0];
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.reason);
    assert_eq!(r.attempts.len(), 2, "{:?}", r.attempts);
    assert!(r.attempts[0].lost && r.attempts[0].worker == "w1");
    assert!(
        r.attempts[0]
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("worker w1 no longer runs it"),
        "{:?}",
        r.attempts[0]
    );
    assert_eq!(
        (r.attempts[1].attempt, r.attempts[1].worker.as_str()),
        (2, "w2")
    );
    assert_each_output_once(&c, &runs).await;
}

/// `run --wait` and `runs` on a sweep too large for one answer's worth of records: states are
/// polled compactly and records paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_sweep_waits_and_lists_whole() {
    let tasks = serde_json::json!({
        "empty": {"kind": "pipeline", "steps": [], "params": {"i": 0}}});
    let Lab {
        c,
        w1: _w1,
        stager: _stager,
        store: _,
    } = lab(Opts::default(), tasks, &[("README", b"empty")], "/many").await;
    let n = 1200; // more than two pages of 500
    let values: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let sweep = format!("i={}", values.join(","));
    let waited = c.cli_json(&[
        "run", "/many", "empty", "--sweep", &sweep, "--wait", "--json",
    ]);
    let waited = waited.as_array().unwrap();
    assert_eq!(waited.len(), n);
    assert!(waited.iter().all(|r| r["state"] == "succeeded"));
    let listed = c.cli_json(&["runs", "/many", "--json"]);
    let ids: std::collections::BTreeSet<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), n, "every run listed once, across pages");

    // The sweep's nodes, one level down, in one listing cut at 1000 with a note on the rest.
    let first = c.cli_json(&["ls", "-R", "/many", "--json"]);
    let page = |v: &serde_json::Value| -> Vec<String> {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["address"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(page(&first).len(), 1000);
    assert_eq!(page(&first)[0], "/many/sweep-1");
    assert_eq!(first["nodes"][0]["children"], n);
    assert_eq!(first["more"], n + 1 - 1000);
    let next = first["next"].as_str().unwrap();
    let rest = c.cli_json(&["ls", "-R", "/many", "--after", next, "--json"]);
    assert_eq!(rest["more"], 0);
    let mut nodes: Vec<String> = page(&first);
    nodes.extend(page(&rest));
    let want: std::collections::BTreeSet<String> = (0..n)
        .map(|i| format!("/many/sweep-1/i={i}"))
        .chain(["/many/sweep-1".to_owned()])
        .collect();
    assert_eq!(nodes.len(), want.len(), "each node once");
    assert_eq!(
        nodes.into_iter().collect::<std::collections::BTreeSet<_>>(),
        want
    );
    let text = c.cli_ok(&["tree", "/many"]);
    assert!(text.contains("\n    i=17\n"), "{text}");
    assert!(
        text.contains(&format!("{} more nodes below /many", n + 1 - 1000))
            && text.contains(&format!("--after {next}")),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
}

/// `plotter2 up` on a home, stopped (SIGTERM, then its children) however the test ends.
pub(crate) struct Up {
    pub home: std::path::PathBuf,
    pub child: std::process::Child,
}

impl Up {
    /// `plotter2 up --coordinators 1 --workers 2` on `home`, ready.
    pub fn two_workers(home: &std::path::Path) -> Up {
        let child = crate::up::start_up_with(
            home,
            crate::support::free_port(),
            &["--coordinators", "1", "--workers", "2"],
        );
        Up {
            home: home.to_owned(),
            child,
        }
    }

    pub fn stop(&mut self) {
        let tree = crate::up::children(&self.home);
        // SAFETY: kill(2) on the process we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + LIMIT;
        while self.child.try_wait().ok().flatten().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.wait();
        crate::up::wait_gone(&tree);
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            for pid in crate::up::children(&self.home) {
                // SAFETY: kill(2) on a child of our `up`.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `plotter2 ARGS` on `home`, killed when it has not ended within `limit`.
pub(crate) fn cli_within(home: &std::path::Path, args: &[&str], limit: Duration) -> (bool, String) {
    let out = home.with_extension(format!("{}.out", args[0]));
    let mut child = std::process::Command::new(crate::support::BIN)
        .args(args)
        .env_remove("P2_NATS")
        .env("P2_HOME", home)
        .env("P2_USER", "tali")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&out).unwrap(),
        ))
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    match status {
        Some(s) => (s.success(), text),
        None => (
            false,
            format!("still running after {limit:?}; it printed:\n{text}"),
        ),
    }
}

/// Issue 9: `plotter2 up --workers 2` on a fresh home, a code bundle pushed, a sweep of five
/// runs. Both worker processes share `<home>/service/.cache` and fill it for the new code at
/// the same moment; one run used to fail with "set-up failed: …/.cache/<hash>/…: No such
/// file or directory". Every run must succeed, on each of three fresh homes.
#[test]
fn two_workers_of_one_home_run_a_sweep_of_new_code() {
    let data: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| {
            (
                format!("data/part{i}.csv"),
                format!("{i},{i}\n").into_bytes(),
            )
        })
        .collect();
    let mut files: Vec<(&str, &[u8])> = vec![("train.sh", TRAIN_SH)];
    files.extend(data.iter().map(|(p, b)| (p.as_str(), b.as_slice())));
    let addr = "/sources/tali/experiment2";
    for round in 1..=3 {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let mut up = Up::two_workers(&home);
        let code = dir.path().join("code");
        write_bundle(&code, Some(&code_manifest()), &files);
        let (ok, out, err) = crate::up::cli(&home, &["push", code.to_str().unwrap(), addr]);
        assert!(ok, "round {round}: push: {out}{err}");
        let sweep = "lr=0.1,0.2,0.15,0.05,0.01";
        let (ok, out) = cli_within(
            &home,
            &["run", addr, "train", "--sweep", sweep, "--wait"],
            LIMIT,
        );
        assert!(ok, "round {round}: not every run succeeded:\n{out}");
        assert_eq!(out.matches("succeeded").count(), 5, "round {round}:\n{out}");
        let (ok, weights, err) = crate::up::cli(
            &home,
            &["get", &format!("{addr}/sweep-1/lr=0.05@latest:weights.csv")],
        );
        assert!(ok, "{err}");
        assert_eq!(weights, "lr,0.05\n");
        // One complete entry for the one code bundle, and nothing half-built beside it.
        let entries: Vec<String> = std::fs::read_dir(home.join("service/.cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(entries.len(), 1, "round {round}: {entries:?}");
        assert_eq!(entries[0].len(), 64, "a bundle id's hex: {entries:?}");
        up.stop();
    }
}

/// A set-up failure on the worker's side (here its cache folder cannot be made) is not the
/// run's end: the worker retries set-up, then hands the attempt back as lost, and the run is
/// queued again; once the cause is gone the run succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_up_failure_of_the_worker_is_retried_not_the_end_of_the_run() {
    let tasks = serde_json::json!({
        "once": {"kind": "command", "run": ["sh", "-c", "echo done > {out}/done.txt"]}
    });
    let Lab {
        c,
        w1,
        store: _store,
        stager,
    } = lab(Opts::default(), tasks, &[("README", b"once")], "/setup").await;
    // A file where the cache folder goes: every fill fails with "File exists".
    let blocker = w1.home.join("service/.cache");
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"in the way").unwrap();
    c.cli_ok(&["run", "/setup", "once"]);
    let client = c.client().await;
    let lost = wait_for(
        Duration::from_secs(150),
        "the first attempt to be handed back",
        || async {
            runs_of(&client, "/setup")
                .await
                .into_iter()
                .find(|r| r.attempts.first().is_some_and(|a| a.lost))
        },
    )
    .await;
    assert!(!lost.state.is_finished(), "queued again: {lost:?}");
    let reason = lost.attempts[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("worker w1: set-up failed") && reason.contains(".cache"),
        "{reason}"
    );
    std::fs::remove_file(&blocker).unwrap();
    let runs = wait_runs_ended(&client, "/setup", 1, Duration::from_secs(120)).await;
    let r = &runs[0];
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.reason);
    assert!(r.attempt >= 2, "{:?}", r.attempts);
    assert_eq!(
        stager.cli_ok(&["get", "/setup@latest:done.txt"]),
        "done\n",
        "the output of the attempt that ran"
    );
}

/// A run whose output holds 20,000 files, on a server with the stock 1 MB `max_payload`: its
/// file index (about 2 MB) is a blob in the store, so the result commits on the first attempt
/// and the output restores whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_output_of_20000_files_commits_on_a_stock_1mb_server() {
    let c = Cluster::start(
        1,
        Opts {
            max_payload: Some("1MB"),
            ..Opts::default()
        },
    )
    .await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
    let _worker = Worker::start(&c, &c.dir.path().join("w1"), &store, "/", "w1");
    let code = c.dir.path().join("code");
    let manifest = serde_json::json!({"manifest_version": 1, "contains": {"package": {"tasks": {
        "many": {"kind": "command", "run": ["sh", "many.sh", "{out}"], "timeout": "120s"}}}}});
    let script: &[u8] = b"cd \"$1\" && for d in $(seq 0 19); do mkdir d$d; \
        (cd d$d && seq 0 999 | while read i; do echo \"$d $i\" > f$i.txt; done); done\n";
    write_bundle(&code, Some(&manifest.to_string()), &[("many.sh", script)]);
    let addr = "/sources/tali/many";
    stager.cli_ok(&["push", code.to_str().unwrap(), addr]);
    let client = c.client().await;
    c.cli_ok(&["run", addr, "many"]);
    let runs = wait_runs_ended(&client, addr, 1, Duration::from_secs(300)).await;
    let r = &runs[0];
    assert_eq!(r.state, RunState::Succeeded, "{:?}", r.reason);
    assert_eq!(r.attempts.len(), 1, "committed on the first attempt");
    let show = c.cli_json(&["show", addr, "--json"]);
    let out = show["bundles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["run"].is_string())
        .expect("the run's output bundle");
    assert_eq!(out["files"], 20_001, "20,000 files and the manifest");
    let dest = c.dir.path().join("restored");
    stager.cli_ok(&[
        "get",
        &format!("{addr}@{}", out["version"]),
        "--to",
        dest.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(dest.join("d7/f123.txt")).unwrap(),
        "7 123\n"
    );
    assert_eq!(std::fs::read_dir(dest.join("d19")).unwrap().count(), 1000);
}
