//! Auditing on PostgreSQL, as SQLite does it (hub/core/src/store/sqlite/audit.rs): the
//! access log's append (chained to the entry before it, under the `access_head` row lock
//! so the reads of every node form one chain) and reads, retention's removal of payloads,
//! the message log's leaf hashes, and checkpoints.

use carehub_core::log::access::{AccessEntry, AccessQuery, NewAccess};
use carehub_core::store::*;
use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use postgres::Row;

use crate::db::{col, Db};
use crate::log::{storable, Chain};
use crate::rows::instant;

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::backend("access-log JSON", e)
}

/// `a` as PostgreSQL's text can hold it (see [`storable`]), before it is hashed, so the
/// chain verifies over what the table holds.
fn storable_access(a: NewAccess) -> NewAccess {
    let query = AccessQuery {
        endpoint: storable(a.query.endpoint),
        filters: a.query.filters.into_iter().map(|(k, v)| (storable(k), storable(v))).collect(),
    };
    NewAccess {
        subject: storable(a.subject),
        role: storable(a.role),
        query,
        clients: a.clients.into_iter().map(storable).collect(),
        entries: a.entries,
    }
}

/// Appends `a` to the access log at `at`; returns its sequence number.
pub(crate) fn record_access(db: &mut Db<'_>, at: DateTime<Utc>, a: NewAccess) -> Result<i64, StoreError> {
    let head = db.one("SELECT seq, hash FROM access_head WHERE id = 1 FOR UPDATE", &[])?;
    let (seq, prev): (i64, String) = (col(&head, 0)?, col(&head, 1)?);
    let e = storable_access(a).chained(seq + 1, prev, at);
    db.execute(
        "INSERT INTO access_log (seq, at, subject, role, query, clients, entries, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &e.seq,
            &ts(e.at),
            &e.subject,
            &e.role,
            &e.query.canonical(),
            &serde_json::to_string(&e.clients).map_err(json_err)?,
            &serde_json::to_string(&e.entries).map_err(json_err)?,
            &e.prev_hash,
            &e.hash,
        ],
    )?;
    for c in &e.clients {
        db.execute("INSERT INTO access_log_clients (client, seq) VALUES ($1, $2)", &[c, &e.seq])?;
    }
    db.execute("UPDATE access_head SET seq = $1, hash = $2 WHERE id = 1", &[&e.seq, &e.hash])?;
    Ok(e.seq)
}

/// [`Op::RemovePayloads`]: counts what goes, appends the retention entry saying so, then
/// empties those payloads, marked with that entry (the schema's trigger allows exactly this).
pub(crate) fn remove_payloads(
    db: &mut Db<'_>,
    chain: &mut Chain,
    at: DateTime<Utc>,
    before: DateTime<Utc>,
    policy: &str,
) -> Result<i64, StoreError> {
    let before_ts = ts(before);
    let row = db.one(
        "SELECT COUNT(*), MIN(seq), MAX(seq) FROM message_log
         WHERE at < $1 AND payload_sha256 IS NOT NULL AND retained_by IS NULL",
        &[&before_ts],
    )?;
    let (removed, first, last): (i64, Option<i64>, Option<i64>) = (col(&row, 0)?, col(&row, 1)?, col(&row, 2)?);
    let kept: i64 =
        col(&db.one("SELECT COUNT(*) FROM message_log WHERE at < $1 AND payload_sha256 IS NULL", &[&before_ts])?, 0)?;
    let body = serde_json::json!({
        "policy": policy, "before": before_ts, "removed": removed, "first": first, "last": last,
        "kept_unhashed": kept,
    })
    .to_string();
    let seq = chain.append(
        db,
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
    let updated = db.execute(
        "UPDATE message_log SET payload = ''::bytea, retained_by = $2
         WHERE at < $1 AND payload_sha256 IS NOT NULL AND retained_by IS NULL AND seq < $2",
        &[&before_ts, &seq],
    )?;
    if updated != removed as u64 {
        return Err(StoreError::backend(
            "retention",
            format!("counted {removed} payloads to remove, removed {updated}"),
        ));
    }
    Ok(seq)
}

pub(crate) fn store_checkpoint(db: &mut Db<'_>, c: &CheckpointRecord) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO checkpoints (size, root, at, note) VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING",
        &[&c.size, &c.root, &ts(c.at), &c.note],
    )?;
    Ok(())
}

