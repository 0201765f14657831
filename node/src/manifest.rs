//! Bundle manifest, version 1: types and validation.
//!
//! [`Manifest::from_json`] is the one way to read a manifest. Every rejection names the field
//! (as a dotted path such as `contains.package.tasks.train.kind`) and says what to write instead.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Address;
use crate::glob::Glob;
use crate::inputs::InputPattern;

/// The manifest version this build reads and writes.
pub const MANIFEST_VERSION: u64 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest.json is not valid JSON: {0}")]
    Json(String),
    #[error("manifest.json must be a JSON object")]
    NotAnObject,
    #[error("manifest.json has no manifest_version: add \"manifest_version\": {MANIFEST_VERSION}")]
    MissingVersion,
    #[error(
        "manifest_version {0} is not supported: this plotter2 reads version {MANIFEST_VERSION}"
    )]
    UnknownVersion(String),
    #[error("manifest field {field}: {message}")]
    Field { field: String, message: String },
}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// A validated v1 manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub manifest_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default)]
    pub meta: Meta,
    #[serde(default)]
    pub contains: Contains,
}

/// Free-form metadata; `address` says where the bundle goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contains {
    /// Glob patterns, relative to the bundle root; `None` means every file but the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<Package>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    #[serde(default)]
    pub config: Map<String, Value>,
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskDef>,
    /// The node's rules: a package that states them replaces those of the node's earlier
    /// packages; one that does not keeps them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<Vec<Rule>>,
    #[serde(default)]
    pub links: Vec<Map<String, Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Command,
    Pipeline,
    Script,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDef {
    pub kind: TaskKind,
    /// argv for `command`.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub run: Value,
    /// Named inputs (see [`crate::inputs`]): what a `pipeline` reads.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, InputPattern>,
    /// A `pipeline`'s steps: `["op", {params}]` or `"op"` each (datter checks them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<Value>>,
    #[serde(default)]
    pub params: Map<String, Value>,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<DurationText>,
    #[serde(default)]
    pub retries: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The most memory a pipeline may use (`512MiB`, `2GiB`): an input file larger than this
    /// fails the run before it is read, and the process cannot allocate past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<SizeText>,
}

/// A size written as text: `512MiB`, `2GiB`, `100MB`, `4096` (bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SizeText(pub u64);

impl SizeText {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a size; write e.g. 512MiB, 2GiB or 100MB");
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let n: u64 = t[..split].parse().map_err(|_| bad())?;
        let unit: u64 = match t[split..].trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "MB" => 1000 * 1000,
            "GB" => 1000 * 1000 * 1000,
            "KiB" | "K" => 1 << 10,
            "MiB" | "M" => 1 << 20,
            "GiB" | "G" => 1 << 30,
            _ => return Err(bad()),
        };
        n.checked_mul(unit)
            .filter(|b| *b > 0)
            .map(Self)
            .ok_or_else(bad)
    }
}

impl fmt::Debug for SizeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self)
    }
}

impl fmt::Display for SizeText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b if b % (1 << 30) == 0 => write!(f, "{}GiB", b >> 30),
            b if b % (1 << 20) == 0 => write!(f, "{}MiB", b >> 20),
            b => write!(f, "{b}B"),
        }
    }
}

impl FromStr for SizeText {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

crate::serde_as_text!(SizeText);

/// A standing rule: when something happens under a subtree, run a task.
///
/// ```json
/// {"on": "bundle", "under": ".", "match": "**/metrics.csv", "run": "reward_report"}
/// {"on": "run_succeeded", "task": "train", "run": "compare", "at": "."}
/// {"on": "schedule", "every": "1h", "run": "nightly"}
/// ```
/// A rule is in force at the node whose package defines it and below; a deeper package's rule
/// of the same name replaces it there, and a node's config `rules.<name>=off` switches it off
/// for that node's subtree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// What names it (in `rules`, `explain` and `rules.<name>=off`); the task it runs when
    /// not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub on: RuleTrigger,
    /// The subtree it watches: `.` (the defining node), a path below it, or an absolute
    /// address.
    #[serde(default = "dot")]
    pub under: String,
    /// For `bundle`: only bundles holding a file that matches this glob.
    #[serde(
        default,
        rename = "match",
        alias = "pattern",
        skip_serializing_if = "Option::is_none"
    )]
    pub files: Option<Glob>,
    /// For `run_succeeded` / `run_failed`: the task whose runs it watches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// For `schedule`: how often.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<DurationText>,
    /// The task to run (defined at `at` or an ancestor).
    pub run: String,
    /// Where to run it: `.` (the defining node, the default), a path below it, or an absolute
    /// address.
    #[serde(default = "dot")]
    pub at: String,
}

