//! Invoice basis exports (SPEC §5, §7): Phoniro's CSV export posted over HTTP and ParaGå's
//! Windows-1252 CSV file left on its SFTP server are gathered by invoice number into
//! invoices and verified exactly as PEPPOL invoices are; a bad row is refused with its line
//! and code without stopping the others.

use reqwest::StatusCode;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::sshd::Sshd;
use crate::support::*;

fn cp1252(text: &str) -> Vec<u8> {
    let enc = carehub_core::mapping::text::encoding("windows-1252").expect("known");
    carehub_core::mapping::text::encode(text, enc).expect("encodable")
}

const PHONIRO_HEADER: &str =
    "InvoiceNumber,Type,CreditedInvoice,OrganisationNumber,PeriodStart,Row,OrderId,Minutes,AmountOre,Comment";

#[tokio::test]
async fn a_phoniro_invoice_basis_export_posted_over_http_is_verified_end_to_end() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    let hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    let client = test_pnrs()[970].clone();
    // Granted: SERV 480 minutes a month, the whole of November. Performed: ten visits of
    // 30 minutes = 300 minutes.
    let order = order_with_visits(&hub, "DEC-IB1", &client, PROVIDER_A, "04A70001", 2..12).await;
    let token = hub.provider(PROVIDER_A);

    // Invoiced: 360 minutes, 2,340.00 kr (in öre); a row of another provider and a row whose
    // minutes are not a number are refused with their lines.
    let export = format!(
        "{PHONIRO_HEADER}\n\
         PH-1,INVOICE,,,2026-11-01,1,{order},360,234000,\n\
         PH-9,INVOICE,,{PROVIDER_B},2026-11-01,1,{order},60,39000,\n\
         PH-1,INVOICE,,,2026-11-01,2,{order},sex timmar,0,\n"
    );
    let (s, r) = hub.post("phoniro", export.clone(), Some(&token)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let invoices = r["verification"]["invoices"].as_array().expect("reports");
    assert_eq!(invoices.len(), 1, "{r}");
    let report = &invoices[0];
    assert_eq!(report["invoice_id"], "PH-1");
    assert_the_invoiced_six_hours(report);
    assert_eq!(report["totals"]["payable_amount"].as_i64(), Some(195_000));
    let refused: Vec<(u64, &str)> = r["verification"]["refused"]
        .as_array()
        .expect("refused rows")
        .iter()
        .map(|x| (x["line"].as_u64().unwrap_or(0), x["code"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(refused, vec![(3, "FORBIDDEN"), (4, "INVALID_VALUE")], "{r}");

    // The report goes back to Phoniro and to Combine, as for a PEPPOL invoice.
    let (phoniro, combine) = verification_reports_sent(&vendor).await;
    assert_eq!(phoniro["invoiceId"], "PH-1", "{phoniro}");
    assert!(combine.contains("<GodkantBeloppOre>195000</GodkantBeloppOre>") && combine.contains("INV001"), "{combine}");

    // The same export again: the line is INV005, approved 0.
    let (_, again) = hub.post("phoniro", export, Some(&token)).await;
    let line = &again["verification"]["invoices"][0]["lines"][0];
    assert!(codes(&line["findings"]).contains(&"INV005".to_owned()), "{again}");
    assert_eq!(line["approved_minutes"].as_i64(), Some(0));

    // A credit of one hour: PH-1 is verified again with it, invoiced 300, no INV001.
    let credit = format!("{PHONIRO_HEADER}\nPH-CN-1,CREDIT,PH-1,{PROVIDER_A},2026-11-01,1,{order},60,39000,\n");
    let (s, r) = hub.post("phoniro", credit, Some(&token)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let report = &r["verification"]["invoices"][0];
    assert_eq!(report["invoice_id"], "PH-1", "{r}");
    let line = &report["lines"][0];
    assert_eq!(
        (line["invoiced_minutes"].as_i64(), line["credited_minutes"].as_i64(), line["approved_minutes"].as_i64()),
        (Some(300), Some(60), Some(300)),
        "{r}"
    );
    assert!(!codes(&line["findings"]).contains(&"INV001".to_owned()));

    // Another provider's token: every row is refused, so the file is.
    let (s, refused) = hub
        .post(
            "phoniro",
            format!("{PHONIRO_HEADER}\nPH-2,,,{PROVIDER_A},2026-11-01,1,{order},60,39000,\n"),
            Some(&hub.provider(PROVIDER_B)),
        )
        .await;
    assert_eq!((s, refused["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "{refused}");

    // The invoices are in the message log, with their rows; the refused rows too.
    let (_, log) = hub.get("/v1/messages?system=phoniro&type=invoice", Some(&hub.admin())).await;
    assert_eq!(log["messages"].as_array().map(Vec::len), Some(2), "both copies are logged: {log}");
    let (_, log) = hub.get("/v1/messages?system=phoniro&type=credit_note", Some(&hub.admin())).await;
    assert_eq!(log["messages"].as_array().map(Vec::len), Some(1));
    let (_, log) = hub.get("/v1/messages?system=phoniro&type=invoice_line", Some(&hub.admin())).await;
    assert_eq!(log["messages"].as_array().map(Vec::len), Some(5), "two refused rows, twice, and one: {log}");
    let (s, latest) = hub.get("/v1/invoices/PH-1/verification", Some(&hub.system_token("combine"))).await;
    assert_eq!(s, StatusCode::OK, "{latest}");
    assert_eq!(latest["lines"][0]["credited_minutes"].as_i64(), Some(60));
}

#[tokio::test]
async fn a_paraga_invoice_basis_file_over_sftp_is_verified_and_its_bad_row_named() {
    let sshd = Sshd::start();
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    let options = Options { paraga: Some(sshd.system_keys(&sshd.host_key_sha256)), ..Options::default() };
    let hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), options).await;
    let client = test_pnrs()[980].clone();
    let (s, _) = hub
        .post("combine", november_decision("DEC-IB2", &client, PROVIDER_D), Some(&hub.system_token("combine")))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let order = hub.order_id("DEC-IB2").await;
    register_tag(&hub, "04A80001", &client, "2026-11-01").await;

    // Performed: four visits of 45 minutes = 180 minutes, in ParaGå's daily file.
    let mut visits = String::from("Personnummer;Datum;Kom;Gick;Taggid;Registrering;Insatser;Utfall;Personal\r\n");
    for day in 2..6 {
        visits.push_str(&format!("{client};2026-11-{day:02};08:00;08:45;04A80001;NFC;SERV;Utförd;st-1\r\n"));
    }
    sshd.drop_file("besok-20261106.csv", &cp1252(&visits)).expect("drop the visits");
    eventually_within("the visit file is archived", std::time::Duration::from_secs(60), || async {
        sshd.files("archive").iter().any(|f| f.ends_with("besok-20261106.csv")).then_some(())
    })
    .await;

    // Invoiced: 240 minutes on PG-100 (its comment in Swedish, Windows-1252); line 3 is
    // refused, its minutes are not a number.
    let invoice = format!(
        "Fakturanummer;Typ;Krediterar;Period;Rad;Uppdragsid;Minuter;Belopp (öre);Kommentar\r\n\
         PG-100;Faktura;;2026-11-01;1;{order};240;156000;Hemtjänst november, utökad tid\r\n\
         PG-100;Faktura;;2026-11-01;2;{order};fyra;0;\r\n"
    );
    sshd.drop_file("faktura-202611.csv", &cp1252(&invoice)).expect("drop the invoice basis");
    let archived = eventually_within("the invoice basis file is taken", std::time::Duration::from_secs(60), || async {
        let archived = sshd.files("archive").iter().any(|f| f.ends_with("faktura-202611.csv"));
        (archived || !sshd.files("error").is_empty()).then_some(archived)
    })
    .await;
    let reasons: Vec<String> = sshd
        .files("error")
        .iter()
        .filter(|f| f.ends_with(".reason.txt"))
        .map(|f| std::fs::read_to_string(sshd.root.join("error").join(f)).unwrap_or_default())
        .collect();
    assert!(archived && reasons.is_empty(), "the file as a whole was taken: {reasons:?}");

    // The invoice was verified: invoiced 240 > performed 180 (INV001), granted 480,
    // approved 180; 180 < 0.80 × 480 = 384 (INV006).
    let (s, report) = hub.get("/v1/invoices/PG-100/verification", Some(&hub.admin())).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(report["provider"], PROVIDER_D, "{report}");
    let lines = report["lines"].as_array().expect("lines");
    assert_eq!(lines.len(), 1, "the refused row is not a line: {report}");
    let line = &lines[0];
    assert_eq!(
        (line["invoiced_minutes"].as_i64(), line["performed_minutes"].as_i64(), line["granted_minutes"].as_i64()),
        (Some(240), Some(180), Some(480)),
        "{report}"
    );
    assert_eq!(line["approved_minutes"].as_i64(), Some(180));
    assert!(codes(&line["findings"]).contains(&"INV001".to_owned()), "{report}");
    assert!(codes(&report["findings"]).contains(&"INV006".to_owned()), "{report}");

    // The invoice is logged with its row (as UTF-8), the bad row as rejected with its line
    // and code.
    let (_, log) = hub.get("/v1/messages?system=paraga&type=invoice", Some(&hub.admin())).await;
    let entries = log["messages"].as_array().expect("messages");
    assert_eq!(entries.len(), 1, "{log}");
    let (_, log) = hub.get("/v1/messages?system=paraga&type=invoice_line", Some(&hub.admin())).await;
    let entries = log["messages"].as_array().expect("messages");
    assert_eq!(entries.len(), 1, "{log}");
    let (_, refused) = hub.get(&format!("/v1/messages/{}", entries[0]["id"]), Some(&hub.admin())).await;
    assert_eq!(refused["status"], "rejected", "{refused}");
    assert_eq!(refused["error_code"], "INVALID_VALUE", "{refused}");
    assert!(refused["error_message"].as_str().is_some_and(|m| m.starts_with("line 3:")), "{refused}");
}
