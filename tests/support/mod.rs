//! Helpers for the integration tests: a hub on 127.0.0.1:0 over a real SQLite file in a
//! temporary folder ([`TestHub`]), the same hub's router called without a socket for tests
//! that only ask and check answers ([`TestApp`]), tokens, HTTP calls, waiting on events the
//! hub shows (a poller's pass, a connection a client made), and test data drawn from
//! Skatteverket's test personal identity numbers.

#![allow(dead_code)]

pub mod life;
pub mod sshd;
pub mod webdriver;

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request};
use axum::Router;
use carehub_model::Clock;
use carehub_postgres::scratch::{self, ScratchDb};
use carehub_server::auth::{Auth, Role};
use carehub_server::config::Config;
use carehub_server::run::RunningHub;
use carehub_server::{assemble, http, run};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt;

pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
/// The provider of the SPEC sample decision, routed to the `phoniro` system.
pub const PROVIDER_A: &str = "5599000014";
/// A second provider on the same Phoniro system.
pub const PROVIDER_B: &str = "5566778899";
/// A provider on Lifecare Mobil Hemtjänst (`lifecare-mobil`).
pub const PROVIDER_C: &str = "5560123456";
/// A provider on ParaGå (`paraga`), when a test configures it.
pub const PROVIDER_D: &str = "5599000030";

/// The system a test provider's orders go to, as [`config_text`] routes them.
pub fn system_of(org: &str) -> &'static str {
    match org {
        PROVIDER_C => "lifecare-mobil",
        PROVIDER_D => "paraga",
        _ => "phoniro",
    }
}

/// Settings a test may change.
#[derive(Debug, Clone)]
pub struct Options {
    pub max_attempts: u32,
    pub max_body_bytes: usize,
    pub listen: String,
    /// Serve HTTPS with the test certificates in `certs/`, and accept the test systems'
    /// client certificates.
    pub tls: bool,
    /// `[[systems]]` keys of a Procapita system (an SFTP server), if the test has one.
    pub procapita: Option<String>,
    /// `[[systems]]` keys of a ParaGå system (an SFTP server), if the test has one; provider
    /// [`PROVIDER_D`] is routed to it.
    pub paraga: Option<String>,
    /// More `[[systems]]` keys for the `phoniro` system (e.g. `visits_poll_seconds = 1`).
    pub phoniro_extra: String,
    /// A `[visits]` section's keys.
    pub visits: String,
    /// More `[[systems]]` keys for the `combine` system (e.g. `visit_reports = false`).
    pub combine_extra: String,
    /// The instant the hub's clock starts at (it ticks on from there).
    pub at: DateTime<Utc>,
    /// More `[hub]` keys (e.g. `max_connections = 5`).
    pub hub_extra: String,
    /// More `[delivery]` keys (e.g. `max_backlog = 2`).
    pub delivery_extra: String,
    /// How often the hub checkpoints its message log, in milliseconds (`[audit]
    /// checkpoint_every_ms`; 0, the default here, makes checkpoints only on demand). The
    /// signing key is always [`TEST_SIGNING_KEY`].
    pub checkpoint_every_ms: u64,
    /// On a SQLite file whatever `CAREHUB_TEST_DATABASE` says: for a test of the file itself.
    pub sqlite_file: bool,
    /// More sections at the end of the configuration (e.g. `[console]`).
    pub sections: String,
    /// The node's name (`[hub] node`), on every metric: [`TEST_NODE`] unless a test says.
    pub node: String,
}

/// The node name of a test hub, unless a test says otherwise: metrics read `node="test"`.
pub const TEST_NODE: &str = "test";

/// The test hubs' checkpoint signing key: the 32-byte seed of sevens, base64.
pub const TEST_SIGNING_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// The instant test hubs start at unless a test says otherwise: early December 2026, after
/// the November the tests' decisions and visits are set in.
pub fn test_instant() -> DateTime<Utc> {
    local_instant("2026-12-03T10:00")
}

/// The instant of a wall-clock time in the municipality (Europe/Stockholm), e.g.
/// `2027-02-28T23:30`; the earlier reading where the clocks go back.
pub fn local_instant(local: &str) -> DateTime<Utc> {
    let naive = chrono::NaiveDateTime::parse_from_str(local, "%Y-%m-%dT%H:%M").expect("a local time");
    naive.and_local_timezone(carehub_model::MUNICIPAL_TZ).earliest().expect("a time that exists").with_timezone(&Utc)
}

/// The date-sensitive tests run at each of these: an ordinary day, the last half hour of
/// February (the next day is in another month), and just before the clocks go forward.
pub fn awkward_instants() -> [DateTime<Utc>; 3] {
    [test_instant(), local_instant("2027-02-28T23:30"), local_instant("2027-03-28T01:30")]
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_attempts: 5,
            max_body_bytes: 64 * 1024,
            listen: "127.0.0.1:0".into(),
            tls: false,
            procapita: None,
            paraga: None,
            phoniro_extra: String::new(),
            visits: String::new(),
            combine_extra: String::new(),
            at: test_instant(),
            hub_extra: String::new(),
            delivery_extra: String::new(),
            checkpoint_every_ms: 0,
            sqlite_file: false,
            sections: String::new(),
            node: TEST_NODE.into(),
        }
    }
}

/// A file of the test certificates in `certs/`.
pub fn cert_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../certs").join(name)
}

