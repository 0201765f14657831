//! Datter's errors: each names what it is about (the file and line, the column) and what to do.

use std::path::PathBuf;

/// A file could not be read as a table.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a table of the format its name says, at `line` (1-based; 0 when the
    /// place is not a line).
    #[error("{path}{}: {what}", if *line > 0 { format!(", line {line}") } else { String::new() })]
    Format {
        /// The file.
        path: PathBuf,
        /// The line at fault, or 0.
        line: u64,
        /// What is wrong and what was expected.
        what: String,
    },
    /// The file's name does not say a format datter reads.
    #[error("{path}: datter reads .csv, .json, .jsonl and .npy files, not {ext:?}")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// Its extension.
        ext: String,
    },
}

/// Data that an operation cannot work on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DataError {
    /// A column the operation needs is not in the frame.
    #[error("no column {name:?}: the data has {}", list(.have))]
    NoColumn {
        /// The column asked for.
        name: String,
        /// The columns there are.
        have: Vec<String>,
    },
    /// A column is not of a kind the operation works on.
    #[error("column {name:?} holds {kind} values; {wanted}")]
    WrongKind {
        /// The column.
        name: String,
        /// What it holds.
        kind: crate::ColumnKind,
        /// What was wanted.
        wanted: String,
    },
    /// Columns of unequal length were put in one frame.
    #[error("column {name:?} has {len} rows where the frame has {rows}")]
    Ragged {
        /// The column.
        name: String,
        /// Its length.
        len: usize,
        /// The frame's.
        rows: usize,
    },
    /// Two columns of one frame have the same name.
    #[error("two columns are named {0:?}")]
    Duplicate(String),
    /// The frame has no rows where some are needed.
    #[error("the data is empty: {0}")]
    Empty(String),
    /// A numeric column holds no number at all.
    #[error("column {0:?} holds only missing values (NaN)")]
    AllMissing(String),
    /// A parameter does not fit the data.
    #[error("{0}")]
    Invalid(String),
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "no columns".to_owned()
    } else {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
