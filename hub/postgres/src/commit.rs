//! Commits: a writer thread per node that group-commits, and where each [`Op`] becomes SQL.
//!
//! The message log is one chain, so every commit that appends holds the chain's sequencer
//! row from its first append until its COMMIT has been flushed: one transaction per commit
//! would let a node commit once per WAL flush, whatever its load. So, as SQLite's writer
//! does, each node's writer thread takes whatever requests have queued while the previous
//! transaction was flushing (up to [`MAX_BATCH`]) and applies them in one transaction (a
//! failing request is undone alone, with a savepoint per request: its ops land together or
//! not at all), takes the sequencer once for the batch, and commits once. Every caller
//! hears of its request only after that COMMIT returned. The nodes' writers take turns at
//! the sequencer, so a second node adds no flushes, only batches.
//!
//! Locks, always taken in this order so two batches cannot wait on each other in a circle:
//! the chain's sequencer row first (when any request of the batch appends to the log), then
//! the access log's sequencer row (`access_head`, for [`Op::RecordAccess`]), then
//! the rows an op decides on: a decision's row for [`Op::ChangeDecision`], a provider's
//! generation row for [`Op::ExpectInvoiceGeneration`], a lease's row for [`Op::HoldLease`],
//! outbox rows for [`Op::ClaimDue`] (`SKIP LOCKED`: a row another node is claiming is passed
//! over, not waited for). Should the server still pick a batch as a deadlock's victim, the
//! batch is tried again.
//!
//! A batch that adds outbox rows ([`Op::Enqueue`], [`Op::Requeue`]) sends
//! `NOTIFY carehub_outbox` inside its transaction, so every node's delivery loop wakes when
//! the rows are committed rather than at its next poll.

use std::sync::Arc;

use carehub_core::store::*;
use carehub_model::{AckStatus, Clock};
use chrono::{DateTime, SubsecRound, Utc};
use postgres::error::SqlState;
use tokio::sync::{mpsc, oneshot};

use crate::db::{col, Conn, Db};
use crate::log::{storable, Chain, Known};
use crate::rows::{delivery_row, narrow, DELIVERY_COLUMNS};
use crate::Pool;

/// Most requests one transaction takes. Past 64 subtransactions that write, PostgreSQL's
/// snapshots of every session overflow to a slower path; a batch that falls back to a
/// savepoint per request stays under that.
pub const MAX_BATCH: usize = 64;

/// Times a batch the server aborted (a deadlock's victim, a serialization failure) is tried.
const TRIES: usize = 3;

/// One caller's ops and where their results go.
pub(crate) struct Request {
    pub(crate) ops: Vec<Op>,
    pub(crate) reply: oneshot::Sender<Result<Vec<OpResult>, StoreError>>,
}

/// Each request's result, in the batch's order.
type Results = Vec<Result<Vec<OpResult>, StoreError>>;

/// Whether an op appends to the log (so its batch takes the sequencer first).
fn appends(op: &Op) -> bool {
    matches!(op, Op::AppendLog(_) | Op::Requeue { .. } | Op::IngestVisits(_) | Op::RemovePayloads { .. })
}

/// Whether an op adds rows to the outbox (or puts some back), so its batch wakes the other
/// nodes' delivery loops.
fn adds_work(op: &Op) -> bool {
    matches!(op, Op::Enqueue(_) | Op::Requeue { .. })
}

/// The channel a commit that adds outbox rows notifies, and each node listens on
/// ([`crate::PgStore`]'s `watch_outbox`).
pub(crate) const OUTBOX_CHANNEL: &str = "carehub_outbox";

