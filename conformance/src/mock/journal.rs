//! The journal: every exchange with the vendor's system, in the mock's own SQLite file
//! (`journal.sqlite` in the data folder), apart from the hub's database so that reading it
//! never touches the hub's message log and a vendor can keep it after the mock stops.
//!
//! Two writers fill it. Inbound, the middleware in `inbound` records each request the
//! vendor makes to the hub's API. Outbound, [`Journaled`] wraps the vendor system's
//! transport: we chose wrapping the transport over reading the hub's delivery attempts
//! back from its store because the wrapper sees each attempt as it is made (the exact
//! bytes and headers, the vendor's answer and the time it took, retries and a repeat sent
//! with the same idempotency key included), while the store keeps only a delivery's last
//! state and error. It records and passes everything on unchanged, so the delivery loop
//! behaves as it would against the real vendor.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use carehub_core::adapter::{DeliveryError, DeliveryReceipt, Envelope, Transport};
use carehub_model::Clock;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::exchange::{Direction, Exchange, Problem, Wire};
use crate::mock::MockError;

/// The journal's file, kept in a mutex: the mock's writes are small and quick.
pub struct Journal {
    conn: Mutex<Connection>,
    clock: Clock,
    /// Woken at each record, for those waiting for an exchange.
    pub recorded: tokio::sync::Notify,
    /// The business keys the hub has started delivering to the vendor. An order counts as
    /// sent from the moment its delivery starts, not once the vendor has answered it: a
    /// vendor may well acknowledge an order before its answer to the order's POST is on
    /// the wire, and the journal's outbound row is written only after that answer.
    delivering: Mutex<HashSet<String>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS exchanges (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    direction TEXT NOT NULL,
    wire TEXT NOT NULL,
    message_type TEXT,
    key TEXT,
    target TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    status INTEGER,
    response BLOB NOT NULL,
    millis INTEGER NOT NULL,
    problems TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS exchanges_by_key ON exchanges (key, direction);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    vendor TEXT NOT NULL,
    passed INTEGER NOT NULL,
    total INTEGER NOT NULL,
    score REAL NOT NULL,
    coverage REAL NOT NULL,
    cases TEXT NOT NULL,
    sha256 TEXT NOT NULL
);
";

/// A conformance run the mock played, as its journal keeps it: which vendor, how it
/// scored, which cases ran, and the SHA-256 of its JSON report, at the mock's time. A
/// vendor shows a municipality this entry beside the report, and anyone can hash the
/// report again and compare.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportEntry {
    /// The journal's sequence number of reports (0 before it is recorded).
    pub id: i64,
    /// On the mock's clock (which the run may have moved).
    pub at: DateTime<Utc>,
    pub vendor: String,
    pub passed: usize,
    pub total: usize,
    /// The share of cases passed, 0 to 1.
    pub score: f64,
    /// The share of the profile's messages and fields exercised, 0 to 1.
    pub coverage: f64,
    /// The ids of the cases run, in order.
    pub cases: Vec<String>,
    /// The SHA-256 of the JSON report's bytes, lowercase hex.
    pub sha256: String,
}

fn word<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn parse_word<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

