//! `carehub mock --vendor V`: a real carehub hub playing the hub's side toward one
//! vendor's system, with a clock the tester sets, faults, state per business key, and a
//! journal of every exchange.
//!
//! Why a real hub and not a recording: the mock is assembled by `carehub_server` from the
//! same mapping files, intake, rules and delivery loop as production, on an embedded
//! SQLite file in a data folder, so a payload it takes is one the hub takes and a refusal
//! carries the hub's own code. What the mock adds sits around the hub, never inside it:
//! a journaling middleware around the hub's router, a journaling wrapper around the
//! vendor's outbound transport, a counterpart system it injects messages through, and
//! its own `/mock/` API on the same listener.
//!
//! # Layout
//! - [`profile`]: the vendors, each with its side, transport and default settings;
//! - [`config`]: the mock's file, and the hub configuration made from it;
//! - [`journal`]: the journal (`journal.sqlite`) and the outbound transport's wrapper;
//! - [`inbound`]: faults, the journal's middleware, and the counterpart's checks;
//! - [`send`]: the messages the counterpart injects for a [`SendCommand`];
//! - [`files`]: the SFTP drop box of the file-based vendors (Procapita, ParaGå), which the
//!   hub polls, and the journaling of every file the vendor leaves there;
//! - [`tls`]: the handshakes the hub refuses over mTLS (an expired or a foreign client
//!   certificate), journaled;
//! - `api`: the `/mock/` routes and the journal's page.
//!
//! The hub's deadlines (an order overdue 15 days after it was sent) are worked out when
//! read, from the hub's clock, so moving the clock is all it takes for them to follow;
//! moving it also wakes the delivery loop, so retries due by the new time go at once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use carehub_core::adapter::Transport;
use carehub_core::hub::Hub;
use carehub_core::intake::Sender;
use carehub_core::store::{DecisionRecord, LogStatus, Op, OrderFilter, OrderRecord, VisitFilter};
use carehub_model::{Clock, Deadlines, OrderStatus};
use carehub_server::auth::{Auth, Role};
use carehub_server::run::RunningHub;
use chrono::{DateTime, Datelike, Utc};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::exchange::{Counterpart, Direction, Exchange, Fault, SendCommand};

mod api;
pub mod config;
pub mod files;
pub mod inbound;
pub mod journal;
pub mod profile;
pub mod send;
pub mod tls;

pub use config::MockConfig;
use inbound::{Faults, Inbound};
use journal::{Journal, JournalMode, Journaled, JournaledFeed};
use profile::{Profile, Side, CASE_MANAGEMENT_COUNTERPART, PROVIDER_COUNTERPART};

/// The client a decision is for when a command names none: the profiles' sample client.
pub const DEFAULT_CLIENT: &str = "193601016987";

/// How long `send` waits for the hub to attempt its delivery.
const SEND_WAIT: Duration = Duration::from_secs(30);

/// What can go wrong in the mock, each with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum MockError {
    /// `--vendor` names no vendor carehub knows.
    #[error("unknown vendor '{vendor}', known: {known}")]
    UnknownVendor { vendor: String, known: String },
    /// The mock's configuration, or the hub configuration made from it, is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The journal's file cannot be opened, read or written.
    #[error("journal: {0}")]
    Journal(String),
    /// The hub could not be started.
    #[error("the hub: {0}")]
    Hub(String),
    /// A command cannot be carried out as given.
    #[error("{0}")]
    Send(String),
    /// A command asks for a message this mock cannot send.
    #[error("the mock cannot send '{message}' to this vendor; it can send: {supported}")]
    Unsupported { message: String, supported: String },
    /// The hub refused what the counterpart injected.
    #[error("the hub refused the counterpart's message: {code}: {message}")]
    Refused { code: String, message: String },
    /// The hub made no delivery attempt in time.
    #[error("the hub attempted no delivery of {key} within {seconds} s")]
    NoDelivery { key: String, seconds: u64 },
    /// `/mock/state/{kind}` names a kind the mock does not keep.
    #[error("no state of kind '{0}'; kinds: order, client, decision, visit")]
    UnknownKind(String),
    /// The hub's store could not be read or written.
    #[error("the hub's store: {0}")]
    Store(String),
}

impl MockError {
    /// The stable code the API answers with.
    pub fn code(&self) -> &'static str {
        match self {
            MockError::UnknownVendor { .. } => "MOCK_UNKNOWN_VENDOR",
            MockError::Config(_) => "MOCK_CONFIG",
            MockError::Journal(_) => "MOCK_JOURNAL",
            MockError::Hub(_) => "MOCK_HUB",
            MockError::Send(_) => "MOCK_BAD_COMMAND",
            MockError::Unsupported { .. } => "MOCK_UNSUPPORTED_MESSAGE",
            MockError::Refused { .. } => "MOCK_REFUSED",
            MockError::NoDelivery { .. } => "MOCK_NO_DELIVERY",
            MockError::UnknownKind(_) => "MOCK_UNKNOWN_KIND",
            MockError::Store(_) => "MOCK_STORE",
        }
    }

    /// A mistake in how the mock was started (exit code 2), not a failure while running.
    pub fn is_usage(&self) -> bool {
        matches!(self, MockError::UnknownVendor { .. } | MockError::Config(_))
    }
}