/// A configuration text for a hub with one Combine and one Phoniro system.
pub fn config_text(db: &Path, phoniro_url: &str, combine_url: &str, o: &Options) -> String {
    let (tls, combine_cert, phoniro_cert) = if o.tls {
        (
            format!(
                "[hub.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
                cert_file("hub.pem").display(),
                cert_file("hub.key").display(),
                cert_file("ca.pem").display()
            ),
            "client_cert_name = \"combine-ekero.systems.carehub.test\"",
            "client_cert_name = \"phoniro-ekero.systems.carehub.test\"",
        )
    } else {
        (String::new(), "", "")
    };
    let procapita = o
        .procapita
        .as_ref()
        .map(|keys| format!("[[systems]]\nname = \"procapita\"\nvendor = \"procapita\"\n{keys}\n"))
        .unwrap_or_default();
    let paraga = o
        .paraga
        .as_ref()
        .map(|keys| {
            format!(
                "[[systems]]\nname = \"paraga\"\nvendor = \"paraga\"\n{keys}\n\n\
                 [[providers]]\norg = \"{PROVIDER_D}\"\nname = \"Hemtjänst i Hägersten AB\"\nsystem = \"paraga\"\n\
                 rate_per_hour = 390\n"
            )
        })
        .unwrap_or_default();
    format!(
        r#"
{procapita}
{paraga}
[hub]
listen = "{listen}"
database = "{db}"
max_body_bytes = {max_body}
node = "{node}"
{hub_extra}
{tls}

[auth]
jwt_secret = "{SECRET}"

[audit]
signing_key = "{TEST_SIGNING_KEY}"
origin = "carehub.test/log"
checkpoint_every_ms = {checkpoint_every_ms}

[visits]
{visits}

[delivery]
max_attempts = {attempts}
initial_backoff_ms = 20
max_backoff_ms = 200
timeout_ms = 2000
max_in_flight = 32
{delivery_extra}

[[systems]]
name = "combine"
vendor = "combine"
callback_url = "{combine_url}/callback"
{combine_cert}
{combine_extra}

[[systems]]
name = "treserva"
vendor = "treserva"
endpoint_url = "{combine_url}/treserva"
username = "carehub"
password = "treserva-test-password"

[[systems]]
name = "phoniro"
vendor = "phoniro"
base_url = "{phoniro_url}/api"
api_key = "phoniro-test-key"
{phoniro_cert}
{phoniro_extra}

[[systems]]
name = "lifecare"
vendor = "lifecare"
base_url = "{combine_url}/lifecare/api"
token_url = "{combine_url}/lifecare/oauth/token"
client_id = "carehub"
client_secret = "lifecare-secret"

[[systems]]
name = "lifecare-mobil"
vendor = "lifecare-mobil"
base_url = "{phoniro_url}/lcmh/api"
token_url = "{phoniro_url}/lcmh/oauth/token"
client_id = "carehub"
client_secret = "lcmh-secret"

[[providers]]
org = "{PROVIDER_C}"
name = "Södra Vård & Omsorg AB"
system = "lifecare-mobil"

[[providers]]
org = "{PROVIDER_A}"
name = "Hemtjänst Norr AB"
system = "phoniro"
rate_per_hour = 390

[[providers]]
org = "{PROVIDER_B}"
name = "Omsorgshuset AB"
system = "phoniro"
rate_per_hour = 390
{sections}
"#,
        listen = o.listen,
        db = db.display(),
        max_body = o.max_body_bytes,
        attempts = o.max_attempts,
        phoniro_extra = o.phoniro_extra,
        visits = o.visits,
        combine_extra = o.combine_extra,
        hub_extra = o.hub_extra,
        delivery_extra = o.delivery_extra,
        checkpoint_every_ms = o.checkpoint_every_ms,
        sections = o.sections,
        node = o.node,
    )
}

/// The tokens a test presents, signed with the test hub's key and dated by its clock.
/// [`TestHub`] and [`TestApp`] hand them out (through `Deref`), so a test says
/// `hub.admin()` whichever it uses.
pub struct Tokens {
    auth: Auth,
}

impl Tokens {
    fn new(clock: &Clock) -> Tokens {
        Tokens { auth: Auth::new(SECRET, clock.clone()) }
    }

    /// A token for `role`: a case-management token speaks for `combine`, a provider's for
    /// the system its orders go to ([`system_of`]).
    pub fn token(&self, role: Role, org: Option<&str>) -> String {
        self.token_for(role, org, Duration::from_secs(600))
    }

    /// A token valid for `ttl` (for a tool that runs longer than a test usually does).
    pub fn token_for(&self, role: Role, org: Option<&str>, ttl: Duration) -> String {
        let system = match role {
            Role::CaseManagement => Some("combine"),
            Role::ProviderSystem => org.map(system_of),
            Role::Auditor | Role::Admin => None,
        };
        self.auth.issue("test", role, system, org, ttl).expect("token")
    }

    /// The token of a case-management system (`combine`, `treserva`, `lifecare`,
    /// `procapita`): it may send only as that system.
    pub fn system_token(&self, system: &str) -> String {
        self.auth.issue(system, Role::CaseManagement, Some(system), None, Duration::from_secs(600)).expect("token")
    }

    /// A provider's token naming `system` (which need not be where its orders go).
    pub fn provider_on(&self, system: &str, org: &str) -> String {
        self.auth.issue(system, Role::ProviderSystem, Some(system), Some(org), Duration::from_secs(600)).expect("token")
    }

    pub fn admin(&self) -> String {
        self.token(Role::Admin, None)
    }

    /// A person's token: `subject` in `role` (auditor or admin), as the access log names them.
    pub fn person(&self, role: Role, subject: &str) -> String {
        self.auth.issue(subject, role, None, None, Duration::from_secs(600)).expect("token")
    }

    /// A provider's token, for the system its orders go to.
    pub fn provider(&self, org: &str) -> String {
        self.provider_on(system_of(org), org)
    }
}

/// A configuration written to a fresh temporary folder, with the database beside it (or,
/// on PostgreSQL, a database of its own: [`test_database`]).
struct Written {
    dir: TempDir,
    db: PathBuf,
    config_path: PathBuf,
    config: Config,
    database: Option<ScratchDb>,
}

