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
    let receipt: serde_json::Value = r.json().await.expect("a receipt");
    let order = receipt["order_id"].as_str().expect("an order id").to_owned();
    // ...but not as Phoniro.
    let r = post(&combine, "phoniro", phoniro_ack(&order, "ACCEPTED")).await.expect("post");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // ...and a certificate is not a token for reading.
    let r = combine.get(format!("{}/v1/orders", hub.url)).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Phoniro, by its certificate, confirms the order it was sent.
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

/// The hub's TLS private key is a secret like the others: it may come from an environment
/// variable (its PEM text) instead of a file, and a configuration printed never shows it.
#[tokio::test]
async fn the_tls_key_may_come_from_the_environment_like_every_secret() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("carehub.toml");
    let options = Options { tls: true, ..Options::default() };
    let key_line = format!("key = \"{}\"", cert_file("hub.key").display());
    let text = config_text(&dir.path().join("carehub.db"), "http://127.0.0.1:1", "http://127.0.0.1:1", &options);
    assert!(text.contains(&key_line), "{text}");
    std::fs::write(&path, text.replace(&key_line, "key_pem_env = \"CAREHUB_TEST_TLS_KEY\"")).expect("config");
    let pem = std::fs::read_to_string(cert_file("hub.key")).expect("key");
    let lookup = |var: &str| (var == "CAREHUB_TEST_TLS_KEY").then(|| pem.clone());
    let config = carehub_server::config::Config::load_with_env(&path, &lookup).expect("valid");
    assert!(!format!("{config:?}").contains("PRIVATE KEY"), "a printed configuration shows the key");

    let runtime =
        carehub_server::assemble::build(&config, carehub_model::Clock::starting_at(test_instant())).expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hub = carehub_server::run::start(runtime, listener).await.expect("start");
    let resp = client(None).get(format!("{}/healthz", hub.url())).send().await.expect("https");
    assert_eq!(resp.status(), StatusCode::OK);
    hub.stop().await;

    // Without the variable: the configuration names it, and starts nothing.
    let errors = carehub_server::config::Config::load_with_env(&path, &|_| None).expect_err("no key");
    assert!(
        errors.to_string().contains("key_pem_env: the environment variable CAREHUB_TEST_TLS_KEY is not set"),
        "{errors}"
    );
}
