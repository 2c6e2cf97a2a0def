//! A bulk loader for the SQLite backend: millions of rows written straight into a fresh
//! database file, for the benchmarks' seeds (`carehub bench visits`, `carehub bench
//! verify`), which need a month of a city's data in the store before they measure anything.
//!
//! Why it exists: seeding through [`CommitStore::commit`](crate::store::CommitStore::commit) would run every
//! rule and write a log entry, a hash and a sync per message, hours for eleven million
//! visits. The loader writes the rows the hub would have written, in large transactions
//! with durability off, and it is here so that the SQL stays in the store: the tooling
//! says what the rows are, never how they are kept.
//!
//! What it is not: a way in for real data. Rows go in as given: no validation, no rules,
//! no message log or hash chain behind them (unless a seed writes log entries itself,
//! [`Batch::log_entry`], which chains them as the hub does) (a visit's or an invoice's log entry is 0, a
//! row's creation time the epoch: [`Stamp`]), so nothing can show where they came from. A crash while
//! loading may leave the file unusable ([`Durability`]). Use it only on a file no store
//! has open, and open the store after [`BulkLoader::finish`].
//!
//! Usage: [`BulkLoader::create`] migrates the file and sets its durability; each
//! [`BulkLoader::load`] is one transaction whose rows a closure writes through a
//! [`Batch`] (statements are prepared once per transaction, not per row);
//! [`BulkLoader::finish`] puts the file back in the journal mode the store expects.

use std::path::Path;

use carehub_model::{Decision, Order};
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, Connection, Statement, Transaction};

use super::migrate_file;
use crate::store::{ts, StoreError};

/// How much a load may lose in a crash: both modes skip syncs, so neither survives one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// No journal at all and a 1 GiB page cache: the fastest, for the largest seeds. A
    /// crash or a failed transaction can corrupt the file. [`BulkLoader::finish`] turns the
    /// write-ahead log back on.
    Unjournaled,
    /// The store's write-ahead log, without syncs: a failed transaction rolls back, a
    /// crash may lose the last ones. [`BulkLoader::finish`] checkpoints the log into the
    /// file.
    WalUnsynced,
}

/// A database file open for bulk loading.
pub struct BulkLoader {
    conn: Connection,
    durability: Durability,
}

impl BulkLoader {
    /// Creates (or migrates) the database at `path` and opens it for loading.
    pub fn create(path: &Path, durability: Durability) -> Result<BulkLoader, StoreError> {
        migrate_file(path)?;
        let conn = Connection::open(path)?;
        match durability {
            // The file is in WAL mode after migrating; leaving WAL goes through DELETE.
            Durability::Unjournaled => conn.execute_batch(
                "PRAGMA journal_mode = DELETE; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
                 PRAGMA cache_size = -1048576;",
            )?,
            Durability::WalUnsynced => conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")?,
        }
        Ok(BulkLoader { conn, durability })
    }

