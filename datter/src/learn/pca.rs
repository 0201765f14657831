//! Principal component analysis the way scikit-learn's `PCA(svd_solver="covariance_eigh")`
//! does it for tall data (`n ≫ d`): one pass over the rows accumulates the `d × d` Gram matrix
//! `XᵀX` and the column sums, with no centred copy of the data; the covariance comes from
//! them, and its self-adjoint eigen decomposition gives the components. Memory beyond the
//! input is a few `d × d` matrices and one chunk of rows per thread.
//!
//! The textbook one-pass formula `XᵀX − n·μμᵀ` loses digits when the means are large beside
//! the spread (a column of timestamps). So the rows are shifted, as they are read, by the mean
//! of the first 1,024 rows (a cheap estimate of the mean): the digits lost are then about
//! `log10(n / 1024)` at worst (the first rows far from the rest), not `log10(μ² / σ²)`.
//! [`Centring::Auto`] (the default) checks how many digits the shift left at risk and, past
//! four, reads the data a second time, centred by its exact means ([`Centring::TwoPass`]).
//!
//! Signs follow scikit-learn's `svd_flip` (each component's largest entry by magnitude is
//! positive), so components compare directly.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{ComputeEigenvectors, self_adjoint_evd, self_adjoint_evd_scratch};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatRef, Par};
use rayon::prelude::*;

use super::{LearnError, Matrix, check_finite, run_rows};

/// How the covariance is centred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Centring {
    /// One pass, then a second only if the one pass put more than four digits at risk.
    #[default]
    Auto,
    /// One pass over the data, rows shifted by the mean of the first rows.
    OnePass,
    /// Two passes: the exact means, then the Gram matrix of the centred rows.
    TwoPass,
}

impl Centring {
    /// The names the pipeline's `centring` param takes.
    pub const NAMES: [&'static str; 3] = ["auto", "one-pass", "two-pass"];

    /// The centring named `name` (one of [`Centring::NAMES`]).
    pub fn parse(name: &str) -> Option<Centring> {
        match name {
            "auto" => Some(Centring::Auto),
            "one-pass" => Some(Centring::OnePass),
            "two-pass" => Some(Centring::TwoPass),
            _ => None,
        }
    }
}

/// A fitted PCA.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// The components, `k × d` row-major: component `i` is `components[i * d..(i + 1) * d]`,
    /// in order of explained variance, largest first.
    pub components: Vec<f64>,
    /// The variance along each component (the covariance's eigenvalues, `n − 1` in the
    /// denominator, as scikit-learn's `explained_variance_`).
    pub explained_variance: Vec<f64>,
    /// Each component's share of the total variance (of all `d` directions).
    pub explained_variance_ratio: Vec<f64>,
    /// The column means.
    pub mean: Vec<f64>,
    /// How the covariance was centred in the end ([`Centring::OnePass`] or
    /// [`Centring::TwoPass`]).
    pub centring: Centring,
}

impl Pca {
    /// How many components there are (`k`).
    pub fn len(&self) -> usize {
        self.explained_variance.len()
    }

    /// Whether there are none (never, for a fitted PCA).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The number of columns of the data (`d`).
    pub fn dims(&self) -> usize {
        self.mean.len()
    }

    /// Component `i` (below [`Pca::len`]).
    pub fn component(&self, i: usize) -> &[f64] {
        let d = self.dims();
        &self.components[i * d..(i + 1) * d]
    }

    /// The rows of `x` in component space, `(x − mean)·Vᵀ`: an `n × k` matrix whose column
    /// `i` is every row's score on component `i`.
    pub fn transform(&self, x: Matrix<'_>) -> Result<Mat<f64>, LearnError> {
        let (d, k) = (self.dims(), self.len());
        if x.cols() != d {
            return Err(LearnError::Invalid(format!(
                "the PCA was fitted on {d} columns, the data has {}",
                x.cols()
            )));
        }
        x.check_finite()?;
        let v = MatRef::from_row_major_slice(&self.components, k, d);
        let xs = MatRef::from_row_major_slice(x.data(), x.rows(), d);
        let mut out = Mat::<f64>::zeros(x.rows(), k);
        let par = if x.large() { Par::rayon(0) } else { Par::Seq };
        matmul(out.as_mut(), Accum::Replace, xs, v.transpose(), 1.0, par);
        for i in 0..k {
            let shift: f64 = self
                .component(i)
                .iter()
                .zip(&self.mean)
                .map(|(a, b)| a * b)
                .sum();
            for s in out.col_as_slice_mut(i) {
                *s -= shift;
            }
        }
        Ok(out)
    }
}