/// How to start a mock in process.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    pub vendor: String,
    pub config: MockConfig,
    /// The folder relative paths in the configuration are taken from.
    pub base: PathBuf,
    /// The data folder (the hub's database, the journal); default a temporary folder.
    pub data: Option<PathBuf>,
    /// Where to listen, over the configuration's `listen` (`127.0.0.1:0` in tests).
    pub listen: Option<String>,
    /// Whether exchanges are journaled (off only to measure what the journal costs).
    pub journal: JournalMode,
}

/// What the hub's API and the `/mock/` routes share.
pub(crate) struct Shared {
    profile: Profile,
    clock: Clock,
    journal: Arc<Journal>,
    faults: Arc<Faults>,
    hub: Arc<Hub>,
    outbound: Arc<Journaled>,
    /// Wakes the hub's delivery loop.
    outbox: Arc<Notify>,
    auth: Auth,
    providers: Vec<String>,
    deadlines: Deadlines,
    mock_token: Option<String>,
    /// The vendor system's token, printed at the start.
    token: String,
    /// The last decision the counterpart sent (its id as sent), for changes and ends.
    last_decision: Mutex<Option<String>>,
    seq: AtomicU64,
}

/// A running mock hub.
pub struct MockHub {
    shared: Arc<Shared>,
    hub: RunningHub,
    url: String,
    data: PathBuf,
    sink: tokio::task::JoinHandle<()>,
    /// The SFTP vendors' drop box.
    dropbox: Option<files::DropboxSide>,
    /// The hub serves HTTPS and checks client certificates against a client CA.
    mtls: bool,
    _temp: Option<tempfile::TempDir>,
}

/// Tokens the mock issues live this long on its clock, which a tester may move years.
const TOKEN_TTL: Duration = Duration::from_secs(20 * 365 * 24 * 3600);

impl MockHub {
    /// A mock for `vendor` on a free port of 127.0.0.1 with a temporary data folder: how the
    /// tests and the benchmarks start one.
    pub async fn on_loopback(vendor: &str, config: MockConfig) -> Result<MockHub, MockError> {
        MockHub::start(MockOptions {
            vendor: vendor.into(),
            config,
            listen: Some("127.0.0.1:0".into()),
            ..MockOptions::default()
        })
        .await
    }

