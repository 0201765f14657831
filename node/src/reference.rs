//! `ADDR[@V|@latest][:path]`: one bundle version of a node, and optionally one file in it.
//!
//! Addresses cannot contain `@` or `:`, so the split is unambiguous.

use std::fmt;
use std::str::FromStr;

use crate::Address;
use crate::address::AddressError;
use crate::bundle::{BundleError, BundlePath};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error(
        "version {text:?} in {input:?} is not a version: write @1, @2, … or @latest after the address"
    )]
    BadVersion { input: String, text: String },
    #[error("{input:?}: {source}")]
    Path { input: String, source: BundleError },
}

/// Which version of a node's bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    #[default]
    Latest,
    Number(u64),
}

impl Version {
    /// The number to ask the registry for; `None` means the latest.
    pub fn number(self) -> Option<u64> {
        match self {
            Version::Latest => None,
            Version::Number(n) => Some(n),
        }
    }
}

/// A parsed `ADDR[@V][:path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReference {
    pub addr: Address,
    pub version: Version,
    pub path: Option<BundlePath>,
}

impl FromStr for BundleReference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, ReferenceError> {
        let (left, path) = match input.split_once(':') {
            Some((l, p)) => (
                l,
                Some(BundlePath::parse(p).map_err(|source| ReferenceError::Path {
                    input: input.to_owned(),
                    source,
                })?),
            ),
            None => (input, None),
        };
        let (addr, version) = match left.split_once('@') {
            None => (left, Version::Latest),
            Some((a, "latest")) => (a, Version::Latest),
            Some((a, v)) => match v.parse::<u64>() {
                Ok(n) if n >= 1 => (a, Version::Number(n)),
                _ => {
                    return Err(ReferenceError::BadVersion {
                        input: input.to_owned(),
                        text: v.to_owned(),
                    });
                }
            },
        };
        Ok(Self {
            addr: Address::parse(addr)?,
            version,
            path,
        })
    }
}

impl fmt::Display for BundleReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        match self.version {
            Version::Latest => f.write_str("@latest")?,
            Version::Number(n) => write!(f, "@{n}")?,
        }
        if let Some(p) = &self.path {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions_and_paths() {
        let r: BundleReference = "/sources/tali/experiment2@1".parse().unwrap();
        assert_eq!(r.addr.to_string(), "/sources/tali/experiment2");
        assert_eq!((r.version, r.path), (Version::Number(1), None));
        let r: BundleReference = "/e/x@latest:output_data/weights.csv".parse().unwrap();
        assert_eq!(r.version, Version::Latest);
        assert_eq!(r.path.unwrap().as_str(), "output_data/weights.csv");
        let r: BundleReference = "/e/lr=0.15".parse().unwrap();
        assert_eq!((r.version, r.path), (Version::Latest, None));
        assert_eq!(
            "/e/x:a.csv".parse::<BundleReference>().unwrap().to_string(),
            "/e/x@latest:a.csv"
        );
        for (bad, why) in [
            ("/e/x@0", "not a version"),
            ("/e/x@first", "not a version"),
            ("/e/x@1:../etc", "inside the bundle"),
            ("e/x@1", "must start with '/'"),
        ] {
            let e = bad.parse::<BundleReference>().unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
