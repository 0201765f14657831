//! The math ops against numpy and scikit-learn on the same data, through pipelines: Python
//! writes the data as CSV (every float exact, `%.17g`) and prints its own results; the
//! pipeline reads the files and must agree. Needs `python3` with numpy and scikit-learn
//! (`.ci/run` installs them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use datter::pipeline::{Inputs, Origin, Output, Source, check, run};
use datter::{Column, Frame};
use serde_json::{Value, json};

mod common;
use common::python_json as python;

/// Python's helper: `save(name, **columns)` writes `<dir>/<name>.csv`.
fn prelude(dir: &Path) -> String {
    format!(
        r#"
import json, numpy as np
d = "{}"
def save(name, **cols):
    keys = list(cols)
    a = np.column_stack([np.asarray(cols[k], dtype=float) for k in keys])
    np.savetxt(f"{{d}}/{{name}}.csv", a, delimiter=",", header=",".join(keys), comments="", fmt="%.17g")
# Floats as exact text (repr): serde_json's own float parsing may round the last digit.
def emit(o):
    def ex(v):
        if isinstance(v, float): return repr(v)
        if isinstance(v, dict): return {{k: ex(x) for k, x in v.items()}}
        if isinstance(v, (list, tuple)): return [ex(x) for x in v]
        return v
    print(json.dumps(ex(o)))
"#,
        dir.display()
    )
}

/// An input of the files `<dir>/<name>.csv`, each a sweep child `lr=<name>`.
fn files(dir: &Path, names: &[&str]) -> Inputs {
    let sources = names
        .iter()
        .enumerate()
        .map(|(i, n)| Source {
            path: dir.join(format!("{n}.csv")),
            origin: Origin {
                bundle: format!("b3:{i}"),
                address: format!("/e/sweep/lr={n}"),
                version: 1,
                file: "m.csv".into(),
                params: [("lr".to_owned(), (*n).to_owned())].into(),
            },
        })
        .collect();
    let mut inputs = Inputs::new();
    inputs.insert("m", sources);
    inputs
}

fn go(steps: Value, inputs: &Inputs) -> Output {
    let steps = check(steps.as_array().unwrap(), &["m"]).unwrap();
    run(&steps, inputs).unwrap()
}

/// A float Python printed as exact text.
fn num(v: &Value) -> f64 {
    v.as_str().unwrap().parse().unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(num).collect()
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "{what}[{i}]: datter {x} numpy {y}"
        );
    }
}

fn table<'a>(out: &'a Output, name: &str) -> &'a Frame {
    &out.tables.iter().find(|t| t.name == name).unwrap().frame
}

#[test]
fn boxer_bins_like_numpy_histogram() {
    let dir = tempfile::tempdir().unwrap();
    let want = python(&format!(
        r#"{}
rng = np.random.default_rng(5)
x = rng.normal(3, 2, 997)
n = rng.integers(-4, 30, 500).astype(float)
save("a", x=x)
save("b", x=n)
save("c", x=np.full(20, 2.5))
out = {{}}
for name, v, bins in [("a", x, 7), ("b", n, 10), ("c", np.full(20, 2.5), 4)]:
    counts, edges = np.histogram(v, bins)
    idx = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, bins - 1)
    out[name] = {{"counts": counts.tolist(), "edges": edges.tolist(), "idx": idx.tolist()}}
emit(out)
"#,
        prelude(dir.path())
    ));
    for (name, bins) in [("a", 7), ("b", 10), ("c", 4)] {
        let inputs = files(dir.path(), &[name]);
        let steps = if bins == 10 {
            json!(["access", "boxer"])
        } else {
            json!(["access", ["boxer", {"column": "x", "bins": bins}]])
        };
        let out = go(steps, &inputs);
        let t = table(&out, "boxer");
        let w = &want[name];
        let Some(Column::I64(counts)) = t.get("count") else {
            panic!("{name}: no integer count column")
        };
        let want_counts: Vec<i64> = w["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_i64().unwrap())
            .collect();
        assert_eq!(counts, &want_counts, "{name}: counts");
        let edges = floats(&w["edges"]);
        let (lower, upper) = (t.numbers("lower").unwrap(), t.numbers("upper").unwrap());
        assert_eq!(lower, edges[..bins], "{name}: lower edges");
        assert_eq!(upper, edges[1..], "{name}: upper edges");
        // Each row's bin is numpy's.
        let labels = t.get("bin").unwrap();
        let row_bin = out.data.get("bin").unwrap();
        for (r, i) in w["idx"].as_array().unwrap().iter().enumerate() {
            let i = usize::try_from(i.as_u64().unwrap()).unwrap();
            assert_eq!(row_bin.text_at(r), labels.text_at(i), "{name}: row {r}");
        }
    }
}

