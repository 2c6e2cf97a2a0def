//! The journal: every exchange with the vendor's system, in the mock's own SQLite file
//! (`journal.sqlite` in the data folder), apart from the hub's database so that reading it
//! never touches the hub's message log and a vendor can keep it after the mock stops.
//!
//! Three writers fill it. Inbound, the middleware in `inbound` records each request the
//! vendor makes to the hub's API. Outbound, [`Journaled`] wraps the vendor system's
//! transport: we chose wrapping the transport over reading the hub's delivery attempts
//! back from its store because the wrapper sees each attempt as it is made (the exact
//! bytes and headers, the vendor's answer and the time it took, retries and a repeat sent
//! with the same idempotency key included), while the store keeps only a delivery's last
//! state and error. It records and passes everything on unchanged, so the delivery loop
//! behaves as it would against the real vendor. [`JournaledFeed`] does the same for a feed
//! the hub pulls from the vendor (Phoniro's visits): each page asked for is an inbound
//! exchange, as a file the hub fetches from the drop box is.
//!
//! # Off the hot path
//!
//! A request never waits on the journal's disk. [`Journal::record`] gives the exchange its
//! id and time and hands it to one writer thread over a channel; the writer takes what has
//! queued up and commits it in one SQLite transaction (WAL, `synchronous = NORMAL`: a
//! journal is a test aid, and a power cut may lose its last transaction, never corrupt the
//! file). Ids are given under one lock in the order exchanges are recorded, so they
//! increase in the order exchanges happened. Whatever reads the journal flushes first
//! (waits until the writer has committed every id given so far), so a reader sees every
//! exchange recorded before it asked, and [`Journal::recorded`] fires only once the
//! exchanges it announces are readable.
//!
//! The journal can be turned off (`carehub mock --journal off`), only to measure what it
//! costs: then nothing is recorded, and nothing that waits for an exchange can work.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use carehub_core::adapter::{DeliveryError, DeliveryReceipt, Envelope, Feed, Transport};
use carehub_core::mapping::MappingSet;
use carehub_model::Clock;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::exchange::{Direction, Exchange, Problem, Wire};
use crate::mock::MockError;

/// The journal's file: a writer thread that commits exchanges in batches, and a connection
/// for reading (and for the few conformance runs' entries), kept in a mutex.
pub struct Journal {
    conn: Mutex<Connection>,
    clock: Clock,
    /// Woken each time the writer has committed exchanges, for those waiting for one.
    pub recorded: Arc<tokio::sync::Notify>,
    /// The business keys the hub has started delivering to the vendor. An order counts as
    /// sent from the moment its delivery starts, not once the vendor has answered it: a
    /// vendor may well acknowledge an order before its answer to the order's POST is on
    /// the wire, and the journal's outbound row is written only after that answer.
    delivering: Mutex<HashSet<String>>,
    /// The way to the writer, and the next id; `None` when the journal is off.
    queue: Option<Mutex<Queue>>,
    written: Arc<Written>,
}

/// Whether the mock keeps its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum JournalMode {
    /// Every exchange is recorded (what a vendor's runs need).
    #[default]
    On,
    /// Nothing is recorded: only to measure what the journal costs.
    Off,
}

struct Queue {
    to_writer: Sender<Pending>,
    next: i64,
}

/// An exchange on its way to the writer, with its id and time.
struct Pending {
    id: i64,
    at: DateTime<Utc>,
    exchange: Exchange,
}

/// The highest id the writer has committed (or given up on), and a wake-up for flushes.
struct Written {
    upto: Mutex<i64>,
    moved: Condvar,
}

/// The most exchanges in one transaction.
const BATCH: usize = 1024;

