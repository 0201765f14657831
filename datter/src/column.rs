//! One typed column of a frame.

use std::fmt;

/// The type of a column's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// 64-bit floats; a missing value is NaN.
    F64,
    /// 64-bit integers (no missing value: a column with gaps is read as floats).
    I64,
    /// Booleans.
    Bool,
    /// Text.
    Text,
}

impl fmt::Display for ColumnKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ColumnKind::F64 => "float",
            ColumnKind::I64 => "integer",
            ColumnKind::Bool => "boolean",
            ColumnKind::Text => "text",
        })
    }
}

/// A column of values of one kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Floats; NaN marks a missing value.
    F64(Vec<f64>),
    /// Integers.
    I64(Vec<i64>),
    /// Booleans.
    Bool(Vec<bool>),
    /// Text.
    Text(Vec<String>),
}

impl Column {
    /// How many values the column holds.
    pub fn len(&self) -> usize {
        match self {
            Column::F64(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::Bool(v) => v.len(),
            Column::Text(v) => v.len(),
        }
    }

    /// Whether the column holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The kind of its values.
    pub fn kind(&self) -> ColumnKind {
        match self {
            Column::F64(_) => ColumnKind::F64,
            Column::I64(_) => ColumnKind::I64,
            Column::Bool(_) => ColumnKind::Bool,
            Column::Text(_) => ColumnKind::Text,
        }
    }

    /// Whether its values are numbers (floats, integers or booleans as 0 and 1).
    pub fn is_numeric(&self) -> bool {
        !matches!(self, Column::Text(_))
    }

    /// The values as floats, or `None` for text. Integers beyond 2^53 lose precision, as they
    /// do in numpy.
    pub fn to_f64(&self) -> Option<Vec<f64>> {
        match self {
            Column::F64(v) => Some(v.clone()),
            #[allow(clippy::cast_precision_loss)] // documented above
            Column::I64(v) => Some(v.iter().map(|&x| x as f64).collect()),
            Column::Bool(v) => Some(v.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect()),
            Column::Text(_) => None,
        }
    }

    /// The value at `row` as a float (NaN for text and out of range).
    pub fn f64_at(&self, row: usize) -> f64 {
        match self {
            Column::F64(v) => v.get(row).copied().unwrap_or(f64::NAN),
            #[allow(clippy::cast_precision_loss)]
            Column::I64(v) => v.get(row).map_or(f64::NAN, |&x| x as f64),
            Column::Bool(v) => v.get(row).map_or(f64::NAN, |&b| f64::from(u8::from(b))),
            Column::Text(_) => f64::NAN,
        }
    }

    /// The value at `row` as text, as a reader would write it back (empty for a missing
    /// float).
    pub fn text_at(&self, row: usize) -> String {
        match self {
            Column::F64(v) => v.get(row).map_or(String::new(), |x| {
                if x.is_nan() {
                    String::new()
                } else {
                    format_f64(*x)
                }
            }),
            Column::I64(v) => v.get(row).map_or(String::new(), ToString::to_string),
            Column::Bool(v) => v.get(row).map_or(String::new(), ToString::to_string),
            Column::Text(v) => v.get(row).cloned().unwrap_or_default(),
        }
    }

    /// The rows at `rows`, in that order (each index must be in range).
    pub fn take(&self, rows: &[usize]) -> Column {
        match self {
            Column::F64(v) => Column::F64(rows.iter().map(|&i| v[i]).collect()),
            Column::I64(v) => Column::I64(rows.iter().map(|&i| v[i]).collect()),
            Column::Bool(v) => Column::Bool(rows.iter().map(|&i| v[i]).collect()),
            Column::Text(v) => Column::Text(rows.iter().map(|&i| v[i].clone()).collect()),
        }
    }

    /// This column followed by `other`, widened to a kind that holds both (integers and
    /// floats make floats; anything with text makes text).
    pub fn concat(self, other: Column) -> Column {
        match (self, other) {
            (Column::F64(mut a), Column::F64(b)) => {
                a.extend(b);
                Column::F64(a)
            }
            (Column::I64(mut a), Column::I64(b)) => {
                a.extend(b);
                Column::I64(a)
            }
            (Column::Bool(mut a), Column::Bool(b)) => {
                a.extend(b);
                Column::Bool(a)
            }
            // Text onto text moves the strings: stacking many inputs stays linear.
            (Column::Text(mut a), Column::Text(b)) => {
                a.extend(b);
                Column::Text(a)
            }
            (a, b) if a.is_numeric() && b.is_numeric() => {
                let mut x = a.to_f64().unwrap_or_default();
                x.extend(b.to_f64().unwrap_or_default());
                Column::F64(x)
            }
            (a, b) => {
                let mut x: Vec<String> = (0..a.len()).map(|i| a.text_at(i)).collect();
                x.extend((0..b.len()).map(|i| b.text_at(i)));
                Column::Text(x)
            }
        }
    }

    /// A column of `len` missing values for a column of this kind, used to fill a column one
    /// input lacks when inputs are stacked: NaN floats for numbers (integers have no missing
    /// value), `false`, or empty text.
    pub fn missing(kind: ColumnKind, len: usize) -> Column {
        match kind {
            ColumnKind::F64 | ColumnKind::I64 => Column::F64(vec![f64::NAN; len]),
            ColumnKind::Bool => Column::Bool(vec![false; len]),
            ColumnKind::Text => Column::Text(vec![String::new(); len]),
        }
    }
}

/// A float as the shortest text that reads back as the same float (what CSV writers print).
pub(crate) fn format_f64(x: f64) -> String {
    if x.is_finite() && x == x.trunc() && x.abs() < 1e15 {
        format!("{x:.1}")
    } else {
        format!("{x}")
    }
}
