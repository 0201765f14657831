//! Attempts of runs.

use plotter2_node::protocol::{RunRecord, RunState};

use crate::registry::Registry;

use crate::testing::*;
use plotter2_node::protocol::{AttemptUpdate, MAX_LOST};
use plotter2_node::protocol::{RequestStatus, WriteOp};
use serde_json::json;

#[test]
fn a_batch_applies_item_by_item_and_refuses_alone() {
    let mut r = registry_with(json!({"train": {"kind": "command", "run": ["true"]}}));
    let ids = apply(&mut r, run("/e", "train", &[], &["lr=1,2,3"]))
        .unwrap()
        .runs;
    let runs: Vec<RunRecord> = ids.iter().map(|i| r.run(i).unwrap()).collect();
    // Run 0 is claimed and finished in one batch; run 1 is cancelled first, so its claim
    // is refused; run 2 is claimed.
    apply(
        &mut r,
        WriteOp::Cancel {
            node: runs[1].node.clone(),
            run: runs[1].id,
        },
    )
    .unwrap();
    let receipt = report(
        &mut r,
        vec![
            started(&runs[0]),
            succeeded(&runs[0], None),
            started(&runs[1]),
            started(&runs[2]),
        ],
    );
    assert_eq!(receipt.refused.len(), 1, "{:?}", receipt.refused);
    assert_eq!(receipt.refused[0].index, 2);
    assert_eq!(receipt.refused[0].run, runs[1].id);
    assert!(receipt.refused[0].error.message.contains("already ended"));
    assert_eq!(r.run(&ids[0]).unwrap().state, RunState::Succeeded);
    assert_eq!(r.run(&ids[1]).unwrap().state, RunState::Cancelled);
    assert_eq!(r.run(&ids[2]).unwrap().state, RunState::Running);
    assert_eq!(r.run(&ids[2]).unwrap().attempts[0].worker, "w");
    let rec = r.request(&receipt.id).unwrap();
    assert_eq!(rec.status, RequestStatus::Done);
    assert_eq!(rec.refused, receipt.refused);
    assert_eq!(
        r.running_runs().iter().map(|x| x.id).collect::<Vec<_>>(),
        [ids[2]]
    );

    // An item outside the pool refuses the whole report before the log.
    let outside = WriteOp::Attempts {
        pool: addr("/other"),
        worker: "w".into(),
        items: vec![started(&runs[2])],
    };
    let e = apply(&mut r, outside).unwrap_err();
    assert!(
        e.message.contains("outside the pool /other"),
        "{}",
        e.message
    );
}

#[test]
fn needs_run_first_and_hand_over_their_outputs() {
    let mut r = registry_with(json!({
        "train": {"kind": "command", "run": ["true"]},
        "eval": {"kind": "command", "run": ["true"], "needs": ["train"]},
        "report": {"kind": "command", "run": ["true"], "needs": ["train", "eval"]}
    }));
    let ids = apply(&mut r, run("/e", "report", &[], &[])).unwrap().runs;
    let get = |r: &Registry, i: usize| r.run(&ids[i]).unwrap();
    assert_eq!(ids.len(), 3, "train once, though two tasks need it");
    let tasks: Vec<String> = (0..3).map(|i| get(&r, i).task).collect();
    assert_eq!(
        tasks,
        ["train", "eval", "report"],
        "needs are created first"
    );
    assert_eq!(get(&r, 0).state, RunState::Queued);
    assert_eq!(get(&r, 1).state, RunState::Waiting);
    assert_eq!(get(&r, 2).state, RunState::Waiting);
    assert_eq!(r.queued_runs().len(), 1, "only train is published");
    assert_eq!(get(&r, 2).needs.len(), 2);

    let train = get(&r, 0);
    report(&mut r, vec![started(&train)]);
    report(&mut r, vec![succeeded(&train, Some(output(b"weights")))]);
    let eval = get(&r, 1);
    assert_eq!(eval.state, RunState::Queued, "train succeeded: eval may go");
    let out = eval.needs[0]
        .output
        .clone()
        .expect("train's output handed over");
    assert_eq!(out.id, train_output_id());
    assert_eq!(
        get(&r, 2).state,
        RunState::Waiting,
        "report still needs eval"
    );
    assert_eq!(get(&r, 2).needs[0].output, Some(out));

    report(&mut r, vec![started(&eval)]);
    report(&mut r, vec![failed(&eval, "boom")]);
    let rep = get(&r, 2);
    assert_eq!(rep.state, RunState::Failed);
    let reason = rep.reason.unwrap();
    assert!(
        reason.contains("needs eval") && reason.contains("boom"),
        "{reason}"
    );
    assert!(r.dependents.is_empty(), "nothing waits any more");

    // Asked again: train is reused, so eval is queued at once; report waits for it.
    let again = apply(&mut r, run("/e", "report", &[], &[])).unwrap().runs;
    assert_eq!(r.run(&again[0]).unwrap().state, RunState::Succeeded);
    assert_eq!(r.run(&again[1]).unwrap().state, RunState::Queued);
    assert!(r.run(&again[1]).unwrap().needs[0].output.is_some());
    assert_eq!(r.run(&again[2]).unwrap().state, RunState::Waiting);

    // Cancelling a need fails what waits for it.
    apply(
        &mut r,
        WriteOp::Cancel {
            node: addr("/e"),
            run: again[1],
        },
    )
    .unwrap();
    let reason = r.run(&again[2]).unwrap().reason.unwrap();
    assert!(reason.contains("was cancelled"), "{reason}");
}

