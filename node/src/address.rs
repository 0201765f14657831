//! Addresses in the one Plan 9-style namespace, and their reversible NATS subject form.
//!
//! An [`Address`] can only be built by [`Address::parse`] (or from another valid address), so
//! code that holds one never re-checks it.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest allowed segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 128;
/// Deepest allowed address (number of segments).
pub const MAX_DEPTH: usize = 32;

/// Why a string is not an address. Every message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address {input:?} must start with '/', e.g. /sources/tali/experiment2")]
    NotAbsolute { input: String },
    #[error("address {input:?} has an empty segment at position {position}: remove the extra '/'")]
    EmptySegment { input: String, position: usize },
    #[error("address {input:?}: segment {position} is {len} bytes; the limit is {MAX_SEGMENT_LEN}")]
    SegmentTooLong {
        input: String,
        position: usize,
        len: usize,
    },
    #[error(
        "address {input:?}: segment {segment:?} contains {ch:?}; segments may only use letters, digits and _ . , = + -"
    )]
    BadChar {
        input: String,
        segment: String,
        ch: char,
    },
    #[error(
        "address {input:?}: '.' and '..' are not allowed as segments; name the node explicitly"
    )]
    DotSegment { input: String },
    #[error("address {input:?} is {depth} segments deep; the limit is {MAX_DEPTH}")]
    TooDeep { input: String, depth: usize },
    #[error("address is not valid UTF-8 ({len} bytes); addresses are text like /sources/tali")]
    NotUtf8 { len: usize },
    #[error("subject {subject:?} is not a plotter2 subject under {prefix:?}")]
    BadSubject { subject: String, prefix: String },
}

/// A validated absolute address such as `/sources/tali/experiment2/lr=0.1`. The root is `/`.
///
/// Ordering is segment by segment, so a node's subtree is a contiguous range after it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Address {
    segments: Vec<String>,
}

fn segment_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ',' | '=' | '+' | '-')
}

fn check_segment(input: &str, position: usize, seg: &str) -> Result<(), AddressError> {
    if seg.is_empty() {
        return Err(AddressError::EmptySegment {
            input: input.to_owned(),
            position,
        });
    }
    if seg.len() > MAX_SEGMENT_LEN {
        return Err(AddressError::SegmentTooLong {
            input: input.to_owned(),
            position,
            len: seg.len(),
        });
    }
    if seg == "." || seg == ".." {
        return Err(AddressError::DotSegment {
            input: input.to_owned(),
        });
    }
    if let Some(ch) = seg.chars().find(|c| !segment_char_ok(*c)) {
        return Err(AddressError::BadChar {
            input: input.to_owned(),
            segment: seg.to_owned(),
            ch,
        });
    }
    Ok(())
}

impl Address {
    /// The root `/`.
    pub fn root() -> Self {
        Self::default()
    }

