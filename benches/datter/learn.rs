//! The learn part of the datter bench: datter's PCA, k-means and DBSCAN beside
//! scikit-learn's on the same data, in one run.
//!
//! The data is made here, written as `.npy` for Python, and loaded outside the timings on
//! both sides; only the fits are timed, the best of a few each, datter's and scikit-learn's
//! taken in turns (one Python process fits a case per line it reads) so that both see the
//! same load on a shared machine. Python runs with
//! `OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE` unset, and prints the BLAS threadpoolctl
//! reports. PCA's peak memory is the rise of the process's peak resident set (`VmHWM`, reset
//! through `/proc/self/clear_refs` just before the fit) over its resident set then, beside the
//! input's size, measured on the first fit, before any other run's memory is left about.

// A bench stops at the first surprise, as tests do.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Instant;

use datter::learn::{Centring, Init, KMeansOptions, Matrix, dbscan, kmeans, pca};
use serde_json::Value;

const REPS: usize = 7;

/// A small deterministic generator (xorshift64*) with normal draws (Box–Muller).
struct Gen(u64);

impl Gen {
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform(), self.uniform());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Writes a row-major `rows × cols` float64 array as `.npy`.
fn write_npy(path: &Path, data: &[f64], cols: usize) {
    let rows = data.len() / cols;
    let mut header =
        format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).expect("write the bench data");
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The scikit-learn side: loads the data, prints its BLAS, then fits one case per line read
/// (`pca`, `kmeans`, `dbscan`) and prints the fit's time and result as a JSON line.
const PYTHON: &str = r#"
import json, sys, time
import numpy as np
from threadpoolctl import threadpool_info
from sklearn.decomposition import PCA
from sklearn.cluster import KMeans, DBSCAN
d = sys.argv[1]
X = np.load(f"{d}/pca.npy")
K = np.load(f"{d}/km.npy"); init = np.load(f"{d}/init.npy")
D = np.load(f"{d}/db.npy")
blas = [f"{i['internal_api']} {i.get('version')} ({i.get('threading_layer')}, {i['num_threads']} threads, {i.get('architecture')})" for i in threadpool_info() if i['user_api'] == 'blas']
print(json.dumps({"blas": blas}), flush=True)
fits = {
    "pca": lambda: PCA(8, svd_solver="covariance_eigh").fit(X),
    "kmeans": lambda: KMeans(8, init=init, n_init=1, max_iter=20, tol=0, algorithm="lloyd").fit(K),
    "dbscan": lambda: DBSCAN(eps=0.1, min_samples=5).fit(D),
}
for line in sys.stdin:
    case = line.strip()
    s = time.perf_counter(); m = fits[case](); t = time.perf_counter() - s
    out = {"time": t}
    if case == "pca": out["ratio"] = m.explained_variance_ratio_.tolist()
    if case == "kmeans": out.update(inertia=float(m.inertia_), iters=int(m.n_iter_))
    if case == "dbscan": out["clusters"] = int(m.labels_.max() + 1)
    print(json.dumps(out), flush=True)
"#;

/// The scikit-learn process, fitting a case when asked.
struct Reference {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Reference {
    fn start(dir: &Path) -> (Reference, Value) {
        let mut child = Command::new("python3")
            .args(["-c", PYTHON, &dir.display().to_string()])
            .env_remove("OPENBLAS_CORETYPE")
            .env_remove("OPENBLAS_L2_SIZE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with numpy, scikit-learn and threadpoolctl");
        let out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut r = Reference { child, out };
        let hello = r.line();
        (r, hello)
    }

    fn line(&mut self) -> Value {
        let mut line = String::new();
        self.out
            .read_line(&mut line)
            .expect("read the scikit-learn side");
        serde_json::from_str(&line).expect("the scikit-learn side prints JSON (see its stderr)")
    }

    /// One timed fit of `case`: its seconds and what it printed.
    fn fit(&mut self, case: &str) -> (f64, Value) {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "{case}").expect("ask the scikit-learn side");
        stdin.flush().expect("ask the scikit-learn side");
        let v = self.line();
        (v["time"].as_f64().unwrap_or(f64::NAN), v)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// The best of `REPS` fits each of datter's `f` and the reference's `case`, taken in turns so
/// both see the same machine: (datter's seconds, its last result, the reference's seconds,
/// its last output).
fn duel<T>(py: &mut Reference, case: &str, mut f: impl FnMut() -> T) -> (f64, T, f64, Value) {
    let (mut ours, mut theirs) = (f64::INFINITY, f64::INFINITY);
    let (mut last, mut said) = (None, Value::Null);
    for _ in 0..REPS {
        let t = Instant::now();
        let r = black_box(f());
        ours = ours.min(t.elapsed().as_secs_f64());
        last = Some(r);
        let (t, v) = py.fit(case);
        theirs = theirs.min(t);
        said = v;
    }
    (ours, last.expect("REPS > 0"), theirs, said)
}

/// Runs this part and prints its figures.
pub fn run() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);

