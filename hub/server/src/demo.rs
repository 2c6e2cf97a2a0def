//! `carehub demo`: a municipality's month of decisions and visits, end to end, with no setup.
//!
//! The demo starts the real hub on an embedded SQLite file and plays the vendors with small
//! in-process HTTP servers on 127.0.0.1: a Combine case-management system that records the
//! callbacks it gets, and two Phoniro systems that take orders and answer them (confirm,
//! sometimes reject, report plans) by calling the hub back like the real ones would. One
//! Phoniro system is down for the whole batch. Everything travels over loopback HTTP
//! through the public API, and every figure printed is read back from the hub's store.
//!
//! Then the month before this one is played as visits: a tag in every home, NFC check-ins
//! and check-outs by each provider's staff, served by the mock Phoniro systems as a feed the
//! hub pulls by cursor, pushed one by one, and (when OpenSSH's server is installed) left as
//! ParaGå's daily CSV files. The faults are planted: manual registrations with and without
//! a reason, a tag moved between homes, a staff member in two homes at once, declined
//! visits, a visit too long, an unknown tag, a retried push and a page served twice. The
//! demo fails if the hub's figures differ from what it planted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use carehub_core::store::{DeliveryFilter, LogFilter, OrderFilter, Store};
use carehub_model::Clock;
use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::auth::{Auth, Role};
use crate::config::Config;
use crate::{assemble, run};

/// Options of `carehub demo`.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    pub db: Option<PathBuf>,
    pub serve: bool,
    /// The instant the demo's clock starts at (default: the system's now). The hub, the
    /// mock vendors and the demo's own dates all read this clock.
    pub at: Option<chrono::DateTime<chrono::Utc>>,
}

const SECRET: &str = "demo-only-secret-never-use-in-production-0123";

struct Provider {
    org: &'static str,
    name: &'static str,
    system: &'static str,
    decisions: usize,
    /// Its staff ids are `<staff>-sNN`.
    staff: &'static str,
    /// One visit in this many is registered by hand (with a reason).
    manual_every: usize,
}

/// The contracted rate of the demo's providers, kronor per hour (Södertälje's).
const DEMO_RATE_KR: u32 = 390;

/// The provider whose orders go to ParaGå over SFTP.
const SFTP_PROVIDER: &str = "5599000030";

const PROVIDERS: &[Provider] = &[
    Provider {
        org: "5599000014",
        name: "Hemtjänst Norr AB",
        system: "phoniro-norr",
        decisions: 16,
        staff: "norr",
        manual_every: 6,
    },
    Provider {
        org: "5566778899",
        name: "Omsorgshuset i Ekerö AB",
        system: "phoniro-norr",
        decisions: 12,
        staff: "ekero",
        manual_every: 25,
    },
    Provider {
        org: "5560123456",
        name: "Södra Vård & Omsorg AB",
        system: "phoniro-soder",
        decisions: 8,
        staff: "soder",
        manual_every: 30,
    },
];

