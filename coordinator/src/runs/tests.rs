//! Planning runs.

use std::collections::BTreeMap;

use plotter2_node::bundle::Hash;
use plotter2_node::protocol::{EventKind, RunId, RunState};

use crate::registry::Registry;
use crate::types::Command;

use super::fingerprint::{fingerprint, unfingerprintable, write_canonical};
use crate::testing::*;
use plotter2_node::bundle::{BundlePath, FileEntry, FileIndex};
use plotter2_node::manifest::Manifest;
use plotter2_node::protocol::{RequestId, UserName, WriteOp};
use serde_json::json;

/// A code bundle at `a` whose package defines `train` (default lr 0.1).
fn code(a: &str, script: &[u8]) -> WriteOp {
    let index = FileIndex::new(vec![FileEntry {
        path: BundlePath::parse("train.py").unwrap(),
        blob: Hash::of(script),
        size: script.len() as u64,
        mode: 0o644,
    }])
    .unwrap();
    let manifest = Manifest::from_json(
        json!({"manifest_version": 1, "contains": {"package": {"tasks": {"train": {
            "kind": "command", "run": ["python3", "train.py", "--lr", "{lr}", "--out", "{out}"],
            "params": {"lr": 0.1, "epochs": 3}}}}}})
        .to_string()
        .as_bytes(),
    )
    .unwrap();
    crate::testing::ingest(a, &index, manifest)
}

fn setup() -> Registry {
    let mut r = Registry::default();
    apply(&mut r, code("/e/x", b"print(1)")).unwrap();
    apply(
        &mut r,
        WriteOp::Set {
            addr: addr("/e/x"),
            set: vec!["lr=0.3".parse().unwrap(), "model.depth=2".parse().unwrap()],
        },
    )
    .unwrap();
    r
}

#[test]
fn a_run_takes_the_nearest_definition_and_the_effective_config() {
    let mut r = setup();
    apply(
        &mut r,
        WriteOp::New {
            addr: addr("/e/x/child"),
            set: vec!["lr=0.4".parse().unwrap()],
        },
    )
    .unwrap();
    let receipt = apply(&mut r, run("/e/x/child", "train", &["epochs=5"], &[])).unwrap();
    assert_eq!(receipt.runs.len(), 1);
    let rec = r.run(&receipt.runs[0]).unwrap();
    assert_eq!(rec.node, addr("/e/x/child"));
    assert_eq!(rec.defined_at, addr("/e/x"));
    assert_eq!(rec.state, RunState::Queued);
    assert_eq!(
        serde_json::Value::Object(rec.params.clone()),
        json!({"lr": 0.4, "epochs": 5, "model": {"depth": 2}}),
        "task defaults < effective config < --set"
    );
    assert_eq!(rec.code, r.nodes[&addr("/e/x")].bundles[0].id);
    assert!(rec.inputs.is_empty(), "the code bundle is not an input");
    // --set changed the run, not the node.
    assert_eq!(r.show(&addr("/e/x/child")).unwrap().own.get("epochs"), None);
    let history = r.history(&addr("/e/x/child")).unwrap();
    assert!(
        matches!(&history.last().unwrap().kind, EventKind::RunCreated { task, .. } if task == "train")
    );
    assert_eq!(r.runs(&addr("/e"), None, None).unwrap().len(), 1);
    assert_eq!(r.request(&receipt.id).unwrap().runs, receipt.runs);
}

#[test]
fn sweeps_make_one_child_and_one_run_per_combination() {
    let mut r = setup();
    let receipt = apply(
        &mut r,
        run("/e/x", "train", &[], &["lr=0.1,0.2", "seed=1,2"]),
    )
    .unwrap();
    assert_eq!(receipt.runs.len(), 4);
    let runs = r.runs(&addr("/e/x"), None, None).unwrap();
    let nodes: Vec<String> = runs.iter().map(|x| x.node.to_string()).collect();
    assert_eq!(
        nodes,
        [
            "/e/x/sweep-1/lr=0.1,seed=1",
            "/e/x/sweep-1/lr=0.1,seed=2",
            "/e/x/sweep-1/lr=0.2,seed=1",
            "/e/x/sweep-1/lr=0.2,seed=2"
        ]
    );
    assert_eq!(runs[3].params["lr"], json!(0.2));
    assert_eq!(runs[3].params["seed"], json!(2));
    assert_eq!(runs[3].params["model"], json!({"depth": 2}), "inherited");
    let child = r.show(&addr("/e/x/sweep-1/lr=0.2,seed=2")).unwrap();
    assert_eq!(
        serde_json::Value::Object(child.own),
        json!({"lr": 0.2, "seed": 2})
    );
    assert_eq!(child.effective.from["model.depth"], addr("/e/x"));
    // Distinct params, distinct fingerprints; a second sweep gets its own folder.
    let mut f: Vec<Hash> = runs.iter().map(|x| x.fingerprint).collect();
    f.sort();
    f.dedup();
    assert_eq!(f.len(), 4);
    apply(&mut r, run("/e/x", "train", &[], &["lr=0.5"])).unwrap();
    assert!(r.contains(&addr("/e/x/sweep-2/lr=0.5")));
}

