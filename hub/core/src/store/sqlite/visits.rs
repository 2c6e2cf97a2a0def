//! Visits in SQLite: the [`VisitLedger`] ingestion runs over (validation facts answered by
//! indexed look-ups inside the writer's transaction, the insert, the cursor), and the
//! queries behind `/v1/visits` and the reports. What is stored is decided by
//! [`visits::ingest`], not here.
//!
//! Every look-up a rule needs is one index probe, so the cost of a visit does not grow with
//! the months of visits already stored: the overlap rule (VIS005) reads one staff member's
//! visits from the last [`Thresholds::max_duration`] before the check-in, via
//! `visits_staff (staff, check_in)`, never a scan.

use std::collections::HashSet;

use carehub_model::{OrgNumber, PersonalIdentityNumber, TagUid, Visit};
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use super::log::{append_log_in, reserve_log_slot};
use super::rows::{order_row_at, parsed, visit_row, ORDER_COLUMNS, VISIT_COLUMNS};
use crate::rules::visits::{self, Thresholds, VisitFacts, VisitLedger, VisitToStore};
use crate::store::*;

/// The ledger visit ingestion runs over: the facts and the writes, over the writer's
/// connection inside its transaction.
struct SqlLedger<'a> {
    conn: &'a Connection,
    thresholds: Thresholds,
    closed: HashSet<String>,
    /// The staff member's visits around the one being validated, read once for both the
    /// copy check and the overlap check (one probe of `visits_staff` instead of two).
    window: std::cell::RefCell<Option<StaffWindow>>,
    /// Tags and orders do not change during a batch: each (tag, day) and (provider, client,
    /// day) is looked up once per batch.
    tags: std::cell::RefCell<std::collections::HashMap<(String, NaiveDate), Option<PersonalIdentityNumber>>>,
    orders: std::cell::RefCell<std::collections::HashMap<OrderKey, Option<String>>>,
    /// The log entry the batch's visits point at (its slot, reserved before they are stored).
    log_seq: i64,
    /// The batch's time, as stored.
    received_at: &'a str,
    /// The log entry's canonical form, once ingestion set it.
    summary: Option<String>,
}

/// (provider, client, day, the order the visit names).
type OrderKey = (String, String, NaiveDate, Option<String>);

/// A staff member's stored visits that started within `max_duration` before a check-in and
/// up to its check-out.
struct StaffWindow {
    staff: String,
    from: String,
    to: String,
    visits: Vec<Nearby>,
}

struct Nearby {
    source_id: String,
    client: String,
    check_in: String,
    check_out: Option<String>,
    rejected: bool,
}

impl SqlLedger<'_> {
    /// Runs `f` over the staff member's visits in [from - max_duration, to], reading them
    /// only when the window differs from the last one read.
    fn with_window<T>(&self, staff: &str, from: &str, to: &str, f: impl FnOnce(&[Nearby]) -> T) -> Option<T> {
        let mut cache = self.window.borrow_mut();
        let fresh = cache.as_ref().is_none_or(|w| w.staff != staff || w.from != from || w.to != to);
        if fresh {
            let earliest = chrono::DateTime::parse_from_rfc3339(from)
                .map(|t| ts(t.with_timezone(&Utc) - self.thresholds.max_duration))
                .ok()?;
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT source_id, client, check_in, check_out, outcome FROM visits
                     WHERE staff = ?1 AND check_in > ?2 AND check_in <= ?3",
                )
                .ok()?;
            let rows = stmt
                .query_map(params![staff, earliest, to], |r| {
                    Ok(Nearby {
                        source_id: r.get(0)?,
                        client: r.get(1)?,
                        check_in: r.get(2)?,
                        check_out: r.get(3)?,
                        rejected: r.get::<_, String>(4)? == "rejected",
                    })
                })
                .ok()?;
            let visits = rows.collect::<Result<Vec<_>, _>>().ok()?;
            *cache = Some(StaffWindow { staff: staff.to_owned(), from: from.to_owned(), to: to.to_owned(), visits });
        }
        cache.as_ref().map(|w| f(&w.visits))
    }
}

