//! `animate`: which frames an animated figure has and which rows each frame draws.
//!
//! The frames step through the distinct finite values of the `over` column (default `step`
//! when the data has one, else the plot's x column), sorted ascending: at most `frames` of
//! them (30 by default), evenly chosen, the first and the last always among them. A frame
//! draws the rows with `over` ≤ its value (`mode` `cumulative`, the default) or = it (`each`),
//! and is shown for `delay_ms` (200 by default). All frames together draw at most
//! [`MAX_ROWS_DRAWN`] rows: past that, fewer frames are chosen, the same way.

use serde_json::{Map, Value};

use super::params::{count, text};
use crate::{DataError, Frame};

/// The ways `animate` steps through the rows.
pub const MODES: [&str; 2] = ["cumulative", "each"];

/// The rows all frames of an animation draw together, at most: 30 cumulative frames over a
/// million rows draw about 15.5 million; each row drawn holds two numbers until the frames
/// are encoded.
pub const MAX_ROWS_DRAWN: usize = 20_000_000;

/// What an `animate` step asked for.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Animate {
    /// The column the frames step through, if named.
    pub over: Option<String>,
    /// At most this many frames.
    pub frames: usize,
    /// Whether a frame draws only the rows at its value (else those up to it).
    pub each: bool,
    /// How long each frame is shown.
    pub delay_ms: u32,
}

impl Animate {
    /// The step's params, with their defaults.
    pub fn new(p: &Map<String, Value>) -> Result<Animate, DataError> {
        let frames = count(p, "frames").unwrap_or(30);
        if frames == 0 {
            return Err(DataError::Invalid(
                "animate needs at least 1 frame (frames is 30 by default)".to_owned(),
            ));
        }
        Ok(Animate {
            over: text(p, "over").map(str::to_owned),
            frames,
            each: text(p, "mode") == Some("each"),
            delay_ms: p
                .get("delay_ms")
                .and_then(Value::as_u64)
                .map_or(200, |d| u32::try_from(d).unwrap_or(u32::MAX)),
        })
    }

    /// The column a plot of `data` with x column `x` steps through: `over`, else `step`, else
    /// `x`; it must hold numbers, some of them finite.
    pub fn column(&self, data: &Frame, x: &str) -> Result<String, DataError> {
        let name = match &self.over {
            Some(o) => o.clone(),
            None if data.get("step").is_some() => "step".to_owned(),
            None => x.to_owned(),
        };
        let refuse = |why: String| DataError::Invalid(format!("animate over {name:?}: {why}"));
        let Some(col) = data.get(&name) else {
            let have: Vec<String> = data.names().iter().map(|n| format!("{n:?}")).collect();
            return Err(refuse(format!(
                "there is no such column; the data has {}",
                have.join(", ")
            )));
        };
        let Some(values) = col.to_f64() else {
            return Err(refuse(format!(
                "the column holds {} values; name a number column",
                col.kind()
            )));
        };
        if !values.iter().any(|v| v.is_finite()) {
            return Err(refuse(
                "the column has no finite values to step through".to_owned(),
            ));
        }
        Ok(name)
    }

    /// The frames' values, ascending, over the `over` columns of the figure's plots.
    pub fn values(&self, overs: &[Vec<f64>]) -> Vec<f64> {
        let mut distinct: Vec<f64> = overs
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        let sorted: Vec<Vec<f64>> = overs
            .iter()
            .map(|o| {
                let mut s: Vec<f64> = o.iter().copied().filter(|v| v.is_finite()).collect();
                s.sort_by(f64::total_cmp);
                s
            })
            .collect();
        let mut n = self.frames.min(distinct.len());
        loop {
            let chosen = evenly(&distinct, n);
            let drawn = self.rows_drawn(&chosen, &sorted);
            if drawn <= MAX_ROWS_DRAWN || n <= 1 {
                return chosen;
            }
            // Fewer frames in proportion, and at least one fewer.
            let fit = (n as f64 * MAX_ROWS_DRAWN as f64 / drawn as f64) as usize;
            n = fit.clamp(1, n - 1);
        }
    }

    /// Which of the rows with these `over` values the frame at `value` draws.
    pub fn rows(&self, over: &[f64], value: f64) -> Vec<bool> {
        over.iter()
            .map(|&v| if self.each { v == value } else { v <= value })
            .collect()
    }

    /// The end of a frame's title: `step ≤ 420`.
    pub fn caption(&self, over: &str, value: f64) -> String {
        let sign = if self.each { '=' } else { '≤' };
        // Whole numbers (steps, epochs) without a trailing ".0"; others as short as reads back.
        let v = crate::column::format_f64(value);
        let v = v.strip_suffix(".0").unwrap_or(&v);
        format!("{over} {sign} {v}")
    }

