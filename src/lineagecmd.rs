//! `lineage ADDR[@V] [--downstream]`: how a bundle version was made, or what was made from it,
//! as an indented tree (each version and run expanded once, "see above" after), JSON, or a
//! Graphviz digraph.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;

use anyhow::{Result, bail};
use plotter2_node::Client;
use plotter2_node::protocol::{
    LINEAGE_LIMIT, Lineage, Made, Op, Outcome, Read, ReadOp, Reply, RunId, RunNode, VersionAt,
    VersionNode,
};
use plotter2_node::reference::BundleReference;

use crate::output::{print_json, time, value};

/// How the answer is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Text,
    Json,
    Dot,
}

impl Form {
    pub fn of(json: bool, dot: bool) -> Self {
        match (json, dot) {
            (true, _) => Form::Json,
            (false, true) => Form::Dot,
            (false, false) => Form::Text,
        }
    }
}

pub async fn lineage(
    client: &Client,
    reference: &BundleReference,
    downstream: bool,
    form: Form,
) -> Result<()> {
    if let Some(path) = &reference.path {
        bail!(
            "lineage is of a bundle version, not of a file in it: drop :{path} \
             (`plotter2 lineage {}@{}`)",
            reference.addr,
            reference
                .version
                .number()
                .map_or("latest".to_owned(), |n| n.to_string())
        );
    }
    let op = Op::Read(ReadOp::Lineage {
        addr: reference.addr.clone(),
        version: reference.version.number(),
        downstream,
    });
    let Reply::Lineage(l) = client.call(op).await? else {
        bail!("unexpected answer to lineage");
    };
    match form {
        Form::Json => print_json(&l),
        Form::Dot => {
            print!("{}", dot(&l));
            Ok(())
        }
        Form::Text => {
            print!("{}", text(&l));
            Ok(())
        }
    }
}

/// The graph's nodes by what refers to them.
struct Index<'a> {
    versions: HashMap<&'a VersionAt, &'a VersionNode>,
    runs: HashMap<RunId, &'a RunNode>,
}

impl<'a> Index<'a> {
    fn of(l: &'a Lineage, ats: &'a [VersionAt]) -> Self {
        Self {
            versions: ats.iter().zip(&l.versions).collect(),
            runs: l.runs.iter().map(|r| (r.id, r)).collect(),
        }
    }
}

/// A line still to print, depth first (an explicit stack: a long chain must not overflow).
enum Line<'a> {
    /// A version as one of a run's reads (upstream), or the root (`read` is `None`).
    Read {
        read: Option<&'a Read>,
        at: Option<&'a VersionAt>,
        depth: usize,
    },
    /// A run that made a version again without adding one.
    Again { run: RunId, depth: usize },
    /// A run that read a version, and what it made (downstream).
    Reader { run: RunId, depth: usize },
}

