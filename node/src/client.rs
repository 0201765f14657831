//! The plotter2 client: requests over NATS to whichever coordinator leads.
//!
//! During an election nobody serves `p2.api.>` and NATS answers "no responders"; a request
//! can also time out when the leader dies mid-flight. Both are retried with backoff under the
//! same request id (so a write is applied once) until one total deadline, which is reported
//! as such with the last reason seen.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tracing::Instrument;

use crate::protocol::{
    self, ApiError, ApiRequest, ApiResponse, ErrorKind, NodeStatus, Op, ProtocolError, Reply,
    RequestId, STATUS_SUBJECT, UserName,
};
use crate::retry::Backoff;

/// Default total deadline of one call.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
/// How long attempts wait for an answer before retrying: short at first, because a request
/// that reached a leader as it died is simply lost; longer later, for a leader under load.
const FIRST_ATTEMPT: Duration = Duration::from_secs(1);
const LONGEST_ATTEMPT: Duration = Duration::from_secs(5);
/// Membership changes block until a new node has caught up: one long attempt.
const CLUSTER_ATTEMPT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach NATS at {url}: {message}; is `plotter2 up` (or nats-server) running there?"
    )]
    Connect { url: String, message: String },
    #[error(
        "no answer from the coordinators within {}s ({attempts} attempts); last: {last}. \
         Is a majority of coordinators running? See `plotter2 cluster status`.",
        after.as_secs_f64()
    )]
    Deadline {
        after: Duration,
        attempts: u32,
        last: String,
    },
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("NATS error: {0}")]
    Nats(String),
    #[error(
        "a request of {bytes} bytes is larger than the NATS server accepts (max_payload); \
         send less per request"
    )]
    TooLarge { bytes: usize },
}

impl crate::retry::Classify for ClientError {
    fn class(&self) -> crate::retry::ErrorClass {
        use crate::retry::ErrorClass::{Permanent, Transient};
        match self {
            ClientError::Connect { .. } | ClientError::Deadline { .. } | ClientError::Nats(_) => {
                Transient
            }
            ClientError::Api(e) => match e.kind {
                ErrorKind::NotLeader | ErrorKind::NoQuorum | ErrorKind::Internal => Transient,
                ErrorKind::BadRequest | ErrorKind::NotFound | ErrorKind::UnsupportedVersion => {
                    Permanent
                }
            },
            ClientError::Protocol(_) | ClientError::TooLarge { .. } => Permanent,
        }
    }
}

/// A connection to a plotter2 cluster, acting as one user.
#[derive(Clone, Debug)]
pub struct Client {
    nats: async_nats::Client,
    user: UserName,
    deadline: Duration,
    /// Print each call's trace id on stderr (`plotter2 -v`).
    show_trace: bool,
}

impl Client {
    pub async fn connect(url: &str, user: UserName) -> Result<Self, ClientError> {
        let nats = async_nats::ConnectOptions::new()
            .name("plotter2-client")
            .connect(url)
            .await
            .map_err(|e| ClientError::Connect {
                url: url.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self::with_nats(nats, user))
    }

    pub fn with_nats(nats: async_nats::Client, user: UserName) -> Self {
        Self {
            nats,
            user,
            deadline: DEFAULT_DEADLINE,
            show_trace: false,
        }
    }

    /// Prints the trace id of each call on stderr, when it is traced.
    pub fn with_trace_report(mut self, show: bool) -> Self {
        self.show_trace = show;
        self
    }

    /// Sets the total deadline of each call.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    pub fn user(&self) -> &UserName {
        &self.user
    }

    /// Sends `op` under a fresh request id.
    pub async fn call(&self, op: Op) -> Result<Reply, ClientError> {
        self.call_with_id(RequestId::new(), op).await
    }

    /// Sends `op` under `id`; retries keep the id, so a write is applied at most once.
    pub async fn call_with_id(&self, id: RequestId, op: Op) -> Result<Reply, ClientError> {
        let span = tracing::info_span!("p2.call", verb = op.verb(), request = %id);
        if self.show_trace {
            match span.in_scope(crate::telemetry::current_trace_id) {
                Some(trace) => eprintln!("{} {id}: trace {trace}", op.verb()),
                None => eprintln!(
                    "{} {id}: not traced (set OTEL_EXPORTER_OTLP_ENDPOINT)",
                    op.verb()
                ),
            }
        }
        self.call_in_span(id, op).instrument(span).await
    }

