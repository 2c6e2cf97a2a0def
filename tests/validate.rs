//! `POST /v1/validate/{system}`: a vendor asks what the hub would make of a payload, and
//! nothing is taken: no log entry, no decision, no order, no delivery.

use reqwest::StatusCode;
use serde_json::Value;
use wiremock::MockServer;

use crate::support::*;

async fn validate(
    hub: &TestHub,
    system: &str,
    query: &str,
    body: impl Into<Vec<u8>>,
    token: &str,
) -> (StatusCode, Value) {
    let r = hub
        .http
        .post(format!("{}/v1/validate/{system}{query}", hub.url))
        .bearer_auth(token)
        .body(body.into())
        .send()
        .await
        .expect("post");
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn codes_of(v: &Value) -> Vec<&str> {
    v["messages"].as_array().map(|m| m.iter().filter_map(|m| m["error"]["code"].as_str()).collect()).unwrap_or_default()
}

#[tokio::test]
async fn a_payload_is_read_as_the_hub_would_and_nothing_is_taken() {
    let vendor = MockServer::start().await;
    let hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    let combine = hub.system_token("combine");

    // The SPEC's sample decision reads: its canonical form, the number normalised.
    let (s, v) = validate(&hub, "combine", "", SPEC_DECISION, &combine).await;
    assert_eq!((s, v["valid"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    let m = &v["messages"][0];
    assert_eq!(
        (m["message_type"].as_str(), m["canonical"]["client"].as_str()),
        (Some("decision"), Some("193601016987"))
    );

    // A check digit off: the code the message endpoint would answer, with what was read.
    let bad = SPEC_DECISION.replace("19360101-6987", "19360101-6988");
    let (s, v) = validate(&hub, "combine", "", bad, &combine).await;
    assert_eq!((s, v["valid"].as_bool()), (StatusCode::OK, Some(false)), "{v}");
    assert_eq!(codes_of(&v), ["INVALID_PERSONAL_IDENTITY_NUMBER"], "{v}");

    // A provider's PEPPOL invoice reads, and one whose total does not add up has findings.
    // Validation reads the document only: the order need not exist.
    let order = "O-019AF3C2B1E07A1B2C3D4E5F";
    let invoice = peppol("invoice", "V-1", None, &[("1", &order, "6", "HUR", "2340.00")]);
    let provider = hub.provider(PROVIDER_A);
    let (s, v) = validate(&hub, "phoniro", "", invoice.clone(), &provider).await;
    assert_eq!(
        (s, v["valid"].as_bool(), v["messages"][0]["message_type"].as_str()),
        (StatusCode::OK, Some(true), Some("invoice")),
        "{v}"
    );
    // The test document has no TaxSubtotal, which PEPPOL's rules name; a payable amount that
    // is not the lines' sum is named besides.
    let findings = |v: &Value| v["messages"][0]["findings"].as_array().map(Vec::len).unwrap_or(0);
    let good = findings(&v);
    let off = invoice
        .replace("<cbc:PayableAmount currencyID=\"SEK\">2340.00", "<cbc:PayableAmount currencyID=\"SEK\">2430.00");
    let (_, v) = validate(&hub, "phoniro", "", off, &provider).await;
    assert_eq!(findings(&v), good + 1, "{v}");
    assert!(v["messages"][0]["findings"].to_string().contains("2430"), "the finding names the amount: {v}");

    // An acknowledgement is not Combine's to send.
    let (_, v) = validate(&hub, "combine", "", phoniro_ack(&order, "ACCEPTED"), &combine).await;
    assert_eq!(v["valid"].as_bool(), Some(false), "{v}");
    assert!(!codes_of(&v).is_empty(), "{v}");

    // Authorised like the message endpoint.
    let (s, v) = validate(&hub, "phoniro", "", SPEC_DECISION, &combine).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "{v}");
    let (s, v) = validate(&hub, "nobody", "", SPEC_DECISION, &hub.admin()).await;
    assert_eq!((s, v["code"].as_str()), (StatusCode::NOT_FOUND, Some("UNKNOWN_SYSTEM")), "{v}");

    // Nothing was taken: the log is empty, no order exists, nothing went out.
    let (_, log) = hub.get("/v1/messages", Some(&hub.admin())).await;
    assert_eq!(log["messages"].as_array().map(Vec::len), Some(0), "{log}");
    let (_, orders) = hub.get("/v1/orders", Some(&hub.admin())).await;
    assert_eq!(orders["orders"].as_array().map(Vec::len), Some(0), "{orders}");
    assert!(vendor.received_requests().await.unwrap_or_default().is_empty());
}
