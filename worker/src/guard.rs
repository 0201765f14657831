//! The guard: a small companion process that kills the worker's tasks when the worker dies,
//! even by `kill -9`.
//!
//! Tasks are started with `posix_spawn` (std does so when no `pre_exec` hook is set), which
//! does not copy the worker's address space the way `fork` does: on a busy worker that copy
//! cost more than running `true`. `posix_spawn` cannot set `PR_SET_PDEATHSIG`, so the worker
//! tells the guard, over a pipe, the process group of each task it starts (`+<pgid>`) and
//! ends (`-<pgid>`). When the pipe closes — the worker is gone, however it went — the guard
//! kills every group still listed, then exits. The guard runs in its own process group and
//! ignores SIGINT, SIGTERM and SIGHUP, so whatever stops the worker's group does not stop it
//! first.
//!
//! One gap remains: a worker killed between starting a task and listing its group (a few
//! microseconds) leaves that task running.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// The subcommand of the `plotter2` binary that runs [`serve`].
pub const SUBCOMMAND: &str = "worker-guard";

/// The worker's end of the pipe.
#[derive(Debug)]
pub struct Guard {
    pipe: tokio::sync::Mutex<Option<tokio::process::ChildStdin>>,
    _child: tokio::process::Child,
}

impl Guard {
    /// Starts `<program> worker-guard`.
    pub fn start(program: &Path) -> std::io::Result<Self> {
        let mut child = tokio::process::Command::new(program)
            .arg(SUBCOMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()?;
        let pipe = child.stdin.take();
        Ok(Self {
            pipe: tokio::sync::Mutex::new(pipe),
            _child: child,
        })
    }

    /// The task leading process group `pgid` dies with the worker.
    pub async fn watch(&self, pgid: i32) {
        self.say(format!("+{pgid}\n")).await;
    }

    /// The group `pgid` has ended.
    pub async fn release(&self, pgid: i32) {
        self.say(format!("-{pgid}\n")).await;
    }

    async fn say(&self, line: String) {
        let mut pipe = self.pipe.lock().await;
        let Some(p) = pipe.as_mut() else { return };
        if let Err(e) = p.write_all(line.as_bytes()).await {
            tracing::error!(
                "the worker's guard is gone ({e}): tasks will not be killed if this worker dies"
            );
            *pipe = None;
        }
    }
}

/// The guard process: reads `+<pgid>` / `-<pgid>` lines from stdin until it closes, then kills
/// every group still listed.
pub fn serve() -> std::io::Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: setting a signal's disposition to "ignore" has no preconditions.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let mut groups = BTreeSet::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let id = |rest: &str| rest.parse::<i32>().ok().filter(|&p| p > 1);
        if let Some(pgid) = line.strip_prefix('+').and_then(id) {
            groups.insert(pgid);
        } else if let Some(pgid) = line.strip_prefix('-').and_then(id) {
            groups.remove(&pgid);
        }
    }
    for pgid in groups {
        // SAFETY: kill(2) on a process group the worker created for one of its tasks.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    Ok(())
}
