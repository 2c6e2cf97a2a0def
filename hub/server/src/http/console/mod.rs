//! The auditors' web console at `/console` (issue 18, SPEC §9): plain server-rendered HTML
//! in Swedish, its stylesheet and script compiled into the binary, for people who sign in
//! through the municipality's identity provider with OpenID Connect (docs/console.md).
//!
//! - Sign-in: the authorization code flow with PKCE (S256), `state` and `nonce`; the
//!   pending sign-in is bound to the browser that started it by a short-lived cookie.
//! - Sessions: a new random id at every sign-in (a cookie sent before sign-in is never
//!   promoted), kept in memory (they die with the process), in a `HttpOnly; SameSite=Lax;
//!   Path=/console` cookie that is `Secure` unless the hub itself serves plain HTTP on a
//!   loopback address; a session ends at the ID token's expiry or after the configured
//!   maximum age, whichever is first, or at sign-out.
//! - CSRF: every POST carries the session's token in a hidden field and an `Origin` (or,
//!   lacking one, a `Referer`) of the hub itself; otherwise 403 with a code.
//! - Roles: `auditor` and `admin` see everything; a provider's staff (`provider` and the
//!   provider claim) see only their provider's messages and orders, enforced in the
//!   queries' filters and checks, never only in the HTML.
//! - Every read is recorded in the access log, with the person, their role and the clients
//!   shown, before the answer is sent.
//!
//! # Layout
//! - `mod.rs` (here): the routes, CSRF, sign-in and sign-out.
//! - [`oidc`]: the OpenID Connect client: discovery, JWKS, code exchange, ID token checks.
//! - [`pages`]: the pages: search, a message, an order's timeline, the access log, the
//!   log's proof and the bundle download.
//! - [`sessions`]: [`Console`], the sessions and sign-ins under way, in memory (a leaf the
//!   application state holds).
//! - [`html`]: the page frame and the small HTML helpers the pages share.

pub mod html;
pub mod oidc;
pub mod pages;
pub mod sessions;

pub use sessions::{Console, ConsoleRole, Person, Session, Settings, LOGIN_COOKIE, SESSION_COOKIE};
use sessions::{Pending, LOGIN_TTL_SECS, MAX_PENDING};

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use carehub_core::store::AccessQuery;
use carehub_model::OrgNumber;
use serde::Deserialize;

use super::auth::{record_access, Caller};
use super::error::ApiError;
use super::state::AppState;
use crate::auth::{Claims, Role};
use oidc::{random_token, SignInError};

impl Person {
    /// The caller the API's own checks and queries take: a provider's staff are scoped to
    /// their provider exactly as a provider's token is.
    pub fn caller(&self) -> Caller {
        let role = match self.role {
            ConsoleRole::Auditor => Role::Auditor,
            ConsoleRole::Admin => Role::Admin,
            ConsoleRole::Provider => Role::ProviderSystem,
        };
        Caller(Claims {
            sub: self.subject.clone(),
            role,
            sys: None,
            org: self.provider.clone(),
            iat: 0,
            nbf: 0,
            exp: 0,
            iss: "console".into(),
            aud: "console".into(),
        })
    }
}

/// The console's routes (all under `/console`).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(pages::search))
        .route("/console/", get(pages::search))
        .route("/console/signin", get(signin_page))
        .route("/console/login", get(login))
        .route("/console/callback", get(callback))
        .route("/console/logout", post(logout))
        .route("/console/messages/{id}", get(pages::message))
        .route("/console/messages/{id}/raw", get(pages::raw))
        .route("/console/orders/{id}", get(pages::timeline))
        .route("/console/access", get(pages::access))
        .route("/console/proof", get(pages::proof))
        .route("/console/proof/bundle", post(pages::bundle))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
}