/// Whether the server aborted the work for a reason that a second try may not meet.
fn retryable(e: &StoreError) -> bool {
    let StoreError::Backend { source, .. } = e else { return false };
    source
        .downcast_ref::<postgres::Error>()
        .and_then(postgres::Error::code)
        .is_some_and(|c| *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

/// The writer: takes the queued requests in batches until every sender is gone.
pub(crate) fn writer_loop(pool: Arc<Pool>, mut rx: mpsc::Receiver<Request>, clock: &Clock) {
    let mut known = Known::default();
    let mut own: Option<Conn> = None;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        apply_batch(&pool, &mut own, batch, clock, &mut known);
    }
    if let Some(conn) = own {
        pool.give(conn);
    }
}

/// Applies one batch on the writer's own connection (`own`, taken from the pool once and
/// kept, so its prepared statements stay prepared; taken anew when it has closed).
fn apply_batch(pool: &Pool, own: &mut Option<Conn>, batch: Vec<Request>, clock: &Clock, known: &mut Known) {
    let (ops, replies): (Vec<Vec<Op>>, Vec<_>) = batch.into_iter().map(|r| (r.ops, r.reply)).unzip();
    if own.as_ref().is_some_and(|c| c.client.is_closed()) {
        *own = None;
    }
    let conn = match own.take() {
        Some(conn) => Ok(conn),
        None => pool.take(),
    };
    let outcome = conn.and_then(|mut conn| {
        let mut outcome = try_batch(pool, &mut conn, &ops, clock, known);
        for _ in 1..TRIES {
            match &outcome {
                Err(e) if retryable(e) => outcome = try_batch(pool, &mut conn, &ops, clock, known),
                _ => break,
            }
        }
        *own = Some(conn);
        outcome
    });
    match outcome {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            // One error, many callers: each gets it as its source.
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(StoreError::backend("postgres: the commit failed", Arc::clone(&e))));
            }
        }
    }
}

/// Applies each request's ops in one transaction and commits; each request's result, or
/// the batch's failure. Requests rarely fail, so the batch first runs without savepoints
/// (one round trip per statement, nothing more); if one of several fails, that
/// transaction is rolled back and the batch runs again with a savepoint per request, so
/// the failing one is undone alone.
fn try_batch(
    pool: &Pool,
    conn: &mut Conn,
    requests: &[Vec<Op>],
    clock: &Clock,
    known: &mut Known,
) -> Result<Results, StoreError> {
    match run_batch(conn, requests, clock, false, known)? {
        Some(results) => Ok(results),
        None => {
            pool.second_passes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            run_batch(conn, requests, clock, true, known)?
                .ok_or_else(|| StoreError::backend("postgres", "a batch with savepoints gave no results"))
        }
    }
}

