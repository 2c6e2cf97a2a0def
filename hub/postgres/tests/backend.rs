//! What the PostgreSQL backend promises beyond the contract suite, for several nodes on one
//! database: migrations that any number of nodes may apply at start, one gap-free hash
//! chain whichever node appends, an outbox row claimed by one node at a time, a log the
//! database itself keeps append-only (but for retention's one change), and one access-log
//! chain whichever node records a read. Each test has a database of its own.

use std::collections::HashSet;
use std::sync::Arc;

use carehub_core::store::*;
use carehub_model::Clock;
use carehub_postgres::scratch::{server, ScratchDb};
use carehub_postgres::PgStore;
use chrono::{Duration, TimeZone, Utc};

fn start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).single().expect("a valid instant")
}

fn entry(node: usize, n: usize) -> NewLogEntry {
    NewLogEntry {
        system: "combine".into(),
        vendor: "combine".into(),
        direction: "in",
        message_type: "decision".into(),
        content_type: "application/json".into(),
        payload: format!("node {node} message {n}").into_bytes(),
        status: LogStatus::Accepted,
        decision_id: Some(format!("combine:D-{node}-{n}")),
        ..NewLogEntry::default()
    }
}

/// Runs `sql` on the database directly (as an operator would), off the async threads.
async fn sql(url: String, sql: &'static str) -> Result<u64, postgres::Error> {
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls)?;
        c.execute(sql, &[])
    })
    .await
    .expect("the task runs")
}

async fn scalar(url: String, query: &'static str) -> i64 {
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
        c.query_one(query, &[]).expect("the query runs").get::<_, i64>(0)
    })
    .await
    .expect("the task runs")
}

async fn nodes(db: &ScratchDb, n: usize) -> Vec<Arc<PgStore>> {
    let clock = Clock::frozen(start());
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Arc::new(PgStore::open(&db.url(), clock.clone()).await.expect("a node opens the store")));
    }
    out
}

/// Nodes that start together each run the migrations at start: they are applied once, and
/// opening a migrated database again changes nothing and keeps what it holds.
#[tokio::test]
async fn migrations_apply_once_however_often_they_run() {
    let db = ScratchDb::create(&server(), "migrate").await.expect("a scratch database");
    let url = db.url();
    let (a, b, c) = tokio::join!(PgStore::migrate(&url), PgStore::migrate(&url), PgStore::migrate(&url));
    for r in [a, b, c] {
        r.expect("concurrent migrations all succeed");
    }
    let first = nodes(&db, 1).await.remove(0);
    first.commit(vec![Op::AppendLog(entry(1, 1))]).await.expect("commits");
    let again = nodes(&db, 1).await.remove(0);
    PgStore::migrate(&url).await.expect("migrating a migrated database is harmless");
    // Three migrations: the schema, auditing's tables (0002_audit.sql), the pollers'
    // leases (0003_leases.sql).
    assert_eq!(scalar(url.clone(), "SELECT COUNT(*) FROM schema_migrations").await, 3, "each migration recorded once");
    let entries = again.log_entries(LogFilter { limit: 10, ..LogFilter::default() }).await.expect("reads");
    assert_eq!(entries.len(), 1, "the entry written before survives a second start");
    assert_eq!(verify_chain(&*again).await.expect("verifies").first_bad, None);
}

/// A database migrated by a newer carehub is refused, not written to.
#[tokio::test]
async fn a_database_newer_than_this_carehub_is_refused() {
    let db = ScratchDb::create(&server(), "newer").await.expect("a scratch database");
    PgStore::migrate(&db.url()).await.expect("migrates");
    sql(db.url(), "INSERT INTO schema_migrations (version, name) VALUES (999, 'future')").await.expect("inserts");
    let err = PgStore::open(&db.url(), Clock::frozen(start())).await.err().expect("the store refuses to open");
    assert!(err.to_string().contains("newer than this carehub"), "{err}");
}

