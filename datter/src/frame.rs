//! A frame: named columns of equal length.

use crate::{Column, ColumnKind, DataError};

/// Named columns of equal length, in order. Invariants: names are unique, and every column has
/// [`Frame::rows`] values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    names: Vec<String>,
    columns: Vec<Column>,
    rows: usize,
}

impl Frame {
    /// An empty frame (no columns, no rows).
    pub fn new() -> Frame {
        Frame::default()
    }

    /// A frame of these columns, checked for equal lengths and unique names.
    pub fn from_columns(columns: Vec<(String, Column)>) -> Result<Frame, DataError> {
        let mut f = Frame::new();
        for (name, col) in columns {
            f.push(name, col)?;
        }
        Ok(f)
    }

    /// Adds a column at the end.
    pub fn push(&mut self, name: impl Into<String>, col: Column) -> Result<(), DataError> {
        let name = name.into();
        if self.names.contains(&name) {
            return Err(DataError::Duplicate(name));
        }
        if self.columns.is_empty() {
            self.rows = col.len();
        } else if col.len() != self.rows {
            return Err(DataError::Ragged {
                name,
                len: col.len(),
                rows: self.rows,
            });
        }
        self.names.push(name);
        self.columns.push(col);
        Ok(())
    }

    /// Sets a column, replacing one of the same name in place or adding it at the end.
    pub fn set(&mut self, name: impl Into<String>, col: Column) -> Result<(), DataError> {
        let name = name.into();
        match self.index(&name) {
            Some(i) => {
                if self.columns.len() > 1 && col.len() != self.rows {
                    return Err(DataError::Ragged {
                        name,
                        len: col.len(),
                        rows: self.rows,
                    });
                }
                self.rows = col.len();
                self.columns[i] = col;
                Ok(())
            }
            None => self.push(name, col),
        }
    }

    /// Removes a column, returning it.
    pub fn remove(&mut self, name: &str) -> Option<Column> {
        let i = self.index(name)?;
        self.names.remove(i);
        let col = self.columns.remove(i);
        if self.columns.is_empty() {
            self.rows = 0;
        }
        Some(col)
    }

    /// The number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The number of columns.
    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// The column names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The columns with their names, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Column)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.columns.iter())
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// The column named `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Column> {
        self.index(name).map(|i| &self.columns[i])
    }

    /// The column named `name`, or an error naming the columns there are.
    pub fn column(&self, name: &str) -> Result<&Column, DataError> {
        self.get(name).ok_or_else(|| DataError::NoColumn {
            name: name.to_owned(),
            have: self.names.clone(),
        })
    }

    /// The column named `name` as floats; an error for a missing or text column.
    pub fn numbers(&self, name: &str) -> Result<Vec<f64>, DataError> {
        let col = self.column(name)?;
        col.to_f64().ok_or_else(|| DataError::WrongKind {
            name: name.to_owned(),
            kind: col.kind(),
            wanted: "a number column is needed".to_owned(),
        })
    }

    /// The names of the numeric columns, in order.
    pub fn numeric_names(&self) -> Vec<String> {
        self.iter()
            .filter(|(_, c)| c.is_numeric())
            .map(|(n, _)| n.to_owned())
            .collect()
    }

    /// The rows at `rows`, in that order (each index must be below [`Frame::rows`]).
    pub fn take(&self, rows: &[usize]) -> Frame {
        Frame {
            names: self.names.clone(),
            columns: self.columns.iter().map(|c| c.take(rows)).collect(),
            rows: rows.len(),
        }
    }

    /// The rows where `keep` is true (`keep` has one value per row).
    pub fn filter(&self, keep: &[bool]) -> Frame {
        let rows: Vec<usize> = (0..self.rows)
            .filter(|&i| keep.get(i) == Some(&true))
            .collect();
        self.take(&rows)
    }

    /// Frames stacked one below the other. A column some lack is filled with missing values in
    /// their rows; a column whose kinds differ is widened (see [`Column::concat`]). Columns keep
    /// the order in which they first appear.
    pub fn stack(frames: Vec<Frame>) -> Frame {
        let mut names: Vec<String> = Vec::new();
        let mut kinds: Vec<ColumnKind> = Vec::new();
        for f in &frames {
            for (n, c) in f.iter() {
                if !names.iter().any(|x| x == n) {
                    names.push(n.to_owned());
                    kinds.push(c.kind());
                }
            }
        }
        let mut out: Vec<Option<Column>> = vec![None; names.len()];
        let mut rows = 0;
        for f in frames {
            for (i, name) in names.iter().enumerate() {
                let part = f
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| Column::missing(kinds[i], f.rows));
                out[i] = Some(match out[i].take() {
                    // Rows above that lacked the column are filled; none above, nothing to
                    // fill, so an integer column stays one.
                    None if rows == 0 => part,
                    None => Column::missing(kinds[i], rows).concat(part),
                    Some(c) => c.concat(part),
                });
            }
            rows += f.rows;
        }
        Frame {
            names,
            columns: out.into_iter().flatten().collect(),
            rows,
        }
    }

    /// The frame as CSV text, with a header line.
    pub fn to_csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        // Writing to a Vec cannot fail; an error here would be a bug in csv.
        let _ = w.write_record(&self.names);
        for r in 0..self.rows {
            let _ = w.write_record(self.columns.iter().map(|c| c.text_at(r)));
        }
        let bytes = w.into_inner().unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacking_fills_and_widens() {
        let a = Frame::from_columns(vec![
            ("x".into(), Column::I64(vec![1, 2])),
            ("a".into(), Column::Text(vec!["p".into(), "q".into()])),
        ])
        .unwrap();
        let b = Frame::from_columns(vec![("x".into(), Column::F64(vec![0.5]))]).unwrap();
        let s = Frame::stack(vec![a, b]);
        assert_eq!(s.rows(), 3);
        assert_eq!(s.get("x"), Some(&Column::F64(vec![1.0, 2.0, 0.5])));
        assert_eq!(
            s.get("a"),
            Some(&Column::Text(vec!["p".into(), "q".into(), String::new()]))
        );
    }

    #[test]
    fn ragged_and_duplicate_columns_are_refused() {
        let mut f = Frame::new();
        f.push("x", Column::I64(vec![1, 2])).unwrap();
        assert!(matches!(
            f.push("y", Column::I64(vec![1])),
            Err(DataError::Ragged { .. })
        ));
        assert!(matches!(
            f.push("x", Column::I64(vec![1, 2])),
            Err(DataError::Duplicate(_))
        ));
        let e = f.column("z").unwrap_err().to_string();
        assert_eq!(e, "no column \"z\": the data has \"x\"");
    }
}
