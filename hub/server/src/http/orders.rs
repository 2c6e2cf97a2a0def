//! Orders and their traces: `GET /v1/orders[/{id}]` and `GET /v1/orders/{id}/trace`,
//! everything the hub logged and delivered about one order, and the terms it stands on
//! after its decision's changes (SPEC §4.4).

use axum::extract::State;
use axum::Json;
use carehub_core::store::{ts, DeliveryFilter, LogEntry, LogFilter, OrderFilter, OrderRecord, ProviderReportFilter};
use carehub_model::{ErrorCode, Order};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::{record_read, Caller};
use super::deliveries::DeliveryView;
use super::deviations::ReportView;
use super::error::{client_param, limit_param, org_param, ApiError, ApiResult, ErrorBody, Path, Query};
use super::state::AppState;
use carehub_core::store::AccessQuery;

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
            status: r.status.as_str().to_owned(),
            created_at: ts(r.created_at),
            delivered_at: r.delivered_at.map(ts),
            ack_status: r.ack_status.map(|s| s.as_str().to_owned()),
            ack_reason: r.ack_reason,
            acked_at: r.acked_at.map(ts),
            plan_established_on: r.plan_established_on,
            plan_received_at: r.plan_received_at.map(ts),
        }
    }
}

/// The terms an order stands on after its decision's changes: its dates, the services it
/// was placed with and how they changed, its pauses, and why it ended.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderTerms {
    /// The latest version of the decision applied to the order (0: as first sent).
    pub version: u32,
    pub start_date: String,
    /// Its last day, included.
    pub end_date: Option<String>,
    /// Why it ended (`provider_switch`, `moved_to_residential_care`, ...), once it has.
    pub ended: Option<String>,
    /// Services changed from a day on: `{from, version, services}`.
    #[schema(value_type = Vec<Object>)]
    pub revisions: Vec<Value>,
    /// Days with no help: `{from, to, reason, version}`.
    #[schema(value_type = Vec<Object>)]
    pub pauses: Vec<Value>,
    /// The terms in words, in the order of the days they apply from.
    pub summary: Vec<String>,
}

impl OrderTerms {
    pub fn of(order: &Order) -> OrderTerms {
        OrderTerms {
            version: order.version,
            start_date: order.start_date.to_string(),
            end_date: order.end_date.map(|d| d.to_string()),
            ended: order.ended.map(|r| wire(&r)),
            revisions: order.revisions.iter().map(|r| serde_json::to_value(r).unwrap_or_default()).collect(),
            pauses: order.pauses.iter().map(|p| serde_json::to_value(p).unwrap_or_default()).collect(),
            summary: summary(order),
        }
    }
}

/// A value's serde name (`provider_switch`), for enums that serialise as one string.
fn wire<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn services_text(services: &[carehub_model::Service]) -> String {
    services.iter().map(|s| format!("{} {} min/month", s.code, s.minutes_per_month)).collect::<Vec<_>>().join(", ")
}

/// An order's terms in words, by the day each applies from.
fn summary(order: &Order) -> Vec<String> {
    let mut lines = vec![(order.start_date, format!("from {}: {}", order.start_date, services_text(&order.services)))];
    lines.extend(
        order
            .revisions
            .iter()
            .map(|r| (r.from, format!("from {} (version {}): {}", r.from, r.version, services_text(&r.services)))),
    );
    lines.extend(
        order
            .pauses
            .iter()
            .map(|p| (p.from, format!("paused {} to {} (version {}): {}", p.from, p.to, p.version, wire(&p.reason)))),
    );
    if let Some(end) = order.end_date {
        let why = order.ended.map(|r| format!(", ended: {}", wire(&r))).unwrap_or_default();
        lines.push((end, format!("last day {end}{why}")));
    }
    lines.sort_by_key(|(day, _)| *day);
    lines.into_iter().map(|(_, line)| line).collect()
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
    /// A client's personal identity number, 10 or 12 digits, with or without the
    /// separator (`INVALID_PERSONAL_IDENTITY_NUMBER` when it is not one): the client's
    /// orders over time, by start date.
    #[param(format = "personnummer")]
    pub client: Option<String>,
    /// A decision's orders (its namespaced id, `combine:DEC-2026-0001`), by start date:
    /// one, or several once its client switched provider. An order's id is the hub's own,
    /// made when the decision came in; this is how to find it from the decision.
    pub decision: Option<String>,
    /// At most this many: 1 to 10000, 1000 by default (`BAD_REQUEST` outside the range).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
}

/// Orders.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderList {
    pub orders: Vec<OrderView>,
}

