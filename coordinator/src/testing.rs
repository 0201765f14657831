//! Builders shared by the coordinator's unit tests: registries, code bundles, runs and
//! reports.

use plotter2_node::Address;
use plotter2_node::bundle::Hash;
use plotter2_node::protocol::{ApiError, AttemptUpdate, RunOutcome, RunRecord};

use crate::registry::Registry;
use crate::types::Command;
use plotter2_node::bundle::{BundlePath, FileEntry, FileIndex};
use plotter2_node::manifest::Manifest;
use plotter2_node::protocol::{RequestId, RunOutput, UserName, WriteOp, WriteReceipt};
use serde_json::json;

pub fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}

pub fn apply(r: &mut Registry, op: WriteOp) -> Result<WriteReceipt, ApiError> {
    let n = r.request_count() + 1;
    r.apply(
        Command {
            id: RequestId::new(),
            user: UserName::parse("tali").unwrap(),
            time_ms: 1000 + n,
            trace: None,
            op,
        },
        n,
    )
}

/// A file index of `files` and a validated `manifest`.
pub fn bundle(files: &[(&str, &[u8])], manifest: serde_json::Value) -> (FileIndex, Manifest) {
    let index = FileIndex::new(
        files
            .iter()
            .map(|(p, c)| FileEntry {
                path: BundlePath::parse(p).unwrap(),
                blob: Hash::of(c),
                size: c.len() as u64,
                mode: 0o644,
            })
            .collect(),
    )
    .unwrap();
    let manifest = Manifest::from_json(manifest.to_string().as_bytes()).unwrap();
    (index, manifest)
}

/// An ingest at `a` of a package with these tasks.
pub fn code_at(a: &str, tasks: serde_json::Value) -> WriteOp {
    let (index, manifest) = bundle(
        &[("run.sh", tasks.to_string().as_bytes())],
        json!({"manifest_version": 1, "contains": {"package": {"tasks": tasks}}}),
    );
    ingest(a, &index, manifest)
}

/// The `ingest` at `a` of a bundle with this index (whose blob the stager stored) and manifest.
pub fn ingest(a: &str, index: &FileIndex, manifest: Manifest) -> WriteOp {
    WriteOp::Ingest {
        addr: addr(a),
        bundle: index.id(),
        files: index.files().len() as u64,
        bytes: index.total_bytes(),
        manifest: Box::new(manifest),
        paths: index.paths_for_rules(),
    }
}

pub fn registry_with(tasks: serde_json::Value) -> Registry {
    let mut r = Registry::default();
    apply(&mut r, code_at("/e", tasks)).unwrap();
    r
}

pub fn run(a: &str, task: &str, set: &[&str], sweep: &[&str]) -> WriteOp {
    WriteOp::Run {
        addr: addr(a),
        task: task.into(),
        set: set.iter().map(|s| s.parse().unwrap()).collect(),
        sweep: sweep.iter().map(|s| s.parse().unwrap()).collect(),
        force: false,
    }
}

/// An output bundle holding one file `weights.csv`.
pub fn output(content: &[u8]) -> RunOutput {
    output_of(&[("weights.csv", content)], json!({"manifest_version": 1}))
}

/// An output bundle of these files and this manifest.
pub fn output_of(files: &[(&str, &[u8])], manifest: serde_json::Value) -> RunOutput {
    let (index, manifest) = bundle(files, manifest);
    RunOutput {
        bundle: index.id(),
        files: index.files().len() as u64,
        bytes: index.total_bytes(),
        manifest,
        paths: index.paths_for_rules(),
    }
}

pub fn train_output_id() -> Hash {
    output(b"weights").bundle
}

/// Applies one report by worker `w` for the pool `/`; every item must be accepted or
/// refused, never fail the request.
pub fn report(r: &mut Registry, items: Vec<AttemptUpdate>) -> WriteReceipt {
    apply(
        r,
        WriteOp::Attempts {
            pool: Address::root(),
            worker: "w".into(),
            items,
        },
    )
    .unwrap()
}

pub fn started(rec: &RunRecord) -> AttemptUpdate {
    AttemptUpdate::Started {
        node: rec.node.clone(),
        run: rec.id,
        attempt: rec.attempt,
    }
}

pub fn succeeded(rec: &RunRecord, out: Option<RunOutput>) -> AttemptUpdate {
    AttemptUpdate::Finished {
        node: rec.node.clone(),
        run: rec.id,
        attempt: rec.attempt,
        outcome: RunOutcome::Succeeded {
            exit: 0,
            output: out.map(Box::new),
        },
        log: None,
    }
}

pub fn failed(rec: &RunRecord, reason: &str) -> AttemptUpdate {
    AttemptUpdate::Finished {
        node: rec.node.clone(),
        run: rec.id,
        attempt: rec.attempt,
        outcome: RunOutcome::Failed {
            exit: Some(1),
            reason: reason.into(),
        },
        log: None,
    }
}