/// Two nodes appending at once extend one chain: every entry's seq is taken once, with no
/// gap, a commit's entries are consecutive, every link holds, and the sequencer row holds
/// the last entry's hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_append_to_one_gap_free_chain() {
    let db = ScratchDb::create(&server(), "chain").await.expect("a scratch database");
    let stores = nodes(&db, 2).await;
    let mut tasks = tokio::task::JoinSet::new();
    const PER_NODE: usize = 25;
    for (node, store) in stores.iter().enumerate() {
        for n in 0..PER_NODE {
            let store = store.clone();
            tasks.spawn(async move {
                let ops = vec![Op::AppendLog(entry(node, n)), Op::AppendLog(entry(node, n + 1000))];
                store.commit(ops).await
            });
        }
    }
    let mut seqs = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let results = joined.expect("the task runs").expect("every commit succeeds");
        let mine: Vec<i64> = results
            .iter()
            .filter_map(|r| match r {
                OpResult::Logged(seq) => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(mine.len(), 2);
        assert_eq!(mine[1], mine[0] + 1, "a commit's entries are consecutive");
        seqs.extend(mine);
    }
    seqs.sort_unstable();
    let total = 2 * 2 * PER_NODE;
    assert_eq!(seqs, (1..=total as i64).collect::<Vec<_>>(), "each seq once, no gap");
    let report = verify_chain(&*stores[1]).await.expect("verifies");
    assert_eq!((report.entries, report.first_bad), (total as u64, None));
    let head: i64 = scalar(db.url(), "SELECT seq FROM chain_head").await;
    assert_eq!(head, total as i64, "the sequencer stands at the last entry");
    let hashes =
        scalar(db.url(), "SELECT COUNT(*) FROM chain_head h JOIN message_log m ON m.seq = h.seq AND m.hash = h.hash")
            .await;
    assert_eq!(hashes, 1, "the sequencer holds the last entry's hash");
}

/// A due delivery goes to one node at a time: two nodes claiming at once take every row,
/// none twice, while their leases hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_claimed_by_one_node_at_a_time() {
    let db = ScratchDb::create(&server(), "claims").await.expect("a scratch database");
    let stores = nodes(&db, 2).await;
    const ROWS: usize = 40;
    let mut ops = Vec::new();
    for n in 0..ROWS {
        ops.push(Op::AppendLog(entry(0, n)));
        ops.push(Op::Enqueue(NewDelivery {
            system: "phoniro".into(),
            message_type: "order".into(),
            order_id: None,
            idempotency_key: format!("K-{n}"),
            content_type: "application/json".into(),
            endpoint: None,
            body: Vec::new(),
            action: None,
            log: LogRef::Op(2 * n),
        }));
    }
    stores[0].commit(ops).await.expect("the deliveries are queued");
    let claimer = |node: usize| {
        let store = stores[node].clone();
        async move {
            let mut mine = Vec::new();
            loop {
                let op = Op::ClaimDue {
                    owner: format!("node-{node}"),
                    lease_until: start() + Duration::minutes(5),
                    limit: 3,
                };
                let results = store.commit(vec![op]).await.expect("a claim commits");
                let Some(OpResult::Claimed(rows)) = results.into_iter().next() else { panic!("a claim yields rows") };
                if rows.is_empty() {
                    return mine;
                }
                mine.extend(rows.into_iter().map(|d| d.idempotency_key));
            }
        }
    };
    let (a, b) = tokio::join!(tokio::spawn(claimer(0)), tokio::spawn(claimer(1)));
    let (a, b) = (a.expect("node 0 runs"), b.expect("node 1 runs"));
    let all: Vec<&String> = a.iter().chain(b.iter()).collect();
    let distinct: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), ROWS, "every row claimed once: {} by node 0, {} by node 1", a.len(), b.len());
    assert_eq!(distinct.len(), ROWS, "no row claimed by both");
}

/// The database refuses to change, remove or empty a log entry, whoever asks.
#[tokio::test]
async fn the_database_keeps_the_log_append_only() {
    let db = ScratchDb::create(&server(), "appendonly").await.expect("a scratch database");
    let store = nodes(&db, 1).await.remove(0);
    store.commit(vec![Op::AppendLog(entry(0, 0))]).await.expect("commits");
    for statement in ["UPDATE message_log SET system = 'forged'", "DELETE FROM message_log", "TRUNCATE message_log"] {
        let err = sql(db.url(), statement).await.expect_err(statement);
        assert!(err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"), "{err:?}");
    }
    let entries = store.log_entries(LogFilter { limit: 10, ..LogFilter::default() }).await.expect("reads");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].system, "combine");
    assert_eq!(verify_chain(&*store).await.expect("verifies").first_bad, None);
}

