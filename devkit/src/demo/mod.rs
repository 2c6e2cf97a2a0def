//! `carehub demo`: a municipality's month of decisions, visits and invoices, end to end,
//! with no setup.
//!
//! The demo starts the real hub on an embedded SQLite file and plays the vendors with small
//! in-process HTTP servers on 127.0.0.1 ([`vendors`]): a Combine case-management system that
//! records the callbacks it gets, and two Phoniro systems that take orders and answer them
//! (confirm, sometimes reject, report plans) by calling the hub back like the real ones
//! would. One Phoniro system is down for the first days. Everything travels over loopback
//! HTTP through the public API, and every figure printed is read back from the hub's store.
//!
//! It plays one month (the one before the instant it is run for) on the hub's clock, which
//! it moves forward from the month's first morning to the fifth of the next: decisions on
//! days 1-3, each provider's answers on their own day (mostly within the deadlines, a few
//! late on purpose), the decisions' later versions and the providers' reports on theirs
//! (`life`). On the next month's first morning the month's visits arrive ([`visits`]),
//! drawn from each client's granted time as the hub prorates it, with planted outliers and
//! faults; on the fifth the providers invoice it and the follow-up is read ([`invoices`]).
//! The demo fails if a figure it prints differs from what it planted.
//!
//! # Steps
//! [`run()`] starts the vendors and the hub (`Demo::start`), then plays one numbered section
//! of its narrative per method of `Demo`, in order: decisions, deliveries, the outage and
//! its replay, the other vendors, (the month played day by day, `Demo::play_month`) the
//! answers, deadlines, a decision's life, the month of visits, invoices with the follow-up,
//! and the message log.
//!
//! # Layout
//! - this module: the options, the hub's configuration and the steps;
//! - `scenario`: the cast and the calendar every step draws on (providers, clients, the
//!   month played, Stockholm times), so no section imports another;
//! - [`vendors`]: the mock vendors, reusable apart from the demo;
//! - `life`: section 7, the decisions' later versions and the providers' reports;
//! - [`visits`]: section 8, the month of visits with its planted faults;
//! - [`invoices`]: section 9, the providers' PEPPOL invoices and the follow-up.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use carehub_core::store::{ChainReport, DeliveryFilter, LogFilter, OrderFilter, Store};
use carehub_model::Clock;
use carehub_server::auth::{Auth, Role};
use carehub_server::config::Config;
use carehub_server::run::RunningHub;
use carehub_server::{assemble, run};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::sshd::LocalSshd;
use vendors::{MockCaseManagement, MockPhoniro};

pub mod invoices;
mod life;
mod scenario;
pub mod vendors;
pub mod visits;

use scenario::{clients, stockholm, PlayedMonth, DEMO_RATE_KR, FEED_PAGE, PROVIDERS, SFTP_PROVIDER};

/// The day of the month ParaGå reports its plans (a file for all its orders).
const PARAGA_PLANS_ON: u64 = 9;

/// `carehub demo`'s options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DemoArgs {
    /// Keep the database here instead of in a temporary folder.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Keep the hub (and the mock vendors) running afterwards, for a look.
    #[arg(long)]
    pub serve: bool,
    /// Run as if it were this instant (RFC 3339, e.g. 2027-03-28T01:30:00+01:00): the
    /// hub's clock and the demo's dates start there. Default: now.
    #[arg(long, value_parser = parse_instant)]
    pub at: Option<DateTime<Utc>>,
}

/// An instant on the command line: RFC 3339 with its offset.
fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{e}: expected an RFC 3339 instant such as 2027-03-28T01:30:00+01:00"))
}

const SECRET: &str = "demo-only-secret-never-use-in-production-0123";

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

