//! `carehub demo`: a municipality's month of decisions, end to end, with no setup.
//!
//! The demo starts the real hub on an embedded SQLite file and plays the vendors with small
//! in-process HTTP servers on 127.0.0.1: a Combine case-management system that records the
//! callbacks it gets, and two Phoniro systems that take orders and answer them (confirm,
//! sometimes reject, report plans) by calling the hub back like the real ones would. One
//! Phoniro system is down for the whole batch. Everything travels over loopback HTTP
//! through the public API, and every figure printed is read back from the hub's store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use carehub_core::store::{DeliveryFilter, LogFilter, OrderFilter, Store};
use serde_json::Value;

use crate::auth::{Auth, Role};
use crate::config::Config;
use crate::server;

/// Options of `carehub demo`.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    pub db: Option<PathBuf>,
    pub serve: bool,
}

const SECRET: &str = "demo-only-secret-never-use-in-production-0123";

struct Provider {
    org: &'static str,
    name: &'static str,
    system: &'static str,
    decisions: usize,
}

/// The provider whose orders go to ParaGå over SFTP.
const SFTP_PROVIDER: &str = "5599000030";

const PROVIDERS: &[Provider] = &[
    Provider { org: "5599000014", name: "Hemtjänst Norr AB", system: "phoniro-norr", decisions: 16 },
    Provider { org: "5566778899", name: "Omsorgshuset i Ekerö AB", system: "phoniro-norr", decisions: 12 },
    Provider { org: "5560123456", name: "Södra Vård & Omsorg AB", system: "phoniro-soder", decisions: 8 },
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
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        );
        this.send(&org, ack).await;
        if !rejected && !reference.ends_with("0") {
            let plan = format!(
                r#"{{"type":"carePlanEstablished","orderId":"{id}","establishedDate":"{}"}}"#,
                carehub_model::today()
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

[[systems]]
name = "phoniro-soder"
vendor = "phoniro"
base_url = "{soder}/api"
"#,
        db = db.display().to_string().replace('\\', "/"),
    );
    for p in PROVIDERS {
        text.push_str(&format!(
            "\n[[providers]]\norg = \"{}\"\nname = \"{}\"\nsystem = \"{}\"\n",
            p.org, p.name, p.system
        ));
    }
    text.push_str(more);
    text
}