    /// Writes, in one transaction, the rows `rows` gives the [`Batch`]; commits if it
    /// returns `Ok`, rolls back (as far as the [`Durability`] allows) if it fails.
    pub fn load<T, E: From<StoreError>>(&mut self, rows: impl FnOnce(&mut Batch<'_>) -> Result<T, E>) -> Result<T, E> {
        let tx = self.conn.transaction().map_err(StoreError::from)?;
        let out = {
            let mut batch = Batch::new(&tx);
            rows(&mut batch)?
        };
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Leaves the file as the store expects it: in WAL mode, with the log checkpointed.
    pub fn finish(self) -> Result<(), StoreError> {
        match self.durability {
            Durability::Unjournaled => self.conn.execute_batch("PRAGMA journal_mode = WAL;")?,
            Durability::WalUnsynced => self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?,
        }
        Ok(())
    }
}

/// The stamp of a seeded row where a received one carries its arrival (a decision's, an
/// invoice's, a visit's without its own) or its creation (an order's): the epoch, which
/// sorts first, as the store reads every stamp back as an instant.
const SEEDED: &str = "1970-01-01T00:00:00.000000Z";

/// An instant in the form the store keeps it ([`ts`]), formatted once: a seed that also
/// writes the instant into a row's canonical JSON formats it once for both, which counts
/// over millions of rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(String);

impl Stamp {
    pub fn new(at: DateTime<Utc>) -> Stamp {
        Stamp(ts(at))
    }

    /// The stored form, e.g. `2026-10-01T05:00:00.000000Z`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A stored visit as the hub's visit flow would have written it, with its verdict.
#[derive(Debug, Clone)]
pub struct VisitRow<'a> {
    /// The visit's id, `<system>:<the system's id>`.
    pub source_id: &'a str,
    pub system: &'a str,
    pub provider: &'a str,
    pub client: &'a str,
    pub order_id: &'a str,
    pub staff: &'a str,
    pub check_in: &'a Stamp,
    pub check_out: &'a Stamp,
    /// `YYYY-MM`, the month the visit counts in.
    pub month: &'a str,
    /// Performed seconds.
    pub seconds: i64,
    pub planned_minutes: i64,
    /// `performed` or `declined_at_door`.
    pub visit_outcome: &'a str,
    pub manual: bool,
    /// `accepted`, `flagged` or `rejected`.
    pub outcome: &'a str,
    /// The rules' codes, comma-separated (`VIS005`), empty when none.
    pub codes: &'a str,
    /// The findings as a JSON array.
    pub findings: &'a str,
    /// The canonical visit as JSON.
    pub canonical: &'a str,
    /// When it was received; `None` stamps it with the epoch (`SEEDED`).
    pub received_at: Option<&'a Stamp>,
}

/// The rows of one transaction. Each kind's statement is prepared the first time it is
/// used and kept for the rest of the transaction.
pub struct Batch<'t> {
    tx: &'t Transaction<'t>,
    decision: Option<Statement<'t>>,
    order: Option<Statement<'t>>,
    tag: Option<Statement<'t>>,
    visit: Option<Statement<'t>>,
    invoice: Option<Statement<'t>>,
}

/// The statement in `slot`, prepared from `sql` if it is not yet.
fn prepared<'s, 't>(
    tx: &'t Transaction<'t>,
    slot: &'s mut Option<Statement<'t>>,
    sql: &str,
) -> Result<&'s mut Statement<'t>, StoreError> {
    if slot.is_none() {
        *slot = Some(tx.prepare(sql)?);
    }
    slot.as_mut().ok_or_else(|| StoreError::backend("bulk loading", "a statement that was just prepared is missing"))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::backend("cannot serialize a bulk row", e))
}

impl<'t> Batch<'t> {
    fn new(tx: &'t Transaction<'t>) -> Batch<'t> {
        Batch { tx, decision: None, order: None, tag: None, visit: None, invoice: None }
    }

    /// The message log's last sequence number and hash (for [`Batch::log_entry`]).
    pub fn log_head(&self) -> Result<(i64, String), StoreError> {
        Ok(super::log::chain_head(self.tx)?)
    }

    /// A message-log entry appended at `at` to the chain at `head` (moved on), hashed as
    /// the hub hashes it: unlike the other rows, a seeded log verifies (the audit
    /// benchmarks prove and export it).
    pub fn log_entry(
        &mut self,
        head: &mut (i64, String),
        at: DateTime<Utc>,
        e: crate::store::NewLogEntry,
    ) -> Result<i64, StoreError> {
        super::log::append_log(self.tx, head, at, e)
    }

    /// A decision received from `system`, with no content hash or receipt time.
    pub fn decision(&mut self, system: &str, decision: &Decision) -> Result<(), StoreError> {
        let canonical = json(decision)?;
        prepared(
            self.tx,
            &mut self.decision,
            "INSERT INTO decisions (id, system, content_hash, client, provider, canonical, received_at)
             VALUES (?1, ?2, '', ?3, ?4, ?5, '1970-01-01T00:00:00.000000Z')",
        )?
        .execute(params![
            decision.id.as_str(),
            system,
            decision.client.expose(),
            decision.provider.as_str(),
            canonical
        ])?;
        Ok(())
    }

    /// An order from `source_system`'s decision, delivered to `provider_system`, in
    /// `status` (`accepted` for an order visits may count against).
    pub fn order(
        &mut self,
        order: &Order,
        source_system: &str,
        provider_system: &str,
        status: &str,
    ) -> Result<(), StoreError> {
        let canonical = json(order)?;
        prepared(
            self.tx,
            &mut self.order,
            "INSERT INTO orders (id, decision_id, source_system, provider, provider_system, client, execute_by,
                plan_due, canonical, created_at, status, start_date, end_date)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, '1970-01-01T00:00:00.000000Z', ?10, ?11, ?12)",
        )?
        .execute(params![
            order.id,
            order.decision_id.as_str(),
            source_system,
            order.provider.as_str(),
            provider_system,
            order.client.expose(),
            order.execute_by.to_string(),
            order.plan_due.to_string(),
            canonical,
            status,
            order.start_date.to_string(),
            order.end_date.map(|d| d.to_string()),
        ])?;
        Ok(())
    }

    /// A tag registered in `client`'s home from `installed_on`, not removed.
    pub fn tag(&mut self, tag_uid: &str, client: &str, installed_on: NaiveDate) -> Result<(), StoreError> {
        prepared(
            self.tx,
            &mut self.tag,
            "INSERT INTO tag_registrations (tag_uid, client, installed_on, removed_on, created_at)
             VALUES (?1, ?2, ?3, NULL, '')",
        )?
        .execute(params![tag_uid, client, installed_on.to_string()])?;
        Ok(())
    }

    /// A stored visit (no log entry, no file line).
    pub fn visit(&mut self, v: &VisitRow<'_>) -> Result<(), StoreError> {
        prepared(
            self.tx,
            &mut self.visit,
            "INSERT INTO visits (source_id, system, provider, client, order_id, staff, check_in, check_out,
                month, seconds, planned_minutes, visit_outcome, manual, outcome, codes, findings, canonical,
                log_seq, line, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, 0, NULL, ?18)",
        )?
        .execute(params![
            v.source_id,
            v.system,
            v.provider,
            v.client,
            v.order_id,
            v.staff,
            v.check_in.as_str(),
            v.check_out.as_str(),
            v.month,
            v.seconds,
            v.planned_minutes,
            v.visit_outcome,
            v.manual,
            v.outcome,
            v.codes,
            v.findings,
            v.canonical,
            v.received_at.map_or(SEEDED, Stamp::as_str),
        ])?;
        Ok(())
    }

    /// An invoice (or credit note: `kind`) from `provider` for `month` (`YYYY-MM`), its
    /// canonical form as JSON.
    pub fn invoice(
        &mut self,
        provider: &str,
        kind: &str,
        id: &str,
        month: &str,
        canonical: &str,
    ) -> Result<(), StoreError> {
        prepared(
            self.tx,
            &mut self.invoice,
            "INSERT INTO invoices (provider, kind, id, month, canonical, log_seq, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 0, '1970-01-01T00:00:00.000000Z')",
        )?
        .execute(params![provider, kind, id, month, canonical])?;
        Ok(())
    }

    /// Marks every visit loaded so far as reported to the case-management systems, so the
    /// hub does not forward a seeded month.
    pub fn mark_visits_reported(&mut self) -> Result<(), StoreError> {
        self.tx.execute(
            "INSERT INTO progress (name, through) SELECT 'visit_reports', COALESCE(MAX(id), 0) FROM visits",
            [],
        )?;
        Ok(())
    }
}

