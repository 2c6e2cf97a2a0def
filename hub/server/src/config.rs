//! `carehub.toml`: parse and validate without touching the network.
//!
//! [`Config::parse`] reads the whole file and reports every problem at once, each with the
//! key it concerns, so municipal IT fixes a config in one round. Reaching the configured
//! systems is a separate step (`carehub check`). The format is documented by the example
//! `carehub.toml` at the repository root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use carehub_adapters::VendorConfig;
use carehub_core::adapter::SystemRole;
use carehub_core::delivery::lease::LeaseSettings;
use carehub_core::delivery::outbox::RetryPolicy;
use carehub_model::{Deadlines, OrgNumber};
use serde::Deserialize;

/// Everything wrong with a configuration file: one line per problem, starting with
/// `LINE:COLUMN: ` where the problem has a place in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s) in the configuration:\n  - {}", .0.len(), .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

impl ConfigErrors {
    /// The problems as a compiler prints them: `FILE:LINE:COLUMN: message`, one a line.
    pub fn report(&self, file: &Path) -> String {
        self.0
            .iter()
            .map(|p| {
                let located = p.split_once(": ").is_some_and(|(at, _)| {
                    at.split(':').count() == 2 && at.split(':').all(|n| n.parse::<usize>().is_ok())
                });
                format!("{}{}{p}", file.display(), if located { ":" } else { ": " })
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A place in the configuration: keys and `[[array]]` indexes from the top.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn at(keys: &[&str]) -> Vec<Seg> {
    keys.iter().map(|k| Seg::Key((*k).to_owned())).collect()
}

/// The `i`th entry of `[[array]]`, and optionally one of its keys.
fn entry(array: &str, i: usize, key: Option<&str>) -> Vec<Seg> {
    let mut p = vec![Seg::Key(array.to_owned()), Seg::Index(i)];
    p.extend(key.map(|k| Seg::Key(k.to_owned())));
    p
}

/// The problems found so far, each with its place when it has one.
#[derive(Debug, Default)]
struct Problems(Vec<(Vec<Seg>, String)>);

impl Problems {
    fn push(&mut self, message: String) {
        self.0.push((Vec::new(), message));
    }

    fn at(&mut self, place: Vec<Seg>, message: String) {
        self.0.push((place, message));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems with their line and column in `text`.
    fn located(self, text: &str) -> Vec<String> {
        let doc = toml_edit::ImDocument::parse(text).ok();
        self.0
            .into_iter()
            .map(|(place, message)| match doc.as_ref().and_then(|d| span_of(d.as_table(), &place)) {
                Some(offset) => {
                    let (line, column) = line_column(text, offset);
                    format!("{line}:{column}: {message}")
                }
                None => message,
            })
            .collect()
    }
}

/// Where a place is in the document: its key, or the nearest enclosing table or key found.
fn span_of(top: &toml_edit::Table, place: &[Seg]) -> Option<usize> {
    use toml_edit::Item;
    let mut table = top;
    let mut item: Option<&Item> = None;
    let mut best = None;
    for seg in place {
        match seg {
            Seg::Key(k) => {
                let here = match item {
                    None => Some(table),
                    Some(Item::Table(t)) => Some(t),
                    _ => None,
                };
                let Some((key, found)) = here.and_then(|t| t.get_key_value(k)) else { break };
                best = key.span().map(|r| r.start).or(best);
                if let Some(t) = here {
                    table = t;
                }
                item = Some(found);
            }
            Seg::Index(i) => {
                let Some(Item::ArrayOfTables(a)) = item else { break };
                let Some(t) = a.get(*i) else { break };
                best = t.span().map(|r| r.start).or(best);
                table = t;
                item = None;
            }
        }
    }
    best
}

/// The 1-based line and column (in characters) of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

/// The field a serde message names (`unknown field `colour``), to point at it.
fn named_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

impl HubSection {
    /// The PostgreSQL URL `database` names, if it names one rather than a SQLite file.
    pub fn postgres_url(&self) -> Option<&str> {
        database_url(&self.database)
    }
}

/// `database` as a PostgreSQL URL (`postgres://...` or `postgresql://...`), if it is one.
pub fn database_url(database: &Path) -> Option<&str> {
    database.to_str().filter(|d| carehub_postgres::is_postgres_url(d))
}

/// `[hub]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSection {
    /// Address and port the HTTP API listens on.
    pub listen: String,
    /// The SQLite database file (relative to the config file), or a PostgreSQL database's
    /// `postgres://` URL (several hub nodes on one database, SPEC §11).
    pub database: PathBuf,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// A folder with `<vendor>/*.toml` mapping files that replace the built-in ones.
    pub mappings_dir: Option<PathBuf>,
    /// Serve HTTPS (and, with `client_ca`, accept client certificates).
    pub tls: Option<TlsSection>,
    /// How long a client may take to send a request's headers (from connecting, or from
    /// its first byte on a kept-alive connection) before the hub closes the connection.
    pub header_read_timeout_ms: u64,
    /// How long a kept-alive connection may sit between requests before it is closed.
    pub idle_timeout_ms: u64,
    /// Connections open at once; the next one is closed at once (a plain-HTTP client gets
    /// a 503 first).
    pub max_connections: usize,
    /// On shutdown, how long requests in flight may take to finish before their
    /// connections are cut.
    pub drain_timeout_ms: u64,
    /// The operational log's format on stderr: `text` (default) or `json` (one object a
    /// line, for log shippers). `CAREHUB_LOG_FORMAT` overrides it.
    pub log_format: LogFormat,
    /// This node's name, when several hub nodes share a PostgreSQL database (SPEC §11): on
    /// every metric (`node="..."`) and in the owner of its leases. Letters, digits, `.`,
    /// `-` and `_`, at most 64. Default: the machine's host name, or `carehub` when that is
    /// not such a name.
    pub node: String,
    /// How often a node renews the leases of the pollers it runs (each SFTP inbox, each
    /// feed, the visit forwarder, the checkpointer), and tries to take those no node holds,
    /// in milliseconds (default 5000).
    pub poller_heartbeat_ms: u64,
    /// How long each renewal holds, in milliseconds (default 15000; at least twice the
    /// heartbeat): a node that dies has its pollers taken over by another this long after
    /// its last renewal, give or take a heartbeat. On a clean shutdown they are given up at
    /// once.
    pub poller_lease_ttl_ms: u64,
}

/// The node name when `[hub] node` is not set: the host name if it makes a node name,
/// else `carehub`. (The one look-up a configuration makes: the kernel's host name.)
pub fn default_node() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let host = host.trim();
    if is_node_name(host) {
        host.to_owned()
    } else {
        carehub_core::metrics::DEFAULT_NODE.to_owned()
    }
}

/// Whether `s` may name a node: 1 to 64 ASCII letters, digits, `.`, `-` and `_`.
pub fn is_node_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The operational log's format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("log format '{other}' is not text or json")),
        }
    }
}

