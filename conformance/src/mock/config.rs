//! The mock's settings (`carehub mock --config FILE`) and the hub configuration it makes
//! from them.
//!
//! The mock's file is small on purpose: where the mock listens, where its clock starts,
//! the vendor system's own keys exactly as they would stand in `carehub.toml`'s
//! `[[systems]]` table (its URL where it takes the hub's calls, its tokens, its client
//! certificate's name), and the hub's TLS section when the vendor tests over HTTPS and
//! mTLS. Everything else (the counterpart system, the providers, the database in the data
//! folder) the mock fills in, and the result is parsed and validated by the hub's own
//! [`carehub_server::config::Config`], so the mock runs exactly the configuration a real
//! hub would.
//!
//! ```toml
//! listen = "127.0.0.1:8090"
//! at = "2026-11-02T08:00:00+01:00"
//! mock_token = "a-long-random-text"      # required on /mock/ when set
//! providers = ["5599000014"]
//!
//! [system]                                # the vendor's [[systems]] keys
//! base_url = "http://127.0.0.1:9102/api/v1"
//! api_key = "the-key-the-hub-sends"
//!
//! [tls]                                   # [hub.tls] of the hub: HTTPS and mTLS
//! cert = "certs/hub.pem"
//! key = "certs/hub.key"
//! client_ca = "certs/ca.pem"
//!
//! [delivery]                              # [delivery] of the hub
//! max_attempts = 4
//! ```
//!
//! For the SFTP vendors (Procapita, ParaGå) the mock serves a drop box of its own and
//! fills in the system's SFTP keys itself; `sftp_listen` (default `127.0.0.1:2222`) and
//! `sftp_password` (default a new random one) say where and with what the vendor logs in,
//! and `[system]` may set the folders (`inbox`, `archive`, `error`, `outbox`) and
//! `poll_seconds` (1 by default).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::profile::{Profile, Side, CASE_MANAGEMENT_COUNTERPART, PROVIDER_COUNTERPART};
use super::MockError;

/// The mock's own secret for the tokens it issues, when the file sets none. Only ever a
/// test hub's.
const DEFAULT_SECRET: &str = "carehub-mock-only-secret-never-in-production-42";

/// The provider the mock routes orders for when the file names none: the provider of the
/// profiles' sample decisions.
pub const DEFAULT_PROVIDER: &str = "5599000014";

/// A second provider the mock routes orders for when the file names none, so that a
/// case-management vendor can switch a decision's provider (the profiles' sample switch).
pub const SECOND_PROVIDER: &str = "5560360793";

/// `carehub mock --config FILE`, as read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MockConfig {
    /// Where the mock listens (the hub's API and `/mock/`). Default `127.0.0.1:8090`.
    #[serde(default)]
    pub listen: Option<String>,
    /// Where the clock starts (RFC 3339). Default: the system clock's now.
    #[serde(default)]
    pub at: Option<String>,
    /// A bearer token `/mock/` requires; without one `/mock/` is open, and the mock must
    /// listen on loopback.
    #[serde(default)]
    pub mock_token: Option<String>,
    /// The secret the hub's tokens are signed with.
    #[serde(default)]
    pub jwt_secret: Option<String>,
    /// The providers (organisation numbers) the hub routes orders for.
    #[serde(default)]
    pub providers: Vec<String>,
    /// The vendor system's `[[systems]]` keys, without `name` and `vendor`.
    #[serde(default)]
    pub system: Option<toml::Table>,
    /// The hub's `[hub.tls]`.
    #[serde(default)]
    pub tls: Option<toml::Table>,
    /// The hub's `[delivery]`, over the mock's own defaults.
    #[serde(default)]
    pub delivery: Option<toml::Table>,
    /// The hub's `[deadlines]` (`reconfirm_changes = true`: a changed order is to be
    /// confirmed again, and its change says by when).
    #[serde(default)]
    pub deadlines: Option<toml::Table>,
    /// Where the SFTP drop box listens (Procapita, ParaGå). Default `127.0.0.1:2222`.
    #[serde(default)]
    pub sftp_listen: Option<String>,
    /// The vendor's password on the drop box. Default: a new random one at each start.
    #[serde(default)]
    pub sftp_password: Option<String>,
}

