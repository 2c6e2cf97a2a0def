//! carehub's store on PostgreSQL: every store trait of `carehub_core::store`, for a hub
//! that outgrows one machine or needs a second node (SPEC §11). Chosen by
//! `[hub] database = "postgres://..."`; SQLite stays the embedded default. It lives in its
//! own crate so that the PostgreSQL driver stays out of `carehub-core`.
//!
//! # Why it is built this way
//! - **The synchronous `postgres` driver, on the blocking thread pool.** Visit ingestion
//!   runs core's rules over the synchronous `VisitLedger` port inside the commit's
//!   transaction, so a commit is a plain function over a transaction, run in
//!   `spawn_blocking`: no `.await` falls between a look-up and the insert that depends on
//!   it. Connections are pooled (a few kept idle, at most `MAX_READERS` reading at once
//!   plus the writer's), and each keeps its prepared statements.
//! - **Group commit, a receipt only after COMMIT.** Each node's writer thread applies the
//!   requests queued meanwhile in one transaction, each inside its own savepoint (its ops
//!   land together or not at all), and answers them after COMMIT returned (with the
//!   server's `synchronous_commit`, durable as SQLite's `FULL`). One transaction per
//!   request would cost a WAL flush per request with the sequencer held (`commit`).
//! - **One hash chain across nodes.** A commit that appends to the message log locks the
//!   one-row sequencer `chain_head` (`SELECT ... FOR UPDATE`) first, appends after the
//!   head it read, and moves the head before COMMIT (`log`): entries are numbered without
//!   gaps in commit order, hashed with core's functions exactly as SQLite hashes them, so
//!   `audit verify` reads the same chain on either backend.
//! - **Rules that must hold across nodes are row locks, not hub locks**: claims take due
//!   outbox rows `FOR UPDATE SKIP LOCKED` with a lease; INV005 locks the provider's
//!   invoice-generation row; a decision change locks the decision's row (`commit`).
//! - **Pollers are owned through lease rows, not advisory locks.** Each SFTP inbox, feed,
//!   the visit forwarder and the checkpointer run on one node at a time, the one holding
//!   the row `leases(name)` through its `until` (`Op::HoldLease`, renewed every heartbeat,
//!   given up on a clean shutdown; `carehub_core::delivery::lease`). A session-level
//!   advisory lock would need a connection held open per lock for as long as the poller
//!   runs, and a pooled connection returned with the lock still taken would hand it to
//!   whoever takes the connection next; it has no counterpart on SQLite; and the contract
//!   suite could not move its expiry with the hub's clock. A lease row is an ordinary row
//!   written by an ordinary commit: the same on both backends, tested once by the suite.
//! - **Wake-ups across nodes by `LISTEN/NOTIFY`.** A commit that adds outbox rows notifies
//!   `carehub_outbox` inside its transaction; each node keeps one connection listening
//!   (`listen`) that wakes its delivery loop, so a decision taken by one node is sent by
//!   whichever node claims it first, without waiting for a poll. Polling stays as the
//!   fallback for a notification lost while a connection was down.
//! - **Times stay text**, the same fixed-width UTC form SQLite keeps
//!   (`2026-11-22T10:48:00.000000Z`, `carehub_core::store::ts`): it is the form the
//!   log hashes, it sorts as text, and with every text column collated `"C"` both backends
//!   order and compare rows identically, so the contract suite pins one behaviour, not two.
//!   `timestamptz` would buy nothing the queries use and cost a conversion on every hashed
//!   read.
//! - **Migrations at start**, SQL files under `migrations/` applied in order in one
//!   transaction under an advisory lock (nodes starting together apply them once) and
//!   recorded in `schema_migrations`.
//!
//! # Where it differs from SQLite
//! PostgreSQL's text cannot hold a NUL character, which SQLite keeps. A listing filtered by
//! such text finds nothing (no stored value could equal it), as on SQLite. A log entry's
//! text and a delivery's last error (a vendor's answer may carry one) are stored with NUL
//! replaced by U+FFFD, before the entry is hashed, so the chain verifies over what is
//! stored. Anything else written with a NUL (an identifier in a vendor's message) fails
//! its commit as a backend error.
//!
//! # Layout
//! - this module: [`PgStore`], the pool, migrations, and the traits' reads.
//! - `db`: a connection with its prepared statements; the calls every query goes through.
//! - `commit`: the group-committing writer, and where each `Op` becomes SQL; the
//!   `NOTIFY` of a commit that adds outbox rows.
//! - `listen`: the one `LISTEN` connection per store that wakes the delivery loop.
//! - `log`: the chain's sequencer and append.
//! - `rows`: column lists and row -> record mapping.
//! - `visits`: the visit ledger and the visit listings.
//! - `month`: month verification's and the follow-up's bulk reads.
//! - `audit`: the access log, retention, the message log's leaf hashes, checkpoints.
//! - [`copy`]: `carehub db copy`, a SQLite database moved into an empty PostgreSQL one
//!   and verified there.

