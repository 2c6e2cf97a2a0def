//! Visits over each remaining vendor's real transport: Lifecare Mobil Hemtjänst's webhook
//! (and the report on to Combine), and ParaGå's daily file of 100,000 rows over SFTP with a
//! few bad rows. (Phoniro's push and pull: `visits.rs`.)

use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::sshd::Sshd;
use crate::support::*;

fn cp1252(text: &str) -> Vec<u8> {
    let enc = carehub_core::mapping::text::encoding("windows-1252").expect("known");
    carehub_core::mapping::text::encode(text, enc).expect("encodable")
}

#[tokio::test]
async fn a_lifecare_mobil_webhook_visit_is_validated_stored_and_reported_to_combine() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    let hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    let client = test_pnrs()[940].clone();
    let (s, _) = hub
        .post("combine", november_decision("DEC-LM1", &client, PROVIDER_C), Some(&hub.system_token("combine")))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    register_tag(&hub, "04A50001", &client, "2026-11-01").await;
    let order = hub.order_id("DEC-LM1").await;
    let webhook = |id: &str| {
        let reg = |time: &str| json!({"time": time, "registration": "NFC", "tagId": "04A50001"});
        json!({"event": "visit.completed", "eventId": format!("evt-{id}"), "timestamp": "2026-11-12T08:40:00Z",
            "visit": {"id": id, "organisationNumber": PROVIDER_C, "client": {"ssn": client},
                "assignmentId": order, "employeeId": "emp-1",
                "arrival": reg("2026-11-12T09:00:00+01:00"), "departure": reg("2026-11-12T09:40:00+01:00"),
                "plannedDuration": 40, "services": [{"type": "PERSONAL_CARE"}], "status": "PERFORMED"}})
        .to_string()
    };
    let token = hub.provider(PROVIDER_C);
    let (s, r) = hub.post("lifecare-mobil", webhook("LMV-1"), Some(&token)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    assert_eq!((r["visits"][0]["outcome"].as_str(), r["visits"][0]["codes"].clone()), (Some("accepted"), json!([])));
    assert_eq!(r["visits"][0]["order_id"], order.as_str());
    // The same webhook delivered again: recognised, not stored twice.
    let (_, again) = hub.post("lifecare-mobil", webhook("LMV-1"), Some(&token)).await;
    assert_eq!(again["visits"][0]["duplicate_of"], "lifecare-mobil:LMV-1", "{again}");
    // Another provider's token cannot report this provider's visit.
    let (s, other) =
        hub.post("lifecare-mobil", webhook("LMV-2"), Some(&hub.provider_on("lifecare-mobil", PROVIDER_A))).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    assert_eq!(other["visits"][0]["codes"], json!(["FORBIDDEN"]), "{other}");

    // The order's trace shows the visit; Combine gets the report (återrapportering).
    let trace = hub.trace(&order).await;
    let visits = trace["visits"].as_array().expect("visits");
    assert_eq!(visits.len(), 1, "{trace}");
    assert_eq!((visits[0]["id"].as_str(), visits[0]["seconds"].as_i64()), (Some("lifecare-mobil:LMV-1"), Some(2400)));
    let report = eventually("the visit is reported to Combine", || async {
        vendor
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.url.path().starts_with("/callback") && String::from_utf8_lossy(&r.body).contains("LMV-1"))
    })
    .await;
    let body = String::from_utf8_lossy(&report.body).into_owned();
    assert!(body.contains(&order) && body.contains("40"), "the report names the order and the minutes: {body}");
    assert_eq!(
        report.headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
        Some("lifecare-mobil:LMV-1..lifecare-mobil:LMV-1:visits"),
        "Combine takes lists: one key per list, naming its first and last visit"
    );
}

