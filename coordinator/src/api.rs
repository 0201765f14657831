//! The request API on NATS: `p2.api.<verb>`, served by the leader only, and `p2.node.status`,
//! answered by every coordinator.
//!
//! Writes are committed through raft before they are answered; reads first confirm leadership
//! with a read index (linearizable). A leader that has lost its majority says so instead of
//! hanging: the client retries with the same request id, so a write that does commit later is
//! still applied once.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use openraft::type_config::async_runtime::{Instant as _, WatchReceiver};
use openraft::{ChangeMembers, ReadPolicy, ServerState};
use plotter2_node::protocol::{
    self, API_PREFIX, API_QUEUE, ApiError, ApiRequest, ApiResponse, ClusterChange, ClusterOp,
    ErrorKind, NodeStatus, Op, ReadOp, Reply, RequestId, Role, STATUS_SUBJECT, UserName, VERBS,
    WriteOp,
};
use tracing::Instrument;

use crate::registry::check_write;
use crate::state_machine::Raft;
use crate::state_machine::StateMachine;
use crate::types::{Command, now_ms};

/// What the API needs from the coordinator.
#[derive(Clone)]
pub struct Api {
    pub id: u64,
    pub raft_addr: String,
    pub raft: Raft,
    pub sm: StateMachine,
    pub nats: async_nats::Client,
    /// How long a write may wait to commit before the client is told there is no quorum.
    pub write_timeout: Duration,
    /// A leader not acknowledged by a majority for this long refuses writes at once.
    pub quorum_stale_after: Duration,
    /// Attempts running this long are checked with their workers (see [`crate::liveness`]).
    pub lost_after: Duration,
    pub requests: crate::metrics::RequestMetrics,
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(ErrorKind::Internal, e.to_string())
}

impl Api {
    /// Serves `p2.api.>` while this node leads, and stops when it does not.
    pub async fn run_leader_service(self) {
        let mut metrics = self.raft.metrics();
        let mut serving: Option<tokio::sync::watch::Sender<bool>> = None;
        loop {
            let leading = metrics.borrow_watched().state == ServerState::Leader;
            match (leading, serving.is_some()) {
                (true, false) => {
                    tracing::info!(id = self.id, "leader: serving {API_PREFIX}.>");
                    let (tx, rx) = tokio::sync::watch::channel(false);
                    tokio::spawn(crate::dispatch::run(
                        self.nats.clone(),
                        self.sm.clone(),
                        self.sm.subscribe_applied(),
                        rx.clone(),
                    ));
                    tokio::spawn(crate::liveness::run(
                        self.nats.clone(),
                        self.raft.clone(),
                        self.sm.clone(),
                        self.lost_after,
                        self.id,
                        rx.clone(),
                    ));
                    tokio::spawn(crate::events::run(
                        self.nats.clone(),
                        self.sm.clone(),
                        self.sm.subscribe_applied(),
                        rx.clone(),
                    ));
                    tokio::spawn(crate::rules::tick::run(
                        self.raft.clone(),
                        self.sm.clone(),
                        self.sm.subscribe_applied(),
                        rx.clone(),
                    ));
                    tokio::spawn(self.clone().serve_api(rx));
                    serving = Some(tx);
                }
                (false, true) => {
                    tracing::info!(
                        id = self.id,
                        "no longer leader: stop serving {API_PREFIX}.>"
                    );
                    if let Some(tx) = serving.take() {
                        let _ = tx.send(true);
                    }
                }
                _ => {}
            }
            if metrics.changed().await.is_err() {
                break;
            }
        }
        if let Some(tx) = serving.take() {
            let _ = tx.send(true);
        }
    }

