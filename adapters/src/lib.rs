//! carehub's vendor adapters: the explicit registry of vendors and how each is reached.
//!
//! An adapter here is small on purpose. What a vendor's payloads say lives in its mapping
//! files (`mappings/<vendor>/`, compiled in by [`builtin`] or read from a folder); how its
//! bytes travel is a shared transport ([`transport`]); what is left per vendor is its
//! configuration keys and which transport it uses. The set of vendors is closed and
//! explicit: [`VendorConfig`] is an enum and [`VendorConfig::parse`] one `match`, so an
//! unknown vendor is a clear configuration error, never a plugin lookup. The rules every
//! adapter follows are in `ADAPTERS.md`.
//!
//! # Layout
//! - [`combine`], [`treserva`], [`procapita`], [`lifecare`], [`phoniro`], [`paraga`]: one
//!   module per vendor (Lifecare's module covers Lifecare Mobil Hemtjänst too).
//! - [`transport`]: HTTP (with SOAP 1.1 and OAuth tokens) and SFTP.
//! - [`builtin`]: the mapping files compiled into the binary.

pub mod builtin;
pub mod combine;
pub mod lifecare;
pub mod paraga;
pub mod phoniro;
pub mod procapita;
pub mod transport;
pub mod treserva;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use carehub_core::adapter::{Inbox, System, SystemRole, Transport};
use carehub_core::mapping::{MappingFileError, MappingSet};
use carehub_model::Clock;

pub use combine::CombineConfig;
pub use lifecare::LifecareConfig;
pub use phoniro::PhoniroConfig;
pub use transport::sftp::SftpConfig;
use transport::sftp::{SftpClient, SftpInbox, SftpTransport};
pub use treserva::TreservaConfig;

/// The vendors carehub knows, by the name used in configuration.
pub const VENDORS: &[&str] = &[
    combine::VENDOR,
    treserva::VENDOR,
    procapita::VENDOR,
    lifecare::VENDOR,
    phoniro::VENDOR,
    lifecare::MOBIL_VENDOR,
    paraga::VENDOR,
];

/// The keys of a vendor's `[[systems]]` table that hold secrets. Each may instead be given
/// as `<key>_env` (an environment variable's name) or `<key>_file` (a file's path); the
/// hub's configuration resolves those before the vendor's keys are read.
pub fn secret_keys(vendor: &str) -> &'static [&'static str] {
    match vendor {
        combine::VENDOR => combine::SECRETS,
        treserva::VENDOR => treserva::SECRETS,
        lifecare::VENDOR | lifecare::MOBIL_VENDOR => lifecare::SECRETS,
        phoniro::VENDOR => phoniro::SECRETS,
        // SFTP systems authenticate with a private key, which is a file already.
        _ => &[],
    }
}

/// A system's vendor-specific configuration.
#[derive(Debug, Clone)]
pub enum VendorConfig {
    Combine(CombineConfig),
    Treserva(TreservaConfig),
    Procapita(SftpConfig),
    Lifecare(LifecareConfig),
    Phoniro(PhoniroConfig),
    LifecareMobil(LifecareConfig),
    Paraga(SftpConfig),
}

impl VendorConfig {
    /// Reads a vendor's keys of a `[[systems]]` table (without `name` and `vendor`).
    pub fn parse(vendor: &str, keys: toml::Table) -> Result<VendorConfig, String> {
        fn typed<T: serde::de::DeserializeOwned>(keys: toml::Table) -> Result<T, String> {
            T::deserialize(toml::Value::Table(keys)).map_err(|e| e.message().to_owned())
        }
        match vendor {
            combine::VENDOR => typed(keys).map(VendorConfig::Combine),
            treserva::VENDOR => typed(keys).map(VendorConfig::Treserva),
            procapita::VENDOR => typed(keys).map(VendorConfig::Procapita),
            lifecare::VENDOR => typed(keys).map(VendorConfig::Lifecare),
            lifecare::MOBIL_VENDOR => typed(keys).map(VendorConfig::LifecareMobil),
            paraga::VENDOR => typed(keys).map(VendorConfig::Paraga),
            phoniro::VENDOR => typed(keys).map(VendorConfig::Phoniro),
            other => Err(format!("unknown vendor '{other}', known: {}", VENDORS.join(", "))),
        }
    }

