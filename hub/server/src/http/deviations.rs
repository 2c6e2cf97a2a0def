//! What providers report about their clients (SPEC §4.4): deviations (avvikelser) and
//! changes of need (bevakningar), `GET /v1/deviations`.
//!
//! The hub files each report under the client's order, so a case officer or the committee
//! can follow them per provider and month without asking every provider's system. They
//! name clients and may describe their health, so every read is recorded, and a provider's
//! token reads only its own.

use axum::extract::State;
use axum::Json;
use carehub_core::store::{ts, ProviderReport, ProviderReportFilter};
use carehub_model::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::{record_read, Caller};
use super::error::{limit_param, month_of, org_param, ApiError, ApiResult, ErrorBody, Query};
use super::state::AppState;
use carehub_core::store::AccessQuery;

/// A deviation or change of need, as the hub filed it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ReportView {
    /// Namespaced by the system that sent it: `phoniro:AV-2211`.
    pub id: String,
    /// `deviation` or `need_change`.
    pub message_type: String,
    /// A deviation's kind (`fall`, `missed_visit`, ...) or a change of need's direction
    /// (`more`, `less`).
    pub kind: String,
    pub severity: Option<String>,
    pub provider: String,
    /// The client's personal identity number.
    pub client: String,
    /// The order the hub filed it under.
    pub order_id: Option<String>,
    /// The day it happened, or was noticed.
    pub day: String,
    /// The provider's system that sent it.
    pub system: String,
    pub received_at: String,
    /// The report as the hub read it, with the provider's description.
    #[schema(value_type = Object)]
    pub report: Value,
}

impl From<ProviderReport> for ReportView {
    fn from(r: ProviderReport) -> Self {
        ReportView {
            id: r.id,
            message_type: r.message_type,
            kind: r.kind,
            severity: r.severity,
            provider: r.provider,
            client: r.client,
            order_id: r.order_id,
            day: r.day.to_string(),
            system: r.system,
            received_at: ts(r.received_at),
            report: r.canonical,
        }
    }
}

/// Filters for `GET /v1/deviations`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeviationQuery {
    /// A provider's organisation number (`INVALID_ORG_NUMBER` when it is not one).
    #[param(format = "organisationsnummer")]
    pub provider: Option<String>,
    /// `YYYY-MM`: reports whose day falls in the month (`INVALID_DATE` when it is not one).
    #[param(pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub month: Option<String>,
    /// `deviation` or `need_change`, a deviation's kind (`fall`, `missed_visit`, ...), or a
    /// change of need's direction (`more`, `less`).
    pub kind: Option<String>,
    /// The order the reports are filed under.
    pub order: Option<String>,
    /// At most this many: 1 to 10000, 1000 by default (`BAD_REQUEST` outside the range).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// Deviations and changes of need.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeviationList {
    pub reports: Vec<ReportView>,
}

/// List deviations and changes of need, by day; a provider sees only its own.
#[utoipa::path(get, path = "/v1/deviations", tag = "orders", params(DeviationQuery),
    responses(
        (status = 200, body = DeviationList),
        (status = 400, description = "BAD_REQUEST: a parameter does not parse or is out of range", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: a provider asks for another provider's reports", body = ErrorBody),
        (status = 422, description = "INVALID_ORG_NUMBER: a provider that is not one; INVALID_DATE: a month that is not one", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn list_deviations(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<DeviationQuery>,
) -> ApiResult<Json<DeviationList>> {
    let mut provider = org_param(&q.provider)?;
    if let Some(own) = caller.0.provider() {
        if provider.as_deref().is_some_and(|p| p != own) {
            return Err(ApiError::new(ErrorCode::Forbidden, "a provider lists only its own reports"));
        }
        provider = Some(own.to_owned());
    }
    let month = q.month.as_deref().map(month_of).transpose()?;
    let filter = ProviderReportFilter {
        provider,
        month,
        kind: q.kind.clone(),
        order_id: q.order.clone(),
        limit: limit_param(q.limit, 1000, 10_000)?,
    };
    let query = AccessQuery::new("GET /v1/deviations")
        .with("provider", filter.provider.as_ref())
        .with("month", filter.month)
        .with("kind", filter.kind.as_ref())
        .with("order", filter.order_id.as_ref())
        .with("limit", Some(filter.limit));
    let reports = state.hub.store().provider_reports(filter).await?;
    record_read(&state.hub, &caller, query, reports.iter().map(|r| r.client.clone()), None).await?;
    Ok(Json(DeviationList { reports: reports.into_iter().map(ReportView::from).collect() }))
}