impl Rule {
    /// The rule's name: `name`, else the task it runs.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.run)
    }
}

/// The shortest schedule a rule may have: each firing is a request in the log.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

fn dot() -> String {
    ".".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleTrigger {
    /// A bundle version arrives under `under` (a push, an inbox drop, a run's output).
    Bundle,
    /// A run of `task` under `under` succeeds with something new.
    RunSucceeded,
    /// A run of `task` under `under` fails.
    RunFailed,
    /// Every `every`, by the leader's clock.
    Schedule,
}

/// A duration written as text: `90s`, `5m`, `2h`, `1h30m`, `250ms`, `1d`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct DurationText(pub Duration);

impl DurationText {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("{text:?} is not a duration; write e.g. 90s, 5m, 2h or 1h30m");
        let mut total = Duration::ZERO;
        let mut rest = text.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let unit = match &rest[..unit_len] {
                "ms" => Duration::from_millis(n),
                "s" => Duration::from_secs(n),
                "m" => Duration::from_secs(n.saturating_mul(60)),
                "h" => Duration::from_secs(n.saturating_mul(3600)),
                "d" => Duration::from_secs(n.saturating_mul(86400)),
                _ => return Err(bad()),
            };
            total = total.saturating_add(unit);
            rest = &rest[unit_len..];
        }
        Ok(Self(total))
    }
}

