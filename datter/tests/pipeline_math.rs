//! The math ops in pipelines: each runs as a bare name after `access` and `label`, fills in
//! defaults from the steps before, and names what it cannot use; `repeat` runs the steps after
//! it per group. (Their numbers are checked against numpy in `against_numpy_math.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use datter::Column;
use datter::pipeline::{Inputs, Origin, Output, RunError, Source, check, run};
use serde_json::{Value, json};

fn go(steps: Value, inputs: &Inputs) -> Result<Output, RunError> {
    let steps = check(steps.as_array().unwrap(), &["metrics"]).unwrap();
    run(&steps, inputs)
}

/// Three bundles of `metrics.csv` from two sweep children (as in the pipeline's unit tests).
fn inputs(dir: &std::path::Path) -> Inputs {
    let mut files = Vec::new();
    for (i, (lr, rewards)) in [
        ("0.1", [0.1, 0.4, 0.3]),
        ("0.2", [0.2, 0.5, 0.9]),
        ("0.2", [0.3, 0.6, 0.8]),
    ]
    .iter()
    .enumerate()
    {
        let path = dir.join(format!("m{i}.csv"));
        let mut text = "step,reward,note\n".to_owned();
        for (s, r) in rewards.iter().enumerate() {
            text.push_str(&format!("{s},{r},x\n"));
        }
        std::fs::write(&path, text).unwrap();
        files.push(Source {
            path,
            origin: Origin {
                bundle: format!("b3:{i}"),
                address: format!("/e/sweep-1/lr={lr}"),
                version: if i == 2 { 2 } else { 1 },
                file: "metrics.csv".into(),
                params: [("lr".to_owned(), (*lr).to_owned())].into(),
            },
        });
    }
    let mut inputs = Inputs::new();
    inputs.insert("metrics", files);
    inputs
}

/// Two sweep children of one bundle each, five steps apiece: a series per label.
fn series(dir: &std::path::Path) -> Inputs {
    let mut files = Vec::new();
    for (i, lr) in ["0.1", "0.2"].iter().enumerate() {
        let path = dir.join(format!("s{i}.csv"));
        let mut text = "step,reward,loss\n".to_owned();
        for s in 0..5 {
            let r = f64::from(s) * (0.1 + f64::from(u8::try_from(i).unwrap()));
            text.push_str(&format!("{s},{r},{}\n", 1.0 / f64::from(s + 1)));
        }
        std::fs::write(&path, text).unwrap();
        files.push(Source {
            path,
            origin: Origin {
                bundle: format!("b3:{i}"),
                address: format!("/e/sweep-1/lr={lr}"),
                version: 1,
                file: "metrics.csv".into(),
                params: [("lr".to_owned(), (*lr).to_owned())].into(),
            },
        });
    }
    let mut inputs = Inputs::new();
    inputs.insert("metrics", files);
    inputs
}

const MATH_OPS: [&str; 18] = [
    "boxer",
    "cosine_similarity",
    "sine",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "exp",
    "log",
    "derivative",
    "integral",
    "fit",
    "repeat",
];

#[test]
fn the_math_ops_run_on_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = series(dir.path());
    for op in MATH_OPS {
        let out =
            go(json!(["access", "label", op]), &inputs).unwrap_or_else(|e| panic!("{op}: {e}"));
        assert!(out.data.rows() > 0, "{op}");
    }
    let out = go(json!(["access", "label", "boxer"]), &inputs).unwrap();
    assert_eq!(out.tables[0].name, "boxer");
    assert_eq!(
        out.tables[0].frame.names(),
        ["bin", "lower", "upper", "count"]
    );
    // The first measured column is step, 0..4: ten bins of 0.4.
    assert_eq!(
        out.data.get("bin").map(|c| c.text_at(0)).unwrap(),
        "[0, 0.4)"
    );
    assert_eq!(
        out.data.get("bin").map(|c| c.text_at(4)).unwrap(),
        "[3.6, 4]"
    );
    // dy/dx of reward over step: the slope of each child, in place.
    let out = go(json!(["access", "label", "derivative"]), &inputs).unwrap();
    let d = out.data.numbers("reward").unwrap();
    for (i, v) in d.iter().enumerate() {
        let slope = if i < 5 { 0.1 } else { 1.1 };
        assert!((v - slope).abs() < 1e-12, "{d:?}");
    }
    assert_eq!(out.data.numbers("step").unwrap()[4], 4.0, "x is kept");
    let out = go(json!(["access", "label", "integral"]), &inputs).unwrap();
    assert_eq!(
        out.data.names(),
        ["label", "reward_integral", "loss_integral"]
    );
    let i = out.data.numbers("reward_integral").unwrap();
    assert!(
        (i[0] - 0.8).abs() < 1e-12 && (i[1] - 8.8).abs() < 1e-12,
        "{i:?}"
    );
    let out = go(json!(["access", "label", "fit"]), &inputs).unwrap();
    let fit = &out.tables[0];
    assert_eq!(fit.frame.names(), ["label", "c0", "c1", "r2", "rmse"]);
    let c1 = fit.frame.numbers("c1").unwrap();
    assert!((c1[0] - 0.1).abs() < 1e-12 && (c1[1] - 1.1).abs() < 1e-12);
    assert!(out.data.get("reward_fit").is_some() && out.data.get("reward_residual").is_some());
    let out = go(
        json!(["access", "label", ["fit", {"kind": "polynomial", "y": "loss"}]]),
        &inputs,
    )
    .unwrap();
    assert_eq!(
        out.tables[0].frame.names(),
        ["label", "c0", "c1", "c2", "r2", "rmse"]
    );
    let out = go(json!(["access", "label", "cosine_similarity"]), &inputs).unwrap();
    let t = &out.tables[0].frame;
    assert_eq!((t.rows(), t.width()), (10, 11));
    assert_eq!(t.names()[1..3], ["lr=0.1", "lr=0.1 (2)"]);
    let out = go(json!(["access", ["log", {"columns": "loss"}]]), &inputs).unwrap();
    assert_eq!(out.data.numbers("loss").unwrap()[0], 0.0);
}

