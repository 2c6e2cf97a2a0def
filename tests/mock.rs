//! `carehub mock` (SPEC §10): the mock hub a vendor tests its own system against, started
//! in process on 127.0.0.1:0 with its clock set, the vendor's side of the wire played by
//! wiremock (what the hub calls) and reqwest (what the vendor sends).
//!
//! A test binary of its own (`cargo test -p carehub --test mock`), so the mock's tests run
//! without the whole integration suite.

use std::time::{Duration, Instant};

use carehub_conformance::exchange::{Counterpart, Fault, FaultKind};
use carehub_conformance::mock::{MockConfig, MockHub};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Where every mock's clock starts: a Monday morning in Stockholm.
const START: &str = "2026-11-02T08:00:00+01:00";

async fn mock(vendor: &str, system: &str) -> MockHub {
    let config = MockConfig::parse(&format!("at = \"{START}\"\n[system]\n{system}")).expect("the mock's config");
    MockHub::on_loopback(vendor, config).await.expect("the mock starts")
}

/// A Phoniro system played by wiremock: takes orders, their changes and ends with 201.
async fn phoniro() -> (MockServer, MockHub) {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(201)).mount(&vendor).await;
    let hub =
        mock("phoniro", &format!("base_url = \"{}/api/v1\"\napi_key = \"the-vendors-key\"\n", vendor.uri())).await;
    (vendor, hub)
}

