//! Observability against real backends: one request is one trace across every process (in
//! arize-phoenix, a real OTLP trace store), also across a leader kill; Prometheus scrapes
//! every role of `up` and sees writes and a leader change; an unreachable endpoint costs a
//! CLI call less than a second.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{BIN, Phoenix, cli_env, free_port, write_bundle};
use crate::up::{children, start_up_env, wait_gone};

/// A process that is killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `up` on `home`, stopped (with all its children) when dropped.
struct UpTree {
    home: PathBuf,
    child: Child,
}

impl Drop for UpTree {
    fn drop(&mut self) {
        let tree = children(&self.home);
        // SAFETY: kill(2) on the process we started.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        wait_gone(&tree);
    }
}

fn up(home: &Path, args: &[&str], env: &[(&str, &str)]) -> UpTree {
    let child = start_up_env(home, free_port(), args, env);
    UpTree {
        home: home.to_owned(),
        child,
    }
}

/// The CLI against `home`: (success, stdout, stderr).
fn cli(home: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let home = home.to_string_lossy();
    let mut all = vec![("P2_HOME", home.as_ref()), ("P2_USER", "tali")];
    all.extend_from_slice(env);
    cli_env(args, &all)
}

fn cli_ok(home: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let (ok, out, err) = cli(home, args, env);
    assert!(ok, "plotter2 {args:?}: {err}");
    out
}

/// GET over HTTP, through curl (installed by .ci/run).
fn get(url: &str) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sf", "--max-time", "5", url])
        .output()
        .expect("curl must be installed (see .ci/run)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Polls `check` every 200 ms until it gives a value; panics after `limit` saying `what`.
fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The leader's pid and term, from `cluster status --json`.
fn leader(home: &Path) -> Option<(i32, u64)> {
    let (ok, out, _) = cli(home, &["cluster", "status", "--json"], &[]);
    let v: Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
    let l = v.as_array()?.iter().find(|s| s["role"] == "leader")?;
    Some((l["pid"].as_i64()? as i32, l["term"].as_u64()?))
}

/// Takes the leader down so that the others must elect a new one: it is stopped (a process
/// killed and restarted at once would come back as leader of the same term), the others
/// elect a leader in a new term, then it is killed; `up` starts it again. Returns the term
/// the new leader leads in.
fn fail_leader(home: &Path) -> u64 {
    let (pid, term) = poll(Duration::from_secs(20), "a leader", || leader(home));
    // SAFETY: kill(2) on a coordinator of our `up`.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let (_, new_term) = poll(Duration::from_secs(30), "a leader elected after it", || {
        leader(home).filter(|(p, t)| *t > term && *p != pid)
    });
    // SAFETY: as above; `up`'s watchdog starts it again.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    new_term
}