fn write_config(phoniro_url: &str, combine_url: &str, o: &Options) -> Written {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = if o.sqlite_file { None } else { test_database() };
    let db = database.as_ref().map_or_else(|| dir.path().join("carehub.db"), |d| PathBuf::from(d.url()));
    let config_path = dir.path().join("carehub.toml");
    std::fs::write(&config_path, config_text(&db, phoniro_url, combine_url, o)).expect("write config");
    let config = Config::load(&config_path).expect("valid config");
    Written { dir, db, config_path, config, database }
}

/// The rows of `sql` as text (`None` for NULL), read straight from a hub's database
/// (SQLite file or PostgreSQL URL), for a test that looks behind the hub's back. The SQL
/// must mean the same on both backends.
pub fn db_rows(db: &Path, sql: &str) -> Vec<Vec<Option<String>>> {
    let text = db.to_str().expect("a database path or URL").to_owned();
    if !carehub_postgres::is_postgres_url(&text) {
        use rusqlite::types::ValueRef;
        let conn = rusqlite::Connection::open(db).expect("open");
        let mut stmt = conn.prepare(sql).expect("prepare");
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            ValueRef::Null => None,
                            ValueRef::Integer(v) => Some(v.to_string()),
                            ValueRef::Real(v) => Some(v.to_string()),
                            ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
                        })
                    })
                    .collect()
            })
            .expect("query");
        return rows.collect::<Result<_, _>>().expect("rows");
    }
    carehub_postgres::scratch::text_rows(&text, sql)
}

/// The one value of a query of one row and one column ([`db_rows`]).
pub fn db_value(db: &Path, sql: &str) -> String {
    let rows = db_rows(db, sql);
    assert_eq!(rows.len(), 1, "one row of {sql}: {rows:?}");
    rows[0][0].clone().unwrap_or_else(|| panic!("a value from {sql}"))
}

/// Runs one statement on a hub's database behind its back (a tamperer's change); the rows
/// it changed, or the database's refusal as text.
pub fn db_execute(db: &Path, sql: &str) -> Result<u64, String> {
    let text = db.to_str().expect("a database path or URL").to_owned();
    if !carehub_postgres::is_postgres_url(&text) {
        let conn = rusqlite::Connection::open(db).expect("open");
        return conn.execute(sql, []).map(|n| n as u64).map_err(|e| e.to_string());
    }
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&text, postgres::NoTls).expect("connect");
        c.execute(sql.as_str(), &[]).map_err(|e| e.to_string())
    })
    .join()
    .expect("the thread runs")
}

/// Drops the trigger `name` of `table` from a hub's database, as a tamperer would.
pub fn drop_trigger(db: &Path, table: &str, name: &str) {
    let on_table = db.to_str().is_some_and(carehub_postgres::is_postgres_url);
    let sql = if on_table { format!("DROP TRIGGER {name} ON {table}") } else { format!("DROP TRIGGER {name}") };
    db_execute(db, &sql).expect("the trigger is dropped");
}

/// With `CAREHUB_TEST_DATABASE=postgres`, a hub's own PostgreSQL database on the test
/// server (`CAREHUB_TEST_POSTGRES`, or 127.0.0.1:5432), dropped with the hub; otherwise
/// `None`, and the hub keeps a SQLite file in its folder.
pub fn test_database() -> Option<ScratchDb> {
    (std::env::var("CAREHUB_TEST_DATABASE").as_deref() == Ok("postgres")).then(|| {
        // A blocking client must not run on an async task's thread.
        std::thread::spawn(|| ScratchDb::create_blocking(&scratch::server(), "hub"))
            .join()
            .expect("the thread runs")
            .expect("a database on the test server")
    })
}

/// A hub running in this process.
pub struct TestHub {
    pub hub: Option<RunningHub>,
    pub url: String,
    pub dir: TempDir,
    pub db: PathBuf,
    pub config_path: PathBuf,
    pub http: reqwest::Client,
    tokens: Tokens,
    /// The hub's clock (shared with the hub: setting it moves the hub's time too).
    pub clock: Clock,
    /// The hub's PostgreSQL database, when it runs on one (dropped after the hub).
    pub database: Option<ScratchDb>,
}

impl Deref for TestHub {
    type Target = Tokens;

    fn deref(&self) -> &Tokens {
        &self.tokens
    }
}

impl TestHub {
    pub async fn start(phoniro_url: &str, combine_url: &str) -> TestHub {
        TestHub::start_with(phoniro_url, combine_url, Options::default()).await
    }

    pub async fn start_with(phoniro_url: &str, combine_url: &str, o: Options) -> TestHub {
        let Written { dir, db, config_path, config, database } = write_config(phoniro_url, combine_url, &o);
        let clock = Clock::starting_at(o.at);
        let runtime = assemble::build(&config, clock.clone()).expect("build");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hub = run::start(runtime, listener).await.expect("start");
        TestHub {
            url: hub.url(),
            hub: Some(hub),
            dir,
            db,
            config_path,
            http: reqwest::Client::new(),
            tokens: Tokens::new(&clock),
            clock,
            database,
        }
    }

    /// Stops the hub and starts it again on the same database and configuration.
    pub async fn restart(&mut self) {
        self.stop().await;
        let config = Config::load(&self.config_path).expect("valid config");
        let runtime = assemble::build(&config, self.clock.clone()).expect("build");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let hub = run::start(runtime, listener).await.expect("start");
        self.url = hub.url();
        self.hub = Some(hub);
    }