/// Fits `components` principal components of `x` (at least 2 rows; `components` from 1 to
/// `min(n, d)`).
pub fn pca(x: Matrix<'_>, components: usize, centring: Centring) -> Result<Pca, LearnError> {
    let (n, d) = (x.rows(), x.cols());
    if n < 2 {
        return Err(LearnError::TooFewRows {
            what: "PCA".to_owned(),
            need: 2,
            rows: n,
        });
    }
    let most = n.min(d);
    if components == 0 || components > most {
        return Err(LearnError::Invalid(format!(
            "PCA of {n} rows of {d} columns makes 1 to {most} components, not {components}"
        )));
    }
    let (cov, mean, used) = match centring {
        Centring::TwoPass => {
            let (cov, mean, _) = covariance(x, &column_means(x)?)?;
            (cov, mean, Centring::TwoPass)
        }
        Centring::OnePass | Centring::Auto => {
            let head = Matrix {
                data: &x.data()[..n.min(1024) * d],
                rows: n.min(1024),
                cols: d,
            };
            head.check_finite()?;
            let (cov, mean, at_risk) = covariance(x, &column_means(head)?)?;
            if centring == Centring::Auto && at_risk {
                let (cov, mean, _) = covariance(x, &mean)?;
                (cov, mean, Centring::TwoPass)
            } else {
                (cov, mean, Centring::OnePass)
            }
        }
    };
    let (values, vectors) = eigen(cov)?;
    // Ascending from faer; largest first here, negatives (rounding) as 0, as scikit-learn.
    let order: Vec<usize> = (0..d).rev().collect();
    let variance: Vec<f64> = order.iter().map(|&i| values[i].max(0.0)).collect();
    let total: f64 = variance.iter().sum();
    let mut comps = Vec::with_capacity(components * d);
    for &i in order.iter().take(components) {
        let v = vectors.col(i);
        let mut c: Vec<f64> = v.iter().copied().collect();
        // svd_flip: the entry largest in magnitude (the first of equals) is positive.
        let mut at = 0;
        for (j, x) in c.iter().enumerate() {
            if x.abs() > c[at].abs() {
                at = j;
            }
        }
        if c[at] < 0.0 {
            c.iter_mut().for_each(|x| *x = -*x);
        }
        comps.extend(c);
    }
    let explained_variance: Vec<f64> = variance[..components].to_vec();
    let explained_variance_ratio = explained_variance
        .iter()
        .map(|v| if total > 0.0 { v / total } else { 0.0 })
        .collect();
    Ok(Pca {
        components: comps,
        explained_variance,
        explained_variance_ratio,
        mean,
        centring: used,
    })
}

/// Rows per chunk: about 256 KiB of values, so a chunk and its shifted copy stay in cache.
fn chunk_rows(d: usize) -> usize {
    ((1 << 15) / d).max(16)
}

/// The column means, checking every value is finite.
fn column_means(x: Matrix<'_>) -> Result<Vec<f64>, LearnError> {
    let d = x.cols();
    let add = |(i, run): (usize, &[f64]), rows: usize| -> Result<Vec<f64>, LearnError> {
        check_finite(run, d, i * rows)?;
        let mut acc = vec![0.0; d];
        for row in run.chunks_exact(d) {
            acc.iter_mut().zip(row).for_each(|(s, v)| *s += v);
        }
        Ok(acc)
    };
    let rows = if x.large() {
        run_rows(x.rows(), 1, 64)
    } else {
        x.rows()
    };
    let parts: Vec<Vec<f64>> = if x.large() {
        x.data()
            .par_chunks(rows * d)
            .enumerate()
            .map(|r| add(r, rows))
            .collect::<Result<_, _>>()?
    } else {
        vec![add((0, x.data()), rows)?]
    };
    let mut sums = vec![0.0; d];
    for p in parts {
        sums.iter_mut().zip(&p).for_each(|(s, v)| *s += v);
    }
    #[allow(clippy::cast_precision_loss)]
    let n = x.rows() as f64;
    Ok(sums.into_iter().map(|s| s / n).collect())
}

/// A Gram matrix `Σ (x − s)(x − s)ᵀ` (lower triangle) and the sums `Σ (x − s)`, for the rows
/// seen so far.
struct Gram {
    gram: Mat<f64>,
    sums: Vec<f64>,
}

impl Gram {
    fn new(d: usize) -> Gram {
        Gram {
            gram: Mat::zeros(d, d),
            sums: vec![0.0; d],
        }
    }

