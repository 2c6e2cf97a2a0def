//! Auditing (SPEC §9): the access log (`GET /v1/access-log`, itself recorded), and the
//! message log's signed checkpoint and proofs (`GET /v1/log/checkpoint`,
//! `GET /v1/log/entries/{seq}/proof`, `GET /v1/log/consistency`), for auditors and admins.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use carehub_core::audit::{AuditError, Checkpointer};
use carehub_core::store::{AccessFilter, AccessQuery, CheckpointRecord};
use carehub_model::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::{record_read, Caller};
use super::error::{client_param, instant, limit_param, ApiError, ApiResult, ErrorBody, Path, Query};
use super::state::AppState;
use crate::auth::Role;

/// Filters for `GET /v1/access-log`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccessLogQuery {
    /// Reads that showed this client (a personal identity number in any accepted form).
    #[param(format = "personnummer")]
    pub client: Option<String>,
    /// Reads by this person or system (the token's subject).
    pub subject: Option<String>,
    /// From this instant (RFC 3339), inclusive.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Up to this instant (RFC 3339), exclusive.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Entries after this one (the previous page's `next_after`).
    pub after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// A page of the access log, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccessPage {
    /// Entries: seq, at, subject, role, query {endpoint, filters}, clients, entries,
    /// prev_hash, hash.
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<Value>,
    pub next_after: Option<i64>,
}

/// The access log: who read what, when, and which clients and entries they were shown
/// (auditor, admin). Reading it is recorded in it.
#[utoipa::path(get, path = "/v1/access-log", tag = "audit", params(AccessLogQuery),
    responses(
        (status = 200, body = AccessPage),
        (status = 400, description = "BAD_REQUEST: a parameter does not parse or is out of range", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: only auditors and admins read the access log", body = ErrorBody),
        (status = 422, description = "INVALID_PERSONAL_IDENTITY_NUMBER: a client that is not one", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn access_log(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<AccessLogQuery>,
) -> ApiResult<Json<AccessPage>> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let limit = limit_param(q.limit, 100, 1000)?;
    let filter = AccessFilter {
        client: client_param(&q.client)?,
        subject: q.subject.clone(),
        since: instant(&q.since, "since")?,
        until: instant(&q.until, "until")?,
        after_seq: q.after,
        limit,
        ..AccessFilter::default()
    };
    let query = AccessQuery::new("GET /v1/access-log")
        .with("client", filter.client.as_ref())
        .with("subject", filter.subject.as_ref())
        .with("since", q.since.as_ref())
        .with("until", q.until.as_ref())
        .with("after", q.after)
        .with("limit", Some(limit));
    let asked = filter.client.clone();
    let entries = state.hub.store().access_log(filter).await?;
    let clients = entries.iter().flat_map(|e| e.clients.iter().cloned()).chain(asked);
    record_read(&state.hub, &caller, query, clients, None).await?;
    let next_after = (entries.len() == limit).then(|| entries.last().map(|e| e.seq)).flatten();
    let entries = entries.into_iter().map(|e| serde_json::to_value(e).unwrap_or_default()).collect();
    Ok(Json(AccessPage { entries, next_after }))
}

/// A signed checkpoint of the message log's Merkle tree.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    pub origin: String,
    /// Entries in the tree (entries 1..=size).
    pub size: i64,
    /// The root, hex.
    pub root: String,
    pub at: String,
    /// The signed note (docs/audit-log.md).
    pub note: String,
    /// The hub's Ed25519 public key, base64.
    pub public_key: String,
}

fn checkpointer(state: &AppState, caller: &Caller) -> ApiResult<Arc<Checkpointer>> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    state
        .checkpointer
        .clone()
        .ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "no signing key is configured ([audit] signing_key)"))
}

fn audit_error(e: AuditError) -> ApiError {
    match e {
        AuditError::Store(e) => e.into(),
        AuditError::Proof(e) => ApiError::new(ErrorCode::NotFound, e.to_string()),
        AuditError::NoCheckpoint(m) => ApiError::new(ErrorCode::NotFound, m),
        e => {
            tracing::error!(error = %e, "audit failure");
            ApiError::new(ErrorCode::Internal, "the log cannot be proved; see the hub's log")
        }
    }
}

fn view(c: &Checkpointer, r: CheckpointRecord) -> CheckpointView {
    CheckpointView {
        origin: c.origin().to_owned(),
        size: r.size,
        root: r.root,
        at: carehub_core::store::ts(r.at),
        note: r.note,
        public_key: c.public_key(),
    }
}

/// The latest signed checkpoint, made now if the log grew since (auditor, admin).
#[utoipa::path(get, path = "/v1/log/checkpoint", tag = "audit",
    responses(
        (status = 200, body = CheckpointView),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: only auditors and admins", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: the log is empty", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: no signing key is configured, or the store is not available", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn checkpoint(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<CheckpointView>> {
    let c = checkpointer(&state, &caller)?;
    let size = state.hub.store().log_size().await?;
    let record = c.covering(size.max(1)).await.map_err(audit_error)?;
    Ok(Json(view(&c, record)))
}

/// An entry's inclusion proof against the latest checkpoint (auditor, admin).
#[utoipa::path(get, path = "/v1/log/entries/{seq}/proof", tag = "audit",
    params(("seq" = i64, Path, description = "The entry's sequence number (its message id)")),
    responses(
        (status = 200, description = "seq, leaf_index, hash, tree_size, proof (base64, from the leaf up), checkpoint, public_key"),
        (status = 400, description = "BAD_REQUEST: the id is not an integer", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: only auditors and admins", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no such entry", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: no signing key is configured, or the store is not available", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn inclusion(
    State(state): State<AppState>,
    caller: Caller,
    Path(seq): Path<i64>,
) -> ApiResult<Json<Value>> {
    let c = checkpointer(&state, &caller)?;
    if seq < 1 {
        return Err(ApiError::new(ErrorCode::NotFound, format!("no entry {seq}")));
    }
    let cp = c.covering(seq).await.map_err(audit_error)?;
    let proof =
        carehub_core::audit::prove_inclusion(state.hub.store().as_ref(), seq, &cp).await.map_err(audit_error)?;
    let mut v = serde_json::to_value(proof).unwrap_or_default();
    v["public_key"] = c.public_key().into();
    Ok(Json(v))
}

/// `GET /v1/log/consistency` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The size of an earlier checkpoint.
    #[param(minimum = 1)]
    pub from: i64,
}

/// The consistency proof from an earlier checkpoint to the latest (auditor, admin).
#[utoipa::path(get, path = "/v1/log/consistency", tag = "audit", params(ConsistencyQuery),
    responses(
        (status = 200, description = "from_size, to_size, from_checkpoint, to_checkpoint, proof (base64), public_key"),
        (status = 400, description = "BAD_REQUEST: from is missing or not an integer", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: only auditors and admins", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no checkpoint of that size", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: no signing key is configured, or the store is not available", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn consistency(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<Json<Value>> {
    let c = checkpointer(&state, &caller)?;
    let size = state.hub.store().log_size().await?;
    let to = c.covering(size.max(1)).await.map_err(audit_error)?;
    let proof =
        carehub_core::audit::prove_consistency(state.hub.store().as_ref(), q.from, &to).await.map_err(audit_error)?;
    let mut v = serde_json::to_value(proof).unwrap_or_default();
    v["public_key"] = c.public_key().into();
    Ok(Json(v))
}
