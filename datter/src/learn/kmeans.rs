//! k-means clustering by Lloyd's iterations, as scikit-learn's `KMeans(algorithm="lloyd")`:
//! each iteration assigns every row to its nearest centroid and moves each centroid to the
//! mean of its rows, until no row changes cluster, the centroids move less than `tol` (relative
//! to the data's mean variance, as scikit-learn), or `max_iter` iterations have run.
//!
//! Distances are computed as scikit-learn does, `‖c‖² − 2·x·c` from a matrix product of a
//! chunk of rows with the centroids (faer's kernels), which ranks centroids as `‖x − c‖²`
//! does. Chunks are shared among threads (rayon) when the data is large; the sums per cluster
//! are added in a fixed order per chunk, so a run is deterministic for its input and thread
//! count.
//!
//! Starting centroids are given, or picked by greedy k-means++ (scikit-learn's variant: the
//! best of `2 + ln k` candidates each step) from a seed with datter's own generator, so a seed
//! gives the same clusters on every machine (not scikit-learn's for the same seed).
//!
//! An empty cluster (no row nearest to it) takes the row farthest from its own centroid, as
//! in scikit-learn: empty clusters in index order take the farthest rows, farthest first.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};
use rayon::prelude::*;

use super::{LearnError, Matrix, Rng, run_rows};

/// Where the centroids start.
#[derive(Debug, Clone, Copy)]
pub enum Init<'a> {
    /// These `k × d` centroids, row-major.
    Centroids(&'a [f64]),
    /// Greedy k-means++ from this seed.
    PlusPlus {
        /// The generator's seed.
        seed: u64,
    },
}

/// What to fit.
#[derive(Debug, Clone, Copy)]
pub struct KMeansOptions<'a> {
    /// The number of clusters, at least 1 and at most the number of rows.
    pub k: usize,
    /// The most iterations to run (at least 1).
    pub max_iter: usize,
    /// Stop when the centroids' squared movement in an iteration is at most `tol` times the
    /// mean of the columns' variances (scikit-learn's `tol`); 0 stops only when no row
    /// changes cluster.
    pub tol: f64,
    /// The starting centroids.
    pub init: Init<'a>,
}

impl Default for KMeansOptions<'_> {
    /// scikit-learn's defaults but one init: 8 clusters, 300 iterations, `tol` 1e-4,
    /// k-means++ from seed 0.
    fn default() -> Self {
        KMeansOptions {
            k: 8,
            max_iter: 300,
            tol: 1e-4,
            init: Init::PlusPlus { seed: 0 },
        }
    }
}

/// A fitted k-means.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    /// Each row's cluster, from 0 to `k − 1`: its nearest final centroid.
    pub labels: Vec<usize>,
    /// The centroids, `k × d` row-major.
    pub centroids: Vec<f64>,
    /// The sum of squared distances from each row to its centroid.
    pub inertia: f64,
    /// The iterations run.
    pub iterations: usize,
    /// Whether it stopped because nothing changed (or moved less than `tol`) rather than
    /// because `max_iter` ran out.
    pub converged: bool,
}

/// Fits k-means to `x`.
pub fn kmeans(x: Matrix<'_>, opts: &KMeansOptions<'_>) -> Result<KMeans, LearnError> {
    let (n, d, k) = (x.rows(), x.cols(), opts.k);
    if k == 0 {
        return Err(LearnError::Invalid(
            "k-means needs k of at least 1".to_owned(),
        ));
    }
    if n < k {
        return Err(LearnError::TooFewRows {
            what: format!("k-means with k = {k}"),
            need: k,
            rows: n,
        });
    }
    if opts.max_iter == 0 {
        return Err(LearnError::Invalid(
            "k-means needs at least 1 iteration".to_owned(),
        ));
    }
    if !(opts.tol >= 0.0 && opts.tol.is_finite()) {
        return Err(LearnError::Invalid(format!(
            "k-means' tol must be a finite number of at least 0, not {}",
            opts.tol
        )));
    }
    x.check_finite()?;
    let mut centres = match opts.init {
        Init::Centroids(c) => {
            if c.len() != k * d {
                return Err(LearnError::Invalid(format!(
                    "the initial centroids are {} values, not k × d = {k} × {d}",
                    c.len()
                )));
            }
            if let Err(LearnError::NotFinite { row, col, value }) = super::check_finite(c, d, 0) {
                return Err(LearnError::Invalid(format!(
                    "initial centroid {row}, column {col} is {value}, not a finite number"
                )));
            }
            c.to_vec()
        }
        Init::PlusPlus { seed } => plus_plus(x, k, seed),
    };
    let tol = if opts.tol > 0.0 {
        opts.tol * mean_variance(x)
    } else {
        0.0
    };
    let mut labels = vec![usize::MAX; n];
    let mut iterations = 0;
    let mut strict = false;
    let mut converged = false;
    for _ in 0..opts.max_iter {
        iterations += 1;
        let step = assign(x, &centres, &mut labels, true);
        let mut sums = step.sums;
        let mut counts = step.counts;
        relocate_empty(x, &centres, &labels, &mut sums, &mut counts);
        let mut shift = 0.0;
        for c in 0..k {
            if counts[c] == 0 {
                continue;
            }
            #[allow(clippy::cast_precision_loss)]
            let w = counts[c] as f64;
            for j in 0..d {
                let new = sums[c * d + j] / w;
                shift += (new - centres[c * d + j]).powi(2);
                centres[c * d + j] = new;
            }
        }
        if step.changed == 0 {
            strict = true;
            converged = true;
            break;
        }
        if shift <= tol {
            converged = true;
            break;
        }
    }
    let inertia = if strict {
        inertia(x, &centres, &labels)
    } else {
        // The centroids moved after the last assignment: assign to where they are now (and
        // sum the distances in the same pass).
        assign(x, &centres, &mut labels, false).inertia
    };
    Ok(KMeans {
        labels,
        centroids: centres,
        inertia,
        iterations,
        converged,
    })
}

