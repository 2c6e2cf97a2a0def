//! The store: the message log, decisions, orders, the outbox, visits and invoices, behind
//! one trait per concern and [`Store`], all of them.
//!
//! The pipeline never talks SQL. It describes what a message changes as a list of [`Op`]s
//! and hands them to [`CommitStore::commit`], which applies them atomically and durably: the
//! inbound log entry, the decision, the order, the outbound log entry and the outbox row of
//! one decision land together or not at all, and the sender is acknowledged only after the
//! commit returned. The PostgreSQL backend (crate `carehub-postgres`, for several hub
//! nodes on one database) implements the same traits; nothing above this module changes.
//!
//! [`sqlite::SqliteStore`] is the embedded backend: WAL, `synchronous=FULL`, one writer
//! thread that group-commits whatever requests have queued up while the previous commit
//! was syncing, so many concurrent senders share one fsync.
//!
//! # The contract suite
//!
//! [`contract`] holds every behaviour a flow relies on (atomic commits, one hash chain,
//! idempotency keys, claims and leases, visit copies and overlaps, feed cursors, invoice
//! keys) as tests written against this trait alone, not against SQLite. A backend is
//! correct when the whole suite passes on it: `tests/store_contract.rs` runs it on
//! [`sqlite::SqliteStore`], and `hub/postgres/tests/store_contract.rs` runs the same suite
//! unchanged on PostgreSQL ([`store_contract_suite!`](crate::store_contract_suite)), so the
//! two cannot drift apart on what a flow may assume.
//!
//! # The store holds data; core holds the rules
//!
//! Where a commit's effect depends on rules, the rules run in core and the backend answers
//! through a narrow port, inside the commit's transaction, so every backend applies them
//! the same way:
//! - [`Op::IngestVisits`]: the backend runs
//!   [`rules::visits::ingest`](crate::rules::visits::ingest) over its implementation of
//!   [`VisitLedger`](crate::rules::visits::VisitLedger) (look-ups, inserts, the cursor, the
//!   log entry's canonical form). The port is synchronous: SQLite's writer thread calls it
//!   in its transaction, and a server database's backend runs it in a blocking task that
//!   holds its transaction, so no `.await` falls between a look-up and the insert that
//!   depends on it.
//! - INV005 (a line verified once): [`Op::ExpectInvoiceGeneration`], checked inside the
//!   transaction, not a lock in the hub.
//!
//! # Layout
//! Imports point one way: the store imports [`crate::log`] (the entry it keeps, the hashed
//! time form) and the rules' value types it records; nothing under `store/` imports a flow
//! or a report. The rows a report reads ([`FollowUpOrder`], [`FollowUpVisit`]) are defined
//! here, beside the trait that returns them, and the report imports them from here.
//! - this module: the traits by concern ([`CommitStore`], [`LogStore`], [`OrderStore`],
//!   [`OutboxStore`], [`VisitStore`], [`InvoiceStore`], [`ReportStore`]) and [`Store`], all
//!   of them at once; the [`Op`]s a commit carries and the records it returns;
//!   [`StoreError`].
//! - `followup`: the follow-up report's rows.
//! - [`contract`]: the contract suite every backend passes.
//! - [`sqlite`]: the embedded backend, a folder of its own, and the only place SQL is
//!   written: its bulk loader ([`sqlite::bulk`]) seeds the benchmarks without going around it.

#[doc(hidden)]
pub mod contract;
mod followup;
pub mod sqlite;

use async_trait::async_trait;
pub use carehub_model::{DeliveryState, LogStatus, OrderStatus};
use carehub_model::{Order, OrderAck, PlanNotice};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

pub use self::followup::{FollowUpOrder, FollowUpReportCount, FollowUpVisit};
use crate::log::access::AccessVerifier;
pub use crate::log::access::{AccessEntry, AccessQuery, NewAccess};
pub use crate::log::time::{parse_store_ts, ts};
use crate::log::ChainVerifier;
pub use crate::log::{ChainReport, LogEntry};
pub use crate::rules::visits::{IncomingVisit, VisitResult};

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (IO, corruption, a constraint the caller did not expect, a row
    /// that does not read back): `context` says what the store was doing, `source` is the
    /// backend's own error, kept so a caller can walk down to it (`{:#}` in the binary's
    /// logs, `Error::source`, a downcast to the driver's error). The message repeats the
    /// source's, because the hub logs store errors as one field (`error = %e`), not as a
    /// chain. Build it with [`StoreError::backend`].
    #[error("store backend: {context}: {source}")]
    Backend {
        context: String,
        #[source]
        source: BackendError,
    },
    /// A unique key already exists (a decision id, an idempotency key).
    #[error("already stored: {0}")]
    Conflict(String),
    /// An op names a row that does not exist.
    #[error("not found: {0}")]
    Missing(String),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// An op refers to a log entry that does not resolve: an index that is not an
    /// `AppendLog` earlier in the same commit, or a sequence number not in the log. The
    /// whole commit fails with nothing written; it is the caller's mistake, not the store's.
    #[error("op {op} refers to {reference}, which is not a log entry it may refer to")]
    Unresolved { op: usize, reference: LogRef },
    /// An [`Op::ExpectInvoiceGeneration`] found that the provider's invoices changed since
    /// the caller read them: the whole commit failed with nothing written. The caller reads
    /// again and retries; what it decided from the old reads may no longer hold.
    #[error("stale: {0}")]
    Stale(String),
}

