//! The demo's vendors, played in process: small HTTP servers on 127.0.0.1 that behave like
//! the real systems on the hub's side of the wire.
//!
//! - [`MockPhoniro`]: a time-registration system. It takes orders (`POST /api/orders`) and
//!   answers them a moment later by calling the hub back, as a provider would: confirmed
//!   with a plan, sometimes rejected, and never for "late" decisions. It can be down (503
//!   to everything) or a flaky gateway (503 to the first attempt of every fourth order),
//!   and it serves a visit feed by cursor (`GET /api/visits`).
//! - [`MockCaseManagement`]: a case-management system that counts what the hub sends it,
//!   as Combine (XML callbacks) or as Treserva (SOAP 1.1 calls, each answered).
//!
//! They are a piece of their own, apart from the demo's story, because they are what a
//! vendor-facing mock hub needs too: each is built, routed ([`MockPhoniro::router`],
//! [`MockCaseManagement::combine_router`], [`MockCaseManagement::treserva_router`]) and
//! served ([`serve`]) by its caller, and says what it saw through counters rather than
//! printing anything.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use carehub_model::Clock;
use serde_json::{json, Value};

/// A mock Phoniro system: what it does with the orders it gets, and the visits it serves.
pub struct MockPhoniro {
    name: &'static str,
    /// Down: answers 503 to everything.
    down: AtomicBool,
    /// Answers 503 to the first attempt of every fourth order (a flaky gateway).
    flaky: bool,
    seen: Mutex<BTreeSet<String>>,
    attempts: AtomicUsize,
    orders: AtomicUsize,
    hub_url: Mutex<String>,
    /// Each provider's token (by organisation number), to answer as that provider.
    tokens: BTreeMap<String, String>,
    http: reqwest::Client,
    /// Answers this mock (and its siblings sharing the counter) still has to send.
    inflight: Arc<AtomicUsize>,
    /// The visits it serves at `GET /api/visits`.
    feed: Mutex<VisitFeed>,
    /// The clock answers are dated by.
    clock: Clock,
}

impl MockPhoniro {
    /// A Phoniro system configured in the hub as `name`, answering as the providers whose
    /// tokens it holds (by organisation number); `inflight` counts the answers it has still
    /// to send, so a caller can wait for none (share it between siblings).
    pub fn new(
        name: &'static str,
        tokens: BTreeMap<String, String>,
        http: reqwest::Client,
        inflight: Arc<AtomicUsize>,
        clock: Clock,
    ) -> MockPhoniro {
        MockPhoniro {
            name,
            down: AtomicBool::new(false),
            flaky: false,
            seen: Mutex::new(BTreeSet::new()),
            attempts: AtomicUsize::new(0),
            orders: AtomicUsize::new(0),
            hub_url: Mutex::new(String::new()),
            tokens,
            http,
            inflight,
            feed: Mutex::new(VisitFeed::default()),
            clock,
        }
    }

    /// A flaky gateway: 503 to the first attempt of every fourth order.
    #[must_use]
    pub fn flaky(mut self) -> MockPhoniro {
        self.flaky = true;
        self
    }

    /// Its routes: `POST /api/orders` and `GET /api/visits`.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/api/orders", post(phoniro_orders))
            .route("/api/visits", get(phoniro_visits))
            .with_state(self.clone())
    }

    /// Where it calls the hub back (known only once the hub listens).
    pub fn set_hub_url(&self, url: &str) {
        if let Ok(mut u) = self.hub_url.lock() {
            url.clone_into(&mut u);
        }
    }

    /// Down (503 to everything) or up again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Orders it took (not counting those it answered 503).
    pub fn orders(&self) -> usize {
        self.orders.load(Ordering::SeqCst)
    }

    /// Serves these visits (feed elements as Phoniro sends them) from now on. With
    /// `replay_last`, the last page is served once more when first asked past the end, like
    /// a gateway that answered a request twice.
    pub fn serve_visits(&self, visits: Vec<Value>, replay_last: bool) {
        if let Ok(mut feed) = self.feed.lock() {
            feed.replay_last = replay_last;
            feed.visits = visits;
        }
    }

    async fn send(&self, org: &str, body: String) {
        let url = self.hub_url.lock().map(|u| u.clone()).unwrap_or_default();
        let Some(token) = self.tokens.get(org) else {
            return;
        };
        let _ = self
            .http
            .post(format!("{url}/v1/systems/{}/messages", self.name))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
    }
}

async fn phoniro_orders(State(p): State<Arc<MockPhoniro>>, body: Bytes) -> StatusCode {
    let n = p.attempts.fetch_add(1, Ordering::SeqCst);
    if p.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let Ok(order) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let id = order["orderId"].as_str().unwrap_or_default().to_owned();
    let first_time = p.seen.lock().map(|mut s| s.insert(id.clone())).unwrap_or(false);
    if p.flaky && first_time && n % 4 == 1 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    p.orders.fetch_add(1, Ordering::SeqCst);
    // Answer like a provider would, a moment later: most orders are confirmed and get a
    // plan; "late" decisions are never answered; one provider turns one order down.
    let reference = order["externalReference"].as_str().unwrap_or_default().to_owned();
    let org = order["provider"]["organisationNumber"].as_str().unwrap_or_default().to_owned();
    if reference.contains("-LATE-") {
        return StatusCode::CREATED;
    }
    let this = p.clone();
    this.inflight.fetch_add(1, Ordering::SeqCst);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let rejected = reference.ends_with("-007");
        let status = if rejected { "REJECTED" } else { "ACCEPTED" };
        let reason = if rejected { r#","reason":"Ingen kapacitet i området just nu""# } else { "" };
        let ack = format!(
            r#"{{"type":"orderConfirmation","orderId":"{id}","status":"{status}"{reason},"confirmedAt":"{}"}}"#,
            this.clock.now().format("%Y-%m-%dT%H:%M:%SZ")
        );
        this.send(&org, ack).await;
        if !rejected && !reference.ends_with("0") {
            let plan = format!(
                r#"{{"type":"carePlanEstablished","orderId":"{id}","establishedDate":"{}"}}"#,
                this.clock.today()
            );
            this.send(&org, plan).await;
        }
        this.inflight.fetch_sub(1, Ordering::SeqCst);
    });
    StatusCode::CREATED
}

