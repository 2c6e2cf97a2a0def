//! The embedded SQLite backend.
//!
//! WAL, `synchronous=FULL`, one writer thread that group-commits whatever requests have
//! queued up while the previous commit was syncing, so many concurrent senders share one
//! fsync (`writer`). Reads use a small pool of separate connections on the blocking
//! thread pool; WAL lets them run beside the writer.
//!
//! # Layout
//! Imports run one way, from this module down to its children and from the children to
//! `rows` and `log`; no two of them import each other.
//! - this module: [`SqliteStore`], opening and migrating the file, the [`Store`] trait's
//!   reads, and the benchmark's bare insert loop.
//! - `writer`: the writer thread (group commit; a savepoint per request only when one fails) and the WAL
//!   checkpointer; where each [`Op`] becomes SQL.
//! - `log`: the hash chain's append inside the writer's transaction.
//! - `rows`: the column lists and the row -> record mapping every read shares.
//! - `visits`: the visit facts over the writer's transaction, the batch insert, and the
//!   visit listings.
//! - `month`: month verification's bulk reads.
//! - `followup`: the follow-up report's reads.
//! - `audit`: the access log, the message log's leaf hashes, checkpoints.
//! - [`bulk`]: the benchmarks' bulk loader, straight into a fresh file (not a way in for
//!   real data: it runs no rule and writes no log).
//! - [`snapshot`]: the database read table by table in one snapshot, for `carehub db
//!   copy` (nothing written).

mod audit;
pub mod bulk;
mod followup;
mod life;
mod log;
mod month;
mod rows;
pub mod snapshot;
mod visits;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use carehub_model::Clock;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use self::rows::*;
pub use self::writer::MAX_BATCH;
use self::writer::{checkpoint_loop, writer_loop, WriteRequest};
use crate::store::*;

/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KIB: u32 = 256 * 1024;

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_outbox_action.sql"),
    include_str!("migrations/0003_tags.sql"),
    include_str!("migrations/0004_visits.sql"),
    include_str!("migrations/0005_invoices.sql"),
    include_str!("migrations/0006_verifications_by_id.sql"),
    include_str!("migrations/0007_log_links.sql"),
    include_str!("migrations/0008_invoice_generations.sql"),
    include_str!("migrations/0009_decision_life.sql"),
    include_str!("migrations/0010_audit.sql"),
    include_str!("migrations/0011_retention.sql"),
    include_str!("migrations/0012_leases.sql"),
    include_str!("migrations/0013_visits_month_covering.sql"),
];

/// The SQLite store. Cheap to clone; all clones share the writer and the reader pool.
#[derive(Clone)]
pub struct SqliteStore {
    writer: mpsc::Sender<WriteRequest>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
}

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA temp_store = MEMORY;
         PRAGMA mmap_size = 4294967296;",
    )?;
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: usize = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::backend(
            "migrating",
            format!(
                "the database is at schema version {version}, newer than this carehub ({}): upgrade carehub",
                MIGRATIONS.len()
            ),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
    }
    tx.commit()?;
    Ok(())
}

