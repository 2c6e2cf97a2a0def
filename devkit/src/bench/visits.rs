//! `carehub bench visits`: visit records per second through ingestion, validation and
//! durable logging, with a store already holding a month of Stockholm-sized data.
//!
//! Method:
//! 1. Seed: a fresh SQLite file gets, through the store's bulk loader in one transaction (the seed is not what
//!    is measured), 20,000 clients (Skatteverket test numbers) with a decision, an active
//!    order and a tag each, spread over 130 providers, and 1,000,000 visits in the previous
//!    month with every index the hub keeps (behind the visit-report watermark, so the
//!    hub's forwarder does not start on them).
//! 2. The real hub starts on that file: a Combine system (visit reports go to a loopback
//!    mock that answers 200 at once, so forwarding and delivery run during the measurement,
//!    as in production), a Phoniro system whose visit feed the hub pulls, a Lifecare Mobil
//!    system for webhooks, and a ParaGå system.
//! 3. Batches: the hub pulls `pages` pages of 1,000 visits from a loopback Phoniro feed
//!    (timed from the first page asked to the empty page that ends the pull), then takes a
//!    ParaGå file of 100,000 rows (timed from the file's bytes in hand to the last row
//!    committed; the SFTP transfer itself is `carehub bench sftp`'s subject).
//! 4. Pushes: N concurrent clients post single Lifecare Mobil webhook visits over HTTP for
//!    `seconds` after a warm-up; pushes per second, p50 and p99 latency.
//!
//! Every measured visit is valid and lands in this month, so each goes through every rule's
//! look-up (tag, order, overlap, copies) against the million already stored.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use carehub_core::store::sqlite::bulk::{BulkLoader, Durability, Stamp, VisitRow};
use carehub_model::{Deadlines, Decision, Order, OrgNumber};
use chrono::{Datelike, NaiveDate};
use serde_json::{json, Value};

use carehub_server::auth::{Auth, Role};
use carehub_server::config::Config;
use carehub_server::{assemble, run};

const SECRET: &str = "bench-secret-bench-secret-bench-secret";
const CLIENTS: usize = 20_000;
const PROVIDERS: usize = 130;
/// Providers 0..100 use Phoniro, 100..129 Lifecare Mobil, and one ParaGå (a ParaGå file
/// names no provider: each provider's account delivers its own file).
const PHONIRO: std::ops::Range<usize> = 0..100;
const LIFECARE: std::ops::Range<usize> = 100..129;
const PARAGA: std::ops::Range<usize> = 129..130;

