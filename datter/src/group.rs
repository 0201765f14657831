//! Grouping: rows that share the values of some columns, reduced to one row per group. This is
//! what the statistics ops with `by` and the metrics `matrix` compute.

use std::collections::HashMap;

use crate::stats::Reduce;
use crate::{Column, DataError, Frame};

/// One row per distinct value of the `by` columns (in the order the groups first appear),
/// holding those values, then one column `<column>_<reduction>` per column and reduction.
/// With no `by`, the whole frame is one group. `columns` empty means every numeric column not
/// in `by`. A column that is text, or holds no number at all, is an error naming it.
pub fn group_reduce(
    frame: &Frame,
    by: &[String],
    columns: &[String],
    reduces: &[Reduce],
) -> Result<Frame, DataError> {
    if frame.rows() == 0 {
        return Err(DataError::Empty("there are no rows to reduce".to_owned()));
    }
    let keys: Vec<&Column> = by
        .iter()
        .map(|b| frame.column(b))
        .collect::<Result<_, _>>()?;
    let columns: Vec<String> = if columns.is_empty() {
        frame
            .numeric_names()
            .into_iter()
            .filter(|n| !by.contains(n))
            .collect()
    } else {
        columns.to_vec()
    };
    if columns.is_empty() {
        return Err(DataError::Invalid(
            "there is no number column to reduce: name one with \"columns\"".to_owned(),
        ));
    }
    let values: Vec<Vec<f64>> = columns
        .iter()
        .map(|c| frame.numbers(c))
        .collect::<Result<_, _>>()?;
    if let Some((name, _)) = columns
        .iter()
        .zip(&values)
        .find(|(_, v)| v.iter().all(|x| x.is_nan()))
    {
        return Err(DataError::AllMissing(name.clone()));
    }
    let groups = row_groups(frame, by)?;
    let firsts: Vec<usize> = groups.iter().map(|g| g[0]).collect();
    let mut out = Frame::new();
    for (name, key) in by.iter().zip(&keys) {
        out.push(name.clone(), key.take(&firsts))?;
    }
    let mut picked = Vec::new();
    for (name, v) in columns.iter().zip(&values) {
        for &red in reduces {
            let col: Vec<f64> = groups
                .iter()
                .map(|g| {
                    picked.clear();
                    picked.extend(g.iter().map(|&r| v[r]));
                    red.apply(&picked)
                })
                .collect();
            out.push(format!("{name}_{}", red.name()), Column::F64(col))?;
        }
    }
    Ok(out)
}

/// The rows of each distinct value of the `by` columns, the groups in the order they first
/// appear; with no `by`, one group of every row (none when there are no rows).
pub fn row_groups(frame: &Frame, by: &[String]) -> Result<Vec<Vec<usize>>, DataError> {
    let keys: Vec<&Column> = by
        .iter()
        .map(|b| frame.column(b))
        .collect::<Result<_, _>>()?;
    let mut index: HashMap<Vec<String>, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for r in 0..frame.rows() {
        let key: Vec<String> = keys.iter().map(|k| k.text_at(r)).collect();
        let g = *index.entry(key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(r);
    }
    Ok(groups)
}

/// How the group of `row` is named in a message: `label "lr=0.1"`, or `the data` when nothing
/// groups the rows.
pub fn group_name(frame: &Frame, by: &[String], row: usize) -> String {
    if by.is_empty() {
        return "the data".to_owned();
    }
    by.iter()
        .map(|b| {
            let v = frame.get(b).map(|c| c.text_at(row)).unwrap_or_default();
            format!("{b} {v:?}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs() -> Frame {
        Frame::from_columns(vec![
            (
                "bundle".into(),
                Column::Text(["a", "a", "b", "b", "b"].map(String::from).to_vec()),
            ),
            ("step".into(), Column::I64(vec![1, 2, 1, 2, 3])),
            (
                "reward".into(),
                Column::F64(vec![0.5, 0.7, 0.1, f64::NAN, 0.4]),
            ),
        ])
        .unwrap()
    }

    #[test]
    fn one_row_per_group_and_reduction() {
        let f = group_reduce(
            &runs(),
            &["bundle".into()],
            &["reward".into()],
            &[Reduce::Last, Reduce::Max],
        )
        .unwrap();
        assert_eq!(f.names(), ["bundle", "reward_last", "reward_max"]);
        assert_eq!(f.get("reward_last"), Some(&Column::F64(vec![0.7, 0.4])));
        assert_eq!(f.get("reward_max"), Some(&Column::F64(vec![0.7, 0.4])));
        let all = group_reduce(&runs(), &[], &[], &[Reduce::Count]).unwrap();
        assert_eq!(all.names(), ["step_count", "reward_count"]);
        assert_eq!(all.get("reward_count"), Some(&Column::F64(vec![4.0])));
    }

    #[test]
    fn bad_columns_are_named() {
        let e = |cols: &[&str]| {
            let cols: Vec<String> = cols.iter().map(|s| (*s).to_owned()).collect();
            group_reduce(&runs(), &[], &cols, &[Reduce::Mean])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e(&["bundle"]),
            "column \"bundle\" holds text values; a number column is needed"
        );
        assert!(e(&["loss"]).starts_with("no column \"loss\""));
        let mut f = runs();
        f.set("reward", Column::F64(vec![f64::NAN; 5])).unwrap();
        let e = group_reduce(&f, &[], &["reward".into()], &[Reduce::Mean]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "column \"reward\" holds only missing values (NaN)"
        );
    }
}