/// A month as stored: `YYYY-MM`.
fn month_key(month: carehub_model::Month) -> String {
    format!("{:04}-{:02}", month.year(), month.month())
}

impl VisitFacts for SqlLedger<'_> {
    fn tag_client(&self, tag: &TagUid, day: NaiveDate) -> Option<PersonalIdentityNumber> {
        let key = (tag.as_str().to_owned(), day);
        if let Some(known) = self.tags.borrow().get(&key) {
            return known.clone();
        }
        let day = day.to_string();
        let client: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT client FROM tag_registrations
                 WHERE tag_uid = ?1 AND installed_on <= ?2 AND (removed_on IS NULL OR removed_on >= ?2)
                 ORDER BY installed_on DESC LIMIT 1",
            )
            .and_then(|mut s| s.query_row(params![tag.as_str(), day], |r| r.get(0)).optional())
            .ok()
            .flatten();
        let owner = client.and_then(|c| PersonalIdentityNumber::parse(&c).ok());
        self.tags.borrow_mut().insert(key, owner.clone());
        owner
    }

    fn active_order(
        &self,
        provider: &OrgNumber,
        client: &PersonalIdentityNumber,
        day: NaiveDate,
        named: Option<&str>,
    ) -> Option<String> {
        let key = (provider.as_str().to_owned(), client.expose().to_owned(), day, named.map(str::to_owned));
        if let Some(known) = self.orders.borrow().get(&key) {
            return known.clone();
        }
        // An order in a pause on the day is not active (VIS009): the first candidate that
        // is not paused stands.
        let day_text = day.to_string();
        let found: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT id, paused FROM orders
                 WHERE client = ?1 AND provider = ?2 AND start_date <= ?3
                   AND (end_date IS NULL OR end_date >= ?3)
                   AND (ack_status IS NULL OR ack_status <> 'rejected')
                 ORDER BY (id = ?4) DESC, start_date DESC",
            )
            .and_then(|mut s| {
                let rows = s.query_map(params![client.expose(), provider.as_str(), &day_text, named], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
                })?;
                for row in rows {
                    let (id, paused) = row?;
                    if !super::life::paused_on(paused.as_deref(), &day_text) {
                        return Ok(Some(id));
                    }
                }
                Ok(None)
            })
            .ok()
            .flatten();
        self.orders.borrow_mut().insert(key, found.clone());
        found
    }

    fn overlapping(&self, staff: &str, client: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<String> {
        // A stored visit overlapping [from, to) started before `to` and, being at most
        // max_duration long (longer ones are rejected), after from - max_duration.
        let (from, to) = (ts(from), ts(to));
        self.with_window(staff, &from, &to, |near| {
            near.iter()
                .filter(|n| !n.rejected && n.client != client && n.check_in < to)
                .find(|n| n.check_out.as_ref().is_some_and(|out| *out > from))
                .map(|n| n.source_id.clone())
        })
        .flatten()
    }

    fn duplicate_of(&self, v: &Visit) -> Option<String> {
        // The same source id is found by the insert (`visits.source_id` is unique): here,
        // the same staff member, client and times under another id.
        let from = ts(v.check_in.at);
        let out = v.check_out.as_ref().map(|o| ts(o.at));
        // The same window the overlap check reads next.
        let to = out.clone().filter(|o| *o > from).unwrap_or_else(|| from.clone());
        self.with_window(&v.staff, &from, &to, |near| {
            near.iter()
                .find(|n| n.check_in == from && n.client == v.client && n.check_out == out)
                .map(|n| n.source_id.clone())
        })
        .flatten()
    }

    fn month_closed(&self, year: i32, month: u32) -> bool {
        self.closed.contains(&format!("{year:04}-{month:02}"))
    }
}

fn backend(e: serde_json::Error) -> StoreError {
    StoreError::backend("visit JSON", e)
}

