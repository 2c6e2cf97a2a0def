//! The HTTP API (SPEC §8): messages in, the message log, orders and their traces,
//! deliveries, health, metrics and the OpenAPI document.
//!
//! Every error is `{ "code", "message" }` with a code from [`ErrorCode`] that never changes
//! meaning; internal details are logged, never answered. [`app`] builds the router from a
//! state, so tests can drive it without a socket.

use axum::body::{to_bytes, Body};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use carehub_core::pipeline::{Hub, Rejection, Sender};
use carehub_core::store::{DeliveryFilter, LogEntry, LogFilter, Op, OrderFilter, OrderRecord, StoreError};
use carehub_model::{ErrorCode, OrgNumber, PersonalIdentityNumber};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::error;
use utoipa::{OpenApi, ToSchema};

use crate::auth::{Caller, Role, SystemCaller};
use crate::server::AppState;

pub mod reports;
pub mod visits;

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
fn limit_param(limit: Option<usize>, default: usize, max: usize) -> ApiResult<usize> {
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
        | ErrorCode::MessageNotAllowed => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::DecisionConflict | ErrorCode::TagConflict | ErrorCode::AmbiguousInvoice => StatusCode::CONFLICT,
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
        response
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError { code: r.code, message: r.message, message_id: r.message_id, providers: Vec::new() }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        error!(error = %e, "store failure");
        ApiError::new(ErrorCode::Unavailable, "the store is not available; try again later")
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/systems/{system}/messages", post(post_message).get(get_wsdl))
        .route("/v1/messages", get(list_messages))
        .route("/v1/messages/{id}", get(get_message))
        .route("/v1/orders", get(list_orders))
        .route("/v1/orders/{id}", get(get_order))
        .route("/v1/orders/{id}/trace", get(order_trace))
        .route("/v1/tags", post(post_tag).get(list_tags))
        .route("/v1/visits", get(visits::list_visits))
        .route("/v1/visits/months/{month}/close", post(visits::close_month))
        .route("/v1/reports/manual-registrations", get(visits::manual_registrations))
        .route("/v1/reports/follow-up", get(reports::follow_up))
        .route("/v1/invoices/{id}/verification", get(visits::invoice_verification))
        .route("/v1/deliveries", get(list_deliveries))
        .route("/v1/deliveries/replay", post(replay))
        .route("/v1/audit/verify", get(audit_verify))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts every answered request in the request-duration histogram, by its matched route
/// (never the raw path, which carries ids), method and status class.
async fn observe(State(state): State<AppState>, request: Request, next: axum::middleware::Next) -> Response {
    let route = request.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let in_flight = state.hub.metrics.request_in_flight();
    let response = next.run(request).await;
    drop(in_flight);
    state.hub.metrics.http_request(
        route.as_deref().unwrap_or("unmatched"),
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

// ---------------------------------------------------------------------------------------
// Messages in

/// The receipt for a message the hub took.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceiptBody {
    /// The message-log entry that holds the message.
    pub message_id: i64,
    /// `accepted`, or `duplicate` when the same message was taken before.
    pub status: String,
    pub message_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// For visits: each visit's outcome, codes, and (for a copy) the first visit's id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub visits: Vec<serde_json::Value>,
    /// For an invoice or credit note: its verification report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub verification: Option<serde_json::Value>,
}

/// Send a system's native payload to the hub.
///
/// The payload is logged durably before this answers. A refused payload is logged as
/// rejected with its code, and the answer names the log entry.
///
/// The body is the vendor's own payload, per the system's profile (SPEC §5): XML
/// (Combine, Procapita), a SOAP 1.1 envelope (Treserva), JSON (Lifecare, Phoniro) or CSV
/// (ParaGå). A SOAP system answers in SOAP: the `...Response` envelope, or a SOAP fault
/// (`text/xml`) whose detail carries the same code as the JSON error would.
#[utoipa::path(post, path = "/v1/systems/{system}/messages", tag = "messages",
    params(("system" = String, Path, description = "The configured system's name")),
    request_body(description = "The vendor's payload, as its profile defines it", content(
        (String = "application/xml"),
        (String = "text/xml"),
        (Object = "application/json"),
        (String = "text/csv"),
    )),
    responses(
        (status = 202, description = "Taken and durably logged", body = ReceiptBody),
        (status = 200, description = "A repeat of a message taken before; or a SOAP system's `...Response`",
            content((ReceiptBody = "application/json"), (String = "text/xml"))),
        (status = 400, description = "MALFORMED_PAYLOAD, DTD_FORBIDDEN", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED (a SOAP system answers a fault)",
            content((ErrorBody = "application/json"), (String = "text/xml"))),
        (status = 403, description = "FORBIDDEN (a SOAP system answers a fault)",
            content((ErrorBody = "application/json"), (String = "text/xml"))),
        (status = 404, description = "UNKNOWN_SYSTEM", body = ErrorBody),
        (status = 409, description = "DECISION_CONFLICT, TAG_CONFLICT", body = ErrorBody),
        (status = 413, description = "PAYLOAD_TOO_LARGE", body = ErrorBody),
        (status = 422, description = "UNKNOWN_MESSAGE_TYPE, MISSING_FIELD, INVALID_VALUE, INVALID_DATE, INVALID_PERSONAL_IDENTITY_NUMBER, INVALID_ORG_NUMBER, INVALID_HSA_ID, INVALID_TAG_UID, UNKNOWN_PROVIDER, UNKNOWN_ORDER, MESSAGE_NOT_ALLOWED", body = ErrorBody),
        (status = 415, description = "UNSUPPORTED_ENCODING: the payload declares an encoding its vendor's profile does not accept, or one its bytes contradict", body = ErrorBody),
        (status = 500, description = "HUB_MISCONFIGURED (logged as rejected: the hub's configuration, not the message, is at fault), INTERNAL; a SOAP system's refusal is a SOAP 1.1 fault (faultcode soap:Client or soap:Server) with the code in detail/hub:error/hub:code",
            content((ErrorBody = "application/json"), (String = "text/xml"))),
        (status = 503, description = "UNAVAILABLE: not logged, send again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn post_message(
    State(state): State<AppState>,
    Path(system): Path<String>,
    caller: Result<SystemCaller, ApiError>,
    request: Request,
) -> Response {
    let Some(sys) = state.hub.registry.get(&system).cloned() else {
        return ApiError::new(ErrorCode::UnknownSystem, format!("no system named '{system}' is configured"))
            .into_response();
    };
    let result = take_message(&state, &sys, caller, request).await;
    if sys.speaks_soap() {
        return soap_answer(&sys, result);
    }
    match result {
        Ok(receipt) => {
            let status = if receipt.status == "duplicate" { StatusCode::OK } else { StatusCode::ACCEPTED };
            (status, Json(receipt)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Authorises the sender, reads the body within the limit, and hands it to the hub.
async fn take_message(
    state: &AppState,
    sys: &carehub_core::adapter::System,
    caller: Result<SystemCaller, ApiError>,
    request: Request,
) -> ApiResult<ReceiptBody> {
    let hub = &state.hub;
    let system = sys.name.as_str();
    let claims = match caller? {
        SystemCaller::Certificate(name) if name == system => None,
        SystemCaller::Certificate(name) => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("the client certificate of {name} may send only as {name}"),
            ))
        }
        SystemCaller::Token(claims) => Some(claims),
    };
    // A system's token speaks for the one system it names, whatever its role may do.
    if let Some(named) = claims.as_ref().filter(|c| c.role.is_system()).and_then(|c| c.system()) {
        if named != system {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this token is the system {named}'s: it may send only to /v1/systems/{named}/messages"),
            ));
        }
    }
    let sender = match claims.as_ref().map(|c| c.role) {
        // The system itself, by its client certificate: it may speak for every provider it
        // serves; the pipeline checks each order was sent to this system.
        None => Sender::Trusted,
        Some(Role::Admin) => Sender::Trusted,
        Some(Role::CaseManagement) if sys.role == carehub_core::adapter::SystemRole::CaseManagement => Sender::Trusted,
        Some(Role::ProviderSystem) if sys.role == carehub_core::adapter::SystemRole::ProviderSystem => {
            let org =
                claims.as_ref().and_then(|c| c.provider()).and_then(|o| OrgNumber::parse(o).ok()).ok_or_else(|| {
                    ApiError::new(ErrorCode::Unauthenticated, "a provider_system token must carry a valid org")
                })?;
            Sender::Provider(org)
        }
        Some(role) => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("the role {} may not send as the {} system {system}", role.as_str(), sys.role.as_str()),
            ))
        }
    };
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = match to_bytes(request.into_body(), state.max_body).await {
        Ok(b) => b,
        Err(_) => {
            let reason = format!("the body is larger than {} bytes (or was cut off)", state.max_body);
            return Err(hub
                .refuse_unread(system, content_type.as_deref(), ErrorCode::PayloadTooLarge, reason)
                .await
                .into());
        }
    };
    let receipt = hub.receive(system, body.to_vec(), content_type.as_deref(), &sender).await?;
    Ok(ReceiptBody {
        message_id: receipt.message_id,
        status: receipt.status.to_owned(),
        message_type: receipt.message_type.as_str().to_owned(),
        decision_id: receipt.decision_id,
        order_id: receipt.order_id,
        visits: receipt.visits.iter().map(|v| serde_json::to_value(v).unwrap_or_default()).collect(),
        verification: receipt.verification,
    })
}

