//! Lineage and explain over a registry built as the log would build it: a package and data at
//! `/e`, a sweep of `train`, and a `report` that reads the sweep's outputs through `selected`
//! and hands its output off to `/e/meta/reports`.

use plotter2_node::protocol::{
    Made, Outcome, PartName, ReadRole, RunId, RunOutput, RunRecord, Verdict, VersionAt, WriteOp,
};
use serde_json::json;

use crate::registry::Registry;
use crate::testing::*;

fn tasks() -> serde_json::Value {
    json!({
        "train": {"kind": "command", "run": ["train"], "params": {"lr": 0.1}},
        "report": {"kind": "command", "run": ["report"],
                   "inputs": {"w": "sweep-1/*:weights.csv"}},
        "fit": {"kind": "command", "run": ["fit"], "needs": ["train"]},
        "compare": {"kind": "command", "run": ["compare"]},
    })
}

fn data(a: &str, content: &[u8]) -> WriteOp {
    let (index, manifest) = bundle(&[("data.csv", content)], json!({"manifest_version": 1}));
    ingest(a, &index, manifest)
}

fn at(a: &str, version: u64) -> VersionAt {
    VersionAt {
        address: addr(a),
        version,
    }
}

fn report_output(content: &[u8]) -> RunOutput {
    output_of(
        &[("index.html", content)],
        json!({"manifest_version": 1, "meta": {"address": "/e/meta/reports"}}),
    )
}

/// Claims and finishes run `id` with `out`.
fn finish(r: &mut Registry, id: RunId, out: RunOutput) {
    let run = r.run(&id).unwrap();
    report(r, vec![started(&run)]);
    let run = r.run(&id).unwrap();
    let receipt = report(r, vec![succeeded(&run, Some(out))]);
    assert!(receipt.refused.is_empty(), "{:?}", receipt.refused);
}

fn forced(a: &str, task: &str) -> WriteOp {
    WriteOp::Run {
        addr: addr(a),
        task: task.into(),
        set: vec![],
        sweep: vec![],
        force: true,
    }
}

/// `/e@1` the package, `/e@2` data, a sweep of train over lr 0.1 and 0.2 (each finished with
/// its own weights), and the report over them at `/e/meta/reports@1`. Returns the report run.
fn swept() -> (Registry, RunId) {
    let mut r = Registry::default();
    apply(&mut r, code_at("/e", tasks())).unwrap();
    apply(&mut r, data("/e", b"x,y\n1,2\n")).unwrap();
    let sweep = apply(&mut r, run("/e", "train", &[], &["lr=0.1,0.2"])).unwrap();
    assert_eq!(sweep.runs.len(), 2);
    for id in &sweep.runs {
        let lr = r.run(id).unwrap().params["lr"].to_string();
        finish(&mut r, *id, output(format!("weights {lr}").as_bytes()));
    }
    let report_run = apply(&mut r, run("/e", "report", &[], &[])).unwrap().runs[0];
    finish(&mut r, report_run, report_output(b"<h1>report</h1>"));
    (r, report_run)
}

fn run_of(r: &Registry, task: &str, node: &str) -> RunRecord {
    r.runs
        .values()
        .find(|x| x.task == task && x.node == addr(node))
        .map(|x| (**x).clone())
        .unwrap()
}

#[test]
fn the_lineage_of_a_report_over_a_sweep_reaches_each_run_its_params_and_the_code() {
    let (r, report_run) = swept();
    let l = r.lineage(&addr("/e/meta/reports"), Some(1), false).unwrap();
    assert_eq!(l.root, at("/e/meta/reports", 1));
    assert_eq!(l.versions[0].at(), l.root);
    assert_eq!(l.versions[0].made, Made::Run { run: report_run });
    let run = |id: RunId| l.runs.iter().find(|x| x.id == id).unwrap();
    let version = |v: &VersionAt| l.versions.iter().find(|x| x.at() == *v).unwrap();
    let report = run(report_run);
    assert_eq!(
        (report.task.as_str(), report.outcome.clone()),
        ("report", Outcome::Executed)
    );
    let reads: Vec<(String, String)> = report
        .reads
        .iter()
        .map(|x| (x.role.to_string(), x.at.as_ref().unwrap().to_string()))
        .collect();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        reads,
        pairs(&[
            ("code", "/e@1"),
            ("input", "/e@2"),
            ("input w", "/e/sweep-1/lr=0.1@1"),
            ("input w", "/e/sweep-1/lr=0.2@1"),
        ])
    );
    for (lr, node) in [(0.1, "/e/sweep-1/lr=0.1"), (0.2, "/e/sweep-1/lr=0.2")] {
        let v = version(&at(node, 1));
        let Made::Run { run: made_by } = &v.made else {
            panic!("{v:?}");
        };
        let train = run(*made_by);
        assert_eq!(train.task, "train");
        assert_eq!(train.node, addr(node));
        assert_eq!(train.params["lr"], json!(lr), "the sweep run's params");
        assert_eq!(train.reads[0].role, ReadRole::Code);
        assert_eq!(train.reads[0].at, Some(at("/e", 1)), "the code bundle");
        // What the report saw of it: the row's params.
        let selected = report
            .reads
            .iter()
            .find(|x| x.at == Some(at(node, 1)))
            .unwrap();
        let ReadRole::Selected { params, .. } = &selected.role else {
            panic!("{selected:?}");
        };
        assert_eq!(params["lr"], json!(lr));
    }
    // Down to the pushes, each version once however many runs read it.
    assert!(matches!(version(&at("/e", 1)).made, Made::Pushed { .. }));
    assert!(matches!(version(&at("/e", 2)).made, Made::Pushed { .. }));
    assert_eq!(
        l.versions.iter().filter(|v| v.at() == at("/e", 1)).count(),
        1
    );
    assert_eq!((l.versions.len(), l.runs.len(), l.truncated), (5, 3, false));
}