mod audit;
mod commit;
pub mod copy;
mod db;
mod listen;
mod log;
mod month;
mod rows;
pub mod scratch;
mod visits;

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use carehub_core::store::*;
use carehub_model::Clock;
use chrono::{DateTime, NaiveDate, Utc};
use postgres::types::ToSql;
use postgres::NoTls;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::db::{col, Conn, Db};
use crate::rows::*;

/// The schema's migrations, in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../migrations/0001_init.sql")),
    (2, "audit", include_str!("../migrations/0002_audit.sql")),
    (3, "leases", include_str!("../migrations/0003_leases.sql")),
];

/// Connections kept open between requests: as many as reads may run at once, so a steady
/// load reuses connections (and their prepared statements) instead of opening and closing
/// one per read past the idle count.
const MAX_IDLE: usize = MAX_READERS;

/// Reads running at once on one node, each on a connection of its own: a burst of requests
/// waits its turn here rather than opening connections past the server's limit (every
/// node of a cluster counts against it).
const MAX_READERS: usize = 16;

/// The key of the advisory lock migrations run under ("carehub" in ASCII).
const MIGRATION_LOCK: i64 = 0x63_61_72_65_68_75_62;

/// The PostgreSQL store. Cheap to clone; clones share the writer and the pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Arc<Pool>,
    writer: mpsc::Sender<commit::Request>,
    readers: Arc<Semaphore>,
    /// Where outbox wake-ups are listened for (`watch_outbox`); its listeners end when the
    /// last clone of the store is dropped.
    listener: Arc<listen::Listener>,
}

pub(crate) struct Pool {
    config: postgres::Config,
    idle: Mutex<Vec<Conn>>,
    /// Batches the writer ran a second time, one statement at a time, because its
    /// optimistic pass failed (`commit.rs`).
    pub(crate) second_passes: std::sync::atomic::AtomicU64,
}

impl Pool {
    fn new(config: postgres::Config) -> Pool {
        Pool { config, idle: Mutex::new(Vec::new()), second_passes: std::sync::atomic::AtomicU64::new(0) }
    }

    pub(crate) fn take(&self) -> Result<Conn, StoreError> {
        let idle = self.idle.lock().map_err(|_| StoreError::Closed)?.pop();
        match idle {
            Some(c) if !c.client.is_closed() => Ok(c),
            _ => self.connect(),
        }
    }

    pub(crate) fn give(&self, conn: Conn) {
        if conn.client.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let client = self.config.connect(NoTls).map_err(|e| db::pg("connecting", e))?;
        Ok(Conn::new(client))
    }
}