fn decision(id: &str, pnr: &str, provider: &str, decided: Option<&str>, services: &[(&str, u32)]) -> String {
    let mut s = format!(
        "<Beslut xmlns=\"urn:carehub:vendor:combine:1\">\n  <BeslutsId>{id}</BeslutsId>\n  <Personnummer>{}-{}</Personnummer>\n  <Handlaggare>hl-{}</Handlaggare>\n  <Utforare orgnr=\"{provider}\"/>\n  <GiltigFrom>2026-11-01</GiltigFrom><GiltigTom>2027-10-31</GiltigTom>\n",
        &pnr[..8],
        &pnr[8..],
        100 + id.len() % 7
    );
    if let Some(d) = decided {
        s.push_str(&format!("  <Beslutstidpunkt>{d}</Beslutstidpunkt>\n"));
    }
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
    let auth = Auth::new(SECRET);
    let ttl = Duration::from_secs(8 * 3600);
    let tokens: BTreeMap<String, String> = PROVIDERS
        .iter()
        .map(|p| Ok((p.org.to_owned(), auth.issue(p.system, Role::ProviderSystem, Some(p.org), ttl)?)))
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
        })
    };
    let norr = mock("phoniro-norr", true, false);
    let soder = mock("phoniro-soder", false, true);
    let combine = Arc::new(MockCombine::default());
    let combine_url = serve_mock(
        Router::new()
            .route("/carehub/callback", post(combine_callback))
            .route("/", get(|| async { "combine" }))
            .with_state(combine.clone()),
    )
    .await?;
    let norr_url =
        serve_mock(Router::new().route("/api/orders", post(phoniro_orders)).with_state(norr.clone())).await?;
    let soder_url =
        serve_mock(Router::new().route("/api/orders", post(phoniro_orders)).with_state(soder.clone())).await?;

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
    let runtime = server::build(&config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind the hub")?;
    let hub = server::start(runtime, listener).await?;
    let url = hub.url();
    for p in [&norr, &soder] {
        if let Ok(mut u) = p.hub_url.lock() {
            u.clone_from(&url);
        }
    }
    let store = hub.state.hub.store.clone();

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
    let run = chrono::Utc::now().format("%y%m%d%H%M%S").to_string();
    let clients = clients();
    let cm_token = auth.issue("combine-ekero", Role::CaseManagement, None, ttl)?;
    let month_ago = (chrono::Utc::now() - chrono::Duration::days(30)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
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
            let decided = (late || n.is_multiple_of(5)).then_some(month_ago.as_str());
            batch.push((
                format!("decision {id}"),
                decision(&id, clients[n % clients.len()], p.org, decided, service_sets[n % 4]),
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
        decision(&format!("DEC-{run}-901"), &bad_pnr, PROVIDERS[0].org, None, service_sets[1]),
    ));
    batch.push((
        "a provider with no contract in Ekerö".into(),
        decision(&format!("DEC-{run}-902"), clients[1], "5599000022", None, service_sets[1]),
    ));
    batch.push((
        "an unknown service code".into(),
        decision(&format!("DEC-{run}-903"), clients[2], PROVIDERS[0].org, None, &[("GOLF", 60)]),
    ));
    batch.push((
        "no personal identity number".into(),
        format!("<Beslut xmlns=\"urn:carehub:vendor:combine:1\"><BeslutsId>DEC-{run}-904</BeslutsId><Handlaggare>hl-1</Handlaggare><Utforare orgnr=\"5599000014\"/><GiltigFrom>2026-11-01</GiltigFrom><Insats kod=\"SERV\"><MinuterPerManad>60</MinuterPerManad></Insats></Beslut>"),
    ));
    batch.push((
        "a file cut off in transfer".into(),
        decision(&format!("DEC-{run}-905"), clients[3], PROVIDERS[0].org, None, service_sets[0])[..150].to_owned(),
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
    let today = carehub_core::pipeline::Hub::today();
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
             <tre:Handlaggare>anna.l</tre:Handlaggare><tre:Utforare><tre:Orgnr>{}</tre:Orgnr></tre:Utforare><tre:Period><tre:From>2026-11-01</tre:From></tre:Period>\
             <tre:Insatser><tre:Insats><tre:Kod>HT-PO</tre:Kod><tre:Tid>1200</tre:Tid></tre:Insats></tre:Insatser></tre:Beslut></tre:RegistreraBeslut></soapenv:Body></soapenv:Envelope>",
            PROVIDERS[i % 2].org
        );
        let resp = http
            .post(format!("{url}/v1/systems/treserva-danderyd/messages"))
            .bearer_auth(&cm_token)
            .header("content-type", "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await?;
        let ok = resp.status().is_success();
        let text = resp.text().await.unwrap_or_default();
        if ok {
            soap_ok += 1;
        } else if let Some(code) = text.split("<code>").nth(1).and_then(|t| t.split('<').next()) {
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
        sftp_pair(procapita, paraga, &clients, &run, store.as_ref()).await?;
    }
    out!("");

    // 7. The log.
    let report = carehub_core::store::verify_chain(store.as_ref()).await?;
    let rejected =
        store.log_entries(LogFilter { status: Some("rejected".into()), limit: 10_000, ..LogFilter::default() }).await?;
    out!(
        "7. The message log: {} entries, hash-chained; {} rejections kept with their codes",
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
        let admin = auth.issue("demo-admin", Role::Admin, None, ttl)?;
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
    store: &dyn Store,
) -> anyhow::Result<()> {
    use carehub_core::mapping::text;
    let latin1 = text::encoding("iso-8859-1").context("ISO-8859-1")?;
    let cp1252 = text::encoding("windows-1252").context("Windows-1252")?;
    for i in 0..3 {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<Biståndsbeslut xmlns=\"urn:carehub:vendor:procapita:1\">\n\
             <Beslutsnummer>PC-{run}-{i}</Beslutsnummer><Brukare><Personnummer>{}</Personnummer></Brukare>\n\
             <Handläggare signatur=\"ÅÖB\"/><Utförare><Organisationsnummer>{SFTP_PROVIDER}</Organisationsnummer></Utförare>\n\
             <Giltighet från=\"20261101\"/><Insatser><Insats typ=\"Personlig omvårdnad\" minuterPerMånad=\"1500\"/>\
             <Insats typ=\"Måltider\" minuterPerMånad=\"300\"/></Insatser>\n</Biståndsbeslut>\n",
            clients[(40 + i) % clients.len()]
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
        answer.push_str(&format!("{order};Accepterad;;{}\r\n", chrono::Utc::now().format("%Y-%m-%d %H:%M")));
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
