//! The visit flow (SPEC §4.2): visits in from time-registration systems, validated and
//! stored, and the accepted and flagged ones reported on to the case-management system of
//! their order.
//!
//! Visits come in batches as the normal case (a page of Phoniro's feed, a ParaGå file of
//! 100,000 rows), so a batch is one store op: the writer validates each visit against what
//! is stored (earlier visits of the same batch included), stores it with its outcome and
//! codes, and logs the message with every visit's result, in one commit, before the sender
//! hears anything. A page pulled from a feed carries its cursor into that same commit, so a
//! restart resumes exactly where the last stored page ended.
//!
//! Forwarding is decoupled: `Flows::forward_visits` walks the stored visits in id order
//! behind a watermark, renders the accepted and flagged ones for their case-management
//! system and queues them in the outbox, moving the watermark in the same commit. Ingestion
//! does not wait for rendering, and a crash between the two loses nothing: the visits past
//! the watermark are still there.
//!
//! A case-management system whose vendor profile takes lists (a `visits.out.toml` mapping,
//! as Combine's) gets its visits in list messages instead of one message per visit: each
//! one is a log entry, an outbox row, an attempt and its record on the store's one writer,
//! and per visit that cost took webhook pushes from 5,300/s to 1,260/s while reports ran.
//! A list holds at most `ReportBatch::max_visits` visits (the size cap) of one forwarder
//! chunk, and the forwarder, once woken, lets new visits gather for `ReportBatch::window`
//! (the time cap) first. Each visit is in exactly one list, since the list and the
//! watermark are committed together; the list's idempotency key names its first and last
//! visit (`<first>..<last>:visits`), and the delivery loop retries or dead-letters a list
//! as a whole like any other row. A list's log entry keeps the exact bytes sent and, as its
//! canonical form, only the key and the visit ids (`list_canonical`): the visits are in the
//! store, and a full copy of each beside the payload doubled the bytes a list cost the
//! writer. Its links name every client and order, so a search by either finds it and, as
//! its attempts' records copy them, its delivery too.
//! A vendor that refuses a list (a 4xx) refuses all of it:
//! it is dead-lettered whole and `carehub replay` sends it whole again; the hub does not
//! split it, which would give its visits new keys and could report one twice. Systems
//! without a list mapping keep one message per visit, keyed `<visit id>:visit`.

use std::time::Duration;

use carehub_model::{ErrorCode, MessageType, OrgNumber, Visit};
use serde_json::json;
use tracing::{info, warn};

use super::{outbound_entry, store_unavailable, Correlation, Flows};
use crate::adapter::System;
use crate::intake::{Inbound, Receipt, Rejection, Sender};
use crate::mapping::RowDecoded;
use crate::rules::visits::Outcome;
use crate::store::{
    progress, IncomingVisit, IngestReport, LogLink, LogRef, LogStatus, NewLogEntry, Op, OpResult, StoreError,
    VisitIngest,
};

/// Visits per store commit when a file is taken: large enough to share the commit's cost,
/// small enough that the writer serves pushes between chunks.
pub const FILE_CHUNK: usize = 5_000;

/// Visits rendered and queued per commit by the forwarder.
const FORWARD_CHUNK: usize = 500;

impl Flows {
    /// Fills in what the record may leave out (the provider a system serves alone, an id
    /// derived from the visit) and checks the sender may speak for the provider.
    fn complete(
        &self,
        sys: &System,
        served: &[&str],
        mut v: Visit,
        line: Option<usize>,
        sender: &Sender,
    ) -> IncomingVisit {
        let unreadable = |code: ErrorCode, message: String| IncomingVisit::Unreadable {
            line,
            code: code.as_str().to_owned(),
            message,
        };
        if v.provider.is_none() {
            v.provider = match sender {
                Sender::Provider(org) => Some(org.clone()),
                Sender::Trusted if served.len() == 1 => OrgNumber::parse(served[0]).ok(),
                Sender::Trusted => None,
            };
        }
        let Some(provider) = &v.provider else {
            return unreadable(
                ErrorCode::MissingField,
                format!("the visit names no provider, and {} serves {} providers", sys.name, served.len()),
            );
        };
        if let Sender::Provider(org) = sender {
            if org != provider {
                return unreadable(ErrorCode::Forbidden, "a visit of another provider".into());
            }
        }
        if !served.contains(&provider.as_str()) {
            return unreadable(
                ErrorCode::UnknownProvider,
                format!("provider {provider} does not use the system {}", sys.name),
            );
        }
        if v.id.is_none() {
            match v.derived_id(sys.vendor) {
                Ok(id) => v.id = Some(id),
                Err(e) => return unreadable(e.code, e.reason),
            }
        }
        IncomingVisit::Visit { visit: Box::new(v), line }
    }

