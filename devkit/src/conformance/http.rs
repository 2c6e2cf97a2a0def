//! The provider-side REST vendors as a conformance run meets them: a Phoniro and a
//! Lifecare Mobil Hemtjänst that do everything their profiles ask (mappings/phoniro,
//! mappings/lifecare-mobil), and the same systems with one deliberate mistake ([`Flaw`])
//! each.
//!
//! Why one system with flags and not a system per mistake: a broken variant must differ
//! from the correct one in exactly one thing, or a test that it is "caught by its named
//! case and by nothing unrelated" proves nothing. Each flag changes one message.
//!
//! The system serves what the hub calls (Phoniro's `POST {base}/orders`, `/order-changes`,
//! `/order-ends`; Lifecare Mobil's `/assignments`, `/assignment-changes`,
//! `/assignment-terminations` and its OAuth token endpoint; both `/invoice-verifications`),
//! calls the hub's messages endpoint with the
//! provider's token, and serves a harness endpoint (`POST /harness`, the run's
//! `--trigger`) that does at once what a case asks of "the vendor's person". It learns
//! where the hub is through [`RestVendor::connect`], as a real system is configured with
//! the URL and token `carehub conformance` prints; over HTTPS with mTLS it is also given
//! its certificates ([`RestVendor::use_certificates`]: the hub's CA, its own valid client
//! certificate, and the expired and the foreign one that the cases of refused certificates
//! ask it to present).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Datelike as _, FixedOffset, NaiveDate};
use serde_json::{json, Value};

use crate::peppol_write::{self, Kind, Line};

/// The provider the system registers for: the mock hub's default provider.
pub const PROVIDER: &str = "5599000014";

/// Which vendor's system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Phoniro,
    LifecareMobil,
}

impl Vendor {
    /// Its name in the hub and the catalogue.
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Phoniro => "phoniro",
            Vendor::LifecareMobil => "lifecare-mobil",
        }
    }
}

/// One deliberate mistake, each changing one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Takes an order delivered again with the same `Idempotency-Key` as a new order.
    IgnoresIdempotencyKey,
    /// Writes a deviation's `occurredDate` as `14.11.2026` instead of `YYYY-MM-DD`.
    WrongDateFormat,
    /// Leaves a change of need's mandatory `direction` out.
    MissingMandatoryField,
    /// Writes an identifier with its check digit off by one: Phoniro's invoice basis's
    /// organisation number, Lifecare Mobil's deviation's personnummer.
    CheckDigitOff,
    /// Asked to confirm an order again, confirms it under an id of its own, which the hub
    /// never sent.
    AckForUnknownOrder,
    /// Reports the care plan as soon as the order arrives, before confirming it.
    PlanBeforeAck,
    /// Sends a PEPPOL invoice whose payable amount is one krona more than its lines.
    PeppolTotalOff,
    /// Asked to push a visit with its expired client certificate, keeps sending with it
    /// and never switches back to the valid one. Only over mTLS, so not in [`Flaw::ALL`].
    KeepsExpiredCertificate,
}

impl Flaw {
    /// Every flaw, for the tests that hold the catalogue to each.
    pub const ALL: [Flaw; 7] = [
        Flaw::IgnoresIdempotencyKey,
        Flaw::WrongDateFormat,
        Flaw::MissingMandatoryField,
        Flaw::CheckDigitOff,
        Flaw::AckForUnknownOrder,
        Flaw::PlanBeforeAck,
        Flaw::PeppolTotalOff,
    ];
}

/// Where the hub is and how to authenticate to it: what `carehub conformance` prints.
#[derive(Debug, Clone)]
pub struct HubAccess {
    /// The mock hub's base URL (`http://127.0.0.1:8090`).
    pub url: String,
    /// The vendor's system name in the hub (`phoniro`).
    pub system: String,
    /// The provider system's token.
    pub token: String,
    /// A valid token of another role (case_management), for the case that checks the
    /// system shows a 403; without one that case's trigger fails.
    pub wrong_role_token: Option<String>,
}

impl HubAccess {
    fn messages(&self) -> String {
        format!("{}/v1/systems/{}/messages", self.url, self.system)
    }
}

