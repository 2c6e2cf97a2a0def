//! The embedded SQLite backend.
//!
//! One writer thread owns the only write connection. Requests queue on a channel; the
//! writer takes whatever has queued (up to [`MAX_BATCH`]), applies each request inside its
//! own savepoint so one failing request does not spoil the others, and commits them all
//! with one fsync (`synchronous=FULL` in WAL mode: a commit that returned survives a crash
//! or power cut). This is group commit: under load, many senders share one sync.
//!
//! Every batch starts with `BEGIN IMMEDIATE` and reads the chain head inside that
//! transaction, so two processes on one database file (a server and `carehub replay`)
//! still extend one chain. Reads use a small pool of separate connections on the blocking
//! thread pool; WAL lets them run beside the writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use carehub_model::{AckStatus, Clock, Order};
use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::log::{entry_hash, GENESIS};

/// The writer connection's page cache, in KiB.
const WRITER_CACHE_KIB: u32 = 256 * 1024;

/// Most requests one commit takes.
pub const MAX_BATCH: usize = 1024;

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_outbox_action.sql"),
    include_str!("migrations/0003_tags.sql"),
    include_str!("migrations/0004_visits.sql"),
    include_str!("migrations/0005_invoices.sql"),
    include_str!("migrations/0006_verifications_by_id.sql"),
    include_str!("migrations/0007_log_links.sql"),
];

struct WriteRequest {
    ops: Vec<Op>,
    reply: oneshot::Sender<Result<Vec<OpResult>, StoreError>>,
}

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
        return Err(StoreError::Backend(format!(
            "the database is at schema version {version}, newer than this carehub ({}): upgrade carehub",
            MIGRATIONS.len()
        )));
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
        let (tx, rx) = mpsc::channel::<WriteRequest>(8192);
        std::thread::Builder::new()
            .name("carehub-store-writer".into())
            .spawn(move || writer_loop(conn, rx, &clock))
            .map_err(|e| StoreError::Backend(format!("cannot start the writer thread: {e}")))?;
        let checkpointer = open_connection(path)?;
        let alive = tx.downgrade();
        std::thread::Builder::new()
            .name("carehub-store-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, alive))
            .map_err(|e| StoreError::Backend(format!("cannot start the checkpoint thread: {e}")))?;
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
                if p.len() < 8 {
                    p.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| StoreError::Backend(format!("reader task failed: {e}")))?
    }
}

/// WAL pages past which a checkpoint runs (SQLite's own default threshold).
const CHECKPOINT_PAGES: i64 = 1000;

/// Checkpoints the WAL whenever it has grown past [`CHECKPOINT_PAGES`], until the store is
/// dropped. PASSIVE: it never blocks the writer or readers; a checkpoint a reader holds up
/// finishes at a later turn. Once the whole WAL is checkpointed, SQLite starts it over.
fn checkpoint_loop(conn: Connection, alive: mpsc::WeakSender<WriteRequest>) {
    let mut pending: i64 = 0;
    while alive.upgrade().is_some() {
        std::thread::sleep(Duration::from_millis(if pending > CHECKPOINT_PAGES { 10 } else { 200 }));
        // (busy, WAL frames, frames checkpointed)
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((_, frames, done)) => pending = frames - done,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; trying again");
                pending = 0;
            }
        }
    }
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<WriteRequest>, clock: &Clock) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        apply_batch(&mut conn, batch, clock);
    }
}