    /// Starts the mock: the counterpart's sink, the hub on its listener, the journal.
    pub async fn start(options: MockOptions) -> Result<MockHub, MockError> {
        let profile = profile::profile(&options.vendor)?;
        let mut config = &options.config;
        let listen = options.listen.clone().unwrap_or_else(|| config.listen().to_owned());
        let at = config.start()?.unwrap_or_else(|| Clock::system().now());
        let (temp, data) = match &options.data {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .map_err(|e| MockError::Config(format!("cannot create the data folder {}: {e}", d.display())))?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::tempdir()
                    .map_err(|e| MockError::Config(format!("cannot create a temporary data folder: {e}")))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let clock = Clock::starting_at(at);
        let journal = Arc::new(Journal::open_as(&data.join("journal.sqlite"), clock.clone(), options.journal)?);
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .map_err(|e| MockError::Config(format!("cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| MockError::Config(e.to_string()))?;
        if config.mock_token.is_none() && !addr.ip().is_loopback() {
            return Err(MockError::Config(format!(
                "{addr} is not a loopback address: set mock_token so that /mock/ is not open to the network"
            )));
        }
        let (sink, sink_url) = serve_sink().await?;
        // A file-based vendor's system is the mock's own drop box, which the hub polls.
        let with_dropbox;
        let dropbox = if profile.transport == profile::Transport::Sftp {
            let sftp_listen = match &config.sftp_listen {
                Some(l) => l.clone(),
                // Any port for the hub means any port for the drop box too.
                None if listen.ends_with(":0") => format!("{}:0", addr.ip()),
                None => config.sftp_listen().to_owned(),
            };
            let (side, system) = files::DropboxSide::start(
                &profile,
                &data,
                &sftp_listen,
                config.sftp_password.clone(),
                config.system.as_ref(),
                journal.clone(),
            )
            .await?;
            with_dropbox = MockConfig { system: Some(system), ..config.clone() };
            config = &with_dropbox;
            Some(side)
        } else {
            None
        };
        let text = config.hub_toml(&profile, &data, &addr.to_string(), &sink_url)?;
        let hub_config = carehub_server::config::Config::parse(&text, &options.base)
            .map_err(|e| MockError::Config(e.report(std::path::Path::new("mock configuration"))))?;

        let wrapped: Mutex<Option<Arc<Journaled>>> = Mutex::new(None);
        let wire = profile.wire();
        let wrap = |name: &str, transport: Arc<dyn Transport>| -> Arc<dyn Transport> {
            if name != profile.vendor {
                return transport;
            }
            let j = Arc::new(Journaled::new(transport, journal.clone(), wire));
            *wrapped.lock().unwrap_or_else(PoisonError::into_inner) = Some(j.clone());
            j
        };
        let wrap_feed = |system: &carehub_core::adapter::System, feed| -> Arc<dyn carehub_core::adapter::Feed> {
            if system.name != profile.vendor {
                return feed;
            }
            Arc::new(JournaledFeed::new(feed, journal.clone(), system.mappings.clone()))
        };
        let runtime = carehub_server::assemble::build_with_hooks(&hub_config, clock.clone(), &wrap, &wrap_feed)
            .map_err(|e| MockError::Hub(format!("{e:#}")))?;
        let mtls = match &runtime.tls {
            Some(tls) if config.tls.as_ref().is_some_and(|t| t.contains_key("client_ca")) => {
                tls::journal_refusals(tls, journal.clone(), wire);
                true
            }
            _ => false,
        };
        let outbound = wrapped
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .ok_or_else(|| MockError::Hub("the vendor's system has no transport".into()))?;
        let hub = runtime.state.hub.clone();
        let outbox = runtime.delivery.notify.clone();
        let max_body = runtime.state.max_body;
        let auth = Auth::new(config.secret(), clock.clone());
        let providers = config.providers(profile.side);
        let token = match profile.side {
            Side::CaseManagement => {
                auth.issue(profile.vendor, Role::CaseManagement, Some(profile.vendor), None, TOKEN_TTL)
            }
            Side::Provider => auth.issue(
                profile.vendor,
                Role::ProviderSystem,
                Some(profile.vendor),
                Some(providers[0].as_str()),
                TOKEN_TTL,
            ),
        }
        .map_err(|e| MockError::Hub(format!("cannot issue the vendor's token: {e}")))?;
        let faults = Arc::new(Faults::default());
        let shared = Arc::new(Shared {
            profile,
            clock,
            journal: journal.clone(),
            faults: faults.clone(),
            hub: hub.clone(),
            outbound,
            outbox,
            auth,
            providers,
            deadlines: hub_config.deadlines(),
            mock_token: config.mock_token.clone(),
            token,
            last_decision: Mutex::new(None),
            seq: AtomicU64::new(0),
        });
        let inbound = Arc::new(Inbound::new(journal, faults, hub, profile.vendor.to_owned(), wire, max_body));
        let routes = api::routes(shared.clone());
        let running = carehub_server::run::start_with(runtime, listener, move |app| {
            routes.merge(app.layer(axum::middleware::from_fn_with_state(inbound, inbound::journal_layer)))
        })
        .await
        .map_err(|e| MockError::Hub(format!("{e:#}")))?;
        let url = running.url();
        Ok(MockHub { shared, hub: running, url, data, sink, dropbox, mtls, _temp: temp })
    }

    /// The base URL of the hub's API and of `/mock/`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The vendor system's name in the hub (the vendor's name).
    pub fn system(&self) -> &'static str {
        self.shared.profile.vendor
    }

    /// A token for the vendor's system (for a provider-side vendor, as the first provider).
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// A token for the vendor's system as the provider `org`.
    pub fn token_for(&self, org: &str) -> Result<String, MockError> {
        self.shared.token_for(Some(org))
    }

    /// The data folder.
    pub fn data(&self) -> &std::path::Path {
        &self.data
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.shared.journal
    }

    /// Keeps a finished conformance run in the journal (vendor, score, coverage, cases and
    /// the report's SHA-256, at the mock's time), listed by `GET /mock/reports` and on the
    /// journal's page; the entry as kept.
    pub async fn record_report(
        &self,
        run: &crate::scenario::run::Run,
        written: &crate::report::Written,
    ) -> Result<journal::ReportEntry, MockError> {
        let entry = journal::ReportEntry {
            id: 0,
            at: DateTime::<Utc>::default(),
            vendor: run.vendor.clone(),
            passed: run.score.passed,
            total: run.score.total,
            score: run.score.share,
            coverage: run.coverage.share,
            cases: run.cases.iter().map(|c| c.id.clone()).collect(),
            sha256: written.sha256.clone(),
        };
        let journal = self.shared.journal.clone();
        tokio::task::spawn_blocking(move || journal.record_report(&entry))
            .await
            .map_err(|e| MockError::Journal(e.to_string()))?
    }

    /// The SFTP drop box, for a file-based vendor (Procapita, ParaGå).
    pub fn dropbox(&self) -> Option<&files::DropboxSide> {
        self.dropbox.as_ref()
    }

    /// Stops the hub, the counterpart's sink and the drop box, and waits for the journal
    /// to commit what it was handed.
    pub async fn stop(self) {
        self.hub.stop().await;
        let journal = self.shared.journal.clone();
        let _ = tokio::task::spawn_blocking(move || journal.flush()).await;
        self.sink.abort();
        if let Some(d) = self.dropbox {
            d.stop().await;
        }
    }
}

/// The counterpart system's address: takes whatever the hub delivers to it (orders to the
/// mock provider, acknowledgements to the mock case management) and answers 2xx.
async fn serve_sink() -> Result<(tokio::task::JoinHandle<()>, String), MockError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| MockError::Hub(format!("cannot bind the counterpart: {e}")))?;
    let addr = listener.local_addr().map_err(|e| MockError::Hub(e.to_string()))?;
    let router = axum::Router::new()
        .fallback(|| async { (axum::http::StatusCode::CREATED, [("content-type", "application/json")], "{}") });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((task, format!("http://{addr}")))
}

impl Shared {
    fn token_for(&self, org: Option<&str>) -> Result<String, MockError> {
        let vendor = self.profile.vendor;
        let (role, org) = match self.profile.side {
            Side::CaseManagement => (Role::CaseManagement, None),
            Side::Provider => (Role::ProviderSystem, Some(org.unwrap_or(self.providers[0].as_str()))),
        };
        self.auth
            .issue(vendor, role, Some(vendor), org, TOKEN_TTL)
            .map_err(|e| MockError::Send(format!("cannot issue a token: {e}")))
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Sets the clock, and wakes the delivery loop for what is due by the new time.
    fn set_clock(&self, at: DateTime<Utc>) {
        self.clock.set(at);
        self.outbox.notify_one();
    }

    async fn exchanges_since(&self, after: i64, limit: usize) -> Result<Vec<Exchange>, MockError> {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || journal.since(after, limit))
            .await
            .map_err(|e| MockError::Journal(e.to_string()))?
    }