impl Journal {
    /// Opens (or creates) the journal at `path`; its times are read from `clock`.
    pub fn open(path: &Path, clock: Clock) -> Result<Journal, MockError> {
        let journal = |e: rusqlite::Error| MockError::Journal(format!("{}: {e}", path.display()));
        let conn = Connection::open(path).map_err(journal)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").map_err(journal)?;
        conn.execute_batch(SCHEMA).map_err(journal)?;
        Ok(Journal {
            conn: Mutex::new(conn),
            clock,
            recorded: tokio::sync::Notify::new(),
            delivering: Mutex::new(HashSet::new()),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an exchange (its `id` and `at` are the journal's); its id.
    pub fn record(&self, x: &Exchange) -> Result<i64, MockError> {
        let at = self.clock.now();
        let headers = serde_json::to_string(&x.headers).unwrap_or_else(|_| "[]".into());
        let problems = serde_json::to_string(&x.problems).unwrap_or_else(|_| "[]".into());
        let id = {
            let conn = self.conn();
            conn.execute(
                "INSERT INTO exchanges (at, direction, wire, message_type, key, target, headers, body, status, response, millis, problems)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    at.to_rfc3339(),
                    word(&x.direction),
                    word(&x.wire),
                    x.message_type,
                    x.key,
                    x.target,
                    headers,
                    x.body,
                    x.status,
                    x.response,
                    i64::try_from(x.millis).unwrap_or(i64::MAX),
                    problems
                ],
            )
            .map_err(|e| MockError::Journal(e.to_string()))?;
            conn.last_insert_rowid()
        };
        self.recorded.notify_waiters();
        Ok(id)
    }

    /// The exchanges after `after` (exclusive), oldest first, at most `limit`.
    pub fn since(&self, after: i64, limit: usize) -> Result<Vec<Exchange>, MockError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, at, direction, wire, message_type, key, target, headers, body, status, response, millis, problems
                 FROM exchanges WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(|e| MockError::Journal(e.to_string()))?;
        let rows = stmt
            .query_map(params![after, i64::try_from(limit).unwrap_or(i64::MAX)], row)
            .map_err(|e| MockError::Journal(e.to_string()))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| MockError::Journal(e.to_string()))
    }

    /// One exchange.
    pub fn get(&self, id: i64) -> Result<Option<Exchange>, MockError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT id, at, direction, wire, message_type, key, target, headers, body, status, response, millis, problems
             FROM exchanges WHERE id = ?1",
            params![id],
            row,
        )
        .optional()
        .map_err(|e| MockError::Journal(e.to_string()))
    }

    /// Notes that the hub has started delivering something about `key` to the vendor.
    pub fn delivering(&self, key: &str) {
        self.delivering.lock().unwrap_or_else(PoisonError::into_inner).insert(key.to_owned());
    }

    /// Whether anything about `key` (an order) was delivered to the vendor, or tried, or
    /// is being delivered now.
    pub fn sent(&self, key: &str) -> bool {
        if self.delivering.lock().unwrap_or_else(PoisonError::into_inner).contains(key) {
            return true;
        }
        self.conn()
            .query_row(
                "SELECT 1 FROM exchanges WHERE key = ?1 AND direction = 'outbound' LIMIT 1",
                params![key],
                |_| Ok(()),
            )
            .optional()
            .ok()
            .flatten()
            .is_some()
    }

    /// Keeps a conformance run's entry (its `id` and `at` are the journal's); the entry.
    pub fn record_report(&self, entry: &ReportEntry) -> Result<ReportEntry, MockError> {
        let at = self.clock.now();
        let cases = serde_json::to_string(&entry.cases).unwrap_or_else(|_| "[]".into());
        let conn = self.conn();
        conn.execute(
            "INSERT INTO reports (at, vendor, passed, total, score, coverage, cases, sha256)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                at.to_rfc3339(),
                entry.vendor,
                i64::try_from(entry.passed).unwrap_or(i64::MAX),
                i64::try_from(entry.total).unwrap_or(i64::MAX),
                entry.score,
                entry.coverage,
                cases,
                entry.sha256
            ],
        )
        .map_err(|e| MockError::Journal(e.to_string()))?;
        Ok(ReportEntry { id: conn.last_insert_rowid(), at, ..entry.clone() })
    }

    /// The conformance runs kept, oldest first.
    pub fn reports(&self) -> Result<Vec<ReportEntry>, MockError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, at, vendor, passed, total, score, coverage, cases, sha256 FROM reports ORDER BY id",
            )
            .map_err(|e| MockError::Journal(e.to_string()))?;
        let rows = stmt
            .query_map([], |r| {
                let at: String = r.get(1)?;
                let cases: String = r.get(7)?;
                let passed: i64 = r.get(3)?;
                let total: i64 = r.get(4)?;
                Ok(ReportEntry {
                    id: r.get(0)?,
                    at: DateTime::parse_from_rfc3339(&at).map(|t| t.with_timezone(&Utc)).unwrap_or_default(),
                    vendor: r.get(2)?,
                    passed: usize::try_from(passed).unwrap_or(0),
                    total: usize::try_from(total).unwrap_or(0),
                    score: r.get(5)?,
                    coverage: r.get(6)?,
                    cases: serde_json::from_str(&cases).unwrap_or_default(),
                    sha256: r.get(8)?,
                })
            })
            .map_err(|e| MockError::Journal(e.to_string()))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| MockError::Journal(e.to_string()))
    }

    /// The last exchange's id (0 when there is none).
    pub fn head(&self) -> i64 {
        self.conn().query_row("SELECT COALESCE(MAX(id), 0) FROM exchanges", [], |r| r.get(0)).unwrap_or(0)
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Exchange> {
    let at: String = r.get(1)?;
    let direction: String = r.get(2)?;
    let wire: String = r.get(3)?;
    let headers: String = r.get(7)?;
    let problems: String = r.get(12)?;
    let millis: i64 = r.get(11)?;
    Ok(Exchange {
        id: r.get(0)?,
        at: DateTime::parse_from_rfc3339(&at).map(|t| t.with_timezone(&Utc)).unwrap_or_default(),
        direction: parse_word(&direction).unwrap_or(Direction::Inbound),
        wire: parse_word(&wire).unwrap_or(Wire::Http),
        message_type: r.get(4)?,
        key: r.get(5)?,
        target: r.get(6)?,
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: r.get(8)?,
        status: r.get(9)?,
        response: r.get(10)?,
        millis: u64::try_from(millis).unwrap_or(0),
        problems: serde_json::from_str(&problems).unwrap_or_default(),
    })
}

/// An outbound message as delivered, kept so that it can be delivered again with the same
/// idempotency key (`SendCommand::twice`).
#[derive(Debug, Clone)]
struct Sent {
    message_type: String,
    content_type: String,
    endpoint: Option<String>,
    body: Vec<u8>,
    action: Option<String>,
}

/// The vendor system's transport, journaled: every attempt recorded as an outbound
/// [`Exchange`], then passed on unchanged.
pub struct Journaled {
    inner: Arc<dyn Transport>,
    journal: Arc<Journal>,
    wire: Wire,
    sent: Mutex<HashMap<String, Sent>>,
}

impl Journaled {
    pub fn new(inner: Arc<dyn Transport>, journal: Arc<Journal>, wire: Wire) -> Journaled {
        Journaled { inner, journal, wire, sent: Mutex::new(HashMap::new()) }
    }

    /// Delivers the message last delivered with `idempotency_key` once more, as the hub's
    /// delivery loop would on a retry; the journal id of the attempt.
    pub async fn deliver_again(&self, idempotency_key: &str) -> Result<i64, MockError> {
        let sent = self.sent.lock().unwrap_or_else(PoisonError::into_inner).get(idempotency_key).cloned();
        let Some(s) = sent else {
            return Err(MockError::Send(format!("nothing was delivered with the key {idempotency_key}")));
        };
        let envelope = Envelope {
            message_type: &s.message_type,
            content_type: &s.content_type,
            endpoint: s.endpoint.as_deref(),
            body: &s.body,
            idempotency_key,
            action: s.action.as_deref(),
        };
        let (_, id) = self.attempt(&envelope).await;
        id.ok_or_else(|| MockError::Journal("the repeat could not be journaled".into()))
    }

    async fn attempt(&self, envelope: &Envelope<'_>) -> (Result<DeliveryReceipt, DeliveryError>, Option<i64>) {
        let started = Instant::now();
        let result = self.inner.deliver(envelope).await;
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut headers = vec![
            ("content-type".to_owned(), envelope.content_type.to_owned()),
            ("idempotency-key".to_owned(), envelope.idempotency_key.to_owned()),
        ];
        if let Some(action) = envelope.action {
            headers.push(("soapaction".to_owned(), action.to_owned()));
        }
        let (status, response, problems) = match &result {
            Ok(r) => (r.status, r.body.clone(), Vec::new()),
            Err(e) => (
                e.status,
                e.body.clone(),
                vec![Problem {
                    code: e.code().as_str().to_owned(),
                    message: e.message.clone(),
                    field: None,
                    offset: None,
                }],
            ),
        };
        let exchange = Exchange {
            id: 0,
            at: DateTime::<Utc>::default(),
            direction: Direction::Outbound,
            wire: self.wire,
            message_type: Some(envelope.message_type.to_owned()),
            key: Some(key_of(envelope.idempotency_key)),
            target: format!("POST {}", envelope.endpoint.unwrap_or("")),
            headers,
            body: envelope.body.to_vec(),
            status,
            response,
            millis,
            problems,
        };
        let journal = self.journal.clone();
        let id = tokio::task::spawn_blocking(move || journal.record(&exchange)).await.ok().and_then(Result::ok);
        (result, id)
    }
}

/// The business key in an idempotency key: the order id (`O-...`) of `O-...:order`; the
/// visit's id of `<visit id>:visit`; the range `<first>..<last>` of a list of visits
/// (`<first>..<last>:visits`); the report's id of `deviation:<id>` and
/// `need_change:<id>`; the invoice's id of `<provider>:<invoice>:verification:...`; or the
/// key's first part.
pub fn key_of(idempotency_key: &str) -> String {
    if let Some(visit) = idempotency_key.strip_suffix(":visit") {
        return visit.to_owned();
    }
    if let Some(range) = idempotency_key.strip_suffix(":visits") {
        return range.to_owned();
    }
    for kind in ["deviation:", "need_change:"] {
        if let Some(report) = idempotency_key.strip_prefix(kind) {
            return report.to_owned();
        }
    }
    if let Some((head, _)) = idempotency_key.split_once(":verification:") {
        return head.split_once(':').map_or(head, |(_, invoice)| invoice).to_owned();
    }
    let parts: Vec<&str> = idempotency_key.split(':').collect();
    parts.iter().find(|p| p.starts_with("O-")).or(parts.first()).map(|p| (*p).to_owned()).unwrap_or_default()
}

#[async_trait]
impl Transport for Journaled {
    async fn deliver(&self, envelope: &Envelope<'_>) -> Result<DeliveryReceipt, DeliveryError> {
        self.journal.delivering(&key_of(envelope.idempotency_key));
        self.sent.lock().unwrap_or_else(PoisonError::into_inner).insert(
            envelope.idempotency_key.to_owned(),
            Sent {
                message_type: envelope.message_type.to_owned(),
                content_type: envelope.content_type.to_owned(),
                endpoint: envelope.endpoint.map(str::to_owned),
                body: envelope.body.to_vec(),
                action: envelope.action.map(str::to_owned),
            },
        );
        self.attempt(envelope).await.0
    }

    async fn check(&self) -> Result<String, DeliveryError> {
        self.inner.check().await
    }
}

#[cfg(test)]
mod tests {
    use super::key_of;

    #[test]
    fn the_business_key_is_the_order_visit_report_or_invoice_named_in_the_idempotency_key() {
        assert_eq!(key_of("O-2FD54EB2443AFC68:order_ack"), "O-2FD54EB2443AFC68");
        assert_eq!(key_of("mock-provider:V-7:visit"), "mock-provider:V-7");
        assert_eq!(key_of("mock-provider:V-7..phoniro:V-9:visits"), "mock-provider:V-7..phoniro:V-9");
        assert_eq!(key_of("deviation:mock-provider:AV-3"), "mock-provider:AV-3");
        assert_eq!(key_of("need_change:mock-provider:BEV-4"), "mock-provider:BEV-4");
        assert_eq!(key_of("5599000014:INV-1:verification:20261102T070000:combine"), "INV-1");
        assert_eq!(key_of("something"), "something");
    }
}
