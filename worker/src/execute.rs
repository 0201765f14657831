//! One attempt of a `command` task: materialise the code bundle (cached by bundle id) into a
//! sandbox, substitute `{param}` and `{out}` in its argv, run it in its own process group with
//! a clean environment, log stdout and stderr, enforce the timeout and the log limit, and turn
//! `{out}` into an output bundle.
//!
//! Set-up (code, sandbox, needed outputs) that fails for a reason that may pass (the network,
//! the store, the disk, a cache entry gone) is retried here with the shared backoff, and
//! when it still fails the attempt is handed back to be run again ([`Ended::Retry`]): such a
//! failure is the worker's, not the task's, and must not end the run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use plotter2_node::bundle::Hash;
use plotter2_node::client::Client;
use plotter2_node::manifest::TaskKind;
use plotter2_node::protocol::{BundleDetail, Op, ReadOp, Reply, RunOutcome, RunOutput, RunRecord};
use plotter2_node::retry::{Backoff, Classify};
use plotter2_node::store::{BlobStore, PutJob};
use plotter2_node::{Address, WorkerName};
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

use crate::WorkerError;
use crate::cache::CodeCache;
use crate::guard::Guard;
use crate::log::{LOG_LIMIT, LiveLog};

/// How much of the log's end a failure reason quotes.
const TAIL_BYTES: usize = 2000;
/// Output files stored per blocking pass.
const OUTPUT_BATCH: usize = 256;

/// Set-up retries on this worker, before the attempt is handed back to run again (perhaps
/// elsewhere): long enough for a leader election or a store that restarts.
const SETUP_RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5))
    .with_deadline(Duration::from_secs(60));

/// Where a worker keeps things.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    /// `<home>/service`
    pub root: PathBuf,
    pub store: BlobStore,
    pub nats_url: String,
    /// Code bundles by id, in `<root>/.cache`.
    code: Arc<CodeCache>,
    /// Kills the tasks if this worker dies.
    pub guard: Arc<Guard>,
    /// Programs found on PATH: name → executable.
    programs: Arc<std::sync::Mutex<HashMap<String, PathBuf>>>,
    /// This worker's own binary, which runs pipelines (`plotter2 pipeline-run`).
    exe: PathBuf,
}

impl Sandboxes {
    pub fn new(
        root: PathBuf,
        store: BlobStore,
        nats_url: String,
        guard: Guard,
        exe: PathBuf,
    ) -> Self {
        Self {
            exe,
            code: Arc::new(CodeCache::new(root.join(".cache"))),
            root,
            store,
            nats_url,
            guard: Arc::new(guard),
            programs: Default::default(),
        }
    }

    /// Where `program` is: itself when it names a path (`./run.sh`, relative to the sandbox),
    /// else the first executable of that name on `path_var`, which the task's environment
    /// gets too. Found names are remembered.
    async fn resolve(&self, program: &str, path_var: &str) -> Option<PathBuf> {
        if program.contains('/') {
            return Some(PathBuf::from(program));
        }
        if let Some(p) = self.programs.lock().ok()?.get(program) {
            return Some(p.clone());
        }
        let (name, dirs) = (program.to_owned(), path_var.to_owned());
        let found = tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::PermissionsExt;
            std::env::split_paths(&dirs)
                .map(|d| d.join(&name))
                .find(|p| {
                    std::fs::metadata(p)
                        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                })
        })
        .await
        .ok()??;
        if let Ok(mut known) = self.programs.lock() {
            known.insert(program.to_owned(), found.clone());
        }
        Some(found)
    }

    /// The sandbox of one attempt (kept afterwards, with its log).
    pub fn sandbox(&self, run: &RunRecord, attempt: u32, worker: &WorkerName) -> PathBuf {
        self.root.join(format!("{}-a{attempt}-{worker}", run.id))
    }
}

/// How an attempt ended.
pub enum Ended {
    /// It ran, or could not for a reason of the task's own: its outcome, and its log
    /// (stdout+stderr, stored as a blob; none when empty).
    Finished {
        outcome: RunOutcome,
        log: Option<Hash>,
    },
    /// The worker could not set it up, or record what it did, for a reason that may pass:
    /// the run should be queued again.
    Retry { reason: String },
}

