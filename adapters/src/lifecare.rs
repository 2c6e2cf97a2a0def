//! Lifecare (Tietoevry) over REST/JSON, in both of its roles.
//!
//! - `lifecare`: the case-management system. It pushes decisions to the hub as webhook
//!   JSON (`POST /v1/systems/{system}/messages`); the hub posts acknowledgements and plan
//!   notices to its API (`{base_url}/acknowledgements`, `{base_url}/care-plans`).
//! - `lifecare-mobil`: Lifecare Mobil Hemtjänst, a provider's time-registration system. The
//!   hub posts orders (assignments) to `{base_url}/assignments`; it pushes its answers to
//!   the hub as webhook JSON.
//!
//! Towards Lifecare's API the hub authenticates with bearer tokens from Lifecare's OAuth 2.0
//! token endpoint (client credentials), renewed before they expire and whenever the API
//! answers 401. The payloads are defined by `mappings/lifecare/` and
//! `mappings/lifecare-mobil/`.

use carehub_core::adapter::SystemRole;
use serde::Deserialize;

use crate::transport::http::HttpTransport;
use crate::transport::oauth::TokenSource;

pub const VENDOR: &str = "lifecare";
pub const ROLE: SystemRole = SystemRole::CaseManagement;
pub const MOBIL_VENDOR: &str = "lifecare-mobil";
pub const MOBIL_ROLE: SystemRole = SystemRole::ProviderSystem;
/// The keys that hold secrets, for both roles (each may come from `<key>_env` or `<key>_file`).
pub const SECRETS: &[&str] = &["client_secret"];

/// `[[systems]]` keys for a Lifecare or Lifecare Mobil Hemtjänst system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecareConfig {
    /// Lifecare's REST API, e.g. `https://lifecare.kommun.example/api/v1`.
    pub base_url: String,
    /// Its OAuth 2.0 token endpoint.
    pub token_url: String,
    pub client_id: String,
    pub client_secret: carehub_model::Secret,
}

impl LifecareConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut p = crate::check_url("base_url", &self.base_url);
        p.extend(crate::check_url("token_url", &self.token_url));
        if self.client_id.trim().is_empty() || self.client_secret.expose().trim().is_empty() {
            p.push("client_id and client_secret must not be empty".into());
        }
        p
    }

    pub fn transport(&self, client: &reqwest::Client) -> HttpTransport {
        let tokens = TokenSource::new(client.clone(), &self.token_url, &self.client_id, self.client_secret.expose());
        HttpTransport::new(client.clone(), &self.base_url, None).with_tokens(tokens)
    }
}
