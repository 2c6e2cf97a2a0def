//! Treserva over SOAP 1.1: decisions in as SOAP calls answered with SOAP responses or
//! faults carrying the hub's codes; acknowledgements out as SOAP calls whose faults are
//! classified (Server: retry; Client: dead letter); the WSDL.

use axum::http::Method;
use carehub_core::mapping::xml;
use reqwest::StatusCode;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

fn soap_body(text: &str) -> xml::Element {
    let doc = xml::parse(text).unwrap_or_else(|e| panic!("not XML ({e}): {text}"));
    assert_eq!(doc.name, "Envelope", "{text}");
    doc.child("Body").and_then(|b| b.children.first()).cloned().expect("a payload in the Body")
}

fn server_fault() -> ResponseTemplate {
    ResponseTemplate::new(500).set_body_string(
        r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Server</faultcode><faultstring>Databasen är upptagen</faultstring></s:Fault></s:Body></s:Envelope>"#,
    )
}

#[tokio::test]
async fn a_treserva_decision_reaches_phoniro_and_the_ack_returns_as_a_soap_call() {
    let phoniro = MockServer::start().await;
    let treserva = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/orders"))
        .and(body_string_contains("\"externalReference\":\"treserva:TRE-4411\""))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&phoniro)
        .await;
    Mock::given(method("POST"))
        .and(path("/treserva"))
        .and(header("soapaction", "\"urn:carehub:vendor:treserva:1/TaEmotKvittens\""))
        .and(header("authorization", "Basic Y2FyZWh1Yjp0cmVzZXJ2YS10ZXN0LXBhc3N3b3Jk"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<ok/>"))
        .expect(1)
        .mount(&treserva)
        .await;
    let hub = TestHub::start(&phoniro.uri(), &treserva.uri()).await;

    let resp = hub.post_treserva_decision(treserva_decision("TRE-4411", "193601016987", PROVIDER_A)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers()["content-type"].to_str().unwrap_or("").starts_with("text/xml"));
    let answer = soap_body(&resp.text().await.expect("text"));
    assert_eq!(answer.name, "RegistreraBeslutResponse");
    assert_eq!(answer.namespace.as_deref(), Some("urn:carehub:vendor:treserva:1"));
    assert_eq!(answer.child("Status").map(|s| s.text.as_str()), Some("accepted"));
    let order = hub.order_of("treserva:TRE-4411").await;
    assert_eq!(answer.child("OrderId").map(|s| s.text.as_str()), Some(order.as_str()));
    hub.wait_for_order_status(&order, "delivered").await;

    let (status, _) = hub.post("phoniro", phoniro_ack(&order, "ACCEPTED"), Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let requests = eventually("the ack reaches Treserva", || async {
        let r = treserva.received_requests().await.unwrap_or_default();
        (!r.is_empty()).then_some(r)
    })
    .await;
    let call = soap_body(&String::from_utf8_lossy(&requests[0].body));
    assert_eq!(call.name, "TaEmotKvittens");
    let kvittens = call.child("Kvittens").expect("Kvittens");
    assert_eq!(kvittens.child("BeslutId").map(|e| e.text.as_str()), Some("TRE-4411"));
    assert_eq!(kvittens.child("UppdragId").map(|e| e.text.as_str()), Some(order.as_str()));
    assert_eq!(kvittens.child("Verkstalls").map(|e| e.text.as_str()), Some("true"));
    assert!(requests[0].headers["content-type"].to_str().unwrap_or("").starts_with("text/xml"));
}

#[tokio::test]
async fn refusals_are_soap_faults_with_the_hubs_code() {
    let hub = TestApp::start();
    let token = hub.system_token("treserva");
    let cases = [
        (
            treserva_decision("TRE-1", "19360101-6988", PROVIDER_A),
            Some(token.clone()),
            500,
            "Client",
            "INVALID_PERSONAL_IDENTITY_NUMBER",
        ),
        (
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>".to_owned(),
            Some(token.clone()),
            500,
            "Client",
            "MALFORMED_PAYLOAD",
        ),
        (
            treserva_decision("TRE-2", "193601016987", "5599000022"),
            Some(token.clone()),
            500,
            "Client",
            "UNKNOWN_PROVIDER",
        ),
        (treserva_decision("TRE-3", "193601016987", PROVIDER_A), None, 401, "Client", "UNAUTHENTICATED"),
    ];
    for (body, token, status, faultcode, code) in cases {
        let (got, _, answer) =
            hub.send(Method::POST, "/v1/systems/treserva/messages", token.as_deref(), &[], body).await;
        assert_eq!(got.as_u16(), status, "{code}");
        let fault = soap_body(&String::from_utf8_lossy(&answer));
        assert_eq!(fault.name, "Fault");
        assert_eq!(fault.child("faultcode").map(|c| c.text.as_str()), Some(format!("soap:{faultcode}").as_str()));
        let error = fault.child("detail").and_then(|d| d.child("error")).expect("detail/error");
        assert_eq!(error.child("code").map(|c| c.text.as_str()), Some(code), "{code}");
        if code != "UNAUTHENTICATED" {
            assert!(error.child("message_id").is_some(), "{code}: the refusal is logged and named");
        }
    }
}

#[tokio::test]
async fn treserva_server_faults_are_retried_and_client_faults_dead_letter() {
    let phoniro = MockServer::start().await;
    let treserva = MockServer::start().await;
    Mock::given(method("POST")).and(path("/api/orders")).respond_with(ResponseTemplate::new(201)).mount(&phoniro).await;
    // The acknowledgement meets two Server faults, then gets through.
    Mock::given(method("POST"))
        .and(path("/treserva"))
        .and(body_string_contains("TaEmotKvittens"))
        .respond_with(server_fault())
        .up_to_n_times(2)
        .with_priority(1)
        .expect(2)
        .mount(&treserva)
        .await;
    Mock::given(method("POST"))
        .and(path("/treserva"))
        .and(body_string_contains("TaEmotKvittens"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(2)
        .expect(1)
        .mount(&treserva)
        .await;
    // The plan notice meets a Client fault: Treserva will never take it.
    Mock::given(method("POST"))
        .and(path("/treserva"))
        .and(body_string_contains("TaEmotGenomforandeplan"))
        .respond_with(ResponseTemplate::new(500).set_body_string(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>Okänt uppdrag</faultstring></s:Fault></s:Body></s:Envelope>"#,
        ))
        .expect(1)
        .mount(&treserva)
        .await;
    let hub = TestHub::start(&phoniro.uri(), &treserva.uri()).await;
    let resp = hub
        .http
        .post(format!("{}/v1/systems/treserva/messages", hub.url))
        .bearer_auth(hub.system_token("treserva"))
        .body(treserva_decision("TRE-9", "193601016987", PROVIDER_A))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status(), StatusCode::OK);
    let order = hub.order_of("treserva:TRE-9").await;
    hub.wait_for_order_status(&order, "delivered").await;
    let p = hub.provider(PROVIDER_A);
    hub.post("phoniro", phoniro_ack(&order, "ACCEPTED"), Some(&p)).await;
    hub.post("phoniro", phoniro_plan(&order, "2026-11-10"), Some(&p)).await;

    let trace = eventually("both deliveries to Treserva end", || async {
        let t = hub.trace(&order).await;
        let d = t["deliveries"].as_array()?;
        let done = d.len() == 3 && d.iter().all(|x| x["state"] != "pending");
        done.then_some(t)
    })
    .await;
    let deliveries = trace["deliveries"].as_array().expect("deliveries");
    let ack = deliveries.iter().find(|d| d["message_type"] == "order_ack").expect("ack");
    assert_eq!((ack["state"].as_str(), ack["attempts"].as_u64()), (Some("delivered"), Some(3)));
    let plan = deliveries.iter().find(|d| d["message_type"] == "plan_notice").expect("plan");
    assert_eq!((plan["state"].as_str(), plan["attempts"].as_u64()), (Some("dead"), Some(1)));
    assert!(plan["last_error"].as_str().unwrap_or("").contains("SOAP Client fault: Okänt uppdrag"), "{plan}");
    let retried = trace["steps"].as_array().expect("steps").iter().filter(|s| s["status"] == "retrying").count();
    assert_eq!(retried, 2);
}

#[tokio::test]
async fn the_wsdl_describes_the_endpoint() {
    let hub = TestApp::start();
    let (status, _, body) = hub.send(Method::GET, "/v1/systems/treserva/messages?wsdl", None, &[], "").await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).expect("UTF-8");
    let wsdl = xml::parse(&text).expect("the WSDL is XML");
    assert_eq!(wsdl.name, "definitions");
    assert!(text.contains("<wsdl:operation name=\"RegistreraBeslut\">"), "{text}");
    assert!(text.contains(&format!("location=\"{}/v1/systems/treserva/messages\"", hub.url)), "{text}");
    // The request's schema comes from mappings/treserva/decision.in.toml, not xsd:any.
    assert!(!text.contains("xsd:any"), "{text}");
    for declared in [
        "<xsd:element name=\"Personnr\" type=\"xsd:string\"/>",
        "<xsd:element name=\"From\" type=\"xsd:date\"/>",
        "<xsd:element name=\"Tom\" minOccurs=\"0\" type=\"xsd:date\"/>",
        "<xsd:element name=\"Insats\" maxOccurs=\"unbounded\">",
        "<xsd:enumeration value=\"HT-SERV\"/>",
        "<xsd:element name=\"Tid\" type=\"xsd:integer\"/>",
        // The fault: its detail's schema, message, portType fault and binding fault.
        "<xsd:enumeration value=\"INVALID_PERSONAL_IDENTITY_NUMBER\"/>",
        "<wsdl:message name=\"Fault\"><wsdl:part name=\"fault\" element=\"hub:error\"/></wsdl:message>",
        "<wsdl:fault name=\"Fault\" message=\"tns:Fault\"/>",
        "<wsdl:fault name=\"Fault\"><soap:fault name=\"Fault\" use=\"literal\"/></wsdl:fault>",
    ] {
        assert!(text.contains(declared), "the WSDL lacks {declared}: {text}");
    }
    let (status, _, _) = hub.send(Method::GET, "/v1/systems/combine/messages?wsdl", None, &[], "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
