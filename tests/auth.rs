//! Roles and tenancy: a provider's token sees only its own orders and messages. Only
//! answers are checked here, so the hub's router is called without a socket ([`TestApp`]).

use axum::http::Method;
use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn a_provider_cannot_read_another_providers_order() {
    let hub = TestApp::start();
    let pnrs = test_pnrs();
    let cm = hub.system_token("combine");
    let (s, a) = hub.post("combine", decision_xml("DEC-A", &pnrs[10], PROVIDER_A, None), Some(&cm)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, b) = hub.post("combine", decision_xml("DEC-B", &pnrs[11], PROVIDER_B, None), Some(&cm)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (a, b) = (a["order_id"].as_str().expect("order").to_owned(), b["order_id"].as_str().expect("order").to_owned());
    let token_a = hub.provider(PROVIDER_A);

    let (status, body) = hub.get(&format!("/v1/orders/{b}"), Some(&token_a)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "FORBIDDEN");
    let (status, _) = hub.get(&format!("/v1/orders/{b}/trace"), Some(&token_a)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = hub.get(&format!("/v1/orders/{a}"), Some(&token_a)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["order"]["provider"], PROVIDER_A);

    // Listings are narrowed to the provider's own data.
    let (_, orders) = hub.get("/v1/orders", Some(&token_a)).await;
    let ids: Vec<&str> =
        orders["orders"].as_array().expect("orders").iter().filter_map(|o| o["order"]["id"].as_str()).collect();
    assert_eq!(ids, vec![a.as_str()]);
    let (status, _) = hub.get(&format!("/v1/orders?provider={PROVIDER_B}"), Some(&token_a)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, page) = hub.get("/v1/messages", Some(&token_a)).await;
    let messages = page["messages"].as_array().expect("messages");
    assert!(!messages.is_empty());
    assert!(messages.iter().all(|m| m["provider"] == PROVIDER_A), "{page}");
    // A message about provider B is refused to provider A.
    let (_, all) = hub.get("/v1/messages", Some(&hub.admin())).await;
    let foreign =
        all["messages"].as_array().expect("messages").iter().find(|m| m["provider"] == PROVIDER_B).expect("one")["id"]
            .clone();
    let (status, _) = hub.get(&format!("/v1/messages/{foreign}"), Some(&token_a)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Auditors read everything but replay nothing; the log filters by client.
    let auditor = hub.token(carehub_server::auth::Role::Auditor, None);
    let (status, page) = hub.get(&format!("/v1/messages?client={}", pnrs[11]), Some(&auditor)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page["messages"]
        .as_array()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|e| e["client"] == pnrs[11].as_str())));
    let (status, _, _) = hub.send(Method::POST, "/v1/deliveries/replay", Some(&auditor), &[], "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = hub.get("/v1/messages?client=123", Some(&auditor)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "INVALID_PERSONAL_IDENTITY_NUMBER");
}

#[tokio::test]
async fn tokens_come_from_the_cli_and_the_configured_key() {
    // `carehub token` dates its tokens by the machine's clock: so does this hub.
    let options = Options { at: carehub_model::Clock::system().now(), ..Options::default() };
    let hub = TestApp::start_with(options);
    let config = hub.config_path.to_str().expect("path");
    let out = carehub(&[
        "token",
        "--role",
        "provider_system",
        "--system",
        "phoniro",
        "--org",
        "559900-0014",
        "--config",
        config,
    ]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).expect("utf8").trim().to_owned();
    let (status, _) = hub.get("/v1/orders", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    let out = carehub(&["token", "--role", "provider_system", "--system", "phoniro", "--config", config]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--org"));
}

#[tokio::test]
async fn a_system_token_from_the_cli_names_a_configured_system_of_its_kind() {
    // `carehub token` dates its tokens by the machine's clock: so does this hub.
    let options = Options { at: carehub_model::Clock::system().now(), ..Options::default() };
    let hub = TestApp::start_with(options);
    let config = hub.config_path.to_str().expect("path");
    // Without --system a case-management token is refused, with a clear message.
    let out = carehub(&["token", "--role", "case_management", "--config", config]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --system"), "{out:?}");
    // A system that is not configured, and one of the other kind.
    let out = carehub(&["token", "--role", "case_management", "--system", "combine-ekero", "--config", config]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no system named 'combine-ekero'"), "{out:?}");
    let out = carehub(&["token", "--role", "case_management", "--system", "phoniro", "--config", config]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // A provider whose orders go to another system.
    let out = carehub(&[
        "token",
        "--role",
        "provider_system",
        "--system",
        "lifecare-mobil",
        "--org",
        PROVIDER_A,
        "--config",
        config,
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // An auditor names no system.
    let out = carehub(&["token", "--role", "auditor", "--system", "combine", "--config", config]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // The CLI's token for treserva sends as treserva, and only as treserva.
    let out = carehub(&["token", "--role", "case_management", "--system", "treserva", "--config", config]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).expect("utf8").trim().to_owned();
    let (status, body) =
        hub.post("combine", decision_xml("DEC-CLI", &test_pnrs()[12], PROVIDER_A, None), Some(&token)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "{body}");
}

#[tokio::test]
async fn a_case_management_token_cannot_send_as_another_system() {
    let hub = TestApp::start();
    let pnrs = test_pnrs();
    let admin = hub.admin();

    // Treserva's token, posting a Combine decision to Combine's endpoint.
    let (status, body) = hub
        .post("combine", decision_xml("DEC-X", &pnrs[13], PROVIDER_A, None), Some(&hub.system_token("treserva")))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "FORBIDDEN");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("treserva") && message.contains("/v1/systems/treserva/messages"), "{body}");
    // Nothing was taken as Combine's: no order, and no accepted entry in the log.
    let (status, orders) = hub.get("/v1/orders?decision=combine:DEC-X", Some(&admin)).await;
    assert_eq!((status, orders["orders"].as_array().map(Vec::len)), (StatusCode::OK, Some(0)), "{orders}");
    let (_, page) = hub.get("/v1/messages?status=accepted", Some(&admin)).await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(0), "{page}");

    // A provider's token for Lifecare Mobil cannot send as Phoniro either.
    let (status, body) = hub
        .post("phoniro", phoniro_ack("O-NOT-SENT", "ACCEPTED"), Some(&hub.provider_on("lifecare-mobil", PROVIDER_A)))
        .await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "{body}");

    // Combine's own token is taken.
    let (status, body) = hub
        .post("combine", decision_xml("DEC-X", &pnrs[13], PROVIDER_A, None), Some(&hub.system_token("combine")))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, page) = hub.get("/v1/messages?status=accepted", Some(&admin)).await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1), "{page}");
}

/// A token signed with the hub's key whose claims are `claims` as they are.
fn signed(claims: &serde_json::Value) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET.as_bytes())).expect("sign")
}

#[tokio::test]
async fn tokens_not_yet_valid_or_for_another_audience_or_issuer_are_refused() {
    let hub = TestApp::start();
    // The hub's clock, not the machine's: the hub runs in December 2026.
    let now = hub.clock.now().timestamp();
    let good = serde_json::json!({
        "sub": "t", "role": "auditor", "iat": now, "nbf": now, "exp": now + 600,
        "iss": "carehub", "aud": "carehub-api"
    });
    let (status, body) = hub.get("/v1/messages", Some(&signed(&good))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for (what, key, value) in [
        ("nbf an hour ahead", "nbf", serde_json::json!(now + 3600)),
        ("iat in the future", "iat", serde_json::json!(now + 3600)),
        ("another audience", "aud", serde_json::json!("someone-elses-api")),
        ("another issuer", "iss", serde_json::json!("not-carehub")),
    ] {
        let mut claims = good.clone();
        claims[key] = value;
        let (status, body) = hub.get("/v1/messages", Some(&signed(&claims))).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED")), "{what}");
    }
    // A system's token that names no system.
    let mut claims = good.clone();
    claims["role"] = "case_management".into();
    let (status, _) = hub.post("combine", SPEC_DECISION, Some(&signed(&claims))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
