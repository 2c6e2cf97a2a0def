//! Row <-> record mapping: the column lists each read selects and the functions that turn
//! a row into the store's records.

use carehub_model::Order;
use chrono::{DateTime, Utc};
use rusqlite::types::{FromSqlError, Type};
use rusqlite::Row;

use crate::store::*;

/// An instant stored in the [`ts`] form, read back.
pub(super) fn instant(r: &Row<'_>, i: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text =
        r.get_ref(i)?.as_str().map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, e.into()))?;
    parse_store_ts(text).ok_or_else(|| not_an_instant(i, text))
}

/// [`instant`] for a column that may be null.
pub(super) fn instant_opt(r: &Row<'_>, i: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text = r
        .get_ref(i)?
        .as_str_or_null()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, e.into()))?;
    text.map(|t| parse_store_ts(t).ok_or_else(|| not_an_instant(i, t))).transpose()
}

/// A closed set's stored text ([`LogStatus`], [`OrderStatus`], [`DeliveryState`]), read back.
pub(super) fn parsed<T>(r: &Row<'_>, i: usize) -> rusqlite::Result<T>
where
    T: std::str::FromStr<Err = carehub_model::UnknownStatus>,
{
    let text =
        r.get_ref(i)?.as_str().map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, e.into()))?;
    text.parse().map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

fn not_an_instant(i: usize, text: &str) -> rusqlite::Error {
    let e: FromSqlError = FromSqlError::Other(format!("not an instant: {text:?}").into());
    rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e))
}

pub(super) const DELIVERY_COLUMNS: &str =
    "id, system, message_type, order_id, idempotency_key, content_type, endpoint, body,
    state, attempts, next_attempt_at, last_error, created_at, delivered_at, action, log_seq";

pub(super) fn delivery_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        system: r.get(1)?,
        message_type: r.get(2)?,
        order_id: r.get(3)?,
        idempotency_key: r.get(4)?,
        content_type: r.get(5)?,
        endpoint: r.get(6)?,
        body: r.get(7)?,
        state: parsed(r, 8)?,
        attempts: r.get(9)?,
        next_attempt_at: instant(r, 10)?,
        last_error: r.get(11)?,
        created_at: instant(r, 12)?,
        delivered_at: instant_opt(r, 13)?,
        action: r.get(14)?,
        log_seq: r.get(15)?,
    })
}

pub(super) const LOG_COLUMNS: &str =
    "seq, at, system, vendor, direction, message_type, content_type, canonical, status,
    error_code, error_message, decision_id, order_id, client, provider, delivery_key, prev_hash, hash,
    payload_sha256, retained_by IS NOT NULL";

pub(super) fn log_row(r: &Row<'_>, with_payload: bool) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        seq: r.get(0)?,
        at: instant(r, 1)?,
        system: r.get(2)?,
        vendor: r.get(3)?,
        direction: r.get(4)?,
        message_type: r.get(5)?,
        content_type: r.get(6)?,
        canonical: r.get(7)?,
        status: parsed(r, 8)?,
        error_code: r.get(9)?,
        error_message: r.get(10)?,
        decision_id: r.get(11)?,
        order_id: r.get(12)?,
        client: r.get(13)?,
        provider: r.get(14)?,
        delivery_key: r.get(15)?,
        prev_hash: r.get(16)?,
        hash: r.get(17)?,
        payload_hash: r.get(18)?,
        payload_removed: r.get(19)?,
        payload: if with_payload { r.get(20)? } else { Vec::new() },
    })
}

pub(super) const ORDER_COLUMNS: &str = "canonical, source_system, provider_system, status, created_at, delivered_at,
    ack_status, ack_reason, acked_at, plan_established_on, plan_received_at";

pub(super) fn order_row(r: &Row<'_>) -> rusqlite::Result<OrderRecord> {
    order_row_at(r, 0)
}

/// An order read from [`ORDER_COLUMNS`] starting at column `at` (after a join's own columns).
pub(super) fn order_row_at(r: &Row<'_>, at: usize) -> rusqlite::Result<OrderRecord> {
    let canonical: String = r.get(at)?;
    let order: Order = serde_json::from_str(&canonical)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, Box::new(e)))?;
    Ok(OrderRecord {
        order,
        source_system: r.get(at + 1)?,
        provider_system: r.get(at + 2)?,
        status: parsed(r, at + 3)?,
        created_at: instant(r, at + 4)?,
        delivered_at: instant_opt(r, at + 5)?,
        ack_status: {
            let text: Option<String> = r.get(at + 6)?;
            text.map(|t| {
                t.parse().map_err(|e| rusqlite::Error::FromSqlConversionFailure(at + 6, Type::Text, Box::new(e)))
            })
            .transpose()?
        },
        ack_reason: r.get(at + 7)?,
        acked_at: instant_opt(r, at + 8)?,
        plan_established_on: r.get(at + 9)?,
        plan_received_at: instant_opt(r, at + 10)?,
    })
}

pub(super) fn invoice_row(r: &Row<'_>) -> rusqlite::Result<InvoiceRecord> {
    Ok(InvoiceRecord {
        provider: r.get(0)?,
        kind: r.get(1)?,
        id: r.get(2)?,
        month: r.get(3)?,
        canonical: r.get(4)?,
        log_seq: r.get(5)?,
        received_at: instant(r, 6)?,
    })
}

pub(super) const VISIT_COLUMNS: &str =
    "id, source_id, system, provider, client, order_id, staff, check_in, check_out, month,
    seconds, planned_minutes, visit_outcome, manual, outcome, codes, findings, canonical, log_seq, line, received_at";

pub(super) fn visit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VisitRecord> {
    let json = |i: usize| -> rusqlite::Result<serde_json::Value> {
        let text: String = r.get(i)?;
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    };
    let codes: String = r.get(15)?;
    Ok(VisitRecord {
        seq: r.get(0)?,
        id: r.get(1)?,
        system: r.get(2)?,
        provider: r.get(3)?,
        client: r.get(4)?,
        order_id: r.get(5)?,
        staff: r.get(6)?,
        check_in: instant(r, 7)?,
        check_out: instant_opt(r, 8)?,
        month: r.get(9)?,
        seconds: r.get(10)?,
        planned_minutes: r.get(11)?,
        visit_outcome: r.get(12)?,
        manual: r.get(13)?,
        outcome: parsed(r, 14)?,
        codes: codes.split_whitespace().map(str::to_owned).collect(),
        findings: json(16)?,
        visit: json(17)?,
        message_id: r.get(18)?,
        line: r.get(19)?,
        received_at: instant(r, 20)?,
    })
}
