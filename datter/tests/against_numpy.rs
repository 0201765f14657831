//! Datter against numpy on the same data: files numpy wrote read back as the values numpy
//! reports, and the statistics agree with numpy's. Needs `python3` with numpy (`.ci/run`
//! installs it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use datter::stats::{self, Reduce};
use datter::{Column, read::read};

mod common;
use common::python;

#[test]
fn arrays_saved_by_numpy_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let printed = python(&format!(
        r#"
import json, numpy as np
rng = np.random.default_rng(7)
a = rng.normal(size=(50, 3))
np.save("{d}/c.npy", a)
np.save("{d}/f.npy", np.asfortranarray(a))
np.save("{d}/f4.npy", a.astype(np.float32))
np.save("{d}/i8.npy", np.arange(-5, 5, dtype=np.int64))
np.save("{d}/u1.npy", np.arange(250, 256, dtype=np.uint8))
np.save("{d}/b.npy", np.array([True, False, True]))
np.save("{d}/big.npy", a.astype(">f8"))
np.savetxt("{d}/m.csv", a, delimiter=",", header="x,y,z", comments="")
# repr is exact; serde_json's own float parsing rounds the last digit.
rows = lambda m: [[repr(float(x)) for x in r] for r in m]
print(json.dumps({{"a": rows(a), "f4": rows(a.astype(np.float32))}}))
"#
    ));
    let v: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    let want = |key: &str, j: usize| -> Vec<f64> {
        v[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row[j].as_str().unwrap().parse::<f64>().unwrap())
            .collect()
    };
    for file in ["c.npy", "f.npy", "big.npy"] {
        let f = read(&dir.path().join(file)).unwrap();
        assert_eq!((f.rows(), f.width()), (50, 3), "{file}");
        for j in 0..3 {
            assert_eq!(
                f.numbers(&format!("x{j}")).unwrap(),
                want("a", j),
                "{file} x{j}"
            );
        }
    }
    let f4 = read(&dir.path().join("f4.npy")).unwrap();
    assert_eq!(f4.numbers("x1").unwrap(), want("f4", 1));
    let csv = read(&dir.path().join("m.csv")).unwrap();
    assert_eq!(csv.numbers("z").unwrap(), want("a", 2));
    assert_eq!(
        read(&dir.path().join("i8.npy")).unwrap().get("value"),
        Some(&Column::I64((-5..5).collect()))
    );
    assert_eq!(
        read(&dir.path().join("u1.npy")).unwrap().get("value"),
        Some(&Column::I64((250..256).collect()))
    );
    assert_eq!(
        read(&dir.path().join("b.npy")).unwrap().get("value"),
        Some(&Column::Bool(vec![true, false, true]))
    );
}

#[test]
fn an_unknown_extension_names_the_formats_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.xlsx");
    std::fs::write(&p, b"x").unwrap();
    let e = read(&p).unwrap_err().to_string();
    assert!(
        e.ends_with("datter reads .csv, .json, .jsonl and .npy files, not \"xlsx\""),
        "{e}"
    );
}

/// Floats printed exactly (repr) by Python, one list per line.
fn lists(printed: &str) -> Vec<Vec<f64>> {
    printed
        .lines()
        .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
        .collect()
}

fn close(a: f64, b: f64, what: &str) {
    let tol = 1e-12 * b.abs().max(1.0);
    assert!(
        (a - b).abs() <= tol || (a.is_nan() && b.is_nan()),
        "{what}: datter {a} numpy {b}"
    );
}

#[test]
fn statistics_agree_with_numpy() {
    let out = python(
        r#"
import numpy as np
rng = np.random.default_rng(11)
x = np.sort(rng.uniform(0, 10, 200))
y = rng.normal(2, 3, 200); y[[5, 50, 77]] = np.nan
z = np.round(rng.normal(0, 2, 200))
p = lambda v: print(" ".join(repr(float(t)) for t in np.atleast_1d(v)))
p(x); p(y); p(z)
p([np.nanmean(y), np.nanmedian(y), np.nanstd(y), np.nanprod(y[:20]), np.nansum(np.abs(y)),
   np.sqrt(np.nansum(y * y)), np.nanmin(y), np.nanmax(y), np.nansum(y)])
vals, counts = np.unique(z, return_counts=True); p(vals[np.argmax(counts)])
yy = np.nan_to_num(y)
p(np.dot(x, yy) / (np.linalg.norm(x) * np.linalg.norm(yy)))
p(np.gradient(yy, x)); p(np.trapezoid(yy, x))
"#,
    );
    let l = lists(&out);
    let (x, y, z) = (&l[0], &l[1], &l[2]);
    let want = &l[3];
    let got = [
        Reduce::Mean.apply(y),
        Reduce::Median.apply(y),
        Reduce::Stddev.apply(y),
        Reduce::Product.apply(&y[..20]),
        Reduce::L1norm.apply(y),
        Reduce::L2norm.apply(y),
        Reduce::Min.apply(y),
        Reduce::Max.apply(y),
        Reduce::Sum.apply(y),
    ];
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        close(*g, *w, &format!("reduction {i}"));
    }
    close(Reduce::Mode.apply(z), l[4][0], "mode");
    let yy: Vec<f64> = y
        .iter()
        .map(|v| if v.is_nan() { 0.0 } else { *v })
        .collect();
    close(
        stats::cosine_similarity(x, &yy),
        l[5][0],
        "cosine_similarity",
    );
    let d = stats::derivative(x, &yy);
    assert_eq!(d.len(), l[6].len());
    for (i, (g, w)) in d.iter().zip(&l[6]).enumerate() {
        let tol = 1e-9 * w.abs().max(1.0);
        assert!(
            (g - w).abs() <= tol,
            "derivative at {i}: datter {g} numpy {w}"
        );
    }
    close(stats::integral(x, &yy), l[7][0], "integral");
}