fn parsed_json<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> Result<T, StoreError> {
    let text: &str = col(r, i)?;
    serde_json::from_str(text).map_err(|_| StoreError::backend("access-log JSON", format!("not JSON: {text}")))
}

fn access_row(r: &Row) -> Result<AccessEntry, StoreError> {
    Ok(AccessEntry {
        seq: col(r, 0)?,
        at: instant(r, 1)?,
        subject: col(r, 2)?,
        role: col(r, 3)?,
        query: parsed_json(r, 4)?,
        clients: parsed_json(r, 5)?,
        entries: parsed_json(r, 6)?,
        prev_hash: col(r, 7)?,
        hash: col(r, 8)?,
    })
}

pub(crate) fn access_log(db: &mut Db<'_>, f: &AccessFilter) -> Result<Vec<AccessEntry>, StoreError> {
    let mut sql =
        "SELECT seq, at, subject, role, query, clients, entries, prev_hash, hash FROM access_log WHERE TRUE".to_owned();
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    let mut add = |cond: &str, v: Option<Box<dyn ToSql + Sync + Send>>| {
        if let Some(v) = v {
            args.push(v);
            sql.push_str(&cond.replace('?', &format!("${}", args.len())));
        }
    };
    let text = |v: Option<String>| v.map(|v| Box::new(v) as Box<dyn ToSql + Sync + Send>);
    add(" AND seq IN (SELECT seq FROM access_log_clients WHERE client = ?)", text(f.client.clone()));
    add(" AND subject = ?", text(f.subject.clone()));
    add(" AND at >= ?", text(f.since.map(ts)));
    add(" AND at < ?", text(f.until.map(ts)));
    add(" AND seq > ?", f.after_seq.map(|s| Box::new(s) as Box<dyn ToSql + Sync + Send>));
    add(" AND seq < ?", f.before_seq.map(|s| Box::new(s) as Box<dyn ToSql + Sync + Send>));
    let order = if f.newest_first { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY seq {order} LIMIT {}", f.limit.clamp(1, 10_000)));
    let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
    db.query(&sql, &params)?.iter().map(access_row).collect()
}

pub(crate) fn log_size(db: &mut Db<'_>) -> Result<i64, StoreError> {
    col(&db.one("SELECT COALESCE(MAX(seq), 0)::BIGINT FROM message_log", &[])?, 0)
}

pub(crate) fn log_hashes(db: &mut Db<'_>, after: i64, limit: usize) -> Result<Vec<(i64, String)>, StoreError> {
    let limit = limit.clamp(1, 1_000_000) as i64;
    db.query("SELECT seq, hash FROM message_log WHERE seq > $1 ORDER BY seq LIMIT $2", &[&after, &limit])?
        .iter()
        .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
        .collect()
}

fn checkpoint_row(r: &Row) -> Result<CheckpointRecord, StoreError> {
    Ok(CheckpointRecord { size: col(r, 0)?, root: col(r, 1)?, at: instant(r, 2)?, note: col(r, 3)? })
}

pub(crate) fn checkpoint(db: &mut Db<'_>, size: Option<i64>) -> Result<Option<CheckpointRecord>, StoreError> {
    let row = match size {
        Some(size) => {
            db.opt("SELECT size, root, at, note FROM checkpoints WHERE size >= $1 ORDER BY size LIMIT 1", &[&size])?
        }
        None => db.opt("SELECT size, root, at, note FROM checkpoints ORDER BY size DESC LIMIT 1", &[])?,
    };
    row.as_ref().map(checkpoint_row).transpose()
}