/// Phoniro's visit feed as a mock serves it: `GET /api/visits?cursor=c-<offset>&limit=n`.
#[derive(Default)]
struct VisitFeed {
    visits: Vec<Value>,
    /// Serve the last page once more when first asked past the end, like a gateway that
    /// answered a request twice.
    replay_last: bool,
    replayed: bool,
    last: Option<(usize, usize)>,
}

#[derive(Debug, serde::Deserialize)]
struct FeedQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn phoniro_visits(State(p): State<Arc<MockPhoniro>>, Query(q): Query<FeedQuery>) -> Response {
    if p.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let Ok(mut feed) = p.feed.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let total = feed.visits.len();
    if total == 0 {
        // Nothing registered yet: an empty page, and no cursor to keep.
        return Json(json!({"type": "visitPage", "visits": []})).into_response();
    }
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let from = q.cursor.as_deref().and_then(|c| c.strip_prefix("c-")).and_then(|n| n.parse().ok()).unwrap_or(0);
    let from = usize::min(from, total);
    let (a, b) = match feed.last {
        Some(last) if from == total && feed.replay_last && !feed.replayed => {
            feed.replayed = true;
            last
        }
        _ => {
            let range = (from, usize::min(from + limit, total));
            if range.1 > range.0 {
                feed.last = Some(range);
            }
            range
        }
    };
    let visits: Vec<Value> = feed.visits.get(a..b).map(<[Value]>::to_vec).unwrap_or_default();
    let next = if from == total { total } else { b };
    Json(json!({"type": "visitPage", "visits": visits, "nextCursor": format!("c-{next}")})).into_response()
}

/// A mock case-management system: counts the acknowledgements, plan notices and visit
/// reports the hub sends it.
#[derive(Default)]
pub struct MockCaseManagement {
    acks: AtomicUsize,
    plans: AtomicUsize,
    visits: AtomicUsize,
}

impl MockCaseManagement {
    /// As Combine: `POST /carehub/callback` (Kvittens, Genomforandeplan),
    /// `POST /carehub/callback/aterrapportering` (Besok) and `GET /`.
    pub fn combine_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/carehub/callback", post(combine_callback))
            .route("/carehub/callback/aterrapportering", post(combine_visit))
            .route("/", get(|| async { "combine" }))
            .with_state(self.clone())
    }

    /// As Treserva: SOAP 1.1 at `POST /soap`, every call answered.
    pub fn treserva_router(self: &Arc<Self>) -> Router {
        Router::new().route("/soap", post(treserva_soap)).with_state(self.clone())
    }

    /// Acknowledgements received.
    pub fn acks(&self) -> usize {
        self.acks.load(Ordering::SeqCst)
    }

    /// Plan notices received.
    pub fn plans(&self) -> usize {
        self.plans.load(Ordering::SeqCst)
    }

    /// Visit reports received.
    pub fn visits(&self) -> usize {
        self.visits.load(Ordering::SeqCst)
    }
}

async fn combine_callback(State(c): State<Arc<MockCaseManagement>>, body: Bytes) -> StatusCode {
    let text = String::from_utf8_lossy(&body);
    if text.contains("<Kvittens") {
        c.acks.fetch_add(1, Ordering::SeqCst);
    } else if text.contains("<Genomforandeplan") {
        c.plans.fetch_add(1, Ordering::SeqCst);
    }
    StatusCode::OK
}

/// Combine's återrapportering: a visit report.
async fn combine_visit(State(c): State<Arc<MockCaseManagement>>, body: Bytes) -> StatusCode {
    if String::from_utf8_lossy(&body).contains("<Besok") {
        c.visits.fetch_add(1, Ordering::SeqCst);
    }
    StatusCode::OK
}

/// The mock Treserva: counts the SOAP calls it gets and answers each.
async fn treserva_soap(
    State(c): State<Arc<MockCaseManagement>>,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1], &'static str) {
    let text = String::from_utf8_lossy(&body);
    if text.contains("TaEmotKvittens") {
        c.acks.fetch_add(1, Ordering::SeqCst);
    } else if text.contains("TaEmotGenomforandeplan") {
        c.plans.fetch_add(1, Ordering::SeqCst);
    } else if text.contains("TaEmotBesok") {
        c.visits.fetch_add(1, Ordering::SeqCst);
    }
    (
        StatusCode::OK,
        [("content-type", "text/xml; charset=utf-8")],
        "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><Ok xmlns=\"urn:carehub:vendor:treserva:1\"/></s:Body></s:Envelope>",
    )
}

/// Serves a mock on a fresh loopback port for as long as the runtime runs; its base URL.
pub async fn serve(router: Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind a mock vendor")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(format!("http://{addr}"))
}