async fn call(http: &reqwest::Client, m: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = http.request(m, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the mock answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `POST /mock/send`; the journal ids.
async fn send(http: &reqwest::Client, hub: &MockHub, command: Value) -> Vec<i64> {
    let (status, body) = call(http, reqwest::Method::POST, format!("{}/mock/send", hub.url()), Some(command)).await;
    assert_eq!(status, 200, "{body}");
    body["exchanges"].as_array().expect("ids").iter().map(|v| v.as_i64().expect("an id")).collect()
}

async fn exchange(http: &reqwest::Client, hub: &MockHub, id: i64) -> Value {
    let (status, body) = call(http, reqwest::Method::GET, format!("{}/mock/journal/{id}", hub.url()), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The vendor posts a message to the hub as its system.
async fn post(http: &reqwest::Client, hub: &MockHub, token: &str, content_type: &str, body: String) -> u16 {
    http.post(format!("{}/v1/systems/{}/messages", hub.url(), hub.system()))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("the hub answers")
        .status()
        .as_u16()
}

/// The last inbound exchange the journal holds, waited for (the journal is written just
/// before the answer leaves).
async fn last_inbound(http: &reqwest::Client, hub: &MockHub, after: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, all) =
            call(http, reqwest::Method::GET, format!("{}/mock/journal?after={after}&limit=1000", hub.url()), None)
                .await;
        if let Some(x) = all.as_array().and_then(|a| a.iter().rev().find(|x| x["direction"] == "inbound")) {
            return x.clone();
        }
        assert!(Instant::now() < deadline, "no inbound exchange journaled after {after}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn codes(x: &Value) -> Vec<String> {
    x["problems"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["code"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

fn ack(order: &str) -> String {
    json!({"type": "orderConfirmation", "orderId": order, "status": "ACCEPTED", "confirmedAt": "2026-11-02T09:15:00+01:00"})
        .to_string()
}

fn head(hub: &MockHub) -> i64 {
    hub.journal().head()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_sent_on_command_reaches_phoniro_and_its_acknowledgement_is_journaled_without_problems() {
    let (vendor, hub) = phoniro().await;
    let http = reqwest::Client::new();
    let ids = send(&http, &hub, json!({"message": "order"})).await;
    assert_eq!(ids.len(), 1);
    let out = exchange(&http, &hub, ids[0]).await;
    assert_eq!(out["direction"], "outbound");
    assert_eq!(out["message_type"], "order");
    assert_eq!(out["status"], 201, "{out}");
    assert!(codes(&out).is_empty(), "{out}");
    let order = out["key"].as_str().expect("the order's id").to_owned();
    let received = vendor.received_requests().await.expect("recorded");
    let got: Value = serde_json::from_slice(&received[0].body).expect("an order in JSON");
    assert_eq!(got["orderId"], order.as_str(), "the journal's key is the order the vendor got");
    assert_eq!(received[0].headers.get("authorization").and_then(|v| v.to_str().ok()), Some("Bearer the-vendors-key"));
    assert!(
        out["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .any(|h| h[0] == "idempotency-key" && h[1] == format!("{order}:order")),
        "{out}"
    );

    // The vendor confirms it: taken, and nothing wrong in the journal.
    let before = head(&hub);
    assert_eq!(post(&http, &hub, hub.token(), "application/json", ack(&order)).await, 202);
    let x = last_inbound(&http, &hub, before).await;
    assert_eq!(x["message_type"], "order_ack");
    assert_eq!(x["key"], order.as_str());
    assert_eq!(x["status"], 202);
    assert!(codes(&x).is_empty(), "{x}");
    let (_, state) = call(&http, reqwest::Method::GET, format!("{}/mock/state/order/{order}", hub.url()), None).await;
    assert_eq!(state["status"], "accepted", "{state}");

    // An acknowledgement for an order the mock never sent.
    let before = head(&hub);
    let status = post(&http, &hub, hub.token(), "application/json", ack("O-0000000000000000")).await;
    assert!(status >= 400, "{status}");
    let x = last_inbound(&http, &hub, before).await;
    let c = codes(&x);
    assert!(c.contains(&"MOCK_UNKNOWN_ORDER".to_owned()), "{x}");
    assert!(c.contains(&"UNKNOWN_ORDER".to_owned()), "the hub's own code too: {x}");

    // A plan before the acknowledgement, for a second order.
    let second = exchange(&http, &hub, send(&http, &hub, json!({"message": "order"})).await[0]).await;
    let second = second["key"].as_str().expect("an order").to_owned();
    assert_ne!(second, order);
    let before = head(&hub);
    let plan = json!({"type": "carePlanEstablished", "orderId": second, "establishedDate": "2026-11-03"}).to_string();
    post(&http, &hub, hub.token(), "application/json", plan).await;
    let x = last_inbound(&http, &hub, before).await;
    assert!(codes(&x).contains(&"MOCK_OUT_OF_ORDER".to_owned()), "{x}");

    // Twice: the same delivery, one idempotency key, both journaled.
    let ids = send(&http, &hub, json!({"message": "order", "twice": true})).await;
    assert_eq!(ids.len(), 2);
    let (a, b) = (exchange(&http, &hub, ids[0]).await, exchange(&http, &hub, ids[1]).await);
    assert_eq!(a["key"], b["key"]);
    assert_eq!(a["body"], b["body"]);
    let keys: Vec<String> = vendor
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter_map(|r| r.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned))
        .collect();
    let third = format!("{}:order", a["key"].as_str().expect("key"));
    assert_eq!(keys.iter().filter(|k| **k == third).count(), 2, "{keys:?}");

    // A change to the last decision reaches Phoniro as an order change.
    let change = exchange(&http, &hub, send(&http, &hub, json!({"message": "order_change"})).await[0]).await;
    assert_eq!(change["message_type"], "order_change", "{change}");
    assert_eq!(change["key"], a["key"]);
    assert!(change["target"].as_str().is_some_and(|t| t.contains("order-changes")), "{change}");
    let end = exchange(&http, &hub, send(&http, &hub, json!({"message": "order_end"})).await[0]).await;
    assert_eq!((end["message_type"].as_str(), end["key"].as_str()), (Some("order_end"), a["key"].as_str()), "{end}");
    let (status, refused) =
        call(&http, reqwest::Method::POST, format!("{}/mock/send", hub.url()), Some(json!({"message": "visit"}))).await;
    assert_eq!((status, refused["code"].as_str()), (400, Some("MOCK_UNSUPPORTED_MESSAGE")), "{refused}");

    // The page lists them, with the problems.
    let page =
        http.get(format!("{}/mock/journal.html", hub.url())).send().await.expect("page").text().await.expect("text");
    assert!(page.contains("MOCK_UNKNOWN_ORDER") && page.contains(&order), "the page lists the exchanges");
    assert!(!page.contains("<script") && !page.contains("src=") && !page.contains("<link"), "no external assets");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_sent_on_a_set_date_is_overdue_once_the_clock_is_advanced_fifteen_days() {
    let (_vendor, hub) = phoniro().await;
    let http = reqwest::Client::new();
    let (status, clock) =
        call(&http, reqwest::Method::PUT, format!("{}/mock/clock", hub.url()), Some(json!({"at": START}))).await;
    assert_eq!(status, 200, "{clock}");
    assert_eq!(clock["today"], "2026-11-02");
    let out = exchange(&http, &hub, send(&http, &hub, json!({"message": "order"})).await[0]).await;
    let order = out["key"].as_str().expect("an order").to_owned();
    let state_url = format!("{}/mock/state/order/{order}", hub.url());
    let (_, state) = call(&http, reqwest::Method::GET, state_url.clone(), None).await;
    assert_eq!(state["overdue"], json!([]), "not overdue on the day it was sent: {state}");

    let started = Instant::now();
    let (status, clock) =
        call(&http, reqwest::Method::POST, format!("{}/mock/clock/advance", hub.url()), Some(json!({"days": 15})))
            .await;
    assert_eq!(status, 200, "{clock}");
    assert_eq!(clock["today"], "2026-11-17");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, state) = call(&http, reqwest::Method::GET, state_url.clone(), None).await;
        if state["overdue"].as_array().is_some_and(|o| o.iter().any(|r| r == "not_confirmed")) {
            break;
        }
        assert!(Instant::now() < deadline, "the order never showed overdue: {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(60), "no real fortnight passed");
    // The hub's own API agrees.
    let (_, page) =
        call(&http, reqwest::Method::GET, format!("{}/mock/state/client/193601016987", hub.url()), None).await;
    assert!(page["orders"].as_array().is_some_and(|o| o.iter().any(|o| o["overdue"] != json!([]))), "{page}");
    assert!(hub.now() > chrono::DateTime::parse_from_rfc3339(START).expect("instant") + chrono::Duration::days(15));
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_armed_503_answers_the_next_request_and_the_one_after_is_taken() {
    let (_vendor, hub) = phoniro().await;
    let http = reqwest::Client::new();
    let order = exchange(&http, &hub, send(&http, &hub, json!({"message": "order"})).await[0]).await["key"]
        .as_str()
        .expect("an order")
        .to_owned();
    let (status, _) = call(
        &http,
        reqwest::Method::POST,
        format!("{}/mock/faults", hub.url()),
        Some(json!({"path": "/v1/", "times": 1, "kind": {"kind": "status", "status": 503}})),
    )
    .await;
    assert_eq!(status, 201);
    let before = head(&hub);
    assert_eq!(post(&http, &hub, hub.token(), "application/json", ack(&order)).await, 503);
    let x = last_inbound(&http, &hub, before).await;
    assert!(codes(&x).contains(&"MOCK_FAULT_STATUS".to_owned()), "{x}");
    let before = head(&hub);
    assert_eq!(post(&http, &hub, hub.token(), "application/json", ack(&order)).await, 202, "the one after is taken");
    let x = last_inbound(&http, &hub, before).await;
    assert!(codes(&x).is_empty(), "{x}");

    // A reset, armed in process through the counterpart contract: no answer at all.
    hub.fault(Fault { path: "*".into(), times: 1, kind: FaultKind::Reset });
    let resp = http
        .post(format!("{}/v1/systems/phoniro/messages", hub.url()))
        .bearer_auth(hub.token())
        .header("content-type", "application/json")
        .body(ack(&order))
        .send()
        .await;
    match resp {
        Err(_) => {}
        Ok(r) => assert!(r.bytes().await.is_err(), "a reset connection gives no whole answer"),
    }
    let x = last_inbound(&http, &hub, head(&hub) - 1).await;
    assert!(codes(&x).contains(&"MOCK_FAULT_RESET".to_owned()), "{x}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_set_up_through_the_state_api_can_be_acknowledged_without_problems() {
    let (vendor, hub) = phoniro().await;
    let http = reqwest::Client::new();
    let (status, order) = call(
        &http,
        reqwest::Method::PUT,
        format!("{}/mock/state/order/O-TEST-1", hub.url()),
        Some(json!({"client": "193601016987"})),
    )
    .await;
    assert_eq!(status, 201, "{order}");
    assert_eq!((order["status"].as_str(), order["provider_system"].as_str()), (Some("delivered"), Some("phoniro")));
    let before = head(&hub);
    assert_eq!(post(&http, &hub, hub.token(), "application/json", ack("O-TEST-1")).await, 202);
    let x = last_inbound(&http, &hub, before).await;
    assert!(codes(&x).is_empty(), "{x}");
    let (status, again) =
        call(&http, reqwest::Method::PUT, format!("{}/mock/state/order/O-TEST-1", hub.url()), Some(json!({}))).await;
    assert_eq!((status, again["code"].as_str()), (400, Some("MOCK_BAD_COMMAND")), "{again}");
    assert!(vendor.received_requests().await.expect("recorded").is_empty(), "nothing was really sent");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_field_shows_the_hubs_code_with_the_field_and_its_byte_offset() {
    let (_vendor, hub) = phoniro().await;
    let http = reqwest::Client::new();
    let order = exchange(&http, &hub, send(&http, &hub, json!({"message": "order"})).await[0]).await["key"]
        .as_str()
        .expect("an order")
        .to_owned();
    let body = format!(
        r#"{{"type": "orderConfirmation", "orderId": "{order}", "status": "ACCEPTED", "confirmedAt": "2026-11-02 09:15"}}"#
    );
    let before = head(&hub);
    let status = post(&http, &hub, hub.token(), "application/json", body.clone()).await;
    assert_eq!(status, 422, "the hub refuses it");
    let x = last_inbound(&http, &hub, before).await;
    let p = x["problems"].as_array().expect("problems").iter().find(|p| p["code"] == "INVALID_DATE").cloned();
    let p = p.unwrap_or_else(|| panic!("INVALID_DATE in {x}"));
    assert_eq!(p["field"], "confirmedAt", "{p}");
    let offset = usize::try_from(p["offset"].as_u64().expect("an offset")).expect("fits");
    assert!(body[offset..].starts_with("\"2026-11-02 09:15\""), "the offset points at the value: {}", &body[offset..]);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_combine_decision_is_taken_and_an_acknowledgement_sent_on_command_reaches_combines_callback() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/carehub/callback"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&vendor)
        .await;
    let hub = mock("combine", &format!("callback_url = \"{}/carehub/callback\"\n", vendor.uri())).await;
    let http = reqwest::Client::new();
    // The profile's own sample decision, from its mapping file.
    let decision = sample("combine/decision.in.toml", "the SPEC sample decision");
    let before = head(&hub);
    assert_eq!(post(&http, &hub, hub.token(), "application/xml", decision).await, 202);
    let x = last_inbound(&http, &hub, before).await;
    assert_eq!(x["message_type"], "decision");
    assert!(codes(&x).is_empty(), "{x}");

    // A check digit off: the hub's code, and the field and offset from the profile's mapping.
    let bad = sample("combine/decision.in.toml", "a personal identity number with a wrong check digit");
    let before = head(&hub);
    assert_eq!(post(&http, &hub, hub.token(), "application/xml", bad.clone()).await, 422);
    let x = last_inbound(&http, &hub, before).await;
    let p = x["problems"][0].clone();
    assert_eq!(
        (p["code"].as_str(), p["field"].as_str()),
        (Some("INVALID_PERSONAL_IDENTITY_NUMBER"), Some("Personnummer")),
        "{x}"
    );
    let offset = usize::try_from(p["offset"].as_u64().expect("an offset")).expect("fits");
    assert!(bad[offset..].starts_with("19360101-6988"), "{}", &bad[offset..]);

    let ids = send(&http, &hub, json!({"message": "order_ack"})).await;
    let out = exchange(&http, &hub, ids[0]).await;
    assert_eq!(out["direction"], "outbound");
    assert_eq!(out["message_type"], "order_ack");
    assert_eq!(out["status"], 200, "{out}");
    let received = vendor.received_requests().await.expect("recorded");
    assert!(String::from_utf8_lossy(&received[0].body).contains("<Kvittens"), "Combine got its acknowledgement");
    // What the hub holds for the order the decision made.
    let order = out["key"].as_str().expect("the order");
    let state = hub.state("order", order).await.expect("reads").expect("an order");
    assert_eq!(state["status"], "accepted", "{state}");
    let plan = exchange(&http, &hub, send(&http, &hub, json!({"message": "plan_notice"})).await[0]).await;
    assert_eq!((plan["message_type"].as_str(), plan["status"].as_u64()), (Some("plan_notice"), Some(200)), "{plan}");
    hub.stop().await;
    vendor.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_vendor_is_refused_with_exit_code_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_carehub"))
        .args(["mock", "--vendor", "nosuch"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("known: combine"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carehub_mock_prints_where_it_listens_and_answers_there() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_carehub"))
        .args(["mock", "--vendor", "phoniro", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).find(|l| l.trim_start().starts_with("mock API"))
    });
    let line = tokio::time::timeout(Duration::from_secs(60), line).await.expect("prints in time").expect("joins");
    let line = line.expect("a mock API line");
    let url = line.split_whitespace().last().expect("a URL").to_owned();
    let resp = reqwest::get(url).await.expect("answers");
    let body: Value = resp.json().await.expect("JSON");
    assert_eq!(body["vendor"], "phoniro");
    child.kill().expect("stops");
    let _ = child.wait();
}

/// A mapping file's sample payload, by its name.
fn sample(file: &str, name: &str) -> String {
    let text =
        std::fs::read_to_string(format!("{}/../../mappings/{file}", env!("CARGO_MANIFEST_DIR"))).expect("the file");
    let mapping: toml::Table = toml::from_str(&text).expect("TOML");
    mapping["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .find(|s| s["name"].as_str() == Some(name))
        .and_then(|s| s["vendor"].as_str())
        .unwrap_or_else(|| panic!("no sample '{name}' in {file}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn treserva_over_soap_is_answered_in_soap_journaled_with_the_faults_code_and_called_back() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/soap"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><Ok xmlns=\"urn:carehub:vendor:treserva:1\"/></s:Body></s:Envelope>",
        ))
        .mount(&vendor)
        .await;
    let hub = mock("treserva", &format!("endpoint_url = \"{}/soap\"\n", vendor.uri())).await;
    let http = reqwest::Client::new();
    let soap = "text/xml; charset=utf-8";

    let before = head(&hub);
    let taken =
        post(&http, &hub, hub.token(), soap, sample("treserva/decision.in.toml", "a decision in a SOAP envelope"))
            .await;
    assert_eq!(taken, 200, "a SOAP system is answered 200 with a response envelope");
    let x = last_inbound(&http, &hub, before).await;
    assert_eq!((x["wire"].as_str(), x["message_type"].as_str()), (Some("soap"), Some("decision")), "{x}");
    assert!(codes(&x).is_empty(), "{x}");

    let before = head(&hub);
    let refused =
        post(&http, &hub, hub.token(), soap, sample("treserva/decision.in.toml", "a wrong check digit")).await;
    assert!(refused >= 400, "{refused}");
    let x = last_inbound(&http, &hub, before).await;
    assert!(codes(&x).contains(&"INVALID_PERSONAL_IDENTITY_NUMBER".to_owned()), "the SOAP fault's hub:code: {x}");

    let out = exchange(&http, &hub, send(&http, &hub, json!({"message": "order_ack"})).await[0]).await;
    assert_eq!((out["wire"].as_str(), out["status"].as_u64()), (Some("soap"), Some(200)), "{out}");
    let received = vendor.received_requests().await.expect("recorded");
    assert!(String::from_utf8_lossy(&received[0].body).contains("TaEmotKvittens"), "Treserva was called back");
    assert!(received[0].headers.get("soapaction").is_some(), "with its SOAPAction");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_mock_token_the_mock_api_needs_it_and_a_message_id_reused_for_other_content_is_flagged() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(201)).mount(&vendor).await;
    let config = MockConfig::parse(&format!(
        "at = \"{START}\"\nmock_token = \"only-the-tester-knows\"\n[system]\nbase_url = \"{}/api/v1\"\n",
        vendor.uri()
    ))
    .expect("config");
    let hub = MockHub::on_loopback("phoniro", config).await.expect("starts");
    let http = reqwest::Client::new();
    let clock = format!("{}/mock/clock", hub.url());
    let refused = http.get(&clock).send().await.expect("answers");
    assert_eq!(refused.status().as_u16(), 401);
    let body: Value = refused.json().await.expect("JSON");
    assert_eq!(body["code"], "MOCK_UNAUTHENTICATED");
    let taken = http.get(&clock).bearer_auth("only-the-tester-knows").send().await.expect("answers");
    assert_eq!(taken.status().as_u16(), 200);

    // Driven in process: an order, then two acknowledgements under one message id.
    let ids = hub
        .send(&carehub_conformance::exchange::SendCommand { message: "order".into(), ..Default::default() })
        .await
        .expect("sent");
    let order = hub.exchanges_since(ids[0] - 1).await.expect("journal")[0].key.clone().expect("an order");
    let with_id = |body: String| {
        http.post(format!("{}/v1/systems/phoniro/messages", hub.url()))
            .bearer_auth(hub.token())
            .header("content-type", "application/json")
            .header("x-message-id", "MSG-1")
            .body(body)
            .send()
    };
    with_id(ack(&order)).await.expect("answers");
    let before = head(&hub);
    let rejected = json!({"type": "orderConfirmation", "orderId": order, "status": "REJECTED", "reason": "Ingen plats", "confirmedAt": "2026-11-02T09:20:00+01:00"});
    with_id(rejected.to_string()).await.expect("answers");
    let seen = hub.exchanges_since(before).await.expect("journal");
    assert!(seen.iter().any(|x| x.problems.iter().any(|p| p.code == "MOCK_MESSAGE_ID_REUSED")), "{seen:?}");

    // A delay armed through the contract is journaled as played.
    hub.fault(Fault { path: "/v1/systems".into(), times: 1, kind: FaultKind::Delay { millis: 50 } });
    let before = head(&hub);
    with_id(ack(&order)).await.expect("answers");
    let seen = hub.exchanges_since(before).await.expect("journal");
    assert!(seen.iter().any(|x| x.problems.iter().any(|p| p.code == "MOCK_FAULT_DELAY")), "{seen:?}");
    hub.stop().await;
}