    /// Adds a chunk of rows (whose first row is `first`) shifted by `shift`, copied shifted
    /// into `buf`.
    fn add(
        &mut self,
        chunk: &[f64],
        shift: &[f64],
        first: usize,
        buf: &mut Vec<f64>,
    ) -> Result<(), LearnError> {
        let d = shift.len();
        let rows = chunk.len() / d;
        buf.resize(chunk.len(), 0.0);
        let buf = &mut buf[..chunk.len()];
        let mut sums = vec![0.0; d];
        for (src, dst) in chunk.chunks_exact(d).zip(buf.chunks_exact_mut(d)) {
            for j in 0..d {
                let c = src[j] - shift[j];
                dst[j] = c;
                sums[j] += c;
            }
        }
        if !sums.iter().all(|s| s.is_finite()) {
            check_finite(chunk, d, first)?;
            return Err(LearnError::Invalid(format!(
                "the values of rows {first} to {} are too large to square",
                first + rows - 1
            )));
        }
        self.sums.iter_mut().zip(&sums).for_each(|(s, v)| *s += v);
        let b = MatRef::from_row_major_slice(buf, rows, d);
        triangular::matmul(
            self.gram.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Add,
            b.transpose(),
            BlockStructure::Rectangular,
            b,
            BlockStructure::Rectangular,
            1.0,
            Par::Seq,
        );
        Ok(())
    }

    fn merge(&mut self, other: &Gram) {
        self.gram += &other.gram;
        self.sums
            .iter_mut()
            .zip(&other.sums)
            .for_each(|(s, v)| *s += v);
    }

    /// The Gram matrix of a run of rows (whose first row is `first`), a chunk at a time.
    /// `buf` is the thread's scratch for a shifted chunk.
    fn of_run(
        run: &[f64],
        shift: &[f64],
        first: usize,
        buf: &mut Vec<f64>,
    ) -> Result<Gram, LearnError> {
        let d = shift.len();
        let rows = chunk_rows(d);
        let mut g = Gram::new(d);
        for (i, chunk) in run.chunks(rows * d).enumerate() {
            g.add(chunk, shift, first + i * rows, buf)?;
        }
        Ok(g)
    }
}

/// The covariance of `x` (full, `n − 1` in the denominator) from one pass over the rows
/// shifted by `shift`; its means; and whether the shift put more than four digits of a
/// variance at risk (the shift was far from the mean beside the spread).
fn covariance(x: Matrix<'_>, shift: &[f64]) -> Result<(Mat<f64>, Vec<f64>, bool), LearnError> {
    let d = x.cols();
    let rows = chunk_rows(d);
    let g = if x.large() {
        // At most 64 runs, and their Gram matrices at most an eighth of the input.
        let run = run_rows(x.rows(), rows, (x.rows() / (8 * d)).clamp(1, 64));
        let parts: Vec<Gram> = x
            .data()
            .par_chunks(run * d)
            .enumerate()
            .map_init(Vec::new, |buf, (i, r)| Gram::of_run(r, shift, i * run, buf))
            .collect::<Result<_, _>>()?;
        let mut g = Gram::new(d);
        for p in &parts {
            g.merge(p);
        }
        g
    } else {
        Gram::of_run(x.data(), shift, 0, &mut Vec::new())?
    };
    #[allow(clippy::cast_precision_loss)]
    let n = x.rows() as f64;
    let delta: Vec<f64> = g.sums.iter().map(|s| s / n).collect();
    let mut cov = Mat::<f64>::zeros(d, d);
    let mut at_risk = false;
    for j in 0..d {
        for i in j..d {
            let v = (g.gram[(i, j)] - n * delta[i] * delta[j]) / (n - 1.0);
            cov[(i, j)] = v;
            cov[(j, i)] = v;
        }
        let offset = n * delta[j] * delta[j];
        at_risk |= offset > 0.0 && offset > 1e4 * (g.gram[(j, j)] - offset);
    }
    let mean = shift.iter().zip(&delta).map(|(s, m)| s + m).collect();
    Ok((cov, mean, at_risk))
}

