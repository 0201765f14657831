//! Readers: a file on disk to a [`Frame`], by the file's extension.
//!
//! - CSV: a header line, then rows of as many fields. A column whose every field is an
//!   integer is read as integers; one whose fields are numbers or empty (or `nan`, `NA`) as
//!   floats with NaN for the gaps; `true`/`false` as booleans; anything else as text.
//! - JSON: an array of records (`[{"step": 1, "reward": 0.5}, …]`), an object of columns
//!   (`{"step": [1, 2], …}`), or an array of numbers (one column, `value`).
//! - JSONL: one record per line.
//! - NPY: a 1-d array (one column, `value`) or a 2-d one (columns `x0`, `x1`, …), of floats,
//!   integers or booleans, in C or Fortran order.

use std::path::Path;

use serde_json::Value;

use crate::{Column, Frame, ReadError};

/// Reads `path` by its extension (`.csv`, `.json`, `.jsonl`/`.ndjson`, `.npy`).
pub fn read(path: &Path) -> Result<Frame, ReadError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let bytes = std::fs::read(path).map_err(|source| ReadError::Io {
        path: path.to_owned(),
        source,
    })?;
    match ext.as_str() {
        "csv" => csv_bytes(path, &bytes),
        "json" => json_bytes(path, &bytes),
        "jsonl" | "ndjson" => jsonl_bytes(path, &bytes),
        "npy" => npy_bytes(path, &bytes),
        _ => Err(ReadError::UnknownFormat {
            path: path.to_owned(),
            ext,
        }),
    }
}

fn format_error(path: &Path, line: u64, what: impl Into<String>) -> ReadError {
    ReadError::Format {
        path: path.to_owned(),
        line,
        what: what.into(),
    }
}

/// Parses CSV text; `path` names it in errors.
pub fn csv_bytes(path: &Path, bytes: &[u8]) -> Result<Frame, ReadError> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header: Vec<String> = r
        .headers()
        .map_err(|e| csv_error(path, &e))?
        .iter()
        .map(str::to_owned)
        .collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(format_error(
            path,
            1,
            "no header line: the first line names the columns",
        ));
    }
    // Each column's fields end to end in one buffer: no allocation per field, and a column
    // of numbers never becomes strings at all.
    let mut fields: Vec<Fields> = (0..header.len()).map(|_| Fields::default()).collect();
    let mut rec = csv::StringRecord::new();
    loop {
        match r.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {
                for (column, f) in fields.iter_mut().zip(rec.iter()) {
                    column.push(f);
                }
            }
            Err(e) => return Err(csv_error(path, &e)),
        }
    }
    let mut frame = Frame::new();
    for (i, (name, values)) in header.into_iter().zip(fields).enumerate() {
        let name = if name.is_empty() {
            format!("column{i}")
        } else {
            name
        };
        frame
            .push(name.clone(), infer(values))
            .map_err(|e| format_error(path, 1, e.to_string()))?;
    }
    Ok(frame)
}

/// A frame refused what the file holds (two columns of one name, say).
fn frame_error(path: &Path, e: &crate::DataError) -> ReadError {
    format_error(path, 0, e.to_string())
}

fn csv_error(path: &Path, e: &csv::Error) -> ReadError {
    let line = e.position().map_or(0, csv::Position::line);
    let what = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!(
            "a row of {len} fields where the header has {expected_len}: every row needs one field per column"
        ),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8 text".to_owned(),
        _ => e.to_string(),
    };
    format_error(path, line, what)
}

fn is_missing(s: &str) -> bool {
    matches!(
        s,
        "" | "nan" | "NaN" | "NAN" | "NA" | "N/A" | "null" | "None"
    )
}

/// One column's fields as read, end to end.
#[derive(Default)]
struct Fields {
    text: String,
    ends: Vec<usize>,
}

impl Fields {
    fn push(&mut self, field: &str) {
        self.text.push_str(field);
        self.ends.push(self.text.len());
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        // Every end is a char boundary: each was the length after a whole `&str`.
        starts
            .zip(self.ends.iter().copied())
            .map(|(a, b)| self.text.get(a..b).unwrap_or_default())
    }

    fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// The narrowest column that holds every field: integers, floats (with NaN gaps), booleans,
/// else text.
fn infer(values: Fields) -> Column {
    if !values.is_empty() {
        let ints: Option<Vec<i64>> = values.iter().map(|v| v.parse().ok()).collect();
        if let Some(ints) = ints {
            return Column::I64(ints);
        }
    }
    let floats: Option<Vec<f64>> = values
        .iter()
        .map(|v| {
            if is_missing(v) {
                Some(f64::NAN)
            } else {
                v.parse::<f64>().ok()
            }
        })
        .collect();
    if let Some(f) = floats {
        return Column::F64(f);
    }
    let bools: Option<Vec<bool>> = values
        .iter()
        .map(|v| match v.to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        })
        .collect();
    if let Some(b) = bools {
        return Column::Bool(b);
    }
    Column::Text(values.iter().map(str::to_owned).collect())
}

/// Parses JSON text: records, columns, or an array of numbers.
pub fn json_bytes(path: &Path, bytes: &[u8]) -> Result<Frame, ReadError> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| format_error(path, e.line() as u64, format!("not JSON: {e}")))?;
    match v {
        Value::Array(items) if items.iter().all(|x| x.is_object()) => records(
            path,
            items
                .into_iter()
                .enumerate()
                .map(|(i, x)| (i as u64 + 1, x)),
            false,
        ),
        Value::Array(items) if items.iter().all(|x| x.is_number() || x.is_null()) => {
            let col = values_column(path, "value", items)?;
            Frame::from_columns(vec![("value".to_owned(), col)]).map_err(|e| frame_error(path, &e))
        }
        Value::Object(map) => {
            let mut f = Frame::new();
            for (name, col) in map {
                let Value::Array(items) = col else {
                    return Err(format_error(
                        path,
                        0,
                        format!(
                            "field {name:?} is not an array: an object of columns maps each name to an array"
                        ),
                    ));
                };
                let col = values_column(path, &name, items)?;
                f.push(name, col).map_err(|e| frame_error(path, &e))?;
            }
            Ok(f)
        }
        _ => Err(format_error(
            path,
            0,
            "expected an array of records, an object of columns, or an array of numbers",
        )),
    }
}

/// Parses JSON Lines: one record per line (blank lines skipped).
pub fn jsonl_bytes(path: &Path, bytes: &[u8]) -> Result<Frame, ReadError> {
    let text = std::str::from_utf8(bytes).map_err(|_| format_error(path, 0, "not UTF-8 text"))?;
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| format_error(path, i as u64 + 1, format!("not JSON: {e}")))?;
        items.push((i as u64 + 1, v));
    }
    records(path, items.into_iter(), true)
}

/// Records (objects) to columns: a field a record lacks is missing in its row.
fn records(
    path: &Path,
    items: impl Iterator<Item = (u64, Value)>,
    by_line: bool,
) -> Result<Frame, ReadError> {
    let mut names: Vec<String> = Vec::new();
    let mut cols: Vec<Vec<Value>> = Vec::new();
    let mut n = 0usize;
    for (line, item) in items {
        let Value::Object(map) = item else {
            return Err(format_error(
                path,
                if by_line { line } else { 0 },
                format!("record {line} is not an object"),
            ));
        };
        for (k, v) in map {
            let i = match names.iter().position(|x| *x == k) {
                Some(i) => i,
                None => {
                    names.push(k);
                    cols.push(vec![Value::Null; n]);
                    names.len() - 1
                }
            };
            cols[i].push(v);
        }
        n += 1;
        for c in &mut cols {
            if c.len() < n {
                c.push(Value::Null);
            }
        }
    }
    let mut f = Frame::new();
    for (name, values) in names.into_iter().zip(cols) {
        let col = values_column(path, &name, values)?;
        f.push(name, col).map_err(|e| frame_error(path, &e))?;
    }
    Ok(f)
}

/// JSON values of one column to a column: integers, floats (null is NaN), booleans or text.
fn values_column(path: &Path, name: &str, values: Vec<Value>) -> Result<Column, ReadError> {
    if !values.is_empty() && values.iter().all(|v| v.is_i64()) {
        return Ok(Column::I64(
            values.iter().filter_map(Value::as_i64).collect(),
        ));
    }
    if values.iter().all(|v| v.is_number() || v.is_null()) {
        return Ok(Column::F64(
            values
                .iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN))
                .collect(),
        ));
    }
    if values.iter().all(Value::is_boolean) {
        return Ok(Column::Bool(
            values.iter().filter_map(Value::as_bool).collect(),
        ));
    }
    if values.iter().any(|v| v.is_array() || v.is_object()) {
        return Err(format_error(
            path,
            0,
            format!(
                "field {name:?} holds arrays or objects: each field must be a number, boolean or text"
            ),
        ));
    }
    Ok(Column::Text(
        values
            .into_iter()
            .map(|v| match v {
                Value::String(s) => s,
                Value::Null => String::new(),
                other => other.to_string(),
            })
            .collect(),
    ))
}

