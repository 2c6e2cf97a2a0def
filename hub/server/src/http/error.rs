//! The API's error answers and the checks of its input.
//!
//! Every error is `{ "code", "message" }` with a code from [`ErrorCode`] that never changes
//! meaning; internal details are logged, never answered. The `Query` and `Path` extractors
//! and the parameter checks here refuse bad input in that same form, so no handler answers
//! axum's plain-text rejections.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use carehub_core::hub::Rejection;
use carehub_core::store::StoreError;
use carehub_model::{ErrorCode, OrgNumber, PersonalIdentityNumber};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::error;
use utoipa::ToSchema;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub message_id: Option<i64>,
    /// For `AMBIGUOUS_INVOICE`: the providers to choose from.
    pub providers: Vec<String>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code, e.g. `INVALID_PERSONAL_IDENTITY_NUMBER`.
    #[schema(value_type = ErrorCodeSchema)]
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// The message-log entry that records the refusal, when it was logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<i64>,
    /// For `AMBIGUOUS_INVOICE`: the providers that used the id; name one with `provider=`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<String>,
}

/// [`ErrorCode`] in the OpenAPI document: a string, one of the codes' wire forms.
pub struct ErrorCodeSchema;

impl utoipa::PartialSchema for ErrorCodeSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A stable error code: it never changes meaning; new situations get new codes."))
            .enum_values(Some(ErrorCode::ALL.map(ErrorCode::as_str)))
            .into()
    }
}

impl ToSchema for ErrorCodeSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "ErrorCode".into()
    }
}

/// `Query`, with a query string that does not parse refused as `BAD_REQUEST` in the API's
/// error form (axum's own rejection is plain text).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| Query(q))
            .map_err(|e| bad_request(e.body_text()))
    }
}

/// `Path`, with a segment that does not parse refused as `BAD_REQUEST` in the API's error
/// form.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(p)| Path(p))
            .map_err(|e| bad_request(e.body_text()))
    }
}

/// A `limit=` parameter: `default` when absent, refused outside 1 to `max` (a page size
/// the caller did not ask for would be a silent surprise).
pub(super) fn limit_param(limit: Option<usize>, default: usize, max: usize) -> ApiResult<usize> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(bad_request(format!("limit is 1 to {max}, not {n}"))),
    }
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), message_id: None, providers: Vec::new() }
    }

    pub fn status(&self) -> StatusCode {
        status_of(self.code)
    }
}

/// The HTTP status for a code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::MalformedPayload | ErrorCode::DtdForbidden | ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::UnknownMessageType
        | ErrorCode::MissingField
        | ErrorCode::InvalidValue
        | ErrorCode::InvalidDate
        | ErrorCode::InvalidPersonalIdentityNumber
        | ErrorCode::InvalidOrgNumber
        | ErrorCode::InvalidHsaId
        | ErrorCode::InvalidTagUid
        | ErrorCode::UnknownProvider
        | ErrorCode::UnknownOrder
        | ErrorCode::UnknownDecision
        | ErrorCode::MessageNotAllowed => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::DecisionConflict
        | ErrorCode::TagConflict
        | ErrorCode::AmbiguousInvoice
        | ErrorCode::StaleVersion => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::UnknownSystem => StatusCode::NOT_FOUND,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal | ErrorCode::HubMisconfigured | ErrorCode::DeliveryFailed | ErrorCode::DeliveryRefused => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (
            status,
            Json(ErrorBody {
                code: self.code.as_str().to_owned(),
                message: self.message,
                message_id: self.message_id,
                providers: self.providers,
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        // Nothing was taken: the sender is told when to try again.
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError { code: r.code, message: r.message, message_id: r.message_id, providers: Vec::new() }
    }
}

impl From<crate::auth::Refused> for ApiError {
    fn from(r: crate::auth::Refused) -> Self {
        ApiError::new(r.code(), r.0)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        error!(error = %e, "store failure");
        ApiError::new(ErrorCode::Unavailable, "the store is not available; try again later")
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

pub(super) fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, msg)
}

pub(super) fn instant(s: &Option<String>, key: &str) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    match s {
        None => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| Some(d.with_timezone(&chrono::Utc)))
            .map_err(|_| bad_request(format!("{key}: not an RFC 3339 instant"))),
    }
}

/// A `client=` parameter, normalised to 12 digits.
pub(super) fn client_param(s: &Option<String>) -> ApiResult<Option<String>> {
    s.as_deref()
        .map(|c| {
            PersonalIdentityNumber::parse(c).map(|p| p.expose().to_owned()).map_err(|e| ApiError::new(e.code, e.reason))
        })
        .transpose()
}

pub(super) fn org_param(s: &Option<String>) -> ApiResult<Option<String>> {
    s.as_deref()
        .map(|o| OrgNumber::parse(o).map(|o| o.as_str().to_owned()).map_err(|e| ApiError::new(e.code, e.reason)))
        .transpose()
}

/// Checks a `YYYY-MM` month.
pub(super) fn month_param(month: &str) -> ApiResult<String> {
    let ok = month.len() == 7
        && month.as_bytes()[4] == b'-'
        && chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d").is_ok();
    if ok {
        Ok(month.to_owned())
    } else {
        Err(ApiError::new(ErrorCode::InvalidDate, format!("'{month}' is not a month (YYYY-MM)")))
    }
}

/// A `YYYY-MM` month as a [`carehub_model::Month`], refused as `INVALID_DATE` like
/// [`month_param`].
pub(super) fn month_of(month: &str) -> ApiResult<carehub_model::Month> {
    let checked = month_param(month)?;
    carehub_core::followup::parse_month(&checked)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidDate, format!("'{month}' is not a month (YYYY-MM)")))
}
