//! `explain RUN`: why a run ran, in one screen: how it turned out, who or which rule asked,
//! its fingerprint part by part, what changed since the run before it, and what rules decided.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use plotter2_node::Client;
use plotter2_node::bundle::Hash;
use plotter2_node::protocol::{
    Explanation, Op, Outcome, PartName, Read, ReadOp, ReadRole, Reply, RuleDecision, RunId,
};

use crate::lineagecmd::params;
use crate::output::{print_json, time};

pub async fn explain(client: &Client, run: RunId, json: bool) -> Result<()> {
    let Reply::Explain(e) = client.call(Op::Read(ReadOp::Explain { run })).await? else {
        bail!("unexpected answer to explain");
    };
    if json {
        return print_json(&e);
    }
    print!("{}", text(&e));
    Ok(())
}

pub fn text(e: &Explanation) -> String {
    let mut out = format!("run {}: {} at {}", e.run, e.task, e.node);
    if e.defined_at != e.node {
        let _ = write!(out, " (defined at {})", e.defined_at);
    }
    out.push('\n');
    let _ = writeln!(out, "  outcome      {}", e.outcome);
    match &e.cause {
        Some(c) => {
            let _ = writeln!(out, "  asked by     rule {} on {}", c.rule, c.trigger);
        }
        None => {
            let _ = writeln!(
                out,
                "  asked by     {} (request {}, {})",
                e.user,
                e.request,
                time(e.created_ms)
            );
        }
    }
    if e.forced {
        out.push_str("  forced       yes: run even though an equal run had succeeded\n");
    }
    let _ = writeln!(out, "  why          {}", why_again(e));
    if !e.params.is_empty() {
        let _ = writeln!(out, "  params       {}", params(&e.params));
    }
    let check = if e.fingerprint_checks {
        ""
    } else {
        "  (its parts hashed again differ: it was planned by an earlier form)"
    };
    let _ = writeln!(out, "  fingerprint  {}{check}", e.fingerprint);
    for p in &e.parts {
        let line = format!(
            "    {:<10}  {}  {}",
            p.part.to_string(),
            short(&p.digest),
            part_reads(p.part, &e.reads)
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if !e.rule_decisions.is_empty()
        && let Some(c) = &e.cause
    {
        let _ = writeln!(out, "  rule {}, its recent decisions:", c.rule);
        for d in &e.rule_decisions {
            let _ = writeln!(out, "    {}", decision(d, false));
        }
    }
    if e.set_off.is_empty() {
        if e.outcome == Outcome::Executed {
            out.push_str("  set off      nothing: no rule's recent decisions name it\n");
        }
    } else {
        out.push_str("  set off:\n");
        for d in &e.set_off {
            let _ = writeln!(out, "    {}", decision(d, true));
        }
    }
    out
}

/// Why it ran though an earlier run of the same task at the same node did.
fn why_again(e: &Explanation) -> String {
    let Some(p) = &e.previous else {
        return format!("the first run of {} at {}", e.task, e.node);
    };
    let names: Vec<String> = p.changed.iter().map(PartName::to_string).collect();
    if names.is_empty() {
        let how = match (&e.outcome, e.forced) {
            (Outcome::Reused { .. }, _) => "so it reused an equal run",
            (_, true) => "it was forced",
            _ => "no equal run had succeeded when it was asked for",
        };
        format!(
            "nothing changed since {} ({}): {how}",
            p.run,
            short_outcome(&p.outcome)
        )
    } else {
        format!(
            "{} changed since {} ({})",
            names.join(", "),
            p.run,
            short_outcome(&p.outcome)
        )
    }
}

fn short_outcome(o: &Outcome) -> String {
    match o {
        Outcome::CutOff { .. } => "cut off".to_owned(),
        Outcome::Failed { .. } => "failed".to_owned(),
        other => other.to_string(),
    }
}

/// What a part stands for: the versions behind the code and inputs, counts for the rest.
fn part_reads(part: PartName, reads: &[Read]) -> String {
    let at = |r: &Read| {
        r.at.as_ref()
            .map_or_else(|| r.bundle.to_string(), |a| a.to_string())
    };
    let of = |want: fn(&ReadRole) -> bool| -> Vec<&Read> {
        reads.iter().filter(|r| want(&r.role)).collect()
    };
    let list = |rs: Vec<&Read>| -> String {
        const SHOWN: usize = 4;
        let mut names: Vec<String> = rs.iter().take(SHOWN).map(|r| at(r)).collect();
        if rs.len() > SHOWN {
            names.push(format!("and {} more", rs.len() - SHOWN));
        }
        names.join(", ")
    };
    match part {
        PartName::Definition | PartName::Params => String::new(),
        PartName::Code => list(of(|r| matches!(r, ReadRole::Code))),
        PartName::Inputs => {
            let rs = of(|r| matches!(r, ReadRole::Input));
            if rs.is_empty() {
                "none".to_owned()
            } else {
                list(rs)
            }
        }
        PartName::Needs => {
            let rs = of(|r| matches!(r, ReadRole::Need { .. }));
            let names: Vec<String> = rs
                .iter()
                .map(|r| match &r.role {
                    ReadRole::Need { task, run } => format!("{task} ({run}) → {}", at(r)),
                    _ => at(r),
                })
                .collect();
            names.join(", ")
        }
        PartName::Selected => {
            let rs = of(|r| matches!(r, ReadRole::Selected { .. }));
            format!("{} version(s): {}", rs.len(), list(rs))
        }
    }
}

fn decision(d: &RuleDecision, name_rule: bool) -> String {
    let rule = if name_rule {
        format!("{}  ", d.rule)
    } else {
        String::new()
    };
    format!(
        "{rule}seq {} {}  {}: {}",
        d.decision.seq,
        time(d.decision.time_ms),
        d.decision.trigger,
        d.decision.verdict
    )
}

/// A digest cut to what a reader compares by eye.
fn short(h: &Hash) -> String {
    let hex = h.hex();
    format!("b3:{}…", &hex[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use plotter2_node::Address;
    use plotter2_node::protocol::{
        Decision, Part, Previous, RequestId, RunState, Trigger, UserName, Verdict, VersionAt,
    };

    fn sample() -> Explanation {
        let node = Address::parse("/e").unwrap();
        let part = |part, s: &[u8]| Part {
            part,
            digest: Hash::of(s),
        };
        Explanation {
            run: RunId { seq: 7, n: 0 },
            task: "train".into(),
            node: node.clone(),
            defined_at: node.clone(),
            state: RunState::Succeeded,
            user: UserName::parse("tali").unwrap(),
            request: RequestId::new(),
            created_ms: 0,
            params: serde_json::from_value(serde_json::json!({"lr": 0.2})).unwrap(),
            reads: vec![Read {
                role: ReadRole::Code,
                bundle: Hash::of(b"code"),
                at: Some(VersionAt {
                    address: node.clone(),
                    version: 1,
                }),
            }],
            parts: vec![
                part(PartName::Definition, b"d"),
                part(PartName::Code, b"c"),
                part(PartName::Inputs, b"i"),
                part(PartName::Params, b"p"),
            ],
            fingerprint: Hash::of(b"f"),
            fingerprint_checks: true,
            outcome: Outcome::Executed,
            forced: false,
            cause: None,
            previous: Some(Previous {
                run: RunId { seq: 5, n: 0 },
                fingerprint: Hash::of(b"f0"),
                outcome: Outcome::Executed,
                changed: vec![PartName::Params],
            }),
            rule_decisions: vec![],
            set_off: vec![RuleDecision {
                rule: "compare@/e".parse().unwrap(),
                decision: Decision {
                    seq: 9,
                    time_ms: 0,
                    trigger: Trigger::Run {
                        run: RunId { seq: 7, n: 0 },
                        task: "train".into(),
                        node,
                        state: RunState::Succeeded,
                    },
                    verdict: Verdict::SwitchedOff {
                        by: Address::parse("/e").unwrap(),
                    },
                },
            }],
        }
    }

    #[test]
    fn one_glance_says_outcome_what_changed_and_what_rules_did() {
        let t = text(&sample());
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "run r7.0: train at /e");
        assert_eq!(lines[1], "  outcome      executed");
        assert!(lines[2].starts_with("  asked by     tali (request "), "{t}");
        assert_eq!(
            lines[3],
            "  why          params changed since r5.0 (executed)"
        );
        assert_eq!(lines[4], "  params       lr=0.2");
        assert!(
            lines[6].starts_with("    definition  b3:") && lines[6].ends_with('…'),
            "{t}"
        );
        assert!(lines[7].ends_with("  /e@1"), "code names its version: {t}");
        assert!(lines[8].ends_with("  none"), "no inputs: {t}");
        assert!(
            t.contains("compare@/e  seq 9") && t.contains("switched off by"),
            "{t}"
        );
    }

    #[test]
    fn nothing_changed_says_why_it_ran_anyway() {
        let mut e = sample();
        if let Some(p) = e.previous.as_mut() {
            p.changed.clear();
        }
        e.forced = true;
        assert!(text(&e).contains("nothing changed since r5.0 (executed): it was forced"));
        e.outcome = Outcome::Reused {
            from: RunId { seq: 5, n: 0 },
        };
        e.forced = false;
        assert!(text(&e).contains("so it reused an equal run"));
        e.previous = None;
        assert!(text(&e).contains("the first run of train at /e"));
    }
}
