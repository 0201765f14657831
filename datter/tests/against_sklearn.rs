//! Datter's PCA, k-means and DBSCAN against scikit-learn's on the same data: Python makes the
//! data, saves it as `.npy` and prints scikit-learn's results; datter reads the file and must
//! agree. Needs `python3` with numpy and scikit-learn (`.ci/run` installs them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::Path;

use datter::learn::{self, Centring, Init, KMeansOptions, Matrix};
use serde_json::Value;

mod common;
use common::python_json as python;

/// A `.npy` of `n × d` floats as datter reads it, row-major.
fn load(path: &Path) -> (Vec<f64>, usize) {
    let f = datter::read::read(path).unwrap();
    let d = f.width();
    let cols: Vec<Vec<f64>> = (0..d)
        .map(|j| f.numbers(&format!("x{j}")).unwrap())
        .collect();
    let mut data = Vec::with_capacity(f.rows() * d);
    for r in 0..f.rows() {
        data.extend(cols.iter().map(|c| c[r]));
    }
    (data, d)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|x| match x {
            Value::Array(a) => a.iter().map(|y| y.as_f64().unwrap()).collect(),
            x => vec![x.as_f64().unwrap()],
        })
        .collect()
}

fn close(a: &[f64], b: &[f64], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * y.abs().max(1.0),
            "{what}[{i}]: datter {x} scikit-learn {y}"
        );
    }
}

#[test]
fn pca_agrees_with_scikit_learn() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // Small (one thread) and large (row chunks in parallel), columns of different scales
    // mixed, with means well away from 0.
    let want = python(&format!(
        r#"
import json, numpy as np
from sklearn.decomposition import PCA
rng = np.random.default_rng(3)
out = {{}}
for name, n, dim in [("small", 500, 6), ("large", 60000, 10)]:
    z = rng.normal(size=(n, dim)) * (2.0 ** -np.arange(dim))
    x = z @ rng.normal(size=(dim, dim)) + rng.uniform(-50, 50, size=dim)
    np.save(f"{d}/{{name}}.npy", x)
    p = PCA(n_components=3, svd_solver="covariance_eigh").fit(x)
    out[name] = {{"components": p.components_.tolist(), "variance": p.explained_variance_.tolist(),
                 "ratio": p.explained_variance_ratio_.tolist(), "mean": p.mean_.tolist(),
                 "scores": p.transform(x[:20]).tolist()}}
print(json.dumps(out))
"#
    ));
    for name in ["small", "large"] {
        let (data, dim) = load(&dir.path().join(format!("{name}.npy")));
        let x = Matrix::new(&data, dim).unwrap();
        let w = &want[name];
        for how in [Centring::Auto, Centring::OnePass, Centring::TwoPass] {
            let p = learn::pca(x, 3, how).unwrap();
            let what = |s: &str| format!("{name} {how:?} {s}");
            close(
                &p.components,
                &floats(&w["components"]),
                1e-8,
                &what("components"),
            );
            close(
                &p.explained_variance,
                &floats(&w["variance"]),
                1e-9,
                &what("variance"),
            );
            close(
                &p.explained_variance_ratio,
                &floats(&w["ratio"]),
                1e-9,
                &what("ratio"),
            );
            close(&p.mean, &floats(&w["mean"]), 1e-12, &what("mean"));
            let head = Matrix::new(&data[..20 * dim], dim).unwrap();
            let t = p.transform(head).unwrap();
            let scores: Vec<f64> = (0..20)
                .flat_map(|r| (0..3).map(move |c| (r, c)))
                .map(|(r, c)| t[(r, c)])
                .collect();
            close(&scores, &floats(&w["scores"]), 1e-8, &what("scores"));
        }
    }
}

/// Our labels map one to one onto theirs (a permutation); returns ours → theirs.
fn permutation(ours: &[usize], theirs: &[i64], k: usize) -> Vec<usize> {
    let mut map: HashMap<usize, i64> = HashMap::new();
    for (i, (&a, &b)) in ours.iter().zip(theirs).enumerate() {
        let m = *map.entry(a).or_insert(b);
        assert_eq!(
            m, b,
            "row {i}: our cluster {a} is both {m} and {b} in scikit-learn's"
        );
    }
    let mut to: Vec<usize> = (0..k).map(|c| map[&c] as usize).collect();
    let mut seen = to.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen.len(),
        k,
        "two clusters of ours are one of scikit-learn's"
    );
    to.shrink_to_fit();
    to
}

