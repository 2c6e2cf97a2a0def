//! Row -> record mapping: the column lists each read selects and the functions that turn a
//! row into the store's records (the same lists, in the same order, as SQLite's).

use carehub_core::store::*;
use carehub_model::Order;
use chrono::{DateTime, NaiveDate, Utc};
use postgres::Row;

use crate::db::col;

fn unreadable(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::backend("postgres: a stored row does not read back", format!("{what}: {detail}"))
}

/// An instant stored in the [`ts`] form, read back.
pub(crate) fn instant(r: &Row, i: usize) -> Result<DateTime<Utc>, StoreError> {
    let text: &str = col(r, i)?;
    parse_store_ts(text).ok_or_else(|| unreadable("an instant", text))
}

/// [`instant`] for a column that may be null.
pub(crate) fn instant_opt(r: &Row, i: usize) -> Result<Option<DateTime<Utc>>, StoreError> {
    let text: Option<&str> = col(r, i)?;
    text.map(|t| parse_store_ts(t).ok_or_else(|| unreadable("an instant", t))).transpose()
}

/// A date stored as ISO text, read back.
pub(crate) fn date(r: &Row, i: usize) -> Result<NaiveDate, StoreError> {
    let text: &str = col(r, i)?;
    text.parse().map_err(|e| unreadable("a date", e))
}

/// A closed set's stored text ([`LogStatus`], [`OrderStatus`], [`DeliveryState`]), read back.
pub(crate) fn parsed<T>(r: &Row, i: usize) -> Result<T, StoreError>
where
    T: std::str::FromStr<Err = carehub_model::UnknownStatus>,
{
    let text: &str = col(r, i)?;
    text.parse().map_err(|e| unreadable("a status", e))
}

/// JSON stored as text, read back.
pub(crate) fn json(r: &Row, i: usize) -> Result<serde_json::Value, StoreError> {
    let text: &str = col(r, i)?;
    serde_json::from_str(text).map_err(|e| unreadable("JSON", e))
}

/// A count or number that the store's records keep unsigned or narrower.
pub(crate) fn narrow<T: TryFrom<i64>>(r: &Row, i: usize) -> Result<T, StoreError> {
    let n: i64 = col(r, i)?;
    T::try_from(n).map_err(|_| unreadable("a number", n))
}

pub(crate) const DELIVERY_COLUMNS: &str =
    "id, system, message_type, order_id, idempotency_key, content_type, endpoint, body,
    state, attempts, next_attempt_at, last_error, created_at, delivered_at, action, log_seq";

pub(crate) fn delivery_row(r: &Row) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        id: col(r, 0)?,
        system: col(r, 1)?,
        message_type: col(r, 2)?,
        order_id: col(r, 3)?,
        idempotency_key: col(r, 4)?,
        content_type: col(r, 5)?,
        endpoint: col(r, 6)?,
        body: col(r, 7)?,
        state: parsed(r, 8)?,
        attempts: narrow(r, 9)?,
        next_attempt_at: instant(r, 10)?,
        last_error: col(r, 11)?,
        created_at: instant(r, 12)?,
        delivered_at: instant_opt(r, 13)?,
        action: col(r, 14)?,
        log_seq: col(r, 15)?,
    })
}

pub(crate) const LOG_COLUMNS: &str =
    "seq, at, system, vendor, direction, message_type, content_type, canonical, status,
    error_code, error_message, decision_id, order_id, client, provider, delivery_key, prev_hash, hash,
    payload_sha256, retained_by IS NOT NULL";

pub(crate) fn log_row(r: &Row, with_payload: bool) -> Result<LogEntry, StoreError> {
    Ok(LogEntry {
        seq: col(r, 0)?,
        at: instant(r, 1)?,
        system: col(r, 2)?,
        vendor: col(r, 3)?,
        direction: col(r, 4)?,
        message_type: col(r, 5)?,
        content_type: col(r, 6)?,
        canonical: col(r, 7)?,
        status: parsed(r, 8)?,
        error_code: col(r, 9)?,
        error_message: col(r, 10)?,
        decision_id: col(r, 11)?,
        order_id: col(r, 12)?,
        client: col(r, 13)?,
        provider: col(r, 14)?,
        delivery_key: col(r, 15)?,
        prev_hash: col(r, 16)?,
        hash: col(r, 17)?,
        payload_hash: col(r, 18)?,
        payload_removed: col(r, 19)?,
        payload: if with_payload { col(r, 20)? } else { Vec::new() },
    })
}