/// One try of a batch: `None` when, without savepoints, one of several requests failed
/// (the transaction is rolled back as it is dropped).
fn run_batch(
    conn: &mut Conn,
    requests: &[Vec<Op>],
    clock: &Clock,
    savepoints: bool,
    known: &mut Known,
) -> Result<Option<Results>, StoreError> {
    // The optimistic pass holds plain inserts and sends them together (`db.rs`); the pass
    // with savepoints sends each at once, so a failure is its own request's.
    let holding = !savepoints;
    let mut db = if holding { conn.holding_transaction()? } else { conn.transaction()? };
    // Taken, so the commit adds to it without a copy (a failed pass forgets it: it is a cache).
    let mut chain = Chain::remembering(std::mem::take(known));
    if requests.iter().flatten().any(appends) {
        chain.head(&mut db)?;
    }
    if savepoints {
        db.batch("SAVEPOINT request")?;
    }
    // Whether the savepoint stands before the next request (not after a successful one).
    let mut fresh = true;
    let mut out = Vec::with_capacity(requests.len());
    for ops in requests {
        // To the microsecond: the instant reads back as it was written. Read with the
        // sequencer held, so entries' times follow their order.
        let at = clock.now().trunc_subsecs(6);
        let now = ts(at);
        if savepoints && !fresh {
            db.batch("RELEASE SAVEPOINT request; SAVEPOINT request")?;
        }
        let saved = chain.clone();
        let result = apply_ops(&mut db, &mut chain, at, &now, ops);
        match &result {
            Err(e) if retryable(e) => return Err(result.err().unwrap_or(StoreError::Closed)),
            Err(_) if savepoints => {
                // The savepoint still stands after ROLLBACK TO: the next request reuses it.
                chain = saved;
                db.batch("ROLLBACK TO SAVEPOINT request")?;
                fresh = true;
            }
            // Alone, its failure is the transaction's: nothing of it is committed. Unless it
            // may be a held row's, which the pass with savepoints names properly.
            Err(_) if requests.len() == 1 && !holding => return Ok(Some(vec![result])),
            Err(_) => return Ok(None),
            Ok(_) => fresh = false,
        }
        out.push(result);
    }
    // The held rows' errors (a key taken by a concurrent node) belong to a request this
    // pass cannot name: the pass with savepoints runs the batch again.
    match db.flush() {
        Err(e) if retryable(&e) => return Err(e),
        Err(_) => return Ok(None),
        Ok(()) => {}
    }
    chain.save(&mut db)?;
    // Inside the transaction: the server delivers it once the rows are committed (and not
    // at all if they are not), to every node listening, this one included.
    if requests.iter().flatten().any(adds_work) {
        db.batch(&format!("NOTIFY {OUTBOX_CHANNEL}"))?;
    }
    db.commit()?;
    *known = chain.committed();
    Ok(Some(out))
}

fn apply_ops(
    db: &mut Db<'_>,
    chain: &mut Chain,
    at: DateTime<Utc>,
    now: &str,
    ops: &[Op],
) -> Result<Vec<OpResult>, StoreError> {
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        let result = apply_op(db, chain, at, now, &results, op.clone())?;
        results.push(result);
    }
    Ok(results)
}

/// The sequence number of the log entry `reference` names, for the op that follows `done`.
fn resolve(db: &mut Db<'_>, done: &[OpResult], reference: LogRef) -> Result<i64, StoreError> {
    let unresolved = || StoreError::Unresolved { op: done.len(), reference };
    match reference {
        LogRef::Op(i) => match done.get(i) {
            Some(OpResult::Logged(seq)) => Ok(*seq),
            _ => Err(unresolved()),
        },
        LogRef::Seq(seq) => {
            let row = db.opt("SELECT seq FROM message_log WHERE seq = $1", &[&seq])?;
            row.map(|r| col(&r, 0)).transpose()?.ok_or_else(unresolved)
        }
    }
}

fn json_text<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::backend(what.to_owned(), e))
}

/// The day a decision takes effect from: its `valid_from`, else the day it arrived.
fn valid_from(canonical: &str, received_at: &str) -> String {
    serde_json::from_str::<serde_json::Value>(canonical)
        .ok()
        .and_then(|v| v.get("valid_from").and_then(|f| f.as_str()).map(str::to_owned))
        .unwrap_or_else(|| received_at.chars().take(10).collect())
}

