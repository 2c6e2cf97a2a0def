//! Visits on PostgreSQL: the [`VisitLedger`] that [`visits::ingest`] runs over inside the
//! commit's transaction (the commit holds the chain's sequencer, so every other node's
//! batch waits and then sees this one's visits: a copy or an overlap sent to two nodes at
//! once is caught once), and the listings behind `/v1/visits` and the reports. The
//! look-ups are SQLite's, one index probe each, through statements prepared once per
//! connection; for a batch they are read ahead in a few queries (`PgLedger::preload`) and
//! its visits stored with its other held rows in one statement, since each probe was a
//! round trip of the writer (SQLite's probes cost no round trip).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use carehub_core::rules::visits::{self, IncomingVisit, Thresholds, VisitFacts, VisitLedger, VisitToStore};
use carehub_core::store::*;
use carehub_model::{OrgNumber, PersonalIdentityNumber, RegistrationMethod, TagUid, Visit};
use chrono::{DateTime, NaiveDate, Utc};

use crate::db::{col, Db};
use crate::log::Chain;
use crate::rows::{order_columns_of, order_row_at, paused_on, visit_row, VISIT_COLUMNS};

/// The ledger over the commit's transaction. The facts are asked through `&self`, so the
/// transaction sits in a cell; the rules never hold one borrow across another.
struct PgLedger<'a, 'b> {
    db: RefCell<&'a mut Db<'b>>,
    thresholds: Thresholds,
    closed: HashSet<String>,
    /// The staff member's visits around the one being validated, read once for both the
    /// copy check and the overlap check.
    window: RefCell<Option<StaffWindow>>,
    /// Every visit of the batch's staff members in the batch's span, read in one query
    /// before the rules run and kept up to date as the batch's visits are stored, when the
    /// span is short enough ([`PRELOAD_SPAN`]); `None`: a window is read per visit.
    preloaded: Option<Preloaded>,
    /// Source ids already stored, of the batch's visits (read with the preload), and those
    /// the batch stores: a visit whose id is here is not inserted again.
    stored_ids: HashSet<String>,
    /// The registrations of every tag the batch's visits name (read with the preload):
    /// (installed on, removed on, client), by tag. A tag not here is looked up alone.
    tag_rows: HashMap<String, Vec<(String, Option<String>, String)>>,
    /// Tags and orders do not change during a batch: each is looked up once per batch.
    tags: RefCell<HashMap<(String, NaiveDate), Option<PersonalIdentityNumber>>>,
    orders: RefCell<HashMap<OrderKey, Option<String>>>,
    /// The log entry the batch's visits point at (its place, taken before they are stored).
    log_seq: i64,
    received_at: String,
    summary: Option<String>,
}

/// (provider, client, day, the order the visit names).
type OrderKey = (String, String, NaiveDate, Option<String>);

/// The staff members' visits a batch may meet, by staff member (see `PgLedger::preloaded`).
struct Preloaded {
    by_staff: HashMap<String, Vec<PreloadedVisit>>,
}

struct PreloadedVisit {
    check_in: String,
    nearby: Nearby,
}

/// A batch spanning more than this (from its first check-in, less the longest visit, to its
/// last check-out) reads windows per visit instead: a page of old and new visits would
/// otherwise read months of its staff's visits.
const PRELOAD_SPAN: chrono::Duration = chrono::Duration::days(3);

struct StaffWindow {
    staff: String,
    from: String,
    to: String,
    visits: Vec<Nearby>,
}

#[derive(Clone)]
struct Nearby {
    source_id: String,
    client: String,
    check_in: String,
    check_out: Option<String>,
    rejected: bool,
}