/// What a mock Phoniro does with the orders it gets.
struct MockPhoniro {
    name: &'static str,
    /// Down: answers 503 to everything.
    down: AtomicBool,
    /// Answers 503 to the first attempt of every fourth order (a flaky gateway).
    flaky: bool,
    seen: Mutex<BTreeSet<String>>,
    attempts: AtomicUsize,
    orders: AtomicUsize,
    hub_url: Mutex<String>,
    tokens: BTreeMap<String, String>,
    http: reqwest::Client,
    /// Answers this mock (and its sibling) still has to send; the demo waits for none.
    inflight: Arc<AtomicUsize>,
    /// The visits it serves at `GET /api/visits`.
    feed: Mutex<VisitFeed>,
    /// The demo's clock: answers are dated by it.
    clock: Clock,
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

impl MockPhoniro {
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

#[derive(Default)]
struct MockCombine {
    acks: AtomicUsize,
    plans: AtomicUsize,
    visits: AtomicUsize,
}

async fn combine_callback(State(c): State<Arc<MockCombine>>, body: Bytes) -> StatusCode {
    let text = String::from_utf8_lossy(&body);
    if text.contains("<Kvittens") {
        c.acks.fetch_add(1, Ordering::SeqCst);
    } else if text.contains("<Genomforandeplan") {
        c.plans.fetch_add(1, Ordering::SeqCst);
    }
    StatusCode::OK
}

/// Combine's återrapportering: a visit report.
async fn combine_visit(State(c): State<Arc<MockCombine>>, body: Bytes) -> StatusCode {
    if String::from_utf8_lossy(&body).contains("<Besok") {
        c.visits.fetch_add(1, Ordering::SeqCst);
    }
    StatusCode::OK
}

/// The mock Treserva: counts the SOAP calls it gets and answers each.
async fn treserva_soap(
    State(c): State<Arc<MockCombine>>,
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

async fn serve_mock(router: Router) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind a mock vendor")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(format!("http://{addr}"))
}

fn config_text(db: &std::path::Path, combine: &str, norr: &str, soder: &str, more: &str) -> String {
    let mut text = format!(
        r#"
[hub]
listen = "127.0.0.1:0"
database = "{db}"

[auth]
jwt_secret = "{SECRET}"

[delivery]
max_attempts = 4
initial_backoff_ms = 40
max_backoff_ms = 400
timeout_ms = 3000

[[systems]]
name = "combine-ekero"
vendor = "combine"
callback_url = "{combine}/carehub/callback"

[[systems]]
name = "phoniro-norr"
vendor = "phoniro"
base_url = "{norr}/api"
visits_poll_seconds = 1
visits_page_size = {FEED_PAGE}

[[systems]]
name = "phoniro-soder"
vendor = "phoniro"
base_url = "{soder}/api"
visits_poll_seconds = 1
visits_page_size = {FEED_PAGE}
"#,
        db = db.display().to_string().replace('\\', "/"),
    );
    for p in PROVIDERS {
        text.push_str(&format!(
            "\n[[providers]]\norg = \"{}\"\nname = \"{}\"\nsystem = \"{}\"\nrate_per_hour = {}\n",
            p.org, p.name, p.system, DEMO_RATE_KR
        ));
    }
    text.push_str(more);
    text
}

fn decision(id: &str, pnr: &str, provider: &str, month: &Month, services: &[(&str, u32)]) -> String {
    let mut s = format!(
        "<Beslut xmlns=\"urn:carehub:vendor:combine:1\">\n  <BeslutsId>{id}</BeslutsId>\n  <Personnummer>{}-{}</Personnummer>\n  <Handlaggare>hl-{}</Handlaggare>\n  <Utforare orgnr=\"{provider}\"/>\n  <GiltigFrom>{}</GiltigFrom><GiltigTom>{}</GiltigTom>\n  <Beslutstidpunkt>{}</Beslutstidpunkt>\n",
        &pnr[..8],
        &pnr[8..],
        100 + id.len() % 7,
        month.first,
        month.valid_to(),
        month.decided_at()
    );
    for (code, minutes) in services {
        s.push_str(&format!("  <Insats kod=\"{code}\"><MinuterPerManad>{minutes}</MinuterPerManad></Insats>\n"));
    }
    s.push_str("</Beslut>\n");
    s
}

/// Clients: Skatteverket's test numbers (shipped in `data/`), people born 1925-1945.
fn clients() -> Vec<&'static str> {
    include_str!("../../../data/skatteverket-testpersonnummer.txt")
        .lines()
        .filter(|l| l.len() == 12 && ("1925".."1946").contains(&&l[..4]))
        .step_by(7)
        .collect()
}

/// Runs the demo.
pub async fn run(options: DemoOptions) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let temp = tempfile::tempdir().context("cannot create a temporary folder")?;
    let db = options.db.clone().unwrap_or_else(|| temp.path().join("carehub-demo.db"));
    let clock = match options.at {
        Some(at) => Clock::starting_at(at),
        None => Clock::starting_at(Clock::system().now()),
    };
    let auth = Auth::new(SECRET, clock.clone());
    let ttl = Duration::from_secs(8 * 3600);
    let tokens: BTreeMap<String, String> = PROVIDERS
        .iter()
        .map(|p| Ok((p.org.to_owned(), auth.issue(p.system, Role::ProviderSystem, Some(p.system), Some(p.org), ttl)?)))
        .collect::<anyhow::Result<_>>()?;
    let http = reqwest::Client::new();
    let inflight = Arc::new(AtomicUsize::new(0));
    let mock = |name: &'static str, flaky: bool, down: bool| {
        Arc::new(MockPhoniro {
            name,
            down: AtomicBool::new(down),
            flaky,
            seen: Mutex::new(BTreeSet::new()),
            attempts: AtomicUsize::new(0),
            orders: AtomicUsize::new(0),
            hub_url: Mutex::new(String::new()),
            tokens: tokens.clone(),
            http: http.clone(),
            inflight: inflight.clone(),
            feed: Mutex::new(VisitFeed::default()),
            clock: clock.clone(),
        })
    };
    let norr = mock("phoniro-norr", true, false);
    let soder = mock("phoniro-soder", false, true);
    let combine = Arc::new(MockCombine::default());
    let combine_url = serve_mock(
        Router::new()
            .route("/carehub/callback", post(combine_callback))
            .route("/carehub/callback/aterrapportering", post(combine_visit))
            .route("/", get(|| async { "combine" }))
            .with_state(combine.clone()),
    )
    .await?;
    let phoniro = |p: &Arc<MockPhoniro>| {
        Router::new()
            .route("/api/orders", post(phoniro_orders))
            .route("/api/visits", get(phoniro_visits))
            .with_state(p.clone())
    };
    let norr_url = serve_mock(phoniro(&norr)).await?;
    let soder_url = serve_mock(phoniro(&soder)).await?;

    let treserva = Arc::new(MockCombine::default());
    let treserva_url =
        serve_mock(Router::new().route("/soap", post(treserva_soap)).with_state(treserva.clone())).await?;
    let mut more = format!(
        "\n[[systems]]\nname = \"treserva-danderyd\"\nvendor = \"treserva\"\nendpoint_url = \"{treserva_url}/soap\"\n"
    );
    // The SFTP pair needs an SSH server; the demo starts one of its own when the machine has
    // OpenSSH's (scripts/test installs it), and says so when it has not.
    let sftp = if crate::fixtures::LocalSshd::available() {
        match (crate::fixtures::LocalSshd::start(), crate::fixtures::LocalSshd::start()) {
            (Ok(procapita), Ok(paraga)) => {
                more.push_str(&format!(
                    "\n[[systems]]\nname = \"procapita-sodertalje\"\nvendor = \"procapita\"\n{}\n\
                     [[systems]]\nname = \"paraga-stockholm\"\nvendor = \"paraga\"\n{}\n\
                     [[providers]]\norg = \"{SFTP_PROVIDER}\"\nname = \"Hemtjänst i Hägersten AB\"\nsystem = \"paraga-stockholm\"\n",
                    procapita.system_keys(&procapita.host_key_sha256),
                    paraga.system_keys(&paraga.host_key_sha256)
                ));
                Some((procapita, paraga))
            }
            _ => None,
        }
    } else {
        None
    };
    let config =
        Config::parse(&config_text(&db, &combine_url, &norr_url, &soder_url, &more), std::path::Path::new("."))
            .map_err(|e| anyhow::anyhow!("the demo configuration is invalid: {e}"))?;
    let runtime = assemble::build(&config, clock.clone())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind the hub")?;
    let hub = run::start(runtime, listener).await?;
    let url = hub.url();
    for p in [&norr, &soder] {
        if let Ok(mut u) = p.hub_url.lock() {
            u.clone_from(&url);
        }
    }
    let store = hub.state.hub.store().clone();

    out!("carehub demo: Ekerö kommun, home care (hemtjänst)");
    out!("");
    out!(
        "  hub            {url}   database {}{}",
        db.display(),
        if options.db.is_none() { " (temporary)" } else { "" }
    );
    out!("  combine-ekero  {combine_url}   case management (mock Combine)");
    out!(
        "  phoniro-norr   {norr_url}   time registration for {} and {} (mock Phoniro, a flaky gateway)",
        PROVIDERS[0].name,
        PROVIDERS[1].name
    );
    out!("  phoniro-soder  {soder_url}   time registration for {} (mock Phoniro, DOWN)", PROVIDERS[2].name);
    out!("  treserva-danderyd {treserva_url}   case management over SOAP 1.1 (mock Treserva)");
    match &sftp {
        Some((p, g)) => {
            out!("  procapita-sodertalje sftp://127.0.0.1:{}   case management, ISO-8859-1 XML files (local OpenSSH)", p.port);
            out!("  paraga-stockholm  sftp://127.0.0.1:{}   time registration, Windows-1252 CSV files (local OpenSSH)", g.port);
        }
        None => out!("  (no SFTP pair: /usr/sbin/sshd is not installed; `apt-get install openssh-server` shows Procapita and ParaGå too)"),
    }
    out!("");

    // 1. Decisions from Combine, over HTTP.
    let run = clock.now().format("%y%m%d%H%M%S").to_string();
    // Decisions valid from the first of last month and decided that day: their orders are
    // active over the whole month of visits played in section 7.
    let month = Month::before(clock.today());
    let clients = clients();
    // Each case-management system has its own token: it may send only as itself.
    let cm_token = auth.issue("combine-ekero", Role::CaseManagement, Some("combine-ekero"), None, ttl)?;
    let treserva_token = auth.issue("treserva-danderyd", Role::CaseManagement, Some("treserva-danderyd"), None, ttl)?;
    let service_sets: [&[(&str, u32)]; 4] = [
        &[("SERV", 480), ("PO", 1800)],
        &[("SERV", 240)],
        &[("PO", 2400), ("MAT", 300), ("LARM", 30)],
        &[("SERV", 360), ("LEDS", 120)],
    ];
    let mut batch: Vec<(String, String)> = Vec::new();
    let mut n = 0usize;
    for p in PROVIDERS {
        for _ in 0..p.decisions {
            n += 1;
            let late = n.is_multiple_of(9);
            let id = if late { format!("DEC-{run}-LATE-{n:03}") } else { format!("DEC-{run}-{n:03}") };
            batch.push((
                format!("decision {id}"),
                decision(&id, clients[n % clients.len()], p.org, &month, service_sets[n % 4]),
            ));
        }
    }
    let good = batch.len();
    let bad_pnr = {
        let c = clients[0];
        let wrong = (c.as_bytes()[11] - b'0' + 1) % 10;
        format!("{}{}", &c[..11], wrong)
    };
    batch.push((
        "a mistyped personal identity number".into(),
        decision(&format!("DEC-{run}-901"), &bad_pnr, PROVIDERS[0].org, &month, service_sets[1]),
    ));
    batch.push((
        "a provider with no contract in Ekerö".into(),
        decision(&format!("DEC-{run}-902"), clients[1], "5599000022", &month, service_sets[1]),
    ));
    batch.push((
        "an unknown service code".into(),
        decision(&format!("DEC-{run}-903"), clients[2], PROVIDERS[0].org, &month, &[("GOLF", 60)]),
    ));
    batch.push((
        "no personal identity number".into(),
        format!("<Beslut xmlns=\"urn:carehub:vendor:combine:1\"><BeslutsId>DEC-{run}-904</BeslutsId><Handlaggare>hl-1</Handlaggare><Utforare orgnr=\"5599000014\"/><GiltigFrom>{}</GiltigFrom><Insats kod=\"SERV\"><MinuterPerManad>60</MinuterPerManad></Insats></Beslut>", month.first),
    ));
    batch.push((
        "a file cut off in transfer".into(),
        decision(&format!("DEC-{run}-905"), clients[3], PROVIDERS[0].org, &month, service_sets[0])[..150].to_owned(),
    ));
    batch.push((
        "an XML bomb (entity expansion)".into(),
        "<?xml version=\"1.0\"?><!DOCTYPE b [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]><Beslut>&b;</Beslut>".into(),
    ));
    batch.push((
        "something that is not a decision".into(),
        "<Faktura xmlns=\"urn:carehub:vendor:combine:1\"><Belopp>1200</Belopp></Faktura>".into(),
    ));
    let repeat = batch[0].1.clone();
    batch.push(("the first decision, sent again".into(), repeat));

    out!(
        "1. Combine sends {} decisions ({} valid, {} with faults, 1 repeat)",
        batch.len(),
        good,
        batch.len() - good - 1
    );
    let mut receipts = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, (what, body)) in batch.into_iter().enumerate() {
        let (http, url, token) = (http.clone(), url.clone(), cm_token.clone());
        // The repeat goes last, after the original is in.
        if i == good + 7 {
            while let Some(r) = tasks.join_next().await {
                receipts.push(r?);
            }
        }
        tasks.spawn(async move {
            let resp = http
                .post(format!("{url}/v1/systems/combine-ekero/messages"))
                .bearer_auth(token)
                .header("content-type", "application/xml")
                .body(body)
                .send()
                .await;
            match resp {
                Ok(r) => (what, r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null)),
                Err(e) => (what, 0, Value::String(e.to_string())),
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        receipts.push(r?);
    }
    receipts.sort_by(|a, b| a.0.cmp(&b.0));
    let accepted = receipts.iter().filter(|r| r.1 == 202).count();
    out!("   accepted and logged before the answer: {accepted}");
    for (what, status, body) in receipts.iter().filter(|r| r.1 != 202) {
        let code = body["code"].as_str().or(body["status"].as_str()).unwrap_or("?");
        out!("   {status} {code:<34} {what}");
    }
    out!("");

    // 2. Deliveries: wait until the outbox has settled (the down provider dead-letters).
    settle(store.as_ref(), &combine, &inflight, Duration::from_secs(30)).await;
    let deliveries = store.deliveries(DeliveryFilter { limit: 10_000, ..DeliveryFilter::default() }).await?;
    let orders_out: Vec<_> = deliveries.iter().filter(|d| d.message_type == "order").collect();
    out!("2. Orders to the providers' systems (one delivery loop: backoff with jitter, one idempotency key per order)");
    for sys in ["phoniro-norr", "phoniro-soder"] {
        let mine: Vec<_> = orders_out.iter().filter(|d| d.system == sys).collect();
        let first = mine.iter().filter(|d| d.state == "delivered" && d.attempts == 1).count();
        let retried = mine.iter().filter(|d| d.state == "delivered" && d.attempts > 1).count();
        let dead = mine.iter().filter(|d| d.state == "dead").count();
        out!(
            "   {sys:<14} {} orders: {first} delivered at once, {retried} after a retry, {dead} dead-lettered",
            mine.len()
        );
    }
    out!("");

    // 3. The outage ends; replay.
    soder.down.store(false, Ordering::SeqCst);
    let requeued = hub.state.hub.replay(None).await?;
    out!("3. phoniro-soder is back; `carehub replay` resends the {} dead letters", requeued.len());
    settle(store.as_ref(), &combine, &inflight, Duration::from_secs(30)).await;
    let after: Vec<_> = store
        .deliveries(DeliveryFilter { limit: 10_000, ..DeliveryFilter::default() })
        .await?
        .into_iter()
        .filter(|d| requeued.iter().any(|r| r.id == d.id))
        .collect();
    out!(
        "   delivered {}, still dead {}; phoniro-soder took {} orders for {} replayed (the idempotency key prevents doubles)",
        after.iter().filter(|d| d.state == "delivered").count(),
        after.iter().filter(|d| d.state == "dead").count(),
        soder.orders.load(Ordering::SeqCst),
        requeued.len()
    );
    out!("");

    // 4. Answers back to Combine.
    let orders = store.orders(OrderFilter { limit: 10_000, ..OrderFilter::default() }).await?;
    let by_status = |s: &str| orders.iter().filter(|o| o.status == s).count();
    out!("4. Providers answer through Phoniro; the hub carries it back to Combine as XML");
    out!(
        "   orders accepted {}, rejected {}, delivered but unanswered {}; plans established {}",
        by_status("accepted"),
        by_status("rejected"),
        by_status("delivered"),
        orders.iter().filter(|o| o.plan_established_on.is_some()).count()
    );
    out!(
        "   Combine received {} acknowledgements (Kvittens) and {} plan notices (Genomforandeplan)",
        combine.acks.load(Ordering::SeqCst),
        combine.plans.load(Ordering::SeqCst)
    );
    out!("");

    // 5. Deadlines.
    let today = clock.today();
    let overdue =
        store.orders(OrderFilter { overdue_on: Some(today), limit: 10_000, ..OrderFilter::default() }).await?;
    let counts = store.overdue_counts(today).await?;
    out!("5. Deadlines (14 days to confirm, 14 days to a plan): GET /v1/orders?overdue=true");
    out!("   not confirmed in time {}, plan missing {}", counts.not_confirmed, counts.plan_missing);
    for o in overdue.iter().take(6) {
        let why = o.overdue_reasons(today).join(", ");
        let provider = PROVIDERS.iter().find(|p| p.org == o.order.provider.as_str()).map(|p| p.name).unwrap_or("?");
        out!(
            "   {}  {:<26} execute by {}  plan due {}  {why}",
            o.order.id,
            provider,
            o.order.execute_by,
            o.order.plan_due
        );
    }
    if overdue.len() > 6 {
        out!("   ... and {} more", overdue.len() - 6);
    }
    out!("");

    // 6. More vendors: Treserva over SOAP, and the SFTP pair.
    out!("6. Other vendors, through the same mapping engine and delivery loop");
    let mut soap_ok = 0;
    let mut soap_fault = None;
    for i in 0..4 {
        let pnr = if i == 3 { bad_pnr.clone() } else { clients[(20 + i) % clients.len()].to_owned() };
        let body = format!(
            "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:tre=\"urn:carehub:vendor:treserva:1\"><soapenv:Body>\
             <tre:RegistreraBeslut><tre:Beslut><tre:Id>TRE-{run}-{i}</tre:Id><tre:Klient><tre:Personnr>{pnr}</tre:Personnr></tre:Klient>\
             <tre:Handlaggare>anna.l</tre:Handlaggare><tre:Utforare><tre:Orgnr>{}</tre:Orgnr></tre:Utforare><tre:Period><tre:From>{}</tre:From></tre:Period><tre:Beslutsdatum>{}</tre:Beslutsdatum>\
             <tre:Insatser><tre:Insats><tre:Kod>HT-PO</tre:Kod><tre:Tid>1200</tre:Tid></tre:Insats></tre:Insatser></tre:Beslut></tre:RegistreraBeslut></soapenv:Body></soapenv:Envelope>",
            PROVIDERS[i % 2].org,
            month.first,
            month.decided_at()
        );
        let resp = http
            .post(format!("{url}/v1/systems/treserva-danderyd/messages"))
            .bearer_auth(&treserva_token)
            .header("content-type", "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await?;
        let ok = resp.status().is_success();
        let text = resp.text().await.unwrap_or_default();
        if ok {
            soap_ok += 1;
        } else if let Some(code) = text.split("<hub:code>").nth(1).and_then(|t| t.split('<').next()) {
            soap_fault = Some(code.to_owned());
        }
    }
    settle(store.as_ref(), &treserva, &inflight, Duration::from_secs(30)).await;
    out!(
        "   treserva-danderyd (SOAP): {soap_ok} decisions answered RegistreraBeslutResponse, 1 answered with a SOAP fault {}",
        soap_fault.as_deref().unwrap_or("?")
    );
    out!(
        "   treserva-danderyd got {} TaEmotKvittens and {} TaEmotGenomforandeplan calls back",
        treserva.acks.load(Ordering::SeqCst),
        treserva.plans.load(Ordering::SeqCst)
    );
    if let Some((procapita, paraga)) = &sftp {
        sftp_pair(procapita, paraga, &clients, &run, &month, store.as_ref(), &clock).await?;
    }
    out!("");

    // 7. A month of visits.
    let visits = VisitRun {
        http: &http,
        url: &url,
        cm_token: &cm_token,
        tokens: &tokens,
        store: store.as_ref(),
        month,
        feeds: [("phoniro-norr", norr.as_ref()), ("phoniro-soder", soder.as_ref())],
        paraga: sftp.as_ref().map(|(_, g)| g),
        procapita: sftp.as_ref().map(|(p, _)| p),
        combine: &combine,
        treserva: &treserva,
    };
    let planted = visits.play().await?;
    for p in &planted {
        out!("   MISMATCH {p}");
    }
    out!("");

    // 8. Invoices.
    let styles = [
        crate::demo_invoices::Style::Honest,
        crate::demo_invoices::Style::OverBilling,
        crate::demo_invoices::Style::NoPlanClaim,
    ];
    let billers: Vec<crate::demo_invoices::Biller> = PROVIDERS
        .iter()
        .zip(styles)
        .map(|(p, style)| crate::demo_invoices::Biller {
            org: p.org,
            name: p.name,
            system: p.system,
            rate: i64::from(DEMO_RATE_KR) * 100,
            style,
        })
        .collect();
    crate::demo_invoices::InvoiceRun {
        http: &http,
        url: &url,
        tokens: &tokens,
        reader: &cm_token,
        store: store.as_ref(),
        first: month.first,
        last: month.last,
    }
    .play(&billers)
    .await?;
    out!("");

    // 9. The log.
    let report = carehub_core::store::verify_chain(store.as_ref()).await?;
    let rejected =
        store.log_entries(LogFilter { status: Some("rejected".into()), limit: 10_000, ..LogFilter::default() }).await?;
    out!(
        "9. The message log: {} entries, hash-chained; {} rejections kept with their codes",
        report.entries,
        rejected.len()
    );
    match &report.first_bad {
        None => out!("   audit verify: ok, head {}", &report.head[..16]),
        Some((seq, why)) => out!("   audit verify: FAILED at entry {seq}: {why}"),
    }
    out!("");
    out!("done in {:.1} s", started.elapsed().as_secs_f64());

    if options.serve {
        let admin = auth.issue("demo-admin", Role::Admin, None, None, ttl)?;
        out!("");
        out!("The hub keeps running at {url} (Ctrl-C stops it). An admin token:");
        out!("  export TOKEN={admin}");
        out!("  curl -s -H \"Authorization: Bearer $TOKEN\" '{url}/v1/orders?overdue=true'");
        out!(
            "  curl -s -H \"Authorization: Bearer $TOKEN\" {url}/v1/orders/{}/trace",
            orders.first().map(|o| o.order.id.as_str()).unwrap_or("O-...")
        );
        out!("  curl -s {url}/metrics");
        let _ = tokio::signal::ctrl_c().await;
    } else if options.db.is_none() {
        out!("(the temporary database is removed now; `carehub demo --db FILE` keeps it, `--serve` keeps the hub up)");
    }
    hub.stop().await;
    drop(temp);
    anyhow::ensure!(
        planted.is_empty(),
        "the hub's visit figures differ from what the demo planted:\n  {}",
        planted.join("\n  ")
    );
    Ok(if report.first_bad.is_none() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Waits until nothing is pending in the outbox, no mock provider still has an answer to
/// send, and the case-management mock's callbacks stop changing.
async fn settle(store: &dyn Store, combine: &MockCombine, inflight: &AtomicUsize, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut quiet = 0;
    let mut last = (usize::MAX, usize::MAX);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let pending = store.outbox_counts().await.map(|c| c.pending).unwrap_or(1);
        let now = (combine.acks.load(Ordering::SeqCst), combine.plans.load(Ordering::SeqCst));
        if pending == 0 && inflight.load(Ordering::SeqCst) == 0 && now == last {
            quiet += 1;
            if quiet >= 4 {
                return;
            }
        } else {
            quiet = 0;
        }
        last = now;
    }
}

/// The SFTP pair: Procapita leaves ISO-8859-1 decision files; the hub takes them, orders
/// go to ParaGå as Windows-1252 CSV files; the demo plays ParaGå and answers with a CSV
/// file; the answers reach Procapita as files.
async fn sftp_pair(
    procapita: &crate::fixtures::LocalSshd,
    paraga: &crate::fixtures::LocalSshd,
    clients: &[&str],
    run: &str,
    month: &Month,
    store: &dyn Store,
    clock: &Clock,
) -> anyhow::Result<()> {
    use carehub_core::mapping::text;
    let latin1 = text::encoding("iso-8859-1").context("ISO-8859-1")?;
    let cp1252 = text::encoding("windows-1252").context("Windows-1252")?;
    for i in 0..3 {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<Biståndsbeslut xmlns=\"urn:carehub:vendor:procapita:1\">\n\
             <Beslutsnummer>PC-{run}-{i}</Beslutsnummer><Brukare><Personnummer>{}</Personnummer></Brukare>\n\
             <Handläggare signatur=\"ÅÖB\"/><Utförare><Organisationsnummer>{SFTP_PROVIDER}</Organisationsnummer></Utförare>\n\
             <Giltighet från=\"{}\"/><Beslutsdag>{} 09:00</Beslutsdag><Insatser><Insats typ=\"Personlig omvårdnad\" minuterPerMånad=\"1500\"/>\
             <Insats typ=\"Måltider\" minuterPerMånad=\"300\"/></Insatser>\n</Biståndsbeslut>\n",
            clients[(40 + i) % clients.len()],
            month.first.format("%Y%m%d"),
            month.first
        );
        procapita
            .drop_file(&format!("beslut-{i}.xml"), &text::encode(&xml, latin1).map_err(|e| anyhow::anyhow!("{e}"))?)?;
    }
    procapita
        .drop_file("beslut-trasig.xml", b"<Bist\xe5ndsbeslut xmlns=\"urn:carehub:vendor:procapita:1\"><Besluts")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let until = |done: &dyn Fn() -> bool| {
        let ok = done();
        async move {
            if !ok {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ok
        }
    };
    let order_rows = || -> Vec<String> {
        let mut ids: Vec<String> = paraga
            .files("outbox")
            .iter()
            .filter(|f| f.starts_with("uppdrag-"))
            .filter_map(|f| std::fs::read(paraga.root.join("outbox").join(f)).ok())
            .filter_map(|bytes| text::decode(&bytes, cp1252).ok().map(|t| t.into_owned()))
            .flat_map(|csv| {
                csv.lines().skip(1).filter_map(|row| row.split(';').next().map(str::to_owned)).collect::<Vec<_>>()
            })
            .filter(|id| !id.is_empty())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    // Three files taken and archived, the broken one refused with its reason, four
    // receipts uploaded, three orders in ParaGå's file.
    let settled = || {
        procapita.files("archive").len() >= 3
            && procapita.files("error").len() >= 2
            && procapita.files("outbox").iter().filter(|f| f.starts_with("kvitto-")).count() >= 4
            && order_rows().len() >= 3
    };
    while !until(&settled).await {
        anyhow::ensure!(Instant::now() < deadline, "the Procapita files were not all taken in time");
    }
    out!(
        "   procapita-sodertalje (SFTP): {} files archived, {} refused into the error folder with a reason file, {} receipts uploaded",
        procapita.files("archive").len(),
        procapita.files("error").iter().filter(|f| !f.ends_with(".reason.txt")).count(),
        procapita.files("outbox").iter().filter(|f| f.starts_with("kvitto-")).count()
    );
    // Play ParaGå: read each order file, answer all in one CSV file.
    let mut answer = String::from("Uppdragsid;Status;Orsak;Tidpunkt\r\n");
    let ids = order_rows();
    let orders = ids.len();
    for order in ids {
        answer.push_str(&format!("{order};Accepterad;;{}\r\n", clock.now().format("%Y-%m-%d %H:%M")));
    }
    paraga.drop_file("svar.csv", &text::encode(&answer, cp1252).map_err(|e| anyhow::anyhow!("{e}"))?)?;
    out!("   paraga-stockholm (SFTP): {orders} orders in the day's CSV file (Windows-1252, a row per service); ParaGå answered with one CSV file");
    while !until(&|| procapita.files("outbox").iter().filter(|f| f.starts_with("verkstallighet-")).count() >= orders)
        .await
    {
        anyhow::ensure!(Instant::now() < deadline, "the answers did not reach Procapita");
    }
    let accepted = store
        .orders(OrderFilter {
            provider: Some(SFTP_PROVIDER.into()),
            status: Some("accepted".into()),
            limit: 100,
            ..OrderFilter::default()
        })
        .await?
        .len();
    out!(
        "   procapita-sodertalje got {} Verkställighet files (ISO-8859-1) for {accepted} accepted orders",
        procapita.files("outbox").iter().filter(|f| f.starts_with("verkstallighet-")).count()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A month of visits

/// The calendar month the demo's visits fall in: the last complete one before today
/// (Stockholm), so every visit is in the past whatever day the demo runs. The demo's
/// decisions are valid from its first day and decided on it, so their orders are active
/// over the whole month.
#[derive(Debug, Clone, Copy)]
struct Month {
    first: NaiveDate,
    last: NaiveDate,
}

impl Month {
    fn before(today: NaiveDate) -> Month {
        let this = today.with_day(1).unwrap_or(today);
        let last = this.pred_opt().unwrap_or(this);
        Month { first: last.with_day(1).unwrap_or(last), last }
    }

    /// `YYYY-MM`, as the API wants it.
    fn label(&self) -> String {
        self.first.format("%Y-%m").to_string()
    }

    fn days(&self) -> impl Iterator<Item = NaiveDate> {
        let last = self.last;
        self.first.iter_days().take_while(move |d| *d <= last)
    }

    /// A decision's last valid day: a year on.
    fn valid_to(&self) -> NaiveDate {
        self.first.checked_add_months(Months::new(12)).and_then(|d| d.pred_opt()).unwrap_or(self.last)
    }

    /// When the demo's decisions were made: 09:00 on the first day, Stockholm time.
    fn decided_at(&self) -> String {
        rfc3339(stockholm(self.first, 9 * 60))
    }

    /// The `n`th day of the month (1-based), or its last.
    fn day(&self, n: u64) -> NaiveDate {
        self.first.checked_add_days(Days::new(n.saturating_sub(1))).filter(|d| *d <= self.last).unwrap_or(self.last)
    }
}

/// A Stockholm wall-clock time (minutes after midnight on `day`) as an instant.
fn stockholm(day: NaiveDate, minutes: i64) -> DateTime<Utc> {
    let local = day.and_time(NaiveTime::MIN) + chrono::Duration::minutes(minutes);
    carehub_model::MUNICIPAL_TZ
        .from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&local))
}

/// RFC 3339 with Stockholm's offset, as Phoniro and Combine write times.
fn rfc3339(at: DateTime<Utc>) -> String {
    at.with_timezone(&carehub_model::MUNICIPAL_TZ).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// Visits per page of the mock Phoniro feed (the hub asks for this many).
const FEED_PAGE: usize = 200;

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

/// A provider whose visits the demo plays.
struct VisitProvider {
    org: &'static str,
    name: &'static str,
    system: &'static str,
    /// Staff ids are `<staff>-sNN` (pseudonymous, as the systems send them).
    staff: &'static str,
    /// One visit in this many is registered by hand, with a reason.
    manual_every: usize,
    /// Its clients' personal identity numbers: one home, one tag each.
    clients: Vec<String>,
}

/// How a registration at the door was made.
#[derive(Debug, Clone)]
enum Reg {
    Nfc(String),
    Manual(Option<&'static str>),
}

/// How a visit reaches the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// A page of Phoniro's feed, pulled by the hub.
    Feed,
    /// Pushed by Phoniro as it was registered.
    Push,
    /// A row of ParaGå's daily file.
    File,
}

/// One visit the demo plants, with the codes the hub should give it.
#[derive(Debug, Clone)]
struct Planned {
    id: String,
    provider: usize,
    client: String,
    staff: String,
    day: NaiveDate,
    start: DateTime<Utc>,
    minutes: i64,
    planned: i64,
    /// Index into [`ACTIVITIES`].
    activity: usize,
    reg: Reg,
    declined: bool,
    channel: Channel,
    codes: Vec<&'static str>,
}

impl Planned {
    fn end(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::minutes(self.minutes)
    }

    fn plain(&self) -> bool {
        matches!(self.reg, Reg::Nfc(_)) && !self.declined && self.codes.is_empty()
    }

    fn manual(&self) -> bool {
        matches!(self.reg, Reg::Manual(_)) || self.codes.contains(&"VIS001")
    }

    fn outcome(&self) -> &'static str {
        if self.codes.iter().any(|c| *c != "VIS001") {
            "rejected"
        } else if self.manual() || self.declined {
            "flagged"
        } else {
            "accepted"
        }
    }

    /// As Phoniro sends it: a feed page's element, or with `"type": "visit"` when pushed.
    fn phoniro(&self, org: &str) -> Value {
        let reg = |at: DateTime<Utc>| {
            let mut r = json!({"time": rfc3339(at)});
            match &self.reg {
                Reg::Nfc(tag) => {
                    r["method"] = json!("NFC");
                    r["tagUid"] = json!(tag);
                }
                Reg::Manual(reason) => {
                    r["method"] = json!("MANUAL");
                    if let Some(why) = reason {
                        r["reason"] = json!(why);
                    }
                }
            }
            r
        };
        let mut v = json!({
            "visitId": self.id, "provider": {"organisationNumber": org},
            "client": {"personalIdentityNumber": self.client}, "staffId": self.staff,
            "checkIn": reg(self.start), "checkOut": reg(self.end()), "plannedMinutes": self.planned,
            "activities": [ACTIVITIES[self.activity % ACTIVITIES.len()].0],
            "status": if self.declined { "DECLINED" } else { "PERFORMED" }, "doubleStaffing": false
        });
        if self.channel == Channel::Push {
            v["type"] = json!("visit");
        }
        v
    }

    /// As a row of ParaGå's daily file (local times; a Gick before Kom is the next day).
    fn paraga_row(&self) -> String {
        let tz = carehub_model::MUNICIPAL_TZ;
        let (kom, gick) = (self.start.with_timezone(&tz), self.end().with_timezone(&tz));
        let (tag, registration) = match &self.reg {
            Reg::Nfc(tag) => (tag.as_str(), "NFC".to_owned()),
            Reg::Manual(Some(why)) => ("", format!("Manuell:{why}")),
            Reg::Manual(None) => ("", "Manuell".to_owned()),
        };
        format!(
            "{};{};{};{};{tag};{registration};{};{};{}\r\n",
            self.client,
            kom.format("%Y-%m-%d"),
            kom.format("%H:%M"),
            gick.format("%H:%M"),
            ACTIVITIES[self.activity % ACTIVITIES.len()].1,
            if self.declined { "Avböjd" } else { "Utförd" },
            self.staff
        )
    }
}

/// What staff do at a visit: Phoniro's activity code and ParaGå's service code.
const ACTIVITIES: [(&str, &str); 3] = [("CARE", "OMV"), ("MEAL", "MAT"), ("SERVICE", "SERV")];

/// Why a registration was made by hand, as staff write it.
const REASONS: [&str; 6] = [
    "Taggen saknas",
    "Telefonen laddade ur",
    "Taggen gick inte att läsa",
    "Ny personal, appen inte aktiverad",
    "Taggen sitter bakom en garderob",
    "Mobilen glömd på kontoret",
];

/// The visit rules' codes with what each means, for the summary.
const CODES: [(&str, &str); 10] = [
    ("VIS001", "tag unknown: flagged, counted as a manual registration"),
    ("VIS002", "tag registered to another client on the visit date: rejected"),
    ("VIS003", "check-out before check-in, or none 12 hours after: rejected"),
    ("VIS004", "shorter than a minute or longer than 8 hours: rejected"),
    ("VIS005", "the same staff member in two homes at once: the later one rejected"),
    ("VIS006", "in the future, or in a closed month: rejected"),
    ("VIS007", "a copy of a visit already received: not stored again"),
    ("VIS008", "a manual registration without a reason: rejected"),
    ("VIS009", "no active order for the client at the provider that day: rejected"),
    ("VIS010", "the client's identity is not valid: rejected"),
];

/// The tags in the homes: one each, and one moved to another home mid-month.
struct Tags {
    /// Each client's home tag, from the month's first day.
    home: BTreeMap<String, String>,
    moved: Option<TagMove>,
}

/// A tag registered again for another home from `on`; its old home gets `new_tag`. Staff
/// at the old home keep reading the old tag for a while (VIS002).
struct TagMove {
    tag: String,
    from: String,
    to: String,
    on: NaiveDate,
    new_tag: String,
}

impl Tags {
    /// A tag in every home the providers visit; one moves on the 15th, between two homes
    /// only the first provider visits.
    fn for_homes(providers: &[VisitProvider], month: &Month) -> Tags {
        let homes: BTreeSet<&String> = providers.iter().flat_map(|p| p.clients.iter()).collect();
        let home: BTreeMap<String, String> =
            homes.iter().enumerate().map(|(i, c)| ((*c).clone(), format!("04D3{:06X}1C80", i + 1))).collect();
        let only_first: Vec<&String> = match providers {
            [first, others @ ..] => {
                first.clients.iter().filter(|c| !others.iter().any(|o| o.clients.contains(c))).collect()
            }
            [] => Vec::new(),
        };
        let moved = match only_first.as_slice() {
            [_, from, to, ..] => home.get(*from).map(|tag| TagMove {
                tag: tag.clone(),
                from: (*from).clone(),
                to: (*to).clone(),
                on: month.day(15),
                new_tag: "04D4000001A2B3".to_owned(),
            }),
            _ => None,
        };
        Tags { home, moved }
    }

    /// What the municipality registers: (tag, client, installed on).
    fn registrations(&self, month: &Month) -> Vec<(String, String, NaiveDate)> {
        let mut all: Vec<(String, String, NaiveDate)> =
            self.home.iter().map(|(c, t)| (t.clone(), c.clone(), month.first)).collect();
        if let Some(m) = &self.moved {
            all.push((m.tag.clone(), m.to.clone(), m.on));
            all.push((m.new_tag.clone(), m.from.clone(), m.on));
        }
        all
    }

    /// The tag hanging in `client`'s home on `day`.
    fn at(&self, client: &str, day: NaiveDate) -> String {
        match &self.moved {
            Some(m) if m.from == client && day >= m.on => m.new_tag.clone(),
            _ => self.home.get(client).cloned().unwrap_or_default(),
        }
    }
}

/// The month of visits the demo sends, with what the hub should make of it.
struct VisitPlan {
    visits: Vec<Planned>,
    /// Phoniro systems' feeds, in the order they serve them.
    feeds: BTreeMap<&'static str, Vec<Planned>>,
    /// The id of the push that is sent twice.
    retried: Option<String>,
}

impl VisitPlan {
    /// Draws a month: each client 1-3 visits a day of 20-60 minutes by a small staff pool,
    /// each staff member's day one visit after another, then the faults.
    fn draw(providers: &[VisitProvider], tags: &Tags, month: &Month) -> VisitPlan {
        let mut rng = fastrand::Rng::with_seed(2026);
        let mut visits: Vec<Planned> = Vec::new();
        let mut n = 0usize;
        let yymm = month.first.format("%y%m").to_string();
        for (pi, p) in providers.iter().enumerate() {
            let pool = p.clients.len().div_ceil(4) + 1;
            let paraga = p.system == "paraga-stockholm";
            for day in month.days() {
                // Minutes after midnight each staff member is free again.
                let mut free = vec![6 * 60 + 45; pool];
                let turn = day.ordinal0() as usize;
                for (slot, slot_start) in [(0usize, 7 * 60), (1, 11 * 60 + 30), (2, 17 * 60)] {
                    for k in 0..p.clients.len() {
                        let ci = (k + turn) % p.clients.len();
                        let per_day = [2usize, 1, 3, 2, 3, 1][ci % 6];
                        let visited = match per_day {
                            1 => slot == 0,
                            2 => slot != 1,
                            _ => true,
                        };
                        if !visited {
                            continue;
                        }
                        let s = (0..pool).min_by_key(|s| (free[*s], *s)).unwrap_or(0);
                        let start = i64::max(free[s], slot_start) + rng.i64(0..10);
                        let planned = 5 * rng.i64(4..=12);
                        let minutes = planned + rng.i64(-4..=4);
                        free[s] = start + minutes + rng.i64(5..=15);
                        n += 1;
                        visits.push(Planned {
                            id: format!("V-{yymm}-{n:05}"),
                            provider: pi,
                            client: p.clients[ci].clone(),
                            staff: format!("{}-s{:02}", p.staff, s + 1),
                            day,
                            start: stockholm(day, start),
                            minutes,
                            planned,
                            activity: match slot {
                                0 => 0,
                                1 => 1,
                                _ => 2 * (ci % 2),
                            },
                            reg: Reg::Nfc(tags.at(&p.clients[ci], day)),
                            declined: false,
                            channel: if paraga {
                                Channel::File
                            } else if day == month.last {
                                Channel::Push
                            } else {
                                Channel::Feed
                            },
                            codes: Vec::new(),
                        });
                    }
                }
            }
        }
        // Manual registrations with a reason (one in `manual_every` per provider, at a
        // random place in each run of that many) and a few visits declined at the door.
        for (pi, p) in providers.iter().enumerate() {
            let mine: Vec<usize> = (0..visits.len()).filter(|i| visits[*i].provider == pi).collect();
            for (b, block) in mine.chunks(p.manual_every.max(2)).enumerate() {
                if block.len() == p.manual_every.max(2) {
                    let i = block[rng.usize(0..block.len())];
                    visits[i].reg = Reg::Manual(Some(REASONS[(b + pi) % REASONS.len()]));
                }
            }
            for block in mine.chunks(90) {
                if let Some(&i) = block.get(rng.usize(0..90)) {
                    if visits[i].plain() {
                        visits[i].declined = true;
                        visits[i].minutes = rng.i64(2..=4);
                    }
                }
            }
        }
        let pick = |visits: &[Planned], provider: usize, channel: Channel, from: NaiveDate| {
            visits.iter().position(|v| v.provider == provider && v.channel == channel && v.day >= from && v.plain())
        };
        let plant = |visits: &mut Vec<Planned>, at: Option<usize>, code: &'static str, reg: Option<Reg>| {
            if let Some(v) = at.and_then(|i| visits.get_mut(i)) {
                v.codes.push(code);
                if let Some(r) = reg {
                    v.reg = r;
                }
            }
        };
        // VIS008: by hand without a reason, once in each channel.
        let phoniro_last = providers.iter().rposition(|p| p.system != "paraga-stockholm");
        let paraga = providers.iter().position(|p| p.system == "paraga-stockholm");
        let at = pick(&visits, 0, Channel::Feed, month.day(7));
        plant(&mut visits, at, "VIS008", Some(Reg::Manual(None)));
        if let Some(pi) = phoniro_last {
            let at = pick(&visits, pi, Channel::Push, month.last);
            plant(&mut visits, at, "VIS008", Some(Reg::Manual(None)));
        }
        if let Some(pi) = paraga {
            let at = pick(&visits, pi, Channel::File, month.day(13));
            plant(&mut visits, at, "VIS008", Some(Reg::Manual(None)));
        }
        // VIS001: a tag nobody registered (a spare from the drawer), at two providers.
        for (k, (pi, on)) in [(1usize, 4u64), (2, 8)].into_iter().enumerate() {
            if pi < providers.len() {
                let at = pick(&visits, pi, Channel::Feed, month.day(on));
                plant(&mut visits, at, "VIS001", Some(Reg::Nfc(format!("04EE{:06X}5A81", k + 1))));
            }
        }
        // VIS002: the moved tag read at its old home after the move, three times.
        if let Some(m) = &tags.moved {
            for _ in 0..3 {
                let at = visits
                    .iter()
                    .position(|v| v.client == m.from && v.day >= m.on && v.channel == Channel::Feed && v.plain());
                plant(&mut visits, at, "VIS002", Some(Reg::Nfc(m.tag.clone())));
            }
        }
        // VIS004: a check-out forgotten until the night (the staff member's last visit that day).
        if providers.len() > 1 {
            let staff = format!("{}-s01", providers[1].staff);
            let at = (10..20).map(|d| month.day(d)).find_map(|day| {
                let last = (0..visits.len())
                    .filter(|i| visits[*i].provider == 1 && visits[*i].staff == staff && visits[*i].day == day)
                    .max_by_key(|i| visits[*i].start)?;
                (visits[last].plain() && visits[last].channel == Channel::Feed).then_some(last)
            });
            if let Some(v) = at.and_then(|i| visits.get_mut(i)) {
                v.minutes = 8 * 60 + 30;
                v.codes.push("VIS004");
            }
        }
        // VIS005: a staff member registered in a second home while in the first; the second
        // visit reaches the hub later (at the end of the feed).
        let mut extras = Vec::new();
        for (pi, on) in [(0usize, 5u64), (2, 9)] {
            let Some(p) = providers.get(pi) else { continue };
            let moved_from = tags.moved.as_ref().map(|m| m.from.as_str());
            let original = visits.iter().find(|v| {
                v.provider == pi
                    && v.channel == Channel::Feed
                    && v.day >= month.day(on)
                    && v.plain()
                    && v.minutes >= 30
                    && Some(v.client.as_str()) != moved_from
            });
            let Some(original) = original else { continue };
            let Some(other) = p.clients.iter().find(|c| **c != original.client && Some(c.as_str()) != moved_from)
            else {
                continue;
            };
            n += 1;
            extras.push(Planned {
                id: format!("V-{yymm}-{n:05}"),
                client: other.clone(),
                start: original.start + chrono::Duration::minutes(10),
                minutes: 15,
                planned: 15,
                reg: Reg::Nfc(tags.at(other, original.day)),
                codes: vec!["VIS005"],
                ..original.clone()
            });
        }
        let mut feeds: BTreeMap<&'static str, Vec<Planned>> = BTreeMap::new();
        for v in visits.iter().filter(|v| v.channel == Channel::Feed) {
            feeds.entry(providers[v.provider].system).or_default().push(v.clone());
        }
        for feed in feeds.values_mut() {
            feed.sort_by_key(|v| v.start);
        }
        for e in &extras {
            feeds.entry(providers[e.provider].system).or_default().push(e.clone());
        }
        visits.extend(extras);
        // The retried push: one of the second provider's pushes, sent twice.
        let retried =
            visits.iter().find(|v| v.channel == Channel::Push && v.provider == 1 && v.plain()).map(|v| v.id.clone());
        VisitPlan { visits, feeds, retried }
    }

    /// Copies the hub should recognise: the retried push and the feed page served twice.
    fn copies(&self) -> usize {
        let replayed = self.feeds.get("phoniro-norr").map_or(0, |f| match f.len() {
            0 => 0,
            n => n - (n - 1) / FEED_PAGE * FEED_PAGE,
        });
        replayed + usize::from(self.retried.is_some())
    }
}

/// What the message log says the hub received from one system.
#[derive(Debug, Default)]
struct Received {
    /// Feed pages (or files) with at least one record, their records, and those made only of copies.
    batches: usize,
    batch_records: usize,
    repeated_batches: usize,
    /// Visits pushed one at a time, and pushes that were copies.
    pushes: usize,
    repeated_pushes: usize,
}

/// Section 7: tags in the homes, a month of visits through the vendors' real paths, and
/// what the hub made of it, read back from the hub and checked against what was planted.
struct VisitRun<'a> {
    http: &'a reqwest::Client,
    url: &'a str,
    cm_token: &'a str,
    tokens: &'a BTreeMap<String, String>,
    store: &'a dyn Store,
    month: Month,
    feeds: [(&'static str, &'a MockPhoniro); 2],
    paraga: Option<&'a crate::fixtures::LocalSshd>,
    procapita: Option<&'a crate::fixtures::LocalSshd>,
    combine: &'a MockCombine,
    treserva: &'a MockCombine,
}

impl VisitRun<'_> {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(self.cm_token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.with_context(|| format!("GET {path}: the answer is not JSON"))?;
        anyhow::ensure!(status.is_success(), "GET {path} answered {status}: {}", body["code"]);
        Ok(body)
    }

    /// The providers whose visits are played, each with the clients it has an order for.
    async fn providers(&self) -> anyhow::Result<Vec<VisitProvider>> {
        let orders = self.store.orders(OrderFilter { limit: 10_000, ..OrderFilter::default() }).await?;
        let mut list: Vec<VisitProvider> = PROVIDERS
            .iter()
            .map(|p| VisitProvider {
                org: p.org,
                name: p.name,
                system: p.system,
                staff: p.staff,
                manual_every: p.manual_every,
                clients: Vec::new(),
            })
            .collect();
        if self.paraga.is_some() {
            list.push(VisitProvider {
                org: SFTP_PROVIDER,
                name: "Hemtjänst i Hägersten AB",
                system: "paraga-stockholm",
                staff: "hagersten",
                manual_every: 20,
                clients: Vec::new(),
            });
        }
        for p in &mut list {
            let clients: BTreeSet<String> = orders
                .iter()
                .filter(|o| o.order.provider.as_str() == p.org && o.ack_status.as_deref() != Some("rejected"))
                .map(|o| o.order.client.expose().to_owned())
                .collect();
            p.clients = clients.into_iter().collect();
        }
        list.retain(|p| !p.clients.is_empty());
        Ok(list)
    }

    /// Registers the tags as the municipality does, through `POST /v1/tags`.
    async fn register_tags(&self, tags: &Tags) -> anyhow::Result<()> {
        for (tag, client, on) in tags.registrations(&self.month) {
            let resp = self
                .http
                .post(format!("{}/v1/tags", self.url))
                .bearer_auth(self.cm_token)
                .json(&json!({"tag_uid": tag, "client": client, "installed_on": on}))
                .send()
                .await
                .context("POST /v1/tags")?;
            let status = resp.status();
            if status != StatusCode::CREATED {
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                anyhow::bail!("POST /v1/tags for tag {tag} answered {status}: {}", body["code"]);
            }
        }
        Ok(())
    }

    /// Pushes one visit as its provider's Phoniro system does.
    async fn push(&self, v: &Planned, p: &VisitProvider) -> anyhow::Result<()> {
        let token = self.tokens.get(p.org).with_context(|| format!("no token for provider {}", p.org))?;
        let resp = self
            .http
            .post(format!("{}/v1/systems/{}/messages", self.url, p.system))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(v.phoniro(p.org).to_string())
            .send()
            .await
            .with_context(|| format!("pushing visit {} to {}", v.id, p.system))?;
        let status = resp.status();
        if status != StatusCode::ACCEPTED && status != StatusCode::OK {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            anyhow::bail!("the push of visit {} answered {status}: {}", v.id, body["code"]);
        }
        Ok(())
    }

    /// Every visit result in the log of visit messages from `system`, by message.
    async fn results(&self, system: &str) -> anyhow::Result<(Received, Vec<Value>)> {
        let mut got = Received::default();
        let mut all = Vec::new();
        for kind in ["visits", "visit"] {
            let filter = LogFilter {
                system: Some(system.to_owned()),
                message_type: Some(kind.to_owned()),
                limit: 10_000,
                ..LogFilter::default()
            };
            for entry in self.store.log_entries(filter).await?.into_iter().filter(|e| e.direction == "in") {
                let canonical: Value =
                    entry.canonical.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or(Value::Null);
                let results = canonical["results"].as_array().cloned().unwrap_or_default();
                if results.is_empty() {
                    continue;
                }
                let copies = results.iter().all(|r| r["duplicate_of"].is_string());
                if kind == "visits" {
                    got.batches += 1;
                    got.batch_records += results.len();
                    got.repeated_batches += usize::from(copies);
                } else {
                    got.pushes += results.len();
                    got.repeated_pushes += usize::from(copies);
                }
                all.extend(results);
            }
        }
        Ok((got, all))
    }

    /// Waits until the hub has taken `want` visit records from `systems`.
    async fn wait_received(&self, systems: &[&str], want: usize, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let mut got = 0;
            for s in systems {
                got += self.results(s).await?.1.len();
            }
            if got >= want {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the hub took {got} of the {want} visit records sent within {} s \
                 (Phoniro's feed is pulled and ParaGå's inbox polled every second)",
                limit.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no visit waits to be reported and the outbox is empty.
    async fn wait_forwarded(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let mut quiet = 0;
        loop {
            let waiting = usize::from(self.store.visits_to_report(1).await?.through.is_some());
            let pending = self.store.outbox_counts().await?.pending;
            if waiting == 0 && pending == 0 {
                quiet += 1;
                if quiet >= 3 {
                    return Ok(());
                }
            } else {
                quiet = 0;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "visit reports were still on their way to the case-management systems after {} s \
                 ({waiting} visits waiting, {pending} deliveries pending)",
                limit.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Plays the month; prints what the hub made of it; returns where that differs from
    /// what was planted.
    async fn play(&self) -> anyhow::Result<Vec<String>> {
        let month = self.month;
        let label = month.label();
        out!(
            "7. Visits in {}: NFC tags at the door, through Phoniro's feed (pulled by cursor), Phoniro's pushes and ParaGå's daily files",
            month.first.format("%B %Y")
        );
        let earlier = self.get(&format!("/v1/visits?month={label}&limit=1")).await?;
        if earlier["visits"].as_array().is_some_and(|v| !v.is_empty()) {
            out!("   the database already holds visits for {label} from an earlier run; they are not played again");
            return Ok(Vec::new());
        }
        let providers = self.providers().await?;
        let tags = Tags::for_homes(&providers, &month);
        self.register_tags(&tags).await?;
        let plan = VisitPlan::draw(&providers, &tags, &month);

        // Deliver: the feeds first (the hub pulls them within a second), then the pushes
        // and ParaGå's files while the pulls run.
        for (system, mock) in &self.feeds {
            let visits: Vec<Value> = plan
                .feeds
                .get(system)
                .map(|f| f.iter().map(|v| v.phoniro(providers[v.provider].org)).collect())
                .unwrap_or_default();
            if let Ok(mut feed) = mock.feed.lock() {
                feed.replay_last = *system == "phoniro-norr";
                feed.visits = visits;
            }
        }
        let mut pushes: Vec<&Planned> = plan.visits.iter().filter(|v| v.channel == Channel::Push).collect();
        pushes.sort_by_key(|v| v.start);
        for v in pushes {
            self.push(v, &providers[v.provider]).await?;
            if plan.retried.as_deref() == Some(v.id.as_str()) {
                // The answer was lost on the way back; Phoniro sends the visit again.
                self.push(v, &providers[v.provider]).await?;
            }
        }
        if let Some(paraga) = self.paraga {
            use carehub_core::mapping::text;
            let cp1252 = text::encoding("windows-1252").context("Windows-1252")?;
            let mut days: BTreeMap<NaiveDate, String> = BTreeMap::new();
            for v in plan.visits.iter().filter(|v| v.channel == Channel::File) {
                days.entry(v.day)
                    .or_insert_with(|| {
                        "Personnummer;Datum;Kom;Gick;Taggid;Registrering;Insatser;Utfall;Personal\r\n".into()
                    })
                    .push_str(&v.paraga_row());
            }
            for (day, csv) in days {
                let bytes = text::encode(&csv, cp1252).map_err(|e| anyhow::anyhow!("{e}"))?;
                paraga
                    .drop_file(&format!("besok-{}.csv", day.format("%Y%m%d")), &bytes)
                    .context("cannot drop ParaGå's visit file")?;
            }
        }
        let mut systems: Vec<&str> = providers.iter().map(|p| p.system).collect();
        systems.dedup();
        self.wait_received(&systems, plan.visits.len() + plan.copies(), Duration::from_secs(60)).await?;
        self.wait_forwarded(Duration::from_secs(60)).await?;

        // Everything below is read back from the hub.
        let registered = self.store.tags(None, None).await?;
        let mut per_tag: BTreeMap<&str, Vec<NaiveDate>> = BTreeMap::new();
        for t in &registered {
            per_tag.entry(t.tag_uid.as_str()).or_default().push(t.installed_on);
        }
        let homes: BTreeSet<&str> = registered.iter().map(|t| t.client.expose()).collect();
        let moves: Vec<NaiveDate> =
            per_tag.values().filter(|on| on.len() > 1).filter_map(|on| on.iter().max().copied()).collect();
        out!(
            "   tags: {} registrations of {} tags in {} homes (POST /v1/tags); {} moved to another home{}",
            registered.len(),
            per_tag.len(),
            homes.len(),
            moves.len(),
            moves.first().map(|on| format!(" on {on}")).unwrap_or_default()
        );
        let mut results = Vec::new();
        for system in &systems {
            let (got, all) = self.results(system).await?;
            if *system == "paraga-stockholm" {
                out!(
                    "   {system:<17} {} visit rows in {} daily files (Windows-1252 CSV over SFTP)",
                    got.batch_records,
                    got.batches
                );
            } else {
                let repeated = match got.repeated_batches {
                    0 => String::new(),
                    n => format!(" ({n} served twice)"),
                };
                let retried = match got.repeated_pushes {
                    0 => String::new(),
                    n => format!(" ({n} push retried)"),
                };
                out!(
                    "   {system:<17} {} visit records in {} feed pages{repeated}, {} pushed one at a time{retried}",
                    got.batch_records,
                    got.batches,
                    got.pushes
                );
            }
            results.extend(all);
        }
        let mut stored: Vec<Value> = Vec::new();
        let mut after = 0i64;
        loop {
            let page = self.get(&format!("/v1/visits?month={label}&limit=10000&after={after}")).await?;
            stored.extend(page["visits"].as_array().cloned().unwrap_or_default());
            match page["next_after"].as_i64() {
                Some(next) => after = next,
                None => break,
            }
        }
        let copies = results.iter().filter(|r| r["duplicate_of"].is_string()).count();
        out!("   received {} visit records; stored {}; copies recognised {copies}", results.len(), stored.len());
        let outcome = |o: &str| stored.iter().filter(|v| v["outcome"] == o).count();
        out!(
            "   outcomes: accepted {}, flagged {} (manual with a reason, unknown tag, declined at the door), rejected {}",
            outcome("accepted"),
            outcome("flagged"),
            outcome("rejected")
        );
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        for r in &results {
            for c in r["codes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                *codes.entry(c.to_owned()).or_default() += 1;
            }
        }
        for (code, n) in &codes {
            let meaning = CODES.iter().find(|(c, _)| c == code).map_or("", |(_, m)| *m);
            out!("     {code} {n:>5}  {meaning}");
        }
        let declined = stored.iter().filter(|v| v["visit_outcome"] == "declined_at_door").count();
        out!("     declined at the door: {declined} (flagged: they count 0 minutes)");
        let reports: Vec<_> = self
            .store
            .deliveries(DeliveryFilter { limit: 10_000, ..DeliveryFilter::default() })
            .await?
            .into_iter()
            .filter(|d| d.message_type == "visit")
            .collect();
        let mut by_system: BTreeMap<&str, usize> = BTreeMap::new();
        for d in &reports {
            *by_system.entry(d.system.as_str()).or_default() += 1;
        }
        out!(
            "   visit reports on to case management: {} (outbox, message type visit), {} delivered: {}",
            reports.len(),
            reports.iter().filter(|d| d.state == "delivered").count(),
            by_system.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", ")
        );
        let files =
            self.procapita.map_or(0, |p| p.files("outbox").iter().filter(|f| f.starts_with("besoksrapport-")).count());
        out!(
            "   Combine took {} Besok reports, Treserva {} TaEmotBesok calls{}",
            self.combine.visits.load(Ordering::SeqCst),
            self.treserva.visits.load(Ordering::SeqCst),
            if self.procapita.is_some() {
                format!(", Procapita {files} Besöksrapport files (ISO-8859-1)")
            } else {
                String::new()
            }
        );
        let report = self.get(&format!("/v1/reports/manual-registrations?month={label}")).await?;
        let threshold = report["threshold"].as_f64().unwrap_or(0.10);
        out!(
            "   Manual registrations, {label} (GET /v1/reports/manual-registrations; over {:.0}% is marked)",
            threshold * 100.0
        );
        let rows = report["providers"].as_array().cloned().unwrap_or_default();
        for r in &rows {
            let name = r["name"].as_str().or(r["provider"].as_str()).unwrap_or("?");
            out!(
                "     {name:<28} {:>5} visits {:>5} manual {:>6.1}%{}",
                r["visits"].as_u64().unwrap_or(0),
                r["manual"].as_u64().unwrap_or(0),
                r["share"].as_f64().unwrap_or(0.0) * 100.0,
                if r["over_threshold"] == true {
                    format!("  <- over the {:.0}% threshold", threshold * 100.0)
                } else {
                    String::new()
                }
            );
        }

        // What was planted, against what the hub says.
        let mut problems = Vec::new();
        let mut expect = |what: String, want: usize, got: usize| {
            if want != got {
                problems.push(format!("{what}: planted {want}, the hub says {got}"));
            }
        };
        expect("visit records received".into(), plan.visits.len() + plan.copies(), results.len());
        expect("visits stored".into(), plan.visits.len(), stored.len());
        expect("copies recognised".into(), plan.copies(), copies);
        for o in ["accepted", "flagged", "rejected"] {
            expect(format!("{o} visits"), plan.visits.iter().filter(|v| v.outcome() == o).count(), outcome(o));
        }
        let mut planted: BTreeMap<String, usize> = BTreeMap::new();
        for c in plan.visits.iter().flat_map(|v| v.codes.iter()) {
            *planted.entry((*c).to_owned()).or_default() += 1;
        }
        if plan.copies() > 0 {
            planted.insert("VIS007".into(), plan.copies());
        }
        for code in planted.keys().chain(codes.keys()).collect::<BTreeSet<_>>() {
            expect(code.to_string(), planted.get(code).copied().unwrap_or(0), codes.get(code).copied().unwrap_or(0));
        }
        let counted: Vec<&Planned> = plan.visits.iter().filter(|v| v.outcome() != "rejected").collect();
        expect("visit reports".into(), counted.len(), reports.len());
        for (pi, p) in providers.iter().enumerate() {
            let row = rows.iter().find(|r| r["provider"] == p.org).cloned().unwrap_or(Value::Null);
            let visits = counted.iter().filter(|v| v.provider == pi).count();
            let manual = counted.iter().filter(|v| v.provider == pi && v.manual()).count();
            let as_usize = |v: &Value| v.as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
            expect(format!("{} visits", p.name), visits, as_usize(&row["visits"]));
            expect(format!("{} manual", p.name), manual, as_usize(&row["manual"]));
            #[allow(clippy::cast_precision_loss)]
            let over = visits > 0 && manual as f64 / visits as f64 > threshold;
            expect(
                format!("{} over the threshold", p.name),
                usize::from(over),
                usize::from(row["over_threshold"] == true),
            );
        }
        if problems.is_empty() {
            out!("   every figure above is what the demo planted");
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's providers with clients drawn as its decisions draw them.
    fn providers() -> Vec<VisitProvider> {
        let clients = clients();
        let take = |range: std::ops::Range<usize>| range.map(|i| clients[i % clients.len()].to_owned()).collect();
        let mut list: Vec<VisitProvider> = PROVIDERS
            .iter()
            .zip([1..17, 17..29, 29..37])
            .map(|(p, range)| VisitProvider {
                org: p.org,
                name: p.name,
                system: p.system,
                staff: p.staff,
                manual_every: p.manual_every,
                clients: take(range),
            })
            .collect();
        list.push(VisitProvider {
            org: SFTP_PROVIDER,
            name: "Hemtjänst i Hägersten AB",
            system: "paraga-stockholm",
            staff: "hagersten",
            manual_every: 20,
            clients: take(40..43),
        });
        list
    }

    #[test]
    fn the_month_is_the_last_complete_one() {
        let month = |y, m, d| Month::before(NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default());
        let nov = month(2026, 11, 22);
        assert_eq!(
            (nov.first.to_string(), nov.last.to_string(), nov.label()),
            ("2026-10-01".into(), "2026-10-31".into(), "2026-10".into())
        );
        assert_eq!(month(2027, 1, 1).label(), "2026-12");
        assert_eq!(month(2028, 3, 31).last.to_string(), "2028-02-29");
        assert_eq!(nov.decided_at(), "2026-10-01T09:00:00+02:00");
        assert_eq!(month(2027, 1, 5).decided_at(), "2026-12-01T09:00:00+01:00");
        assert_eq!(nov.valid_to().to_string(), "2027-09-30");
    }

    /// Whatever month the demo runs in, it plants the same faults and nothing else: each
    /// staff member's visits follow one another except the planted overlaps, all in the
    /// month, and one provider well above a 10% manual share.
    #[test]
    fn every_month_plants_the_same_faults_and_nothing_else() {
        let providers = providers();
        for n in 0..30u32 {
            let today = NaiveDate::from_ymd_opt(2026 + (n / 12) as i32, 1 + n % 12, 15).unwrap_or_default();
            let month = Month::before(today);
            let tags = Tags::for_homes(&providers, &month);
            assert!(tags.moved.is_some(), "{today}");
            let plan = VisitPlan::draw(&providers, &tags, &month);
            let mut planted: BTreeMap<&str, usize> = BTreeMap::new();
            for c in plan.visits.iter().flat_map(|v| v.codes.iter()) {
                *planted.entry(*c).or_default() += 1;
            }
            let want: BTreeMap<&str, usize> =
                [("VIS001", 2), ("VIS002", 3), ("VIS004", 1), ("VIS005", 2), ("VIS008", 3)].into_iter().collect();
            assert_eq!(planted, want, "{today}");
            assert!(plan.copies() > 1 && plan.retried.is_some(), "{today}");
            let ids: BTreeSet<&str> = plan.visits.iter().map(|v| v.id.as_str()).collect();
            assert_eq!(ids.len(), plan.visits.len(), "unique ids, {today}");
            let mut by_staff: BTreeMap<&str, Vec<&Planned>> = BTreeMap::new();
            for v in &plan.visits {
                assert_eq!(carehub_model::local_date(v.start), v.day, "{today}");
                assert!(v.day >= month.first && v.day <= month.last, "{today}");
                let long = v.codes.contains(&"VIS004");
                assert!(long || (2..=64).contains(&v.minutes), "{} minutes, {today}", v.minutes);
                assert_eq!(v.channel == Channel::Push, v.day == month.last && v.provider < 3, "{today}");
                by_staff.entry(v.staff.as_str()).or_default().push(v);
            }
            for visits in by_staff.values_mut() {
                visits.sort_by_key(|v| v.start);
                for pair in visits.windows(2) {
                    if pair[0].end() > pair[1].start {
                        assert!(pair.iter().any(|v| v.codes.contains(&"VIS005")), "an unplanted overlap, {today}");
                    }
                }
            }
            for (pi, _) in providers.iter().enumerate() {
                let counted: Vec<&Planned> =
                    plan.visits.iter().filter(|v| v.provider == pi && v.outcome() != "rejected").collect();
                #[allow(clippy::cast_precision_loss)]
                let share = counted.iter().filter(|v| v.manual()).count() as f64 / counted.len() as f64;
                assert_eq!(share > 0.10, pi == 0, "provider {pi}: {share}, {today}");
                assert!(!(0.07..=0.14).contains(&share), "well clear of the threshold: {share}, {today}");
            }
        }
    }
}