fn apply_op(
    db: &mut Db<'_>,
    chain: &mut Chain,
    at: DateTime<Utc>,
    now: &str,
    done: &[OpResult],
    op: Op,
) -> Result<OpResult, StoreError> {
    match op {
        Op::AppendLog(e) => Ok(OpResult::Logged(chain.append(db, at, e)?)),
        Op::InsertDecision(d) => {
            let received_at = ts(d.received_at);
            db.insert_later(
                2,
                "INSERT INTO decisions (id, system, content_hash, client, provider, canonical, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[&d.id, &d.system, &d.content_hash, &d.client, &d.provider, &d.canonical, &received_at],
                Some(&format!("decision {}", d.id)),
            )?;
            db.insert_later(
                3,
                "INSERT INTO decision_versions (decision_id, version, effective_from, kind, canonical, system, received_at)
                 VALUES ($1, 0, $2, 'decision', $3, $4, $5)",
                &[&d.id, &valid_from(&d.canonical, &received_at), &d.canonical, &d.system, &received_at],
                None,
            )?;
            Ok(OpResult::Done)
        }
        Op::InsertOrder(o) => {
            let canonical = json_text(&o.order, "order JSON")?;
            db.insert_later(
                4,
                "INSERT INTO orders (id, decision_id, source_system, provider, provider_system, client,
                    execute_by, plan_due, canonical, created_at, status, start_date, end_date)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                &[
                    &o.order.id,
                    &o.order.decision_id.as_str(),
                    &o.source_system,
                    &o.order.provider.as_str(),
                    &o.provider_system,
                    &o.order.client.expose(),
                    &o.order.execute_by.to_string(),
                    &o.order.plan_due.to_string(),
                    &canonical,
                    &ts(o.created_at),
                    &o.status.as_str(),
                    &o.order.start_date.to_string(),
                    &o.order.end_date.map(|d| d.to_string()),
                ],
                Some(&format!("order {}", o.order.id)),
            )?;
            Ok(OpResult::Done)
        }
        Op::Enqueue(d) => {
            let log_seq = resolve(db, done, d.log)?;
            db.insert_later(
                5,
                "INSERT INTO outbox (system, message_type, order_id, idempotency_key, content_type, endpoint,
                    body, state, next_attempt_at, created_at, action, log_seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $8, $9, $10)",
                &[
                    &d.system,
                    &d.message_type,
                    &d.order_id,
                    &d.idempotency_key,
                    &d.content_type,
                    &d.endpoint,
                    &d.body,
                    &now,
                    &d.action,
                    &log_seq,
                ],
                Some(&format!("delivery {}", d.idempotency_key)),
            )?;
            Ok(OpResult::Done)
        }
        Op::RecordAck(ack) => {
            let status = match ack.status {
                AckStatus::Accepted => OrderStatus::Accepted,
                AckStatus::Rejected => OrderStatus::Rejected,
            };
            let n = db.execute(
                "UPDATE orders SET status = $2, ack_status = $3, ack_reason = $4, acked_at = $5 WHERE id = $1",
                &[&ack.order_id, &status.as_str(), &ack.status.as_str(), &ack.reason, &ts(ack.at)],
            )?;
            if n == 0 {
                return Err(StoreError::Missing(format!("order {}", ack.order_id)));
            }
            Ok(OpResult::Done)
        }
        Op::RecordPlan(plan) => {
            let n = db.execute(
                "UPDATE orders SET plan_established_on = $2, plan_received_at = $3 WHERE id = $1",
                &[&plan.order_id, &plan.established_on.to_string(), &now],
            )?;
            if n == 0 {
                return Err(StoreError::Missing(format!("order {}", plan.order_id)));
            }
            Ok(OpResult::Done)
        }
        Op::Attempted { id, outcome } => attempted(db, now, id, outcome),
        Op::ClaimDue { owner, lease_until, limit } => {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = db.query(
                &format!(
                    "UPDATE outbox SET lease_owner = $1, lease_until = $2
                     WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= $3
                                  AND (lease_until IS NULL OR lease_until < $3)
                                  ORDER BY next_attempt_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)
                     RETURNING {DELIVERY_COLUMNS}"
                ),
                &[&owner, &ts(lease_until), &now, &limit],
            )?;
            let mut claimed = rows.iter().map(delivery_row).collect::<Result<Vec<_>, _>>()?;
            claimed.sort_by_key(|d| d.id);
            Ok(OpResult::Claimed(claimed))
        }
        Op::Requeue { ids } => requeue(db, chain, at, now, ids),
        Op::RegisterTag(t) => {
            let uid = t.tag_uid.as_str();
            let latest: Option<String> =
                col(&db.one("SELECT MAX(installed_on) FROM tag_registrations WHERE tag_uid = $1", &[&uid])?, 0)?;
            let from = t.installed_on.to_string();
            if let Some(latest) = latest.filter(|l| *l >= from) {
                return Err(StoreError::Conflict(format!("tag {uid} has a registration from {latest}")));
            }
            if let Some(day_before) = t.installed_on.pred_opt() {
                db.execute(
                    "UPDATE tag_registrations SET removed_on = $2 WHERE tag_uid = $1 AND removed_on IS NULL",
                    &[&uid, &day_before.to_string()],
                )?;
            }
            db.execute(
                "INSERT INTO tag_registrations (tag_uid, client, installed_on, removed_on, created_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&uid, &t.client.expose(), &from, &t.removed_on.map(|d| d.to_string()), &now],
            )?;
            Ok(OpResult::Done)
        }
        Op::IngestVisits(ingest) => Ok(OpResult::Visits(crate::visits::ingest(db, chain, *ingest)?)),
        Op::CloseMonth(month) => {
            db.execute(
                "INSERT INTO closed_months (month, closed_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&month, &now],
            )?;
            Ok(OpResult::Done)
        }
        Op::StoreInvoice(i) => {
            let log_seq = resolve(db, done, i.log)?;
            let stored = db.execute(
                "INSERT INTO invoices (provider, kind, id, month, canonical, log_seq, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[&i.provider, &i.kind, &i.id, &i.month, &i.canonical, &log_seq, &ts(i.received_at)],
            )?;
            if stored > 0 {
                bump_invoice_generation(db, &i.provider)?;
            }
            Ok(OpResult::Done)
        }
        Op::RecordVerification(v) => {
            let log_seq = resolve(db, done, v.log)?;
            db.execute(
                "INSERT INTO verifications (provider, invoice_id, month, report, log_seq, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[&v.provider, &v.invoice_id, &v.month, &v.report, &log_seq, &ts(v.created_at)],
            )?;
            for l in &v.lines {
                db.execute(
                    "INSERT INTO verified_lines (provider, invoice_id, line_id) VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                    &[&v.provider, &v.invoice_id, l],
                )?;
            }
            bump_invoice_generation(db, &v.provider)?;
            Ok(OpResult::Done)
        }
        Op::ChangeDecision { version: v, current, provider } => {
            // The decision's row locked: a concurrent change of it, on any node, waits here
            // and then reads the version this one committed.
            let row = db.opt("SELECT version FROM decisions WHERE id = $1 FOR UPDATE", &[&v.decision_id])?;
            let latest: Option<u32> = row.map(|r| narrow(&r, 0)).transpose()?;
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
            let version = i64::from(v.version);
            db.execute(
                "INSERT INTO decision_versions (decision_id, version, effective_from, kind, canonical, system, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &v.decision_id,
                    &version,
                    &v.effective_from.to_string(),
                    &v.kind,
                    &v.canonical.to_string(),
                    &v.system,
                    &ts(v.received_at),
                ],
            )?;
            db.execute(
                "UPDATE decisions SET version = $2, canonical = $3, provider = $4 WHERE id = $1",
                &[&v.decision_id, &version, &current, &provider],
            )?;
            Ok(OpResult::Done)
        }
        Op::ReviseOrder { order, reconfirm } => {
            let canonical = json_text(&order, "order JSON")?;
            let paused = (!order.pauses.is_empty()).then(|| {
                let pairs: Vec<[String; 2]> =
                    order.pauses.iter().map(|p| [p.from.to_string(), p.to.to_string()]).collect();
                serde_json::json!(pairs).to_string()
            });
            let changed = db.execute(
                "UPDATE orders SET canonical = $2, start_date = $3, end_date = $4, paused = $5, execute_by = $6
                 WHERE id = $1",
                &[
                    &order.id,
                    &canonical,
                    &order.start_date.to_string(),
                    &order.end_date.map(|d| d.to_string()),
                    &paused,
                    &order.execute_by.to_string(),
                ],
            )?;
            if changed == 0 {
                return Err(StoreError::Missing(format!("order {}", order.id)));
            }
            if reconfirm {
                db.execute(
                    "UPDATE orders SET ack_status = NULL, ack_reason = NULL, acked_at = NULL,
                        status = CASE WHEN status IN ('accepted', 'rejected') THEN 'delivered' ELSE status END
                     WHERE id = $1",
                    &[&order.id],
                )?;
            }
            Ok(OpResult::Done)
        }
        Op::StoreProviderReport(r) => {
            db.insert_unique(
                "INSERT INTO provider_reports (id, message_type, kind, severity, provider, client, order_id, day, month,
                    system, canonical, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                &[
                    &r.id,
                    &r.message_type,
                    &r.kind,
                    &r.severity,
                    &r.provider,
                    &r.client,
                    &r.order_id,
                    &r.day.to_string(),
                    &carehub_model::Month::of(r.day).to_string(),
                    &r.system,
                    &r.canonical.to_string(),
                    &ts(r.received_at),
                ],
                &format!("report {}", r.id),
            )?;
            Ok(OpResult::Done)
        }
        Op::ExpectInvoiceGeneration { provider, generation } => {
            // A row to lock even before the provider's first invoice (generation 0); a
            // concurrent insert of it waits for this one.
            db.execute(
                "INSERT INTO invoice_generations (provider, generation) VALUES ($1, 0) ON CONFLICT DO NOTHING",
                &[&provider],
            )?;
            let row =
                db.one("SELECT generation FROM invoice_generations WHERE provider = $1 FOR UPDATE", &[&provider])?;
            let current: i64 = col(&row, 0)?;
            if current != generation {
                return Err(StoreError::Stale(format!(
                    "provider {provider}'s invoices are at generation {current}, not {generation}"
                )));
            }
            Ok(OpResult::Done)
        }
        Op::SetProgress { name, through } => {
            db.execute(
                "INSERT INTO progress (name, through) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET through = GREATEST(progress.through, EXCLUDED.through)",
                &[&name, &through],
            )?;
            Ok(OpResult::Done)
        }
        Op::RecordAccess(a) => {
            crate::audit::record_access(db, at, a)?;
            Ok(OpResult::Done)
        }
        Op::RemovePayloads { before, policy } => {
            Ok(OpResult::Logged(crate::audit::remove_payloads(db, chain, at, before, &policy)?))
        }
        Op::StoreCheckpoint(c) => {
            crate::audit::store_checkpoint(db, &c)?;
            Ok(OpResult::Done)
        }
        Op::HoldLease { name, owner, until } => hold_lease(db, at, name, owner, until),
        Op::ReleaseLease { name, owner } => {
            db.execute("DELETE FROM leases WHERE name = $1 AND owner = $2", &[&name, &owner])?;
            Ok(OpResult::Done)
        }
    }
}