/// The bench's options.
#[derive(Debug, Clone, clap::Args)]
pub struct VisitBenchArgs {
    /// Visits already in the store (the previous month).
    #[arg(long, default_value_t = 1_000_000)]
    pub seed: usize,
    /// Phoniro pages of 1,000 visits to pull.
    #[arg(long, default_value_t = 100)]
    pub pages: usize,
    /// Rows in the ParaGå file.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Concurrent webhook clients, one run each (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub clients: Vec<usize>,
    /// Measured seconds per push run (after a 2-second warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Report accepted visits on to the case-management system during the run (Combine:
    /// lists of visits, logged and delivered), as a municipality with återrapportering
    /// would; `--reports false` measures intake alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub reports: bool,
    /// Before the pushes, wait until the batches' reports are all delivered, so the pushes
    /// meet only their own reports (the steady state) and not the batches' backlog.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub drain_first: bool,
    /// Where to put the database (default: a temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// 130 valid organisation numbers: 10 digits, a Luhn check digit.
fn providers() -> Vec<String> {
    let mut out = Vec::new();
    let mut n = 0u32;
    while out.len() < PROVIDERS {
        let stem = format!("55990{n:04}");
        n += 1;
        for check in 0..10 {
            let candidate = format!("{stem}{check}");
            if OrgNumber::parse(&candidate).is_ok() {
                out.push(candidate);
                break;
            }
        }
    }
    out
}

struct World {
    pnrs: Vec<&'static str>,
    providers: Vec<String>,
    /// The first day of the month being measured, and of the month seeded.
    this_month: NaiveDate,
    last_month: NaiveDate,
}

impl World {
    fn provider_of(&self, client: usize) -> usize {
        client % PROVIDERS
    }
    fn tag(client: usize) -> String {
        format!("04{client:06X}")
    }
    /// Clients of providers in `range`, in order.
    fn clients_in(&self, range: std::ops::Range<usize>) -> Vec<usize> {
        (0..CLIENTS).filter(|c| range.contains(&self.provider_of(*c))).collect()
    }
}

/// A visit slot: staff member `i / 12` does 12 visits of 30 minutes a day, 35 minutes apart,
/// so no staff member is ever in two homes at once; days run through the 1st to the 20th.
fn slot(world: &World, i: usize) -> (NaiveDate, u32, u32) {
    let staff_day = i / 12;
    let day = world.this_month + chrono::Days::new((staff_day % 20) as u64);
    let minutes = 7 * 60 + (i % 12) as u32 * 35;
    (day, minutes / 60, minutes % 60)
}

fn local(day: NaiveDate, h: u32, m: u32) -> String {
    format!("{}T{h:02}:{m:02}:00+01:00", day.format("%Y-%m-%d"))
}

/// The seed: clients, decisions, orders, tags and a month of visits, through the bulk
/// loader in one transaction.
fn seed(db: &Path, world: &World, visits: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut loader = BulkLoader::create(db, Durability::WalUnsynced)?;
    loader.load(|batch| -> anyhow::Result<()> {
        for c in 0..CLIENTS {
            let p = world.provider_of(c);
            let decision: Decision = serde_json::from_value(json!({
                "id": format!("combine:SEED-{c}"), "client": world.pnrs[c], "case_officer": "hl-1",
                "provider": world.providers[p], "valid_from": world.last_month.to_string(),
                "services": [{"code": "PO", "category": "personal_care", "minutes_per_month": 1800}]
            }))?;
            let order =
                Order::from_decision(format!("O-SEED{c:06}"), &decision, world.last_month, Deadlines::default());
            batch.decision("combine", &decision)?;
            batch.order(&order, "combine", system_of(p), "accepted")?;
            batch.tag(&World::tag(c), world.pnrs[c], world.last_month)?;
        }
        let month = format!("{:04}-{:02}", world.last_month.year(), world.last_month.month());
        for i in 0..visits {
            let c = (i * 7919) % CLIENTS;
            let p = world.provider_of(c);
            let staff = format!("seed-{}", i / 12);
            let day = world.last_month + chrono::Days::new(((i / 12) % 28) as u64);
            let minutes = 6 * 60 + (i % 12) as u32 * 35; // UTC
            let at = day.and_hms_opt(minutes / 60, minutes % 60, 0).unwrap_or_default().and_utc();
            let out = at + chrono::Duration::minutes(30);
            let id = format!("phoniro:S-{i}");
            let order = format!("O-SEED{c:06}");
            let canonical = json!({"id": id, "provider": world.providers[p], "client": world.pnrs[c],
                "order_id": order, "staff": staff,
                "check_in": {"at": at, "method": "nfc", "tag_uid": World::tag(c)},
                "check_out": {"at": out, "method": "nfc", "tag_uid": World::tag(c)}, "outcome": "performed"});
            batch.visit(&VisitRow {
                source_id: &id,
                system: system_of(p),
                provider: &world.providers[p],
                client: world.pnrs[c],
                order_id: &order,
                staff: &staff,
                check_in: &Stamp::new(at),
                check_out: &Stamp::new(out),
                month: &month,
                seconds: 1800,
                planned_minutes: 30,
                visit_outcome: "performed",
                manual: false,
                outcome: "accepted",
                codes: "",
                findings: "[]",
                canonical: &canonical.to_string(),
                received_at: None,
            })?;
        }
        // The seeded month was reported long ago.
        batch.mark_visits_reported()?;
        Ok(())
    })?;
    loader.finish()?;
    Ok(started.elapsed())
}

fn system_of(provider: usize) -> &'static str {
    if PHONIRO.contains(&provider) {
        "phoniro"
    } else if LIFECARE.contains(&provider) {
        "lifecare-mobil"
    } else {
        "paraga"
    }
}

/// The Phoniro feed: pregenerated pages, the cursor is the page number; an empty page ends.
/// The first `available` pages are served; the bench opens the rest for a second pull.
struct Feed {
    pages: Vec<String>,
    available: AtomicUsize,
    /// Every request: when, and the page asked for.
    asked: Mutex<Vec<(Instant, usize)>>,
}

impl Feed {
    /// When page `at` was first asked for at or after `since`.
    fn asked_for(&self, at: usize, since: Instant) -> Option<Instant> {
        self.asked.lock().ok()?.iter().find(|(t, p)| *p == at && *t >= since).map(|(t, _)| *t)
    }
}

#[derive(serde::Deserialize)]
struct FeedQuery {
    cursor: Option<usize>,
}

