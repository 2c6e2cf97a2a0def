//! Treserva (CGI), a case-management system speaking SOAP 1.1.
//!
//! In: Treserva calls the hub's SOAP endpoint, `POST /v1/systems/{system}/messages`, with a
//! `RegistreraBeslut` envelope; the hub answers `RegistreraBeslutResponse` once the decision
//! is logged, or a SOAP fault with its error code (`GET ...?wsdl` describes it). Out: the
//! hub calls Treserva's SOAP service with `TaEmotKvittens` and `TaEmotGenomforandeplan`. A
//! `Client` fault from Treserva is a permanent refusal, a `Server` fault a transient one.
//! The payloads are defined by `mappings/treserva/`.

use carehub_core::adapter::SystemRole;
use serde::Deserialize;

use crate::transport::http::HttpTransport;

pub const VENDOR: &str = "treserva";
pub const ROLE: SystemRole = SystemRole::CaseManagement;
/// The keys that hold secrets (each may come from `<key>_env` or `<key>_file`).
pub const SECRETS: &[&str] = &["password"];

/// `[[systems]]` keys for a Treserva system.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreservaConfig {
    /// Treserva's SOAP service, where acknowledgements and plan notices go.
    pub endpoint_url: String,
    /// HTTP Basic credentials for Treserva's service, if it asks for them.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<carehub_model::Secret>,
}

impl TreservaConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut p = crate::check_url("endpoint_url", &self.endpoint_url);
        if self.username.is_some() != self.password.is_some() {
            p.push("set both username and password, or neither".into());
        }
        p
    }

    pub fn transport(&self, client: &reqwest::Client) -> HttpTransport {
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(p)) => Some(crate::basic_auth(u, p.expose())),
            _ => None,
        };
        HttpTransport::new(client.clone(), &self.endpoint_url, auth).soap()
    }
}