    /// Answers requests until `stop` fires, then drains: requests NATS already delivered to this
    /// node are still answered (a write fails fast with "not leader", so the client retries at
    /// once) instead of being dropped and left to time out.
    async fn serve_api(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let subject = format!("{API_PREFIX}.>");
        let mut sub = match self
            .nats
            .queue_subscribe(subject.clone(), API_QUEUE.to_owned())
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot subscribe to {subject}: {e}");
                return;
            }
        };
        let mut draining = false;
        loop {
            let msg = tokio::select! {
                m = sub.next() => m,
                _ = stop.changed(), if !draining => {
                    draining = true;
                    if let Err(e) = sub.drain().await {
                        tracing::warn!("cannot drain {subject}: {e}");
                        return;
                    }
                    continue;
                }
            };
            let Some(msg) = msg else { return };
            let api = self.clone();
            let span = tracing::info_span!("api", subject = %msg.subject);
            plotter2_node::telemetry::adopt_context(&span, msg.headers.as_ref());
            tokio::spawn(
                async move {
                    let began = std::time::Instant::now();
                    let response = api.respond(msg.subject.as_str(), &msg.payload).await;
                    let verb = msg
                        .subject
                        .as_str()
                        .strip_prefix(API_PREFIX)
                        .and_then(|s| s.strip_prefix('.'))
                        .and_then(|v| VERBS.iter().find(|k| **k == v).copied())
                        .unwrap_or("unknown");
                    let outcome = match &response {
                        Ok(_) => "ok",
                        Err(e) if e.kind.retryable() => "retry",
                        Err(e) if e.kind == ErrorKind::Internal => "error",
                        Err(_) => "refused",
                    };
                    api.requests.record(verb, outcome, began.elapsed());
                    if let Some(reply) = msg.reply {
                        api.send(reply, &response).await;
                    }
                }
                .instrument(span),
            );
        }
    }

    async fn send<T: serde::Serialize>(&self, reply: async_nats::Subject, body: &T) {
        let mut bytes = match protocol::encode(body) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("cannot encode reply: {e}");
                return;
            }
        };
        // An answer NATS cannot carry would leave the client waiting until its deadline.
        let limit = self.nats.server_info().max_payload.saturating_sub(1024);
        if bytes.len() > limit {
            let too_big: ApiResponse = Err(ApiError::bad_request(format!(
                "the answer is {} bytes, more than NATS carries ({limit}); ask about a narrower address",
                bytes.len()
            )));
            match protocol::encode(&too_big) {
                Ok(b) => bytes = b,
                Err(_) => return,
            }
        }
        if let Err(e) = self.nats.publish(reply, Bytes::from(bytes)).await {
            tracing::warn!("cannot send reply: {e}");
        }
    }

    /// Answers one request. Never panics on input: everything wrong becomes an [`ApiError`].
    pub async fn respond(&self, subject: &str, payload: &[u8]) -> ApiResponse {
        let verb = subject
            .strip_prefix(API_PREFIX)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(subject);
        if !VERBS.contains(&verb) {
            return Err(ApiError::bad_request(format!(
                "unknown verb {verb:?} on {subject}; known verbs: {}",
                VERBS.join(", ")
            )));
        }
        let req: ApiRequest = protocol::decode(payload)?;
        if req.op.verb() != verb {
            return Err(ApiError::bad_request(format!(
                "{subject} carries a {:?} request; send it to {}",
                req.op.verb(),
                req.op.subject()
            )));
        }
        match req.op {
            Op::Write(op) => self.write(req.id, req.user, op).await,
            Op::Read(op) => self.read(op).await,
            Op::Cluster(op) => self.cluster(op).await,
        }
    }

    async fn write(&self, id: RequestId, user: UserName, op: WriteOp) -> ApiResponse {
        check_write(&op)?;
        {
            // Cheap answers that need no log entry: a request already applied, or a target that
            // does not exist (apply checks again; this only keeps bad input out of the log).
            let st = self.sm.read().map_err(internal)?;
            if let Some(answer) = st.registry.answer_for(&id) {
                return answer.map(Reply::Written);
            }
            if let WriteOp::Set { addr, .. } | WriteOp::Archive { addr } = &op
                && !st.registry.contains(addr)
            {
                return Err(ApiError::not_found(format!(
                    "no node at {addr}; create it with `plotter2 new {addr}`"
                )));
            }
        }
        self.check_quorum()?;
        let cmd = Command {
            id,
            user,
            time_ms: now_ms(),
            trace: plotter2_node::telemetry::current_traceparent(),
            op,
        };
        let commit = self
            .raft
            .client_write(cmd)
            .instrument(tracing::info_span!("raft_commit"));
        match tokio::time::timeout(self.write_timeout, commit).await {
            Ok(Ok(resp)) => resp.data.0.map(Reply::Written),
            Ok(Err(e)) => Err(self.raft_error(e)),
            Err(_) => Err(self.no_quorum(format!(
                "the write did not commit within {:?}",
                self.write_timeout
            ))),
        }
    }

    async fn read(&self, op: ReadOp) -> ApiResponse {
        match tokio::time::timeout(
            self.write_timeout,
            self.raft.ensure_linearizable(ReadPolicy::ReadIndex),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(self.raft_error(e)),
            Err(_) => {
                return Err(self.no_quorum(format!(
                    "leadership not confirmed within {:?}",
                    self.write_timeout
                )));
            }
        }
        if let ReadOp::Lineage { .. } | ReadOp::Explain { .. } = op {
            // Walks over many runs are work for a blocking thread, not the runtime. The walk
            // holds the registry (an `Arc`), so the next apply copies it once, shallowly.
            let registry = self.sm.read().map_err(internal)?.registry.clone();
            return tokio::task::spawn_blocking(move || match op {
                ReadOp::Lineage {
                    addr,
                    version,
                    downstream,
                } => Ok(Reply::Lineage(Box::new(
                    registry.lineage(&addr, version, downstream)?,
                ))),
                ReadOp::Explain { run } => Ok(Reply::Explain(Box::new(registry.explain(&run)?))),
                other => Err(internal(format!("{other:?} is not a walk"))),
            })
            .await
            .map_err(internal)?;
        }
        let st = self.sm.read().map_err(internal)?;
        let r = &st.registry;
        Ok(match op {
            ReadOp::Ls { addr, all } => Reply::Children(r.ls(&addr, all)?),
            ReadOp::Tree {
                addr,
                all,
                after,
                limit,
            } => Reply::Tree(r.tree(&addr, all, after.as_ref(), limit)?),
            ReadOp::Show { addr } => Reply::Node(r.show(&addr)?),
            ReadOp::History { addr } => Reply::History(r.history(&addr)?),
            ReadOp::Requests { after, limit } => Reply::Requests(r.requests(after, limit)),
            ReadOp::Request { id } => Reply::Request(r.request(&id)?),
            ReadOp::Bundle { addr, version } => Reply::Bundle(r.bundle(&addr, version)?),
            ReadOp::Runs { addr, after, limit } => Reply::Runs(r.runs(&addr, after, limit)?),
            ReadOp::RunStates { ids } => Reply::RunStates(r.run_states(&ids)),
            ReadOp::Run { id } => Reply::Run(Box::new(r.run(&id)?)),
            ReadOp::Rules { addr } => Reply::Rules(r.rules_view(&addr)?),
            ReadOp::Events { addr, after, limit } => Reply::Events(r.events(&addr, after, limit)?),
            ReadOp::Lineage { .. } | ReadOp::Explain { .. } => {
                return Err(internal("lineage and explain are answered above"));
            }
        })
    }

    async fn cluster(&self, op: ClusterOp) -> ApiResponse {
        self.check_quorum()?;
        match op {
            ClusterOp::ClusterAdd { id, raft_addr } => {
                if raft_addr.parse::<std::net::SocketAddr>().is_err() {
                    return Err(ApiError::bad_request(format!(
                        "raft address {raft_addr:?} is not host:port with a numeric IP, e.g. 127.0.0.1:7004"
                    )));
                }
                // Blocks until the learner has caught up, then promotes it.
                self.raft
                    .add_learner(id, openraft::BasicNode::new(raft_addr), true)
                    .await
                    .map_err(|e| self.raft_error(e))?;
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds([id].into()), false)
                    .await
                    .map_err(|e| self.raft_error(e))?;
            }
            ClusterOp::ClusterRemove { id } => {
                self.raft
                    .change_membership(ChangeMembers::RemoveVoters([id].into()), false)
                    .await
                    .map_err(|e| self.raft_error(e))?;
            }
        }
        let m = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        Ok(Reply::Cluster(ClusterChange {
            voters: m.membership().voter_ids().collect(),
            learners: m.membership().learner_ids().collect(),
        }))
    }

    fn check_quorum(&self) -> Result<(), ApiError> {
        // Read what is needed under the watch's lock; cloning all metrics per request is costly.
        let (leading, single, age) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            (
                m.state == ServerState::Leader,
                m.membership_config.membership().voter_ids().count() <= 1,
                m.last_quorum_acked.map(|t| t.into_inner().elapsed()),
            )
        };
        if !leading {
            return Err(ApiError::new(
                ErrorKind::NotLeader,
                format!("coordinator {} is not the leader", self.id),
            ));
        }
        match age {
            _ if single => Ok(()),
            Some(age) if age <= self.quorum_stale_after => Ok(()),
            Some(age) => Err(self.no_quorum(format!(
                "no majority has acknowledged this leader for {:.1}s",
                age.as_secs_f64()
            ))),
            None => Err(self.no_quorum("no majority has acknowledged this leader yet".to_owned())),
        }
    }

    fn no_quorum(&self, why: String) -> ApiError {
        let m = self.raft.metrics().borrow_watched().clone();
        let voters: Vec<String> = m
            .membership_config
            .membership()
            .voter_ids()
            .map(|v| v.to_string())
            .collect();
        ApiError::new(
            ErrorKind::NoQuorum,
            format!(
                "coordinator {} cannot commit: {why}; a majority of voters [{}] must be running and reachable",
                self.id,
                voters.join(", ")
            ),
        )
    }

    fn raft_error<E>(&self, e: openraft::errors::RaftError<crate::types::TypeConfig, E>) -> ApiError
    where
        E: std::error::Error
            + openraft::TryAsRef<openraft::errors::ForwardToLeader<crate::types::TypeConfig>>,
    {
        if let Some(fwd) = e.forward_to_leader() {
            return ApiError::new(
                ErrorKind::NotLeader,
                format!(
                    "coordinator {} is not the leader (leader: {:?})",
                    self.id, fwd.leader_id
                ),
            );
        }
        ApiError::new(ErrorKind::Internal, format!("coordinator {}: {e}", self.id))
    }

    /// Answers `p2.node.status` on every coordinator, leader or not.
    pub async fn run_status_service(self) {
        let mut sub = match self.nats.subscribe(STATUS_SUBJECT).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot subscribe to {STATUS_SUBJECT}: {e}");
                return;
            }
        };
        while let Some(msg) = sub.next().await {
            if let Some(reply) = msg.reply {
                match self.status().await {
                    Ok(s) => self.send(reply, &s).await,
                    Err(e) => tracing::warn!("status: {e}"),
                }
            }
        }
    }

    pub async fn status(&self) -> Result<NodeStatus, ApiError> {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Candidate => Role::Candidate,
            ServerState::Shutdown => Role::Shutdown,
            _ if !voters.contains(&self.id) => Role::Learner,
            _ => Role::Follower,
        };
        let addr_of = |id: u64| {
            membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default()
        };
        let (registry, applied) = {
            let st = self.sm.read().map_err(internal)?;
            (
                st.registry.clone(),
                st.last_applied.as_ref().map(|l| l.index()),
            )
        };
        let (queued_runs, running_runs) = (registry.queued_count(), registry.running_count());
        // Hashing the whole registry is work for a blocking thread, not the runtime.
        let digest = tokio::task::spawn_blocking(move || registry.digest())
            .await
            .map_err(internal)?;
        Ok(NodeStatus {
            id: self.id,
            raft_addr: self.raft_addr.clone(),
            role,
            pid: std::process::id(),
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            committed_index: m.local_committed.as_ref().map(|l| l.index()),
            applied_index: applied,
            snapshot_index: m.snapshot.as_ref().map(|l| l.index()),
            purged_index: m.purged.as_ref().map(|l| l.index()),
            voters: voters.iter().map(|&v| (v, addr_of(v))).collect(),
            learners: membership.learner_ids().map(|l| (l, addr_of(l))).collect(),
            state_digest: digest,
            quorum_ack_age_ms: match m.state {
                ServerState::Leader => m
                    .last_quorum_acked
                    .map(|t| t.into_inner().elapsed().as_millis() as u64),
                _ => None,
            },
            queued_runs,
            running_runs,
        })
    }
}