/// A SOAP system's answer: the `...Response` envelope, or a fault with the error code
/// (`Client` when the message was at fault, `Server` when the hub was). Faults go out with
/// status 500 as SOAP 1.1 asks, except authentication failures, which keep 401 and 403.
fn soap_answer(sys: &carehub_core::adapter::System, result: ApiResult<ReceiptBody>) -> Response {
    use carehub_adapters::transport::soap;
    let xml = |status: StatusCode, body: String| {
        (status, [(header::CONTENT_TYPE, "text/xml; charset=utf-8")], body).into_response()
    };
    match result {
        Ok(r) => {
            let mapping =
                sys.mappings.mappings.iter().find(|m| {
                    m.direction == carehub_core::mapping::Direction::In && m.message.as_str() == r.message_type
                });
            let root = mapping.and_then(|m| m.root.as_deref()).unwrap_or("Message");
            let ns = mapping.and_then(|m| m.namespace.as_deref());
            let receipt = soap::SoapReceipt {
                message_id: r.message_id,
                status: &r.status,
                decision_id: r.decision_id.as_deref(),
                order_id: r.order_id.as_deref(),
            };
            xml(StatusCode::OK, soap::response(root, ns, &receipt))
        }
        Err(e) => {
            let status = e.status();
            let client = status.is_client_error();
            let http = match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => status,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            xml(http, soap::fault(client, e.code.as_str(), &e.message, e.message_id))
        }
    }
}