/// The lineage as an indented tree: each version and run is expanded where it is first
/// reached, and only referred to after that.
pub fn text(l: &Lineage) -> String {
    let ats: Vec<VersionAt> = l.versions.iter().map(VersionNode::at).collect();
    let ix = Index::of(l, &ats);
    let mut out = String::new();
    let mut shown: BTreeSet<&VersionAt> = BTreeSet::new();
    let mut shown_runs: BTreeSet<RunId> = BTreeSet::new();
    let mut stack = vec![Line::Read {
        read: None,
        at: Some(&l.root),
        depth: 0,
    }];
    while let Some(line) = stack.pop() {
        let mut children: Vec<Line<'_>> = Vec::new();
        match line {
            Line::Read { read, at, depth } => {
                let indent = "  ".repeat(depth);
                let label = read.map(|r| format!("{} ", r.role)).unwrap_or_default();
                let Some(at) = at else {
                    let bundle = read.map(|r| r.bundle.to_string()).unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{indent}{label}{bundle}  (no version of the nodes it was read from)"
                    );
                    continue;
                };
                let Some(v) = ix.versions.get(at) else {
                    let _ = writeln!(out, "{indent}{label}{at}  {}", not_followed());
                    continue;
                };
                if !shown.insert(at) {
                    let _ = writeln!(out, "{indent}{label}{at}  (see above)");
                    continue;
                }
                let _ = writeln!(out, "{indent}{label}{at}  {}", made(v, &ix));
                children.extend(v.reproduced_by.iter().map(|&run| Line::Again {
                    run,
                    depth: depth + 1,
                }));
                if l.downstream {
                    children.extend(v.read_by.iter().map(|&run| Line::Reader {
                        run,
                        depth: depth + 1,
                    }));
                } else if let Made::Run { run } = &v.made
                    && let Some(r) = ix.runs.get(run)
                    && shown_runs.insert(*run)
                {
                    children.extend(r.reads.iter().map(|read| Line::Read {
                        read: Some(read),
                        at: read.at.as_ref(),
                        depth: depth + 1,
                    }));
                }
            }
            Line::Again { run, depth } => {
                let indent = "  ".repeat(depth);
                let what = ix.runs.get(&run).map_or(String::new(), |r| {
                    format!(" ({} at {}{})", r.task, r.node, caused(r))
                });
                let _ = writeln!(
                    out,
                    "{indent}made again by run {run}{what}: cut off, no version added, \
                     nothing downstream set off"
                );
            }
            Line::Reader { run, depth } => {
                let indent = "  ".repeat(depth);
                let Some(r) = ix.runs.get(&run) else {
                    let _ = writeln!(out, "{indent}read by run {run}  {}", not_followed());
                    continue;
                };
                if !shown_runs.insert(run) {
                    let _ = writeln!(out, "{indent}read by run {run}  (see above)");
                    continue;
                }
                let made = match &r.output {
                    None => "no output".to_owned(),
                    Some(at) => match ix.versions.get(at) {
                        None => format!("{at}  {}", not_followed()),
                        Some(_) if shown.contains(at) => format!("{at}  (see above)"),
                        Some(v) => {
                            shown.insert(at);
                            children.extend(v.reproduced_by.iter().map(|&run| Line::Again {
                                run,
                                depth: depth + 1,
                            }));
                            children.extend(v.read_by.iter().map(|&run| Line::Reader {
                                run,
                                depth: depth + 1,
                            }));
                            at.to_string()
                        }
                    },
                };
                let _ = writeln!(out, "{indent}read by run {run} ({}) → {made}", about(r));
            }
        }
        stack.extend(children.into_iter().rev());
    }
    if l.truncated {
        let _ = writeln!(
            out,
            "… cut short at {LINEAGE_LIMIT} versions and runs; ask about one of the versions \
             not followed for the rest"
        );
    }
    out
}

fn not_followed() -> String {
    format!("(not followed: the answer stops at {LINEAGE_LIMIT} versions and runs)")
}

/// How a version was made, in a few words.
fn made(v: &VersionNode, ix: &Index<'_>) -> String {
    match &v.made {
        Made::Pushed {
            user,
            request,
            time_ms,
        } => format!("pushed by {user} (request {request}, {})", time(*time_ms)),
        Made::Run { run } => match ix.runs.get(run) {
            Some(r) => format!("made by run {run} ({})", about(r)),
            None => format!("made by run {run}"),
        },
    }
}

/// A run in one parenthesis: task, node, outcome, params, and the rule that made it.
fn about(r: &RunNode) -> String {
    let mut s = format!("{} at {}, {}", r.task, r.node, r.outcome);
    if !r.params.is_empty() {
        s.push_str(", ");
        s.push_str(&params(&r.params));
    }
    s.push_str(&caused(r));
    s
}

fn caused(r: &RunNode) -> String {
    r.cause
        .as_ref()
        .map(|c| format!("; rule {} on {}", c.rule, c.trigger))
        .unwrap_or_default()
}