    /// Injects a payload as the counterpart system; the hub's receipt's order id.
    async fn inject(&self, system: &str, body: String, content_type: &str) -> Result<Option<String>, MockError> {
        let sys = self
            .hub
            .registry()
            .get(system)
            .cloned()
            .ok_or_else(|| MockError::Hub(format!("no counterpart system {system}")))?;
        let receipt = self
            .hub
            .receive(&sys, body.into_bytes(), Some(content_type), &Sender::Trusted)
            .await
            .map_err(|r| MockError::Refused { code: r.code.as_str().to_owned(), message: r.message })?;
        if receipt.status != LogStatus::Accepted {
            return Err(MockError::Send(format!(
                "the hub took the counterpart's message as {} (sent before?), so it sends nothing new",
                receipt.status.as_str()
            )));
        }
        Ok(receipt.order_id)
    }

    /// Sends the vendor a message through the hub; the journal ids of the attempts.
    async fn send(&self, command: &SendCommand) -> Result<Vec<i64>, MockError> {
        if !self.journal.is_on() {
            return Err(MockError::Send(
                "the journal is off (--journal off), so a send cannot see its delivery".into(),
            ));
        }
        let journal = self.journal.clone();
        let head =
            tokio::task::spawn_blocking(move || journal.head()).await.map_err(|e| MockError::Journal(e.to_string()))?;
        let f = send::Fields(&command.fields);
        let now = self.now();
        let today = self.clock.today().to_string();
        let stamp = now.to_rfc3339();
        let supported = profile::messages(self.profile.side);
        match (self.profile.side, command.message.as_str()) {
            (Side::Provider, "order") => {
                let n = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
                let d = send::NewDecision {
                    id: f.text("decision_id", &format!("MOCK-{}-{n}", head + 1)),
                    client: f.text("client", DEFAULT_CLIENT),
                    provider: f.text("provider", &self.providers[0]),
                    valid_from: f.text("valid_from", &today),
                    valid_to: f.opt("valid_to"),
                    decided_at: f.text("decided_at", &stamp),
                    services: f.services(&[("SERV", 480), ("PO", 1800)])?,
                };
                let order = self.inject(CASE_MANAGEMENT_COUNTERPART, d.xml(), "application/xml").await?;
                *self.last_decision.lock().unwrap_or_else(PoisonError::into_inner) = Some(d.id.clone());
                let order = order.ok_or_else(|| MockError::Send("the hub made no order of the decision".into()))?;
                self.await_delivery(head, &order, Some("order"), command.twice).await
            }
            (Side::Provider, kind @ ("order_change" | "order_end")) => {
                let last = self.last_decision.lock().unwrap_or_else(PoisonError::into_inner).clone();
                let Some(id) = f.opt("decision_id").or(last) else {
                    return Err(MockError::Send(format!(
                        "{kind}: no decision sent yet; send an order first or give fields.decision_id"
                    )));
                };
                let stored = self
                    .hub
                    .store()
                    .decision(&format!("combine:{id}"))
                    .await
                    .map_err(|e| MockError::Store(e.to_string()))?
                    .ok_or_else(|| MockError::Send(format!("{kind}: the hub has no decision {id}")))?;
                let version =
                    f.0.get("version")
                        .and_then(Value::as_u64)
                        .and_then(|v| u32::try_from(v).ok())
                        .unwrap_or(stored.version + 1);
                let from = f.text("effective_from", &f.text("on", &today));
                let later = |days: i64| {
                    chrono::NaiveDate::parse_from_str(&from, "%Y-%m-%d")
                        .map(|d| (d + chrono::Duration::days(days)).to_string())
                        .map_err(|_| MockError::Send(format!("effective_from: '{from}' is not a date (YYYY-MM-DD)")))
                };
                let change = match (kind, f.text("change", "services").as_str()) {
                    ("order_end", _) => {
                        send::Change::End { on: f.text("on", &today), reason: f.text("reason", "SABO") }
                    }
                    (_, "services") => send::Change::Services(f.services(&[("SERV", 600)])?),
                    (_, "end_date") => send::Change::EndDate(f.text("valid_to", &later(30)?)),
                    (_, "pause") => send::Change::Pause {
                        from: f.text("from", &from),
                        to: f.text("to", &later(7)?),
                        reason: f.text("reason", "SJUKHUS"),
                    },
                    (_, other) => {
                        return Err(MockError::Send(format!(
                            "order_change: change '{other}' is not one of services, end_date, pause"
                        )))
                    }
                };
                let xml = send::decision_change(&id, version, &from, &stamp, &change);
                self.inject(CASE_MANAGEMENT_COUNTERPART, xml, "application/xml").await?;
                let order = self.first_order_of(&format!("combine:{id}")).await?;
                self.await_delivery(head, &order, Some(kind), command.twice).await
            }
            (Side::CaseManagement, kind @ ("order_ack" | "plan_notice")) => {
                // An order named, or the order made from a decision named (`procapita:PC-1`),
                // or the latest made from the vendor's decisions.
                let order = match (f.opt("order_id"), f.opt("decision")) {
                    (Some(o), _) => o,
                    (None, Some(d)) => self.first_order_of(&d).await?,
                    (None, None) => self.latest_order().await?,
                };
                let body = if kind == "order_ack" {
                    send::order_ack(
                        &order,
                        &f.text("status", "ACCEPTED"),
                        f.opt("reason").as_deref(),
                        &f.text("at", &stamp),
                    )
                } else {
                    send::plan_notice(&order, &f.text("established_on", &today))
                };
                self.inject(PROVIDER_COUNTERPART, body, "application/json").await?;
                self.await_delivery(head, &order, Some(kind), command.twice).await
            }
            (Side::CaseManagement, "verification") if f.opt("decision").is_some() => {
                // Procapita's catalogue names the order by its decision (each case resets the
                // clock, so "the latest order" is ambiguous there).
                // The provider invoices the order; the hub verifies the invoice and sends the
                // report to the case-management system the order came from.
                let order = match (f.opt("order_id"), f.opt("decision")) {
                    (Some(o), _) => o,
                    (None, Some(d)) => self.first_order_of(&d).await?,
                    (None, None) => self.latest_order().await?,
                };
                let provider = f.text("provider", &self.providers[0]);
                let invoice = f.text("invoice", &format!("MOCK-INV-{}", head + 1));
                let minutes = f.0.get("minutes").and_then(Value::as_u64).unwrap_or(300);
                let period = f.text("period", &today);
                let csv = format!(
                    "InvoiceNumber,Type,CreditedInvoice,OrganisationNumber,PeriodStart,Row,OrderId,Minutes,AmountOre,Comment\n{invoice},INVOICE,,{provider},{period},1,{order},{minutes},,\n"
                );
                self.inject(PROVIDER_COUNTERPART, csv, "text/csv").await?;
                // The report's idempotency key starts with the provider.
                self.await_report(head, "verification", &invoice, command.twice).await
            }
            (Side::CaseManagement, kind @ ("visit" | "deviation" | "need_change" | "verification")) => {
                let order = match f.opt("order_id") {
                    Some(o) => o,
                    None => self.latest_order().await?,
                };
                let record = self
                    .hub
                    .store()
                    .order(&order)
                    .await
                    .map_err(|e| MockError::Store(e.to_string()))?
                    .ok_or_else(|| MockError::Send(format!("{kind}: the hub has no order {order}")))?;
                let about = send::About {
                    order: order.clone(),
                    client: f.text("client", record.order.client.expose()),
                    provider: f.text("provider", record.order.provider.as_str()),
                };
                let n = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
                let local = |prefix: &str, field: &str| f.text(field, &format!("{prefix}-MOCK-{}-{n}", head + 1));
                let (id, body, content_type) = match kind {
                    "visit" => {
                        let id = local("V", "visit_id");
                        let check_in = (now - chrono::Duration::minutes(60)).to_rfc3339();
                        let check_out = (now - chrono::Duration::minutes(15)).to_rfc3339();
                        let body = send::visit(
                            &about,
                            &id,
                            &f.text("staff", "st-mock"),
                            &f.text("check_in", &check_in),
                            &f.text("check_out", &check_out),
                            &f.text("status", "PERFORMED"),
                        );
                        (id, body, "application/json")
                    }
                    "deviation" => {
                        let id = local("AV", "deviation_id");
                        let body = send::deviation(
                            &about,
                            &id,
                            &f.text("occurred_on", &today),
                            &f.text("category", "FALL"),
                            &f.text("severity", "HIGH"),
                            &f.text("description", "Found on the floor at the morning visit; nurse called."),
                            &stamp,
                        );
                        (id, body, "application/json")
                    }
                    "need_change" => {
                        let id = local("BEV", "need_change_id");
                        let body = send::need_change(
                            &about,
                            &id,
                            &f.text("noticed_on", &today),
                            &f.text("direction", "INCREASED"),
                            &f.text("description", "Needs help to shower since the fall."),
                            &stamp,
                        );
                        (id, body, "application/json")
                    }
                    _ => {
                        let id = local("INV", "invoice_id");
                        let first = self.clock.today().with_day(1).map(|d| d.to_string()).unwrap_or(today.clone());
                        let number =
                            |name: &str, default: u64| f.0.get(name).and_then(Value::as_u64).unwrap_or(default);
                        let body = send::invoice_basis(
                            &about,
                            &id,
                            &f.text("period_start", &first),
                            number("minutes", 60),
                            number("amount_ore", 39_000),
                        );
                        (id, body, "text/csv")
                    }
                };
                self.inject(PROVIDER_COUNTERPART, body, content_type).await?;
                self.await_report(head, kind, &id, command.twice).await
            }
            _ => Err(send::unsupported(command, supported)),
        }
    }