fn apply_batch(conn: &mut Connection, batch: Vec<WriteRequest>, clock: &Clock) {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            for r in batch {
                let _ = r.reply.send(Err(StoreError::Backend(e.to_string())));
            }
            return;
        }
    };
    let head = match chain_head(&tx) {
        Ok(h) => h,
        Err(e) => {
            let msg = e.to_string();
            for r in batch {
                let _ = r.reply.send(Err(StoreError::Backend(msg.clone())));
            }
            return;
        }
    };
    let mut chain = head;
    let mut replies = Vec::with_capacity(batch.len());
    for req in batch {
        let saved = chain.clone();
        let now = ts(clock.now());
        let result = tx.execute_batch("SAVEPOINT request").map_err(StoreError::from).and_then(|_| {
            let mut results = Vec::with_capacity(req.ops.len());
            for op in req.ops {
                let result = apply_op(&tx, &mut chain, &now, &results, op)?;
                results.push(result);
            }
            Ok(results)
        });
        let result = match result {
            Ok(r) => tx.execute_batch("RELEASE request").map(|_| r).map_err(StoreError::from),
            Err(e) => {
                chain = saved;
                let _ = tx.execute_batch("ROLLBACK TO request; RELEASE request");
                Err(e)
            }
        };
        replies.push((req.reply, result));
    }
    match tx.commit() {
        Ok(()) => {
            for (reply, result) in replies {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            let msg = e.to_string();
            for (reply, _) in replies {
                let _ = reply.send(Err(StoreError::Backend(format!("commit failed: {msg}"))));
            }
        }
    }
}

