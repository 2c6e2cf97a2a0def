//! Combine (Pulsen), a case-management system.
//!
//! In: Combine pushes decisions as XML (`<Beslut>`) to `POST /v1/systems/{system}/messages`.
//! Out: the hub POSTs acknowledgements (`<Kvittens>`) and plan notices
//! (`<Genomforandeplan>`) as XML to Combine's configured callback URL. The payloads are
//! defined by `mappings/combine/`; this module only says how to reach Combine.

use carehub_core::adapter::SystemRole;
use serde::Deserialize;

use crate::transport::http::HttpTransport;

pub const VENDOR: &str = "combine";
pub const ROLE: SystemRole = SystemRole::CaseManagement;
/// The keys that hold secrets (each may come from `<key>_env` or `<key>_file`).
pub const SECRETS: &[&str] = &["callback_token"];

/// `[[systems]]` keys for a Combine system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CombineConfig {
    /// Where the hub POSTs acknowledgements and plan notices.
    pub callback_url: String,
    /// A bearer token Combine expects on callbacks, if any.
    #[serde(default)]
    pub callback_token: Option<carehub_model::Secret>,
}

impl CombineConfig {
    pub fn problems(&self) -> Vec<String> {
        crate::check_url("callback_url", &self.callback_url)
    }

    pub fn transport(&self, client: &reqwest::Client) -> HttpTransport {
        HttpTransport::new(
            client.clone(),
            &self.callback_url,
            self.callback_token.as_ref().map(|t| format!("Bearer {}", t.expose())),
        )
    }
}