/// List orders; `overdue=true` lists those past a deadline, `client=` a client's orders
/// over time (by start date; several once the client switched provider), `decision=` the
/// orders a decision made.
#[utoipa::path(get, path = "/v1/orders", tag = "orders", params(OrderQuery),
    responses(
        (status = 200, body = OrderList),
        (status = 400, description = "BAD_REQUEST: a parameter does not parse or is out of range", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED: no valid bearer token", body = ErrorBody),
        (status = 403, description = "FORBIDDEN: a provider asks for another provider's orders", body = ErrorBody),
        (status = 422, description = "INVALID_ORG_NUMBER: a provider that is not one; INVALID_PERSONAL_IDENTITY_NUMBER: a client that is not one", body = ErrorBody),
        (status = 503, description = "UNAVAILABLE: the store is not available; try again", body = ErrorBody),
    ),
    security(("bearer" = [])))]
pub(super) async fn list_orders(
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
    let client = client_param(&q.client)?;
    let filter = OrderFilter {
        provider,
        client,
        status: q.status.clone(),
        decision_id: q.decision.clone(),
        overdue_on: q.overdue.unwrap_or(false).then(|| state.hub.today()),
        limit: limit_param(q.limit, 1000, 10_000)?,
        ..OrderFilter::default()
    };
    let query = AccessQuery::new("GET /v1/orders")
        .with("provider", filter.provider.as_ref())
        .with("client", filter.client.as_ref())
        .with("status", filter.status.as_ref())
        .with("decision", filter.decision_id.as_ref())
        .with("overdue", q.overdue)
        .with("limit", Some(filter.limit));
    let orders = state.hub.store().orders(filter).await?;
    let clients = orders.iter().map(|o| o.order.client.expose().to_owned());
    record_read(&state.hub, &caller, query, clients, None).await?;
    Ok(Json(OrderList { orders: orders.into_iter().map(|o| OrderView::from(o, state.hub.today())).collect() }))
}