/// The last entry's sequence number and hash.
fn chain_head(conn: &Connection) -> Result<(i64, String), rusqlite::Error> {
    Ok(conn
        .query_row("SELECT seq, hash FROM message_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, GENESIS.to_owned())))
}

/// The place the next entry appended to the chain will take, held by an op that writes
/// rows pointing at the entry it is about to append itself (visit ingestion: its entry holds
/// the rows' results, so it is appended after them). Only [`append_log_in`] uses it up.
pub(super) struct LogSlot(i64);

impl LogSlot {
    pub(super) fn seq(&self) -> i64 {
        self.0
    }
}

/// Reserves the next place in the chain for the op that will append there.
pub(super) fn reserve_log_slot(chain: &(i64, String)) -> LogSlot {
    LogSlot(chain.0 + 1)
}

/// [`append_log`] into a reserved slot: refused, with nothing appended, if another entry
/// took the place meanwhile (the rows pointing at the slot would name the wrong entry).
pub(super) fn append_log_in(
    conn: &Connection,
    chain: &mut (i64, String),
    slot: LogSlot,
    now: &str,
    e: NewLogEntry,
) -> Result<i64, StoreError> {
    if slot.0 != chain.0 + 1 {
        return Err(StoreError::Backend(format!(
            "log slot {} was taken before its entry was appended (the chain is at {})",
            slot.0, chain.0
        )));
    }
    append_log(conn, chain, now, e)
}

pub(super) fn append_log(
    conn: &Connection,
    chain: &mut (i64, String),
    now: &str,
    mut e: NewLogEntry,
) -> Result<i64, StoreError> {
    if let Some(earlier) = e.follows {
        let row: Option<[Option<String>; 4]> = conn
            .prepare_cached("SELECT decision_id, order_id, client, provider FROM message_log WHERE seq = ?1")?
            .query_row([earlier], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]))
            .optional()?;
        if let Some([decision_id, order_id, client, provider]) = row {
            e.decision_id = e.decision_id.or(decision_id);
            e.order_id = e.order_id.or(order_id);
            e.client = e.client.or(client);
            e.provider = e.provider.or(provider);
        }
    }
    let (links, follows) = (std::mem::take(&mut e.links), e.follows);
    let entry = LogEntry {
        seq: chain.0 + 1,
        at: now.to_owned(),
        system: e.system,
        vendor: e.vendor,
        direction: e.direction.to_owned(),
        message_type: e.message_type,
        content_type: e.content_type,
        payload: e.payload,
        canonical: e.canonical,
        status: e.status.to_owned(),
        error_code: e.error_code,
        error_message: e.error_message,
        decision_id: e.decision_id,
        order_id: e.order_id,
        client: e.client,
        provider: e.provider,
        delivery_key: e.delivery_key,
        prev_hash: chain.1.clone(),
        hash: String::new(),
    };
    let hash = entry_hash(&entry.prev_hash, &entry);
    conn.prepare_cached(
        "INSERT INTO message_log (seq, at, system, vendor, direction, message_type, content_type,
            payload, canonical, status, error_code, error_message, decision_id, order_id, client,
            provider, delivery_key, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?
    .execute(params![
        entry.seq,
        entry.at,
        entry.system,
        entry.vendor,
        entry.direction,
        entry.message_type,
        entry.content_type,
        entry.payload,
        entry.canonical,
        entry.status,
        entry.error_code,
        entry.error_message,
        entry.decision_id,
        entry.order_id,
        entry.client,
        entry.provider,
        entry.delivery_key,
        entry.prev_hash,
        hash,
    ])?;
    *chain = (entry.seq, hash);
    if let Some(earlier) = follows {
        conn.prepare_cached(
            "INSERT INTO log_links (seq, client, order_id) SELECT ?1, client, order_id FROM log_links WHERE seq = ?2",
        )?
        .execute(params![entry.seq, earlier])?;
    }
    let mut links = links;
    links.sort();
    links.dedup();
    for l in links.iter().filter(|l| l.client.is_some() || l.order_id.is_some()) {
        conn.prepare_cached("INSERT INTO log_links (seq, client, order_id) VALUES (?1, ?2, ?3)")?
            .execute(params![entry.seq, l.client, l.order_id])?;
    }
    Ok(entry.seq)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
        || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// The sequence number of the log entry `reference` names, for the op that follows `done`
/// (the results of the request's earlier ops).
fn resolve(conn: &Connection, done: &[OpResult], reference: LogRef) -> Result<i64, StoreError> {
    let unresolved = || StoreError::Unresolved { op: done.len(), reference };
    match reference {
        LogRef::Op(i) => match done.get(i) {
            Some(OpResult::Logged(seq)) => Ok(*seq),
            _ => Err(unresolved()),
        },
        LogRef::Seq(seq) => conn
            .prepare_cached("SELECT seq FROM message_log WHERE seq = ?1")?
            .query_row([seq], |r| r.get(0))
            .optional()?
            .ok_or_else(unresolved),
    }
}

/// Applies one op of a request; `done` holds the results of the request's earlier ops, so
/// a [`LogRef::Op`] resolves against them.
fn apply_op(
    conn: &Connection,
    chain: &mut (i64, String),
    now: &str,
    done: &[OpResult],
    op: Op,
) -> Result<OpResult, StoreError> {
    match op {
        Op::AppendLog(e) => Ok(OpResult::Logged(append_log(conn, chain, now, e)?)),
        Op::InsertDecision(d) => {
            conn.prepare_cached(
                "INSERT INTO decisions (id, system, content_hash, client, provider, canonical, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![d.id, d.system, d.content_hash, d.client, d.provider, d.canonical, d.received_at])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("decision {}", d.id))
                } else {
                    e.into()
                }
            })?;
            Ok(OpResult::Done)
        }
        Op::InsertOrder(o) => {
            let canonical = serde_json::to_string(&o.order).map_err(|e| StoreError::Backend(e.to_string()))?;
            conn.prepare_cached(
                "INSERT INTO orders (id, decision_id, source_system, provider, provider_system, client,
                    execute_by, plan_due, canonical, created_at, status, start_date, end_date)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                o.order.id,
                o.order.decision_id.as_str(),
                o.source_system,
                o.order.provider.as_str(),
                o.provider_system,
                o.order.client.expose(),
                o.order.execute_by.to_string(),
                o.order.plan_due.to_string(),
                canonical,
                o.created_at,
                o.status,
                o.order.start_date.to_string(),
                o.order.end_date.map(|d| d.to_string()),
            ])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("order {}", o.order.id))
                } else {
                    e.into()
                }
            })?;
            Ok(OpResult::Done)
        }
        Op::Enqueue(d) => {
            let log_seq = resolve(conn, done, d.log)?;
            let now = now.to_owned();
            conn.prepare_cached(
                "INSERT INTO outbox (system, message_type, order_id, idempotency_key, content_type, endpoint,
                    body, state, next_attempt_at, created_at, action, log_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?8, ?9, ?10)",
            )?
            .execute(params![
                d.system,
                d.message_type,
                d.order_id,
                d.idempotency_key,
                d.content_type,
                d.endpoint,
                d.body,
                now,
                d.action,
                log_seq,
            ])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("delivery {}", d.idempotency_key))
                } else {
                    e.into()
                }
            })?;
            Ok(OpResult::Done)
        }
        Op::RecordAck(ack) => {
            let status = match ack.status {
                AckStatus::Accepted => order_status::ACCEPTED,
                AckStatus::Rejected => order_status::REJECTED,
            };
            let n = conn
                .prepare_cached(
                    "UPDATE orders SET status = ?2, ack_status = ?3, ack_reason = ?4, acked_at = ?5 WHERE id = ?1",
                )?
                .execute(params![ack.order_id, status, ack.status.as_str(), ack.reason, ts(ack.at)])?;
            if n == 0 {
                return Err(StoreError::Missing(format!("order {}", ack.order_id)));
            }
            Ok(OpResult::Done)
        }
        Op::RecordPlan(plan) => {
            let n = conn
                .prepare_cached("UPDATE orders SET plan_established_on = ?2, plan_received_at = ?3 WHERE id = ?1")?
                .execute(params![plan.order_id, plan.established_on.to_string(), now])?;
            if n == 0 {
                return Err(StoreError::Missing(format!("order {}", plan.order_id)));
            }
            Ok(OpResult::Done)
        }
        Op::Attempted { id, outcome } => {
            let now = now.to_owned();
            let (state, next, error, delivered) = match outcome {
                AttemptOutcome::Delivered => (delivery_state::DELIVERED, now.clone(), None, Some(now.clone())),
                AttemptOutcome::Retry { next_attempt_at, error } => {
                    (delivery_state::PENDING, next_attempt_at, Some(error), None)
                }
                AttemptOutcome::Dead { error } => (delivery_state::DEAD, now.clone(), Some(error), None),
            };
            let row: Option<(String, Option<String>)> = conn
                .prepare_cached(
                    "UPDATE outbox SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3,
                        last_error = COALESCE(?4, last_error), delivered_at = ?5, lease_owner = NULL, lease_until = NULL
                     WHERE id = ?1 RETURNING message_type, order_id",
                )?
                .query_row(params![id, state, next, error, delivered], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((message_type, order_id)) = row else {
                return Err(StoreError::Missing(format!("delivery {id}")));
            };
            let order_state = match state {
                delivery_state::DELIVERED => Some(order_status::DELIVERED),
                delivery_state::DEAD => Some(order_status::DEAD_LETTER),
                _ => None,
            };
            if let (Some(order_id), Some(s), "order") = (order_id, order_state, message_type.as_str()) {
                // An acknowledgement may overtake the delivery record: never move an
                // acknowledged order back, but do remember when it was delivered.
                conn.prepare_cached(
                    "UPDATE orders SET status = CASE WHEN acked_at IS NULL THEN ?2 ELSE status END,
                        delivered_at = COALESCE(delivered_at, ?3)
                     WHERE id = ?1",
                )?
                .execute(params![order_id, s, delivered])?;
            }
            Ok(OpResult::Done)
        }
        Op::ClaimDue { owner, lease_until, limit } => {
            let now = now.to_owned();
            let mut stmt = conn.prepare_cached(&format!(
                "UPDATE outbox SET lease_owner = ?1, lease_until = ?2
                 WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?3
                              AND (lease_until IS NULL OR lease_until < ?3)
                              ORDER BY next_attempt_at, id LIMIT {limit})
                 RETURNING {DELIVERY_COLUMNS}"
            ))?;
            let mut rows =
                stmt.query_map(params![owner, lease_until, now], delivery_row)?.collect::<Result<Vec<_>, _>>()?;
            rows.sort_by_key(|d| d.id);
            Ok(OpResult::Claimed(rows))
        }
        Op::Requeue { ids } => {
            let now = now.to_owned();
            let dead: Vec<Delivery> = {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {DELIVERY_COLUMNS} FROM outbox WHERE state = 'dead' ORDER BY id"
                ))?;
                let rows = stmt.query_map([], delivery_row)?.collect::<Result<Vec<_>, _>>()?;
                rows.into_iter().filter(|d| ids.as_ref().is_none_or(|ids| ids.contains(&d.id))).collect()
            };
            let mut requeued = Vec::with_capacity(dead.len());
            for mut d in dead {
                conn.prepare_cached(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?2,
                        lease_owner = NULL, lease_until = NULL WHERE id = ?1",
                )?
                .execute(params![d.id, now])?;
                if let Some(order_id) = &d.order_id {
                    if d.message_type == "order" {
                        conn.prepare_cached(
                            "UPDATE orders SET status = 'queued' WHERE id = ?1 AND status = 'dead_letter'",
                        )?
                        .execute(params![order_id])?;
                    }
                }
                append_log(
                    conn,
                    chain,
                    &now,
                    NewLogEntry {
                        system: d.system.clone(),
                        vendor: String::new(),
                        direction: "out",
                        message_type: d.message_type.clone(),
                        content_type: d.content_type.clone(),
                        payload: Vec::new(),
                        status: status::REQUEUED,
                        order_id: d.order_id.clone(),
                        delivery_key: Some(d.idempotency_key.clone()),
                        follows: d.log_seq,
                        ..NewLogEntry::default()
                    },
                )?;
                d.state = delivery_state::PENDING.to_owned();
                d.attempts = 0;
                d.next_attempt_at = now.clone();
                requeued.push(d);
            }
            Ok(OpResult::Requeued(requeued))
        }
        Op::RegisterTag(t) => {
            let uid = t.tag_uid.as_str();
            let latest: Option<String> = conn
                .prepare_cached("SELECT MAX(installed_on) FROM tag_registrations WHERE tag_uid = ?1")?
                .query_row([uid], |r| r.get(0))?;
            let from = t.installed_on.to_string();
            if let Some(latest) = latest.filter(|l| *l >= from) {
                return Err(StoreError::Conflict(format!("tag {uid} has a registration from {latest}")));
            }
            if let Some(day_before) = t.installed_on.pred_opt() {
                conn.prepare_cached(
                    "UPDATE tag_registrations SET removed_on = ?2 WHERE tag_uid = ?1 AND removed_on IS NULL",
                )?
                .execute(params![uid, day_before.to_string()])?;
            }
            conn.prepare_cached(
                "INSERT INTO tag_registrations (tag_uid, client, installed_on, removed_on, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![uid, t.client.expose(), from, t.removed_on.map(|d| d.to_string()), now])?;
            Ok(OpResult::Done)
        }
        Op::IngestVisits(ingest) => Ok(OpResult::Visits(super::visits_sql::ingest(conn, chain, *ingest)?)),
        Op::CloseMonth(month) => {
            conn.prepare_cached("INSERT OR IGNORE INTO closed_months (month, closed_at) VALUES (?1, ?2)")?
                .execute(params![month, now])?;
            Ok(OpResult::Done)
        }
        Op::StoreInvoice(i) => {
            let log_seq = resolve(conn, done, i.log)?;
            conn.prepare_cached(
                "INSERT INTO invoices (provider, kind, id, month, canonical, log_seq, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )?
            .execute(params![i.provider, i.kind, i.id, i.month, i.canonical, log_seq, i.received_at])?;
            Ok(OpResult::Done)
        }
        Op::RecordVerification(v) => {
            let log_seq = resolve(conn, done, v.log)?;
            conn.prepare_cached(
                "INSERT INTO verifications (provider, invoice_id, month, report, log_seq, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![v.provider, v.invoice_id, v.month, v.report, log_seq, v.created_at])?;
            let mut line = conn.prepare_cached(
                "INSERT INTO verified_lines (provider, invoice_id, line_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?;
            for l in &v.lines {
                line.execute(params![v.provider, v.invoice_id, l])?;
            }
            Ok(OpResult::Done)
        }
        Op::SetProgress { name, through } => {
            conn.prepare_cached(
                "INSERT INTO progress (name, through) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET through = MAX(through, excluded.through)",
            )?
            .execute(params![name, through])?;
            Ok(OpResult::Done)
        }
        Op::RecordRead { subject, role, what } => {
            conn.prepare_cached("INSERT INTO log_reads (at, subject, role, what) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![now, subject, role, what])?;
            Ok(OpResult::Done)
        }
    }
}

const DELIVERY_COLUMNS: &str = "id, system, message_type, order_id, idempotency_key, content_type, endpoint, body,
    state, attempts, next_attempt_at, last_error, created_at, delivered_at, action, log_seq";

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        system: r.get(1)?,
        message_type: r.get(2)?,
        order_id: r.get(3)?,
        idempotency_key: r.get(4)?,
        content_type: r.get(5)?,
        endpoint: r.get(6)?,
        body: r.get(7)?,
        state: r.get(8)?,
        attempts: r.get(9)?,
        next_attempt_at: r.get(10)?,
        last_error: r.get(11)?,
        created_at: r.get(12)?,
        delivered_at: r.get(13)?,
        action: r.get(14)?,
        log_seq: r.get(15)?,
    })
}