    /// Validates, stores and logs one batch in one commit.
    async fn ingest(
        &self,
        sys: &System,
        log: NewLogEntry,
        visits: Vec<IncomingVisit>,
        cursor: Option<String>,
    ) -> Result<IngestReport, Rejection> {
        let op = Op::IngestVisits(Box::new(VisitIngest {
            system: sys.name.clone(),
            log,
            visits,
            thresholds: self.visit_rules,
            now: self.clock.now(),
            cursor,
        }));
        let results = self.store.commit(vec![op]).await.map_err(store_unavailable)?;
        let report = results
            .into_iter()
            .find_map(|r| match r {
                OpResult::Visits(report) => Some(report),
                _ => None,
            })
            .ok_or_else(|| Rejection::new(ErrorCode::Internal, "the store did not report the visits"))?;
        self.count(sys, &report);
        Ok(report)
    }

    /// Pages of a pulled feed, read in order: each page's visits validated and stored with
    /// its log entry, all pages in one commit, each page's cursor stored after it (so the
    /// feed's cursor ends at the last page's).
    pub(crate) async fn take_pages(
        &self,
        sys: &System,
        pages: Vec<(Vec<u8>, crate::mapping::Decoded, carehub_model::VisitBatch)>,
    ) -> Result<Vec<IngestReport>, Rejection> {
        let served = self.providers_of(sys);
        let now = self.clock.now();
        let mut ops = Vec::with_capacity(pages.len());
        for (body, decoded, batch) in pages {
            let inbound =
                Inbound { system: sys, body, content_type: "application/json".to_owned(), decoded: Some(decoded) };
            let visits: Vec<IncomingVisit> =
                batch.visits.into_iter().map(|v| self.complete(sys, &served, v, None, &Sender::Trusted)).collect();
            ops.push(Op::IngestVisits(Box::new(VisitIngest {
                system: sys.name.clone(),
                log: inbound.entry(LogStatus::Accepted),
                visits,
                thresholds: self.visit_rules,
                now,
                cursor: batch.cursor,
            })));
        }
        let results = self.store.commit(ops).await.map_err(store_unavailable)?;
        let mut reports = Vec::new();
        for r in results {
            if let OpResult::Visits(report) = r {
                self.count(sys, &report);
                self.metrics.message(&sys.name, "in", MessageType::Visits.as_str(), LogStatus::Accepted);
                reports.push(report);
            }
        }
        info!(system = %sys.name, pages = reports.len(), "feed pages taken");
        Ok(reports)
    }

    /// Counts a batch's results and wakes the forwarder when some may go on.
    fn count(&self, sys: &System, report: &IngestReport) {
        // Counted per (outcome, codes) kind, not per visit: a batch has few kinds.
        let mut kinds: std::collections::HashMap<(&str, &[String]), u64> = std::collections::HashMap::new();
        for r in &report.results {
            let outcome = if r.duplicate_of.is_some() { "duplicate" } else { r.outcome.as_str() };
            *kinds.entry((outcome, r.codes.as_slice())).or_default() += 1;
        }
        for ((outcome, codes), n) in kinds {
            self.metrics.visits(&sys.name, outcome, codes, n);
        }
        if report.results.iter().any(|r| r.outcome != Outcome::Rejected && r.duplicate_of.is_none()) {
            self.visit_notify.notify_one();
        }
    }

