//! Learning from a matrix of numbers: principal components ([`pca()`]), k-means clustering
//! ([`kmeans()`]) and density clustering ([`dbscan()`]).
//!
//! Each is a plain function over a row-major `n × d` matrix of finite floats (a [`Matrix`]),
//! with no frames or pipeline types, so the pipeline ops, the benchmarks and the tests share
//! them. They follow scikit-learn's definitions closely enough that results compare directly
//! (PCA's signs, k-means' Lloyd iterations and empty-cluster rule, DBSCAN's label order).
//! Large inputs are worked on in parallel (rayon) over chunks of rows; small ones on the
//! calling thread, where spinning up threads would cost more than the work.

pub mod dbscan;
pub mod kmeans;
pub mod pca;
mod tree;

pub use dbscan::{Dbscan, dbscan, default_eps};
pub use kmeans::{Init, KMeans, KMeansOptions, kmeans};
pub use pca::{Centring, Pca, pca};

/// Below this many values (`n × d`) the work stays on the calling thread.
pub(crate) const PARALLEL_VALUES: usize = 1 << 16;

/// Why a learning function refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LearnError {
    /// The matrix has no rows.
    #[error("the data has no rows")]
    NoRows,
    /// The matrix has no columns.
    #[error("the data has no columns to work on")]
    NoColumns,
    /// The values do not make whole rows.
    #[error("{len} values are not a whole number of rows of {cols}")]
    Shape {
        /// How many values there are.
        len: usize,
        /// The row length asked for.
        cols: usize,
    },
    /// A value is NaN or infinite.
    #[error(
        "row {row}, column {col} is {value}, not a finite number: drop or fill missing values first"
    )]
    NotFinite {
        /// Its row, from 0.
        row: usize,
        /// Its column, from 0.
        col: usize,
        /// The value.
        value: f64,
    },
    /// There are fewer rows than the method needs (`k` clusters, two rows for a variance).
    #[error("{what} needs at least {need} rows; the data has {rows}")]
    TooFewRows {
        /// What needs them.
        what: String,
        /// How many it needs.
        need: usize,
        /// How many there are.
        rows: usize,
    },
    /// A parameter does not fit the data.
    #[error("{0}")]
    Invalid(String),
    /// The eigen decomposition did not converge.
    #[error("the eigen decomposition of the covariance did not converge")]
    NoConvergence,
}

/// A row-major `rows × cols` matrix borrowed from a slice: row `i` is
/// `data[i * cols..(i + 1) * cols]`.
#[derive(Debug, Clone, Copy)]
pub struct Matrix<'a> {
    data: &'a [f64],
    rows: usize,
    cols: usize,
}

impl<'a> Matrix<'a> {
    /// Views `data` as rows of `cols` values. Refuses no columns, no rows, and a length that
    /// is not a whole number of rows. Values are checked for NaN by each function, as it reads
    /// them.
    pub fn new(data: &'a [f64], cols: usize) -> Result<Matrix<'a>, LearnError> {
        if cols == 0 {
            return Err(LearnError::NoColumns);
        }
        if !data.len().is_multiple_of(cols) {
            return Err(LearnError::Shape {
                len: data.len(),
                cols,
            });
        }
        if data.is_empty() {
            return Err(LearnError::NoRows);
        }
        Ok(Matrix {
            data,
            rows: data.len() / cols,
            cols,
        })
    }

    /// The values, row after row.
    pub fn data(&self) -> &'a [f64] {
        self.data
    }

    /// The number of rows (`n`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The number of columns (`d`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i` (must be below [`Matrix::rows`]).
    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Whether the work is large enough to share among threads.
    pub(crate) fn large(&self) -> bool {
        self.data.len() >= PARALLEL_VALUES
    }

    /// The first value that is not finite, as an error.
    pub(crate) fn check_finite(&self) -> Result<(), LearnError> {
        check_finite(self.data, self.cols, 0)
    }
}

/// Rows per run when `n` rows are shared among threads in runs of whole `chunk`-row chunks,
/// with at most `most` runs. Each run's result is combined with the others in run order, so
/// floating-point sums do not depend on how many threads there are or which run ends first.
pub(crate) fn run_rows(n: usize, chunk: usize, most: usize) -> usize {
    let runs = most.max(1);
    n.div_ceil(runs).div_ceil(chunk).max(1) * chunk
}

/// The first non-finite value of `rows` (a row-major block whose first row is `first_row`).
pub(crate) fn check_finite(rows: &[f64], cols: usize, first_row: usize) -> Result<(), LearnError> {
    // `v * 0.0` is NaN exactly when `v` is NaN or infinite, so the sum is NaN when one is.
    if rows.iter().fold(0.0_f64, |s, &v| s + v * 0.0).is_finite() {
        return Ok(());
    }
    match rows.iter().position(|v| !v.is_finite()) {
        Some(at) => Err(LearnError::NotFinite {
            row: first_row + at / cols,
            col: at % cols,
            value: rows[at],
        }),
        None => Ok(()),
    }
}

/// splitmix64: a small, fast, well-mixed generator, used to seed [`Rng`].
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256**, seeded by splitmix64: deterministic for a seed on every platform.
#[derive(Debug, Clone)]
pub(crate) struct Rng([u64; 4]);

impl Rng {
    /// A generator for `seed`.
    pub(crate) fn new(seed: u64) -> Rng {
        let mut s = seed;
        Rng([
            splitmix64(&mut s),
            splitmix64(&mut s),
            splitmix64(&mut s),
            splitmix64(&mut s),
        ])
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// A float in `[0, 1)`.
    pub(crate) fn uniform(&mut self) -> f64 {
        // 53 random bits make every float of [0, 1) with spacing 2^-53 equally likely.
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next_u64() >> 11) as f64;
        x * (1.0 / (1u64 << 53) as f64)
    }

    /// An index below `n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        // Lemire's multiply-shift; the bias is below 2^-64 · n, far below what matters here.
        let n = n as u64;
        (((u128::from(self.next_u64())) * u128::from(n)) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrices_are_checked() {
        assert_eq!(Matrix::new(&[], 2).unwrap_err(), LearnError::NoRows);
        assert_eq!(Matrix::new(&[1.0], 0).unwrap_err(), LearnError::NoColumns);
        assert_eq!(
            Matrix::new(&[1.0, 2.0, 3.0], 2).unwrap_err(),
            LearnError::Shape { len: 3, cols: 2 }
        );
        let m = Matrix::new(&[1.0, 2.0, 3.0, f64::NAN], 2).unwrap();
        assert_eq!((m.rows(), m.cols()), (2, 2));
        assert_eq!(m.row(0), [1.0, 2.0]);
        let e = m.check_finite().unwrap_err();
        assert!(
            matches!(e, LearnError::NotFinite { row: 1, col: 1, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn the_generator_is_deterministic_and_uniform() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<f64> = (0..10_000).map(|_| a.uniform()).collect();
        assert!(xs.iter().all(|&x| (0.0..1.0).contains(&x)));
        assert_eq!(xs[17], {
            for _ in 0..17 {
                b.uniform();
            }
            b.uniform()
        });
        let mean = xs.iter().sum::<f64>() / 1e4;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
        let mut r = Rng::new(3);
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}