const LOG_COLUMNS: &str = "seq, at, system, vendor, direction, message_type, content_type, canonical, status,
    error_code, error_message, decision_id, order_id, client, provider, delivery_key, prev_hash, hash";

fn log_row(r: &Row<'_>, with_payload: bool) -> rusqlite::Result<LogEntry> {
    Ok(LogEntry {
        seq: r.get(0)?,
        at: r.get(1)?,
        system: r.get(2)?,
        vendor: r.get(3)?,
        direction: r.get(4)?,
        message_type: r.get(5)?,
        content_type: r.get(6)?,
        canonical: r.get(7)?,
        status: r.get(8)?,
        error_code: r.get(9)?,
        error_message: r.get(10)?,
        decision_id: r.get(11)?,
        order_id: r.get(12)?,
        client: r.get(13)?,
        provider: r.get(14)?,
        delivery_key: r.get(15)?,
        prev_hash: r.get(16)?,
        hash: r.get(17)?,
        payload: if with_payload { r.get(18)? } else { Vec::new() },
    })
}

pub(super) const ORDER_COLUMNS: &str = "canonical, source_system, provider_system, status, created_at, delivered_at,
    ack_status, ack_reason, acked_at, plan_established_on, plan_received_at";

fn order_row(r: &Row<'_>) -> rusqlite::Result<OrderRecord> {
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
        status: r.get(at + 3)?,
        created_at: r.get(at + 4)?,
        delivered_at: r.get(at + 5)?,
        ack_status: r.get(at + 6)?,
        ack_reason: r.get(at + 7)?,
        acked_at: r.get(at + 8)?,
        plan_established_on: r.get(at + 9)?,
        plan_received_at: r.get(at + 10)?,
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
        received_at: r.get(6)?,
    })
}

