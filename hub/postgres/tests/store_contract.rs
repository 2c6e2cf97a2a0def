//! The store contract suite (`carehub_core::store::contract`) on PostgreSQL: each behaviour
//! on a database of its own (created on the test server, dropped afterwards), stamped by a
//! frozen clock the suite moves. The server is `CAREHUB_TEST_POSTGRES`, or 127.0.0.1:5432.

use std::sync::Arc;

use carehub_core::store::{contract, Store};
use carehub_model::Clock;
use carehub_postgres::scratch::{server, ScratchDb};
use carehub_postgres::PgStore;

async fn fresh() -> (ScratchDb, Arc<dyn Store>, Clock) {
    let db = ScratchDb::create(&server(), "contract").await.expect("a scratch database");
    let clock = Clock::frozen(contract::start());
    let store = PgStore::open(&db.url(), clock.clone()).await.expect("the store opens");
    (db, Arc::new(store), clock)
}

carehub_core::store_contract_suite!(fresh);
