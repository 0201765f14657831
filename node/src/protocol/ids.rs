//! Identifiers that travel in requests: request ids and user names.

use std::fmt;
use std::str::FromStr;

/// A client-chosen request id (a ULID): the same id sent twice is applied once.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(ulid::Ulid);

impl RequestId {
    pub fn new() -> Self {
        Self(ulid::Ulid::new())
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.0)
    }
}

impl FromStr for RequestId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        ulid::Ulid::from_string(s).map(Self).map_err(|e| {
            format!(
                "request id {s:?} is not a ULID ({e}); ids look like 01JD3Z8V2K9Q4Y7N5M6X1B0C2D"
            )
        })
    }
}

crate::serde_as_text!(RequestId);

/// Who asked: 1–64 characters of letters, digits and `_ . @ -`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserName(String);

impl UserName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(format!(
                "user name {s:?} must be 1-64 characters of letters, digits, _ . @ -"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserName({})", self.0)
    }
}

impl FromStr for UserName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

crate::serde_as_text!(UserName);