    /// Waits for the hub's report of a provider's visit, deviation, change of need or
    /// invoice to the vendor: the journal's key is the hub's id, which ends with the
    /// provider's own (`mock-provider:V-1`), or the invoice's number. A vendor whose
    /// profile takes visits in lists (`visits.out.toml`) gets the visit inside a list
    /// message (`visits`, keyed by its first and last visit), found by the visit's id in
    /// the list's body.
    async fn await_report(&self, head: i64, kind: &str, local: &str, twice: bool) -> Result<Vec<i64>, MockError> {
        let deadline = tokio::time::Instant::now() + SEND_WAIT;
        let suffix = format!(":{local}");
        let listed = format!(":{local}<");
        loop {
            let waiting = self.journal.recorded.notified();
            let found = self.exchanges_since(head, 10_000).await?.into_iter().find(|x| {
                let single = x.message_type.as_deref() == Some(kind)
                    && x.key.as_deref().is_some_and(|k| k == local || k.ends_with(&suffix));
                let in_list = kind == "visit"
                    && x.message_type.as_deref() == Some("visits")
                    && String::from_utf8_lossy(&x.body).contains(&listed);
                x.direction == Direction::Outbound && (single || in_list)
            });
            if let Some(x) = found {
                let key = x.key.clone().unwrap_or_default();
                let kind = x.message_type.clone().unwrap_or_else(|| kind.to_owned());
                return self.await_delivery(head, &key, Some(&kind), twice).await;
            }
            if tokio::time::timeout_at(deadline, waiting).await.is_err() {
                return Err(MockError::NoDelivery { key: local.to_owned(), seconds: SEND_WAIT.as_secs() });
            }
        }
    }

