//! Case-management systems for the conformance run to meet: Combine (XML over REST),
//! Treserva (SOAP 1.1 both ways) and Lifecare (JSON over REST, OAuth 2.0 toward it), each
//! as its profile in `mappings/<vendor>/` asks, and broken on purpose in one way each.
//!
//! Why one system with a [`Mistake`] and not a module per vendor: the three differ only in
//! how a decision, a change and an answer are written; what a conforming system does is
//! the same (send decisions and their changes, send again until the hub's answer is 2xx,
//! take the hub's calls once per idempotency key, answer a refusal as its profile says).
//! A mistake touches one message in one situation, so the case named for it fails and the
//! rest of the catalogue still passes: that is what the tests hold the catalogues to.
//!
//! What the system is made to do comes from the catalogue's `trigger` steps, posted by the
//! conformance run to `/harness` (`{"case": ID, "do": TEXT}`): the text's first words pick
//! the action ([`Action`]), the case id names the decision, so every case has its own.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The client every decision is for: the profiles' sample client (a Skatteverket test
/// number).
pub const CLIENT: &str = "193601016987";
/// The provider every decision chooses: the mock hub's default provider.
pub const PROVIDER: &str = "5599000014";
/// The provider a switch moves a decision to: the mock hub's second provider.
pub const NEW_PROVIDER: &str = "5560360793";

/// Which case-management vendor the system plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Combine,
    Treserva,
    Lifecare,
}

impl Vendor {
    /// The vendor's name, as in `--vendor`.
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Combine => "combine",
            Vendor::Treserva => "treserva",
            Vendor::Lifecare => "lifecare",
        }
    }
}

/// What a broken system gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mistake {
    /// Nothing: the system does what its profile asks.
    None,
    /// A decision's last day written `31.10.2027` instead of `2027-10-31`.
    DateFormat,
    /// A decision's change without its version, which the profile requires.
    MissingVersion,
    /// A client's number in the 10-digit form written with its check digit off by one
    /// (a system that shortens the 12-digit number and computes the digit again, wrongly).
    CheckDigit,
    /// A refusal answered as a SOAP fault with HTTP 200 instead of 500 (Treserva), so the
    /// hub takes it as delivered.
    FaultWith200,
}

/// What a trigger asks, by its text's first words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Decision,
    DecisionWithLastDay,
    DecisionTwice,
    DecisionTenDigits,
    WrongRole,
    Oversize,
    Latin1,
    ChangeServices,
    LastDay,
    Switch,
    End,
    Pause,
    RefuseNext,
}

const ACTIONS: &[(&str, Action)] = &[
    ("Send a decision with a last day", Action::DecisionWithLastDay),
    ("Send a decision twice", Action::DecisionTwice),
    ("Send a decision with the client's number in the 10-digit form", Action::DecisionTenDigits),
    ("Send a decision with a token of the wrong role", Action::WrongRole),
    ("Send a decision whose body is larger", Action::Oversize),
    ("Send a decision encoded in ISO-8859-1", Action::Latin1),
    ("Send a decision", Action::Decision),
    ("Change the services of your last decision", Action::ChangeServices),
    ("Move the last day of your last decision", Action::LastDay),
    ("End your last decision", Action::End),
    ("Switch the provider of your last decision", Action::Switch),
    ("Pause your last decision", Action::Pause),
    ("Refuse the next message", Action::RefuseNext),
];

/// The mock hub as the system reaches it.
#[derive(Debug, Clone)]
struct Hub {
    /// `POST` here: `{url}/v1/systems/{system}/messages`.
    messages: String,
    /// The mock's base URL (for `/mock/clock` and `/mock/token`).
    base: String,
    token: String,
}

/// A case-management system on 127.0.0.1.
pub struct CaseManagementSystem {
    vendor: Vendor,
    mistake: Mistake,
    hub: Mutex<Option<Hub>>,
    /// The idempotency keys of what the hub delivered, each taken once.
    keys: Mutex<BTreeSet<String>>,
    /// The hub's calls taken, by path or SOAP operation, in order.
    taken: Mutex<Vec<String>>,
    refuse_next: AtomicBool,
    /// The last decision sent: its id and version.
    last: Mutex<Option<(String, u32)>>,
    seq: AtomicU64,
    /// What a trigger asked that the system could not do, for the test to show.
    errors: Mutex<Vec<String>>,
    http: reqwest::Client,
}