/// [`Op::HoldLease`]: the lease's row locked (`FOR UPDATE`, inserted first when there is
/// none), so two nodes asking at once decide one after the other, by core's rule.
fn hold_lease(
    db: &mut Db<'_>,
    now: DateTime<Utc>,
    name: String,
    owner: String,
    until: DateTime<Utc>,
) -> Result<OpResult, StoreError> {
    let until = ts(until);
    // A row that was not there is the caller's at once; a concurrent insert of the same
    // name waits for this one's transaction and then finds the row.
    let inserted = db.execute(
        "INSERT INTO leases (name, owner, until) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&name, &owner, &until],
    )?;
    if inserted == 1 {
        return Ok(OpResult::Lease(LeaseHold::Taken));
    }
    let row = db.one("SELECT owner, until FROM leases WHERE name = $1 FOR UPDATE", &[&name])?;
    let (holder, held_until): (String, String) = (col(&row, 0)?, col(&row, 1)?);
    let held_until = parse_store_ts(&held_until)
        .ok_or_else(|| StoreError::backend("postgres: reading a lease", format!("'{held_until}' is not a time")))?;
    let hold = LeaseHold::decide(Some((holder, held_until)), &owner, now);
    if hold.held() {
        db.execute("UPDATE leases SET owner = $2, until = $3 WHERE name = $1", &[&name, &owner, &until])?;
    }
    Ok(OpResult::Lease(hold))
}

