//! The message log's hash chain.
//!
//! Every entry's hash is the SHA-256 of the previous entry's hash followed by each of the
//! entry's fields, each prefixed by its length. Changing any byte of any field, deleting an
//! entry or reordering two changes a hash that every later entry depends on, so
//! `store::verify_chain` finds the first entry that no longer matches. The chain does not make
//! the log unforgeable by someone who can rewrite it wholesale; an auditor who keeps the
//! head hash from an earlier verification (printed by `carehub audit verify`) can tell.
//!
//! The head hash alone does not let an auditor check one entry without the whole log:
//! [`merkle`] builds an RFC 9162 Merkle tree over the entries' chain hashes, [`checkpoint`]
//! signs its root, and [`bundle`] packs entries with their proofs for offline checking.
//!
//! This folder is the logs' own. It imports nothing of the store: the store keeps
//! [`LogEntry`]s and calls [`entry_hash`], not the reverse.
//!
//! # Layout
//! - this module: [`LogEntry`], [`entry_hash`] and the [`ChainVerifier`].
//! - [`time`]: the one text form of an instant that is hashed (and stored).
//! - [`access`]: the access log's entries and their hash chain.
//! - [`merkle`]: the Merkle tree, its proofs and their verification (pure).
//! - [`checkpoint`]: signed checkpoints (C2SP signed-note text, Ed25519).
//! - [`bundle`]: the export bundle and its offline verification.

pub mod access;
pub mod bundle;
pub mod checkpoint;
pub mod merkle;
pub mod time;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// An entry of the message log as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    pub seq: i64,
    /// When it was appended; hashed in the [`time::ts`] form, and serialized in it.
    #[serde(serialize_with = "time::serialize")]
    pub at: chrono::DateTime<chrono::Utc>,
    pub system: String,
    pub vendor: String,
    pub direction: String,
    pub message_type: String,
    pub content_type: String,
    #[serde(skip)]
    pub payload: Vec<u8>,
    pub canonical: Option<String>,
    pub status: carehub_model::LogStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub decision_id: Option<String>,
    pub order_id: Option<String>,
    pub client: Option<String>,
    pub provider: Option<String>,
    pub delivery_key: Option<String>,
    pub prev_hash: String,
    pub hash: String,
    /// The payload's SHA-256 (hex) for an entry hashed over it rather than over the payload
    /// itself: every entry appended since schema version 11. `None`: an older entry.
    pub payload_hash: Option<String>,
    /// Retention removed the payload (`payload` is empty); its hash stays, so the entry's
    /// hash, the chain and the Merkle tree still verify.
    pub payload_removed: bool,
}

/// The `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The payload's SHA-256, hex: an entry's [`LogEntry::payload_hash`].
pub fn payload_hash(payload: &[u8]) -> String {
    hex::encode(Sha256::digest(payload))
}

/// The hash of an entry whose predecessor hashed to `prev_hash`. An entry with a
/// [`LogEntry::payload_hash`] is hashed over that instead of its payload (the field
/// `sha256` then the hash's 32 bytes in place of the payload), so that retention can remove
/// the payload and keep the hash (docs/audit-log.md §1).
pub fn entry_hash(prev_hash: &str, e: &LogEntry) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(e.seq.to_string().as_bytes());
    field(time::ts(e.at).as_bytes());
    field(e.system.as_bytes());
    field(e.vendor.as_bytes());
    field(e.direction.as_bytes());
    field(e.message_type.as_bytes());
    field(e.content_type.as_bytes());
    match &e.payload_hash {
        Some(h) => {
            field(b"sha256");
            field(&hex::decode(h).unwrap_or_else(|_| h.as_bytes().to_vec()));
        }
        None => field(&e.payload),
    }
    for opt in [
        &e.canonical,
        &Some(e.status.as_str().to_owned()),
        &e.error_code,
        &e.error_message,
        &e.decision_id,
        &e.order_id,
        &e.client,
        &e.provider,
        &e.delivery_key,
    ] {
        match opt {
            Some(s) => {
                field(b"1");
                field(s.as_bytes());
            }
            None => field(b"0"),
        }
    }
    hex::encode(h.finalize())
}

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Entries checked.
    pub entries: u64,
    /// The last entry's hash when the chain is intact.
    pub head: String,
    /// The first entry that does not match, and why.
    pub first_bad: Option<(i64, String)>,
}

/// The walk every hash chain of the hub shares (the message log's, the access log's): each
/// entry names the previous entry's hash and carries its own, over its content and that
/// link. It stops at the first entry that breaks the chain and says why.
pub(crate) struct ChainWalk {
    prev: String,
    report: ChainReport,
}

impl Default for ChainWalk {
    fn default() -> Self {
        ChainWalk {
            prev: GENESIS.to_owned(),
            report: ChainReport { entries: 0, head: GENESIS.to_owned(), first_bad: None },
        }
    }
}

impl ChainWalk {
    /// Checks the next entry: its link, then its hash (`hash_of` the previous hash gives what
    /// its content hashes to), then `more` (a further check of the entry, a reason when it
    /// fails). False once a mismatch has been found.
    pub(crate) fn step(
        &mut self,
        seq: i64,
        prev_hash: &str,
        hash: &str,
        hash_of: impl FnOnce(&str) -> String,
        more: impl FnOnce() -> Option<String>,
    ) -> bool {
        if self.report.first_bad.is_some() {
            return false;
        }
        self.report.entries += 1;
        if prev_hash != self.prev {
            self.report.first_bad = Some((
                seq,
                "its prev_hash does not match the previous entry's hash (an entry before it was removed or changed)"
                    .into(),
            ));
            return false;
        }
        let want = hash_of(&self.prev);
        if want != hash {
            self.report.first_bad = Some((seq, "its content does not match its hash".into()));
            return false;
        }
        if let Some(why) = more() {
            self.report.first_bad = Some((seq, why));
            return false;
        }
        self.prev = want;
        self.report.head = self.prev.clone();
        true
    }

    pub(crate) fn finish(self) -> ChainReport {
        self.report
    }
}

/// Walks the message log's entries in sequence order and checks links, hashes and payloads.
#[derive(Default)]
pub struct ChainVerifier(ChainWalk);

impl ChainVerifier {
    /// Checks the next entry; returns false once a mismatch has been found.
    pub fn push(&mut self, e: &LogEntry) -> bool {
        self.0.step(
            e.seq,
            &e.prev_hash,
            &e.hash,
            |prev| entry_hash(prev, e),
            || {
                (!e.payload_removed && e.payload_hash.as_ref().is_some_and(|h| *h != payload_hash(&e.payload)))
                    .then(|| "its payload does not match its payload hash".to_owned())
            },
        )
    }

    pub fn finish(self) -> ChainReport {
        self.0.finish()
    }
}
