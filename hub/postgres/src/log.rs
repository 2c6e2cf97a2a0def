//! The hash chain's append on PostgreSQL. A commit that appends locks the sequencer row
//! (`chain_head`, `SELECT ... FOR UPDATE`) before anything else, appends its entries after
//! the head it read (hashed with core's [`entry_hash`], times in core's [`ts`] form, exactly
//! as SQLite does), and moves the head in the same transaction. A second commit, on this
//! node or another, waits on the row and then reads the head the first one committed: the
//! entries of all nodes form one chain, numbered without gaps in commit order, and a reader
//! sees a prefix of it.
//!
//! Every entry is hashed over its payload's SHA-256 (kept in `payload_sha256`), as SQLite
//! hashes entries since its version 11, so retention can empty the payload and keep the hash.

use std::collections::HashMap;
use std::sync::Arc;

use carehub_core::store::*;
use chrono::{DateTime, Utc};

use crate::db::{col, Db};

/// The chain head a commit holds: read (and locked) the first time the commit needs it.
#[derive(Default, Clone)]
pub(crate) struct Chain {
    head: Option<(i64, String)>,
    moved: bool,
    /// What the entries this commit appended carry for an entry that follows one of them
    /// (a delivery's attempt follows its queued entry), so it need not be read back.
    recent: HashMap<i64, Followed>,
    /// The same for entries this node's writer committed before ([`Known`]).
    known: Known,
}

/// What a node's writer remembers of the entries it committed, for the entries that follow
/// them: an attempt's entry takes its queued entry's keys and links, and reading them back
/// cost two round trips per delivery. Entries never change once committed (retention
/// empties payloads only), so remembering them is safe; entries another node appended are
/// read from the table as before. Bounded: it starts over past [`KNOWN_MAX`] entries.
pub(crate) type Known = Arc<HashMap<i64, Followed>>;

/// Entries a writer remembers at most.
const KNOWN_MAX: usize = 100_000;

/// The keys and links of an entry appended in this commit.
#[derive(Clone)]
pub(crate) struct Followed {
    decision_id: Option<String>,
    order_id: Option<String>,
    client: Option<String>,
    provider: Option<String>,
    links: Vec<(Option<String>, Option<String>)>,
}

impl Chain {
    /// A chain for one commit, with what the writer remembers from its commits before.
    pub(crate) fn remembering(known: Known) -> Chain {
        Chain { known, ..Chain::default() }
    }

    /// What the writer remembers after this commit committed: its entries added.
    pub(crate) fn committed(self) -> Known {
        let mut known = self.known;
        if known.len() + self.recent.len() > KNOWN_MAX {
            known = Known::default();
        }
        Arc::make_mut(&mut known).extend(self.recent);
        known
    }

    /// The last entry's sequence number and hash, locking the sequencer row on first use.
    pub(crate) fn head<'c>(&'c mut self, db: &mut Db<'_>) -> Result<&'c mut (i64, String), StoreError> {
        if self.head.is_none() {
            let row = db.one("SELECT seq, hash FROM chain_head WHERE id = 1 FOR UPDATE", &[])?;
            self.head = Some((col(&row, 0)?, col(&row, 1)?));
        }
        self.head.as_mut().ok_or_else(|| StoreError::backend("postgres", "the chain head was not read"))
    }

    /// Writes the head back if the commit appended (before it commits).
    pub(crate) fn save(&self, db: &mut Db<'_>) -> Result<(), StoreError> {
        if let (true, Some((seq, hash))) = (self.moved, &self.head) {
            db.execute("UPDATE chain_head SET seq = $1, hash = $2 WHERE id = 1", &[seq, hash])?;
        }
        Ok(())
    }

    /// The place the next entry will take (for an op that writes rows pointing at the entry
    /// it appends after them: visit ingestion).
    pub(crate) fn next_seq(&mut self, db: &mut Db<'_>) -> Result<i64, StoreError> {
        Ok(self.head(db)?.0 + 1)
    }