#[test]
fn a_cut_off_rerun_shows_in_the_lineage_of_the_version_it_made_again() {
    let (mut r, first) = swept();
    let again = apply(&mut r, forced("/e", "report")).unwrap().runs[0];
    finish(&mut r, again, report_output(b"<h1>report</h1>"));
    assert_eq!(r.nodes[&addr("/e/meta/reports")].bundles.len(), 1);
    let l = r.lineage(&addr("/e/meta/reports"), None, false).unwrap();
    assert_eq!(l.root, at("/e/meta/reports", 1));
    assert_eq!(l.versions[0].made, Made::Run { run: first });
    assert_eq!(l.versions[0].reproduced_by, [again]);
    let rerun = l.runs.iter().find(|x| x.id == again).unwrap();
    assert_eq!(
        rerun.outcome,
        Outcome::CutOff {
            address: addr("/e/meta/reports"),
            version: 1
        }
    );
    assert_eq!(rerun.output, Some(at("/e/meta/reports", 1)));
}

#[test]
fn a_version_a_reuse_recorded_is_made_by_the_reusing_run() {
    let (mut r, _) = swept();
    let original = run_of(&r, "train", "/e/sweep-1/lr=0.1").id;
    let reuse = apply(&mut r, run("/e", "train", &[], &["lr=0.1"]))
        .unwrap()
        .runs[0];
    let l = r
        .lineage(&addr("/e/sweep-2/lr=0.1"), Some(1), false)
        .unwrap();
    assert_eq!(l.versions[0].made, Made::Run { run: reuse });
    let node = l.runs.iter().find(|x| x.id == reuse).unwrap();
    assert_eq!(node.outcome, Outcome::Reused { from: original });
    // Upstream of the original output, the original run made it.
    let l = r
        .lineage(&addr("/e/sweep-1/lr=0.1"), Some(1), false)
        .unwrap();
    assert_eq!(l.versions[0].made, Made::Run { run: original });
}

#[test]
fn downstream_of_pushed_data_reaches_the_report_through_the_sweep() {
    let (r, report_run) = swept();
    let l = r.lineage(&addr("/e"), Some(2), true).unwrap();
    assert!(l.downstream);
    assert_eq!(l.root, at("/e", 2));
    let trains: Vec<RunId> = ["/e/sweep-1/lr=0.1", "/e/sweep-1/lr=0.2"]
        .iter()
        .map(|n| run_of(&r, "train", n).id)
        .collect();
    let mut expected = trains.clone();
    expected.push(report_run);
    assert_eq!(l.versions[0].read_by, expected, "the sweep and the report");
    for node in ["/e/sweep-1/lr=0.1", "/e/sweep-1/lr=0.2"] {
        let v = l.versions.iter().find(|v| v.at() == at(node, 1)).unwrap();
        assert_eq!(v.read_by, [report_run], "{node} is read by the report");
    }
    let report = l.runs.iter().find(|x| x.id == report_run).unwrap();
    assert_eq!(report.output, Some(at("/e/meta/reports", 1)));
    assert!(
        l.versions
            .iter()
            .any(|v| v.at() == at("/e/meta/reports", 1))
    );
    // The report read the data directly too; it is listed once.
    assert_eq!(l.runs.iter().filter(|x| x.id == report_run).count(), 1);
    // Nothing reads the report: the walk ends there.
    let l = r.lineage(&addr("/e/meta/reports"), Some(1), true).unwrap();
    assert_eq!((l.versions.len(), l.runs.len()), (1, 0));
}

#[test]
fn a_walk_past_its_limit_stops_and_says_so() {
    let (r, _) = swept();
    let l = r.lineage_within(&addr("/e"), Some(1), true, 3).unwrap();
    assert_eq!(l.versions.len() + l.runs.len(), 3);
    assert!(l.truncated);
    let whole = r.lineage(&addr("/e"), Some(1), true).unwrap();
    assert!(!whole.truncated);
    assert_eq!((whole.versions.len(), whole.runs.len()), (4, 3));
}