const OVERDUE_SQL: &str = "((acked_at IS NULL AND execute_by < ?1)
    OR (plan_established_on IS NULL AND plan_due < ?1 AND COALESCE(ack_status, '') <> 'rejected'))";

#[async_trait]
impl Store for SqliteStore {
    async fn commit(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer.send(WriteRequest { ops, reply }).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

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
            add("at", ">=", &f.since);
            add("at", "<", &f.until);
            if let Some(after) = f.after_seq {
                args.push(Box::new(after));
                sql.push_str(&format!(" AND seq > ?{}", args.len()));
            }
            sql.push_str(&format!(" ORDER BY seq LIMIT {}", f.limit.clamp(1, 10_000)));
            let mut stmt = c.prepare(&sql)?;
            let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
            let rows =
                stmt.query_map(refs.as_slice(), |r| log_row(r, f.with_payload))?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn decision(&self, id: &str) -> Result<Option<DecisionRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT id, system, content_hash, client, provider, canonical, received_at FROM decisions WHERE id = ?1",
                [id],
                |r| {
                    Ok(DecisionRecord {
                        id: r.get(0)?,
                        system: r.get(1)?,
                        content_hash: r.get(2)?,
                        client: r.get(3)?,
                        provider: r.get(4)?,
                        canonical: r.get(5)?,
                        received_at: r.get(6)?,
                    })
                },
            )
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
            sql.push_str(&format!(" ORDER BY created_at, id LIMIT {}", f.limit.clamp(1, 10_000)));
            let mut stmt = c.prepare(&sql)?;
            let rows =
                stmt.query_map(rusqlite::params_from_iter(args.iter()), order_row)?.collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

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