#[test]
fn bad_runs_are_refused_and_change_nothing() {
    let mut r = setup();
    let before = r.runs.len();
    let e = apply(&mut r, run("/e/x", "report", &[], &[])).unwrap_err();
    assert!(
        e.message.contains("no task \"report\"") && e.message.contains("train"),
        "{}",
        e.message
    );
    let e = apply(&mut r, run("/nowhere", "train", &[], &[])).unwrap_err();
    assert!(e.message.contains("no node at /nowhere"), "{}", e.message);
    let e = apply(&mut r, run("/e/x", "train", &[], &["lr=1", "lr=2"])).unwrap_err();
    assert!(e.message.contains("swept twice"), "{}", e.message);
    let e = apply(&mut r, run("/e/x", "train", &["model.depth.x=1"], &[])).unwrap_err();
    assert!(e.message.contains("--set model.depth.x"), "{}", e.message);
    assert_eq!(r.runs.len(), before);
    assert!(!r.contains(&addr("/e/x/sweep-1")));
}

#[test]
fn an_equal_run_reuses_a_succeeded_one_unless_forced() {
    let mut r = setup();
    let first = apply(&mut r, run("/e/x", "train", &[], &["lr=0.1,0.2"]))
        .unwrap()
        .runs;
    // A worker runs the first one to success with an output bundle.
    let rec = r.run(&first[0]).unwrap();
    let out = output(b"weights");
    let out_id = out.bundle;
    report(&mut r, vec![started(&rec)]);
    report(&mut r, vec![succeeded(&rec, Some(out))]);
    assert_eq!(r.run(&rec.id).unwrap().state, RunState::Succeeded);

    // The same sweep again: lr=0.1 is reused (ends at once, output recorded at its new
    // node), lr=0.2 never succeeded and is queued.
    let again = apply(&mut r, run("/e/x", "train", &[], &["lr=0.1,0.2"]))
        .unwrap()
        .runs;
    let reused = r.run(&again[0]).unwrap();
    assert_eq!(reused.state, RunState::Succeeded);
    assert_eq!(reused.reused_from, Some(rec.id));
    assert_eq!(reused.output.as_ref().unwrap().id, out_id);
    assert_eq!(r.show(&reused.node).unwrap().bundles[0].id, out_id);
    assert_eq!(r.run(&again[1]).unwrap().state, RunState::Queued);
    let queued: Vec<RunId> = r.queued_runs().into_iter().map(|q| q.id).collect();
    assert!(!queued.contains(&again[0]) && queued.contains(&again[1]));

    // --force runs it again.
    let mut forced = run("/e/x", "train", &[], &["lr=0.1"]);
    if let WriteOp::Run { force, .. } = &mut forced {
        *force = true;
    }
    let f = apply(&mut r, forced).unwrap().runs;
    assert_eq!(r.run(&f[0]).unwrap().state, RunState::Queued);
}

#[test]
fn runs_are_deterministic_across_replicas() {
    let mut a = setup();
    let mut b = a.clone();
    let op = run("/e/x", "train", &[], &["lr=0.1,0.2,0.15,0.05,0.01"]);
    let cmd = Command {
        id: RequestId::new(),
        user: UserName::parse("tali").unwrap(),
        time_ms: 7,
        trace: None,
        op,
    };
    a.apply(cmd.clone(), 9).unwrap();
    b.apply(cmd, 9).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.runs.len(), 5);
}

#[test]
fn fingerprints_come_from_a_canonical_form() {
    let value = json!({"b": 2.5, "a": [1, {"d": null, "c": "x\"y"}]});
    let mut out = Vec::new();
    write_canonical(&value, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"a":[1,{"c":"x\"y","d":null}],"b":2.5}"#
    );
    // Field order in a struct and iteration order of a map do not change it.
    #[derive(serde::Serialize)]
    struct Parts {
        zeta: u32,
        alpha: &'static str,
    }
    assert_eq!(
        fingerprint(&Parts {
            zeta: 1,
            alpha: "x"
        })
        .unwrap(),
        fingerprint(&json!({"alpha": "x", "zeta": 1})).unwrap()
    );
    let keys: Vec<String> = (0..64).map(|i| format!("k{i}")).collect();
    let hashed: std::collections::HashMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    let sorted: BTreeMap<&str, usize> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_str(), i))
        .collect();
    assert_eq!(fingerprint(&hashed).unwrap(), fingerprint(&sorted).unwrap());
    assert_ne!(
        fingerprint(&json!({"lr": 0.1})).unwrap(),
        fingerprint(&json!({"lr": 0.2})).unwrap()
    );
}

/// Before, two runs whose parts failed to encode both hashed "" and so shared a
/// fingerprint (and reused each other's outputs); now the run is refused with why.
#[test]
fn parts_that_cannot_be_encoded_refuse_the_run() {
    let a: BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
    let b: BTreeMap<(u8, u8), u8> = [((4, 5), 6)].into();
    let err = fingerprint(&a).unwrap_err();
    assert!(fingerprint(&b).is_err());
    let refusal = unfingerprintable("train", &addr("/e"), &err);
    assert_eq!(refusal.kind, plotter2_node::protocol::ErrorKind::Internal);
    assert!(
        refusal
            .message
            .contains("the run of train at /e is refused")
            && refusal.message.contains("key must be a string"),
        "{}",
        refusal.message
    );
}
