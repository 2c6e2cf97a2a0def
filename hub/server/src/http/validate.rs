//! `POST /v1/validate/{system}`: what the hub would make of a payload, for a vendor testing
//! its side before go-live (SPEC §10). The payload is read exactly as
//! `POST /v1/systems/{system}/messages` reads it (the system's mappings, encodings, the
//! model's rules, which messages the system may send) and answered with each message's
//! canonical form or its coded refusal. Nothing is stored, delivered, or logged as
//! received: it is a dry run, authorised like the message endpoint.

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::Json;
use carehub_core::intake::validate;
use carehub_model::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::SystemCaller;
use super::error::{ApiError, ApiResult, ErrorBody, Path, Query};
use super::messages::sender_of;
use super::state::AppState;

/// `?file=NAME`: read the payload as a file of that name left in the system's inbox (a
/// ParaGå CSV file, a Procapita XML file).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ValidateQuery {
    /// The file name the payload would have in the system's inbox.
    file: Option<String>,
}

/// The answer: whether every message reads, and each message's canonical form or error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ValidationBody {
    /// Every message reads and the system may send it.
    valid: bool,
    /// One per message (a CSV file: one per row, with its `line`): `message_type`,
    /// `canonical`, PEPPOL `findings`, and `error` (`code`, `message`) when refused.
    messages: Vec<serde_json::Value>,
}

#[utoipa::path(post, path = "/v1/validate/{system}", tag = "messages",
    params(("system" = String, Path, description = "The configured system's name"), ValidateQuery),
    request_body(description = "The vendor's payload, as its profile defines it", content(
        (String = "application/xml"),
        (Object = "application/json"),
        (String = "text/csv"),
    )),
    responses(
        (status = 200, description = "What the hub would make of the payload; nothing stored or logged", body = ValidationBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "FORBIDDEN", body = ErrorBody),
        (status = 404, description = "UNKNOWN_SYSTEM", body = ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn validate_payload(
    State(state): State<AppState>,
    Path(system): Path<String>,
    Query(q): Query<ValidateQuery>,
    caller: Result<SystemCaller, ApiError>,
    request: Request,
) -> ApiResult<Json<ValidationBody>> {
    let Some(sys) = state.hub.registry().get(&system).cloned() else {
        return Err(ApiError::new(ErrorCode::UnknownSystem, format!("no system named '{system}' is configured")));
    };
    sender_of(&sys, caller?)?;
    let body = to_bytes(request.into_body(), state.max_body).await.map_err(|_| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is larger than {} bytes (or was cut off)", state.max_body),
        )
    })?;
    let file = q.file.filter(|f| !f.trim().is_empty());
    // Reading a large file is CPU work: off the request threads.
    let validation = tokio::task::spawn_blocking(move || validate(&sys, &body, file.as_deref()))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("validation stopped: {e}")))?;
    Ok(Json(ValidationBody {
        valid: validation.valid,
        messages: validation.messages.iter().map(|m| serde_json::to_value(m).unwrap_or_default()).collect(),
    }))
}
