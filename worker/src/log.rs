//! An attempt's stdout and stderr: appended to `log.txt` in its sandbox (created at the first
//! byte, so a silent task costs no file), published live on the run's log subject for
//! `plotter2 logs -f`, served on request while the attempt runs, and capped at [`LOG_LIMIT`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use plotter2_node::protocol::{RunId, log_request_subject, log_subject};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

/// Output beyond this on stdout+stderr ends the attempt: results belong in `{out}`.
pub const LOG_LIMIT: u64 = 64 * 1024 * 1024;
/// The most a "log so far" answer carries (its end; older bytes are in the file).
const REPLY_BYTES: u64 = 4 * 1024 * 1024;

/// The log file and how much is in it, under one lock so offsets match the file.
struct State {
    file: Option<tokio::fs::File>,
    written: u64,
}

#[derive(Clone)]
pub struct LiveLog {
    state: Arc<Mutex<State>>,
    path: PathBuf,
    nats: async_nats::Client,
    live: String,
    over: watch::Sender<bool>,
}

impl LiveLog {
    pub fn new(path: &Path, nats: async_nats::Client, run: &RunId) -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                file: None,
                written: 0,
            })),
            path: path.to_owned(),
            nats,
            live: log_subject(run),
            over: watch::channel(false).0,
        }
    }

    /// Changes to true once the output passed [`LOG_LIMIT`].
    pub fn over_limit(&self) -> watch::Receiver<bool> {
        self.over.subscribe()
    }

    /// Copies `reader` into the log until it ends.
    pub fn pump(&self, mut reader: impl AsyncRead + Unpin + Send + 'static) -> JoinHandle<()> {
        let log = self.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                log.append(&buf[..n]).await;
            }
        })
    }

    async fn append(&self, bytes: &[u8]) {
        let mut st = self.state.lock().await;
        if st.written + bytes.len() as u64 > LOG_LIMIT {
            // Keep draining, so the task is not blocked until it is killed.
            let _ = self.over.send(true);
            return;
        }
        if st.file.is_none() {
            match tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .await
            {
                Ok(f) => st.file = Some(f),
                Err(e) => {
                    tracing::warn!("cannot write the log {}: {e}", self.path.display());
                    return;
                }
            }
        }
        if let Some(f) = st.file.as_mut() {
            let _ = f.write_all(bytes).await;
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("offset", st.written.to_string().as_str());
        st.written += bytes.len() as u64;
        // Followers (`plotter2 logs -f`) get it live; nobody listening is fine.
        let _ = self
            .nats
            .publish_with_headers(
                self.live.clone(),
                headers,
                bytes::Bytes::copy_from_slice(bytes),
            )
            .await;
    }

    /// Answers "what is in the log so far" on the run's log request subject until aborted.
    pub fn serve_requests(&self, run: &RunId) -> JoinHandle<()> {
        let log = self.clone();
        let subject = log_request_subject(run);
        tokio::spawn(async move {
            let Ok(mut sub) = log.nats.subscribe(subject).await else {
                return;
            };
            while let Some(req) = sub.next().await {
                let Some(reply) = req.reply else { continue };
                let upto = log.flush().await;
                let start = upto.saturating_sub(REPLY_BYTES);
                let bytes = read_range(&log.path, start, upto).await;
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("offset", start.to_string().as_str());
                let _ = log
                    .nats
                    .publish_with_headers(reply, headers, bytes.into())
                    .await;
            }
        })
    }

    /// Flushes the file; returns how many bytes the log holds.
    pub async fn flush(&self) -> u64 {
        let mut st = self.state.lock().await;
        if let Some(f) = st.file.as_mut() {
            let _ = f.flush().await;
        }
        st.written
    }
}

async fn read_range(path: &Path, start: u64, end: u64) -> Vec<u8> {
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return Vec::new();
    };
    if f.seek(std::io::SeekFrom::Start(start)).await.is_err() {
        return Vec::new();
    }
    let mut buf = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
    match f.read_exact(&mut buf).await {
        Ok(_) => buf,
        Err(_) => Vec::new(),
    }
}
