//! openraft's own storage conformance suite, run against the redb log store and state machine.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test may stop at the first surprise

use std::sync::Arc;

use openraft::StorageError;
use openraft::testing::log::{StoreBuilder, Suite};
use plotter2_coordinator::log_store::LogStore;
use plotter2_coordinator::state_machine::StateMachine;
use plotter2_coordinator::types::TypeConfig;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("test set-up");
        let db =
            Arc::new(redb::Database::create(dir.path().join("raft.redb")).expect("test set-up"));
        let log = LogStore::new(db.clone()).expect("test set-up");
        let sm = StateMachine::open(dir.path()).expect("test set-up");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_store_passes_openraft_suite() {
    Suite::test_all(RedbBuilder).await.expect("storage suite");
}