impl Drop for Pool {
    /// Each blocking client owns a small runtime, which must not be dropped on an async
    /// task's thread: the idle ones are closed on a thread of their own.
    fn drop(&mut self) {
        let idle = self.idle.get_mut().map(std::mem::take).unwrap_or_default();
        if !idle.is_empty() {
            let _ = std::thread::Builder::new().name("carehub-pg-close".into()).spawn(move || drop(idle));
        }
    }
}

/// The connection settings of a `postgres://` URL (or a key=value string), with a connect
/// timeout and the hub's name as the application's.
fn config(url: &str) -> Result<postgres::Config, StoreError> {
    let mut config = postgres::Config::from_str(url).map_err(|e| db::pg("reading the database URL", e))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("carehub");
    }
    Ok(config)
}

/// The settings of the connection that listens for outbox wake-ups: the same URL as the
/// pool's, on the async driver, with TCP keepalives frequent enough that a connection a
/// network cut left half open is noticed and opened again within a minute or so.
fn listen_config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    let mut config = tokio_postgres::Config::from_str(url).map_err(|e| db::pg("reading the database URL", e))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    if config.get_application_name().is_none() {
        config.application_name("carehub-listen");
    }
    config.keepalives(true).keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

/// Where a configuration points, without its password: `host:port/database`.
fn describe(config: &postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("postgres"))
}

/// Applies the pending migrations in one transaction, under an advisory lock so nodes
/// starting together apply each once. Refuses a database newer than this carehub.
fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    let mut db = conn.transaction()?;
    db.batch(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
         CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );"
    ))?;
    let version: i64 = col(&db.one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?, 0)?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if version > known {
        return Err(StoreError::backend(
            "migrating",
            format!("the database is at schema version {version}, newer than this carehub ({known}): upgrade carehub"),
        ));
    }
    for (v, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > version) {
        db.batch(sql)?;
        db.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", &[v, name])?;
    }
    db.commit()
}

