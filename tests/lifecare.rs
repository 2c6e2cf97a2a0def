//! Lifecare over REST/JSON in both roles: decisions in from Lifecare (case management) as
//! webhooks, orders out to Lifecare Mobil Hemtjänst, answers back to Lifecare's API, all
//! with bearer tokens from Lifecare's OAuth endpoint, renewed on expiry and on a 401.

use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

fn token(t: &str, expires_in: u64) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(json!({"access_token": t, "token_type": "Bearer", "expires_in": expires_in}))
}

#[tokio::test]
async fn a_lifecare_decision_reaches_lifecare_mobil_and_the_answers_return() {
    let mobil = MockServer::start().await;
    let lifecare = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/lcmh/oauth/token"))
        .and(header("authorization", "Basic Y2FyZWh1YjpsY21oLXNlY3JldA=="))
        .respond_with(token("mobil-t1", 3600))
        .expect(1)
        .mount(&mobil)
        .await;
    Mock::given(method("POST"))
        .and(path("/lcmh/api/assignments"))
        .and(header("authorization", "Bearer mobil-t1"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&mobil)
        .await;
    Mock::given(method("POST"))
        .and(path("/lifecare/oauth/token"))
        .respond_with(token("lc-t1", 3600))
        .expect(1)
        .mount(&lifecare)
        .await;
    let hub = TestHub::start(&mobil.uri(), &lifecare.uri()).await;
    let (status, receipt) = hub
        .post(
            "lifecare",
            lifecare_decision("LC-77812", "19360101-6987", "556012-3456"),
            Some(&hub.system_token("lifecare")),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    // The receipt names the order the decision made: the one the hub lists for it.
    let order = receipt["order_id"].as_str().expect("an order id").to_owned();
    assert_eq!(hub.order_of("lifecare:LC-77812").await, order);
    Mock::given(method("POST"))
        .and(path("/lifecare/api/acknowledgements"))
        .and(header("authorization", "Bearer lc-t1"))
        .and(body_json(json!({"decisionId": "LC-77812", "assignmentId": order, "providerOrgNo": PROVIDER_C,
            "status": "ACCEPTED", "acknowledgedAt": "2026-11-03T07:30:00Z"})))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&lifecare)
        .await;
    Mock::given(method("POST"))
        .and(path("/lifecare/api/care-plans"))
        .and(header("authorization", "Bearer lc-t1"))
        .and(body_json(json!({"decisionId": "LC-77812", "assignmentId": order, "establishedDate": "2026-11-12"})))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&lifecare)
        .await;
    hub.wait_for_order_status(&order, "delivered").await;
    let sent = mobil.received_requests().await.expect("recorded");
    let assignment: serde_json::Value =
        serde_json::from_slice(&sent.iter().find(|r| r.url.path() == "/lcmh/api/assignments").expect("sent").body)
            .expect("json");
    assert_eq!(assignment["client"]["ssn"], "193601016987");
    assert_eq!(assignment["services"], json!([{"type": "SERVICE", "minutes": 480}]));

    let token_c = hub.provider(PROVIDER_C);
    let accepted = json!({"event": "assignment.accepted", "assignmentId": order, "timestamp": "2026-11-03T07:30:00Z"});
    let (status, _) = hub.post("lifecare-mobil", accepted.to_string(), Some(&token_c)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let plan = json!({"event": "careplan.established", "assignmentId": order, "date": "2026-11-12"});
    let (status, _) = hub.post("lifecare-mobil", plan.to_string(), Some(&token_c)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually("both answers reach Lifecare", || async {
        let t = hub.trace(&order).await;
        let d = t["deliveries"].as_array()?;
        (d.len() == 3 && d.iter().all(|x| x["state"] == "delivered")).then_some(())
    })
    .await;
    // Each token endpoint was asked once: tokens are reused until they expire.
}

#[tokio::test]
async fn a_refused_token_is_renewed_within_the_attempt_and_an_expired_one_before_it() {
    let mobil = MockServer::start().await;
    let lifecare = MockServer::start().await;
    // The first token is revoked: the API answers 401 to it.
    Mock::given(method("POST"))
        .and(path("/lcmh/oauth/token"))
        .respond_with(token("revoked", 3600))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&mobil)
        .await;
    Mock::given(method("POST"))
        .and(path("/lcmh/oauth/token"))
        .respond_with(token("good", 3600))
        .with_priority(2)
        .mount(&mobil)
        .await;
    Mock::given(method("POST"))
        .and(path("/lcmh/api/assignments"))
        .and(header("authorization", "Bearer revoked"))
        .respond_with(ResponseTemplate::new(401))
        .expect(1)
        .mount(&mobil)
        .await;
    Mock::given(method("POST"))
        .and(path("/lcmh/api/assignments"))
        .and(header("authorization", "Bearer good"))
        .respond_with(ResponseTemplate::new(201))
        .expect(2)
        .mount(&mobil)
        .await;
    // Lifecare's own tokens expire as they are issued (`expires_in: 0`).
    Mock::given(method("POST"))
        .and(path("/lifecare/oauth/token"))
        .respond_with(token("short", 0))
        .expect(2)
        .mount(&lifecare)
        .await;
    Mock::given(method("POST"))
        .and(path("/lifecare/api/acknowledgements"))
        .and(header("authorization", "Bearer short"))
        .respond_with(ResponseTemplate::new(201))
        .expect(2)
        .mount(&lifecare)
        .await;
    let hub = TestHub::start(&mobil.uri(), &lifecare.uri()).await;
    let cm = hub.system_token("lifecare");
    let pnrs = test_pnrs();

    let (s, _) = hub.post("lifecare", lifecare_decision("LC-1", &pnrs[300], PROVIDER_C), Some(&cm)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let first = hub.order_of("lifecare:LC-1").await;
    let delivered = hub.wait_for_order_status(&first, "delivered").await;
    assert!(delivered["delivered_at"].is_string());
    let trace = hub.trace(&first).await;
    assert_eq!(trace["deliveries"][0]["attempts"], 1, "the 401 was cured inside the first attempt");
    let (s, _) = hub.post("lifecare", lifecare_decision("LC-2", &pnrs[301], PROVIDER_C), Some(&cm)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let second = hub.order_of("lifecare:LC-2").await;
    hub.wait_for_order_status(&second, "delivered").await;
    let token_calls = mobil
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.url.path() == "/lcmh/oauth/token")
        .count();
    assert_eq!(token_calls, 2, "one token refused, one new, then reused");

    // Two acknowledgements: the token the first was sent with has expired by the second,
    // which needs a new one.
    let c = hub.provider(PROVIDER_C);
    for order in [&first, &second] {
        let ack = json!({"event": "assignment.accepted", "assignmentId": order, "timestamp": "2026-11-03T07:30:00Z"});
        let (s, _) = hub.post("lifecare-mobil", ack.to_string(), Some(&c)).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        eventually("the ack reaches Lifecare", || async {
            let t = hub.trace(order).await;
            let d = t["deliveries"].as_array()?;
            d.iter().any(|x| x["message_type"] == "order_ack" && x["state"] == "delivered").then_some(())
        })
        .await;
    }
}
