//! The hash-chained message log and `carehub audit verify`; the access log; signed
//! checkpoints, proofs and the export bundle, checked by `carehub audit verify-bundle` and
//! by the independent `scripts/verify_bundle.py`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use carehub_server::auth::Role;
use reqwest::StatusCode;
use serde_json::Value;
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
        hub.wait_for_order_status(&hub.order_id(&format!("DEC-{i}")).await, "delivered").await;
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
        "out visits delivered", // Combine takes its visit reports in lists
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

/// Posts a decision for each client and waits until every order is delivered.
async fn decided(hub: &TestHub, ids_and_clients: &[(&str, &str)]) {
    let cm = hub.system_token("combine");
    for (id, client) in ids_and_clients {
        let (s, r) = hub.post("combine", decision_xml(id, client, PROVIDER_A, None), Some(&cm)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    }
    for (id, _) in ids_and_clients {
        hub.wait_for_order_status(&hub.order_id(id).await, "delivered").await;
    }
}

async fn vendor() -> MockServer {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    vendor
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array().expect("an array").iter().map(|x| x.as_i64().expect("a number")).collect()
}

#[tokio::test]
async fn reads_are_in_the_access_log_with_the_clients_shown_and_a_changed_byte_is_found() {
    let vendor = vendor().await;
    let mut hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    let pnrs = test_pnrs();
    let (looked_at, other) = (&pnrs[300], &pnrs[301]);
    decided(&hub, &[("DEC-ACC-1", looked_at), ("DEC-ACC-2", other)]).await;

    let anna = hub.person(Role::Auditor, "anna");
    let (s, page) = hub.get(&format!("/v1/messages?client={looked_at}"), Some(&anna)).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let shown: Vec<i64> =
        page["messages"].as_array().expect("messages").iter().map(|m| m["id"].as_i64().expect("id")).collect();
    assert!(!shown.is_empty());
    let (s, _) = hub.get(&format!("/v1/messages/{}", shown[0]), Some(&anna)).await;
    assert_eq!(s, StatusCode::OK);

    // Who has looked at this client: anna, twice, and what each answer showed (the test's
    // own polling of the orders, as "test", is there too).
    let erik = hub.person(Role::Admin, "erik");
    let (s, log) = hub.get(&format!("/v1/access-log?client={looked_at}&subject=anna"), Some(&erik)).await;
    assert_eq!(s, StatusCode::OK, "{log}");
    let entries = log["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2, "{log}");
    let (list, one) = (&entries[0], &entries[1]);
    assert_eq!((list["subject"].as_str(), list["role"].as_str()), (Some("anna"), Some("auditor")));
    assert_eq!(list["query"]["endpoint"], "GET /v1/messages");
    assert_eq!(list["query"]["filters"]["client"], looked_at.as_str());
    assert_eq!(list["clients"], serde_json::json!([looked_at]), "only the client asked about was shown");
    assert_eq!(ids(&list["entries"]), shown);
    assert_eq!(one["query"]["endpoint"], "GET /v1/messages/{id}");
    assert_eq!(ids(&one["entries"]), vec![shown[0]]);
    assert_eq!(one["prev_hash"], list["hash"], "chained");
    assert!(list["at"].as_str().is_some_and(|at| at.starts_with("2026-12-03T")), "the hub's clock: {list}");

    // Reading the access log is itself recorded, with the client it asked about.
    let (_, mine) = hub.get("/v1/access-log?subject=erik", Some(&erik)).await;
    let mine = mine["entries"].as_array().expect("entries");
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0]["query"]["endpoint"], "GET /v1/access-log");
    assert_eq!(mine[0]["query"]["filters"]["client"], looked_at.as_str());
    assert!(mine[0]["clients"].as_array().expect("clients").iter().any(|c| c == looked_at.as_str()));
    let (_, page) = hub.get("/v1/access-log?limit=1", Some(&erik)).await;
    assert_eq!((page["entries"].as_array().map(Vec::len), page["next_after"].as_i64()), (Some(1), Some(1)));
    let (s, _) = hub.get("/v1/access-log", Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = hub.get("/v1/access-log?client=123", Some(&erik)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    hub.stop().await;

    let db = hub.db.to_str().expect("path").to_owned();
    let count = db_value(&hub.db, "SELECT COUNT(*) FROM access_log");
    let ok = carehub(&["audit", "verify", "--db", &db]);
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("ok: the access log's hash chain verifies ({count} entries)")), "{stdout}");

    // One digit of the client in anna's first read changed, behind the hub's back.
    let target = list["seq"].as_i64().expect("seq");
    let refused = db_execute(&hub.db, &format!("UPDATE access_log SET subject = 'x' WHERE seq = {target}"));
    assert!(refused.is_err(), "append-only");
    drop_trigger(&hub.db, "access_log", "access_log_no_update");
    let clients = db_value(&hub.db, &format!("SELECT clients FROM access_log WHERE seq = {target}"));
    let other_digit = if looked_at.ends_with('0') { "1" } else { "0" };
    let changed = clients.replacen(looked_at.as_str(), &format!("{}{other_digit}", &looked_at[..11]), 1);
    assert_ne!(changed, clients);
    let tamper = format!("UPDATE access_log SET clients = '{changed}' WHERE seq = {target}");
    assert_eq!(db_execute(&hub.db, &tamper), Ok(1), "tamper");
    let bad = carehub(&["audit", "verify", "--db", &db]);
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("ok: the message log's hash chain verifies"), "{stdout}");
    assert!(stdout.contains(&format!("FAILED: access-log entry {target} does not match")), "{stdout}");
}

