//! An invoice's verification (SPEC §7): `GET /v1/invoices/{id}/verification`.
//!
//! The report names clients, so every read is recorded like a read of the message log.

use axum::extract::State;
use carehub_model::ErrorCode;
use serde::Deserialize;

use super::auth::{record_read, Caller};
use super::error::{org_param, ApiError, ApiResult, ErrorBody, Path, Query};
use super::state::AppState;
use crate::auth::Role;
use carehub_core::store::AccessQuery;

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
            let mut providers = state.hub.store().verified_providers(&id).await?;
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
    let record = state.hub.store().verification(&provider, &id).await?.ok_or_else(not_found)?;
    let query =
        AccessQuery::new("GET /v1/invoices/{id}/verification").with("id", Some(&id)).with("provider", Some(&provider));
    record_read(&state.hub, &caller, query, None, [record.log_seq]).await?;
    let report: serde_json::Value = serde_json::from_str(&record.report).unwrap_or_default();
    Ok(axum::Json(json_report(record.log_seq, report)))
}

fn json_report(message_id: i64, mut report: serde_json::Value) -> serde_json::Value {
    report["message_id"] = serde_json::json!(message_id);
    report
}
