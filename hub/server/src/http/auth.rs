//! Who is calling: the `Caller` and `SystemCaller` extractors over the bearer tokens of
//! [`crate::auth`] (and, for messages in, a verified client certificate), and recording who
//! read what.
//!
//! The token logic itself lives in [`crate::auth`], which knows nothing of HTTP, so that
//! `carehub token` and the API share it without importing each other.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use carehub_core::hub::Hub;
use carehub_core::store::{AccessQuery, NewAccess, Op};
use carehub_model::ErrorCode;

use super::error::{ApiError, ApiResult};
use super::state::AppState;
use crate::auth::{Claims, Role};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl Caller {
    /// Refuses the request unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::Forbidden, format!("the role {} may not do this", self.0.role.as_str())))
        }
    }
}

fn bearer(parts: &Parts, state: &AppState) -> Option<Result<Claims, ApiError>> {
    let header = parts.headers.get(axum::http::header::AUTHORIZATION)?;
    let token = header.to_str().ok().and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")));
    Some(match token {
        Some(t) => state.auth.verify(t.trim()).map_err(ApiError::from),
        None => Err(ApiError::new(ErrorCode::Unauthenticated, "the Authorization header is not a bearer token")),
    })
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match bearer(parts, state) {
            Some(claims) => claims.map(Caller),
            None => Err(ApiError::new(ErrorCode::Unauthenticated, "send Authorization: Bearer <token>")),
        }
    }
}

/// Who sends a message: a bearer token's holder, or a system that presented its client
/// certificate (mutual TLS). Only the message endpoint accepts the latter.
#[derive(Debug, Clone)]
pub enum SystemCaller {
    Token(Claims),
    /// The configured system the verified client certificate names.
    Certificate(String),
}

impl FromRequestParts<AppState> for SystemCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(claims) = bearer(parts, state) {
            return claims.map(SystemCaller::Token);
        }
        match parts.extensions.get::<crate::tls::PeerSystem>() {
            Some(crate::tls::PeerSystem(Some(system))) => Ok(SystemCaller::Certificate(system.clone())),
            _ => Err(ApiError::new(
                ErrorCode::Unauthenticated,
                "send Authorization: Bearer <token>, or a client certificate of a configured system",
            )),
        }
    }
}

/// Records a read in the access log (SPEC §9): who, in which role, what they asked, and
/// the clients and log entries the answer shows. Handlers call it after reading and before
/// answering, so the record is committed before the answer leaves; a read that cannot be
/// recorded is not answered.
pub(super) async fn record_read(
    hub: &Hub,
    caller: &Caller,
    query: AccessQuery,
    clients: impl IntoIterator<Item = String>,
    entries: impl IntoIterator<Item = i64>,
) -> ApiResult<()> {
    record_access(hub, &caller.0.sub, caller.0.role.as_str(), query, clients, entries).await
}

/// Records a read by `subject` in `role` in the access log, like [`record_read`]: for
/// readers who are not bearer-token callers (a person signed in to the console).
pub(super) async fn record_access(
    hub: &Hub,
    subject: &str,
    role: &str,
    query: AccessQuery,
    clients: impl IntoIterator<Item = String>,
    entries: impl IntoIterator<Item = i64>,
) -> ApiResult<()> {
    let access = NewAccess {
        subject: subject.to_owned(),
        role: role.to_owned(),
        query,
        clients: clients.into_iter().collect(),
        entries: entries.into_iter().collect(),
    };
    hub.store().commit(vec![Op::RecordAccess(access)]).await?;
    Ok(())
}
