//! A worker's name: recorded on the attempts it starts, and one token of the NATS subject it
//! answers liveness checks on (`p2.worker.<name>`), so it is checked once, where it is made.

use std::fmt;
use std::str::FromStr;

/// Longest name (the coordinator refuses longer ones in a report).
pub const MAX_LEN: usize = 128;

/// 1–128 letters, digits, `-` and `_`: a single NATS subject token, and a file name.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WorkerName(String);

/// Why a text is not a worker name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "worker name {name:?} {why}: use 1-{MAX_LEN} letters, digits, - and _ \
     (it becomes a token of the NATS subject p2.worker.<name>)"
)]
pub struct WorkerNameError {
    /// The text given.
    pub name: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl WorkerName {
    /// Checks `s`: anything NATS would read as a separator or wildcard (`.`, `*`, `>`,
    /// whitespace) or that is not ASCII is refused.
    pub fn parse(s: &str) -> Result<Self, WorkerNameError> {
        let why = if s.is_empty() {
            Some("is empty")
        } else if s.len() > MAX_LEN {
            Some("is too long")
        } else if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            Some("holds characters other than letters, digits, - and _")
        } else {
            None
        };
        match why {
            None => Ok(Self(s.to_owned())),
            Some(why) => Err(WorkerNameError {
                name: s.to_owned(),
                why,
            }),
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for WorkerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkerName({})", self.0)
    }
}

impl FromStr for WorkerName {
    type Err = WorkerNameError;
    fn from_str(s: &str) -> Result<Self, WorkerNameError> {
        Self::parse(s)
    }
}

crate::serde_as_text!(WorkerName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_one_subject_token_parse() {
        for ok in ["local-1", "w_2", "gpu-box-17", "A"] {
            let n = WorkerName::parse(ok).unwrap();
            assert_eq!(n.as_str(), ok);
            assert_eq!(
                crate::protocol::worker_subject(&n),
                format!("p2.worker.{ok}")
            );
        }
        assert!(WorkerName::parse(&"x".repeat(MAX_LEN)).is_ok());
    }

    #[test]
    fn what_nats_would_split_or_match_is_refused_with_the_reason() {
        for (bad, why) in [
            ("", "is empty"),
            ("a.b", "characters"),
            ("w*", "characters"),
            ("w>", "characters"),
            ("two words", "characters"),
            ("tab\tbed", "characters"),
            ("wörker", "characters"),
        ] {
            let e = WorkerName::parse(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
            assert!(e.to_string().contains("NATS subject"), "{e}");
        }
        let e = WorkerName::parse(&"x".repeat(MAX_LEN + 1)).unwrap_err();
        assert_eq!(e.why, "is too long");
    }

    #[test]
    fn it_travels_as_text_and_is_checked_when_read() {
        let n = WorkerName::parse("local-1").unwrap();
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"local-1\"");
        assert_eq!(serde_json::from_str::<WorkerName>(&json).unwrap(), n);
        assert!(serde_json::from_str::<WorkerName>("\"a.b\"").is_err());
    }
}
