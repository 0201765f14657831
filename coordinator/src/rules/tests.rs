//! The rule engine, applied to a registry as the log would be.

use plotter2_node::protocol::{
    RequestId, RunId, RunRecord, RunState, Trigger, UserName, Verdict, WriteOp,
};
use serde_json::json;

use crate::registry::Registry;
use crate::testing::*;
use crate::types::Command;

/// A package at `/e` with a report over every metrics.csv below it, a train task, and `rules`.
fn package(rules: serde_json::Value) -> WriteOp {
    package_with(
        json!({
            "report": {"kind": "command", "run": ["true"], "inputs": {"m": "bundles/*:metrics.csv"}},
            "train": {"kind": "command", "run": ["true"], "params": {"lr": 0.1}},
            "compare": {"kind": "command", "run": ["true"]},
        }),
        rules,
    )
}

fn package_with(tasks: serde_json::Value, rules: serde_json::Value) -> WriteOp {
    let (index, manifest) = bundle(
        &[("run.sh", b"true")],
        json!({"manifest_version": 1, "contains": {"package": {"tasks": tasks, "rules": rules}}}),
    );
    ingest("/e", &index, manifest)
}

fn data(a: &str, file: &str, content: &[u8]) -> WriteOp {
    let (index, manifest) = bundle(&[(file, content)], json!({"manifest_version": 1}));
    ingest(a, &index, manifest)
}

fn report_rule() -> serde_json::Value {
    json!([{"on": "bundle", "under": ".", "match": "**/metrics.csv", "run": "report"}])
}

fn runs_of(r: &Registry, task: &str) -> Vec<RunRecord> {
    r.runs
        .values()
        .filter(|x| x.task == task)
        .map(|x| (**x).clone())
        .collect()
}

fn verdicts(r: &Registry, rule: &str) -> Vec<Verdict> {
    let key = format!("{rule}@/e").parse().unwrap();
    r.rules[&key]
        .recent
        .iter()
        .map(|d| d.verdict.clone())
        .collect()
}

/// Claims and finishes `run` with `out` (or fails it).
fn finish(r: &mut Registry, run: &RunRecord, out: Result<&[u8], &str>) {
    report(r, vec![started(run)]);
    let run = r.run(&run.id).unwrap();
    let item = match out {
        Ok(content) => succeeded(&run, Some(output(content))),
        Err(why) => failed(&run, why),
    };
    let receipt = report(r, vec![item]);
    assert!(receipt.refused.is_empty(), "{:?}", receipt.refused);
}

#[test]
fn three_quick_bundles_make_two_report_runs_and_the_last_covers_all_three() {
    let mut r = Registry::default();
    apply(&mut r, package(report_rule())).unwrap();
    assert!(
        runs_of(&r, "report").is_empty(),
        "the package holds no metrics.csv"
    );
    for i in 1..=3 {
        apply(
            &mut r,
            data(
                &format!("/e/d{i}"),
                "metrics.csv",
                format!("{i}").as_bytes(),
            ),
        )
        .unwrap();
    }
    let reports = runs_of(&r, "report");
    assert_eq!(
        reports.len(),
        1,
        "the second and third coalesce into one more run"
    );
    let first = reports[0].clone();
    // What the report reads: every version below /e (the package too; the worker matches
    // the files).
    let covered = |run: &RunRecord| -> Vec<String> {
        run.selected
            .iter()
            .map(|s| s.address.to_string())
            .filter(|a| a != "/e")
            .collect()
    };
    assert_eq!(covered(&first), ["/e/d1"]);
    assert!(matches!(
        verdicts(&r, "report")[..],
        [
            Verdict::NoMatch,
            Verdict::Fired { .. },
            Verdict::Coalesced { .. },
            Verdict::Coalesced { .. }
        ]
    ));
    let cause = first.cause.as_ref().unwrap();
    assert_eq!(cause.rule.to_string(), "report@/e");

    finish(&mut r, &first, Ok(b"report 1"));
    let reports = runs_of(&r, "report");
    assert_eq!(reports.len(), 2);
    let second = &reports[1];
    assert_eq!(covered(second), ["/e/d1", "/e/d2", "/e/d3"]);
    assert!(matches!(
        &second.cause.as_ref().unwrap().trigger,
        Trigger::Coalesced { count: 2, .. }
    ));
    // Its output lands under the subtree it watches: not a trigger of its own.
    finish(&mut r, &second.clone(), Ok(b"report 2"));
    assert_eq!(runs_of(&r, "report").len(), 2);
    assert!(verdicts(&r, "report").contains(&Verdict::OwnOutput));
    let key = "report@/e".parse().unwrap();
    let state = &r.rules[&key];
    assert_eq!(
        (state.fired, state.open, state.pending.is_some()),
        (2, None, false)
    );
}

