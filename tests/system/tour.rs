//! The issue's tour through the CLI, on one coordinator, and durability across kill -9.

use std::time::Duration;

use plotter2_node::Address;
use plotter2_node::protocol::{Op, Reply, RequestId, WriteOp};
use serde_json::json;

use crate::support::{Cluster, Opts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_tour_inheritance_archive_and_request_log() {
    let c = Cluster::start(1, Opts::default()).await;
    c.cli_ok(&[
        "new",
        "/sources/tali/experiment2",
        "--set",
        "lr=0.1",
        "--set",
        "model.depth=3",
    ]);
    c.cli_ok(&[
        "new",
        "/sources/tali/experiment2/experiment2a",
        "--set",
        "lr=0.2",
    ]);
    c.cli_ok(&[
        "set",
        "/sources/tali/experiment2",
        "optimizer=adam",
        r#"tags=["x"]"#,
    ]);

    let show = c.cli_json(&["show", "/sources/tali/experiment2/experiment2a", "--json"]);
    assert_eq!(show["own"], json!({"lr": 0.2}));
    assert_eq!(
        show["effective"]["config"],
        json!({"lr": 0.2, "model": {"depth": 3}, "optimizer": "adam", "tags": ["x"]})
    );
    assert_eq!(
        show["effective"]["from"]["lr"],
        "/sources/tali/experiment2/experiment2a"
    );
    assert_eq!(
        show["effective"]["from"]["model.depth"],
        "/sources/tali/experiment2"
    );
    assert_eq!(
        show["effective"]["from"]["optimizer"],
        "/sources/tali/experiment2"
    );

    let ls = c.cli_json(&["ls", "/sources/tali", "--json"]);
    assert_eq!(ls.as_array().unwrap().len(), 1);
    assert_eq!(ls[0]["name"], "experiment2");

    let history = c.cli_json(&["history", "/sources/tali/experiment2", "--json"]);
    let events: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "created",
            "config_set",
            "config_set",
            "config_set",
            "config_set"
        ]
    );
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["user"] == "tali" && e["request"].is_string())
    );

    c.cli_ok(&["archive", "/sources/tali/experiment2/experiment2a"]);
    assert_eq!(
        c.cli_json(&["ls", "/sources/tali/experiment2", "--json"]),
        json!([])
    );
    let all = c.cli_json(&["ls", "/sources/tali/experiment2", "--all", "--json"]);
    assert_eq!(all[0]["archived"], true);

    // The whole subtree in one listing; archived nodes only with --all.
    let addrs = |v: &serde_json::Value| -> Vec<String> {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["address"].as_str().unwrap().to_owned())
            .collect()
    };
    let tree = c.cli_json(&["ls", "-R", "/sources", "--json"]);
    assert_eq!(addrs(&tree), ["/sources/tali", "/sources/tali/experiment2"]);
    assert_eq!(tree["more"], 0);
    let tree = c.cli_json(&["tree", "/sources", "--all", "--json"]);
    assert_eq!(
        addrs(&tree),
        [
            "/sources/tali",
            "/sources/tali/experiment2",
            "/sources/tali/experiment2/experiment2a"
        ]
    );
    assert_eq!(tree["nodes"][2]["archived"], true);
    let text = c.cli_ok(&["ls", "-R", "/sources", "--all"]);
    assert_eq!(
        text,
        "/sources\n  tali\n    experiment2\n      experiment2a (archived)\n"
    );
    let (ok, _, err) = c.cli(&["ls", "/sources", "--limit", "5"]);
    assert!(!ok && err.contains("-R"), "{err}");

    let requests = c.cli_json(&["requests", "--json"]);
    let verbs: Vec<&str> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["verb"].as_str().unwrap())
        .collect();
    assert_eq!(verbs, ["new", "new", "set", "archive"]);
    let seqs: Vec<u64> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    let id = requests[2]["id"].as_str().unwrap();
    let one = c.cli_json(&["request", id, "--json"]);
    assert_eq!(one["target"], "/sources/tali/experiment2");
    assert_eq!(one["status"], "done");
    assert_eq!(one["user"], "tali");

    // Human output works too.
    let table = c.cli_ok(&["show", "/sources/tali/experiment2/experiment2a"]);
    assert!(
        table.contains("model.depth") && table.contains("/sources/tali/experiment2"),
        "{table}"
    );
    let status = c.cli_json(&["cluster", "status", "--json"]);
    assert_eq!(status[0]["role"], "leader");
    assert_eq!(status[0]["applied_index"], status[0]["last_log_index"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_id_is_applied_once() {
    let c = Cluster::start(1, Opts::default()).await;
    let client = c.client().await;
    let id = RequestId::new();
    let op = Op::Write(WriteOp::New {
        addr: Address::parse("/once").unwrap(),
        set: vec!["n=1".parse().unwrap()],
    });
    let Reply::Written(first) = client.call_with_id(id, op.clone()).await.unwrap() else {
        panic!("not a receipt")
    };
    let Reply::Written(second) = client.call_with_id(id, op).await.unwrap() else {
        panic!("not a receipt")
    };
    assert!(!first.duplicate);
    assert!(second.duplicate);
    assert_eq!(first.seq, second.seq);
    let requests = c.cli_json(&["requests", "--json"]);
    assert_eq!(requests.as_array().unwrap().len(), 1);
    let history = c.cli_json(&["history", "/once", "--json"]);
    assert_eq!(
        history.as_array().unwrap().len(),
        2,
        "created + one config_set: {history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_keeps_everything_across_kill9() {
    let mut c = Cluster::start(1, Opts::default()).await;
    for i in 0..20 {
        c.cli_ok(&["new", &format!("/e/n{i}"), "--set", &format!("i={i}")]);
    }
    c.cli_ok(&["set", "/e", "shared=yes"]);
    c.cli_ok(&["archive", "/e/n3"]);
    let before = (
        c.cli_json(&["show", "/e/n7", "--json"]),
        c.cli_json(&["history", "/e", "--json"]),
        c.cli_json(&["requests", "--json"]),
        c.cli_json(&["ls", "/e", "--all", "--json"]),
    );
    let digest_before = c.wait_converged(Duration::from_secs(5)).await[0]
        .state_digest
        .clone();

    c.coord(1).kill9();
    c.coord(1).restart();
    c.wait_leader(Duration::from_secs(20)).await;

    let after = (
        c.cli_json(&["show", "/e/n7", "--json"]),
        c.cli_json(&["history", "/e", "--json"]),
        c.cli_json(&["requests", "--json"]),
        c.cli_json(&["ls", "/e", "--all", "--json"]),
    );
    assert_eq!(before, after);
    let digest_after = c.wait_converged(Duration::from_secs(5)).await[0]
        .state_digest
        .clone();
    assert_eq!(digest_before, digest_after);
    // And it goes on accepting writes.
    c.cli_ok(&["new", "/e/after"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_records_bundle_versions_once_each() {
    use plotter2_node::bundle::{BundlePath, FileEntry, FileIndex, Hash};
    use plotter2_node::manifest::Manifest;

    let c = Cluster::start(1, Opts::default()).await;
    let client = c.client().await;
    let bundle = |content: &[u8]| {
        let index = FileIndex::new(vec![FileEntry {
            path: BundlePath::parse("output_data/weights.csv").unwrap(),
            blob: Hash::of(content),
            size: content.len() as u64,
            mode: 0o644,
        }])
        .unwrap();
        let manifest = Manifest::from_json(br#"{"manifest_version": 1, "user": "tali"}"#).unwrap();
        Op::Write(WriteOp::Ingest {
            addr: Address::parse("/sources/tali/experiment2").unwrap(),
            bundle: index.id(),
            files: index.files().len() as u64,
            bytes: index.total_bytes(),
            manifest: Box::new(manifest),
            paths: index.paths_for_rules(),
        })
    };
    let Reply::Written(v1) = client.call(bundle(b"1,2,3")).await.unwrap() else {
        panic!("not a receipt")
    };
    let Reply::Written(again) = client.call(bundle(b"1,2,3")).await.unwrap() else {
        panic!("not a receipt")
    };
    let Reply::Written(v2) = client.call(bundle(b"4,5,6")).await.unwrap() else {
        panic!("not a receipt")
    };
    assert_eq!(v1.bundle.as_ref().unwrap().version, 1);
    assert!(again.bundle.as_ref().unwrap().existing);
    assert_eq!(v2.bundle.as_ref().unwrap().version, 2);

    let show = c.cli_json(&["show", "/sources/tali/experiment2", "--json"]);
    let bundles = show["bundles"].as_array().unwrap();
    assert_eq!(bundles.len(), 2);
    assert_eq!(bundles[0]["version"], 1);
    assert_eq!(bundles[0]["files"], 1);
    assert_eq!(bundles[0]["bytes"], 5);
    assert_eq!(bundles[0]["user"], "tester");
    assert!(bundles[0]["id"].as_str().unwrap().starts_with("b3:"));
    assert_eq!(bundles[1]["manifest"]["user"], "tali");
    let history = c.cli_json(&["history", "/sources/tali/experiment2", "--json"]);
    let added: Vec<&serde_json::Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "bundle_added")
        .collect();
    assert_eq!(added.len(), 2);
}