/// Runs [`visits::ingest`] on a batch over the writer's transaction, then logs the message
/// with every record's result.
pub(super) fn ingest(
    conn: &Connection,
    chain: &mut (i64, String),
    ingest: VisitIngest,
) -> Result<IngestReport, StoreError> {
    let VisitIngest { system, mut log, visits, thresholds, now, cursor } = ingest;
    let closed = {
        let mut stmt = conn.prepare_cached("SELECT month FROM closed_months")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<Result<HashSet<_>, _>>()?
    };
    // The log entry holds every record's result, so it is appended once they are known; the
    // visits stored meanwhile point at the slot it reserves now, which the append checks is
    // still the next one (nothing else appends in between: this op writes both).
    let slot = reserve_log_slot(chain);
    let received_at = ts(now);
    let mut ledger = SqlLedger {
        conn,
        thresholds,
        closed,
        window: std::cell::RefCell::new(None),
        tags: std::cell::RefCell::default(),
        orders: std::cell::RefCell::default(),
        log_seq: slot.seq(),
        received_at: &received_at,
        summary: None,
    };
    let batch = visits::Batch { system: &system, visits, thresholds, now, cursor: cursor.as_deref() };
    let results = visits::ingest(&mut ledger, batch)?;
    log.canonical = ledger.summary.take();
    let seq = append_log_in(conn, chain, slot, now, log)?;
    Ok(IngestReport { log_seq: seq, results })
}

impl VisitLedger for SqlLedger<'_> {
    type Error = StoreError;

    fn insert_visit(&mut self, v: VisitToStore<'_>) -> Result<bool, StoreError> {
        // The next visit must see this one: no window survives an insert.
        self.window.get_mut().take();
        let stored = v.visit;
        let canonical = serde_json::to_string(stored).map_err(backend)?;
        let findings = serde_json::to_string(&v.verdict.findings).map_err(backend)?;
        let codes_text = v.verdict.findings.iter().map(|f| f.code.as_str()).collect::<Vec<_>>().join(" ");
        let inserted = self
            .conn
            .prepare_cached(
                "INSERT INTO visits (source_id, system, provider, client, order_id, staff, check_in, check_out,
                    month, seconds, planned_minutes, visit_outcome, manual, outcome, codes, findings, canonical,
                    log_seq, line, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
                    ?20)
                 ON CONFLICT (source_id) DO NOTHING",
            )?
            .execute(params![
                v.source_id,
                v.system,
                stored.provider.as_ref().map(|p| p.as_str()),
                stored.client,
                v.order_id,
                stored.staff,
                ts(stored.check_in.at),
                stored.check_out.as_ref().map(|o| ts(o.at)),
                month_key(v.month),
                stored.duration().map(|d| d.num_seconds()),
                stored.planned_minutes,
                stored.outcome.as_str(),
                v.manual,
                v.verdict.outcome.as_str(),
                codes_text,
                findings,
                canonical,
                self.log_seq,
                v.line.and_then(|l| i64::try_from(l).ok()),
                self.received_at,
            ])?;
        Ok(inserted > 0)
    }

    fn set_cursor(&mut self, system: &str, cursor: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO feed_cursors (system, cursor, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (system) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
            )?
            .execute(params![system, cursor, self.received_at])?;
        Ok(())
    }

    fn set_canonical(&mut self, summary: String) -> Result<(), StoreError> {
        self.summary = Some(summary);
        Ok(())
    }
}