pub(super) async fn order_for(state: &AppState, caller: &Caller, id: &str) -> ApiResult<OrderRecord> {
    let record = state
        .hub
        .store()
        .order(id)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, format!("no order {id}")))?;
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
pub(super) async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderView>> {
    let record = order_for(&state, &caller, &id).await?;
    let query = AccessQuery::new("GET /v1/orders/{id}").with("id", Some(&id));
    record_read(&state.hub, &caller, query, Some(record.order.client.expose().to_owned()), None).await?;
    Ok(Json(OrderView::from(record, state.hub.today())))
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

/// Everything about one order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Trace {
    pub order: OrderView,
    /// The terms it stands on after its decision's changes.
    pub terms: OrderTerms,
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
    /// The deviations and changes of need the provider reported under the order, by day.
    #[serde(default)]
    pub reports: Vec<ReportView>,
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

/// What a decision's change, an order's change or end, or a provider's report was about,
/// from its canonical form: `paused 2026-11-05 to 2026-11-12`, `fall`. Never the free
/// text of a report, which may describe the client's health.
fn step_detail(e: &LogEntry) -> Option<String> {
    let c: Value = serde_json::from_str(e.canonical.as_deref()?).ok()?;
    let s = |v: &Value| v.as_str().map(str::to_owned);
    match e.message_type.as_str() {
        "decision_change" | "order_change" => {
            let change = &c["change"];
            let kind = s(&change["kind"])?;
            let what = match kind.as_str() {
                "paused" => format!("paused {} to {}", s(&change["from"])?, s(&change["to"])?),
                "end_date" => format!(
                    "last day {}",
                    s(&change["valid_to"]).or_else(|| s(&change["end_date"])).unwrap_or_default()
                ),
                "ended" => format!("ends {}", s(&change["on"]).unwrap_or_default()),
                "new_provider" => format!(
                    "provider {} from {}",
                    s(&change["provider"]).unwrap_or_default(),
                    s(&change["from"]).unwrap_or_default()
                ),
                _ => kind.replace('_', " "),
            };
            Some(format!("version {}, {what} from {}", c["version"], s(&c["effective_from"]).unwrap_or_default()))
        }
        "order_end" => Some(format!(
            "version {}, last day {} ({})",
            c["version"],
            s(&c["end_date"]).unwrap_or_default(),
            s(&c["reason"]).unwrap_or_default().replace('_', " ")
        )),
        "deviation" => Some(format!("{} on {}", s(&c["kind"])?, s(&c["occurred_on"]).unwrap_or_default())),
        "need_change" => Some(format!("{} help on {}", s(&c["direction"])?, s(&c["noticed_on"]).unwrap_or_default())),
        _ => None,
    }
}

fn describe_step(e: &LogEntry) -> String {
    let step = describe_outcome(e);
    match step_detail(e) {
        Some(detail) => format!("{step}: {detail}"),
        None => step,
    }
}

fn describe_outcome(e: &LogEntry) -> String {
    let what = e.message_type.replace('_', " ");
    match (e.direction.as_str(), e.status.as_str()) {
        ("in", "accepted") => format!("{what} received from {}", e.system),
        ("in", "duplicate") => format!("{what} received again from {} (a repeat, not acted on)", e.system),
        ("in", "stale") => format!("{what} from {} older than the latest version (not acted on)", e.system),
        ("in", "rejected") => format!("{what} from {} rejected ({})", e.system, e.error_code.as_deref().unwrap_or("?")),
        ("out", "queued") => format!("{what} queued for {}", e.system),
        ("out", "delivered") => format!("{what} delivered to {}", e.system),
        ("out", "retrying") => format!("{what} delivery to {} failed, will retry", e.system),
        ("out", "dead_letter") => format!("{what} delivery to {} dead-lettered", e.system),
        ("out", "requeued") => format!("{what} for {} requeued by replay", e.system),
        (d, s) => format!("{what} {d} {s} ({})", e.system),
    }
}

/// The lifecycle of an order: decision, deliveries, acknowledgement, plan, the decision's
/// changes (order changes, pauses, ends) and the terms they leave, visits, the deviations
/// and changes of need reported under it, and the invoice lines that name it with their
/// verification.
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
pub(super) async fn order_trace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Trace>> {
    let (trace, client, shown) = build_trace(&state, &caller, &id).await?;
    let query = AccessQuery::new("GET /v1/orders/{id}/trace").with("id", Some(&id));
    record_read(&state.hub, &caller, query, Some(client), shown).await?;
    Ok(Json(trace))
}

/// An order's trace as `caller` may see it, with the client and the log entries it shows,
/// not yet recorded: the caller records the read before answering.
pub(super) async fn build_trace(state: &AppState, caller: &Caller, id: &str) -> ApiResult<(Trace, String, Vec<i64>)> {
    let id = id.to_owned();
    let record = order_for(state, caller, &id).await?;
    let mut entries = state
        .hub
        .store()
        .log_entries(LogFilter { order_id: Some(id.clone()), limit: 10_000, ..LogFilter::default() })
        .await?;
    // Every version of the order's decision belongs in its story, also one logged under
    // another of the decision's orders (a switch's change names the new order).
    let changes = LogFilter {
        decision_id: Some(record.order.decision_id.as_str().to_owned()),
        message_type: Some("decision_change".into()),
        limit: 10_000,
        ..LogFilter::default()
    };
    entries.extend(state.hub.store().log_entries(changes).await?);
    entries.sort_by_key(|e| e.seq);
    entries.dedup_by_key(|e| e.seq);
    // Another provider's invoice may name the order (INV004): not the provider's to read.
    if let Some(own) = caller.0.provider() {
        entries.retain(|e| e.provider.as_deref().is_none_or(|p| p == own));
    }
    let invoice_lines = entries.iter().flat_map(|e| invoice_lines(e, &id)).collect();
    let deliveries = state
        .hub
        .store()
        .deliveries(DeliveryFilter { order_id: Some(id.clone()), limit: 1000, ..DeliveryFilter::default() })
        .await?;
    let steps = entries
        .iter()
        .map(|e| TraceStep {
            message_id: e.seq,
            at: ts(e.at),
            step: describe_step(e),
            direction: e.direction.clone(),
            system: e.system.clone(),
            message_type: e.message_type.clone(),
            status: e.status.as_str().to_owned(),
            error_code: e.error_code.clone(),
            error_message: e.error_message.clone(),
        })
        .collect();
    let visits = state
        .hub
        .store()
        .visits(carehub_core::store::VisitFilter { order_id: Some(id.clone()), limit: 10_000, ..Default::default() })
        .await?;
    let reports = state
        .hub
        .store()
        .provider_reports(ProviderReportFilter { order_id: Some(id.clone()), limit: 10_000, ..Default::default() })
        .await?;
    // The reads above are not one snapshot: an acknowledgement may have landed, and its
    // delivery gone out, since the order was first read. Read the order again, last, so its
    // status is never older than the deliveries and steps shown beside it.
    let record = state.hub.store().order(&id).await?.unwrap_or(record);
    let shown = entries.iter().map(|e| e.seq).chain(visits.iter().map(|v| v.message_id)).collect();
    let client = record.order.client.expose().to_owned();
    let trace = Trace {
        terms: OrderTerms::of(&record.order),
        order: OrderView::from(record, state.hub.today()),
        steps,
        deliveries: deliveries.into_iter().map(DeliveryView::from).collect(),
        visits: visits.into_iter().map(|v| serde_json::to_value(v).unwrap_or_default()).collect(),
        invoice_lines,
        reports: reports.into_iter().map(ReportView::from).collect(),
    };
    Ok((trace, client, shown))
}