#[test]
fn a_cycle_of_needs_across_packages_is_refused() {
    let mut r = registry_with(json!({
        "a": {"kind": "command", "run": ["true"], "needs": ["b"]},
        "b": {"kind": "command", "run": ["true"]}
    }));
    apply(
        &mut r,
        code_at(
            "/e/x",
            json!({"b": {"kind": "command", "run": ["true"], "needs": ["a"]}}),
        ),
    )
    .unwrap();
    let before = r.runs.len();
    let e = apply(&mut r, run("/e/x", "a", &[], &[])).unwrap_err();
    assert!(
        e.message.contains("cycle") && e.message.contains("a → b → a"),
        "{}",
        e.message
    );
    assert_eq!(r.runs.len(), before);
}

#[test]
fn lost_attempts_are_queued_again_then_fail() {
    let mut r = registry_with(json!({"train": {"kind": "command", "run": ["true"]}}));
    let id = apply(&mut r, run("/e", "train", &[], &[])).unwrap().runs[0];
    for n in 1..=MAX_LOST {
        let rec = r.run(&id).unwrap();
        assert_eq!(rec.attempt, n);
        report(&mut r, vec![started(&rec)]);
        let lost = AttemptUpdate::Lost {
            node: rec.node.clone(),
            run: id,
            attempt: n,
            reason: "worker w stopped answering".into(),
        };
        let receipt = report(&mut r, vec![lost.clone()]);
        assert!(receipt.refused.is_empty());
        // The same finding again is stale.
        assert_eq!(report(&mut r, vec![lost]).refused.len(), 1);
    }
    let rec = r.run(&id).unwrap();
    assert_eq!(rec.state, RunState::Failed);
    assert!(rec.reason.unwrap().contains("lost 3 times"));
    assert!(rec.attempts.iter().all(|a| a.lost));
    assert!(r.queued_runs().is_empty() && r.running_runs().is_empty());
}

#[test]
fn a_rerun_at_the_same_node_reuses_despite_the_output_it_added() {
    let mut r = registry_with(json!({"train": {"kind": "command", "run": ["true"]}}));
    let id = apply(&mut r, run("/e", "train", &[], &[])).unwrap().runs[0];
    let rec = r.run(&id).unwrap();
    report(&mut r, vec![started(&rec)]);
    report(&mut r, vec![succeeded(&rec, Some(output(b"weights")))]);
    let shown = r.show(&addr("/e")).unwrap();
    assert_eq!(shown.bundles.len(), 2);
    assert_eq!(shown.bundles[1].run, Some(id), "the output records its run");
    let again = apply(&mut r, run("/e", "train", &[], &[])).unwrap().runs[0];
    let again = r.run(&again).unwrap();
    assert_eq!(again.inputs, rec.inputs, "a run's output is not an input");
    assert_eq!(again.reused_from, Some(id));
    assert_eq!(
        r.show(&addr("/e")).unwrap().bundles.len(),
        2,
        "no new version"
    );
}