fn attempted(db: &mut Db<'_>, now: &str, id: i64, outcome: AttemptOutcome) -> Result<OpResult, StoreError> {
    let (state, next, error, delivered) = match outcome {
        AttemptOutcome::Delivered => (DeliveryState::Delivered, now.to_owned(), None, Some(now.to_owned())),
        AttemptOutcome::Retry { next_attempt_at, error } => {
            (DeliveryState::Pending, ts(next_attempt_at), Some(storable(error)), None)
        }
        AttemptOutcome::Dead { error } => (DeliveryState::Dead, now.to_owned(), Some(storable(error)), None),
    };
    let row = db.opt(
        "UPDATE outbox SET state = $2, attempts = attempts + 1, next_attempt_at = $3,
            last_error = COALESCE($4, last_error), delivered_at = $5, lease_owner = NULL, lease_until = NULL
         WHERE id = $1 RETURNING message_type, order_id",
        &[&id, &state.as_str(), &next, &error, &delivered],
    )?;
    let Some(row) = row else {
        return Err(StoreError::Missing(format!("delivery {id}")));
    };
    let (message_type, order_id): (String, Option<String>) = (col(&row, 0)?, col(&row, 1)?);
    let order_state = match state {
        DeliveryState::Delivered => Some(OrderStatus::Delivered),
        DeliveryState::Dead => Some(OrderStatus::DeadLetter),
        _ => None,
    };
    if let (Some(order_id), Some(s), "order") = (order_id, order_state, message_type.as_str()) {
        // An acknowledgement may overtake the delivery record: never move an acknowledged
        // order back, but do remember when it was delivered.
        db.execute(
            "UPDATE orders SET status = CASE WHEN acked_at IS NULL THEN $2 ELSE status END,
                delivered_at = COALESCE(delivered_at, $3)
             WHERE id = $1",
            &[&order_id, &s.as_str(), &delivered],
        )?;
    }
    Ok(OpResult::Done)
}

