//! Parameter sweeps: `--sweep key=v1,v2,…` and the cartesian product of several sweeps, each
//! combination named by an address segment such as `lr=0.1,seed=2`.
//!
//! Expansion is a pure function of its input, in the order given (the first sweep varies
//! slowest), so every raft replica derives the same runs from the same request.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Address;
use crate::nodeconf::{Assignment, ConfigError, ConfigKey};

/// The most combinations one request may create.
pub const MAX_COMBINATIONS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SweepError {
    #[error("sweep {input:?} must look like key=value1,value2,… (e.g. lr=0.1,0.2)")]
    NoEquals { input: String },
    #[error("sweep {input:?}: {source}")]
    Key { input: String, source: ConfigError },
    #[error("sweep of {key} lists {value} twice")]
    DuplicateValue { key: String, value: String },
    #[error("{key} is swept twice; give all its values in one --sweep {key}=…")]
    DuplicateKey { key: String },
    #[error("the sweeps make {count} combinations; the limit is {MAX_COMBINATIONS}")]
    TooMany { count: u128 },
    #[error(
        "sweep value {value} of {key} cannot name a node ({why}); sweep values must be numbers, booleans or words of letters, digits and _ . + -"
    )]
    BadName {
        key: String,
        value: String,
        why: String,
    },
}

/// One swept key and its values (JSON when they parse as JSON, text otherwise, like `--set`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sweep {
    pub key: ConfigKey,
    pub values: Vec<Value>,
}

impl FromStr for Sweep {
    type Err = SweepError;
    fn from_str(input: &str) -> Result<Self, SweepError> {
        let (k, list) = input.split_once('=').ok_or_else(|| SweepError::NoEquals {
            input: input.to_owned(),
        })?;
        let key = ConfigKey::parse(k).map_err(|source| SweepError::Key {
            input: input.to_owned(),
            source,
        })?;
        let mut values: Vec<Value> = Vec::new();
        for text in list.split(',') {
            if text.is_empty() {
                return Err(SweepError::NoEquals {
                    input: input.to_owned(),
                });
            }
            let v = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
            if values.contains(&v) {
                return Err(SweepError::DuplicateValue {
                    key: key.to_string(),
                    value: text.to_owned(),
                });
            }
            values.push(v);
        }
        Ok(Self { key, values })
    }
}

/// One point of a sweep: the assignments it overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Combination {
    pub set: Vec<Assignment>,
}

impl Combination {
    /// The address segment naming this combination: `lr=0.1` or `lr=0.1,seed=2`.
    pub fn segment(&self) -> String {
        self.set
            .iter()
            .map(|a| format!("{}={}", a.key, value_text(&a.value)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl fmt::Display for Combination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segment())
    }
}

/// A value as it appears in a node name: strings bare, everything else as JSON.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every combination of `sweeps`, the first sweep varying slowest. Each combination's segment
/// is checked to be a valid address segment.
pub fn expand(sweeps: &[Sweep]) -> Result<Vec<Combination>, SweepError> {
    for (i, s) in sweeps.iter().enumerate() {
        if sweeps[..i].iter().any(|o| o.key == s.key) {
            return Err(SweepError::DuplicateKey {
                key: s.key.to_string(),
            });
        }
        for v in &s.values {
            let seg = format!("{}={}", s.key, value_text(v));
            if let Err(e) = Address::root().child(&seg) {
                return Err(SweepError::BadName {
                    key: s.key.to_string(),
                    value: v.to_string(),
                    why: e.to_string(),
                });
            }
        }
    }
    let count = sweeps
        .iter()
        .map(|s| s.values.len() as u128)
        .product::<u128>();
    if count > MAX_COMBINATIONS as u128 {
        return Err(SweepError::TooMany { count });
    }
    let mut out = vec![Combination { set: Vec::new() }];
    for s in sweeps {
        let mut next = Vec::with_capacity(out.len() * s.values.len());
        for c in &out {
            for v in &s.values {
                let mut set = c.set.clone();
                set.push(Assignment {
                    key: s.key.clone(),
                    value: v.clone(),
                });
                next.push(Combination { set });
            }
        }
        out = next;
    }
    if sweeps.is_empty() {
        out.clear();
    }
    // The whole segment must fit too (each part was checked alone).
    for c in &out {
        let seg = c.segment();
        if let Err(e) = Address::root().child(&seg) {
            return Err(SweepError::BadName {
                key: c
                    .set
                    .iter()
                    .map(|a| a.key.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                value: seg,
                why: e.to_string(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweeps(list: &[&str]) -> Vec<Sweep> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn cartesian_product_in_order_with_segments() {
        let c = expand(&sweeps(&["lr=0.1,0.2,0.15", "seed=1,2"])).unwrap();
        let names: Vec<String> = c.iter().map(Combination::segment).collect();
        assert_eq!(
            names,
            [
                "lr=0.1,seed=1",
                "lr=0.1,seed=2",
                "lr=0.2,seed=1",
                "lr=0.2,seed=2",
                "lr=0.15,seed=1",
                "lr=0.15,seed=2"
            ]
        );
        assert_eq!(c[3].set[0].value, serde_json::json!(0.2));
        assert_eq!(c[3].set[1].value, serde_json::json!(2));
        let words = expand(&sweeps(&["opt=adam,sgd"])).unwrap();
        assert_eq!(words[1].set[0].value, serde_json::json!("sgd"));
        assert_eq!(words[1].segment(), "opt=sgd");
        assert!(expand(&[]).unwrap().is_empty());
    }

    #[test]
    fn bad_sweeps_say_what_to_fix() {
        for (input, why) in [
            ("lr", "must look like key=value1"),
            ("lr=0.1,,0.2", "must look like"),
            ("lr=0.1,0.1", "twice"),
            ("=1", "sweep \"=1\""),
        ] {
            let e = input.parse::<Sweep>().unwrap_err().to_string();
            assert!(e.contains(why), "{input}: {e}");
        }
        let e = expand(&sweeps(&["lr=1", "lr=2"])).unwrap_err().to_string();
        assert!(e.contains("swept twice"), "{e}");
        let e = expand(&sweeps(&["name=a b"])).unwrap_err().to_string();
        assert!(e.contains("cannot name a node"), "{e}");
        let big: Vec<String> = (0..400).map(|i| i.to_string()).collect();
        let s = format!("a={}", big.join(","));
        let t = format!("b={}", big.join(","));
        let e = expand(&sweeps(&[&s, &t])).unwrap_err().to_string();
        assert!(e.contains("160000 combinations"), "{e}");
    }
}
