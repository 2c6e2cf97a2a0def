//! The group-commit writer thread and the WAL checkpointer beside it.
//!
//! One writer thread owns the only write connection. Requests queue on a channel; the
//! writer takes whatever has queued (up to [`MAX_BATCH`]), applies them, and commits them
//! all with one fsync (`synchronous=FULL` in WAL mode: a commit that returned survives a crash
//! or power cut). Every batch starts with `BEGIN IMMEDIATE` and reads the chain head inside
//! that transaction, so two processes on one database file still extend one chain. One
//! failing request does not spoil the others: should one fail, the batch is applied again
//! with each request inside its own savepoint ([`apply_batch`]).
//!
//! [`apply_op`] is where each [`Op`] becomes SQL.

use std::sync::Arc;
use std::time::Duration;

use carehub_model::{AckStatus, Clock};
use chrono::{DateTime, SubsecRound, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use super::log::{append_log, chain_head};
use super::rows::{delivery_row, DELIVERY_COLUMNS};
use crate::store::*;

/// Most requests one commit takes.
pub const MAX_BATCH: usize = 1024;

/// One caller's ops and where their results go.
pub(super) struct WriteRequest {
    pub(super) ops: Vec<Op>,
    pub(super) reply: oneshot::Sender<Result<Vec<OpResult>, StoreError>>,
}

/// WAL pages past which a checkpoint runs (SQLite's own default threshold).
const CHECKPOINT_PAGES: i64 = 1000;

/// WAL pages past which a checkpoint no longer lets readers and the writer go on: it waits
/// for them (RESTART), so the next commit starts the WAL over. Under sustained load passive
/// checkpoints copy every frame, but some reader is always on the WAL, so SQLite never
/// starts it over: the WAL grew to 0.8-1 GB in twelve seconds of 64 clients posting
/// decisions. Past this bound intake waits a few milliseconds instead. 16,384 pages of
/// 4 KiB: 64 MiB.
const WAL_HARD_PAGES: i64 = 16_384;

/// The size the WAL file is truncated back to once it starts over
/// (`PRAGMA journal_size_limit`): what the hard bound let it grow to is returned to the disk.
pub(super) const WAL_KEEP_BYTES: i64 = 64 * 1024 * 1024;

/// Checkpoints the WAL whenever it has grown past [`CHECKPOINT_PAGES`], until the store is
/// dropped. PASSIVE: it never blocks the writer or readers; a checkpoint a reader holds up
/// finishes at a later turn. Once the whole WAL is checkpointed and no reader is on it,
/// SQLite starts it over. Once the WAL is past [`WAL_HARD_PAGES`] it RESTARTs instead: it waits (the connection's busy timeout)
/// for readers to leave the WAL and holds new commits back meanwhile, so the WAL stays
/// bounded however long the load lasts.
pub(super) fn checkpoint_loop(conn: Connection, alive: mpsc::WeakSender<WriteRequest>) {
    // WAL frames, and those not yet copied into the database, as of the last checkpoint.
    let (mut frames, mut pending): (i64, i64) = (0, 0);
    while alive.upgrade().is_some() {
        std::thread::sleep(Duration::from_millis(if pending > CHECKPOINT_PAGES || frames > WAL_HARD_PAGES {
            10
        } else {
            200
        }));
        // Readers that never all leave the WAL at once keep SQLite from starting it over
        // even when every frame is copied: past the bound, wait for them.
        let mode = if frames > WAL_HARD_PAGES { "RESTART" } else { "PASSIVE" };
        // (busy, WAL frames, frames checkpointed)
        match conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((busy, total, done)) => {
                (frames, pending) = (total, total - done);
                if mode == "RESTART" && busy != 0 {
                    tracing::debug!(frames, "the WAL could not start over yet; trying again");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; trying again");
                (frames, pending) = (0, 0);
            }
        }
    }
}

pub(super) fn writer_loop(mut conn: Connection, mut rx: mpsc::Receiver<WriteRequest>, clock: &Clock) {
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

/// Applies a batch in one transaction and answers every request once it is committed.
///
/// Requests rarely fail (a decision stored by a racing request, an order that is not
/// there), so the batch is first applied straight, without a savepoint per request: a
/// savepoint makes SQLite copy every page a request touches into its sub-journal before
/// changing it, a fifth of the writer's CPU per decision when each request had its own.
/// Should any request fail, that transaction is rolled back and the whole batch applied
/// again from a copy of its ops, this time each request in its own savepoint, so the
/// failing one changes nothing and the others commit as if it had not been there.
fn apply_batch(conn: &mut Connection, batch: Vec<WriteRequest>, clock: &Clock) {
    let copies: Vec<Vec<Op>> = batch.iter().map(|r| r.ops.clone()).collect();
    let (replies, straight): (Vec<_>, Vec<_>) = batch.into_iter().map(|r| (r.reply, r.ops)).unzip();
    let applied = match apply_all(conn, straight, false, clock) {
        // A request failed: nothing of the batch is kept; take it again with savepoints.
        Ok(None) => apply_all(conn, copies, true, clock),
        other => other,
    };
    match applied {
        Ok(Some(results)) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Ok(None) => {
            // Unreachable: with savepoints a failing request does not end the transaction.
            for reply in replies {
                let _ = reply.send(Err(StoreError::backend("applying a batch", "a request failed twice")));
            }
        }
        Err((context, e)) => {
            // One error, many callers: each gets it as its source.
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(StoreError::backend(context, Arc::clone(&e))));
            }
        }
    }
}