fn decision(
    id: &str,
    pnr: &str,
    provider: &str,
    month: &PlayedMonth,
    decided_at: &str,
    services: &[(&str, u32)],
) -> String {
    let mut s = format!(
        "<Beslut xmlns=\"urn:carehub:vendor:combine:1\">\n  <BeslutsId>{id}</BeslutsId>\n  <Personnummer>{}-{}</Personnummer>\n  <Handlaggare>hl-{}</Handlaggare>\n  <Utforare orgnr=\"{provider}\"/>\n  <GiltigFrom>{}</GiltigFrom><GiltigTom>{}</GiltigTom>\n  <Beslutstidpunkt>{}</Beslutstidpunkt>\n",
        &pnr[..8],
        &pnr[8..],
        100 + id.len() % 7,
        month.first,
        month.valid_to(),
        decided_at
    );
    for (code, minutes) in services {
        s.push_str(&format!("  <Insats kod=\"{code}\"><MinuterPerManad>{minutes}</MinuterPerManad></Insats>\n"));
    }
    s.push_str("</Beslut>\n");
    s
}

/// Runs the demo.
pub async fn run(options: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let temp = tempfile::tempdir().context("cannot create a temporary folder")?;
    let db = options.db.clone().unwrap_or_else(|| temp.path().join("carehub-demo.db"));
    // The month before the instant the demo is run for, played on the hub's clock from its
    // first morning to the fifth of the next month.
    let at = options.at.unwrap_or_else(|| Clock::system().now());
    let month = PlayedMonth::before(carehub_model::local_date(at));
    let clock = Clock::starting_at(stockholm(month.first, 8 * 60));
    let demo = Demo::start(&db, clock, month, at.format("%y%m%d%H%M%S").to_string()).await?;
    demo.introduce(&db, options.db.is_none());
    demo.decisions().await?;
    demo.deliveries().await?;
    demo.outage_and_replay().await?;
    demo.other_vendors().await?;
    let lives = demo.play_month().await?;
    let orders = demo.answers().await?;
    demo.deadlines().await?;
    let mut planted = demo.life(&lives).await?;
    let figures = demo.visits().await?;
    planted.extend(figures.problems.iter().cloned());
    planted.extend(demo.invoices(&figures).await?);
    let report = demo.message_log().await?;
    out!("done in {:.1} s", started.elapsed().as_secs_f64());

    if options.serve {
        let admin = demo.auth.issue("demo-admin", Role::Admin, None, None, TTL)?;
        let url = &demo.url;
        out!("");
        out!("The hub keeps running at {url} (Ctrl-C stops it). An admin token:");
        out!("  export TOKEN={admin}");
        out!("  curl -s -H \"Authorization: Bearer $TOKEN\" '{url}/v1/orders?overdue=true'");
        out!(
            "  curl -s -H \"Authorization: Bearer $TOKEN\" {url}/v1/orders/{}/trace",
            orders.as_deref().unwrap_or("O-...")
        );
        out!("  curl -s {url}/metrics");
        let _ = tokio::signal::ctrl_c().await;
    } else if options.db.is_none() {
        out!("(the temporary database is removed now; `carehub demo --db FILE` keeps it, `--serve` keeps the hub up)");
    }
    demo.hub.stop().await;
    drop(temp);
    anyhow::ensure!(
        planted.is_empty(),
        "the hub's figures differ from what the demo planted:\n  {}",
        planted.join("\n  ")
    );
    Ok(if report.first_bad.is_none() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// How long the demo's tokens live: the whole played month and the days after it, on the
/// hub's clock.
const TTL: Duration = Duration::from_secs(45 * 24 * 3600);

/// The demo once it is up: the mock vendors, the hub serving on loopback, and what its
/// steps share. Each step prints one numbered section of the narrative.
struct Demo {
    clock: Clock,
    auth: Auth,
    /// Each provider's token, by organisation number: the mock Phoniro systems answer with
    /// them, the visits are pushed and the invoices sent with them.
    tokens: BTreeMap<String, String>,
    /// Combine's and Treserva's tokens: each case-management system may send only as itself.
    cm_token: String,
    treserva_token: String,
    http: reqwest::Client,
    norr: Arc<MockPhoniro>,
    soder: Arc<MockPhoniro>,
    combine: Arc<MockCaseManagement>,
    treserva: Arc<MockCaseManagement>,
    urls: VendorUrls,
    /// Procapita's and ParaGå's sshd, when OpenSSH's server is installed.
    sftp: Option<(LocalSshd, LocalSshd)>,
    hub: RunningHub,
    url: String,
    store: Arc<dyn Store>,
    /// This run's mark in the decisions' ids, so a kept database takes another run.
    run: String,
    /// The month the decisions start in and the visits and invoices are played.
    month: PlayedMonth,
    clients: Vec<&'static str>,
    /// What the demo, playing ParaGå, answered its orders, and when.
    paraga_answers: std::sync::Mutex<BTreeMap<String, vendors::Answered>>,
}

/// Where the mock vendors listen.
struct VendorUrls {
    combine: String,
    norr: String,
    soder: String,
    treserva: String,
}

impl Demo {
    /// Starts the mock vendors (and the SFTP pair when it can), then the hub on `db`,
    /// configured with them.
    async fn start(db: &std::path::Path, clock: Clock, month: PlayedMonth, run: String) -> anyhow::Result<Demo> {
        let auth = Auth::new(SECRET, clock.clone());
        let tokens: BTreeMap<String, String> = PROVIDERS
            .iter()
            .map(|p| {
                Ok((p.org.to_owned(), auth.issue(p.system, Role::ProviderSystem, Some(p.system), Some(p.org), TTL)?))
            })
            .collect::<anyhow::Result<_>>()?;
        let http = reqwest::Client::new();
        let mock = |name| MockPhoniro::new(name, tokens.clone(), http.clone(), clock.clone());
        let norr = Arc::new(mock("phoniro-norr").flaky());
        let soder = Arc::new(mock("phoniro-soder"));
        soder.set_down(true);
        let combine = Arc::new(MockCaseManagement::default());
        let treserva = Arc::new(MockCaseManagement::default());
        let urls = VendorUrls {
            combine: vendors::serve(combine.combine_router()).await?,
            norr: vendors::serve(norr.router()).await?,
            soder: vendors::serve(soder.router()).await?,
            treserva: vendors::serve(treserva.treserva_router()).await?,
        };
        let mut more = format!(
            "\n[[systems]]\nname = \"treserva-danderyd\"\nvendor = \"treserva\"\nendpoint_url = \"{}/soap\"\n",
            urls.treserva
        );
        // The SFTP pair needs an SSH server; the demo starts one of its own when the machine
        // has OpenSSH's (scripts/test installs it), and says so when it has not.
        let sftp = if LocalSshd::available() {
            match (LocalSshd::start(), LocalSshd::start()) {
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
            Config::parse(&config_text(db, &urls.combine, &urls.norr, &urls.soder, &more), std::path::Path::new("."))
                .map_err(|e| anyhow::anyhow!("the demo configuration is invalid: {e}"))?;
        let runtime = assemble::build(&config, clock.clone())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot bind the hub")?;
        let hub = run::start(runtime, listener).await?;
        let url = hub.url();
        for p in [&norr, &soder] {
            p.set_hub_url(&url);
        }
        let store = hub.state.hub.store().clone();
        let cm_token = auth.issue("combine-ekero", Role::CaseManagement, Some("combine-ekero"), None, TTL)?;
        let treserva_token =
            auth.issue("treserva-danderyd", Role::CaseManagement, Some("treserva-danderyd"), None, TTL)?;
        Ok(Demo {
            clock,
            auth,
            tokens,
            cm_token,
            treserva_token,
            http,
            norr,
            soder,
            combine,
            treserva,
            urls,
            sftp,
            hub,
            url,
            store,
            run,
            month,
            clients: clients(),
            paraga_answers: std::sync::Mutex::new(BTreeMap::new()),
        })
    }

    /// Who plays which part, and where.
    fn introduce(&self, db: &std::path::Path, temporary: bool) {
        let (url, urls) = (&self.url, &self.urls);
        out!("carehub demo: Ekerö kommun, home care (hemtjänst)");
        out!("");
        out!("  hub            {url}   database {}{}", db.display(), if temporary { " (temporary)" } else { "" });
        out!("  combine-ekero  {}   case management (mock Combine)", urls.combine);
        out!(
            "  phoniro-norr   {}   time registration for {} and {} (mock Phoniro, a flaky gateway)",
            urls.norr,
            PROVIDERS[0].name,
            PROVIDERS[1].name
        );
        out!("  phoniro-soder  {}   time registration for {} (mock Phoniro, DOWN)", urls.soder, PROVIDERS[2].name);
        out!("  treserva-danderyd {}   case management over SOAP 1.1 (mock Treserva)", urls.treserva);
        match &self.sftp {
            Some((p, g)) => {
                out!("  procapita-sodertalje sftp://127.0.0.1:{}   case management, ISO-8859-1 XML files (local OpenSSH)", p.port);
                out!("  paraga-stockholm  sftp://127.0.0.1:{}   time registration, Windows-1252 CSV files (local OpenSSH)", g.port);
            }
            None => out!("  (no SFTP pair: /usr/sbin/sshd is not installed; `apt-get install openssh-server` shows Procapita and ParaGå too)"),
        }
        out!("");
    }

    /// A personal identity number with a wrong check digit.
    fn bad_pnr(&self) -> String {
        let c = self.clients[0];
        let wrong = (c.as_bytes()[11] - b'0' + 1) % 10;
        format!("{}{}", &c[..11], wrong)
    }

    /// Moves the hub's clock forward to `minutes` after midnight on `day` (Stockholm); never
    /// back.
    fn at(&self, day: chrono::NaiveDate, minutes: i64) {
        let to = stockholm(day, minutes);
        if to > self.clock.now() {
            self.clock.set(to);
        }
    }

    /// Section 1, decisions from Combine over HTTP on the month's first three days: valid
    /// ones, faulty ones (on the first) and a repeat (on the third).
    async fn decisions(&self) -> anyhow::Result<()> {
        let (run, month, clients) = (&self.run, &self.month, &self.clients);
        let service_sets: [&[(&str, u32)]; 4] = [
            &[("SERV", 480), ("PO", 1800)],
            &[("SERV", 240)],
            &[("PO", 2400), ("MAT", 300), ("LARM", 30)],
            &[("SERV", 360), ("LEDS", 120)],
        ];
        // (day of the month, what, body)
        let mut batch: Vec<(u64, String, String)> = Vec::new();
        let mut n = 0usize;
        for p in PROVIDERS {
            for _ in 0..p.decisions {
                n += 1;
                let late = n.is_multiple_of(9);
                let id = if late { format!("DEC-{run}-LATE-{n:03}") } else { life::decision_id(run, n) };
                let day = 1 + (n as u64 - 1) % 3;
                batch.push((
                    day,
                    format!("decision {id}"),
                    decision(
                        &id,
                        clients[n % clients.len()],
                        p.org,
                        month,
                        &month.decided_at_on(day),
                        service_sets[n % 4],
                    ),
                ));
            }
        }
        let good = batch.len();
        let first = month.decided_at();
        let mut faulty = |what: &str, body: String| batch.push((1, what.to_owned(), body));
        faulty(
            "a mistyped personal identity number",
            decision(&format!("DEC-{run}-901"), &self.bad_pnr(), PROVIDERS[0].org, month, &first, service_sets[1]),
        );
        faulty(
            "a provider with no contract in Ekerö",
            decision(&format!("DEC-{run}-902"), clients[1], "5599000022", month, &first, service_sets[1]),
        );
        faulty(
            "an unknown service code",
            decision(&format!("DEC-{run}-903"), clients[2], PROVIDERS[0].org, month, &first, &[("GOLF", 60)]),
        );
        faulty(
            "no personal identity number",
            format!("<Beslut xmlns=\"urn:carehub:vendor:combine:1\"><BeslutsId>DEC-{run}-904</BeslutsId><Handlaggare>hl-1</Handlaggare><Utforare orgnr=\"5599000014\"/><GiltigFrom>{}</GiltigFrom><Insats kod=\"SERV\"><MinuterPerManad>60</MinuterPerManad></Insats></Beslut>", month.first),
        );
        faulty(
            "a file cut off in transfer",
            decision(&format!("DEC-{run}-905"), clients[3], PROVIDERS[0].org, month, &first, service_sets[0])[..150]
                .to_owned(),
        );
        faulty(
            "an XML bomb (entity expansion)",
            "<?xml version=\"1.0\"?><!DOCTYPE b [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;\">]><Beslut>&b;</Beslut>".into(),
        );
        faulty(
            "something that is not a decision",
            "<Faktura xmlns=\"urn:carehub:vendor:combine:1\"><Belopp>1200</Belopp></Faktura>".into(),
        );
        let repeat = batch[0].2.clone();
        let faults = batch.len() - good;

        out!(
            "1. Combine sends {} decisions on {} to {} ({good} valid, {faults} with faults, 1 repeat)",
            batch.len() + 1,
            month.day(1),
            month.day(3)
        );
        let mut receipts = Vec::new();
        for day in 1..=3u64 {
            self.at(month.day(day), 9 * 60 + 5);
            let mut tasks = tokio::task::JoinSet::new();
            for (_, what, body) in batch.iter().filter(|b| b.0 == day) {
                tasks.spawn(self.send_decision(what.clone(), body.clone()));
            }
            while let Some(r) = tasks.join_next().await {
                receipts.push(r?);
            }
            settle(self.store.as_ref(), &self.combine, Duration::from_secs(30)).await;
            if day < 3 {
                self.at(month.day(day), 16 * 60);
                self.answer_day().await;
            }
        }
        // The repeat goes last, after the original is in.
        receipts.push(self.send_decision("the first decision, sent again".into(), repeat).await);
        receipts.sort_by(|a, b| a.0.cmp(&b.0));
        let accepted = receipts.iter().filter(|r| r.1 == 202).count();
        out!("   accepted and logged before the answer: {accepted}");
        for (what, status, body) in receipts.iter().filter(|r| r.1 != 202) {
            let code = body["code"].as_str().or(body["status"].as_str()).unwrap_or("?");
            out!("   {status} {code:<34} {what}");
        }
        out!("");
        Ok(())
    }

    /// Sends one Combine message; what it was, the HTTP status and the receipt.
    fn send_decision(
        &self,
        what: String,
        body: String,
    ) -> impl std::future::Future<Output = (String, u16, Value)> + Send + 'static {
        let (http, url, token) = (self.http.clone(), self.url.clone(), self.cm_token.clone());
        async move {
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
        }
    }

    /// 2. Deliveries: waits until the outbox has settled (the down provider dead-letters).
    async fn deliveries(&self) -> anyhow::Result<()> {
        let store = self.store.as_ref();
        settle(store, &self.combine, Duration::from_secs(30)).await;
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
        Ok(())
    }

    /// 3. The outage ends; the dead letters are replayed.
    async fn outage_and_replay(&self) -> anyhow::Result<()> {
        let store = self.store.as_ref();
        self.at(self.month.day(3), 15 * 60);
        self.soder.set_down(false);
        let requeued = self.hub.state.hub.replay(None).await?;
        out!(
            "3. {} 15:00: phoniro-soder is back; `carehub replay` resends the {} dead letters",
            self.month.day(3),
            requeued.len()
        );
        settle(store, &self.combine, Duration::from_secs(30)).await;
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
            self.soder.orders(),
            requeued.len()
        );
        out!("");
        Ok(())
    }

    /// Sends the answers the mock providers owe today and lets the hub carry them on.
    async fn answer_day(&self) {
        if self.norr.answer_due().await + self.soder.answer_due().await > 0 {
            settle(self.store.as_ref(), &self.combine, Duration::from_secs(30)).await;
        }
    }

    /// The month from the third on: each day the providers' answers due, the decisions'
    /// later versions and the providers' reports, on the hub's clock; the lines of
    /// section 7 for what was sent.
    async fn play_month(&self) -> anyhow::Result<Vec<life::Sent>> {
        let life = self.life_run();
        let mut sent = Vec::new();
        for n in 3..=u64::try_from(self.month.len()).unwrap_or(28) {
            let day = self.month.day(n);
            self.at(day, 10 * 60);
            let lines = life.send_day(n, &scenario::rfc3339(self.clock.now())).await?;
            if !lines.is_empty() {
                settle(self.store.as_ref(), &self.combine, Duration::from_secs(30)).await;
            }
            sent.extend(lines);
            if n == PARAGA_PLANS_ON {
                self.paraga_plans().await?;
            }
            self.answer_day().await;
        }
        self.at(self.month.last, 18 * 60);
        anyhow::ensure!(
            self.norr.owed() + self.soder.owed() == 0,
            "the mock providers still owe answers at the end of the month"
        );
        Ok(sent)
    }

    fn life_run(&self) -> life::LifeRun<'_> {
        life::LifeRun {
            http: &self.http,
            url: &self.url,
            cm_token: &self.cm_token,
            tokens: &self.tokens,
            store: self.store.as_ref(),
            run: &self.run,
            month: self.month,
            clients: &self.clients,
        }
    }

    /// ParaGå's plans: one CSV file for the orders the demo accepted as ParaGå, dated
    /// today; waits until the hub has them.
    async fn paraga_plans(&self) -> anyhow::Result<()> {
        let Some((_, paraga)) = &self.sftp else { return Ok(()) };
        use carehub_core::mapping::text;
        let cp1252 = text::encoding("windows-1252").context("Windows-1252")?;
        let today = self.clock.today();
        let orders: Vec<String> = self.paraga_answers.lock().map(|a| a.keys().cloned().collect()).unwrap_or_default();
        let mut csv = String::from("Uppdragsid;Genomförandeplan upprättad\r\n");
        for o in &orders {
            csv.push_str(&format!("{o};{today}\r\n"));
        }
        paraga.drop_file(
            &format!("plan-{today}.csv"),
            &text::encode(&csv, cp1252).map_err(|e| anyhow::anyhow!("{e}"))?,
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let planned = self
                .store
                .orders(OrderFilter { provider: Some(SFTP_PROVIDER.into()), limit: 100, ..OrderFilter::default() })
                .await?
                .iter()
                .filter(|o| o.plan_established_on.is_some())
                .count();
            if planned >= orders.len() {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "ParaGå's plan file was not taken in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Ok(mut answers) = self.paraga_answers.lock() {
            for a in answers.values_mut() {
                a.planned = Some(today);
            }
        }
        settle(self.store.as_ref(), &self.combine, Duration::from_secs(30)).await;
        Ok(())
    }

    /// What every provider answered, and when: the mock Phoniro systems' and ParaGå's.
    fn answered(&self) -> BTreeMap<String, vendors::Answered> {
        let mut all = self.norr.answered();
        all.extend(self.soder.answered());
        if let Ok(paraga) = self.paraga_answers.lock() {
            all.extend(paraga.iter().map(|(k, v)| (k.clone(), *v)));
        }
        all
    }

    /// Section 5, the providers' answers over the month, carried back to the
    /// case-management systems. Returns the first order's id.
    async fn answers(&self) -> anyhow::Result<Option<String>> {
        let orders = self.store.orders(OrderFilter { limit: 10_000, ..OrderFilter::default() }).await?;
        let by_status = |s: &str| orders.iter().filter(|o| o.status == s).count();
        out!("5. Providers answer over the month, each on its day by the hub's clock; the hub carries it back as XML");
        out!(
            "   orders accepted {}, rejected {}, delivered but unanswered {}; plans established {}",
            by_status("accepted"),
            by_status("rejected"),
            by_status("delivered"),
            orders.iter().filter(|o| o.plan_established_on.is_some()).count()
        );
        let answered = self.answered();
        let (mut acks, mut plans) = ((0, 0), (0, 0));
        for o in &orders {
            let Some(a) = answered.get(&o.order.id) else { continue };
            if let Some(on) = a.confirmed {
                if on <= o.order.execute_by {
                    acks.0 += 1
                } else {
                    acks.1 += 1
                }
            }
            if let Some(on) = a.planned {
                if on <= o.order.plan_due {
                    plans.0 += 1
                } else {
                    plans.1 += 1
                }
            }
        }
        out!(
            "   answered by the execute-by date {}, after it {} (on purpose); plans by the due date {}, after it {}",
            acks.0,
            acks.1,
            plans.0,
            plans.1
        );
        out!(
            "   Combine received {} acknowledgements (Kvittens) and {} plan notices (Genomforandeplan)",
            self.combine.acks(),
            self.combine.plans()
        );
        out!(
            "   treserva-danderyd got {} TaEmotKvittens and {} TaEmotGenomforandeplan calls back",
            self.treserva.acks(),
            self.treserva.plans()
        );
        out!("");
        Ok(orders.first().map(|o| o.order.id.as_str().to_owned()))
    }

    /// 6. Deadlines at the month's end: orders not confirmed or without a plan in time.
    async fn deadlines(&self) -> anyhow::Result<()> {
        let store = self.store.as_ref();
        let today = self.clock.today();
        let overdue =
            store.orders(OrderFilter { overdue_on: Some(today), limit: 10_000, ..OrderFilter::default() }).await?;
        let counts = store.overdue_counts(today).await?;
        out!("6. Deadlines on {today} (14 days to confirm, 14 days to a plan): GET /v1/orders?overdue=true");
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
        Ok(())
    }

    /// 7. A decision's life: what the month's later versions and reports became.
    async fn life(&self, sent: &[life::Sent]) -> anyhow::Result<Vec<String>> {
        self.life_run().report(sent, &self.norr, &self.soder, &self.combine).await
    }

    /// 6. More vendors: Treserva over SOAP, and the SFTP pair.
    async fn other_vendors(&self) -> anyhow::Result<()> {
        let (run, month, clients, url) = (&self.run, &self.month, &self.clients, &self.url);
        out!("4. Other vendors on {}, through the same mapping engine and delivery loop", month.day(3));
        let mut soap_ok = 0;
        let mut soap_fault = None;
        for i in 0..4 {
            let pnr = if i == 3 { self.bad_pnr() } else { clients[(37 + i) % clients.len()].to_owned() };
            let body = format!(
                "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:tre=\"urn:carehub:vendor:treserva:1\"><soapenv:Body>\
                 <tre:RegistreraBeslut><tre:Beslut><tre:Id>TRE-{run}-{i}</tre:Id><tre:Klient><tre:Personnr>{pnr}</tre:Personnr></tre:Klient>\
                 <tre:Handlaggare>anna.l</tre:Handlaggare><tre:Utforare><tre:Orgnr>{}</tre:Orgnr></tre:Utforare><tre:Period><tre:From>{}</tre:From></tre:Period><tre:Beslutsdatum>{}</tre:Beslutsdatum>\
                 <tre:Insatser><tre:Insats><tre:Kod>HT-PO</tre:Kod><tre:Tid>1200</tre:Tid></tre:Insats></tre:Insatser></tre:Beslut></tre:RegistreraBeslut></soapenv:Body></soapenv:Envelope>",
                PROVIDERS[i % 2].org,
                month.first,
                month.decided_at()
            );
            let resp = self
                .http
                .post(format!("{url}/v1/systems/treserva-danderyd/messages"))
                .bearer_auth(&self.treserva_token)
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
        settle(self.store.as_ref(), &self.treserva, Duration::from_secs(30)).await;
        out!(
            "   treserva-danderyd (SOAP): {soap_ok} decisions answered RegistreraBeslutResponse, 1 answered with a SOAP fault {}",
            soap_fault.as_deref().unwrap_or("?")
        );
        if let Some((procapita, paraga)) = &self.sftp {
            let orders = sftp_pair(procapita, paraga, clients, run, month, self.store.as_ref(), &self.clock).await?;
            let today = self.clock.today();
            if let Ok(mut answers) = self.paraga_answers.lock() {
                for o in orders {
                    answers.insert(o, vendors::Answered { confirmed: Some(today), planned: None });
                }
            }
        }
        out!("");
        Ok(())
    }

    /// Section 8, the month's visits, reported on the next month's first morning. Returns
    /// what was planted and where the hub's figures differ from it.
    async fn visits(&self) -> anyhow::Result<visits::Played> {
        self.at(self.month.next(1), 7 * 60);
        let visits = visits::VisitRun {
            http: &self.http,
            url: &self.url,
            cm_token: &self.cm_token,
            tokens: &self.tokens,
            store: self.store.as_ref(),
            month: self.month,
            feeds: [("phoniro-norr", self.norr.as_ref()), ("phoniro-soder", self.soder.as_ref())],
            paraga: self.sftp.as_ref().map(|(_, g)| g),
            procapita: self.sftp.as_ref().map(|(p, _)| p),
            combine: &self.combine,
            treserva: &self.treserva,
        };
        let played = visits.play().await?;
        for p in &played.problems {
            out!("   MISMATCH {p}");
        }
        out!("");
        Ok(played)
    }

    /// Section 9, invoices on the next month's fifth (each provider bills the month in its
    /// own style), then the month's follow-up. Returns where the hub's figures differ from
    /// what was planted.
    async fn invoices(&self, played: &visits::Played) -> anyhow::Result<Vec<String>> {
        self.at(self.month.next(5), 9 * 60);
        let styles = [invoices::Style::Honest, invoices::Style::OverBilling, invoices::Style::NoPlanClaim];
        let billers: Vec<invoices::Biller> = PROVIDERS
            .iter()
            .zip(styles)
            .map(|(p, style)| invoices::Biller {
                org: p.org,
                name: p.name,
                system: p.system,
                rate: i64::from(DEMO_RATE_KR) * 100,
                style,
            })
            .collect();
        let deadlines = self.timeliness().await?;
        let problems = invoices::InvoiceRun {
            http: &self.http,
            url: &self.url,
            tokens: &self.tokens,
            reader: &self.cm_token,
            first: self.month.first,
            last: self.month.last,
        }
        .play(&billers, &played.expected, &deadlines)
        .await?;
        for p in &problems {
            out!("   MISMATCH {p}");
        }
        out!("");
        Ok(problems)
    }

    /// What the follow-up should say of plans and confirmations due in the month, from
    /// what the providers answered and when, against each order's deadlines.
    async fn timeliness(&self) -> anyhow::Result<invoices::Timeliness> {
        let orders = self.store.orders(OrderFilter { limit: 10_000, ..OrderFilter::default() }).await?;
        let answered = self.answered();
        let today = self.clock.today();
        let within = |d: chrono::NaiveDate| d >= self.month.first && d <= self.month.last;
        let mut t = invoices::Timeliness::default();
        for o in &orders {
            let a = answered.get(&o.order.id).copied().unwrap_or_default();
            let rejected = o.ack_status == Some(carehub_model::AckStatus::Rejected);
            if within(o.order.plan_due) && !rejected {
                t.plans.add(a.planned, o.order.plan_due, today);
            }
            if within(o.order.execute_by) {
                t.confirmations.add(a.confirmed, o.order.execute_by, today);
            }
        }
        Ok(t)
    }

    /// 10. The message log: its hash chain verified, its rejections counted.
    async fn message_log(&self) -> anyhow::Result<ChainReport> {
        let store = self.store.as_ref();
        let report = carehub_core::store::verify_chain(store).await?;
        let rejected = store
            .log_entries(LogFilter { status: Some("rejected".into()), limit: 10_000, ..LogFilter::default() })
            .await?;
        out!(
            "10. The message log: {} entries, hash-chained; {} rejections kept with their codes",
            report.entries,
            rejected.len()
        );
        match &report.first_bad {
            None => out!("   audit verify: ok, head {}", &report.head[..16]),
            Some((seq, why)) => out!("   audit verify: FAILED at entry {seq}: {why}"),
        }
        out!("");
        Ok(report)
    }
}

/// Waits until nothing is pending in the outbox and the case-management mock's callbacks
/// stop changing.
async fn settle(store: &dyn Store, combine: &MockCaseManagement, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut quiet = 0;
    let mut last = (usize::MAX, usize::MAX, usize::MAX);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let pending = store.outbox_counts().await.map(|c| c.pending).unwrap_or(1);
        let (deviations, needs) = combine.reports();
        let now = (combine.acks() + combine.plans(), deviations, needs);
        if pending == 0 && now == last {
            quiet += 1;
            if quiet >= 3 {
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
    procapita: &LocalSshd,
    paraga: &LocalSshd,
    clients: &[&str],
    run: &str,
    month: &PlayedMonth,
    store: &dyn Store,
    clock: &Clock,
) -> anyhow::Result<Vec<String>> {
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
    for order in &ids {
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
    Ok(ids)
}