fn requeue(
    db: &mut Db<'_>,
    chain: &mut Chain,
    at: DateTime<Utc>,
    now: &str,
    ids: Option<Vec<i64>>,
) -> Result<OpResult, StoreError> {
    let rows =
        db.query(&format!("SELECT {DELIVERY_COLUMNS} FROM outbox WHERE state = 'dead' ORDER BY id FOR UPDATE"), &[])?;
    let dead = rows
        .iter()
        .map(delivery_row)
        .filter(|d| d.as_ref().map_or(true, |d| ids.as_ref().is_none_or(|ids| ids.contains(&d.id))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut requeued = Vec::with_capacity(dead.len());
    for mut d in dead {
        db.execute(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $2,
                lease_owner = NULL, lease_until = NULL WHERE id = $1",
            &[&d.id, &now],
        )?;
        if let (Some(order_id), "order") = (&d.order_id, d.message_type.as_str()) {
            db.execute("UPDATE orders SET status = 'queued' WHERE id = $1 AND status = 'dead_letter'", &[order_id])?;
        }
        chain.append(
            db,
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

/// Moves a provider's invoice generation on: its invoices or verifications changed.
fn bump_invoice_generation(db: &mut Db<'_>, provider: &str) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO invoice_generations (provider, generation) VALUES ($1, 1)
         ON CONFLICT (provider) DO UPDATE SET generation = invoice_generations.generation + 1",
        &[&provider],
    )?;
    Ok(())
}