#[tokio::test]
async fn a_paraga_file_of_100000_rows_stores_the_good_rows_and_names_each_bad_one() {
    let sshd = Sshd::start();
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    let options = Options {
        paraga: Some(sshd.system_keys(&sshd.host_key_sha256)),
        // 100,000 visit reports to Combine are not what this test is about.
        combine_extra: "visit_reports = false".into(),
        ..Options::default()
    };
    let hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), options).await;
    let pnrs = test_pnrs();
    let clients: Vec<&String> = pnrs.iter().skip(1000).take(20).collect();
    let cm = hub.system_token("combine");
    for (n, c) in clients.iter().enumerate() {
        let (s, _) = hub.post("combine", november_decision(&format!("DEC-PV{n}"), c, PROVIDER_D), Some(&cm)).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        register_tag(&hub, &format!("04F0{n:04X}"), c, "2026-11-01").await;
    }

    // 100,000 visits: each row its own staff member and time, over twenty days; three bad
    // rows among them.
    let mut text = String::from("Personnummer;Datum;Kom;Gick;Taggid;Registrering;Insatser;Utfall;Personal\r\n");
    let bad: [(usize, &str); 3] = [(10, "INVALID_VALUE"), (50_000, "INVALID_DATE"), (99_999, "")];
    for (i, line) in (0..100_000).zip(2..) {
        let n = i % clients.len();
        let day = 1 + (i / clients.len()) % 20;
        let minute = (i / (clients.len() * 20)) % 600;
        let (h, m) = (7 + minute / 60, minute % 60);
        let mut row = format!(
            "{};2026-11-{day:02};{h:02}:{m:02};{:02}:{:02};04F0{n:04X};NFC;OMV;Utförd;st-{i}",
            clients[n],
            h + (m + 25) / 60,
            (m + 25) % 60
        );
        match bad.iter().find(|(l, _)| *l == line) {
            Some((_, "INVALID_VALUE")) => row = row.replace("Utförd", "Kanske"),
            Some((_, "INVALID_DATE")) => row = row.replace(&format!("2026-11-{day:02}"), "2026-11-31"),
            Some(_) => row = format!("{};2026-11-01;08:00", clients[n]), // cut short
            None => {}
        }
        text.push_str(&row);
        text.push_str("\r\n");
    }
    sshd.drop_file("besok-20261121.csv", &cp1252(&text)).expect("drop the file");
    let started = std::time::Instant::now();
    eventually_within("the file is archived", std::time::Duration::from_secs(300), || async {
        sshd.files("archive").iter().any(|f| f.ends_with("besok-20261121.csv")).then_some(())
    })
    .await;
    eprintln!("100,000 rows taken in {:?} (debug build)", started.elapsed());
    assert!(sshd.files("error").is_empty(), "the file as a whole was taken");

    // Every result is in the log: the bad rows with their line and code.
    let (_, log) = hub.get("/v1/messages?system=paraga&type=visits&limit=1000", Some(&hub.admin())).await;
    let entries = log["messages"].as_array().expect("messages");
    assert_eq!(entries.len(), 20, "five thousand rows per commit");
    let mut refused = Vec::new();
    let mut results = 0;
    for e in entries {
        let (_, full) = hub.get(&format!("/v1/messages/{}", e["id"]), Some(&hub.admin())).await;
        for r in full["canonical"]["results"].as_array().expect("results") {
            results += 1;
            if r["id"].is_null() {
                refused.push((r["line"].as_u64().unwrap_or(0), r["codes"][0].as_str().unwrap_or("").to_owned()));
            }
        }
    }
    assert_eq!(results, 100_000);
    assert_eq!(refused.len(), 3, "{refused:?}");
    for ((line, want), (got_line, got_code)) in bad.iter().zip(&refused) {
        assert_eq!(*got_line as usize, *line);
        if !want.is_empty() {
            assert_eq!(got_code, want, "line {line}");
        } else {
            assert!(!got_code.is_empty(), "line {line} has a code");
        }
    }
    // The good rows are stored, every one accepted.
    let mut stored = 0;
    let mut after = 0;
    loop {
        let (_, page) =
            hub.get(&format!("/v1/visits?provider={PROVIDER_D}&limit=10000&after={after}"), Some(&hub.admin())).await;
        let visits = page["visits"].as_array().expect("visits");
        stored += visits.len();
        assert!(
            visits.iter().all(|v| v["outcome"] == "accepted"),
            "{}",
            visits.iter().find(|v| v["outcome"] != "accepted").cloned().unwrap_or_default()
        );
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(stored, 99_997);
}