/// Runs one attempt and says how it ended. Set-up failures of the task's own (missing
/// executable, undefined param, a code bundle gone) are failures of the attempt, with the
/// reason in its log; passing ones are retried, then handed back ([`Ended::Retry`]).
pub async fn attempt(
    boxes: &Sandboxes,
    client: &Client,
    run: &RunRecord,
    attempt: u32,
    worker: &WorkerName,
    cancelled: impl Future<Output = ()>,
) -> Ended {
    if !runs_a_process(run) {
        return Ended::Finished {
            outcome: native(run),
            log: None,
        };
    }
    let sandbox = boxes.sandbox(run, attempt, worker);
    let log_path = sandbox.join("log.txt");
    let what = format!("setting up run {} (attempt {attempt})", run.id);
    let ran = match SETUP_RETRY
        .retry(&what, || prepare(boxes, client, run, &sandbox))
        .instrument(tracing::info_span!("setup"))
        .await
    {
        Ok(ready) => execute(boxes, client, run, &sandbox, &log_path, ready, cancelled)
            .instrument(tracing::info_span!("process"))
            .await
            .map_err(|e| (e.is_transient(), e.to_string())),
        Err(e) => Err((e.is_transient(), format!("set-up failed: {e}"))),
    };
    let outcome = match ran {
        Ok(o) => o,
        Err((true, reason)) => {
            note_in_log(&log_path, &reason).await;
            return Ended::Retry { reason };
        }
        Err((false, reason)) => RunOutcome::Failed { exit: None, reason },
    };
    if let RunOutcome::Failed { reason, .. } = &outcome {
        // The reason goes into the attempt's log too, so the log alone tells the story.
        note_in_log(&log_path, reason).await;
    }
    let log = store_log(boxes, &log_path).await;
    Ended::Finished { outcome, log }
}

async fn note_in_log(log_path: &Path, reason: &str) {
    if let Ok(mut f) = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .await
    {
        let _ = f
            .write_all(format!("\n[plotter2] {reason}\n").as_bytes())
            .await;
    }
}

/// Commands, and pipelines with steps, run as processes of their own.
fn runs_a_process(run: &RunRecord) -> bool {
    match run.definition.kind {
        TaskKind::Command => true,
        TaskKind::Pipeline => run.definition.steps.as_ref().is_some_and(|s| !s.is_empty()),
        TaskKind::Script => false,
    }
}

/// Tasks that end inside the worker, without a process. The empty pipeline does nothing and
/// succeeds at once with no output, which is how the dispatch path is measured without
/// process start-up (`cargo bench --bench runs`).
fn native(run: &RunRecord) -> RunOutcome {
    match run.definition.kind {
        TaskKind::Pipeline => RunOutcome::Succeeded {
            exit: 0,
            output: None,
        },
        kind => RunOutcome::Failed {
            exit: None,
            reason: format!(
                "task kind {kind:?} is not supported by this worker yet; command and pipeline \
                 tasks run"
            ),
        },
    }
}

/// A sandbox ready to run in.
struct Prepared {
    /// `{out}`, empty.
    out: PathBuf,
    /// task → folder holding its output, for `{needs.<task>.out}`.
    needs: Vec<(String, PathBuf)>,
    /// A pipeline's plan, beside its fetched inputs.
    plan: Option<PathBuf>,
}