    /// Another node of the same hub: its configuration, but named `node`, on the same
    /// database and clock, serving on a port of its own (SPEC §11: several nodes on one
    /// database; on SQLite, two processes' worth of stores on one file).
    pub async fn another_node(&self, node: &str) -> RunningHub {
        let mut config = Config::load(&self.config_path).expect("valid config");
        config.hub.node = node.to_owned();
        let runtime = assemble::build(&config, self.clock.clone()).expect("build");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        run::start(runtime, listener).await.expect("start")
    }

    /// Stops the hub (the database stays).
    pub async fn stop(&mut self) {
        if let Some(h) = self.hub.take() {
            h.stop().await;
        }
    }

    /// Posts a decision to the Treserva system as Treserva's SOAP client does
    /// (`RegistreraBeslut`, its system token) and returns the raw answer.
    pub async fn post_treserva_decision(&self, body: String) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/systems/treserva/messages", self.url))
            .bearer_auth(self.system_token("treserva"))
            .header("content-type", "text/xml; charset=utf-8")
            .header("soapaction", "\"urn:carehub:vendor:treserva:1/RegistreraBeslut\"")
            .body(body)
            .send()
            .await
            .expect("post")
    }

    pub async fn post(&self, system: &str, body: impl Into<Vec<u8>>, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}/v1/systems/{system}/messages", self.url)).body(body.into());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("post");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("get");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The order's trace (as admin).
    pub async fn trace(&self, order_id: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/orders/{order_id}/trace"), Some(&self.admin())).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Polls the order until its status is `want`, over `http`.
    pub async fn wait_for_order_status_with(&self, http: &reqwest::Client, order_id: &str, want: &str) -> Value {
        let admin = self.admin();
        eventually(&format!("order {order_id} becomes {want}"), || async {
            let resp = http.get(format!("{}/v1/orders/{order_id}", self.url)).bearer_auth(&admin).send().await.ok()?;
            let body: Value = resp.json().await.ok()?;
            (body["status"] == want).then_some(body)
        })
        .await
    }

    /// The ids of the orders decision `decision` (namespaced: `combine:DEC-1`) made, by
    /// start date, once it has made one (`GET /v1/orders?decision=`). An order's id is the
    /// hub's own, made when the decision came in: it is found, never worked out.
    pub async fn orders_of(&self, decision: &str) -> Vec<String> {
        orders_of_decision(&self.http, &self.url, &self.admin(), decision).await
    }

    /// The order decision `decision` (namespaced) made first.
    pub async fn order_of(&self, decision: &str) -> String {
        self.orders_of(decision).await.swap_remove(0)
    }

    /// The order Combine decision `id` made first.
    pub async fn order_id(&self, id: &str) -> String {
        self.order_of(&format!("combine:{id}")).await
    }

    /// Polls the order until its status is `want`.
    pub async fn wait_for_order_status(&self, order_id: &str, want: &str) -> Value {
        let admin = self.admin();
        eventually(&format!("order {order_id} becomes {want}"), || async {
            let (status, body) = self.get(&format!("/v1/orders/{order_id}"), Some(&admin)).await;
            (status == StatusCode::OK && body["status"] == want).then_some(body)
        })
        .await
    }
    /// When `system`'s `kind` poller (`inbox` or `feed`) last finished a pass without
    /// failing, in the hub's unix seconds, as `/metrics` shows it; `None` before its first.
    pub async fn last_poll(&self, system: &str, kind: &str) -> Option<i64> {
        let text = self.http.get(format!("{}/metrics", self.url)).send().await.ok()?.text().await.ok()?;
        last_poll_in(&text, system, kind)
    }

    /// Waits until `system`'s `kind` poller has made a whole pass that began after this
    /// call, so that whatever that pass would have done is done.
    ///
    /// The poller shows when it last finished a pass (`last_poll`), in whole seconds of the
    /// hub's clock. The first change seen may come from a pass that was under way when this
    /// was called; the passes run one after another, so the pass behind the second change
    /// began after the first one ended, that is after this call.
    pub async fn wait_for_a_full_poll(&self, system: &str, kind: &str) {
        let mut seen = self.last_poll(system, kind).await;
        for _ in 0..2 {
            seen = Some(
                eventually(&format!("the {system} {kind} poller finishes another pass"), || async {
                    self.last_poll(system, kind).await.filter(|now| Some(*now) != seen)
                })
                .await,
            );
        }
    }
}

