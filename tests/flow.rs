//! The decision flow (SPEC §4.1) end to end: Combine decision in, order out to Phoniro,
//! confirmation and plan notice back to Combine, every step in the trace.

use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

#[tokio::test]
async fn a_decision_reaches_phoniro_once_and_the_answers_reach_combine() {
    decision_flow_at(test_instant()).await;
}

/// The order's start and deadlines are counted from the hub's day, also when that day is
/// the last of February or the day the clocks go forward.
#[tokio::test]
async fn deadlines_follow_the_hubs_day_at_the_end_of_february_and_when_the_clocks_change() {
    for at in &awkward_instants()[1..] {
        decision_flow_at(*at).await;
    }
}

async fn decision_flow_at(at: chrono::DateTime<chrono::Utc>) {
    let phoniro = MockServer::start().await;
    let combine = MockServer::start().await;
    let hub = TestHub::start_with(&phoniro.uri(), &combine.uri(), Options { at, ..Options::default() }).await;
    let expected_order = json!({
        "orderId": "(the hub's id of the order)",
        "externalReference": "combine:DEC-2026-0001",
        "provider": {"organisationNumber": "5599000014"},
        "client": {"personalIdentityNumber": "193601016987"},
        "startDate": "2026-11-22",
        "endDate": "2027-10-31",
        "executeBy": "2026-12-06",
        "carePlanDue": "2026-12-06",
        "activities": [
            {"activityCode": "SERVICE", "sourceCode": "SERV", "minutesPerMonth": 480},
            {"activityCode": "CARE", "sourceCode": "PO", "minutesPerMonth": 1800}
        ]
    });
    let today = hub.clock.today();
    let mut expected_order = expected_order;
    // The order starts on the later of the decision's validity and today, and the deadlines
    // follow from that (14 days each by default).
    let start = today.max(chrono::NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"));
    expected_order["startDate"] = json!(start.to_string());
    expected_order["executeBy"] = json!((today + chrono::Days::new(14)).to_string());
    expected_order["carePlanDue"] = json!((start + chrono::Days::new(14)).to_string());

    Mock::given(method("POST"))
        .and(path("/api/orders"))
        .and(header("content-type", "application/json"))
        .and(header("authorization", "Bearer phoniro-test-key"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"received": true})))
        .expect(1)
        .mount(&phoniro)
        .await;
    Mock::given(method("POST"))
        .and(path("/callback"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&combine)
        .await;

    let before = hub.clock.now().timestamp_millis();
    let (status, receipt) = hub.post("combine", SPEC_DECISION, Some(&hub.system_token("combine"))).await;
    let after = hub.clock.now().timestamp_millis();
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    assert_eq!(receipt["status"], "accepted");
    assert!(receipt["message_id"].as_i64().is_some());
    // The receipt names the hub's order: `O-`, the hub's clock in milliseconds, a hash.
    let order = receipt["order_id"].as_str().expect("an order id").to_owned();
    let millis = i64::from_str_radix(order.get(2..14).expect("long enough"), 16).expect("hex milliseconds");
    assert!((before..=after).contains(&millis), "{order} made between {before} and {after}");
    assert_eq!(hub.order_id("DEC-2026-0001").await, order);
    hub.wait_for_order_status(&order, "delivered").await;
    // Phoniro got the order once, under its id and idempotency key.
    let sent = phoniro.received_requests().await.expect("recorded");
    let [request] = &sent[..] else { panic!("one order sent: {sent:?}") };
    assert_eq!(
        request.headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
        Some(format!("{order}:order").as_str())
    );
    let mut expected_order = expected_order;
    expected_order["orderId"] = json!(order);
    assert_eq!(serde_json::from_slice::<Value>(&request.body).expect("json"), expected_order);

    // Phoniro confirms and reports the plan; both travel back to Combine as XML.
    let phoniro_token = hub.provider(PROVIDER_A);
    let (status, body) = hub.post("phoniro", phoniro_ack(&order, "ACCEPTED"), Some(&phoniro_token)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = hub.post("phoniro", phoniro_plan(&order, "2026-11-10"), Some(&phoniro_token)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let received = eventually("both callbacks reach Combine", || async {
        let r = combine.received_requests().await.unwrap_or_default();
        (r.len() >= 2).then_some(r)
    })
    .await;
    let mut bodies: Vec<String> = received.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).collect();
    bodies.sort();
    let ack = carehub_core::mapping::xml::parse(&bodies[1]).expect("ack is XML");
    let want_ack = carehub_core::mapping::xml::parse(&format!(
        r#"<Kvittens xmlns="urn:carehub:vendor:combine:1"><BeslutsId>DEC-2026-0001</BeslutsId><UppdragsId>{order}</UppdragsId><Utforare orgnr="5599000014"/><Status>Accepterad</Status><Tidpunkt>2026-11-02T08:15:00Z</Tidpunkt></Kvittens>"#
    ))
    .expect("expected");
    assert!(ack.same_as(&want_ack), "ack: {}", bodies[1]);
    let plan = carehub_core::mapping::xml::parse(&bodies[0]).expect("plan is XML");
    let want_plan = carehub_core::mapping::xml::parse(&format!(
        r#"<Genomforandeplan xmlns="urn:carehub:vendor:combine:1"><BeslutsId>DEC-2026-0001</BeslutsId><UppdragsId>{order}</UppdragsId><Utforare orgnr="5599000014"/><UpprattadDatum>2026-11-10</UpprattadDatum></Genomforandeplan>"#
    ))
    .expect("expected");
    assert!(plan.same_as(&want_plan), "plan: {}", bodies[0]);
    for r in &received {
        assert!(r.headers.get("idempotency-key").is_some(), "callbacks carry an idempotency key");
    }

    // Wait until both callbacks are recorded as delivered, then read the trace.
    let admin = hub.admin();
    let trace = eventually("the trace shows both callbacks delivered", || async {
        let t = hub.trace(&order).await;
        let delivered = t["steps"].as_array()?.iter().filter(|s| s["status"] == "delivered").count();
        (delivered == 3).then_some(t)
    })
    .await;
    let steps: Vec<String> =
        trace["steps"].as_array().expect("steps").iter().map(|s| s["step"].as_str().unwrap_or("").to_owned()).collect();
    let want = [
        "decision received from combine",
        "order queued for phoniro",
        "order delivered to phoniro",
        "order ack received from phoniro",
        "order ack queued for combine",
        "plan notice received from phoniro",
        "plan notice queued for combine",
        "order ack delivered to combine",
        "plan notice delivered to combine",
    ];
    for w in want {
        assert!(steps.iter().any(|s| s == w), "trace lacks '{w}': {steps:#?}");
    }
    assert_eq!(trace["order"]["status"], "accepted");
    assert_eq!(trace["order"]["plan_established_on"], "2026-11-10");
    assert_eq!(trace["deliveries"].as_array().map(Vec::len), Some(3));
    let (_, got) = hub.get(&format!("/v1/orders/{order}"), Some(&admin)).await;
    assert_eq!(got["ack_status"], "accepted");
    // wiremock checks `.expect(1)` and `.expect(2)` when the servers drop.
}

#[tokio::test]
async fn a_repeated_decision_is_acknowledged_as_a_duplicate_and_sent_once() {
    let phoniro = MockServer::start().await;
    let combine = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/orders"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&phoniro)
        .await;
    let hub = TestHub::start(&phoniro.uri(), &combine.uri()).await;
    let token = hub.system_token("combine");
    let (s1, r1) = hub.post("combine", SPEC_DECISION, Some(&token)).await;
    // An order's id carries the time it was made: the repeat, a minute later, still names
    // the order made the first time. The clock moves once the order is delivered, so no
    // delivery in flight outlives its lease and goes out again.
    hub.wait_for_order_status(r1["order_id"].as_str().expect("an order id"), "delivered").await;
    hub.clock.advance(chrono::Duration::minutes(1));
    let (s2, r2) = hub.post("combine", SPEC_DECISION, Some(&token)).await;
    assert_eq!(s1, StatusCode::ACCEPTED);
    assert_eq!(s2, StatusCode::OK);
    assert_eq!(r2["status"], "duplicate");
    assert_eq!(r1["order_id"], r2["order_id"]);
    hub.wait_for_order_status(&hub.order_id("DEC-2026-0001").await, "delivered").await;

    // The same id with other content is a conflict, not a second order.
    let changed = SPEC_DECISION.replace("480", "600");
    let (s3, r3) = hub.post("combine", changed, Some(&token)).await;
    assert_eq!(s3, StatusCode::CONFLICT);
    assert_eq!(r3["code"], "DECISION_CONFLICT");
    // A repeated acknowledgement is recorded as a duplicate and forwarded once.
    let order = hub.order_id("DEC-2026-0001").await;
    Mock::given(method("POST"))
        .and(path("/callback"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&combine)
        .await;
    let p = hub.provider(PROVIDER_A);
    let (a1, _) = hub.post("phoniro", phoniro_ack(&order, "ACCEPTED"), Some(&p)).await;
    let (a2, b2) = hub.post("phoniro", phoniro_ack(&order, "ACCEPTED"), Some(&p)).await;
    assert_eq!(a1, StatusCode::ACCEPTED);
    assert_eq!(a2, StatusCode::OK);
    assert_eq!(b2["status"], "duplicate");
    eventually("the ack reaches Combine", || async {
        (combine.received_requests().await.unwrap_or_default().len() == 1).then_some(())
    })
    .await;
    // Both answers were taken before that: once the delivery loop has recorded the attempt
    // Combine answered, the outbox holds one acknowledgement for the order, delivered at its
    // first attempt, and nothing else that could reach Combine.
    let outbox = eventually("the ack's attempt is recorded", || async {
        let (_, outbox) = hub.get(&format!("/v1/deliveries?order={order}"), Some(&hub.admin())).await;
        let recorded = outbox["deliveries"]
            .as_array()?
            .iter()
            .any(|d| d["message_type"] == "order_ack" && d["state"] != "pending");
        recorded.then_some(outbox)
    })
    .await;
    let acks: Vec<&Value> =
        outbox["deliveries"].as_array().expect("deliveries").iter().filter(|d| d["system"] != "phoniro").collect();
    assert_eq!(acks.len(), 1, "{outbox}");
    assert_eq!(
        (acks[0]["message_type"].as_str(), acks[0]["state"].as_str(), acks[0]["attempts"].as_u64()),
        (Some("order_ack"), Some("delivered"), Some(1)),
        "{outbox}"
    );
}

#[tokio::test]
async fn overdue_orders_are_listed_and_counted_in_metrics() {
    let phoniro = MockServer::start().await;
    let combine = MockServer::start().await;
    Mock::given(method("POST")).and(path("/api/orders")).respond_with(ResponseTemplate::new(200)).mount(&phoniro).await;
    let hub = TestHub::start(&phoniro.uri(), &combine.uri()).await;
    let pnrs = test_pnrs();
    let token = hub.system_token("combine");
    // Decided 40 days ago and never confirmed: past its execute-by and its plan-due.
    let old = (hub.clock.now() - chrono::Duration::days(40)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let (s, _) = hub.post("combine", decision_xml("DEC-OLD", &pnrs[100], PROVIDER_A, Some(&old)), Some(&token)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    // Decided today: not overdue.
    let (s, _) = hub.post("combine", decision_xml("DEC-NEW", &pnrs[101], PROVIDER_A, None), Some(&token)).await;
    assert_eq!(s, StatusCode::ACCEPTED);

    let (status, list) = hub.get("/v1/orders?overdue=true", Some(&hub.admin())).await;
    assert_eq!(status, StatusCode::OK);
    let orders = list["orders"].as_array().expect("orders");
    assert_eq!(orders.len(), 1, "{list}");
    assert_eq!(orders[0]["order"]["id"], hub.order_id("DEC-OLD").await.as_str());
    let reasons: Vec<&str> =
        orders[0]["overdue"].as_array().expect("reasons").iter().filter_map(|v| v.as_str()).collect();
    assert!(reasons.contains(&"not_confirmed") && reasons.contains(&"plan_missing"), "{reasons:?}");

    let metrics =
        hub.http.get(format!("{}/metrics", hub.url)).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains(r#"carehub_orders_overdue{node="test",kind="not_confirmed"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"carehub_orders_overdue{node="test",kind="plan_missing"} 1"#), "{metrics}");

    // Once confirmed, it is no longer unconfirmed.
    let p = hub.provider(PROVIDER_A);
    Mock::given(method("POST")).and(path("/callback")).respond_with(ResponseTemplate::new(200)).mount(&combine).await;
    let (s, _) = hub.post("phoniro", phoniro_ack(&hub.order_id("DEC-OLD").await, "ACCEPTED"), Some(&p)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (_, list) = hub.get("/v1/orders?overdue=true", Some(&hub.admin())).await;
    let reasons = list["orders"][0]["overdue"].clone();
    assert_eq!(reasons, json!(["plan_missing"]));
}