    async fn call_in_span(&self, id: RequestId, op: Op) -> Result<Reply, ClientError> {
        let subject = op.subject();
        let first = match op {
            Op::Cluster(_) => CLUSTER_ATTEMPT,
            _ => FIRST_ATTEMPT,
        };
        let req = ApiRequest {
            id,
            user: self.user.clone(),
            op,
        };
        let payload = Bytes::from(protocol::encode(&req)?);
        self.send_with_retry(&subject, payload, first).await
    }

    /// Sends pre-encoded bytes to `subject` with the retry policy, and decodes the answer.
    pub async fn request_raw(&self, subject: &str, payload: Bytes) -> Result<Reply, ClientError> {
        self.send_with_retry(subject, payload, FIRST_ATTEMPT).await
    }

    async fn send_with_retry(
        &self,
        subject: &str,
        payload: Bytes,
        first: Duration,
    ) -> Result<Reply, ClientError> {
        let mut delays = Backoff::new(Duration::from_millis(10), Duration::from_millis(200))
            .with_deadline(self.deadline)
            .start();
        let mut attempt_timeout = first;
        loop {
            let left = self.deadline.saturating_sub(delays.elapsed());
            let mut headers = async_nats::HeaderMap::new();
            crate::telemetry::inject_context(&mut headers);
            let request = async_nats::Request::new()
                .payload(payload.clone())
                .headers(headers)
                .timeout(Some(
                    left.min(attempt_timeout).max(Duration::from_millis(1)),
                ));
            let last = match self.nats.send_request(subject.to_owned(), request).await {
                Ok(msg) => match protocol::decode::<ApiResponse>(&msg.payload)? {
                    Ok(reply) => return Ok(reply),
                    Err(e) if e.kind.retryable() => e.message,
                    Err(e) => return Err(ClientError::Api(e)),
                },
                Err(e) => match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => {
                        format!("no coordinator serves {subject} (no leader)")
                    }
                    async_nats::RequestErrorKind::TimedOut => {
                        attempt_timeout = (attempt_timeout * 2).min(LONGEST_ATTEMPT.max(first));
                        format!("request on {subject} timed out")
                    }
                    async_nats::RequestErrorKind::MaxPayloadExceeded => {
                        return Err(ClientError::TooLarge {
                            bytes: payload.len(),
                        });
                    }
                    _ => return Err(ClientError::Nats(e.to_string())),
                },
            };
            tracing::debug!(attempts = delays.tries() + 1, %last, "retrying request");
            if !delays.wait().await {
                return Err(ClientError::Deadline {
                    after: self.deadline,
                    attempts: delays.tries(),
                    last,
                });
            }
        }
    }

    /// Asks every coordinator for its status; collects answers for `window`.
    pub async fn cluster_status(&self, window: Duration) -> Result<Vec<NodeStatus>, ClientError> {
        let mut out: Vec<NodeStatus> = self.gather(STATUS_SUBJECT, window).await?;
        out.sort_by_key(|s| s.id);
        Ok(out)
    }

    /// Asks everyone on `subject` and collects the answers that come within `window`.
    pub async fn gather<T: serde::de::DeserializeOwned>(
        &self,
        subject: &str,
        window: Duration,
    ) -> Result<Vec<T>, ClientError> {
        let inbox = self.nats.new_inbox();
        let mut sub = self
            .nats
            .subscribe(inbox.clone())
            .await
            .map_err(|e| ClientError::Nats(e.to_string()))?;
        let payload = Bytes::from(protocol::encode(&())?);
        self.nats
            .publish_with_reply(subject.to_owned(), inbox, payload)
            .await
            .map_err(|e| ClientError::Nats(e.to_string()))?;
        self.nats
            .flush()
            .await
            .map_err(|e| ClientError::Nats(e.to_string()))?;
        let mut out = Vec::new();
        let end = tokio::time::Instant::now() + window;
        while let Ok(Some(msg)) = tokio::time::timeout_at(end, sub.next()).await {
            // "No responders" arrives as an empty status message: nobody is there yet.
            if msg.status.is_some() {
                continue;
            }
            match protocol::decode::<T>(&msg.payload) {
                Ok(s) => out.push(s),
                Err(e) => tracing::warn!("ignoring a bad answer on {subject}: {e}"),
            }
        }
        Ok(out)
    }
}