/// `?wsdl` on a SOAP system's message endpoint.
#[derive(Debug, Deserialize)]
pub struct WsdlQuery {
    wsdl: Option<String>,
}

/// The WSDL of a SOAP system's endpoint (`GET /v1/systems/{system}/messages?wsdl`).
#[utoipa::path(get, path = "/v1/systems/{system}/messages", tag = "messages",
    params(("system" = String, Path, description = "A SOAP system's name"),
        ("wsdl" = String, Query, description = "Present (any value, or empty): asks for the WSDL")),
    responses(
        (status = 200, description = "WSDL 1.1", content_type = "text/xml", body = String),
        (status = 400, description = "BAD_REQUEST: no `wsdl` parameter; messages are sent with POST", body = ErrorBody),
        (status = 404, description = "NOT_FOUND: not a SOAP system", body = ErrorBody),
    ))]
async fn get_wsdl(
    State(state): State<AppState>,
    Path(system): Path<String>,
    Query(q): Query<WsdlQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let sys = state
        .hub
        .registry
        .get(&system)
        .filter(|s| s.speaks_soap())
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("'{system}' is not a SOAP system")))?;
    if q.wsdl.is_none() {
        return Err(ApiError::new(ErrorCode::BadRequest, "send messages with POST; GET ?wsdl describes the endpoint"));
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let location = format!("{}://{host}/v1/systems/{system}/messages", state.scheme);
    let wsdl = carehub_adapters::transport::soap::wsdl(&system, &location, &sys.mappings);
    Ok(([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], wsdl).into_response())
}