#[test]
fn cosine_similarity_agrees_with_scikit_learn() {
    let dir = tempfile::tempdir().unwrap();
    let want = python(&format!(
        r#"{}
from sklearn.metrics.pairwise import cosine_similarity
rng = np.random.default_rng(9)
x = rng.normal(size=(40, 5)) * [1, 10, 0.1, 3, 1]
x[7] = 0
save("a", **{{f"f{{j}}": x[:, j] for j in range(5)}})
emit(cosine_similarity(x).tolist())
"#,
        prelude(dir.path())
    ));
    let out = go(
        json!(["access", "cosine_similarity"]),
        &files(dir.path(), &["a"]),
    );
    let t = table(&out, "cosine_similarity");
    assert_eq!((t.rows(), t.width()), (40, 41));
    let rows = want.as_array().unwrap();
    for (i, row) in rows.iter().enumerate() {
        let got: Vec<f64> = (0..40)
            .map(|j| t.get(&j.to_string()).unwrap().f64_at(i))
            .collect();
        close(&got, &floats(row), 1e-12, &format!("row {i}"));
    }
}

#[test]
fn element_wise_functions_agree_with_numpy() {
    let dir = tempfile::tempdir().unwrap();
    let want = python(&format!(
        r#"{}
rng = np.random.default_rng(2)
u = rng.uniform(-0.99, 0.99, 300)
p = rng.uniform(1e-3, 50, 300)
save("a", u=u, p=p)
fs = {{"sine": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos,
      "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh, "exp": np.exp,
      "log": np.log}}
# asin and acos of u only (p is beyond their domain), log of p only.
emit({{k: {{c: f(v).tolist() for c, v in [("u", u), ("p", p)]
          if not (k in ("asin", "acos") and c == "p") and not (k == "log" and c == "u")}}
     for k, f in fs.items()}})
"#,
        prelude(dir.path())
    ));
    let inputs = files(dir.path(), &["a"]);
    for (op, w) in want.as_object().unwrap() {
        let columns: Vec<&str> = w.as_object().unwrap().keys().map(String::as_str).collect();
        let out = go(json!(["access", [op, {"columns": columns}]]), &inputs);
        for c in columns {
            close(
                &out.data.numbers(c).unwrap(),
                &floats(&w[c]),
                1e-13,
                &format!("{op}({c})"),
            );
        }
    }
    // sin is sine.
    let a = go(json!(["access", "sin"]), &inputs);
    let b = go(json!(["access", "sine"]), &inputs);
    assert_eq!(a.data, b.data);
}

