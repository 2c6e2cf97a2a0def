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
use carehub_core::outbox::RetryPolicy;
use carehub_model::{Deadlines, OrgNumber};
use serde::Deserialize;

/// Everything wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s) in the configuration:\n  - {}", .0.len(), .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

/// `[hub]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HubSection {
    /// Address and port the HTTP API listens on.
    pub listen: String,
    /// The SQLite database file (relative to the config file).
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
    /// Its private key (PEM, PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
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
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// The HS256 key for bearer tokens, inline (at least 32 bytes).
    pub jwt_secret: Option<String>,
    /// ... or read from this file.
    pub jwt_secret_file: Option<PathBuf>,
    /// ... or from this environment variable.
    pub jwt_secret_env: Option<String>,
    /// Lifetime of tokens `carehub token` issues, in minutes (default 480).
    pub token_ttl_minutes: Option<u64>,
}

/// `[delivery]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliverySection {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub timeout_ms: u64,
    pub max_in_flight: usize,
}

impl Default for DeliverySection {
    fn default() -> Self {
        let p = RetryPolicy::default();
        DeliverySection {
            max_attempts: p.max_attempts,
            initial_backoff_ms: p.initial_backoff.as_millis() as u64,
            max_backoff_ms: p.max_backoff.as_millis() as u64,
            timeout_ms: p.timeout.as_millis() as u64,
            max_in_flight: 64,
        }
    }
}

/// `[deadlines]`
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadlineSection {
    pub execute_days: u32,
    pub plan_days: u32,
}