    /// The root, borrowed for as long as needed.
    pub fn root_ref() -> &'static Address {
        static ROOT: Address = Address {
            segments: Vec::new(),
        };
        &ROOT
    }

    /// Parses and validates an absolute address.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let Some(rest) = input.strip_prefix('/') else {
            return Err(AddressError::NotAbsolute {
                input: input.to_owned(),
            });
        };
        if rest.is_empty() {
            return Ok(Self::root());
        }
        let mut segments = Vec::new();
        for (i, seg) in rest.split('/').enumerate() {
            check_segment(input, i + 1, seg)?;
            segments.push(seg.to_owned());
            if segments.len() > MAX_DEPTH {
                let depth = rest.split('/').count();
                return Err(AddressError::TooDeep {
                    input: input.to_owned(),
                    depth,
                });
            }
        }
        Ok(Self { segments })
    }

    /// Parses an address given as raw bytes (from the wire or a file name).
    pub fn parse_bytes(input: &[u8]) -> Result<Self, AddressError> {
        let text =
            std::str::from_utf8(input).map_err(|_| AddressError::NotUtf8 { len: input.len() })?;
        Self::parse(text)
    }

    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    pub fn depth(&self) -> usize {
        self.segments.len()
    }

    pub fn segments(&self) -> impl ExactSizeIterator<Item = &str> {
        self.segments.iter().map(String::as_str)
    }

    /// The last segment; `None` for the root.
    pub fn name(&self) -> Option<&str> {
        self.segments.last().map(String::as_str)
    }

    /// The parent; `None` for the root.
    pub fn parent(&self) -> Option<Address> {
        let mut segments = self.segments.clone();
        segments.pop()?;
        Some(Self { segments })
    }

    /// A child named `segment`, validated like any parsed segment.
    pub fn child(&self, segment: &str) -> Result<Address, AddressError> {
        let mut segments = self.segments.clone();
        segments.push(segment.to_owned());
        let candidate = Self { segments };
        check_segment(&candidate.to_string(), candidate.depth(), segment)?;
        if candidate.depth() > MAX_DEPTH {
            return Err(AddressError::TooDeep {
                input: candidate.to_string(),
                depth: candidate.depth(),
            });
        }
        Ok(candidate)
    }

    /// The address `rel` names from here, as rules write them: `.` is this address, `a/b` (or
    /// `./a/b`) a node below it, `/x/y` an absolute address.
    pub fn resolve(&self, rel: &str) -> Result<Address, AddressError> {
        if rel.starts_with('/') {
            return Address::parse(rel);
        }
        let rel = rel.strip_prefix("./").unwrap_or(rel);
        let mut at = self.clone();
        if rel != "." {
            for segment in rel.split('/') {
                at = at.child(segment)?;
            }
        }
        Ok(at)
    }

    /// Every ancestor from the root down, then this address itself.
    pub fn lineage(&self) -> impl Iterator<Item = Address> + '_ {
        (0..=self.segments.len()).map(|n| Self {
            segments: self.segments[..n].to_vec(),
        })
    }

    /// Ancestors from the root down, not including this address.
    pub fn ancestors(&self) -> impl Iterator<Item = Address> + '_ {
        (0..self.segments.len()).map(|n| Self {
            segments: self.segments[..n].to_vec(),
        })
    }

    /// True when `self` is `other` or lies below it.
    pub fn is_within(&self, other: &Address) -> bool {
        self.segments.starts_with(&other.segments)
    }

    /// The NATS subject of this address under `prefix` (e.g. `p2.task`): one token per segment,
    /// every byte outside `[A-Za-z0-9_-]` escaped as `~XX`. The root maps to `prefix` itself.
    pub fn to_subject(&self, prefix: &str) -> String {
        let mut out = String::with_capacity(
            prefix.len() + self.segments.iter().map(|s| s.len() + 4).sum::<usize>(),
        );
        out.push_str(prefix);
        for seg in &self.segments {
            out.push('.');
            for b in seg.bytes() {
                if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("~{b:02X}"));
                }
            }
        }
        out
    }

    /// The inverse of [`Address::to_subject`].
    pub fn from_subject(prefix: &str, subject: &str) -> Result<Address, AddressError> {
        let bad = || AddressError::BadSubject {
            subject: subject.to_owned(),
            prefix: prefix.to_owned(),
        };
        let rest = subject.strip_prefix(prefix).ok_or_else(bad)?;
        if rest.is_empty() {
            return Ok(Self::root());
        }
        let rest = rest.strip_prefix('.').ok_or_else(bad)?;
        let mut text = String::with_capacity(rest.len() + 1);
        for token in rest.split('.') {
            text.push('/');
            let bytes = token.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'~' {
                    let hex = token.get(i + 1..i + 3).ok_or_else(bad)?;
                    let b = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
                    text.push(b as char);
                    i += 3;
                } else {
                    text.push(bytes[i] as char);
                    i += 1;
                }
            }
        }
        Self::parse(&text)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for seg in &self.segments {
            f.write_str("/")?;
            f.write_str(seg)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AddressVisitor;
        impl Visitor<'_> for AddressVisitor {
            type Value = Address;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an absolute address such as /sources/tali")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Address, E> {
                Address::parse(v).map_err(E::custom)
            }
            // msgpack hands over a string that is not UTF-8 as bytes.
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Address, E> {
                Address::parse_bytes(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(AddressVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_and_displays() {
        let a = Address::parse("/sources/tali/experiment2/lr=0.1").unwrap();
        assert_eq!(a.to_string(), "/sources/tali/experiment2/lr=0.1");
        assert_eq!(a.depth(), 4);
        assert_eq!(a.name(), Some("lr=0.1"));
        assert_eq!(a.parent().unwrap().to_string(), "/sources/tali/experiment2");
        assert_eq!(Address::parse("/").unwrap(), Address::root());
        assert_eq!(Address::root().to_string(), "/");
        assert!(Address::root().parent().is_none());
    }

    #[test]
    fn rejects_bad_input_with_named_reason() {
        let cases: &[(&str, &str)] = &[
            ("sources", "must start with '/'"),
            ("", "must start with '/'"),
            ("/a//b", "empty segment at position 2"),
            ("/a/", "empty segment at position 2"),
            ("/a/./b", "'.' and '..'"),
            ("/a/..", "'.' and '..'"),
            ("/a/b c", "contains ' '"),
            ("/a/b@1", "contains '@'"),
            ("/a/é", "contains 'é'"),
        ];
        for (input, want) in cases {
            let err = Address::parse(input).unwrap_err().to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
        let long = format!("/{}", "x".repeat(129));
        assert!(
            Address::parse(&long)
                .unwrap_err()
                .to_string()
                .contains("129 bytes")
        );
        assert!(Address::parse(&format!("/{}", "x".repeat(128))).is_ok());
        let deep33 = "/a".repeat(33);
        assert!(
            Address::parse(&deep33)
                .unwrap_err()
                .to_string()
                .contains("33 segments")
        );
        assert!(Address::parse(&"/a".repeat(32)).is_ok());
        assert!(
            Address::parse_bytes(b"/a/\xff")
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
    }

    #[test]
    fn lineage_and_containment() {
        let a = Address::parse("/x/y/z").unwrap();
        let lineage: Vec<String> = a.lineage().map(|a| a.to_string()).collect();
        assert_eq!(lineage, ["/", "/x", "/x/y", "/x/y/z"]);
        assert_eq!(a.ancestors().count(), 3);
        assert!(a.is_within(&Address::parse("/x").unwrap()));
        assert!(
            !Address::parse("/xy")
                .unwrap()
                .is_within(&Address::parse("/x").unwrap())
        );
        assert!(a.child("lr=0.1").is_ok());
        assert!(a.child("a/b").is_err());
    }

    #[test]
    fn subject_escapes_dots_and_equals() {
        let a = Address::parse("/a/b/lr=0.1").unwrap();
        assert_eq!(a.to_subject("p2.task"), "p2.task.a.b.lr~3D0~2E1");
        assert_eq!(Address::root().to_subject("p2.task"), "p2.task");
        assert!(Address::from_subject("p2.task", "p2.other.a").is_err());
        assert!(Address::from_subject("p2.task", "p2.task.a.~zz").is_err());
    }

    #[test]
    fn subtree_is_contiguous_in_order() {
        let mut v: Vec<Address> = ["/a-b", "/a/c", "/a", "/a/b/c", "/b", "/a.x"]
            .iter()
            .map(|s| Address::parse(s).unwrap())
            .collect();
        v.sort();
        let shown: Vec<String> = v.iter().map(|a| a.to_string()).collect();
        assert_eq!(shown, ["/a", "/a/b/c", "/a/c", "/a-b", "/a.x", "/b"]);
    }

    fn segment() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.,=+-]{1,20}".prop_filter("not . or ..", |s| s != "." && s != "..")
    }

    proptest! {
        #[test]
        fn roundtrips(segs in proptest::collection::vec(segment(), 0..8)) {
            let text = if segs.is_empty() { "/".to_owned() } else { format!("/{}", segs.join("/")) };
            let a = Address::parse(&text).unwrap();
            prop_assert_eq!(a.to_string(), text.clone());
            let subject = a.to_subject("p2.task");
            prop_assert!(subject.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-~.".contains(&b)));
            prop_assert_eq!(subject.matches('.').count(), 1 + a.depth());
            prop_assert_eq!(Address::from_subject("p2.task", &subject).unwrap(), a.clone());
            let bytes = rmp_serde::to_vec_named(&a).unwrap();
            prop_assert_eq!(rmp_serde::from_slice::<Address>(&bytes).unwrap(), a);
        }

        #[test]
        fn never_panics(s in "\\PC{0,64}") {
            let _ = Address::parse(&s);
        }
    }
}
