//! Progress bars (indicatif) on stderr for what a terminal user waits on: push, get, and
//! `run --wait`. Drawn only when stderr is a terminal and the output is not `--json`; hidden
//! bars cost nothing, so callers report unconditionally.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use plotter2_node::progress::Progress;

/// A bar that is drawn, or a hidden one when stderr is not a terminal or `json` is asked.
/// Templates end in `{wide_bar}`: the bar takes what the line leaves, so it never wraps.
fn bar(json: bool, template: &str) -> ProgressBar {
    if json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let pb = ProgressBar::new(0).with_style(style);
    // Keeps elapsed time and rate moving while one large file is in flight.
    pb.enable_steady_tick(Duration::from_millis(250));
    pb
}

/// Bytes and files of a transfer (push, get). Cleared when dropped: a summary line follows.
pub struct Transfer {
    bar: ProgressBar,
    files: AtomicU64,
}

impl Transfer {
    pub fn new(verb: &str, json: bool) -> Self {
        let bar = bar(
            json,
            "{prefix} {bytes}/{total_bytes}, {msg}, {binary_bytes_per_sec}, eta {eta} [{wide_bar}]",
        );
        bar.set_prefix(verb.to_owned());
        Self {
            bar,
            files: AtomicU64::new(0),
        }
    }
}

impl Progress for Transfer {
    fn length(&self, files: u64, bytes: u64) {
        self.files.store(files, Ordering::Relaxed);
        self.bar.set_length(bytes);
        self.bar.set_message(format!("0/{files} files"));
    }

    fn position(&self, files: u64, bytes: u64) {
        self.bar.set_position(bytes);
        let total = self.files.load(Ordering::Relaxed);
        self.bar.set_message(format!("{files}/{total} files"));
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// The runs of a `run --wait`: how many ended, and of those left, how many run and wait.
pub struct Runs {
    bar: ProgressBar,
}

/// One poll's count of a sweep's runs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunCounts {
    pub succeeded: u64,
    /// Failed or cancelled.
    pub failed: u64,
    pub running: u64,
    /// Queued, or waiting for the runs they need.
    pub waiting: u64,
}

impl RunCounts {
    pub fn ended(&self) -> u64 {
        self.succeeded + self.failed
    }
}

impl std::fmt::Display for RunCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} succeeded, {} failed, {} running, {} queued",
            self.succeeded, self.failed, self.running, self.waiting
        )
    }
}

impl Runs {
    pub fn new(total: usize, json: bool) -> Self {
        let bar = bar(
            json,
            "runs {pos}/{len} ended: {msg}, eta {eta} [{wide_bar}]",
        );
        bar.set_length(total as u64);
        bar.set_message("asking their states");
        Self { bar }
    }

    pub fn show(&self, counts: RunCounts) {
        self.bar.set_position(counts.ended());
        self.bar.set_message(counts.to_string());
    }
}

impl Drop for Runs {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