/// `[hub.tls]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The hub's certificate chain (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8, SEC1 or PKCS#1), as a file; or the PEM text itself as
    /// a secret, `key_pem_env = "VAR"` (or `key_pem_file`, the same as `key`), like every
    /// secret. Exactly one of the two.
    #[serde(default)]
    pub key: Option<PathBuf>,
    #[serde(default)]
    pub key_pem: Option<carehub_model::Secret>,
    /// A CA (PEM) whose client certificates authenticate systems (mutual TLS). A system
    /// is named by its `client_cert_name`. Clients without a certificate still connect
    /// and use bearer tokens.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl Default for HubSection {
    fn default() -> Self {
        HubSection {
            listen: "127.0.0.1:8080".into(),
            database: "carehub.db".into(),
            max_body_bytes: 1024 * 1024,
            mappings_dir: None,
            tls: None,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 1024,
            drain_timeout_ms: 30_000,
            log_format: LogFormat::Text,
            node: String::new(),
            poller_heartbeat_ms: LeaseSettings::default().heartbeat.as_millis() as u64,
            poller_lease_ttl_ms: LeaseSettings::default().ttl.as_millis() as u64,
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// The HS256 key for bearer tokens (at least 32 bytes): inline, or from
    /// `jwt_secret_env` / `jwt_secret_file` like every secret (`resolve_secrets`).
    pub jwt_secret: Option<carehub_model::Secret>,
    /// Lifetime of tokens `carehub token` issues, in minutes (default 480).
    pub token_ttl_minutes: Option<u64>,
}

/// `[audit]`: signed checkpoints of the message log's Merkle tree (SPEC §9).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// The hub's Ed25519 signing key, the 32-byte seed in base64 (`carehub audit keygen`
    /// writes one): inline, or `signing_key_env` / `signing_key_file` like every secret.
    /// Without it no checkpoints are written and the proof endpoints answer UNAVAILABLE.
    pub signing_key: Option<carehub_model::Secret>,
    /// The log's name in its checkpoints (the signed note's origin and key name), such as
    /// `carehub.vasteras.se/log`.
    pub origin: String,
    /// How often the background task checkpoints a grown log, in milliseconds; 0 turns it
    /// off (checkpoints are then made only on demand, by a proof or an export).
    pub checkpoint_every_ms: u64,
    /// How long payloads are kept: `carehub audit retention` removes those older (`10y`,
    /// `18m` months, `90d`).
    pub retention: String,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection { signing_key: None, origin: "carehub".into(), checkpoint_every_ms: 5000, retention: "10y".into() }
    }
}

/// The instant `age` (`10y`, `18m`, `90d`) before `now`.
pub fn before(now: chrono::DateTime<chrono::Utc>, age: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let bad = || format!("'{age}' is not an age such as 10y, 18m or 90d");
    let (n, unit) = age.trim().split_at(age.trim().len().saturating_sub(1));
    let n: u32 = n.parse().map_err(|_| bad())?;
    match unit {
        "y" => now.checked_sub_months(chrono::Months::new(n.saturating_mul(12))),
        "m" => now.checked_sub_months(chrono::Months::new(n)),
        "d" => now.checked_sub_days(chrono::Days::new(n.into())),
        _ => None,
    }
    .ok_or_else(bad)
}

impl AuditSection {
    /// The signing key, when one is configured (validated when the configuration loaded).
    pub fn key(&self) -> Option<ed25519_dalek::SigningKey> {
        self.signing_key.as_ref().and_then(|k| carehub_core::log::checkpoint::signing_key_from_text(k.expose()).ok())
    }
}

/// `[delivery]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySection {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub timeout_ms: u64,
    /// Deliveries sent at once, across systems. Each waits for its receiver and then for the
    /// commit that records its attempt, so this many in flight is what lets deliveries keep
    /// up with intake: at 64, 64 clients posting decisions left half their orders waiting.
    pub max_in_flight: usize,
    /// Past this many deliveries waiting, messages are refused with 503 and `Retry-After`
    /// until the outbox has caught up (0: never).
    pub max_backlog: u64,
    /// The longest the delivery loop sleeps when nothing is due, in milliseconds (default
    /// 1000): the fallback for a wake-up missed. New work wakes it at once: this node's
    /// own, and on PostgreSQL every node's (`LISTEN/NOTIFY`).
    pub idle_poll_ms: u64,
}

impl Default for DeliverySection {
    fn default() -> Self {
        let p = RetryPolicy::default();
        DeliverySection {
            max_attempts: p.max_attempts,
            initial_backoff_ms: p.initial_backoff.as_millis() as u64,
            max_backoff_ms: p.max_backoff.as_millis() as u64,
            timeout_ms: p.timeout.as_millis() as u64,
            max_in_flight: 256,
            max_backlog: 100_000,
            idle_poll_ms: 1000,
        }
    }
}

/// `[deadlines]`
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadlineSection {
    pub execute_days: u32,
    pub plan_days: u32,
    /// A changed order must be confirmed again within `execute_days` of the change.
    pub reconfirm_changes: bool,
}

impl Default for DeadlineSection {
    fn default() -> Self {
        let d = Deadlines::default();
        DeadlineSection { execute_days: d.execute_days, plan_days: d.plan_days, reconfirm_changes: d.reconfirm_changes }
    }
}

/// `[visits]`: the visit rules' thresholds (SPEC §6) and the manual-share threshold of the
/// follow-up report, with SPEC's defaults.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisitSection {
    /// A check-in with no check-out this many hours later is VIS003.
    pub open_visit_hours: u32,
    /// Visits shorter than this are VIS004.
    pub min_minutes: u32,
    /// Visits longer than this are VIS004.
    pub max_hours: u32,
    /// Times more than this far in the future are VIS006 (clock skew allowed).
    pub future_minutes: u32,
    /// A provider whose manual share of a month is above this is marked (0.10 = 10%).
    pub manual_share_threshold: f64,
    /// Most visits in one report message, for a case-management system whose profile takes
    /// lists (a `visits.out.toml` mapping): the size cap.
    pub report_batch_max: usize,
    /// How long newly stored visits gather before they are reported, in milliseconds: the
    /// time cap. Fewer, larger messages spare the store's writer (webhook pushes kept their
    /// rate with reports on only this way); a report waits about this much longer.
    pub report_window_ms: u64,
}

impl Default for VisitSection {
    fn default() -> Self {
        VisitSection {
            open_visit_hours: 12,
            min_minutes: 1,
            max_hours: 8,
            future_minutes: 5,
            manual_share_threshold: 0.10,
            report_batch_max: carehub_core::flows::visits::ReportBatch::default().max_visits,
            report_window_ms: carehub_core::flows::visits::ReportBatch::default().window.as_millis() as u64,
        }
    }
}

impl VisitSection {
    /// How visit reports are gathered into lists.
    pub fn report_batch(&self) -> carehub_core::flows::visits::ReportBatch {
        carehub_core::flows::visits::ReportBatch {
            max_visits: self.report_batch_max,
            window: std::time::Duration::from_millis(self.report_window_ms),
        }
    }

    pub fn thresholds(&self) -> carehub_core::rules::visits::Thresholds {
        use chrono::Duration;
        carehub_core::rules::visits::Thresholds {
            open_visit: Duration::hours(i64::from(self.open_visit_hours)),
            min_duration: Duration::minutes(i64::from(self.min_minutes)),
            max_duration: Duration::hours(i64::from(self.max_hours)),
            future: Duration::minutes(i64::from(self.future_minutes)),
        }
    }
}

/// `[invoices]`: the verification policy (SPEC §7), with its defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InvoiceSection {
    /// Invoiced time up to this share of granted needs no comment ("1.10").
    pub tolerance: String,
    /// Whether a visit declined at the door pays its planned duration.
    pub declined_visits_paid: bool,
    /// Minutes paid for an implementation plan established in time.
    pub plan_compensation_minutes: u32,
    /// INV006 when performed is under this share of granted ("0.80").
    pub under_delivery_threshold: String,
}

impl Default for InvoiceSection {
    fn default() -> Self {
        InvoiceSection {
            tolerance: "1.10".into(),
            declined_visits_paid: false,
            plan_compensation_minutes: 120,
            under_delivery_threshold: "0.80".into(),
        }
    }
}

/// One `[[systems]]` entry.
#[derive(Debug, Clone)]
pub struct SystemConfig {
    pub name: String,
    pub vendor: VendorConfig,
    /// The DNS name in the system's client certificate (mutual TLS), if it uses one.
    pub client_cert_name: Option<String>,
    /// A case-management system: whether accepted and flagged visits of its orders are
    /// reported to it (when its vendor has a visit mapping). `visit_reports = false` turns
    /// it off for a municipality that reads visits from the hub instead.
    pub visit_reports: bool,
}

/// One `[[providers]]` entry: a provider and the system its orders go to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub org: String,
    pub name: String,
    pub system: String,
    /// The contracted rate, kronor per performed hour (invoice verification, SPEC §7): the
    /// day rate, paid for time outside every band and for plan compensation.
    #[serde(default)]
    pub rate_per_hour: Option<Rate>,
    /// Time bands with their own rates (evening, night, weekend), by the municipality's clock.
    #[serde(default)]
    pub bands: Vec<BandConfig>,
}