/// The certificates of a system that reaches the hub over HTTPS with mTLS, as PEM (each
/// client certificate followed by its key): what `certs/` holds for Phoniro.
#[derive(Debug, Clone)]
pub struct Certificates {
    /// The CA of the hub's server certificate.
    pub ca: Vec<u8>,
    /// The system's own client certificate, from the hub's client CA.
    pub valid: Vec<u8>,
    /// The same name from the hub's client CA, expired.
    pub expired: Vec<u8>,
    /// The same name from a CA the hub does not know.
    pub foreign: Vec<u8>,
}

impl Certificates {
    /// The Phoniro files in the repository's `certs/` folder.
    pub fn phoniro(certs: &std::path::Path) -> std::io::Result<Certificates> {
        let pair = |name: &str| -> std::io::Result<Vec<u8>> {
            let mut pem = std::fs::read(certs.join(format!("{name}.pem")))?;
            pem.extend(std::fs::read(certs.join(format!("{name}.key")))?);
            Ok(pem)
        };
        Ok(Certificates {
            ca: std::fs::read(certs.join("ca.pem"))?,
            valid: pair("phoniro-ekero")?,
            expired: pair("phoniro-ekero-expired")?,
            foreign: pair("phoniro-ekero-foreign")?,
        })
    }

    /// A client that trusts the hub's CA and presents `identity`.
    fn client(&self, identity: &[u8]) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca)?)
            .identity(reqwest::Identity::from_pem(identity)?)
            .build()
    }
}

/// The clients a system over mTLS reaches the hub with.
#[derive(Clone)]
struct Clients {
    valid: reqwest::Client,
    expired: reqwest::Client,
    foreign: reqwest::Client,
}

#[derive(Default)]
struct Inner {
    hub: Option<HubAccess>,
    /// Orders taken, by order id, with how many times each was taken as new.
    orders: BTreeMap<String, u32>,
    /// The idempotency keys taken.
    keys: std::collections::BTreeSet<String>,
    reject_next: bool,
    seq: u32,
    /// Over mTLS, the clients with each certificate; else the plain client is used.
    tls: Option<Clients>,
    /// Phoniro's visit feed: the visits registered, in order; a cursor is an index into it.
    feed: Vec<Value>,
}

#[derive(Clone)]
struct System {
    vendor: Vendor,
    flaw: Option<Flaw>,
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
}

/// A running vendor system on 127.0.0.1.
pub struct RestVendor {
    /// Where it takes the hub's calls (`--target`).
    pub base_url: String,
    /// Its harness endpoint (`--trigger`).
    pub trigger_url: String,
    system: System,
    task: tokio::task::JoinHandle<()>,
}

impl RestVendor {
    /// Starts a Phoniro system on 127.0.0.1 (with `flaw`, a broken one).
    pub async fn phoniro(flaw: Option<Flaw>) -> anyhow::Result<RestVendor> {
        RestVendor::start(Vendor::Phoniro, flaw).await
    }

    /// Starts a vendor's system on 127.0.0.1 (with `flaw`, a broken one).
    pub async fn start(vendor: Vendor, flaw: Option<Flaw>) -> anyhow::Result<RestVendor> {
        let system = System {
            vendor,
            flaw,
            inner: Arc::default(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
        };
        let (orders, changes, ends) = match vendor {
            Vendor::Phoniro => ("/api/v1/orders", "/api/v1/order-changes", "/api/v1/order-ends"),
            Vendor::LifecareMobil => {
                ("/api/v1/assignments", "/api/v1/assignment-changes", "/api/v1/assignment-terminations")
            }
        };
        let app = Router::new()
            .route(orders, post(order))
            .route(changes, post(change))
            .route(ends, post(taken))
            .route("/api/v1/invoice-verifications", post(taken))
            .route("/api/v1/visits", get(feed_page))
            .route("/oauth/token", post(oauth_token))
            .route("/harness", post(trigger))
            .with_state(system.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RestVendor {
            base_url: format!("http://{addr}/api/v1"),
            trigger_url: format!("http://{addr}/harness"),
            system,
            task,
        })
    }

    /// Configures where the hub is, as a vendor does with what the run prints.
    pub fn connect(&self, hub: HubAccess) {
        self.system.lock().hub = Some(hub);
    }

    /// Reaches the hub over HTTPS with these certificates (before [`RestVendor::connect`]).
    pub fn use_certificates(&self, certs: &Certificates) -> anyhow::Result<()> {
        let clients = Clients {
            valid: certs.client(&certs.valid)?,
            expired: certs.client(&certs.expired)?,
            foreign: certs.client(&certs.foreign)?,
        };
        self.system.lock().tls = Some(clients);
        Ok(())
    }

    /// How many times the system took order `id` as a new order.
    pub fn times_taken(&self, id: &str) -> u32 {
        self.system.lock().orders.get(id).copied().unwrap_or(0)
    }

    /// Stops serving.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl System {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn hub(&self) -> Option<HubAccess> {
        self.lock().hub.clone()
    }

