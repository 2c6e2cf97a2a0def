//! Visits and their follow-up: `GET /v1/visits`, the monthly manual-registration share per
//! provider, and closing a month.
//!
//! Visits name clients, so every read is recorded like a read of the message log. A
//! provider's token sees its own visits and its own row of the report only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use carehub_core::store::{ManualShare, Op, VisitFilter, VisitRecord};
use carehub_model::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{bad_request, client_param, org_param, record_read, ApiError, ApiResult, ErrorBody, Path, Query};
use crate::auth::{Caller, Role};
use crate::server::AppState;

/// Checks a `YYYY-MM` month.
pub(crate) fn month_param(month: &str) -> ApiResult<String> {
    let ok = month.len() == 7
        && month.as_bytes()[4] == b'-'
        && chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").is_ok();
    if ok {
        Ok(month.to_owned())
    } else {
        Err(ApiError::new(ErrorCode::InvalidDate, format!("'{month}' is not a month (YYYY-MM)")))
    }
}

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
    let limit = super::limit_param(q.limit, 1000, 10_000)?;
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
    record_read(&state.hub, &caller, "visits".into()).await?;
    let visits: Vec<VisitRecord> = state.hub.store.visits(filter).await?;
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
            name: state.hub.routes.get(&s.provider).map(|r| r.provider_name.clone()),
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
    let mut shares = state.hub.store.manual_shares(&month).await?;
    if let Some(own) = caller.0.provider() {
        shares.retain(|s| s.provider == own);
    }
    Ok(Json(ManualReport { month, threshold: state.manual_share_threshold, providers: manual_rows(shares, &state) }))
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
    state.hub.store.commit(vec![Op::CloseMonth(month)]).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?provider=` for an invoice's verification.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InvoiceQuery {
    /// The provider's organisation number: an invoice is identified by its provider and its
    /// id. Needed when several providers used the id; a provider's token sees its own.
    #[param(format = "organisationsnummer")]
    pub provider: Option<String>,
}

/// The latest verification report of an invoice (SPEC §7): per line invoiced, performed,
/// granted, approved minutes and amount, and the findings INV001-INV007.
#[utoipa::path(get, path = "/v1/invoices/{id}/verification", tag = "invoices",
    params(("id" = String, Path, description = "The invoice's id (cbc:ID)"), InvoiceQuery),
    responses(
        (status = 200, description = "the report", body = Object),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the role may not read reports, or a provider's token names another provider", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: no verified invoice with this id (for this provider)", body = ErrorBody),
        (status = 409, description = "AMBIGUOUS_INVOICE: several providers used the id; the answer lists them", body = ErrorBody),
        (status = 422, description = "INVALID_ORG_NUMBER: `provider` is not an organisation number", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn invoice_verification(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<InvoiceQuery>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    caller.require(&[Role::Admin, Role::Auditor, Role::CaseManagement, Role::ProviderSystem])?;
    let mut provider = org_param(&q.provider)?;
    if let Some(own) = caller.0.provider() {
        if provider.as_deref().is_some_and(|p| p != own) {
            return Err(ApiError::new(ErrorCode::Forbidden, "a provider reads only its own invoices"));
        }
        provider = Some(own.to_owned());
    }
    let not_found = || ApiError::new(ErrorCode::NotFound, format!("no verified invoice {id}"));
    let provider = match provider {
        Some(p) => p,
        None => {
            let mut providers = state.hub.store.verified_providers(&id).await?;
            if providers.len() > 1 {
                let message = format!(
                    "providers {} have each sent an invoice {id}: name one with ?provider=",
                    providers.join(", ")
                );
                let mut e = ApiError::new(ErrorCode::AmbiguousInvoice, message);
                e.providers = providers;
                return Err(e);
            }
            providers.pop().ok_or_else(not_found)?
        }
    };
    let record = state.hub.store.verification(&provider, &id).await?.ok_or_else(not_found)?;
    record_read(&state.hub, &caller, format!("verification {provider} {id}")).await?;
    let report: serde_json::Value = serde_json::from_str(&record.report).unwrap_or_default();
    Ok(axum::Json(json_report(record.log_seq, report)))
}

fn json_report(message_id: i64, mut report: serde_json::Value) -> serde_json::Value {
    report["message_id"] = serde_json::json!(message_id);
    report
}
