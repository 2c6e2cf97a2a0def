//! Invoices end to end over HTTP (SPEC §4.3, §7): a provider's PEPPOL BIS 3 invoice is read,
//! verified against the order, the decision and the validated visits, logged with its report
//! and answered with it; the same invoice again is INV005; a credit note adjusts what it
//! credits; another provider's token is refused.

use reqwest::StatusCode;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

#[tokio::test]
async fn a_peppol_invoice_and_its_credit_note_verify_end_to_end() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    let hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    let client = test_pnrs()[960].clone();
    // Granted: SERV 480 minutes a month, the whole of November. Performed: ten visits of
    // 30 minutes = 300 minutes.
    let order = order_with_visits(&hub, "DEC-INV1", &client, PROVIDER_A, "04A60001", 2..12).await;
    let token = hub.provider(PROVIDER_A);

    // Invoiced: 6 hours at 390 kr (2,340.00), and a line that is not home care.
    let invoice =
        peppol("invoice", "HC-1", None, &[("1", &order, "6", "HUR", "2340.00"), ("2", &order, "1", "EA", "50.00")]);
    let (s, r) = hub.post("phoniro", invoice.clone(), Some(&token)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let report = &r["verification"];
    assert_the_invoiced_six_hours(report);
    assert_eq!(report["not_verified"][0]["line_id"], "2", "the EA line is read, not verified: {report}");
    assert_eq!(report["totals"]["payable_amount"].as_i64(), Some(195_000));
    // The report goes back to the provider's system and to the order's case-management
    // system, each in its own format, through the outbox.
    let (phoniro, combine) = verification_reports_sent(&vendor).await;
    assert_eq!(phoniro["invoiceId"], "HC-1", "{phoniro}");
    assert!(combine.contains("<GodkantBeloppOre>195000</GodkantBeloppOre>") && combine.contains("INV001"), "{combine}");

    // The same invoice again: every line INV005, approved 0.
    let (_, again) = hub.post("phoniro", invoice, Some(&token)).await;
    let line = &again["verification"]["lines"][0];
    assert!(codes(&line["findings"]).contains(&"INV005".to_owned()), "{again}");
    assert_eq!(line["approved_minutes"].as_i64(), Some(0));

    // Another provider cannot send this provider's invoice.
    let other = peppol("invoice", "HC-2", None, &[("1", &order, "1", "HUR", "390.00")]);
    let (s, refused) = hub.post("phoniro", other, Some(&hub.provider(PROVIDER_B))).await;
    assert_eq!((s, refused["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")));

    // A credit note for one hour: HC-1 is verified again with it, invoiced 300, no INV001.
    let credit = peppol("credit_note", "CN-1", Some("HC-1"), &[("1", &order, "1", "HUR", "390.00")]);
    let (s, r) = hub.post("phoniro", credit, Some(&token)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let line = &r["verification"]["lines"][0];
    assert_eq!(r["verification"]["invoice_id"], "HC-1");
    assert_eq!(
        (line["invoiced_minutes"].as_i64(), line["credited_minutes"].as_i64(), line["approved_minutes"].as_i64()),
        (Some(300), Some(60), Some(300)),
        "{r}"
    );
    assert!(!codes(&line["findings"]).contains(&"INV001".to_owned()));

    // The latest report is there to read, and the documents are in the message log.
    let (s, latest) = hub.get("/v1/invoices/HC-1/verification", Some(&hub.system_token("combine"))).await;
    assert_eq!(s, StatusCode::OK, "{latest}");
    assert_eq!(latest["lines"][0]["credited_minutes"].as_i64(), Some(60));
    let (s, _) = hub.get("/v1/invoices/HC-1/verification", Some(&hub.provider(PROVIDER_B))).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another provider does not see it");
    let (_, log) = hub.get("/v1/messages?system=phoniro&type=invoice", Some(&hub.admin())).await;
    assert_eq!(log["messages"].as_array().map(Vec::len), Some(2), "both copies are logged");
    let (_, log) = hub.get("/v1/messages?system=phoniro&type=credit_note", Some(&hub.admin())).await;
    assert_eq!(log["messages"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn every_official_peppol_example_is_read_and_refused_or_explained_with_a_code() {
    let hub = TestApp::start();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/peppol-bis-3");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).expect("examples") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("xml") {
            continue;
        }
        seen += 1;
        let body = std::fs::read(&path).expect("read");
        let (s, r) = hub.post("phoniro", body, Some(&hub.admin())).await;
        // None is a Swedish home-care invoice from a provider of this hub: each is refused with
        // a code (no Swedish organisation number, or a provider not configured), never a 500.
        assert!(s.is_client_error(), "{}: {s} {r}", path.display());
        assert!(matches!(r["code"].as_str(), Some("MISSING_FIELD" | "UNKNOWN_PROVIDER")), "{}: {r}", path.display());
        assert!(r["message_id"].as_i64().is_some(), "the refusal is logged: {r}");
    }
    assert_eq!(seen, 10);
}

#[tokio::test]
async fn a_peppol_invoice_left_in_an_sftp_inbox_is_verified_and_archived() {
    let sshd = crate::support::sshd::Sshd::start();
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    let options = Options { paraga: Some(sshd.system_keys(&sshd.host_key_sha256)), ..Options::default() };
    let hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), options).await;
    let client = test_pnrs()[970].clone();
    let (s, _) = hub
        .post("combine", november_decision("DEC-INV-S", &client, PROVIDER_D), Some(&hub.system_token("combine")))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let order = hub.order_id("DEC-INV-S").await;
    // No visits performed: an hour invoiced is an hour more than performed (INV001), and the
    // order is far under its grant (INV006).
    let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 11, d).expect("date");
    let line = carehub_devkit::peppol_write::Line {
        id: "1".into(),
        order_id: order.clone(),
        minutes: 60,
        amount_ore: 39_000,
        comment: None,
    };
    let doc = carehub_devkit::peppol_write::home_care(
        carehub_devkit::peppol_write::Kind::Invoice,
        "PG-1",
        PROVIDER_D,
        "Hemtjänst i Hägersten AB",
        day(1),
        day(30),
        None,
        &[line],
    );
    sshd.drop_file("faktura-PG-1.xml", doc.as_bytes()).expect("drop the file");
    eventually("the invoice file is archived", || async {
        sshd.files("archive").iter().any(|f| f.ends_with("faktura-PG-1.xml")).then_some(())
    })
    .await;
    let (s, report) = hub.get("/v1/invoices/PG-1/verification", Some(&hub.admin())).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    let line = &report["lines"][0];
    assert_eq!((line["invoiced_minutes"].as_i64(), line["performed_minutes"].as_i64()), (Some(60), Some(0)));
    assert_eq!((line["approved_minutes"].as_i64(), line["approved_amount"].as_i64()), (Some(0), Some(0)));
    assert_eq!(codes(&line["findings"]), vec!["INV001"]);
    assert_eq!(codes(&report["findings"]), vec!["INV006"]);
}