/// A listing filtered by text that no stored value can hold (a NUL character, which
/// PostgreSQL's text refuses) finds nothing, as on SQLite, rather than failing the store.
#[tokio::test]
async fn a_filter_with_a_nul_character_finds_nothing() {
    let db = ScratchDb::create(&server(), "nul").await.expect("a scratch database");
    let store = nodes(&db, 1).await.remove(0);
    store.commit(vec![Op::AppendLog(entry(0, 0))]).await.expect("commits");
    let odd = "pending\u{0}".to_owned();
    let found = store
        .deliveries(DeliveryFilter { state: Some(odd.clone()), limit: 10, ..DeliveryFilter::default() })
        .await
        .expect("the listing answers");
    assert!(found.is_empty());
    let entries = store
        .log_entries(LogFilter { system: Some(odd), limit: 10, ..LogFilter::default() })
        .await
        .expect("the log answers");
    assert!(entries.is_empty());
    assert_eq!(store.log_entries(LogFilter { limit: 10, ..LogFilter::default() }).await.expect("reads").len(), 1);
}

/// A delivery attempt whose error carries a NUL character (a vendor's answer may), which
/// PostgreSQL's text cannot hold, is still recorded, in the log and on the outbox row,
/// with the character replaced, and the chain verifies over what is stored.
#[tokio::test]
async fn an_attempt_with_a_nul_in_its_error_is_recorded() {
    let db = ScratchDb::create(&server(), "nulerror").await.expect("a scratch database");
    let store = nodes(&db, 1).await.remove(0);
    let queued = NewLogEntry { direction: "out", status: LogStatus::Queued, ..entry(0, 0) };
    let delivery = NewDelivery {
        system: "phoniro".into(),
        message_type: "order".into(),
        order_id: None,
        idempotency_key: "K-NUL".into(),
        content_type: "application/json".into(),
        endpoint: None,
        body: Vec::new(),
        action: None,
        log: LogRef::Op(0),
    };
    store.commit(vec![Op::AppendLog(queued), Op::Enqueue(delivery)]).await.expect("queued");
    let id = store.deliveries(DeliveryFilter { limit: 1, ..DeliveryFilter::default() }).await.expect("reads")[0].id;
    let error = "502: bad\u{0}gateway".to_owned();
    let failed = NewLogEntry {
        direction: "out",
        status: LogStatus::Retrying,
        error_message: Some(error.clone()),
        follows: Some(1),
        ..entry(0, 1)
    };
    let retry = AttemptOutcome::Retry { next_attempt_at: start() + Duration::minutes(1), error };
    store.commit(vec![Op::AppendLog(failed), Op::Attempted { id, outcome: retry }]).await.expect("recorded");
    let row = store.deliveries(DeliveryFilter { limit: 1, ..DeliveryFilter::default() }).await.expect("reads");
    assert_eq!(row[0].last_error.as_deref(), Some("502: bad\u{FFFD}gateway"));
    assert_eq!(row[0].attempts, 1);
    let logged = store.log_entry(2).await.expect("reads").expect("the attempt's entry");
    assert_eq!(logged.error_message.as_deref(), Some("502: bad\u{FFFD}gateway"));
    assert_eq!(verify_chain(&*store).await.expect("verifies").first_bad, None);
}

/// Runs several statements on the database directly, off the async threads.
async fn batch(url: String, sql: String) {
    tokio::task::spawn_blocking(move || {
        let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connects");
        c.batch_execute(&sql).expect("the batch runs");
    })
    .await
    .expect("the task runs")
}

