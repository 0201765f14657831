//! Lineage and explain through the CLI: a sweep of a command task, a report pipeline over its
//! outputs handed off to `meta/reports`; the report's lineage reaches each sweep run's params
//! and the code bundle, downstream of the code reaches the report, and explain tells an
//! executed run from a reused one.

use crate::support::{Cluster, Opts, Stager, Worker, runs_of, write_bundle};

fn code_manifest() -> String {
    serde_json::json!({"manifest_version": 1, "contains": {"package": {"tasks": {
        "train": {"kind": "command", "run": ["sh", "train.sh", "{lr}", "{out}"],
                  "params": {"lr": 0.1}, "timeout": "30s"},
        "page": {"kind": "pipeline",
                 "inputs": {"metrics": "sweep-1/*:metrics.csv"},
                 "steps": ["access", ["matrix", {"metrics": ["reward"], "reduce": ["max"]}],
                           ["report", {"title": "sweep"}], "handoff"]}
    }}}})
    .to_string()
}

const TRAIN_SH: &[u8] = b"printf 'step,reward\\n1,%s\\n' \"$1\" > \"$2/metrics.csv\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_of_a_report_over_a_sweep_reaches_its_runs_params_and_code() {
    let c = Cluster::start(1, Opts::default()).await;
    let store = c.dir.path().join("source").to_string_lossy().into_owned();
    let stager = Stager::start(&c, &c.dir.path().join("stager"), &store);
    let _worker = Worker::start(&c, &c.dir.path().join("w1"), &store, "/", "w1");
    let addr = "/sources/tali/e";
    let code = c.dir.path().join("code");
    write_bundle(&code, Some(&code_manifest()), &[("train.sh", TRAIN_SH)]);
    stager.cli_ok(&["push", code.to_str().unwrap(), addr]);
    c.cli_ok(&["run", addr, "train", "--sweep", "lr=0.1,0.2", "--wait"]);
    c.cli_ok(&["run", addr, "page", "--wait"]);
    let reports = format!("{addr}/meta/reports@1");

    let l = c.cli_json(&["lineage", &reports, "--json"]);
    assert_eq!(l["versions"][0]["made"]["by"], "run", "{l}");
    let runs = l["runs"].as_array().unwrap();
    let mut lrs: Vec<String> = runs
        .iter()
        .filter(|r| r["task"] == "train")
        .map(|r| r["params"]["lr"].to_string())
        .collect();
    lrs.sort();
    assert_eq!(lrs, ["0.1", "0.2"], "{l}");
    let code_at = format!("{addr}@1");
    for r in runs {
        let code = &r["reads"][0];
        assert_eq!(code["as"], "code", "{r}");
        assert_eq!(
            format!(
                "{}@{}",
                code["at"]["address"].as_str().unwrap(),
                code["at"]["version"]
            ),
            code_at
        );
    }
    let pushed = l["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["address"] == addr)
        .unwrap();
    assert_eq!(pushed["made"]["by"], "pushed");

    let text = c.cli_ok(&["lineage", &reports]);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with(&format!("{reports}  made by run ")),
        "{text}"
    );
    assert!(
        text.contains(&format!("code {code_at}  pushed by tali")),
        "{text}"
    );
    assert!(
        text.contains("lr=0.2") && text.contains("(see above)"),
        "{text}"
    );
    let dot = c.cli_ok(&["lineage", &reports, "--dot"]);
    assert!(
        dot.starts_with("digraph lineage {") && dot.contains(" -> "),
        "{dot}"
    );

    let down = c.cli_ok(&["lineage", &code_at, "--downstream"]);
    assert!(down.contains(&format!("→ {reports}")), "{down}");

    // Run again on the same inputs: reused, and explain says so and that nothing changed.
    c.cli_ok(&["run", addr, "page", "--wait"]);
    let client = c.client().await;
    let pages: Vec<_> = runs_of(&client, addr)
        .await
        .into_iter()
        .filter(|r| r.task == "page")
        .collect();
    assert_eq!(pages.len(), 2);
    let e = c.cli_ok(&["explain", &pages[1].id.to_string()]);
    assert!(
        e.contains(&format!("outcome      reused from {}", pages[0].id)),
        "{e}"
    );
    assert!(e.contains("nothing changed since"), "{e}");
    let e = c.cli_json(&["explain", &pages[0].id.to_string(), "--json"]);
    assert_eq!(e["outcome"]["outcome"], "executed", "{e}");
    assert_eq!(e["fingerprint_checks"], true);
    let parts: Vec<&str> = e["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["part"].as_str())
        .collect();
    assert!(parts.contains(&"selected"), "{parts:?}");
    let (ok, _, err) = c.cli(&["lineage", &format!("{addr}@9")]);
    assert!(!ok && err.contains("versions 1 to 1"), "{err}");
}
