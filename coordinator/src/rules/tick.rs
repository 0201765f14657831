//! The leader's clock for schedules: when a rule comes due and nothing else is committed
//! meanwhile, the leader commits a `tick`, and applying it fires what is due by its time.

use std::time::Duration;

use plotter2_node::protocol::{RequestId, UserName, WriteOp};

use crate::state_machine::{Raft, StateMachine};
use crate::types::{Command, now_ms};

/// The longest the leader sleeps before looking again (schedules may change meanwhile).
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// Commits ticks for due schedules until `stop` fires.
pub async fn run(
    raft: Raft,
    sm: StateMachine,
    mut applied: tokio::sync::watch::Receiver<u64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let user = match UserName::parse("plotter2") {
        Ok(u) => u,
        Err(e) => {
            tracing::error!("schedules: {e}");
            return;
        }
    };
    loop {
        let due = match sm.read() {
            Ok(st) => st.registry.next_due_ms(),
            Err(e) => {
                tracing::error!("state machine: {e}");
                return;
            }
        };
        let now = now_ms();
        if let Some(due) = due
            && due <= now
        {
            let cmd = Command {
                id: RequestId::new(),
                user: user.clone(),
                time_ms: now,
                trace: None,
                op: WriteOp::Tick {},
            };
            if let Err(e) = raft.client_write(cmd).await {
                tracing::warn!("schedules: cannot commit a tick: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            continue;
        }
        let wait = due.map_or(LOOK_EVERY, |d| {
            Duration::from_millis(d.saturating_sub(now)).min(LOOK_EVERY)
        });
        tokio::select! {
            _ = stop.changed() => return,
            r = applied.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
