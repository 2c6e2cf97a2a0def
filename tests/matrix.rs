//! The translation matrix: each case-management system (Combine over HTTP, Treserva over
//! SOAP, Procapita over SFTP, Lifecare over REST) to each provider system (Phoniro over
//! REST, Lifecare Mobil Hemtjänst over REST, ParaGå over SFTP): twelve exchanges over their
//! real transports, on loopback, each acknowledgement returning to the system that sent the
//! decision in that system's own format.

use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::sshd::Sshd;
use crate::support::*;

const CASE_MANAGEMENT: [&str; 4] = ["combine", "treserva", "procapita", "lifecare"];
const PROVIDERS: [(&str, &str); 3] = [("phoniro", PROVIDER_A), ("lifecare-mobil", PROVIDER_C), ("paraga", PROVIDER_D)];

fn token() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"access_token": "matrix", "expires_in": 3600}))
}

#[tokio::test]
async fn every_case_management_system_reaches_every_provider_system_and_back() {
    let cm_http = MockServer::start().await; // Combine, Treserva, Lifecare
    let providers_http = MockServer::start().await; // Phoniro, Lifecare Mobil
    let procapita = Sshd::start();
    let paraga = Sshd::start();
    Mock::given(method("POST"))
        .and(path("/lifecare/oauth/token"))
        .respond_with(token())
        .with_priority(1)
        .mount(&cm_http)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).with_priority(2).mount(&cm_http).await;
    Mock::given(method("POST"))
        .and(path("/lcmh/oauth/token"))
        .respond_with(token())
        .with_priority(1)
        .mount(&providers_http)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(201)).with_priority(2).mount(&providers_http).await;
    let options = Options {
        procapita: Some(procapita.system_keys(&procapita.host_key_sha256)),
        paraga: Some(paraga.system_keys(&paraga.host_key_sha256)),
        ..Options::default()
    };
    let hub = TestHub::start_with(&providers_http.uri(), &cm_http.uri(), options).await;
    let pnrs = test_pnrs();

    // Twelve decisions, each in its system's own format and transport.
    let mut pairs = Vec::new();
    for (i, cm) in CASE_MANAGEMENT.iter().enumerate() {
        // Each case-management system sends with its own token.
        let cm_token = hub.system_token(cm);
        for (j, (provider_system, org)) in PROVIDERS.iter().enumerate() {
            let id = format!("MX-{i}{j}");
            let pnr = &pnrs[600 + 3 * i + j];
            match *cm {
                "combine" => {
                    let (s, r) = hub.post("combine", decision_xml(&id, pnr, org, None), Some(&cm_token)).await;
                    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
                }
                "treserva" => {
                    let r = hub
                        .http
                        .post(format!("{}/v1/systems/treserva/messages", hub.url))
                        .bearer_auth(&cm_token)
                        .body(treserva_decision(&id, pnr, org))
                        .send()
                        .await
                        .expect("post");
                    assert_eq!(r.status(), StatusCode::OK);
                }
                "lifecare" => {
                    let (s, r) = hub.post("lifecare", lifecare_decision(&id, pnr, org), Some(&cm_token)).await;
                    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
                }
                _ => procapita
                    .drop_file(&format!("beslut-{id}.xml"), &decision_file(&id, pnr, org))
                    .expect("drop a file"),
            }
            let order = hub.order_of(&format!("{cm}:{id}")).await;
            pairs.push((*cm, *provider_system, *org, order));
        }
    }

    // Every order reaches its provider's system over that system's transport.
    for (cm, provider_system, _, order) in &pairs {
        let o = hub.wait_for_order_status(order, "delivered").await;
        assert_eq!(o["provider_system"], *provider_system, "{cm} -> {provider_system}");
        assert_eq!(o["source_system"], *cm);
    }
    let received = providers_http.received_requests().await.expect("recorded");
    for (_, provider_system, _, order) in &pairs {
        let found = match *provider_system {
            "phoniro" => received
                .iter()
                .any(|r| r.url.path() == "/api/orders" && String::from_utf8_lossy(&r.body).contains(order.as_str())),
            "lifecare-mobil" => received.iter().any(|r| {
                r.url.path() == "/lcmh/api/assignments" && String::from_utf8_lossy(&r.body).contains(order.as_str())
            }),
            _ => paraga.files("outbox").iter().any(|f| {
                std::fs::read(paraga.root.join("outbox").join(f))
                    .map(|b| String::from_utf8_lossy(&b).contains(order.as_str()))
                    .unwrap_or(false)
            }),
        };
        assert!(found, "{order} never reached {provider_system}");
    }

    // Every provider system answers in its own way.
    let mut paraga_rows = String::from("Uppdragsid;Status;Orsak;Tidpunkt\r\n");
    for (_, provider_system, org, order) in &pairs {
        match *provider_system {
            "phoniro" => {
                let (s, _) = hub.post("phoniro", phoniro_ack(order, "ACCEPTED"), Some(&hub.provider(org))).await;
                assert_eq!(s, StatusCode::ACCEPTED);
            }
            "lifecare-mobil" => {
                let body =
                    json!({"event": "assignment.accepted", "assignmentId": order, "timestamp": "2026-11-03T07:30:00Z"});
                let (s, _) = hub.post("lifecare-mobil", body.to_string(), Some(&hub.provider(org))).await;
                assert_eq!(s, StatusCode::ACCEPTED);
            }
            _ => paraga_rows.push_str(&format!("{order};Accepterad;;2026-11-03 07:30\r\n")),
        }
    }
    paraga.drop_file("svar.csv", paraga_rows.as_bytes()).expect("drop a file");

    // ...and every answer returns to the system that sent the decision.
    for (cm, provider_system, _, order) in &pairs {
        let trace = eventually(&format!("the answer for {cm} -> {provider_system} is delivered"), || async {
            let t = hub.trace(order).await;
            let ack = t["deliveries"].as_array()?.iter().find(|d| d["message_type"] == "order_ack")?.clone();
            (ack["state"] == "delivered").then_some(t)
        })
        .await;
        let ack = trace["deliveries"]
            .as_array()
            .and_then(|d| d.iter().find(|x| x["message_type"] == "order_ack"))
            .cloned()
            .expect("ack");
        assert_eq!(ack["system"], *cm, "{provider_system}'s answer goes back to {cm}");
        assert_eq!(trace["order"]["status"], "accepted");
    }
    let at_cm = cm_http.received_requests().await.expect("recorded");
    let count = |p: &str, needle: &str| {
        at_cm.iter().filter(|r| r.url.path() == p && String::from_utf8_lossy(&r.body).contains(needle)).count()
    };
    assert_eq!(count("/callback", "<Kvittens"), 3, "Combine gets three Kvittens");
    assert_eq!(count("/treserva", "TaEmotKvittens"), 3, "Treserva gets three SOAP calls");
    assert_eq!(
        count("/lifecare/api/acknowledgements", "\"status\":\"ACCEPTED\""),
        3,
        "Lifecare gets three acknowledgements"
    );
    assert_eq!(
        procapita.files("outbox").iter().filter(|f| f.starts_with("verkstallighet-")).count(),
        3,
        "Procapita gets three files"
    );
}