    /// A visit pushed, or a page of visits pulled: each validated and stored, the message
    /// logged with every result, and the answer listing them.
    pub(crate) async fn on_visits(
        &self,
        inbound: &Inbound<'_>,
        visits: Vec<Visit>,
        cursor: Option<String>,
        sender: &Sender,
        kind: MessageType,
    ) -> Result<Receipt, Rejection> {
        let served = self.providers_of(inbound.system);
        let incoming: Vec<IncomingVisit> =
            visits.into_iter().map(|v| self.complete(inbound.system, &served, v, None, sender)).collect();
        let mut entry = inbound.entry(LogStatus::Accepted);
        let only = match incoming.as_slice() {
            [IncomingVisit::Visit { visit, .. }] => Some(visit),
            _ => None,
        };
        entry.client = only.map(|v| v.client.clone());
        entry.order_id = only.and_then(|v| v.order_id.clone());
        entry.provider = match sender {
            Sender::Provider(org) => Some(org.as_str().to_owned()),
            Sender::Trusted => only.and_then(|v| v.provider.as_ref()).map(|p| p.as_str().to_owned()),
        };
        let report = self.ingest(inbound.system, entry, incoming, cursor).await?;
        self.metrics.message(&inbound.system.name, "in", kind.as_str(), LogStatus::Accepted);
        let all_copies = !report.results.is_empty() && report.results.iter().all(|r| r.duplicate_of.is_some());
        info!(
            system = %inbound.system.name,
            visits = report.results.len(),
            rejected = report.results.iter().filter(|r| r.outcome == Outcome::Rejected).count(),
            "visits taken"
        );
        Ok(Receipt {
            message_id: report.log_seq,
            status: if all_copies { LogStatus::Duplicate } else { LogStatus::Accepted },
            message_type: kind,
            decision_id: None,
            order_id: None,
            visits: report.results,
            verification: None,
            code: None,
        })
    }

    /// A CSV file of visits (ParaGå's daily file): every row validated and stored, a bad
    /// row refused with its line and code without stopping the others. The file is logged
    /// whole with the first chunk; each chunk's log entry holds its rows' results.
    pub(crate) async fn take_visit_rows(
        &self,
        sys: &System,
        bytes: Vec<u8>,
        rows: Vec<RowDecoded>,
    ) -> Result<Receipt, Rejection> {
        let total = rows.len();
        let served = self.providers_of(sys);
        let chunks = total.div_ceil(FILE_CHUNK).max(1);
        let mut first_seq = None;
        let mut all = Vec::with_capacity(total);
        let mut payload = Some(bytes);
        let mut rows = rows.into_iter();
        let mut next = self.typed_rows(sys, &served, rows.by_ref().take(FILE_CHUNK));
        for part in 1..=chunks {
            let chunk = std::mem::take(&mut next);
            let mut entry = NewLogEntry {
                system: sys.name.clone(),
                vendor: sys.vendor.to_owned(),
                direction: "in",
                message_type: MessageType::Visits.as_str().to_owned(),
                content_type: "text/csv".to_owned(),
                payload: payload.take().unwrap_or_default(),
                status: LogStatus::Accepted,
                ..NewLogEntry::default()
            };
            if let Some(first) = first_seq {
                entry.error_message = Some(format!("part {part} of {chunks} of the file logged as message {first}"));
            }
            // The next chunk is read while the writer stores this one.
            let (report, typed) = tokio::join!(self.ingest(sys, entry, chunk, None), async {
                if part < chunks {
                    self.typed_rows(sys, &served, rows.by_ref().take(FILE_CHUNK))
                } else {
                    Vec::new()
                }
            });
            let report = report?;
            next = typed;
            first_seq.get_or_insert(report.log_seq);
            all.extend(report.results);
        }
        let rejected = all.iter().filter(|r| r.outcome == Outcome::Rejected).count();
        self.metrics.message(&sys.name, "in", MessageType::Visits.as_str(), LogStatus::Accepted);
        info!(system = %sys.name, rows = total, rejected, "visit file taken");
        Ok(Receipt {
            message_id: first_seq.unwrap_or_default(),
            status: LogStatus::Accepted,
            message_type: MessageType::Visits,
            decision_id: None,
            order_id: None,
            visits: all,
            verification: None,
            code: None,
        })
    }