    /// The latest order made from the vendor's decisions: the order of the decision the
    /// vendor sent last (by the journal, since a tester's clock may stand still and give
    /// many orders one creation time), or else the newest order from the vendor.
    async fn latest_order(&self) -> Result<String, MockError> {
        let journal = self.exchanges_since(0, 100_000).await?;
        let sent = journal.iter().rev().find(|x| {
            x.direction == Direction::Inbound
                && x.message_type.as_deref() == Some("decision")
                && x.status.is_some_and(|s| (200..300).contains(&s))
        });
        if let Some(decision) = sent.and_then(|x| x.key.as_deref()) {
            if let Some(order) =
                self.hub.store().first_order_of(decision).await.map_err(|e| MockError::Store(e.to_string()))?
            {
                return Ok(order.order.id);
            }
        }
        let orders = self
            .hub
            .store()
            .orders(OrderFilter { limit: 100_000, ..OrderFilter::default() })
            .await
            .map_err(|e| MockError::Store(e.to_string()))?;
        orders
            .into_iter()
            .filter(|o| o.source_system == self.profile.vendor)
            .max_by_key(|o| o.created_at)
            .map(|o| o.order.id)
            .ok_or_else(|| {
                MockError::Send("no order from this system yet: post a decision first, or give fields.order_id".into())
            })
    }

    /// The order decision `decision` (`combine:DEC-1`) made first: an order's id is the
    /// hub's, made when the decision came in.
    async fn first_order_of(&self, decision: &str) -> Result<String, MockError> {
        let first = self.hub.store().first_order_of(decision).await.map_err(|e| MockError::Store(e.to_string()))?;
        first
            .map(|o| o.order.id)
            .ok_or_else(|| MockError::Send(format!("decision {decision} has made no order: post it first")))
    }