/// How long a reader waits for the writer before it reports the journal as stuck.
const FLUSH_WAIT: Duration = Duration::from_secs(30);

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
    /// Opens (or creates) the journal at `path`, recording; its times are read from `clock`.
    pub fn open(path: &Path, clock: Clock) -> Result<Journal, MockError> {
        Journal::open_as(path, clock, JournalMode::On)
    }

    /// Opens (or creates) the journal at `path`; with [`JournalMode::Off`] it records
    /// nothing (its conformance runs' entries are still kept).
    pub fn open_as(path: &Path, clock: Clock, mode: JournalMode) -> Result<Journal, MockError> {
        let journal = |e: rusqlite::Error| MockError::Journal(format!("{}: {e}", path.display()));
        let open = || -> Result<Connection, MockError> {
            let conn = Connection::open(path).map_err(journal)?;
            conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;").map_err(journal)?;
            conn.busy_timeout(Duration::from_secs(10)).map_err(journal)?;
            Ok(conn)
        };
        let conn = open()?;
        conn.execute_batch(SCHEMA).map_err(journal)?;
        let head: i64 =
            conn.query_row("SELECT COALESCE(MAX(id), 0) FROM exchanges", [], |r| r.get(0)).map_err(journal)?;
        let recorded = Arc::new(tokio::sync::Notify::new());
        let written = Arc::new(Written { upto: Mutex::new(head), moved: Condvar::new() });
        let queue = match mode {
            JournalMode::Off => None,
            JournalMode::On => {
                let (to_writer, from_records) = std::sync::mpsc::channel();
                let (writer, written, recorded) = (open()?, written.clone(), recorded.clone());
                std::thread::Builder::new()
                    .name("mock-journal".into())
                    .spawn(move || write_batches(writer, &from_records, &written, &recorded))
                    .map_err(|e| MockError::Journal(format!("cannot start the journal's writer: {e}")))?;
                Some(Mutex::new(Queue { to_writer, next: head + 1 }))
            }
        };
        Ok(Journal { conn: Mutex::new(conn), clock, recorded, delivering: Mutex::new(HashSet::new()), queue, written })
    }

    /// Whether exchanges are recorded.
    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records an exchange (its `id` and `at` are the journal's); its id (0 when the
    /// journal is off). It returns at once: the writer commits it soon after.
    pub fn record(&self, x: &Exchange) -> Result<i64, MockError> {
        self.put(x.clone())
    }

    /// [`record`](Self::record), taking the exchange.
    pub fn put(&self, exchange: Exchange) -> Result<i64, MockError> {
        let Some(queue) = &self.queue else { return Ok(0) };
        let at = self.clock.now();
        let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
        let id = q.next;
        q.to_writer
            .send(Pending { id, at, exchange })
            .map_err(|_| MockError::Journal("the journal's writer has stopped".into()))?;
        q.next += 1;
        Ok(id)
    }

    /// Waits until every exchange recorded so far is committed and readable.
    pub fn flush(&self) -> Result<(), MockError> {
        let Some(queue) = &self.queue else { return Ok(()) };
        let last = queue.lock().unwrap_or_else(PoisonError::into_inner).next - 1;
        let deadline = Instant::now() + FLUSH_WAIT;
        let mut upto = self.written.upto.lock().unwrap_or_else(PoisonError::into_inner);
        while *upto < last {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(MockError::Journal(format!(
                    "the journal's writer has not committed exchange {last} within {} s",
                    FLUSH_WAIT.as_secs()
                )));
            }
            upto = self.written.moved.wait_timeout(upto, left).unwrap_or_else(PoisonError::into_inner).0;
        }
        Ok(())
    }

    /// The exchanges after `after` (exclusive), oldest first, at most `limit`.
    pub fn since(&self, after: i64, limit: usize) -> Result<Vec<Exchange>, MockError> {
        self.flush()?;
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
        self.flush()?;
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
        if self.flush().is_err() {
            return false;
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

    /// The last exchange's id (0 when there is none), committed or on its way.
    pub fn head(&self) -> i64 {
        match &self.queue {
            Some(queue) => queue.lock().unwrap_or_else(PoisonError::into_inner).next - 1,
            None => *self.written.upto.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }
}

/// The writer: takes what has queued up (at most [`BATCH`]), commits it in one transaction,
/// then moves the committed mark and wakes the readers and waiters; until every sender is
/// gone. A batch that cannot be written is reported and passed over, so that no reader
/// waits for it for ever.
fn write_batches(
    mut conn: Connection,
    from_records: &Receiver<Pending>,
    written: &Written,
    recorded: &tokio::sync::Notify,
) {
    while let Ok(first) = from_records.recv() {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match from_records.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let last = batch.last().map_or(0, |p| p.id);
        if let Err(e) = insert(&mut conn, &batch) {
            tracing::warn!(error = %e, exchanges = batch.len(), "journal write failed");
        }
        *written.upto.lock().unwrap_or_else(PoisonError::into_inner) = last;
        written.moved.notify_all();
        recorded.notify_waiters();
    }
}

fn insert(conn: &mut Connection, batch: &[Pending]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO exchanges (id, at, direction, wire, message_type, key, target, headers, body, status, response, millis, problems)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for Pending { id, at, exchange: x } in batch {
            let headers = serde_json::to_string(&x.headers).unwrap_or_else(|_| "[]".into());
            let problems = serde_json::to_string(&x.problems).unwrap_or_else(|_| "[]".into());
            stmt.execute(params![
                id,
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
            ])?;
        }
    }
    tx.commit()
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
        (result, self.journal.put(exchange).ok())
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

/// A feed the hub pulls from the vendor's system (Phoniro's visits), journaled: each page
/// asked for is recorded as an inbound exchange (the page is the vendor's message to the
/// hub, as a file the hub fetches from the drop box is), then passed on unchanged. The
/// exchange's target is `GET` and the URL as asked (with its cursor; a credential goes in a
/// header and is never kept), its body the page as it came, its status 200 for a page taken
/// (any 2xx) or the vendor's refusal, and its answer what the page gives the hub to take:
/// the visits by the ids the hub gives them, and the next cursor. A page the vendor's
/// mappings cannot read carries the hub's code as a problem.
pub struct JournaledFeed {
    inner: Arc<dyn Feed>,
    journal: Arc<Journal>,
    mappings: Arc<MappingSet>,
}

impl JournaledFeed {
    pub fn new(inner: Arc<dyn Feed>, journal: Arc<Journal>, mappings: Arc<MappingSet>) -> JournaledFeed {
        JournaledFeed { inner, journal, mappings }
    }

    fn exchange(&self, cursor: Option<&str>, result: &Result<Vec<u8>, DeliveryError>, millis: u64) -> Exchange {
        let url = self.inner.shown_url(cursor).unwrap_or_else(|| format!("(feed)?cursor={}", cursor.unwrap_or("")));
        let mut x = Exchange {
            id: 0,
            at: DateTime::<Utc>::default(),
            direction: Direction::Inbound,
            wire: Wire::Http,
            message_type: None,
            key: None,
            target: format!("GET {url}"),
            headers: Vec::new(),
            body: Vec::new(),
            status: None,
            response: Vec::new(),
            millis,
            problems: Vec::new(),
        };
        match result {
            Ok(page) => {
                x.status = Some(200);
                x.body.clone_from(page);
                match self.mappings.translate_bytes(page) {
                    Ok(t) => {
                        x.message_type = Some(t.message.message_type().as_str().to_owned());
                        if let carehub_model::Message::Visits(batch) = &t.message {
                            let ids: Vec<&str> =
                                batch.visits.iter().filter_map(|v| v.id.as_ref().map(|i| i.as_str())).collect();
                            if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
                                x.key =
                                    Some(if first == last { (*first).to_owned() } else { format!("{first}..{last}") });
                            }
                            x.response =
                                serde_json::to_vec(&serde_json::json!({"visits": ids, "next_cursor": batch.cursor}))
                                    .unwrap_or_default();
                        }
                    }
                    Err((decoded, e)) => {
                        x.message_type = decoded.map(|d| d.message_type.as_str().to_owned());
                        x.problems.push(Problem {
                            code: e.code.as_str().to_owned(),
                            message: e.reason.clone(),
                            field: crate::exchange::named_field(&e.reason),
                            offset: None,
                        });
                    }
                }
            }
            Err(e) => {
                x.status = e.status;
                x.response.clone_from(&e.body);
                x.problems.push(Problem {
                    code: e.code().as_str().to_owned(),
                    message: e.message.clone(),
                    field: None,
                    offset: None,
                });
            }
        }
        x
    }
}

#[async_trait]
impl Feed for JournaledFeed {
    async fn page(&self, cursor: Option<&str>) -> Result<Vec<u8>, DeliveryError> {
        let started = Instant::now();
        let result = self.inner.page(cursor).await;
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        if self.journal.is_on() {
            if let Err(e) = self.journal.put(self.exchange(cursor, &result, millis)) {
                tracing::warn!(error = %e, "journal write failed");
            }
        }
        result
    }

    fn shown_url(&self, cursor: Option<&str>) -> Option<String> {
        self.inner.shown_url(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> Clock {
        Clock::starting_at(DateTime::parse_from_rfc3339("2026-11-02T08:00:00+01:00").expect("instant").to_utc())
    }

    fn exchange(target: String) -> Exchange {
        Exchange {
            id: 0,
            at: DateTime::<Utc>::default(),
            direction: Direction::Inbound,
            wire: Wire::Http,
            message_type: Some("visit".into()),
            key: None,
            target,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{}".to_vec(),
            status: Some(202),
            response: Vec::new(),
            millis: 1,
            problems: Vec::new(),
        }
    }

    #[test]
    fn exchanges_recorded_at_once_from_many_threads_are_all_read_back_in_the_order_of_their_ids() {
        let dir = tempfile::tempdir().expect("a folder");
        let journal = Arc::new(Journal::open(&dir.path().join("journal.sqlite"), clock()).expect("opens"));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let journal = journal.clone();
                std::thread::spawn(move || {
                    (0..300)
                        .map(|i| journal.put(exchange(format!("POST /t{t}/{i}"))).expect("recorded"))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let given: Vec<Vec<i64>> = threads.into_iter().map(|t| t.join().expect("thread")).collect();
        for ids in &given {
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "each thread's exchanges get increasing ids");
        }
        assert_eq!(journal.head(), 2400);
        // Read at once: the read waits for the writer, so nothing recorded is missing.
        let read = journal.since(0, 10_000).expect("read");
        assert_eq!(read.len(), 2400);
        assert!(read.iter().zip(1..).all(|(x, id)| x.id == id), "ids 1..=2400, in order");
        for (t, ids) in given.iter().enumerate() {
            let targets: Vec<&str> = read.iter().filter(|x| ids.contains(&x.id)).map(|x| x.target.as_str()).collect();
            let expected: Vec<String> = (0..300).map(|i| format!("POST /t{t}/{i}")).collect();
            assert_eq!(targets, expected, "thread {t}'s exchanges under the ids it was given, in its order");
        }
        assert_eq!(journal.get(1234).expect("read").map(|x| x.id), Some(1234));
    }

    #[tokio::test]
    async fn the_recorded_signal_comes_once_the_exchange_is_in_the_file() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("journal.sqlite");
        let journal = Journal::open(&path, clock()).expect("opens");
        let other = Connection::open(&path).expect("a second reader");
        for n in 1..=20 {
            let woken = journal.recorded.notified();
            let id = journal.put(exchange(format!("POST /{n}"))).expect("recorded");
            tokio::time::timeout(Duration::from_secs(10), woken).await.expect("woken");
            // Read past the journal (no flush): the row is committed by the time of the signal.
            let count: i64 = other
                .query_row("SELECT COUNT(*) FROM exchanges WHERE id = ?1", params![id], |r| r.get(0))
                .expect("read");
            assert_eq!(count, 1, "exchange {id} is readable when the signal comes");
        }
    }

    #[test]
    fn ids_go_on_from_the_last_one_kept_when_the_journal_is_opened_again() {
        let dir = tempfile::tempdir().expect("a folder");
        let path = dir.path().join("journal.sqlite");
        {
            let journal = Journal::open(&path, clock()).expect("opens");
            for n in 0..3 {
                journal.put(exchange(format!("POST /{n}"))).expect("recorded");
            }
            journal.flush().expect("flushed");
        }
        let journal = Journal::open(&path, clock()).expect("opens again");
        assert_eq!(journal.head(), 3);
        assert_eq!(journal.put(exchange("POST /again".into())).expect("recorded"), 4);
        let read = journal.since(2, 10).expect("read");
        assert_eq!(read.iter().map(|x| x.target.as_str()).collect::<Vec<_>>(), ["POST /2", "POST /again"]);
    }

    #[test]
    fn a_journal_turned_off_records_nothing() {
        let dir = tempfile::tempdir().expect("a folder");
        let journal = Journal::open_as(&dir.path().join("journal.sqlite"), clock(), JournalMode::Off).expect("opens");
        assert!(!journal.is_on());
        assert_eq!(journal.put(exchange("POST /x".into())).expect("taken"), 0);
        assert!(journal.since(0, 10).expect("read").is_empty());
        assert_eq!(journal.head(), 0);
    }

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