// ---------------------------------------------------------------------------------------
// The message log

/// A message-log entry.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    pub id: i64,
    pub at: String,
    pub system: String,
    pub vendor: String,
    /// `in` or `out`.
    pub direction: String,
    pub message_type: String,
    pub content_type: String,
    /// accepted, rejected, duplicate, queued, delivered, retrying, dead_letter, requeued.
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub decision_id: Option<String>,
    pub order_id: Option<String>,
    /// The client's personal identity number (the log is where it may appear).
    pub client: Option<String>,
    pub provider: Option<String>,
    pub delivery_key: Option<String>,
    pub prev_hash: String,
    pub hash: String,
    /// What the hub made of the message (null when it made nothing of it).
    #[schema(value_type = Option<Object>)]
    pub canonical: Option<Value>,
    /// The raw bytes, as text (`payload_encoding` = `utf-8`) or base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_encoding: Option<String>,
}

impl MessageView {
    fn from(e: LogEntry, with_payload: bool) -> Self {
        let (payload, payload_encoding) = if with_payload {
            match String::from_utf8(e.payload) {
                Ok(s) => (Some(s), Some("utf-8".to_owned())),
                Err(b) => {
                    (Some(base64::engine::general_purpose::STANDARD.encode(b.into_bytes())), Some("base64".to_owned()))
                }
            }
        } else {
            (None, None)
        };
        MessageView {
            id: e.seq,
            at: e.at,
            system: e.system,
            vendor: e.vendor,
            direction: e.direction,
            message_type: e.message_type,
            content_type: e.content_type,
            status: e.status,
            error_code: e.error_code,
            error_message: e.error_message,
            decision_id: e.decision_id,
            order_id: e.order_id,
            client: e.client,
            provider: e.provider,
            delivery_key: e.delivery_key,
            prev_hash: e.prev_hash,
            hash: e.hash,
            canonical: e.canonical.and_then(|c| serde_json::from_str(&c).ok()),
            payload,
            payload_encoding,
        }
    }
}

/// Filters for `GET /v1/messages`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessageQuery {
    /// A client's personal identity number, in any accepted form (`INVALID_PERSONAL_IDENTITY_NUMBER`
    /// when it is not one).
    #[param(format = "personnummer")]
    pub client: Option<String>,
    /// A provider's organisation number (`INVALID_ORG_NUMBER` when it is not one).
    #[param(format = "organisationsnummer")]
    pub provider: Option<String>,
    pub order: Option<String>,
    pub decision: Option<String>,
    /// A message type: decision, order, order_ack, plan_notice.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub message_type: Option<String>,
    pub system: Option<String>,
    pub status: Option<String>,
    /// From this instant (RFC 3339).
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// Before this instant (RFC 3339).
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Entries after this id (paging).
    pub after: Option<i64>,
    /// At most this many: 1 to 1000, 100 by default (`BAD_REQUEST` outside the range).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// A page of the message log.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

fn bad_request(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, msg)
}

fn instant(s: &Option<String>, key: &str) -> ApiResult<Option<String>> {
    match s {
        None => Ok(None),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| Some(carehub_core::store::ts(d.with_timezone(&chrono::Utc))))
            .map_err(|_| bad_request(format!("{key}: not an RFC 3339 instant"))),
    }
}

/// A `client=` parameter, normalised to 12 digits.
fn client_param(s: &Option<String>) -> ApiResult<Option<String>> {
    s.as_deref()
        .map(|c| {
            PersonalIdentityNumber::parse(c).map(|p| p.expose().to_owned()).map_err(|e| ApiError::new(e.code, e.reason))
        })
        .transpose()
}

fn org_param(s: &Option<String>) -> ApiResult<Option<String>> {
    s.as_deref()
        .map(|o| OrgNumber::parse(o).map(|o| o.as_str().to_owned()).map_err(|e| ApiError::new(e.code, e.reason)))
        .transpose()
}

/// Records who read the log.
async fn record_read(hub: &Hub, caller: &Caller, what: String) -> ApiResult<()> {
    hub.store
        .commit(vec![Op::RecordRead { subject: caller.0.sub.clone(), role: caller.0.role.as_str().to_owned(), what }])
        .await?;
    Ok(())
}

