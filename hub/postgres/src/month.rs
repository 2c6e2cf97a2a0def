//! Month verification's and the follow-up's bulk reads: one provider's month in a handful
//! of statements, never a round trip per order (as SQLite's `month` and `followup`).

use std::collections::HashMap;

use carehub_core::rules::invoices;
use carehub_core::rules::visits::Outcome;
use carehub_core::store::*;
use carehub_model::{Month, Order, VisitOutcome};
use chrono::NaiveDate;

use crate::db::{col, Db};
use crate::rows::{invoice_row, order_columns_of, order_row_at, INVOICE_COLUMNS};

fn key(month: Month) -> String {
    month.to_string()
}

/// A decision's validity from its canonical JSON (as SQLite's `json_extract`, text that is
/// not JSON fails the read).
const VALID_FROM: &str = "d.canonical::jsonb ->> 'valid_from'";
const VALID_TO: &str = "d.canonical::jsonb ->> 'valid_to'";

pub(crate) fn month_providers(db: &mut Db<'_>, month: Month) -> Result<Vec<String>, StoreError> {
    let rows = db.query(
        "SELECT provider FROM orders WHERE start_date <= $2 AND (end_date IS NULL OR end_date >= $1)
         UNION SELECT provider FROM invoices WHERE month = $3
         ORDER BY 1",
        &[&month.first_day().to_string(), &month.last_day().to_string(), &key(month)],
    )?;
    rows.iter().map(|r| col(r, 0)).collect()
}

/// The order columns of a join with `decisions d`, the decision's validity last.
fn order_select() -> String {
    format!(
        "SELECT {}, {VALID_FROM}, {VALID_TO} FROM orders o JOIN decisions d ON d.id = o.decision_id",
        order_columns_of("o")
    )
}

fn month_order(r: &postgres::Row) -> Result<Option<MonthOrder>, StoreError> {
    let record = order_row_at(r, 0)?;
    let from: Option<&str> = col(r, 11)?;
    let to: Option<&str> = col(r, 12)?;
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    // A decision without a readable validity is skipped, as the invoice flow does.
    let Some(decision_valid_from) = from.and_then(day) else { return Ok(None) };
    Ok(Some(MonthOrder {
        record,
        decision_valid_from,
        decision_valid_to: to.and_then(day),
        visits: Vec::new(),
        sums: None,
    }))
}

pub(crate) fn provider_month(
    db: &mut Db<'_>,
    provider: &str,
    month: Month,
    detail: MonthDetail,
) -> Result<ProviderMonth, StoreError> {
    let month_key = key(month);
    let (first, last) = (month.first_day(), month.last_day());
    // Plan notices are stamped in UTC; a day's margin either side of the month catches the
    // ones whose Stockholm date is in it (verification checks the date itself).
    let notices_from = first.pred_opt().unwrap_or(first).to_string();
    let notices_to = last.succ_opt().and_then(|d| d.succ_opt()).unwrap_or(last).to_string();
    let mut out = ProviderMonth { provider: provider.to_owned(), ..ProviderMonth::default() };

    let rows = db.query(
        &format!(
            "{} WHERE o.provider = $1
               AND ((o.start_date <= $3 AND (o.end_date IS NULL OR o.end_date >= $2))
                    OR (o.plan_received_at >= $4 AND o.plan_received_at < $5))
             ORDER BY o.id",
            order_select()
        ),
        &[&provider, &first.to_string(), &last.to_string(), &notices_from, &notices_to],
    )?;
    for r in &rows {
        if let Some(o) = month_order(r)? {
            out.orders.push(o);
        }
    }

    let rows = db.query(
        &format!(
            "SELECT {INVOICE_COLUMNS} FROM invoices WHERE provider = $1 AND month = $2 ORDER BY kind DESC, received_at, id"
        ),
        &[&provider, &month_key],
    )?;
    out.invoices = rows.iter().map(invoice_row).collect::<Result<_, _>>()?;

    // Orders the month's lines name that are not among the provider's active ones.
    let mut index: HashMap<String, usize> =
        out.orders.iter().enumerate().map(|(i, o)| (o.record.order.id.clone(), i)).collect();
    if !out.invoices.is_empty() {
        let named = db.query(
            "SELECT DISTINCT l.value ->> 'order_id' FROM invoices i,
                 jsonb_array_elements(CASE WHEN jsonb_typeof(i.canonical::jsonb -> 'lines') = 'array' THEN i.canonical::jsonb -> 'lines' ELSE '[]'::jsonb END) AS l(value)
             WHERE i.provider = $1 AND i.month = $2 AND jsonb_typeof(l.value) = 'object'
               AND l.value ->> 'order_id' IS NOT NULL",
            &[&provider, &month_key],
        )?;
        let one = format!("{} WHERE o.id = $1", order_select());
        for r in &named {
            let id: String = col(r, 0)?;
            if index.contains_key(&id) {
                continue;
            }
            if let Some(row) = db.opt(&one, &[&id])? {
                if let Some(o) = month_order(&row)? {
                    index.insert(id, out.orders.len());
                    out.orders.push(o);
                }
            }
        }
    }

    if detail == MonthDetail::Sums {
        // The database sums each order's visits (`VisitSums::of`'s rules in SQL, as the
        // SQLite store does), so only a row per order crosses the connection.
        let rows = db.query(
            "SELECT order_id, count(*),
                    count(*) FILTER (WHERE outcome <> 'rejected'),
                    count(*) FILTER (WHERE outcome <> 'rejected' AND manual),
                    coalesce(sum(seconds) FILTER (WHERE outcome <> 'rejected' AND visit_outcome = 'performed'), 0)::bigint,
                    coalesce(sum(planned_minutes) FILTER (WHERE outcome <> 'rejected'
                        AND visit_outcome = 'declined_at_door'), 0)::bigint
             FROM visits WHERE provider = $1 AND month = $2 GROUP BY order_id",
            &[&provider, &month_key],
        )?;
        for o in &mut out.orders {
            o.sums = Some(invoices::VisitSums::default());
        }
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        for r in &rows {
            out.visits_read += count(col(r, 1)?);
            out.counted_visits += count(col(r, 2)?);
            out.manual_visits += count(col(r, 3)?);
            let order: Option<&str> = col(r, 0)?;
            let Some(&at) = order.and_then(|id| index.get(id)) else { continue };
            out.orders[at].sums =
                Some(invoices::VisitSums { performed_seconds: col(r, 4)?, declined_planned_minutes: col(r, 5)? });
        }
        return Ok(out);
    }

    let rows = db.query(
        "SELECT order_id, check_in, check_out, outcome, visit_outcome, planned_minutes, manual FROM visits
         WHERE provider = $1 AND month = $2",
        &[&provider, &month_key],
    )?;
    for r in &rows {
        out.visits_read += 1;
        let validation = Outcome::parse(col(r, 3)?);
        if validation == Outcome::Rejected {
            continue;
        }
        let manual: bool = col(r, 6)?;
        out.counted_visits += 1;
        out.manual_visits += u64::from(manual);
        let order: Option<&str> = col(r, 0)?;
        let Some(&at) = order.and_then(|id| index.get(id)) else { continue };
        let Some(check_in) = parse_store_ts(col(r, 1)?) else { continue };
        let check_out = col::<Option<&str>>(r, 2)?.and_then(parse_store_ts);
        let planned: Option<i64> = col(r, 5)?;
        out.orders[at].visits.push(invoices::VisitEvidence {
            check_in,
            check_out,
            validation,
            outcome: VisitOutcome::parse(col(r, 4)?),
            planned_minutes: planned.and_then(|m| u32::try_from(m).ok()),
            manual,
        });
    }
    Ok(out)
}