/// `[[providers.bands]]`: `kind` day/evening/night/weekend, `from`/`to` as `HH:MM` (`to`
/// before `from` runs past midnight; equal: the whole day), `rate_per_hour` in kronor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BandConfig {
    pub kind: String,
    pub from: String,
    pub to: String,
    pub rate_per_hour: Rate,
}

/// A rate in kronor per hour, held in öre (SPEC §7: "a rate is kronor with öre"). Written
/// `390`, `412.5` or `"412.50"` (a decimal comma too: `"397,80"`); at most two decimals,
/// never negative. A TOML float is read through its shortest decimal form, so `397.8` is
/// exactly 397 kronor 80 öre.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate {
    /// Öre per hour.
    pub ore: i64,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Rate, String> {
        let t = s.trim();
        let bad = || format!("'{s}' is not a rate in kronor (e.g. 390 or \"412.50\": at most two decimals)");
        let digits = |x: &str| !x.is_empty() && x.len() <= 9 && x.bytes().all(|b| b.is_ascii_digit());
        let (whole, frac) = match t.split_once(['.', ',']) {
            Some((w, f)) if digits(f) => (w, f),
            Some(_) => return Err(bad()),
            None => (t, ""),
        };
        if !digits(whole) || frac.len() > 2 {
            return Err(bad());
        }
        let kronor: i64 = whole.parse().map_err(|_| bad())?;
        let ore: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().map_err(|_| bad())? * 10,
            _ => frac.parse().map_err(|_| bad())?,
        };
        Ok(Rate { ore: kronor * 100 + ore })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Whole(i64),
            Decimal(f64),
            Text(String),
        }
        let text = match Written::deserialize(d)? {
            Written::Whole(n) => n.to_string(),
            Written::Decimal(f) if f.is_finite() => format!("{f}"),
            Written::Decimal(f) => f.to_string(),
            Written::Text(s) => s,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:02}", self.ore / 100, self.ore % 100)
    }
}

impl BandConfig {
    fn band(&self) -> Result<carehub_core::rules::invoices::Band, String> {
        use carehub_core::rules::invoices::{Band, BandKind};
        let kind = match self.kind.as_str() {
            "day" => BandKind::Day,
            "evening" => BandKind::Evening,
            "night" => BandKind::Night,
            "weekend" => BandKind::Weekend,
            other => return Err(format!("kind '{other}' is not day, evening, night or weekend")),
        };
        let time =
            |s: &str| chrono::NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("'{s}' is not a time (HH:MM)"));
        Ok(Band { kind, from: time(&self.from)?, to: time(&self.to)?, rate: self.rate_per_hour.ore })
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub hub: HubSection,
    pub auth: AuthSection,
    pub jwt_secret: carehub_model::Secret,
    pub audit: AuditSection,
    pub delivery: DeliverySection,
    pub deadlines: DeadlineSection,
    pub visits: VisitSection,
    pub invoices: InvoiceSection,
    pub systems: Vec<SystemConfig>,
    pub providers: Vec<ProviderConfig>,
    /// `[console]`, when the auditors' web console is configured.
    pub console: Option<ConsoleSection>,
}

fn section<T: serde::de::DeserializeOwned + Default>(table: &mut toml::Table, key: &str, errors: &mut Problems) -> T {
    match table.remove(key) {
        None => T::default(),
        Some(v) => T::deserialize(v).unwrap_or_else(|e| {
            let mut place = at(&[key]);
            place.extend(named_field(e.message()).map(|f| Seg::Key(f.to_owned())));
            errors.at(place, format!("[{key}]: {}", e.message()));
            T::default()
        }),
    }
}

/// Where [`Config::parse`] looks up environment variables: the process environment, or a
/// map in tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Stands in for a secret that could not be resolved, so that the one error about it is
/// the only one (no "missing field" or "too short" after it). Never used: the
/// configuration is refused.
const UNRESOLVED: &str = "unresolved-secret-unresolved-secret-unresolved";

/// Resolves the secrets `keys` of one table, the same way for every section and vendor: a
/// secret `KEY` is given inline (`KEY = "..."`), or by the name of an environment variable
/// (`KEY_env = "VAR"`), or by the path of a file holding it (`KEY_file = "/run/secrets/x"`,
/// relative to the configuration's folder; a trailing newline is dropped). Exactly one of
/// the three. Afterwards `KEY` holds the value and the `_env`/`_file` keys are gone. Errors
/// name the key, the variable or the file, never the value.
fn resolve_secrets(
    table: &mut toml::Table,
    keys: &[&str],
    (label, place): (&str, &[Seg]),
    base: &Path,
    env: EnvLookup<'_>,
    errors: &mut Problems,
) {
    let key_at = |k: &str| {
        let mut p = place.to_vec();
        p.push(Seg::Key(k.to_owned()));
        p
    };
    for &key in keys {
        let (env_key, file_key) = (format!("{key}_env"), format!("{key}_file"));
        let from_env = table.remove(&env_key);
        let from_file = table.remove(&file_key);
        let given =
            usize::from(table.contains_key(key)) + usize::from(from_env.is_some()) + usize::from(from_file.is_some());
        if given > 1 {
            errors.at(key_at(key), format!("{label}: set only one of {key}, {env_key}, {file_key}"));
            table.insert(key.to_owned(), toml::Value::String(UNRESOLVED.into()));
            continue;
        }
        let source_key = if from_env.is_some() { env_key.clone() } else { file_key.clone() };
        let value = match (from_env, from_file) {
            (Some(toml::Value::String(var)), _) => match env(&var) {
                Some(v) if !v.is_empty() => Ok(v),
                Some(_) => Err(format!("{label} {env_key}: the environment variable {var} is empty")),
                None => Err(format!("{label} {env_key}: the environment variable {var} is not set")),
            },
            (Some(_), _) => Err(format!("{label} {env_key}: the name of an environment variable, as a string")),
            (None, Some(toml::Value::String(file))) => {
                let path = base.join(&file);
                match std::fs::read_to_string(&path) {
                    Ok(v) if !v.trim().is_empty() => Ok(v.trim_end_matches(['\r', '\n']).to_owned()),
                    Ok(_) => Err(format!("{label} {file_key}: the file {} is empty", path.display())),
                    Err(e) => Err(format!("{label} {file_key}: cannot read {}: {e}", path.display())),
                }
            }
            (None, Some(_)) => Err(format!("{label} {file_key}: the path of a file, as a string")),
            (None, None) => continue,
        };
        let value = value.unwrap_or_else(|e| {
            errors.at(key_at(&source_key), e);
            UNRESOLVED.to_owned()
        });
        table.insert(key.to_owned(), toml::Value::String(value));
    }
}

/// What a configuration says of its systems and routes even when it has problems: enough
/// for `carehub check` to go on to the mapping files of every vendor it could read and the
/// mappings its routes need, in the same run.
#[derive(Debug, Clone, Default)]
pub struct Outline {
    /// `[hub] mappings_dir`, relative to the configuration's folder; none: the built-in files.
    pub mappings_dir: Option<PathBuf>,
    /// `mappings_dir` is there but not a path: which mapping files are meant is unknown.
    pub unreadable_mappings_dir: bool,
    /// Every `[[systems]]` entry whose vendor is known, whatever else is wrong with it.
    pub systems: Vec<SystemOutline>,
    /// The systems the `[[providers]]` that could be read route their orders to.
    pub routed: BTreeSet<String>,
}

/// A `[[systems]]` entry as far as its mappings are concerned.
#[derive(Debug, Clone)]
pub struct SystemOutline {
    /// None when the entry has no name.
    pub name: Option<String>,
    pub vendor: &'static str,
    pub role: SystemRole,
}

// ---------------------------------------------------------------------------------------
// [console]: the auditors' web console and its OpenID Connect sign-in (docs/console.md).