/// An error page of the console: a status, a stable code and a message in Swedish.
#[derive(Debug)]
pub struct ConsoleError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ConsoleError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ConsoleError {
        ConsoleError { status, code, message: message.into() }
    }

    fn not_configured() -> ConsoleError {
        ConsoleError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "Konsolen är inte konfigurerad ([console]).")
    }

    fn csrf() -> ConsoleError {
        ConsoleError::new(
            StatusCode::FORBIDDEN,
            "CSRF_TOKEN_INVALID",
            "Formuläret saknar sessionens kontrollkod eller har fel kod. Ladda om sidan och försök igen.",
        )
    }

    fn origin() -> ConsoleError {
        ConsoleError::new(
            StatusCode::FORBIDDEN,
            "ORIGIN_REFUSED",
            "Förfrågan kommer inte från konsolens egen sida (Origin).",
        )
    }

    fn sign_in(e: &SignInError) -> ConsoleError {
        let status = match e {
            SignInError::NoRole(_) => StatusCode::FORBIDDEN,
            SignInError::Provider(_) => StatusCode::BAD_GATEWAY,
            _ => StatusCode::UNAUTHORIZED,
        };
        let message = match e {
            SignInError::Provider(_) => {
                "Identitetsleverantören svarade inte som väntat. Försök igen senare.".to_owned()
            }
            SignInError::InvalidToken(_) => "Inloggningen kunde inte verifieras.".to_owned(),
            SignInError::Expired => "Identitetsleverantörens intyg (ID-token) har gått ut.".to_owned(),
            SignInError::NoRole(why) => format!("Du har ingen roll i konsolen: {why}."),
        };
        ConsoleError::new(status, e.code(), message)
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> ConsoleError {
        let code = e.code.as_str();
        ConsoleError { status: e.status(), code, message: e.message }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let body = html::error_page(self.status, self.code, &self.message);
        let mut r = (self.status, body).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        r.headers_mut().insert("x-carehub-error", HeaderValue::from_static(self.code));
        html::harden(r.headers_mut());
        r
    }
}

/// The value of a cookie in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!("{name}={value}; Path=/console; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn console_of(state: &AppState) -> Result<Arc<Console>, ConsoleError> {
    state.console.clone().ok_or_else(ConsoleError::not_configured)
}

/// A signed-in person's request: the console, the session and its id. A request without
/// a valid session is sent to the sign-in page.
pub struct SignedIn {
    pub console: Arc<Console>,
    pub session: Session,
    pub id: String,
}

/// Why a request has no session.
pub enum NotSignedIn {
    Error(ConsoleError),
    /// Sent to the sign-in page.
    SignIn,
}

impl IntoResponse for NotSignedIn {
    fn into_response(self) -> Response {
        match self {
            NotSignedIn::Error(e) => e.into_response(),
            NotSignedIn::SignIn => Redirect::to("/console/signin").into_response(),
        }
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = NotSignedIn;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let console = console_of(state).map_err(NotSignedIn::Error)?;
        let id = cookie(&parts.headers, SESSION_COOKIE).ok_or(NotSignedIn::SignIn)?.to_owned();
        let session = console.session(&id).ok_or(NotSignedIn::SignIn)?;
        Ok(SignedIn { console, session, id })
    }
}

impl SignedIn {
    pub fn person(&self) -> &Person {
        &self.session.person
    }

    /// Records a read by the signed-in person before the page is sent.
    pub async fn record(
        &self,
        state: &AppState,
        query: AccessQuery,
        clients: impl IntoIterator<Item = String>,
        entries: impl IntoIterator<Item = i64>,
    ) -> Result<(), ConsoleError> {
        let p = self.person();
        let query = match &p.provider {
            Some(org) => query.with("provider_scope", Some(org)),
            None => query,
        };
        record_access(&state.hub, &p.subject, p.role.as_str(), query, clients, entries).await?;
        Ok(())
    }

    /// Refuses a POST whose origin is not the hub's or whose CSRF token is not the
    /// session's.
    pub fn check_post(&self, state: &AppState, headers: &HeaderMap, token: Option<&str>) -> Result<(), ConsoleError> {
        let expected = self.console.origin(state.scheme, headers).ok_or_else(ConsoleError::origin)?;
        let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
        let referer = headers.get(header::REFERER).and_then(|v| v.to_str().ok());
        let same = match (origin, referer) {
            (Some(o), _) => o == expected,
            (None, Some(r)) => r.strip_prefix(expected.as_str()).is_some_and(|rest| rest.starts_with('/')),
            (None, None) => false,
        };
        if !same {
            return Err(ConsoleError::origin());
        }
        match token {
            Some(t) if constant_time_eq(t.as_bytes(), self.session.csrf.as_bytes()) => Ok(()),
            _ => Err(ConsoleError::csrf()),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("console.css")).into_response()
}

async fn js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], include_str!("console.js")).into_response()
}

/// The sign-in page: one button to the identity provider.
async fn signin_page(State(state): State<AppState>) -> Result<Response, ConsoleError> {
    console_of(&state)?;
    Ok(html::page_response(html::signin_page()))
}

