//! Helpers for a decision's life over the real transports (SPEC §4.4): the vendors played on
//! loopback ([`Vendors`]), a decision and its later versions sent the way each
//! case-management system sends them (Combine and Lifecare over HTTP, Treserva as SOAP
//! calls, Procapita as ISO-8859-1 files in its SFTP inbox) in the formats of
//! `mappings/<cm>/decision_change.in.toml`, and readers for what reaches the other side
//! (JSON bodies, ParaGå's Windows-1252 CSV files, XML documents and SOAP calls).

use std::collections::HashMap;

use carehub_core::mapping::{text, xml};
use chrono::NaiveDate;
use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::sshd::{LocalSshd, Sshd};
use super::*;

/// The case-management systems, as the hub names them.
pub const CASE_MANAGEMENT: [&str; 4] = ["combine", "treserva", "procapita", "lifecare"];
/// The provider systems, each with the test provider routed to it.
pub const PROVIDERS: [(&str, &str); 3] =
    [("phoniro", PROVIDER_A), ("lifecare-mobil", PROVIDER_C), ("paraga", PROVIDER_D)];

/// Every vendor on loopback and a hub configured for all seven systems: one wiremock for
/// the case-management systems that listen over HTTP (Combine's callback, Treserva's SOAP
/// service, Lifecare's API), one for the provider systems that do (Phoniro, Lifecare
/// Mobil), and a real sshd each for Procapita and ParaGå.
pub struct Vendors {
    pub cm_http: MockServer,
    pub providers_http: MockServer,
    pub procapita: LocalSshd,
    pub paraga: LocalSshd,
    pub hub: TestHub,
}

fn token() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"access_token": "life", "expires_in": 3600}))
}

impl Vendors {
    /// Starts the vendors (each answering every call with success, and an OAuth token where
    /// one is asked for) and the hub at the default test instant.
    pub async fn start() -> Vendors {
        let (cm_http, providers_http) = (MockServer::start().await, MockServer::start().await);
        for (server, token_path, ok) in
            [(&cm_http, "/lifecare/oauth/token", 200), (&providers_http, "/lcmh/oauth/token", 201)]
        {
            Mock::given(method("POST"))
                .and(path(token_path))
                .respond_with(token())
                .with_priority(1)
                .mount(server)
                .await;
            Mock::given(method("POST")).respond_with(ResponseTemplate::new(ok)).with_priority(2).mount(server).await;
        }
        let (procapita, paraga) = (Sshd::start(), Sshd::start());
        let options = Options {
            procapita: Some(procapita.system_keys(&procapita.host_key_sha256)),
            paraga: Some(paraga.system_keys(&paraga.host_key_sha256)),
            ..Options::default()
        };
        let hub = TestHub::start_with(&providers_http.uri(), &cm_http.uri(), options).await;
        Vendors { cm_http, providers_http, procapita, paraga, hub }
    }

    /// Sends decision `id` for client `pnr` at provider `org` from `cm`, in its format and
    /// over its transport, and returns the hub's id of its order.
    pub async fn send_decision(&self, cm: &str, id: &str, pnr: &str, org: &str) -> String {
        let body = match cm {
            "combine" => decision_xml(id, pnr, org, None).into_bytes(),
            "treserva" => treserva_decision(id, pnr, org).into_bytes(),
            "lifecare" => lifecare_decision(id, pnr, org).into_bytes(),
            _ => decision_file(id, pnr, org),
        };
        self.send(cm, &format!("beslut-{id}.xml"), body, "RegistreraBeslut").await;
        self.hub.order_of(&format!("{cm}:{id}")).await
    }

    /// Sends version `version` of decision `id` from `cm`: `change` in its format, over its
    /// transport. Over HTTP the hub must take it; a Procapita file is left in the inbox.
    pub async fn send_change(&self, cm: &str, id: &str, version: u32, change: &Change<'_>) {
        let body = decision_change(cm, id, version, change);
        self.send(cm, &change_file(id, version), body, "RegistreraBeslutsandring").await;
    }

