//! Crash safety: the hub killed with SIGKILL right after acknowledging decisions loses
//! none of them, its chain verifies, and the orders it had not delivered go out after the
//! restart.

use std::process::Child;
use std::time::Duration;

use reqwest::StatusCode;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

/// Starts `carehub serve` over plain HTTP: the process, its base URL and its log lines.
fn serve(config: &std::path::Path) -> (Child, String, Lines) {
    let (child, addr, lines) = serve_binary(config, &[]);
    (child, format!("http://{addr}"), lines)
}

#[tokio::test]
async fn sigkill_after_acknowledging_loses_nothing() {
    const N: usize = 40;
    let phoniro = MockServer::start().await;
    Mock::given(method("POST")).and(path("/api/orders")).respond_with(ResponseTemplate::new(503)).mount(&phoniro).await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("carehub.db");
    let config = dir.path().join("carehub.toml");
    let options = Options { max_attempts: 1000, ..Options::default() };
    std::fs::write(&config, config_text(&db, &phoniro.uri(), &phoniro.uri(), &options)).expect("config");

    let (mut child, url, log1) = serve(&config);
    // The binary runs on the system clock.
    let auth = carehub_server::auth::Auth::new(SECRET, carehub_model::Clock::system());
    let token = auth
        .issue("t", carehub_server::auth::Role::CaseManagement, Some("combine"), None, Duration::from_secs(600))
        .expect("token");
    let http = reqwest::Client::new();
    let pnrs = test_pnrs();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        let body = decision_xml(&format!("DEC-CRASH-{i}"), &pnrs[1000 + i], PROVIDER_A, None);
        tasks.spawn(async move {
            let r = http
                .post(format!("{url}/v1/systems/combine/messages"))
                .bearer_auth(token)
                .body(body)
                .send()
                .await
                .expect("post");
            r.status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.expect("task"), StatusCode::ACCEPTED);
    }
    // Every decision was acknowledged; kill the hub at once, with orders still undelivered.
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    let verify = carehub(&["audit", "verify", "--db", db.to_str().expect("path")]);
    assert!(verify.status.success(), "{verify:?}");

    // Phoniro recovers; the restarted hub delivers every order it had acknowledged.
    phoniro.reset().await;
    Mock::given(method("POST")).and(path("/api/orders")).respond_with(ResponseTemplate::new(200)).mount(&phoniro).await;
    let (mut child, url, log2) = serve(&config);
    let admin =
        auth.issue("t", carehub_server::auth::Role::Admin, None, None, Duration::from_secs(600)).expect("token");
    let delivered = eventually("every order is delivered after the restart", || async {
        let r = http.get(format!("{url}/v1/orders?status=delivered")).bearer_auth(&admin).send().await.ok()?;
        let body: serde_json::Value = r.json().await.ok()?;
        let n = body["orders"].as_array()?.len();
        (n == N).then_some(n)
    })
    .await;
    assert_eq!(delivered, N);
    let log: serde_json::Value = http
        .get(format!("{url}/v1/messages?type=decision&status=accepted&limit=1000"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("log")
        .json()
        .await
        .expect("json");
    assert_eq!(log["messages"].as_array().map(Vec::len), Some(N), "all acknowledged decisions are in the log");

    let requests = phoniro.received_requests().await.expect("recorded");
    let mut ids: Vec<String> = requests
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).expect("json")["orderId"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    ids.sort();
    let total = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), N, "every order reached Phoniro");
    assert_eq!(total, N, "each order reached Phoniro once after the restart");

    child.kill().expect("kill");
    child.wait().expect("reap");

    // The operational log (at debug level, across both runs) never carries a personal
    // identity number, in any form, although every request and order carried one.
    let lines: Vec<String> =
        [log1, log2].iter().flat_map(|l| l.lock().map(|l| l.clone()).unwrap_or_default()).collect();
    assert!(lines.len() > 2 * N, "the log says something ({} lines)", lines.len());
    for pnr in &pnrs[1000..1000 + N] {
        let ten = &pnr[2..];
        for line in &lines {
            assert!(
                !line.contains(pnr.as_str()) && !line.contains(ten),
                "a personal identity number in the log: {line}"
            );
        }
    }
    let verify = carehub(&["audit", "verify", "--db", db.to_str().expect("path")]);
    assert!(verify.status.success(), "{verify:?}");
}