/// Read the message log.
///
/// A provider's token sees only entries about its own organisation. Every read is recorded.
#[utoipa::path(get, path = "/v1/messages", tag = "messages", params(MessageQuery),
    responses(
        (status = 200, body = MessagePage),
        (status = 400, description = "BAD_REQUEST: a parameter does not parse or is out of range", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: a provider asks for another provider's messages", body = ErrorBody),
        (status = 422, description = "INVALID_PERSONAL_IDENTITY_NUMBER, INVALID_ORG_NUMBER: a client or provider that is not one", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn list_messages(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<MessageQuery>,
) -> ApiResult<Json<MessagePage>> {
    let client = client_param(&q.client)?;
    let mut provider = org_param(&q.provider)?;
    if let Some(own) = caller.0.provider() {
        if provider.as_deref().is_some_and(|p| p != own) {
            return Err(ApiError::new(ErrorCode::Forbidden, "a provider reads only its own messages"));
        }
        provider = Some(own.to_owned());
    }
    let limit = limit_param(q.limit, 100, 1000)?;
    let filter = LogFilter {
        client,
        provider,
        order_id: q.order.clone(),
        decision_id: q.decision.clone(),
        message_type: q.message_type.clone(),
        system: q.system.clone(),
        status: q.status.clone(),
        since: instant(&q.since, "since")?,
        until: instant(&q.until, "until")?,
        after_seq: q.after,
        limit,
        with_payload: false,
    };
    record_read(&state.hub, &caller, format!("list messages {filter:?}")).await?;
    let entries = state.hub.store.log_entries(filter).await?;
    let next_after = (entries.len() == limit).then(|| entries.last().map(|e| e.seq)).flatten();
    Ok(Json(MessagePage { messages: entries.into_iter().map(|e| MessageView::from(e, false)).collect(), next_after }))
}

/// One message-log entry, with its raw payload.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = i64, Path, description = "The entry's id")),
    responses(
        (status = 200, body = MessageView),
        (status = 400, description = "BAD_REQUEST: the id is not an integer", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the entry concerns another provider", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn get_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<MessageView>> {
    record_read(&state.hub, &caller, format!("message {id}")).await?;
    let entry = state
        .hub
        .store
        .log_entry(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no message {id}")))?;
    if let Some(own) = caller.0.provider() {
        if entry.provider.as_deref() != Some(own) {
            return Err(ApiError::new(ErrorCode::Forbidden, "the message concerns another provider"));
        }
    }
    Ok(Json(MessageView::from(entry, true)))
}

// ---------------------------------------------------------------------------------------
// Orders

/// An order, where it stands, and whether it is overdue.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    #[schema(value_type = Object)]
    pub order: Value,
    pub source_system: String,
    pub provider_system: String,
    /// queued, delivered, dead_letter, accepted, rejected.
    pub status: String,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub ack_status: Option<String>,
    pub ack_reason: Option<String>,
    pub acked_at: Option<String>,
    pub plan_established_on: Option<String>,
    pub plan_received_at: Option<String>,
    /// not_confirmed (no ack by execute_by), plan_missing (no plan by plan_due).
    pub overdue: Vec<String>,
}

impl OrderView {
    fn from(r: OrderRecord, today: chrono::NaiveDate) -> Self {
        OrderView {
            overdue: r.overdue_reasons(today).into_iter().map(str::to_owned).collect(),
            order: serde_json::to_value(&r.order).unwrap_or(Value::Null),
            source_system: r.source_system,
            provider_system: r.provider_system,
            status: r.status,
            created_at: r.created_at,
            delivered_at: r.delivered_at,
            ack_status: r.ack_status,
            ack_reason: r.ack_reason,
            acked_at: r.acked_at,
            plan_established_on: r.plan_established_on,
            plan_received_at: r.plan_received_at,
        }
    }
}

/// Filters for `GET /v1/orders`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrderQuery {
    /// Only orders past a deadline (no ack by execute-by, or no plan by plan-due).
    pub overdue: Option<bool>,
    /// A provider's organisation number (`INVALID_ORG_NUMBER` when it is not one).
    #[param(format = "organisationsnummer")]
    pub provider: Option<String>,
    pub status: Option<String>,
    /// At most this many: 1 to 10000, 1000 by default (`BAD_REQUEST` outside the range).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// Orders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderList {
    pub orders: Vec<OrderView>,
}

/// List orders; `overdue=true` lists those past a deadline.
#[utoipa::path(get, path = "/v1/orders", tag = "orders", params(OrderQuery),
    responses(
        (status = 200, body = OrderList),
        (status = 400, description = "BAD_REQUEST: a parameter does not parse or is out of range", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: a provider asks for another provider's orders", body = ErrorBody),
        (status = 422, description = "INVALID_ORG_NUMBER: a provider that is not one", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn list_orders(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<OrderQuery>,
) -> ApiResult<Json<OrderList>> {
    let mut provider = org_param(&q.provider)?;
    if let Some(own) = caller.0.provider() {
        if provider.as_deref().is_some_and(|p| p != own) {
            return Err(ApiError::new(ErrorCode::Forbidden, "a provider lists only its own orders"));
        }
        provider = Some(own.to_owned());
    }
    let filter = OrderFilter {
        provider,
        status: q.status.clone(),
        overdue_on: q.overdue.unwrap_or(false).then(|| state.hub.today()),
        limit: limit_param(q.limit, 1000, 10_000)?,
    };
    let orders = state.hub.store.orders(filter).await?;
    Ok(Json(OrderList { orders: orders.into_iter().map(|o| OrderView::from(o, state.hub.today())).collect() }))
}

async fn order_for(state: &AppState, caller: &Caller, id: &str) -> ApiResult<OrderRecord> {
    let record =
        state.hub.store.order(id).await?.ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no order {id}")))?;
    if let Some(own) = caller.0.provider() {
        if record.order.provider.as_str() != own {
            return Err(ApiError::new(ErrorCode::Forbidden, "the order belongs to another provider"));
        }
    }
    Ok(record)
}

/// One order.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "The order id")),
    responses(
        (status = 200, body = OrderView),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the order belongs to another provider", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    Ok(Json(OrderView::from(order_for(&state, &caller, &id).await?, state.hub.today())))
}

/// One step of an order's life.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TraceStep {
    /// The message-log entry.
    pub message_id: i64,
    pub at: String,
    /// What happened, in words.
    pub step: String,
    pub direction: String,
    pub system: String,
    pub message_type: String,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// An outbox row.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    pub id: i64,
    pub system: String,
    pub message_type: String,
    pub order_id: Option<String>,
    pub idempotency_key: String,
    /// pending, delivered, dead.
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: String,
    pub last_error: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
}

impl From<carehub_core::store::Delivery> for DeliveryView {
    fn from(d: carehub_core::store::Delivery) -> Self {
        DeliveryView {
            id: d.id,
            system: d.system,
            message_type: d.message_type,
            order_id: d.order_id,
            idempotency_key: d.idempotency_key,
            state: d.state,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            last_error: d.last_error,
            created_at: d.created_at,
            delivered_at: d.delivered_at,
        }
    }
}

/// The lifecycle of an order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Trace {
    pub order: OrderView,
    pub steps: Vec<TraceStep>,
    pub deliveries: Vec<DeliveryView>,
    /// The order's visits with their outcome and codes (the first 10,000).
    #[schema(value_type = Vec<Object>)]
    pub visits: Vec<Value>,
    /// The invoice lines that name the order, each with its verification: one per
    /// verification (an invoice verified again with a credit note appears again), oldest
    /// first, with the log entry that holds the report.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub invoice_lines: Vec<Value>,
}

/// The lines of a verified invoice's log entry that name `order_id`, with the invoice they
/// are on and their verification.
fn invoice_lines(e: &LogEntry, order_id: &str) -> Vec<Value> {
    if e.direction != "in" || e.status != "accepted" || !matches!(e.message_type.as_str(), "invoice" | "credit_note") {
        return Vec::new();
    }
    let Some(report) = e.canonical.as_deref().and_then(|c| serde_json::from_str::<Value>(c).ok()) else {
        return Vec::new();
    };
    report["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["order_id"] == order_id)
        .map(|l| {
            serde_json::json!({
                "message_id": e.seq, "at": e.at, "provider": report["provider"], "invoice_id": report["invoice_id"],
                "kind": report["kind"], "month": report["month"], "received_as": e.message_type, "line": l,
            })
        })
        .collect()
}

fn describe_step(e: &LogEntry) -> String {
    let what = e.message_type.replace('_', " ");
    match (e.direction.as_str(), e.status.as_str()) {
        ("in", "accepted") => format!("{what} received from {}", e.system),
        ("in", "duplicate") => format!("{what} received again from {} (a repeat, not acted on)", e.system),
        ("in", "rejected") => format!("{what} from {} rejected ({})", e.system, e.error_code.as_deref().unwrap_or("?")),
        ("out", "queued") => format!("{what} queued for {}", e.system),
        ("out", "delivered") => format!("{what} delivered to {}", e.system),
        ("out", "retrying") => format!("{what} delivery to {} failed, will retry", e.system),
        ("out", "dead_letter") => format!("{what} delivery to {} dead-lettered", e.system),
        ("out", "requeued") => format!("{what} for {} requeued by replay", e.system),
        (d, s) => format!("{what} {d} {s} ({})", e.system),
    }
}

/// The lifecycle of an order: decision, deliveries, acknowledgement, plan, visits, and the
/// invoice lines that name it with their verification.
#[utoipa::path(get, path = "/v1/orders/{id}/trace", tag = "orders",
    params(("id" = String, Path, description = "The order id")),
    responses(
        (status = 200, body = Trace),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the order belongs to another provider", body = ErrorBody),
        (status = 404, description = "NOT_FOUND", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn order_trace(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Trace>> {
    let record = order_for(&state, &caller, &id).await?;
    record_read(&state.hub, &caller, format!("trace {id}")).await?;
    let mut entries = state
        .hub
        .store
        .log_entries(LogFilter { order_id: Some(id.clone()), limit: 10_000, ..LogFilter::default() })
        .await?;
    // Another provider's invoice may name the order (INV004): not the provider's to read.
    if let Some(own) = caller.0.provider() {
        entries.retain(|e| e.provider.as_deref().is_none_or(|p| p == own));
    }
    let invoice_lines = entries.iter().flat_map(|e| invoice_lines(e, &id)).collect();
    let deliveries = state
        .hub
        .store
        .deliveries(DeliveryFilter { order_id: Some(id.clone()), limit: 1000, ..DeliveryFilter::default() })
        .await?;
    let steps = entries
        .iter()
        .map(|e| TraceStep {
            message_id: e.seq,
            at: e.at.clone(),
            step: describe_step(e),
            direction: e.direction.clone(),
            system: e.system.clone(),
            message_type: e.message_type.clone(),
            status: e.status.clone(),
            error_code: e.error_code.clone(),
            error_message: e.error_message.clone(),
        })
        .collect();
    let visits = state
        .hub
        .store
        .visits(carehub_core::store::VisitFilter { order_id: Some(id.clone()), limit: 10_000, ..Default::default() })
        .await?;
    Ok(Json(Trace {
        order: OrderView::from(record, state.hub.today()),
        steps,
        deliveries: deliveries.into_iter().map(DeliveryView::from).collect(),
        visits: visits.into_iter().map(|v| serde_json::to_value(v).unwrap_or_default()).collect(),
        invoice_lines,
    }))
}

// ---------------------------------------------------------------------------------------
// The tag registry

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
async fn post_tag(State(state): State<AppState>, caller: Caller, body: axum::body::Bytes) -> ApiResult<Response> {
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
async fn list_tags(
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
    record_read(&state.hub, &caller, "tags".into()).await?;
    Ok(Json(TagList { tags: state.hub.store.tags(client, tag).await? }))
}

// ---------------------------------------------------------------------------------------
// Deliveries and audit

/// Filters for `GET /v1/deliveries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// pending, delivered or dead.
    pub state: Option<String>,
    pub order: Option<String>,
    /// At most this many: 1 to 10000, 1000 by default (`BAD_REQUEST` outside the range).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// Outbox rows.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}

/// The outbox (`state=dead` lists dead letters).
#[utoipa::path(get, path = "/v1/deliveries", tag = "deliveries", params(DeliveryQuery),
    responses(
        (status = 200, body = DeliveryList),
        (status = 400, description = "BAD_REQUEST: a parameter does not parse or is out of range", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the role (or organisation) may not read this", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<DeliveryQuery>,
) -> ApiResult<Json<DeliveryList>> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let rows = state
        .hub
        .store
        .deliveries(DeliveryFilter { state: q.state, order_id: q.order, limit: limit_param(q.limit, 1000, 10_000)? })
        .await?;
    Ok(Json(DeliveryList { deliveries: rows.into_iter().map(DeliveryView::from).collect() }))
}

/// Which dead letters to replay.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ReplayRequest {
    /// Delivery ids; all dead letters when absent.
    #[serde(default, deserialize_with = "integral_ids")]
    pub ids: Option<Vec<i64>>,
}

/// Ids as JSON numbers: `7`, or `7.0`, which JSON Schema (and so the OpenAPI document) also
/// counts as an integer.
fn integral_ids<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
    let Some(numbers) = Option::<Vec<serde_json::Number>>::deserialize(d)? else { return Ok(None) };
    numbers
        .iter()
        .map(|n| {
            n.as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
                .ok_or_else(|| serde::de::Error::custom(format!("{n} is not an id")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Put dead letters back in the outbox (admin).
#[utoipa::path(post, path = "/v1/deliveries/replay", tag = "deliveries",
    request_body(content = Option<ReplayRequest>, description = "Which dead letters; no body replays them all"),
    responses(
        (status = 200, body = DeliveryList),
        (status = 400, description = "BAD_REQUEST: the body is not a replay request", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: the role (or organisation) may not read this", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> ApiResult<Json<DeliveryList>> {
    caller.require(&[Role::Admin])?;
    // No body (an empty one, or null) replays every dead letter.
    let ids = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice::<Option<ReplayRequest>>(&body)
            .map_err(|e| bad_request(format!("not a replay request ({{\"ids\": [...]}}): {e}")))?
            .and_then(|r| r.ids)
    };
    let rows = state.hub.replay(ids).await?;
    Ok(Json(DeliveryList { deliveries: rows.into_iter().map(DeliveryView::from).collect() }))
}

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
async fn audit_verify(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<ChainView>> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    record_read(&state.hub, &caller, "verify chain".into()).await?;
    let r = carehub_core::store::verify_chain(state.hub.store.as_ref()).await?;
    Ok(Json(ChainView {
        ok: r.first_bad.is_none(),
        entries: r.entries,
        head: r.head,
        first_bad_entry: r.first_bad.as_ref().map(|(s, _)| *s),
        reason: r.first_bad.map(|(_, why)| why),
    }))
}

// ---------------------------------------------------------------------------------------
// Operations

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
async fn healthz() -> Json<Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the store answers and the delivery loop runs.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, description = "UNAVAILABLE: the store does not answer or the delivery loop is not running", body = ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state.hub.store.ping().await?;
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
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let accept = headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    let format = carehub_core::metrics::Format::from_accept(&accept);
    let overdue = state.hub.store.overdue_counts(state.hub.today()).await?;
    let outbox = state.hub.store.outbox_counts().await?;
    let text = state.hub.metrics.render(overdue, outbox, format);
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(format.content_type()));
    Ok((headers, Body::from(text)).into_response())
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The OpenAPI document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "carehub", description = "The integration hub for Swedish municipal home care. Errors are {code, message} with stable codes."),
    paths(post_message, get_wsdl, post_tag, list_tags, visits::list_visits, visits::close_month, visits::manual_registrations, reports::follow_up, visits::invoice_verification, list_messages, get_message, list_orders, get_order, order_trace, list_deliveries, replay, audit_verify, healthz, readyz, metrics),
    components(schemas(ErrorBody, ErrorCodeSchema, visits::Outcome, reports::ReportFormat, ReceiptBody, TagBody, TagList, TagRegistered, visits::VisitPage, visits::ManualReport, visits::ManualShareRow, MessageView, MessagePage, OrderView, OrderList, Trace, TraceStep, DeliveryView, DeliveryList, ReplayRequest, ChainView)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200, description = "OpenAPI 3.1")))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