/// Creates the database at `path` if needed and runs pending migrations, with no store
/// threads left behind: for bulk loaders (the benchmarks' seeds) that write the file
/// directly before a store opens it.
pub fn migrate_file(path: &Path) -> Result<(), StoreError> {
    let mut conn = open_connection(path)?;
    migrate(&mut conn)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and runs pending migrations. The
    /// writer stamps what it writes (log entries, attempts, claims) with `clock`'s time.
    pub fn open(path: &Path, clock: Clock) -> Result<SqliteStore, StoreError> {
        let mut conn = open_connection(path)?;
        // The writer's page cache holds the hot index pages (a batch of visits touches six
        // indexes at random places): with SQLite's 2 MB default it would spill dirty pages
        // to the WAL in the middle of a transaction and read them back.
        conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB};"))?;
        migrate(&mut conn)?;
        // Checkpoints (copying the WAL into the database file) run on their own thread, so
        // the writer only appends to the WAL and its commits do not wait for them.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        // The writer starts the WAL over after a complete checkpoint; the file is then cut
        // back to this size rather than kept at the largest it ever grew to.
        conn.pragma_update(None, "journal_size_limit", writer::WAL_KEEP_BYTES)?;
        let (tx, rx) = mpsc::channel::<WriteRequest>(8192);
        std::thread::Builder::new()
            .name("carehub-store-writer".into())
            .spawn(move || writer_loop(conn, rx, &clock))
            .map_err(|e| StoreError::backend("cannot start the writer thread", e))?;
        let checkpointer = open_connection(path)?;
        let alive = tx.downgrade();
        std::thread::Builder::new()
            .name("carehub-store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, alive))
            .map_err(|e| StoreError::backend("cannot start the checkpoint thread", e))?;
        Ok(SqliteStore { writer: tx, readers: Arc::new(Mutex::new(Vec::new())), path: path.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.lock().map_err(|_| StoreError::Closed)?.pop();
            let conn = match conn {
                Some(c) => c,
                None => open_connection(&path)?,
            };
            let result = f(&conn);
            if let Ok(mut p) = pool.lock() {
                if p.len() < READERS_KEPT {
                    p.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| StoreError::backend("reader task failed", e))?
    }
}

/// Read connections kept open for the next read. A read that finds none opens one, which
/// parses the schema and maps the file again: with 64 clients posting decisions more than 8
/// reads were often under way at once, and opening connections took a sixteenth of the
/// process's CPU when only 8 were kept. Keeping 64 saved a little more, but the largest the
/// WAL grew was larger in every run measured (BENCHMARKS.md, issue 20 item 5).
const READERS_KEPT: usize = 16;

const OVERDUE_SQL: &str = "((acked_at IS NULL AND execute_by < ?1)
    OR (plan_established_on IS NULL AND plan_due < ?1 AND COALESCE(ack_status, '') <> 'rejected'))";

#[async_trait]
impl CommitStore for SqliteStore {
    fn wal_bytes(&self) -> u64 {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer.send(WriteRequest { ops, reply }).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.is_closed() {
            return Err(StoreError::Closed);
        }
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).map(|_| ())?)).await
    }
}

#[async_trait]
impl LogStore for SqliteStore {
    async fn log_entry(&self, seq: i64) -> Result<Option<LogEntry>, StoreError> {
        self.read(move |c| {
            Ok(c.query_row(&format!("SELECT {LOG_COLUMNS}, payload FROM message_log WHERE seq = ?1"), [seq], |r| {
                log_row(r, true)
            })
            .optional()?)
        })
        .await
    }

