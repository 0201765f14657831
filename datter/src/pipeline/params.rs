//! Reading a checked step's params (their types were checked against the registry).

use serde_json::{Map, Value};

pub(super) fn text<'a>(p: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    p.get(name).and_then(Value::as_str)
}

/// A `Texts` or `Choices` param: one text, or a list of them.
pub(super) fn texts(p: &Map<String, Value>, name: &str) -> Vec<String> {
    match p.get(name) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn count(p: &Map<String, Value>, name: &str) -> Option<usize> {
    p.get(name)
        .and_then(Value::as_u64)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}