    /// Waits until the hub has attempted a delivery to the vendor about `key` after the
    /// journal's `head`; with `twice`, delivers it once more with the same idempotency key.
    async fn await_delivery(
        &self,
        head: i64,
        key: &str,
        message_type: Option<&str>,
        twice: bool,
    ) -> Result<Vec<i64>, MockError> {
        let deadline = tokio::time::Instant::now() + SEND_WAIT;
        loop {
            let waiting = self.journal.recorded.notified();
            let found = self.exchanges_since(head, 10_000).await?.into_iter().find(|x| {
                x.direction == Direction::Outbound
                    && x.key.as_deref() == Some(key)
                    && message_type.is_none_or(|t| x.message_type.as_deref() == Some(t))
            });
            if let Some(x) = found {
                let mut ids = vec![x.id];
                if twice {
                    let idem = x.headers.iter().find(|(k, _)| k == "idempotency-key").map(|(_, v)| v.clone());
                    if let Some(idem) = idem {
                        ids.push(self.outbound.deliver_again(&idem).await?);
                    }
                }
                return Ok(ids);
            }
            if tokio::time::timeout_at(deadline, waiting).await.is_err() {
                return Err(MockError::NoDelivery { key: key.to_owned(), seconds: SEND_WAIT.as_secs() });
            }
        }
    }

    /// The hub's state of one business key.
    async fn state(&self, kind: &str, key: &str) -> Result<Option<Value>, MockError> {
        let store = self.hub.store();
        let e = |e: carehub_core::store::StoreError| MockError::Store(e.to_string());
        let today = self.clock.today();
        match kind {
            "order" => Ok(store.order(key).await.map_err(e)?.map(|o| order_view(&o, today))),
            "client" => {
                let orders = store
                    .orders(OrderFilter { client: Some(key.to_owned()), limit: 10_000, ..OrderFilter::default() })
                    .await
                    .map_err(e)?;
                Ok((!orders.is_empty()).then(|| {
                    json!({"client": key, "orders": orders.iter().map(|o| order_view(o, today)).collect::<Vec<_>>()})
                }))
            }
            "decision" => {
                let mut found = store.decision(key).await.map_err(e)?;
                if found.is_none() && !key.contains(':') {
                    found = store.decision(&format!("combine:{key}")).await.map_err(e)?;
                }
                Ok(found.map(|d| {
                    json!({
                        "id": d.id, "system": d.system, "client": d.client, "provider": d.provider,
                        "version": d.version, "received_at": d.received_at.to_rfc3339(),
                        "decision": serde_json::from_str::<Value>(&d.canonical).unwrap_or(Value::Null),
                    })
                }))
            }
            "visit" => {
                let visits = store.visits(VisitFilter { limit: 100_000, ..VisitFilter::default() }).await.map_err(e)?;
                Ok(visits
                    .into_iter()
                    .find(|v| v.id == key || v.id.split_once(':').is_some_and(|(_, local)| local == key))
                    .map(|v| serde_json::to_value(v).unwrap_or(Value::Null)))
            }
            other => Err(MockError::UnknownKind(other.to_owned())),
        }
    }

    /// Sets up order `id` as if the hub had sent it to the vendor's system (or, toward a
    /// case-management vendor, as if it had come from the vendor's decision), so that the
    /// vendor can answer it. `fields` as for `send order`.
    async fn set_order(&self, id: &str, fields: &serde_json::Map<String, Value>) -> Result<Value, MockError> {
        let f = send::Fields(fields);
        let now = self.now();
        let today = self.clock.today();
        let services: Vec<Value> = f
            .services(&[("SERV", 480)])?
            .into_iter()
            .map(|(code, minutes)| {
                json!({"code": code, "category": f.text("category", "service"), "minutes_per_month": minutes})
            })
            .collect();
        let canonical = json!({
            "id": format!("mock:{id}"),
            "client": f.text("client", DEFAULT_CLIENT),
            "case_officer": "hl-mock",
            "provider": f.text("provider", &self.providers[0]),
            "valid_from": f.text("valid_from", &today.to_string()),
            "decided_at": now.to_rfc3339(),
            "services": services,
        });
        let decision: carehub_model::Decision = serde_json::from_value(canonical.clone())
            .map_err(|e| MockError::Send(format!("the order's fields: {e}")))?;
        decision.validate().map_err(|e| MockError::Send(format!("the order's fields: {}", e.reason)))?;
        let order = carehub_model::Order::from_decision(id.to_owned(), &decision, today, self.deadlines);
        let (source, target) = match self.profile.side {
            Side::Provider => (CASE_MANAGEMENT_COUNTERPART, self.profile.vendor),
            Side::CaseManagement => (self.profile.vendor, PROVIDER_COUNTERPART),
        };
        let mut record = OrderRecord::new(order, source, target, OrderStatus::Delivered, now);
        record.delivered_at = Some(now);
        let ops = vec![
            Op::InsertDecision(DecisionRecord {
                id: format!("mock:{id}"),
                system: source.to_owned(),
                content_hash: format!("mock:{id}"),
                client: decision.client.expose().to_owned(),
                provider: decision.provider.as_str().to_owned(),
                canonical: canonical.to_string(),
                received_at: now,
                version: 0,
            }),
            Op::InsertOrder(Box::new(record)),
        ];
        self.hub.store().commit(ops).await.map_err(|e| match e {
            carehub_core::store::StoreError::Conflict(_) => {
                MockError::Send(format!("the hub has an order {id} already"))
            }
            e => MockError::Store(e.to_string()),
        })?;
        self.state("order", id).await?.ok_or_else(|| MockError::Store("the order was not stored".into()))
    }
}

/// An order as the mock's state shows it: the hub's record and whether it is overdue on
/// the mock's today.
fn order_view(o: &OrderRecord, today: chrono::NaiveDate) -> Value {
    let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("overdue".into(), json!(o.overdue_reasons(today)));
        m.insert("today".into(), json!(today.to_string()));
    }
    v
}