/// Rows per chunk of the assignment (the distance product is `k × rows`).
const CHUNK: usize = 2048;

/// One assignment's sums per cluster, row counts, and how many labels changed; or, for an
/// assignment that does not update, the inertia.
struct Step {
    sums: Vec<f64>,
    counts: Vec<usize>,
    changed: usize,
    inertia: f64,
}

struct Acc {
    step: Step,
    dots: Mat<f64>,
}

impl Acc {
    fn new(k: usize, d: usize, update: bool) -> Acc {
        Acc {
            step: Step {
                sums: if update { vec![0.0; k * d] } else { Vec::new() },
                counts: vec![0; k],
                changed: 0,
                inertia: 0.0,
            },
            dots: Mat::zeros(0, 0),
        }
    }

    /// Assigns a chunk of rows to their nearest centre, adding them to their cluster's sum.
    fn chunk(&mut self, rows: &[f64], labels: &mut [usize], centres_rows: &[f64], norms: &[f64]) {
        let k = norms.len();
        let d = centres_rows.len() / k;
        let centres = MatRef::from_row_major_slice(centres_rows, k, d);
        let m = labels.len();
        if self.dots.nrows() != k || self.dots.ncols() != m {
            self.dots = Mat::zeros(k, m);
        }
        let xs = MatRef::from_row_major_slice(rows, m, d);
        // dots[(c, r)] = −2 c · x_r: each row's k products are one contiguous column.
        matmul(
            self.dots.as_mut(),
            Accum::Replace,
            centres,
            xs.transpose(),
            -2.0,
            Par::Seq,
        );
        let update = !self.step.sums.is_empty();
        let norms = &norms[..k];
        let step = &mut self.step;
        for ((r, label), row) in labels.iter_mut().enumerate().zip(rows.chunks_exact(d)) {
            let dots = &self.dots.col_as_slice(r)[..k];
            // Branch-free: which centroid wins is unpredictable where clusters meet.
            let mut best = 0;
            let mut best_d = norms[0] + dots[0];
            for c in 1..k {
                let dist = norms[c] + dots[c];
                let nearer = dist < best_d;
                best_d = if nearer { dist } else { best_d };
                best = if nearer { c } else { best };
            }
            step.changed += usize::from(*label != best);
            *label = best;
            step.counts[best] += 1;
            if update {
                let sum = &mut step.sums[best * d..(best + 1) * d];
                sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
            } else {
                step.inertia += sq_dist(row, &centres_rows[best * d..(best + 1) * d]);
            }
        }
    }

    /// Assigns a run of rows, a chunk at a time.
    fn run(
        rows: &[f64],
        labels: &mut [usize],
        centres: &[f64],
        norms: &[f64],
        update: bool,
        dots: &mut Mat<f64>,
    ) -> Step {
        let k = norms.len();
        let d = centres.len() / k;
        let mut acc = Acc::new(k, d, update);
        // The thread's scratch for the products, kept from run to run.
        acc.dots = std::mem::replace(dots, Mat::zeros(0, 0));
        for (r, l) in rows.chunks(CHUNK * d).zip(labels.chunks_mut(CHUNK)) {
            acc.chunk(r, l, centres, norms);
        }
        *dots = acc.dots;
        acc.step
    }
}