    /// How many rows the frames at `values` draw, over each plot's sorted `over` values.
    fn rows_drawn(&self, values: &[f64], sorted: &[Vec<f64>]) -> usize {
        let mut total = 0usize;
        for s in sorted {
            for &v in values {
                let upto = s.partition_point(|&a| a <= v);
                let rows = if self.each {
                    upto - s.partition_point(|&a| a < v)
                } else {
                    upto
                };
                total = total.saturating_add(rows);
            }
        }
        total
    }
}

/// `n` of the ascending `values`, evenly spaced by rank, the last among them (and the first,
/// when `n` > 1).
fn evenly(values: &[f64], n: usize) -> Vec<f64> {
    let m = values.len();
    if n == 0 || m == 0 {
        return Vec::new();
    }
    if n >= m {
        return values.to_vec();
    }
    if n == 1 {
        return vec![values[m - 1]];
    }
    // Ranks at least 1 apart before rounding stay apart after it.
    (0..n)
        .map(|k| values[((k * (m - 1)) as f64 / (n - 1) as f64).round() as usize])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Column;
    use serde_json::json;

    fn animate(p: Value) -> Animate {
        Animate::new(p.as_object().unwrap()).unwrap()
    }

    #[test]
    fn params_have_defaults() {
        assert_eq!(
            animate(json!({})),
            Animate {
                over: None,
                frames: 30,
                each: false,
                delay_ms: 200
            }
        );
        let a = animate(json!({"over": "epoch", "frames": 4, "mode": "each", "delay_ms": 50}));
        assert_eq!(
            (a.over.as_deref(), a.frames, a.each, a.delay_ms),
            (Some("epoch"), 4, true, 50)
        );
        let e = Animate::new(json!({"frames": 0}).as_object().unwrap()).unwrap_err();
        assert!(e.to_string().contains("at least 1 frame"), "{e}");
    }

    #[test]
    fn frames_are_chosen_evenly_with_the_last() {
        let values: Vec<f64> = (0..100).map(f64::from).collect();
        assert_eq!(evenly(&values, 5), [0.0, 25.0, 50.0, 74.0, 99.0]);
        assert_eq!(evenly(&values, 1), [99.0]);
        assert_eq!(evenly(&values[..3], 10), [0.0, 1.0, 2.0]);
        let a = animate(json!({"frames": 3}));
        // Repeats, NaN and infinities are not frames; two plots' values are merged.
        let overs = vec![
            vec![3.0, 1.0, f64::NAN, 1.0, 2.0],
            vec![f64::INFINITY, 5.0, 4.0],
        ];
        assert_eq!(a.values(&overs), [1.0, 3.0, 5.0]);
        assert_eq!(a.rows(&overs[0], 2.0), [false, true, false, true, true]);
        let each = animate(json!({"mode": "each"}));
        assert_eq!(each.rows(&overs[0], 1.0), [false, true, false, true, false]);
        assert_eq!(a.caption("step", 420.0), "step ≤ 420");
        assert_eq!(each.caption("epoch", 0.5), "epoch = 0.5");
        assert_eq!(a.caption("t", 1.25e20), "t ≤ 125000000000000000000");
    }

    #[test]
    fn the_rows_drawn_are_capped() {
        // 30 cumulative frames over a million rows (1000 steps of 1000 rows) are within.
        let steps: Vec<f64> = (0..1_000_000).map(|i| f64::from(i / 1000)).collect();
        let a = animate(json!({}));
        assert_eq!(a.values(std::slice::from_ref(&steps)).len(), 30);
        // Over three million rows they would draw about 46 million: fewer frames, the last kept.
        let big: Vec<f64> = (0..3_000_000).map(|i| f64::from(i / 3000)).collect();
        let v = a.values(std::slice::from_ref(&big));
        let sorted = vec![big];
        assert!(v.len() < 30 && v.len() > 10, "{}", v.len());
        assert!(a.rows_drawn(&v, &sorted) <= MAX_ROWS_DRAWN);
        assert_eq!(v.last(), Some(&999.0));
        // One frame at each step draws each row once.
        let each = animate(json!({"mode": "each", "frames": 1000}));
        assert_eq!(each.values(&sorted).len(), 1000);
    }

    #[test]
    fn the_over_column_must_be_there_with_numbers() {
        let data = Frame::from_columns(vec![
            ("epoch".into(), Column::F64(vec![0.0, 1.0])),
            ("loss".into(), Column::F64(vec![f64::NAN, f64::NAN])),
            ("note".into(), Column::Text(vec!["a".into(), "b".into()])),
        ])
        .unwrap();
        let a = animate(json!({}));
        assert_eq!(a.column(&data, "epoch").unwrap(), "epoch");
        let e = |over: &str| {
            animate(json!({ "over": over }))
                .column(&data, "epoch")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e("stepp"),
            "animate over \"stepp\": there is no such column; the data has \"epoch\", \"loss\", \"note\""
        );
        assert_eq!(
            e("loss"),
            "animate over \"loss\": the column has no finite values to step through"
        );
        assert_eq!(
            e("note"),
            "animate over \"note\": the column holds text values; name a number column"
        );
    }
}