/// `carehub_pollers_held` for `poller` on the node `node` serving at `url`: whether that
/// node holds the poller's lease (`None` until its metrics answer).
pub async fn poller_held(http: &reqwest::Client, url: &str, node: &str, poller: &str) -> Option<bool> {
    let text = http.get(format!("{url}/metrics")).send().await.ok()?.text().await.ok()?;
    let series = format!("carehub_pollers_held{{node=\"{node}\",poller=\"{poller}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map(|v| v.trim() == "1")
}

/// `carehub_poller_last_success_timestamp_seconds` for `system` and `kind` in a metrics text.
pub fn last_poll_in(metrics: &str, system: &str, kind: &str) -> Option<i64> {
    let (system, kind) = (format!("system=\"{system}\""), format!("kind=\"{kind}\""));
    metrics
        .lines()
        .filter(|l| l.starts_with("carehub_poller_last_success_timestamp_seconds{"))
        .find(|l| l.contains(&system) && l.contains(&kind))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A hub assembled from the same configuration as a [`TestHub`] but not served: no socket,
/// no delivery loop, no pollers. Requests go straight to its router
/// ([`carehub_server::http::app`]) with `tower`'s `oneshot`, for the tests that only send
/// requests and check the answers (refusals, authentication, validation, documents) and
/// need nothing delivered.
pub struct TestApp {
    pub router: Router,
    /// What the hub's own links start with: requests carry this host.
    pub url: String,
    pub dir: TempDir,
    pub db: PathBuf,
    pub config_path: PathBuf,
    /// The hub's clock (shared with the hub: setting it moves the hub's time too).
    pub clock: Clock,
    tokens: Tokens,
    /// The app's PostgreSQL database, when it runs on one.
    pub database: Option<ScratchDb>,
}

impl Deref for TestApp {
    type Target = Tokens;

    fn deref(&self) -> &Tokens {
        &self.tokens
    }
}

/// The host a [`TestApp`]'s requests name.
const APP_HOST: &str = "carehub.test";

/// Where a [`TestApp`]'s systems would be delivered to, if anything delivered: nothing
/// listens there.
const NOWHERE: &str = "http://127.0.0.1:9";

impl TestApp {
    pub fn start() -> TestApp {
        TestApp::start_with(Options::default())
    }

    pub fn start_with(o: Options) -> TestApp {
        let Written { dir, db, config_path, config, database } = write_config(NOWHERE, NOWHERE, &o);
        let clock = Clock::starting_at(o.at);
        let runtime = assemble::build(&config, clock.clone()).expect("build");
        TestApp {
            router: http::app(runtime.state),
            url: format!("http://{APP_HOST}"),
            dir,
            db,
            config_path,
            tokens: Tokens::new(&clock),
            clock,
            database,
        }
    }

    /// Sends `body` to `method path` with `headers` and the bearer `token`, and returns the
    /// answer's status, headers and body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::builder().method(method).uri(path).header(header::HOST, APP_HOST);
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        call(&self.router, request.body(body.into()).expect("a request")).await
    }

    /// A vendor's message to `system`'s endpoint, answered as JSON.
    pub async fn post(&self, system: &str, body: impl Into<Vec<u8>>, token: Option<&str>) -> (StatusCode, Value) {
        let path = format!("/v1/systems/{system}/messages");
        let (status, _, bytes) = self.send(Method::POST, &path, token, &[], body.into()).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// `body` as JSON to `path`, answered as JSON.
    pub async fn post_json(&self, path: &str, body: &Value, token: Option<&str>) -> (StatusCode, Value) {
        let json = [("content-type", "application/json")];
        let (status, _, bytes) = self.send(Method::POST, path, token, &json, body.to_string()).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let (status, _, bytes) = self.send(Method::GET, path, token, &[], Body::empty()).await;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

/// Calls `router` once with `request`, as the server would for a request read from a
/// connection, and returns the answer's status, headers and whole body.
pub async fn call(router: &Router, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let response = router.clone().oneshot(request).await.expect("the router always answers");
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.expect("the whole body");
    (parts.status, parts.headers, bytes.to_vec())
}

/// A port on 127.0.0.1 that counts the TCP connections made to it, relaying each to
/// `upstream` when there is one and closing it at once when there is not. It shows that a
/// client tried to connect (a poller polled) where the client itself shows nothing: a poll
/// that fails (a wrong host key, a server that is down) does not count as a pass.
pub struct Doorman {
    pub port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Doorman {
    /// Listens on `port` (0: any free port), which may have connections of a server that
    /// just stopped in TIME_WAIT. Must be called inside the tests' runtime.
    pub fn open(port: u16, upstream: Option<u16>) -> Doorman {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(([127, 0, 0, 1], port).into()).expect("bind the doorman's port");
        let listener: TcpListener = socket.listen(64).expect("listen").into_std().expect("a std listener");
        listener.set_nonblocking(false).expect("blocking");
        let port = listener.local_addr().expect("address").port();
        let (connections, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (count, stopping) = (connections.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                if let Some(server) = upstream.and_then(|p| TcpStream::connect(("127.0.0.1", p)).ok()) {
                    relay(client, server);
                }
            }
        });
        Doorman { port, connections, stop, thread: Some(thread) }
    }

    /// The connections made so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections were made in all.
    pub async fn wait_for_connections(&self, n: usize, what: &str) {
        eventually(what, || async { (self.connections() >= n).then_some(()) }).await;
    }

    /// Stops listening; the port is free when this returns.
    pub fn close(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop.store(true, Ordering::SeqCst);
            // Wakes the accept; the thread sees `stop` and drops the listener.
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            let _ = thread.join();
        }
    }
}

impl Drop for Doorman {
    fn drop(&mut self) {
        self.close();
    }
}

/// Copies bytes both ways between `a` and `b` until each side has closed.
fn relay(a: TcpStream, b: TcpStream) {
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        })
    };
    if let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) {
        pipe(a, b2);
        pipe(b, a2);
    }
}

/// Polls `f` every 20 ms until it yields something, for at most 20 seconds.
pub async fn eventually<T, F, Fut>(what: &str, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_within(what, Duration::from_secs(20), f).await
}

/// Polls `f` every 20 ms until it yields something, for at most `limit` (for work that is
/// large on purpose, in an unoptimised test build).
pub async fn eventually_within<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Skatteverket's test personal identity numbers shipped in `data/`.
pub fn test_pnrs() -> Vec<String> {
    include_str!("../../data/skatteverket-testpersonnummer.txt").lines().map(str::to_owned).collect()
}

/// The SPEC §5 sample decision, verbatim.
pub const SPEC_DECISION: &str = r#"<Beslut xmlns="urn:carehub:vendor:combine:1">
  <BeslutsId>DEC-2026-0001</BeslutsId>
  <Personnummer>19360101-6987</Personnummer>
  <Handlaggare>hl-117</Handlaggare>
  <Utforare orgnr="5599000014"/>
  <GiltigFrom>2026-11-01</GiltigFrom><GiltigTom>2027-10-31</GiltigTom>
  <Insats kod="SERV" kategori="Service"><MinuterPerManad>480</MinuterPerManad></Insats>
  <Insats kod="PO" kategori="Personlig omvardnad"><MinuterPerManad>1800</MinuterPerManad></Insats>
