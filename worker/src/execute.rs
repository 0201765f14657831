//! One attempt of a `command` task: materialise the code bundle (cached by bundle id) into a
//! sandbox, substitute `{param}` and `{out}` in its argv, run it in its own process group with
//! a clean environment, log stdout and stderr, enforce the timeout and the log limit, and turn
//! `{out}` into an output bundle.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use plotter2_node::Address;
use plotter2_node::client::Client;
use plotter2_node::manifest::TaskKind;
use plotter2_node::protocol::{
    Op, ReadOp, Reply, RunOutcome, RunOutput, RunRecord, log_request_subject, log_subject,
};
use plotter2_node::store::BlobStore;
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::WorkerError;

/// Output beyond this on stdout+stderr ends the attempt: results belong in `{out}`.
pub const LOG_LIMIT: u64 = 64 * 1024 * 1024;
/// How much of the log's end a failure reason quotes.
const TAIL_BYTES: usize = 2000;

/// Where a worker keeps things.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    /// `<home>/service`
    pub root: PathBuf,
    pub store: BlobStore,
    pub nats_url: String,
    /// One code download at a time: attempts of the same code wait for the first.
    pub fetching: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Sandboxes {
    fn cache(&self, code: &plotter2_node::bundle::Hash) -> PathBuf {
        self.root.join(".cache").join(code.hex())
    }

    /// The sandbox of one attempt (kept afterwards, with its log).
    pub fn sandbox(&self, run: &RunRecord, attempt: u32, worker: &str) -> PathBuf {
        self.root.join(format!("{}-a{attempt}-{worker}", run.id))
    }
}

/// Runs one attempt and says how it ended. Set-up failures (missing executable, undefined
/// param, unreadable code) are failures of the attempt, with the reason in its log.
pub async fn attempt(
    boxes: &Sandboxes,
    client: &Client,
    run: &RunRecord,
    attempt: u32,
    worker: &str,
    cancelled: impl Future<Output = ()>,
) -> (RunOutcome, PathBuf) {
    let sandbox = boxes.sandbox(run, attempt, worker);
    let log_path = sandbox.join("log.txt");
    let outcome = match prepare_and_run(boxes, client, run, &sandbox, &log_path, cancelled).await {
        Ok(o) => o,
        Err(e) => RunOutcome::Failed {
            exit: None,
            reason: format!("set-up failed: {e}"),
        },
    };
    if let RunOutcome::Failed { reason, .. } = &outcome {
        // The reason goes into the attempt's log too, so the log alone tells the story.
        if let Ok(mut f) = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .await
        {
            let _ = f
                .write_all(format!("\n[plotter2] {reason}\n").as_bytes())
                .await;
        }
    }
    (outcome, log_path)
}

