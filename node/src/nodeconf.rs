//! A node's configuration: dotted keys (`model.depth`), values, and the inheritance merge.
//!
//! Configuration is a JSON object. `a.b.c=v` writes into nested objects; the effective config
//! of a node is the deep merge of its ancestors' own configs from `/` down, the child winning.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Address;

/// Largest accepted value, as JSON text.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
const MAX_KEY_PARTS: usize = 16;
const MAX_KEY_PART_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("config key {key:?}: {why}")]
    BadKey { key: String, why: &'static str },
    #[error("config setting {input:?} has no '=': write it as key=value, e.g. lr=0.1")]
    NoEquals { input: String },
    #[error(
        "config value for {key} is {bytes} bytes; the limit is {MAX_VALUE_BYTES} bytes (store large data in a bundle)"
    )]
    ValueTooLarge { key: String, bytes: usize },
    #[error(
        "cannot set {key}: {prefix} is a {kind}, not an object; set {prefix} itself to an object first"
    )]
    NotAnObject {
        key: String,
        prefix: String,
        kind: &'static str,
    },
}

/// A validated dotted key: 1–16 parts of `[A-Za-z0-9_+-]`, each 1–128 bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigKey(Vec<String>);

impl ConfigKey {
    pub fn parse(input: &str) -> Result<Self, ConfigError> {
        let bad = |why| ConfigError::BadKey {
            key: input.to_owned(),
            why,
        };
        if input.is_empty() {
            return Err(bad("the key is empty"));
        }
        let parts: Vec<String> = input.split('.').map(str::to_owned).collect();
        if parts.len() > MAX_KEY_PARTS {
            return Err(bad("more than 16 dotted parts"));
        }
        for p in &parts {
            if p.is_empty() {
                return Err(bad("empty part between dots"));
            }
            if p.len() > MAX_KEY_PART_LEN {
                return Err(bad("a part is longer than 128 bytes"));
            }
            if !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
            {
                return Err(bad("parts may only use letters, digits and _ - +"));
            }
        }
        Ok(Self(parts))
    }

    pub fn parts(&self) -> &[String] {
        &self.0
    }
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

impl fmt::Debug for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfigKey({self})")
    }
}

impl FromStr for ConfigKey {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Self::parse(s)
    }
}

crate::serde_as_text!(ConfigKey);

/// `key=value`: the value is JSON when it parses as JSON, plain text otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub key: ConfigKey,
    pub value: Value,
}

impl Assignment {
    pub fn new(key: ConfigKey, value: Value) -> Result<Self, ConfigError> {
        let a = Self { key, value };
        a.check_size()?;
        Ok(a)
    }

    /// Rejects values over [`MAX_VALUE_BYTES`]; the server calls this on every received value.
    pub fn check_size(&self) -> Result<(), ConfigError> {
        let bytes = json_len(&self.value);
        if bytes > MAX_VALUE_BYTES {
            return Err(ConfigError::ValueTooLarge {
                key: self.key.to_string(),
                bytes,
            });
        }
        Ok(())
    }
}

