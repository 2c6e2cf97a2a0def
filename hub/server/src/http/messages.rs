//! Messages in and the message log: `POST /v1/systems/{system}/messages` (a vendor's
//! native payload), its WSDL for SOAP systems, and `GET /v1/messages[/{id}]`.
//!
//! Every read of the log is recorded, since entries name clients.

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use carehub_core::hub::Sender;
use carehub_core::store::{LogEntry, LogFilter};
use carehub_model::{ErrorCode, OrgNumber};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::{record_read, Caller, SystemCaller};
use super::error::{client_param, instant, limit_param, org_param, ApiError, ApiResult, ErrorBody, Path, Query};
use super::state::AppState;
use crate::auth::Role;
use carehub_core::store::AccessQuery;

// ---------------------------------------------------------------------------------------
// Messages in

/// The receipt for a message the hub took.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReceiptBody {
    /// The message-log entry that holds the message.
    pub message_id: i64,
    /// `accepted`; `duplicate` when the same message was taken before; `stale` when a
    /// decision change is older than the decision's latest version (it changes nothing).
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
    /// Why a message taken was not acted on: `STALE_VERSION` for a stale decision change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
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
        (status = 200, description = "A repeat of a message taken before (`duplicate`), a decision change older than the latest version (`stale`, code `STALE_VERSION`); or a SOAP system's `...Response`",
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
pub(super) async fn post_message(
    State(state): State<AppState>,
    Path(system): Path<String>,
    caller: Result<SystemCaller, ApiError>,
    request: Request,
) -> Response {
    let Some(sys) = state.hub.registry().get(&system).cloned() else {
        return ApiError::new(ErrorCode::UnknownSystem, format!("no system named '{system}' is configured"))
            .into_response();
    };
    let result = take_message(&state, &sys, caller, request).await;
    if sys.speaks_soap() {
        return soap_answer(&sys, result);
    }
    match result {
        Ok(receipt) => {
            // A repeat or a stale version was taken before or is outdated: nothing new happened.
            let status = if matches!(receipt.status.as_str(), "duplicate" | "stale") {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            };
            (status, Json(receipt)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Authorises the sender, reads the body within the limit, and hands it to the hub.
pub(super) async fn take_message(
    state: &AppState,
    sys: &carehub_core::adapter::System,
    caller: Result<SystemCaller, ApiError>,
    request: Request,
) -> ApiResult<ReceiptBody> {
    let hub = &state.hub;
    let sender = sender_of(sys, caller?)?;
    if state.gate.closed() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            format!(
                "{} deliveries are waiting, more than the hub holds ({}); send again shortly",
                state.gate.backlog(),
                state.gate.max_backlog
            ),
        ));
    }
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = match to_bytes(request.into_body(), state.max_body).await {
        Ok(b) => b,
        Err(_) => {
            let reason = format!("the body is larger than {} bytes (or was cut off)", state.max_body);
            return Err(hub
                .refuse_unread(sys, content_type.as_deref(), ErrorCode::PayloadTooLarge, reason)
                .await
                .into());
        }
    };
    let receipt = hub.receive(sys, body.to_vec(), content_type.as_deref(), &sender).await?;
    Ok(ReceiptBody {
        message_id: receipt.message_id,
        status: receipt.status.as_str().to_owned(),
        message_type: receipt.message_type.as_str().to_owned(),
        decision_id: receipt.decision_id,
        order_id: receipt.order_id,
        visits: receipt.visits.iter().map(|v| serde_json::to_value(v).unwrap_or_default()).collect(),
        verification: receipt.verification,
        code: receipt.code.map(|c| c.as_str().to_owned()),
    })
}

/// Who may send as `sys`, and as whom the hub takes it: the system itself (its client
/// certificate or its system token), an administrator, or a provider's token on a provider
/// system (bound to its organisation number). The message endpoint and the validation
/// endpoint authorise alike.
pub(super) fn sender_of(sys: &carehub_core::adapter::System, caller: SystemCaller) -> ApiResult<Sender> {
    let system = sys.name.as_str();
    let claims = match caller {
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
    match claims.as_ref().map(|c| c.role) {
        // The system itself, by its client certificate: it may speak for every provider it
        // serves; the answer flow checks each order was sent to this system.
        None => Ok(Sender::Trusted),
        Some(Role::Admin) => Ok(Sender::Trusted),
        Some(Role::CaseManagement) if sys.role == carehub_core::adapter::SystemRole::CaseManagement => {
            Ok(Sender::Trusted)
        }
        Some(Role::ProviderSystem) if sys.role == carehub_core::adapter::SystemRole::ProviderSystem => {
            let org =
                claims.as_ref().and_then(|c| c.provider()).and_then(|o| OrgNumber::parse(o).ok()).ok_or_else(|| {
                    ApiError::new(ErrorCode::Unauthenticated, "a provider_system token must carry a valid org")
                })?;
            Ok(Sender::Provider(org))
        }
        Some(role) => Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("the role {} may not send as the {} system {system}", role.as_str(), sys.role.as_str()),
        )),
    }
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
                code: r.code.as_deref(),
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
pub(super) async fn get_wsdl(
    State(state): State<AppState>,
    Path(system): Path<String>,
    Query(q): Query<WsdlQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let sys = state
        .hub
        .registry()
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
    /// The payload's SHA-256 (hex; entries appended before it was kept have none).
    pub payload_sha256: Option<String>,
    /// Retention removed the payload; its hash remains.
    pub payload_removed: bool,
}

impl MessageView {
    fn from(e: LogEntry, with_payload: bool) -> Self {
        let (payload, payload_encoding) = if with_payload && !e.payload_removed {
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
            at: carehub_core::store::ts(e.at),
            system: e.system,
            vendor: e.vendor,
            direction: e.direction,
            message_type: e.message_type,
            content_type: e.content_type,
            status: e.status.as_str().to_owned(),
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
            payload_sha256: e.payload_hash,
            payload_removed: e.payload_removed,
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
pub(super) async fn list_messages(
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
        ..LogFilter::default()
    };
    let query = AccessQuery::new("GET /v1/messages")
        .with("client", filter.client.as_ref())
        .with("provider", filter.provider.as_ref())
        .with("order", filter.order_id.as_ref())
        .with("decision", filter.decision_id.as_ref())
        .with("type", filter.message_type.as_ref())
        .with("system", filter.system.as_ref())
        .with("status", filter.status.as_ref())
        .with("since", q.since.as_ref())
        .with("until", q.until.as_ref())
        .with("after", filter.after_seq)
        .with("limit", Some(limit));
    let asked = filter.client.clone();
    let entries = state.hub.store().log_entries(filter).await?;
    let clients = entries.iter().filter_map(|e| e.client.clone()).chain(asked);
    record_read(&state.hub, &caller, query, clients, entries.iter().map(|e| e.seq)).await?;
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
pub(super) async fn get_message(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<Json<MessageView>> {
    let entry = state
        .hub
        .store()
        .log_entry(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no message {id}")))?;
    if let Some(own) = caller.0.provider() {
        if entry.provider.as_deref() != Some(own) {
            return Err(ApiError::new(ErrorCode::Forbidden, "the message concerns another provider"));
        }
    }
    let query = AccessQuery::new("GET /v1/messages/{id}").with("id", Some(id));
    record_read(&state.hub, &caller, query, entry.client.clone(), [id]).await?;
    Ok(Json(MessageView::from(entry, true)))
}
