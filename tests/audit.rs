//! The hash-chained message log and `carehub audit verify`.

use reqwest::StatusCode;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

#[tokio::test]
async fn audit_verify_passes_untouched_and_names_a_tampered_entry() {
    let phoniro = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&phoniro).await;
    // The tamperer below works on the SQLite file; the PostgreSQL chain has its own test.
    let o = Options { sqlite_file: true, ..Options::default() };
    let mut hub = TestHub::start_with(&phoniro.uri(), &phoniro.uri(), o).await;
    let pnrs = test_pnrs();
    let cm = hub.system_token("combine");
    for i in 0..5 {
        let (s, _) =
            hub.post("combine", decision_xml(&format!("DEC-{i}"), &pnrs[200 + i], PROVIDER_A, None), Some(&cm)).await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    hub.post("combine", "<broken", Some(&cm)).await;
    for i in 0..5 {
        hub.wait_for_order_status(&order_id(&format!("DEC-{i}")), "delivered").await;
    }
    // The target: the third decision as received (its entry number depends on how the
    // deliveries interleaved), and its bytes as the log keeps them.
    let admin = hub.admin();
    let (_, page) = hub.get("/v1/messages?limit=1000", Some(&admin)).await;
    let target = page["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["direction"] == "in")
        .nth(2)
        .and_then(|m| m["id"].as_i64())
        .expect("a third entry in");
    let (_, entry) = hub.get(&format!("/v1/messages/{target}"), Some(&admin)).await;
    assert_eq!(entry["payload_encoding"], "utf-8", "{entry}");
    let mut payload = entry["payload"].as_str().expect("a payload").as_bytes().to_vec();
    hub.stop().await;
    let db = hub.db.to_str().expect("path").to_owned();

    let ok = carehub(&["audit", "verify", "--db", &db]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(stdout.contains("ok: the message log's hash chain verifies (16 entries)"), "{stdout}");

    // A tamperer works on the database file itself, behind the hub's back: only the
    // tampering writes to it here; what it reads it read through the API above.
    let conn = rusqlite::Connection::open(&hub.db).expect("open");
    // The database refuses to change a log entry...
    let refused = conn.execute("UPDATE message_log SET status = 'accepted' WHERE seq = ?1", [target]);
    assert!(refused.is_err(), "the append-only trigger holds");
    // ...so a tamperer drops the trigger and flips one byte of the entry's payload.
    conn.execute_batch("DROP TRIGGER message_log_no_update").expect("drop trigger");
    payload[10] ^= 0x01;
    conn.execute("UPDATE message_log SET payload = ?1 WHERE seq = ?2", rusqlite::params![payload, target])
        .expect("tamper");
    drop(conn);

    let bad = carehub(&["audit", "verify", "--db", &db]);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("FAILED: entry {target} does not match")), "{stdout}");

    // Removing an entry is found at the entry after the gap.
    let conn = rusqlite::Connection::open(&hub.db).expect("open");
    conn.execute_batch("DROP TRIGGER message_log_no_delete").expect("drop trigger");
    conn.execute("DELETE FROM message_log WHERE seq = ?1", [target]).expect("delete");
    drop(conn);
    let bad = carehub(&["audit", "verify", "--db", &db]);
    let after = target + 1;
    assert!(String::from_utf8_lossy(&bad.stdout).contains(&format!("FAILED: entry {after} does not match")), "{bad:?}");

    let missing = carehub(&["audit", "verify", "--db", "/nonexistent/carehub.db"]);
    assert_eq!(missing.status.code(), Some(2));
}

/// `carehub audit verify --db postgres://...` recomputes a PostgreSQL database's chain the
/// same way: it passes untouched, and names the entry a tamperer changed after getting past
/// the trigger that keeps the log append-only.
#[tokio::test]
async fn audit_verify_reads_a_postgresql_chain_and_names_a_tampered_entry() {
    use carehub_core::store::{CommitStore, LogStatus, NewLogEntry, Op};
    let database = carehub_postgres::scratch::ScratchDb::create(&carehub_postgres::scratch::server(), "audit")
        .await
        .expect("a database on the test server");
    let url = database.url();
    let store = carehub_postgres::PgStore::open(&url, carehub_model::Clock::starting_at(test_instant()))
        .await
        .expect("the store opens");
    for i in 0..5 {
        let entry = NewLogEntry {
            system: "combine".into(),
            vendor: "combine".into(),
            direction: "in",
            message_type: "decision".into(),
            content_type: "application/xml".into(),
            payload: format!("<beslut id=\"DEC-{i}\"/>").into_bytes(),
            status: LogStatus::Accepted,
            ..NewLogEntry::default()
        };
        store.commit(vec![Op::AppendLog(entry)]).await.expect("commits");
    }
    drop(store);
    let ok = carehub(&["audit", "verify", "--db", &url]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(stdout.contains("ok: the message log's hash chain verifies (5 entries)"), "{stdout}");

    let tamper = url.clone();
    let refused = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&tamper, postgres::NoTls).expect("connect");
        let refused = c.execute("UPDATE message_log SET status = 'rejected' WHERE seq = 3", &[]).is_err();
        c.batch_execute(
            "ALTER TABLE message_log DISABLE TRIGGER message_log_no_update;
             UPDATE message_log SET payload = '<beslut id=\"DEC-X\"/>'::bytea WHERE seq = 3;",
        )
        .expect("a superuser gets past the trigger");
        refused
    })
    .join()
    .expect("the thread runs");
    assert!(refused, "the append-only trigger holds");
    let bad = carehub(&["audit", "verify", "--db", &url]);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED: entry 3 does not match"), "{stdout}");
}

