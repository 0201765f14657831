//! Frames that hold frames, and `table`: a grid frame takes the figures after it as cells (also
//! a `repeat`'s, one per group), a table is drawn from the rows as they are and put aside.
//! `DATTER_DRAW_SAMPLES=/tmp/draw-samples` writes the pictures there, to look at.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use datter::draw::{Body, Figure};
use datter::pipeline::{Output, RunError, check, run};
use serde_json::{Value, json};

mod common;
use common::metrics_inputs;

fn go(steps: Value) -> Result<Output, RunError> {
    let dir = tempfile::tempdir().unwrap();
    let inputs = metrics_inputs(dir.path());
    let steps = check(steps.as_array().unwrap(), &["metrics"]).unwrap();
    let out = run(&steps, &inputs)?;
    if let Ok(samples) = std::env::var("DATTER_DRAW_SAMPLES") {
        std::fs::create_dir_all(&samples).unwrap();
        for d in &out.figures {
            d.figure.save(format!("{samples}/{}.png", d.name)).unwrap();
        }
    }
    Ok(out)
}

fn cells(f: &Figure) -> (usize, Vec<&Figure>) {
    match &f.body {
        Body::Grid { cols, figures } => (*cols, figures.iter().collect()),
        _ => panic!("{:?} is no grid", f.title),
    }
}

#[test]
fn a_grid_frame_takes_the_frames_after_it_as_cells() {
    let out = go(json!([
        ["access", {"from": "metrics"}], ["label", {"by": "bundle"}],
        ["frame", {"title": "Overview", "cols": 2}],
        ["frame", {"title": "Reward"}], ["axis", {"x": "step", "y": "reward"}], ["plot"],
        ["animate", {"frames": 4}],
        ["frame", {"title": "Rewards"}], ["plot", {"kind": "histogram", "x": "reward"}],
        ["mean", {"columns": ["reward"]}],
        ["table", {"title": "Mean reward"}],
    ]))
    .unwrap();
    assert_eq!(out.figures.len(), 1, "one picture: the grid");
    let grid = &out.figures[0];
    assert_eq!(grid.title, "Overview");
    assert!(grid.in_report);
    let (cols, figs) = cells(&grid.figure);
    assert_eq!(cols, 2);
    let titles: Vec<_> = figs.iter().map(|f| f.title.as_deref().unwrap()).collect();
    assert_eq!(titles, ["Reward", "Rewards", "Mean reward"]);
    assert!(matches!(figs[2].body, Body::Table(_)));
    // The table is also put aside, as a CSV and a table on the report page.
    assert!(out.tables.iter().any(|t| t.name.ends_with("mean-reward")));
    let svg = grid.figure.to_svg().unwrap();
    assert!(svg.contains("table-head") && svg.contains("Reward"));
    assert!(grid.figure.to_png().unwrap().starts_with(b"\x89PNG"));
}

#[test]
fn a_grid_before_repeat_has_a_cell_per_group_and_alone_ends_it() {
    let out = go(json!([
        ["access", {"from": "metrics"}], ["label", {"by": "bundle"}],
        ["frame", {"title": "Per run", "cols": 3}],
        ["repeat"], ["frame", {"title": "Reward"}], ["plot", {"x": "step", "y": "reward"}],
    ]))
    .unwrap();
    let (_, figs) = cells(&out.figures[0].figure);
    let titles: Vec<_> = figs.iter().map(|f| f.title.as_deref().unwrap()).collect();
    assert_eq!(titles, ["Reward: b3:0", "Reward: b3:1", "Reward: b3:2"]);

    let out = go(json!([
        ["access", {"from": "metrics"}],
        ["frame", {"cols": 2}], ["plot", {"x": "step", "y": "reward"}],
        ["frame"], ["plot", {"kind": "histogram", "x": "reward"}],
        ["frame", {"title": "On its own", "alone": true}], ["plot", {"x": "step", "y": "reward"}],
    ]))
    .unwrap();
    assert_eq!(out.figures.len(), 2);
    assert_eq!(cells(&out.figures[0].figure).1.len(), 2);
    assert!(matches!(out.figures[1].figure.body, Body::Plot(_)));
    assert_eq!(out.figures[1].title, "On its own");
}

#[test]
fn a_table_on_its_own_is_a_picture_the_page_leaves_to_its_table() {
    let out = go(json!([
        ["access", {"from": "metrics"}], ["label", {"by": "bundle"}],
        ["matrix", {"metrics": ["reward"], "reduce": ["last", "max"]}],
        ["select", {"where": "step > 15"}],
        ["table", {"columns": ["label", "step", "reward"], "rows": 5}],
    ]))
    .unwrap();
    let d = &out.figures[0];
    assert!(!d.in_report, "the page shows the table itself");
    let Body::Table(t) = &d.figure.body else {
        panic!("a table")
    };
    assert_eq!(t.columns, ["label", "step", "reward"]);
    assert_eq!(t.numeric, [false, true, true]);
    assert_eq!((t.rows.len(), t.more), (5, 12 - 5));
    let put = out.tables.iter().find(|t| t.name == d.name).unwrap();
    assert_eq!(put.frame.rows(), 12, "the CSV keeps every row");
}

#[test]
fn a_table_of_a_column_that_is_not_there_names_it() {
    let err = go(json!([
        ["access", {"from": "metrics"}],
        ["table", {"columns": ["loss"]}],
    ]))
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("step 1 (table)") && text.contains("loss"),
        "{text}"
    );
}
