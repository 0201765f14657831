//! Pairwise cosine similarity of rows, as `sklearn.metrics.pairwise.cosine_similarity(X)`:
//! each row is a vector of the chosen columns, and a row of zeros is similar to nothing (0),
//! itself included. This is what the `cosine_similarity` op puts aside.

use crate::calculus::finite;
use crate::{Column, DataError, Frame};

/// The most rows compared: the table holds rows², 25 million numbers at this size.
pub const MAX_ROWS: usize = 5_000;

/// The n × n similarities of the rows of `columns`, as a table: a `label` column holding
/// `names` (one per row, made unique by a ` (2)`, ` (3)` … suffix where they repeat), then one
/// column per row under the same names.
pub fn cosine_similarity(
    frame: &Frame,
    columns: &[String],
    names: &[String],
) -> Result<Frame, DataError> {
    let n = frame.rows();
    if n == 0 {
        return Err(DataError::Empty(
            "there are no rows to compare: check the inputs and any select".to_owned(),
        ));
    }
    if n > MAX_ROWS {
        return Err(DataError::Invalid(format!(
            "cosine_similarity compares at most {MAX_ROWS} rows (the table holds rows²); the data has {n}: reduce it first (mean per label, select, page)"
        )));
    }
    if columns.is_empty() {
        return Err(DataError::Invalid(
            "there are no columns to compare rows by".to_owned(),
        ));
    }
    let cols: Vec<Vec<f64>> = columns
        .iter()
        .map(|c| finite(frame, c))
        .collect::<Result<_, _>>()?;
    // The rows, normalised to unit length (zero rows stay zero).
    let d = cols.len();
    let mut unit = vec![0.0; n * d];
    for r in 0..n {
        let row = &mut unit[r * d..(r + 1) * d];
        for (v, c) in row.iter_mut().zip(&cols) {
            *v = c[r];
        }
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
    let mut sim = vec![0.0; n * n];
    for i in 0..n {
        let a = &unit[i * d..(i + 1) * d];
        for j in i..n {
            let b = &unit[j * d..(j + 1) * d];
            let s: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            sim[i * n + j] = s;
            sim[j * n + i] = s;
        }
    }
    let names = unique(names, n);
    let mut out = vec![("label".to_owned(), Column::Text(names.clone()))];
    for (j, name) in names.into_iter().enumerate() {
        out.push((name, Column::F64((0..n).map(|i| sim[i * n + j]).collect())));
    }
    Frame::from_columns(out)
}

/// `names` padded to `n` with row numbers, each made unique (and none `label`).
fn unique(names: &[String], n: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::from(["label".to_owned()]);
    (0..n)
        .map(|i| {
            let base = names.get(i).cloned().unwrap_or_else(|| i.to_string());
            let mut name = base.clone();
            let mut k = 1;
            while !seen.insert(name.clone()) {
                k += 1;
                name = format!("{base} ({k})");
            }
            name
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_against_rows() {
        let f = Frame::from_columns(vec![
            ("a".into(), Column::F64(vec![1.0, 2.0, 0.0, 0.0])),
            ("b".into(), Column::F64(vec![0.0, 0.0, 3.0, 0.0])),
        ])
        .unwrap();
        let names = ["x".to_owned(), "x".to_owned(), "label".to_owned()];
        let t = cosine_similarity(&f, &["a".into(), "b".into()], &names).unwrap();
        assert_eq!(t.names(), ["label", "x", "x (2)", "label (2)", "3"]);
        assert_eq!(t.numbers("x").unwrap(), [1.0, 1.0, 0.0, 0.0]);
        assert_eq!(t.numbers("3").unwrap(), [0.0; 4]);
        let big =
            Frame::from_columns(vec![("a".into(), Column::F64(vec![1.0; MAX_ROWS + 1]))]).unwrap();
        let e = cosine_similarity(&big, &["a".into()], &[]).unwrap_err();
        assert!(e.to_string().contains("at most 5000 rows"), "{e}");
    }
}
