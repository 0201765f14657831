//! A pipeline's steps as written in a manifest, checked against the registry.
//!
//! A step is `["op", {params}]`, `["op"]` or `"op"`. Checking refuses an unknown op, an
//! unknown param, a param of the wrong type, a missing required param, and an input no step
//! reads; each error names the step (0-based, as in the manifest's list), the op and the param.

use serde_json::{Map, Value};

use super::registry;
use super::spec::OpSpec;

/// A checked step: the op it names and the params it gives.
#[derive(Debug, Clone)]
pub struct Step {
    /// Its place in the pipeline, from 0.
    pub index: usize,
    /// The op.
    pub op: &'static OpSpec,
    /// The params given (each checked for its type).
    pub params: Map<String, Value>,
}

/// Why a pipeline's steps were refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("step {index} ({op}){}: {what}", param.as_ref().map(|p| format!(", param {p:?}")).unwrap_or_default())]
pub struct StepError {
    /// The step, from 0.
    pub index: usize,
    /// The op it names (as written).
    pub op: String,
    /// The param at fault, if one is.
    pub param: Option<String>,
    /// What is wrong and what was expected.
    pub what: String,
}

/// Checks `steps` (the manifest's list) against the registry. `inputs` are the names the task
/// declares: every one must be read by some step's `from` (or by a first `access` without
/// one, when there is exactly one input).
pub fn check(steps: &[Value], inputs: &[&str]) -> Result<Vec<Step>, StepError> {
    let mut out = Vec::with_capacity(steps.len());
    for (index, raw) in steps.iter().enumerate() {
        out.push(check_step(index, raw)?);
    }
    let reads = |name: &str| {
        out.iter().any(|s| {
            s.op.name == "access"
                && match s.params.get("from").and_then(Value::as_str) {
                    Some(from) => from == name,
                    None => inputs.len() == 1,
                }
        })
    };
    if let Some(unread) = inputs.iter().find(|i| !reads(i)) {
        let index = out.len().saturating_sub(1);
        return Err(StepError {
            index,
            op: out.last().map_or("none", |s| s.op.name).to_owned(),
            param: None,
            what: format!(
                "no step reads the input {unread:?}: add [\"access\", {{\"from\": \"{unread}\"}}] or remove the input"
            ),
        });
    }
    Ok(out)
}

fn check_step(index: usize, raw: &Value) -> Result<Step, StepError> {
    let fail = |op: &str, param: Option<&str>, what: String| StepError {
        index,
        op: op.to_owned(),
        param: param.map(str::to_owned),
        what,
    };
    let (name, params) = match raw {
        Value::String(s) => (s.as_str(), None),
        Value::Array(a) => match a.as_slice() {
            [Value::String(s)] => (s.as_str(), None),
            [Value::String(s), p] => (s.as_str(), Some(p)),
            _ => ("", None),
        },
        _ => ("", None),
    };
    if name.is_empty() {
        return Err(fail(
            "?",
            None,
            "a step is [\"op\", {params}], [\"op\"] or \"op\"".to_owned(),
        ));
    }
    let op = registry::lookup(name).ok_or_else(|| {
        let known: Vec<&str> = registry::ops().iter().map(|o| o.name).collect();
        fail(
            name,
            None,
            format!("no such op; the ops are {}", known.join(", ")),
        )
    })?;
    let params = match params {
        None => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(fail(name, None, "its params must be an object".to_owned())),
    };
    for (k, v) in &params {
        let spec = op.param(k).ok_or_else(|| {
            let known: Vec<&str> = op.params.iter().map(|p| p.name).collect();
            fail(
                name,
                Some(k),
                if known.is_empty() {
                    format!("{} takes no params", op.name)
                } else {
                    format!(
                        "{} has no such param; it takes {}",
                        op.name,
                        known.join(", ")
                    )
                },
            )
        })?;
        if !spec.ty.accepts(v) {
            return Err(fail(
                name,
                Some(k),
                format!("expected {}, got {v}", spec.ty.expected()),
            ));
        }
    }
    if let Some(missing) = op
        .params
        .iter()
        .find(|p| p.required && !params.contains_key(p.name))
    {
        return Err(fail(
            name,
            Some(missing.name),
            format!("required: {}", missing.ty.expected()),
        ));
    }
    Ok(Step { index, op, params })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn steps(v: Value) -> Vec<Value> {
        v.as_array().unwrap().clone()
    }

    #[test]
    fn steps_with_and_without_params_check() {
        let s = check(
            &steps(
                json!([["access", {"from": "metrics", "columns": ["step", "reward"]}],
                          ["label", {"by": "bundle"}], "mean",
                          ["matrix", {"metrics": ["reward"], "reduce": ["last", "max"]}]]),
            ),
            &["metrics"],
        )
        .unwrap();
        assert_eq!(s.len(), 4);
        assert_eq!(s[2].op.name, "mean");
        assert!(check(&steps(json!([["access"], ["label"]])), &["emb"]).is_ok());
    }

    #[test]
    fn each_refusal_names_step_op_and_param() {
        let e = |v: Value, inputs: &[&str]| check(&steps(v), inputs).unwrap_err().to_string();
        assert!(
            e(json!(["access", "plott"]), &[])
                .starts_with("step 1 (plott): no such op; the ops are access, label,"),
        );
        assert_eq!(
            e(json!([["matrix", {"reduce": ["last", "maxx"]}]]), &[]),
            "step 0 (matrix), param \"reduce\": expected one or a list of mean, median, mode, stddev, product, l1norm, l2norm, min, max, first, last, sum, count, got [\"last\",\"maxx\"]"
        );
        assert_eq!(
            e(json!([["label", {"bye": "x"}]]), &[]),
            "step 0 (label), param \"bye\": label has no such param; it takes by"
        );
        assert_eq!(
            e(json!([["access", {"from": "a"}]]), &["a", "b"]),
            "step 0 (access): no step reads the input \"b\": add [\"access\", {\"from\": \"b\"}] or remove the input"
        );
        assert_eq!(
            e(json!([["label", 3]]), &[]),
            "step 0 (label): its params must be an object"
        );
    }
}
