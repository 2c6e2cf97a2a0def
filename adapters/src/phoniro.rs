//! Phoniro (Phoniro Care), a provider's time-registration system.
//!
//! Out: the hub POSTs orders as JSON to `{base_url}/orders` with a bearer API key and an
//! `Idempotency-Key` header. In: Phoniro pushes order confirmations and plan notices as
//! JSON to `POST /v1/systems/{system}/messages` (push, not pull: see
//! `mappings/phoniro/README.md` for why). The payloads are defined by `mappings/phoniro/`.

use carehub_core::adapter::SystemRole;
use serde::Deserialize;

use crate::transport::http::HttpTransport;

pub const VENDOR: &str = "phoniro";
pub const ROLE: SystemRole = SystemRole::ProviderSystem;

/// `[[systems]]` keys for a Phoniro system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoniroConfig {
    /// Phoniro's REST API, e.g. `https://api.phoniro.example/carehub/v1`.
    pub base_url: String,
    /// The API key Phoniro issued to the municipality, sent as a bearer token.
    #[serde(default)]
    pub api_key: Option<String>,
}

impl PhoniroConfig {
    pub fn problems(&self) -> Vec<String> {
        crate::check_url("base_url", &self.base_url)
    }

    pub fn transport(&self, client: &reqwest::Client) -> HttpTransport {
        HttpTransport::new(client.clone(), &self.base_url, self.api_key.as_ref().map(|k| format!("Bearer {k}")))
    }
}
