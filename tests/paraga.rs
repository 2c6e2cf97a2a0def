//! ParaGå over SFTP with CSV (Windows-1252, `;`, Swedish headers), against a real OpenSSH
//! server: orders out as CSV files, confirmations in as CSV files taken row by row.

use reqwest::StatusCode;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::sshd::Sshd;
use crate::support::*;

fn cp1252(text: &str) -> Vec<u8> {
    let enc = carehub_core::mapping::text::encoding("windows-1252").expect("known");
    carehub_core::mapping::text::encode(text, enc).expect("encodable")
}

#[tokio::test]
async fn orders_go_out_as_csv_files_and_confirmation_files_come_back_row_by_row() {
    orders_and_confirmations_at(test_instant()).await;
}

/// The day's file and the orders' dates follow the hub's clock, also in another year.
#[tokio::test]
async fn the_daily_file_is_named_for_the_hubs_day_in_the_last_half_hour_of_february() {
    orders_and_confirmations_at(local_instant("2027-02-28T23:30")).await;
}

async fn orders_and_confirmations_at(at: chrono::DateTime<chrono::Utc>) {
    let sshd = Sshd::start();
    let combine = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/callback"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&combine)
        .await;
    let options = Options { paraga: Some(sshd.system_keys(&sshd.host_key_sha256)), at, ..Options::default() };
    let hub = TestHub::start_with(&combine.uri(), &combine.uri(), options).await;
    let pnrs = test_pnrs();
    let cm = hub.system_token("combine");

    // Two decisions for the ParaGå provider: each order is a CSV file in the outbox.
    for (id, pnr) in [("DEC-P1", &pnrs[500]), ("DEC-P2", &pnrs[501])] {
        let (s, _) = hub.post("combine", decision_xml(id, pnr, PROVIDER_D, None), Some(&cm)).await;
        assert_eq!(s, StatusCode::ACCEPTED);
    }
    let (o1, o2) = (hub.order_id("DEC-P1").await, hub.order_id("DEC-P2").await);
    hub.wait_for_order_status(&o1, "delivered").await;
    hub.wait_for_order_status(&o2, "delivered").await;
    let today = hub.clock.today();
    let day = today.format("%Y%m%d").to_string();
    assert_eq!(sshd.files("outbox"), vec![format!("uppdrag-{day}.csv")], "one daily file");
    let bytes = std::fs::read(sshd.root.join("outbox").join(format!("uppdrag-{day}.csv"))).expect("read");
    assert!(bytes.starts_with(b"Uppdragsid;Beslutsreferens;Utf\xf6rare;Personnummer;"), "ö is 0xF6 in Windows-1252");
    let text: String = bytes.iter().map(|b| *b as char).collect();
    let rows: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 3, "the header and each order's row (one service each): {text}");
    let row1 = rows.iter().find(|r| r.starts_with(&o1)).expect("the first order's row");
    // Decided with no time given: the order starts on the hub's today.
    assert!(row1.starts_with(&format!("{o1};combine:DEC-P1;{PROVIDER_D};{};{today}", pnrs[500])), "{text}");
    assert!(row1.ends_with(";SERV;480"), "{text}");
    assert!(rows.iter().any(|r| r.starts_with(&o2)), "{text}");
    // A retried delivery adds nothing to the day's file; a new order's row is added.
    let keys = sshd.system_keys(&sshd.host_key_sha256);
    let config: carehub_adapters::SftpConfig = toml::from_str(&keys).expect("sftp keys");
    let client = carehub_adapters::transport::sftp::SftpClient::new(config, hub.clock.clone());
    let outbox = sshd.root.join("outbox").display().to_string();
    let name = format!("uppdrag-{day}.csv");
    let header = rows[0];
    let repeat = format!("{header}\r\n{row1}\r\n");
    assert!(!client.append_rows(&outbox, &name, repeat.as_bytes()).expect("append"), "a repeat adds nothing");
    assert_eq!(std::fs::read(sshd.root.join("outbox").join(&name)).expect("read"), bytes);
    let new = format!("{header}\r\nO-NEW;x;{PROVIDER_D};x;2026-11-01;;2026-11-15;2026-11-15;MAT;300\r\n");
    assert!(client.append_rows(&outbox, &name, new.as_bytes()).expect("append"));
    let grown =
        String::from_utf8_lossy(&std::fs::read(sshd.root.join("outbox").join(&name)).expect("read")).into_owned();
    assert_eq!(grown.matches("\r\n").count(), 4, "{grown}");
    assert!(grown.ends_with(";MAT;300\r\n"));

    // ParaGå answers with one CSV file: an acceptance, a rejection with Swedish text, and a
    // row it garbled. The good rows are taken, the bad one is refused with its line number.
    let answers = format!(
        "Uppdragsid;Status;Orsak;Tidpunkt\r\n{o1};Accepterad;;2026-11-03 07:30\r\n{o2};Avvisad;Ingen personal på Årsta just nu;2026-11-03 07:31\r\n{o1};Kanske;;2026-11-03 07:32\r\n"
    );
    sshd.drop_file("svar-20261103.csv", &cp1252(&answers)).expect("drop a file");
    eventually("the answer file is archived", || async {
        sshd.files("archive").iter().any(|f| f.ends_with("-svar-20261103.csv")).then_some(())
    })
    .await;
    hub.wait_for_order_status(&o1, "accepted").await;
    let rejected = hub.wait_for_order_status(&o2, "rejected").await;
    assert_eq!(rejected["ack_reason"], "Ingen personal på Årsta just nu", "Å and å survive Windows-1252");

    let (_, page) = hub.get("/v1/messages?system=paraga&status=rejected", Some(&hub.admin())).await;
    let bad = page["messages"].as_array().expect("messages");
    assert_eq!(bad.len(), 1, "{page}");
    assert_eq!(bad[0]["error_code"], "INVALID_VALUE");
    assert!(bad[0]["error_message"].as_str().unwrap_or("").starts_with("line 4: "), "{}", bad[0]);
    let (_, entry) = hub.get(&format!("/v1/messages/{}", bad[0]["id"]), Some(&hub.admin())).await;
    assert_eq!(entry["payload"], format!("Uppdragsid;Status;Orsak;Tidpunkt\n{o1};Kanske;;2026-11-03 07:32\n"));

    // Both answers travel on to Combine.
    eventually("both answers reach Combine", || async {
        (combine.received_requests().await.unwrap_or_default().iter().filter(|r| r.url.path() == "/callback").count()
            == 2)
            .then_some(())
    })
    .await;
}
