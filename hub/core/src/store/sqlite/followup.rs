//! The follow-up's reads (SPEC §4.4): the month's orders with their decision's validity,
//! a provider's counted visits of the month from the covering index
//! `visits_provider_month_cover` (one contiguous range, the table untouched), and the month's
//! deviations and changes of need, counted.

use carehub_model::Order;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, Connection};

use crate::store::StoreError;
use crate::store::{FollowUpOrder, FollowUpReportCount, FollowUpVisit};
use carehub_model::Month;

fn backend(e: serde_json::Error) -> StoreError {
    StoreError::backend("order JSON", e)
}

fn instant(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

fn date(s: &str) -> Option<NaiveDate> {
    s.parse().ok()
}

/// Orders active in the month (by their own dates), or with their plan-due or execute-by
/// date in it.
pub(super) fn orders(conn: &Connection, month: Month) -> Result<Vec<FollowUpOrder>, StoreError> {
    let (first, last) = (month.first_day().to_string(), month.last_day().to_string());
    let mut stmt = conn.prepare_cached(
        "SELECT o.canonical, o.acked_at, o.ack_status, o.plan_established_on,
                json_extract(d.canonical, '$.valid_from'), json_extract(d.canonical, '$.valid_to')
         FROM orders o LEFT JOIN decisions d ON d.id = o.decision_id
         WHERE (o.start_date <= ?2 AND (o.end_date IS NULL OR o.end_date >= ?1))
            OR (o.plan_due BETWEEN ?1 AND ?2) OR (o.execute_by BETWEEN ?1 AND ?2)
         ORDER BY o.id",
    )?;
    let mut rows = stmt.query(params![first, last])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let canonical: String = r.get(0)?;
        let order: Order = serde_json::from_str(&canonical).map_err(backend)?;
        let acked_at: Option<String> = r.get(1)?;
        let ack_status: Option<String> = r.get(2)?;
        let plan: Option<String> = r.get(3)?;
        let valid_from: Option<String> = r.get(4)?;
        let valid_to: Option<String> = r.get(5)?;
        let validity = valid_from.as_deref().and_then(date).map(|f| (f, valid_to.as_deref().and_then(date)));
        out.push(FollowUpOrder::from_order(
            &order,
            validity,
            acked_at.as_deref().and_then(instant),
            ack_status.as_deref() == Some("rejected"),
            plan.as_deref().and_then(date),
        ));
    }
    Ok(out)
}

/// A provider's accepted and flagged visits checked in during the month.
pub(super) fn visits(conn: &Connection, provider: &str, month: Month) -> Result<Vec<FollowUpVisit>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT order_id, staff, check_in, seconds, visit_outcome FROM visits INDEXED BY visits_provider_month_cover
         WHERE provider = ?1 AND month = ?2 AND outcome IN ('accepted', 'flagged') AND order_id IS NOT NULL",
    )?;
    let mut rows = stmt.query(params![provider, month.to_string()])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let check_in: String = r.get(2)?;
        let Some(check_in) = instant(&check_in) else { continue };
        out.push(FollowUpVisit {
            order_id: r.get(0)?,
            staff: r.get(1)?,
            check_in,
            seconds: r.get(3)?,
            performed: r.get::<_, String>(4)? == "performed",
        });
    }
    Ok(out)
}

/// The month's deviations and changes of need per provider, message type and kind (by
/// `provider_reports_month`).
pub(super) fn reports(conn: &Connection, month: Month) -> Result<Vec<FollowUpReportCount>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider, message_type, kind, COUNT(*) FROM provider_reports WHERE month = ?1
         GROUP BY provider, message_type, kind ORDER BY provider, message_type, kind",
    )?;
    let rows = stmt.query_map(params![month.to_string()], |r| {
        Ok(FollowUpReportCount {
            provider: r.get(0)?,
            message_type: r.get(1)?,
            kind: r.get(2)?,
            count: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}
