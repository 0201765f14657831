//! A task's named inputs: patterns over the bundle versions of its node and the nodes below,
//! and over the files in them. The coordinator picks the bundle versions when it creates a
//! run (so the run's fingerprint holds exactly what it reads); the worker matches the files.
//!
//! ```text
//! bundles/*:metrics.csv             every version of every bundle at the node and below
//! bundles/latest:**/metrics.csv     the newest version of each of those nodes
//! sweep-*/*@latest:embedding.npy    nodes matching a relative glob, at a version
//! .@3:data/*.csv                    the node itself, version 3
//! ```
//! `NODES[@VERSIONS]:FILES`: `NODES` is a [`Glob`] over addresses relative to the run's node
//! (`.` is the node itself, `**` any depth below it, the node included); `VERSIONS` is `*`
//! (every version), `latest` (the default) or a number; `FILES` is a [`Glob`] over paths in
//! the bundle (it may hold `:`, addresses cannot). `bundles/VERSIONS` is the whole subtree: the
//! node and every node below it but `meta/` (where reports are handed off). A
//! child that is itself named `bundles` is reached as `./bundles`.

use std::fmt;
use std::str::FromStr;

use crate::glob::{Glob, GlobError};

/// The child of a node that holds what runs derived there (`meta/reports`), which
/// `bundles/...` leaves out.
pub const META: &str = "meta";

/// Which versions of a matched node a pattern takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Versions {
    /// Every version.
    All,
    /// The newest version.
    Latest,
    /// That version, where the node has it.
    Number(u64),
}

/// Which nodes a pattern takes, relative to the run's node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Nodes {
    /// The node itself.
    Itself,
    /// The node and every node below it.
    Subtree,
    /// Nodes whose address relative to the run's node matches.
    Matching(Glob),
}

/// A checked input pattern.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct InputPattern {
    text: String,
    /// The nodes it reads.
    pub nodes: Nodes,
    /// Their versions.
    pub versions: Versions,
    /// The files it reads in each.
    pub files: Glob,
}

/// Why an input pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputPatternError {
    /// No `:` between the bundles and the files.
    #[error("{0:?} names no files; write NODES[@VERSION]:FILES, e.g. \"bundles/*:metrics.csv\"")]
    NoFiles(String),
    /// The version part is not `*`, `latest` or a number.
    #[error("{0:?} is not a version; write *, latest or a number such as 3")]
    Version(String),
    /// The node part is not a relative glob.
    #[error("the nodes {nodes:?}: {cause}")]
    Nodes {
        /// As written.
        nodes: String,
        /// What is wrong with it.
        cause: GlobError,
    },
    /// The file part is not a relative glob.
    #[error("the files {files:?}: {cause}")]
    Files {
        /// As written.
        files: String,
        /// What is wrong with it.
        cause: GlobError,
    },
}

impl InputPattern {
    /// Parses and checks a pattern.
    pub fn parse(text: &str) -> Result<InputPattern, InputPatternError> {
        let (scope, files_text) = text
            .split_once(':')
            .ok_or_else(|| InputPatternError::NoFiles(text.to_owned()))?;
        let files = Glob::parse(files_text).map_err(|cause| InputPatternError::Files {
            files: files_text.to_owned(),
            cause,
        })?;
        let (nodes, versions) = if let Some(v) = scope
            .strip_prefix("bundles/")
            .or((scope == "bundles").then_some("*"))
        {
            (Nodes::Subtree, parse_versions(v)?)
        } else {
            let (nodes, versions) = match scope.split_once('@') {
                Some((n, v)) => (n, parse_versions(v)?),
                None => (scope, Versions::Latest),
            };
            let nodes = nodes.strip_prefix("./").unwrap_or(nodes);
            let nodes = match nodes {
                "" | "." => Nodes::Itself,
                n => Nodes::Matching(Glob::parse(n).map_err(|cause| InputPatternError::Nodes {
                    nodes: n.to_owned(),
                    cause,
                })?),
            };
            (nodes, versions)
        };
        Ok(InputPattern {
            text: text.to_owned(),
            nodes,
            versions,
            files,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether a node at `relative` (its segments below the run's node; none for the node
    /// itself) is one this pattern reads.
    pub fn takes_node(&self, relative: &[&str]) -> bool {
        match &self.nodes {
            Nodes::Itself => relative.is_empty(),
            // `meta/` is where runs hand their reports off: what was derived from the data,
            // not data. A pattern that names it (`meta/reports@*:...`) still reads it.
            Nodes::Subtree => relative.first() != Some(&META),
            Nodes::Matching(g) => g.matches_segments(relative),
        }
    }
}

fn parse_versions(v: &str) -> Result<Versions, InputPatternError> {
    match v {
        "*" => Ok(Versions::All),
        "latest" => Ok(Versions::Latest),
        n => match n.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Versions::Number(n)),
            _ => Err(InputPatternError::Version(v.to_owned())),
        },
    }
}

impl fmt::Display for InputPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for InputPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl FromStr for InputPattern {
    type Err = InputPatternError;
    fn from_str(s: &str) -> Result<Self, InputPatternError> {
        InputPattern::parse(s)
    }
}

crate::serde_as_text!(InputPattern);

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> InputPattern {
        InputPattern::parse(text).unwrap()
    }

    #[test]
    fn the_issue_s_patterns_read_as_meant() {
        let metrics = p("bundles/*:metrics.csv");
        assert_eq!(metrics.nodes, Nodes::Subtree);
        assert_eq!(metrics.versions, Versions::All);
        assert!(metrics.files.matches("metrics.csv"));
        assert!(metrics.takes_node(&[]) && metrics.takes_node(&["sweep-1", "lr=0.1"]));
        // What runs handed off below meta/ is not data; a pattern naming it reads it.
        assert!(!metrics.takes_node(&["meta", "reports"]));
        assert!(
            InputPattern::parse("meta/*@*:matrix.csv")
                .unwrap()
                .takes_node(&["meta", "reports"])
        );

        let emb = p("sweep-*/*@latest:embedding.npy");
        assert_eq!(emb.versions, Versions::Latest);
        assert!(emb.takes_node(&["sweep-2", "lr=0.1"]));
        assert!(!emb.takes_node(&["sweep-2"]));
        assert!(!emb.takes_node(&[]));

        let own = p(".@3:data/*.csv");
        assert_eq!(
            (own.nodes.clone(), own.versions),
            (Nodes::Itself, Versions::Number(3))
        );
        assert_eq!(p(":x.csv").nodes, Nodes::Itself);
    }

    #[test]
    fn a_child_named_bundles_is_reached_with_dot_slash() {
        let q = p("./bundles@latest:a.csv");
        assert!(q.takes_node(&["bundles"]) && !q.takes_node(&[]));
        assert_eq!(p("bundles:a.csv").versions, Versions::All);
    }

    #[test]
    fn bad_patterns_say_what_to_write() {
        let e = InputPattern::parse("bundles/*").unwrap_err();
        assert!(matches!(e, InputPatternError::NoFiles(_)), "{e}");
        let e = InputPattern::parse("bundles/newest:a.csv").unwrap_err();
        assert!(e.to_string().contains("*, latest or a number"), "{e}");
        let e = InputPattern::parse("sweep-*@0:a.csv").unwrap_err();
        assert!(matches!(e, InputPatternError::Version(_)), "{e}");
        let e = InputPattern::parse("/abs:a.csv").unwrap_err();
        assert!(e.to_string().contains("the nodes \"/abs\""), "{e}");
        let e = InputPattern::parse(".:../a.csv").unwrap_err();
        assert!(e.to_string().contains("the files"), "{e}");
    }
}