#[test]
fn a_bundle_without_a_matching_file_does_not_fire_and_says_so() {
    let mut r = Registry::default();
    apply(&mut r, package(report_rule())).unwrap();
    apply(&mut r, data("/e/d1", "notes.txt", b"x")).unwrap();
    assert!(runs_of(&r, "report").is_empty());
    assert_eq!(verdicts(&r, "report"), [Verdict::NoMatch, Verdict::NoMatch]);
}

#[test]
fn a_failing_report_does_not_refire_by_itself_and_the_next_bundle_does() {
    let mut r = Registry::default();
    apply(&mut r, package(report_rule())).unwrap();
    apply(&mut r, data("/e/d1", "metrics.csv", b"1")).unwrap();
    let first = runs_of(&r, "report").remove(0);
    finish(&mut r, &first, Err("boom"));
    assert_eq!(r.run(&first.id).unwrap().state, RunState::Failed);
    assert_eq!(runs_of(&r, "report").len(), 1, "a failure fires nothing");
    apply(&mut r, data("/e/d2", "metrics.csv", b"2")).unwrap();
    assert_eq!(runs_of(&r, "report").len(), 2, "the next bundle does");
}

#[test]
fn a_child_switches_an_inherited_rule_off_for_its_subtree() {
    let mut r = Registry::default();
    apply(&mut r, package(report_rule())).unwrap();
    apply(
        &mut r,
        WriteOp::New {
            addr: addr("/e/quiet"),
            set: vec!["rules.report=off".parse().unwrap()],
        },
    )
    .unwrap();
    apply(&mut r, data("/e/quiet/d1", "metrics.csv", b"1")).unwrap();
    assert!(runs_of(&r, "report").is_empty());
    assert_eq!(
        verdicts(&r, "report")[1..],
        [Verdict::SwitchedOff {
            by: addr("/e/quiet")
        }]
    );
    // The switch is config, not a param: runs below it keep their fingerprints.
    let view = r.rules_view(&addr("/e/quiet")).unwrap();
    assert_eq!(view[0].switched_off_by, Some(addr("/e/quiet")));
    apply(&mut r, data("/e/loud/d1", "metrics.csv", b"1")).unwrap();
    assert_eq!(runs_of(&r, "report").len(), 1);
}

#[test]
fn a_run_that_changes_nothing_is_cut_off_and_fires_nothing_downstream() {
    let mut r = Registry::default();
    apply(
        &mut r,
        package(json!([{"on": "run_succeeded", "task": "train", "run": "compare"}])),
    )
    .unwrap();
    apply(&mut r, run("/e", "train", &[], &[])).unwrap();
    let train = runs_of(&r, "train").remove(0);
    finish(&mut r, &train, Ok(b"weights"));
    assert_eq!(
        runs_of(&r, "compare").len(),
        1,
        "a new output fires compare"
    );

    // The same work again (forced), the same output: no version, no compare.
    apply(
        &mut r,
        WriteOp::Run {
            addr: addr("/e"),
            task: "train".into(),
            set: vec![],
            sweep: vec![],
            force: true,
        },
    )
    .unwrap();
    let again = runs_of(&r, "train").remove(1);
    let versions = r.nodes[&addr("/e")].bundles.len();
    finish(&mut r, &again, Ok(b"weights"));
    let again = r.run(&again.id).unwrap();
    assert!(again.output.as_ref().unwrap().existing, "cut off");
    assert_eq!(r.nodes[&addr("/e")].bundles.len(), versions);
    assert_eq!(runs_of(&r, "compare").len(), 1);
    assert!(matches!(
        verdicts(&r, "compare").last(),
        Some(Verdict::CutOff { .. })
    ));
}

#[test]
fn rules_that_set_each_other_off_stop_when_the_chain_would_close() {
    let mut r = Registry::default();
    apply(
        &mut r,
        // Each reads every version of /e, so each run sees the other's latest output and is
        // new work: only the chain stops them.
        package_with(
            json!({
                "train": {"kind": "command", "run": ["true"], "inputs": {"all": ".@*:**"}},
                "compare": {"kind": "command", "run": ["true"], "inputs": {"all": ".@*:**"}},
            }),
            // Rules with a "match" are not judged at ingest: their chain stops them.
            json!([
                {"name": "after_train", "on": "bundle", "match": "**/weights.csv", "run": "compare"},
                {"name": "after_compare", "on": "bundle", "match": "**/weights.csv", "run": "train"},
            ]),
        ),
    )
    .unwrap();
    apply(&mut r, run("/e", "train", &[], &[])).unwrap();
    let mut out = 0u8;
    // train → compare → train → compare: the second compare would close the loop. (Each
    // rule also sees its own task's output, and does not fire on it.)
    loop {
        let open: Vec<RunRecord> = r
            .runs
            .values()
            .filter(|x| !x.state.is_finished())
            .map(|x| (**x).clone())
            .collect();
        let Some(next) = open.first() else { break };
        out += 1;
        assert!(out < 10, "the rules loop");
        finish(&mut r, next, Ok(&[out]));
    }
    assert_eq!(runs_of(&r, "train").len(), 2);
    assert_eq!(runs_of(&r, "compare").len(), 1);
    let last = verdicts(&r, "after_train");
    let Some(Verdict::WouldLoop { chain }) = last.last() else {
        panic!("{last:?}");
    };
    let names: Vec<String> = chain.iter().map(|c| c.name.clone()).collect();
    assert_eq!(names, ["after_train", "after_compare", "after_train"]);
}