/// Entries written at schema version 1 are hashed over their payloads: after the upgrade
/// the chain still verifies across them and the entries after, retention keeps their
/// payloads (their hashes could not be checked without them) and empties the newer one,
/// and the database still refuses any other change to the log (as SQLite's version 11).
#[tokio::test]
async fn entries_from_before_payload_hashes_verify_and_keep_their_payloads() {
    let db = ScratchDb::create(&server(), "upgrade").await.expect("a scratch database");
    let at = start();
    let mut prev = carehub_core::log::GENESIS.to_owned();
    let mut inserts = String::from(include_str!("../migrations/0001_init.sql"));
    inserts.push_str(
        "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO schema_migrations (version, name) VALUES (1, 'init');",
    );
    for seq in 1..=2i64 {
        let mut e = LogEntry {
            seq,
            at,
            system: "combine".into(),
            vendor: "combine".into(),
            direction: "in".into(),
            message_type: "decision".into(),
            content_type: "application/xml".into(),
            payload: format!("<old {seq}/>").into_bytes(),
            canonical: None,
            status: LogStatus::Accepted,
            error_code: None,
            error_message: None,
            decision_id: None,
            order_id: None,
            client: None,
            provider: None,
            delivery_key: None,
            prev_hash: prev.clone(),
            hash: String::new(),
            payload_hash: None,
            payload_removed: false,
        };
        e.hash = carehub_core::log::entry_hash(&prev, &e);
        inserts.push_str(&format!(
            "INSERT INTO message_log (seq, at, system, vendor, direction, message_type, content_type, payload,
                status, prev_hash, hash) VALUES ({seq}, '{}', 'combine', 'combine', 'in', 'decision',
                'application/xml', convert_to('<old {seq}/>', 'UTF8'), 'accepted', '{}', '{}');
             UPDATE chain_head SET seq = {seq}, hash = '{}';",
            ts(at),
            e.prev_hash,
            e.hash,
            e.hash
        ));
        prev = e.hash;
    }
    batch(db.url(), inserts).await;

    let clock = Clock::frozen(at + Duration::days(1));
    let store = PgStore::open(&db.url(), clock.clone()).await.expect("the upgrade");
    store.commit(vec![Op::AppendLog(entry(0, 0))]).await.expect("append");
    let before = clock.now() + Duration::seconds(1);
    let run = store.commit(vec![Op::RemovePayloads { before, policy: "all".into() }]).await.expect("retention");
    let Some(OpResult::Logged(run)) = run.first().cloned() else { panic!("the run is logged") };
    let entries =
        store.log_entries(LogFilter { limit: 10, with_payload: true, ..LogFilter::default() }).await.expect("entries");
    assert_eq!(entries.iter().map(|e| e.payload_removed).collect::<Vec<_>>(), vec![false, false, true, false]);
    assert_eq!(entries[0].payload, b"<old 1/>".to_vec());
    assert!(entries[2].payload.is_empty() && entries[2].payload_hash.is_some());
    let said = entries[run as usize - 1].canonical.clone().unwrap_or_default();
    assert!(said.contains(r#""kept_unhashed":2"#) && said.contains(r#""removed":1"#), "{said}");
    let report = verify_chain(&store).await.expect("verifies");
    assert_eq!((report.entries, report.first_bad), (4, None));

    for statement in [
        "UPDATE message_log SET status = 'rejected' WHERE seq = 3",
        "UPDATE message_log SET payload = ''::bytea WHERE seq = 1",
        "UPDATE message_log SET payload = '\\x00'::bytea, retained_by = NULL WHERE seq = 3",
        "UPDATE message_log SET payload = ''::bytea, retained_by = 4 WHERE seq = 2",
        "DELETE FROM message_log WHERE seq = 3",
    ] {
        let err = sql(db.url(), statement).await.expect_err(statement);
        assert!(format!("{err:?}").contains("append-only"), "{statement}: {err:?}");
    }
}

/// Reads recorded by two nodes at once form one access-log chain, numbered without gaps,
/// and the database keeps it append-only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_record_reads_in_one_access_chain() {
    let db = ScratchDb::create(&server(), "access").await.expect("a scratch database");
    let stores = nodes(&db, 2).await;
    let mut tasks = tokio::task::JoinSet::new();
    const PER_NODE: usize = 20;
    for (node, store) in stores.iter().enumerate() {
        for n in 0..PER_NODE {
            let store = store.clone();
            tasks.spawn(async move {
                let access = NewAccess {
                    subject: format!("node-{node}"),
                    role: "auditor".into(),
                    query: AccessQuery::new("GET /v1/messages").with("n", Some(n)),
                    clients: vec!["193601016987".into()],
                    entries: vec![1],
                };
                // Half the reads come with an append, which takes the log's sequencer first.
                let mut ops = vec![Op::RecordAccess(access)];
                if n % 2 == 0 {
                    ops.push(Op::AppendLog(entry(node, n)));
                }
                store.commit(ops).await
            });
        }
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("the task runs").expect("every commit succeeds");
    }
    let total = 2 * PER_NODE;
    let all = stores[0]
        .access_log(AccessFilter { limit: 1000, ..AccessFilter::default() })
        .await
        .expect("reads the access log");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=total as i64).collect::<Vec<_>>());
    let report = verify_access_chain(&*stores[1]).await.expect("verifies");
    assert_eq!((report.entries, report.first_bad), (total as u64, None));
    let mine = stores[1]
        .access_log(AccessFilter {
            client: Some("193601016987".into()),
            subject: Some("node-1".into()),
            limit: 1000,
            ..AccessFilter::default()
        })
        .await
        .expect("reads");
    assert_eq!(mine.len(), PER_NODE);
    for statement in ["UPDATE access_log SET subject = 'x'", "DELETE FROM access_log", "TRUNCATE access_log CASCADE"] {
        let err = sql(db.url(), statement).await.expect_err(statement);
        assert!(format!("{err:?}").contains("append-only"), "{statement}: {err:?}");
    }
}