async fn feed_page(State(feed): State<Arc<Feed>>, Query(q): Query<FeedQuery>) -> (StatusCode, String) {
    let at = q.cursor.unwrap_or(0);
    if let Ok(mut asked) = feed.asked.lock() {
        asked.push((Instant::now(), at));
    }
    match feed.pages.get(at).filter(|_| at < feed.available.load(Ordering::SeqCst)) {
        Some(p) => (StatusCode::OK, p.clone()),
        None => (StatusCode::OK, json!({"type": "visitPage", "visits": [], "nextCursor": at.to_string()}).to_string()),
    }
}

/// Waits for a pull that starts at page `from` (asked at or after `since`) to reach the
/// empty page `to`; the pull's duration.
async fn pull_round(feed: &Feed, from: usize, to: usize, since: Instant) -> anyhow::Result<Duration> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        if let (Some(a), Some(b)) = (feed.asked_for(from, since), feed.asked_for(to, since)) {
            if b > a {
                return Ok(b - a);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "the Phoniro pull did not finish in 15 minutes");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn phoniro_pages(world: &World, pages: usize) -> Vec<String> {
    let clients = world.clients_in(PHONIRO);
    (0..pages)
        .map(|p| {
            let visits: Vec<Value> = (p * 1000..(p + 1) * 1000)
                .map(|i| {
                    let c = clients[i % clients.len()];
                    let (day, h, m) = slot(world, i);
                    let reg = |h: u32, m: u32| json!({"time": local(day, h, m), "method": "NFC", "tagUid": World::tag(c)});
                    json!({"visitId": format!("B-{i}"), "provider": {"organisationNumber": world.providers[world.provider_of(c)]},
                        "client": {"personalIdentityNumber": world.pnrs[c]}, "staffId": format!("ph-{}", i / 12),
                        "checkIn": reg(h, m), "checkOut": reg(h + (m + 30) / 60, (m + 30) % 60),
                        "plannedMinutes": 30, "activities": ["CARE"], "status": "PERFORMED"})
                })
                .collect();
            json!({"type": "visitPage", "visits": visits, "nextCursor": (p + 1).to_string()}).to_string()
        })
        .collect()
}

fn paraga_file(world: &World, rows: usize) -> Vec<u8> {
    let clients = world.clients_in(PARAGA);
    let mut text = String::from("Personnummer;Datum;Kom;Gick;Taggid;Registrering;Insatser;Utfall;Personal\r\n");
    for i in 0..rows {
        let c = clients[i % clients.len()];
        let (day, h, m) = slot(world, i);
        let (oh, om) = (h + (m + 30) / 60, (m + 30) % 60);
        text.push_str(&format!(
            "{};{};{h:02}:{m:02};{oh:02}:{om:02};{};NFC;OMV;Utförd;pg-{}\r\n",
            world.pnrs[c],
            day.format("%Y-%m-%d"),
            World::tag(c),
            i / 12
        ));
    }
    match carehub_core::mapping::text::encoding("windows-1252") {
        Some(enc) => carehub_core::mapping::text::encode(&text, enc).unwrap_or_else(|_| text.into_bytes()),
        None => text.into_bytes(),
    }
}

fn webhook(world: &World, clients: &[usize], i: usize) -> String {
    let c = clients[i % clients.len()];
    let (day, h, m) = slot(world, i);
    let reg = |h: u32, m: u32| json!({"time": local(day, h, m), "registration": "NFC", "tagId": World::tag(c)});
    json!({"event": "visit.completed", "visit": {"id": format!("W-{i}"),
        "organisationNumber": world.providers[world.provider_of(c)], "client": {"ssn": world.pnrs[c]},
        "employeeId": format!("lm-{}", i / 12), "arrival": reg(h, m), "departure": reg(h + (m + 30) / 60, (m + 30) % 60),
        "plannedDuration": 30, "services": [{"type": "PERSONAL_CARE"}], "status": "PERFORMED"}})
    .to_string()
}

fn config_text(world: &World, db: &Path, mock: &str, reports: bool) -> String {
    let mut text = format!(
        "[hub]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{}\"\nmax_body_bytes = 67108864\n[auth]\njwt_secret = \"{SECRET}\"\n\
         [[systems]]\nname = \"combine\"\nvendor = \"combine\"\ncallback_url = \"{mock}/cb\"\nvisit_reports = {reports}\n\
         [[systems]]\nname = \"phoniro\"\nvendor = \"phoniro\"\nbase_url = \"{mock}/phoniro\"\nvisits_poll_seconds = 1\n\
         [[systems]]\nname = \"lifecare-mobil\"\nvendor = \"lifecare-mobil\"\nbase_url = \"{mock}/lcmh\"\n\
         token_url = \"{mock}/lcmh/token\"\nclient_id = \"bench\"\nclient_secret = \"bench\"\n\
         [[systems]]\nname = \"paraga\"\nvendor = \"paraga\"\nhost = \"127.0.0.1\"\nport = 1\nusername = \"bench\"\n\
         private_key = \"/nonexistent\"\nhost_key_sha256 = \"SHA256:bench-bench-bench-bench\"\npoll_seconds = 86400\n",
        db.display(),
    );
    for (p, org) in world.providers.iter().enumerate() {
        text.push_str(&format!(
            "[[providers]]\norg = \"{org}\"\nname = \"Bench {p}\"\nsystem = \"{}\"\n",
            system_of(p)
        ));
    }
    text
}

pub async fn run(args: VisitBenchArgs) -> anyhow::Result<ExitCode> {
    let temp = tempfile::tempdir_in(args.dir.as_deref().unwrap_or(&std::env::temp_dir()))
        .context("cannot create a folder for the database")?;
    let clock = super::harness::bench_clock();
    let today = clock.today();
    let this_month = today.with_day(1).context("a month")?;
    let last_month = (this_month - chrono::Days::new(1)).with_day(1).context("a month")?;
    let pnrs: Vec<&'static str> = include_str!("../../../data/skatteverket-testpersonnummer.txt").lines().collect();
    anyhow::ensure!(pnrs.len() >= CLIENTS, "the test numbers file has too few numbers");
    let world = Arc::new(World { pnrs: pnrs[..CLIENTS].to_vec(), providers: providers(), this_month, last_month });
    anyhow::ensure!(today.day() > 1, "run the bench after the 1st: its visits must be in the past this month");
    out!(
        "carehub bench visits: {} cores; {CLIENTS} clients, {PROVIDERS} providers, {} visits seeded in {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        args.seed,
        last_month.format("%Y-%m")
    );
    let db = temp.path().join("visits.db");
    let w = world.clone();
    let (db2, seed_n) = (db.clone(), args.seed);
    let took = tokio::task::spawn_blocking(move || seed(&db2, &w, seed_n)).await??;
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    out!("seeded in {:.1} s ({:.0} MB)", took.as_secs_f64(), size as f64 / 1e6);

    let feed = Arc::new(Feed {
        pages: phoniro_pages(&world, 2 * args.pages),
        available: AtomicUsize::new(args.pages),
        asked: Mutex::new(Vec::new()),
    });
    let mock = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mock_url = format!("http://{}", mock.local_addr()?);
    // Messages, and the visits they report (a list carries many): each visit has one BesoksId.
    let delivered = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
    let d = delivered.clone();
    let app = Router::new().route("/phoniro/visits", get(feed_page)).with_state(feed.clone()).route(
        "/cb/{*rest}",
        post(move |body: axum::body::Bytes| {
            let d = d.clone();
            async move {
                d.0.fetch_add(1, Ordering::Relaxed);
                let visits = body.windows(b"<BesoksId>".len()).filter(|w| *w == b"<BesoksId>").count();
                d.1.fetch_add(visits, Ordering::Relaxed);
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(mock, app).await;
    });
    let config = Config::parse(&config_text(&world, &db, &mock_url, args.reports), temp.path())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = assemble::build(&config, clock.clone())?;
    let state = runtime.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hub = run::start(runtime, listener).await?;
    out!("");

    // Batches: the Phoniro pull. The poller pulls at start (the store's caches cold), then,
    // once more pages are there, at its next poll (warm, as a running hub is).
    let visits = args.pages * 1000;
    let start = Instant::now() - Duration::from_secs(3600);
    let cold = pull_round(&feed, 0, args.pages, start).await?;
    let opened = Instant::now();
    feed.available.store(2 * args.pages, Ordering::SeqCst);
    let warm = pull_round(&feed, args.pages, 2 * args.pages, opened).await?;
    let month = format!("{:04}-{:02}", this_month.year(), this_month.month());
    let filter = carehub_core::store::VisitFilter {
        month: Some(month.clone()),
        outcome: Some("rejected".into()),
        limit: 10,
        ..Default::default()
    };
    let rejected = state.hub.store().visits(filter).await?.len();
    for (what, took) in [("first pull after start", cold), ("next pull, running hub", warm)] {
        out!(
            "Phoniro pages of 1,000, {what}: {visits:>7} visits in {:>6.2} s = {:>7.0} visits/s",
            took.as_secs_f64(),
            visits as f64 / took.as_secs_f64()
        );
    }
    anyhow::ensure!(rejected == 0, "{rejected} bench visits were rejected: the bench's data is wrong");

    // Batches: a ParaGå file.
    let file = paraga_file(&world, args.rows);
    let started = Instant::now();
    let receipt = state.hub.take_file("paraga", "besok-bench.csv", file).await.map_err(|r| anyhow::anyhow!("{r}"))?;
    let secs = started.elapsed().as_secs_f64();
    let refused = receipt.visits.iter().filter(|r| r.outcome == carehub_core::rules::visits::Outcome::Rejected).count();
    out!(
        "ParaGå file of {:>7} rows:             {:>7} visits in {secs:>6.2} s = {:>7.0} visits/s",
        args.rows,
        receipt.visits.len(),
        receipt.visits.len() as f64 / secs
    );
    anyhow::ensure!(refused == 0, "{refused} rows of the bench's file were rejected: the bench's data is wrong");
    out!("");

    // What the batches left to report when the pushes start, and, with `--drain-first`,
    // the wait until it is gone.
    let backlog = |hub: Arc<carehub_core::hub::Hub>| async move {
        let waiting = hub.store().visits_to_report(1).await.map(|b| b.through.is_some()).unwrap_or(false);
        let pending = hub.store().outbox_counts().await.map(|c| c.pending).unwrap_or_default();
        (waiting, pending)
    };
    let (waiting, pending) = backlog(state.hub.clone()).await;
    out!("when the pushes start: visits waiting to be reported: {waiting}, outbox rows pending: {pending}");
    if args.drain_first {
        let started = Instant::now();
        while backlog(state.hub.clone()).await != (false, 0) && started.elapsed() < Duration::from_secs(300) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        out!("the batches' reports drained in {:.1} s", started.elapsed().as_secs_f64());
    }

    // Pushes: Lifecare Mobil webhooks.
    let clients = Arc::new(world.clients_in(LIFECARE));
    let auth = Auth::new(SECRET, clock.clone());
    let url = format!("{}/v1/systems/lifecare-mobil/messages", hub.url());
    out!(
        "{:>8} {:>9} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "clients",
        "pushes",
        "pushes/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors"
    );
    let tokens: Arc<Vec<String>> = Arc::new(
        LIFECARE
            .map(|p| {
                auth.issue(
                    "bench",
                    Role::ProviderSystem,
                    Some("lifecare-mobil"),
                    Some(&world.providers[p]),
                    Duration::from_secs(3600),
                )
            })
            .collect::<Result<_, _>>()?,
    );
    // Pushes go on numbering where the last run stopped: every push is a new visit.
    let pushed = Arc::new(AtomicUsize::new(0));
    for &n in &args.clients {
        let http = reqwest::Client::builder().pool_max_idle_per_host(n).build()?;
        let (url, clients, world, tokens, pushed) =
            (url.clone(), clients.clone(), world.clone(), tokens.clone(), pushed.clone());
        let r = super::harness::closed_loop(n, args.seconds, move |_| {
            let i = pushed.fetch_add(1, Ordering::Relaxed);
            let c = clients[i % clients.len()];
            let token = tokens[world.provider_of(c) - LIFECARE.start].clone();
            let (http, url, body) = (http.clone(), url.clone(), webhook(&world, &clients, i));
            async move {
                match http.post(&url).bearer_auth(token).body(body).send().await {
                    Ok(r) => {
                        let good = r.status() == reqwest::StatusCode::ACCEPTED;
                        good && r.text().await.unwrap_or_default().contains("\"outcome\":\"accepted\"")
                    }
                    Err(_) => false,
                }
            }
        })
        .await?;
        out!(
            "{:>8} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            r.clients,
            r.count,
            r.count as f64 / r.elapsed.as_secs_f64(),
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.max.as_secs_f64() * 1e3,
            r.errors
        );
    }
    out!("");
    out!(
        "visit reports delivered to the case-management mock during the run: {} visits in {} messages",
        delivered.1.load(Ordering::Relaxed),
        delivered.0.load(Ordering::Relaxed)
    );
    let pending = state.hub.store().outbox_counts().await.map(|c| c.pending).unwrap_or_default();
    out!("outbox rows still pending at the end: {pending}");
    hub.stop().await;
    Ok(ExitCode::SUCCESS)
}
