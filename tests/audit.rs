//! The hash-chained message log and `carehub audit verify`.

use reqwest::StatusCode;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

#[tokio::test]
async fn audit_verify_passes_untouched_and_names_a_tampered_entry() {
    let phoniro = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&phoniro).await;
    let mut hub = TestHub::start(&phoniro.uri(), &phoniro.uri()).await;
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
    hub.stop().await;
    let db = hub.db.to_str().expect("path").to_owned();

    let ok = carehub(&["audit", "verify", "--db", &db]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(stdout.contains("ok: the message log's hash chain verifies (16 entries)"), "{stdout}");

    // The target: the third decision as received (its entry number depends on how the
    // deliveries interleaved).
    let conn = rusqlite::Connection::open(&hub.db).expect("open");
    let target: i64 = conn
        .query_row("SELECT seq FROM message_log WHERE direction = 'in' ORDER BY seq LIMIT 1 OFFSET 2", [], |r| r.get(0))
        .expect("an entry");
    // The database refuses to change a log entry...
    let refused = conn.execute("UPDATE message_log SET status = 'accepted' WHERE seq = ?1", [target]);
    assert!(refused.is_err(), "the append-only trigger holds");
    // ...so a tamperer drops the trigger and flips one byte of the entry's payload.
    conn.execute_batch("DROP TRIGGER message_log_no_update").expect("drop trigger");
    let mut payload: Vec<u8> =
        conn.query_row("SELECT payload FROM message_log WHERE seq = ?1", [target], |r| r.get(0)).expect("payload");
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

#[tokio::test]
async fn reads_of_the_log_are_recorded() {
    let phoniro = MockServer::start().await;
    let hub = TestHub::start(&phoniro.uri(), &phoniro.uri()).await;
    let auditor = hub.token(carehub_server::auth::Role::Auditor, None);
    hub.get("/v1/messages", Some(&auditor)).await;
    hub.get("/v1/messages/1", Some(&auditor)).await;
    let conn = rusqlite::Connection::open(&hub.db).expect("open");
    let reads: Vec<(String, String)> = conn
        .prepare("SELECT role, what FROM log_reads ORDER BY id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(reads.iter().all(|(role, _)| role == "auditor"));
    assert_eq!(reads[1].1, "message 1");
}