    async fn next_due(&self) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            Ok(c.query_row("SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'pending'", [], |r| r.get(0))?)
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

    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.read(|c| {
            let mut counts = OutboxCounts::default();
            let mut stmt = c.prepare("SELECT state, COUNT(*) FROM outbox GROUP BY state")?;
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?)))?;
            for row in rows {
                let (state, n) = row?;
                match state.as_str() {
                    delivery_state::PENDING => counts.pending = n,
                    delivery_state::DELIVERED => counts.delivered = n,
                    delivery_state::DEAD => counts.dead = n,
                    _ => {}
                }
            }
            Ok(counts)
        })
        .await
    }

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
                    let bad =
                        |e: String| StoreError::Backend(format!("a stored tag registration does not read back: {e}"));
                    Ok(carehub_model::TagRegistration {
                        tag_uid: uid.parse().map_err(|e: carehub_model::ValidationError| bad(e.to_string()))?,
                        client: client.parse().map_err(|e: carehub_model::ValidationError| bad(e.to_string()))?,
                        installed_on: from.parse().map_err(|e: chrono::ParseError| bad(e.to_string()))?,
                        removed_on: to
                            .map(|d| d.parse())
                            .transpose()
                            .map_err(|e: chrono::ParseError| bad(e.to_string()))?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn client_providers(&self, client: &str, day: NaiveDate) -> Result<Vec<String>, StoreError> {
        let (client, day) = (client.to_owned(), day.to_string());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT provider FROM orders
                 WHERE client = ?1 AND start_date <= ?2 AND (end_date IS NULL OR end_date >= ?2)
                   AND (ack_status IS NULL OR ack_status <> 'rejected')
                 ORDER BY provider",
            )?;
            let rows = stmt.query_map(params![client, day], |r| r.get(0))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn visits(&self, filter: VisitFilter) -> Result<Vec<VisitRecord>, StoreError> {
        self.read(move |c| super::visits_sql::list(c, &filter)).await
    }

    async fn manual_shares(&self, month: &str) -> Result<Vec<ManualShare>, StoreError> {
        let month = month.to_owned();
        self.read(move |c| super::visits_sql::manual_shares(c, &month)).await
    }

    async fn followup_orders(&self, month: &str) -> Result<Vec<crate::followup::FollowUpOrder>, StoreError> {
        let month = month.to_owned();
        self.read(move |c| super::followup_sql::orders(c, &month)).await
    }

    async fn followup_visits(
        &self,
        provider: &str,
        month: &str,
    ) -> Result<Vec<crate::followup::FollowUpVisit>, StoreError> {
        let (provider, month) = (provider.to_owned(), month.to_owned());
        self.read(move |c| super::followup_sql::visits(c, &provider, &month)).await
    }

    async fn visits_to_report(&self, limit: usize) -> Result<ReportBatch, StoreError> {
        self.read(move |c| super::visits_sql::visits_to_report(c, limit)).await
    }

    async fn feed_cursor(&self, system: &str) -> Result<Option<String>, StoreError> {
        let system = system.to_owned();
        self.read(move |c| super::visits_sql::feed_cursor(c, &system)).await
    }

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
                    created_at: r.get(5)?,
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

    async fn month_providers(&self, month: carehub_model::Month) -> Result<Vec<String>, StoreError> {
        self.read(move |c| super::month_sql::without_mmap(c, |c| super::month_sql::month_providers(c, month))).await
    }

    async fn provider_month(&self, provider: &str, month: carehub_model::Month) -> Result<ProviderMonth, StoreError> {
        let provider = provider.to_owned();
        self.read(move |c| super::month_sql::without_mmap(c, |c| super::month_sql::provider_month(c, &provider, month)))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        if self.writer.is_closed() {
            return Err(StoreError::Closed);
        }
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).map(|_| ())?)).await
    }
}