#[test]
fn kmeans_agrees_with_scikit_learn_from_the_same_centroids() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // Overlapping blobs, so the iterations take a while; the init is rows of the data, in a
    // scrambled order; tol 0 (to strict convergence or the cap) and scikit-learn's default.
    let want = python(&format!(
        r#"
import json, numpy as np
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
out = {{}}
for name, n, dim, k in [("small", 3000, 3, 4), ("large", 60000, 5, 6)]:
    x, _ = make_blobs(n_samples=n, centers=k, n_features=dim, cluster_std=2.5, random_state=1)
    init = x[np.random.default_rng(2).choice(n, k, replace=False)]
    np.save(f"{d}/{{name}}.npy", x)
    np.save(f"{d}/{{name}}-init.npy", init)
    for tol, it in [(0.0, 300), (1e-4, 300), (0.0, 3)]:
        m = KMeans(k, init=init, n_init=1, max_iter=it, tol=tol, algorithm="lloyd").fit(x)
        out[f"{{name}} {{tol}} {{it}}"] = {{"labels": m.labels_.tolist(), "centroids": m.cluster_centers_.tolist(),
            "inertia": float(m.inertia_), "iterations": int(m.n_iter_)}}
print(json.dumps(out))
"#
    ));
    for (name, k) in [("small", 4), ("large", 6)] {
        let (data, dim) = load(&dir.path().join(format!("{name}.npy")));
        let (init, _) = load(&dir.path().join(format!("{name}-init.npy")));
        let x = Matrix::new(&data, dim).unwrap();
        for (tol, it) in [(0.0, 300), (1e-4, 300), (0.0, 3)] {
            let key = format!("{name} {tol:?} {it}");
            let w = &want[&key];
            let r = learn::kmeans(
                x,
                &KMeansOptions {
                    k,
                    max_iter: it,
                    tol,
                    init: Init::Centroids(&init),
                },
            )
            .unwrap();
            let theirs: Vec<i64> = w["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            let to = permutation(&r.labels, &theirs, k);
            let mut centroids = vec![0.0; k * dim];
            for c in 0..k {
                centroids[to[c] * dim..(to[c] + 1) * dim]
                    .copy_from_slice(&r.centroids[c * dim..(c + 1) * dim]);
            }
            close(
                &centroids,
                &floats(&w["centroids"]),
                1e-9,
                &format!("{key} centroids"),
            );
            let inertia = w["inertia"].as_f64().unwrap();
            assert!(
                (r.inertia - inertia).abs() < 1e-9 * inertia,
                "{key}: inertia {} vs {inertia}",
                r.inertia
            );
            assert_eq!(
                r.iterations as u64,
                w["iterations"].as_u64().unwrap(),
                "{key}"
            );
            if it == 3 {
                assert!(!r.converged, "{key}: 3 iterations should not converge here");
            }
        }
        // From a seed instead: deterministic, and no worse than a few percent off
        // scikit-learn's result from the given init on the same data.
        let opts = KMeansOptions {
            k,
            init: Init::PlusPlus { seed: 11 },
            ..KMeansOptions::default()
        };
        let a = learn::kmeans(x, &opts).unwrap();
        assert_eq!(a, learn::kmeans(x, &opts).unwrap());
        let theirs = want[&format!("{name} 0.0 300")]["inertia"]
            .as_f64()
            .unwrap();
        assert!(
            a.inertia < 1.05 * theirs,
            "{name}: {} vs {theirs}",
            a.inertia
        );
    }
}

#[test]
fn dbscan_labels_are_scikit_learns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    // Blobs with noise among them: border rows near two clusters and noise both occur.
    let want = python(&format!(
        r#"
import json, numpy as np
from sklearn.cluster import DBSCAN
from sklearn.datasets import make_blobs
rng = np.random.default_rng(5)
out = {{}}
cases = [("2d", 3000, 2, 0.3, 5), ("2d", 3000, 2, 0.15, 1), ("2d", 3000, 2, 0.5, 12),
         ("3d", 4000, 3, 0.6, 6), ("big", 40000, 2, 0.05, 5)]
for name, n, dim, eps, ms in cases:
    path = f"{d}/{{name}}.npy"
    try:
        x = np.load(path)
    except FileNotFoundError:
        x, _ = make_blobs(n_samples=n - n // 10, centers=5, n_features=dim, cluster_std=0.8, random_state=4)
        x = np.vstack([x, rng.uniform(x.min(0), x.max(0), size=(n // 10, dim))])
        x = x[rng.permutation(n)]
        np.save(path, x)
    db = DBSCAN(eps=eps, min_samples=ms).fit(x)
    core = np.zeros(n, dtype=bool); core[db.core_sample_indices_] = True
    out[f"{{name}} {{eps}} {{ms}}"] = {{"labels": db.labels_.tolist(), "core": core.tolist()}}
print(json.dumps(out))
"#
    ));
    for (name, eps, ms) in [
        ("2d", 0.3, 5),
        ("2d", 0.15, 1),
        ("2d", 0.5, 12),
        ("3d", 0.6, 6),
        ("big", 0.05, 5),
    ] {
        let (data, dim) = load(&dir.path().join(format!("{name}.npy")));
        let x = Matrix::new(&data, dim).unwrap();
        let r = learn::dbscan(x, eps, ms).unwrap();
        let key = format!("{name} {eps} {ms}");
        let w = &want[&key];
        let labels: Vec<i64> = w["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        let core: Vec<bool> = w["core"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        assert_eq!(r.core, core, "{key}: core rows");
        let first_diff = r.labels.iter().zip(&labels).position(|(a, b)| a != b);
        assert_eq!(first_diff, None, "{key}: labels differ first at that row");
        let noise = labels.iter().filter(|&&l| l == -1).count();
        let clusters = labels.iter().max().unwrap() + 1;
        assert_eq!(r.clusters as i64, clusters, "{key}");
        // The cases must mean something: several clusters, and noise unless every row is core.
        assert!(clusters >= 3, "{key}: {clusters} clusters");
        assert!(ms == 1 || noise > 0, "{key}: no noise");
    }
}