/// Parses an NPY file (format versions 1 to 3).
pub fn npy_bytes(path: &Path, bytes: &[u8]) -> Result<Frame, ReadError> {
    let bad = |what: &str| format_error(path, 0, format!("not an NPY array: {what}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no \\x93NUMPY magic"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(&format!("format version {v} is not 1, 2 or 3"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("header cut short"))?;
    let descr = dict_str(header, "descr").ok_or_else(|| bad("no 'descr' in the header"))?;
    let fortran = header
        .split("'fortran_order':")
        .nth(1)
        .is_some_and(|s| s.trim_start().starts_with("True"));
    let shape = dict_shape(header).ok_or_else(|| bad("no 'shape' in the header"))?;
    let data = &bytes[start + header_len..];
    let (rows, cols) = match shape.as_slice() {
        [] => (1, 1),
        [n] => (*n, 1),
        [n, m] => (*n, *m),
        _ => {
            return Err(format_error(
                path,
                0,
                format!("an array of shape {shape:?}: datter reads 1-d and 2-d arrays"),
            ));
        }
    };
    let count = rows
        .checked_mul(cols)
        .ok_or_else(|| bad("shape overflows"))?;
    let values = decode(descr, data, count).map_err(|w| format_error(path, 0, w))?;
    let names: Vec<String> = if shape.len() == 2 {
        (0..cols).map(|j| format!("x{j}")).collect()
    } else {
        vec!["value".to_owned()]
    };
    let mut f = Frame::new();
    for (j, name) in names.into_iter().enumerate() {
        let at = |i: usize| if fortran { j * rows + i } else { i * cols + j };
        let col = match &values {
            Decoded::F(v) => Column::F64((0..rows).map(|i| v[at(i)]).collect()),
            Decoded::I(v) => Column::I64((0..rows).map(|i| v[at(i)]).collect()),
            Decoded::B(v) => Column::Bool((0..rows).map(|i| v[at(i)]).collect()),
        };
        f.push(name, col).map_err(|e| frame_error(path, &e))?;
    }
    Ok(f)
}

enum Decoded {
    F(Vec<f64>),
    I(Vec<i64>),
    B(Vec<bool>),
}

fn decode(descr: &str, data: &[u8], count: usize) -> Result<Decoded, String> {
    let (order, kind) = descr.split_at(1.min(descr.len()));
    let little = match order {
        "<" | "|" | "=" => true,
        ">" => false,
        _ => return Err(format!("dtype {descr:?} has no byte order")),
    };
    let size: usize = kind.get(1..).and_then(|s| s.parse().ok()).unwrap_or(0);
    if size == 0 || data.len() < count.saturating_mul(size) {
        return Err(format!(
            "{} bytes of data where shape and dtype {descr:?} need {}",
            data.len(),
            count.saturating_mul(size.max(1))
        ));
    }
    let word = |i: usize| -> [u8; 8] {
        let mut w = [0u8; 8];
        let b = &data[i * size..(i + 1) * size];
        if little {
            w[..size].copy_from_slice(b);
        } else {
            for (k, x) in b.iter().rev().enumerate() {
                w[k] = *x;
            }
        }
        w
    };
    let sign_extend = |w: [u8; 8]| -> i64 {
        let v = u64::from_le_bytes(w);
        let shift = 64 - 8 * size as u32;
        ((v << shift) as i64) >> shift
    };
    Ok(match (kind.as_bytes().first(), size) {
        (Some(b'f'), 8) => Decoded::F((0..count).map(|i| f64::from_le_bytes(word(i))).collect()),
        (Some(b'f'), 4) => Decoded::F(
            (0..count)
                .map(|i| {
                    let w = word(i);
                    f64::from(f32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                })
                .collect(),
        ),
        (Some(b'i'), 1 | 2 | 4 | 8) => {
            Decoded::I((0..count).map(|i| sign_extend(word(i))).collect())
        }
        (Some(b'u'), 1 | 2 | 4) => Decoded::I(
            (0..count)
                .map(|i| u64::from_le_bytes(word(i)) as i64)
                .collect(),
        ),
        (Some(b'b'), 1) => Decoded::B((0..count).map(|i| data[i] != 0).collect()),
        _ => {
            return Err(format!(
                "dtype {descr:?}: datter reads floats (f4, f8), integers (i1-i8, u1-u4) and booleans (b1)"
            ));
        }
    })
}

/// The text value of `'key': '…'` in an NPY header dict.
fn dict_str<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let rest = header.split(&format!("'{key}':")).nth(1)?.trim_start();
    let rest = rest.strip_prefix('\'')?;
    rest.split('\'').next()
}

/// The `'shape': (…)` tuple of an NPY header dict.
fn dict_shape(header: &str) -> Option<Vec<usize>> {
    let rest = header.split("'shape':").nth(1)?.trim_start();
    let inner = rest.strip_prefix('(')?.split(')').next()?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("m.csv")
    }

    #[test]
    fn csv_columns_take_the_narrowest_kind() {
        let f = csv_bytes(p(), b"step,reward,ok,name\n1,0.5,true,a\n2,,false,b\n").unwrap();
        assert_eq!(f.get("step"), Some(&Column::I64(vec![1, 2])));
        match f.get("reward") {
            Some(Column::F64(v)) => assert!(v[0] == 0.5 && v[1].is_nan()),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.get("ok"), Some(&Column::Bool(vec![true, false])));
        assert_eq!(
            f.get("name"),
            Some(&Column::Text(vec!["a".into(), "b".into()]))
        );
    }

    #[test]
    fn a_ragged_csv_names_the_file_and_line() {
        let e = csv_bytes(p(), b"a,b\n1,2\n3\n").unwrap_err().to_string();
        assert_eq!(
            e,
            "m.csv, line 3: a row of 1 fields where the header has 2: every row needs one field per column"
        );
    }

    #[test]
    fn json_records_columns_and_lines() {
        let q = Path::new("m.json");
        let a = json_bytes(q, br#"[{"s":1,"r":0.5},{"s":2}]"#).unwrap();
        assert_eq!(a.get("s"), Some(&Column::I64(vec![1, 2])));
        assert!(matches!(a.get("r"), Some(Column::F64(v)) if v[1].is_nan()));
        let b = json_bytes(q, br#"{"s":[1,2],"t":["x","y"]}"#).unwrap();
        assert_eq!(b.rows(), 2);
        let c = jsonl_bytes(Path::new("m.jsonl"), b"{\"s\":1}\n\n{\"s\":2,\"u\":true}\n").unwrap();
        assert_eq!(c.get("s"), Some(&Column::I64(vec![1, 2])));
        let e = jsonl_bytes(Path::new("m.jsonl"), b"{\"s\":1}\n{oops\n").unwrap_err();
        assert!(
            e.to_string().starts_with("m.jsonl, line 2: not JSON"),
            "{e}"
        );
    }

    fn npy(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(data);
        out
    }

    #[test]
    fn npy_two_d_in_both_orders() {
        let vals: Vec<u8> = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let c = npy_bytes(Path::new("e.npy"), &npy("<f8", false, "(3, 2)", &vals)).unwrap();
        assert_eq!(c.get("x0"), Some(&Column::F64(vec![1.0, 3.0, 5.0])));
        let f = npy_bytes(Path::new("e.npy"), &npy("<f8", true, "(3, 2)", &vals)).unwrap();
        assert_eq!(f.get("x0"), Some(&Column::F64(vec![1.0, 2.0, 3.0])));
        let i: Vec<u8> = [-1i32, 7].iter().flat_map(|x| x.to_le_bytes()).collect();
        let g = npy_bytes(Path::new("e.npy"), &npy("<i4", false, "(2,)", &i)).unwrap();
        assert_eq!(g.get("value"), Some(&Column::I64(vec![-1, 7])));
        let e = npy_bytes(Path::new("e.npy"), &npy("<f8", false, "(4, 2)", &vals)).unwrap_err();
        assert!(e.to_string().contains("48 bytes of data"), "{e}");
    }
}
