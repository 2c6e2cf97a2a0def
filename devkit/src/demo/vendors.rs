//! The demo's vendors, played in process: small HTTP servers on 127.0.0.1 that behave like
//! the real systems on the hub's side of the wire.
//!
//! - [`MockPhoniro`]: a time-registration system. It takes orders (`POST /api/orders`),
//!   order changes and ends, and answers orders by calling the hub back on the days a
//!   provider would, by the clock it is given ([`MockPhoniro::answer_due`]): confirmed
//!   within days with a plan within a fortnight, a few late on purpose, one rejected, and
//!   never for "late" decisions. It can be down (503 to everything) or a flaky gateway
//!   (503 to the first attempt of every fourth order), and it serves a visit feed by
//!   cursor (`GET /api/visits`).
//! - [`MockCaseManagement`]: a case-management system that counts what the hub sends it,
//!   as Combine (XML callbacks, deviations and changes of need included) or as Treserva
//!   (SOAP 1.1 calls, each answered).
//!
//! They are a piece of their own, apart from the demo's story, because they are what a
//! vendor-facing mock hub needs too: each is built, routed ([`MockPhoniro::router`],
//! [`MockCaseManagement::combine_router`], [`MockCaseManagement::treserva_router`]) and
//! served ([`serve`]) by its caller, and says what it saw through counters rather than
//! printing anything.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use carehub_model::Clock;
use chrono::{Days, NaiveDate};
use serde_json::{json, Value};

/// A mock Phoniro system: what it does with the orders it gets, and the visits it serves.
pub struct MockPhoniro {
    name: &'static str,
    /// Down: answers 503 to everything.
    down: AtomicBool,
    /// Answers 503 to the first attempt of every fourth order (a flaky gateway).
    flaky: bool,
    seen: Mutex<BTreeSet<String>>,
    /// Orders taken (answered 201) at least once.
    taken: Mutex<BTreeSet<String>>,
    attempts: AtomicUsize,
    orders: AtomicUsize,
    hub_url: Mutex<String>,
    /// Each provider's token (by organisation number), to answer as that provider.
    tokens: BTreeMap<String, String>,
    http: reqwest::Client,
    /// The visits it serves at `GET /api/visits`.
    feed: Mutex<VisitFeed>,
    /// The clock answers are dated by.
    clock: Clock,
    /// Answers owed, each with the day it is sent ([`MockPhoniro::answer_due`]).
    queue: Mutex<Vec<Answer>>,
    /// Answers sent: order, kind, day.
    sent: Mutex<Vec<(String, AnswerKind, NaiveDate)>>,
    changes: AtomicUsize,
    ends: AtomicUsize,
}