/// The benchmark's ceiling: the rows one decision writes (two log entries, the decision,
/// the order, the outbox row), inserted by a bare loop on a fresh database with the same
/// durability (WAL, `synchronous=FULL`), committing every `per_commit` decisions. Returns
/// the elapsed time for `decisions` decisions. No hashing, no parsing, no HTTP: only SQLite.
pub fn bare_insert_loop(
    path: &Path,
    decisions: usize,
    per_commit: usize,
    payload: &[u8],
    clock: &Clock,
) -> Result<Duration, StoreError> {
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
    let started = std::time::Instant::now();
    let mut done = 0;
    while done < decisions {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for i in done..(done + per_commit).min(decisions) {
            let id = format!("bench:DEC-{i}");
            let order = format!("O-{i:016}");
            let now = ts(clock.now());
            for (seq, dir) in [(2 * i as i64 + 1, "in"), (2 * i as i64 + 2, "out")] {
                tx.prepare_cached(
                    "INSERT INTO message_log (seq, at, system, vendor, direction, message_type, content_type, payload,
                        canonical, status, decision_id, order_id, client, provider, prev_hash, hash)
                     VALUES (?1, ?2, 'combine', 'combine', ?3, 'decision', 'application/xml', ?4, '{}', 'accepted',
                        ?5, ?6, '193601016987', '5599000014', ?7, ?7)",
                )?
                .execute(params![seq, now, dir, payload, id, order, hash])?;
            }
            tx.prepare_cached(
                "INSERT INTO decisions (id, system, content_hash, client, provider, canonical, received_at)
                 VALUES (?1, 'combine', ?2, '193601016987', '5599000014', '{}', ?3)",
            )?
            .execute(params![id, hash, now])?;
            tx.prepare_cached(
                "INSERT INTO orders (id, decision_id, source_system, provider, provider_system, client, execute_by,
                    plan_due, canonical, created_at, status)
                 VALUES (?1, ?2, 'combine', '5599000014', 'phoniro', '193601016987', '2026-12-01', '2026-12-01', '{}', ?3, 'queued')",
            )?
            .execute(params![order, id, now])?;
            tx.prepare_cached(
                "INSERT INTO outbox (system, message_type, order_id, idempotency_key, content_type, body, state,
                    next_attempt_at, created_at)
                 VALUES ('phoniro', 'order', ?1, ?1, 'application/json', ?2, 'pending', ?3, ?3)",
            )?
            .execute(params![order, payload, now])?;
        }
        tx.commit()?;
        done = (done + per_commit).min(decisions);
    }
    Ok(started.elapsed())
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
}