/// Starts a sign-in: a new state, nonce and PKCE verifier, the browser bound by a cookie,
/// and off to the identity provider.
async fn login(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ConsoleError> {
    let console = console_of(&state)?;
    let redirect_uri = console
        .redirect_uri(state.scheme, &headers)
        .ok_or_else(|| ConsoleError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", "Förfrågan saknar Host."))?;
    let (login_state, nonce, verifier, browser) = (random_token(), random_token(), random_token(), random_token());
    let url = console.provider.authorize_url(&redirect_uri, &login_state, &nonce, &verifier).await.map_err(|e| {
        tracing::warn!(error = %e, "console sign-in cannot start");
        ConsoleError::sign_in(&e)
    })?;
    {
        let now = console.clock.now();
        let mut pending = console.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, p| (now - p.started).num_seconds() < LOGIN_TTL_SECS);
        if pending.len() >= MAX_PENDING {
            if let Some(oldest) = pending.iter().min_by_key(|(_, p)| p.started).map(|(k, _)| k.clone()) {
                pending.remove(&oldest);
            }
        }
        pending.insert(login_state, Pending { verifier, nonce, browser: browser.clone(), started: now });
    }
    let secure = !console.insecure_ok(state.scheme, &headers);
    let mut r = Redirect::to(&url).into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, &browser, LOGIN_TTL_SECS, secure));
    Ok(r)
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Finishes a sign-in: the state must be one this browser started, the code is exchanged
/// and the ID token verified; then a new session, under a new id.
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, ConsoleError> {
    let console = console_of(&state)?;
    let refused = |why: &str| {
        ConsoleError::new(StatusCode::UNAUTHORIZED, "SIGN_IN_FAILED", format!("Inloggningen misslyckades: {why}."))
    };
    if let Some(e) = &q.error {
        tracing::info!(error = %e, "the identity provider refused a console sign-in");
        return Err(refused("identitetsleverantören nekade"));
    }
    let (Some(code), Some(login_state)) = (q.code.as_deref(), q.state.as_deref()) else {
        return Err(refused("svaret saknar code eller state"));
    };
    let pending = console.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(login_state);
    let Some(pending) = pending else {
        return Err(refused("okänd eller redan använd inloggning (state)"));
    };
    if (console.clock.now() - pending.started).num_seconds() >= LOGIN_TTL_SECS {
        return Err(refused("inloggningen tog för lång tid"));
    }
    if cookie(&headers, LOGIN_COOKIE).is_none_or(|b| !constant_time_eq(b.as_bytes(), pending.browser.as_bytes())) {
        return Err(refused("inloggningen påbörjades i en annan webbläsare"));
    }
    let redirect_uri = console.redirect_uri(state.scheme, &headers).unwrap_or_default();
    let claims = console.provider.exchange(code, &redirect_uri, &pending.verifier, &pending.nonce).await;
    let person = claims.and_then(|c| person_of(&c).map(|p| (p, c.exp)));
    let (person, exp) = person.map_err(|e| {
        tracing::info!(code = e.code(), error = %e, "a console sign-in was refused");
        ConsoleError::sign_in(&e)
    })?;
    let (id, session) = console.start_session(person, exp);
    tracing::info!(role = session.person.role.as_str(), "a person signed in to the console");
    let secure = !console.insecure_ok(state.scheme, &headers);
    let max_age = (session.expires - console.clock.now()).num_seconds().max(0);
    let mut r = Redirect::to("/console/").into_response();
    r.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, max_age, secure));
    r.headers_mut().append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0, secure));
    Ok(r)
}

/// The person an ID token describes, with the console role it grants.
fn person_of(c: &oidc::IdClaims) -> Result<Person, SignInError> {
    let has = |r: &str| c.roles.iter().any(|x| x == r);
    let (role, provider) = if has("admin") {
        (ConsoleRole::Admin, None)
    } else if has("auditor") {
        (ConsoleRole::Auditor, None)
    } else if has("provider") {
        let org = c
            .provider
            .as_deref()
            .ok_or_else(|| SignInError::NoRole("rollen provider kräver utförarens organisationsnummer".into()))?;
        let org = OrgNumber::parse(org)
            .map_err(|_| SignInError::NoRole("utförarens organisationsnummer är inte giltigt".into()))?;
        (ConsoleRole::Provider, Some(org.as_str().to_owned()))
    } else {
        return Err(SignInError::NoRole("rollerna auditor, admin eller provider saknas".into()));
    };
    Ok(Person { subject: c.subject.clone(), name: c.name.clone(), role, provider })
}

/// A form with nothing but the CSRF token.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    pub csrf: Option<String>,
}

/// Signs out: the session is forgotten and its cookie cleared.
async fn logout(
    State(state): State<AppState>,
    signed: SignedIn,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Result<Response, ConsoleError> {
    signed.check_post(&state, &headers, form.csrf.as_deref())?;
    signed.console.end_session(&signed.id);
    let secure = !signed.console.insecure_ok(state.scheme, &headers);
    let mut r = html::page_response(html::signed_out_page());
    r.headers_mut().append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", 0, secure));
    Ok(r)
}