async fn prepare_and_run(
    boxes: &Sandboxes,
    client: &Client,
    run: &RunRecord,
    sandbox: &Path,
    log_path: &Path,
    cancelled: impl Future<Output = ()>,
) -> Result<RunOutcome, WorkerError> {
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e: std::io::Error| WorkerError::Io(format!("{}: {e}", p.display()))
    };
    if run.definition.kind != TaskKind::Command {
        return Ok(RunOutcome::Failed {
            exit: None,
            reason: format!(
                "task kind {:?} is not supported by this worker yet; only command tasks run",
                run.definition.kind
            ),
        });
    }
    let _ = tokio::fs::remove_dir_all(sandbox).await;
    tokio::fs::create_dir_all(sandbox)
        .await
        .map_err(io(sandbox))?;
    let code = code_tree(boxes, client, run).await?;
    let (from, to) = (code.clone(), sandbox.to_owned());
    tokio::task::spawn_blocking(move || plotter2_stager::tree::copy_tree(&from, &to))
        .await
        .map_err(|e| WorkerError::Io(e.to_string()))??;
    let out = sandbox.join("out");
    tokio::fs::create_dir_all(&out).await.map_err(io(&out))?;

    let argv = match substitute(&run.definition.run, &run.params, &out) {
        Ok(a) => a,
        Err(reason) => {
            return Ok(RunOutcome::Failed { exit: None, reason });
        }
    };
    let Some((program, args)) = argv.split_first() else {
        return Ok(RunOutcome::Failed {
            exit: None,
            reason: "the task's run list is empty".into(),
        });
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(sandbox)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
        )
        .env("HOME", sandbox)
        .env("P2_RUN", run.id.to_string())
        .env("P2_NODE", run.node.to_string())
        .env("P2_OUT", &out)
        .env("P2_NATS", &boxes.nats_url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe prctl between fork and exec. The task dies with this
    // worker even when the worker is killed with SIGKILL, so a crashed worker leaves no run
    // going on behind the one that takes its delivery over.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return Ok(RunOutcome::Failed {
                exit: None,
                reason: format!(
                    "cannot start {program:?}: {e}; is it installed and on the worker's PATH?"
                ),
            });
        }
    };
    let pgid = child.id().map(|p| p as i32);
    let log = tokio::fs::File::create(log_path)
        .await
        .map_err(io(log_path))?;
    // The log file and how much is in it, under one lock so offsets match the file.
    let log = std::sync::Arc::new(tokio::sync::Mutex::new((log, 0u64)));
    let (over_tx, mut over_rx) = tokio::sync::watch::channel(false);
    let live = log_subject(&run.id);
    let nats = client.nats().clone();
    let pump = |mut r: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        let log = log.clone();
        let over = over_tx.clone();
        let nats = nats.clone();
        let live = live.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match r.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut guard = log.lock().await;
                let (file, written) = &mut *guard;
                if *written + n as u64 > LOG_LIMIT {
                    let _ = over.send(true);
                    continue; // keep draining so the child is not blocked until it is killed
                }
                let _ = file.write_all(&buf[..n]).await;
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("offset", written.to_string().as_str());
                *written += n as u64;
                // Followers (`plotter2 logs -f`) get it live; nobody listening is fine.
                let _ = nats
                    .publish_with_headers(
                        live.clone(),
                        headers,
                        bytes::Bytes::copy_from_slice(&buf[..n]),
                    )
                    .await;
            }
        })
    };
    // Answers "what is in the log so far" while the attempt runs.
    let responder = {
        let nats = nats.clone();
        let log = log.clone();
        let path = log_path.to_owned();
        let subject = log_request_subject(&run.id);
        tokio::spawn(async move {
            let Ok(mut sub) = nats.subscribe(subject).await else {
                return;
            };
            while let Some(req) = futures::StreamExt::next(&mut sub).await {
                let Some(reply) = req.reply else { continue };
                let upto = {
                    let mut g = log.lock().await;
                    let _ = g.0.flush().await;
                    g.1
                };
                let start = upto.saturating_sub(LOG_REPLY_BYTES);
                let bytes = read_range(&path, start, upto).await;
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("offset", start.to_string().as_str());
                let _ = nats
                    .publish_with_headers(reply, headers, bytes.into())
                    .await;
            }
        })
    };
    let out_task = child.stdout.take().map(|s| pump(Box::new(s)));
    let err_task = child.stderr.take().map(|s| pump(Box::new(s)));
    let timeout = run.definition.timeout.map(|t| t.0);
    let sleep = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    let ended = tokio::select! {
        status = child.wait() => Ended::Exited(status.map_err(io(sandbox))?),
        _ = &mut sleep => Ended::TimedOut,
        _ = over_rx.changed() => Ended::TooMuchOutput,
        () = cancelled => Ended::Cancelled,
    };
    if !matches!(ended, Ended::Exited(_)) {
        if let Some(pg) = pgid {
            // SAFETY: kill(2) on the process group we created for the child.
            unsafe { libc::kill(-pg, libc::SIGKILL) };
        }
        let _ = child.wait().await;
    }
    for t in [out_task, err_task].into_iter().flatten() {
        let _ = t.await;
    }
    responder.abort();
    let _ = log.lock().await.0.flush().await;
    match ended {
        Ended::Cancelled => Ok(RunOutcome::Failed {
            exit: None,
            reason: "cancelled; the process group was killed".into(),
        }),
        Ended::TimedOut => Ok(RunOutcome::Failed {
            exit: None,
            reason: format!(
                "timed out after {}; the process group was killed",
                run.definition
                    .timeout
                    .map(|t| format!("{:?}", t.0))
                    .unwrap_or_default()
            ),
        }),
        Ended::TooMuchOutput => Ok(RunOutcome::Failed {
            exit: None,
            reason: format!(
                "wrote more than {} MiB to stdout/stderr and was killed; write results into {{out}} instead",
                LOG_LIMIT >> 20
            ),
        }),
        Ended::Exited(status) if status.success() => {
            let output = store_output(boxes, run, &out).await?;
            Ok(RunOutcome::Succeeded {
                exit: 0,
                output: output.map(Box::new),
            })
        }
        Ended::Exited(status) => {
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

enum Ended {
    Exited(std::process::ExitStatus),
    TimedOut,
    TooMuchOutput,
    Cancelled,
}

/// The most a "log so far" answer carries (its end; older bytes are in the file).
const LOG_REPLY_BYTES: u64 = 4 * 1024 * 1024;

async fn read_range(path: &Path, start: u64, end: u64) -> Vec<u8> {
    use tokio::io::AsyncSeekExt;
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return Vec::new();
    };
    if f.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return Vec::new();
    }
    let mut buf = vec![0u8; (end - start) as usize];
    match f.read_exact(&mut buf).await {
        Ok(_) => buf,
        Err(_) => Vec::new(),
    }
}