/// Fills the sandbox afresh: the code tree, an empty `{out}`, the needed outputs.
async fn prepare(
    boxes: &Sandboxes,
    client: &Client,
    run: &RunRecord,
    sandbox: &Path,
) -> Result<Prepared, WorkerError> {
    let code = code_tree(boxes, client, run).await?;
    let out = sandbox.join("out");
    {
        // One trip to a blocking thread for the whole sandbox.
        let (code, sandbox, out) = (code.clone(), sandbox.to_owned(), out.clone());
        tokio::task::spawn_blocking(move || -> Result<(), WorkerError> {
            let io = WorkerError::io;
            match std::fs::remove_dir_all(&sandbox) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&sandbox)(e)),
            }
            plotter2_node::tree::copy_tree(&code, &sandbox)?;
            std::fs::create_dir_all(&out).map_err(io(&out))?;
            Ok(())
        })
        .await??;
    }
    let needs = needed_outputs(boxes, client, run, sandbox).await?;
    let plan = match run.definition.kind {
        TaskKind::Pipeline => Some(crate::pipeline::prepare(boxes, run, sandbox).await?),
        _ => None,
    };
    Ok(Prepared { out, needs, plan })
}

/// Runs the task in its prepared sandbox.
async fn execute(
    boxes: &Sandboxes,
    client: &Client,
    run: &RunRecord,
    sandbox: &Path,
    log_path: &Path,
    Prepared { out, needs, plan }: Prepared,
    cancelled: impl Future<Output = ()>,
) -> Result<RunOutcome, WorkerError> {
    let argv = match plan {
        Some(plan) => {
            let mut argv: Vec<String> = [
                boxes.exe.as_os_str(),
                "pipeline-run".as_ref(),
                plan.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
            ]
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
            if let Some(m) = run.definition.memory {
                argv.extend(["--memory".to_owned(), m.0.to_string()]);
            }
            argv
        }
        None => match substitute(&run.definition.run, &run.params, &out, &needs) {
            Ok(a) => a,
            Err(reason) => {
                return Ok(RunOutcome::Failed { exit: None, reason });
            }
        },
    };
    let Some((program, args)) = argv.split_first() else {
        return Ok(RunOutcome::Failed {
            exit: None,
            reason: "the task's run list is empty".into(),
        });
    };
    let path_var = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let Some(executable) = boxes.resolve(program, &path_var).await else {
        return Ok(RunOutcome::Failed {
            exit: None,
            reason: format!(
                "cannot start {program:?}: not found on the worker's PATH ({path_var}); is it installed?"
            ),
        });
    };
    let mut cmd = tokio::process::Command::new(&executable);
    cmd.arg0(program)
        .args(args)
        .current_dir(sandbox)
        .env_clear()
        .env("PATH", &path_var)
        .env("HOME", sandbox)
        .env("P2_RUN", run.id.to_string())
        .env("P2_NODE", run.node.to_string())
        .env("P2_OUT", &out)
        .env("P2_NATS", &boxes.nats_url)
        // Commands that speak OpenTelemetry (a `plotter2 push`, say) join the run's trace,
        // exporting where the worker does.
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("OTEL_")))
        .envs(
            plotter2_node::telemetry::current_traceparent()
                .map(|tp| (plotter2_node::telemetry::TRACEPARENT_ENV, tp)),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // No pre_exec hook, and the program given as a path: std then starts the task with
    // posix_spawn instead of fork (see `guard` for how the task still dies with this worker).
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Ok(RunOutcome::Failed {
                exit: None,
                reason: format!(
                    "cannot start {program:?} ({}): {e}; is it installed and executable?",
                    executable.display()
                ),
            });
        }
    };
    let pgid = child.id().and_then(|p| i32::try_from(p).ok());
    if let Some(pg) = pgid {
        boxes.guard.watch(pg).await;
    }
    let log = LiveLog::new(log_path, client.nats().clone(), &run.id);
    let mut over = log.over_limit();
    let responder = log.serve_requests(&run.id);
    let out_task = child.stdout.take().map(|s| log.pump(s));
    let err_task = child.stderr.take().map(|s| log.pump(s));
    let timeout = run.definition.timeout.map(|t| t.0);
    let sleep = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    let exit = tokio::select! {
        status = child.wait() => Exit::Exited(status.map_err(WorkerError::io(sandbox))?),
        _ = &mut sleep => Exit::TimedOut,
        _ = over.changed() => Exit::TooMuchOutput,
        () = cancelled => Exit::Cancelled,
    };
    if let Some(pg) = pgid {
        // Whatever the task started ends with it (and no leftover keeps its pipes open).
        // SAFETY: kill(2) on the process group we created for the task.
        unsafe { libc::kill(-pg, libc::SIGKILL) };
    }
    if !matches!(exit, Exit::Exited(_)) {
        let _ = child.wait().await;
    }
    if let Some(pg) = pgid {
        boxes.guard.release(pg).await;
    }
    for t in [out_task, err_task].into_iter().flatten() {
        let _ = t.await;
    }
    responder.abort();
    log.flush().await;
    match exit {
        Exit::Cancelled => Ok(RunOutcome::Failed {
            exit: None,
            reason: "cancelled; the process group was killed".into(),
        }),
        Exit::TimedOut => Ok(RunOutcome::Failed {
            exit: None,
            reason: format!(
                "timed out after {}; the process group was killed",
                run.definition
                    .timeout
                    .map(|t| format!("{:?}", t.0))
                    .unwrap_or_default()
            ),
        }),
        Exit::TooMuchOutput => Ok(RunOutcome::Failed {
            exit: None,
            reason: format!(
                "wrote more than {} MiB to stdout/stderr and was killed; write results into {{out}} instead",
                LOG_LIMIT >> 20
            ),
        }),
        Exit::Exited(status) if status.success() => {
            let at = match run.definition.kind {
                TaskKind::Pipeline => crate::pipeline::output_address(sandbox).await?,
                _ => None,
            };
            let output = store_output(boxes, run, &out, at.as_ref().unwrap_or(&run.node))
                .instrument(tracing::info_span!("output_upload"))
                .await?;
            Ok(RunOutcome::Succeeded {
                exit: 0,
                output: output.map(Box::new),
            })
        }
        Exit::Exited(status) => {
            let tail = log_tail(log_path).await;
            let how = match status.code() {
                Some(c) => format!("exit status {c}"),
                None => format!("killed by a signal ({status})"),
            };
            Ok(RunOutcome::Failed {
                exit: status.code(),
                reason: format!("{how}; last output:\n{tail}"),
            })
        }
    }
}