pub(crate) const ORDER_COLUMNS: &str = "canonical, source_system, provider_system, status, created_at, delivered_at,
    ack_status, ack_reason, acked_at, plan_established_on, plan_received_at";

/// [`ORDER_COLUMNS`] of the table aliased `alias` in a join.
pub(crate) fn order_columns_of(alias: &str) -> String {
    ORDER_COLUMNS.split(',').map(|c| format!("{alias}.{}", c.trim())).collect::<Vec<_>>().join(", ")
}

pub(crate) fn order_row(r: &Row) -> Result<OrderRecord, StoreError> {
    order_row_at(r, 0)
}

/// An order read from [`ORDER_COLUMNS`] starting at column `at` (after a join's own columns).
pub(crate) fn order_row_at(r: &Row, at: usize) -> Result<OrderRecord, StoreError> {
    let canonical: &str = col(r, at)?;
    let order: Order = serde_json::from_str(canonical).map_err(|e| unreadable("an order", e))?;
    let ack_status: Option<&str> = col(r, at + 6)?;
    Ok(OrderRecord {
        order,
        source_system: col(r, at + 1)?,
        provider_system: col(r, at + 2)?,
        status: parsed(r, at + 3)?,
        created_at: instant(r, at + 4)?,
        delivered_at: instant_opt(r, at + 5)?,
        ack_status: ack_status.map(|t| t.parse().map_err(|e| unreadable("an answer", e))).transpose()?,
        ack_reason: col(r, at + 7)?,
        acked_at: instant_opt(r, at + 8)?,
        plan_established_on: col(r, at + 9)?,
        plan_received_at: instant_opt(r, at + 10)?,
    })
}

pub(crate) const INVOICE_COLUMNS: &str = "provider, kind, id, month, canonical, log_seq, received_at";

pub(crate) fn invoice_row(r: &Row) -> Result<InvoiceRecord, StoreError> {
    Ok(InvoiceRecord {
        provider: col(r, 0)?,
        kind: col(r, 1)?,
        id: col(r, 2)?,
        month: col(r, 3)?,
        canonical: col(r, 4)?,
        log_seq: col(r, 5)?,
        received_at: instant(r, 6)?,
    })
}

pub(crate) const VISIT_COLUMNS: &str =
    "id, source_id, system, provider, client, order_id, staff, check_in, check_out, month,
    seconds, planned_minutes, visit_outcome, manual, outcome, codes, findings, canonical, log_seq, line, received_at";

pub(crate) fn visit_row(r: &Row) -> Result<VisitRecord, StoreError> {
    let lenient = |i: usize| -> Result<serde_json::Value, StoreError> {
        let text: &str = col(r, i)?;
        Ok(serde_json::from_str(text).unwrap_or(serde_json::Value::Null))
    };
    let codes: &str = col(r, 15)?;
    Ok(VisitRecord {
        seq: col(r, 0)?,
        id: col(r, 1)?,
        system: col(r, 2)?,
        provider: col(r, 3)?,
        client: col(r, 4)?,
        order_id: col(r, 5)?,
        staff: col(r, 6)?,
        check_in: instant(r, 7)?,
        check_out: instant_opt(r, 8)?,
        month: col(r, 9)?,
        seconds: col(r, 10)?,
        planned_minutes: col(r, 11)?,
        visit_outcome: col(r, 12)?,
        manual: col(r, 13)?,
        outcome: parsed(r, 14)?,
        codes: codes.split_whitespace().map(str::to_owned).collect(),
        findings: lenient(16)?,
        visit: lenient(17)?,
        message_id: col(r, 18)?,
        line: col(r, 19)?,
        received_at: instant(r, 20)?,
    })
}

/// Whether `day` falls in one of an order's pauses, as `orders.paused` keeps them (a JSON
/// array of `[from, to]` pairs, NULL for none). Dates are ISO text, so they compare as text.
pub(crate) fn paused_on(paused: Option<&str>, day: &str) -> bool {
    let Some(text) = paused else { return false };
    let Ok(pairs) = serde_json::from_str::<Vec<[String; 2]>>(text) else { return false };
    pairs.iter().any(|[from, to]| from.as_str() <= day && day <= to.as_str())
}