    /// Appends `e` at `at`; its sequence number. Its text is made [`storable`] before it is
    /// hashed, so the chain verifies over what the table holds.
    pub(crate) fn append(&mut self, db: &mut Db<'_>, at: DateTime<Utc>, e: NewLogEntry) -> Result<i64, StoreError> {
        let mut e = storable_entry(e);
        let earlier_here =
            e.follows.and_then(|earlier| self.recent.get(&earlier).or_else(|| self.known.get(&earlier)).cloned());
        if let Some(r) = &earlier_here {
            e.decision_id = e.decision_id.or(r.decision_id.clone());
            e.order_id = e.order_id.or(r.order_id.clone());
            e.client = e.client.or(r.client.clone());
            e.provider = e.provider.or(r.provider.clone());
        } else if let Some(earlier) = e.follows {
            let row =
                db.opt("SELECT decision_id, order_id, client, provider FROM message_log WHERE seq = $1", &[&earlier])?;
            if let Some(r) = row {
                e.decision_id = e.decision_id.or(col(&r, 0)?);
                e.order_id = e.order_id.or(col(&r, 1)?);
                e.client = e.client.or(col(&r, 2)?);
                e.provider = e.provider.or(col(&r, 3)?);
            }
        }
        let (links, follows) = (std::mem::take(&mut e.links), e.follows);
        let (seq, prev_hash) = {
            let head = self.head(db)?;
            (head.0 + 1, head.1.clone())
        };
        let (entry, hash) = e.chained(seq, prev_hash, at);
        db.insert_later(
            0,
            "INSERT INTO message_log (seq, at, system, vendor, direction, message_type, content_type,
                payload, canonical, status, error_code, error_message, decision_id, order_id, client,
                provider, delivery_key, prev_hash, hash, payload_sha256)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
            &[
                &entry.seq,
                &ts(entry.at),
                &entry.system,
                &entry.vendor,
                &entry.direction,
                &entry.message_type,
                &entry.content_type,
                &entry.payload,
                &entry.canonical,
                &entry.status.as_str(),
                &entry.error_code,
                &entry.error_message,
                &entry.decision_id,
                &entry.order_id,
                &entry.client,
                &entry.provider,
                &entry.delivery_key,
                &entry.prev_hash,
                &hash,
                &entry.payload_hash,
            ],
            None,
        )?;
        self.head = Some((entry.seq, hash));
        self.moved = true;
        // An entry that follows another is found by that one's clients and orders too.
        let mut linked: Vec<(Option<String>, Option<String>)> = Vec::new();
        match (follows, earlier_here) {
            (Some(_), Some(r)) => linked.extend(r.links),
            (Some(earlier), None) => {
                db.execute(
                    "INSERT INTO log_links (seq, client, order_id) SELECT $1, client, order_id FROM log_links WHERE seq = $2",
                    &[&entry.seq, &earlier],
                )?;
            }
            (None, _) => {}
        }
        let mut links = links;
        links.sort();
        links.dedup();
        linked.extend(
            links.into_iter().filter(|l| l.client.is_some() || l.order_id.is_some()).map(|l| (l.client, l.order_id)),
        );
        for (client, order_id) in &linked {
            db.insert_later(
                1,
                "INSERT INTO log_links (seq, client, order_id) VALUES ($1, $2, $3)",
                &[&entry.seq, client, order_id],
                None,
            )?;
        }
        self.recent.insert(
            entry.seq,
            Followed {
                decision_id: entry.decision_id.clone(),
                order_id: entry.order_id.clone(),
                client: entry.client.clone(),
                provider: entry.provider.clone(),
                links: linked,
            },
        );
        Ok(entry.seq)
    }
}

/// `text` as PostgreSQL's text can hold it: a NUL character (which a vendor's error answer
/// may carry, and SQLite would keep) becomes U+FFFD, the replacement character. Refusing it
/// instead would fail the commit that records a delivery attempt, again at every attempt.
pub(crate) fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

fn storable_entry(e: NewLogEntry) -> NewLogEntry {
    let opt = |t: Option<String>| t.map(storable);
    NewLogEntry {
        system: storable(e.system),
        vendor: storable(e.vendor),
        message_type: storable(e.message_type),
        content_type: storable(e.content_type),
        canonical: opt(e.canonical),
        error_code: opt(e.error_code),
        error_message: opt(e.error_message),
        decision_id: opt(e.decision_id),
        order_id: opt(e.order_id),
        client: opt(e.client),
        provider: opt(e.provider),
        delivery_key: opt(e.delivery_key),
        links: e.links.into_iter().map(|l| LogLink { client: opt(l.client), order_id: opt(l.order_id) }).collect(),
        ..e
    }
}