enum Exit {
    Exited(std::process::ExitStatus),
    TimedOut,
    TooMuchOutput,
    Cancelled,
}

async fn log_tail(path: &Path) -> String {
    let bytes = tokio::fs::read(path).await.unwrap_or_default();
    let start = bytes.len().saturating_sub(TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The code bundle's tree in the cache, fetched once per bundle id (and home).
async fn code_tree(
    boxes: &Sandboxes,
    client: &Client,
    run: &RunRecord,
) -> Result<PathBuf, WorkerError> {
    boxes
        .code
        .get_or_fill(&run.code, |building| async move {
            let Reply::Node(view) = client
                .call(Op::Read(ReadOp::Show {
                    addr: run.defined_at.clone(),
                }))
                .await?
            else {
                return Err(WorkerError::Unexpected { request: "show" });
            };
            let version = view
                .bundles
                .iter()
                .find(|b| b.id == run.code)
                .map(|b| b.version)
                .ok_or_else(|| WorkerError::CodeGone {
                    code: run.code,
                    addr: run.defined_at.clone(),
                })?;
            let detail = bundle_detail(client, &run.defined_at, version, run.code).await?;
            // Into a folder of its own that nobody reads yet: the cache places it.
            plotter2_node::tree::materialise(&boxes.store, &detail, &building, false).await?;
            Ok(())
        })
        .await
}

/// Version `version` of `addr`, which must be bundle `id`.
async fn bundle_detail(
    client: &Client,
    addr: &Address,
    version: u64,
    id: Hash,
) -> Result<BundleDetail, WorkerError> {
    let Reply::Bundle(detail) = client
        .call(Op::Read(ReadOp::Bundle {
            addr: addr.clone(),
            version: Some(version),
        }))
        .await?
    else {
        return Err(WorkerError::Unexpected { request: "bundle" });
    };
    if detail.version.id != id {
        return Err(WorkerError::WrongBundle {
            addr: addr.clone(),
            version,
            found: detail.version.id,
            expected: id,
        });
    }
    Ok(detail)
}

/// The outputs of the runs this one needs, each in `<sandbox>/needs/<task>` (empty when the
/// needed run wrote nothing): task → folder, for `{needs.<task>.out}`.
async fn needed_outputs(
    boxes: &Sandboxes,
    client: &Client,
    run: &RunRecord,
    sandbox: &Path,
) -> Result<Vec<(String, PathBuf)>, WorkerError> {
    let mut out = Vec::with_capacity(run.needs.len());
    for need in &run.needs {
        let dir = sandbox.join("needs").join(&need.task);
        match &need.output {
            Some(b) => {
                let at = b.at.as_ref().unwrap_or(&run.node);
                let detail = bundle_detail(client, at, b.version, b.id).await?;
                // The sandbox is this attempt's alone; replace whatever the code put there.
                plotter2_node::tree::materialise(&boxes.store, &detail, &dir, true).await?;
            }
            None => tokio::fs::create_dir_all(&dir)
                .await
                .map_err(WorkerError::io(&dir))?,
        }
        out.push((need.task.clone(), dir));
    }
    Ok(out)
}

/// Replaces `{name}` in each argument by the param's value (strings bare, other values as
/// JSON; dotted names reach into objects), `{out}` by the output folder and
/// `{needs.<task>.out}` by the folder holding that needed run's output.
pub fn substitute(
    run: &Value,
    params: &Map<String, Value>,
    out: &Path,
    needs: &[(String, PathBuf)],
) -> Result<Vec<String>, String> {
    let list = run
        .as_array()
        .ok_or_else(|| "a command task's run must be a list of strings".to_owned())?;
    let mut argv = Vec::with_capacity(list.len());
    for arg in list {
        let text = arg
            .as_str()
            .ok_or_else(|| "every argument of run must be a string".to_owned())?;
        let mut done = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let Some(len) = rest[open..].find('}') else {
                break;
            };
            let name = &rest[open + 1..open + len];
            let need = name
                .strip_prefix("needs.")
                .and_then(|n| n.strip_suffix(".out"));
            let value = if name == "out" {
                out.to_string_lossy().into_owned()
            } else if let Some(task) = need
                && !params.contains_key("needs")
            {
                match needs.iter().find(|(t, _)| t == task) {
                    Some((_, dir)) => dir.to_string_lossy().into_owned(),
                    None => {
                        let known: Vec<&str> = needs.iter().map(|(t, _)| t.as_str()).collect();
                        return Err(format!(
                            "the command uses {{{name}}}, but the task does not need {task:?} (it needs: {}); add it to the task's needs",
                            known.join(", ")
                        ));
                    }
                }
            } else {
                let mut cur: Option<&Value> = None;
                for (i, part) in name.split('.').enumerate() {
                    cur = if i == 0 {
                        params.get(part)
                    } else {
                        cur.and_then(|v| v.get(part))
                    };
                }
                match cur {
                    Some(Value::String(s)) => s.clone(),
                    Some(v) => v.to_string(),
                    None => {
                        let known: Vec<&str> = params.keys().map(String::as_str).collect();
                        return Err(format!(
                            "the command uses {{{name}}}, but no param {name:?} is defined (params: {}); set it on the node or with --set",
                            known.join(", ")
                        ));
                    }
                }
            };
            done.push_str(&rest[..open]);
            done.push_str(&value);
            rest = &rest[open + len + 1..];
        }
        done.push_str(rest);
        argv.push(done);
    }
    Ok(argv)
}

/// Stores the attempt's log as a blob; `None` when it is empty, and (with a warning) when
/// that fails, since the attempt's result matters more than its log.
async fn store_log(boxes: &Sandboxes, path: &Path) -> Option<Hash> {
    let p = path.to_owned();
    let hashed = tokio::task::spawn_blocking(move || {
        std::fs::File::open(&p).and_then(plotter2_node::bundle::hash_reader)
    })
    .await;
    let (hash, size) = match hashed {
        Ok(Ok((_, 0))) | Err(_) | Ok(Err(_)) => return None, // nothing (or nothing readable) to keep
        Ok(Ok(h)) => h,
    };
    match boxes.store.put_file(&hash, path, size, false).await {
        Ok(_) => Some(hash),
        Err(e) => {
            tracing::warn!("cannot store the log {}: {e}", path.display());
            None
        }
    }
}

/// Turns `{out}` into a bundle of `node` (the run's, or one below it a pipeline handed its
/// output off to): a manifest recording the provenance is added when the task wrote none;
/// blobs go to the store. `None` when `{out}` is empty.
async fn store_output(
    boxes: &Sandboxes,
    run: &RunRecord,
    out: &Path,
    node: &Address,
) -> Result<Option<RunOutput>, WorkerError> {
    let empty = match tokio::fs::read_dir(out).await {
        Ok(mut d) => matches!(d.next_entry().await, Ok(None)),
        Err(_) => true,
    };
    if empty {
        return Ok(None);
    }
    let manifest_path = out.join(plotter2_node::tree::MANIFEST);
    if !tokio::fs::try_exists(&manifest_path).await.unwrap_or(false) {
        let manifest = serde_json::json!({
            "manifest_version": 1,
            "meta": {
                "address": node.to_string(),
                "run": run.id.to_string(),
                "task": run.task,
                "params": run.params,
                "code": run.code.to_string(),
                "inputs": run.inputs.iter().chain(run.selected.iter().map(|s| &s.bundle))
                    .map(|h| h.to_string()).collect::<Vec<_>>(),
            }
        });
        tokio::fs::write(&manifest_path, manifest.to_string())
            .await
            .map_err(WorkerError::io(&manifest_path))?;
    }
    let root = out.to_owned();
    let node: Address = node.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        plotter2_node::tree::scan(&root, Some(&node), plotter2_node::tree::default_threads())
    })
    .await?
    .map_err(WorkerError::BadOutput)?;
    // Copied, never linked: a process the task left behind could still write to its
    // outputs. In batches, with one sync for all, so an output of many files is quick.
    let jobs: Vec<PutJob> = scanned
        .index
        .files()
        .iter()
        .map(|entry| PutJob {
            blob: entry.blob,
            path: scanned.file_path(entry),
            size: entry.size,
            may_link: false,
        })
        .collect();
    for batch in jobs.chunks(OUTPUT_BATCH) {
        boxes.store.put_files(batch.to_vec()).await?;
    }
    // The index last: a stored index names only blobs that are there.
    let bundle = boxes.store.put_index(&scanned.index).await?;
    boxes.store.sync().await?;
    Ok(Some(RunOutput {
        bundle,
        files: scanned.index.files().len() as u64,
        bytes: scanned.index.total_bytes(),
        manifest: scanned.manifest,
        paths: scanned.index.paths_for_rules(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn substitution_fills_params_and_out_and_names_what_is_missing() {
        let params = json!({"lr": 0.1, "name": "adam", "model": {"depth": 3}});
        let params = params.as_object().unwrap();
        let argv = substitute(
            &json!([
                "python3",
                "train.py",
                "--lr",
                "{lr}",
                "--opt={name}",
                "{model.depth}",
                "--out",
                "{out}",
                "{needs.train.out}/weights.csv"
            ]),
            params,
            Path::new("/s/out"),
            &[("train".into(), PathBuf::from("/s/needs/train"))],
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "python3",
                "train.py",
                "--lr",
                "0.1",
                "--opt=adam",
                "3",
                "--out",
                "/s/out",
                "/s/needs/train/weights.csv"
            ]
        );
        let e = substitute(&json!(["x", "{seed}"]), params, Path::new("/o"), &[]).unwrap_err();
        assert!(e.contains("{seed}") && e.contains("lr"), "{e}");
        assert_eq!(
            substitute(
                &json!(["echo", "{not closed"]),
                params,
                Path::new("/o"),
                &[]
            )
            .unwrap(),
            ["echo", "{not closed"]
        );
        let e = substitute(
            &json!(["x", "{needs.eval.out}"]),
            params,
            Path::new("/o"),
            &[],
        )
        .unwrap_err();
        assert!(e.contains("does not need \"eval\""), "{e}");
    }
}
