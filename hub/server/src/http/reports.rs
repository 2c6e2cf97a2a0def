//! The reports: the monthly follow-up (SPEC §4.4), `GET /v1/reports/follow-up?month=YYYY-MM`,
//! as JSON or (`&format=csv`) as the CSV document of [`carehub_core::followup::table`]; and
//! the monthly manual-registration share per provider, `GET /v1/reports/manual-registrations`.
//!
//! The follow-up names clients only by a pseudonymous key (an order id), but it is about
//! clients, so every read is recorded like a read of the message log. A provider's token
//! gets a report restricted to its own rows (the follow-up's summary is its own row's
//! figures).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use carehub_core::followup::{self, FollowUp};
use carehub_core::store::ManualShare;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{record_read, Caller};
use super::error::{bad_request, month_of, month_param, ApiResult, ErrorBody, Query};
use super::state::AppState;
use crate::auth::Role;
use carehub_core::store::AccessQuery;

/// `?month=YYYY-MM`
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonthQuery {
    /// `YYYY-MM`, required (`BAD_REQUEST` without it).
    #[param(required = true, pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub month: Option<String>,
}

/// One provider's row of the manual-registration report.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ManualShareRow {
    pub provider: String,
    /// The provider's name in the configuration.
    pub name: Option<String>,
    /// Accepted and flagged visits in the month.
    pub visits: u64,
    /// Of which registered by hand (or with an unknown tag).
    pub manual: u64,
    /// manual / visits.
    pub share: f64,
    /// Above the configured threshold.
    pub over_threshold: bool,
}

/// The monthly manual-registration share per provider.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ManualReport {
    pub month: String,
    pub threshold: f64,
    pub providers: Vec<ManualShareRow>,
}

/// Rows of the report, with names and the threshold applied.
pub fn manual_rows(shares: Vec<ManualShare>, state: &AppState) -> Vec<ManualShareRow> {
    shares
        .into_iter()
        .map(|s| ManualShareRow {
            name: state.hub.route(&s.provider).map(|r| r.provider_name.clone()),
            over_threshold: s.share > state.manual_share_threshold,
            provider: s.provider,
            visits: s.visits,
            manual: s.manual,
            share: s.share,
        })
        .collect()
}

/// Manual registrations per provider in a month; providers over the threshold are marked.
#[utoipa::path(get, path = "/v1/reports/manual-registrations", tag = "reports", params(MonthQuery),
    responses(
        (status = 200, body = ManualReport),
        (status = 400, description = "BAD_REQUEST: no month", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the role (or organisation) may not read this", body = ErrorBody),
        (status = 422, description = "INVALID_DATE: not a month", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn manual_registrations(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<MonthQuery>,
) -> ApiResult<Json<ManualReport>> {
    caller.require(&[Role::Admin, Role::Auditor, Role::CaseManagement, Role::ProviderSystem])?;
    let month = month_param(q.month.as_deref().ok_or_else(|| bad_request("name a month: ?month=YYYY-MM"))?)?;
    let mut shares = state.hub.store().manual_shares(&month).await?;
    if let Some(own) = caller.0.provider() {
        shares.retain(|s| s.provider == own);
    }
    Ok(Json(ManualReport { month, threshold: state.manual_share_threshold, providers: manual_rows(shares, &state) }))
}

/// The follow-up's forms.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ReportFormat {
    Json,
    Csv,
}

/// `?month=YYYY-MM[&format=json|csv]`
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FollowUpQuery {
    /// `YYYY-MM`, a calendar month in Stockholm time; required (`BAD_REQUEST` without it).
    #[param(required = true, pattern = r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub month: Option<String>,
    /// `json` (default) or `csv`.
    #[param(value_type = Option<ReportFormat>)]
    pub format: Option<String>,
}

/// The monthly follow-up: granted vs performed per client (80-120% band), manual share per
/// provider, staff continuity, plans on time, orders not confirmed in time.
#[utoipa::path(get, path = "/v1/reports/follow-up", tag = "reports", params(FollowUpQuery),
    responses(
        (status = 200, description = "the report (JSON, or CSV with format=csv)",
            content((Object = "application/json"), (String = "text/csv"))),
        (status = 400, description = "BAD_REQUEST: no month, or a format other than json or csv", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the role (or organisation) may not read this", body = ErrorBody),
        (status = 422, description = "INVALID_DATE: not a month", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn follow_up(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<FollowUpQuery>,
) -> ApiResult<Response> {
    caller.require(&[Role::Admin, Role::Auditor, Role::CaseManagement, Role::ProviderSystem])?;
    let month = month_of(q.month.as_deref().ok_or_else(|| bad_request("name a month: ?month=YYYY-MM"))?)?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(bad_request("format is json or csv")),
    };
    let own = caller.0.provider().map(str::to_owned);
    let mut report: FollowUp = followup::compute(
        state.hub.store().as_ref(),
        month,
        state.hub.today(),
        state.manual_share_threshold,
        own.as_deref(),
    )
    .await?;
    report.name_providers(|p| state.hub.route(p).map(|r| r.provider_name.clone()));
    let query =
        AccessQuery::new("GET /v1/reports/follow-up").with("month", Some(month)).with("format", q.format.as_ref());
    record_read(&state.hub, &caller, query, None, None).await?;
    if csv {
        let name = format!("attachment; filename=\"follow-up-{month}.csv\"");
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()), (header::CONTENT_DISPOSITION, name)],
            followup::table::render(&report),
        )
            .into_response());
    }
    Ok(Json(report).into_response())
}