#[tokio::test]
async fn reads_of_the_log_are_recorded() {
    let hub = TestApp::start();
    let auditor = hub.token(carehub_server::auth::Role::Auditor, None);
    hub.get("/v1/messages", Some(&auditor)).await;
    hub.get("/v1/messages/1", Some(&auditor)).await;
    // Neither the API nor the store reads the record of reads back: the test reads its
    // table.
    let reads = log_reads(&hub.db);
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(reads.iter().all(|(role, _)| role == "auditor"));
    assert_eq!(reads[1].1, "message 1");
}

#[tokio::test]
async fn a_clients_search_finds_every_message_about_them_and_the_trace_reaches_the_invoice() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    let hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    let pnrs = test_pnrs();
    let (c, d) = (&pnrs[980], &pnrs[981]);
    let order = order_with_visits(&hub, "DEC-LOG-C", c, PROVIDER_A, "04A62001", 2..12).await;
    let other = order_with_visits(&hub, "DEC-LOG-D", d, PROVIDER_A, "04A62002", 12..22).await;
    let token = hub.provider(PROVIDER_A);
    hub.wait_for_order_status(&order, "delivered").await;
    let (s, r) = hub.post("phoniro", phoniro_ack(&order, "ACCEPTED"), Some(&token)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    // One invoice for both clients: a line each.
    let invoice =
        peppol("invoice", "LOG-1", None, &[("1", &order, "5", "HUR", "1950.00"), ("2", &other, "5", "HUR", "1950.00")]);
    let (s, r) = hub.post("phoniro", invoice, Some(&token)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");

    let admin = hub.admin();
    let kinds = |path: String| {
        let (hub, admin) = (&hub, &admin);
        async move {
            let (s, page) = hub.get(&path, Some(admin)).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            page["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    format!(
                        "{} {} {}",
                        m["direction"].as_str().unwrap_or("?"),
                        m["message_type"].as_str().unwrap_or("?"),
                        m["status"].as_str().unwrap_or("?")
                    )
                })
                .collect::<std::collections::BTreeSet<String>>()
        }
    };
    let wanted = [
        "in decision accepted",
        "out order queued",
        "out order delivered",
        "in visit accepted",
        "out visit delivered",
        "in order_ack accepted",
        "out order_ack queued",
        "out order_ack delivered",
        "in invoice accepted",
        "out verification queued",
        "out verification delivered",
    ];
    // The deliveries happen as they happen: wait until the search shows them all.
    let found = eventually_within(
        "the client's search finds every message about them",
        std::time::Duration::from_secs(10),
        || async {
            let found = kinds(format!("/v1/messages?client={c}&limit=1000")).await;
            wanted.iter().all(|w| found.contains(*w)).then_some(found)
        },
    )
    .await;
    assert!(found.contains("in tag_registration accepted"), "{found:?}");
    // The invoice is found by the other line's client and order too, and not by a stranger's.
    for path in
        [format!("/v1/messages?client={d}&type=invoice"), format!("/v1/messages?order={other}&type=verification")]
    {
        let found = kinds(path.clone()).await;
        assert!(found.iter().any(|k| k.contains("invoice") || k.contains("verification")), "{path}: {found:?}");
    }
    let stranger = kinds(format!("/v1/messages?client={}&limit=1000", pnrs[982])).await;
    assert!(stranger.is_empty(), "{stranger:?}");

    // The order's trace goes on to its invoice line and the line's verification.
    let trace = hub.trace(&order).await;
    let lines = trace["invoice_lines"].as_array().expect("invoice lines");
    assert_eq!(lines.len(), 1, "only the line naming this order: {trace}");
    assert_eq!((lines[0]["invoice_id"].as_str(), lines[0]["provider"].as_str()), (Some("LOG-1"), Some(PROVIDER_A)));
    let line = &lines[0]["line"];
    assert_eq!(
        (line["line_id"].as_str(), line["invoiced_minutes"].as_i64(), line["approved_minutes"].as_i64()),
        (Some("1"), Some(300), Some(300)),
        "{trace}"
    );
    let steps: Vec<&str> =
        trace["steps"].as_array().expect("steps").iter().filter_map(|s| s["step"].as_str()).collect();
    assert!(steps.contains(&"invoice received from phoniro"), "{steps:?}");
    assert!(steps.iter().any(|s| s.starts_with("verification delivered to")), "{steps:?}");
}