/// The log entry a record belongs to, said by the op that writes the record rather than
/// taken from wherever the chain happens to stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRef {
    /// The entry appended by the op at this index of the same commit (an
    /// [`Op::AppendLog`] before the op that refers to it): the store resolves it to the
    /// [`OpResult::Logged`] sequence number that op produced.
    Op(usize),
    /// An entry already in the log.
    Seq(i64),
}

impl std::fmt::Display for LogRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogRef::Op(i) => write!(f, "the entry of op {i}"),
            LogRef::Seq(seq) => write!(f, "log entry {seq}"),
        }
    }
}

/// A backend's own error, as [`StoreError::Backend`] keeps it: a driver error, or a
/// message when there is none underneath (`String` and `&str` convert).
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl StoreError {
    /// A backend failure: what the store was doing, and the error underneath.
    pub fn backend(context: impl Into<String>, source: impl Into<BackendError>) -> StoreError {
        StoreError::Backend { context: context.into(), source: source.into() }
    }
}

impl From<crate::rules::visits::IngestError> for StoreError {
    fn from(e: crate::rules::visits::IngestError) -> Self {
        StoreError::backend("ingesting visits", e)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::backend("sqlite", e)
    }
}

/// An entry to append to the message log.
#[derive(Debug, Clone)]
pub struct NewLogEntry {
    pub system: String,
    pub vendor: String,
    /// `in` or `out`.
    pub direction: &'static str,
    pub message_type: String,
    pub content_type: String,
    pub payload: Vec<u8>,
    pub canonical: Option<String>,
    pub status: LogStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub decision_id: Option<String>,
    pub order_id: Option<String>,
    pub client: Option<String>,
    pub provider: Option<String>,
    pub delivery_key: Option<String>,
    /// Further (client, order) pairs the entry concerns beyond its own columns (an invoice's
    /// lines), so searches by client or order find it by any of them.
    pub links: Vec<LogLink>,
    /// An earlier entry this one follows up (the `queued` entry of a delivery's attempt):
    /// its decision, order, client and provider fill this one's unset columns, and its links
    /// become this one's.
    pub follows: Option<i64>,
}

impl NewLogEntry {
    /// The entry this becomes at `seq`, after the entry hashed `prev_hash`, and its hash: the
    /// one recipe every backend appends by (the payload hashed first, the entry over that
    /// hash, so retention can empty a payload and the chain still verifies). Its links and
    /// the entry it follows are the backend's to store.
    pub fn chained(self, seq: i64, prev_hash: String, at: DateTime<Utc>) -> (LogEntry, String) {
        let mut entry = LogEntry {
            seq,
            at,
            system: self.system,
            vendor: self.vendor,
            direction: self.direction.to_owned(),
            message_type: self.message_type,
            content_type: self.content_type,
            canonical: self.canonical,
            status: self.status.to_owned(),
            error_code: self.error_code,
            error_message: self.error_message,
            decision_id: self.decision_id,
            order_id: self.order_id,
            client: self.client,
            provider: self.provider,
            delivery_key: self.delivery_key,
            prev_hash,
            hash: String::new(),
            payload_hash: Some(crate::log::payload_hash(&self.payload)),
            payload_removed: false,
            payload: self.payload,
        };
        let hash = crate::log::entry_hash(&entry.prev_hash, &entry);
        entry.hash.clone_from(&hash);
        (entry, hash)
    }
}

impl Default for NewLogEntry {
    /// Empty, `accepted` until its status is set.
    fn default() -> Self {
        NewLogEntry {
            system: String::new(),
            vendor: String::new(),
            direction: "",
            message_type: String::new(),
            content_type: String::new(),
            payload: Vec::new(),
            canonical: None,
            status: LogStatus::Accepted,
            error_code: None,
            error_message: None,
            decision_id: None,
            order_id: None,
            client: None,
            provider: None,
            delivery_key: None,
            links: Vec::new(),
            follows: None,
        }
    }
}

/// A client and/or an order a log entry concerns (SPEC §8: the log is searched by both).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogLink {
    pub client: Option<String>,
    pub order_id: Option<String>,
}

/// A decision as stored.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub id: String,
    pub system: String,
    pub content_hash: String,
    pub client: String,
    /// The provider as the decision stands (after a switch, the new one).
    pub provider: String,
    /// The decision as it stands after its latest version.
    pub canonical: String,
    pub received_at: DateTime<Utc>,
    /// Its latest version: 0 as first sent ([`Op::InsertDecision`] ignores the field), then
    /// each [`Op::ChangeDecision`]'s.
    pub version: u32,
}

/// An order with its routing and its lifecycle so far.
#[derive(Debug, Clone, Serialize)]
pub struct OrderRecord {
    pub order: Order,
    /// The case-management system the decision came from (acks go back there).
    pub source_system: String,
    /// The provider's time-registration system the order goes to.
    pub provider_system: String,
    pub status: OrderStatus,
    #[serde(serialize_with = "crate::log::time::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::log::time::serialize_opt")]
    pub delivered_at: Option<DateTime<Utc>>,
    pub ack_status: Option<carehub_model::AckStatus>,
    pub ack_reason: Option<String>,
    #[serde(serialize_with = "crate::log::time::serialize_opt")]
    pub acked_at: Option<DateTime<Utc>>,
    pub plan_established_on: Option<String>,
    #[serde(serialize_with = "crate::log::time::serialize_opt")]
    pub plan_received_at: Option<DateTime<Utc>>,
}

