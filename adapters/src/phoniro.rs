//! Phoniro (Phoniro Care), a provider's time-registration system.
//!
//! Out: the hub POSTs orders as JSON to `{base_url}/orders` with a bearer API key and an
//! `Idempotency-Key` header. In: Phoniro pushes order confirmations and plan notices as
//! JSON to `POST /v1/systems/{system}/messages` (push, not pull: see
//! `mappings/phoniro/README.md` for why), and the hub pulls visits, thousands a day, page by
//! page from `GET {base_url}/visits?cursor=...&limit=1000` when `visits_poll_seconds` is
//! set. The payloads are defined by `mappings/phoniro/`.

use std::sync::Arc;
use std::time::Duration;

use carehub_core::adapter::{Feed, SystemRole};
use serde::Deserialize;

use crate::transport::http::{HttpFeed, HttpTransport};

pub const VENDOR: &str = "phoniro";
pub const ROLE: SystemRole = SystemRole::ProviderSystem;
/// The keys that hold secrets (each may come from `<key>_env` or `<key>_file`).
pub const SECRETS: &[&str] = &["api_key"];

/// `[[systems]]` keys for a Phoniro system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoniroConfig {
    /// Phoniro's REST API, e.g. `https://api.phoniro.example/carehub/v1`.
    pub base_url: String,
    /// The API key Phoniro issued to the municipality, sent as a bearer token.
    #[serde(default)]
    pub api_key: Option<carehub_model::Secret>,
    /// Pull visits from Phoniro's feed this often (seconds); unset: no pulling (Phoniro
    /// pushes, or another system reports this provider's visits).
    #[serde(default)]
    pub visits_poll_seconds: Option<u64>,
    /// Visits per page asked for.
    #[serde(default = "default_page_size")]
    pub visits_page_size: u32,
}

fn default_page_size() -> u32 {
    1000
}

impl PhoniroConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut p = crate::check_url("base_url", &self.base_url);
        if self.visits_poll_seconds == Some(0) {
            p.push("visits_poll_seconds must be at least 1".into());
        }
        if !(1..=10_000).contains(&self.visits_page_size) {
            p.push("visits_page_size must be between 1 and 10000".into());
        }
        p
    }

    /// The visit feed, when pulling is configured.
    pub fn feed(&self, client: &reqwest::Client) -> Option<(Arc<dyn Feed>, Duration)> {
        let every = Duration::from_secs(self.visits_poll_seconds?);
        let feed = HttpFeed { transport: self.transport(client), path: "visits", page_size: self.visits_page_size };
        Some((Arc::new(feed), every))
    }

    pub fn transport(&self, client: &reqwest::Client) -> HttpTransport {
        HttpTransport::new(
            client.clone(),
            &self.base_url,
            self.api_key.as_ref().map(|k| format!("Bearer {}", k.expose())),
        )
    }
}