    /// The client the system reaches the hub with: over mTLS, with its valid certificate.
    fn to_hub(&self) -> reqwest::Client {
        self.lock().tls.as_ref().map(|c| c.valid.clone()).unwrap_or_else(|| self.http.clone())
    }

    /// Posts to the hub's messages endpoint until it answers 2xx, as the profile asks
    /// (a 503, a reset or a timeout is sent again); the last status.
    /// Until the system is connected it waits, as a vendor's outbox does: an order may
    /// come before the vendor has read the token `carehub conformance` prints.
    async fn post(&self, body: Vec<u8>, content_type: &str) -> Result<u16, String> {
        self.post_with(None, 60, body, content_type).await
    }

    /// [`System::post`] with this client instead of the system's own (a certificate the
    /// hub refuses: then every attempt fails), at most `attempts` times.
    async fn post_with(
        &self,
        client: Option<&reqwest::Client>,
        attempts: u32,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<u16, String> {
        let mut last = String::from("the system is not connected to a hub");
        for _ in 0..attempts {
            let Some(hub) = self.hub() else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let http = client.cloned().unwrap_or_else(|| self.to_hub());
            let answer = http
                .post(hub.messages())
                .bearer_auth(&hub.token)
                .header("content-type", content_type)
                .body(body.clone())
                .send()
                .await;
            match answer {
                Ok(a) if a.status().is_success() => return Ok(a.status().as_u16()),
                Ok(a) if a.status().is_server_error() || a.status() == StatusCode::TOO_MANY_REQUESTS => {
                    last = format!("answered {}", a.status());
                }
                Ok(a) => {
                    let status = a.status().as_u16();
                    return Err(format!("answered {status}: {}", a.text().await.unwrap_or_default()));
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(last)
    }

    async fn post_json(&self, body: &Value) -> Result<u16, String> {
        self.post(body.to_string().into_bytes(), "application/json").await
    }

    /// The hub's clock (the tester's day), from the mock's API: a real system's person
    /// works on the day the tester set.
    async fn now(&self) -> Result<DateTime<FixedOffset>, String> {
        let hub = self.hub().ok_or("the system is not connected to a hub")?;
        let clock: Value = self
            .to_hub()
            .get(format!("{}/mock/clock", hub.url))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let at = clock["at"].as_str().ok_or("the mock's clock has no time")?;
        let utc = DateTime::parse_from_rfc3339(at).map_err(|e| e.to_string())?;
        let stockholm = FixedOffset::east_opt(3600).ok_or("offset")?;
        Ok(utc.with_timezone(&stockholm))
    }

    fn next_id(&self, prefix: &str) -> String {
        let mut inner = self.lock();
        inner.seq += 1;
        format!("{prefix}-{}", inner.seq)
    }
}

async fn taken() -> StatusCode {
    StatusCode::CREATED
}

/// A change of an order: taken, and when it asks for the order to be confirmed again (a
/// confirmation deadline: Phoniro's `confirmBy`, Lifecare Mobil's `deadlines.confirmBy`),
/// confirmed again in the background, as a real system's person does.
async fn change(State(s): State<System>, Json(body): Json<Value>) -> StatusCode {
    let again = body.get("confirmBy").or_else(|| body.pointer("/deadlines/confirmBy")).is_some();
    let order = body.get("orderId").or_else(|| body.get("assignmentId")).and_then(Value::as_str).map(str::to_owned);
    if let (true, Some(order)) = (again, order) {
        tokio::spawn(async move {
            let at = s.now().await.map(|n| n.to_rfc3339()).unwrap_or_default();
            let _ = s.post_json(&ack(s.vendor, &order, false, &at)).await;
        });
    }
    StatusCode::CREATED
}

#[derive(serde::Deserialize)]
struct FeedQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

/// Phoniro's visit feed (`GET {base}/visits?cursor=&limit=`): the visits from the cursor on
/// (from the first without one), at most `limit`, and the cursor after the last given.
async fn feed_page(State(s): State<System>, Query(q): Query<FeedQuery>) -> (StatusCode, Json<Value>) {
    let from = match q.cursor.as_deref().map(|c| c.strip_prefix("c-").and_then(|n| n.parse::<usize>().ok())) {
        None => 0,
        Some(Some(n)) => n,
        Some(None) => return (StatusCode::BAD_REQUEST, Json(json!({"error": "not a cursor of this feed"}))),
    };
    let inner = s.lock();
    let end = inner.feed.len().min(from.saturating_add(q.limit.unwrap_or(1000)));
    let visits: Vec<Value> = inner.feed.get(from..end).map(<[Value]>::to_vec).unwrap_or_default();
    let next = format!("c-{}", end.max(from));
    (StatusCode::OK, Json(json!({"type": "visitPage", "nextCursor": next, "visits": visits})))
}

/// Lifecare Mobil's OAuth 2.0 token endpoint (client credentials), which the hub asks
/// before it calls the API.
async fn oauth_token() -> Json<Value> {
    Json(json!({"access_token": "lm-test-access-token", "token_type": "Bearer", "expires_in": 3600}))
}

/// An order: taken once per idempotency key (a repeat is answered 200 and not taken
/// again), then confirmed in the background, as a real system confirms after its answer.
async fn order(State(s): State<System>, headers: HeaderMap, Json(body): Json<Value>) -> StatusCode {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let id = body.get("orderId").or_else(|| body.get("assignmentId"));
    let Some(order) = id.and_then(Value::as_str).map(str::to_owned) else { return StatusCode::BAD_REQUEST };
    let reject = {
        let mut inner = s.lock();
        if !inner.keys.insert(key) && s.flaw != Some(Flaw::IgnoresIdempotencyKey) {
            return StatusCode::OK;
        }
        *inner.orders.entry(order.clone()).or_default() += 1;
        std::mem::take(&mut inner.reject_next)
    };
    tokio::spawn(async move {
        for _ in 0..100 {
            if s.hub().is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if s.flaw == Some(Flaw::PlanBeforeAck) {
            let date = s.now().await.map(|n| n.date_naive().to_string()).unwrap_or_default();
            let _ = s.post_json(&plan(s.vendor, &order, &date)).await;
        }
        let at = s.now().await.map(|n| n.to_rfc3339()).unwrap_or_default();
        let _ = s.post_json(&ack(s.vendor, &order, reject, &at)).await;
    });
    StatusCode::CREATED
}

const NO_CAPACITY: &str = "Ingen kapacitet i området";

fn ack(vendor: Vendor, order: &str, reject: bool, at: &str) -> Value {
    match (vendor, reject) {
        (Vendor::Phoniro, false) => {
            json!({"type": "orderConfirmation", "orderId": order, "status": "ACCEPTED", "confirmedAt": at})
        }
        (Vendor::Phoniro, true) => json!({"type": "orderConfirmation", "orderId": order, "status": "REJECTED",
                                          "reason": NO_CAPACITY, "confirmedAt": at}),
        (Vendor::LifecareMobil, false) => {
            json!({"event": "assignment.accepted", "assignmentId": order, "timestamp": at})
        }
        (Vendor::LifecareMobil, true) => json!({"event": "assignment.rejected", "assignmentId": order,
                                                "reason": NO_CAPACITY, "timestamp": at}),
    }
}

fn plan(vendor: Vendor, order: &str, date: &str) -> Value {
    match vendor {
        Vendor::Phoniro => json!({"type": "carePlanEstablished", "orderId": order, "establishedDate": date}),
        Vendor::LifecareMobil => json!({"event": "careplan.established", "assignmentId": order, "date": date}),
    }
}

/// The order id (`O-...`) a case's instruction names.
fn order_in(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')' | ';'))
        .find(|w| w.starts_with("O-") && w.len() > 2)
        .map(str::to_owned)
}

/// The harness: what a case asks of the vendor's person, done at once. 204 when done
/// (whatever the hub answered: the case judges that from the mock's journal), 409 when a
/// check of the system's own state fails, 422 or 501 when it cannot do what is asked.
async fn trigger(State(s): State<System>, Json(body): Json<Value>) -> (StatusCode, String) {
    let what = body["do"].as_str().unwrap_or_default().to_owned();
    match act(&s, &what).await {
        Ok(()) => (StatusCode::NO_CONTENT, String::new()),
        Err((status, why)) => (status, why),
    }
}

type Acted = Result<(), (StatusCode, String)>;

/// The hub could not be reached (its clock, for the day the person works on).
fn unreachable_hub(e: String) -> (StatusCode, String) {
    (StatusCode::BAD_GATEWAY, e)
}

/// A message sent: done, whatever the hub answered.
fn sent(_: Result<u16, String>) -> Acted {
    Ok(())
}

async fn act(s: &System, what: &str) -> Acted {
    let order = order_in(what);
    let need_order = || order.clone().ok_or((StatusCode::UNPROCESSABLE_ENTITY, format!("no order in: {what}")));
    let now = s.now().await.map_err(unreachable_hub)?;
    let today = now.date_naive();
    if what.starts_with("Reject the next order") {
        s.lock().reject_next = true;
        return Ok(());
    }
    if what.starts_with("Check that order") {
        let order = need_order()?;
        let times = s.lock().orders.get(&order).copied().unwrap_or(0);
        return if times == 1 {
            Ok(())
        } else {
            Err((StatusCode::CONFLICT, format!("order {order} was taken {times} times")))
        };
    }
    if what.starts_with("Send the orderConfirmation for order") {
        let order = need_order()?;
        let hub = s.hub().ok_or((StatusCode::SERVICE_UNAVAILABLE, "not connected".into()))?;
        let wrong =
            hub.wrong_role_token.clone().ok_or((StatusCode::UNPROCESSABLE_ENTITY, "no other role's token".into()))?;
        let body = ack(s.vendor, &order, false, &now.to_rfc3339()).to_string();
        // The wrong role is answered 403 and not sent again; then the right token.
        let _ = s
            .to_hub()
            .post(hub.messages())
            .bearer_auth(wrong)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        return sent(s.post(body.into_bytes(), "application/json").await);
    }
    if what.starts_with("Confirm order") {
        let order = need_order()?;
        // The broken system confirms the order under an id of its own, which the hub never
        // sent it: an acknowledgement for an unknown order.
        let id = if s.flaw == Some(Flaw::AckForUnknownOrder) { "O-00000000DEADBEEF".to_owned() } else { order };
        return sent(s.post_json(&ack(s.vendor, &id, false, &now.to_rfc3339())).await);
    }
    if what.starts_with("Establish the care plan") {
        if s.flaw == Some(Flaw::PlanBeforeAck) {
            return Ok(()); // reported when the order came
        }
        let order = need_order()?;
        return sent(s.post_json(&plan(s.vendor, &order, &today.to_string())).await);
    }
    if let Some(which) =
        ["expired", "foreign"].into_iter().find(|w| what.starts_with(&format!("Using the {w} client certificate")))
    {
        let order = need_order()?;
        let clients = s.lock().tls.clone().ok_or((
            StatusCode::UNPROCESSABLE_ENTITY,
            "the system reaches the hub without client certificates".to_owned(),
        ))?;
        let refused = if which == "expired" { &clients.expired } else { &clients.foreign };
        let body = visit(s, &s.next_id("V"), &order, now, false).to_string().into_bytes();
        // The hub ends the handshake: the message never arrives, so it goes again with the
        // valid certificate (the broken system keeps the expired one).
        if s.flaw == Some(Flaw::KeepsExpiredCertificate) && which == "expired" {
            return sent(s.post_with(Some(refused), 3, body, "application/json").await);
        }
        let _ = s.post_with(Some(refused), 1, body.clone(), "application/json").await;
        return sent(s.post(body, "application/json").await);
    }
    if what.starts_with("Register a visit for order") {
        let order = need_order()?;
        let manual = what.contains("by hand");
        let v = visit(s, &s.next_id("V"), &order, now, manual);
        return sent(s.post_json(&v).await);
    }
    if what.starts_with("Push a visit whose body is larger") {
        let mut v = visit(s, &s.next_id("V"), "O-0000000000000000", now, true);
        v["padding"] = json!("x".repeat(1_100_000));
        return sent(s.post_json(&v).await);
    }
    if what.starts_with("Register two visits for order") {
        // Left in the visit feed, which the hub pulls.
        let order = need_order()?;
        let (a, b) = (visit(s, &s.next_id("V"), &order, now, false), visit(s, &s.next_id("V"), &order, now, true));
        let strip = |mut v: Value| {
            if let Value::Object(m) = &mut v {
                m.remove("type");
            }
            v
        };
        s.lock().feed.extend([strip(a), strip(b)]);
        return Ok(());
    }
    if what.starts_with("Report a deviation") {
        let d = deviation(s, &s.next_id("AV"), order.as_deref(), now, "Låg på köksgolvet; sjuksköterska tillkallad.");
        return sent(s.post_json(&d).await);
    }
    if what.starts_with("Send one deviation twice") {
        let d = deviation(s, &s.next_id("AV"), None, now, "Kvällsbesöket uteblev, personal sjuk.");
        let _ = s.post_json(&d).await;
        return sent(s.post_json(&d).await);
    }
    if what.starts_with("Send a deviation whose description has") {
        let d = deviation(s, &s.next_id("AV"), None, now, "Frånvarande, dörren låst");
        let latin1: Vec<u8> = d.to_string().chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect();
        return sent(s.post(latin1, "application/json").await);
    }
    if what.starts_with("Report that the client of order") {
        let text = "Behöver hjälp att duscha sedan fallet.";
        let (mut n, direction) = match s.vendor {
            Vendor::Phoniro => (
                json!({"type": "needChange", "needChangeId": s.next_id("BEV"),
                    "provider": {"organisationNumber": PROVIDER}, "client": {"personalIdentityNumber": CLIENT},
                    "orderId": order, "noticedDate": today.to_string(), "direction": "INCREASED",
                    "description": text, "reportedAt": now.to_rfc3339()}),
                "/direction",
            ),
            Vendor::LifecareMobil => (
                json!({"event": "needs.changed", "eventId": s.next_id("evt"), "timestamp": now.to_rfc3339(),
                    "observation": {"id": s.next_id("LMB"), "organisationNumber": PROVIDER,
                        "client": {"ssn": CLIENT}, "assignmentId": order, "date": today.to_string(),
                        "needs": "INCREASED", "description": text}}),
                "/observation/needs",
            ),
        };
        if s.flaw == Some(Flaw::MissingMandatoryField) {
            remove(&mut n, direction);
        }
        return sent(s.post_json(&n).await);
    }
    if what.starts_with("Export the invoice basis") {
        let order = need_order()?;
        let org = if s.flaw == Some(Flaw::CheckDigitOff) { "5599000015" } else { PROVIDER };
        let csv = format!(
            "InvoiceNumber,Type,CreditedInvoice,OrganisationNumber,PeriodStart,Row,OrderId,Minutes,AmountOre,Comment\n\
             {inv},INVOICE,,{org},{month},1,{order},360,234000,\n",
            inv = s.next_id("PH-2026-11"),
            month = first_of_last_month(today),
        );
        return sent(s.post(csv.into_bytes(), "text/csv").await);
    }
    if what.starts_with("Send the PEPPOL BIS 3 invoice") {
        let order = need_order()?;
        let first = first_of_last_month(today);
        let last = today.checked_sub_days(chrono::Days::new(u64::from(today.day0()) + 1)).unwrap_or(first);
        let lines = [Line { id: "1".into(), order_id: order, minutes: 360, amount_ore: 234_000, comment: None }];
        let mut doc = peppol_write::home_care(
            Kind::Invoice,
            &s.next_id("INV"),
            PROVIDER,
            "Omsorg i Norr AB",
            first,
            last,
            None,
            &lines,
        );
        if s.flaw == Some(Flaw::PeppolTotalOff) {
            doc = doc.replace(
                "<cbc:PayableAmount currencyID=\"SEK\">2340.00</cbc:PayableAmount>",
                "<cbc:PayableAmount currencyID=\"SEK\">2341.00</cbc:PayableAmount>",
            );
        }
        return sent(s.post(doc.into_bytes(), "application/xml").await);
    }
    Err((StatusCode::NOT_IMPLEMENTED, format!("the harness cannot do: {what}")))
}

/// The client of the mock hub's default order.
const CLIENT: &str = "193601016987";

fn first_of_last_month(today: NaiveDate) -> NaiveDate {
    let first = today.with_day(1).unwrap_or(today);
    let prev = first.pred_opt().unwrap_or(first);
    prev.with_day(1).unwrap_or(prev)
}

/// Removes the value at a JSON pointer.
fn remove(v: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    if let Some(Value::Object(m)) = v.pointer_mut(parent) {
        m.remove(last);
    }
}

fn visit(s: &System, id: &str, order: &str, now: DateTime<FixedOffset>, manual: bool) -> Value {
    let start = now - chrono::Duration::minutes(50);
    let end = now - chrono::Duration::minutes(5);
    match s.vendor {
        Vendor::Phoniro => {
            let end_of = |at: DateTime<FixedOffset>| {
                if manual {
                    json!({"time": at.to_rfc3339(), "method": "MANUAL", "reason": "Taggen saknades"})
                } else {
                    json!({"time": at.to_rfc3339(), "method": "NFC", "tagUid": "04A21BC3"})
                }
            };
            json!({"type": "visit", "visitId": id, "provider": {"organisationNumber": PROVIDER},
                "client": {"personalIdentityNumber": CLIENT}, "orderId": order, "staffId": "st-117",
                "checkIn": end_of(start), "checkOut": end_of(end),
                "plannedMinutes": 45, "activities": ["CARE"], "status": "PERFORMED", "doubleStaffing": false})
        }
        Vendor::LifecareMobil => {
            let end_of = |at: DateTime<FixedOffset>| {
                if manual {
                    json!({"time": at.to_rfc3339(), "registration": "MANUAL", "manualReason": "Taggen saknades"})
                } else {
                    json!({"time": at.to_rfc3339(), "registration": "NFC", "tagId": "04A21BC3"})
                }
            };
            json!({"event": "visit.completed", "eventId": format!("evt-{id}"), "timestamp": now.to_rfc3339(),
                "visit": {"id": id, "organisationNumber": PROVIDER, "client": {"ssn": CLIENT},
                    "assignmentId": order, "employeeId": "emp-4411",
                    "arrival": end_of(start), "departure": end_of(end), "plannedDuration": 45,
                    "services": [{"type": "PERSONAL_CARE"}], "status": "PERFORMED", "doubleStaffing": false}})
        }
    }
}

fn deviation(s: &System, id: &str, order: Option<&str>, now: DateTime<FixedOffset>, text: &str) -> Value {
    let date = if s.flaw == Some(Flaw::WrongDateFormat) {
        now.format("%d.%m.%Y").to_string()
    } else {
        now.date_naive().to_string()
    };
    match s.vendor {
        Vendor::Phoniro => {
            let mut d = json!({"type": "deviation", "deviationId": id, "provider": {"organisationNumber": PROVIDER},
                "client": {"personalIdentityNumber": CLIENT}, "occurredDate": date, "category": "FALL",
                "severity": "HIGH", "description": text, "reportedAt": now.to_rfc3339()});
            if let Some(o) = order {
                d["orderId"] = json!(o);
            }
            d
        }
        Vendor::LifecareMobil => {
            // The event's id is the deviation's: sent again, it is the same event.
            // The broken system's check digit is off by one (Lifecare Mobil sends no invoice
            // basis, so the deviation carries the identifier this flaw gets wrong).
            let client = if s.flaw == Some(Flaw::CheckDigitOff) { "193601016988" } else { CLIENT };
            let mut d = json!({"event": "deviation.reported", "eventId": format!("evt-{id}"),
                "timestamp": now.to_rfc3339(),
                "deviation": {"id": id, "organisationNumber": PROVIDER, "client": {"ssn": client},
                    "date": date, "type": "FALL", "severity": "HIGH", "description": text}});
            if let Some(o) = order {
                d["deviation"]["assignmentId"] = json!(o);
            }
            d
        }
    }
}