impl OrderRecord {
    /// A new order routed from `source_system` to `provider_system`, in `status` since
    /// `created_at`, nothing yet delivered, answered or planned.
    pub fn new(
        order: Order,
        source_system: impl Into<String>,
        provider_system: impl Into<String>,
        status: OrderStatus,
        created_at: DateTime<Utc>,
    ) -> OrderRecord {
        OrderRecord {
            order,
            source_system: source_system.into(),
            provider_system: provider_system.into(),
            status,
            created_at,
            delivered_at: None,
            ack_status: None,
            ack_reason: None,
            acked_at: None,
            plan_established_on: None,
            plan_received_at: None,
        }
    }

    /// Why the order is overdue on `today`, if it is: not confirmed by its execute-by date,
    /// or no plan by its plan-due date.
    pub fn overdue_reasons(&self, today: NaiveDate) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.acked_at.is_none() && self.order.execute_by < today {
            v.push("not_confirmed");
        }
        if self.plan_established_on.is_none()
            && self.order.plan_due < today
            && self.ack_status != Some(carehub_model::AckStatus::Rejected)
        {
            v.push("plan_missing");
        }
        v
    }
}

/// Something to send, as written to the outbox.
#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub system: String,
    pub message_type: String,
    pub order_id: Option<String>,
    /// The same on every attempt and every replay, so the receiver can drop repeats.
    pub idempotency_key: String,
    pub content_type: String,
    pub endpoint: Option<String>,
    pub body: Vec<u8>,
    /// For the transport: SOAP 1.1's `SOAPAction`.
    pub action: Option<String>,
    /// The log entry of the message it sends; each attempt's entry follows it.
    pub log: LogRef,
}

/// A row of the outbox.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub system: String,
    pub message_type: String,
    pub order_id: Option<String>,
    pub idempotency_key: String,
    pub content_type: String,
    pub endpoint: Option<String>,
    #[serde(skip)]
    pub body: Vec<u8>,
    pub state: DeliveryState,
    pub attempts: u32,
    #[serde(serialize_with = "crate::log::time::serialize")]
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    #[serde(serialize_with = "crate::log::time::serialize")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "crate::log::time::serialize_opt")]
    pub delivered_at: Option<DateTime<Utc>>,
    pub action: Option<String>,
    /// The log entry that queued it (absent for rows queued before version 7 whose entry
    /// was not found).
    pub log_seq: Option<i64>,
}

/// The result of one delivery attempt.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    Delivered,
    Retry { next_attempt_at: DateTime<Utc>, error: String },
    Dead { error: String },
}