impl MockConfig {
    /// Reads the file; relative paths in it are taken from its folder.
    pub fn load(path: &Path) -> Result<(MockConfig, PathBuf), MockError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| MockError::Config(format!("cannot read {}: {e}", path.display())))?;
        let config = MockConfig::parse(&text)?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((config, base))
    }

    /// Parses the file's text.
    pub fn parse(text: &str) -> Result<MockConfig, MockError> {
        toml::from_str(text).map_err(|e| MockError::Config(e.message().to_owned()))
    }

    /// Where the SFTP drop box listens.
    pub fn sftp_listen(&self) -> &str {
        self.sftp_listen.as_deref().unwrap_or("127.0.0.1:2222")
    }

    /// Where the mock listens.
    pub fn listen(&self) -> &str {
        self.listen.as_deref().unwrap_or("127.0.0.1:8090")
    }

    /// The clock's start, if the file sets one.
    pub fn start(&self) -> Result<Option<DateTime<Utc>>, MockError> {
        self.at
            .as_deref()
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| MockError::Config(format!("at: {e}: expected an RFC 3339 instant")))
            })
            .transpose()
    }

    /// The secret the hub's tokens are signed with.
    pub fn secret(&self) -> &str {
        self.jwt_secret.as_deref().unwrap_or(DEFAULT_SECRET)
    }

    /// The providers orders are routed for. By default two when the mock's own provider
    /// system serves them (a case-management vendor then meets a switch of provider), and
    /// one when the vendor is the provider system: a provider-side vendor's files and rows
    /// need not name a provider the hub could not tell from another.
    pub fn providers(&self, side: Side) -> Vec<String> {
        match (self.providers.is_empty(), side) {
            (false, _) => self.providers.clone(),
            (true, Side::CaseManagement) => vec![DEFAULT_PROVIDER.to_owned(), SECOND_PROVIDER.to_owned()],
            (true, Side::Provider) => vec![DEFAULT_PROVIDER.to_owned()],
        }
    }

    /// The hub's configuration (`carehub.toml`'s text): the vendor's system named after
    /// the vendor, the counterpart system delivering to `sink`, the providers routed to
    /// whichever of the two is the provider system, the database in `data`.
    pub fn hub_toml(&self, profile: &Profile, data: &Path, listen: &str, sink: &str) -> Result<String, MockError> {
        use toml::Value;
        let mut root = toml::Table::new();
        let mut hub = toml::Table::new();
        hub.insert("listen".into(), Value::String(listen.to_owned()));
        hub.insert("database".into(), Value::String(data.join("hub.sqlite").display().to_string()));
        if let Some(tls) = &self.tls {
            hub.insert("tls".into(), Value::Table(tls.clone()));
        }
        root.insert("hub".into(), Value::Table(hub));
        let mut auth = toml::Table::new();
        auth.insert("jwt_secret".into(), Value::String(self.secret().to_owned()));
        root.insert("auth".into(), Value::Table(auth));
        // Retries close together: a vendor testing its 503 handling should not wait minutes.
        let mut delivery: toml::Table = toml::from_str(
            "max_attempts = 4\ninitial_backoff_ms = 250\nmax_backoff_ms = 2000\ntimeout_ms = 5000\nidle_poll_ms = 200\n",
        )
        .map_err(|e| MockError::Config(e.to_string()))?;
        if let Some(over) = &self.delivery {
            delivery.extend(over.clone());
        }
        root.insert("delivery".into(), Value::Table(delivery));
        if let Some(deadlines) = &self.deadlines {
            root.insert("deadlines".into(), Value::Table(deadlines.clone()));
        }

        let mut vendor: toml::Table = match &self.system {
            Some(keys) => keys.clone(),
            None => toml::from_str(profile.defaults).map_err(|e| MockError::Config(e.to_string()))?,
        };
        if vendor.contains_key("name") || vendor.contains_key("vendor") {
            return Err(MockError::Config(
                "[system] takes the vendor system's keys only; the mock names it after the vendor".into(),
            ));
        }
        vendor.insert("name".into(), Value::String(profile.vendor.to_owned()));
        vendor.insert("vendor".into(), Value::String(profile.vendor.to_owned()));
        let counterpart: toml::Table = match profile.side {
            Side::Provider => toml::from_str(&format!(
                "name = \"{CASE_MANAGEMENT_COUNTERPART}\"\nvendor = \"combine\"\ncallback_url = \"{sink}/callback\"\n"
            )),
            Side::CaseManagement => toml::from_str(&format!(
                "name = \"{PROVIDER_COUNTERPART}\"\nvendor = \"phoniro\"\nbase_url = \"{sink}/provider\"\n"
            )),
        }
        .map_err(|e| MockError::Config(e.to_string()))?;
        root.insert("systems".into(), Value::Array(vec![Value::Table(vendor), Value::Table(counterpart)]));
        let provider_system = match profile.side {
            Side::Provider => profile.vendor,
            Side::CaseManagement => PROVIDER_COUNTERPART,
        };
        let providers = self
            .providers(profile.side)
            .iter()
            .enumerate()
            .map(|(i, org)| {
                let mut p = toml::Table::new();
                p.insert("org".into(), Value::String(org.clone()));
                p.insert("name".into(), Value::String(format!("Mock provider {}", i + 1)));
                p.insert("system".into(), Value::String(provider_system.to_owned()));
                p.insert("rate_per_hour".into(), Value::Integer(400));
                Value::Table(p)
            })
            .collect();
        root.insert("providers".into(), Value::Array(providers));
        toml::to_string(&root).map_err(|e| MockError::Config(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hub_configuration_names_the_vendor_and_its_counterpart_and_parses() {
        let profile = super::super::profile::profile("phoniro").expect("known");
        let config =
            MockConfig::parse("providers = [\"5599000014\"]\n[system]\nbase_url = \"http://127.0.0.1:1/api\"\n")
                .expect("parses");
        let text = config.hub_toml(&profile, Path::new("/tmp/x"), "127.0.0.1:0", "http://127.0.0.1:2").expect("text");
        let hub = carehub_server::config::Config::parse(&text, Path::new(".")).expect("the hub takes it");
        let names: Vec<&str> = hub.systems.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["phoniro", CASE_MANAGEMENT_COUNTERPART]);
        assert_eq!(hub.providers[0].system, "phoniro");
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let err = MockConfig::parse("listn = \"x\"").expect_err("refused");
        assert!(err.to_string().contains("listn"), "{err}");
    }
}
