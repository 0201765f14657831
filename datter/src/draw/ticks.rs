//! Tick values a reader can use: "nice" steps (1, 2, 2.5, 5 times a power of ten), labels with
//! just the decimals the step needs, and decades for log axes.

/// The nice step nearest above `raw` (a span divided by a wanted count of ticks).
pub fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 2.5 {
        2.5
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * p
}

/// About `target` tick values inside `lo..=hi`, evenly spaced by a nice step; with the step.
pub fn linear(lo: f64, hi: f64, target: usize) -> (Vec<f64>, f64) {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return (Vec::new(), 1.0);
    }
    let step = nice_step((hi - lo) / target.max(1) as f64);
    let first = (lo / step - 1e-9).ceil();
    let mut ticks = Vec::new();
    let mut k = first;
    while k * step <= hi + step * 1e-9 && ticks.len() < 1000 {
        let v = k * step;
        // -0 reads badly and 1e-17 is a rounding of 0.
        ticks.push(if v.abs() < step * 1e-9 { 0.0 } else { v });
        k += 1.0;
    }
    (ticks, step)
}

/// Ticks of a log axis whose range is `lo..=hi` in log10 units: the decades, thinned to about
/// `target`, or 1-2-5 steps inside a range of less than two decades. Values are log10 values.
pub fn log(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return Vec::new();
    }
    if hi - lo < 2.0 {
        let mut out = Vec::new();
        let mut d = lo.floor();
        while d <= hi && out.len() < 100 {
            for m in [1.0f64, 2.0, 5.0] {
                let v = d + m.log10();
                if v >= lo - 1e-9 && v <= hi + 1e-9 {
                    out.push(v);
                }
            }
            d += 1.0;
        }
        return out;
    }
    let decades = (hi.floor() - lo.ceil()) as usize + 1;
    let every = decades.div_ceil(target.max(1)).max(1) as f64;
    let mut out = Vec::new();
    let mut d = (lo.ceil() / every).ceil() * every;
    while d <= hi + 1e-9 && out.len() < 400 {
        out.push(d);
        d += every;
    }
    out
}

/// Labels for tick `values` a `step` apart: as many decimals as the step needs, scientific
/// notation for very large or very small numbers.
pub fn labels(values: &[f64], step: f64) -> Vec<String> {
    let big = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if big >= 1e6 || (big > 0.0 && big < 1e-3) {
        return values.iter().map(|&v| sci(v, mantissa_digits(v))).collect();
    }
    let decimals = (0..=9)
        .find(|&d| {
            let f = 10f64.powi(d);
            values
                .iter()
                .chain(std::iter::once(&step))
                .all(|v| ((v * f) - (v * f).round()).abs() < 1e-6 * f.max(1.0))
        })
        .unwrap_or(6) as usize;
    values.iter().map(|&v| fixed(v, decimals)).collect()
}

/// A value as plain decimals (no "-0").
pub fn fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

/// How many mantissa decimals (at most 3) show `v` in scientific notation.
fn mantissa_digits(v: f64) -> usize {
    if v == 0.0 || !v.is_finite() {
        return 0;
    }
    let e = v.abs().log10().floor() as i32;
    (0..=3)
        .find(|&d| {
            let m = v / 10f64.powi(e) * 10f64.powi(d);
            (m - m.round()).abs() < 1e-6
        })
        .unwrap_or(3) as usize
}

/// A value in scientific notation, e.g. `2.5e6`.
fn sci(v: f64, digits: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    format!("{v:.digits$e}")
}

/// A label for a log tick at log10 value `v`: plain for 0.001..1e5, else `1e6`.
pub fn log_label(v: f64) -> String {
    let x = 10f64.powf(v);
    if (-3.0..=5.0).contains(&v.round()) && (v - v.round()).abs() < 1e-9 {
        fixed(x, (-v.round()).max(0.0) as usize)
    } else if (v - v.round()).abs() < 1e-9 {
        format!("1e{}", v.round() as i64)
    } else {
        let digits = if x.abs() >= 1.0 {
            0
        } else {
            (-x.log10().floor()) as usize
        };
        if x.abs() >= 1e6 || x.abs() < 1e-3 {
            sci(x, 0)
        } else {
            fixed(x, digits)
        }
    }
}

/// A number as a short label (cell values, colour bars): 3 significant digits.
pub fn short(v: f64) -> String {
    if !v.is_finite() {
        return String::new();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        return sci(v, 2);
    }
    let decimals = if a == 0.0 {
        0
    } else {
        (2 - a.log10().floor() as i32).clamp(0, 6) as usize
    };
    let s = fixed(v, decimals);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.3), 2.0);
        assert_eq!(nice_step(23.0), 25.0);
        assert_eq!(nice_step(0.04), 0.05);
    }

    #[test]
    fn linear_ticks_and_labels() {
        let (t, s) = linear(0.0, 10.0, 5);
        assert_eq!(t, vec![0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(labels(&t, s), ["0", "2", "4", "6", "8", "10"]);
        let (t, s) = linear(-0.13, 0.31, 5);
        assert_eq!(labels(&t, s), ["-0.1", "0.0", "0.1", "0.2", "0.3"]);
        let (t, s) = linear(0.0, 1.0, 4);
        assert_eq!(labels(&t, s), ["0.00", "0.25", "0.50", "0.75", "1.00"]);
        let (t, s) = linear(0.0, 3e7, 3);
        assert_eq!(labels(&t, s), ["0", "1e7", "2e7", "3e7"]);
        let (t, s) = linear(0.0, 1e9, 4);
        assert_eq!(labels(&t, s), ["0", "2.5e8", "5e8", "7.5e8", "1e9"]);
    }

    #[test]
    fn log_ticks() {
        assert_eq!(log(0.0, 3.0, 5), vec![0.0, 1.0, 2.0, 3.0]);
        assert_eq!(log_label(3.0), "1000");
        assert_eq!(log_label(-2.0), "0.01");
        assert_eq!(log_label(7.0), "1e7");
        assert_eq!(log(0.0, 1.0, 5).len(), 4);
    }

    #[test]
    fn short_labels() {
        assert_eq!(short(0.12345), "0.123");
        assert_eq!(short(12.0), "12");
        assert_eq!(short(1234.6), "1235");
        assert_eq!(short(-0.5), "-0.5");
    }
}
