//! Rule verbs: `rules ADDR` (what each rule did, and why not when it did not).

use anyhow::{Result, bail};
use plotter2_node::manifest::{Rule, RuleTrigger};
use plotter2_node::protocol::{Op, ReadOp, Reply, RuleView};
use plotter2_node::{Address, Client};

use crate::output::{print_json, time};

pub async fn rules(client: &Client, addr: Address, json: bool) -> Result<()> {
    let Reply::Rules(rules) = client
        .call(Op::Read(ReadOp::Rules { addr: addr.clone() }))
        .await?
    else {
        bail!("unexpected answer to rules");
    };
    if json {
        return print_json(&rules);
    }
    if rules.is_empty() {
        println!(
            "no rules at {addr}, its ancestors or below it; a package defines them under \
             contains.package.rules"
        );
        return Ok(());
    }
    for r in &rules {
        print!("{}", rule_text(r));
    }
    Ok(())
}

fn describe(rule: &Rule, v: &RuleView) -> String {
    let when = match rule.on {
        RuleTrigger::Bundle => {
            let files = rule
                .files
                .as_ref()
                .map(|g| format!(" holding {g}"))
                .unwrap_or_default();
            format!("a bundle arrives under {}{files}", v.under)
        }
        RuleTrigger::RunSucceeded | RuleTrigger::RunFailed => format!(
            "a run of {} under {} {}",
            rule.task.as_deref().unwrap_or("?"),
            v.under,
            if rule.on == RuleTrigger::RunSucceeded {
                "succeeds"
            } else {
                "fails"
            }
        ),
        RuleTrigger::Schedule => format!(
            "every {}",
            rule.every.map(|e| e.to_string()).unwrap_or_default()
        ),
    };
    format!("when {when}, run {} at {}", rule.run, v.run_at)
}

fn rule_text(v: &RuleView) -> String {
    let mut out = format!("{}\n  {}\n", v.rule, describe(&v.definition, v));
    if let Some(by) = &v.switched_off_by {
        out += &format!("  switched off here (rules.{}=off at {by})\n", v.rule.name);
    }
    if let Some(by) = &v.replaced_by {
        out += &format!("  replaced here by {by}\n");
    }
    match &v.last_fired {
        Some(d) => {
            out += &format!(
                "  fired {} time(s); last at {} (seq {}): {} on {}\n",
                v.fired,
                time(d.time_ms),
                d.seq,
                d.verdict,
                d.trigger
            );
        }
        None => out += "  never fired\n",
    }
    if let Some(run) = v.open_run {
        out += &format!("  open run: {run}\n");
    }
    if let Some(p) = &v.pending {
        out += &format!("  pending: {p}\n");
    }
    if let Some(due) = v.next_due_ms {
        out += &format!("  next due: {}\n", time(due));
    }
    if !v.recent.is_empty() {
        out += "  recent decisions:\n";
        for d in &v.recent {
            out += &format!(
                "    seq {} {}  {}: {}\n",
                d.seq,
                time(d.time_ms),
                d.trigger,
                d.verdict
            );
        }
    }
    out
}