</Beslut>"#;

/// A Treserva decision, as a SOAP call.
pub fn treserva_decision(id: &str, pnr: &str, provider: &str) -> String {
    format!(
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:tre="urn:carehub:vendor:treserva:1">
  <soapenv:Body>
    <tre:RegistreraBeslut><tre:Beslut>
      <tre:Id>{id}</tre:Id><tre:Klient><tre:Personnr>{pnr}</tre:Personnr></tre:Klient>
      <tre:Handlaggare>anna.l</tre:Handlaggare><tre:Utforare><tre:Orgnr>{provider}</tre:Orgnr></tre:Utforare>
      <tre:Period><tre:From>2026-11-01</tre:From></tre:Period>
      <tre:Insatser><tre:Insats><tre:Kod>HT-SERV</tre:Kod><tre:Tid>480</tre:Tid></tre:Insats></tre:Insatser>
    </tre:Beslut></tre:RegistreraBeslut>
  </soapenv:Body>
</soapenv:Envelope>"#
    )
}

/// A Lifecare decision webhook.
pub fn lifecare_decision(id: &str, pnr: &str, provider: &str) -> String {
    json!({
        "eventType": "DecisionRegistered",
        "decision": {
            "decisionId": id, "personalNumber": pnr, "caseWorker": "k.berg", "provider": {"orgNo": provider},
            "validFrom": "2026-11-01", "interventions": [{"code": "SERVICE", "minutesPerMonth": 480}]
        }
    })
    .to_string()
}

/// Text in ISO-8859-1.
pub fn latin1(text: &str) -> Vec<u8> {
    let enc = carehub_core::mapping::text::encoding("iso-8859-1").expect("known");
    carehub_core::mapping::text::encode(text, enc).expect("encodable")
}

/// A Procapita decision file (ISO-8859-1).
pub fn decision_file(id: &str, pnr: &str, provider: &str) -> Vec<u8> {
    latin1(&format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1"?>
<Biståndsbeslut xmlns="urn:carehub:vendor:procapita:1">
  <Beslutsnummer>{id}</Beslutsnummer>
  <Brukare><Personnummer>{pnr}</Personnummer><Namn>Åsa Öberg</Namn></Brukare>
  <Handläggare signatur="ÅÖB"/>
  <Utförare><Organisationsnummer>{provider}</Organisationsnummer></Utförare>
  <Giltighet från="20261101" till="20271031"/>
  <Insatser><Insats typ="Personlig omvårdnad" minuterPerMånad="1800"/></Insatser>
</Biståndsbeslut>
"#
    ))
}

/// A Combine decision.
pub fn decision_xml(id: &str, pnr: &str, provider: &str, decided_at: Option<&str>) -> String {
    let decided = decided_at.map(|t| format!("<Beslutstidpunkt>{t}</Beslutstidpunkt>")).unwrap_or_default();
    format!(
        r#"<Beslut xmlns="urn:carehub:vendor:combine:1"><BeslutsId>{id}</BeslutsId><Personnummer>{pnr}</Personnummer><Handlaggare>hl-1</Handlaggare><Utforare orgnr="{provider}"/><GiltigFrom>2026-11-01</GiltigFrom>{decided}<Insats kod="SERV"><MinuterPerManad>480</MinuterPerManad></Insats></Beslut>"#
    )
}

/// The ids of the orders decision `decision` (namespaced) made, by start date, from the hub
/// at `url` (any node of a cluster), once it has made one.
pub async fn orders_of_decision(http: &reqwest::Client, url: &str, token: &str, decision: &str) -> Vec<String> {
    eventually(&format!("decision {decision} has made an order"), || async {
        let resp = http
            .get(format!("{url}/v1/orders"))
            .query(&[("decision", decision)])
            .bearer_auth(token)
            .send()
            .await
            .ok()?;
        let body: Value = resp.json().await.ok()?;
        let ids: Vec<String> =
            body["orders"].as_array()?.iter().filter_map(|o| o["order"]["id"].as_str().map(str::to_owned)).collect();
        (!ids.is_empty()).then_some(ids)
    })
    .await
}

/// A Phoniro order confirmation.
pub fn phoniro_ack(order_id: &str, status: &str) -> String {
    format!(
        r#"{{"type":"orderConfirmation","orderId":"{order_id}","status":"{status}","confirmedAt":"2026-11-02T08:15:00Z"}}"#
    )
}

/// A Phoniro plan notice.
pub fn phoniro_plan(order_id: &str, on: &str) -> String {
    format!(r#"{{"type":"carePlanEstablished","orderId":"{order_id}","establishedDate":"{on}"}}"#)
}

/// An HTTPS client that trusts the test CA in `certs/`, presenting the client certificate
/// of `identity` (e.g. `combine-ekero`) if given.
pub fn https_client(identity: Option<&str>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(cert_file("ca.pem")).expect("ca")).expect("ca pem");
    let mut builder = reqwest::Client::builder().add_root_certificate(ca).tls_built_in_root_certs(false);
    if let Some(name) = identity {
        let mut pem = std::fs::read(cert_file(&format!("{name}.pem"))).expect("cert");
        pem.extend(std::fs::read(cert_file(&format!("{name}.key"))).expect("key"));
        builder = builder.identity(reqwest::Identity::from_pem(&pem).expect("identity"));
    }
    builder.build().expect("client")
}