/// Runs `f` on a pooled connection on the blocking thread pool.
async fn blocking<T, F>(pool: Arc<Pool>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut Conn) -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.take()?;
        let result = f(&mut conn);
        pool.give(conn);
        result
    })
    .await
    .map_err(|e| StoreError::backend("postgres task failed", e))?
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`), applies the
    /// pending migrations, and opens the store. The store stamps what it writes (log
    /// entries, attempts, claims) with `clock`'s time.
    pub async fn open(url: &str, clock: Clock) -> Result<PgStore, StoreError> {
        let pool = Arc::new(Pool::new(config(url)?));
        blocking(pool.clone(), migrate).await?;
        PgStore::start(pool, listen_config(url)?, clock)
    }

    /// [`PgStore::open`] for a caller that cannot await (assembling the hub): connects and
    /// migrates on a thread of its own (a blocking client must not run on an async task's
    /// thread), so it may be called from anywhere, and blocks until done.
    pub fn open_blocking(url: &str, clock: Clock) -> Result<PgStore, StoreError> {
        let pool = Arc::new(Pool::new(config(url)?));
        let migrating = pool.clone();
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut conn = migrating.take()?;
                let result = migrate(&mut conn);
                migrating.give(conn);
                result
            })
            .join()
            .map_err(|_| StoreError::backend("migrating", "the migration thread panicked"))?
        })?;
        PgStore::start(pool, listen_config(url)?, clock)
    }

    /// Starts the writer thread over a migrated database's pool.
    fn start(pool: Arc<Pool>, listen: tokio_postgres::Config, clock: Clock) -> Result<PgStore, StoreError> {
        let (writer, rx) = mpsc::channel::<commit::Request>(8192);
        let for_writer = pool.clone();
        std::thread::Builder::new()
            .name("carehub-pg-writer".into())
            .spawn(move || commit::writer_loop(for_writer, rx, &clock))
            .map_err(|e| StoreError::backend("cannot start the writer thread", e))?;
        Ok(PgStore {
            pool,
            writer,
            readers: Arc::new(Semaphore::new(MAX_READERS)),
            listener: Arc::new(listen::Listener::new(listen)),
        })
    }

    /// Reaches the database at `url` without changing it (`carehub check`): the server's
    /// version, where it is, and the schema's version against this carehub's.
    pub async fn reach(url: &str) -> Result<String, StoreError> {
        let config = config(url)?;
        let place = describe(&config);
        let pool = Arc::new(Pool::new(config));
        blocking(pool, move |conn| {
            let mut db = conn.reader();
            let server: String = col(&db.one("SHOW server_version", &[])?, 0)?;
            let migrated: bool = col(&db.one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?, 0)?;
            let version: i64 = if migrated {
                col(&db.one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])?, 0)?
            } else {
                0
            };
            let known = MIGRATIONS.last().map_or(0, |m| m.0);
            Ok(format!("PostgreSQL {server} at {place}, schema version {version} of {known}"))
        })
        .await
    }

    /// How many of the writer's batches had to run a second time, one statement at a time
    /// (a request failed, or a held row's key was taken): a measure of how often the fast
    /// path is left, which the backend's tests pin and an operator may watch.
    pub fn second_passes(&self) -> u64 {
        self.pool.second_passes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Applies the pending migrations at `url` and nothing else (`carehub migrate`).
    pub async fn migrate(url: &str) -> Result<(), StoreError> {
        let pool = Arc::new(Pool::new(config(url)?));
        blocking(pool, migrate).await
    }

    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let _turn = self.readers.acquire().await.map_err(|_| StoreError::Closed)?;
        blocking(self.pool.clone(), move |conn| f(&mut conn.reader())).await
    }
}

/// Whether `database` names a PostgreSQL database rather than a SQLite file.
pub fn is_postgres_url(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

const OVERDUE_SQL: &str = "((acked_at IS NULL AND execute_by < $1)
    OR (plan_established_on IS NULL AND plan_due < $1 AND COALESCE(ack_status, '') <> 'rejected'))";

/// Dynamic parameters of a listing's filters.
type Args = Vec<Box<dyn ToSql + Sync + Send>>;

fn refs(args: &Args) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect()
}

#[async_trait]
impl CommitStore for PgStore {
    async fn commit(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer.send(commit::Request { ops, reply }).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.is_closed() {
            return Err(StoreError::Closed);
        }
        self.read(|db| db.one("SELECT 1", &[]).map(|_| ())).await
    }
}

#[async_trait]
impl LogStore for PgStore {
    async fn log_entry(&self, seq: i64) -> Result<Option<LogEntry>, StoreError> {
        self.read(move |db| {
            db.opt(&format!("SELECT {LOG_COLUMNS}, payload FROM message_log WHERE seq = $1"), &[&seq])?
                .map(|r| log_row(&r, true))
                .transpose()
        })
        .await
    }

    async fn log_entries(&self, f: LogFilter) -> Result<Vec<LogEntry>, StoreError> {
        self.read(move |db| {
            let mut sql = format!(
                "SELECT {LOG_COLUMNS}{} FROM message_log WHERE TRUE",
                if f.with_payload { ", payload" } else { "" }
            );
            let mut args: Args = Vec::new();
            // A client or an order is found in the entry's own column or in its links.
            let mut linked = |col: &str, v: &Option<String>| {
                if let Some(v) = v {
                    args.push(Box::new(v.clone()));
                    let n = args.len();
                    sql.push_str(&format!(
                        " AND ({col} = ${n} OR seq IN (SELECT seq FROM log_links WHERE {col} = ${n}))"
                    ));
                }
            };
            linked("client", &f.client);
            linked("order_id", &f.order_id);
            let mut add = |col: &str, op: &str, v: &Option<String>| {
                if let Some(v) = v {
                    args.push(Box::new(v.clone()));
                    sql.push_str(&format!(" AND {col} {op} ${}", args.len()));
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
                    sql.push_str(&format!(" AND seq {op} ${}", args.len()));
                }
            }
            let order = if f.newest_first { "DESC" } else { "ASC" };
            sql.push_str(&format!(" ORDER BY seq {order} LIMIT {}", f.limit.clamp(1, 10_000)));
            db.query(&sql, &refs(&args))?.iter().map(|r| log_row(r, f.with_payload)).collect()
        })
        .await
    }
}

#[async_trait]
impl OrderStore for PgStore {
    async fn decision(&self, id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |db| {
            let row = db.opt(
                "SELECT id, system, content_hash, client, provider, canonical, received_at, version
                 FROM decisions WHERE id = $1",
                &[&id],
            )?;
            row.map(|r| {
                Ok(DecisionRecord {
                    id: col(&r, 0)?,
                    system: col(&r, 1)?,
                    content_hash: col(&r, 2)?,
                    client: col(&r, 3)?,
                    provider: col(&r, 4)?,
                    canonical: col(&r, 5)?,
                    received_at: instant(&r, 6)?,
                    version: u32::try_from(col::<i64>(&r, 7)?)
                        .map_err(|e| StoreError::backend("a decision's version", e))?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn order(&self, id: &str) -> Result<Option<OrderRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |db| {
            db.opt(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"), &[&id])?
                .map(|r| order_row(&r))
                .transpose()
        })
        .await
    }

    async fn orders(&self, f: OrderFilter) -> Result<Vec<OrderRecord>, StoreError> {
        self.read(move |db| {
            let mut sql = format!("SELECT {ORDER_COLUMNS} FROM orders WHERE TRUE");
            let mut args: Args = Vec::new();
            if let Some(day) = f.overdue_on {
                args.push(Box::new(day.to_string()));
                sql.push_str(&format!(" AND {OVERDUE_SQL}"));
            }
            let mut add = |column: &str, v: &Option<String>| {
                if let Some(v) = v {
                    args.push(Box::new(v.clone()));
                    sql.push_str(&format!(" AND {column} = ${}", args.len()));
                }
            };
            add("provider", &f.provider);
            add("status", &f.status);
            add("client", &f.client);
            add("decision_id", &f.decision_id);
            // A client's or a decision's orders read in the order they applied.
            let order_by = if f.client.is_some() || f.decision_id.is_some() {
                "start_date, created_at, id"
            } else {
                "created_at, id"
            };
            sql.push_str(&format!(" ORDER BY {order_by} LIMIT {}", f.limit.clamp(1, 10_000)));
            db.query(&sql, &refs(&args))?.iter().map(order_row).collect()
        })
        .await
    }

    async fn overdue_counts(&self, today: NaiveDate) -> Result<OverdueCounts, StoreError> {
        self.read(move |db| {
            let day = today.to_string();
            let count = |db: &mut Db<'_>, sql: &str| -> Result<u64, StoreError> {
                Ok(u64::try_from(col::<i64>(&db.one(sql, &[&day])?, 0)?).unwrap_or(0))
            };
            Ok(OverdueCounts {
                not_confirmed: count(db, "SELECT COUNT(*) FROM orders WHERE acked_at IS NULL AND execute_by < $1")?,
                plan_missing: count(
                    db,
                    "SELECT COUNT(*) FROM orders WHERE plan_established_on IS NULL AND plan_due < $1
                     AND COALESCE(ack_status, '') <> 'rejected'",
                )?,
            })
        })
        .await
    }

    async fn client_providers(&self, client: &str, day: NaiveDate) -> Result<Vec<String>, StoreError> {
        let (client, day) = (client.to_owned(), day.to_string());
        self.read(move |db| {
            let rows = db.query(
                "SELECT provider, paused FROM orders
                 WHERE client = $1 AND start_date <= $2 AND (end_date IS NULL OR end_date >= $2)
                   AND (ack_status IS NULL OR ack_status <> 'rejected')
                 ORDER BY provider",
                &[&client, &day],
            )?;
            let mut out: Vec<String> = Vec::new();
            for r in &rows {
                let provider: String = col(r, 0)?;
                let paused: Option<&str> = col(r, 1)?;
                if !paused_on(paused, &day) && out.last() != Some(&provider) {
                    out.push(provider);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn decision_versions(&self, id: &str) -> Result<Vec<DecisionVersion>, StoreError> {
        let id = id.to_owned();
        self.read(move |db| {
            let rows = db.query(
                "SELECT decision_id, version, effective_from, kind, canonical, system, received_at
                 FROM decision_versions WHERE decision_id = $1 ORDER BY version",
                &[&id],
            )?;
            rows.iter()
                .map(|r| {
                    Ok(DecisionVersion {
                        decision_id: col(r, 0)?,
                        version: narrow(r, 1)?,
                        effective_from: date(r, 2)?,
                        kind: col(r, 3)?,
                        canonical: json(r, 4)?,
                        system: col(r, 5)?,
                        received_at: instant(r, 6)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn provider_reports(&self, f: ProviderReportFilter) -> Result<Vec<ProviderReport>, StoreError> {
        self.read(move |db| {
            let mut sql = "SELECT id, message_type, kind, severity, provider, client, order_id, day, system,
                                  canonical, received_at
                           FROM provider_reports WHERE TRUE"
                .to_owned();
            let mut args: Args = Vec::new();
            let mut arg = |sql: &mut String, clause: &str, value: String| {
                args.push(Box::new(value));
                sql.push_str(&clause.replace('?', &format!("${}", args.len())));
            };
            if let Some(m) = f.month {
                arg(&mut sql, " AND month = ?", m.to_string());
            }
            if let Some(p) = &f.provider {
                arg(&mut sql, " AND provider = ?", p.clone());
            }
            if let Some(o) = &f.order_id {
                arg(&mut sql, " AND order_id = ?", o.clone());
            }
            if let Some(k) = &f.kind {
                // The same value matches the message type (`deviation`) or the kind (`fall`).
                arg(&mut sql, " AND (message_type = ?", k.clone());
                arg(&mut sql, " OR kind = ?)", k.clone());
            }
            sql.push_str(&format!(" ORDER BY day, id LIMIT {}", f.limit.clamp(1, 10_000)));
            db.query(&sql, &refs(&args))?
                .iter()
                .map(|r| {
                    Ok(ProviderReport {
                        id: col(r, 0)?,
                        message_type: col(r, 1)?,
                        kind: col(r, 2)?,
                        severity: col(r, 3)?,
                        provider: col(r, 4)?,
                        client: col(r, 5)?,
                        order_id: col(r, 6)?,
                        day: date(r, 7)?,
                        system: col(r, 8)?,
                        canonical: json(r, 9)?,
                        received_at: instant(r, 10)?,
                    })
                })
                .collect()
        })
        .await
    }
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn deliveries(&self, f: DeliveryFilter) -> Result<Vec<Delivery>, StoreError> {
        self.read(move |db| {
            let mut sql = format!("SELECT {DELIVERY_COLUMNS} FROM outbox WHERE TRUE");
            let mut args: Args = Vec::new();
            if let Some(s) = &f.state {
                args.push(Box::new(s.clone()));
                sql.push_str(&format!(" AND state = ${}", args.len()));
            }
            if let Some(o) = &f.order_id {
                args.push(Box::new(o.clone()));
                sql.push_str(&format!(" AND order_id = ${}", args.len()));
            }
            sql.push_str(&format!(" ORDER BY id LIMIT {}", f.limit.clamp(1, 10_000)));
            db.query(&sql, &refs(&args))?.iter().map(delivery_row).collect()
        })
        .await
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read(|db| instant_opt(&db.one("SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'", &[])?, 0))
            .await
    }

    fn watch_outbox(&self, wake: Arc<tokio::sync::Notify>) {
        self.listener.watch(wake);
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.read(|db| {
            let mut counts = OutboxCounts::default();
            for r in &db.query("SELECT state, COUNT(*) FROM outbox GROUP BY state", &[])? {
                let n = u64::try_from(col::<i64>(r, 1)?).unwrap_or(0);
                match col::<&str>(r, 0)?.parse() {
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
impl VisitStore for PgStore {
    async fn tags(
        &self,
        client: Option<String>,
        tag_uid: Option<String>,
    ) -> Result<Vec<carehub_model::TagRegistration>, StoreError> {
        self.read(move |db| {
            let rows = db.query(
                "SELECT tag_uid, client, installed_on, removed_on FROM tag_registrations
                 WHERE ($1::text IS NULL OR client = $1) AND ($2::text IS NULL OR tag_uid = $2)
                 ORDER BY installed_on, id LIMIT 10000",
                &[&client, &tag_uid],
            )?;
            const BAD: &str = "a stored tag registration does not read back";
            rows.iter()
                .map(|r| {
                    let removed_on: Option<&str> = col(r, 3)?;
                    Ok(carehub_model::TagRegistration {
                        tag_uid: col::<&str>(r, 0)?
                            .parse()
                            .map_err(|e: carehub_model::ValidationError| StoreError::backend(BAD, e))?,
                        client: col::<&str>(r, 1)?
                            .parse()
                            .map_err(|e: carehub_model::ValidationError| StoreError::backend(BAD, e))?,
                        installed_on: date(r, 2)?,
                        removed_on: removed_on
                            .map(str::parse)
                            .transpose()
                            .map_err(|e: chrono::ParseError| StoreError::backend(BAD, e))?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn visits(&self, filter: VisitFilter) -> Result<Vec<VisitRecord>, StoreError> {
        self.read(move |db| visits::list(db, &filter)).await
    }

    async fn manual_shares(&self, month: &str) -> Result<Vec<ManualShare>, StoreError> {
        let month = month.to_owned();
        self.read(move |db| visits::manual_shares(db, &month)).await
    }

    async fn visits_to_report(&self, limit: usize) -> Result<ReportBatch, StoreError> {
        self.read(move |db| visits::visits_to_report(db, limit)).await
    }

    async fn feed_cursor(&self, system: &str) -> Result<Option<String>, StoreError> {
        let system = system.to_owned();
        self.read(move |db| visits::feed_cursor(db, &system)).await
    }
}

#[async_trait]
impl InvoiceStore for PgStore {
    async fn invoices(
        &self,
        provider: &str,
        month: &str,
        kind: Option<&str>,
    ) -> Result<Vec<InvoiceRecord>, StoreError> {
        let (provider, month, kind) = (provider.to_owned(), month.to_owned(), kind.map(str::to_owned));
        self.read(move |db| {
            db.query(
                &format!(
                    "SELECT {INVOICE_COLUMNS} FROM invoices
                     WHERE provider = $1 AND month = $2 AND ($3::text IS NULL OR kind = $3) ORDER BY received_at"
                ),
                &[&provider, &month, &kind],
            )?
            .iter()
            .map(invoice_row)
            .collect()
        })
        .await
    }

    async fn invoice(&self, provider: &str, kind: &str, id: &str) -> Result<Option<InvoiceRecord>, StoreError> {
        let (provider, kind, id) = (provider.to_owned(), kind.to_owned(), id.to_owned());
        self.read(move |db| {
            db.opt(
                &format!("SELECT {INVOICE_COLUMNS} FROM invoices WHERE provider = $1 AND kind = $2 AND id = $3"),
                &[&provider, &kind, &id],
            )?
            .map(|r| invoice_row(&r))
            .transpose()
        })
        .await
    }

    async fn verified_lines(&self, provider: &str, invoice_id: &str) -> Result<Vec<String>, StoreError> {
        let (provider, invoice_id) = (provider.to_owned(), invoice_id.to_owned());
        self.read(move |db| {
            db.query(
                "SELECT line_id FROM verified_lines WHERE provider = $1 AND invoice_id = $2",
                &[&provider, &invoice_id],
            )?
            .iter()
            .map(|r| col(r, 0))
            .collect()
        })
        .await
    }

    async fn verification(&self, provider: &str, invoice_id: &str) -> Result<Option<VerificationRecord>, StoreError> {
        let (provider, invoice_id) = (provider.to_owned(), invoice_id.to_owned());
        self.read(move |db| {
            db.opt(
                "SELECT provider, invoice_id, month, report, log_seq, created_at FROM verifications
                 WHERE provider = $1 AND invoice_id = $2 ORDER BY seq DESC LIMIT 1",
                &[&provider, &invoice_id],
            )?
            .map(|r| {
                Ok(VerificationRecord {
                    provider: col(&r, 0)?,
                    invoice_id: col(&r, 1)?,
                    month: col(&r, 2)?,
                    report: col(&r, 3)?,
                    log_seq: col(&r, 4)?,
                    created_at: instant(&r, 5)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn verified_providers(&self, invoice_id: &str) -> Result<Vec<String>, StoreError> {
        let invoice_id = invoice_id.to_owned();
        self.read(move |db| {
            db.query(
                "SELECT DISTINCT provider FROM verifications WHERE invoice_id = $1 ORDER BY provider",
                &[&invoice_id],
            )?
            .iter()
            .map(|r| col(r, 0))
            .collect()
        })
        .await
    }

    async fn invoice_generation(&self, provider: &str) -> Result<i64, StoreError> {
        let provider = provider.to_owned();
        self.read(move |db| {
            match db.opt("SELECT generation FROM invoice_generations WHERE provider = $1", &[&provider])? {
                Some(r) => col(&r, 0),
                None => Ok(0),
            }
        })
        .await
    }

    async fn month_providers(&self, month: carehub_model::Month) -> Result<Vec<String>, StoreError> {
        self.read(move |db| month::month_providers(db, month)).await
    }

    async fn provider_month(
        &self,
        provider: &str,
        month: carehub_model::Month,
        detail: carehub_core::store::MonthDetail,
    ) -> Result<ProviderMonth, StoreError> {
        let provider = provider.to_owned();
        self.read(move |db| month::provider_month(db, &provider, month, detail)).await
    }
}

#[async_trait]
impl ReportStore for PgStore {
    async fn followup_orders(&self, month: carehub_model::Month) -> Result<Vec<FollowUpOrder>, StoreError> {
        self.read(move |db| month::followup_orders(db, month)).await
    }

    async fn followup_visits(
        &self,
        provider: &str,
        month: carehub_model::Month,
    ) -> Result<Vec<FollowUpVisit>, StoreError> {
        let provider = provider.to_owned();
        self.read(move |db| month::followup_visits(db, &provider, month)).await
    }

    async fn followup_reports(&self, month: carehub_model::Month) -> Result<Vec<FollowUpReportCount>, StoreError> {
        self.read(move |db| month::followup_reports(db, month)).await
    }
}

#[async_trait]
impl AuditStore for PgStore {
    async fn access_log(&self, filter: AccessFilter) -> Result<Vec<AccessEntry>, StoreError> {
        self.read(move |db| audit::access_log(db, &filter)).await
    }

    async fn log_size(&self) -> Result<i64, StoreError> {
        self.read(audit::log_size).await
    }

    async fn log_hashes(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
        self.read(move |db| audit::log_hashes(db, after_seq, limit)).await
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        self.read(|db| audit::checkpoint(db, None)).await
    }

    async fn checkpoint_covering(&self, size: i64) -> Result<Option<CheckpointRecord>, StoreError> {
        self.read(move |db| audit::checkpoint(db, Some(size))).await
    }
}
