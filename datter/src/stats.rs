//! Statistics over one column of floats. Reductions skip missing values (NaN), as numpy's
//! `nanmean` family does; a column with no number left reduces to NaN, and the ops that call
//! these say which column that was.

/// A reduction of a column to one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    /// The arithmetic mean.
    Mean,
    /// The middle value (the mean of the two middle ones for an even count).
    Median,
    /// The most frequent value (the smallest of those tied).
    Mode,
    /// The population standard deviation (numpy's default, `ddof=0`).
    Stddev,
    /// The product.
    Product,
    /// The sum of absolute values.
    L1norm,
    /// The square root of the sum of squares.
    L2norm,
    /// The smallest value.
    Min,
    /// The largest value.
    Max,
    /// The first value.
    First,
    /// The last value.
    Last,
    /// The sum.
    Sum,
    /// How many values are not missing.
    Count,
}

impl Reduce {
    /// Every reduction, in the order of [`Reduce::NAMES`].
    pub const ALL: [Reduce; 13] = [
        Reduce::Mean,
        Reduce::Median,
        Reduce::Mode,
        Reduce::Stddev,
        Reduce::Product,
        Reduce::L1norm,
        Reduce::L2norm,
        Reduce::Min,
        Reduce::Max,
        Reduce::First,
        Reduce::Last,
        Reduce::Sum,
        Reduce::Count,
    ];

    /// Their names in pipelines, in the order the variants are declared.
    pub const NAMES: [&'static str; 13] = [
        "mean", "median", "mode", "stddev", "product", "l1norm", "l2norm", "min", "max", "first",
        "last", "sum", "count",
    ];

    /// The reduction named `name`, if there is one.
    pub fn parse(name: &str) -> Option<Reduce> {
        let i = Reduce::NAMES.iter().position(|n| *n == name)?;
        Some(Reduce::ALL[i])
    }

    /// Its name in pipelines.
    pub fn name(self) -> &'static str {
        Reduce::NAMES[self as usize]
    }

    /// Applies it to `values`, skipping NaN.
    pub fn apply(self, values: &[f64]) -> f64 {
        let v = || values.iter().copied().filter(|x| !x.is_nan());
        match self {
            Reduce::Mean => mean(values),
            Reduce::Median => median(values),
            Reduce::Mode => mode(values),
            Reduce::Stddev => stddev(values),
            Reduce::Product => non_empty(values, v().product()),
            Reduce::L1norm => non_empty(values, v().map(f64::abs).sum()),
            Reduce::L2norm => non_empty(values, v().map(|x| x * x).sum::<f64>().sqrt()),
            Reduce::Min => v().fold(f64::NAN, f64::min),
            Reduce::Max => v().fold(f64::NAN, f64::max),
            Reduce::First => v().next().unwrap_or(f64::NAN),
            Reduce::Last => v().next_back().unwrap_or(f64::NAN),
            Reduce::Sum => v().sum(),
            #[allow(clippy::cast_precision_loss)] // a count of rows is far below 2^53
            Reduce::Count => v().count() as f64,
        }
    }
}

fn non_empty(values: &[f64], x: f64) -> f64 {
    if values.iter().all(|v| v.is_nan()) {
        f64::NAN
    } else {
        x
    }
}

/// The mean, skipping NaN (compensated summation, so long columns keep their digits).
pub fn mean(values: &[f64]) -> f64 {
    let (mut sum, mut c, mut n) = (0.0f64, 0.0f64, 0usize);
    for &x in values.iter().filter(|x| !x.is_nan()) {
        // Kahan: `c` carries what the last addition lost.
        let y = x - c;
        let t = sum + y;
        c = (t - sum) - y;
        sum = t;
        n += 1;
    }
    if n == 0 {
        f64::NAN
    } else {
        #[allow(clippy::cast_precision_loss)]
        let n = n as f64;
        sum / n
    }
}

/// The population standard deviation, skipping NaN (two passes: mean, then squares).
pub fn stddev(values: &[f64]) -> f64 {
    let m = mean(values);
    if m.is_nan() {
        return f64::NAN;
    }
    let d: Vec<f64> = values
        .iter()
        .filter(|x| !x.is_nan())
        .map(|x| (x - m) * (x - m))
        .collect();
    mean(&d).sqrt()
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The median, skipping NaN.
pub fn median(values: &[f64]) -> f64 {
    let v = sorted(values);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The most frequent value, the smallest among ties (as `scipy.stats.mode`), skipping NaN.
pub fn mode(values: &[f64]) -> f64 {
    let v = sorted(values);
    let (mut best, mut best_n, mut i) = (f64::NAN, 0usize, 0usize);
    while i < v.len() {
        let j = v[i..].iter().take_while(|&&x| x == v[i]).count();
        if j > best_n {
            best = v[i];
            best_n = j;
        }
        i += j;
    }
    best
}

/// The cosine of the angle between `a` and `b`, over the rows where both are numbers.
pub fn cosine_similarity(a: &[f64], b: &[f64]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b).filter(|(x, y)| !x.is_nan() && !y.is_nan()) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        f64::NAN
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// dy/dx at every row: central differences inside, one-sided at the ends (numpy's
/// `gradient(y, x)` with `edge_order=1`, term for term: its uniform-spacing formula when every
/// step of x is the same, the second-order non-uniform one otherwise). Needs two rows or more.
pub fn derivative(x: &[f64], y: &[f64]) -> Vec<f64> {
    let n = x.len().min(y.len());
    if n < 2 {
        return vec![f64::NAN; n];
    }
    let dx: Vec<f64> = x[..n].windows(2).map(|w| w[1] - w[0]).collect();
    let uniform = dx.iter().all(|&d| d == dx[0]);
    (0..n)
        .map(|i| {
            if i == 0 {
                (y[1] - y[0]) / dx[0]
            } else if i == n - 1 {
                (y[n - 1] - y[n - 2]) / dx[n - 2]
            } else if uniform {
                (y[i + 1] - y[i - 1]) / (2.0 * dx[0])
            } else {
                let (h1, h2) = (dx[i - 1], dx[i]);
                let a = -h2 / (h1 * (h1 + h2));
                let b = (h2 - h1) / (h1 * h2);
                let c = h1 / (h2 * (h1 + h2));
                a * y[i - 1] + b * y[i] + c * y[i + 1]
            }
        })
        .collect()
}

/// The integral of y over x by the trapezoid rule (numpy's `trapezoid(y, x)`).
pub fn integral(x: &[f64], y: &[f64]) -> f64 {
    x.windows(2)
        .zip(y.windows(2))
        .map(|(xs, ys)| (xs[1] - xs[0]) * (ys[0] + ys[1]) / 2.0)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_skip_missing_values() {
        let v = [3.0, f64::NAN, 1.0, 2.0, 2.0];
        assert_eq!(Reduce::Mean.apply(&v), 2.0);
        assert_eq!(Reduce::Median.apply(&v), 2.0);
        assert_eq!(Reduce::Mode.apply(&v), 2.0);
        assert_eq!(Reduce::Last.apply(&v), 2.0);
        assert_eq!(Reduce::Count.apply(&v), 4.0);
        assert_eq!(Reduce::Product.apply(&v), 12.0);
        assert!(Reduce::Mean.apply(&[f64::NAN]).is_nan());
        assert!(Reduce::Product.apply(&[f64::NAN]).is_nan());
        assert_eq!(Reduce::parse("stddev"), Some(Reduce::Stddev));
        assert_eq!(Reduce::Stddev.name(), "stddev");
        for r in Reduce::ALL {
            assert_eq!(Reduce::parse(r.name()), Some(r));
        }
    }
}