/// Applies every request's ops in one transaction and commits it. Without savepoints
/// (`savepoints` false) the first request that fails rolls the whole transaction back and
/// the answer is `Ok(None)`; with them a failing request is undone alone and answered with
/// its error. `Err` carries what failed for the whole batch (beginning, the chain head, the
/// commit) and the error.
#[allow(clippy::type_complexity)]
fn apply_all(
    conn: &mut Connection,
    requests: Vec<Vec<Op>>,
    savepoints: bool,
    clock: &Clock,
) -> Result<Option<Vec<Result<Vec<OpResult>, StoreError>>>, (&'static str, rusqlite::Error)> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|e| ("beginning a commit", e))?;
    let mut chain = chain_head(&tx).map_err(|e| ("reading the chain head", e))?;
    let mut results = Vec::with_capacity(requests.len());
    for ops in requests {
        let saved = chain.clone();
        // To the microsecond: the instant reads back as it was written.
        let at = clock.now().trunc_subsecs(6);
        let now = ts(at);
        let apply = |chain: &mut (i64, String)| -> Result<Vec<OpResult>, StoreError> {
            let mut done = Vec::with_capacity(ops.len());
            for op in ops {
                let result = apply_op(&tx, chain, at, &now, &done, op)?;
                done.push(result);
            }
            Ok(done)
        };
        if !savepoints {
            match apply(&mut chain) {
                Ok(r) => results.push(Ok(r)),
                Err(_) => {
                    // Dropping the transaction would roll it back too; say so.
                    let _ = tx.rollback();
                    return Ok(None);
                }
            }
            continue;
        }
        let result = cached(&tx, "SAVEPOINT request").and_then(|_| apply(&mut chain));
        let result = match result {
            Ok(r) => cached(&tx, "RELEASE request").map(|_| r),
            Err(e) => {
                chain = saved;
                let _ = tx.execute_batch("ROLLBACK TO request; RELEASE request");
                Err(e)
            }
        };
        results.push(result);
    }
    tx.commit().map_err(|e| ("commit failed", e))?;
    Ok(Some(results))
}