/// The follow-up's orders: active in the month (by their own dates), or with their
/// plan-due or execute-by date in it.
pub(crate) fn followup_orders(db: &mut Db<'_>, month: Month) -> Result<Vec<FollowUpOrder>, StoreError> {
    let rows = db.query(
        &format!(
            "SELECT o.canonical, o.acked_at, o.ack_status, o.plan_established_on, {VALID_FROM}, {VALID_TO}
             FROM orders o LEFT JOIN decisions d ON d.id = o.decision_id
             WHERE (o.start_date <= $2 AND (o.end_date IS NULL OR o.end_date >= $1))
                OR (o.plan_due BETWEEN $1 AND $2) OR (o.execute_by BETWEEN $1 AND $2)
             ORDER BY o.id"
        ),
        &[&month.first_day().to_string(), &month.last_day().to_string()],
    )?;
    let date = |s: Option<&str>| s.and_then(|s| s.parse::<NaiveDate>().ok());
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let order: Order = serde_json::from_str(col(r, 0)?).map_err(|e| StoreError::backend("order JSON", e))?;
        let acked_at = col::<Option<&str>>(r, 1)?.and_then(parse_store_ts);
        let rejected = col::<Option<&str>>(r, 2)? == Some("rejected");
        let plan = date(col(r, 3)?);
        let valid_to = date(col(r, 5)?);
        let validity = date(col(r, 4)?).map(|f| (f, valid_to));
        out.push(FollowUpOrder::from_order(&order, validity, acked_at, rejected, plan));
    }
    Ok(out)
}

/// A provider's accepted and flagged visits checked in during the month.
pub(crate) fn followup_visits(db: &mut Db<'_>, provider: &str, month: Month) -> Result<Vec<FollowUpVisit>, StoreError> {
    let rows = db.query(
        "SELECT order_id, staff, check_in, seconds, visit_outcome FROM visits
         WHERE provider = $1 AND month = $2 AND outcome IN ('accepted', 'flagged') AND order_id IS NOT NULL",
        &[&provider, &month.to_string()],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let Some(check_in) = parse_store_ts(col(r, 2)?) else { continue };
        out.push(FollowUpVisit {
            order_id: col(r, 0)?,
            staff: col(r, 1)?,
            check_in,
            seconds: col(r, 3)?,
            performed: col::<&str>(r, 4)? == "performed",
        });
    }
    Ok(out)
}

/// The month's deviations and changes of need per provider, message type and kind.
pub(crate) fn followup_reports(db: &mut Db<'_>, month: Month) -> Result<Vec<FollowUpReportCount>, StoreError> {
    let rows = db.query(
        "SELECT provider, message_type, kind, COUNT(*) FROM provider_reports WHERE month = $1
         GROUP BY provider, message_type, kind ORDER BY provider, message_type, kind",
        &[&month.to_string()],
    )?;
    rows.iter()
        .map(|r| {
            Ok(FollowUpReportCount {
                provider: col(r, 0)?,
                message_type: col(r, 1)?,
                kind: col(r, 2)?,
                count: u64::try_from(col::<i64>(r, 3)?).unwrap_or(0),
            })
        })
        .collect()
}