    async fn log_entries(&self, f: LogFilter) -> Result<Vec<LogEntry>, StoreError> {
        self.read(move |c| {
            let mut sql = format!(
                "SELECT {LOG_COLUMNS}{} FROM message_log WHERE 1=1",
                if f.with_payload { ", payload" } else { "" }
            );
            let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
            // A client or an order is found in the entry's own column or in its links.
            let mut linked = |col: &str, v: &Option<String>| {
                if let Some(v) = v {
                    args.push(Box::new(v.clone()));
                    let n = args.len();
                    sql.push_str(&format!(
                        " AND ({col} = ?{n} OR seq IN (SELECT seq FROM log_links WHERE {col} = ?{n}))"
                    ));
                }
            };
            linked("client", &f.client);
            linked("order_id", &f.order_id);
            let mut add = |col: &str, op: &str, v: &Option<String>| {
                if let Some(v) = v {
                    args.push(Box::new(v.clone()));
                    sql.push_str(&format!(" AND {col} {op} ?{}", args.len()));
                }
            };
            add("provider", "=", &f.provider);
            add("decision_id", "=", &f.decision_id);
            add("message_type", "=", &f.message_type);
            add("system", "=", &f.system);
            add("status", "=", &f.status);
            add("error_code", "=", &f.error_code);
            add("at", ">=", &f.since.map(ts));
            add("at", "<", &f.until.map(ts));
            for (op, bound) in [(">", f.after_seq), ("<", f.before_seq)] {
                if let Some(seq) = bound {
                    args.push(Box::new(seq));
                    sql.push_str(&format!(" AND seq {op} ?{}", args.len()));
                }
            }
            let order = if f.newest_first { "DESC" } else { "ASC" };
            sql.push_str(&format!(" ORDER BY seq {order} LIMIT {}", f.limit.clamp(1, 10_000)));
            let mut stmt = c.prepare(&sql)?;
            let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
            let rows =
                stmt.query_map(refs.as_slice(), |r| log_row(r, f.with_payload))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }
}

#[async_trait]
impl OrderStore for SqliteStore {
    async fn decision(&self, id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT id, system, content_hash, client, provider, canonical, received_at, version
                 FROM decisions WHERE id = ?1",
            )?
            .query_row([id], |r| {
                Ok(DecisionRecord {
                    id: r.get(0)?,
                    system: r.get(1)?,
                    content_hash: r.get(2)?,
                    client: r.get(3)?,
                    provider: r.get(4)?,
                    canonical: r.get(5)?,
                    received_at: instant(r, 6)?,
                    version: r.get(7)?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn order(&self, id: &str) -> Result<Option<OrderRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.query_row(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"), [id], order_row).optional()?)
        })
        .await
    }

    async fn orders(&self, f: OrderFilter) -> Result<Vec<OrderRecord>, StoreError> {
        self.read(move |c| {
            let mut sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE 1=1");
            let mut args: Vec<String> = Vec::new();
            if let Some(day) = f.overdue_on {
                args.push(day.to_string());
                sql.push_str(&format!(" AND {OVERDUE_SQL}"));
            }
            if let Some(p) = &f.provider {
                args.push(p.clone());
                sql.push_str(&format!(" AND provider = ?{}", args.len()));
            }
            if let Some(s) = &f.status {
                args.push(s.clone());
                sql.push_str(&format!(" AND status = ?{}", args.len()));
            }
            if let Some(client) = &f.client {
                args.push(client.clone());
                sql.push_str(&format!(" AND client = ?{}", args.len()));
            }
            if let Some(d) = &f.decision_id {
                args.push(d.clone());
                sql.push_str(&format!(" AND decision_id = ?{}", args.len()));
            }
            // A client's or a decision's orders read in the order they applied.
            let order_by = if f.client.is_some() || f.decision_id.is_some() {
                "start_date, created_at, id"
            } else {
                "created_at, id"
            };
            sql.push_str(&format!(" ORDER BY {order_by} LIMIT {}", f.limit.clamp(1, 10_000)));
            let mut stmt = c.prepare(&sql)?;
            let rows =
                stmt.query_map(rusqlite::params_from_iter(args.iter()), order_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn overdue_counts(&self, today: NaiveDate) -> Result<OverdueCounts, StoreError> {
        self.read(move |c| {
            let day = today.to_string();
            let not_confirmed: u64 =
                c.query_row("SELECT COUNT(*) FROM orders WHERE acked_at IS NULL AND execute_by < ?1", [&day], |r| {
                    r.get(0)
                })?;
            let plan_missing: u64 = c.query_row(
                "SELECT COUNT(*) FROM orders WHERE plan_established_on IS NULL AND plan_due < ?1
                 AND COALESCE(ack_status, '') <> 'rejected'",
                [&day],
                |r| r.get(0),
            )?;
            Ok(OverdueCounts { not_confirmed, plan_missing })
        })
        .await
    }

    async fn client_providers(&self, client: &str, day: NaiveDate) -> Result<Vec<String>, StoreError> {
        let (client, day) = (client.to_owned(), day.to_string());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT provider, paused FROM orders
                 WHERE client = ?1 AND start_date <= ?2 AND (end_date IS NULL OR end_date >= ?2)
                   AND (ack_status IS NULL OR ack_status <> 'rejected')
                 ORDER BY provider",
            )?;
            let rows =
                stmt.query_map(params![client, day], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))?;
            let mut out: Vec<String> = Vec::new();
            for row in rows {
                let (provider, paused) = row?;
                if !life::paused_on(paused.as_deref(), &day) && out.last() != Some(&provider) {
                    out.push(provider);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn decision_versions(&self, id: &str) -> Result<Vec<DecisionVersion>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| life::decision_versions(c, &id)).await
    }

    async fn provider_reports(&self, filter: ProviderReportFilter) -> Result<Vec<ProviderReport>, StoreError> {
        self.read(move |c| life::provider_reports(c, &filter)).await
    }
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn deliveries(&self, f: DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        self.read(move |c| {
            let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM outbox WHERE 1=1");
            let mut args: Vec<String> = Vec::new();
            if let Some(s) = &f.state {
                args.push(s.clone());
                sql.push_str(&format!(" AND state = ?{}", args.len()));
            }
            if let Some(o) = &f.order_id {
                args.push(o.clone());
                sql.push_str(&format!(" AND order_id = ?{}", args.len()));
            }
            sql.push_str(&format!(" ORDER BY id LIMIT {}", f.limit.clamp(1, 10_000)));
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(args.iter()), delivery_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(|c| {
            Ok(c.query_row("SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'", [], |r| {
                instant_opt(r, 0)
            })?)
        })
        .await
    }

    async fn pending_deliveries(&self) -> Result<u64, StoreError> {
        // Through the partial index of pending rows: the backlog, not the whole outbox.
        self.read(|c| {
            Ok(c.prepare_cached("SELECT COUNT(*) FROM outbox WHERE state = 'pending'")?.query_row([], |r| r.get(0))?)
        })
        .await
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.read(|c| {
            let mut counts = OutboxCounts::default();
            let mut stmt = c.prepare("SELECT state, COUNT(*) FROM outbox GROUP BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            for row in rows {
                let (state, n) = row?;
                match state.parse() {
                    Ok(DeliveryState::Pending) => counts.pending = n,
                    Ok(DeliveryState::Delivered) => counts.delivered = n,
                    Ok(DeliveryState::Dead) => counts.dead = n,
                    Err(_) => {}
                }
            }
            Ok(counts)
        })
        .await
    }
}

#[async_trait]
impl VisitStore for SqliteStore {
    async fn tags(
        &self,
        client: Option<String>,
        tag_uid: Option<String>,
    ) -> Result<Vec<carehub_model::TagRegistration>, StoreError> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT tag_uid, client, installed_on, removed_on FROM tag_registrations
                 WHERE (?1 IS NULL OR client = ?1) AND (?2 IS NULL OR tag_uid = ?2)
                 ORDER BY installed_on, id LIMIT 10000",
            )?;
            let rows = stmt
                .query_map(params![client, tag_uid], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(uid, client, from, to)| {
                    const BAD: &str = "a stored tag registration does not read back";
                    Ok(carehub_model::TagRegistration {
                        tag_uid: uid
                            .parse()
                            .map_err(|e: carehub_model::ValidationError| StoreError::backend(BAD, e))?,
                        client: client
                            .parse()
                            .map_err(|e: carehub_model::ValidationError| StoreError::backend(BAD, e))?,
                        installed_on: from.parse().map_err(|e: chrono::ParseError| StoreError::backend(BAD, e))?,
                        removed_on: to
                            .map(|d| d.parse())
                            .transpose()
                            .map_err(|e: chrono::ParseError| StoreError::backend(BAD, e))?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn visits(&self, filter: VisitFilter) -> Result<Vec<VisitRecord>, StoreError> {
        self.read(move |c| visits::list(c, &filter)).await
    }

    async fn manual_shares(&self, month: &str) -> Result<Vec<ManualShare>, StoreError> {
        let month = month.to_owned();
        self.read(move |c| visits::manual_shares(c, &month)).await
    }

    async fn visits_to_report(&self, limit: usize) -> Result<ReportBatch, StoreError> {
        self.read(move |c| visits::visits_to_report(c, limit)).await
    }

    async fn feed_cursor(&self, system: &str) -> Result<Option<String>, StoreError> {
        let system = system.to_owned();
        self.read(move |c| visits::feed_cursor(c, &system)).await
    }
}

#[async_trait]
impl InvoiceStore for SqliteStore {
    async fn invoices(
        &self,
        provider: &str,
        month: &str,
        kind: Option<&str>,
    ) -> Result<Vec<InvoiceRecord>, StoreError> {
        let (provider, month, kind) = (provider.to_owned(), month.to_owned(), kind.map(str::to_owned));
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT provider, kind, id, month, canonical, log_seq, received_at FROM invoices
                 WHERE provider = ?1 AND month = ?2 AND (?3 IS NULL OR kind = ?3) ORDER BY received_at",
            )?;
            let rows = stmt.query_map(params![provider, month, kind], invoice_row)?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn invoice(&self, provider: &str, kind: &str, id: &str) -> Result<Option<InvoiceRecord>, StoreError> {
        let (provider, kind, id) = (provider.to_owned(), kind.to_owned(), id.to_owned());
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT provider, kind, id, month, canonical, log_seq, received_at FROM invoices
                 WHERE provider = ?1 AND kind = ?2 AND id = ?3",
            )?
            .query_row(params![provider, kind, id], invoice_row)
            .optional()?)
        })
        .await
    }

    async fn verified_lines(&self, provider: &str, invoice_id: &str) -> Result<Vec<String>, StoreError> {
        let (provider, invoice_id) = (provider.to_owned(), invoice_id.to_owned());
        self.read(move |c| {
            let mut stmt =
                c.prepare_cached("SELECT line_id FROM verified_lines WHERE provider = ?1 AND invoice_id = ?2")?;
            let rows = stmt.query_map(params![provider, invoice_id], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn verification(&self, provider: &str, invoice_id: &str) -> Result<Option<VerificationRecord>, StoreError> {
        let (provider, invoice_id) = (provider.to_owned(), invoice_id.to_owned());
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT provider, invoice_id, month, report, log_seq, created_at FROM verifications
                 WHERE provider = ?1 AND invoice_id = ?2 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row(params![provider, invoice_id], |r| {
                Ok(VerificationRecord {
                    provider: r.get(0)?,
                    invoice_id: r.get(1)?,
                    month: r.get(2)?,
                    report: r.get(3)?,
                    log_seq: r.get(4)?,
                    created_at: instant(r, 5)?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn verified_providers(&self, invoice_id: &str) -> Result<Vec<String>, StoreError> {
        let invoice_id = invoice_id.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT provider FROM verifications WHERE invoice_id = ?1 ORDER BY provider",
            )?;
            let rows = stmt.query_map([invoice_id], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn invoice_generation(&self, provider: &str) -> Result<i64, StoreError> {
        let provider = provider.to_owned();
        self.read(move |c| writer::invoice_generation(c, &provider)).await
    }

    async fn month_providers(&self, month: carehub_model::Month) -> Result<Vec<String>, StoreError> {
        self.read(move |c| month::without_mmap(c, |c| month::month_providers(c, month))).await
    }

    async fn provider_month(
        &self,
        provider: &str,
        month: carehub_model::Month,
        detail: MonthDetail,
    ) -> Result<ProviderMonth, StoreError> {
        let provider = provider.to_owned();
        self.read(move |c| month::without_mmap(c, |c| month::provider_month(c, &provider, month, detail))).await
    }
}

#[async_trait]
impl ReportStore for SqliteStore {
    async fn followup_orders(&self, month: carehub_model::Month) -> Result<Vec<FollowUpOrder>, StoreError> {
        self.read(move |c| followup::orders(c, month)).await
    }

    async fn followup_visits(
        &self,
        provider: &str,
        month: carehub_model::Month,
    ) -> Result<Vec<FollowUpVisit>, StoreError> {
        let provider = provider.to_owned();
        self.read(move |c| followup::visits(c, &provider, month)).await
    }

    async fn followup_reports(&self, month: carehub_model::Month) -> Result<Vec<FollowUpReportCount>, StoreError> {
        self.read(move |c| followup::reports(c, month)).await
    }
}

#[async_trait]
impl AuditStore for SqliteStore {
    async fn access_log(&self, filter: AccessFilter) -> Result<Vec<AccessEntry>, StoreError> {
        self.read(move |c| audit::access_log(c, &filter)).await
    }

    async fn log_size(&self) -> Result<i64, StoreError> {
        self.read(audit::log_size).await
    }

    async fn log_hashes(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        self.read(move |c| audit::log_hashes(c, after_seq, limit)).await
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        self.read(|c| audit::checkpoint(c, None)).await
    }

    async fn checkpoint_covering(&self, size: i64) -> Result<Option<CheckpointRecord>, StoreError> {
        self.read(move |c| audit::checkpoint(c, Some(size))).await
    }
}

/// Where the benchmark's ceiling puts its rows in the indexes ([`bare_insert_loop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeilingKeys {
    /// The issue's ceiling: order ids that grow one by one and one client, on a fresh
    /// database, so every index entry goes at the right-hand end of its index.
    Sequential,
    /// The keys the hub writes (order ids from [`new_order_id`] at the clock's time), after
    /// `prefill` decisions are stored, and each decision's delivery attempt recorded in the
    /// next commit as the delivery loop does (the outbox row and the order updated, a third
    /// log entry). Clients come in the order of the list given, as the decisions bench
    /// sends them.
    ///
    /// [`new_order_id`]: crate::flows::decision::new_order_id
    Hub { prefill: usize },
}

/// The benchmark's ceiling: the rows one decision writes (two log entries, the decision,
/// the order, the outbox row), inserted by a bare loop with the same durability (WAL,
/// `synchronous=FULL`), committing every `per_commit` decisions, with its keys as `keys`
/// says. Returns the elapsed time for `decisions` decisions (a prefill not counted) and
/// the bytes written to the disk meanwhile (the WAL, and the checkpoints SQLite runs as
/// commits pass its threshold). No hashing, no parsing, no HTTP: only SQLite.
pub fn bare_insert_loop(
    path: &Path,
    decisions: usize,
    per_commit: usize,
    payload: &[u8],
    clock: &Clock,
    keys: CeilingKeys,
    clients: &[&str],
) -> Result<(Duration, u64), StoreError> {
    {
        let mut conn = open_connection(path)?;
        // The writer's page cache holds the hot index pages (a batch of visits touches six
        // indexes at random places): with SQLite's 2 MB default it would spill dirty pages
        // to the WAL in the middle of a transaction and read them back.
        conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB};"))?;
        migrate(&mut conn)?;
    }
    let mut conn = open_connection(path)?;
    let hash = "0".repeat(64);
    let (hub_keys, prefill) = match keys {
        CeilingKeys::Sequential => (false, 0),
        CeilingKeys::Hub { prefill } => (true, prefill),
    };
    if hub_keys {
        // As the hub's writer: its indexes are too large for SQLite's default cache.
        conn.execute_batch(&format!("PRAGMA cache_size = -{WRITER_CACHE_KIB};"))?;
    }
    let key = |i: usize| -> (String, String, String) {
        let id = format!("bench:DEC-{i}");
        if !hub_keys || clients.is_empty() {
            return (format!("O-{i:016}"), id, "193601016987".to_owned());
        }
        let order = crate::flows::decision::new_order_id(&id, clock.now());
        (order, id, clients[i % clients.len()].to_owned())
    };
    let commit = |conn: &mut Connection, from: usize, to: usize| -> Result<(), StoreError> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = ts(clock.now());
        // The previous commit's deliveries, answered by the provider (the hub's keys only).
        for i in (if hub_keys { from.saturating_sub(to - from) } else { from })..from {
            let (order, id, client) = key(i);
            tx.prepare_cached(
                "UPDATE outbox SET state = 'delivered', attempts = 1, delivered_at = ?2 WHERE idempotency_key = ?1",
            )?
            .execute(params![order, now])?;
            tx.prepare_cached("UPDATE orders SET status = 'delivered', delivered_at = ?2 WHERE id = ?1")?
                .execute(params![order, now])?;
            tx.prepare_cached(
                "INSERT INTO message_log (seq, at, system, vendor, direction, message_type, content_type, payload,
                    canonical, status, decision_id, order_id, client, provider, prev_hash, hash)
                 VALUES (NULL, ?1, 'phoniro', 'phoniro', 'out', 'order', 'application/json', x'', NULL, 'delivered',
                    ?2, ?3, ?4, '5599000014', ?5, ?5)",
            )?
            .execute(params![now, id, order, client, hash])?;
        }
        for i in from..to {
            let (order, id, client) = key(i);
            for dir in ["in", "out"] {
                tx.prepare_cached(
                    "INSERT INTO message_log (seq, at, system, vendor, direction, message_type, content_type, payload,
                        canonical, status, decision_id, order_id, client, provider, prev_hash, hash)
                     VALUES (NULL, ?1, 'combine', 'combine', ?2, 'decision', 'application/xml', ?3, '{}', 'accepted',
                        ?4, ?5, ?6, '5599000014', ?7, ?7)",
                )?
                .execute(params![now, dir, payload, id, order, client, hash])?;
            }
            tx.prepare_cached(
                "INSERT INTO decisions (id, system, content_hash, client, provider, canonical, received_at)
                 VALUES (?1, 'combine', ?2, ?4, '5599000014', '{}', ?3)",
            )?
            .execute(params![id, hash, now, client])?;
            tx.prepare_cached(
                "INSERT INTO orders (id, decision_id, source_system, provider, provider_system, client, execute_by,
                    plan_due, canonical, created_at, status)
                 VALUES (?1, ?2, 'combine', '5599000014', 'phoniro', ?4, '2026-12-01', '2026-12-01', '{}', ?3, 'queued')",
            )?
            .execute(params![order, id, now, client])?;
            tx.prepare_cached(
                "INSERT INTO outbox (system, message_type, order_id, idempotency_key, content_type, body, state,
                    next_attempt_at, created_at)
                 VALUES ('phoniro', 'order', ?1, ?1, 'application/json', ?2, 'pending', ?3, ?3)",
            )?
            .execute(params![order, payload, now])?;
        }
        tx.commit()?;
        Ok(())
    };
    let mut done = 0;
    while done < prefill {
        let to = (done + per_commit).min(prefill);
        commit(&mut conn, done, to)?;
        done = to;
    }
    let written_before = bytes_written("thread-self");
    let started = std::time::Instant::now();
    let end = prefill + decisions;
    while done < end {
        let to = (done + per_commit).min(end);
        commit(&mut conn, done, to)?;
        done = to;
    }
    let elapsed = started.elapsed();
    Ok((elapsed, bytes_written("thread-self").saturating_sub(written_before)))
}

/// Bytes a process or thread has sent to the disk (`write_bytes` of `/proc/{which}/io`;
/// `self`, `thread-self`): for a store, the WAL's frames and what checkpoints copy into the
/// database file. 0 where it cannot be read. The benchmarks' measure of write volume.
pub fn bytes_written(which: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{which}/io"))
        .ok()
        .and_then(|io| io.lines().find_map(|l| l.strip_prefix("write_bytes:").map(|v| v.trim().parse().ok())))
        .flatten()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database at schema version 6 with an order delivered and an invoice verified and its
    /// report delivered: version 7 links the entries that named no client to the order's.
    #[test]
    fn upgrading_links_the_entries_logged_before_to_their_clients() {
        let dir = tempfile::tempdir().expect("dir");
        let mut conn = Connection::open(dir.path().join("v6.db")).expect("open");
        for sql in &MIGRATIONS[..6] {
            conn.execute_batch(sql).expect("migration");
        }
        conn.execute_batch(
            r#"PRAGMA user_version = 6;
            INSERT INTO decisions (id, system, content_hash, client, provider, canonical, received_at)
            VALUES ('combine:D-1', 'combine', 'h', '193601016987', '5599000014', '{}', 't');
            INSERT INTO orders (id, decision_id, source_system, provider, provider_system, client, execute_by,
                plan_due, canonical, created_at, status)
            VALUES ('O-1', 'combine:D-1', 'combine', '5599000014', 'phoniro', '193601016987', '2026-11-15',
                '2026-11-15', '{}', 't', 'delivered');
            INSERT INTO message_log (seq, at, system, vendor, direction, message_type, content_type, payload,
                canonical, status, order_id, client, delivery_key, prev_hash, hash) VALUES
              (1, 't', 'phoniro', 'phoniro', 'out', 'order', 'x', x'', NULL, 'queued', 'O-1', '193601016987', 'O-1:order', 'h', 'h'),
              (2, 't', 'phoniro', 'phoniro', 'out', 'order', 'x', x'', NULL, 'delivered', 'O-1', NULL, 'O-1:order', 'h', 'h'),
              (3, 't', 'phoniro', 'phoniro', 'in', 'invoice', 'x', x'', '{"lines":[{"order_id":"O-1"},{"order_id":"O-9"}]}', 'accepted', NULL, NULL, NULL, 'h', 'h'),
              (4, 't', 'combine', 'combine', 'out', 'verification', 'x', x'', '{"report":{"lines":[{"order_id":"O-1"}]}}', 'queued', NULL, NULL, 'K', 'h', 'h'),
              (5, 't', 'combine', 'combine', 'out', 'verification', 'x', x'', NULL, 'delivered', NULL, NULL, 'K', 'h', 'h');
            INSERT INTO outbox (system, message_type, order_id, idempotency_key, content_type, body, state,
                next_attempt_at, created_at)
            VALUES ('phoniro', 'order', 'O-1', 'O-1:order', 'x', x'', 'delivered', 't', 't'),
                   ('combine', 'verification', NULL, 'K', 'x', x'', 'delivered', 't', 't');"#,
        )
        .expect("a version 6 database");
        migrate(&mut conn).expect("upgrade");
        let seqs = |sql: &str| -> Vec<i64> {
            conn.prepare(sql)
                .expect("prepare")
                .query_map([], |r| r.get(0))
                .expect("query")
                .map(|r| r.expect("row"))
                .collect()
        };
        assert_eq!(seqs("SELECT seq FROM log_links WHERE client = '193601016987' ORDER BY seq"), vec![2, 3, 4, 5]);
        assert_eq!(
            seqs("SELECT seq FROM log_links WHERE order_id = 'O-9'"),
            vec![3],
            "an unknown order links without a client"
        );
        assert_eq!(seqs("SELECT log_seq FROM outbox ORDER BY id"), vec![1, 4]);
    }

    /// Entries appended before version 11 are hashed over their payloads: after the upgrade
    /// the chain still verifies across them and the entries after, retention keeps their
    /// payloads (it could not keep their hashes verifiable without them), and the database
    /// still refuses any other change to the log.
    #[tokio::test]
    async fn entries_from_before_payload_hashes_verify_and_keep_their_payloads() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("v10.db");
        let conn = Connection::open(&path).expect("open");
        for sql in &MIGRATIONS[..10] {
            conn.execute_batch(sql).expect("migration");
        }
        conn.execute_batch("PRAGMA user_version = 10;").expect("version");
        let at = parse_store_ts("2026-11-22T10:00:00.000000Z").expect("instant");
        let mut prev = crate::log::GENESIS.to_owned();
        for seq in 1..=2i64 {
            let mut e = LogEntry {
                seq,
                at,
                system: "combine".into(),
                vendor: "combine".into(),
                direction: "in".into(),
                message_type: "decision".into(),
                content_type: "application/xml".into(),
                payload: format!("<old {seq}/>").into_bytes(),
                canonical: None,
                status: LogStatus::Accepted,
                error_code: None,
                error_message: None,
                decision_id: None,
                order_id: None,
                client: None,
                provider: None,
                delivery_key: None,
                prev_hash: prev.clone(),
                hash: String::new(),
                payload_hash: None,
                payload_removed: false,
            };
            e.hash = crate::log::entry_hash(&prev, &e);
            conn.execute(
                "INSERT INTO message_log (seq, at, system, vendor, direction, message_type, content_type, payload,
                    status, prev_hash, hash) VALUES (?1, ?2, 'combine', 'combine', 'in', 'decision', 'application/xml',
                    ?3, 'accepted', ?4, ?5)",
                params![seq, ts(at), e.payload, e.prev_hash, e.hash],
            )
            .expect("a version 10 entry");
            prev = e.hash;
        }
        drop(conn);

        let clock = Clock::frozen(at + chrono::Duration::days(1));
        let store = SqliteStore::open(&path, clock.clone()).expect("upgrade");
        let new = NewLogEntry {
            system: "combine".into(),
            vendor: "combine".into(),
            direction: "in",
            message_type: "decision".into(),
            content_type: "application/xml".into(),
            payload: b"<new/>".to_vec(),
            ..NewLogEntry::default()
        };
        store.commit(vec![Op::AppendLog(new)]).await.expect("append");
        let run = store
            .commit(vec![Op::RemovePayloads {
                before: clock.now() + chrono::Duration::seconds(1),
                policy: "all".into(),
            }])
            .await
            .expect("retention");
        let Some(OpResult::Logged(run)) = run.first().cloned() else { panic!("the run is logged") };
        let entries = store
            .log_entries(LogFilter { limit: 10, with_payload: true, ..LogFilter::default() })
            .await
            .expect("entries");
        assert_eq!(entries.iter().map(|e| e.payload_removed).collect::<Vec<_>>(), vec![false, false, true, false]);
        assert_eq!(entries[0].payload, b"<old 1/>".to_vec());
        let said = entries[run as usize - 1].canonical.clone().unwrap_or_default();
        assert!(said.contains(r#""kept_unhashed":2"#) && said.contains(r#""removed":1"#), "{said}");
        let report = crate::store::verify_chain(&store).await.expect("verifies");
        assert_eq!((report.entries, report.first_bad), (4, None));

        let conn = open_connection(&path).expect("open");
        for sql in [
            "UPDATE message_log SET status = 'rejected' WHERE seq = 3",
            "UPDATE message_log SET payload = x'' WHERE seq = 1",
            "UPDATE message_log SET payload = x'00', retained_by = NULL WHERE seq = 3",
            "UPDATE message_log SET payload = x'', retained_by = 4 WHERE seq = 2",
        ] {
            assert!(conn.execute(sql, []).is_err(), "refused: {sql}");
        }
    }
}
