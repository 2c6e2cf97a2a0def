//! The access log (SPEC §9): every read of personal data — who, in which role, when, what
//! they asked and which clients and log entries they were shown — hash-chained like the
//! message log, so that "who has looked at this client" has an answer nobody can quietly
//! edit.
//!
//! An entry's hash is the SHA-256 of these fields, each as its length (8 bytes, little
//! endian) followed by its bytes — the message log's recipe ([`super::entry_hash`]):
//! `prev_hash` (hex text), `seq` (decimal), `at` ([`super::time::ts`]), `subject`, `role`,
//! `query` (its canonical JSON, [`AccessQuery::canonical`]), the number of clients
//! (decimal) then each client, the number of entries (decimal) then each entry's sequence
//! number (decimal). The first entry's `prev_hash` is [`super::GENESIS`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What was asked: the endpoint (or command) and its filters, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessQuery {
    /// `GET /v1/messages`, `GET /v1/messages/{id}`, `audit export`...
    pub endpoint: String,
    /// The filters by name; only those given.
    pub filters: BTreeMap<String, String>,
}

impl AccessQuery {
    pub fn new(endpoint: impl Into<String>) -> AccessQuery {
        AccessQuery { endpoint: endpoint.into(), filters: BTreeMap::new() }
    }

    /// Adds a filter when it is set.
    pub fn with(mut self, name: &str, value: Option<impl ToString>) -> AccessQuery {
        if let Some(v) = value {
            self.filters.insert(name.to_owned(), v.to_string());
        }
        self
    }

    /// The hashed and stored form: compact JSON, `endpoint` then `filters` with its keys
    /// sorted (`{"endpoint":"GET /v1/messages","filters":{"client":"19..."}}`).
    pub fn canonical(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A read to record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewAccess {
    pub subject: String,
    pub role: String,
    pub query: AccessQuery,
    /// The clients (personal identity numbers) the answer showed.
    pub clients: Vec<String>,
    /// The message-log entries the answer showed.
    pub entries: Vec<i64>,
}

impl NewAccess {
    /// The clients and entries sorted and without repeats, as they are stored and hashed.
    pub fn normalized(mut self) -> NewAccess {
        self.clients.sort();
        self.clients.dedup();
        self.entries.sort_unstable();
        self.entries.dedup();
        self
    }

    /// The entry this read becomes at `seq`, after the entry hashed `prev_hash`, hashed: the
    /// one recipe every backend appends by.
    pub fn chained(self, seq: i64, prev_hash: String, at: chrono::DateTime<chrono::Utc>) -> AccessEntry {
        let a = self.normalized();
        let mut e = AccessEntry {
            seq,
            at,
            subject: a.subject,
            role: a.role,
            query: a.query,
            clients: a.clients,
            entries: a.entries,
            prev_hash,
            hash: String::new(),
        };
        e.hash = access_hash(&e.prev_hash, &e);
        e
    }
}

/// An access-log entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessEntry {
    pub seq: i64,
    #[serde(serialize_with = "super::time::serialize")]
    pub at: chrono::DateTime<chrono::Utc>,
    pub subject: String,
    pub role: String,
    pub query: AccessQuery,
    pub clients: Vec<String>,
    pub entries: Vec<i64>,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of an access-log entry whose predecessor hashed to `prev_hash`.
pub fn access_hash(prev_hash: &str, e: &AccessEntry) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(prev_hash.as_bytes());
    field(e.seq.to_string().as_bytes());
    field(super::time::ts(e.at).as_bytes());
    field(e.subject.as_bytes());
    field(e.role.as_bytes());
    field(e.query.canonical().as_bytes());
    field(e.clients.len().to_string().as_bytes());
    for c in &e.clients {
        field(c.as_bytes());
    }
    field(e.entries.len().to_string().as_bytes());
    for s in &e.entries {
        field(s.to_string().as_bytes());
    }
    hex::encode(h.finalize())
}

/// Walks access-log entries in order and checks links and hashes, like
/// [`super::ChainVerifier`] for the message log.
#[derive(Default)]
pub struct AccessVerifier(super::ChainWalk);

impl AccessVerifier {
    /// Checks the next entry; false once a mismatch has been found.
    pub fn push(&mut self, e: &AccessEntry) -> bool {
        self.0.step(e.seq, &e.prev_hash, &e.hash, |prev| access_hash(prev, e), || None)
    }

    pub fn finish(self) -> super::ChainReport {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: i64, prev: &str) -> AccessEntry {
        let mut e = AccessEntry {
            seq,
            at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("instant"),
            subject: "anna".into(),
            role: "auditor".into(),
            query: AccessQuery::new("GET /v1/messages").with("client", Some("193601016987")),
            clients: vec!["193601016987".into()],
            entries: vec![1, 2],
            prev_hash: prev.into(),
            hash: String::new(),
        };
        e.hash = access_hash(prev, &e);
        e
    }

    #[test]
    fn the_chain_verifies_and_a_changed_client_or_a_removed_entry_is_found() {
        let a = entry(1, crate::log::GENESIS);
        let b = entry(2, &a.hash);
        let c = entry(3, &b.hash);
        let mut v = AccessVerifier::default();
        assert!(v.push(&a) && v.push(&b) && v.push(&c));
        assert_eq!(v.finish().head, c.hash);

        let mut changed = b.clone();
        changed.clients = vec!["193601016995".into()];
        let mut v = AccessVerifier::default();
        assert!(v.push(&a));
        assert!(!v.push(&changed));
        assert_eq!(v.finish().first_bad.map(|(s, _)| s), Some(2));

        let mut v = AccessVerifier::default();
        assert!(v.push(&a));
        assert!(!v.push(&c), "entry 2 removed");
    }

    #[test]
    fn the_query_has_one_canonical_form() {
        let q = AccessQuery::new("GET /v1/messages")
            .with("until", Some("b"))
            .with("client", Some("a"))
            .with("x", None::<&str>);
        assert_eq!(q.canonical(), r#"{"endpoint":"GET /v1/messages","filters":{"client":"a","until":"b"}}"#);
    }
}