#[tokio::test]
async fn two_providers_with_the_same_invoice_id_each_keep_their_own_report() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    let hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    let pnrs = test_pnrs();
    // Each provider performed ten visits of 30 minutes (300 minutes) on its own order (the
    // same staff id, on other days).
    let order_a = order_with_visits(&hub, "DEC-SAME-A", &pnrs[962], PROVIDER_A, "04A61001", 2..12).await;
    let order_b = order_with_visits(&hub, "DEC-SAME-B", &pnrs[963], PROVIDER_B, "04A61002", 12..22).await;
    let (token_a, token_b) = (hub.provider(PROVIDER_A), hub.provider(PROVIDER_B));

    // Both number their invoice SAME-1: A invoices six hours, B two.
    let a = peppol_of(PROVIDER_A, "invoice", "SAME-1", None, &[("1", &order_a, "6", "HUR", "2340.00")]);
    let (s, r) = hub.post("phoniro", a, Some(&token_a)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let b = peppol_of(PROVIDER_B, "invoice", "SAME-1", None, &[("1", &order_b, "2", "HUR", "780.00")]);
    let (s, r) = hub.post("phoniro", b, Some(&token_b)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let line = &r["verification"]["lines"][0];
    assert_eq!((line["invoiced_minutes"].as_i64(), line["approved_minutes"].as_i64()), (Some(120), Some(120)), "{r}");
    assert!(!codes(&line["findings"]).contains(&"INV005".to_owned()), "B's invoice is not A's: {r}");

    // By id alone the invoice is ambiguous: a coded 409 naming both providers.
    let cm = hub.system_token("combine");
    let (s, r) = hub.get("/v1/invoices/SAME-1/verification", Some(&cm)).await;
    assert_eq!((s, r["code"].as_str()), (StatusCode::CONFLICT, Some("AMBIGUOUS_INVOICE")), "{r}");
    assert_eq!(r["providers"], serde_json::json!([PROVIDER_B, PROVIDER_A]), "{r}");
    // With the provider, each report is there.
    let report = |org: &'static str, token: String| {
        let hub = &hub;
        async move {
            let (s, r) = hub.get(&format!("/v1/invoices/SAME-1/verification?provider={org}"), Some(&token)).await;
            assert_eq!(s, StatusCode::OK, "{r}");
            assert_eq!(r["provider"], org, "{r}");
            r
        }
    };
    assert_eq!(report(PROVIDER_A, cm.clone()).await["lines"][0]["invoiced_minutes"].as_i64(), Some(360));
    assert_eq!(report(PROVIDER_B, cm.clone()).await["lines"][0]["invoiced_minutes"].as_i64(), Some(120));
    // A provider's token sees its own, and not the other's.
    let (s, own) = hub.get("/v1/invoices/SAME-1/verification", Some(&token_a)).await;
    assert_eq!((s, own["lines"][0]["invoiced_minutes"].as_i64()), (StatusCode::OK, Some(360)), "{own}");
    let (s, r) = hub.get(&format!("/v1/invoices/SAME-1/verification?provider={PROVIDER_B}"), Some(&token_a)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{r}");

    // B's credit note for SAME-1 credits B's invoice, never A's.
    let credit =
        peppol_of(PROVIDER_B, "credit_note", "CN-SAME", Some("SAME-1"), &[("1", &order_b, "1", "HUR", "390.00")]);
    let (s, r) = hub.post("phoniro", credit, Some(&token_b)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    assert_eq!(
        (r["verification"]["invoice_id"].as_str(), r["verification"]["provider"].as_str()),
        (Some("SAME-1"), Some(PROVIDER_B))
    );
    let a = report(PROVIDER_A, cm.clone()).await;
    assert_eq!(
        (a["lines"][0]["invoiced_minutes"].as_i64(), a["lines"][0]["credited_minutes"].as_i64()),
        (Some(360), Some(0)),
        "{a}"
    );
    let b = report(PROVIDER_B, cm).await;
    assert_eq!(
        (b["lines"][0]["invoiced_minutes"].as_i64(), b["lines"][0]["credited_minutes"].as_i64()),
        (Some(60), Some(60)),
        "{b}"
    );
}