    // PCA: 200,000 × 64, correlated columns of different scales.
    let (n, d) = (200_000, 64);
    let mix: Vec<f64> = (0..d * d).map(|_| g.normal()).collect();
    let mut x = vec![0.0; n * d];
    let mut z = vec![0.0; d];
    for row in x.chunks_exact_mut(d) {
        for (j, zj) in z.iter_mut().enumerate() {
            *zj = g.normal() / (1.0 + j as f64);
        }
        for (i, v) in row.iter_mut().enumerate() {
            *v = 5.0 + (0..d).map(|j| mix[i * d + j] * z[j]).sum::<f64>();
        }
    }
    write_npy(&dir.path().join("pca.npy"), &x, d);

    // k-means: 200,000 × 16 around 8 overlapping centres (so 20 iterations do not converge);
    // the init is 8 rows, the same on both sides.
    let (kn, kd, k) = (200_000, 16, 8);
    let centres: Vec<f64> = (0..k * kd).map(|_| g.normal()).collect();
    let mut km = vec![0.0; kn * kd];
    for (r, row) in km.chunks_exact_mut(kd).enumerate() {
        let c = r % k;
        for (j, v) in row.iter_mut().enumerate() {
            *v = centres[c * kd + j] + g.normal() * 2.0;
        }
    }
    let init: Vec<f64> = (0..k)
        .flat_map(|i| km[i * 9973 * kd..(i * 9973 + 1) * kd].to_vec())
        .collect();
    write_npy(&dir.path().join("km.npy"), &km, kd);
    write_npy(&dir.path().join("init.npy"), &init, kd);

    // DBSCAN: 100,000 2-D points, blobs and noise.
    let dn = 100_000;
    let mut db = Vec::with_capacity(dn * 2);
    for r in 0..dn {
        if r % 10 == 0 {
            db.extend([g.uniform() * 20.0 - 10.0, g.uniform() * 20.0 - 10.0]);
        } else {
            let c = (r % 5) as f64;
            db.extend([c * 3.0 - 6.0 + g.normal() * 0.5, c - 2.0 + g.normal() * 0.5]);
        }
    }
    write_npy(&dir.path().join("db.npy"), &db, 2);

    let (mut py, hello) = Reference::start(dir.path());
    println!("learn: reference BLAS {}", hello["blas"]);
    println!(
        "learn: datter threads {} (rayon); each case the best of {REPS} fits, datter's and \
         scikit-learn's in turns",
        rayon::current_num_threads()
    );

    // PCA, with its peak memory.
    let xm = Matrix::new(&x, d).expect("a matrix");
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let before = status_kib("VmRSS:");
    let first = pca(xm, 8, Centring::Auto).expect("pca");
    let peak = status_kib("VmHWM:");
    black_box(first);
    let (tp, p, sp, pv) = duel(&mut py, "pca", || pca(xm, 8, Centring::Auto).expect("pca"));
    let input_kib = (x.len() * 8 / 1024) as u64;
    let extra = peak.saturating_sub(before);
    let ratio0 = p.explained_variance_ratio[0];
    let py_ratio0 = pv["ratio"][0].as_f64().unwrap_or(f64::NAN);
    println!(
        "learn: pca 200000x64 -> 8 ({:?}): datter {:.1} ms, scikit-learn {:.1} ms, ratio {:.2}x; \
         peak memory input {:.1} MiB + {:.1} MiB during the fit = {:.2}x input; \
         first ratio {ratio0:.6} vs {py_ratio0:.6}",
        p.centring,
        tp * 1e3,
        sp * 1e3,
        sp / tp,
        input_kib as f64 / 1024.0,
        extra as f64 / 1024.0,
        (input_kib + extra) as f64 / input_kib as f64,
    );

    let kmat = Matrix::new(&km, kd).expect("a matrix");
    let opts = KMeansOptions {
        k,
        max_iter: 20,
        tol: 0.0,
        init: Init::Centroids(&init),
    };
    let (tk, r, sk, kv) = duel(&mut py, "kmeans", || kmeans(kmat, &opts).expect("kmeans"));
    println!(
        "learn: kmeans 200000x16 k=8 20 iterations: datter {:.1} ms, scikit-learn {:.1} ms, ratio {:.2}x; \
         inertia {:.6e} vs {:.6e}, iterations {} vs {}",
        tk * 1e3,
        sk * 1e3,
        sk / tk,
        r.inertia,
        kv["inertia"].as_f64().unwrap_or(f64::NAN),
        r.iterations,
        kv["iters"]
    );

    let dmat = Matrix::new(&db, 2).expect("a matrix");
    let (td, c, sd, dv) = duel(&mut py, "dbscan", || dbscan(dmat, 0.1, 5).expect("dbscan"));
    println!(
        "learn: dbscan 100000x2 eps=0.1 min_samples=5: datter {:.1} ms, scikit-learn {:.1} ms, ratio {:.2}x; \
         clusters {} vs {}",
        td * 1e3,
        sd * 1e3,
        sd / td,
        c.clusters,
        dv["clusters"]
    );
}