/// `[console]`: the auditors' web console at `/console`, people signing in through the
/// municipality's identity provider with OpenID Connect (docs/console.md). Absent: no
/// console, `/console` answers NOT_FOUND.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// The identity provider's issuer URL; its discovery document is
    /// `{issuer}/.well-known/openid-configuration`. HTTPS, or HTTP on loopback only.
    pub issuer: String,
    /// The hub's client id at the identity provider (the ID token's audience).
    pub client_id: String,
    /// The client secret, when the identity provider wants one (a confidential client):
    /// inline, or `client_secret_env` / `client_secret_file` like every secret.
    #[serde(default)]
    pub client_secret: Option<carehub_model::Secret>,
    /// The ID-token claim carrying the person's role(s): a string or a list of strings,
    /// among `auditor`, `admin`, `provider`.
    #[serde(default = "ConsoleSection::default_role_claim")]
    pub role_claim: String,
    /// The ID-token claim carrying the organisation number of the provider whose staff the
    /// person is (for the role `provider`).
    #[serde(default = "ConsoleSection::default_provider_claim")]
    pub provider_claim: String,
    /// The hub's public base URL as browsers reach it (`https://carehub.kommun.se`): the
    /// redirect URL is `{public_url}/console/callback` and a POST's `Origin` must be it.
    /// Absent: taken from each request's `Host` (fine behind nothing, not behind a proxy).
    #[serde(default)]
    pub public_url: Option<String>,
    /// The redirect URL registered at the identity provider, when it is not
    /// `{public_url}/console/callback`.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// The longest a console session lasts, in minutes (default 480), whatever the ID
    /// token's own expiry.
    #[serde(default = "ConsoleSection::default_max_age")]
    pub session_max_age_minutes: u64,
}

impl ConsoleSection {
    fn default_role_claim() -> String {
        "roles".into()
    }

    fn default_provider_claim() -> String {
        "provider_org".into()
    }

    fn default_max_age() -> u64 {
        480
    }

    /// Reads `[console]`, reporting what is wrong with it.
    fn parse(value: toml::Value, errors: &mut Problems) -> Option<ConsoleSection> {
        let section = match ConsoleSection::deserialize(value) {
            Ok(s) => s,
            Err(e) => {
                let mut place = at(&["console"]);
                place.extend(named_field(e.message()).map(|f| Seg::Key(f.to_owned())));
                errors.at(place, format!("[console]: {}", e.message()));
                return None;
            }
        };
        for (key, value) in [
            ("issuer", Some(&section.issuer)),
            ("public_url", section.public_url.as_ref()),
            ("redirect_url", section.redirect_url.as_ref()),
        ] {
            if let Some(Err(e)) = value.map(|v| console_url(v)) {
                errors.at(at(&["console", key]), format!("[console] {key}: {e}"));
            }
        }
        if section.client_id.trim().is_empty() {
            errors.at(at(&["console", "client_id"]), "[console] client_id: empty".into());
        }
        if section.session_max_age_minutes == 0 {
            errors.at(
                at(&["console", "session_max_age_minutes"]),
                "[console] session_max_age_minutes: at least 1".into(),
            );
        }
        Some(section)
    }
}

/// Checks a URL of the console's: `https://`, or `http://` to a loopback address only.
pub fn console_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!("'{url}' must be https (plain http only on a loopback address)")),
    }
}