impl Step {
    fn merge(&mut self, other: &Step) {
        self.sums
            .iter_mut()
            .zip(&other.sums)
            .for_each(|(s, v)| *s += v);
        self.counts
            .iter_mut()
            .zip(&other.counts)
            .for_each(|(s, v)| *s += v);
        self.changed += other.changed;
        self.inertia += other.inertia;
    }
}

/// Assigns every row to its nearest centre (writing `labels`), with the sums per cluster when
/// `update`. Runs of rows are shared among threads and their sums added in run order, so the
/// result does not depend on the thread count.
fn assign(x: Matrix<'_>, centres: &[f64], labels: &mut [usize], update: bool) -> Step {
    let (n, d) = (x.rows(), x.cols());
    let k = centres.len() / d;
    let c = centres;
    let norms: Vec<f64> = centres
        .chunks_exact(d)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect();
    if !x.large() {
        return Acc::run(x.data(), labels, c, &norms, update, &mut Mat::zeros(0, 0));
    }
    let run = run_rows(n, CHUNK, (n / (8 * k)).clamp(1, 64));
    let parts: Vec<Step> = x
        .data()
        .par_chunks(run * d)
        .zip(labels.par_chunks_mut(run))
        .map_init(
            || Mat::zeros(0, 0),
            |dots, (rows, labels)| Acc::run(rows, labels, c, &norms, update, dots),
        )
        .collect();
    let mut all = Acc::new(k, d, update).step;
    for p in &parts {
        all.merge(p);
    }
    all
}

fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Each row's squared distance to its centre.
fn distances(x: Matrix<'_>, centres: &[f64], labels: &[usize]) -> Vec<f64> {
    let d = x.cols();
    let one = |(row, &l): (&[f64], &usize)| sq_dist(row, &centres[l * d..(l + 1) * d]);
    if x.large() {
        x.data()
            .par_chunks_exact(d)
            .zip(labels.par_iter())
            .map(one)
            .collect()
    } else {
        x.data().chunks_exact(d).zip(labels).map(one).collect()
    }
}

fn inertia(x: Matrix<'_>, centres: &[f64], labels: &[usize]) -> f64 {
    distances(x, centres, labels).iter().sum()
}

/// Gives each empty cluster the row farthest from its centre (scikit-learn's rule), taking it
/// out of its own cluster's sum.
fn relocate_empty(
    x: Matrix<'_>,
    centres: &[f64],
    labels: &[usize],
    sums: &mut [f64],
    counts: &mut [usize],
) {
    let empty: Vec<usize> = (0..counts.len()).filter(|&c| counts[c] == 0).collect();
    if empty.is_empty() {
        return;
    }
    let d = x.cols();
    let dist = distances(x, centres, labels);
    let mut far: Vec<usize> = (0..x.rows()).collect();
    far.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
    for (&to, &row) in empty.iter().zip(&far) {
        let from = labels[row];
        let v = x.row(row);
        for j in 0..d {
            sums[from * d + j] -= v[j];
            sums[to * d + j] = v[j];
        }
        counts[from] -= 1;
        counts[to] = 1;
    }
}

/// The mean over columns of each column's variance (scikit-learn's scale for `tol`).
fn mean_variance(x: Matrix<'_>) -> f64 {
    let (n, d) = (x.rows(), x.cols());
    #[allow(clippy::cast_precision_loss)]
    let nf = n as f64;
    let mut mean = vec![0.0; d];
    for row in x.data().chunks_exact(d) {
        mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
    }
    mean.iter_mut().for_each(|m| *m /= nf);
    let mut var = vec![0.0; d];
    for row in x.data().chunks_exact(d) {
        for j in 0..d {
            var[j] += (row[j] - mean[j]).powi(2);
        }
    }
    #[allow(clippy::cast_precision_loss)]
    let dd = d as f64;
    var.iter().sum::<f64>() / nf / dd
}

