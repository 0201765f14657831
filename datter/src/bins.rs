//! Binning a number column into equal-width bins, as `numpy.histogram(values, bins)` does:
//! edges spaced evenly over min..max (`numpy.linspace`), every bin half-open `[lower, upper)`
//! but the last, which is closed so the maximum falls in it. A column of one value gets the
//! range value ± 0.5, as numpy's. This is what the `boxer` op computes.

use crate::{Column, DataError, Frame};

/// The bins of one column and where each row fell.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// `bins + 1` edges, ascending.
    pub edges: Vec<f64>,
    /// How many values fell in each bin.
    pub counts: Vec<i64>,
    /// The bin of each row, `None` for a missing value (NaN), which no bin counts.
    pub bin_of: Vec<Option<usize>>,
}

impl Histogram {
    /// Bin `i` as text: `[0.5, 1)`, the last one `[a, b]`.
    pub fn label(&self, i: usize) -> String {
        let (lo, hi) = (self.edge(i), self.edge(i + 1));
        let close = if i + 2 == self.edges.len() { ']' } else { ')' };
        format!("[{}, {}{close}", short(lo), short(hi))
    }

    fn edge(&self, i: usize) -> f64 {
        self.edges.get(i).copied().unwrap_or(f64::NAN)
    }

    /// The bins as a table: `bin` (its text), `lower`, `upper`, `count`.
    pub fn table(&self) -> Result<Frame, DataError> {
        let n = self.counts.len();
        Frame::from_columns(vec![
            (
                "bin".to_owned(),
                Column::Text((0..n).map(|i| self.label(i)).collect()),
            ),
            (
                "lower".to_owned(),
                Column::F64((0..n).map(|i| self.edge(i)).collect()),
            ),
            (
                "upper".to_owned(),
                Column::F64((0..n).map(|i| self.edge(i + 1)).collect()),
            ),
            ("count".to_owned(), Column::I64(self.counts.clone())),
        ])
    }

    /// Each row's bin as text, empty for a missing value.
    pub fn row_labels(&self) -> Column {
        Column::Text(
            self.bin_of
                .iter()
                .map(|b| b.map(|i| self.label(i)).unwrap_or_default())
                .collect(),
        )
    }
}

/// An edge as short text: 12 significant digits, so `0.30000000000000004` reads `0.3`.
fn short(x: f64) -> String {
    format!("{x:.11e}")
        .parse::<f64>()
        .map_or_else(|_| x.to_string(), |r| r.to_string())
}

/// Bins `values` (column `name`, for errors) into `bins` equal-width bins, skipping NaN.
pub fn histogram(name: &str, values: &[f64], bins: usize) -> Result<Histogram, DataError> {
    if bins == 0 {
        return Err(DataError::Invalid("bins must be 1 or more".to_owned()));
    }
    if values.is_empty() {
        return Err(DataError::Empty(format!(
            "column {name:?} has no rows to bin"
        )));
    }
    let present = || values.iter().copied().filter(|x| !x.is_nan());
    let (lo, hi) = present().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
        (lo.min(x), hi.max(x))
    });
    if present().next().is_none() {
        return Err(DataError::AllMissing(name.to_owned()));
    }
    if !lo.is_finite() || !hi.is_finite() {
        return Err(DataError::Invalid(format!(
            "column {name:?} spans [{lo}, {hi}], which is not finite: select the finite rows first"
        )));
    }
    let (first, last) = if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    };
    let edges = linspace(first, last, bins + 1);
    #[allow(clippy::cast_precision_loss)]
    let n_bins = bins as f64;
    let mut counts = vec![0i64; bins];
    let bin_of = values
        .iter()
        .map(|&x| {
            if x.is_nan() {
                return None;
            }
            let i = index(x, first, last, n_bins, &edges, bins);
            if let Some(c) = counts.get_mut(i) {
                *c += 1;
            }
            Some(i)
        })
        .collect();
    Ok(Histogram {
        edges,
        counts,
        bin_of,
    })
}

/// numpy's bin index: scaled position, then corrected by a step where rounding put the value
/// on the wrong side of an edge.
fn index(x: f64, first: f64, last: f64, n_bins: f64, edges: &[f64], bins: usize) -> usize {
    let f = (x - first) / (last - first) * n_bins;
    // f is in [0, bins] for x in [first, last]; the cast saturates anyway.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mut i = (f as usize).min(bins - 1);
    if i > 0 && x < edges[i] {
        i -= 1;
    }
    if i + 1 < bins && x >= edges[i + 1] {
        i += 1;
    }
    i
}

/// `numpy.linspace(start, stop, num)`: `start + i * step`, the last exactly `stop`.
fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    #[allow(clippy::cast_precision_loss)]
    let div = (num - 1) as f64;
    let step = (stop - start) / div;
    let mut v: Vec<f64> = (0..num)
        .map(|i| {
            #[allow(clippy::cast_precision_loss)]
            let i = i as f64;
            i * step + start
        })
        .collect();
    if let Some(end) = v.last_mut() {
        *end = stop;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_like_numpy() {
        let h = histogram("x", &[0.0, 0.5, 1.0, f64::NAN, 2.0], 4).unwrap();
        assert_eq!(h.edges, [0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(h.counts, [1, 1, 1, 1]);
        assert_eq!(h.bin_of, [Some(0), Some(1), Some(2), None, Some(3)]);
        assert_eq!(h.label(1), "[0.5, 1)");
        assert_eq!(h.label(3), "[1.5, 2]");
        let one = histogram("x", &[3.0, 3.0], 2).unwrap();
        assert_eq!(one.edges, [2.5, 3.0, 3.5]);
        assert_eq!(one.counts, [0, 2]);
        assert!(histogram("x", &[f64::NAN], 2).is_err());
        assert!(histogram("x", &[1.0], 0).is_err());
        assert!(histogram("x", &[1.0, f64::INFINITY], 3).is_err());
    }
}
