//! Roles and tenancy: a provider's token sees only its own orders and messages.

use reqwest::StatusCode;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

#[tokio::test]
async fn a_provider_cannot_read_another_providers_order() {
    let phoniro = MockServer::start().await;
    let combine = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&phoniro).await;
    let hub = TestHub::start(&phoniro.uri(), &combine.uri()).await;
    let pnrs = test_pnrs();
    let cm = hub.case_management();
    let (s, _) = hub.post("combine", decision_xml("DEC-A", &pnrs[10], PROVIDER_A, None), Some(&cm)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (s, _) = hub.post("combine", decision_xml("DEC-B", &pnrs[11], PROVIDER_B, None), Some(&cm)).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let (a, b) = (order_id("DEC-A"), order_id("DEC-B"));
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
    let resp =
        hub.http.post(format!("{}/v1/deliveries/replay", hub.url)).bearer_auth(&auditor).send().await.expect("post");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let (status, body) = hub.get("/v1/messages?client=123", Some(&auditor)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "INVALID_PERSONAL_IDENTITY_NUMBER");
}

#[tokio::test]
async fn tokens_come_from_the_cli_and_the_configured_key() {
    let phoniro = MockServer::start().await;
    let hub = TestHub::start(&phoniro.uri(), &phoniro.uri()).await;
    let config = hub.config_path.to_str().expect("path");
    let out = carehub(&["token", "--role", "provider_system", "--org", "559900-0014", "--config", config]);
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).expect("utf8").trim().to_owned();
    let (status, _) = hub.get("/v1/orders", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    let out = carehub(&["token", "--role", "provider_system", "--config", config]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--org"));
}
