//! Derivatives and integrals of columns over an x column, per group (a series per label):
//! what the `derivative` and `integral` ops compute.
//!
//! Each group's rows are taken in ascending x (the frame's own order is kept in the result),
//! so the data need not be sorted; an x repeated within a group is refused, since y is then
//! not a function of x there (two series under one label, say). Missing or infinite values are
//! refused too, naming the column and row, where numpy would quietly return NaN.

use crate::group::{group_name, row_groups};
use crate::stats;
use crate::{Column, DataError, Frame};

/// Each of `columns` replaced by its derivative over `x` within each group of `by` (numpy's
/// `gradient(y, x)`, see [`stats::derivative`]). Every group needs two rows or more.
pub fn derivative(
    frame: &Frame,
    x: &str,
    columns: &[String],
    by: &[String],
) -> Result<Frame, DataError> {
    let series = Series::new(frame, x, by)?;
    if let Some(g) = series.groups.iter().find(|g| g.len() < 2) {
        return Err(DataError::Invalid(format!(
            "{} has {} row; a derivative needs 2 or more",
            group_name(frame, by, g[0]),
            g.len()
        )));
    }
    let mut out = frame.clone();
    for name in columns {
        let y = finite(frame, name)?;
        let mut d = vec![f64::NAN; y.len()];
        for g in &series.groups {
            let gx: Vec<f64> = g.iter().map(|&r| series.x[r]).collect();
            let gy: Vec<f64> = g.iter().map(|&r| y[r]).collect();
            for (&r, v) in g.iter().zip(stats::derivative(&gx, &gy)) {
                d[r] = v;
            }
        }
        out.set(name.clone(), Column::F64(d))?;
    }
    Ok(out)
}

/// One row per group of `by` (in order of first appearance): the `by` columns, then
/// `<column>_integral`, the trapezoid integral over `x` (numpy's `trapezoid(y, x)`; 0 for a
/// group of one row).
pub fn integral(
    frame: &Frame,
    x: &str,
    columns: &[String],
    by: &[String],
) -> Result<Frame, DataError> {
    let series = Series::new(frame, x, by)?;
    let firsts: Vec<usize> = series.groups.iter().map(|g| g[0]).collect();
    let mut out = Frame::new();
    for b in by {
        out.push(b.clone(), frame.column(b)?.take(&firsts))?;
    }
    for name in columns {
        let y = finite(frame, name)?;
        let v = series
            .groups
            .iter()
            .map(|g| {
                let gx: Vec<f64> = g.iter().map(|&r| series.x[r]).collect();
                let gy: Vec<f64> = g.iter().map(|&r| y[r]).collect();
                stats::integral(&gx, &gy)
            })
            .collect();
        out.push(format!("{name}_integral"), Column::F64(v))?;
    }
    Ok(out)
}

/// The x values and each group's rows in ascending x.
struct Series {
    x: Vec<f64>,
    groups: Vec<Vec<usize>>,
}

impl Series {
    fn new(frame: &Frame, x: &str, by: &[String]) -> Result<Series, DataError> {
        if frame.rows() == 0 {
            return Err(DataError::Empty(
                "there are no rows: check the inputs and any select".to_owned(),
            ));
        }
        let xs = finite(frame, x)?;
        let mut groups = row_groups(frame, by)?;
        for g in &mut groups {
            g.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
            if let Some(w) = g.windows(2).find(|w| xs[w[0]] == xs[w[1]]) {
                return Err(DataError::Invalid(format!(
                    "column {x:?} has the value {} twice in {} (rows {} and {}): y must be one \
                     series over x in each group; label the rows so that each series is a group \
                     (label by bundle, say) or reduce the repeats first",
                    xs[w[0]],
                    group_name(frame, by, w[0]),
                    w[0].min(w[1]),
                    w[0].max(w[1]),
                )));
            }
        }
        Ok(Series { x: xs, groups })
    }
}

/// Column `name` as floats, every one finite; else an error naming the row.
pub(crate) fn finite(frame: &Frame, name: &str) -> Result<Vec<f64>, DataError> {
    let v = frame.numbers(name)?;
    if let Some((row, x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        let what = if x.is_nan() {
            "missing (NaN)".to_owned()
        } else {
            x.to_string()
        };
        return Err(DataError::Invalid(format!(
            "column {name:?}, row {row}, is {what}: drop those rows first (select) or name other columns"
        )));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame::from_columns(vec![
            (
                "g".into(),
                Column::Text(["a", "a", "a", "b", "b"].map(String::from).to_vec()),
            ),
            ("x".into(), Column::F64(vec![2.0, 0.0, 1.0, 0.0, 2.0])),
            ("y".into(), Column::F64(vec![4.0, 0.0, 1.0, 1.0, 3.0])),
        ])
        .unwrap()
    }

    #[test]
    fn per_group_in_ascending_x() {
        let by = ["g".to_owned()];
        let d = derivative(&frame(), "x", &["y".into()], &by).unwrap();
        // a: x 0,1,2 -> y 0,1,4: gradient 1, 2, 3 (rows in the frame's order).
        assert_eq!(d.numbers("y").unwrap(), [3.0, 1.0, 2.0, 1.0, 1.0]);
        let i = integral(&frame(), "x", &["y".into()], &by).unwrap();
        assert_eq!(i.names(), ["g", "y_integral"]);
        assert_eq!(i.numbers("y_integral").unwrap(), [3.0, 4.0]);
    }

    #[test]
    fn repeats_and_gaps_are_named() {
        let e = derivative(&frame(), "x", &["y".into()], &[]).unwrap_err();
        assert!(
            e.to_string().contains("has the value 0 twice in the data"),
            "{e}"
        );
        let mut f = frame();
        f.set("y", Column::F64(vec![1.0, f64::NAN, 0.0, 0.0, 0.0]))
            .unwrap();
        let e = integral(&f, "x", &["y".into()], &["g".into()]).unwrap_err();
        assert!(
            e.to_string().starts_with("column \"y\", row 1, is missing"),
            "{e}"
        );
        let one = f.take(&[0, 3, 4]);
        let e = derivative(&one, "x", &["x".into()], &["g".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "g \"a\" has 1 row; a derivative needs 2 or more"
        );
    }
}