/// A running system: where it takes the hub's calls, and its harness.
#[derive(Debug, Clone)]
pub struct Served {
    /// Its base URL (`http://127.0.0.1:P`).
    pub url: String,
    /// The mock's `[system]` keys for it (TOML).
    pub system: String,
    /// Where the conformance run posts its triggers.
    pub trigger: String,
}

impl CaseManagementSystem {
    pub fn new(vendor: Vendor, mistake: Mistake) -> Arc<CaseManagementSystem> {
        Arc::new(CaseManagementSystem {
            vendor,
            mistake,
            hub: Mutex::new(None),
            keys: Mutex::default(),
            taken: Mutex::default(),
            refuse_next: AtomicBool::new(false),
            last: Mutex::new(None),
            seq: AtomicU64::new(0),
            errors: Mutex::default(),
            http: reqwest::Client::new(),
        })
    }

    /// Serves the system on a fresh loopback port for as long as the runtime runs.
    pub async fn serve(self: &Arc<Self>) -> anyhow::Result<Served> {
        let router = Router::new()
            .route("/harness", post(harness))
            .route("/carehub/callback", post(combine))
            .route("/carehub/callback/{kind}", post(combine))
            .route("/soap", post(treserva))
            .route("/oauth/token", post(lifecare_token))
            .route("/api/v1/{kind}", post(lifecare))
            .with_state(self.clone());
        let url = crate::demo::vendors::serve(router).await?;
        let system = match self.vendor {
            Vendor::Combine => format!("callback_url = \"{url}/carehub/callback\"\n"),
            Vendor::Treserva => format!("endpoint_url = \"{url}/soap\"\n"),
            Vendor::Lifecare => format!(
                "base_url = \"{url}/api/v1\"\ntoken_url = \"{url}/oauth/token\"\nclient_id = \"carehub\"\n\
                 client_secret = \"conformance-only-secret\"\n"
            ),
        };
        Ok(Served { trigger: format!("{url}/harness"), url, system })
    }

    /// Tells the system where the mock hub is and its token.
    pub fn connect(&self, base: &str, system: &str, token: &str) {
        *self.hub.lock().unwrap_or_else(PoisonError::into_inner) = Some(Hub {
            messages: format!("{base}/v1/systems/{system}/messages"),
            base: base.to_owned(),
            token: token.to_owned(),
        });
    }