/// Params as `k=v k=v`, JSON values, strings bare.
pub fn params(p: &serde_json::Map<String, serde_json::Value>) -> String {
    p.iter()
        .map(|(k, v)| format!("{k}={}", value(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The lineage as a Graphviz digraph: boxes are bundle versions, ellipses runs, edges go
/// from what a run read to the run to what it made (dashed where it was cut off). Only edges
/// between listed nodes are drawn.
pub fn dot(l: &Lineage) -> String {
    let ats: Vec<VersionAt> = l.versions.iter().map(VersionNode::at).collect();
    let ix = Index::of(l, &ats);
    let mut out = String::from("digraph lineage {\n  rankdir=LR;\n  node [fontsize=10];\n");
    for v in &l.versions {
        let how = match &v.made {
            Made::Pushed { user, .. } => format!("pushed by {user}"),
            Made::Run { run } => format!("made by {run}"),
        };
        let bold = if v.at() == l.root { ", penwidth=2" } else { "" };
        let _ = writeln!(
            out,
            "  {} [shape=box, label={}{bold}];",
            quote(&format!("v {}", v.at())),
            label(&[v.at().to_string(), how])
        );
    }
    for r in &l.runs {
        let mut lines = vec![format!("{} {}", r.id, r.task), r.node.to_string()];
        if !r.params.is_empty() {
            lines.push(params(&r.params));
        }
        lines.push(short_outcome(&r.outcome));
        let _ = writeln!(
            out,
            "  {} [shape=ellipse, label={}];",
            quote(&format!("r {}", r.id)),
            label(&lines)
        );
    }
    for r in &l.runs {
        let run = quote(&format!("r {}", r.id));
        for read in &r.reads {
            if let Some(at) = read.at.as_ref().filter(|at| ix.versions.contains_key(at)) {
                let _ = writeln!(
                    out,
                    "  {} -> {run} [label={}];",
                    quote(&format!("v {at}")),
                    quote(&read.role.to_string())
                );
            }
        }
        if let Some(at) = r.output.as_ref().filter(|at| ix.versions.contains_key(at)) {
            let style = match r.outcome {
                Outcome::CutOff { .. } => " [style=dashed, label=\"cut off\"]",
                Outcome::Reused { .. } => " [label=\"reused\"]",
                _ => "",
            };
            let _ = writeln!(out, "  {run} -> {}{style};", quote(&format!("v {at}")));
        }
    }
    out.push_str("}\n");
    out
}

fn short_outcome(o: &Outcome) -> String {
    match o {
        Outcome::CutOff { .. } => "cut off".to_owned(),
        Outcome::Failed { .. } => "failed".to_owned(),
        other => other.to_string(),
    }
}

/// A DOT string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A DOT label of several lines.
fn label(lines: &[String]) -> String {
    quote(&lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotter2_node::Address;
    use plotter2_node::bundle::Hash;
    use plotter2_node::protocol::{ReadRole, RequestId, RunState, UserName};
    use serde_json::json;

    fn at(a: &str, v: u64) -> VersionAt {
        VersionAt {
            address: Address::parse(a).unwrap(),
            version: v,
        }
    }

    fn version(a: &str, v: u64, made: Made) -> VersionNode {
        VersionNode {
            address: Address::parse(a).unwrap(),
            version: v,
            bundle: Hash::of(format!("{a}@{v}").as_bytes()),
            made,
            reproduced_by: vec![],
            read_by: vec![],
        }
    }

    fn pushed() -> Made {
        Made::Pushed {
            user: UserName::parse("tali").unwrap(),
            request: RequestId::new(),
            time_ms: 0,
        }
    }

    fn read(role: ReadRole, to: VersionAt) -> Read {
        Read {
            role,
            bundle: Hash::of(to.to_string().as_bytes()),
            at: Some(to),
        }
    }

    fn run(n: u32, task: &str, node: &str, reads: Vec<Read>, output: VersionAt) -> RunNode {
        RunNode {
            id: RunId {
                seq: n as u64,
                n: 0,
            },
            task: task.into(),
            node: Address::parse(node).unwrap(),
            defined_at: Address::parse("/e").unwrap(),
            state: RunState::Succeeded,
            params: serde_json::from_value(json!({"lr": n})).unwrap(),
            outcome: Outcome::Executed,
            cause: None,
            reads,
            output: Some(output),
        }
    }

    /// A report over two sweep runs that share their code: the code is expanded once.
    fn sample() -> Lineage {
        let code = at("/e", 1);
        let selected = |input: &str| ReadRole::Selected {
            input: input.into(),
            params: Default::default(),
        };
        let report = run(
            9,
            "report",
            "/e",
            vec![
                read(ReadRole::Code, code.clone()),
                read(selected("a"), at("/e/s/a", 1)),
                read(selected("b"), at("/e/s/b", 1)),
            ],
            at("/e/meta/reports", 1),
        );
        let train = |n, node: &str| {
            run(
                n,
                "train",
                node,
                vec![read(ReadRole::Code, code.clone())],
                at(node, 1),
            )
        };
        let mut reports = version("/e/meta/reports", 1, Made::Run { run: report.id });
        reports.reproduced_by = vec![RunId { seq: 12, n: 0 }];
        Lineage {
            root: at("/e/meta/reports", 1),
            downstream: false,
            versions: vec![
                reports,
                version("/e", 1, pushed()),
                version(
                    "/e/s/a",
                    1,
                    Made::Run {
                        run: RunId { seq: 5, n: 0 },
                    },
                ),
                version(
                    "/e/s/b",
                    1,
                    Made::Run {
                        run: RunId { seq: 6, n: 0 },
                    },
                ),
            ],
            runs: vec![report, train(5, "/e/s/a"), train(6, "/e/s/b")],
            truncated: false,
        }
    }

    #[test]
    fn the_tree_expands_each_version_once_and_refers_to_it_after() {
        let t = text(&sample());
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("/e/meta/reports@1  made by run r9.0 (report at /e, executed"),
            "{t}"
        );
        assert!(lines[1].contains("made again by run r12.0") && lines[1].contains("cut off"));
        assert!(lines[2].starts_with("  code /e@1  pushed by tali"), "{t}");
        assert!(
            lines[3].starts_with("  input a /e/s/a@1  made by run r5.0 (train at /e/s/a"),
            "{t}"
        );
        assert!(lines[3].contains("lr=5"), "{t}");
        assert_eq!(lines[4], "    code /e@1  (see above)");
        assert_eq!(lines[6], "    code /e@1  (see above)");
        assert_eq!(lines.len(), 7, "{t}");
    }

    #[test]
    fn a_missing_node_says_it_was_not_followed() {
        let mut l = sample();
        l.versions.truncate(2);
        l.truncated = true;
        let t = text(&l);
        assert!(t.contains("input a /e/s/a@1  (not followed"), "{t}");
        assert!(t.trim_end().ends_with("not followed for the rest"), "{t}");
    }

    #[test]
    fn downstream_follows_readers_to_what_they_made() {
        let mut l = sample();
        l.downstream = true;
        l.root = at("/e", 1);
        l.versions.swap(0, 1);
        l.versions[0].read_by = vec![RunId { seq: 5, n: 0 }, RunId { seq: 6, n: 0 }];
        for v in &mut l.versions[2..] {
            v.read_by = vec![RunId { seq: 9, n: 0 }];
        }
        let t = text(&l);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("/e@1  pushed by tali"), "{t}");
        assert!(
            lines[1].starts_with("  read by run r5.0 (train at /e/s/a")
                && lines[1].ends_with("→ /e/s/a@1"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("    read by run r9.0 (report")
                && lines[2].ends_with("→ /e/meta/reports@1"),
            "{t}"
        );
        assert!(lines[3].contains("made again by run r12.0"), "{t}");
        assert_eq!(lines[5], "    read by run r9.0  (see above)", "{t}");
    }

    #[test]
    fn dot_is_a_digraph_with_edges_from_reads_through_runs_to_outputs() {
        let d = dot(&sample());
        assert!(
            d.starts_with("digraph lineage {\n") && d.ends_with("}\n"),
            "{d}"
        );
        assert!(
            d.contains("\"v /e@1\" -> \"r r5.0\" [label=\"code\"];"),
            "{d}"
        );
        assert!(d.contains("\"r r9.0\" -> \"v /e/meta/reports@1\";"), "{d}");
        assert!(
            d.contains("\"v /e/s/b@1\" -> \"r r9.0\" [label=\"input b\"];"),
            "{d}"
        );
        // Every quote is balanced: a label with a quote in it stays one string.
        assert_eq!(quote("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
        for line in d.lines() {
            let unescaped = line.replace("\\\\", "").replace("\\\"", "");
            assert_eq!(unescaped.matches('"').count() % 2, 0, "{line}");
        }
    }
}