pub(super) fn list(conn: &Connection, f: &VisitFilter) -> Result<Vec<VisitRecord>, StoreError> {
    let mut sql = format!("SELECT {VISIT_COLUMNS} FROM visits WHERE 1=1");
    let mut args: Vec<rusqlite::types::Value> = Vec::new();
    if let Some(client) = &f.client {
        args.push(client.clone().into());
        let n = args.len();
        sql.push_str(&format!(
            " AND ((provider IN (SELECT provider FROM orders WHERE client = ?{n})
                    AND order_id IN (SELECT id FROM orders WHERE client = ?{n}))
                   OR (order_id IS NULL AND client = ?{n}))"
        ));
    }
    if let Some(order) = &f.order_id {
        // Through the order's provider: `visits_provider_month_cover`.
        args.push(order.clone().into());
        let n = args.len();
        sql.push_str(&format!(" AND provider = (SELECT provider FROM orders WHERE id = ?{n}) AND order_id = ?{n}"));
    }
    let mut add = |clause: &str, v: Option<&String>| {
        if let Some(v) = v {
            args.push(v.clone().into());
            sql.push_str(&format!(" AND {clause} ?{}", args.len()));
        }
    };
    add("provider =", f.provider.as_ref());
    add("month =", f.month.as_ref());
    add("outcome =", f.outcome.as_ref());
    // Codes are space-separated: match a whole code.
    add("' ' || codes || ' ' LIKE '% ' || ", f.code.as_ref());
    if f.code.is_some() {
        sql.push_str(" || ' %'");
    }
    if let Some(after) = f.after {
        args.push(after.into());
        sql.push_str(&format!(" AND id > ?{}", args.len()));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", f.limit.clamp(1, 10_000)));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), visit_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub(super) fn manual_shares(conn: &Connection, month: &str) -> Result<Vec<ManualShare>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider, COUNT(*), SUM(manual) FROM visits
         WHERE provider IN (SELECT DISTINCT provider FROM orders) AND month = ?1
           AND outcome IN ('accepted', 'flagged')
         GROUP BY provider ORDER BY provider",
    )?;
    let rows = stmt.query_map([month], |r| {
        let visits: i64 = r.get(1)?;
        let manual: i64 = r.get(2)?;
        Ok((r.get::<_, String>(0)?, visits, manual))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (provider, visits, manual) = row?;
        let visits = u64::try_from(visits).unwrap_or(0);
        let manual = u64::try_from(manual).unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        let share = if visits == 0 { 0.0 } else { manual as f64 / visits as f64 };
        out.push(ManualShare { provider, visits, manual, share });
    }
    Ok(out)
}

pub(super) fn visits_to_report(conn: &Connection, limit: usize) -> Result<ReportBatch, StoreError> {
    let after: i64 = conn
        .prepare_cached("SELECT through FROM progress WHERE name = ?1")?
        .query_row([progress::VISIT_REPORTS], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let columns = ORDER_COLUMNS.split(',').map(|c| format!("o.{}", c.trim())).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT v.id, v.outcome, v.canonical, v.codes, v.seconds, v.manual, o.id IS NOT NULL, {columns}
         FROM visits v LEFT JOIN orders o ON o.id = v.order_id
         WHERE v.id > ?1 ORDER BY v.id LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![after, i64::try_from(limit).unwrap_or(i64::MAX)])?;
    let mut batch = ReportBatch::default();
    while let Some(r) = rows.next()? {
        batch.through = Some(r.get(0)?);
        let outcome: carehub_model::ValidationOutcome = parsed(r, 1)?;
        let has_order: bool = r.get(6)?;
        if outcome == carehub_model::ValidationOutcome::Rejected || !has_order {
            continue;
        }
        let canonical: String = r.get(2)?;
        let visit: Visit = serde_json::from_str(&canonical).map_err(backend)?;
        let codes: String = r.get(3)?;
        batch.visits.push(PendingForward {
            id: r.get(0)?,
            visit,
            outcome,
            codes: codes.split_whitespace().map(str::to_owned).collect(),
            seconds: r.get(4)?,
            manual: r.get(5)?,
            order: Some(order_row_at(r, 7)?),
        });
    }
    Ok(batch)
}

pub(super) fn feed_cursor(conn: &Connection, system: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT cursor FROM feed_cursors WHERE system = ?1")?
        .query_row([system], |r| r.get(0))
        .optional()?)
}