/// The lines a child process wrote, as they come.
pub type Lines = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Starts `carehub serve --config config` with `env` added (`CAREHUB_LOG` is `debug` unless
/// `env` says otherwise) and returns it with the address it listens on (read from its
/// "carehub listening" line, text or JSON) and the lines of its operational log (stderr) as
/// they come.
pub fn serve_binary(config: &Path, env: &[(&str, &str)]) -> (std::process::Child, String, Lines) {
    use std::io::BufRead;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_carehub"));
    command
        .args(["serve", "--config", config.to_str().expect("path")])
        .env("CAREHUB_LOG", "debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn carehub serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = Lines::default();
    let kept = lines.clone();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Ok(mut l) = kept.lock() {
                l.push(line.clone());
            }
            if !sent {
                let addr = line
                    .split("addr=")
                    .nth(1)
                    .or_else(|| line.split("\"addr\":\"").nth(1))
                    .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next());
                if let Some(addr) = addr {
                    let _ = tx.send(addr.to_owned());
                    sent = true;
                }
            }
        }
    });
    let Ok(addr) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        let status = child.wait();
        let log = lines.lock().map(|l| l.join("\n")).unwrap_or_default();
        panic!("carehub serve did not report its address ({status:?}):\n{log}");
    };
    (child, addr, lines)
}

/// The folder of the test tools' Python environment (`scripts/test` installs it).
pub fn python_env() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-python/bin")
}

/// A program of the test tools' Python environment; panics (the test fails) without it.
pub fn python_tool(name: &str) -> PathBuf {
    let path = python_env().join(name);
    assert!(path.exists(), "{} is missing: scripts/test installs the Python test tools", path.display());
    path
}

/// Runs the `carehub` binary to completion.
pub fn carehub(args: &[&str]) -> std::process::Output {
    carehub_with_env(args, &[])
}