/// One change to the store; a request's ops are applied together.
#[derive(Debug, Clone)]
pub enum Op {
    /// Appends to the message log; yields [`OpResult::Logged`].
    AppendLog(NewLogEntry),
    /// Stores a decision; [`StoreError::Conflict`] if its id exists.
    InsertDecision(DecisionRecord),
    /// Stores a new order.
    InsertOrder(Box<OrderRecord>),
    /// Writes a delivery to the outbox, linked to the log entry its [`NewDelivery::log`]
    /// names; [`StoreError::Conflict`] if its idempotency key exists (the same message was
    /// queued before), [`StoreError::Unresolved`] if the entry does not resolve.
    Enqueue(NewDelivery),
    /// Records the provider's answer on the order.
    RecordAck(OrderAck),
    /// Records the plan notice on the order.
    RecordPlan(PlanNotice),
    /// Records an attempt's result on a delivery (and its order, for order deliveries).
    Attempted { id: i64, outcome: AttemptOutcome },
    /// Leases up to `limit` due deliveries to `owner`; yields [`OpResult::Claimed`].
    ClaimDue { owner: String, lease_until: DateTime<Utc>, limit: usize },
    /// Puts dead letters (all, or those with these ids) back in the outbox and logs a
    /// `requeued` entry for each; yields [`OpResult::Requeued`].
    Requeue { ids: Option<Vec<i64>> },
    /// Appends a read of personal data to the access log, chained to the entry before it.
    RecordAccess(NewAccess),
    /// Retention: removes the payloads of the entries appended before `before` that are
    /// hashed over their payload's hash (the entry, its hash and the payload's hash stay,
    /// so the chain and the Merkle tree still verify), and appends a `retention` entry that
    /// says what was removed (its payload and canonical form:
    /// `{"policy", "before", "removed", "first", "last", "kept_unhashed"}`); yields
    /// [`OpResult::Logged`] with that entry. Entries hashed over the payload itself (appended
    /// before payload hashes were kept) keep their payloads: `kept_unhashed` counts them.
    RemovePayloads { before: DateTime<Utc>, policy: String },
    /// Stores a signed checkpoint of the message log's Merkle tree; one of a size already
    /// stored is kept as it was (a tree of a given size has one root).
    StoreCheckpoint(CheckpointRecord),
    /// Registers a tag in a home from `installed_on`; the tag's open registration (in
    /// another home, or this one) ends the day before. [`StoreError::Conflict`] if the tag
    /// already has a registration starting on or after that day: history is not rewritten.
    RegisterTag(carehub_model::TagRegistration),
    /// Validates and stores a batch of visits with the message they came in (and the
    /// cursor of the page, for a pulled feed), all in this commit; yields
    /// [`OpResult::Visits`]. Validation runs here, inside the writer's transaction, so it
    /// sees every visit stored before, earlier ones of the same batch included.
    IngestVisits(Box<VisitIngest>),
    /// Closes a month (`YYYY-MM`): visits in it are refused from now on (VIS006).
    CloseMonth(String),
    /// Moves a background job's watermark (see [`progress`]).
    SetProgress { name: &'static str, through: i64 },
    /// Stores an invoice or credit note, linked to the log entry it names; a copy of one
    /// stored before is ignored (the first stands). [`StoreError::Unresolved`] if the entry
    /// does not resolve.
    StoreInvoice(NewInvoice),
    /// Records a verification report and the lines it verified, linked to the log entry it
    /// names; [`StoreError::Unresolved`] if the entry does not resolve.
    RecordVerification(NewVerification),
    /// Fails the commit with [`StoreError::Stale`] unless `provider`'s invoice generation
    /// ([`InvoiceStore::invoice_generation`]) is `generation` at this point of the commit. Storing
    /// an invoice or credit note (one not stored before) and recording a verification move
    /// the provider's generation on, inside the commit's transaction, so a verification
    /// that expects the generation it read before it read the provider's invoices and
    /// verified lines commits only if no other one committed in between: INV005 (a line is
    /// verified once) holds across concurrent verifications and across processes, with no
    /// lock in the hub. Put it before the ops of the same commit that move the generation.
    /// A backend checks it inside the commit's transaction (SQLite: the writer's; a server
    /// database: with the provider's row locked, `SELECT ... FOR UPDATE`).
    ExpectInvoiceGeneration { provider: String, generation: i64 },
    /// Records a later version of a decision and the decision as it now stands
    /// (`current`, its provider); [`StoreError::Conflict`] if the version is stored,
    /// [`StoreError::Stale`] if a later one is, [`StoreError::Missing`] if the decision is
    /// not. Versions only grow, across concurrent requests and nodes.
    ChangeDecision { version: DecisionVersion, current: String, provider: String },
    /// Replaces an order's terms (its dates and execute-by date, services from a day,
    /// pauses, end) after its decision changed; [`StoreError::Missing`] if it is not stored.
    /// With `reconfirm`, the provider must confirm the changed order again: its answer is
    /// cleared, so it counts as unconfirmed until then.
    ReviseOrder { order: Box<Order>, reconfirm: bool },
    /// Stores a deviation or change of need; [`StoreError::Conflict`] if its id exists.
    StoreProviderReport(ProviderReport),
    /// Takes or renews the lease `name` for `owner` through `until` (a poller's, so that one
    /// node at a time runs it: `crate::delivery::lease`); yields [`OpResult::Lease`], which
    /// says whether `owner` holds it after the commit. It is taken when no one holds it,
    /// renewed when `owner` does (whether or not its `until` has passed), taken over when
    /// another owner's `until` is before the store's clock (a lease holds through its end,
    /// as a claim's does: [`Op::ClaimDue`]), and refused otherwise.
    HoldLease { name: String, owner: String, until: DateTime<Utc> },
    /// Gives the lease `name` up if `owner` holds it (on a clean shutdown), so that another
    /// owner takes it at once; nothing if another owner holds it. Yields [`OpResult::Done`].
    ReleaseLease { name: String, owner: String },
}

/// What an [`Op::HoldLease`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseHold {
    /// No one held the lease; the caller does now.
    Taken,
    /// The caller held it; its `until` moved on.
    Renewed,
    /// Another owner held it, past its `until`; the caller does now.
    TakenOver { from: String },
    /// Another owner holds it through `until`; nothing changed.
    Refused { holder: String, until: DateTime<Utc> },
}

impl LeaseHold {
    /// Whether the caller holds the lease after the commit.
    pub fn held(&self) -> bool {
        !matches!(self, LeaseHold::Refused { .. })
    }

    /// What a backend decides, given the lease's row as it stands inside the commit's
    /// transaction (`(owner, until)`, none when there is no row), for `owner` at `now`: the
    /// one rule every backend applies, so they cannot differ.
    pub fn decide(current: Option<(String, DateTime<Utc>)>, owner: &str, now: DateTime<Utc>) -> LeaseHold {
        match current {
            None => LeaseHold::Taken,
            Some((holder, _)) if holder == owner => LeaseHold::Renewed,
            Some((holder, until)) if until < now => LeaseHold::TakenOver { from: holder },
            Some((holder, until)) => LeaseHold::Refused { holder, until },
        }
    }
}

/// One version of a decision as it arrived: version 0 is the decision as first sent (`kind`
/// `decision`), each later one a change (`kind` the change's kind).
#[derive(Debug, Clone, Serialize)]
pub struct DecisionVersion {
    pub decision_id: String,
    pub version: u32,
    pub effective_from: NaiveDate,
    pub kind: String,
    /// The canonical JSON of the decision or the change.
    pub canonical: serde_json::Value,
    /// The case-management system it came from.
    pub system: String,
    #[serde(serialize_with = "crate::log::time::serialize")]
    pub received_at: DateTime<Utc>,
}