/// What [`export_month`] writes: one table of a month, flattened for another database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    /// Every order active in the month by its own dates: `id, provider, minutes_per_month`
    /// (its services' sum), `start_date, end_date`, its decision's `valid_from, valid_to`.
    Orders,
    /// The month's visits: `provider, month, order_id, check_in, check_out, outcome,
    /// visit_outcome, planned_minutes, manual` (`t`/`f`).
    Visits,
    /// The month's invoice and credit-note lines: `provider, invoice_id, kind, month,
    /// order_id, minutes, amount` (öre).
    InvoiceLines,
}

/// Writes one table of `month` (`YYYY-MM`) from the database at `path` as PostgreSQL's
/// `COPY ... FROM STDIN` text format (tab-separated, `\N` for NULL), read-only, for a
/// benchmark that loads the same data into another database (`carehub bench verify
/// --peer postgres`). Values are written as stored; text holding a tab, a newline or a
/// backslash is refused (none of the seeded columns do). Returns the rows written.
pub fn export_month(path: &Path, month: &str, table: Export, out: &mut dyn std::io::Write) -> Result<u64, StoreError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.execute_batch("PRAGMA mmap_size = 0;")?;
    let sql = match table {
        Export::Orders => {
            "SELECT o.id, o.provider,
                    (SELECT SUM(json_extract(s.value, '$.minutes_per_month')) FROM json_each(o.canonical, '$.services') s),
                    o.start_date, o.end_date, json_extract(d.canonical, '$.valid_from'), json_extract(d.canonical, '$.valid_to')
             FROM orders o JOIN decisions d ON d.id = o.decision_id
             WHERE o.start_date <= date(?1 || '-01', '+1 month', '-1 day') AND (o.end_date IS NULL OR o.end_date >= ?1 || '-01')"
        }
        Export::Visits => {
            "SELECT provider, month, order_id, check_in, check_out, outcome, visit_outcome, planned_minutes,
                    CASE WHEN manual THEN 't' ELSE 'f' END
             FROM visits WHERE month = ?1"
        }
        Export::InvoiceLines => {
            "SELECT i.provider, i.id, i.kind, i.month, json_extract(l.value, '$.order_id'),
                    json_extract(l.value, '$.minutes'), json_extract(l.value, '$.amount')
             FROM invoices i, json_each(i.canonical, '$.lines') l WHERE i.month = ?1"
        }
    };
    let io = |e: std::io::Error| StoreError::backend("writing an export", e);
    let mut stmt = conn.prepare(sql)?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([month])?;
    let mut n = 0u64;
    let mut line = Vec::with_capacity(256);
    while let Some(r) = rows.next()? {
        line.clear();
        for c in 0..columns {
            if c > 0 {
                line.push(b'\t');
            }
            match r.get_ref(c)? {
                rusqlite::types::ValueRef::Null => line.extend_from_slice(b"\\N"),
                rusqlite::types::ValueRef::Integer(i) => line.extend_from_slice(i.to_string().as_bytes()),
                rusqlite::types::ValueRef::Real(f) => line.extend_from_slice(f.to_string().as_bytes()),
                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                    if t.iter().any(|b| matches!(b, b'\t' | b'\n' | b'\r' | b'\\')) {
                        return Err(StoreError::backend("exporting", "a value holds a tab, a newline or a backslash"));
                    }
                    line.extend_from_slice(t);
                }
            }
        }
        line.push(b'\n');
        out.write_all(&line).map_err(io)?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{InvoiceStore, OrderFilter, OrderStore, VisitFilter, VisitStore};
    use carehub_model::{Clock, Deadlines};

    /// What the loader writes is what the store reads: a decision's order, its tag, a
    /// visit, an invoice; and a seeded month is not forwarded again.
    #[tokio::test]
    async fn the_store_reads_what_was_loaded() {
        let dir = tempfile::tempdir().expect("dir");
        let db = dir.path().join("bulk.db");
        let decision: Decision = serde_json::from_value(serde_json::json!({
            "id": "combine:SEED-1", "client": "193601016987", "case_officer": "hl-1",
            "provider": "5599000014", "valid_from": "2026-10-01",
            "services": [{"code": "PO", "category": "personal_care", "minutes_per_month": 1800}]
        }))
        .expect("decision");
        let day = NaiveDate::from_ymd_opt(2026, 10, 1).expect("day");
        let order = Order::from_decision("O-SEED1".into(), &decision, day, Deadlines::default());
        let at = day.and_hms_opt(7, 0, 0).expect("time").and_utc();
        let (check_in, check_out) = (Stamp::new(at), Stamp::new(at + chrono::Duration::minutes(30)));
        for durability in [Durability::Unjournaled, Durability::WalUnsynced] {
            let _ = std::fs::remove_file(&db);
            let mut loader = BulkLoader::create(&db, durability).expect("create");
            loader
                .load(|batch| -> Result<(), StoreError> {
                    batch.decision("combine", &decision)?;
                    batch.order(&order, "combine", "phoniro", "accepted")?;
                    batch.tag("04000001", "193601016987", day)?;
                    batch.visit(&VisitRow {
                        source_id: "phoniro:S-1",
                        system: "phoniro",
                        provider: "5599000014",
                        client: "193601016987",
                        order_id: "O-SEED1",
                        staff: "seed-1",
                        check_in: &check_in,
                        check_out: &check_out,
                        month: "2026-10",
                        seconds: 1800,
                        planned_minutes: 30,
                        visit_outcome: "performed",
                        manual: false,
                        outcome: "accepted",
                        codes: "",
                        findings: "[]",
                        canonical: "{}",
                        received_at: None,
                    })?;
                    batch.invoice("5599000014", "invoice", "HC-1", "2026-10", r#"{"lines":[]}"#)?;
                    batch.mark_visits_reported()
                })
                .expect("load");
            loader.finish().expect("finish");

            let store = SqliteStore::open(&db, Clock::system()).expect("open");
            let orders = store.orders(OrderFilter { limit: 10, ..OrderFilter::default() }).await.expect("orders");
            assert_eq!(orders.len(), 1, "{durability:?}");
            assert_eq!((orders[0].order.id.as_str(), orders[0].status.as_str()), ("O-SEED1", "accepted"));
            let tags = store.tags(None, None).await.expect("tags");
            assert_eq!(tags.len(), 1, "{durability:?}");
            let visits = store.visits(VisitFilter { limit: 10, ..VisitFilter::default() }).await.expect("visits");
            assert_eq!(visits.len(), 1, "{durability:?}");
            assert_eq!(visits[0].check_in, at);
            assert!(store.invoice("5599000014", "invoice", "HC-1").await.expect("invoice").is_some());
            assert!(store.visits_to_report(10).await.expect("report").visits.is_empty(), "{durability:?}");
        }
    }
}