/// Every span phoenix holds, page by page.
fn spans(http: u16) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("http://127.0.0.1:{http}/v1/projects/default/spans?limit=1000");
        if let Some(c) = &cursor {
            url += &format!("&cursor={c}");
        }
        let Some(page) = get(&url).and_then(|b| serde_json::from_str::<Value>(&b).ok()) else {
            return out;
        };
        out.extend(page["data"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// The module a span was made in (its tracing target).
fn module(s: &Value) -> &str {
    s["attributes"]["target"].as_str().unwrap_or("")
}

#[test]
fn one_request_is_one_trace_across_every_process_and_a_leader_kill() {
    let dir = tempfile::tempdir().unwrap();
    let phoenix = Phoenix::start(dir.path());
    let (http, grpc) = (phoenix.http, phoenix.grpc);
    let endpoint = format!("http://127.0.0.1:{grpc}");
    let home = dir.path().join("home");
    // Spans go out within 200 ms: a coordinator killed later has sent what it made.
    let _up = up(
        &home,
        &["--coordinators", "3", "--workers", "2"],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    );
    // A task whose command waits a little (long enough to kill the leader), then pushes a
    // bundle of its own: the push joins the run's trace through TRACEPARENT.
    let code = dir.path().join("code");
    let manifest = serde_json::json!({"manifest_version": 1, "contains": {"package": {"tasks": {
        "pushback": {"kind": "command", "params": {"i": 0},
                     "run": ["sh", "-c", format!("sleep 2 && {BIN} push data /t/out/{{i}}")]}}}}});
    write_bundle(
        &code,
        Some(&manifest.to_string()),
        &[
            ("data/manifest.json", br#"{"manifest_version": 1}"#),
            ("data/x.txt", b"x"),
        ],
    );
    cli_ok(&home, &["push", code.to_str().unwrap(), "/t"], &[]);

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace}-{parent}-01");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("TRACEPARENT", traceparent.as_str()),
    ];
    let run = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            cli(
                &home,
                &["-v", "run", "/t", "pushback", "--sweep", "i=1,2", "--wait"],
                &env,
            )
        });
        // Between dispatch and result: once both runs are running, the leader goes.
        poll(Duration::from_secs(60), "both runs to start", || {
            let (_, out, _) = cli(&home, &["runs", "/t", "--json"], &[]);
            let runs: Value = serde_json::from_str(&out).ok()?;
            let n = runs
                .as_array()?
                .iter()
                .filter(|r| r["state"] == "running")
                .count();
            (n == 2).then_some(())
        });
        fail_leader(&home);
        waiter.join().unwrap()
    });
    let (ok, out, err) = run;
    assert!(ok, "the sweep: {out}{err}");
    assert!(
        err.contains(&format!("trace {trace}")),
        "-v prints the trace id: {err}"
    );
    // Another request, no TRACEPARENT: a trace of its own.
    let (_, _, other) = cli(
        &home,
        &["-v", "ls", "/"],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())],
    );
    let other_trace = other
        .split("trace ")
        .nth(1)
        .map(|t| t.trim().to_owned())
        .unwrap_or_default();
    assert!(other_trace.len() == 32 && other_trace != trace, "{other}");

    // Every role in the one trace, and no span whose parent is missing.
    let wanted = [
        "plotter2",
        "plotter2_node::client",
        "plotter2_coordinator::api",
        "plotter2_coordinator::state_machine",
        "plotter2_coordinator::apply",
        "plotter2_coordinator::dispatch",
        "plotter2_worker::pool",
        "plotter2_worker::execute",
        "plotter2_stager::push::receive",
    ];
    // Spans arrive as their processes end them (an attempt ends after its result is
    // acknowledged): wait until every role is there and every parent has arrived.
    let orphans_of = |ours: &[Value]| -> Vec<String> {
        let ids: std::collections::HashSet<&str> = ours
            .iter()
            .filter_map(|s| s["context"]["span_id"].as_str())
            .collect();
        ours.iter()
            .filter(|s| {
                let p = s["parent_id"].as_str().unwrap_or("");
                !p.is_empty() && p != parent && !ids.contains(p)
            })
            .map(|s| format!("{} ({})", s["name"], module(s)))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let ours = loop {
        let ours: Vec<Value> = spans(http)
            .into_iter()
            .filter(|s| s["context"]["trace_id"] == trace)
            .collect();
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|m| !ours.iter().any(|s| module(s) == **m))
            .copied()
            .collect();
        let orphans = orphans_of(&ours);
        if missing.is_empty() && orphans.is_empty() {
            break ours;
        }
        assert!(
            Instant::now() < deadline,
            "after 60s the trace still lacks {missing:?} and has spans without their parent: \
             {orphans:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let by_id: std::collections::HashMap<&str, &Value> = ours
        .iter()
        .filter_map(|s| Some((s["context"]["span_id"].as_str()?, s)))
        .collect();
    let parent_module = |s: &Value| {
        s["parent_id"]
            .as_str()
            .and_then(|p| by_id.get(p))
            .map(|p| module(p).to_owned())
            .unwrap_or_default()
    };
    // Across processes: the worker's attempt under the coordinator's request, the stager's
    // ingest under the push its task ran, and results committed after the kill.
    assert!(
        ours.iter().any(|s| s["name"] == "attempt"
            && parent_module(s).starts_with("plotter2_coordinator")),
        "an attempt is a child of the coordinator's span"
    );
    assert!(
        ours.iter()
            .any(|s| s["name"] == "push_ingest" && parent_module(s) == "plotter2"),
        "the stager's ingest is a child of the push the task ran"
    );
    let finished = ours
        .iter()
        .filter(|s| s["name"] == "attempt_update")
        .count();
    assert!(finished >= 4, "claims and results of both runs: {finished}");
}

#[test]
fn prometheus_scrapes_every_role_and_sees_writes_and_a_leader_change() {
    let prometheus = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("prometheus must be installed: apt-get install prometheus (see .ci/run)");
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let _up = up(&home, &["--coordinators", "3", "--workers", "1"], &[]);
    let conf = std::fs::read_to_string(home.join("config/prometheus.yml"))
        .unwrap()
        .replace("scrape_interval: 5s", "scrape_interval: 1s");
    std::fs::write(dir.path().join("prometheus.yml"), conf).unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = Killed(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let query = |q: &str| -> Option<Vec<Value>> {
        let url = format!(
            "http://127.0.0.1:{port}/api/v1/query?query={}",
            q.replace(' ', "%20")
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
                .replace('=', "%3D")
                .replace('+', "%2B")
        );
        let v: Value = serde_json::from_str(&get(&url)?).ok()?;
        v["data"]["result"].as_array().cloned()
    };
    let scalar = |q: &str| -> Option<f64> { query(q)?.first()?["value"][1].as_str()?.parse().ok() };
    // Every role is up and scraped.
    let jobs = poll(Duration::from_secs(60), "every role scraped", || {
        let r = query("up == 1")?;
        (r.len() == 5).then_some(r)
    });
    let names: Vec<&str> = jobs
        .iter()
        .filter_map(|r| r["metric"]["job"].as_str())
        .collect();
    for role in [
        "coordinator-1",
        "coordinator-2",
        "coordinator-3",
        "stager",
        "worker-1",
    ] {
        assert!(names.contains(&role), "{role} in {names:?}");
    }
    // Writes move the counter.
    let before = scalar("sum(p2_requests_total{verb=\"new\"})").unwrap_or(0.0);
    for i in 0..5 {
        cli_ok(&home, &["new", &format!("/p/n{i}")], &[]);
    }
    poll(Duration::from_secs(30), "the write counter to move", || {
        let now = scalar("sum(p2_requests_total{verb=\"new\"})")?;
        (now >= before + 5.0).then_some(())
    });
    // The leader gauges follow a leader kill: a new term, and a leader in it.
    let (pid, term) = poll(Duration::from_secs(20), "a leader", || leader(&home));
    poll(
        Duration::from_secs(30),
        "prometheus to see the leader",
        || {
            let seen = scalar("max(p2_raft_term)")?;
            let leaders = query("p2_raft_leader == 1")?.len();
            (seen as u64 == term && leaders == 1).then_some(())
        },
    );
    let old = query("p2_raft_leader == 1").unwrap_or_default()[0]["metric"]["coordinator"].clone();
    let new_term = fail_leader(&home);
    assert!(new_term > term);
    poll(
        Duration::from_secs(60),
        "prometheus to see the new leader",
        || {
            let seen = scalar("max(p2_raft_term)")?;
            let now = query("p2_raft_leader == 1")?;
            let moved = now.iter().any(|r| r["metric"]["coordinator"] != old);
            (seen as u64 >= new_term && moved).then_some(())
        },
    );
    let _ = pid;
}

#[test]
fn an_unreachable_endpoint_costs_a_cli_call_under_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let _up = up(
        &home,
        &["--coordinators", "1", "--workers", "0", "--no-stager"],
        &[],
    );
    // Nothing listens there: the exporter's retries must not hold the call up.
    let dead = format!("http://127.0.0.1:{}", free_port());
    for args in [
        &["ls", "/"][..],
        &["new", "/u/a"][..],
        &["show", "/u/a"][..],
    ] {
        let t = Instant::now();
        cli_ok(&home, args, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &dead)]);
        let took = t.elapsed();
        assert!(
            took < Duration::from_secs(1),
            "plotter2 {args:?} took {took:?}"
        );
    }
}

#[test]
fn status_shows_the_leader_the_workers_and_the_stager_at_one_glance() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let _up = up(&home, &["--coordinators", "3", "--workers", "2"], &[]);
    let status: Value = poll(Duration::from_secs(20), "every role to answer", || {
        let v: Value = serde_json::from_str(&cli_ok(&home, &["status", "--json"], &[])).ok()?;
        let all = v["coordinators"].as_array()?.len() == 3
            && v["workers"].as_array()?.len() == 2
            && v["stagers"].as_array()?.len() == 1
            && v["leader"].as_u64().is_some();
        all.then_some(v)
    });
    assert_eq!(status["digests_equal"], true, "{status:#}");
    assert_eq!(status["workers"][0]["slots"], 4, "{status:#}");
    let text = cli_ok(&home, &["status"], &[]);
    for want in [
        "leader",
        "workers       2 answering",
        "stagers       1 answering",
        "local-1",
    ] {
        assert!(text.contains(want), "{want:?} in:\n{text}");
    }
}