/// A deviation (avvikelse) or change of need (bevakning) a provider reported.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderReport {
    pub id: String,
    /// `deviation` or `need_change`.
    pub message_type: String,
    /// A deviation's kind (`fall`, `missed_visit`, ...) or a change of need's direction
    /// (`more`, `less`).
    pub kind: String,
    pub severity: Option<String>,
    pub provider: String,
    /// The client's personal identity number: shown to the roles that may see the order.
    pub client: String,
    pub order_id: Option<String>,
    /// The day it happened, or was noticed.
    pub day: NaiveDate,
    /// The provider's system that sent it.
    pub system: String,
    /// The canonical JSON of the message.
    pub canonical: serde_json::Value,
    #[serde(serialize_with = "crate::log::time::serialize")]
    pub received_at: DateTime<Utc>,
}

/// Filters for listing deviations and changes of need.
#[derive(Debug, Clone, Default)]
pub struct ProviderReportFilter {
    pub provider: Option<String>,
    /// Its day in this month.
    pub month: Option<carehub_model::Month>,
    /// `deviation` or `need_change`, a deviation's kind, or a direction.
    pub kind: Option<String>,
    pub order_id: Option<String>,
    pub limit: usize,
}

/// An invoice or credit note to store.
#[derive(Debug, Clone)]
pub struct NewInvoice {
    pub provider: String,
    /// `invoice` or `credit_note`.
    pub kind: String,
    pub id: String,
    /// `YYYY-MM`.
    pub month: String,
    /// JSON: the lines as verification reads them, and the invoices a credit note credits.
    pub canonical: String,
    /// The log entry of the message it came in.
    pub log: LogRef,
    pub received_at: DateTime<Utc>,
}

/// A verification report to record.
#[derive(Debug, Clone)]
pub struct NewVerification {
    pub provider: String,
    pub invoice_id: String,
    pub month: String,
    /// JSON of the report.
    pub report: String,
    /// The invoice lines it verified.
    pub lines: Vec<String>,
    /// The log entry that holds the report.
    pub log: LogRef,
    pub created_at: DateTime<Utc>,
}

/// An invoice or credit note as stored.
#[derive(Debug, Clone, Serialize)]
pub struct InvoiceRecord {
    pub provider: String,
    /// `invoice` or `credit_note`.
    pub kind: String,
    pub id: String,
    /// `YYYY-MM`.
    pub month: String,
    /// JSON: the lines as verification reads them, and the invoices a credit note credits.
    pub canonical: String,
    pub log_seq: i64,
    #[serde(serialize_with = "crate::log::time::serialize")]
    pub received_at: DateTime<Utc>,
}

/// A verification report as stored.
#[derive(Debug, Clone, Serialize)]
pub struct VerificationRecord {
    pub provider: String,
    pub invoice_id: String,
    pub month: String,
    /// JSON of the report.
    pub report: String,
    pub log_seq: i64,
    #[serde(serialize_with = "crate::log::time::serialize")]
    pub created_at: DateTime<Utc>,
}

/// Names of background jobs' watermarks.
pub mod progress {
    /// Visit reports to case-management systems: visits up to this id are dealt with.
    pub const VISIT_REPORTS: &str = "visit_reports";
}

/// Visits after the report watermark: the reportable ones (accepted or flagged, with an
/// order), and the last id looked at (rejected ones are passed over).
#[derive(Debug, Clone, Default)]
pub struct ReportBatch {
    pub visits: Vec<PendingForward>,
    pub through: Option<i64>,
}

/// A batch of visits to take in one commit. The backend runs
/// [`rules::visits::ingest`](crate::rules::visits::ingest) on it inside the commit's
/// transaction, over its [`VisitLedger`](crate::rules::visits::VisitLedger): the rules
/// decide, the backend answers look-ups and writes.
#[derive(Debug, Clone)]
pub struct VisitIngest {
    /// The system that sent them.
    pub system: String,
    /// The inbound message's log entry; its canonical column gets each visit's result.
    pub log: NewLogEntry,
    pub visits: Vec<IncomingVisit>,
    pub thresholds: crate::rules::visits::Thresholds,
    pub now: DateTime<Utc>,
    /// A pulled feed's next cursor, stored for `system` with the page.
    pub cursor: Option<String>,
}

/// The results of a batch, with the log entry that holds them.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub log_seq: i64,
    pub results: Vec<VisitResult>,
}

/// A stored visit.
#[derive(Debug, Clone, Serialize)]
pub struct VisitRecord {
    pub id: String,
    pub system: String,
    pub provider: Option<String>,
    pub client: String,
    pub order_id: Option<String>,
    pub staff: String,
    #[serde(serialize_with = "crate::log::time::serialize")]
    pub check_in: DateTime<Utc>,
    #[serde(serialize_with = "crate::log::time::serialize_opt")]
    pub check_out: Option<DateTime<Utc>>,
    pub month: String,
    pub seconds: Option<i64>,
    pub planned_minutes: Option<i64>,
    pub visit_outcome: String,
    pub manual: bool,
    pub outcome: carehub_model::ValidationOutcome,
    pub codes: Vec<String>,
    pub findings: serde_json::Value,
    pub visit: serde_json::Value,
    pub message_id: i64,
    pub line: Option<i64>,
    #[serde(serialize_with = "crate::log::time::serialize")]
    pub received_at: DateTime<Utc>,
    /// For paging: list the next page with `after`.
    pub seq: i64,
}

