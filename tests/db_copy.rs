//! `carehub db copy`: a hub's SQLite database moved to PostgreSQL. The demo's month copied
//! verifies there and reads the same (invoice verification, the follow-up, visits by
//! outcome, orders by status); a hub carries on from the copy; a second copy into the now
//! full database is refused; a SQLite table the copy does not know, and a tampered chain,
//! fail the copy with nothing committed.

use std::collections::BTreeMap;
use std::path::Path;

use carehub_core::store::{
    CommitStore, DeliveryFilter, LogFilter, LogRef, LogStatus, LogStore, NewDelivery, NewLogEntry, Op, OrderFilter,
    OrderStore, OutboxStore, VisitFilter, VisitStore,
};
use carehub_model::Clock;
use carehub_postgres::scratch::{self, ScratchDb};
use reqwest::StatusCode;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

/// The demo's clock: February 2027 is its month of visits and invoices.
const DEMO_AT: &str = "2027-03-28T01:30:00+01:00";
const DEMO_MONTH: &str = "2027-02";

/// One number a query on the PostgreSQL database at `url` answers (a blocking client, on a
/// thread of its own).
fn pg_number(url: &str, sql: &str) -> i64 {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
        c.query_one(&sql, &[]).expect("query").get::<_, i64>(0)
    })
    .join()
    .expect("the thread runs")
}

