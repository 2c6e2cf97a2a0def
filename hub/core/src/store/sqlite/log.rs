//! The hash chain's append in SQLite: the head read inside the writer's transaction, the
//! entry hashed and inserted with its links.

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::log::GENESIS;
use crate::store::*;

/// The last entry's sequence number and hash.
pub(super) fn chain_head(conn: &Connection) -> Result<(i64, String), rusqlite::Error> {
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
    at: DateTime<Utc>,
    e: NewLogEntry,
) -> Result<i64, StoreError> {
    if slot.0 != chain.0 + 1 {
        return Err(StoreError::backend(
            "appending to the log",
            format!("log slot {} was taken before its entry was appended (the chain is at {})", slot.0, chain.0),
        ));
    }
    append_log(conn, chain, at, e)
}

pub(super) fn append_log(
    conn: &Connection,
    chain: &mut (i64, String),
    at: DateTime<Utc>,
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
    let (entry, hash) = e.chained(chain.0 + 1, chain.1.clone(), at);
    conn.prepare_cached(
        "INSERT INTO message_log (seq, at, system, vendor, direction, message_type, content_type,
            payload, canonical, status, error_code, error_message, decision_id, order_id, client,
            provider, delivery_key, prev_hash, hash, payload_sha256)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
    )?
    .execute(params![
        entry.seq,
        ts(entry.at),
        entry.system,
        entry.vendor,
        entry.direction,
        entry.message_type,
        entry.content_type,
        entry.payload,
        entry.canonical,
        entry.status.as_str(),
        entry.error_code,
        entry.error_message,
        entry.decision_id,
        entry.order_id,
        entry.client,
        entry.provider,
        entry.delivery_key,
        entry.prev_hash,
        hash,
        entry.payload_hash,
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