/// Filters for listing visits. Unset fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct VisitFilter {
    pub client: Option<String>,
    pub provider: Option<String>,
    pub order_id: Option<String>,
    /// `YYYY-MM`, the check-in's month in Stockholm.
    pub month: Option<String>,
    pub outcome: Option<String>,
    pub code: Option<String>,
    pub after: Option<i64>,
    pub limit: usize,
}

/// One provider's registrations in a month.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManualShare {
    pub provider: String,
    /// Accepted and flagged visits.
    pub visits: u64,
    /// Of which registered by hand (or with an unknown tag).
    pub manual: u64,
    /// manual / visits (0 when there are none).
    pub share: f64,
}

/// A visit waiting to go to its case-management system, with what rendering it needs.
#[derive(Debug, Clone)]
pub struct PendingForward {
    pub id: i64,
    pub visit: carehub_model::Visit,
    pub outcome: carehub_model::ValidationOutcome,
    pub codes: Vec<String>,
    pub seconds: Option<i64>,
    pub manual: bool,
    pub order: Option<OrderRecord>,
}

/// What an op yielded, in the order of the ops.
#[derive(Debug, Clone)]
pub enum OpResult {
    Done,
    Logged(i64),
    Claimed(Vec<Delivery>),
    Requeued(Vec<Delivery>),
    Visits(IngestReport),
    /// What an [`Op::HoldLease`] did.
    Lease(LeaseHold),
}

/// Filters for reading the message log. Unset fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    pub client: Option<String>,
    pub provider: Option<String>,
    pub order_id: Option<String>,
    pub decision_id: Option<String>,
    pub message_type: Option<String>,
    pub system: Option<String>,
    pub status: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only entries after this sequence number (for paging).
    pub after_seq: Option<i64>,
    pub limit: usize,
    /// Also load payloads (off for listings).
    pub with_payload: bool,
    /// Entries that failed with this error code (`UNKNOWN_ORDER`, ...).
    pub error_code: Option<String>,
    /// Only entries before this sequence number (for paging newest first).
    pub before_seq: Option<i64>,
    /// Newest first (by sequence number, descending) instead of oldest first.
    pub newest_first: bool,
}

/// Filters for listing orders.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub provider: Option<String>,
    pub status: Option<String>,
    /// A client's orders (their personal identity number, 12 digits).
    pub client: Option<String>,
    /// A decision's orders (several once its client switched provider).
    pub decision_id: Option<String>,
    /// Only orders overdue on this date.
    pub overdue_on: Option<NaiveDate>,
    pub limit: usize,
}

/// Filters for listing deliveries.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub state: Option<String>,
    pub order_id: Option<String>,
    pub limit: usize,
}

/// Overdue orders by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OverdueCounts {
    pub not_confirmed: u64,
    pub plan_missing: u64,
}

/// Counts of the outbox by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutboxCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
}

/// One order as month verification reads it: the order, its decision's validity, and its
/// visits checked in during the month (accepted and flagged; rejected ones never count).
#[derive(Debug, Clone)]
pub struct MonthOrder {
    pub record: OrderRecord,
    pub decision_valid_from: NaiveDate,
    pub decision_valid_to: Option<NaiveDate>,
    /// The visits one by one ([`MonthDetail::Visits`]); empty when they were summed.
    pub visits: Vec<crate::rules::invoices::VisitEvidence>,
    /// The visits summed ([`MonthDetail::Sums`]): an order without visits has zero sums.
    pub sums: Option<crate::rules::invoices::VisitSums>,
}

/// How a provider's month read gives the visits of its orders.
///
/// Why two: time bands split each visit by its clock times, so a provider with bands needs
/// its visits one by one; without bands (most contracts: one rate per hour) the month's
/// figures need only two sums per order, and the database sums them as it reads its index,
/// so 11 million visit rows never cross into the hub one by one (BENCHMARKS.md, "A month in
/// one pass").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonthDetail {
    Visits,
    Sums,
}

/// Everything month verification needs about one provider's month, read in bulk
/// ([`InvoiceStore::provider_month`]): a few statements, not a round trip per order.
#[derive(Debug, Clone, Default)]
pub struct ProviderMonth {
    pub provider: String,
    /// The provider's orders active in the month (by the order's dates) or whose plan notice
    /// arrived around it, then any other order an invoice line of the month names (another
    /// provider's, or one not active: verification reports those as INV004).
    pub orders: Vec<MonthOrder>,
    /// The provider's invoices and credit notes for the month.
    pub invoices: Vec<InvoiceRecord>,
    /// The provider's accepted and flagged visits in the month (with or without an order)
    /// and the manual ones among them: SPEC §6's manual share, as [`VisitStore::manual_shares`].
    pub counted_visits: u64,
    pub manual_visits: u64,
    /// Rows of the month's visits read (rejected ones and ones without an order included).
    pub visits_read: u64,
}

/// The store contract: every concern's trait, implemented by a backend once each. Implementations must make [`CommitStore::commit`] atomic and durable
/// before it returns, keep the message log's hash chain intact across processes, and never
/// update or delete a log entry.
///
/// It has no methods of its own: a type that implements every concern's trait is a
/// [`Store`] (a blanket impl), and `Arc<dyn Store>` calls any of their methods. A function
/// that needs one concern can take that trait alone.
pub trait Store:
    CommitStore + LogStore + OrderStore + OutboxStore + VisitStore + InvoiceStore + ReportStore + AuditStore + 'static
{
}

