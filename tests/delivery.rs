//! The outbox: retries with the same idempotency key, dead letters, and `carehub replay`.

use reqwest::StatusCode;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

#[tokio::test]
async fn two_503s_then_200_delivers_once_with_one_idempotency_key() {
    let phoniro = MockServer::start().await;
    let combine = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/orders"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .expect(2)
        .with_priority(1)
        .mount(&phoniro)
        .await;
    Mock::given(method("POST"))
        .and(path("/api/orders"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .with_priority(2)
        .mount(&phoniro)
        .await;
    let hub = TestHub::start(&phoniro.uri(), &combine.uri()).await;
    let (status, _) = hub.post("combine", SPEC_DECISION, Some(&hub.system_token("combine"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let order = hub.order_id("DEC-2026-0001").await;
    hub.wait_for_order_status(&order, "delivered").await;

    let requests = phoniro.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 3, "two failures and one success");
    let keys: Vec<String> = requests
        .iter()
        .map(|r| r.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned())
        .collect();
    assert_eq!(keys, vec![format!("{order}:order"); 3]);
    let bodies: Vec<&Vec<u8>> = requests.iter().map(|r| &r.body).collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "every attempt sends the same bytes");

    let trace = hub.trace(&order).await;
    let statuses: Vec<&str> =
        trace["steps"].as_array().expect("steps").iter().filter_map(|s| s["status"].as_str()).collect();
    assert_eq!(statuses, vec!["accepted", "queued", "retrying", "retrying", "delivered"]);
    assert_eq!(trace["deliveries"][0]["attempts"], 3);
}

#[tokio::test]
async fn a_provider_down_for_good_is_dead_lettered_and_replay_delivers_once() {
    let phoniro = MockServer::start().await;
    let combine = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/orders"))
        .respond_with(ResponseTemplate::new(503))
        .expect(3)
        .mount(&phoniro)
        .await;
    let mut hub =
        TestHub::start_with(&phoniro.uri(), &combine.uri(), Options { max_attempts: 3, ..Options::default() }).await;
    let (status, _) = hub.post("combine", SPEC_DECISION, Some(&hub.system_token("combine"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let order = hub.order_id("DEC-2026-0001").await;
    hub.wait_for_order_status(&order, "dead_letter").await;
    let (_, dead) = hub.get("/v1/deliveries?state=dead", Some(&hub.admin())).await;
    assert_eq!(dead["deliveries"].as_array().map(Vec::len), Some(1), "{dead}");
    let metrics =
        hub.http.get(format!("{}/metrics", hub.url)).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains(r#"carehub_outbox{node="test",state="dead"} 1"#), "{metrics}");
    hub.stop().await;
    phoniro.verify().await;

    // Phoniro recovers; `carehub replay` (a separate process on the same database)
    // resends the dead letter.
    phoniro.reset().await;
    Mock::given(method("POST"))
        .and(path("/api/orders"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&phoniro)
        .await;
    let config = hub.config_path.to_str().expect("path").to_owned();
    let listed = carehub(&["replay", "--config", &config, "--list"]);
    assert!(listed.status.success());
    assert!(String::from_utf8_lossy(&listed.stdout).contains("dead letter 1: order to phoniro"), "{listed:?}");
    assert!(phoniro.received_requests().await.unwrap_or_default().is_empty(), "--list sends nothing");

    let out = carehub(&["replay", "--config", &config]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("delivery 1: delivered after 1 attempt(s)"), "{stdout}");
    let requests = phoniro.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
        Some(format!("{order}:order").as_str())
    );

    // Nothing left to replay, and the chain still verifies with the replay recorded.
    let again = carehub(&["replay", "--config", &config]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("no dead letters"));
    let verify = carehub(&["audit", "verify", "--db", hub.db.to_str().expect("path")]);
    assert!(verify.status.success(), "{verify:?}");
}

#[tokio::test]
async fn a_permanent_refusal_is_dead_lettered_without_retrying() {
    let phoniro = MockServer::start().await;
    let combine = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/orders"))
        .respond_with(ResponseTemplate::new(400).set_body_string("unknown activity"))
        .expect(1)
        .mount(&phoniro)
        .await;
    let hub = TestHub::start(&phoniro.uri(), &combine.uri()).await;
    hub.post("combine", SPEC_DECISION, Some(&hub.system_token("combine"))).await;
    let order = hub.order_id("DEC-2026-0001").await;
    hub.wait_for_order_status(&order, "dead_letter").await;
    let trace = hub.trace(&order).await;
    let last = trace["steps"].as_array().and_then(|s| s.last().cloned()).expect("a step");
    assert_eq!(last["status"], "dead_letter");
    assert_eq!(last["error_code"], "DELIVERY_REFUSED");
    // The receiver's answer is kept in the log.
    let (_, entry) = hub.get(&format!("/v1/messages/{}", last["message_id"]), Some(&hub.admin())).await;
    assert_eq!(entry["payload"], "unknown activity");
}

/// Past `[delivery] max_backlog` waiting deliveries, intake answers 503 with `Retry-After`
/// and takes nothing, until the outbox has caught up; `/metrics` shows the backlog and the
/// write-ahead log's size.
#[tokio::test]
async fn past_the_backlog_intake_waits_with_retry_after_and_resumes_when_deliveries_catch_up() {
    let phoniro = MockServer::start().await;
    let combine = MockServer::start().await;
    Mock::given(method("POST")).and(path("/api/orders")).respond_with(ResponseTemplate::new(503)).mount(&phoniro).await;
    let options = Options { max_attempts: 1000, delivery_extra: "max_backlog = 2".into(), ..Options::default() };
    let hub = TestHub::start_with(&phoniro.uri(), &combine.uri(), options).await;
    let token = hub.system_token("combine");
    let pnrs = test_pnrs();
    let post = |n: usize| {
        let (hub, token, pnr) = (&hub, token.clone(), pnrs[840 + n].clone());
        async move {
            let r = hub
                .http
                .post(format!("{}/v1/systems/combine/messages", hub.url))
                .bearer_auth(&token)
                .body(decision_xml(&format!("DEC-BRAKE-{n}"), &pnr, PROVIDER_A, None))
                .send()
                .await
                .expect("post");
            let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            (r.status(), retry_after, r.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    // The provider is down: deliveries wait. Once the hub has seen more than two waiting,
    // the next message is refused.
    let mut n = 0;
    let refused = eventually("intake closes past the backlog", || {
        n += 1;
        let attempt = post(n);
        async move {
            let (status, retry_after, body) = attempt.await;
            (status == StatusCode::SERVICE_UNAVAILABLE).then_some((n, retry_after, body))
        }
    })
    .await;
    let (refused_n, retry_after, body) = refused;
    assert!(refused_n > 3, "three were taken first, as the backlog was not yet past two: {refused_n}");
    assert_eq!((retry_after.as_deref(), body["code"].as_str()), (Some("1"), Some("UNAVAILABLE")), "{body}");
    let (_, log) = hub.get(&format!("/v1/messages?decision=combine:DEC-BRAKE-{refused_n}"), Some(&hub.admin())).await;
    assert_eq!(log["messages"].as_array().map(Vec::len), Some(0), "the refused message was not taken: {log}");
    let metrics =
        hub.http.get(format!("{}/metrics", hub.url)).send().await.expect("metrics").text().await.expect("text");
    let pending = format!("carehub_outbox{{node=\"test\",state=\"pending\"}} {}", refused_n - 1);
    assert!(metrics.contains(&pending) && metrics.contains("carehub_store_wal_bytes"), "{metrics}");

    // The provider is back: the outbox drains, and intake opens again.
    phoniro.reset().await;
    Mock::given(method("POST")).and(path("/api/orders")).respond_with(ResponseTemplate::new(200)).mount(&phoniro).await;
    let mut n = 100;
    eventually("intake opens once deliveries caught up", || {
        n += 1;
        let attempt = post(n);
        async move { (attempt.await.0 == StatusCode::ACCEPTED).then_some(()) }
    })
    .await;
}
