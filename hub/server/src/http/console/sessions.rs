//! The console's sessions: who is signed in, the sign-ins under way, and the settings they
//! are judged by, kept in memory. A leaf of the console: the application state holds a
//! [`Console`] without reaching the pages or the routes.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{header, HeaderMap};
use carehub_model::Clock;
use chrono::{DateTime, Utc};

use super::oidc::{random_token, Provider};

/// The session cookie.
pub const SESSION_COOKIE: &str = "carehub_console";
/// The cookie binding a pending sign-in to the browser that started it.
pub const LOGIN_COOKIE: &str = "carehub_console_login";
/// How long a started sign-in may take, in seconds.
pub(crate) const LOGIN_TTL_SECS: i64 = 600;
/// At most this many sign-ins pending at once (older ones are dropped first).
pub(crate) const MAX_PENDING: usize = 10_000;

/// `[console]` as the console uses it (assembled from the configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub role_claim: String,
    pub provider_claim: String,
    /// The hub's public base URL, without a trailing slash.
    pub public_url: Option<String>,
    pub redirect_url: Option<String>,
    pub max_age: chrono::Duration,
}

/// A person's role in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleRole {
    Auditor,
    Admin,
    /// A provider's own staff, scoped to [`Person::provider`].
    Provider,
}

impl ConsoleRole {
    /// As recorded in the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsoleRole::Auditor => "auditor",
            ConsoleRole::Admin => "admin",
            ConsoleRole::Provider => "provider",
        }
    }

    /// In Swedish, for the page.
    pub fn label(self) -> &'static str {
        match self {
            ConsoleRole::Auditor => "granskare",
            ConsoleRole::Admin => "administratör",
            ConsoleRole::Provider => "utförarens personal",
        }
    }
}

/// Who is signed in.
#[derive(Debug, Clone)]
pub struct Person {
    /// The ID token's `sub`: recorded in the access log.
    pub subject: String,
    pub name: String,
    pub role: ConsoleRole,
    /// The provider (organisation number, 10 digits) of a provider's staff.
    pub provider: Option<String>,
}

impl Person {
    /// Auditors and admins: the access log, the proofs, the bundle.
    pub fn oversees(&self) -> bool {
        matches!(self.role, ConsoleRole::Auditor | ConsoleRole::Admin)
    }
}

/// A signed-in session.
#[derive(Debug, Clone)]
pub struct Session {
    pub person: Person,
    /// The session's CSRF token, carried by every form.
    pub csrf: String,
    pub expires: DateTime<Utc>,
}

/// A sign-in under way: what the callback needs to finish it.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) verifier: String,
    pub(crate) nonce: String,
    /// The value of the browser's [`LOGIN_COOKIE`].
    pub(crate) browser: String,
    pub(crate) started: DateTime<Utc>,
}

/// The console: the identity provider, the pending sign-ins and the sessions (in memory).
pub struct Console {
    pub(crate) settings: Settings,
    pub(crate) provider: Provider,
    pub(crate) clock: Clock,
    pub(crate) pending: Mutex<HashMap<String, Pending>>,
    pub(crate) sessions: Mutex<HashMap<String, Session>>,
}

impl Console {
    pub fn new(settings: Settings, clock: Clock) -> Console {
        let provider = Provider::new(
            settings.issuer.clone(),
            settings.client_id.clone(),
            settings.client_secret.clone(),
            settings.role_claim.clone(),
            settings.provider_claim.clone(),
            clock.clone(),
        );
        Console { settings, provider, clock, pending: Mutex::new(HashMap::new()), sessions: Mutex::new(HashMap::new()) }
    }

    /// The session a cookie names, unless it has expired (then it is forgotten).
    pub fn session(&self, id: &str) -> Option<Session> {
        let now = self.clock.now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(id) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                sessions.remove(id);
                None
            }
            None => None,
        }
    }

    pub(crate) fn start_session(&self, person: Person, token_exp: i64) -> (String, Session) {
        let now = self.clock.now();
        let by_token = DateTime::from_timestamp(token_exp, 0).unwrap_or(now);
        let session = Session { person, csrf: random_token(), expires: by_token.min(now + self.settings.max_age) };
        let id = random_token();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.expires > now);
        sessions.insert(id.clone(), session.clone());
        (id, session)
    }

    pub(crate) fn end_session(&self, id: &str) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// The origin browsers reach the hub at: the configured public URL's, else the
    /// request's own (`scheme://Host`).
    pub(crate) fn origin(&self, scheme: &str, headers: &HeaderMap) -> Option<String> {
        match &self.settings.public_url {
            Some(url) => reqwest::Url::parse(url).ok().map(|u| u.origin().ascii_serialization()),
            None => {
                let host = headers.get(header::HOST)?.to_str().ok()?;
                Some(format!("{scheme}://{host}"))
            }
        }
    }

    pub(crate) fn redirect_uri(&self, scheme: &str, headers: &HeaderMap) -> Option<String> {
        match (&self.settings.redirect_url, &self.settings.public_url) {
            (Some(r), _) => Some(r.clone()),
            (None, Some(p)) => Some(format!("{}/console/callback", p.trim_end_matches('/'))),
            (None, None) => self.origin(scheme, headers).map(|o| format!("{o}/console/callback")),
        }
    }

    /// Whether cookies may go without `Secure`: only when the hub itself serves plain
    /// HTTP and browsers reach it on a loopback address (the tests).
    pub(crate) fn insecure_ok(&self, scheme: &str, headers: &HeaderMap) -> bool {
        scheme == "http"
            && self
                .origin(scheme, headers)
                .is_some_and(|o| crate::config::console_url(&o).is_ok() && o.starts_with("http:"))
    }
}
