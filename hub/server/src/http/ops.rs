//! Operations: health, readiness, metrics, the OpenAPI document, and recomputing the
//! message log's hash chain (`GET /v1/audit/verify`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use carehub_model::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::auth::{record_read, Caller};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::state::AppState;
use super::ApiDoc;
use crate::auth::Role;
use carehub_core::store::AccessQuery;

/// The result of recomputing the message log's hash chain.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainView {
    pub ok: bool,
    pub entries: u64,
    /// The last entry's hash: keep it to detect a later truncation.
    pub head: String,
    pub first_bad_entry: Option<i64>,
    pub reason: Option<String>,
}

/// Recompute the message log's hash chain (auditor, admin).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses(
        (status = 200, body = ChainView),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the role (or organisation) may not read this", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn audit_verify(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<ChainView>> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    record_read(&state.hub, &caller, AccessQuery::new("GET /v1/audit/verify"), None, None).await?;
    let r = carehub_core::store::verify_chain(state.hub.store().as_ref()).await?;
    Ok(Json(ChainView {
        ok: r.first_bad.is_none(),
        entries: r.entries,
        head: r.head,
        first_bad_entry: r.first_bad.as_ref().map(|(s, _)| *s),
        reason: r.first_bad.map(|(_, why)| why),
    }))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub(super) async fn healthz() -> Json<Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the store answers and the delivery loop runs.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "UNAVAILABLE: the store does not answer or the delivery loop is not running", body = ErrorBody)))]
pub(super) async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state.hub.store().ping().await?;
    if !state.delivery_running.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(ApiError::new(ErrorCode::Unavailable, "the delivery loop is not running"));
    }
    Ok(Json(serde_json::json!({ "status": "ready" })))
}

/// Prometheus metrics: OpenMetrics text when the `Accept` header names
/// `application/openmetrics-text`, else the classic text format 0.0.4.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses(
    (status = 200, description = "metrics: the classic text format 0.0.4, or OpenMetrics when asked for it",
        content((String = "text/plain; version=0.0.4"), (String = "application/openmetrics-text"))),
    (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody)))]
pub(super) async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let format = carehub_core::metrics::Format::from_accept(&accept);
    let overdue = state.hub.store().overdue_counts(state.hub.today()).await?;
    let outbox = state.hub.store().outbox_counts().await?;
    let wal = state.hub.store().wal_bytes();
    let text = state.hub.metrics().render(overdue, outbox, wal, format);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(format.content_type()));
    Ok((headers, Body::from(text)).into_response())
}

/// The OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1")))]
pub(super) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