    /// Sends `body` from case-management system `cm`: a POST to its endpoint (a SOAP call
    /// `operation` for Treserva) that the hub must accept, or file `name` in Procapita's
    /// inbox.
    async fn send(&self, cm: &str, name: &str, body: Vec<u8>, operation: &str) {
        match self.post_as(cm, body.clone(), operation).await {
            None => self.procapita.drop_file(name, &body).expect("drop a file"),
            Some((status, text)) if cm == "treserva" => {
                assert_eq!(status, StatusCode::OK, "{text}");
                assert_eq!(xml_text(&soap_payload(&text), "Status"), Some("accepted"), "{text}");
            }
            Some((status, text)) => assert_eq!(status, StatusCode::ACCEPTED, "{text}"),
        }
    }

    /// Posts `body` to `cm`'s endpoint with its token (Treserva's as the SOAP call
    /// `operation`) and returns the answer; `None` for Procapita, which sends files.
    pub async fn post_as(&self, cm: &str, body: Vec<u8>, operation: &str) -> Option<(StatusCode, String)> {
        if cm == "procapita" {
            return None;
        }
        let mut request = self
            .hub
            .http
            .post(format!("{}/v1/systems/{cm}/messages", self.hub.url))
            .bearer_auth(self.hub.system_token(cm))
            .body(body);
        if cm == "treserva" {
            request = request
                .header("content-type", "text/xml; charset=utf-8")
                .header("soapaction", format!("\"urn:carehub:vendor:treserva:1/{operation}\""));
        }
        let response = request.send().await.expect("post");
        let status = response.status();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// Waits until Procapita's file `name` was taken (archived); a refused file fails the
    /// test with the hub's reason.
    pub async fn wait_taken_by_procapita(&self, name: &str) {
        let sshd = &self.procapita;
        eventually(&format!("Procapita's {name} is taken"), || async {
            let refused = sshd.files("error").into_iter().find(|f| f.ends_with(&format!("-{name}.reason.txt")));
            if let Some(reason) = refused {
                let text = std::fs::read_to_string(sshd.root.join("error").join(reason)).unwrap_or_default();
                panic!("Procapita's {name} was refused: {text}");
            }
            sshd.files("archive").iter().any(|f| f.ends_with(&format!("-{name}"))).then_some(())
        })
        .await;
    }

    /// Waits until the delivery with `key` (e.g. `O-…:order_change:1`) of `order`'s trace
    /// is delivered, and returns that delivery.
    pub async fn wait_delivered(&self, order: &str, key: &str) -> Value {
        eventually(&format!("{key} is delivered"), || async {
            let trace = self.hub.trace(order).await;
            let d = trace["deliveries"].as_array()?.iter().find(|d| d["idempotency_key"] == key)?.clone();
            assert_ne!(d["state"], "dead", "{d}");
            (d["state"] == "delivered").then_some(d)
        })
        .await
    }

    /// The JSON bodies the provider systems received at `path` whose `id_key` (e.g.
    /// `orderId`) is `order`.
    pub async fn provider_json(&self, path: &str, id_key: &str, order: &str) -> Vec<Value> {
        json_bodies(&self.providers_http, path).await.into_iter().filter(|b| b[id_key] == order).collect()
    }

    /// The rows for `order` in ParaGå's daily file `<stem>-YYYYMMDD.csv` of the hub's day.
    pub fn paraga_rows(&self, stem: &str, order: &str) -> Vec<HashMap<String, String>> {
        let name = format!("{stem}-{}.csv", self.hub.clock.today().format("%Y%m%d"));
        let bytes = std::fs::read(self.paraga.root.join("outbox").join(&name))
            .unwrap_or_else(|e| panic!("ParaGå's {name} cannot be read: {e}"));
        csv_rows(&bytes).into_iter().filter(|r| r.get("Uppdragsid").map(String::as_str) == Some(order)).collect()
    }
}

/// The name of the file Procapita leaves for a version of a decision.
pub fn change_file(id: &str, version: u32) -> String {
    format!("andring-{id}-v{version}.xml")
}

/// What a later version of a decision changes, as these tests send it.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// The decision's one service (as its first version had it) gets `minutes` a month
    /// from `from`.
    Minutes { from: NaiveDate, minutes: u32 },
    /// Help ends after `on`: the client moves into residential care.
    Ended { on: NaiveDate },
    /// The client chooses provider `provider` from `from` (LOV).
    NewProvider { provider: &'a str, from: NaiveDate },
}

impl Change<'_> {
    /// The day the version applies from.
    pub fn effective_from(&self) -> NaiveDate {
        match *self {
            Change::Minutes { from, .. } | Change::NewProvider { from, .. } => from,
            Change::Ended { on } => on,
        }
    }
}

