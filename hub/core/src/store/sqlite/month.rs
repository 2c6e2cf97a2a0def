//! Month verification's bulk reads in SQLite: one provider's month in a handful of
//! statements, never a round trip per order.
//!
//! The visits are read once, streaming, through `visits_provider_month (provider, month)`,
//! and grouped by order in memory as they come (an order id is looked up, not copied, per
//! row); orders come with their decision's validity in one join; the invoices and credit
//! notes of the month through `invoices_month`. What is held is one provider's month.

use std::collections::HashMap;

use carehub_model::VisitOutcome;
use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{invoice_row, order_row_at, ORDER_COLUMNS};
use crate::store::*;
use carehub_model::Month;

use crate::rules::invoices;
use crate::rules::visits::Outcome;

fn backend(e: rusqlite::types::FromSqlError) -> StoreError {
    StoreError::backend("a visit of the month does not read back", e)
}

/// Runs a bulk read with memory-mapped IO off. The store maps up to 4 GiB of the file for
/// its small reads; a month's read touches nearly every page of the visits table, and
/// through the map every one of them would count as the process's resident memory (a
/// national month's file is larger than the map). Read into SQLite's small page cache
/// instead, the batch's memory is its own data, and the pages stay in the OS's file cache.
pub(super) fn without_mmap<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mapped: i64 = conn.query_row("PRAGMA mmap_size", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA mmap_size = 0;")?;
    let result = f(conn);
    conn.execute_batch(&format!("PRAGMA mmap_size = {mapped};"))?;
    result
}

fn key(month: Month) -> String {
    month.to_string()
}

pub(super) fn month_providers(conn: &Connection, month: Month) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider FROM orders WHERE start_date <= ?2 AND (end_date IS NULL OR end_date >= ?1)
         UNION SELECT provider FROM invoices WHERE month = ?3
         ORDER BY 1",
    )?;
    let rows = stmt
        .query_map(params![month.first_day().to_string(), month.last_day().to_string(), key(month)], |r| {
            r.get::<_, String>(0)
        })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The order columns of a join with `decisions d`, the decision's validity last.
fn order_select() -> String {
    let columns = ORDER_COLUMNS.split(',').map(|c| format!("o.{}", c.trim())).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT {columns}, json_extract(d.canonical, '$.valid_from'), json_extract(d.canonical, '$.valid_to')
         FROM orders o JOIN decisions d ON d.id = o.decision_id"
    )
}

fn month_order(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<MonthOrder>> {
    let record = order_row_at(r, 0)?;
    let from: Option<String> = r.get(11)?;
    let to: Option<String> = r.get(12)?;
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    // A decision without a readable validity is skipped, as the invoice flow does.
    let Some(decision_valid_from) = from.as_deref().and_then(day) else { return Ok(None) };
    Ok(Some(MonthOrder {
        record,
        decision_valid_from,
        decision_valid_to: to.as_deref().and_then(day),
        visits: Vec::new(),
    }))
}

pub(super) fn provider_month(conn: &Connection, provider: &str, month: Month) -> Result<ProviderMonth, StoreError> {
    let month_key = key(month);
    let (first, last) = (month.first_day(), month.last_day());
    // Plan notices are stamped in UTC; a day's margin either side of the month catches the
    // ones whose Stockholm date is in it (verification checks the date itself).
    let notices_from = first.pred_opt().unwrap_or(first).to_string();
    let notices_to = last.succ_opt().and_then(|d| d.succ_opt()).unwrap_or(last).to_string();
    let mut out = ProviderMonth { provider: provider.to_owned(), ..ProviderMonth::default() };

    let mut stmt = conn.prepare_cached(&format!(
        "{} WHERE o.provider = ?1
           AND ((o.start_date <= ?3 AND (o.end_date IS NULL OR o.end_date >= ?2))
                OR (o.plan_received_at >= ?4 AND o.plan_received_at < ?5))
         ORDER BY o.id",
        order_select()
    ))?;
    let rows =
        stmt.query_map(params![provider, first.to_string(), last.to_string(), notices_from, notices_to], month_order)?;
    for row in rows {
        if let Some(o) = row? {
            out.orders.push(o);
        }
    }

    let mut stmt = conn.prepare_cached(
        "SELECT provider, kind, id, month, canonical, log_seq, received_at FROM invoices
         WHERE provider = ?1 AND month = ?2 ORDER BY kind DESC, received_at, id",
    )?;
    let rows = stmt.query_map(params![provider, month_key], invoice_row)?;
    out.invoices = rows.collect::<Result<Vec<_>, _>>()?;

    // Orders the month's lines name that are not among the provider's active ones.
    let mut index: HashMap<String, usize> =
        out.orders.iter().enumerate().map(|(i, o)| (o.record.order.id.clone(), i)).collect();
    if !out.invoices.is_empty() {
        let named: Vec<String> = conn
            .prepare_cached(
                "SELECT DISTINCT json_extract(l.value, '$.order_id') FROM invoices i, json_each(i.canonical, '$.lines') l
                 WHERE i.provider = ?1 AND i.month = ?2 AND json_extract(l.value, '$.order_id') IS NOT NULL",
            )?
            .query_map(params![provider, month_key], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        let mut one = conn.prepare_cached(&format!("{} WHERE o.id = ?1", order_select()))?;
        for id in &named {
            if index.contains_key(id) {
                continue;
            }
            if let Some(Some(o)) = one.query_row([id], month_order).optional()? {
                index.insert(id.clone(), out.orders.len());
                out.orders.push(o);
            }
        }
    }

    // The month's visits, streamed and grouped by order as they come.
    let mut stmt = conn.prepare_cached(
        "SELECT order_id, check_in, check_out, outcome, visit_outcome, planned_minutes, manual FROM visits
         WHERE provider = ?1 AND month = ?2",
    )?;
    let mut rows = stmt.query(params![provider, month_key])?;
    while let Some(r) = rows.next()? {
        out.visits_read += 1;
        let validation = Outcome::parse(r.get_ref(3)?.as_str().map_err(backend)?);
        if validation == Outcome::Rejected {
            continue;
        }
        let manual: bool = r.get(6)?;
        out.counted_visits += 1;
        out.manual_visits += u64::from(manual);
        let order = r.get_ref(0)?.as_str_or_null().map_err(backend)?;
        let Some(&at) = order.and_then(|id| index.get(id)) else { continue };
        let Some(check_in) = parse_store_ts(r.get_ref(1)?.as_str().map_err(backend)?) else { continue };
        let check_out = r.get_ref(2)?.as_str_or_null().map_err(backend)?.and_then(parse_store_ts);
        let planned: Option<i64> = r.get(5)?;
        out.orders[at].visits.push(invoices::VisitEvidence {
            check_in,
            check_out,
            validation,
            outcome: VisitOutcome::parse(r.get_ref(4)?.as_str().map_err(backend)?),
            planned_minutes: planned.and_then(|m| u32::try_from(m).ok()),
            manual,
        });
    }
    Ok(out)
}