async fn log_tail(path: &Path) -> String {
    let bytes = tokio::fs::read(path).await.unwrap_or_default();
    let start = bytes.len().saturating_sub(TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The code bundle's tree in the cache, fetched once per bundle id.
async fn code_tree(
    boxes: &Sandboxes,
    client: &Client,
    run: &RunRecord,
) -> Result<PathBuf, WorkerError> {
    let dir = boxes.cache(&run.code);
    let _one_at_a_time = boxes.fetching.lock().await;
    if tokio::fs::try_exists(&dir).await.unwrap_or(false) {
        return Ok(dir);
    }
    let Reply::Node(view) = client
        .call(Op::Read(ReadOp::Show {
            addr: run.defined_at.clone(),
        }))
        .await?
    else {
        return Err(WorkerError::Io("unexpected answer to show".into()));
    };
    let version = view
        .bundles
        .iter()
        .find(|b| b.id == run.code)
        .map(|b| b.version)
        .ok_or_else(|| {
            WorkerError::Io(format!(
                "code bundle {} is no longer at {}",
                run.code, run.defined_at
            ))
        })?;
    let Reply::Bundle(detail) = client
        .call(Op::Read(ReadOp::Bundle {
            addr: run.defined_at.clone(),
            version: Some(version),
        }))
        .await?
    else {
        return Err(WorkerError::Io("unexpected answer to bundle".into()));
    };
    // `replace` builds beside the final name and renames: concurrent attempts are safe.
    plotter2_stager::get::materialise(&boxes.store, &detail, &dir, true).await?;
    Ok(dir)
}

/// Replaces `{name}` in each argument by the param's value (strings bare, other values as
/// JSON; dotted names reach into objects) and `{out}` by the output folder.
pub fn substitute(
    run: &Value,
    params: &Map<String, Value>,
    out: &Path,
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
            let value = if name == "out" {
                out.to_string_lossy().into_owned()
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

/// Turns `{out}` into a bundle of the run's node: a manifest recording the provenance is
/// added when the task wrote none; blobs go to the store. `None` when `{out}` is empty.
async fn store_output(
    boxes: &Sandboxes,
    run: &RunRecord,
    out: &Path,
) -> Result<Option<RunOutput>, WorkerError> {
    let empty = match tokio::fs::read_dir(out).await {
        Ok(mut d) => matches!(d.next_entry().await, Ok(None)),
        Err(_) => true,
    };
    if empty {
        return Ok(None);
    }
    let manifest_path = out.join(plotter2_stager::tree::MANIFEST);
    if !tokio::fs::try_exists(&manifest_path).await.unwrap_or(false) {
        let manifest = serde_json::json!({
            "manifest_version": 1,
            "meta": {
                "address": run.node.to_string(),
                "run": run.id.to_string(),
                "task": run.task,
                "params": run.params,
                "code": run.code.to_string(),
                "inputs": run.inputs.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            }
        });
        tokio::fs::write(&manifest_path, manifest.to_string())
            .await
            .map_err(|e| WorkerError::Io(format!("{}: {e}", manifest_path.display())))?;
    }
    let root = out.to_owned();
    let node: Address = run.node.clone();
    let scanned = tokio::task::spawn_blocking(move || {
        plotter2_stager::tree::scan(&root, Some(&node), plotter2_stager::tree::default_threads())
    })
    .await
    .map_err(|e| WorkerError::Io(e.to_string()))?
    .map_err(|e| WorkerError::Io(format!("the output in {{out}} is not a valid bundle: {e}")))?;
    for (entry, file) in scanned.entries() {
        boxes
            .store
            .put_file(&entry.blob, &file.fs_path, entry.size, false)
            .await?;
    }
    boxes.store.sync().await?;
    Ok(Some(RunOutput {
        bundle: scanned.index.id(),
        index: scanned.index,
        manifest: scanned.manifest,
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
                "{out}"
            ]),
            params,
            Path::new("/s/out"),
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
                "/s/out"
            ]
        );
        let e = substitute(&json!(["x", "{seed}"]), params, Path::new("/o")).unwrap_err();
        assert!(e.contains("{seed}") && e.contains("lr"), "{e}");
        assert_eq!(
            substitute(&json!(["echo", "{not closed"]), params, Path::new("/o")).unwrap(),
            ["echo", "{not closed"]
        );
    }
}