/// Runs a statement without parameters or rows through the connection's statement cache.
fn cached(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)?.execute([])?;
    Ok(())
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
    at: DateTime<Utc>,
    now: &str,
    done: &[OpResult],
    op: Op,
) -> Result<OpResult, StoreError> {
    match op {
        Op::AppendLog(e) => Ok(OpResult::Logged(append_log(conn, chain, at, e)?)),
        Op::InsertDecision(d) => {
            conn.prepare_cached(
                "INSERT INTO decisions (id, system, content_hash, client, provider, canonical, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![d.id, d.system, d.content_hash, d.client, d.provider, d.canonical, ts(d.received_at)])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("decision {}", d.id))
                } else {
                    e.into()
                }
            })?;
            conn.prepare_cached(
                "INSERT INTO decision_versions (decision_id, version, effective_from, kind, canonical, system, received_at)
                 VALUES (?1, 0, COALESCE(json_extract(?2, '$.valid_from'), substr(?4, 1, 10)), 'decision', ?2, ?3, ?4)",
            )?
            .execute(params![d.id, d.canonical, d.system, ts(d.received_at)])?;
            Ok(OpResult::Done)
        }
        Op::InsertOrder(o) => {
            let canonical = serde_json::to_string(&o.order).map_err(|e| StoreError::backend("order JSON", e))?;
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
                ts(o.created_at),
                o.status.as_str(),
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
                AckStatus::Accepted => OrderStatus::Accepted,
                AckStatus::Rejected => OrderStatus::Rejected,
            };
            let n = conn
                .prepare_cached(
                    "UPDATE orders SET status = ?2, ack_status = ?3, ack_reason = ?4, acked_at = ?5 WHERE id = ?1",
                )?
                .execute(params![ack.order_id, status.as_str(), ack.status.as_str(), ack.reason, ts(ack.at)])?;
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
                AttemptOutcome::Delivered => (DeliveryState::Delivered, now.clone(), None, Some(now.clone())),
                AttemptOutcome::Retry { next_attempt_at, error } => {
                    (DeliveryState::Pending, ts(next_attempt_at), Some(error), None)
                }
                AttemptOutcome::Dead { error } => (DeliveryState::Dead, now.clone(), Some(error), None),
            };
            let row: Option<(String, Option<String>)> = conn
                .prepare_cached(
                    "UPDATE outbox SET state = ?2, attempts = attempts + 1, next_attempt_at = ?3,
                        last_error = COALESCE(?4, last_error), delivered_at = ?5, lease_owner = NULL, lease_until = NULL
                     WHERE id = ?1 RETURNING message_type, order_id",
                )?
                .query_row(params![id, state.as_str(), next, error, delivered], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((message_type, order_id)) = row else {
                return Err(StoreError::Missing(format!("delivery {id}")));
            };
            let order_state = match state {
                DeliveryState::Delivered => Some(OrderStatus::Delivered),
                DeliveryState::Dead => Some(OrderStatus::DeadLetter),
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
                .execute(params![order_id, s.as_str(), delivered])?;
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
                stmt.query_map(params![owner, ts(lease_until), now], delivery_row)?.collect::<Result<Vec<_>, _>>()?;
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
                    at,
                    NewLogEntry {
                        system: d.system.clone(),
                        vendor: String::new(),
                        direction: "out",
                        message_type: d.message_type.clone(),
                        content_type: d.content_type.clone(),
                        payload: Vec::new(),
                        status: LogStatus::Requeued,
                        order_id: d.order_id.clone(),
                        delivery_key: Some(d.idempotency_key.clone()),
                        follows: d.log_seq,
                        ..NewLogEntry::default()
                    },
                )?;
                d.state = DeliveryState::Pending;
                d.attempts = 0;
                d.next_attempt_at = at;
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
        Op::IngestVisits(ingest) => Ok(OpResult::Visits(super::visits::ingest(conn, chain, *ingest)?)),
        Op::CloseMonth(month) => {
            conn.prepare_cached("INSERT OR IGNORE INTO closed_months (month, closed_at) VALUES (?1, ?2)")?
                .execute(params![month, now])?;
            Ok(OpResult::Done)
        }
        Op::StoreInvoice(i) => {
            let log_seq = resolve(conn, done, i.log)?;
            let stored = conn
                .prepare_cached(
                    "INSERT INTO invoices (provider, kind, id, month, canonical, log_seq, received_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
                )?
                .execute(params![i.provider, i.kind, i.id, i.month, i.canonical, log_seq, ts(i.received_at)])?;
            if stored > 0 {
                bump_invoice_generation(conn, &i.provider)?;
            }
            Ok(OpResult::Done)
        }
        Op::RecordVerification(v) => {
            let log_seq = resolve(conn, done, v.log)?;
            conn.prepare_cached(
                "INSERT INTO verifications (provider, invoice_id, month, report, log_seq, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![v.provider, v.invoice_id, v.month, v.report, log_seq, ts(v.created_at)])?;
            let mut line = conn.prepare_cached(
                "INSERT INTO verified_lines (provider, invoice_id, line_id) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?;
            for l in &v.lines {
                line.execute(params![v.provider, v.invoice_id, l])?;
            }
            bump_invoice_generation(conn, &v.provider)?;
            Ok(OpResult::Done)
        }
        Op::ChangeDecision { version: v, current, provider } => {
            // Inside the writer's transaction: the version read here is the latest.
            let latest: Option<u32> = conn
                .prepare_cached("SELECT version FROM decisions WHERE id = ?1")?
                .query_row([&v.decision_id], |r| r.get(0))
                .optional()?;
            match latest {
                None => return Err(StoreError::Missing(format!("decision {}", v.decision_id))),
                Some(latest) if latest == v.version => {
                    return Err(StoreError::Conflict(format!("decision {} version {}", v.decision_id, v.version)))
                }
                Some(latest) if latest > v.version => {
                    return Err(StoreError::Stale(format!(
                        "decision {} is at version {latest}, later than {}",
                        v.decision_id, v.version
                    )))
                }
                Some(_) => {}
            }
            conn.prepare_cached(
                "INSERT INTO decision_versions (decision_id, version, effective_from, kind, canonical, system, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                v.decision_id,
                v.version,
                v.effective_from.to_string(),
                v.kind,
                v.canonical.to_string(),
                v.system,
                ts(v.received_at)
            ])?;
            conn.prepare_cached("UPDATE decisions SET version = ?2, canonical = ?3, provider = ?4 WHERE id = ?1")?
                .execute(params![v.decision_id, v.version, current, provider])?;
            Ok(OpResult::Done)
        }
        Op::ReviseOrder { order, reconfirm } => {
            let canonical = serde_json::to_string(&order).map_err(|e| StoreError::backend("order JSON", e))?;
            let paused = (!order.pauses.is_empty()).then(|| {
                let pairs: Vec<[String; 2]> =
                    order.pauses.iter().map(|p| [p.from.to_string(), p.to.to_string()]).collect();
                serde_json::json!(pairs).to_string()
            });
            let changed = conn
                .prepare_cached(
                    "UPDATE orders SET canonical = ?2, start_date = ?3, end_date = ?4, paused = ?5, execute_by = ?6
                     WHERE id = ?1",
                )?
                .execute(params![
                    order.id,
                    canonical,
                    order.start_date.to_string(),
                    order.end_date.map(|d| d.to_string()),
                    paused,
                    order.execute_by.to_string(),
                ])?;
            if changed == 0 {
                return Err(StoreError::Missing(format!("order {}", order.id)));
            }
            if reconfirm {
                conn.prepare_cached(
                    "UPDATE orders SET ack_status = NULL, ack_reason = NULL, acked_at = NULL,
                        status = CASE WHEN status IN ('accepted', 'rejected') THEN 'delivered' ELSE status END
                     WHERE id = ?1",
                )?
                .execute([&order.id])?;
            }
            Ok(OpResult::Done)
        }
        Op::StoreProviderReport(r) => {
            conn.prepare_cached(
                "INSERT INTO provider_reports (id, message_type, kind, severity, provider, client, order_id, day, month,
                    system, canonical, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?
            .execute(params![
                r.id,
                r.message_type,
                r.kind,
                r.severity,
                r.provider,
                r.client,
                r.order_id,
                r.day.to_string(),
                carehub_model::Month::of(r.day).to_string(),
                r.system,
                r.canonical.to_string(),
                ts(r.received_at)
            ])
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("report {}", r.id))
                } else {
                    e.into()
                }
            })?;
            Ok(OpResult::Done)
        }
        Op::ExpectInvoiceGeneration { provider, generation } => {
            // Inside the writer's transaction: nothing can move the counter between this
            // check and the commit.
            let current = invoice_generation(conn, &provider)?;
            if current != generation {
                return Err(StoreError::Stale(format!(
                    "provider {provider}'s invoices are at generation {current}, not {generation}"
                )));
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
        Op::RecordAccess(a) => {
            super::audit::record_access(conn, at, a)?;
            Ok(OpResult::Done)
        }
        Op::RemovePayloads { before, policy } => {
            Ok(OpResult::Logged(super::audit::remove_payloads(conn, chain, at, before, &policy)?))
        }
        Op::StoreCheckpoint(c) => {
            super::audit::store_checkpoint(conn, &c)?;
            Ok(OpResult::Done)
        }
        Op::HoldLease { name, owner, until } => {
            // Inside the writer's transaction (BEGIN IMMEDIATE): no other process writes
            // between this read and the write that depends on it.
            let current: Option<(String, String)> = conn
                .prepare_cached("SELECT owner, until FROM leases WHERE name = ?1")?
                .query_row([&name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let current = match current {
                Some((holder, until)) => Some((
                    holder,
                    parse_store_ts(&until)
                        .ok_or_else(|| StoreError::backend("reading a lease", format!("'{until}' is not a time")))?,
                )),
                None => None,
            };
            let hold = LeaseHold::decide(current, &owner, at);
            if hold.held() {
                conn.prepare_cached(
                    "INSERT INTO leases (name, owner, until) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until",
                )?
                .execute(params![name, owner, ts(until)])?;
            }
            Ok(OpResult::Lease(hold))
        }
        Op::ReleaseLease { name, owner } => {
            conn.prepare_cached("DELETE FROM leases WHERE name = ?1 AND owner = ?2")?.execute(params![name, owner])?;
            Ok(OpResult::Done)
        }
    }
}

/// A provider's invoice generation (0 before its first invoice or verification).
pub(super) fn invoice_generation(conn: &Connection, provider: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT generation FROM invoice_generations WHERE provider = ?1")?
        .query_row([provider], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Moves a provider's invoice generation on: its invoices or verifications changed.
fn bump_invoice_generation(conn: &Connection, provider: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO invoice_generations (provider, generation) VALUES (?1, 1)
         ON CONFLICT (provider) DO UPDATE SET generation = generation + 1",
    )?
    .execute([provider])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(ops: Vec<Op>) -> (WriteRequest, oneshot::Receiver<Result<Vec<OpResult>, StoreError>>) {
        let (reply, rx) = oneshot::channel();
        (WriteRequest { ops, reply }, rx)
    }

    fn decision(id: &str, at: DateTime<Utc>) -> Op {
        Op::InsertDecision(DecisionRecord {
            id: id.to_owned(),
            system: "combine".into(),
            content_hash: format!("hash of {id}"),
            client: "193601016987".into(),
            provider: "5599000014".into(),
            canonical: "{}".into(),
            received_at: at,
            version: 0,
        })
    }

    fn entry(id: &str) -> Op {
        Op::AppendLog(NewLogEntry {
            system: "combine".into(),
            vendor: "combine".into(),
            direction: "in",
            message_type: "decision".into(),
            content_type: "application/xml".into(),
            payload: format!("<Beslut id=\"{id}\"/>").into_bytes(),
            decision_id: Some(id.to_owned()),
            ..NewLogEntry::default()
        })
    }

    fn answer(rx: oneshot::Receiver<Result<Vec<OpResult>, StoreError>>) -> Result<Vec<OpResult>, StoreError> {
        rx.blocking_recv().expect("every request is answered")
    }

    /// One batch of three requests whose second fails halfway (its decision is already
    /// stored): the first and the third commit, the second leaves neither its entry nor
    /// anything else, and the chain runs 1, 2 without a gap. A batch where nothing fails
    /// commits every request straight.
    #[test]
    fn a_request_failing_in_a_batch_is_undone_alone() {
        let dir = tempfile::tempdir().expect("dir");
        let mut conn = super::super::open_connection(&dir.path().join("w.db")).expect("open");
        super::super::migrate(&mut conn).expect("migrate");
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-28T11:00:00Z").expect("instant").to_utc();
        let clock = Clock::frozen(at);

        let (first, first_rx) = request(vec![entry("combine:D-1"), decision("combine:D-1", at)]);
        let (copy, copy_rx) = request(vec![entry("combine:D-1 again"), decision("combine:D-1", at)]);
        let (third, third_rx) = request(vec![entry("combine:D-2"), decision("combine:D-2", at)]);
        apply_batch(&mut conn, vec![first, copy, third], &clock);
        assert!(matches!(answer(first_rx).as_deref(), Ok([OpResult::Logged(1), OpResult::Done])));
        assert!(matches!(answer(copy_rx), Err(StoreError::Conflict(_))));
        assert!(matches!(answer(third_rx).as_deref(), Ok([OpResult::Logged(2), OpResult::Done])));

        let (fourth, fourth_rx) = request(vec![entry("combine:D-3"), decision("combine:D-3", at)]);
        let (fifth, fifth_rx) = request(vec![entry("combine:D-4"), decision("combine:D-4", at)]);
        apply_batch(&mut conn, vec![fourth, fifth], &clock);
        assert!(matches!(answer(fourth_rx).as_deref(), Ok([OpResult::Logged(3), OpResult::Done])));
        assert!(matches!(answer(fifth_rx).as_deref(), Ok([OpResult::Logged(4), OpResult::Done])));

        let ids: Vec<String> = conn
            .prepare("SELECT decision_id FROM message_log ORDER BY seq")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("entries");
        assert_eq!(ids, ["combine:D-1", "combine:D-2", "combine:D-3", "combine:D-4"]);
        let decisions: i64 =
            conn.query_row("SELECT COUNT(*) FROM decision_versions", [], |r| r.get(0)).expect("versions");
        assert_eq!(decisions, 4, "each stored decision has its version 0, and the failed copy none");
        let links: Vec<(String, String)> = conn
            .prepare("SELECT prev_hash, hash FROM message_log ORDER BY seq")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .expect("hashes");
        assert_eq!(links[0].0, crate::log::GENESIS);
        assert!(links.windows(2).all(|w| w[1].0 == w[0].1), "one chain: {links:?}");
    }
}
