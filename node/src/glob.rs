//! Globs over `/`-separated paths, for task inputs: which nodes below a node, and which files
//! in a bundle. `*` matches any run of characters and `?` one character, both within one
//! segment; a segment that is exactly `**` matches any number of segments, none included.
//! There are no character classes or braces: names in addresses and bundles are plain enough
//! that a literal is always written as itself.

use std::fmt;
use std::str::FromStr;

/// A checked glob.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Glob {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Segment {
    /// `**`: any number of segments.
    Any,
    /// One segment, possibly with `*` and `?`.
    One(Vec<char>),
}

/// Why a glob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    /// Nothing to match with.
    #[error("the pattern is empty")]
    Empty,
    /// A leading `/`: globs are relative.
    #[error("{0:?} is absolute; write it relative (no leading '/')")]
    Absolute(String),
    /// An empty segment (`a//b`, a trailing `/`), `.` or `..`.
    #[error("{0:?} has an empty, '.' or '..' segment; write each segment as a name or a glob")]
    BadSegment(String),
    /// `**` inside a segment (`a**`), where it would only mean `*`.
    #[error(
        "{0:?} uses '**' inside a segment; '**' stands alone between slashes (a/**/b), use '*' within one"
    )]
    StarStar(String),
}

impl Glob {
    /// Parses and checks a glob.
    pub fn parse(text: &str) -> Result<Glob, GlobError> {
        if text.is_empty() {
            return Err(GlobError::Empty);
        }
        if text.starts_with('/') {
            return Err(GlobError::Absolute(text.to_owned()));
        }
        let mut segments = Vec::new();
        for s in text.split('/') {
            match s {
                "" | "." | ".." => return Err(GlobError::BadSegment(text.to_owned())),
                "**" => {
                    // `**/**` means the same as `**`, and matching stays linear.
                    if segments.last() != Some(&Segment::Any) {
                        segments.push(Segment::Any);
                    }
                }
                s if s.contains("**") => return Err(GlobError::StarStar(text.to_owned())),
                s => segments.push(Segment::One(s.chars().collect())),
            }
        }
        Ok(Glob {
            text: text.to_owned(),
            segments,
        })
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` (segments separated by `/`) matches the whole glob.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').collect()
        };
        self.matches_segments(&parts)
    }

    /// Whether the segments match the whole glob.
    pub fn matches_segments(&self, parts: &[&str]) -> bool {
        // The classic two-pointer walk with one backtrack point, at the segment level: on a
        // mismatch the last `**` takes one more segment. Linear in practice, never exponential.
        let (pats, mut p, mut s) = (&self.segments, 0usize, 0usize);
        let mut back: Option<(usize, usize)> = None;
        while s < parts.len() {
            match pats.get(p) {
                Some(Segment::Any) => {
                    back = Some((p, s));
                    p += 1;
                }
                Some(Segment::One(pat)) if segment_matches(pat, parts[s]) => {
                    p += 1;
                    s += 1;
                }
                _ => match back {
                    Some((bp, bs)) => {
                        back = Some((bp, bs + 1));
                        p = bp + 1;
                        s = bs + 1;
                    }
                    None => return false,
                },
            }
        }
        pats[p..].iter().all(|x| *x == Segment::Any)
    }
}

/// `*` and `?` within one segment, by the same walk over characters.
fn segment_matches(pat: &[char], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0usize, 0usize);
    let mut back: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some('*') => {
                back = Some((p, t));
                p += 1;
            }
            Some(c) if *c == '?' || *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match back {
                Some((bp, bt)) => {
                    back = Some((bp, bt + 1));
                    p = bp + 1;
                    t = bt + 1;
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|c| *c == '*')
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl FromStr for Glob {
    type Err = GlobError;
    fn from_str(s: &str) -> Result<Self, GlobError> {
        Glob::parse(s)
    }
}

crate::serde_as_text!(Glob);

#[cfg(test)]
mod tests {
    use super::*;

    fn m(glob: &str, path: &str) -> bool {
        Glob::parse(glob).unwrap().matches(path)
    }

    #[test]
    fn stars_stay_in_their_segment_and_double_stars_cross() {
        assert!(m("metrics.csv", "metrics.csv"));
        assert!(!m("metrics.csv", "out/metrics.csv"));
        assert!(m("*.csv", "metrics.csv"));
        assert!(!m("*.csv", "out/metrics.csv"));
        assert!(
            m("**/metrics.csv", "metrics.csv"),
            "** takes no segment too"
        );
        assert!(m("**/metrics.csv", "a/b/metrics.csv"));
        assert!(m("sweep-*/*", "sweep-1/lr=0.1"));
        assert!(!m("sweep-*/*", "sweep-1"));
        assert!(!m("sweep-*/*", "sweep-1/lr=0.1/x"));
        assert!(m("a/**", "a"), "a trailing ** takes nothing too");
        assert!(m("a/**", "a/b/c"));
        assert!(m("**", ""));
        assert!(m("a/**/b/**/c", "a/x/b/y/z/c"));
        assert!(!m("a/**/b/**/c", "a/x/c"));
        assert!(m("r?n-*.npy", "run-7.npy"));
        assert!(!m("r?n-*.npy", "rn-7.npy"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("*a*b*", "xxbxxaxx"));
        assert!(m("lr=0.1*", "lr=0.15"));
    }

    #[test]
    fn bad_globs_say_what_to_write() {
        assert_eq!(Glob::parse(""), Err(GlobError::Empty));
        assert!(matches!(Glob::parse("/a"), Err(GlobError::Absolute(_))));
        for bad in ["a//b", "a/", "./a", "a/../b"] {
            assert!(
                matches!(Glob::parse(bad), Err(GlobError::BadSegment(_))),
                "{bad}"
            );
        }
        let e = Glob::parse("a**").unwrap_err();
        assert!(e.to_string().contains("stands alone"), "{e}");
    }
}