/// Runs the independent checker; true when it says the input verifies.
fn script(args: &[&Path]) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/verify_bundle.py");
    let out = std::process::Command::new(python_tool("python")).arg(script).args(args).output().expect("python");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// `carehub audit verify-bundle`; true when it says the bundle verifies.
fn verify_bundle(bundle: &Path, known: Option<&Path>) -> (bool, String) {
    let mut args = vec!["audit", "verify-bundle", bundle.to_str().expect("path")];
    if let Some(k) = known {
        args.extend(["--known", k.to_str().expect("path")]);
    }
    let out = carehub(&args);
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn proofs_over_the_api_and_the_cli_verify_with_the_independent_script() {
    let vendor = vendor().await;
    let mut hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    let pnrs = test_pnrs();
    decided(&hub, &[("DEC-PRF-1", &pnrs[310]), ("DEC-PRF-2", &pnrs[311]), ("DEC-PRF-3", &pnrs[312])]).await;
    let auditor = hub.token(Role::Auditor, None);
    let tmp = hub.dir.path().to_owned();

    let (s, first) = hub.get("/v1/log/checkpoint", Some(&auditor)).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let first_size = first["size"].as_i64().expect("size");
    assert!(first_size >= 6, "three decisions in and out: {first}");
    assert!(first["note"].as_str().is_some_and(|n| n.starts_with(&format!("carehub.test/log\n{first_size}\n"))));

    let (s, proof) = hub.get("/v1/log/entries/2/proof", Some(&auditor)).await;
    assert_eq!(s, StatusCode::OK, "{proof}");
    assert_eq!((proof["leaf_index"].as_i64(), proof["tree_size"].as_i64()), (Some(1), Some(first_size)));
    let file = write(&tmp, "inclusion.json", &proof.to_string());
    let (ok, out) = script(&[Path::new("--proof"), &file]);
    assert!(ok, "{out}");
    let mut forged = proof.clone();
    forged["hash"] = Value::String("00".repeat(32));
    let file = write(&tmp, "forged.json", &forged.to_string());
    assert!(!script(&[Path::new("--proof"), &file]).0, "another entry's hash does not verify");

    decided(&hub, &[("DEC-PRF-4", &pnrs[313]), ("DEC-PRF-5", &pnrs[314])]).await;
    let (s, consistency) = hub.get(&format!("/v1/log/consistency?from={first_size}"), Some(&auditor)).await;
    assert_eq!(s, StatusCode::OK, "{consistency}");
    assert!(consistency["to_size"].as_i64().expect("size") >= first_size + 4, "{consistency}");
    let file = write(&tmp, "consistency.json", &consistency.to_string());
    let (ok, out) = script(&[Path::new("--proof"), &file]);
    assert!(ok, "{out}");

    let (s, _) = hub.get("/v1/log/checkpoint", Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, e) = hub.get("/v1/log/entries/100000/proof", Some(&auditor)).await;
    assert_eq!((s, e["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")));
    let (s, e) = hub.get("/v1/log/consistency?from=3", Some(&auditor)).await;
    assert_eq!((s, e["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")), "no checkpoint of size 3");
    hub.stop().await;

    // The same from the command line, on the stopped hub's database.
    let config = hub.config_path.to_str().expect("path").to_owned();
    for (name, args) in [("entry", ["--entry", "1"]), ("from", ["--from", &first_size.to_string()])] {
        let out = carehub(&[&["audit", "prove"], &args[..], &["--config", &config]].concat());
        assert!(out.status.success(), "{out:?}");
        let file = write(&tmp, &format!("cli-{name}.json"), &String::from_utf8_lossy(&out.stdout));
        let (ok, text) = script(&[Path::new("--proof"), &file]);
        assert!(ok, "{name}: {text}");
    }
}

#[tokio::test]
async fn an_exported_bundle_verifies_offline_and_a_change_a_removal_and_a_fork_are_found() {
    let vendor = vendor().await;
    let mut hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    let pnrs = test_pnrs();
    decided(&hub, &[("DEC-EXP-1", &pnrs[320]), ("DEC-EXP-2", &pnrs[321]), ("DEC-EXP-3", &pnrs[322])]).await;
    hub.stop().await;
    let tmp = hub.dir.path().to_owned();
    let bundle = tmp.join("bundle.jsonl");
    let (config, out) = (hub.config_path.to_str().expect("path"), bundle.to_str().expect("path"));
    let export = carehub(&[
        "audit",
        "export",
        "--from",
        "2026-12-01",
        "--to",
        "2026-12-10",
        "--out",
        out,
        "--subject",
        "revisor",
        "--config",
        config,
    ]);
    assert!(export.status.success(), "{export:?}");
    let text = std::fs::read_to_string(&bundle).expect("bundle");
    let lines: Vec<&str> = text.lines().collect();
    let size: i64 = db_value(&hub.db, "SELECT MAX(seq) FROM message_log").parse().expect("size");
    assert_eq!(lines.len() as i64, size + 1, "a header and every entry of the range");

    let (ok, out) = verify_bundle(&bundle, None);
    assert!(ok && out.contains(&format!("ok: {size} entries (1..{size})")), "{out}");
    let (ok, out) = script(&[&bundle]);
    assert!(ok, "{out}");

    // The export is in the access log, with the clients it showed.
    let record = db_rows(&hub.db, "SELECT subject, clients FROM access_log WHERE query LIKE '%audit export%'");
    let [row] = &record[..] else { panic!("one record of the export: {record:?}") };
    let (subject, clients) = (row[0].clone().unwrap_or_default(), row[1].clone().unwrap_or_default());
    assert_eq!(subject, "revisor");
    assert!(clients.contains(pnrs[320].as_str()) && clients.contains(pnrs[322].as_str()), "{clients}");

    // A changed entry: one byte of the second entry's payload.
    let mut entry: Value = serde_json::from_str(lines[2]).expect("an entry");
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut payload = b64.decode(entry["payload"].as_str().expect("payload")).expect("base64");
    payload[5] ^= 1;
    entry["payload"] = b64.encode(payload).into();
    let changed = entry.to_string();
    let mut tampered = lines.clone();
    tampered[2] = &changed;
    let file = write(&tmp, "changed.jsonl", &tampered.join("\n"));
    let (ok, out) = verify_bundle(&file, None);
    assert!(!ok && out.contains("entry 2: its payload does not match its payload hash"), "{out}");
    let (ok, out) = script(&[&file]);
    assert!(!ok && out.contains("entry 2"), "{out}");

    // A removed entry: the third.
    let mut removed = lines.clone();
    removed.remove(3);
    let file = write(&tmp, "removed.jsonl", &removed.join("\n"));
    let (ok, out) = verify_bundle(&file, None);
    assert!(!ok && out.contains("entry 4: follows entry 2"), "{out}");
    let (ok, out) = script(&[&file]);
    assert!(!ok && out.contains("entry 4"), "{out}");

    // A fork: the hub's key signed another root for the same size.
    let key = carehub_core::log::checkpoint::signing_key_from_text(TEST_SIGNING_KEY).expect("key");
    let fork = carehub_core::log::checkpoint::Checkpoint {
        origin: "carehub.test/log".into(),
        size: size as u64,
        root: [9; 32],
    };
    let known = write(&tmp, "fork.note", &fork.sign(&key));
    let (ok, out) = verify_bundle(&bundle, Some(&known));
    assert!(!ok && out.contains(&format!("the log forked: two checkpoints of size {size}")), "{out}");
    let (ok, out) = script(&[&bundle, &known]);
    assert!(!ok && out.contains("forked"), "{out}");
    // The same fork carried inside the bundle, as an earlier checkpoint.
    let mut header: Value = serde_json::from_str(lines[0]).expect("header");
    header["earlier"] = serde_json::json!([{ "checkpoint": fork.sign(&key), "consistency": [] }]);
    let header = header.to_string();
    let mut forked = lines.clone();
    forked[0] = &header;
    let file = write(&tmp, "forked.jsonl", &forked.join("\n"));
    assert!(!verify_bundle(&file, None).0);
    assert!(!script(&[&file]).0);

    let missing = carehub(&["audit", "verify-bundle", "/nonexistent/bundle.jsonl"]);
    assert_eq!(missing.status.code(), Some(2));
}

#[tokio::test]
async fn the_hub_checkpoints_its_log_in_the_background_after_new_entries() {
    let vendor = vendor().await;
    let options = Options { checkpoint_every_ms: 100, ..Options::default() };
    let mut hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), options).await;
    let pnrs = test_pnrs();
    decided(&hub, &[("DEC-BG-1", &pnrs[330])]).await;
    let size: i64 = db_value(&hub.db, "SELECT MAX(seq) FROM message_log").parse().expect("size");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let note = loop {
        let latest: Option<(i64, String)> =
            db_rows(&hub.db, "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
                .pop()
                .and_then(|r| Some((r[0].as_deref()?.parse().ok()?, r[1].clone()?)));
        match latest {
            Some((s, note)) if s >= size => break note,
            _ if std::time::Instant::now() > deadline => panic!("no checkpoint of {size} entries: {latest:?}"),
            _ => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    };
    hub.stop().await;
    let key = carehub_core::log::checkpoint::signing_key_from_text(TEST_SIGNING_KEY).expect("key");
    let cp = carehub_core::log::checkpoint::Checkpoint::verify(&note, &key.verifying_key()).expect("signed");
    assert!(cp.size as i64 >= size);
}

#[tokio::test]
async fn after_retention_the_payloads_are_gone_and_the_chain_every_proof_and_the_bundle_still_verify() {
    let vendor = vendor().await;
    let mut hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    let pnrs = test_pnrs();
    decided(&hub, &[("DEC-RET-1", &pnrs[340]), ("DEC-RET-2", &pnrs[341])]).await;
    let auditor = hub.token(Role::Auditor, None);
    let tmp = hub.dir.path().to_owned();
    let (_, checkpoint) = hub.get("/v1/log/checkpoint", Some(&auditor)).await;
    let size = checkpoint["size"].as_i64().expect("size");
    let (s, proof) = hub.get("/v1/log/entries/1/proof", Some(&auditor)).await;
    assert_eq!(s, StatusCode::OK, "{proof}");
    let early_proof = write(&tmp, "early-proof.json", &proof.to_string());
    hub.stop().await;

    let config = hub.config_path.to_str().expect("path").to_owned();
    let run = carehub(&["audit", "retention", "--before", "2026-12-04", "--config", &config]);
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{run:?}");
    let run_seq = size + 1;
    assert!(said.contains(&format!("retention logged as entry {run_seq}:")), "{said}");
    assert!(said.contains(&format!(r#""removed":{size}"#)), "every entry so far: {said}");

    // The payloads are gone from the database; their hashes are not.
    let counts = db_rows(
        &hub.db,
        &format!(
            "SELECT COUNT(*) FILTER (WHERE length(payload) > 0), COUNT(payload_sha256) FROM message_log \
             WHERE seq < {run_seq}"
        ),
    );
    let (with_payload, with_hash) = (counts[0][0].clone(), counts[0][1].clone());
    assert_eq!((with_payload, with_hash), (Some("0".to_owned()), Some(size.to_string())));

    let verify = carehub(&["audit", "verify", "--db", hub.db.to_str().expect("path")]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));
    // The proof taken before still verifies (the entry's hash, the leaf, did not change),
    // and the log after retention is consistent with the checkpoint before it.
    let (ok, out) = script(&[Path::new("--proof"), &early_proof]);
    assert!(ok, "{out}");
    for (name, args) in [("entry", ["--entry", "1"]), ("from", ["--from", &size.to_string()])] {
        let out = carehub(&[&["audit", "prove"], &args[..], &["--config", &config]].concat());
        assert!(out.status.success(), "{out:?}");
        let proof: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        if name == "entry" {
            let early: Value =
                serde_json::from_str(&std::fs::read_to_string(&early_proof).expect("read")).expect("JSON");
            assert_eq!(proof["hash"], early["hash"], "the entry's hash is unchanged");
        }
        let file = write(&tmp, &format!("after-{name}.json"), &proof.to_string());
        let (ok, text) = script(&[Path::new("--proof"), &file]);
        assert!(ok, "{name}: {text}");
    }

    let bundle = tmp.join("after.jsonl");
    let export = carehub(&[
        "audit",
        "export",
        "--from",
        "2026-12-01",
        "--to",
        "2026-12-10",
        "--out",
        bundle.to_str().expect("path"),
        "--config",
        &config,
    ]);
    assert!(export.status.success(), "{export:?}");
    let text = std::fs::read_to_string(&bundle).expect("bundle");
    let entries: Vec<Value> = text.lines().skip(1).map(|l| serde_json::from_str(l).expect("entry")).collect();
    assert!(entries.iter().filter(|e| e["seq"].as_i64() < Some(run_seq)).all(|e| e["payload"].is_null()));
    assert!(entries.iter().any(|e| e["message_type"] == "retention" && !e["payload"].is_null()));
    let (ok, out) = verify_bundle(&bundle, None);
    assert!(ok, "{out}");
    let (ok, out) = script(&[&bundle]);
    assert!(ok, "{out}");

    // A removed payload's hash cannot be changed unnoticed either.
    let mut tampered: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut first: Value = serde_json::from_str(&tampered[1]).expect("entry");
    first["payload_sha256"] = Value::String("11".repeat(32));
    tampered[1] = first.to_string();
    let file = write(&tmp, "after-tampered.jsonl", &tampered.join("\n"));
    assert!(!verify_bundle(&file, None).0);
    assert!(!script(&[&file]).0);
}

#[tokio::test]
async fn keygen_writes_a_private_key_the_configuration_takes_and_never_overwrites_it() {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("audit.key");
    let made = carehub(&["audit", "keygen", "--out", key.to_str().expect("path")]);
    let stdout = String::from_utf8_lossy(&made.stdout).into_owned();
    assert!(made.status.success(), "{made:?}");
    let public = stdout.lines().find_map(|l| l.strip_prefix("public key: ")).expect("a public key").to_owned();
    let written = std::fs::read_to_string(&key).expect("the key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "readable by its owner only");
    }
    let again = carehub(&["audit", "keygen", "--out", key.to_str().expect("path")]);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&key).expect("the key"), written, "not overwritten");

    // The configuration takes it as a file, like every secret, and signs with it.
    let nowhere = "http://127.0.0.1:9";
    let text = config_text(&dir.path().join("carehub.db"), nowhere, nowhere, &Options::default())
        .replace(&format!("signing_key = \"{TEST_SIGNING_KEY}\""), "signing_key_file = \"audit.key\"");
    std::fs::write(dir.path().join("carehub.toml"), text).expect("write");
    let config = carehub_server::config::Config::load(&dir.path().join("carehub.toml")).expect("valid");
    let signing = config.audit.key().expect("a key");
    assert_eq!(carehub_core::log::checkpoint::public_key_text(&signing.verifying_key()), public);
}