/// Runs the `carehub` binary to completion with these environment variables set for it
/// (only for the child: the test process's environment is never changed).
pub fn carehub_with_env(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_carehub"))
        .args(args)
        .env("CAREHUB_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("run carehub")
}

/// A Combine decision for `provider` valid in November 2026, decided on the 1st (so its
/// order is active from then on).
pub fn november_decision(id: &str, pnr: &str, provider: &str) -> String {
    decision_xml(id, pnr, provider, Some("2026-11-01T09:00:00+01:00"))
}

#[allow(clippy::too_many_arguments)]
/// A Phoniro visit as pushed (`"type": "visit"`), NFC both ways unless `manual` says why
/// (`Some(None)`: manual without a reason). Times are Stockholm local `2026-11-DDTHH:MM`.
pub fn phoniro_visit(
    id: &str,
    provider: &str,
    client: &str,
    staff: &str,
    tag: &str,
    from: &str,
    to: Option<&str>,
    manual: Option<Option<&str>>,
) -> Value {
    let reg = |time: &str| {
        let mut r = json!({"time": format!("{time}:00+01:00")});
        match manual {
            None => {
                r["method"] = json!("NFC");
                r["tagUid"] = json!(tag);
            }
            Some(reason) => {
                r["method"] = json!("MANUAL");
                if let Some(why) = reason {
                    r["reason"] = json!(why);
                }
            }
        }
        r
    };
    let mut v = json!({
        "type": "visit", "visitId": id, "provider": {"organisationNumber": provider},
        "client": {"personalIdentityNumber": client}, "staffId": staff,
        "checkIn": reg(from), "plannedMinutes": 30, "status": "PERFORMED"
    });
    if let Some(to) = to {
        v["checkOut"] = reg(to);
    }
    v
}

/// Registers a tag in a client's home (as case management).
pub async fn register_tag(hub: &TestHub, tag: &str, client: &str, from: &str) {
    let r = hub
        .http
        .post(format!("{}/v1/tags", hub.url))
        .bearer_auth(hub.system_token("combine"))
        .json(&json!({"tag_uid": tag, "client": client, "installed_on": from}))
        .send()
        .await
        .expect("post tag");
    assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
}

/// A November order for `client` at `provider` (Combine's decision: SERV 480 minutes a
/// month), the home's tag, and a 30-minute visit on each of `days`, pushed by the
/// provider's Phoniro system and accepted. The order's id.
pub async fn order_with_visits(
    hub: &TestHub,
    decision: &str,
    client: &str,
    provider: &str,
    tag: &str,
    days: std::ops::Range<u32>,
) -> String {
    let (s, r) =
        hub.post("combine", november_decision(decision, client, provider), Some(&hub.system_token("combine"))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let order = r["order_id"].as_str().expect("an order id").to_owned();
    register_tag(hub, tag, client, "2026-11-01").await;
    let token = hub.provider(provider);
    for day in days {
        let v = phoniro_visit(
            &format!("{decision}-V{day}"),
            provider,
            client,
            "s-1",
            tag,
            &format!("2026-11-{day:02}T09:00"),
            Some(&format!("2026-11-{day:02}T09:30")),
            None,
        );
        let (s, r) = hub.post("phoniro", v.to_string(), Some(&token)).await;
        assert_eq!((s, r["visits"][0]["outcome"].as_str()), (StatusCode::ACCEPTED, Some("accepted")), "{r}");
    }
    order
}

/// The first verification report sent back to Phoniro (`/api/invoice-verifications`, JSON)
/// and to Combine (`/callback/fakturagranskning`, XML), waiting until both arrived.
pub async fn verification_reports_sent(vendor: &wiremock::MockServer) -> (Value, String) {
    let sent = eventually("the report reaches Phoniro and Combine", || async {
        let requests = vendor.received_requests().await.unwrap_or_default();
        let phoniro = requests.iter().find(|r| r.url.path() == "/api/invoice-verifications").cloned()?;
        let combine = requests.iter().find(|r| r.url.path() == "/callback/fakturagranskning").cloned()?;
        Some((phoniro, combine))
    })
    .await;
    let phoniro = serde_json::from_slice(&sent.0.body).expect("Phoniro's report is JSON");
    (phoniro, String::from_utf8_lossy(&sent.1.body).into_owned())
}

/// A minimal home-care PEPPOL document from provider A for November 2026: lines of
/// (id, order id, quantity, unit, amount in kronor).
pub fn peppol(kind: &str, id: &str, credits: Option<&str>, lines: &[(&str, &str, &str, &str, &str)]) -> String {
    let (root, ns, line_el, qty_el) = match kind {
        "invoice" => ("Invoice", "Invoice-2", "InvoiceLine", "InvoicedQuantity"),
        _ => ("CreditNote", "CreditNote-2", "CreditNoteLine", "CreditedQuantity"),
    };
    let total: f64 = lines.iter().map(|l| l.4.parse::<f64>().unwrap_or(0.0)).sum();
    let billing = credits
        .map(|c| format!("<cac:BillingReference><cac:InvoiceDocumentReference><cbc:ID>{c}</cbc:ID></cac:InvoiceDocumentReference></cac:BillingReference>"))
        .unwrap_or_default();
    let body: String = lines
        .iter()
        .map(|(lid, order, qty, unit, amount)| {
            format!(
                "<cac:{line_el}><cbc:ID>{lid}</cbc:ID><cbc:{qty_el} unitCode=\"{unit}\">{qty}</cbc:{qty_el}>\
                 <cbc:LineExtensionAmount currencyID=\"SEK\">{amount}</cbc:LineExtensionAmount>\
                 <cac:OrderLineReference><cbc:LineID>{order}</cbc:LineID></cac:OrderLineReference>\
                 <cac:Item><cbc:Name>Hemtjänst</cbc:Name><cac:ClassifiedTaxCategory><cbc:ID>E</cbc:ID><cbc:Percent>0</cbc:Percent>\
                 <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:ClassifiedTaxCategory></cac:Item>\
                 <cac:Price><cbc:PriceAmount currencyID=\"SEK\">390.00</cbc:PriceAmount></cac:Price></cac:{line_el}>"
            )
        })
        .collect();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <{root} xmlns=\"urn:oasis:names:specification:ubl:schema:xsd:{ns}\" \
         xmlns:cac=\"urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2\" \
         xmlns:cbc=\"urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2\">\
         <cbc:ID>{id}</cbc:ID><cbc:IssueDate>2026-12-02</cbc:IssueDate><cbc:DocumentCurrencyCode>SEK</cbc:DocumentCurrencyCode>\
         <cac:InvoicePeriod><cbc:StartDate>2026-11-01</cbc:StartDate><cbc:EndDate>2026-11-30</cbc:EndDate></cac:InvoicePeriod>\
         {billing}\
         <cac:AccountingSupplierParty><cac:Party><cac:PostalAddress><cac:Country><cbc:IdentificationCode>SE</cbc:IdentificationCode></cac:Country></cac:PostalAddress>\
         <cac:PartyLegalEntity><cbc:RegistrationName>Hemtjänst Norr AB</cbc:RegistrationName><cbc:CompanyID>{PROVIDER_A}</cbc:CompanyID></cac:PartyLegalEntity></cac:Party></cac:AccountingSupplierParty>\
         <cac:AccountingCustomerParty><cac:Party><cac:PartyLegalEntity><cbc:RegistrationName>Ekerö kommun</cbc:RegistrationName></cac:PartyLegalEntity></cac:Party></cac:AccountingCustomerParty>\
         <cac:TaxTotal><cbc:TaxAmount currencyID=\"SEK\">0.00</cbc:TaxAmount></cac:TaxTotal>\
         <cac:LegalMonetaryTotal><cbc:LineExtensionAmount currencyID=\"SEK\">{total:.2}</cbc:LineExtensionAmount>\
         <cbc:TaxExclusiveAmount currencyID=\"SEK\">{total:.2}</cbc:TaxExclusiveAmount><cbc:TaxInclusiveAmount currencyID=\"SEK\">{total:.2}</cbc:TaxInclusiveAmount>\
         <cbc:PayableAmount currencyID=\"SEK\">{total:.2}</cbc:PayableAmount></cac:LegalMonetaryTotal>{body}</{root}>"
    )
}

/// [`peppol`]'s document as provider `org` sent it (its supplier's organisation number).
pub fn peppol_of(
    org: &str,
    kind: &str,
    id: &str,
    credits: Option<&str>,
    lines: &[(&str, &str, &str, &str, &str)],
) -> String {
    peppol(kind, id, credits, lines).replace(
        &format!("<cbc:CompanyID>{PROVIDER_A}</cbc:CompanyID>"),
        &format!("<cbc:CompanyID>{org}</cbc:CompanyID>"),
    )
}

/// The verification of the invoice both invoice tests send, whatever its format: six hours
/// (360 minutes) invoiced on an order granted 480 minutes a month and performed 300.
pub fn assert_the_invoiced_six_hours(report: &Value) {
    let line = &report["lines"][0];
    // invoiced 360 > performed 300 (INV001); cap floor(1.10 × 480) = 528; approved 300 min,
    // 300 × 390 / 60 = 1,950.00 kr.
    assert_eq!(
        (line["invoiced_minutes"].as_i64(), line["performed_minutes"].as_i64(), line["granted_minutes"].as_i64()),
        (Some(360), Some(300), Some(480)),
        "{report}"
    );
    assert_eq!((line["cap_minutes"].as_i64(), line["approved_minutes"].as_i64()), (Some(528), Some(300)));
    assert_eq!(line["approved_amount"].as_i64(), Some(195_000), "öre");
    assert_eq!(codes(&line["findings"]), vec!["INV001"]);
    // 300 < 0.80 × 480 = 384: under-delivery, reported (INV006).
    assert_eq!(codes(&report["findings"]), vec!["INV006"]);
}

/// The codes of a list of findings.
pub fn codes(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|f| f["code"].as_str().map(str::to_owned)).collect()).unwrap_or_default()
}
