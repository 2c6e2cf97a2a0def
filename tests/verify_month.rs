//! `carehub verify --month`: a whole month verified from the store by the binary (SPEC §7),
//! over a scenario built through the HTTP API: decisions, tags, pushed Phoniro visits and a
//! PEPPOL invoice. The summary's and the `--out` report's figures are checked against hand
//! computation, including an order without an invoice line that is under-delivered.

use reqwest::StatusCode;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

/// A PEPPOL invoice from provider A for November 2026: lines of (id, order, hours, kronor).
fn invoice(id: &str, lines: &[(&str, &str, &str, &str)]) -> String {
    let lines: Vec<_> = lines.iter().map(|&(lid, order, hours, amount)| (lid, order, hours, "HUR", amount)).collect();
    peppol("invoice", id, None, &lines)
}

/// A client with a decision (SERV, 480 minutes in November), a tag and `visits` visits of 30
/// minutes from the 2nd on; the order's id.
async fn client_with_visits(hub: &TestHub, n: usize, visits: u32) -> String {
    let pnr = test_pnrs()[980 + n].clone();
    let decision = format!("DEC-VM{n}");
    let (s, r) =
        hub.post("combine", november_decision(&decision, &pnr, PROVIDER_A), Some(&hub.system_token("combine"))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let tag = format!("04B7000{n}");
    register_tag(hub, &tag, &pnr, "2026-11-01").await;
    let token = hub.provider(PROVIDER_A);
    for day in 2..2 + visits {
        let (from, to) = (format!("2026-11-{day:02}T1{n}:00"), format!("2026-11-{day:02}T1{n}:30"));
        let v =
            phoniro_visit(&format!("VM{n}-{day}"), PROVIDER_A, &pnr, &format!("s-{n}"), &tag, &from, Some(&to), None);
        let (s, r) = hub.post("phoniro", v.to_string(), Some(&token)).await;
        assert_eq!((s, r["visits"][0]["outcome"].as_str()), (StatusCode::ACCEPTED, Some("accepted")), "{r}");
    }
    hub.order_id(&decision).await
}

#[tokio::test]
async fn carehub_verify_month_gives_every_orders_figures_and_the_invoices_reports() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    let hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    // Granted 480 minutes each. Performed: 10 × 30 = 300, 14 × 30 = 420, 2 × 30 = 60.
    let o1 = client_with_visits(&hub, 1, 10).await;
    let o2 = client_with_visits(&hub, 2, 14).await;
    let o3 = client_with_visits(&hub, 3, 2).await;
    // Invoiced: O1 6 h (360 min, above performed: INV001), O2 7 h (420 min); O3 not at all.
    let doc = invoice("HC-VM1", &[("1", &o1, "6", "2340.00"), ("2", &o2, "7", "2730.00")]);
    let (s, r) = hub.post("phoniro", doc, Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");

    let out = hub.dir.path().join("month.json");
    let config = hub.config_path.display().to_string();
    let run = carehub(&["verify", "--month", "2026-11", "--config", &config, "--out", &out.display().to_string()]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    // Approved: O1 min(360, 300, 528) = 300, O2 min(420, 420, 528) = 420: 720 minutes,
    // 720 × 390 / 60 = 4,680.00 kr. Under 0.80 × 480 = 384: O1 (300) and O3 (60), once each
    // for the month. The invoice verified over HTTP before is not INV005 in a dry run.
    assert!(
        stdout.contains("month 2026-11: 1 providers, 3 orders, 1 invoices and 0 credit notes verified, 26 visits read"),
        "{stdout}"
    );
    assert!(stdout.contains("findings: INV001 1, INV006 2\n"), "{stdout}");
    assert!(stdout.contains("approved: 720 min, 4680.00 kr; payable with plan compensation: 4680.00 kr"), "{stdout}");
    assert!(stdout.contains("errors: 0"), "{stdout}");
    assert!(!stdout.contains(&test_pnrs()[981]), "no personal identity number is printed");

    let json: Value = serde_json::from_slice(&std::fs::read(&out).expect("the reports")).expect("JSON");
    assert_eq!(json["month"], "2026-11");
    assert_eq!(json["summary"]["approved_amount"].as_i64(), Some(468_000), "öre");
    let provider = &json["providers"][0];
    assert_eq!(provider["provider"], PROVIDER_A);
    let figures: Vec<(String, i64, i64, bool)> = provider["orders"]
        .as_array()
        .expect("orders")
        .iter()
        .map(|o| {
            (
                o["order_id"].as_str().unwrap_or_default().to_owned(),
                o["granted_minutes"].as_i64().unwrap_or(-1),
                o["performed_minutes"].as_i64().unwrap_or(-1),
                o["under_delivered"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let mut want = vec![(o1.clone(), 480, 300, true), (o2.clone(), 480, 420, false), (o3.clone(), 480, 60, true)];
    want.sort();
    assert_eq!(figures, want);
    let under: Vec<&str> = provider["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["code"] == "INV006")
        .filter_map(|f| f["order_id"].as_str())
        .collect();
    assert!(under.contains(&o3.as_str()), "the order without an invoice line is INV006: {provider}");
    let report = &provider["reports"][0];
    assert_eq!(report["invoice_id"], "HC-VM1");
    let lines = report["lines"].as_array().expect("lines");
    let approved: Vec<(i64, i64)> = lines
        .iter()
        .map(|l| (l["approved_minutes"].as_i64().unwrap_or(-1), l["approved_amount"].as_i64().unwrap_or(-1)))
        .collect();
    assert_eq!(approved, vec![(300, 195_000), (420, 273_000)]);
    assert!(lines.iter().all(|l| !l["findings"].to_string().contains("INV005")), "{report}");

    // With only the database: the default rate for every provider, the same figures.
    let db = hub.db.display().to_string();
    let run = carehub(&["verify", "--month", "2026-11", "--db", &db, "--rate", "390"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    assert!(stdout.contains("approved: 720 min, 4680.00 kr"), "{stdout}");
    // A rate with öre (Stockholm's 2% raise on 390 kr): 300 × 397.80 / 60 = 1,989.00 kr and
    // 420 × 397.80 / 60 = 2,784.60 kr.
    let run = carehub(&["verify", "--month", "2026-11", "--db", &db, "--rate", "397.80"]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    assert!(stdout.contains("approved: 720 min, 4773.60 kr"), "{stdout}");
    let run = carehub(&["verify", "--month", "2026-11", "--db", &db, "--rate", "397.805"]);
    assert_eq!(run.status.code(), Some(2), "three decimals are refused");
    // A bad month is refused with exit code 2.
    let run = carehub(&["verify", "--month", "2026-13", "--db", &db]);
    assert_eq!(run.status.code(), Some(2));
}