    /// CSV rows as visits to take, or as refusals with their line and code.
    fn typed_rows(&self, sys: &System, served: &[&str], rows: impl Iterator<Item = RowDecoded>) -> Vec<IncomingVisit> {
        rows.map(|row| {
            let line = Some(row.line);
            let parsed = row.result.and_then(|d| {
                if d.message_type != MessageType::Visit {
                    return Err(carehub_model::ValidationError::new(
                        ErrorCode::UnknownMessageType,
                        format!("a {} row in a file of visits", d.message_type),
                    ));
                }
                match d.message()? {
                    carehub_model::Message::Visit(v) => Ok(*v),
                    other => Err(carehub_model::ValidationError::new(
                        ErrorCode::UnknownMessageType,
                        format!("a {} row in a file of visits", other.message_type()),
                    )),
                }
            });
            match parsed {
                Ok(v) => self.complete(sys, served, v, line, &Sender::Trusted),
                Err(e) => IncomingVisit::Unreadable {
                    line,
                    code: e.code.as_str().to_owned(),
                    message: format!("line {}: {}", row.line, e.reason),
                },
            }
        })
        .collect()
    }

    /// Renders waiting visits for their case-management systems and queues them, a chunk
    /// per commit, until none wait. Returns how many visits were queued (a list counts
    /// each of its visits).
    pub(crate) async fn forward_visits(&self) -> Result<usize, StoreError> {
        let max_list = self.report_batch.max_visits.max(1);
        let mut queued = 0;
        loop {
            let batch = self.store.visits_to_report(FORWARD_CHUNK.max(max_list)).await?;
            let Some(through) = batch.through else { return Ok(queued) };
            let mut ops = Vec::new();
            // The lists being gathered in this chunk, one per system that takes lists.
            let mut lists: Vec<ReportList> = Vec::new();
            for p in batch.visits {
                let Some(order) = &p.order else { continue };
                let Some(target) = self.registry.get(&order.source_system).cloned() else { continue };
                let takes_lists = target.mappings.outbound(MessageType::Visits).is_some();
                if !target.visit_reports || !(takes_lists || target.mappings.outbound(MessageType::Visit).is_some()) {
                    continue;
                }
                let minutes = p.seconds.map(|s| (s + 30) / 60);
                let mut result = json!({ "outcome": p.outcome, "manual": p.manual });
                if let Some(m) = minutes {
                    result["minutes"] = json!(m);
                }
                if !p.codes.is_empty() {
                    result["codes"] = json!(p.codes.join(" "));
                }
                let context = json!({ "visit": p.visit, "result": result, "order": order.order });
                let id = p.visit.id.as_ref().map(|i| i.as_str().to_owned()).unwrap_or_else(|| p.id.to_string());
                if takes_lists {
                    let at = match lists.iter().position(|l| l.target.name == target.name) {
                        Some(at) => at,
                        None => {
                            lists.push(ReportList {
                                target: target.clone(),
                                ids: Vec::new(),
                                items: Vec::new(),
                                links: Vec::new(),
                            });
                            lists.len() - 1
                        }
                    };
                    lists[at].ids.push(id);
                    lists[at].items.push(context);
                    lists[at].links.push(LogLink {
                        client: Some(order.order.client.expose().to_owned()),
                        order_id: Some(order.order.id.clone()),
                    });
                    if lists[at].items.len() >= max_list {
                        queued += queue_list(lists.swap_remove(at), &mut ops);
                    }
                    continue;
                }
                let rendered = match target.encode(MessageType::Visit, &context) {
                    Ok(r) => r,
                    Err(e) => {
                        warn!(system = %target.name, code = e.code.as_str(), "cannot render a visit report");
                        continue;
                    }
                };
                let key = format!("{id}:visit");
                let mut entry =
                    outbound_entry(&target, MessageType::Visit, &rendered.content_type, &rendered.body, &key);
                entry.canonical = Some(context.to_string());
                Correlation::of(order).apply(&mut entry);
                let log = LogRef::Op(ops.len());
                ops.push(Op::AppendLog(entry));
                ops.push(Op::Enqueue(super::delivery(
                    &target.name,
                    MessageType::Visit,
                    Some(order.order.id.clone()),
                    key,
                    rendered,
                    log,
                )));
                queued += 1;
            }
            for list in lists {
                queued += queue_list(list, &mut ops);
            }
            // The reports and the watermark move together: a crash repeats nothing and
            // loses nothing.
            let any = !ops.is_empty();
            ops.push(Op::SetProgress { name: progress::VISIT_REPORTS, through });
            self.store.commit(ops).await?;
            if any {
                self.outbox_notify.notify_one();
            }
        }
    }

