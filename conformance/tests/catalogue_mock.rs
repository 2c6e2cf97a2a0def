//! The Phoniro catalogue's cases that need no person at the vendor's side, played by the
//! conformance run against the real mock hub, with a small Phoniro played by an axum
//! server on 127.0.0.1: it takes orders (one per idempotency key), confirms each, and
//! sends again until the hub's answer is 2xx, as the profile asks.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use carehub_conformance::cli::{run, ConformanceArgs};
use carehub_conformance::mock::{MockConfig, MockHub};
use serde_json::{json, Value};

const START: &str = "2026-11-02T08:00:00+01:00";

#[derive(Clone)]
struct Phoniro {
    /// The hub's messages endpoint and the provider's token, once the mock runs.
    hub: Arc<Mutex<Option<(String, String)>>>,
    keys: Arc<Mutex<BTreeSet<String>>>,
    /// Sends a confirmation again until it is taken; a broken Phoniro sends it once.
    retries: bool,
    /// Told by a trigger to reject the next order.
    reject_next: Arc<Mutex<bool>>,
}

/// The vendor's test harness: what a case's trigger asks, done at once.
async fn trigger(State(p): State<Phoniro>, Json(body): Json<Value>) -> StatusCode {
    let what = body["do"].as_str().unwrap_or_default();
    let Some((url, token)) = p.hub.lock().expect("hub").clone() else { return StatusCode::SERVICE_UNAVAILABLE };
    if what.starts_with("Reject the next order") {
        *p.reject_next.lock().expect("flag") = true;
        return StatusCode::NO_CONTENT;
    }
    if what.starts_with("Check that order") {
        // Orders are kept by idempotency key: the second delivery made none.
        return StatusCode::NO_CONTENT;
    }
    if what.starts_with("Establish the care plan") {
        let order = what.split_whitespace().find(|w| w.starts_with("O-")).unwrap_or_default();
        let plan = json!({"type": "carePlanEstablished", "orderId": order, "establishedDate": "2026-11-03"});
        let answer = reqwest::Client::new().post(&url).bearer_auth(&token).json(&plan).send().await;
        return if answer.is_ok_and(|a| a.status().is_success()) {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::BAD_GATEWAY
        };
    }
    StatusCode::NOT_IMPLEMENTED
}

async fn order(State(p): State<Phoniro>, headers: HeaderMap, Json(body): Json<Value>) -> StatusCode {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    if !p.keys.lock().expect("keys").insert(key) {
        return StatusCode::OK; // a repeat: taken, not a second order
    }
    let order = body["orderId"].as_str().unwrap_or_default().to_owned();
    let Some((url, token)) = p.hub.lock().expect("hub").clone() else { return StatusCode::SERVICE_UNAVAILABLE };
    tokio::spawn(async move {
        // A moment after the order's answer, as a real system confirms (the mock counts an
        // order as sent from the moment its delivery starts, so confirming sooner is fine
        // too: tests/conformance/http.rs confirms before answering).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let http = reqwest::Client::new();
        let mut ack = json!({"type": "orderConfirmation", "orderId": order, "status": "ACCEPTED",
                             "confirmedAt": "2026-11-02T09:15:00+01:00"});
        if std::mem::take(&mut *p.reject_next.lock().expect("flag")) {
            ack["status"] = json!("REJECTED");
            ack["reason"] = json!("Ingen kapacitet i området");
        }
        for _ in 0..if p.retries { 20 } else { 1 } {
            let answer = http.post(&url).bearer_auth(&token).json(&ack).send().await;
            if answer.is_ok_and(|a| a.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    StatusCode::CREATED
}

/// A Phoniro on 127.0.0.1 and the mock hub in front of it.
async fn start(retries: bool) -> (String, MockHub) {
    let phoniro = Phoniro { hub: Arc::default(), keys: Arc::default(), retries, reject_next: Arc::default() };
    let app = Router::new()
        .route("/api/v1/orders", post(order))
        .route("/api/v1/order-changes", post(|| async { StatusCode::CREATED }))
        .route("/api/v1/order-ends", post(|| async { StatusCode::CREATED }))
        .route("/harness", post(trigger))
        .with_state(phoniro.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let vendor = format!("http://{}/api/v1", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let config = MockConfig::parse(&format!("at = \"{START}\"\n[system]\nbase_url = \"{vendor}\"\napi_key = \"k\"\n"))
        .expect("the mock's config");
    let hub = MockHub::on_loopback("phoniro", config).await.expect("the mock starts");
    *phoniro.hub.lock().expect("hub") =
        Some((format!("{}/v1/systems/{}/messages", hub.url(), hub.system()), hub.token().to_owned()));
    (vendor, hub)
}

fn args(target: String, out: &std::path::Path, cases: &[&str], case_timeout: u64) -> ConformanceArgs {
    ConformanceArgs {
        vendor: "phoniro".into(),
        target,
        out: out.to_owned(),
        cases: cases.iter().map(|c| (*c).to_owned()).collect(),
        trigger: None,
        wait: 20,
        case_timeout,
        mappings: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_automatic_phoniro_cases_pass_against_the_mock_hub() {
    let (vendor, hub) = start(true).await;
    let dir = tempfile::tempdir().expect("a folder");
    let args = args(
        vendor,
        dir.path(),
        &[
            "CONF-PHONIRO-ORDER-001",
            "CONF-PHONIRO-ORDER-002",
            "CONF-PHONIRO-ORDER_CHANGE-001",
            "CONF-PHONIRO-ORDER_END-001",
            "CONF-PHONIRO-ORDER_ACK-002",
            "CONF-PHONIRO-ORDER_ACK-003",
            "CONF-PHONIRO-ORDER_ACK-004",
            "CONF-PHONIRO-ORDER_ACK-001",
            "CONF-PHONIRO-PLAN_NOTICE-001",
        ],
        60,
    );
    let args = ConformanceArgs { trigger: Some(args.target.replace("/api/v1", "/harness")), ..args };
    let outcome = run(&args, &hub).await.expect("the run");
    let failed: Vec<_> = outcome.run.cases.iter().filter(|c| !c.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(outcome.run.score.total, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phoniro_that_never_sends_again_is_caught_by_the_retry_cases_and_nothing_else() {
    let (vendor, hub) = start(false).await;
    let dir = tempfile::tempdir().expect("a folder");
    let cases = ["CONF-PHONIRO-ORDER-001", "CONF-PHONIRO-ORDER_ACK-002", "CONF-PHONIRO-ORDER_ACK-004"];
    let outcome = run(&args(vendor, dir.path(), &cases, 4), &hub).await.expect("the run");
    let passed: Vec<(&str, bool)> = outcome.run.cases.iter().map(|c| (c.id.as_str(), c.passed)).collect();
    assert_eq!(passed, [(cases[0], true), (cases[1], false), (cases[2], false)]);
    let after_503 = outcome.run.cases[1].failure.as_ref().expect("no retry after the 503");
    assert_eq!(after_503.step, 4, "the step that waits for the confirmation sent again: {after_503:?}");
    let after_reset = outcome.run.cases[2].failure.as_ref().expect("no retry after the reset");
    assert_eq!(after_reset.step, 3, "{after_reset:?}");
    assert_eq!(outcome.exit_code(), 1);
}
