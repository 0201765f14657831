//! Reshaping a frame's rows and values: ordering, scaling, paging. Each returns a new frame.

use std::cmp::Ordering;

use crate::{Column, DataError, Frame};

/// How [`scale`] rescales a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// To mean 0 and standard deviation 1 (population, as scikit-learn's `StandardScaler`).
    Standardise,
    /// Onto [0, 1] (scikit-learn's `MinMaxScaler`).
    MinMax,
}

impl Scaling {
    /// Its names in pipelines.
    pub const NAMES: &'static [&'static str] = &["standardise", "standardize", "minmax"];

    /// The scaling named `name`.
    pub fn parse(name: &str) -> Option<Scaling> {
        match name {
            "standardise" | "standardize" => Some(Scaling::Standardise),
            "minmax" => Some(Scaling::MinMax),
            _ => None,
        }
    }
}

/// The rows ordered by the `by` columns, the first deciding most; equal rows keep their order.
/// Numbers order numerically with missing values last, texts by their characters.
pub fn order(frame: &Frame, by: &[String], descending: bool) -> Result<Frame, DataError> {
    let keys: Vec<&Column> = by
        .iter()
        .map(|b| frame.column(b))
        .collect::<Result<_, _>>()?;
    let mut rows: Vec<usize> = (0..frame.rows()).collect();
    rows.sort_by(|&a, &b| {
        for k in &keys {
            let o = compare(k, a, b, descending);
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    Ok(frame.take(&rows))
}

fn compare(col: &Column, a: usize, b: usize, descending: bool) -> Ordering {
    let flip = |o: Ordering| if descending { o.reverse() } else { o };
    match col {
        Column::F64(v) => match (v[a].is_nan(), v[b].is_nan()) {
            // Missing values last either way.
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => flip(v[a].total_cmp(&v[b])),
        },
        Column::I64(v) => flip(v[a].cmp(&v[b])),
        Column::Bool(v) => flip(v[a].cmp(&v[b])),
        Column::Text(v) => flip(v[a].cmp(&v[b])),
    }
}

/// Each of `columns` rescaled by `how`, ignoring missing values. A column whose values are all
/// equal becomes 0 (as scikit-learn does); one of text, or with no number, is an error.
pub fn scale(frame: &Frame, columns: &[String], how: Scaling) -> Result<Frame, DataError> {
    let mut out = frame.clone();
    for name in columns {
        let v = frame.numbers(name)?;
        if v.iter().all(|x| x.is_nan()) {
            return Err(DataError::AllMissing(name.clone()));
        }
        let (shift, span) = match how {
            Scaling::Standardise => (crate::stats::mean(&v), crate::stats::stddev(&v)),
            Scaling::MinMax => {
                let lo = v
                    .iter()
                    .copied()
                    .filter(|x| !x.is_nan())
                    .fold(f64::INFINITY, f64::min);
                let hi = v
                    .iter()
                    .copied()
                    .filter(|x| !x.is_nan())
                    .fold(f64::NEG_INFINITY, f64::max);
                (lo, hi - lo)
            }
        };
        let span = if span > 0.0 { span } else { 1.0 };
        let scaled = v.iter().map(|x| (x - shift) / span).collect();
        out.set(name.clone(), Column::F64(scaled))?;
    }
    Ok(out)
}

/// Page `page` (from 1) of `size` rows; past the end, no rows.
pub fn page(frame: &Frame, size: usize, page: usize) -> Frame {
    let start = page
        .saturating_sub(1)
        .saturating_mul(size)
        .min(frame.rows());
    let end = start.saturating_add(size).min(frame.rows());
    let rows: Vec<usize> = (start..end).collect();
    frame.take(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame::from_columns(vec![
            (
                "run".into(),
                Column::Text(["b", "a", "b", "a"].map(String::from).to_vec()),
            ),
            ("x".into(), Column::F64(vec![2.0, f64::NAN, 1.0, 3.0])),
            ("n".into(), Column::I64(vec![4, 3, 2, 1])),
        ])
        .unwrap()
    }

    #[test]
    fn order_by_several_columns_missing_last() {
        let f = order(&frame(), &["x".into()], false).unwrap();
        assert_eq!(f.get("n"), Some(&Column::I64(vec![2, 4, 1, 3])));
        let f = order(&frame(), &["x".into()], true).unwrap();
        assert_eq!(f.get("n"), Some(&Column::I64(vec![1, 4, 2, 3])));
        let f = order(&frame(), &["run".into(), "n".into()], false).unwrap();
        assert_eq!(f.get("n"), Some(&Column::I64(vec![1, 3, 2, 4])));
        assert!(order(&frame(), &["y".into()], false).is_err());
    }

    #[test]
    fn scale_like_scikit_learn() {
        let f = scale(&frame(), &["x".into(), "n".into()], Scaling::MinMax).unwrap();
        let Some(Column::F64(x)) = f.get("x") else {
            panic!()
        };
        assert_eq!(x[0], 0.5);
        assert!(x[1].is_nan());
        assert_eq!((x[2], x[3]), (0.0, 1.0));
        let f = scale(&frame(), &["n".into()], Scaling::Standardise).unwrap();
        let n = f.numbers("n").unwrap();
        assert!((crate::stats::mean(&n)).abs() < 1e-12);
        assert!((crate::stats::stddev(&n) - 1.0).abs() < 1e-12);
        let flat = Frame::from_columns(vec![("c".into(), Column::F64(vec![5.0; 3]))]).unwrap();
        let f = scale(&flat, &["c".into()], Scaling::Standardise).unwrap();
        assert_eq!(f.numbers("c").unwrap(), [0.0; 3]);
        let e = scale(&frame(), &["run".into()], Scaling::MinMax).unwrap_err();
        assert!(e.to_string().contains("holds text values"), "{e}");
    }

    #[test]
    fn pages_of_rows() {
        assert_eq!(page(&frame(), 3, 1).rows(), 3);
        assert_eq!(page(&frame(), 3, 2).get("n"), Some(&Column::I64(vec![1])));
        assert_eq!(page(&frame(), 3, 9).rows(), 0);
    }
}
