//! A decision's life (SPEC §4.4), `GET /v1/decisions/{id}`: the decision as it stands now,
//! every version it arrived in, and the orders it gave (several once the client switched
//! provider), each with the terms it stands on.
//!
//! A decision names its client, so every read is recorded. Who may read it follows who
//! may read its orders: a provider sees a decision it has an order under, and only its
//! own orders; a case-management system only the decisions it sent.

use axum::extract::State;
use axum::Json;
use carehub_core::store::{ts, DecisionVersion, OrderFilter, OrderRecord};
use carehub_model::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::{record_read, Caller};
use super::error::{ApiError, ApiResult, ErrorBody, Path};
use super::orders::OrderTerms;
use super::state::AppState;
use crate::auth::Role;
use carehub_core::store::AccessQuery;

/// One version of a decision as it arrived.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VersionView {
    /// 0 is the decision as first sent; each later one a change.
    pub version: u32,
    /// `decision` for version 0; a change's kind (`services`, `end_date`, `paused`,
    /// `ended`, `new_provider`) after.
    pub kind: String,
    /// The first day it applies.
    pub effective_from: String,
    pub received_at: String,
    /// The case-management system it came from.
    pub system: String,
    /// The decision or the change as the hub read it.
    #[schema(value_type = Object)]
    pub canonical: Value,
}

impl From<DecisionVersion> for VersionView {
    fn from(v: DecisionVersion) -> Self {
        VersionView {
            version: v.version,
            kind: v.kind,
            effective_from: v.effective_from.to_string(),
            received_at: ts(v.received_at),
            system: v.system,
            canonical: v.canonical,
        }
    }
}

/// One of a decision's orders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecisionOrder {
    pub order_id: String,
    pub provider: String,
    pub provider_system: String,
    /// queued, delivered, dead_letter, accepted, rejected.
    pub status: String,
    pub ack_status: Option<String>,
    /// Its dates, services, pauses and end as the decision's changes left them.
    pub terms: OrderTerms,
}

impl From<OrderRecord> for DecisionOrder {
    fn from(r: OrderRecord) -> Self {
        DecisionOrder {
            terms: OrderTerms::of(&r.order),
            order_id: r.order.id,
            provider: r.order.provider.as_str().to_owned(),
            provider_system: r.provider_system,
            status: r.status.as_str().to_owned(),
            ack_status: r.ack_status.map(|s| s.as_str().to_owned()),
        }
    }
}

/// A decision, its versions and its orders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DecisionView {
    /// Namespaced by the system that sent it: `combine:DEC-2026-0001`.
    pub id: String,
    /// The case-management system it came from.
    pub system: String,
    /// Its current provider.
    pub provider: String,
    /// Its latest version (0: as first sent).
    pub version: u32,
    /// The decision as it stands now, every change applied.
    #[schema(value_type = Object)]
    pub decision: Value,
    /// Oldest first.
    pub versions: Vec<VersionView>,
    /// By start date.
    pub orders: Vec<DecisionOrder>,
}

/// A decision: as it stands now, its versions, and its orders.
#[utoipa::path(get, path = "/v1/decisions/{id}", tag = "orders",
    params(("id" = String, Path, description = "The namespaced decision id, e.g. `combine:DEC-2026-0001`")),
    responses(
        (status = 200, body = DecisionView),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the decision came from another system, or has no order at the provider", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn get_decision(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DecisionView>> {
    let store = state.hub.store();
    let record =
        store.decision(&id).await?.ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no decision {id}")))?;
    if caller.0.role == Role::CaseManagement && caller.0.system() != Some(record.system.as_str()) {
        return Err(ApiError::new(ErrorCode::Forbidden, "the decision came from another system"));
    }
    let mut orders =
        store.orders(OrderFilter { decision_id: Some(id.clone()), limit: 10_000, ..OrderFilter::default() }).await?;
    if let Some(own) = caller.0.provider() {
        orders.retain(|o| o.order.provider.as_str() == own);
        if orders.is_empty() {
            return Err(ApiError::new(ErrorCode::Forbidden, "the decision has no order at the provider"));
        }
    }
    let versions = store.decision_versions(&id).await?;
    let query = AccessQuery::new("GET /v1/decisions/{id}").with("id", Some(&id));
    record_read(&state.hub, &caller, query, Some(record.client.clone()), None).await?;
    Ok(Json(DecisionView {
        version: versions.last().map_or(0, |v| v.version),
        decision: serde_json::from_str(&record.canonical).unwrap_or(Value::Null),
        id: record.id,
        system: record.system,
        provider: record.provider,
        versions: versions.into_iter().map(VersionView::from).collect(),
        orders: orders.into_iter().map(DecisionOrder::from).collect(),
    }))
}