fn delivery(key: &str, log: LogRef) -> NewDelivery {
    NewDelivery {
        system: "phoniro-norr".into(),
        message_type: "order".into(),
        order_id: None,
        idempotency_key: key.into(),
        content_type: "application/json".into(),
        endpoint: None,
        body: b"{}".to_vec(),
        action: None,
        log,
    }
}

fn linked(n: usize) -> NewLogEntry {
    NewLogEntry {
        links: vec![LogLink { client: Some(format!("client-{n}")), order_id: Some(format!("order-{n}")) }],
        ..entry(0, n)
    }
}

/// Entries whose keys and links another entry follows up (a delivery's attempt follows its
/// queued entry): `follows` names the earlier one.
fn follower(of: i64) -> NewLogEntry {
    NewLogEntry { message_type: "order".into(), direction: "out", decision_id: None, follows: Some(of), ..entry(9, 0) }
}

async fn seqs_for_client(store: &PgStore, client: &str) -> Vec<i64> {
    let filter = LogFilter { client: Some(client.into()), limit: 100, ..LogFilter::default() };
    store.log_entries(filter).await.expect("reads").iter().map(|e| e.seq).collect()
}

/// The writer sends a commit's inserts together, at its end, and its fast pass is the one
/// that runs: concurrent requests each with an entry and a delivery commit without a second
/// pass. An entry that follows another takes its keys and links whether the writer
/// remembers the earlier one (its own commit) or reads it (another node's). And a key
/// another request of the batch took fails that request alone, as a Conflict.
#[tokio::test]
async fn held_inserts_commit_together_and_a_taken_key_fails_only_its_request() {
    let db = ScratchDb::create(&server(), "held").await.expect("a scratch database");
    let stores = nodes(&db, 2).await;
    let (a, b) = (stores[0].clone(), stores[1].clone());
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let a = a.clone();
            tokio::spawn(async move {
                a.commit(vec![Op::AppendLog(linked(n)), Op::Enqueue(delivery(&format!("k{n}"), LogRef::Op(0)))]).await
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("the task runs").expect("the commit");
    }
    assert_eq!(a.second_passes(), 0, "every batch committed on its first pass");
    assert_eq!(
        a.deliveries(DeliveryFilter { limit: 100, ..DeliveryFilter::default() }).await.expect("reads").len(),
        20
    );

    // Followers: one on the node that appended the earlier entry, one on the other node.
    let first = seqs_for_client(&a, "client-3").await;
    assert_eq!(first.len(), 1, "{first:?}");
    let on_a = a.commit(vec![Op::AppendLog(follower(first[0]))]).await.expect("commit");
    let on_b = b.commit(vec![Op::AppendLog(follower(first[0]))]).await.expect("commit");
    let logged = |r: Vec<OpResult>| match r.first() {
        Some(OpResult::Logged(seq)) => *seq,
        other => panic!("an entry: {other:?}"),
    };
    let (on_a, on_b) = (logged(on_a), logged(on_b));
    assert_eq!(seqs_for_client(&a, "client-3").await, vec![first[0], on_a, on_b], "linked to the client, both ways");
    let filter = LogFilter { order_id: Some("order-3".into()), limit: 100, ..LogFilter::default() };
    let by_order = a.log_entries(filter).await.expect("reads");
    assert_eq!(by_order.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![first[0], on_a, on_b]);
    for e in by_order.iter().skip(1) {
        assert_eq!(e.decision_id.as_deref(), Some("combine:D-0-3"), "the decision taken from the entry followed");
    }

    // A key taken twice in one batch (and once more later): only the late ones fail.
    let tasks: Vec<_> = ["dup", "dup", "fresh", "k5"]
        .into_iter()
        .enumerate()
        .map(|(n, key)| {
            let a = a.clone();
            tokio::spawn(async move {
                a.commit(vec![Op::AppendLog(entry(1, n)), Op::Enqueue(delivery(key, LogRef::Op(0)))]).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.expect("the task runs"));
    }
    let conflicts = outcomes.iter().filter(|o| matches!(o, Err(StoreError::Conflict(_)))).count();
    assert_eq!(conflicts, 2, "one of the two 'dup' and the 'k5' taken before: {outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 2, "{outcomes:?}");
    assert!(a.second_passes() >= 1, "the taken keys were found on a second pass");
    let report = verify_chain(&*a).await.expect("verifies");
    assert_eq!(report.first_bad, None);
    assert_eq!(report.entries, 20 + 2 + 2, "the failed requests' entries are not in the chain");
}