    /// The hub's calls taken so far (a path's last part, or a SOAP operation).
    pub fn taken(&self) -> Vec<String> {
        self.taken.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// What triggers asked that the system could not do (a hub it could not reach, a
    /// change before any decision); empty when it did everything.
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn hub(&self) -> anyhow::Result<Hub> {
        self.hub.lock().unwrap_or_else(PoisonError::into_inner).clone().context("not connected to a hub")
    }

    /// Takes one of the hub's calls: once per idempotency key (a repeat is answered 2xx
    /// and not taken again). False when the system was told to refuse it.
    fn take(&self, headers: &HeaderMap, what: &str) -> bool {
        if self.refuse_next.swap(false, Ordering::SeqCst) {
            return false;
        }
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        if self.keys.lock().unwrap_or_else(PoisonError::into_inner).insert(key) {
            self.taken.lock().unwrap_or_else(PoisonError::into_inner).push(what.to_owned());
        }
        true
    }

    /// The mock's today, so decisions are valid from the day the case set.
    async fn today(&self, hub: &Hub) -> anyhow::Result<String> {
        let clock: Value = self.http.get(format!("{}/mock/clock", hub.base)).send().await?.json().await?;
        clock["today"].as_str().map(str::to_owned).context("the mock's clock has no today")
    }

    /// Posts a message to the hub until it is taken (2xx) or refused for good (4xx, a SOAP
    /// Client fault): a 5xx, a Server fault or a lost connection is sent again, as every
    /// profile asks. The last status.
    async fn post(&self, hub: &Hub, token: &str, body: Vec<u8>) -> anyhow::Result<u16> {
        let (content_type, action) = match self.vendor {
            Vendor::Combine => ("application/xml", None),
            Vendor::Treserva => ("text/xml; charset=utf-8", Some("urn:carehub:vendor:treserva:1/Registrera")),
            Vendor::Lifecare => ("application/json", None),
        };
        let mut last = 0;
        for _ in 0..40 {
            let mut request = self
                .http
                .post(&hub.messages)
                .bearer_auth(token)
                .header("content-type", content_type)
                .body(body.clone());
            if let Some(a) = action {
                request = request.header("soapaction", a);
            }
            match request.send().await {
                Ok(answer) => {
                    last = answer.status().as_u16();
                    let text = answer.text().await.unwrap_or_default();
                    let server_fault = text.contains("faultcode>soap:Server") || text.contains(":Server</faultcode>");
                    if (200..300).contains(&last) || (last < 500 && last != 408 && last != 429) {
                        return Ok(last);
                    }
                    if last == 500 && self.vendor == Vendor::Treserva && !server_fault {
                        return Ok(last);
                    }
                }
                Err(_) => last = 0,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(last)
    }

    /// Does what a trigger asks.
    async fn act(&self, case: &str, action: Action) -> anyhow::Result<()> {
        let hub = self.hub()?;
        match action {
            Action::RefuseNext => {
                self.refuse_next.store(true, Ordering::SeqCst);
                return Ok(());
            }
            Action::ChangeServices | Action::LastDay | Action::End | Action::Pause | Action::Switch => {
                let (id, version) =
                    self.last.lock().unwrap_or_else(PoisonError::into_inner).clone().context("no decision sent yet")?;
                let today = self.today(&hub).await?;
                let body = self.change(&id, version + 1, &today, action);
                *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((id, version + 1));
                self.post(&hub, &hub.token, body.into_bytes()).await?;
                return Ok(());
            }
            _ => {}
        }
        let n = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let id = format!("{case}-{n}");
        let today = self.today(&hub).await?;
        let last_day = (action == Action::DecisionWithLastDay).then(|| {
            let to = chrono::NaiveDate::parse_from_str(&today, "%Y-%m-%d")
                .map(|d| d + chrono::Duration::days(364))
                .unwrap_or_default();
            if self.mistake == Mistake::DateFormat {
                to.format("%d.%m.%Y").to_string()
            } else {
                to.to_string()
            }
        });
        let officer = if action == Action::Latin1 { "Åsa Öberg" } else { "hl-117" };
        let client = match (action, self.mistake) {
            (Action::DecisionTenDigits, Mistake::CheckDigit) => "360101-6988",
            (Action::DecisionTenDigits, _) => "360101-6987",
            _ => CLIENT,
        };
        let text = self.decision(&id, client, &today, last_day.as_deref(), officer);
        let mut body = if action == Action::Latin1 { latin1(&text) } else { text.into_bytes() };
        if action == Action::Oversize {
            body = self.padded(body);
        }
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((id, 0));
        match action {
            Action::DecisionTwice => {
                self.post(&hub, &hub.token, body.clone()).await?;
                self.post(&hub, &hub.token, body).await?;
            }
            Action::WrongRole => {
                let answer: Value =
                    self.http.get(format!("{}/mock/token?role=auditor", hub.base)).send().await?.json().await?;
                let wrong = answer["token"].as_str().context("the mock issued no token")?.to_owned();
                self.post(&hub, &wrong, body.clone()).await?;
                self.post(&hub, &hub.token, body).await?;
            }
            _ => {
                self.post(&hub, &hub.token, body).await?;
            }
        }
        Ok(())
    }

    /// A decision in the vendor's format.
    fn decision(&self, id: &str, client: &str, from: &str, to: Option<&str>, officer: &str) -> String {
        match self.vendor {
            Vendor::Combine => {
                let to = to.map(|t| format!("<GiltigTom>{t}</GiltigTom>")).unwrap_or_default();
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Beslut xmlns=\"urn:carehub:vendor:combine:1\">\
                     <BeslutsId>{id}</BeslutsId><Personnummer>{client}</Personnummer>\
                     <Handlaggare>{officer}</Handlaggare><Utforare orgnr=\"{PROVIDER}\"/>\
                     <GiltigFrom>{from}</GiltigFrom>{to}<Beslutstidpunkt>{from}T09:00:00+01:00</Beslutstidpunkt>\
                     <Insats kod=\"SERV\" kategori=\"Service\"><MinuterPerManad>480</MinuterPerManad></Insats>\
                     <Insats kod=\"PO\" kategori=\"Personlig omvardnad\"><MinuterPerManad>1800</MinuterPerManad></Insats>\
                     </Beslut>"
                )
            }
            Vendor::Treserva => {
                let to = to.map(|t| format!("<tre:Tom>{t}</tre:Tom>")).unwrap_or_default();
                soap(&format!(
                    "<tre:RegistreraBeslut><tre:Beslut><tre:Id>{id}</tre:Id>\
                     <tre:Klient><tre:Personnr>{client}</tre:Personnr></tre:Klient><tre:Handlaggare>{officer}</tre:Handlaggare>\
                     <tre:Utforare><tre:Orgnr>{PROVIDER}</tre:Orgnr></tre:Utforare>\
                     <tre:Period><tre:From>{from}</tre:From>{to}</tre:Period>\
                     <tre:Beslutsdatum>{from}T09:00:00+01:00</tre:Beslutsdatum>\
                     <tre:Insatser><tre:Insats><tre:Kod>HT-SERV</tre:Kod><tre:Tid>480</tre:Tid></tre:Insats>\
                     <tre:Insats><tre:Kod>HT-PO</tre:Kod><tre:Tid>1800</tre:Tid></tre:Insats></tre:Insatser>\
                     </tre:Beslut></tre:RegistreraBeslut>"
                ))
            }
            Vendor::Lifecare => {
                let mut decision = json!({
                    "decisionId": id, "personalNumber": client, "caseWorker": officer,
                    "provider": {"orgNo": PROVIDER}, "validFrom": from, "decidedAt": format!("{from}T09:00:00+01:00"),
                    "interventions": [{"code": "SERVICE", "minutesPerMonth": 480}, {"code": "PERSONAL_CARE", "minutesPerMonth": 1800}],
                });
                if let Some(t) = to {
                    decision["validTo"] = json!(t);
                }
                json!({"eventType": "DecisionRegistered", "eventId": format!("evt-{id}"), "decision": decision})
                    .to_string()
            }
        }
    }

    /// A change of decision `id` in the vendor's format, from `from`.
    fn change(&self, id: &str, version: u32, from: &str, action: Action) -> String {
        let day = |days: i64| {
            chrono::NaiveDate::parse_from_str(from, "%Y-%m-%d")
                .map(|d| (d + chrono::Duration::days(days)).to_string())
                .unwrap_or_default()
        };
        let (last, resume, new_end) = (day(14), day(7), day(180));
        let with_version = self.mistake != Mistake::MissingVersion;
        match self.vendor {
            Vendor::Combine => {
                let body = match action {
                    Action::ChangeServices => "<Andring typ=\"Insatser\"><Insats kod=\"SERV\"><MinuterPerManad>480</MinuterPerManad></Insats>\
                         <Insats kod=\"PO\"><MinuterPerManad>2400</MinuterPerManad></Insats></Andring>"
                        .to_owned(),
                    Action::LastDay => format!("<Andring typ=\"Slutdatum\"><GiltigTom>{new_end}</GiltigTom></Andring>"),
                    Action::Switch => format!(
                        "<Andring typ=\"Utforarbyte\"><Utforare orgnr=\"{NEW_PROVIDER}\"/><ForstaDag>{resume}</ForstaDag></Andring>"
                    ),
                    Action::End => {
                        format!("<Andring typ=\"Avslut\"><SistaDag>{last}</SistaDag><Avslutsorsak kod=\"SABO\"/></Andring>")
                    }
                    _ => format!(
                        "<Andring typ=\"Uppehall\"><UppehallFrom>{from}</UppehallFrom><UppehallTom>{resume}</UppehallTom>\
                         <Uppehallsorsak kod=\"SJUKHUS\"/></Andring>"
                    ),
                };
                let v = if with_version { format!("<Version>{version}</Version>") } else { String::new() };
                format!(
                    "<Beslutsandring xmlns=\"urn:carehub:vendor:combine:1\"><BeslutsId>{id}</BeslutsId>{v}\
                     <GallerFrom>{from}</GallerFrom><Beslutstidpunkt>{from}T10:30:00+01:00</Beslutstidpunkt>{body}</Beslutsandring>"
                )
            }
            Vendor::Treserva => {
                let body = match action {
                    Action::ChangeServices => "<tre:Andringstyp>INSATSER</tre:Andringstyp><tre:Insatser>\
                         <tre:Insats><tre:Kod>HT-SERV</tre:Kod><tre:Tid>480</tre:Tid></tre:Insats>\
                         <tre:Insats><tre:Kod>HT-PO</tre:Kod><tre:Tid>2400</tre:Tid></tre:Insats></tre:Insatser>"
                        .to_owned(),
                    Action::LastDay => format!(
                        "<tre:Andringstyp>SLUTDATUM</tre:Andringstyp><tre:NyttSlutdatum><tre:Tom>{new_end}</tre:Tom></tre:NyttSlutdatum>"
                    ),
                    Action::Switch => format!(
                        "<tre:Andringstyp>UTFORARBYTE</tre:Andringstyp><tre:Utforarbyte><tre:Utforare><tre:Orgnr>{NEW_PROVIDER}</tre:Orgnr>\
                         </tre:Utforare><tre:From>{resume}</tre:From></tre:Utforarbyte>"
                    ),
                    Action::End => format!(
                        "<tre:Andringstyp>AVSLUT</tre:Andringstyp><tre:Avslut><tre:SistaDag>{last}</tre:SistaDag>\
                         <tre:Orsak>SARSKILT_BOENDE</tre:Orsak></tre:Avslut>"
                    ),
                    _ => format!(
                        "<tre:Andringstyp>UPPEHALL</tre:Andringstyp><tre:Uppehall><tre:From>{from}</tre:From>\
                         <tre:Tom>{resume}</tre:Tom><tre:Orsak>SJUKHUSVISTELSE</tre:Orsak></tre:Uppehall>"
                    ),
                };
                let v = if with_version { format!("<tre:Version>{version}</tre:Version>") } else { String::new() };
                soap(&format!(
                    "<tre:RegistreraBeslutsandring><tre:Beslutsandring><tre:BeslutId>{id}</tre:BeslutId>{v}\
                     <tre:GallerFrom>{from}</tre:GallerFrom><tre:Beslutsdatum>{from}T10:30:00+01:00</tre:Beslutsdatum>\
                     {body}</tre:Beslutsandring></tre:RegistreraBeslutsandring>"
                ))
            }
            Vendor::Lifecare => {
                let mut decision =
                    json!({"decisionId": id, "effectiveFrom": from, "decidedAt": format!("{from}T10:30:00+01:00")});
                if with_version {
                    decision["version"] = json!(version);
                }
                match action {
                    Action::ChangeServices => {
                        decision["changeType"] = json!("INTERVENTIONS_CHANGED");
                        decision["interventions"] = json!([{"code": "SERVICE", "minutesPerMonth": 480},
                                                           {"code": "PERSONAL_CARE", "minutesPerMonth": 2400}]);
                    }
                    Action::LastDay => {
                        decision["changeType"] = json!("VALIDITY_CHANGED");
                        decision["validTo"] = json!(new_end);
                    }
                    Action::Switch => {
                        decision["changeType"] = json!("PROVIDER_CHANGED");
                        decision["provider"] = json!({"orgNo": NEW_PROVIDER, "from": resume});
                    }
                    Action::End => {
                        decision["changeType"] = json!("TERMINATED");
                        decision["termination"] = json!({"lastDay": last, "reason": "MOVED_TO_RESIDENTIAL_CARE"});
                    }
                    _ => {
                        decision["changeType"] = json!("SUSPENDED");
                        decision["suspension"] = json!({"from": from, "to": resume, "reason": "HOSPITAL_STAY"});
                    }
                }
                json!({"eventType": "DecisionChanged", "eventId": format!("evt-{id}-{version}"), "decision": decision})
                    .to_string()
            }
        }
    }

    /// The body made larger than the hub takes (1 MiB) while staying well-formed.
    fn padded(&self, body: Vec<u8>) -> Vec<u8> {
        let pad = " ".repeat(1_100_000);
        let text = String::from_utf8_lossy(&body).into_owned();
        match self.vendor {
            Vendor::Lifecare => format!("{pad}{text}").into_bytes(),
            _ => format!("{text}<!--{pad}-->").into_bytes(),
        }
    }
}

/// A SOAP 1.1 envelope around Treserva's body.
fn soap(body: &str) -> String {
    format!(
        "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:tre=\"urn:carehub:vendor:treserva:1\"><soapenv:Body>{body}</soapenv:Body></soapenv:Envelope>"
    )
}

/// `text` in ISO-8859-1 (what a misconfigured system sends instead of UTF-8).
fn latin1(text: &str) -> Vec<u8> {
    text.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect()
}

/// `POST /harness`: a trigger, acted on at once (in the background, so a case can arm a
/// fault that makes the system wait and send again).
async fn harness(State(s): State<Arc<CaseManagementSystem>>, Json(body): Json<Value>) -> StatusCode {
    let what = body["do"].as_str().unwrap_or_default();
    let case = body["case"].as_str().unwrap_or("CASE").to_owned();
    let Some(action) = ACTIONS.iter().find(|(prefix, _)| what.starts_with(prefix)).map(|(_, a)| *a) else {
        return StatusCode::NOT_IMPLEMENTED;
    };
    if action == Action::RefuseNext {
        s.refuse_next.store(true, Ordering::SeqCst);
        return StatusCode::NO_CONTENT;
    }
    tokio::spawn(async move {
        if let Err(e) = s.act(&case, action).await {
            let error = format!("the {} system could not {action:?} for {case}: {e:#}", s.vendor.name());
            s.errors.lock().unwrap_or_else(PoisonError::into_inner).push(error);
        }
    });
    StatusCode::ACCEPTED
}

/// Combine's callbacks: XML in, 204 once taken, 409 when told to refuse.
async fn combine(
    State(s): State<Arc<CaseManagementSystem>>,
    kind: Option<Path<String>>,
    headers: HeaderMap,
    _body: Bytes,
) -> StatusCode {
    let what = kind.map_or_else(|| "callback".to_owned(), |Path(k)| k);
    if s.take(&headers, &what) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CONFLICT
    }
}

/// Treserva's SOAP endpoint: the operation's response element, or a `Client` fault with
/// HTTP 500 when told to refuse (a broken Treserva answers the fault with 200).
async fn treserva(State(s): State<Arc<CaseManagementSystem>>, headers: HeaderMap, _body: Bytes) -> Response {
    let action = headers.get("soapaction").and_then(|v| v.to_str().ok()).unwrap_or_default().trim_matches('"');
    let operation = action.rsplit('/').next().unwrap_or_default().to_owned();
    let xml = [("content-type", "text/xml; charset=utf-8")];
    if s.take(&headers, &operation) {
        let body = format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body>\
             <{operation}Response xmlns=\"urn:carehub:vendor:treserva:1\"/></s:Body></s:Envelope>"
        );
        return (StatusCode::OK, xml, body).into_response();
    }
    let status = if s.mistake == Mistake::FaultWith200 { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR };
    let fault = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><s:Fault>\
                 <faultcode>s:Client</faultcode><faultstring>the decision is not known here</faultstring>\
                 </s:Fault></s:Body></s:Envelope>";
    (status, xml, fault).into_response()
}

/// Lifecare's token endpoint (client credentials).
async fn lifecare_token() -> Json<Value> {
    Json(json!({"access_token": "lifecare-conformance-token", "token_type": "Bearer", "expires_in": 3600}))
}

/// Lifecare's API: JSON in with its bearer token, 201 once taken, 409 when told to refuse.
async fn lifecare(
    State(s): State<Arc<CaseManagementSystem>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
) -> StatusCode {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if auth != "Bearer lifecare-conformance-token" {
        return StatusCode::UNAUTHORIZED;
    }
    if s.take(&headers, &kind) {
        StatusCode::CREATED
    } else {
        StatusCode::CONFLICT
    }
}
