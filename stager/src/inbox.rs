//! The inbox: watching it, deciding when a folder is a complete bundle, and feeding ready
//! folders to the pipeline, a few at a time.
//!
//! The readiness rule: a folder directly in the inbox is complete when it holds a `READY`
//! file, or when it arrived by rename (the safe way to drop: write under `inbox/.incoming/`,
//! then rename into `inbox/`). A folder made in place (`mkdir inbox/x`) waits for `READY`.
//! Events are hints: each one triggers a rescan of the inbox, and a timer rescans anyway.
//! Folders found at start-up (or after the kernel's event queue overflowed) arrived while no
//! one watched and are taken as renamed in.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{CreateKind, EventKind, ModifyKind, RenameMode};
use notify::{RecursiveMode, Watcher};
use plotter2_node::client::Client;
use plotter2_node::store::BlobStore;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::StagerError;
use crate::journal::{Spool, Step};
use crate::pipeline::{Outcome, Pipeline, blocking};
use plotter2_node::tree::READY;

/// Where writers stage a bundle before renaming it into the inbox.
pub const INCOMING: &str = ".incoming";
/// Where refused bundles go, each beside `<name>.error.txt`.
pub const REJECTED: &str = "rejected";
/// Bundles ingested at once: one that waits (a store or coordinator away, a slow upload)
/// does not hold up the others.
const INGEST_CONCURRENCY: usize = 4;

/// Everything a stager needs.
#[derive(Debug, Clone)]
pub struct StagerConfig {
    /// Names this stager to pushers (chunks go to `p2.stager.<name>.…`).
    pub name: String,
    pub inbox: PathBuf,
    /// The spool (`<home>/temp`).
    pub spool: PathBuf,
    pub store: BlobStore,
    pub client: Client,
    /// How often the inbox is rescanned without an event.
    pub rescan_every: Duration,
    /// Test-only: kill the process right after journaling this step.
    pub crash_at: Option<Step>,
    pub hash_threads: usize,
}

