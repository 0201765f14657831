//! One attempt of a `pipeline` task, up to its process: the files its inputs match, fetched
//! into the sandbox, and the plan that `plotter2 pipeline-run` (this worker's own binary)
//! reads. The process itself is started, logged, timed and cancelled like a command's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotter2_node::pipeline::{PLAN_FILE, PipelinePlan, PlannedFile};
use plotter2_node::progress::Silent;
use plotter2_node::protocol::RunRecord;
use plotter2_node::tree::Fetch;

use crate::WorkerError;
use crate::execute::Sandboxes;

/// Fetches the files each input matches into `<sandbox>/in/<input>/<n>/` (`n` counts the
/// run's selected bundle versions) and writes the plan beside them; returns its path.
pub(crate) async fn prepare(
    boxes: &Sandboxes,
    run: &RunRecord,
    sandbox: &Path,
) -> Result<PathBuf, WorkerError> {
    let def = &run.definition;
    let mut inputs: BTreeMap<String, Vec<PlannedFile>> = def
        .inputs
        .keys()
        .map(|name| (name.clone(), Vec::new()))
        .collect();
    for (n, sel) in run.selected.iter().enumerate() {
        let (Some(pattern), Some(files)) = (def.inputs.get(&sel.input), inputs.get_mut(&sel.input))
        else {
            // The coordinator selects only for declared inputs.
            continue;
        };
        let index = boxes.store.get_index(&sel.bundle).await?;
        let dest = sandbox.join("in").join(&sel.input).join(n.to_string());
        let matched: Vec<_> = index
            .files()
            .iter()
            .filter(|f| pattern.files.matches(f.path.as_str()))
            .collect();
        files.extend(matched.iter().map(|f| PlannedFile {
            path: dest.join(f.path.as_str()),
            bundle: sel.bundle,
            address: sel.address.clone(),
            version: sel.version,
            file: f.path.as_str().to_owned(),
            params: sel.params.clone(),
        }));
        let fetch = Fetch::plan(matched, &dest);
        drop(index);
        fetch.run(&boxes.store, &Silent).await?;
    }
    let plan = PipelinePlan {
        node: run.node.clone(),
        task: run.task.clone(),
        steps: def.steps.clone().unwrap_or_default(),
        inputs,
    };
    let path = sandbox.join(PLAN_FILE);
    let text = serde_json::to_vec_pretty(&plan).map_err(|e| WorkerError::Io {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    tokio::fs::write(&path, text)
        .await
        .map_err(WorkerError::io(&path))?;
    Ok(path)
}

/// Where the pipeline process said its output goes, if it handed it off.
pub(crate) async fn output_address(
    sandbox: &Path,
) -> Result<Option<plotter2_node::Address>, WorkerError> {
    let path = sandbox.join(plotter2_node::pipeline::RESULT_FILE);
    let text = match tokio::fs::read(&path).await {
        Ok(t) => t,
        // A pipeline process that ended well always writes it; without it, the output stays
        // at the run's node.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(WorkerError::io(&path)(e)),
    };
    let result: plotter2_node::pipeline::PipelineResult =
        serde_json::from_slice(&text).map_err(|e| WorkerError::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
    Ok(result.address)
}
