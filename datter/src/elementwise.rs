//! Functions applied to every value of a column, replacing it (the trig ops, `exp`, `log`).
//! Values outside a function's domain give what numpy gives: `log(-1)` and `asin(2)` are NaN,
//! `log(0)` is -inf; a missing value stays missing.

use crate::{Column, DataError, Frame};

/// A function of one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// The sine (of radians).
    Sine,
    /// The cosine.
    Cos,
    /// The tangent.
    Tan,
    /// The arcsine, in radians.
    Asin,
    /// The arccosine.
    Acos,
    /// The arctangent.
    Atan,
    /// The hyperbolic sine.
    Sinh,
    /// The hyperbolic cosine.
    Cosh,
    /// The hyperbolic tangent.
    Tanh,
    /// e to the value.
    Exp,
    /// The natural logarithm.
    Log,
}

impl Func {
    /// Every function, in the order of [`Func::NAMES`].
    pub const ALL: [Func; 11] = [
        Func::Sine,
        Func::Cos,
        Func::Tan,
        Func::Asin,
        Func::Acos,
        Func::Atan,
        Func::Sinh,
        Func::Cosh,
        Func::Tanh,
        Func::Exp,
        Func::Log,
    ];

    /// Their op names.
    pub const NAMES: [&'static str; 11] = [
        "sine", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "exp", "log",
    ];

    /// The function an op is named after (`sin` is `sine`).
    pub fn parse(name: &str) -> Option<Func> {
        let name = if name == "sin" { "sine" } else { name };
        let i = Func::NAMES.iter().position(|n| *n == name)?;
        Some(Func::ALL[i])
    }

    /// Applies it to one value.
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Func::Sine => x.sin(),
            Func::Cos => x.cos(),
            Func::Tan => x.tan(),
            Func::Asin => x.asin(),
            Func::Acos => x.acos(),
            Func::Atan => x.atan(),
            Func::Sinh => x.sinh(),
            Func::Cosh => x.cosh(),
            Func::Tanh => x.tanh(),
            Func::Exp => x.exp(),
            Func::Log => x.ln(),
        }
    }
}

/// The frame with each of `columns` replaced by `f` of its values, as floats. A text column is
/// an error naming it.
pub fn apply(frame: &Frame, columns: &[String], f: Func) -> Result<Frame, DataError> {
    let mut out = frame.clone();
    for name in columns {
        let v = frame.numbers(name)?;
        out.set(
            name.clone(),
            Column::F64(v.into_iter().map(|x| f.apply(x)).collect()),
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_domains() {
        assert_eq!(Func::parse("sin"), Some(Func::Sine));
        for (f, n) in Func::ALL.iter().zip(Func::NAMES) {
            assert_eq!(Func::parse(n), Some(*f));
        }
        assert!(Func::Log.apply(-1.0).is_nan());
        assert_eq!(Func::Log.apply(0.0), f64::NEG_INFINITY);
        assert!(Func::Sine.apply(f64::NAN).is_nan());
    }
}
