//! Auditing in SQLite: the access log's append (inside the writer's transaction, chained to
//! the entry before it) and reads, the message log's leaf hashes, and checkpoints.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::rows::instant;
use crate::log::access::{AccessEntry, AccessQuery, NewAccess};
use crate::log::GENESIS;
use crate::store::*;

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::backend("access-log JSON", e)
}

/// Appends `a` to the access log at `at`; returns its sequence number.
pub(super) fn record_access(conn: &Connection, at: DateTime<Utc>, a: NewAccess) -> Result<i64, StoreError> {
    let (seq, prev): (i64, String) = conn
        .prepare_cached("SELECT seq, hash FROM access_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?
        .unwrap_or((0, GENESIS.to_owned()));
    let e = a.chained(seq + 1, prev, at);
    conn.prepare_cached(
        "INSERT INTO access_log (seq, at, subject, role, query, clients, entries, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        e.seq,
        ts(e.at),
        e.subject,
        e.role,
        e.query.canonical(),
        serde_json::to_string(&e.clients).map_err(json_err)?,
        serde_json::to_string(&e.entries).map_err(json_err)?,
        e.prev_hash,
        e.hash,
    ])?;
    for c in &e.clients {
        conn.prepare_cached("INSERT INTO access_log_clients (client, seq) VALUES (?1, ?2)")?
            .execute(params![c, e.seq])?;
    }
    Ok(e.seq)
}

/// [`Op::RemovePayloads`]: counts what goes, appends the retention entry saying so, then
/// empties those payloads, marked with that entry (the schema's trigger allows exactly this).
pub(super) fn remove_payloads(
    conn: &Connection,
    chain: &mut (i64, String),
    at: DateTime<Utc>,
    before: DateTime<Utc>,
    policy: &str,
) -> Result<i64, StoreError> {
    let before_ts = ts(before);
    let (removed, first, last): (i64, Option<i64>, Option<i64>) = conn.query_row(
        "SELECT COUNT(*), MIN(seq), MAX(seq) FROM message_log
         WHERE at < ?1 AND payload_sha256 IS NOT NULL AND retained_by IS NULL",
        [&before_ts],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let kept: i64 = conn.query_row(
        "SELECT COUNT(*) FROM message_log WHERE at < ?1 AND payload_sha256 IS NULL",
        [&before_ts],
        |r| r.get(0),
    )?;
    let body = serde_json::json!({
        "policy": policy, "before": before_ts, "removed": removed, "first": first, "last": last,
        "kept_unhashed": kept,
    })
    .to_string();
    let seq = super::log::append_log(
        conn,
        chain,
        at,
        NewLogEntry {
            system: "carehub".into(),
            vendor: "carehub".into(),
            direction: "internal",
            message_type: "retention".into(),
            content_type: "application/json".into(),
            payload: body.clone().into_bytes(),
            canonical: Some(body),
            status: LogStatus::Accepted,
            ..NewLogEntry::default()
        },
    )?;
    let updated = conn.execute(
        "UPDATE message_log SET payload = x'', retained_by = ?2
         WHERE at < ?1 AND payload_sha256 IS NOT NULL AND retained_by IS NULL AND seq < ?2",
        params![before_ts, seq],
    )?;
    if updated as i64 != removed {
        return Err(StoreError::backend(
            "retention",
            format!("counted {removed} payloads to remove, removed {updated}"),
        ));
    }
    Ok(seq)
}

pub(super) fn store_checkpoint(conn: &Connection, c: &CheckpointRecord) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT OR IGNORE INTO checkpoints (size, root, at, note) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![c.size, c.root, ts(c.at), c.note])?;
    Ok(())
}

fn access_row(r: &Row<'_>) -> rusqlite::Result<AccessEntry> {
    let json = |i: usize, text: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, format!("not JSON: {text}").into())
    };
    let query: String = r.get(4)?;
    let clients: String = r.get(5)?;
    let entries: String = r.get(6)?;
    Ok(AccessEntry {
        seq: r.get(0)?,
        at: instant(r, 1)?,
        subject: r.get(2)?,
        role: r.get(3)?,
        query: serde_json::from_str::<AccessQuery>(&query).map_err(|_| json(4, query.clone()))?,
        clients: serde_json::from_str(&clients).map_err(|_| json(5, clients.clone()))?,
        entries: serde_json::from_str(&entries).map_err(|_| json(6, entries.clone()))?,
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
    })
}

pub(super) fn access_log(c: &Connection, f: &AccessFilter) -> Result<Vec<AccessEntry>, StoreError> {
    let mut sql =
        "SELECT seq, at, subject, role, query, clients, entries, prev_hash, hash FROM access_log WHERE 1=1".to_owned();
    let mut args: Vec<String> = Vec::new();
    let mut add = |cond: &str, v: Option<String>| {
        if let Some(v) = v {
            args.push(v);
            sql.push_str(&cond.replace("?", &format!("?{}", args.len())));
        }
    };
    add(" AND seq IN (SELECT seq FROM access_log_clients WHERE client = ?)", f.client.clone());
    add(" AND subject = ?", f.subject.clone());
    add(" AND at >= ?", f.since.map(ts));
    add(" AND at < ?", f.until.map(ts));
    add(" AND seq > CAST(? AS INTEGER)", f.after_seq.map(|s| s.to_string()));
    add(" AND seq < CAST(? AS INTEGER)", f.before_seq.map(|s| s.to_string()));
    let order = if f.newest_first { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY seq {order} LIMIT {}", f.limit.clamp(1, 10_000)));
    let mut stmt = c.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), access_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub(super) fn log_size(c: &Connection) -> Result<i64, StoreError> {
    Ok(c.query_row("SELECT COALESCE(MAX(seq), 0) FROM message_log", [], |r| r.get(0))?)
}

pub(super) fn log_hashes(c: &Connection, after: i64, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
    let mut stmt = c.prepare_cached("SELECT seq, hash FROM message_log WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    let rows = stmt
        .query_map(params![after, limit.clamp(1, 1_000_000) as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

fn checkpoint_row(r: &Row<'_>) -> rusqlite::Result<CheckpointRecord> {
    Ok(CheckpointRecord { size: r.get(0)?, root: r.get(1)?, at: instant(r, 2)?, note: r.get(3)? })
}

pub(super) fn checkpoint(c: &Connection, size: Option<i64>) -> Result<Option<CheckpointRecord>, StoreError> {
    let sql = match size {
        Some(_) => "SELECT size, root, at, note FROM checkpoints WHERE size >= ?1 ORDER BY size LIMIT 1",
        None => "SELECT size, root, at, note FROM checkpoints WHERE ?1 IS NULL ORDER BY size DESC LIMIT 1",
    };
    Ok(c.prepare_cached(sql)?.query_row([size], checkpoint_row).optional()?)
}