impl MockPhoniro {
    /// A Phoniro system configured in the hub as `name`, answering as the providers whose
    /// tokens it holds (by organisation number), on the days `clock` says.
    pub fn new(
        name: &'static str,
        tokens: BTreeMap<String, String>,
        http: reqwest::Client,
        clock: Clock,
    ) -> MockPhoniro {
        MockPhoniro {
            name,
            down: AtomicBool::new(false),
            flaky: false,
            seen: Mutex::new(BTreeSet::new()),
            taken: Mutex::new(BTreeSet::new()),
            attempts: AtomicUsize::new(0),
            orders: AtomicUsize::new(0),
            hub_url: Mutex::new(String::new()),
            tokens,
            http,
            feed: Mutex::new(VisitFeed::default()),
            clock,
            queue: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
            changes: AtomicUsize::new(0),
            ends: AtomicUsize::new(0),
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
            .route("/api/order-changes", post(phoniro_order_change))
            .route("/api/order-ends", post(phoniro_order_change))
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
    // Answers are owed once per order, however often it was delivered.
    let taken = p.taken.lock().map(|mut t| t.insert(id.clone())).unwrap_or(false);
    if taken {
        let answers = Answers::for_order(&order, p.clock.today());
        if let Ok(mut queue) = p.queue.lock() {
            queue.extend(answers);
        }
    }
    StatusCode::CREATED
}

/// `POST /api/order-changes` and `POST /api/order-ends`: taken and counted.
async fn phoniro_order_change(State(p): State<Arc<MockPhoniro>>, body: Bytes) -> StatusCode {
    if p.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    match serde_json::from_slice::<Value>(&body) {
        Ok(v) if v.get("endReason").is_some() => p.ends.fetch_add(1, Ordering::SeqCst),
        Ok(_) => p.changes.fetch_add(1, Ordering::SeqCst),
        Err(_) => return StatusCode::BAD_REQUEST,
    };
    StatusCode::OK
}

/// An answer a mock Phoniro system owes the hub, and the day it sends it.
#[derive(Debug, Clone)]
struct Answer {
    due: NaiveDate,
    order: String,
    org: String,
    kind: AnswerKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerKind {
    Accept,
    Reject,
    Plan,
}

/// How a provider answers an order, by the decision's number (its reference's last digits):
/// most confirm within two days and establish a plan within a fortnight; a decision marked
/// `-LATE-` is never answered; one in ten (numbers ending in 5) is confirmed two days after
/// its execute-by date and planned three days after its plan-due date, on purpose; numbers
/// ending in 0 get no plan; number 7 is turned down.
struct Answers;

impl Answers {
    fn for_order(order: &Value, received: NaiveDate) -> Vec<Answer> {
        let id = order["orderId"].as_str().unwrap_or_default().to_owned();
        let org = order["provider"]["organisationNumber"].as_str().unwrap_or_default().to_owned();
        let reference = order["externalReference"].as_str().unwrap_or_default();
        if reference.contains("-LATE-") {
            return Vec::new();
        }
        let date = |field: &str| order[field].as_str().and_then(|d| d.parse::<NaiveDate>().ok());
        let digits: String = reference.chars().rev().take_while(char::is_ascii_digit).collect();
        let n: u64 = digits.chars().rev().collect::<String>().parse().unwrap_or(1);
        let answer = |due: NaiveDate, kind| Answer { due, order: id.clone(), org: org.clone(), kind };
        let days = |d: NaiveDate, k: u64| d.checked_add_days(Days::new(k)).unwrap_or(d);
        if n == 7 {
            return vec![answer(days(received, 1), AnswerKind::Reject)];
        }
        let (execute_by, plan_due) = (date("executeBy").unwrap_or(received), date("carePlanDue").unwrap_or(received));
        let late = n % 10 == 5;
        let acked = if late { days(execute_by, 2) } else { days(received, n % 3) };
        let mut out = vec![answer(acked, AnswerKind::Accept)];
        if !n.is_multiple_of(10) {
            let planned = if late { days(plan_due, 3) } else { days(acked, 3 + n % 7).min(plan_due) };
            out.push(answer(planned.max(acked), AnswerKind::Plan));
        }
        out
    }
}

impl MockPhoniro {
    /// Sends the answers due by the clock's today (dated now), oldest first; how many.
    pub async fn answer_due(&self) -> usize {
        let today = self.clock.today();
        let due: Vec<Answer> = match self.queue.lock() {
            Ok(mut queue) => {
                let (due, later): (Vec<Answer>, Vec<Answer>) = queue.drain(..).partition(|a| a.due <= today);
                *queue = later;
                due
            }
            Err(_) => Vec::new(),
        };
        for a in &due {
            let body = match a.kind {
                AnswerKind::Accept | AnswerKind::Reject => {
                    let rejected = a.kind == AnswerKind::Reject;
                    let status = if rejected { "REJECTED" } else { "ACCEPTED" };
                    let reason = if rejected { r#","reason":"Ingen kapacitet i området just nu""# } else { "" };
                    format!(
                        r#"{{"type":"orderConfirmation","orderId":"{}","status":"{status}"{reason},"confirmedAt":"{}"}}"#,
                        a.order,
                        self.clock.now().format("%Y-%m-%dT%H:%M:%SZ")
                    )
                }
                AnswerKind::Plan => {
                    format!(r#"{{"type":"carePlanEstablished","orderId":"{}","establishedDate":"{today}"}}"#, a.order)
                }
            };
            self.send(&a.org, body).await;
            if let Ok(mut sent) = self.sent.lock() {
                sent.push((a.order.clone(), a.kind, today));
            }
        }
        due.len()
    }

    /// The days it confirmed (or turned down) and established plans for orders, by order.
    pub fn answered(&self) -> BTreeMap<String, Answered> {
        let mut out: BTreeMap<String, Answered> = BTreeMap::new();
        for (order, kind, on) in self.sent.lock().map(|s| s.clone()).unwrap_or_default() {
            let a = out.entry(order).or_default();
            match kind {
                AnswerKind::Accept | AnswerKind::Reject => a.confirmed = Some(on),
                AnswerKind::Plan => a.planned = Some(on),
            }
        }
        out
    }

    /// Answers still owed (none once the month is played).
    pub fn owed(&self) -> usize {
        self.queue.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// Order changes and order ends it took.
    pub fn changes_and_ends(&self) -> (usize, usize) {
        (self.changes.load(Ordering::SeqCst), self.ends.load(Ordering::SeqCst))
    }
}

/// What a provider answered an order, and when (its Stockholm dates).
#[derive(Debug, Clone, Copy, Default)]
pub struct Answered {
    pub confirmed: Option<NaiveDate>,
    pub planned: Option<NaiveDate>,
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
    deviations: AtomicUsize,
    need_changes: AtomicUsize,
}

impl MockCaseManagement {
    /// As Combine: `POST /carehub/callback` (Kvittens, Genomforandeplan),
    /// `POST /carehub/callback/aterrapportering` (Besok, or a Besoksrapport list) and `GET /`.
    pub fn combine_router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/carehub/callback", post(combine_callback))
            .route("/carehub/callback/aterrapportering", post(combine_visit))
            .route("/carehub/callback/avvikelse", post(combine_report))
            .route("/carehub/callback/bevakning", post(combine_report))
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

    /// Deviation reports (Avvikelse) and changes of need (Bevakning) received.
    pub fn reports(&self) -> (usize, usize) {
        (self.deviations.load(Ordering::SeqCst), self.need_changes.load(Ordering::SeqCst))
    }
}

/// Combine's avvikelse and bevakning callbacks: a provider's report for the case officer.
async fn combine_report(State(c): State<Arc<MockCaseManagement>>, body: Bytes) -> StatusCode {
    let text = String::from_utf8_lossy(&body);
    if text.contains("<Avvikelse") {
        c.deviations.fetch_add(1, Ordering::SeqCst);
    } else if text.contains("<Bevakning") {
        c.need_changes.fetch_add(1, Ordering::SeqCst);
    } else {
        return StatusCode::BAD_REQUEST;
    }
    StatusCode::OK
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

/// Combine's återrapportering: one visit (`Besok`) or a list of them (`Besoksrapport`),
/// each visit counted once (each has one `BesoksId`).
async fn combine_visit(State(c): State<Arc<MockCaseManagement>>, body: Bytes) -> StatusCode {
    let visits = String::from_utf8_lossy(&body).matches("<BesoksId>").count();
    c.visits.fetch_add(visits, Ordering::SeqCst);
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