#[test]
fn rules_that_would_set_each_other_off_for_ever_are_refused_at_ingest_naming_the_chain() {
    let mut r = Registry::default();
    let err = apply(
        &mut r,
        package(json!([
            {"name": "a", "on": "run_succeeded", "task": "train", "run": "compare"},
            {"name": "b", "on": "run_failed", "task": "compare", "run": "train"},
        ])),
    )
    .unwrap_err();
    assert!(
        err.message.contains("a@/e → b@/e → a@/e"),
        "{}",
        err.message
    );
    assert!(
        !r.nodes.contains_key(&addr("/e")),
        "nothing of it was stored"
    );
    // Two reports on every bundle (no "match") would rebuild on each other's output.
    let err = apply(
        &mut r,
        package(json!([
            {"name": "one", "on": "bundle", "run": "report"},
            {"name": "two", "on": "bundle", "run": "compare"},
        ])),
    )
    .unwrap_err();
    assert!(
        err.message.contains("one@/e → two@/e → one@/e"),
        "{}",
        err.message
    );
    // A rule watches its own node's subtree only.
    let err = apply(
        &mut r,
        package(json!([{"on": "bundle", "under": "/elsewhere", "run": "report"}])),
    )
    .unwrap_err();
    assert!(
        err.message
            .contains("rules[0].under: /elsewhere is not at or below /e"),
        "{}",
        err.message
    );
    // A report on its own output is no loop (it never fires on it), nor is a chain that ends;
    // a rule with a "match" is judged when its bundles arrive.
    apply(
        &mut r,
        package(json!([
            {"name": "report", "on": "bundle", "match": "**/metrics.csv", "run": "report"},
            {"name": "then", "on": "run_succeeded", "task": "report", "run": "compare"},
        ])),
    )
    .unwrap();
}

fn at_time(r: &mut Registry, time_ms: u64, op: WriteOp) {
    let n = r.request_count() + 1;
    r.apply(
        Command {
            id: RequestId::new(),
            user: UserName::parse("tali").unwrap(),
            time_ms,
            trace: None,
            op,
        },
        n,
    )
    .unwrap();
}

#[test]
fn a_schedule_fires_when_a_request_stamped_after_it_is_applied() {
    let mut r = Registry::default();
    at_time(
        &mut r,
        10_000,
        package(json!([{"on": "schedule", "every": "1h", "run": "compare"}])),
    );
    assert_eq!(r.next_due_ms(), Some(10_000 + 3_600_000));
    at_time(&mut r, 20_000, WriteOp::Tick {});
    assert!(runs_of(&r, "compare").is_empty());
    at_time(&mut r, 10_000 + 3_600_000, WriteOp::Tick {});
    let compare = runs_of(&r, "compare");
    assert_eq!(compare.len(), 1);
    assert_eq!(r.next_due_ms(), Some(10_000 + 2 * 3_600_000));
    // Due again while its run is open: coalesced, one run after it.
    at_time(&mut r, 10_000 + 2 * 3_600_000, WriteOp::Tick {});
    assert_eq!(runs_of(&r, "compare").len(), 1);
    finish(&mut r, &compare[0], Ok(b"c"));
    assert_eq!(runs_of(&r, "compare").len(), 2);
}

#[test]
fn replicas_derive_the_same_rule_runs() {
    let build = || {
        let mut r = Registry::default();
        apply(&mut r, package(report_rule())).unwrap();
        for i in 0..5 {
            apply(&mut r, data(&format!("/e/d{i}"), "metrics.csv", &[i])).unwrap();
        }
        let first = runs_of(&r, "report").remove(0);
        finish(&mut r, &first, Ok(b"r"));
        r
    };
    let (a, b) = (build(), build());
    assert_eq!(runs_of(&a, "report").len(), 2);
    let ids = |r: &Registry| -> Vec<RunId> { runs_of(r, "report").iter().map(|x| x.id).collect() };
    assert_eq!(ids(&a), ids(&b));
    let snapshot = rmp_serde::to_vec_named(&a).unwrap();
    let c: Registry = rmp_serde::from_slice(&snapshot).unwrap();
    assert_eq!(c.digest(), a.digest());
}