fn json_len(v: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Counter(0);
    // Writing a Value to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

impl FromStr for Assignment {
    type Err = ConfigError;
    fn from_str(input: &str) -> Result<Self, ConfigError> {
        let (k, v) = input.split_once('=').ok_or_else(|| ConfigError::NoEquals {
            input: input.to_owned(),
        })?;
        let key = ConfigKey::parse(k)?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        Self::new(key, value)
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Writes `a` into `config`, creating intermediate objects. Fails (leaving `config` unchanged)
/// when an intermediate key holds a non-object.
/// The config key that switches rules off and on (`rules.<name>=off`): config, not a param, so
/// it is not handed to tasks and does not change their runs' fingerprints.
pub const RULES_KEY: &str = "rules";

pub fn assign(config: &mut Map<String, Value>, a: &Assignment) -> Result<(), ConfigError> {
    let parts = a.key.parts();
    let (last, path) = parts.split_last().ok_or_else(|| ConfigError::BadKey {
        key: String::new(),
        why: "the key is empty",
    })?;
    // Check first so a failure leaves nothing half-written.
    let mut probe = &*config;
    for (i, p) in path.iter().enumerate() {
        match probe.get(p) {
            None => break,
            Some(Value::Object(m)) => probe = m,
            Some(other) => {
                return Err(ConfigError::NotAnObject {
                    key: a.key.to_string(),
                    prefix: parts[..=i].join("."),
                    kind: kind_of(other),
                });
            }
        }
    }
    let mut cur = config;
    for p in path {
        let slot = cur
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        cur = match slot {
            Value::Object(m) => m,
            // Checked above.
            _ => unreachable!("intermediate config key checked to be an object"),
        };
    }
    cur.insert(last.clone(), a.value.clone());
    Ok(())
}

/// The effective config of a node and, for every leaf, the address whose own config set it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Effective {
    pub config: Map<String, Value>,
    /// dotted leaf key → address it came from
    pub from: BTreeMap<String, Address>,
}

impl Effective {
    /// Merges `own` (the config of `addr`) over what is there; call from the root down.
    pub fn overlay(&mut self, addr: &Address, own: &Map<String, Value>) {
        merge_into(&mut self.config, &mut self.from, own, addr, "");
    }
}

fn merge_into(
    dst: &mut Map<String, Value>,
    from: &mut BTreeMap<String, Address>,
    src: &Map<String, Value>,
    addr: &Address,
    prefix: &str,
) {
    for (k, v) in src {
        let dotted = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match (dst.get_mut(k), v) {
            (Some(Value::Object(d)), Value::Object(s)) => merge_into(d, from, s, addr, &dotted),
            _ => {
                // A replaced subtree's old leaves no longer come from anywhere.
                let below = format!("{dotted}.");
                from.retain(|key, _| key != &dotted && !key.starts_with(&below));
                record_leaves(from, v, addr, &dotted);
                dst.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Every leaf of `config` by its dotted key (`{"model": {"depth": 3}}` → `model.depth`).
pub fn leaves(config: &Map<String, Value>) -> BTreeMap<String, Value> {
    fn walk(out: &mut BTreeMap<String, Value>, v: &Value, dotted: String) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, v) in m {
                    walk(out, v, format!("{dotted}.{k}"));
                }
            }
            _ => {
                out.insert(dotted, v.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    for (k, v) in config {
        walk(&mut out, v, k.clone());
    }
    out
}

fn record_leaves(from: &mut BTreeMap<String, Address>, v: &Value, addr: &Address, dotted: &str) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                record_leaves(from, v, addr, &format!("{dotted}.{k}"));
            }
        }
        _ => {
            from.insert(dotted.to_owned(), addr.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(m: &mut Map<String, Value>, s: &str) {
        assign(m, &s.parse().unwrap()).unwrap();
    }

    #[test]
    fn values_are_json_or_text() {
        let a: Assignment = "a.b=3".parse().unwrap();
        assert_eq!(a.value, json!(3));
        let a: Assignment = r#"tags=["x"]"#.parse().unwrap();
        assert_eq!(a.value, json!(["x"]));
        let a: Assignment = "optimizer=adam".parse().unwrap();
        assert_eq!(a.value, json!("adam"));
        let a: Assignment = "note=a=b".parse().unwrap();
        assert_eq!(a.value, json!("a=b"));
        assert!(
            "noequals"
                .parse::<Assignment>()
                .unwrap_err()
                .to_string()
                .contains("no '='")
        );
        assert!(
            "a..b=1"
                .parse::<Assignment>()
                .unwrap_err()
                .to_string()
                .contains("empty part")
        );
        assert!(
            "=1".parse::<Assignment>()
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        let big = format!("k={}", "x".repeat(MAX_VALUE_BYTES + 1));
        assert!(
            big.parse::<Assignment>()
                .unwrap_err()
                .to_string()
                .contains("limit")
        );
    }

    #[test]
    fn dotted_assign_nests_and_refuses_scalars() {
        let mut m = Map::new();
        set(&mut m, "model.depth=3");
        set(&mut m, "model.width=8");
        assert_eq!(
            Value::Object(m.clone()),
            json!({"model": {"depth": 3, "width": 8}})
        );
        let before = m.clone();
        let err = assign(&mut m, &"model.depth.x=1".parse().unwrap()).unwrap_err();
        assert!(err.to_string().contains("model.depth is a number"), "{err}");
        assert_eq!(m, before);
    }

    #[test]
    fn effective_merges_child_wins_with_sources() {
        let root = Address::root();
        let parent = Address::parse("/e2").unwrap();
        let child = Address::parse("/e2/a").unwrap();
        let mut p = Map::new();
        set(&mut p, "lr=0.1");
        set(&mut p, "model.depth=3");
        set(&mut p, "optimizer=adam");
        let mut c = Map::new();
        set(&mut c, "lr=0.2");
        let mut eff = Effective::default();
        eff.overlay(&root, &Map::new());
        eff.overlay(&parent, &p);
        eff.overlay(&child, &c);
        assert_eq!(
            Value::Object(eff.config.clone()),
            json!({"lr": 0.2, "model": {"depth": 3}, "optimizer": "adam"})
        );
        assert_eq!(eff.from["lr"], child);
        assert_eq!(eff.from["model.depth"], parent);
        assert_eq!(eff.from["optimizer"], parent);

        // A child replacing an object with a scalar drops the parent's leaves under it.
        let mut c2 = Map::new();
        set(&mut c2, "model=small");
        let mut eff2 = Effective::default();
        eff2.overlay(&parent, &p);
        eff2.overlay(&child, &c2);
        assert_eq!(eff2.from["model"], child);
        assert!(!eff2.from.contains_key("model.depth"));
    }
}