impl Default for DeadlineSection {
    fn default() -> Self {
        let d = Deadlines::default();
        DeadlineSection { execute_days: d.execute_days, plan_days: d.plan_days }
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
}

impl Default for VisitSection {
    fn default() -> Self {
        VisitSection {
            open_visit_hours: 12,
            min_minutes: 1,
            max_hours: 8,
            future_minutes: 5,
            manual_share_threshold: 0.10,
        }
    }
}

impl VisitSection {
    pub fn thresholds(&self) -> carehub_core::visits::Thresholds {
        use chrono::Duration;
        carehub_core::visits::Thresholds {
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
    pub rate_per_hour: Option<u32>,
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
    pub rate_per_hour: u32,
}

impl BandConfig {
    fn band(&self) -> Result<carehub_core::verification::Band, String> {
        use carehub_core::verification::{Band, BandKind};
        let kind = match self.kind.as_str() {
            "day" => BandKind::Day,
            "evening" => BandKind::Evening,
            "night" => BandKind::Night,
            "weekend" => BandKind::Weekend,
            other => return Err(format!("kind '{other}' is not day, evening, night or weekend")),
        };
        let time =
            |s: &str| chrono::NaiveTime::parse_from_str(s, "%H:%M").map_err(|_| format!("'{s}' is not a time (HH:MM)"));
        Ok(Band { kind, from: time(&self.from)?, to: time(&self.to)?, rate: i64::from(self.rate_per_hour) * 100 })
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub hub: HubSection,
    pub auth: AuthSection,
    pub jwt_secret: String,
    pub delivery: DeliverySection,
    pub deadlines: DeadlineSection,
    pub visits: VisitSection,
    pub invoices: InvoiceSection,
    pub systems: Vec<SystemConfig>,
    pub providers: Vec<ProviderConfig>,
}

fn section<T: serde::de::DeserializeOwned + Default>(
    table: &mut toml::Table,
    key: &str,
    errors: &mut Vec<String>,
) -> T {
    match table.remove(key) {
        None => T::default(),
        Some(v) => T::deserialize(v).unwrap_or_else(|e| {
            errors.push(format!("[{key}]: {}", e.message()));
            T::default()
        }),
    }
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

    /// Parses and validates configuration text.
    pub fn parse(text: &str, base: &Path) -> Result<Config, ConfigErrors> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigErrors(vec![e.to_string()]))?;
        let mut errors = Vec::new();
        let mut hub: HubSection = section(&mut table, "hub", &mut errors);
        let mut auth: AuthSection = section(&mut table, "auth", &mut errors);
        let delivery: DeliverySection = section(&mut table, "delivery", &mut errors);
        let deadlines: DeadlineSection = section(&mut table, "deadlines", &mut errors);
        let visits: VisitSection = section(&mut table, "visits", &mut errors);
        let invoices: InvoiceSection = section(&mut table, "invoices", &mut errors);
        for (key, value) in
            [("tolerance", &invoices.tolerance), ("under_delivery_threshold", &invoices.under_delivery_threshold)]
        {
            if value.parse::<carehub_core::verification::Ratio>().is_err() {
                errors.push(format!("[invoices] {key}: a decimal number such as \"1.10\", got '{value}'"));
            }
        }
        if visits.max_hours == 0 || visits.open_visit_hours == 0 {
            errors.push("[visits] max_hours and open_visit_hours: at least 1".into());
        }
        if !(0.0..=1.0).contains(&visits.manual_share_threshold) {
            errors.push("[visits] manual_share_threshold: a share between 0 and 1 (0.10 is 10%)".into());
        }

        if hub.listen.parse::<std::net::SocketAddr>().is_err() {
            errors.push(format!("[hub] listen: '{}' is not an address:port", hub.listen));
        }
        if hub.max_body_bytes < 1024 {
            errors.push("[hub] max_body_bytes: at least 1024".into());
        }
        if hub.header_read_timeout_ms == 0 || hub.idle_timeout_ms == 0 || hub.drain_timeout_ms == 0 {
            errors.push("[hub] header_read_timeout_ms, idle_timeout_ms and drain_timeout_ms must be positive".into());
        }
        if hub.max_connections == 0 {
            errors.push("[hub] max_connections: at least 1".into());
        }
        hub.database = base.join(&hub.database);
        hub.mappings_dir = hub.mappings_dir.map(|d| base.join(d));
        if let Some(tls) = &mut hub.tls {
            tls.cert = base.join(&tls.cert);
            tls.key = base.join(&tls.key);
            tls.client_ca = tls.client_ca.as_ref().map(|c| base.join(c));
        }
        if delivery.max_attempts == 0 {
            errors.push("[delivery] max_attempts: at least 1".into());
        }
        if delivery.timeout_ms == 0 || delivery.max_in_flight == 0 {
            errors.push("[delivery] timeout_ms and max_in_flight must be positive".into());
        }
        if delivery.initial_backoff_ms > delivery.max_backoff_ms {
            errors.push("[delivery] initial_backoff_ms is larger than max_backoff_ms".into());
        }

        auth.jwt_secret_file = auth.jwt_secret_file.map(|f| base.join(f));
        let jwt_secret = match (&auth.jwt_secret, &auth.jwt_secret_file, &auth.jwt_secret_env) {
            (Some(s), None, None) => s.clone(),
            (None, Some(f), None) => std::fs::read_to_string(f).map(|s| s.trim().to_owned()).unwrap_or_else(|e| {
                errors.push(format!("[auth] jwt_secret_file: cannot read {}: {e}", f.display()));
                String::new()
            }),
            (None, None, Some(var)) => std::env::var(var).unwrap_or_else(|_| {
                errors.push(format!("[auth] jwt_secret_env: the environment variable {var} is not set"));
                String::new()
            }),
            (None, None, None) => {
                errors.push("[auth]: set one of jwt_secret, jwt_secret_file, jwt_secret_env".into());
                String::new()
            }
            _ => {
                errors.push("[auth]: set only one of jwt_secret, jwt_secret_file, jwt_secret_env".into());
                String::new()
            }
        };
        if !jwt_secret.is_empty() && jwt_secret.len() < 32 {
            errors.push("[auth]: the JWT secret must be at least 32 bytes".into());
        }

        let mut systems = Vec::new();
        let mut names = BTreeSet::new();
        match table.remove("systems") {
            None => errors.push("[[systems]]: no systems are configured".into()),
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.into_iter().enumerate() {
                    let toml::Value::Table(mut t) = item else {
                        errors.push(format!("[[systems]] #{}: not a table", i + 1));
                        continue;
                    };
                    let name = match t.remove("name") {
                        Some(toml::Value::String(n)) => n,
                        _ => {
                            errors.push(format!("[[systems]] #{}: needs name = \"...\"", i + 1));
                            continue;
                        }
                    };
                    let label = format!("[[systems]] {name}");
                    if !is_name(&name) {
                        errors.push(format!("{label}: a name is lowercase letters, digits, '-' and '_'"));
                    }
                    if !names.insert(name.clone()) {
                        errors.push(format!("{label}: the name is used twice"));
                    }
                    let client_cert_name = match t.remove("client_cert_name") {
                        None => None,
                        Some(toml::Value::String(n)) if rustls_pki_types::ServerName::try_from(n.as_str()).is_ok() => {
                            Some(n)
                        }
                        Some(_) => {
                            errors.push(format!("{label}: client_cert_name must be a DNS name"));
                            None
                        }
                    };
                    let visit_reports = match t.remove("visit_reports") {
                        None => true,
                        Some(toml::Value::Boolean(b)) => b,
                        Some(_) => {
                            errors.push(format!("{label}: visit_reports is true or false"));
                            true
                        }
                    };
                    let vendor = match t.remove("vendor") {
                        Some(toml::Value::String(v)) => v,
                        _ => {
                            errors.push(format!(
                                "{label}: needs vendor = \"...\" (one of {})",
                                carehub_adapters::VENDORS.join(", ")
                            ));
                            continue;
                        }
                    };
                    match VendorConfig::parse(&vendor, t).map(|v| v.relative_to(base)) {
                        Ok(v) => {
                            errors.extend(v.problems().into_iter().map(|p| format!("{label}: {p}")));
                            systems.push(SystemConfig { name, vendor: v, client_cert_name, visit_reports });
                        }
                        Err(e) => errors.push(format!("{label}: {e}")),
                    }
                }
            }
            Some(_) => errors.push("systems: write each system as a [[systems]] table".into()),
        }

        let providers: Vec<ProviderConfig> = match table.remove("providers") {
            None => Vec::new(),
            Some(v) => Vec::<ProviderConfig>::deserialize(v).unwrap_or_else(|e| {
                errors.push(format!("[[providers]]: {}", e.message()));
                Vec::new()
            }),
        };
        let mut orgs = BTreeSet::new();
        for p in &providers {
            let label = format!("[[providers]] {}", p.name);
            match OrgNumber::parse(&p.org) {
                Ok(org) => {
                    if !orgs.insert(org.as_str().to_owned()) {
                        errors.push(format!("{label}: organisation number {org} is configured twice"));
                    }
                }
                Err(e) => errors.push(format!("{label}: org: {}", e.reason)),
            }
            if !p.bands.is_empty() && p.rate_per_hour.is_none() {
                errors.push(format!("{label}: bands need rate_per_hour (the day rate) too"));
            }
            for b in &p.bands {
                if let Err(e) = b.band() {
                    errors.push(format!("{label}: bands: {e}"));
                }
            }
            match systems.iter().find(|s| s.name == p.system) {
                None => errors.push(format!("{label}: system '{}' is not configured", p.system)),
                Some(s) if s.vendor.role() != SystemRole::ProviderSystem => errors.push(format!(
                    "{label}: system '{}' is a {} system; orders go to a provider system",
                    p.system,
                    s.vendor.role().as_str()
                )),
                Some(_) => {}
            }
        }

        if systems.iter().any(|s| s.client_cert_name.is_some())
            && hub.tls.as_ref().is_none_or(|t| t.client_ca.is_none())
        {
            errors.push("[[systems]] client_cert_name needs [hub.tls] client_ca to verify client certificates".into());
        }
        for key in table.keys() {
            errors.push(format!(
                "unknown key or section '{key}' (known: hub, auth, delivery, deadlines, visits, invoices, systems, providers)"
            ));
        }
        if errors.is_empty() {
            Ok(Config { hub, auth, jwt_secret, delivery, deadlines, visits, invoices, systems, providers })
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The HTTP server's timeouts and connection limit.
    pub fn server_limits(&self) -> crate::accept::Limits {
        crate::accept::Limits {
            header_read_timeout: Duration::from_millis(self.hub.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(self.hub.idle_timeout_ms),
            max_connections: self.hub.max_connections,
            drain_timeout: Duration::from_millis(self.hub.drain_timeout_ms),
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
        Deadlines { execute_days: self.deadlines.execute_days, plan_days: self.deadlines.plan_days }
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.auth.token_ttl_minutes.unwrap_or(480) * 60)
    }

    /// Provider routes by normalised organisation number.
    /// The invoice verification policy: `[invoices]`, the manual-share threshold of
    /// `[visits]`, and each provider's `rate_per_hour`.
    pub fn invoice_policy(&self) -> carehub_core::verification::Policy {
        use carehub_core::verification::{Policy, Ratio};
        let defaults = Policy::default();
        let ratio = |s: &str, d: Ratio| s.parse::<Ratio>().unwrap_or(d);
        let share = format!("{}", self.visits.manual_share_threshold);
        let rates = self
            .providers
            .iter()
            .filter_map(|p| {
                let day = i64::from(p.rate_per_hour?) * 100;
                let bands = p.bands.iter().filter_map(|b| b.band().ok()).collect();
                Some((OrgNumber::parse(&p.org).ok()?, carehub_core::verification::Rates { day, bands }))
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

    pub fn routes(&self) -> BTreeMap<String, carehub_core::pipeline::Route> {
        self.providers
            .iter()
            .filter_map(|p| {
                let org = OrgNumber::parse(&p.org).ok()?;
                Some((
                    org.as_str().to_owned(),
                    carehub_core::pipeline::Route { provider_name: p.name.clone(), system: p.system.clone() },
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
    }

    #[test]
    fn rates_and_time_bands_make_the_invoice_policy() {
        use carehub_core::verification::{BandKind, Ratio};
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
        let c = Config::parse(&with_ca, Path::new("/etc/carehub"));
        let c = c.expect("valid with a client CA");
        assert_eq!(c.hub.tls.as_ref().and_then(|t| t.client_ca.clone()), Some(PathBuf::from("/etc/carehub/ca.pem")));
        assert_eq!(c.systems[0].client_cert_name.as_deref(), Some("combine.example"));
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
}