#[test]
fn math_ops_name_what_they_cannot_use() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    // Two bundles of lr=0.2 make one label: y is not one series over step there.
    let e = go(json!(["access", "label", "derivative"]), &inputs)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "step 2 (derivative): column \"step\" has the value 0 twice in label \"lr=0.2\""
        ),
        "{e}"
    );
    // By bundle, each is a series.
    let out = go(
        json!(["access", "label", ["repeat", {"by": "bundle"}], "derivative"]),
        &inputs,
    )
    .unwrap();
    assert_eq!(out.data.rows(), 9);
    let e = go(
        json!(["access", ["fit", {"kind": "linear", "degree": 3}]]),
        &inputs,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("a linear fit has degree 1, not 3"), "{e}");
    let e = go(json!(["access", ["boxer", {"column": "note"}]]), &inputs)
        .unwrap_err()
        .to_string();
    assert!(e.contains("column \"note\" holds text values"), "{e}");
    let e = go(json!(["access", ["fit", {"y": "nope"}]]), &inputs)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("step 1 (fit): no column \"nope\""), "{e}");
    let e = go(
        json!(["access", "repeat", ["mean", {"columns": "note"}]]),
        &inputs,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "step 2 (mean): in the rows of param.lr \"0.1\": column \"note\" holds text values; a number column is needed"
    );
}

#[test]
fn repeat_runs_the_rest_per_group() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = inputs(dir.path());
    let out = go(json!(["access", "label", "repeat", "mean"]), &inputs).unwrap();
    assert_eq!(out.data.names(), ["label", "step_mean", "reward_mean"]);
    assert_eq!(out.data.rows(), 2);
    assert_eq!(out.tables.len(), 1);
    assert_eq!(out.tables[0].name, "mean");
    assert_eq!(out.tables[0].frame, out.data);
    // Not labelled: each group is reduced whole, and gets its bundle back in front.
    let out = go(
        json!(["access", ["repeat", {"by": "bundle"}], "mean", "mean"]),
        &inputs,
    )
    .unwrap();
    assert_eq!(
        out.data.names(),
        ["bundle", "step_mean_mean", "reward_mean_mean"]
    );
    assert_eq!(
        out.data.get("bundle"),
        Some(&Column::Text(vec![
            "b3:0".into(),
            "b3:1".into(),
            "b3:2".into()
        ]))
    );
    let names: Vec<&str> = out.tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["mean", "mean-2"]);
    assert_eq!(
        out.tables[0].frame.names(),
        ["bundle", "step_mean", "reward_mean"]
    );
    let m = out.data.numbers("reward_mean_mean").unwrap();
    assert!((m[2] - 1.7 / 3.0).abs() < 1e-12, "{m:?}");
    // Ordered within each group, the groups in order of first appearance.
    let out = go(
        json!(["access", "label", "repeat", ["order", {"by": "reward", "descending": true}]]),
        &inputs,
    )
    .unwrap();
    assert_eq!(
        out.data.numbers("reward").unwrap(),
        [0.4, 0.3, 0.1, 0.9, 0.8, 0.6, 0.5, 0.3, 0.2]
    );
    // A figure set up before repeat is drawn once per group.
    let out = go(
        json!(["access", "label", ["frame", {"title": "Reward"}], ["axis", {"x": "step", "y": "reward"}],
               "repeat", ["plot", {"kind": "line"}]]),
        &inputs,
    )
    .unwrap();
    let names: Vec<&str> = out.figures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["1-reward", "2-reward"]);
    let titles: Vec<&str> = out.figures.iter().map(|f| f.title.as_str()).collect();
    assert_eq!(titles, ["Reward: lr=0.1", "Reward: lr=0.2"]);
    let svg = out.figures[1].figure.to_svg().unwrap();
    assert!(svg.contains("Reward: lr=0.2"), "the figure shows its group");
}