impl PgLedger<'_, '_> {
    /// Runs `f` over the staff member's visits in [from - max_duration, to], reading them
    /// only when the window differs from the last one read.
    fn with_window<T>(&self, staff: &str, from: &str, to: &str, f: impl FnOnce(&[Nearby]) -> T) -> Option<T> {
        if let Some(pre) = &self.preloaded {
            let earliest = DateTime::parse_from_rfc3339(from)
                .map(|t| ts(t.with_timezone(&Utc) - self.thresholds.max_duration))
                .ok()?;
            let near: Vec<Nearby> = pre
                .by_staff
                .get(staff)
                .map(|visits| {
                    visits
                        .iter()
                        .filter(|v| v.check_in.as_str() > earliest.as_str() && v.check_in.as_str() <= to)
                        .map(|v| v.nearby.clone())
                        .collect()
                })
                .unwrap_or_default();
            return Some(f(&near));
        }
        let mut cache = self.window.borrow_mut();
        let fresh = cache.as_ref().is_none_or(|w| w.staff != staff || w.from != from || w.to != to);
        if fresh {
            let earliest = DateTime::parse_from_rfc3339(from)
                .map(|t| ts(t.with_timezone(&Utc) - self.thresholds.max_duration))
                .ok()?;
            let rows = self
                .db
                .borrow_mut()
                .query(
                    "SELECT source_id, client, check_in, check_out, outcome FROM visits
                     WHERE staff = $1 AND check_in > $2 AND check_in <= $3",
                    &[&staff, &earliest, &to],
                )
                .ok()?;
            let visits = rows
                .iter()
                .map(|r| -> Result<Nearby, StoreError> {
                    Ok(Nearby {
                        source_id: col(r, 0)?,
                        client: col(r, 1)?,
                        check_in: col(r, 2)?,
                        check_out: col(r, 3)?,
                        rejected: col::<&str>(r, 4)? == "rejected",
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .ok()?;
            *cache = Some(StaffWindow { staff: staff.to_owned(), from: from.to_owned(), to: to.to_owned(), visits });
        }
        cache.as_ref().map(|w| f(&w.visits))
    }
}

/// A month as stored: `YYYY-MM`.
fn month_key(month: carehub_model::Month) -> String {
    format!("{:04}-{:02}", month.year(), month.month())
}

impl VisitFacts for PgLedger<'_, '_> {
    fn tag_client(&self, tag: &TagUid, day: NaiveDate) -> Option<PersonalIdentityNumber> {
        let key = (tag.as_str().to_owned(), day);
        if let Some(known) = self.tags.borrow().get(&key) {
            return known.clone();
        }
        let day = day.to_string();
        if let Some(rows) = self.tag_rows.get(tag.as_str()) {
            // The query below, over the rows read with the preload.
            let owner = rows
                .iter()
                .filter(|(installed, removed, _)| *installed <= day && removed.as_ref().is_none_or(|r| *r >= day))
                .max_by(|a, b| a.0.cmp(&b.0))
                .and_then(|(_, _, client)| PersonalIdentityNumber::parse(client).ok());
            self.tags.borrow_mut().insert(key, owner.clone());
            return owner;
        }
        let client: Option<String> = self
            .db
            .borrow_mut()
            .opt(
                "SELECT client FROM tag_registrations
                 WHERE tag_uid = $1 AND installed_on <= $2 AND (removed_on IS NULL OR removed_on >= $2)
                 ORDER BY installed_on DESC LIMIT 1",
                &[&tag.as_str(), &day],
            )
            .ok()
            .flatten()
            .and_then(|r| col(&r, 0).ok());
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
        let rows = self
            .db
            .borrow_mut()
            .query(
                "SELECT id, paused FROM orders
                 WHERE client = $1 AND provider = $2 AND start_date <= $3
                   AND (end_date IS NULL OR end_date >= $3)
                   AND (ack_status IS NULL OR ack_status <> 'rejected')
                 ORDER BY (id = $4::text) IS TRUE DESC, start_date DESC",
                &[&client.expose(), &provider.as_str(), &day_text, &named],
            )
            .unwrap_or_default();
        let found = rows.iter().find_map(|r| {
            let id: String = col(r, 0).ok()?;
            let paused: Option<&str> = col(r, 1).ok()?;
            (!paused_on(paused, &day_text)).then_some(id)
        });
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

impl VisitLedger for PgLedger<'_, '_> {
    type Error = StoreError;

    fn insert_visit(&mut self, v: VisitToStore<'_>) -> Result<bool, StoreError> {
        // The next visit must see this one: no window survives an insert.
        self.window.get_mut().take();
        let stored = v.visit;
        if self.preloaded.is_some() {
            // The ids were read with the preload, under the sequencer: no other node
            // stores a visit meanwhile, so an id not seen is free and the insert can wait
            // for the commit's other held rows (`db.rs`).
            if !self.stored_ids.insert(v.source_id.to_owned()) {
                return Ok(false);
            }
            let check_in = ts(stored.check_in.at);
            if let Some(pre) = self.preloaded.as_mut() {
                pre.by_staff.entry(stored.staff.clone()).or_default().push(PreloadedVisit {
                    check_in: check_in.clone(),
                    nearby: Nearby {
                        source_id: v.source_id.to_owned(),
                        client: stored.client.clone(),
                        check_in,
                        check_out: stored.check_out.as_ref().map(|o| ts(o.at)),
                        rejected: v.verdict.outcome.as_str() == "rejected",
                    },
                });
            }
            return self.insert_row(v, true);
        }
        self.insert_row(v, false)
    }

    fn set_cursor(&mut self, system: &str, cursor: &str) -> Result<(), StoreError> {
        self.db.get_mut().execute(
            "INSERT INTO feed_cursors (system, cursor, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (system) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = EXCLUDED.updated_at",
            &[&system, &cursor, &self.received_at],
        )?;
        Ok(())
    }

    fn set_canonical(&mut self, summary: String) -> Result<(), StoreError> {
        self.summary = Some(summary);
        Ok(())
    }
}

impl PgLedger<'_, '_> {
    /// Stores one visit: `held` (its id known to be free) with the commit's held rows,
    /// otherwise at once, a taken id then storing nothing.
    fn insert_row(&mut self, v: VisitToStore<'_>, held: bool) -> Result<bool, StoreError> {
        let stored = v.visit;
        let canonical = serde_json::to_string(stored).map_err(backend)?;
        let findings = serde_json::to_string(&v.verdict.findings).map_err(backend)?;
        let codes_text = v.verdict.findings.iter().map(|f| f.code.as_str()).collect::<Vec<_>>().join(" ");
        let line = v.line.and_then(|l| i64::try_from(l).ok());
        let provider = stored.provider.as_ref().map(|p| p.as_str());
        let (check_in, check_out) = (ts(stored.check_in.at), stored.check_out.as_ref().map(|o| ts(o.at)));
        let (month, seconds) = (month_key(v.month), stored.duration().map(|d| d.num_seconds()));
        let planned = stored.planned_minutes.map(i64::from);
        let params: [&(dyn postgres::types::ToSql + Sync); 20] = [
            &v.source_id,
            &v.system,
            &provider,
            &stored.client,
            &v.order_id,
            &stored.staff,
            &check_in,
            &check_out,
            &month,
            &seconds,
            &planned,
            &stored.outcome.as_str(),
            &v.manual,
            &v.verdict.outcome.as_str(),
            &codes_text,
            &findings,
            &canonical,
            &self.log_seq,
            &line,
            &self.received_at,
        ];
        if held {
            self.db.get_mut().insert_later(
                6,
                "INSERT INTO visits (source_id, system, provider, client, order_id, staff, check_in, check_out,
                    month, seconds, planned_minutes, visit_outcome, manual, outcome, codes, findings, canonical,
                    log_seq, line, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
                &params,
                Some(&format!("visit {}", v.source_id)),
            )?;
            return Ok(true);
        }
        let inserted = self.db.get_mut().execute(
            "INSERT INTO visits (source_id, system, provider, client, order_id, staff, check_in, check_out,
                month, seconds, planned_minutes, visit_outcome, manual, outcome, codes, findings, canonical,
                log_seq, line, received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
             ON CONFLICT (source_id) DO NOTHING",
            &params,
        )?;
        Ok(inserted > 0)
    }

    /// Reads, in three queries, what the rules would otherwise ask of the database once per
    /// visit: the registrations of the tags the batch names, its staff members' visits over
    /// its span and which of its ids are stored already (the last two only when the span is
    /// short enough to read at once, [`PRELOAD_SPAN`]). Each look-up was a round trip of
    /// the node's one writer, which the whole cluster's batches wait for at the sequencer.
    fn preload(&mut self, visits: &[IncomingVisit]) -> Result<(), StoreError> {
        let mut staff: Vec<&str> = Vec::new();
        let mut ids: Vec<&str> = Vec::new();
        let mut tags: Vec<String> = Vec::new();
        let (mut first, mut last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
        for v in visits {
            let IncomingVisit::Visit { visit, .. } = v else { continue };
            staff.push(&visit.staff);
            if let Some(id) = &visit.id {
                ids.push(id.as_str());
            }
            for r in std::iter::once(&visit.check_in).chain(visit.check_out.as_ref()) {
                if let RegistrationMethod::Nfc { tag_uid } = &r.method {
                    if let Ok(uid) = TagUid::parse(tag_uid) {
                        tags.push(uid.as_str().to_owned());
                    }
                }
            }
            let (from, to) = (
                visit.check_in.at,
                visit.check_out.as_ref().map_or(visit.check_in.at, |o| o.at.max(visit.check_in.at)),
            );
            first = Some(first.map_or(from, |f| f.min(from)));
            last = Some(last.map_or(to, |l| l.max(to)));
        }
        tags.sort_unstable();
        tags.dedup();
        let registrations = self.db.get_mut().query(
            "SELECT tag_uid, installed_on, removed_on, client FROM tag_registrations WHERE tag_uid = ANY($1)",
            &[&tags],
        )?;
        let mut tag_rows: HashMap<String, Vec<(String, Option<String>, String)>> =
            tags.into_iter().map(|t| (t, Vec::new())).collect();
        for r in &registrations {
            let uid: String = col(r, 0)?;
            tag_rows.entry(uid).or_default().push((col(r, 1)?, col(r, 2)?, col(r, 3)?));
        }
        self.tag_rows = tag_rows;
        let (Some(first), Some(last)) = (first, last) else { return Ok(()) };
        let earliest = first - self.thresholds.max_duration;
        if last - earliest > PRELOAD_SPAN {
            return Ok(());
        }
        staff.sort_unstable();
        staff.dedup();
        let db = self.db.get_mut();
        let rows = db.query(
            "SELECT staff, source_id, client, check_in, check_out, outcome FROM visits
             WHERE staff = ANY($1) AND check_in > $2 AND check_in <= $3",
            &[&staff, &ts(earliest), &ts(last)],
        )?;
        let mut by_staff: HashMap<String, Vec<PreloadedVisit>> = HashMap::new();
        for r in &rows {
            let check_in: String = col(r, 3)?;
            by_staff.entry(col(r, 0)?).or_default().push(PreloadedVisit {
                check_in: check_in.clone(),
                nearby: Nearby {
                    source_id: col(r, 1)?,
                    client: col(r, 2)?,
                    check_in,
                    check_out: col(r, 4)?,
                    rejected: col::<&str>(r, 5)? == "rejected",
                },
            });
        }
        let taken = db.query("SELECT source_id FROM visits WHERE source_id = ANY($1)", &[&ids])?;
        self.stored_ids = taken.iter().map(|r| col::<String>(r, 0)).collect::<Result<_, _>>()?;
        self.preloaded = Some(Preloaded { by_staff });
        Ok(())
    }
}

/// Runs [`visits::ingest`] on a batch inside the commit's transaction, then logs the
/// message with every record's result.
pub(crate) fn ingest(db: &mut Db<'_>, chain: &mut Chain, ingest: VisitIngest) -> Result<IngestReport, StoreError> {
    let VisitIngest { system, mut log, visits, thresholds, now, cursor } = ingest;
    // The entry holds every record's result, so it is appended after them; the visits point
    // at the place it takes, which nothing else can take meanwhile (the commit holds the
    // sequencer, and this op appends nothing else before it).
    let slot = chain.next_seq(db)?;
    let closed = db
        .query("SELECT month FROM closed_months", &[])?
        .iter()
        .map(|r| col::<String>(r, 0))
        .collect::<Result<HashSet<_>, _>>()?;
    let mut ledger = PgLedger {
        db: RefCell::new(db),
        thresholds,
        closed,
        window: RefCell::new(None),
        preloaded: None,
        stored_ids: HashSet::new(),
        tag_rows: HashMap::new(),
        tags: RefCell::default(),
        orders: RefCell::default(),
        log_seq: slot,
        received_at: ts(now),
        summary: None,
    };
    ledger.preload(&visits)?;
    let batch = visits::Batch { system: &system, visits, thresholds, now, cursor: cursor.as_deref() };
    let results = visits::ingest(&mut ledger, batch)?;
    log.canonical = ledger.summary.take();
    let db = ledger.db.into_inner();
    let seq = chain.append(db, now, log)?;
    if seq != slot {
        return Err(StoreError::backend(
            "appending to the log",
            format!("log slot {slot} was taken before its entry was appended (it went to {seq})"),
        ));
    }
    Ok(IngestReport { log_seq: seq, results })
}

pub(crate) fn list(db: &mut Db<'_>, f: &VisitFilter) -> Result<Vec<VisitRecord>, StoreError> {
    let mut sql = format!("SELECT {VISIT_COLUMNS} FROM visits WHERE TRUE");
    let mut args: Vec<Box<dyn postgres::types::ToSql + Sync>> = Vec::new();
    if let Some(client) = &f.client {
        args.push(Box::new(client.clone()));
        let n = args.len();
        sql.push_str(&format!(
            " AND ((provider IN (SELECT provider FROM orders WHERE client = ${n})
                    AND order_id IN (SELECT id FROM orders WHERE client = ${n}))
                   OR (order_id IS NULL AND client = ${n}))"
        ));
    }
    if let Some(order) = &f.order_id {
        args.push(Box::new(order.clone()));
        let n = args.len();
        sql.push_str(&format!(" AND provider = (SELECT provider FROM orders WHERE id = ${n}) AND order_id = ${n}"));
    }
    let mut add = |clause: &str, v: Option<&String>| {
        if let Some(v) = v {
            args.push(Box::new(v.clone()));
            sql.push_str(&format!(" AND {clause} ${}", args.len()));
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
        args.push(Box::new(after));
        sql.push_str(&format!(" AND id > ${}", args.len()));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", f.limit.clamp(1, 10_000)));
    let refs: Vec<&(dyn postgres::types::ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
    db.query(&sql, &refs)?.iter().map(visit_row).collect()
}

pub(crate) fn manual_shares(db: &mut Db<'_>, month: &str) -> Result<Vec<ManualShare>, StoreError> {
    let rows = db.query(
        "SELECT provider, COUNT(*), COALESCE(SUM(CASE WHEN manual THEN 1 ELSE 0 END), 0)::BIGINT FROM visits
         WHERE provider IN (SELECT DISTINCT provider FROM orders) AND month = $1
           AND outcome IN ('accepted', 'flagged')
         GROUP BY provider ORDER BY provider",
        &[&month],
    )?;
    let mut out = Vec::new();
    for r in &rows {
        let visits = u64::try_from(col::<i64>(r, 1)?).unwrap_or(0);
        let manual = u64::try_from(col::<i64>(r, 2)?).unwrap_or(0);
        #[allow(clippy::cast_precision_loss)]
        let share = if visits == 0 { 0.0 } else { manual as f64 / visits as f64 };
        out.push(ManualShare { provider: col(r, 0)?, visits, manual, share });
    }
    Ok(out)
}

pub(crate) fn visits_to_report(db: &mut Db<'_>, limit: usize) -> Result<ReportBatch, StoreError> {
    let after: i64 = match db.opt("SELECT through FROM progress WHERE name = $1", &[&progress::VISIT_REPORTS])? {
        Some(r) => col(&r, 0)?,
        None => 0,
    };
    let sql = format!(
        "SELECT v.id, v.outcome, v.canonical, v.codes, v.seconds, v.manual, o.id IS NOT NULL, {}
         FROM visits v LEFT JOIN orders o ON o.id = v.order_id
         WHERE v.id > $1 ORDER BY v.id LIMIT $2",
        order_columns_of("o")
    );
    let rows = db.query(&sql, &[&after, &i64::try_from(limit).unwrap_or(i64::MAX)])?;
    let mut batch = ReportBatch::default();
    for r in &rows {
        batch.through = Some(col(r, 0)?);
        let outcome: carehub_model::ValidationOutcome = crate::rows::parsed(r, 1)?;
        let has_order: bool = col(r, 6)?;
        if outcome == carehub_model::ValidationOutcome::Rejected || !has_order {
            continue;
        }
        let visit: Visit = serde_json::from_str(col(r, 2)?).map_err(backend)?;
        let codes: &str = col(r, 3)?;
        batch.visits.push(PendingForward {
            id: col(r, 0)?,
            visit,
            outcome,
            codes: codes.split_whitespace().map(str::to_owned).collect(),
            seconds: col(r, 4)?,
            manual: col(r, 5)?,
            order: Some(order_row_at(r, 7)?),
        });
    }
    Ok(batch)
}

pub(crate) fn feed_cursor(db: &mut Db<'_>, system: &str) -> Result<Option<String>, StoreError> {
    db.opt("SELECT cursor FROM feed_cursors WHERE system = $1", &[&system])?.map(|r| col(&r, 0)).transpose()
}