    /// Forwards visits whenever some were stored (and every `every`, in case a wake-up was
    /// missed), until `shutdown` changes.
    pub(crate) async fn run_visit_forwarder(
        &self,
        every: Duration,
        mut lease: crate::delivery::lease::Lease,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if !lease.wait(&mut shutdown).await {
                return;
            }
            if let Err(e) = self.forward_visits().await {
                warn!(error = %e, "cannot forward visits; trying again");
            }
            tokio::select! {
                _ = self.visit_notify.notified() => {
                    // The time cap: visits stored in the next moments join the same lists.
                    tokio::select! {
                        _ = tokio::time::sleep(self.report_batch.window) => {}
                        _ = shutdown.changed() => return,
                    }
                }
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// How visit reports are gathered into one message for a case-management system whose
/// profile takes lists (its vendor has a `visits.out.toml` mapping). A system without one
/// gets one message per visit, as before.
#[derive(Debug, Clone, Copy)]
pub struct ReportBatch {
    /// The size cap: most visits in one list message (at least 1).
    pub max_visits: usize,
    /// The time cap: how long the forwarder lets newly stored visits gather after it is
    /// woken, before it reports them. A backlog is reported at once, in full lists.
    pub window: Duration,
}

impl Default for ReportBatch {
    fn default() -> Self {
        ReportBatch { max_visits: 200, window: Duration::from_millis(100) }
    }
}

/// Visits gathered for one system's list message.
struct ReportList {
    target: std::sync::Arc<System>,
    /// The hub's visit ids, in the order the visits were stored.
    ids: Vec<String>,
    /// Each visit's context, as `visit.out.toml` would render it alone.
    items: Vec<serde_json::Value>,
    /// Each visit's client and order, so a search by either finds the list that reported it
    /// (a single report carries them in its own columns).
    links: Vec<LogLink>,
}

/// Renders a list as one message and queues it with its log entry; returns how many
/// visits it carries. The idempotency key names the list's first and last visit: each
/// visit is in one list only (the watermark moves in the same commit), so no two lists
/// share a key, and a retry sends the same key. A visit that cannot be rendered is left
/// out with a warning, as a single report would be, and the others still go.
fn queue_list(list: ReportList, ops: &mut Vec<Op>) -> usize {
    let ReportList { target, mut ids, mut items, mut links } = list;
    let render = |items: &[serde_json::Value]| target.encode(MessageType::Visits, &json!({ "visits": items }));
    let rendered = match render(&items) {
        Ok(r) => r,
        Err(_) => {
            // Find the visits that do not render, so one bad visit does not hold back the rest.
            let keep: Vec<bool> = items.iter().map(|i| render(std::slice::from_ref(i)).is_ok()).collect();
            let bad = keep.iter().filter(|ok| !**ok).count();
            warn!(system = %target.name, visits = bad, "cannot render a visit report; left out of the list");
            let mut k = keep.iter();
            items.retain(|_| *k.next().unwrap_or(&false));
            let mut k = keep.iter();
            ids.retain(|_| *k.next().unwrap_or(&false));
            let mut k = keep.iter();
            links.retain(|_| *k.next().unwrap_or(&false));
            if items.is_empty() {
                return 0;
            }
            match render(&items) {
                Ok(r) => r,
                Err(e) => {
                    warn!(system = %target.name, code = e.code.as_str(), visits = items.len(), "cannot render a list of visit reports");
                    return 0;
                }
            }
        }
    };
    let (first, last) = (ids.first().cloned().unwrap_or_default(), ids.last().cloned().unwrap_or_default());
    let key = format!("{first}..{last}:visits");
    let mut entry = outbound_entry(&target, MessageType::Visits, &rendered.content_type, &rendered.body, &key);
    entry.canonical = Some(list_canonical(&key, &ids));
    entry.links = links;
    let log = LogRef::Op(ops.len());
    ops.push(Op::AppendLog(entry));
    ops.push(Op::Enqueue(super::delivery(&target.name, MessageType::Visits, None, key, rendered, log)));
    items.len()
}

/// A list's canonical form in its log entry: its key and the hub's id of every visit it
/// reports, in order. The rendered payload beside it is the message's exact bytes, with every
/// visit's fields; repeating each visit's whole context here doubled the bytes every list
/// put through the store's commit and the log's hash. The visits themselves are in the store
/// under these ids.
pub(crate) fn list_canonical(key: &str, ids: &[String]) -> String {
    json!({ "list": key, "visits": ids }).to_string()
}