/// Runs the stager until `shutdown` resolves: resumes the spool, then watches the inbox and
/// serves pushes.
pub async fn run(
    config: StagerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StagerError> {
    config.store.check().await?;
    for dir in [
        config.inbox.clone(),
        config.inbox.join(INCOMING),
        config.inbox.join(REJECTED),
    ] {
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(StagerError::io(&dir))?;
    }
    let spool_dir = config.spool.clone();
    let spool = blocking(move || Spool::open(&spool_dir)).await?;
    let pipeline = Pipeline {
        spool: spool.clone(),
        inbox: config.inbox.clone(),
        store: config.store.clone(),
        client: config.client.clone(),
        hash_threads: config.hash_threads,
        crash_at: config.crash_at,
    };
    let push = tokio::spawn(crate::push::serve(
        config.client.clone(),
        config.name.clone(),
        config.store.clone(),
        config.spool.join(crate::push::PARTS_DIR),
    ));

    let status = tokio::spawn(answer_status(
        config.client.nats().clone(),
        config.name.clone(),
        config.inbox.display().to_string(),
    ));
    // Watch before the first scan, so nothing that arrives in between goes unseen.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })
    .map_err(|e| watch_err(&config.inbox, e))?;
    watcher
        .watch(&config.inbox, RecursiveMode::NonRecursive)
        .map_err(|e| watch_err(&config.inbox, e))?;
    let mut state = Readiness::default();

    let work = async {
        // Entries in flight, each with the inbox folder it came from (`None`: resumed).
        let mut running: JoinSet<(Option<String>, Result<Outcome, StagerError>)> = JoinSet::new();
        let mut busy: HashSet<String> = HashSet::new();
        let pending = blocking({
            let spool = spool.clone();
            move || spool.load_all()
        })
        .await?;
        if !pending.is_empty() {
            tracing::info!(entries = pending.len(), "resuming the spool");
        }
        for entry in pending {
            let p = pipeline.clone();
            running.spawn(async move { (None, p.drive(entry).await) });
        }
        state.trust_everything_present(&config.inbox).await?;
        tracing::info!(inbox = %config.inbox.display(), stager = %config.name, "stager ready");
        let mut tick = tokio::time::interval(config.rescan_every);
        let mut due = true;
        loop {
            if due {
                due = false;
                for name in state.ready(&config.inbox).await? {
                    if busy.contains(&name) {
                        continue;
                    }
                    if running.len() >= INGEST_CONCURRENCY {
                        // Look again when a slot frees up.
                        due = true;
                        break;
                    }
                    busy.insert(name.clone());
                    let p = pipeline.clone();
                    running.spawn(async move {
                        let outcome = p.admit(&name).await;
                        (Some(name), outcome)
                    });
                }
            }
            tokio::select! {
                ev = rx.recv() => {
                    let Some(ev) = ev else { break };
                    due |= state.note(ev, &config.inbox, &mut watcher).await?;
                    while let Ok(ev) = rx.try_recv() {
                        due |= state.note(ev, &config.inbox, &mut watcher).await?;
                    }
                    // Our own scans open the inbox, which inotify reports: only events that
                    // can make a folder ready make a scan due, or scanning would feed itself.
                }
                _ = tick.tick() => due = true,
                Some(done) = running.join_next(), if !running.is_empty() => {
                    let (name, outcome) = match done {
                        Ok(done) => done,
                        Err(e) => (None, Err(StagerError::Join(e))),
                    };
                    if let Some(name) = &name {
                        busy.remove(name);
                        state.forget(name, &config.inbox, &mut watcher);
                    }
                    match outcome {
                        Ok(Outcome::Rejected(why)) => tracing::warn!(name = ?name, %why, "rejected"),
                        Ok(_) => {}
                        // Even setting it aside failed: it stays where it is (the spool
                        // resumes it at the next start) and the others go on.
                        Err(e) => tracing::error!(name = ?name, error = %e, "bundle could not be ingested or set aside"),
                    }
                    // A slot is free: folders left waiting for one go in now.
                    due = true;
                }
            }
        }
        Ok::<(), StagerError>(())
    };
    let result = tokio::select! {
        r = work => r,
        () = shutdown => Ok(()),
    };
    push.abort();
    status.abort();
    result
}

fn watch_err(path: &Path, source: notify::Error) -> StagerError {
    StagerError::Watch {
        path: path.to_owned(),
        source,
    }
}

/// What the events told us about the folders in the inbox.
#[derive(Debug, Default)]
struct Readiness {
    /// Made in place while we watched: complete only with `READY`.
    in_place: HashSet<String>,
    /// Renamed in, or already there when we looked without events.
    trusted: HashSet<String>,
}

impl Readiness {
    async fn trust_everything_present(&mut self, inbox: &Path) -> Result<(), StagerError> {
        for name in list_folders(inbox).await? {
            if !self.in_place.contains(&name) {
                self.trusted.insert(name);
            }
        }
        Ok(())
    }

    /// Records what `ev` says; `true` when it may have made a folder ready (a scan is due).
    async fn note(
        &mut self,
        ev: notify::Result<notify::Event>,
        inbox: &Path,
        watcher: &mut impl Watcher,
    ) -> Result<bool, StagerError> {
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!(error = %e, "inbox watch error; rescanning");
                self.trust_everything_present(inbox).await?;
                return Ok(true);
            }
        };
        if ev.need_rescan() {
            self.trust_everything_present(inbox).await?;
            return Ok(true);
        }
        if matches!(ev.kind, EventKind::Access(_)) {
            return Ok(false);
        }
        let names = || {
            ev.paths
                .iter()
                .filter(|p| p.parent() == Some(inbox))
                .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        };
        match ev.kind {
            EventKind::Create(CreateKind::Folder) | EventKind::Create(CreateKind::Any) => {
                for name in names() {
                    if !self.trusted.contains(&name) {
                        // Watch inside it, to hear its READY file arrive.
                        let _ = watcher.watch(&inbox.join(&name), RecursiveMode::NonRecursive);
                        self.in_place.insert(name);
                    }
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => {
                // For `Both` the last path is the destination.
                if let Some(to) = ev.paths.last()
                    && to.parent() == Some(inbox)
                    && let Some(name) = to.file_name().and_then(|n| n.to_str())
                {
                    self.in_place.remove(name);
                    self.trusted.insert(name.to_owned());
                }
            }
            _ => {}
        }
        Ok(true)
    }

    /// Folders that are complete now, in name order.
    async fn ready(&self, inbox: &Path) -> Result<Vec<String>, StagerError> {
        let mut out = Vec::new();
        for name in list_folders(inbox).await? {
            let marked = tokio::fs::try_exists(inbox.join(&name).join(READY))
                .await
                .unwrap_or(false);
            if marked || (self.trusted.contains(&name) && !self.in_place.contains(&name)) {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn forget(&mut self, name: &str, inbox: &Path, watcher: &mut impl Watcher) {
        if self.in_place.remove(name) {
            let _ = watcher.unwatch(&inbox.join(name));
        }
        self.trusted.remove(name);
    }
}

/// Candidate folders directly in the inbox: not hidden, not `rejected`.
async fn list_folders(inbox: &Path) -> Result<Vec<String>, StagerError> {
    let inbox = inbox.to_owned();
    blocking(move || {
        let mut out = Vec::new();
        for item in std::fs::read_dir(&inbox).map_err(StagerError::io(&inbox))? {
            let item = item.map_err(StagerError::io(&inbox))?;
            let Ok(name) = item.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') || name == REJECTED {
                continue;
            }
            if item.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    })
    .await
}

/// Answers `plotter2 status` on [`plotter2_node::protocol::STAGER_STATUS_SUBJECT`].
async fn answer_status(nats: async_nats::Client, name: String, inbox: String) {
    use futures::StreamExt;
    use plotter2_node::protocol::{self, STAGER_STATUS_SUBJECT, StagerStatus};
    let mut sub = match nats.subscribe(STAGER_STATUS_SUBJECT).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot answer status requests: {e}");
            return;
        }
    };
    while let Some(msg) = sub.next().await {
        let Some(reply) = msg.reply else { continue };
        let spool = crate::metrics::IN_SPOOL.load(std::sync::atomic::Ordering::Relaxed);
        let status = StagerStatus {
            name: name.clone(),
            inbox: inbox.clone(),
            spool: u64::try_from(spool).unwrap_or(0),
            pid: std::process::id(),
        };
        if let Ok(body) = protocol::encode(&status) {
            let _ = nats.publish(reply, body.into()).await;
        }
    }
}