    pub fn vendor(&self) -> &'static str {
        match self {
            VendorConfig::Combine(_) => combine::VENDOR,
            VendorConfig::Treserva(_) => treserva::VENDOR,
            VendorConfig::Procapita(_) => procapita::VENDOR,
            VendorConfig::Lifecare(_) => lifecare::VENDOR,
            VendorConfig::LifecareMobil(_) => lifecare::MOBIL_VENDOR,
            VendorConfig::Paraga(_) => paraga::VENDOR,
            VendorConfig::Phoniro(_) => phoniro::VENDOR,
        }
    }

    pub fn role(&self) -> SystemRole {
        match self {
            VendorConfig::Combine(_) => combine::ROLE,
            VendorConfig::Treserva(_) => treserva::ROLE,
            VendorConfig::Procapita(_) => procapita::ROLE,
            VendorConfig::Lifecare(_) => lifecare::ROLE,
            VendorConfig::LifecareMobil(_) => lifecare::MOBIL_ROLE,
            VendorConfig::Paraga(_) => paraga::ROLE,
            VendorConfig::Phoniro(_) => phoniro::ROLE,
        }
    }

    /// What is wrong with the values (checked without IO).
    pub fn problems(&self) -> Vec<String> {
        match self {
            VendorConfig::Combine(c) => c.problems(),
            VendorConfig::Treserva(c) => c.problems(),
            VendorConfig::Procapita(c) | VendorConfig::Paraga(c) => c.problems(),
            VendorConfig::Lifecare(c) | VendorConfig::LifecareMobil(c) => c.problems(),
            VendorConfig::Phoniro(c) => c.problems(),
        }
    }

    /// Resolves file paths in the configuration (an SFTP private key) against the
    /// configuration file's folder.
    pub fn relative_to(self, base: &Path) -> Self {
        match self {
            VendorConfig::Procapita(c) => VendorConfig::Procapita(c.relative_to(base)),
            VendorConfig::Paraga(c) => VendorConfig::Paraga(c.relative_to(base)),
            other => other,
        }
    }

    /// The transport, and for systems that leave files, their inbox and poll interval.
    /// The feed the hub pulls from this system, if it is pulled.
    fn feed(&self, client: &reqwest::Client) -> Option<(Arc<dyn carehub_core::adapter::Feed>, Duration)> {
        match self {
            VendorConfig::Phoniro(c) => c.feed(client),
            _ => None,
        }
    }

    fn connect(&self, client: &reqwest::Client, clock: &Clock) -> (Arc<dyn Transport>, Option<PolledInbox>) {
        match self {
            VendorConfig::Combine(c) => (Arc::new(c.transport(client)), None),
            VendorConfig::Treserva(c) => (Arc::new(c.transport(client)), None),
            VendorConfig::Lifecare(c) | VendorConfig::LifecareMobil(c) => (Arc::new(c.transport(client)), None),
            VendorConfig::Phoniro(c) => (Arc::new(c.transport(client)), None),
            VendorConfig::Procapita(c) | VendorConfig::Paraga(c) => {
                let sftp = Arc::new(SftpClient::new(c.clone(), clock.clone()));
                let every = Duration::from_secs(c.poll_seconds);
                (Arc::new(SftpTransport(sftp.clone())), Some((Arc::new(SftpInbox(sftp)), every)))
            }
        }
    }
}

/// An inbox and how often to poll it.
type PolledInbox = (Arc<dyn Inbox>, Duration);

/// Builds a configured system. `clock` dates what the transports write (SFTP file names).
pub fn build_system(
    name: &str,
    config: &VendorConfig,
    mappings: Arc<MappingSet>,
    client: &reqwest::Client,
    clock: &Clock,
) -> System {
    let (transport, inbox) = config.connect(client, clock);
    System {
        name: name.to_owned(),
        vendor: config.vendor(),
        role: config.role(),
        mappings,
        transport,
        poll_interval: inbox.as_ref().map(|(_, every)| *every).unwrap_or(Duration::from_secs(60)),
        inbox: inbox.map(|(i, _)| i),
        feed: config.feed(client),
        visit_reports: true,
    }
}

