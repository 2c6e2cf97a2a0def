//! The outbox: `GET /v1/deliveries` and `POST /v1/deliveries/replay`.

use axum::extract::State;
use axum::Json;
use carehub_core::store::{ts, DeliveryFilter};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{bad_request, limit_param, ApiResult, ErrorBody, Query};
use super::state::AppState;
use crate::auth::Role;

/// Filters for `GET /v1/deliveries`.
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
            state: d.state.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: ts(d.next_attempt_at),
            last_error: d.last_error,
            created_at: ts(d.created_at),
            delivered_at: d.delivered_at.map(ts),
        }
    }
}

/// The lifecycle of an order.
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
pub(super) async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<DeliveryQuery>,
) -> ApiResult<Json<DeliveryList>> {
    caller.require(&[Role::Admin, Role::Auditor])?;
    let rows = state
        .hub
        .store()
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
pub(super) async fn replay(
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
