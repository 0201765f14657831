//! Least-squares polynomial fits of one column over another, per group: what the `fit` op
//! computes.
//!
//! The fit solves the Vandermonde system by Householder QR (faer), after scaling each power's
//! column to unit norm as `numpy.polyfit` does, so the normal equations (whose condition is
//! the square of the system's) are never formed.

use faer::Mat;
use faer::linalg::solvers::SolveLstsq;

use crate::calculus::finite;
use crate::group::{group_name, row_groups};
use crate::{Column, DataError, Frame};

/// The coefficients of the least-squares polynomial of `degree` through `(x, y)`, from the
/// constant term up. The caller makes sure there are more distinct x than `degree`.
pub fn polyfit(x: &[f64], y: &[f64], degree: usize) -> Vec<f64> {
    let (n, m) = (x.len().min(y.len()), degree + 1);
    let mut a = Mat::from_fn(n, m, |i, j| powi(x[i], j));
    let scale: Vec<f64> = (0..m)
        .map(|j| {
            let s = (0..n).map(|i| a[(i, j)] * a[(i, j)]).sum::<f64>().sqrt();
            if s > 0.0 { s } else { 1.0 }
        })
        .collect();
    for (j, s) in scale.iter().enumerate() {
        for i in 0..n {
            a[(i, j)] /= s;
        }
    }
    let b = Mat::from_fn(n, 1, |i, _| y[i]);
    let c = a.qr().solve_lstsq(b.as_ref());
    (0..m).map(|j| c[(j, 0)] / scale[j]).collect()
}

/// The polynomial with coefficients `c` (constant first) at `x`, by Horner's rule.
pub fn eval(c: &[f64], x: f64) -> f64 {
    c.iter().rev().fold(0.0, |acc, &k| acc * x + k)
}

fn powi(x: f64, j: usize) -> f64 {
    x.powi(i32::try_from(j).unwrap_or(i32::MAX))
}

/// What [`fit`] makes: the frame with `<y>_fit` and `<y>_residual` (y − fit) added, and one
/// row per group: the `by` columns, `c0..c<degree>`, `r2` and `rmse`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fitted {
    /// The frame with the fitted values and residuals.
    pub data: Frame,
    /// The coefficients and goodness of fit of each group.
    pub table: Frame,
}

/// Fits `y` over `x` by a polynomial of `degree` within each group of `by`. Each group needs
/// more distinct x values than `degree`; `r2` is 1 − SS_res/SS_tot (scikit-learn's
/// `r2_score`: 1 for a perfect fit of a constant, else 0 when y is constant), `rmse` the root
/// of the mean squared residual.
pub fn fit(
    frame: &Frame,
    x: &str,
    y: &str,
    degree: usize,
    by: &[String],
) -> Result<Fitted, DataError> {
    if frame.rows() == 0 {
        return Err(DataError::Empty(
            "there are no rows to fit: check the inputs and any select".to_owned(),
        ));
    }
    let xs = finite(frame, x)?;
    let ys = finite(frame, y)?;
    let groups = row_groups(frame, by)?;
    let mut fitted = vec![f64::NAN; frame.rows()];
    let mut coefs: Vec<Vec<f64>> = vec![Vec::with_capacity(groups.len()); degree + 1];
    let (mut r2s, mut rmses) = (Vec::new(), Vec::new());
    for g in &groups {
        let gx: Vec<f64> = g.iter().map(|&r| xs[r]).collect();
        let gy: Vec<f64> = g.iter().map(|&r| ys[r]).collect();
        let mut distinct = gx.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        if distinct.len() <= degree {
            return Err(DataError::Invalid(format!(
                "{} has {} distinct value{} of {x:?}; a fit of degree {degree} needs {} or more",
                group_name(frame, by, g[0]),
                distinct.len(),
                if distinct.len() == 1 { "" } else { "s" },
                degree + 1
            )));
        }
        let c = polyfit(&gx, &gy, degree);
        let (mut ss_res, mut sum) = (0.0, 0.0);
        for (&r, (&xv, &yv)) in g.iter().zip(gx.iter().zip(&gy)) {
            let f = eval(&c, xv);
            fitted[r] = f;
            ss_res += (yv - f) * (yv - f);
            sum += yv;
        }
        #[allow(clippy::cast_precision_loss)]
        let n = gy.len() as f64;
        let mean = sum / n;
        let ss_tot: f64 = gy.iter().map(|v| (v - mean) * (v - mean)).sum();
        r2s.push(match (ss_tot > 0.0, ss_res > 0.0) {
            (true, _) => 1.0 - ss_res / ss_tot,
            (false, false) => 1.0,
            (false, true) => 0.0,
        });
        rmses.push((ss_res / n).sqrt());
        for (col, v) in coefs.iter_mut().zip(c) {
            col.push(v);
        }
    }
    let residual: Vec<f64> = ys.iter().zip(&fitted).map(|(a, b)| a - b).collect();
    let mut data = frame.clone();
    data.set(format!("{y}_fit"), Column::F64(fitted))?;
    data.set(format!("{y}_residual"), Column::F64(residual))?;
    let firsts: Vec<usize> = groups.iter().map(|g| g[0]).collect();
    let mut table = Frame::new();
    for b in by {
        table.push(b.clone(), frame.column(b)?.take(&firsts))?;
    }
    for (j, col) in coefs.into_iter().enumerate() {
        table.push(format!("c{j}"), Column::F64(col))?;
    }
    table.push("r2", Column::F64(r2s))?;
    table.push("rmse", Column::F64(rmses))?;
    Ok(Fitted { data, table })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_polynomials_come_back() {
        let x: Vec<f64> = (0..8).map(f64::from).collect();
        let y: Vec<f64> = x.iter().map(|v| 2.0 - 3.0 * v + 0.5 * v * v).collect();
        let c = polyfit(&x, &y, 2);
        for (g, w) in c.iter().zip([2.0, -3.0, 0.5]) {
            assert!((g - w).abs() < 1e-10, "{c:?}");
        }
        let f = Frame::from_columns(vec![
            ("x".into(), Column::F64(x.clone())),
            ("y".into(), Column::F64(y)),
        ])
        .unwrap();
        let out = fit(&f, "x", "y", 1, &[]).unwrap();
        assert_eq!(out.table.names(), ["c0", "c1", "r2", "rmse"]);
        let r = out.data.numbers("y_residual").unwrap();
        assert!(r.iter().sum::<f64>().abs() < 1e-9);
        let flat = f.take(&[1, 1, 1]);
        let e = fit(&flat, "x", "y", 1, &[]).unwrap_err().to_string();
        assert_eq!(
            e,
            "the data has 1 distinct value of \"x\"; a fit of degree 1 needs 2 or more"
        );
    }
}