/// A vendor's mappings: from `dir/<vendor>/` when a mappings folder is configured, else
/// the built-in files.
pub fn load_mappings(vendor: &str, dir: Option<&Path>) -> Result<MappingSet, Vec<MappingFileError>> {
    match dir {
        Some(dir) => MappingSet::load_dir(vendor, &dir.join(vendor)),
        None => MappingSet::from_sources(
            vendor,
            builtin::FILES.iter().filter(|(v, _, _)| *v == vendor).map(|(_, name, text)| (*name, *text)),
        ),
    }
}

/// The texts [`load_mappings`] reads, as (file name, text): for a check that goes on to
/// what each file means to map when some do not load.
pub fn mapping_sources(vendor: &str, dir: Option<&Path>) -> Result<Vec<(String, String)>, Vec<MappingFileError>> {
    match dir {
        Some(dir) => MappingSet::read_dir(&dir.join(vendor)),
        None => Ok(builtin::FILES
            .iter()
            .filter(|(v, _, _)| *v == vendor)
            .map(|(_, name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect()),
    }
}

/// The role of a vendor's systems, by the vendor's name in configuration.
pub fn role_of(vendor: &str) -> Option<SystemRole> {
    Some(match vendor {
        combine::VENDOR => combine::ROLE,
        treserva::VENDOR => treserva::ROLE,
        procapita::VENDOR => procapita::ROLE,
        lifecare::VENDOR => lifecare::ROLE,
        lifecare::MOBIL_VENDOR => lifecare::MOBIL_ROLE,
        paraga::VENDOR => paraga::ROLE,
        phoniro::VENDOR => phoniro::ROLE,
        _ => return None,
    })
}

/// An HTTP Basic `Authorization` header value.
pub(crate) fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Checks that a configured address is an absolute http(s) URL.
pub(crate) fn check_url(key: &str, value: &str) -> Vec<String> {
    match value.split_once("://") {
        Some(("http" | "https", rest)) if !rest.is_empty() && !rest.starts_with('/') => Vec::new(),
        _ => vec![format!("{key} must be an http:// or https:// URL, got '{value}'")],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_list_matches_the_mapping_folder() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings");
        let mut on_disk = Vec::new();
        for vendor in std::fs::read_dir(&root).expect("mappings folder") {
            let vendor = vendor.expect("entry").path();
            if !vendor.is_dir() {
                continue;
            }
            for file in std::fs::read_dir(&vendor).expect("vendor folder") {
                let file = file.expect("entry").path();
                if file.extension().and_then(|e| e.to_str()) == Some("toml") {
                    let v = vendor.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
                    let f = file.file_name().and_then(|n| n.to_str()).expect("name").to_owned();
                    on_disk.push((v, f));
                }
            }
        }
        on_disk.sort();
        let mut built_in: Vec<(String, String)> =
            builtin::FILES.iter().map(|(v, f, _)| ((*v).to_owned(), (*f).to_owned())).collect();
        built_in.sort();
        assert_eq!(on_disk, built_in, "adapters/src/builtin.rs must list every file under mappings/");
    }

    #[test]
    fn an_unknown_vendor_names_the_known_ones() {
        let e = VendorConfig::parse("visma", toml::Table::new()).expect_err("unknown");
        assert_eq!(
            e,
            "unknown vendor 'visma', known: combine, treserva, procapita, lifecare, phoniro, lifecare-mobil, paraga"
        );
    }

    #[test]
    fn every_vendor_has_builtin_mappings_that_load() {
        for vendor in VENDORS {
            let set = load_mappings(vendor, None).unwrap_or_else(|e| panic!("{vendor}: {e:?}"));
            assert!(!set.mappings.is_empty(), "{vendor}");
        }
    }

    #[test]
    fn urls_are_checked_without_io() {
        assert!(check_url("u", "https://x.example/a").is_empty());
        assert!(check_url("u", "http://127.0.0.1:8080").is_empty());
        assert_eq!(check_url("u", "ftp://x").len(), 1);
        assert_eq!(check_url("u", "x.example").len(), 1);
    }
}