/// Greedy k-means++: the first centre a random row, each next the best (lowest total squared
/// distance) of `2 + ⌊ln k⌋` rows drawn with probability proportional to their squared
/// distance to the nearest centre so far.
fn plus_plus(x: Matrix<'_>, k: usize, seed: u64) -> Vec<f64> {
    let (n, d) = (x.rows(), x.cols());
    let mut rng = Rng::new(seed);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut centres = Vec::with_capacity(k * d);
    let first = rng.below(n);
    centres.extend_from_slice(x.row(first));
    let to = |c: &[f64]| -> Vec<f64> {
        if x.large() {
            x.data()
                .par_chunks_exact(d)
                .map(|r| sq_dist(r, c))
                .collect()
        } else {
            x.data().chunks_exact(d).map(|r| sq_dist(r, c)).collect()
        }
    };
    let mut closest = to(x.row(first));
    let mut cumulative = vec![0.0; n];
    for _ in 1..k {
        let mut total = 0.0;
        for (c, v) in cumulative.iter_mut().zip(&closest) {
            total += v;
            *c = total;
        }
        let mut best: Option<(f64, usize, Vec<f64>)> = None;
        for _ in 0..trials {
            let r = rng.uniform() * total;
            // The first row whose cumulative distance reaches r (numpy's searchsorted).
            let cand = cumulative.partition_point(|&c| c < r).min(n - 1);
            let mut near = to(x.row(cand));
            near.iter_mut()
                .zip(&closest)
                .for_each(|(a, &b)| *a = a.min(b));
            let pot: f64 = near.iter().sum();
            if best.as_ref().is_none_or(|(p, _, _)| pot < *p) {
                best = Some((pot, cand, near));
            }
        }
        if let Some((_, cand, near)) = best {
            centres.extend_from_slice(x.row(cand));
            closest = near;
        }
    }
    centres
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three tight groups of 2-D points around (0, 0), (10, 0) and (0, 10).
    fn blobs(per: usize) -> Vec<f64> {
        let mut rng = Rng::new(9);
        let mut v = Vec::new();
        for (cx, cy) in [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)] {
            for _ in 0..per {
                v.push(cx + rng.uniform() - 0.5);
                v.push(cy + rng.uniform() - 0.5);
            }
        }
        v
    }

    #[test]
    fn blobs_are_found_from_a_seed_deterministically() {
        for per in [20, 30_000] {
            let data = blobs(per);
            let x = Matrix::new(&data, 2).unwrap();
            let opts = KMeansOptions {
                k: 3,
                ..KMeansOptions::default()
            };
            let a = kmeans(x, &opts).unwrap();
            assert_eq!(a, kmeans(x, &opts).unwrap());
            assert!(a.converged);
            // Each group is one cluster.
            for g in 0..3 {
                let l = a.labels[g * per];
                assert!(a.labels[g * per..(g + 1) * per].iter().all(|&x| x == l));
            }
            let mut firsts: Vec<usize> = (0..3).map(|g| a.labels[g * per]).collect();
            firsts.sort_unstable();
            assert_eq!(firsts, [0, 1, 2]);
            // Uniform on a unit square: variance 1/6 per point.
            let want = per as f64 * 3.0 / 6.0;
            assert!((a.inertia - want).abs() < 0.2 * want, "{}", a.inertia);
        }
    }

    #[test]
    fn an_empty_cluster_takes_the_farthest_row() {
        let data = [0.0, 0.0, 1.0, 0.0, 10.0, 0.0];
        let x = Matrix::new(&data, 2).unwrap();
        // Centre 1 is nearest to no row at first.
        let init = [0.0, 0.0, 100.0, 100.0];
        let opts = KMeansOptions {
            k: 2,
            tol: 0.0,
            init: Init::Centroids(&init),
            ..KMeansOptions::default()
        };
        let a = kmeans(x, &opts).unwrap();
        assert_eq!(a.labels, [0, 0, 1]);
        assert_eq!(a.centroids, [0.5, 0.0, 10.0, 0.0]);
        assert!((a.inertia - 0.5).abs() < 1e-12);
    }

    #[test]
    fn bad_input_is_refused() {
        let data = [0.0, 1.0, f64::NAN, 2.0];
        let x = Matrix::new(&data, 1).unwrap();
        let opts = |k| KMeansOptions {
            k,
            ..KMeansOptions::default()
        };
        assert!(matches!(
            kmeans(x, &opts(5)),
            Err(LearnError::TooFewRows {
                need: 5,
                rows: 4,
                ..
            })
        ));
        assert!(matches!(kmeans(x, &opts(0)), Err(LearnError::Invalid(_))));
        assert!(matches!(
            kmeans(x, &opts(2)),
            Err(LearnError::NotFinite { row: 2, col: 0, .. })
        ));
        let good = [0.0, 1.0, 3.0, 2.0];
        let x = Matrix::new(&good, 1).unwrap();
        let e = kmeans(
            x,
            &KMeansOptions {
                k: 2,
                init: Init::Centroids(&[1.0]),
                ..KMeansOptions::default()
            },
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the initial centroids are 1 values, not k × d = 2 × 1"
        );
    }
}