impl fmt::Debug for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self)
    }
}

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl FromStr for DurationText {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

crate::serde_as_text!(DurationText);

/// Checks a path or glob written in a manifest stays inside the bundle.
pub fn check_relative_path(field: &str, path: &str) -> Result<(), ManifestError> {
    if path.is_empty() {
        return Err(field_err(field, "empty path"));
    }
    if path.starts_with('/') || path.starts_with('\\') {
        return Err(field_err(
            field,
            format!("{path:?} is absolute; write it relative to the bundle root"),
        ));
    }
    if path.split(['/', '\\']).any(|p| p == "..") {
        return Err(field_err(
            field,
            format!("{path:?} leaves the bundle with '..'; keep paths inside it"),
        ));
    }
    Ok(())
}

impl Manifest {
    /// Parses and validates `manifest.json` bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        let obj = value.as_object().ok_or(ManifestError::NotAnObject)?;
        match obj.get("manifest_version") {
            None => return Err(ManifestError::MissingVersion),
            Some(v) if v.as_u64() == Some(MANIFEST_VERSION) => {}
            Some(v) => return Err(ManifestError::UnknownVersion(v.to_string())),
        }
        let manifest: Manifest = serde_path_to_error::deserialize(&value).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." {
                "(top level)".to_owned()
            } else {
                field
            };
            field_err(field, e.into_inner().to_string())
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks what the types alone do not (paths, task references); `from_json` calls it, and so
    /// must anyone who receives a manifest some other way.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if let Some(data) = &self.contains.data {
            for (i, p) in data.iter().enumerate() {
                check_relative_path(&format!("contains.data[{i}]"), p)?;
            }
        }
        let Some(pkg) = &self.contains.package else {
            return Ok(());
        };
        for (name, task) in &pkg.tasks {
            let f = |k: &str| format!("contains.package.tasks.{name}.{k}");
            if !is_task_name(name) {
                return Err(field_err(
                    format!("contains.package.tasks.{name:?}"),
                    "task names may only use letters, digits, _ and -",
                ));
            }
            for input in task.inputs.keys() {
                if !is_task_name(input) {
                    return Err(field_err(
                        f(&format!("inputs.{input:?}")),
                        "input names may only use letters, digits, _ and -",
                    ));
                }
            }
            if task.kind == TaskKind::Pipeline {
                let steps = task.steps.as_deref().ok_or_else(|| {
                    field_err(
                        f("steps"),
                        "a pipeline task needs its steps, e.g. [[\"access\", {\"from\": \"metrics\"}], \"label\"]",
                    )
                })?;
                let names: Vec<&str> = task.inputs.keys().map(String::as_str).collect();
                let checked = datter::pipeline::check(steps, &names).map_err(|e| {
                    let param = e
                        .param
                        .map(|p| format!(", param {p:?}"))
                        .unwrap_or_default();
                    field_err(
                        format!("{}[{}]", f("steps"), e.index),
                        format!("op {:?}{param}: {}", e.op, e.what),
                    )
                })?;
                for step in checked.iter().filter(|s| s.op.name == "handoff") {
                    if let Some(to) = step.params.get("to").and_then(Value::as_str)
                        && let Err(e) = crate::pipeline::handoff_target(&Address::root(), to)
                    {
                        return Err(field_err(
                            format!("{}[{}]", f("steps"), step.index),
                            format!(
                                "op \"handoff\", param \"to\": {to:?} is not an address below \
                                 the run's node (write it relative, e.g. \"meta/reports\"): {e}"
                            ),
                        ));
                    }
                }
            }
            if task.kind == TaskKind::Command {
                let argv = task.run.as_array().filter(|a| !a.is_empty()).ok_or_else(|| {
                    field_err(f("run"), "a command task needs a non-empty list, e.g. [\"python3\", \"train.py\"]")
                })?;
                if let Some(i) = argv.iter().position(|a| !a.is_string()) {
                    return Err(field_err(
                        format!("{}[{i}]", f("run")),
                        "every argument must be a string",
                    ));
                }
            }
            for need in &task.needs {
                if need == name {
                    return Err(field_err(f("needs"), "a task cannot need itself"));
                }
                // A need this package does not define may come from an ancestor's package: it
                // is looked up when the task is run, from the run's node upwards.
                if !is_task_name(need) {
                    return Err(field_err(
                        f("needs"),
                        format!(
                            "needs {need:?}, which is not a task name (letters, digits, _ and -)"
                        ),
                    ));
                }
            }
        }
        if let Some(cycle) = needs_cycle(&pkg.tasks) {
            return Err(field_err(
                format!("contains.package.tasks.{}.needs", cycle[0]),
                format!(
                    "the needs form a cycle ({}); a task cannot wait for itself",
                    cycle.join(" → ")
                ),
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, rule) in pkg.rules.iter().flatten().enumerate() {
            let f = |k: &str| format!("contains.package.rules[{i}].{k}");
            check_rule(rule, &f)?;
            if !names.insert(rule.name()) {
                return Err(field_err(
                    f("name"),
                    format!(
                        "two rules are named {:?}; give one a \"name\" of its own",
                        rule.name()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// What the types alone do not say about one rule; `f` names its fields.
fn check_rule(rule: &Rule, f: &dyn Fn(&str) -> String) -> Result<(), ManifestError> {
    for (key, value) in [("under", &rule.under), ("at", &rule.at)] {
        if Address::root().resolve(value).is_err() {
            return Err(field_err(
                f(key),
                format!(
                    "{value:?} is not \".\", a path below the rule's node (e.g. \"meta\") or an \
                     absolute address"
                ),
            ));
        }
    }
    if !is_task_name(&rule.run) {
        return Err(field_err(
            f("run"),
            format!(
                "{:?} is not a task name (letters, digits, _ and -)",
                rule.run
            ),
        ));
    }
    if let Some(name) = &rule.name
        && !is_task_name(name)
    {
        return Err(field_err(
            f("name"),
            "rule names may only use letters, digits, _ and -",
        ));
    }
    let on = match rule.on {
        RuleTrigger::Bundle => "bundle",
        RuleTrigger::RunSucceeded => "run_succeeded",
        RuleTrigger::RunFailed => "run_failed",
        RuleTrigger::Schedule => "schedule",
    };
    let watches_runs = matches!(rule.on, RuleTrigger::RunSucceeded | RuleTrigger::RunFailed);
    match (&rule.task, watches_runs) {
        (None, true) => {
            return Err(field_err(
                f("task"),
                format!("an \"on\": \"{on}\" rule needs the task whose runs it watches"),
            ));
        }
        (Some(t), true) if !is_task_name(t) => {
            return Err(field_err(f("task"), format!("{t:?} is not a task name")));
        }
        (Some(_), false) => {
            return Err(field_err(
                f("task"),
                format!("an \"on\": \"{on}\" rule watches no task's runs; remove \"task\""),
            ));
        }
        _ => {}
    }
    if rule.files.is_some() && rule.on != RuleTrigger::Bundle {
        return Err(field_err(
            f("match"),
            "only \"on\": \"bundle\" rules match files; remove \"match\"",
        ));
    }
    match (rule.every, rule.on == RuleTrigger::Schedule) {
        (None, true) => Err(field_err(
            f("every"),
            "a schedule needs \"every\", e.g. \"1h\"",
        )),
        (Some(e), true) if e.0 < MIN_EVERY => Err(field_err(
            f("every"),
            format!("{e} is shorter than the shortest schedule, 1s"),
        )),
        (Some(_), false) => Err(field_err(
            f("every"),
            format!("only schedules have \"every\"; this rule is \"on\": \"{on}\""),
        )),
        _ => Ok(()),
    }
}

fn is_task_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// The first cycle among the tasks' `needs`, as task names from a task back to itself.
fn needs_cycle(tasks: &BTreeMap<String, TaskDef>) -> Option<Vec<String>> {
    // 0 = unvisited, 1 = on the current path, 2 = done.
    fn visit<'a>(
        name: &'a str,
        tasks: &'a BTreeMap<String, TaskDef>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(name) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|n| *n == name).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(name.to_owned());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(name, 1);
        path.push(name);
        for need in tasks
            .get(name)
            .map(|t| t.needs.as_slice())
            .unwrap_or_default()
        {
            if let Some(c) = visit(need, tasks, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(name, 2);
        None
    }
    let mut state = BTreeMap::new();
    for name in tasks.keys() {
        if let Some(c) = visit(name, tasks, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({ "date": "2026-11-21", "time": 1763700000, "user": "tali",
          "manifest_version": 1,
          "meta": { "address": "/sources/tali/experiment2", "any": "thing" },
          "contains": {
            "data":    ["output_data/**"],
            "package": { "config": {"lr": 0.1},
                         "tasks":  {"train": {"kind": "command",
                                              "run": ["python3", "train.py", "--lr", "{lr}", "--out", "{out}"],
                                              "timeout": "2h", "retries": 1},
                                    "report": {"kind": "pipeline", "steps": [], "needs": ["train"]}},
                         "rules":  [{"on": "bundle", "under": ".", "run": "report"}],
                         "links":  [] } } })
    }

    fn err_of(v: Value) -> String {
        Manifest::from_json(v.to_string().as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_the_design_example() {
        let m = Manifest::from_json(sample().to_string().as_bytes()).unwrap();
        assert_eq!(
            m.meta.address.unwrap().to_string(),
            "/sources/tali/experiment2"
        );
        assert_eq!(m.meta.other["any"], json!("thing"));
        let pkg = m.contains.package.unwrap();
        assert_eq!(
            pkg.tasks["train"].timeout.unwrap().0,
            Duration::from_secs(7200)
        );
        assert_eq!(pkg.tasks["train"].retries, 1);
        assert_eq!(pkg.tasks["report"].needs, ["train"]);
    }

    #[test]
    fn rejections_name_the_field() {
        assert!(
            Manifest::from_json(b"{not json")
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
        let mut v = sample();
        v.as_object_mut().unwrap().remove("manifest_version");
        assert!(err_of(v).contains("no manifest_version"));
        let mut v = sample();
        v["manifest_version"] = json!(2);
        assert!(err_of(v).contains("manifest_version 2 is not supported"));
        let mut v = sample();
        v["contains"]["package"]["tasks"]["train"]
            .as_object_mut()
            .unwrap()
            .remove("kind");
        let e = err_of(v);
        assert!(
            e.contains("contains.package.tasks.train") && e.contains("kind"),
            "{e}"
        );
        let mut v = sample();
        v["contains"]["package"]["tasks"]["train"]["kind"] = json!("shell");
        assert!(err_of(v).contains("contains.package.tasks.train.kind"));
        let mut v = sample();
        v["contains"]["package"]["tasks"]["train"]["timeout"] = json!("soon");
        assert!(err_of(v).contains("contains.package.tasks.train.timeout"));
        let mut v = sample();
        v["contains"]["package"]["tasks"]["train"]["run"] = json!([]);
        assert!(err_of(v).contains("contains.package.tasks.train.run"));
        let mut v = sample();
        v["contains"]["data"] = json!(["../etc/passwd"]);
        assert!(err_of(v).contains("contains.data[0]"));
        let mut v = sample();
        v["contains"]["data"] = json!(["/abs"]);
        assert!(err_of(v).contains("absolute"));
        let mut v = sample();
        v["meta"]["address"] = json!("relative/path");
        assert!(err_of(v).contains("meta.address"));
        let mut v = sample();
        v["time"] = json!("yesterday");
        assert!(err_of(v).contains("time"));
        let mut v = sample();
        v["contains"]["package"]["tasks"]["report"]["needs"] = json!(["no pe"]);
        assert!(err_of(v).contains("needs \"no pe\", which is not a task name"));
        let mut v = sample();
        v["contains"]["package"]["tasks"]["train"]["needs"] = json!(["report"]);
        let e = err_of(v);
        assert!(
            e.contains("cycle (report → train → report)")
                && e.contains("contains.package.tasks.report.needs"),
            "{e}"
        );
        let mut v = sample();
        v["contians"] = json!({});
        assert!(err_of(v).contains("contians"));
    }

    #[test]
    fn rules_are_checked_field_by_field() {
        let with_rules = |rules: Value| {
            let mut v = sample();
            v["contains"]["package"]["rules"] = rules;
            v
        };
        let ok = with_rules(json!([
            {"on": "bundle", "under": ".", "match": "**/metrics.csv", "run": "report"},
            {"on": "run_succeeded", "task": "train", "run": "report", "name": "after", "at": "."},
            {"on": "schedule", "every": "1h", "run": "train", "at": "/elsewhere"},
        ]));
        let m = Manifest::from_json(ok.to_string().as_bytes()).unwrap();
        let rules = m.contains.package.unwrap().rules.unwrap();
        assert_eq!(rules[0].files.as_ref().unwrap().as_str(), "**/metrics.csv");
        assert_eq!(rules[1].name(), "after");
        for (rules, field, says) in [
            (
                json!([{"on": "run_succeeded", "run": "report"}]),
                "rules[0].task",
                "needs the task",
            ),
            (
                json!([{"on": "bundle", "task": "train", "run": "report"}]),
                "rules[0].task",
                "remove \"task\"",
            ),
            (
                json!([{"on": "schedule", "run": "r"}]),
                "rules[0].every",
                "needs \"every\"",
            ),
            (
                json!([{"on": "schedule", "every": "10ms", "run": "r"}]),
                "rules[0].every",
                "shortest",
            ),
            (
                json!([{"on": "schedule", "every": "1h", "match": "*.csv", "run": "r"}]),
                "rules[0].match",
                "only \"on\": \"bundle\"",
            ),
            (
                json!([{"on": "bundle", "under": "../up", "run": "r"}]),
                "rules[0].under",
                "not",
            ),
            (
                json!([{"on": "bundle", "run": "r"}, {"on": "schedule", "every": "1h", "run": "r"}]),
                "rules[1].name",
                "two rules are named \"r\"",
            ),
            (json!([{"on": "sometimes", "run": "r"}]), "rules[0].on", ""),
        ] {
            let e = err_of(with_rules(rules));
            assert!(e.contains(field) && e.contains(says), "{e}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(
            DurationText::parse("1h30m").unwrap().0,
            Duration::from_secs(5400)
        );
        assert_eq!(
            DurationText::parse("250ms").unwrap().0,
            Duration::from_millis(250)
        );
        for bad in ["", "h", "5", "5x", "-1s"] {
            assert!(DurationText::parse(bad).is_err(), "{bad}");
        }
    }
}