/// The eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix.
fn eigen(a: Mat<f64>) -> Result<(Vec<f64>, Mat<f64>), LearnError> {
    let d = a.nrows();
    // A d × d problem is small beside the pass over the data: threads would only wait.
    let par = if d >= 512 { Par::rayon(0) } else { Par::Seq };
    let mut u = Mat::<f64>::zeros(d, d);
    let mut s = faer::diag::Diag::<f64>::zeros(d);
    let req = self_adjoint_evd_scratch::<f64>(d, ComputeEigenvectors::Yes, par, Default::default());
    let mut mem = MemBuffer::try_new(req).map_err(|_| {
        LearnError::Invalid(format!(
            "no memory for the eigen decomposition of {d} × {d}"
        ))
    })?;
    self_adjoint_evd(
        a.as_ref(),
        s.as_mut(),
        Some(u.as_mut()),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|_| LearnError::NoConvergence)?;
    let values = s.column_vector().iter().copied().collect();
    Ok((values, u))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points along (1, 2)/√5 with a little spread across, offset by `offset`.
    fn line(n: usize, offset: f64) -> Vec<f64> {
        let mut rng = crate::learn::Rng::new(5);
        let mut v = Vec::with_capacity(2 * n);
        for _ in 0..n {
            let t = rng.uniform() * 10.0 - 5.0;
            let e = rng.uniform() * 0.2 - 0.1;
            v.push(offset + t - 2.0 * e);
            v.push(offset + 2.0 * t + e);
        }
        v
    }

    #[test]
    fn the_first_component_follows_the_line() {
        for n in [50, 40_000] {
            let data = line(n, 0.0);
            let x = Matrix::new(&data, 2).unwrap();
            let p = pca(x, 2, Centring::Auto).unwrap();
            let c = p.component(0);
            let s = 5f64.sqrt();
            assert!(
                (c[0] - 1.0 / s).abs() < 1e-2 && (c[1] - 2.0 / s).abs() < 1e-2,
                "{c:?}"
            );
            assert!(p.explained_variance_ratio[0] > 0.99);
            assert_eq!(p.centring, Centring::OnePass);
            let t = p.transform(x).unwrap();
            assert_eq!((t.nrows(), t.ncols()), (n, 2));
            // Scores are centred, with the variances found.
            let col = t.col_as_slice(0);
            let mean = col.iter().sum::<f64>() / n as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            assert!(mean.abs() < 1e-9, "{mean}");
            assert!((var - p.explained_variance[0]).abs() < 1e-9 * var, "{var}");
        }
    }

    #[test]
    fn large_means_keep_their_digits() {
        let data = line(5000, 0.0);
        let base = pca(Matrix::new(&data, 2).unwrap(), 1, Centring::TwoPass).unwrap();
        let far = line(5000, 1e9);
        let x = Matrix::new(&far, 2).unwrap();
        // Shifted by the first rows' mean, one pass keeps the digits.
        let p = pca(x, 1, Centring::Auto).unwrap();
        assert_eq!(p.centring, Centring::OnePass);
        let rel = |p: &Pca| {
            (p.explained_variance[0] - base.explained_variance[0]).abs()
                / base.explained_variance[0]
        };
        assert!(rel(&p) < 1e-6, "{}", rel(&p));
        assert!((p.mean[0] - 1e9 - base.mean[0]).abs() < 1e-6);
        assert!(rel(&pca(x, 1, Centring::TwoPass).unwrap()) < 1e-9);
        // Unshifted (the textbook formula), most digits go, and the check sees it.
        let (cov, _, at_risk) = covariance(x, &[0.0, 0.0]).unwrap();
        assert!(at_risk);
        let good = covariance(x, &p.mean).unwrap().0;
        assert!((cov[(0, 0)] - good[(0, 0)]).abs() > 1e-6 * good[(0, 0)]);
        let (_, _, at_risk) = covariance(x, &p.mean).unwrap();
        assert!(!at_risk);
    }

    #[test]
    fn bad_input_is_refused() {
        let x = Matrix::new(&[1.0, 2.0], 2).unwrap();
        assert!(matches!(
            pca(x, 1, Centring::Auto),
            Err(LearnError::TooFewRows {
                need: 2,
                rows: 1,
                ..
            })
        ));
        let x = Matrix::new(&[1.0, 2.0, 3.0, 5.0], 2).unwrap();
        let e = pca(x, 3, Centring::Auto).unwrap_err().to_string();
        assert_eq!(
            e,
            "PCA of 2 rows of 2 columns makes 1 to 2 components, not 3"
        );
        let mut data = line(30_000, 0.0);
        data[40_001] = f64::NAN;
        for how in [Centring::OnePass, Centring::TwoPass] {
            let e = pca(Matrix::new(&data, 2).unwrap(), 1, how).unwrap_err();
            assert!(
                matches!(
                    e,
                    LearnError::NotFinite {
                        row: 20_000,
                        col: 1,
                        ..
                    }
                ),
                "{e:?}"
            );
        }
    }
}