impl<T> Store for T where
    T: CommitStore
        + LogStore
        + OrderStore
        + OutboxStore
        + VisitStore
        + InvoiceStore
        + ReportStore
        + AuditStore
        + 'static
{
}

/// Commits: the one way anything is written, and readiness.
#[async_trait]
pub trait CommitStore: Send + Sync {
    /// Applies `ops` atomically and durably; results in op order.
    async fn commit(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, StoreError>;
    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The size of the store's write-ahead log file, for `/metrics`: an embedded database's
    /// (SQLite's `-wal` file); 0 where the database server keeps its own.
    fn wal_bytes(&self) -> u64 {
        0
    }
}

/// The message log, read (it is written by [`Op::AppendLog`] and the ops that log).
#[async_trait]
pub trait LogStore: Send + Sync {
    async fn log_entry(&self, seq: i64) -> Result<Option<LogEntry>, StoreError>;
    /// Entries in sequence order.
    async fn log_entries(&self, filter: LogFilter) -> Result<Vec<LogEntry>, StoreError>;
}

/// Decisions and the orders made of them.
#[async_trait]
pub trait OrderStore: Send + Sync {
    async fn decision(&self, id: &str) -> Result<Option<DecisionRecord>, StoreError>;
    async fn order(&self, id: &str) -> Result<Option<OrderRecord>, StoreError>;
    async fn orders(&self, filter: OrderFilter) -> Result<Vec<OrderRecord>, StoreError>;
    /// The order decision `decision_id` made first (its orders read as they apply). An
    /// order's id is made when its decision comes in, so this is how to find it again.
    async fn first_order_of(&self, decision_id: &str) -> Result<Option<OrderRecord>, StoreError> {
        let filter = OrderFilter { decision_id: Some(decision_id.to_owned()), limit: 1, ..OrderFilter::default() };
        Ok(self.orders(filter).await?.into_iter().next())
    }
    async fn overdue_counts(&self, today: NaiveDate) -> Result<OverdueCounts, StoreError>;
    /// The providers with an order for `client` active on `day` (by the order's dates, and
    /// not rejected: the orders VIS009 counts), in order.
    async fn client_providers(&self, client: &str, day: NaiveDate) -> Result<Vec<String>, StoreError>;
    /// A decision's versions, oldest first (empty if the decision is unknown).
    async fn decision_versions(&self, id: &str) -> Result<Vec<DecisionVersion>, StoreError>;
    /// Deviations and changes of need, by day, then id.
    async fn provider_reports(&self, filter: ProviderReportFilter) -> Result<Vec<ProviderReport>, StoreError>;
}

/// The outbox: what is waiting to be delivered, and how it went.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    async fn deliveries(&self, filter: DeliveryFilter) -> Result<Vec<Delivery>, StoreError>;
    /// When the earliest pending delivery falls due.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    async fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;
    /// The deliveries still pending: the backlog intake's brake watches. A backend may
    /// count them without reading the delivered rows, which only grow.
    async fn pending_deliveries(&self) -> Result<u64, StoreError> {
        Ok(self.outbox_counts().await?.pending)
    }
    /// Wakes `wake` whenever another process (another hub node) commits new work to the
    /// outbox, for as long as the store is open; call it from inside a Tokio runtime. The
    /// delivery loop keeps polling as well, so a wake-up lost (a dropped connection) only
    /// costs latency. By default it does nothing: an embedded store has one process, whose
    /// flows wake their own delivery loop. The PostgreSQL backend listens for the
    /// notification each commit that adds outbox rows sends.
    fn watch_outbox(&self, wake: std::sync::Arc<tokio::sync::Notify>) {
        let _ = wake;
    }
}

/// Visits, the tags they are checked against, and the feeds and reports they come from and go to.
#[async_trait]
pub trait VisitStore: Send + Sync {
    /// Tag registrations, oldest first, for a client and/or a tag.
    async fn tags(
        &self,
        client: Option<String>,
        tag_uid: Option<String>,
    ) -> Result<Vec<carehub_model::TagRegistration>, StoreError>;
    /// Stored visits, oldest first.
    async fn visits(&self, filter: VisitFilter) -> Result<Vec<VisitRecord>, StoreError>;
    /// The manual-registration share of each provider with visits in `month` (`YYYY-MM`).
    async fn manual_shares(&self, month: &str) -> Result<Vec<ManualShare>, StoreError>;
    /// Up to `limit` visits after the visit-report watermark, oldest first.
    async fn visits_to_report(&self, limit: usize) -> Result<ReportBatch, StoreError>;
    /// Where a pulled feed stands.
    async fn feed_cursor(&self, system: &str) -> Result<Option<String>, StoreError>;
}