/// Whether some vendor's `[[systems]]` table has `key` (for an entry whose vendor is
/// missing or unknown). A vendor refuses a key it lacks before anything else, so a table of
/// that key alone tells.
fn known_to_a_vendor(key: &str, value: &toml::Value) -> bool {
    carehub_adapters::VENDORS.iter().any(|vendor| {
        let alone = toml::Table::from_iter([(key.to_owned(), value.clone())]);
        VendorConfig::parse(vendor, alone).err().is_none_or(|e| named_field(&e) != Some(key))
    })
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

impl Config {
    /// Reads and validates a configuration file. Relative paths in it are taken relative to
    /// the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, base)
    }

    /// Reads and validates a configuration file, looking secrets' `_env` variables up
    /// with `env` instead of the process environment.
    pub fn load_with_env(path: &Path, env: EnvLookup<'_>) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse_with_env(&text, base, env)
    }

    /// Parses and validates configuration text; secrets' `_env` variables come from the
    /// process environment.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigErrors> {
        Config::parse_with_env(text, base, &|var| std::env::var(var).ok())
    }

    /// Parses and validates configuration text, looking secrets' `_env` variables up with
    /// `env`.
    pub fn parse_with_env(text: &str, base: &Path, env: EnvLookup<'_>) -> Result<Config, ConfigErrors> {
        Config::parse_outlined(text, base, env).map_err(|(errors, _)| errors)
    }

    /// Reads and validates a configuration file like [`Config::load`]; when it has problems,
    /// also what it still says of its systems and routes (see [`Outline`]).
    pub fn load_outlined(path: &Path) -> Result<Config, (ConfigErrors, Outline)> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| (ConfigErrors(vec![format!("cannot read {}: {e}", path.display())]), Outline::default()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse_outlined(&text, base, &|var| std::env::var(var).ok())
    }

    /// Parses and validates configuration text like [`Config::parse_with_env`]; when it has
    /// problems, also what it still says of its systems and routes.
    pub fn parse_outlined(text: &str, base: &Path, env: EnvLookup<'_>) -> Result<Config, (ConfigErrors, Outline)> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let message = e.message().trim_end().to_owned();
            let errors = ConfigErrors(vec![match e.span() {
                Some(span) => {
                    let (line, column) = line_column(text, span.start);
                    format!("{line}:{column}: {message}")
                }
                None => message,
            }]);
            (errors, Outline::default())
        })?;
        let mut errors = Problems::default();
        let mut outline = Outline::default();
        // Read on its own: a problem elsewhere in [hub] must not send the mapping check to
        // the built-in files instead of the configured ones.
        match table.get("hub").and_then(|h| h.get("mappings_dir")) {
            None => {}
            Some(toml::Value::String(dir)) => outline.mappings_dir = Some(base.join(dir)),
            Some(_) => outline.unreadable_mappings_dir = true,
        }
        if let Some(toml::Value::Table(auth)) = table.get_mut("auth") {
            resolve_secrets(auth, &["jwt_secret"], ("[auth]", &at(&["auth"])), base, env, &mut errors);
        }
        if let Some(toml::Value::Table(audit)) = table.get_mut("audit") {
            resolve_secrets(audit, &["signing_key"], ("[audit]", &at(&["audit"])), base, env, &mut errors);
        }
        if let Some(toml::Value::Table(console)) = table.get_mut("console") {
            resolve_secrets(console, &["client_secret"], ("[console]", &at(&["console"])), base, env, &mut errors);
        }
        if let Some(toml::Value::Table(tls)) =
            table.get_mut("hub").and_then(|h| h.as_table_mut()).and_then(|h| h.get_mut("tls"))
        {
            resolve_secrets(tls, &["key_pem"], ("[hub.tls]", &at(&["hub", "tls"])), base, env, &mut errors);
        }
        let mut hub: HubSection = section(&mut table, "hub", &mut errors);
        let auth: AuthSection = section(&mut table, "auth", &mut errors);
        let audit: AuditSection = section(&mut table, "audit", &mut errors);
        if let Some(Err(e)) = audit
            .signing_key
            .as_ref()
            .filter(|k| k.expose() != UNRESOLVED)
            .map(|k| carehub_core::log::checkpoint::signing_key_from_text(k.expose()))
        {
            errors.at(at(&["audit", "signing_key"]), format!("[audit] signing_key: {e}"));
        }
        if let Err(e) = before(chrono::DateTime::UNIX_EPOCH + chrono::Days::new(365 * 100), &audit.retention) {
            errors.at(at(&["audit", "retention"]), format!("[audit] retention: {e}"));
        }
        if audit.origin.trim().is_empty() || audit.origin.contains(char::is_whitespace) {
            errors.at(
                at(&["audit", "origin"]),
                "[audit] origin: a name without spaces, such as carehub.example.se/log".into(),
            );
        }
        let delivery: DeliverySection = section(&mut table, "delivery", &mut errors);
        let deadlines: DeadlineSection = section(&mut table, "deadlines", &mut errors);
        let visits: VisitSection = section(&mut table, "visits", &mut errors);
        let invoices: InvoiceSection = section(&mut table, "invoices", &mut errors);
        for (key, value) in
            [("tolerance", &invoices.tolerance), ("under_delivery_threshold", &invoices.under_delivery_threshold)]
        {
            if value.parse::<carehub_core::rules::invoices::Ratio>().is_err() {
                errors.at(
                    at(&["invoices", key]),
                    format!("[invoices] {key}: a decimal number such as \"1.10\", got '{value}'"),
                );
            }
        }
        if visits.max_hours == 0 || visits.open_visit_hours == 0 {
            errors.at(
                at(&["visits", if visits.max_hours == 0 { "max_hours" } else { "open_visit_hours" }]),
                "[visits] max_hours and open_visit_hours: at least 1".into(),
            );
        }
        if !(1..=10_000).contains(&visits.report_batch_max) {
            errors.at(
                at(&["visits", "report_batch_max"]),
                "[visits] report_batch_max: between 1 and 10000 visits in one report message".into(),
            );
        }
        if visits.report_window_ms > 60_000 {
            errors
                .at(at(&["visits", "report_window_ms"]), "[visits] report_window_ms: at most 60000 (a minute)".into());
        }
        if !(0.0..=1.0).contains(&visits.manual_share_threshold) {
            errors.at(
                at(&["visits", "manual_share_threshold"]),
                "[visits] manual_share_threshold: a share between 0 and 1 (0.10 is 10%)".into(),
            );
        }

        if hub.listen.parse::<std::net::SocketAddr>().is_err() {
            errors.at(at(&["hub", "listen"]), format!("[hub] listen: '{}' is not an address:port", hub.listen));
        }
        if hub.max_body_bytes < 1024 {
            errors.at(at(&["hub", "max_body_bytes"]), "[hub] max_body_bytes: at least 1024".into());
        }
        if hub.header_read_timeout_ms == 0 || hub.idle_timeout_ms == 0 || hub.drain_timeout_ms == 0 {
            errors.push("[hub] header_read_timeout_ms, idle_timeout_ms and drain_timeout_ms must be positive".into());
        }
        if hub.max_connections == 0 {
            errors.push("[hub] max_connections: at least 1".into());
        }
        if hub.node.is_empty() {
            hub.node = default_node();
        } else if !is_node_name(&hub.node) {
            errors.at(
                at(&["hub", "node"]),
                format!(
                    "[hub] node: '{}' is not a node name (letters, digits, '.', '-' and '_', at most 64)",
                    hub.node
                ),
            );
        }
        if hub.poller_heartbeat_ms == 0 {
            errors.at(at(&["hub", "poller_heartbeat_ms"]), "[hub] poller_heartbeat_ms: at least 1".into());
        } else if hub.poller_lease_ttl_ms < hub.poller_heartbeat_ms.saturating_mul(2) {
            errors.at(
                at(&["hub", "poller_lease_ttl_ms"]),
                format!(
                    "[hub] poller_lease_ttl_ms: at least twice poller_heartbeat_ms ({} ms), so that a renewal \
                     that fails once does not hand the pollers to another node",
                    hub.poller_heartbeat_ms.saturating_mul(2)
                ),
            );
        }
        if hub.postgres_url().is_none() {
            hub.database = base.join(&hub.database);
        }
        hub.mappings_dir = hub.mappings_dir.map(|d| base.join(d));
        if let Some(tls) = &mut hub.tls {
            tls.cert = base.join(&tls.cert);
            tls.key = tls.key.as_ref().map(|k| base.join(k));
            tls.client_ca = tls.client_ca.as_ref().map(|c| base.join(c));
            if tls.key.is_some() == tls.key_pem.is_some() {
                errors.at(
                    at(&["hub", "tls"]),
                    "[hub.tls]: set the private key as one of key (a file), key_pem_env or key_pem_file".into(),
                );
            }
            // Missing files are found here, with every other problem, not at start-up.
            for (key, file) in
                [("cert", Some(&tls.cert)), ("key", tls.key.as_ref()), ("client_ca", tls.client_ca.as_ref())]
            {
                if let Some(file) = file.filter(|f| !f.is_file()) {
                    errors.at(at(&["hub", "tls", key]), format!("[hub.tls] {key}: no such file {}", file.display()));
                }
            }
        }
        if delivery.max_attempts == 0 {
            errors.at(at(&["delivery", "max_attempts"]), "[delivery] max_attempts: at least 1".into());
        }
        if delivery.timeout_ms == 0 || delivery.max_in_flight == 0 {
            errors.at(at(&["delivery"]), "[delivery] timeout_ms and max_in_flight must be positive".into());
        }
        if delivery.idle_poll_ms == 0 {
            errors.at(at(&["delivery", "idle_poll_ms"]), "[delivery] idle_poll_ms: at least 1".into());
        }
        if delivery.initial_backoff_ms > delivery.max_backoff_ms {
            errors.at(
                at(&["delivery", "initial_backoff_ms"]),
                "[delivery] initial_backoff_ms is larger than max_backoff_ms".into(),
            );
        }

        let jwt_secret = auth.jwt_secret.clone().unwrap_or_else(|| {
            errors.at(at(&["auth"]), "[auth]: set one of jwt_secret, jwt_secret_env, jwt_secret_file".into());
            carehub_model::Secret::new("")
        });
        if !jwt_secret.expose().is_empty() && jwt_secret.expose().len() < 32 {
            errors.at(at(&["auth"]), "[auth]: the JWT secret must be at least 32 bytes".into());
        }

        let mut systems = Vec::new();
        let mut names = BTreeSet::new();
        // Entries without a name (1-based), which a provider's `system` may have meant.
        let mut unnamed = Vec::new();
        match table.remove("systems") {
            None => errors.push("[[systems]]: no systems are configured".into()),
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    let toml::Value::Table(mut t) = item else {
                        errors.at(entry("systems", i, None), format!("[[systems]] #{}: not a table", i + 1));
                        continue;
                    };
                    // An entry without its name or vendor is still checked as far as it can be:
                    // the missing key is one problem, and hides none of the others.
                    let name = match t.remove("name") {
                        Some(toml::Value::String(n)) => Some(n),
                        _ => {
                            errors
                                .at(entry("systems", i, None), format!("[[systems]] #{}: needs name = \"...\"", i + 1));
                            unnamed.push(i + 1);
                            None
                        }
                    };
                    let label = match &name {
                        Some(name) => format!("[[systems]] {name}"),
                        None => format!("[[systems]] #{}", i + 1),
                    };
                    if let Some(name) = &name {
                        if !is_name(name) {
                            errors.at(
                                entry("systems", i, Some("name")),
                                format!("{label}: a name is lowercase letters, digits, '-' and '_'"),
                            );
                        }
                        // Named even when it has other problems: a provider routed to it is not
                        // told that the system is missing as well.
                        if !names.insert(name.clone()) {
                            errors.at(entry("systems", i, Some("name")), format!("{label}: the name is used twice"));
                        }
                    }
                    let client_cert_name = match t.remove("client_cert_name") {
                        None => None,
                        Some(toml::Value::String(n)) if rustls_pki_types::ServerName::try_from(n.as_str()).is_ok() => {
                            Some(n)
                        }
                        Some(_) => {
                            errors.at(
                                entry("systems", i, Some("client_cert_name")),
                                format!("{label}: client_cert_name must be a DNS name"),
                            );
                            None
                        }
                    };
                    let visit_reports = match t.remove("visit_reports") {
                        None => true,
                        Some(toml::Value::Boolean(b)) => b,
                        Some(_) => {
                            errors.at(
                                entry("systems", i, Some("visit_reports")),
                                format!("{label}: visit_reports is true or false"),
                            );
                            true
                        }
                    };
                    let vendor = match t.remove("vendor") {
                        Some(toml::Value::String(v)) => Some(v),
                        _ => {
                            errors.at(
                                entry("systems", i, None),
                                format!(
                                    "{label}: needs vendor = \"...\" (one of {})",
                                    carehub_adapters::VENDORS.join(", ")
                                ),
                            );
                            None
                        }
                    };
                    let known_vendor = vendor
                        .as_deref()
                        .and_then(|v| carehub_adapters::VENDORS.iter().copied().find(|known| *known == v));
                    if let (Some(v), None) = (&vendor, known_vendor) {
                        errors.at(
                            entry("systems", i, Some("vendor")),
                            format!(
                                "{label}: {}",
                                VendorConfig::parse(v, toml::Table::new()).err().unwrap_or_default()
                            ),
                        );
                    }
                    let place = entry("systems", i, None);
                    let Some(vendor) = known_vendor else {
                        // Without a vendor, its secrets are still resolved (an unset variable
                        // or a missing file is found now) and a key no vendor knows is named.
                        let secrets: BTreeSet<&str> = carehub_adapters::VENDORS
                            .iter()
                            .flat_map(|v| carehub_adapters::secret_keys(v))
                            .copied()
                            .collect();
                        let secrets: Vec<&str> = secrets.into_iter().collect();
                        resolve_secrets(&mut t, &secrets, (&label, &place), base, env, &mut errors);
                        for key in t.keys().filter(|k| !known_to_a_vendor(k, &t[k.as_str()])) {
                            errors.at(
                                entry("systems", i, Some(key)),
                                format!("{label}: unknown key '{key}' (no vendor has it)"),
                            );
                        }
                        continue;
                    };
                    outline.systems.push(SystemOutline {
                        name: name.clone(),
                        vendor,
                        role: carehub_adapters::role_of(vendor).unwrap_or(SystemRole::ProviderSystem),
                    });
                    resolve_secrets(
                        &mut t,
                        carehub_adapters::secret_keys(vendor),
                        (&label, &place),
                        base,
                        env,
                        &mut errors,
                    );
                    // A vendor's problem starts with the key it is about, when it is about one.
                    let known = t.clone();
                    let key_of = |message: &str| {
                        let first = named_field(message).or_else(|| message.split([' ', ':']).next()).unwrap_or("");
                        entry("systems", i, known.contains_key(first).then_some(first))
                    };
                    match VendorConfig::parse(vendor, t).map(|v| v.relative_to(base)) {
                        Ok(v) => {
                            for p in v.problems() {
                                errors.at(key_of(&p), format!("{label}: {p}"));
                            }
                            if let Some(name) = name {
                                systems.push(SystemConfig { name, vendor: v, client_cert_name, visit_reports });
                            }
                        }
                        Err(e) => errors.at(key_of(&e), format!("{label}: {e}")),
                    }
                }
            }
            Some(_) => errors.at(at(&["systems"]), "systems: write each system as a [[systems]] table".into()),
        }

        // Each provider on its own, so one bad entry hides none of the others.
        let mut numbered: Vec<(usize, ProviderConfig)> = Vec::new();
        match table.remove("providers") {
            None => {}
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    match ProviderConfig::deserialize(item) {
                        Ok(p) => numbered.push((i, p)),
                        Err(e) => {
                            let field = named_field(e.message());
                            errors
                                .at(entry("providers", i, field), format!("[[providers]] #{}: {}", i + 1, e.message()));
                        }
                    }
                }
            }
            Some(_) => errors.at(at(&["providers"]), "providers: write each provider as a [[providers]] table".into()),
        }
        outline.routed = numbered.iter().map(|(_, p)| p.system.clone()).collect();
        let mut orgs = BTreeSet::new();
        for (i, p) in &numbered {
            let i = *i;
            let label = format!("[[providers]] {}", p.name);
            match OrgNumber::parse(&p.org) {
                Ok(org) => {
                    if !orgs.insert(org.as_str().to_owned()) {
                        errors.at(
                            entry("providers", i, Some("org")),
                            format!("{label}: organisation number {org} is configured twice"),
                        );
                    }
                }
                Err(e) => errors.at(entry("providers", i, Some("org")), format!("{label}: org: {}", e.reason)),
            }
            if !p.bands.is_empty() && p.rate_per_hour.is_none() {
                errors.at(
                    entry("providers", i, Some("bands")),
                    format!("{label}: bands need rate_per_hour (the day rate) too"),
                );
            }
            for b in &p.bands {
                if let Err(e) = b.band() {
                    errors.at(entry("providers", i, Some("bands")), format!("{label}: bands: {e}"));
                }
            }
            match systems.iter().find(|s| s.name == p.system) {
                None if !names.contains(&p.system) => errors.at(
                    entry("providers", i, Some("system")),
                    format!(
                        "{label}: system '{}' is not configured{}",
                        p.system,
                        match unnamed.as_slice() {
                            [] => String::new(),
                            [n] => format!(" (unless it is [[systems]] #{n}, which has no name)"),
                            more => format!(
                                " (unless it is one of [[systems]] {}, which have no name)",
                                more.iter().map(|n| format!("#{n}")).collect::<Vec<_>>().join(", ")
                            ),
                        }
                    ),
                ),
                // A system configured with errors of its own: those are reported already.
                None => {}
                Some(s) if s.vendor.role() != SystemRole::ProviderSystem => errors.at(
                    entry("providers", i, Some("system")),
                    format!(
                        "{label}: system '{}' is a {} system; orders go to a provider system",
                        p.system,
                        s.vendor.role().as_str()
                    ),
                ),
                Some(_) => {}
            }
        }

        if systems.iter().any(|s| s.client_cert_name.is_some())
            && hub.tls.as_ref().is_none_or(|t| t.client_ca.is_none())
        {
            errors.at(
                at(&["hub"]),
                "[[systems]] client_cert_name needs [hub.tls] client_ca to verify client certificates".into(),
            );
        }
        let console = table.remove("console").and_then(|v| ConsoleSection::parse(v, &mut errors));
        for key in table.keys() {
            errors.at(at(&[key]), format!(
                "unknown key or section '{key}' (known: hub, auth, audit, delivery, deadlines, visits, invoices, systems, providers, console)"
            ));
        }
        if errors.is_empty() {
            let providers = numbered.into_iter().map(|(_, p)| p).collect();
            Ok(Config {
                hub,
                auth,
                jwt_secret,
                audit,
                delivery,
                deadlines,
                visits,
                invoices,
                systems,
                providers,
                console,
            })
        } else {
            Err((ConfigErrors(errors.located(text)), outline))
        }
    }

    /// What this configuration says of its systems and routes.
    pub fn outline(&self) -> Outline {
        Outline {
            mappings_dir: self.hub.mappings_dir.clone(),
            unreadable_mappings_dir: false,
            systems: self
                .systems
                .iter()
                .map(|s| SystemOutline { name: Some(s.name.clone()), vendor: s.vendor.vendor(), role: s.vendor.role() })
                .collect(),
            routed: self.providers.iter().map(|p| p.system.clone()).collect(),
        }
    }

    /// How this node renews its pollers' leases (`[hub] poller_heartbeat_ms`,
    /// `poller_lease_ttl_ms`).
    pub fn lease_settings(&self) -> LeaseSettings {
        LeaseSettings {
            heartbeat: Duration::from_millis(self.hub.poller_heartbeat_ms),
            ttl: Duration::from_millis(self.hub.poller_lease_ttl_ms),
        }
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.delivery.max_attempts,
            initial_backoff: Duration::from_millis(self.delivery.initial_backoff_ms),
            max_backoff: Duration::from_millis(self.delivery.max_backoff_ms),
            timeout: Duration::from_millis(self.delivery.timeout_ms),
        }
    }

    pub fn deadlines(&self) -> Deadlines {
        Deadlines {
            execute_days: self.deadlines.execute_days,
            plan_days: self.deadlines.plan_days,
            reconfirm_changes: self.deadlines.reconfirm_changes,
        }
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.auth.token_ttl_minutes.unwrap_or(480) * 60)
    }

    /// Provider routes by normalised organisation number.
    /// The invoice verification policy: `[invoices]`, the manual-share threshold of
    /// `[visits]`, and each provider's `rate_per_hour`.
    pub fn invoice_policy(&self) -> carehub_core::rules::invoices::Policy {
        use carehub_core::rules::invoices::{Policy, Ratio};
        let defaults = Policy::default();
        let ratio = |s: &str, d: Ratio| s.parse::<Ratio>().unwrap_or(d);
        let share = format!("{}", self.visits.manual_share_threshold);
        let rates = self
            .providers
            .iter()
            .filter_map(|p| {
                let day = p.rate_per_hour?.ore;
                let bands = p.bands.iter().filter_map(|b| b.band().ok()).collect();
                Some((OrgNumber::parse(&p.org).ok()?, carehub_core::rules::invoices::Rates { day, bands }))
            })
            .collect();
        Policy {
            tolerance: ratio(&self.invoices.tolerance, defaults.tolerance),
            declined_visits_paid: self.invoices.declined_visits_paid,
            plan_compensation_minutes: i64::from(self.invoices.plan_compensation_minutes),
            manual_share_threshold: ratio(&share, defaults.manual_share_threshold),
            under_delivery_threshold: ratio(&self.invoices.under_delivery_threshold, defaults.under_delivery_threshold),
            amount_tolerance: defaults.amount_tolerance,
            rates,
        }
    }

    pub fn routes(&self) -> BTreeMap<String, carehub_core::hub::Route> {
        self.providers
            .iter()
            .filter_map(|p| {
                let org = OrgNumber::parse(&p.org).ok()?;
                Some((
                    org.as_str().to_owned(),
                    carehub_core::hub::Route { provider_name: p.name.clone(), system: p.system.clone() },
                ))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[hub]
database = "x.db"
[auth]
jwt_secret = "0123456789abcdef0123456789abcdef"
[[systems]]
name = "combine"
vendor = "combine"
callback_url = "http://127.0.0.1:1/cb"
[[systems]]
name = "phoniro"
vendor = "phoniro"
base_url = "http://127.0.0.1:2"
[[providers]]
org = "559900-0014"
name = "Omsorg AB"
system = "phoniro"
"#;

    #[test]
    fn a_good_config_parses_with_paths_relative_to_its_folder() {
        let c = Config::parse(GOOD, Path::new("/etc/carehub")).expect("valid");
        assert_eq!(c.hub.database, PathBuf::from("/etc/carehub/x.db"));
        assert_eq!(c.routes().keys().collect::<Vec<_>>(), vec!["5599000014"]);
        assert_eq!(c.hub.postgres_url(), None, "a file is SQLite");
    }

    #[test]
    fn a_node_is_named_and_its_leases_timed_with_defaults_and_checks() {
        let c = Config::parse(GOOD, Path::new("/etc/carehub")).expect("valid");
        assert!(is_node_name(&c.hub.node), "the default is a node name: {}", c.hub.node);
        assert_eq!(c.hub.node, default_node());
        assert_eq!(c.lease_settings(), LeaseSettings::default());
        assert_eq!(c.delivery.idle_poll_ms, 1000);

        let named = GOOD.replace(
            "database = \"x.db\"",
            "database = \"x.db\"\nnode = \"vasteras-2\"\npoller_heartbeat_ms = 200\npoller_lease_ttl_ms = 1000",
        );
        let c = Config::parse(&named, Path::new("/etc/carehub")).expect("valid");
        assert_eq!(c.hub.node, "vasteras-2");
        assert_eq!(
            c.lease_settings(),
            LeaseSettings { heartbeat: Duration::from_millis(200), ttl: Duration::from_millis(1000) }
        );

        let bad = GOOD.replace(
            "database = \"x.db\"",
            "database = \"x.db\"\nnode = \"nod e\"\npoller_heartbeat_ms = 5000\npoller_lease_ttl_ms = 6000",
        );
        let errors = Config::parse(&bad, Path::new("/etc/carehub")).expect_err("invalid").0;
        assert!(errors.iter().any(|e| e.contains("[hub] node: 'nod e' is not a node name")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("[hub] poller_lease_ttl_ms: at least twice")), "{errors:?}");
    }

    #[test]
    fn a_postgres_url_names_the_database_as_written() {
        for url in ["postgres://carehub@db.kommun.se:5432/carehub", "postgresql://db/carehub"] {
            let text = GOOD.replace("database = \"x.db\"", &format!("database = \"{url}\""));
            let c = Config::parse(&text, Path::new("/etc/carehub")).expect("valid");
            assert_eq!(c.hub.postgres_url(), Some(url), "not joined to the config's folder");
        }
    }

    #[test]
    fn rates_are_kronor_with_ore() {
        let org = OrgNumber::parse("5599000014").expect("org");
        for (written, ore) in [
            ("\"412.50\"", 41_250),
            ("412.5", 41_250),
            ("397.8", 39_780),
            ("\"397,80\"", 39_780),
            ("390", 39_000),
            ("\"0.05\"", 5),
        ] {
            let text = format!(
                "{GOOD}rate_per_hour = {written}\n[[providers.bands]]\nkind = \"night\"\nfrom = \"22:00\"\n\
                 to = \"07:00\"\nrate_per_hour = {written}\n"
            );
            let c = Config::parse(&text, Path::new("/etc/carehub")).unwrap_or_else(|e| panic!("{written}: {e}"));
            let rates = &c.invoice_policy().rates[&org];
            assert_eq!((rates.day, rates.bands[0].rate), (ore, ore), "{written}");
        }
        for written in ["\"412.505\"", "-390", "\"abc\"", "\"12.\"", "\".5\"", "412.125"] {
            let text = format!("{GOOD}rate_per_hour = {written}\n");
            let e = Config::parse(&text, Path::new("/etc/carehub")).expect_err(written);
            assert!(e.to_string().contains("rate"), "{written}: {e}");
        }
    }

    #[test]
    fn rates_and_time_bands_make_the_invoice_policy() {
        use carehub_core::rules::invoices::{BandKind, Ratio};
        let text = format!(
            "{GOOD}rate_per_hour = 390\n[[providers.bands]]\nkind = \"evening\"\nfrom = \"22:00\"\nto = \"07:00\"\n\
             rate_per_hour = 450\n[[providers.bands]]\nkind = \"weekend\"\nfrom = \"00:00\"\nto = \"00:00\"\n\
             rate_per_hour = 480\n[invoices]\ntolerance = \"1.00\"\ndeclined_visits_paid = true\n"
        );
        let c = Config::parse(&text, Path::new("/etc/carehub")).expect("valid");
        let policy = c.invoice_policy();
        let org = OrgNumber::parse("5599000014").expect("org");
        let rates = &policy.rates[&org];
        assert_eq!(rates.day, 39_000);
        assert_eq!(
            rates.bands.iter().map(|b| (b.kind, b.from.to_string(), b.to.to_string(), b.rate)).collect::<Vec<_>>(),
            vec![
                (BandKind::Evening, "22:00:00".into(), "07:00:00".into(), 45_000),
                (BandKind::Weekend, "00:00:00".into(), "00:00:00".into(), 48_000)
            ]
        );
        assert_eq!((policy.tolerance, policy.declined_visits_paid), (Ratio::percent(100), true));

        let bad = format!(
            "{GOOD}[[providers.bands]]\nkind = \"dusk\"\nfrom = \"25:00\"\nto = \"07:00\"\nrate_per_hour = 1\n\
             [invoices]\ntolerance = \"lots\"\n"
        );
        let errors = Config::parse(&bad, Path::new("/")).expect_err("invalid").0;
        for want in ["bands need rate_per_hour", "kind 'dusk'", "[invoices] tolerance"] {
            assert!(errors.iter().any(|e| e.contains(want)), "{want}: {errors:?}");
        }
    }

    #[test]
    fn client_certificates_need_a_client_ca() {
        let text = GOOD.replace(
            "callback_url = \"http://127.0.0.1:1/cb\"",
            "callback_url = \"http://127.0.0.1:1/cb\"\nclient_cert_name = \"combine.example\"",
        );
        let e = Config::parse(&text, Path::new(".")).expect_err("no client_ca");
        assert!(e.0.iter().any(|p| p.contains("client_ca")), "{e}");
        let with_ca =
            text.replace("[auth]", "[hub.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n[auth]");
        // The files must exist: a missing one is found with the other problems.
        let dir = tempfile::tempdir().expect("dir");
        let e = Config::parse(&with_ca, dir.path()).expect_err("no files");
        assert_eq!(e.0.len(), 3, "{e}");
        assert!(e.0[0].starts_with("5:1: [hub.tls] cert: no such file"), "{e}");
        for f in ["c.pem", "k.pem", "ca.pem"] {
            std::fs::write(dir.path().join(f), "").expect("write");
        }
        let c = Config::parse(&with_ca, dir.path());
        let c = c.expect("valid with a client CA");
        assert_eq!(c.hub.tls.as_ref().and_then(|t| t.client_ca.clone()), Some(dir.path().join("ca.pem")));
        assert_eq!(c.systems[0].client_cert_name.as_deref(), Some("combine.example"));
    }

    #[test]
    fn a_retention_age_counts_back_in_years_months_or_days_and_nothing_else() {
        let now = chrono::DateTime::parse_from_rfc3339("2036-12-05T10:00:00Z").map(|t| t.to_utc()).expect("instant");
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).map(|t| t.to_utc()).expect("instant");
        assert_eq!(before(now, "10y"), Ok(at("2026-12-05T10:00:00Z")));
        assert_eq!(before(now, "18m"), Ok(at("2035-06-05T10:00:00Z")));
        assert_eq!(before(now, "90d"), Ok(at("2036-09-06T10:00:00Z")));
        for bad in ["", "y", "10", "10w", "-1y", "ten years"] {
            assert!(before(now, bad).is_err(), "{bad}");
        }
        let text =
            format!("{GOOD}\n[audit]\nretention = \"10w\"\nsigning_key = \"c2hvcnQ=\"\norigin = \"two words\"\n");
        let errors = Config::parse(&text, Path::new(".")).expect_err("three problems").0.join("\n");
        for key in ["[audit] retention", "[audit] signing_key", "[audit] origin"] {
            assert!(errors.contains(key), "{key}: {errors}");
        }
    }

    #[test]
    fn secrets_come_inline_from_a_variable_or_from_a_file_the_same_way_everywhere() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("jwt.secret"), "from-a-file-0123456789abcdef0123456789\n").expect("write");
        let env = |var: &str| (var == "PHONIRO_API_KEY").then(|| "from-the-environment".to_owned());
        let text = GOOD
            .replace("jwt_secret = \"0123456789abcdef0123456789abcdef\"", "jwt_secret_file = \"jwt.secret\"")
            .replace(
                "base_url = \"http://127.0.0.1:2\"",
                "base_url = \"http://127.0.0.1:2\"\napi_key_env = \"PHONIRO_API_KEY\"",
            );
        let c = Config::parse_with_env(&text, dir.path(), &env).expect("valid");
        assert_eq!(c.jwt_secret.expose(), "from-a-file-0123456789abcdef0123456789");
        match &c.systems[1].vendor {
            VendorConfig::Phoniro(p) => {
                assert_eq!(p.api_key.as_ref().map(|k| k.expose()), Some("from-the-environment"));
                assert!(
                    !format!("{c:?}").contains("from-the-environment"),
                    "a printed configuration hides its secrets"
                );
            }
            other => panic!("{other:?}"),
        }

        // An unset variable, a missing file and a secret given twice: one error each,
        // naming the key, and nothing invented after them (no "missing field").
        let bad = text
            .replace("PHONIRO_API_KEY", "NOT_SET_ANYWHERE")
            .replace("jwt.secret", "no-such.secret")
            .replace("callback_url = \"http://127.0.0.1:1/cb\"", "callback_url = \"http://127.0.0.1:1/cb\"\ncallback_token = \"inline-value-42\"\ncallback_token_env = \"PHONIRO_API_KEY\"");
        let errors = Config::parse_with_env(&bad, dir.path(), &env).expect_err("invalid").0;
        assert_eq!(errors.len(), 3, "{errors:?}");
        // Each at the line and column of its key.
        assert!(errors[0].starts_with("5:1: [auth] jwt_secret_file: cannot read"), "{errors:?}");
        assert!(errors[0].contains("no-such.secret"), "{errors:?}");
        assert_eq!(
            errors[1],
            "10:1: [[systems]] combine: set only one of callback_token, callback_token_env, callback_token_file"
        );
        assert_eq!(
            errors[2],
            "16:1: [[systems]] phoniro api_key_env: the environment variable NOT_SET_ANYWHERE is not set"
        );
        assert!(!errors.join("\n").contains("inline-value-42"), "a secret is never printed");
    }

    #[test]
    fn a_system_without_its_vendor_or_name_is_still_checked_to_the_end() {
        let text = GOOD
            .replace("vendor = \"combine\"\n", "colour = \"blue\"\ncallback_token_env = \"NOT_SET_ANYWHERE\"\n")
            .replace("name = \"phoniro\"\n", "")
            .replace("base_url = \"http://127.0.0.1:2\"", "base_url = \"nowhere\"\nshade = 3");
        let errors = Config::parse_with_env(&text, Path::new("/"), &|_| None).expect_err("invalid").0;
        assert_eq!(
            errors,
            vec![
                "6:1: [[systems]] combine: needs vendor = \"...\" (one of combine, treserva, procapita, \
                 lifecare, phoniro, lifecare-mobil, paraga)",
                "9:1: [[systems]] combine callback_token_env: the environment variable NOT_SET_ANYWHERE is not set",
                "8:1: [[systems]] combine: unknown key 'colour' (no vendor has it)",
                "11:1: [[systems]] #2: needs name = \"...\"",
                "14:1: [[systems]] #2: unknown field `shade`, expected one of `base_url`, `api_key`, \
                 `visits_poll_seconds`, `visits_page_size`",
                "18:1: [[providers]] Omsorg AB: system 'phoniro' is not configured (unless it is [[systems]] #2, \
                 which has no name)",
            ],
        );

        // With its name back, the provider routed to it is not told it is missing too.
        let named = text.replace("vendor = \"phoniro\"", "name = \"phoniro\"\nvendor = \"phoniro\"");
        let errors = Config::parse_with_env(&named, Path::new("/"), &|_| None).expect_err("invalid").0;
        assert!(errors.iter().all(|e| !e.contains("providers")), "{errors:?}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let bad = r#"
[hub]
listen = "nowhere"
colour = "blue"
[[systems]]
name = "Combine One"
vendor = "combine"
callback_url = "combine.example"
[[systems]]
name = "x"
vendor = "visma"
[[providers]]
org = "5599000015"
name = "Bad AB"
system = "missing"
[extra]
"#;
        let e = Config::parse(bad, Path::new(".")).expect_err("invalid");
        let all = e.0.join("\n");
        for needle in [
            "colour",
            "jwt_secret",
            "lowercase",
            "callback_url",
            "unknown vendor 'visma', known: combine, treserva, procapita, lifecare, phoniro, lifecare-mobil, paraga",
            "SE-R-013",
            "'missing' is not configured",
            "extra",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
    }

    #[test]
    fn the_console_section_is_optional_and_its_urls_must_be_https_but_on_loopback() {
        assert!(Config::parse(GOOD, Path::new("/etc/carehub")).expect("valid").console.is_none());
        let section = |issuer: &str| {
            format!("{GOOD}\n[console]\nissuer = \"{issuer}\"\nclient_id = \"carehub\"\nclient_secret = \"s3cret\"\n")
        };
        let c = Config::parse(&section("https://login.kommun.se/realms/x"), Path::new("/etc/carehub")).expect("valid");
        let console = c.console.expect("a console");
        assert_eq!((console.role_claim.as_str(), console.provider_claim.as_str()), ("roles", "provider_org"));
        assert_eq!(console.client_secret.as_ref().map(|s| s.expose()), Some("s3cret"));
        assert_eq!(console.session_max_age_minutes, 480);
        assert!(Config::parse(&section("http://127.0.0.1:8080"), Path::new("/etc")).is_ok());
        let e = Config::parse(&section("http://login.kommun.se"), Path::new("/etc")).expect_err("plain http");
        assert!(e.0.iter().any(|p| p.contains("[console] issuer") && p.contains("https")), "{e}");
        let e = Config::parse(&format!("{GOOD}\n[console]\nissuer = \"https://x.se\"\n"), Path::new("/etc"))
            .expect_err("no client id");
        assert!(e.0.iter().any(|p| p.contains("client_id")), "{e}");
    }
}
