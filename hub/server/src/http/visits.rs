//! Visits: `GET /v1/visits` and closing a month.
//!
//! Visits name clients, so every read is recorded like a read of the message log. A
//! provider's token sees its own visits only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use carehub_core::store::{Op, VisitFilter, VisitRecord};
use carehub_model::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{record_read, Caller};
use super::error::{
    bad_request, client_param, limit_param, month_param, org_param, ApiError, ApiResult, ErrorBody, Path, Query,
};
use super::state::AppState;
use crate::auth::Role;
use carehub_core::store::AccessQuery;

/// Filters for `GET /v1/visits`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VisitQuery {
    /// A client's personal identity number, in any accepted form (`INVALID_PERSONAL_IDENTITY_NUMBER`
    /// when it is not one).
    #[param(format = "personnummer")]
    pub client: Option<String>,
    /// A provider's organisation number (`INVALID_ORG_NUMBER` when it is not one).
    #[param(format = "organisationsnummer")]
    pub provider: Option<String>,
    /// An order id.
    pub order: Option<String>,
    /// `YYYY-MM`: visits whose check-in falls in that month (Stockholm time).
    #[param(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub month: Option<String>,
    /// accepted, flagged or rejected.
    #[param(value_type = Option<Outcome>)]
    pub outcome: Option<String>,
    /// A rule code, e.g. `VIS005`.
    #[param(pattern = r"^VIS[0-9]{3}$")]
    pub code: Option<String>,
    /// Paging: visits after this `seq`.
    pub after: Option<i64>,
    /// At most this many: 1 to 10000, 1000 by default (`BAD_REQUEST` outside the range).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// A page of visits, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct VisitPage {
    #[schema(value_type = Vec<Object>)]
    pub visits: Vec<serde_json::Value>,
    /// Pass as `after` for the next page; absent on the last.
    pub next_after: Option<i64>,
}

/// Stored visits with their outcome and codes.
#[utoipa::path(get, path = "/v1/visits", tag = "visits", params(VisitQuery),
    responses(
        (status = 200, body = VisitPage),
        (status = 400, description = "BAD_REQUEST: a parameter does not parse or is out of range", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the role may not, or a provider asks for another provider's visits", body = ErrorBody),
        (status = 422, description = "INVALID_PERSONAL_IDENTITY_NUMBER, INVALID_ORG_NUMBER, INVALID_DATE", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn list_visits(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<VisitQuery>,
) -> ApiResult<Json<VisitPage>> {
    caller.require(&[Role::Admin, Role::Auditor, Role::CaseManagement, Role::ProviderSystem])?;
    let mut provider = org_param(&q.provider)?;
    if let Some(own) = caller.0.provider() {
        if provider.as_deref().is_some_and(|p| p != own) {
            return Err(ApiError::new(ErrorCode::Forbidden, "a provider lists only its own visits"));
        }
        provider = Some(own.to_owned());
    }
    if let Some(o) = &q.outcome {
        if !matches!(o.as_str(), "accepted" | "flagged" | "rejected") {
            return Err(bad_request("outcome is accepted, flagged or rejected"));
        }
    }
    let code = q.code.as_ref().map(|c| c.trim().to_ascii_uppercase());
    if let Some(c) = &code {
        if c.len() != 6 || !c.starts_with("VIS") || !c[3..].bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_request("code is a visit rule code, VIS001 to VIS010"));
        }
    }
    let limit = limit_param(q.limit, 1000, 10_000)?;
    let filter = VisitFilter {
        client: client_param(&q.client)?,
        provider,
        order_id: q.order.clone(),
        month: q.month.as_deref().map(month_param).transpose()?,
        outcome: q.outcome.clone(),
        code,
        after: q.after,
        limit,
    };
    let query = AccessQuery::new("GET /v1/visits")
        .with("client", filter.client.as_ref())
        .with("provider", filter.provider.as_ref())
        .with("order", filter.order_id.as_ref())
        .with("month", filter.month.as_ref())
        .with("outcome", filter.outcome.as_ref())
        .with("code", filter.code.as_ref())
        .with("after", filter.after)
        .with("limit", Some(limit));
    let visits: Vec<VisitRecord> = state.hub.store().visits(filter).await?;
    let (clients, entries) = (visits.iter().map(|v| v.client.clone()), visits.iter().map(|v| v.message_id));
    record_read(&state.hub, &caller, query, clients, entries).await?;
    let next_after = (visits.len() == limit).then(|| visits.last().map(|v| v.seq)).flatten();
    let visits = visits.into_iter().map(|v| serde_json::to_value(v).unwrap_or_default()).collect();
    Ok(Json(VisitPage { visits, next_after }))
}

/// A visit's outcome.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Outcome {
    Accepted,
    Flagged,
    Rejected,
}

/// Closes a month: visits in it are refused from now on (VIS006).
#[utoipa::path(post, path = "/v1/visits/months/{month}/close", tag = "visits",
    params(("month" = String, Path, description = "YYYY-MM", pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$")),
    responses(
        (status = 204, description = "closed"),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the role (or organisation) may not read this", body = ErrorBody),
        (status = 422, description = "INVALID_DATE: not a month", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn close_month(
    State(state): State<AppState>,
    caller: Caller,
    Path(month): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require(&[Role::Admin])?;
    let month = month_param(&month)?;
    state.hub.store().commit(vec![Op::CloseMonth(month)]).await?;
    Ok(StatusCode::NO_CONTENT)
}
