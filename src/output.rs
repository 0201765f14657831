//! Human output: aligned tables and UTC times. JSON output is serde_json of protocol types.

use std::fmt::Write as _;

/// `ms` since the Unix epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm), valid for all dates after 1970.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A table printed with columns padded to their widest cell.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// An error and its causes in one line, `outer: cause: …`, each distinct message once: a
/// cause whose text the message before it already contains (a layer that prints its source
/// and also returns it as `source()`) is left out.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut previous: Option<String> = None;
    for cause in e.chain() {
        let text = cause.to_string();
        let repeated = previous
            .as_deref()
            .is_some_and(|p| p.contains(text.as_str()));
        if !repeated && !text.is_empty() {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        previous = Some(text);
    }
    out
}

/// A JSON value in one line, strings without quotes.
pub fn value(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `v` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// Runs as a table, one per line.
pub fn runs_table(runs: &[plotter2_node::protocol::RunRecord]) -> String {
    let mut t = Table::new(&["RUN", "STATE", "TASK", "NODE", "PARAMS", "CREATED", "BY"]);
    for r in runs {
        // Who asked: the user, or the rule that fired on their behalf.
        let by = match &r.cause {
            Some(c) => format!("rule {}", c.rule.name),
            None => r.user.to_string(),
        };
        t.row(vec![
            r.id.to_string(),
            format!("{:?}", r.state).to_lowercase(),
            r.task.clone(),
            r.node.to_string(),
            serde_json::to_string(&r.params).unwrap_or_default(),
            time(r.created_ms),
            by,
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_civil() {
        assert_eq!(time(0), "1970-01-01 00:00:00");
        assert_eq!(time(1_763_700_000_000), "2025-11-21 04:40:00");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00:00");
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{path}: {source}")]
    struct Embeds {
        path: String,
        source: std::io::Error,
    }

    #[test]
    fn error_chain_prints_each_message_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(Embeds {
            path: "/x".into(),
            source: io,
        })
        .context("reading /x")
        .context("pushing /x");
        assert_eq!(error_chain(&e), "pushing /x: reading /x: /x: no such file");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(error_chain(&plain), "outer: inner");
    }

    #[test]
    fn table_aligns() {
        let mut t = Table::new(&["A", "LONGER"]);
        t.row(vec!["xyz".into(), "1".into()]);
        assert_eq!(t.render(), "A    LONGER\nxyz  1\n");
    }
}