#[async_trait::async_trait]
impl Counterpart for MockHub {
    async fn send(&self, command: &SendCommand) -> anyhow::Result<Vec<i64>> {
        Ok(self.shared.send(command).await?)
    }

    async fn exchanges_since(&self, after: i64) -> anyhow::Result<Vec<Exchange>> {
        Ok(self.shared.exchanges_since(after, 100_000).await?)
    }

    fn now(&self) -> DateTime<Utc> {
        self.shared.now()
    }

    fn set_clock(&self, at: DateTime<Utc>) {
        self.shared.set_clock(at);
    }

    fn fault(&self, fault: Fault) {
        self.shared.faults.arm(fault);
    }

    async fn state(&self, kind: &str, key: &str) -> anyhow::Result<Option<Value>> {
        Ok(self.shared.state(kind, key).await?)
    }

    fn serves_mtls(&self) -> bool {
        self.mtls
    }
}

/// `carehub mock`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct MockArgs {
    /// The vendor whose system is tested: combine, treserva, procapita, lifecare, phoniro,
    /// lifecare-mobil, paraga (the last two of the case-management and provider vendors
    /// exchange files in the mock's own SFTP drop box).
    #[arg(long)]
    pub vendor: String,
    /// The mock's settings (TOML): listen, at, mock_token, providers, [system], [tls].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Keep the hub's database and the journal here; default a temporary folder.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Listen here instead of the configuration's `listen` (default 127.0.0.1:8090).
    #[arg(long)]
    pub listen: Option<String>,
    /// `off` journals nothing: only to measure what the journal costs (`carehub bench
    /// mock` does); sending, waiting for exchanges and conformance runs need it on.
    #[arg(long, value_enum, default_value_t = JournalMode::On)]
    pub journal: JournalMode,
}

/// Runs `carehub mock` until Ctrl-C. Exit code 2 for a mistake in how it was started.
pub async fn run(args: MockArgs) -> anyhow::Result<ExitCode> {
    let (config, base) = match &args.config {
        Some(path) => match MockConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        },
        None => (MockConfig::default(), PathBuf::from(".")),
    };
    let options = MockOptions {
        vendor: args.vendor.clone(),
        config,
        base,
        data: args.data.clone(),
        listen: args.listen,
        journal: args.journal,
    };
    let mock = match MockHub::start(options).await {
        Ok(m) => m,
        Err(e) if e.is_usage() => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e.into()),
    };
    let url = mock.url().to_owned();
    let system = mock.system();
    carehub_server::out!(
        "carehub mock: the hub's side toward a {system} system, on the mock's clock ({})",
        mock.shared.now()
    );
    carehub_server::out!("");
    carehub_server::out!("  hub API      {url}/v1/systems/{system}/messages");
    carehub_server::out!("  mock API     {url}/mock/");
    if args.journal == JournalMode::Off {
        carehub_server::out!(
            "  journal      off (for measuring only: nothing is recorded, and /mock/send cannot see its delivery)"
        );
    } else {
        carehub_server::out!("  journal      {url}/mock/journal.html");
    }
    carehub_server::out!(
        "  data         {}{}",
        mock.data().display(),
        if args.data.is_none() { " (temporary)" } else { "" }
    );
    if let Some(d) = mock.dropbox() {
        carehub_server::out!("  sftp         sftp://{}@{} (password {})", d.user, d.addr, d.password);
        carehub_server::out!("  host key     {}", d.fingerprint);
        carehub_server::out!(
            "  folders      put files in {}/ (under a temporary name, then rename), fetch the hub's from {}/",
            d.folders.inbox,
            d.folders.outbox
        );
    }
    carehub_server::out!("");
    carehub_server::out!("The system's token (Authorization: Bearer ...):");
    carehub_server::out!("  export TOKEN={}", mock.token());
    carehub_server::out!("Send it a message as the hub would:");
    let first = profile::messages(mock.shared.profile.side)[0];
    carehub_server::out!(
        "  curl -s -X POST {url}/mock/send -H 'content-type: application/json' -d '{{\"message\":\"{first}\"}}'"
    );
    carehub_server::out!("Ctrl-C stops the mock.");
    let _ = tokio::signal::ctrl_c().await;
    mock.stop().await;
    Ok(ExitCode::SUCCESS)
}