#[test]
fn derivative_and_integral_agree_with_numpy_per_label() {
    let dir = tempfile::tempdir().unwrap();
    let want = python(&format!(
        r#"{}
rng = np.random.default_rng(4)
out = {{}}
for name, uniform in [("a", False), ("b", True), ("c", False)]:
    x = np.arange(0, 60, 1.5) if uniform else np.sort(rng.uniform(0, 100, 60))
    y = np.sin(x / 7) * 3 + rng.normal(0, 0.1, len(x))
    z = x ** 2 / 50
    order = rng.permutation(len(x))
    save(name, step=x[order], y=y[order], z=z[order])
    out[name] = {{"x": x.tolist(), "dy": np.gradient(y, x).tolist(), "dz": np.gradient(z, x).tolist(),
                 "iy": float(np.trapezoid(y, x)), "iz": float(np.trapezoid(z, x))}}
emit(out)
"#,
        prelude(dir.path())
    ));
    let names = ["a", "b", "c"];
    let inputs = files(dir.path(), &names);
    // The rows were shuffled: datter takes each label's rows in ascending step.
    let access = go(json!(["access", "label"]), &inputs);
    let out = go(json!(["access", "label", "derivative"]), &inputs);
    let (x, label) = (
        access.data.numbers("step").unwrap(),
        access.data.get("label").unwrap(),
    );
    for (col, key) in [("y", "dy"), ("z", "dz")] {
        let got = out.data.numbers(col).unwrap();
        for name in names {
            let w = &want[name];
            let (wx, wd) = (floats(&w["x"]), floats(&w[key]));
            let mut rows: Vec<usize> = (0..x.len())
                .filter(|&r| label.text_at(r) == format!("lr={name}"))
                .collect();
            rows.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
            let gx: Vec<f64> = rows.iter().map(|&r| x[r]).collect();
            assert_eq!(gx, wx, "{name}: x");
            let gd: Vec<f64> = rows.iter().map(|&r| got[r]).collect();
            close(&gd, &wd, 1e-12, &format!("d{col}/dx of {name}"));
        }
    }
    let out = go(json!(["access", "label", "integral"]), &inputs);
    assert_eq!(out.data.names(), ["label", "y_integral", "z_integral"]);
    assert_eq!(table(&out, "integral"), &out.data);
    for (col, key) in [("y_integral", "iy"), ("z_integral", "iz")] {
        let w: Vec<f64> = names.iter().map(|n| num(&want[n][key])).collect();
        close(&out.data.numbers(col).unwrap(), &w, 1e-12, col);
    }
}

#[test]
fn fit_agrees_with_numpy_polyfit() {
    let dir = tempfile::tempdir().unwrap();
    let want = python(&format!(
        r#"{}
rng = np.random.default_rng(8)
out = {{}}
for name in ["a", "b", "c"]:
    x = np.sort(rng.uniform(-3, 12, 80))
    y = 0.7 * x ** 3 - 4 * x ** 2 + x - 5 + rng.normal(0, 4, len(x))
    if name == "c":
        # Training steps: large x, where the raw Vandermonde system is badly conditioned.
        x = np.arange(10000, 10800, 10.0)
        y = 2e-9 * x ** 3 - 1e-4 * x ** 2 + 0.3 * x + rng.normal(0, 0.5, len(x))
    save(name, step=x, y=y)
    out[name] = {{}}
    for deg in [1, 3]:
        c = np.polyfit(x, y, deg)
        f = np.polyval(c, x)
        res = y - f
        r2 = 1 - (res ** 2).sum() / ((y - y.mean()) ** 2).sum()
        out[name][str(deg)] = {{"c": c[::-1].tolist(), "res": res.tolist(), "fit": f.tolist(),
                               "r2": float(r2), "rmse": float(np.sqrt((res ** 2).mean()))}}
emit(out)
"#,
        prelude(dir.path())
    ));
    let names = ["a", "b", "c"];
    let inputs = files(dir.path(), &names);
    for (deg, steps) in [
        (1, json!(["access", "label", "fit"])),
        (
            3,
            json!(["access", "label", ["fit", {"x": "step", "y": "y", "kind": "polynomial", "degree": 3}]]),
        ),
    ] {
        let out = go(steps, &inputs);
        let t = table(&out, "fit");
        let mut cols = vec!["label".to_owned()];
        cols.extend((0..=deg).map(|j| format!("c{j}")));
        cols.extend(["r2".to_owned(), "rmse".to_owned()]);
        assert_eq!(t.names(), cols);
        let res = out.data.numbers("y_residual").unwrap();
        let fit = out.data.numbers("y_fit").unwrap();
        for (g, name) in names.iter().enumerate() {
            let w = &want[name][deg.to_string()];
            let c: Vec<f64> = (0..=deg)
                .map(|j| t.numbers(&format!("c{j}")).unwrap()[g])
                .collect();
            close(
                &c,
                &floats(&w["c"]),
                1e-9,
                &format!("{name} degree {deg}: coefficients"),
            );
            let rows = g * 80..(g + 1) * 80;
            close(
                &res[rows.clone()],
                &floats(&w["res"]),
                1e-9,
                &format!("{name} residuals"),
            );
            close(&fit[rows], &floats(&w["fit"]), 1e-9, &format!("{name} fit"));
            close(
                &[t.numbers("r2").unwrap()[g], t.numbers("rmse").unwrap()[g]],
                &[num(&w["r2"]), num(&w["rmse"])],
                1e-9,
                &format!("{name} r2, rmse"),
            );
        }
    }
}
