//! The tag registry: `POST /v1/tags` and `GET /v1/tags`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use carehub_core::hub::Sender;
use carehub_model::{ErrorCode, OrgNumber};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::{record_read, Caller};
use super::error::{bad_request, client_param, ApiError, ApiResult, ErrorBody, Query};
use super::state::AppState;
use crate::auth::Role;
use carehub_core::store::AccessQuery;

/// A tag in a home: `{"tag_uid", "client", "installed_on", "removed_on"?}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagBody {
    /// 4, 7 or 10 bytes of hex, e.g. `04A21BC35D8081`.
    #[schema(pattern = "^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}|[0-9A-Fa-f]{20})$")]
    pub tag_uid: String,
    /// The client's personal identity number.
    #[schema(format = "personnummer")]
    pub client: String,
    /// `YYYY-MM-DD`.
    #[schema(format = Date, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub installed_on: String,
    /// `YYYY-MM-DD`: the last day the tag is in the home.
    #[schema(format = Date, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    pub removed_on: Option<String>,
}

/// Tag registrations, oldest first.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TagList {
    #[schema(value_type = Vec<TagBody>)]
    pub tags: Vec<carehub_model::TagRegistration>,
}

/// A registration taken.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TagRegistered {
    pub message_id: i64,
}

/// Register an NFC tag in a client's home. The tag's current registration ends the day
/// before; a moved tag keeps its history. A provider's system may register a tag only for
/// a client with an active order at that provider on the installation day, and may not move
/// one out of another provider's client's home; case management and administrators may.
#[utoipa::path(post, path = "/v1/tags", tag = "tags", request_body = TagBody,
    responses(
        (status = 201, body = TagRegistered),
        (status = 400, description = "MALFORMED_PAYLOAD: not well-formed JSON", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the role may not register tags, or a provider's system names a client without an active order at its provider", body = ErrorBody),
        (status = 409, description = "TAG_CONFLICT", body = ErrorBody),
        (status = 422, description = "INVALID_TAG_UID, INVALID_PERSONAL_IDENTITY_NUMBER, INVALID_DATE (not a date, or removed_on before installed_on), MISSING_FIELD, INVALID_VALUE", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn post_tag(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    caller.require(&[Role::Admin, Role::CaseManagement, Role::ProviderSystem])?;
    let sender = match caller.0.role {
        Role::ProviderSystem => {
            Sender::Provider(caller.0.provider().and_then(|o| OrgNumber::parse(o).ok()).ok_or_else(|| {
                ApiError::new(ErrorCode::Unauthenticated, "a provider_system token must carry a valid org")
            })?)
        }
        _ => Sender::Trusted,
    };
    let parsed = serde_json::from_slice::<carehub_model::TagRegistration>(&body).map_err(|e| json_error(&e));
    let id = state.hub.register_tag("api", body.to_vec(), parsed, &sender).await?;
    Ok((StatusCode::CREATED, Json(TagRegistered { message_id: id })).into_response())
}

/// A coded error for a JSON body that did not deserialize.
fn json_error(e: &serde_json::Error) -> carehub_model::ValidationError {
    use carehub_model::ValidationError;
    let text = e.to_string();
    if e.is_syntax() || e.is_eof() {
        ValidationError::new(ErrorCode::MalformedPayload, format!("not well-formed JSON: {text}"))
    } else {
        ValidationError::from_message(&text)
    }
}

/// Filters for `GET /v1/tags`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TagQuery {
    /// A client's personal identity number, in any accepted form (`INVALID_PERSONAL_IDENTITY_NUMBER`
    /// when it is not one).
    #[param(format = "personnummer")]
    pub client: Option<String>,
    /// A tag UID: 4, 7 or 10 bytes of hex.
    #[param(pattern = "^([0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}|[0-9A-Fa-f]{20})$")]
    pub tag: Option<String>,
}

/// The tag history of a client or of a tag.
#[utoipa::path(get, path = "/v1/tags", tag = "tags", params(TagQuery),
    responses(
        (status = 200, body = TagList),
        (status = 400, description = "BAD_REQUEST: neither a client nor a tag named", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the role (or organisation) may not read this", body = ErrorBody),
        (status = 422, description = "INVALID_PERSONAL_IDENTITY_NUMBER, INVALID_TAG_UID", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn list_tags(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<TagQuery>,
) -> ApiResult<Json<TagList>> {
    caller.require(&[Role::Admin, Role::Auditor, Role::CaseManagement])?;
    let client = client_param(&q.client)?;
    let tag = q
        .tag
        .as_deref()
        .map(|t| {
            carehub_model::TagUid::parse(t).map(|t| t.as_str().to_owned()).map_err(|e| ApiError::new(e.code, e.reason))
        })
        .transpose()?;
    if client.is_none() && tag.is_none() {
        return Err(bad_request("name a client or a tag"));
    }
    let query = AccessQuery::new("GET /v1/tags").with("client", client.as_ref()).with("tag", tag.as_ref());
    let tags = state.hub.store().tags(client, tag).await?;
    record_read(&state.hub, &caller, query, tags.iter().map(|t| t.client.expose().to_owned()), None).await?;
    Ok(Json(TagList { tags }))
}