#[test]
fn lineage_of_what_is_not_there_says_what_is() {
    let (r, _) = swept();
    let err = r.lineage(&addr("/e"), Some(9), false).unwrap_err();
    assert!(err.message.contains("versions 1 to 2"), "{}", err.message);
    assert!(r.lineage(&addr("/nope"), None, false).is_err());
}

#[test]
fn explain_names_executed_reused_and_the_part_that_changed() {
    let (mut r, report_run) = swept();
    let first = apply(&mut r, run("/e", "train", &["lr=0.5"], &[]))
        .unwrap()
        .runs[0];
    let e = r.explain(&first).unwrap();
    assert_eq!(
        e.outcome,
        Outcome::Open {
            state: plotter2_node::protocol::RunState::Queued
        }
    );
    finish(&mut r, first, output(b"weights 0.5"));
    let e = r.explain(&first).unwrap();
    assert_eq!(e.outcome, Outcome::Executed);
    assert!(
        e.fingerprint_checks,
        "the parts give the fingerprint plan made"
    );
    let names: Vec<PartName> = e.parts.iter().map(|p| p.part).collect();
    assert_eq!(
        names,
        [
            PartName::Definition,
            PartName::Code,
            PartName::Inputs,
            PartName::Params
        ]
    );
    assert!(e.previous.is_none(), "the first train at /e");
    assert_eq!(e.reads[0].at, Some(at("/e", 1)));

    let reused = apply(&mut r, run("/e", "train", &["lr=0.5"], &[]))
        .unwrap()
        .runs[0];
    let e = r.explain(&reused).unwrap();
    assert_eq!(e.outcome, Outcome::Reused { from: first });
    let previous = e.previous.unwrap();
    assert_eq!((previous.run, previous.changed), (first, vec![]));

    let other = apply(&mut r, run("/e", "train", &["lr=0.7"], &[]))
        .unwrap()
        .runs[0];
    let e = r.explain(&other).unwrap();
    let previous = e.previous.unwrap();
    assert_eq!(previous.run, reused);
    assert_eq!(
        previous.changed,
        [PartName::Params],
        "only the params differ"
    );
    assert!(!e.forced);

    // A pipeline-like run: its selected versions are a part of their own.
    let e = r.explain(&report_run).unwrap();
    assert!(e.fingerprint_checks);
    assert_eq!(e.parts.last().map(|p| p.part), Some(PartName::Selected));

    // A run with needs: their fingerprints are a part.
    let fit = apply(&mut r, run("/e", "fit", &[], &[])).unwrap();
    let e = r.explain(fit.runs.last().unwrap()).unwrap();
    assert_eq!(e.task, "fit");
    assert!(e.parts.iter().any(|p| p.part == PartName::Needs));
    assert!(e.fingerprint_checks);
}

#[test]
fn explain_names_a_cut_off_run_and_what_its_rule_did_not_do() {
    let mut r = Registry::default();
    let (index, manifest) = bundle(
        &[("run.sh", b"true")],
        json!({"manifest_version": 1, "contains": {"package": {"tasks": tasks(), "rules": [
            {"on": "run_succeeded", "task": "train", "run": "compare"}
        ]}}}),
    );
    apply(&mut r, ingest("/e", &index, manifest)).unwrap();
    let train = apply(&mut r, run("/e", "train", &[], &[])).unwrap().runs[0];
    finish(&mut r, train, output(b"weights"));
    let compare = run_of(&r, "compare", "/e");
    let e = r.explain(&compare.id).unwrap();
    assert_eq!(e.cause.as_ref().unwrap().rule.to_string(), "compare@/e");
    assert!(e.rule_decisions.iter().any(|d| matches!(
        d.decision.verdict,
        Verdict::Fired { run, .. } if run == compare.id
    )));
    let e = r.explain(&train).unwrap();
    assert!(
        e.set_off
            .iter()
            .any(|d| matches!(d.decision.verdict, Verdict::Fired { run, .. } if run == compare.id)),
        "{:?}",
        e.set_off
    );

    let again = apply(&mut r, forced("/e", "train")).unwrap().runs[0];
    finish(&mut r, again, output(b"weights"));
    let e = r.explain(&again).unwrap();
    assert!(e.forced);
    assert_eq!(
        e.outcome,
        Outcome::CutOff {
            address: addr("/e"),
            version: 2
        }
    );
    let previous = e.previous.as_ref().unwrap();
    assert_eq!((previous.run, previous.changed.len()), (train, 0));
    let why: Vec<String> = e
        .set_off
        .iter()
        .map(|d| format!("{}: {}", d.rule, d.decision.verdict))
        .collect();
    assert_eq!(
        why,
        [format!(
            "compare@/e: not fired: run {again} was cut off (its output is already /e@2)"
        )]
    );
    assert!(r.explain(&RunId { seq: 99, n: 0 }).is_err());
}