fn text(out: &std::process::Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `carehub verify` of the demo's month on `db`: its summary (without the timing line) and
/// its reports as JSON.
fn verified_month(db: &str, dir: &Path, name: &str) -> (String, Value) {
    let out_file = dir.join(format!("{name}.json"));
    let out = carehub(&[
        "verify",
        "--month",
        DEMO_MONTH,
        "--db",
        db,
        "--rate",
        "390",
        "--out",
        out_file.to_str().expect("path"),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let summary = stdout.lines().filter(|l| !l.starts_with("wall time")).collect::<Vec<_>>().join("\n");
    let json = serde_json::from_str(&std::fs::read_to_string(&out_file).expect("the reports")).expect("JSON");
    (summary, json)
}

/// `carehub report` of the demo's month on `db`, as of the day it was invoiced: the CSV.
fn followup(db: &str, dir: &Path, name: &str) -> String {
    let (html, csv) = (dir.join(format!("{name}.html")), dir.join(format!("{name}.csv")));
    let out = carehub(&[
        "report",
        "--month",
        DEMO_MONTH,
        "--db",
        db,
        "--out",
        html.to_str().expect("path"),
        "--csv",
        csv.to_str().expect("path"),
        "--as-of",
        "2027-03-05",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    std::fs::read_to_string(csv).expect("the CSV")
}

/// Counts of `key` over `items`.
fn tally<T>(items: &[T], key: impl Fn(&T) -> String) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for i in items {
        *counts.entry(key(i)).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn db_copy_of_the_demos_database_verifies_on_postgresql_and_the_demos_figures_read_the_same() {
    let dir = tempfile::tempdir().expect("dir");
    let db_path = dir.path().join("demo.db");
    let db = db_path.to_str().expect("path").to_owned();
    let demo = carehub(&["demo", "--db", &db, "--at", DEMO_AT]);
    let (stdout, stderr) = text(&demo);
    assert!(demo.status.success(), "{stdout}\n{stderr}");

    let target = ScratchDb::create(&scratch::server(), "dbcopy").await.expect("a database on the test server");
    let url = target.url();
    let copy = carehub(&["db", "copy", "--from", &format!("sqlite:{db}"), "--to", &url]);
    let (copied, progress) = text(&copy);
    assert!(copy.status.success(), "{copied}\n{progress}");
    assert!(!copied.contains("MISMATCH"), "{copied}");
    assert!(progress.contains("message_log: ") && progress.contains(" rows copied"), "progress per table: {progress}");
    assert!(copied.contains("copied and verified in "), "{copied}");

    // Every table the copy names has as many rows on both sides, and the tables that hold
    // the month are not empty.
    let conn = rusqlite::Connection::open(&db_path).expect("open");
    let sqlite_count = |table: &str| {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get::<_, i64>(0)).expect("count")
    };
    for table in ["message_log", "access_log", "decisions", "orders", "outbox", "visits", "invoices", "verifications"] {
        let n = sqlite_count(table);
        assert!(n > 0, "the demo wrote {table}");
        assert_eq!(pg_number(&url, &format!("SELECT COUNT(*) FROM {table}")), n, "{table}");
        assert!(
            copied.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == [table, &n.to_string(), &n.to_string()]),
            "the summary shows {table}'s {n} rows on both sides:\n{copied}"
        );
    }
    let entries = sqlite_count("message_log");
    let max_outbox: i64 = conn.query_row("SELECT MAX(id) FROM outbox", [], |r| r.get(0)).expect("max");
    drop(conn);
    assert!(copied.contains(&format!("ok: the message log's hash chain verifies on PostgreSQL ({entries} entries)")));

    // `audit verify` passes on PostgreSQL, and says what it says on the SQLite file: the
    // same entries, the same heads.
    let on_sqlite = carehub(&["audit", "verify", "--db", &db]);
    let on_postgres = carehub(&["audit", "verify", "--db", &url]);
    assert!(on_postgres.status.success(), "{:?}", text(&on_postgres));
    assert_eq!(text(&on_postgres).0, text(&on_sqlite).0, "both chains verify to the same heads");
    assert!(text(&on_postgres).0.contains(&format!("ok: the message log's hash chain verifies ({entries} entries)")));

    // The demo's figures read the same from both: every invoice's verification...
    let (summary_sqlite, reports_sqlite) = verified_month(&db, dir.path(), "sqlite");
    let (summary_postgres, reports_postgres) = verified_month(&url, dir.path(), "postgres");
    assert_eq!(summary_postgres, summary_sqlite);
    assert_eq!(reports_postgres, reports_sqlite, "every verification report reads the same");
    assert!(summary_sqlite.contains("3 invoices"), "{summary_sqlite}");
    assert!(summary_sqlite.contains("INV001"), "the over-biller is found on both: {summary_sqlite}");
    // ...the committee's follow-up...
    let csv_sqlite = followup(&db, dir.path(), "sqlite");
    assert_eq!(followup(&url, dir.path(), "postgres"), csv_sqlite, "the follow-up reads the same");
    assert!(csv_sqlite.lines().any(|l| l == "summary;clients;42"), "{csv_sqlite}");
    // ...visits by outcome, orders by status and the outbox, as the hub's stores list them.
    let sqlite =
        carehub_core::store::sqlite::SqliteStore::open(&db_path, Clock::starting_at(local_instant("2027-03-28T12:00")))
            .expect("the SQLite store opens");
    let pg = carehub_postgres::PgStore::open(&url, Clock::starting_at(local_instant("2027-03-28T12:00")))
        .await
        .expect("the PostgreSQL store opens");
    let visits = VisitFilter { limit: 10_000, ..VisitFilter::default() };
    let (visits_sqlite, visits_pg) =
        (sqlite.visits(visits.clone()).await.expect("visits"), pg.visits(visits).await.expect("visits"));
    let by_outcome = |v: &carehub_core::store::VisitRecord| format!("{:?} {}", v.outcome, v.visit_outcome);
    assert_eq!(tally(&visits_pg, by_outcome), tally(&visits_sqlite, by_outcome));
    assert!(
        tally(&visits_sqlite, |v| format!("{:?}", v.outcome)).len() >= 2,
        "accepted and flagged or rejected visits"
    );
    assert_eq!(serde_json::to_value(&visits_pg).expect("json"), serde_json::to_value(&visits_sqlite).expect("json"));
    let orders = OrderFilter { limit: 10_000, ..OrderFilter::default() };
    let (orders_sqlite, orders_pg) =
        (sqlite.orders(orders.clone()).await.expect("orders"), pg.orders(orders).await.expect("orders"));
    let by_status = |o: &carehub_core::store::OrderRecord| format!("{:?}", o.status);
    assert_eq!(tally(&orders_pg, by_status), tally(&orders_sqlite, by_status));
    assert_eq!(orders_sqlite.len(), 43, "the demo's orders");
    assert_eq!(pg.outbox_counts().await.expect("counts"), sqlite.outbox_counts().await.expect("counts"));
    // The command line's reads are in each database's access log, like the API's.
    for store in [&sqlite as &dyn carehub_core::store::Store, &pg] {
        let filter = carehub_core::store::AccessFilter { limit: 1000, ..Default::default() };
        let reads = carehub_core::store::AuditStore::access_log(store, filter).await.expect("the access log reads");
        let endpoints: Vec<&str> = reads.iter().map(|r| r.query.endpoint.as_str()).collect();
        for read in ["carehub verify", "carehub report"] {
            assert!(endpoints.contains(&read), "{read} in {endpoints:?}");
        }
    }
    drop(sqlite);

    // A hub carries on from the copy: its next entry chains onto the copied head, its next
    // delivery takes the id after the copied ones, and the chain still verifies.
    let entry = NewLogEntry {
        system: "combine".into(),
        vendor: "combine".into(),
        direction: "in",
        message_type: "decision".into(),
        content_type: "application/xml".into(),
        payload: b"<beslut id=\"AFTER-COPY\"/>".to_vec(),
        status: LogStatus::Accepted,
        ..NewLogEntry::default()
    };
    let delivery = NewDelivery {
        system: "phoniro-norr".into(),
        message_type: "order".into(),
        order_id: None,
        idempotency_key: "after-the-copy".into(),
        content_type: "application/json".into(),
        endpoint: None,
        body: b"{}".to_vec(),
        action: None,
        log: LogRef::Op(0),
    };
    pg.commit(vec![Op::AppendLog(entry), Op::Enqueue(delivery)]).await.expect("the copy takes new work");
    let pending = pg
        .deliveries(DeliveryFilter { state: Some("pending".into()), limit: 10_000, ..DeliveryFilter::default() })
        .await
        .expect("deliveries");
    let new = pending.iter().find(|d| d.idempotency_key == "after-the-copy").expect("the new delivery");
    assert_eq!(new.id, max_outbox + 1, "the outbox's ids go on after the copied ones");
    assert_eq!(
        pg.log_entries(LogFilter { after_seq: Some(entries), limit: 10, ..Default::default() })
            .await
            .expect("entries")
            .first()
            .map(|e| e.seq),
        Some(entries + 1)
    );
    drop(pg);
    let after = carehub(&["audit", "verify", "--db", &url]);
    assert!(after.status.success(), "{:?}", text(&after));
    assert!(text(&after).0.contains(&format!("verifies ({} entries)", entries + 1)), "{:?}", text(&after));

    // A second copy into the database, which now holds data, is refused and changes nothing.
    let again = carehub(&["db", "copy", "--from", &db, "--to", &url]);
    let (_, stderr) = text(&again);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the target database is not empty: message_log holds"), "{stderr}");
    assert_eq!(pg_number(&url, "SELECT COUNT(*) FROM message_log"), entries + 1);
}

#[tokio::test]
async fn db_copy_refuses_an_unknown_table_and_a_tampered_chain_with_nothing_committed() {
    let phoniro = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&phoniro).await;
    // A SQLite hub, whatever the suite's database: the copy reads its file.
    let mut hub =
        TestHub::start_with(&phoniro.uri(), &phoniro.uri(), Options { sqlite_file: true, ..Options::default() }).await;
    let pnrs = test_pnrs();
    let cm = hub.system_token("combine");
    for i in 0..3 {
        let (s, _) =
            hub.post("combine", decision_xml(&format!("DEC-{i}"), &pnrs[210 + i], PROVIDER_A, None), Some(&cm)).await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    for i in 0..3 {
        hub.wait_for_order_status(&hub.order_id(&format!("DEC-{i}")).await, "delivered").await;
    }
    hub.stop().await;
    let db = hub.db.to_str().expect("path").to_owned();
    let target = ScratchDb::create(&scratch::server(), "dbcopybad").await.expect("a database on the test server");
    let url = target.url();
    let empty = |url: &str| {
        pg_number(url, "SELECT COUNT(*) FROM message_log") == 0
            && pg_number(url, "SELECT COUNT(*) FROM outbox") == 0
            && pg_number(url, "SELECT seq FROM chain_head") == 0
    };

    // A table no migration of this carehub made is named, not silently left behind.
    let conn = rusqlite::Connection::open(&hub.db).expect("open");
    conn.execute_batch("CREATE TABLE surprise (x TEXT); INSERT INTO surprise VALUES ('kept');").expect("a table");
    let unknown = carehub(&["db", "copy", "--from", &db, "--to", &url]);
    let (_, stderr) = text(&unknown);
    assert_eq!(unknown.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the SQLite database has a table the copy does not know: surprise"), "{stderr}");
    conn.execute_batch("DROP TABLE surprise").expect("drop");

    // A tamperer changed an entry's payload behind the hub's back: the chain walked on
    // PostgreSQL names it, the copy fails, and nothing is committed.
    conn.execute_batch("DROP TRIGGER message_log_no_update").expect("drop trigger");
    let mut payload: Vec<u8> =
        conn.query_row("SELECT payload FROM message_log WHERE seq = 2", [], |r| r.get(0)).expect("an entry");
    payload[5] ^= 0x01;
    conn.execute("UPDATE message_log SET payload = ?1 WHERE seq = 2", rusqlite::params![payload]).expect("tamper");
    drop(conn);
    let tampered = carehub(&["db", "copy", "--from", &format!("sqlite:{db}"), "--to", &url]);
    let (stdout, stderr) = text(&tampered);
    assert_eq!(tampered.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("FAILED: entry 2 does not match on PostgreSQL"), "{stdout}");
    assert!(stdout.contains("nothing was committed"), "{stdout}");
    assert!(empty(&url), "a copy that does not verify leaves the target empty");

    // Neither is a missing file or a target that is not PostgreSQL copied from or to.
    let missing = carehub(&["db", "copy", "--from", "sqlite:/nonexistent/carehub.db", "--to", &url]);
    assert_eq!(missing.status.code(), Some(2), "{:?}", text(&missing));
    let not_pg = carehub(&["db", "copy", "--from", &db, "--to", "mysql://localhost/carehub"]);
    assert_eq!(not_pg.status.code(), Some(2), "{:?}", text(&not_pg));
}
