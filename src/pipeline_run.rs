//! `plotter2 pipeline-run PLAN --out DIR`: the process a worker starts for one attempt of a
//! pipeline task (see `plotter2_node::pipeline`). It runs datter over the files the plan
//! lists and writes what the pipeline made into DIR: `data.csv`, the frame as the last step
//! left it, `<table>.csv` for each table a step put aside, `<figure>.png` and `.svg` for each
//! figure the drawing ops made (an animated one's PNG an APNG, its SVG the last frame), and
//! `index.html` when a `report`
//! step asked for a page; where a `handoff` sent the output goes beside the plan
//! (`PipelineResult`). A failure is printed once, to
//! the attempt's log, naming the step, its op and the input file as `ADDR@V:path`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use datter::pipeline::{Inputs, Origin, Source};
use datter::report::Section;
use plotter2_node::pipeline::{PipelinePlan, PipelineResult};
use serde_json::Value;

pub fn run(plan_path: &Path, out: &Path, memory: Option<u64>) -> Result<()> {
    if let Some(limit) = memory {
        limit_memory(limit)?;
    }
    let text = std::fs::read(plan_path)
        .with_context(|| format!("reading the pipeline plan {}", plan_path.display()))?;
    let plan: PipelinePlan = serde_json::from_slice(&text)
        .with_context(|| format!("the pipeline plan {}", plan_path.display()))?;
    let names: Vec<&str> = plan.inputs.keys().map(String::as_str).collect();
    let steps = datter::pipeline::check(&plan.steps, &names)
        .with_context(|| format!("the steps of task {}", plan.task))?;
    // Disk path → the reference a user knows the file by, for messages.
    let mut known: Vec<(String, String)> = Vec::new();
    let mut inputs = Inputs::new();
    for (name, files) in &plan.inputs {
        println!("input {name}: {} files", files.len());
        let sources = files
            .iter()
            .map(|f| {
                known.push((
                    f.path.display().to_string(),
                    format!("{}@{}:{}", f.address, f.version, f.file),
                ));
                Source {
                    path: f.path.clone(),
                    origin: Origin {
                        bundle: f.bundle.to_string(),
                        address: f.address.to_string(),
                        version: f.version,
                        file: f.file.clone(),
                        params: f
                            .params
                            .iter()
                            .map(|(k, v)| (k.clone(), text_of(v)))
                            .collect(),
                    },
                }
            })
            .collect();
        inputs.insert(name.clone(), sources);
    }
    let mut report_step = |step: &datter::pipeline::Step, took: std::time::Duration, rows| {
        println!(
            "step {} ({}): {:.1} ms, {rows} rows",
            step.index,
            step.op.name,
            took.as_secs_f64() * 1000.0
        );
    };
    if let Some(limit) = memory {
        too_large(&plan, &steps, limit)?;
    }
    let output = match datter::pipeline::run_observed(&steps, &inputs, &mut report_step) {
        Ok(o) => o,
        Err(e) => {
            let mut message = crate::output::error_chain(&anyhow::Error::from(e));
            // Longest paths first, so one path that prefixes another is not replaced inside it.
            known.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
            for (path, reference) in &known {
                message = message.replace(path.as_str(), reference);
            }
            bail!("task {}: {message}", plan.task);
        }
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut write = |name: &str, frame: &datter::Frame| -> Result<()> {
        let path = out.join(format!("{name}.csv"));
        std::fs::write(&path, frame.to_csv())
            .with_context(|| format!("writing {}", path.display()))?;
        written.insert(format!("{name}.csv"), (frame.rows(), frame.width()));
        Ok(())
    };
    write("data", &output.data)?;
    for t in &output.tables {
        write(&t.name, &t.frame)?;
    }
    for (file, (rows, columns)) in &written {
        println!("wrote {file}: {rows} rows × {columns} columns");
    }
    let mut pictures: Vec<(String, String, String)> = Vec::new();
    for d in &output.figures {
        let drawing = std::time::Instant::now();
        let (png, svg) = (format!("{}.png", d.name), format!("{}.svg", d.name));
        // An animation's PNG is an APNG, which a browser plays in the report's <img>; its SVG
        // is the last frame.
        let bytes = match &d.animation {
            Some(a) => a.to_apng(),
            None => d.figure.to_png(),
        }
        .with_context(|| format!("drawing {png} ({:?})", d.title))?;
        std::fs::write(out.join(&png), bytes).with_context(|| format!("writing {png}"))?;
        let text = d
            .figure
            .to_svg()
            .with_context(|| format!("drawing {svg} ({:?})", d.title))?;
        std::fs::write(out.join(&svg), text).with_context(|| format!("writing {svg}"))?;
        let frames = d
            .animation
            .as_ref()
            .map(|a| format!(" ({} frames)", a.frames.len()))
            .unwrap_or_default();
        println!(
            "wrote {png}{frames} and {svg}: {:?} in {:.1} ms",
            d.title,
            drawing.elapsed().as_secs_f64() * 1000.0
        );
        if d.in_report {
            pictures.push((d.title.clone(), png, svg));
        }
    }
    if let Some(title) = &output.report {
        let csv: Vec<String> = output
            .tables
            .iter()
            .map(|t| format!("{}.csv", t.name))
            .collect();
        let sections: Vec<Section<'_>> = pictures
            .iter()
            .map(|(title, png, svg)| Section::Picture {
                title,
                png,
                svg: Some(svg),
            })
            .chain(
                output
                    .tables
                    .iter()
                    .zip(&csv)
                    .map(|(t, csv)| Section::Table {
                        title: &t.name,
                        frame: &t.frame,
                        csv,
                    }),
            )
            .collect();
        let path = out.join("index.html");
        std::fs::write(&path, datter::report::html(title, &sections))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote index.html: {title:?}, {} sections", sections.len());
    }
    let address = match &output.handoff {
        Some(to) => Some(
            plotter2_node::pipeline::handoff_target(&plan.node, to)
                .with_context(|| format!("the handoff to {to:?} from {}", plan.node))?,
        ),
        None => None,
    };
    if let Some(a) = &address {
        println!("handing the output off to {a}");
    }
    let result = plan_path.with_file_name(plotter2_node::pipeline::RESULT_FILE);
    std::fs::write(&result, serde_json::to_vec(&PipelineResult { address })?)
        .with_context(|| format!("writing {}", result.display()))?;
    Ok(())
}

/// A param's value as a cell: text bare, anything else as JSON.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// Room for the program itself, its threads' stacks and the allocator, above the task's limit.
const HEADROOM: u64 = 256 << 20;

/// Caps this process's data (heap and private mappings) at the task's limit: past it an
/// allocation fails and the process ends, not the worker or the machine.
fn limit_memory(limit: u64) -> Result<()> {
    let cap = limit.saturating_add(HEADROOM);
    let rl = libc::rlimit {
        rlim_cur: cap,
        rlim_max: cap,
    };
    // SAFETY: setrlimit(2) with a valid struct, on this process only.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &rl) } != 0 {
        bail!(
            "cannot limit this pipeline's memory to {limit} bytes: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Refuses an input file larger than the memory limit before anything is read, naming the
/// step that reads it and the file.
fn too_large(plan: &PipelinePlan, steps: &[datter::pipeline::Step], limit: u64) -> Result<()> {
    for (name, files) in &plan.inputs {
        let reader = steps.iter().find(|s| {
            s.op.name == "access"
                && s.params
                    .get("from")
                    .and_then(Value::as_str)
                    .is_none_or(|f| f == name)
        });
        for f in files {
            let size = std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
            if size > limit {
                let at = reader.map_or(String::new(), |s| {
                    format!("step {} ({}): ", s.index, s.op.name)
                });
                bail!(
                    "task {}: {at}{}@{}:{} is {} MiB, more than the task's memory limit of {} MiB; \
                     raise the task's \"memory\" or read fewer or smaller files",
                    plan.task,
                    f.address,
                    f.version,
                    f.file,
                    size >> 20,
                    limit >> 20
                );
            }
        }
    }
    Ok(())
}
