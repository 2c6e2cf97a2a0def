//! HTTPS and mutual TLS: a system authenticated by its client certificate may send as
//! itself, and only as itself; everything else still needs a bearer token.

use reqwest::StatusCode;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

fn client(identity: Option<&str>) -> reqwest::Client {
    https_client(identity)
}

#[tokio::test]
async fn a_client_certificate_authenticates_its_system_for_its_own_messages() {
    let phoniro = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&phoniro).await;
    let hub = TestHub::start_with(&phoniro.uri(), &phoniro.uri(), Options { tls: true, ..Options::default() }).await;
    assert!(hub.url.starts_with("https://127.0.0.1:"), "{}", hub.url);
    let combine = client(Some("combine-ekero"));
    let post = |c: &reqwest::Client, system: &str, body: String| {
        c.post(format!("{}/v1/systems/{system}/messages", hub.url)).body(body).send()
    };

    // Combine, by its certificate alone.
    let r = post(&combine, "combine", SPEC_DECISION.to_owned()).await.expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    // ...but not as Phoniro.
    let r = post(&combine, "phoniro", phoniro_ack(&order_id("DEC-2026-0001"), "ACCEPTED")).await.expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // ...and a certificate is not a token for reading.
    let r = combine.get(format!("{}/v1/orders", hub.url)).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Phoniro, by its certificate, confirms the order it was sent.
    let order = order_id("DEC-2026-0001");
    hub.wait_for_order_status_with(&client(None), &order, "delivered").await;
    let r = post(&client(Some("phoniro-ekero")), "phoniro", phoniro_ack(&order, "ACCEPTED")).await.expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Without a certificate: a bearer token over HTTPS works, nothing else does.
    let anonymous = client(None);
    let r =
        post(&anonymous, "combine", decision_xml("DEC-TLS-2", &test_pnrs()[7], PROVIDER_A, None)).await.expect("post");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = anonymous
        .post(format!("{}/v1/systems/combine/messages", hub.url))
        .bearer_auth(hub.system_token("combine"))
        .body(decision_xml("DEC-TLS-2", &test_pnrs()[7], PROVIDER_A, None))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Plain HTTP to the HTTPS port gets no answer.
    let plain = reqwest::get(hub.url.replace("https://", "http://") + "/healthz").await;
    assert!(plain.is_err() || !plain.expect("response").status().is_success());
}