/// Invoices, credit notes, their verifications, and month verification's bulk reads.
#[async_trait]
pub trait InvoiceStore: Send + Sync {
    /// A provider's invoices and credit notes for a month (`kind` filters).
    async fn invoices(&self, provider: &str, month: &str, kind: Option<&str>)
        -> Result<Vec<InvoiceRecord>, StoreError>;
    /// An invoice (or credit note) by its id.
    async fn invoice(&self, provider: &str, kind: &str, id: &str) -> Result<Option<InvoiceRecord>, StoreError>;
    /// The lines of an invoice verified before.
    async fn verified_lines(&self, provider: &str, invoice_id: &str) -> Result<Vec<String>, StoreError>;
    /// The latest verification of a provider's invoice (an invoice is identified by its
    /// provider and its id: two providers may use the same id).
    async fn verification(&self, provider: &str, invoice_id: &str) -> Result<Option<VerificationRecord>, StoreError>;
    /// The providers with a verified invoice (or credit note) of this id, in order.
    async fn verified_providers(&self, invoice_id: &str) -> Result<Vec<String>, StoreError>;
    /// A provider's invoice generation: a counter its invoices, credit notes and
    /// verifications move on (0 before the first); see [`Op::ExpectInvoiceGeneration`].
    async fn invoice_generation(&self, provider: &str) -> Result<i64, StoreError>;
    /// The providers with an order that may be active in `month` or an invoice for it, in
    /// order: the units month verification walks.
    async fn month_providers(&self, month: carehub_model::Month) -> Result<Vec<String>, StoreError>;
    /// One provider's month in bulk (for month verification): its orders with their
    /// decisions, its visits of the month grouped by order, one by one or summed as `detail`
    /// asks (read once, through `visits_provider_month_cover` in SQLite), its invoices and
    /// credit notes. Memory is one provider's.
    async fn provider_month(
        &self,
        provider: &str,
        month: carehub_model::Month,
        detail: MonthDetail,
    ) -> Result<ProviderMonth, StoreError>;
}

/// The monthly follow-up report's reads.
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// The follow-up's orders for `month` (`YYYY-MM`): active in it, or with their
    /// plan-due or execute-by date in it, with their decision's validity.
    async fn followup_orders(&self, month: carehub_model::Month) -> Result<Vec<FollowUpOrder>, StoreError>;
    /// A provider's counted (accepted and flagged) visits checked in during `month`.
    async fn followup_visits(
        &self,
        provider: &str,
        month: carehub_model::Month,
    ) -> Result<Vec<FollowUpVisit>, StoreError>;
    /// The deviations and changes of need of `month`, counted per provider, message type
    /// and kind, in that order.
    async fn followup_reports(&self, month: carehub_model::Month) -> Result<Vec<FollowUpReportCount>, StoreError>;
}

/// A signed checkpoint of the message log's Merkle tree, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointRecord {
    /// Entries in the tree (entries 1..=size).
    pub size: i64,
    /// The tree's root, hex.
    pub root: String,
    #[serde(serialize_with = "crate::log::time::serialize")]
    pub at: DateTime<Utc>,
    /// The signed note (docs/audit-log.md).
    pub note: String,
}

/// Filters for reading the access log. Unset fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct AccessFilter {
    /// Entries that showed this client.
    pub client: Option<String>,
    pub subject: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only entries after this sequence number (for paging forward).
    pub after_seq: Option<i64>,
    /// Only entries before this sequence number (for paging back from the newest).
    pub before_seq: Option<i64>,
    /// Newest first (the console's order) instead of sequence order.
    pub newest_first: bool,
    pub limit: usize,
}

/// Auditing: the access log, the message log's leaves for its Merkle tree, and the
/// tree's signed checkpoints (written by [`Op::RecordAccess`] and [`Op::StoreCheckpoint`]).
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Access-log entries in sequence order, or newest first when the filter asks.
    async fn access_log(&self, filter: AccessFilter) -> Result<Vec<AccessEntry>, StoreError>;
    /// The number of message-log entries (the last sequence number; 0 when empty).
    async fn log_size(&self) -> Result<i64, StoreError>;
    /// The chain hashes (hex) of up to `limit` message-log entries after `after_seq`, in
    /// sequence order: the Merkle tree's leaf data.
    async fn log_hashes(&self, after_seq: i64, limit: usize) -> Result<Vec<(i64, String)>, StoreError>;
    /// The checkpoint of the largest size.
    async fn latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError>;
    /// The checkpoint of the smallest size at least `size`: the first that covered entry
    /// `size` (of exactly that size when one was written).
    async fn checkpoint_covering(&self, size: i64) -> Result<Option<CheckpointRecord>, StoreError>;
}

/// Recomputes the access log's hash chain, a page at a time.
pub async fn verify_access_chain(store: &dyn Store) -> Result<ChainReport, StoreError> {
    let mut verifier = AccessVerifier::default();
    let mut after = 0;
    loop {
        let page =
            store.access_log(AccessFilter { after_seq: Some(after), limit: 2000, ..AccessFilter::default() }).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if !verifier.push(e) {
                return Ok(verifier.finish());
            }
        }
    }
    Ok(verifier.finish())
}

/// Recomputes the whole hash chain, a page at a time.
pub async fn verify_chain(store: &dyn Store) -> Result<ChainReport, StoreError> {
    let mut verifier = ChainVerifier::default();
    let mut after = 0;
    loop {
        let page = store
            .log_entries(LogFilter { after_seq: Some(after), limit: 2000, with_payload: true, ..LogFilter::default() })
            .await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            if !verifier.push(e) {
                return Ok(verifier.finish());
            }
        }
    }
    Ok(verifier.finish())
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn a_backend_error_keeps_the_drivers_error_as_its_source() {
        let e = StoreError::from(rusqlite::Error::InvalidQuery);
        let source = std::error::Error::source(&e).expect("a source");
        assert!(source.downcast_ref::<rusqlite::Error>().is_some(), "the source is the driver's error: {source:?}");
        assert!(e.to_string().contains(&rusqlite::Error::InvalidQuery.to_string()), "{e}");
    }
}
