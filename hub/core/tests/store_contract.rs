//! The store contract suite (`carehub_core::store::contract`) on a fresh SQLite file per
//! behaviour, stamped by a frozen clock the suite moves.

use std::sync::Arc;

use carehub_core::store::sqlite::SqliteStore;
use carehub_core::store::{contract, Store};
use carehub_model::Clock;

async fn fresh() -> (tempfile::TempDir, Arc<dyn Store>, Clock) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let clock = Clock::frozen(contract::start());
    let store = SqliteStore::open(&dir.path().join("contract.db"), clock.clone()).expect("the store opens");
    (dir, Arc::new(store), clock)
}

carehub_core::store_contract_suite!(fresh);