/// Version `version` of decision `id` in case-management system `cm`'s format (see
/// `mappings/<cm>/decision_change.in.toml`): Combine XML, a Treserva SOAP call
/// `RegistreraBeslutsandring`, a Procapita file in ISO-8859-1, or a Lifecare webhook.
pub fn decision_change(cm: &str, id: &str, version: u32, change: &Change<'_>) -> Vec<u8> {
    match cm {
        "combine" => combine_change(id, version, change).into_bytes(),
        "treserva" => treserva_change(id, version, change).into_bytes(),
        "lifecare" => lifecare_change(id, version, change).into_bytes(),
        _ => latin1(&procapita_change(id, version, change)),
    }
}

fn combine_change(id: &str, version: u32, change: &Change<'_>) -> String {
    let (kind, inner) = match *change {
        Change::Minutes { minutes, .. } => {
            ("Insatser", format!(r#"<Insats kod="SERV"><MinuterPerManad>{minutes}</MinuterPerManad></Insats>"#))
        }
        Change::Ended { on } => ("Avslut", format!(r#"<SistaDag>{on}</SistaDag><Avslutsorsak kod="SABO"/>"#)),
        Change::NewProvider { provider, from } => {
            ("Utforarbyte", format!(r#"<Utforare orgnr="{provider}"/><ForstaDag>{from}</ForstaDag>"#))
        }
    };
    format!(
        r#"<Beslutsandring xmlns="urn:carehub:vendor:combine:1"><BeslutsId>{id}</BeslutsId><Version>{version}</Version><GallerFrom>{}</GallerFrom><Andring typ="{kind}">{inner}</Andring></Beslutsandring>"#,
        change.effective_from()
    )
}

fn treserva_change(id: &str, version: u32, change: &Change<'_>) -> String {
    let (kind, inner) = match *change {
        Change::Minutes { minutes, .. } => (
            "INSATSER",
            format!("<tre:Insatser><tre:Insats><tre:Kod>HT-SERV</tre:Kod><tre:Tid>{minutes}</tre:Tid></tre:Insats></tre:Insatser>"),
        ),
        Change::Ended { on } => (
            "AVSLUT",
            format!("<tre:Avslut><tre:SistaDag>{on}</tre:SistaDag><tre:Orsak>SARSKILT_BOENDE</tre:Orsak></tre:Avslut>"),
        ),
        Change::NewProvider { provider, from } => (
            "UTFORARBYTE",
            format!("<tre:Utforarbyte><tre:Utforare><tre:Orgnr>{provider}</tre:Orgnr></tre:Utforare><tre:From>{from}</tre:From></tre:Utforarbyte>"),
        ),
    };
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:tre="urn:carehub:vendor:treserva:1">
  <soapenv:Body>
    <tre:RegistreraBeslutsandring><tre:Beslutsandring>
      <tre:BeslutId>{id}</tre:BeslutId><tre:Version>{version}</tre:Version><tre:GallerFrom>{}</tre:GallerFrom>
      <tre:Andringstyp>{kind}</tre:Andringstyp>{inner}
    </tre:Beslutsandring></tre:RegistreraBeslutsandring>
  </soapenv:Body>
</soapenv:Envelope>"#,
        change.effective_from()
    )
}

fn procapita_change(id: &str, version: u32, change: &Change<'_>) -> String {
    let day = |d: NaiveDate| d.format("%Y%m%d").to_string();
    let (kind, inner) = match *change {
        Change::Minutes { minutes, .. } => {
            ("Insatser", format!(r#"<Insats typ="Personlig omvårdnad" minuterPerMånad="{minutes}"/>"#))
        }
        Change::Ended { on } => {
            ("Avslut", format!(r#"<Avslut sistaDag="{}" orsak="Flytt till särskilt boende"/>"#, day(on)))
        }
        Change::NewProvider { provider, from } => (
            "Byte av utförare",
            format!(
                r#"<Utförare från="{}"><Organisationsnummer>{provider}</Organisationsnummer></Utförare>"#,
                day(from)
            ),
        ),
    };
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1"?>
<Beslutsändring xmlns="urn:carehub:vendor:procapita:1">
  <Beslutsnummer>{id}</Beslutsnummer><Version>{version}</Version><Gäller från="{}"/>
  <Ändring typ="{kind}">{inner}</Ändring>
</Beslutsändring>
"#,
        day(change.effective_from())
    )
}

fn lifecare_change(id: &str, version: u32, change: &Change<'_>) -> String {
    let mut decision = json!({"decisionId": id, "version": version, "effectiveFrom": change.effective_from()});
    match *change {
        Change::Minutes { minutes, .. } => {
            decision["changeType"] = json!("INTERVENTIONS_CHANGED");
            decision["interventions"] = json!([{"code": "SERVICE", "minutesPerMonth": minutes}]);
        }
        Change::Ended { on } => {
            decision["changeType"] = json!("TERMINATED");
            decision["termination"] = json!({"lastDay": on, "reason": "MOVED_TO_RESIDENTIAL_CARE"});
        }
        Change::NewProvider { provider, from } => {
            decision["changeType"] = json!("PROVIDER_CHANGED");
            decision["provider"] = json!({"orgNo": provider, "from": from});
        }
    }
    json!({"eventType": "DecisionChanged", "eventId": format!("evt-{id}-{version}"), "decision": decision}).to_string()
}

/// The JSON bodies `server` received at `path`.
pub async fn json_bodies(server: &MockServer, path: &str) -> Vec<Value> {
    let requests = server.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .filter(|r| r.url.path() == path)
        .map(|r| serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path} got JSON that does not read: {e}")))
        .collect()
}

/// The payloads of the SOAP calls `server` received at `path`, by operation (the Body's
/// element), with the `SOAPAction` each came with.
pub async fn soap_calls(server: &MockServer, path: &str) -> Vec<(String, xml::Element)> {
    let requests = server.received_requests().await.unwrap_or_default();
    requests
        .iter()
        .filter(|r| r.url.path() == path)
        .map(|r| {
            let action = r.headers.get("soapaction").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            (action, soap_payload(&String::from_utf8_lossy(&r.body)))
        })
        .collect()
}

/// The payload of a SOAP envelope: the first element in its Body.
pub fn soap_payload(text: &str) -> xml::Element {
    let doc = xml::parse(text).unwrap_or_else(|e| panic!("not XML ({e}): {text}"));
    assert_eq!(doc.name, "Envelope", "{text}");
    doc.child("Body").and_then(|b| b.children.first()).cloned().expect("a payload in the Body")
}

/// The text of the element at `path` (child names split by `/`) under `el`.
pub fn xml_text<'a>(el: &'a xml::Element, path: &str) -> Option<&'a str> {
    path.split('/').try_fold(el, |e, name| e.child(name)).map(|e| e.text.as_str())
}

/// A CSV file as ParaGå's files are (`;`, Windows-1252, CRLF, a header row): each row by
/// its header's names.
pub fn csv_rows(bytes: &[u8]) -> Vec<HashMap<String, String>> {
    let enc = text::encoding("windows-1252").expect("known");
    let text = text::decode(bytes, enc).expect("Windows-1252 text");
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let header: Vec<&str> = lines.next().map(|h| h.split(';').collect()).unwrap_or_default();
    lines.map(|l| header.iter().map(|h| h.to_string()).zip(l.split(';').map(str::to_owned)).collect()).collect()
}

/// Text in Windows-1252, as ParaGå writes it.
pub fn cp1252(text: &str) -> Vec<u8> {
    let enc = text::encoding("windows-1252").expect("known");
    text::encode(text, enc).expect("encodable")
}
