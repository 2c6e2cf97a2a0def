//! The hub: the one way in. Every payload a system sends, every file it leaves, every tag
//! registered and every replay goes through a method of [`Hub`].
//!
//! A payload's way through: [`Hub::receive`] (a request, its system found once by the
//! caller, who authenticated it) or [`Hub::take_file`] (a file from an inbox, its system
//! looked up once here) asks [`crate::intake`] what the payload is,
//! and hands it to its flow ([`crate::flows`]): a decision to `decision`, an
//! acknowledgement or plan notice to `answer`, visits to `visits`, a PEPPOL document or an
//! invoice basis to `invoice`. The flow commits the message's log entry with everything it
//! causes before the hub answers. A Phoniro visit, for one, enters here (pushed to
//! [`Hub::receive`], or pulled from the feed by [`crate::delivery::poller`] and taken by
//! `Hub::take_pages`), is validated by [`crate::rules::visits`] and is stored by
//! [`crate::store`].
//!
//! The hub's parts are private: it is built from [`HubParts`], and the server reaches only
//! what it needs through accessors ([`Hub::store`], [`Hub::registry`], [`Hub::metrics`],
//! [`Hub::clock`], [`Hub::route`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use carehub_model::{Clock, Deadlines, ErrorCode, Message, MessageType, VisitBatch};
use serde_json::json;
use tokio::sync::Notify;
use tracing::{info, warn, Instrument};

use crate::adapter::{Registry, System};
pub use crate::flows::Route;
use crate::flows::{Correlation, Flows};
use crate::intake::{content_type_of, may_send, Decoding, Inbound, Payload, Rows};
pub use crate::intake::{Receipt, Rejection, Sender};
use crate::mapping::{Decoded, RowDecoded};
use crate::metrics::Metrics;
use crate::store::{Delivery, IngestReport, LogRef, LogStatus, Op, OpResult, Store, StoreError};

/// The name of the lease the visit forwarder runs under.
pub const FORWARDER_LEASE: &str = "forwarder";

/// What a hub is built from.
pub struct HubParts {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    /// The configured providers by organisation number.
    pub routes: BTreeMap<String, Route>,
    pub deadlines: Deadlines,
    pub metrics: Arc<Metrics>,
    /// Woken whenever something was written to the outbox (the delivery loop listens).
    pub outbox_notify: Arc<Notify>,
    /// The visit rules' thresholds (SPEC §6).
    pub visit_rules: crate::rules::visits::Thresholds,
    /// How visit reports are gathered into lists for the systems that take them.
    pub report_batch: crate::flows::visits::ReportBatch,
    /// The municipality's invoice verification policy (SPEC §7).
    pub invoice_policy: crate::rules::invoices::Policy,
    /// Where every "now" of the flows comes from.
    pub clock: Clock,
}

/// The hub's flows over a store and the configured systems.
pub struct Hub {
    /// Everything the flows work with; private, so the entry points below are the only way
    /// to change what the hub holds.
    flows: Flows,
}

impl Hub {
    /// The hub over `parts`. The wake-up for the visit forwarder and what the flows keep
    /// between messages are made here: nothing outside the hub uses them.
    pub fn new(parts: HubParts) -> Hub {
        let HubParts {
            store,
            registry,
            routes,
            deadlines,
            metrics,
            outbox_notify,
            visit_rules,
            report_batch,
            invoice_policy,
            clock,
        } = parts;
        Hub {
            flows: Flows {
                store,
                registry,
                routes,
                deadlines,
                metrics,
                outbox_notify,
                visit_rules,
                visit_notify: Arc::new(Notify::new()),
                report_batch,
                invoice_policy,
                clock,
            },
        }
    }

    /// The store the hub commits to.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.flows.store
    }

    /// The configured systems.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.flows.registry
    }

    /// Where orders for the provider with organisation number `org` go, if it is configured.
    pub fn route(&self, org: &str) -> Option<&Route> {
        self.flows.routes.get(org)
    }

    /// The counters and gauges the hub keeps (the server adds its own and renders them).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.flows.metrics
    }

    /// Where every "now" of the hub comes from.
    pub fn clock(&self) -> &Clock {
        &self.flows.clock
    }

    /// Today in the municipality's calendar (Europe/Stockholm) by the hub's clock, for
    /// deadlines.
    pub fn today(&self) -> chrono::NaiveDate {
        self.flows.clock.today()
    }

    /// The configured system named `system`, or the refusal that names none.
    fn system(&self, system: &str) -> Result<Arc<System>, Rejection> {
        self.flows.registry.get(system).cloned().ok_or_else(|| {
            Rejection::new(ErrorCode::UnknownSystem, format!("no system named '{system}' is configured"))
        })
    }

    /// Takes a payload the system `sys` sent (the caller found it in [`Hub::registry`], once,
    /// to authenticate the sender). Answers only after the message (and everything it
    /// caused) is durably stored.
    pub async fn receive(
        &self,
        sys: &System,
        body: Vec<u8>,
        content_type: Option<&str>,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        let span = tracing::info_span!("message", system = %sys.name, bytes = body.len());
        async {
            let payload = Payload::of_request(sys, &body);
            let content_type = content_type.unwrap_or(match payload {
                Payload::Peppol(_) => "application/xml",
                _ => "application/octet-stream",
            });
            self.take(sys, body, content_type, payload, sender).await
        }
        .instrument(span)
        .await
    }

    /// Takes a file a system left in its inbox: what intake says it is, taken by its flow,
    /// then, when the vendor wants receipts (it has an outbound `receipt` mapping), a receipt
    /// file queued saying what became of it. Callers move the file only after this returns,
    /// and leave it in place on `UNAVAILABLE` so the next poll tries again.
    pub async fn take_file(&self, system: &str, file: &str, bytes: Vec<u8>) -> Result<Receipt, Rejection> {
        let span = tracing::info_span!("message", system, bytes = bytes.len());
        async {
            let sys = self.system(system)?;
            let payload = Payload::of_file(&sys, file, &bytes);
            let result = self.take(&sys, bytes, content_type_of(file), payload, &Sender::Trusted).await;
            if matches!(&result, Err(r) if r.code == ErrorCode::Unavailable) {
                return result;
            }
            if sys.mappings.outbound(MessageType::Receipt).is_some() {
                self.queue_file_receipt(&sys, file, &result).await;
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Hands a payload to its flow.
    async fn take(
        &self,
        sys: &System,
        body: Vec<u8>,
        content_type: &str,
        payload: Payload,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        match payload {
            Payload::Message(decoding) => self.dispatch(sys, body, content_type, decoding, sender).await,
            Payload::Peppol(document) => {
                let inbound = Inbound { system: sys, body, content_type: content_type.to_owned(), decoded: None };
                self.flows.on_invoice(&inbound, *document, sender).await
            }
            Payload::Rows(Rows::Visits(rows)) => self.flows.take_visit_rows(sys, body, rows).await,
            Payload::Rows(Rows::InvoiceBasis { text, rows }) => {
                self.flows.take_invoice_rows(sys, &text, rows, sender).await
            }
            Payload::Rows(Rows::Messages { text, rows }) => self.take_rows(sys, &text, rows, sender).await,
            Payload::Rows(Rows::Unreadable(e)) => self.dispatch(sys, body, "text/csv", Err((None, e)), sender).await,
        }
    }

    /// Acts on a decoded (or undecodable) message: refuses it with its code, or hands it to
    /// its flow by what it is and what the sending system may send.
    pub(crate) async fn dispatch(
        &self,
        sys: &System,
        body: Vec<u8>,
        content_type: &str,
        decoded: Decoding,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        let flows = &self.flows;
        let mut inbound = Inbound { system: sys, content_type: content_type.to_owned(), body, decoded: None };
        let message = match decoded {
            Ok((decoded, message)) => {
                inbound.decoded = Some(decoded);
                message
            }
            Err((decoded, e)) => {
                inbound.decoded = decoded;
                return Err(flows.reject(&inbound, e.code, e.reason, Correlation::default()).await);
            }
        };
        // Which messages a system may send is said once (`may_send`, which the dry run of
        // `POST /v1/validate` asks too); each of them has its flow.
        let kind = message.message_type();
        if !may_send(sys.role, kind) {
            let reason = format!("a {} system does not send {kind} messages", sys.role.as_str());
            return Err(flows.reject(&inbound, ErrorCode::MessageNotAllowed, reason, Correlation::default()).await);
        }
        match message {
            Message::Decision(d) => flows.on_decision(&inbound, d).await,
            Message::DecisionChange(c) => flows.on_decision_change(&inbound, *c).await,
            Message::OrderAck(a) => flows.on_ack(&inbound, a, sender).await,
            Message::PlanNotice(p) => flows.on_plan(&inbound, p, sender).await,
            Message::Visit(v) => flows.on_visits(&inbound, vec![*v], None, sender, MessageType::Visit).await,
            Message::Visits(b) => flows.on_visits(&inbound, b.visits, b.cursor, sender, MessageType::Visits).await,
            Message::Deviation(d) => flows.on_provider_report(&inbound, (*d).into(), sender).await,
            Message::NeedChange(n) => flows.on_provider_report(&inbound, (*n).into(), sender).await,
            // An invoice basis row travels in a file (`take_invoice_rows`); the rest go out.
            Message::InvoiceLine(_)
            | Message::Order(_)
            | Message::Receipt(_)
            | Message::OrderChange(_)
            | Message::OrderEnd(_) => {
                let reason = format!("a {kind} message is not taken on its own");
                Err(flows.reject(&inbound, ErrorCode::MessageNotAllowed, reason, Correlation::default()).await)
            }
        }
    }

    /// Takes a CSV file of messages row by row. Each row is its own message in the log (the
    /// header and that row, as UTF-8 text), answered by its flow; a bad row is logged as
    /// rejected with its line number and does not stop the others. The answer describes the
    /// file: `accepted`, with the first row's log entry.
    async fn take_rows(
        &self,
        sys: &System,
        text: &str,
        rows: Vec<RowDecoded>,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
        let header = lines.iter().find(|l| !l.trim().is_empty()).copied().unwrap_or("");
        let mut first: Option<Receipt> = None;
        let mut kinds = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            let start = row.line.saturating_sub(1).min(lines.len());
            let end = rows
                .get(i + 1)
                .map(|next| next.line.saturating_sub(1))
                .unwrap_or(lines.len())
                .clamp(start, lines.len());
            let payload = format!("{header}\n{}\n", lines[start..end].join("\n").trim_end());
            let decoded = match &row.result {
                Ok(d) => match d.message() {
                    Ok(m) => Ok((d.clone(), m)),
                    Err(e) => Err((Some(d.clone()), e)),
                },
                Err(e) => Err((None, e.clone())),
            }
            .map_err(|(d, mut e)| {
                e.reason = format!("line {}: {}", row.line, e.reason);
                (d, e)
            });
            match self.dispatch(sys, payload.into_bytes(), "text/csv; charset=utf-8", decoded, sender).await {
                Ok(r) => {
                    kinds.push(r.message_type);
                    first.get_or_insert(r);
                }
                Err(r) if r.code == ErrorCode::Unavailable => return Err(r),
                Err(_) => {}
            }
        }
        info!(system = %sys.name, rows = rows.len(), taken = kinds.len(), "CSV file taken");
        Ok(first.unwrap_or(Receipt {
            message_id: 0,
            status: LogStatus::Accepted,
            message_type: MessageType::Receipt,
            decision_id: None,
            order_id: None,
            visits: Vec::new(),
            verification: None,
            code: None,
        }))
    }

    /// Pages of a pulled feed (visits), taken by the visit flow in one commit.
    pub(crate) async fn take_pages(
        &self,
        sys: &System,
        pages: Vec<(Vec<u8>, Decoded, VisitBatch)>,
    ) -> Result<Vec<IngestReport>, Rejection> {
        self.flows.take_pages(sys, pages).await
    }

    /// Refuses a message `sys` sent whose body was not read (too large, unreadable), logging
    /// the refusal with an empty payload.
    pub async fn refuse_unread(
        &self,
        sys: &System,
        content_type: Option<&str>,
        code: ErrorCode,
        reason: String,
    ) -> Rejection {
        let inbound = Inbound {
            system: sys,
            body: Vec::new(),
            content_type: content_type.unwrap_or("application/octet-stream").to_owned(),
            decoded: None,
        };
        self.flows.reject(&inbound, code, reason, Correlation::default()).await
    }

    /// Queues a receipt file for `file`, saying what became of it.
    async fn queue_file_receipt(&self, sys: &System, file: &str, result: &Result<Receipt, Rejection>) {
        let system = sys.name.as_str();
        let receipt = match result {
            Ok(r) => carehub_model::FileReceipt {
                file: file.to_owned(),
                status: r.status.as_str().to_owned(),
                message_id: Some(r.message_id),
                error_code: None,
                error_message: None,
                decision_id: r.decision_id.clone(),
                order_id: r.order_id.clone(),
                at: self.flows.clock.now(),
            },
            Err(r) => carehub_model::FileReceipt {
                file: file.to_owned(),
                status: LogStatus::Rejected.as_str().to_owned(),
                message_id: r.message_id,
                error_code: Some(r.code.as_str().to_owned()),
                error_message: Some(r.message.clone()),
                decision_id: None,
                order_id: None,
                at: self.flows.clock.now(),
            },
        };
        let context = json!({ "receipt": receipt });
        let key = format!("receipt:{}:{}", file, receipt.message_id.unwrap_or_default());
        match sys.encode(MessageType::Receipt, &context) {
            Ok(rendered) => {
                let mut entry = crate::flows::outbound_entry(
                    sys,
                    MessageType::Receipt,
                    &rendered.content_type,
                    &rendered.body,
                    &key,
                );
                entry.canonical = serde_json::to_string(&receipt).ok();
                entry.decision_id.clone_from(&receipt.decision_id);
                entry.order_id.clone_from(&receipt.order_id);
                // The receipt concerns the order's client and provider too.
                if let Some(order_id) = &receipt.order_id {
                    match self.flows.store.order(order_id).await {
                        Ok(Some(record)) => Correlation::of(&record).apply(&mut entry),
                        Ok(None) => {}
                        Err(e) => warn!(system, error = %e, "cannot read the receipt's order"),
                    }
                }
                let ops = vec![
                    Op::AppendLog(entry),
                    Op::Enqueue(crate::flows::delivery(
                        &sys.name,
                        MessageType::Receipt,
                        receipt.order_id.clone(),
                        key,
                        rendered,
                        LogRef::Op(0),
                    )),
                ];
                match self.flows.store.commit(ops).await {
                    Ok(_) => self.flows.outbox_notify.notify_one(),
                    // The same file (by name and log entry) was receipted before.
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => warn!(system, error = %e, "cannot queue a file receipt"),
                }
            }
            Err(e) => warn!(system, code = e.code.as_str(), "cannot render a file receipt"),
        }
    }

    /// Registers an NFC tag in a client's home: the tag flow ([`crate::flows::tags`]). `source`
    /// is who registers (`api`, `import`, a system's name); `payload` is logged as sent.
    pub async fn register_tag(
        &self,
        source: &str,
        payload: Vec<u8>,
        parsed: Result<carehub_model::TagRegistration, carehub_model::ValidationError>,
        sender: &Sender,
    ) -> Result<i64, Rejection> {
        self.flows.register_tag(source, payload, parsed, sender).await
    }

    /// Renders waiting visits for their case-management systems and queues them, a chunk
    /// per commit, until none wait. Returns how many were queued.
    pub async fn forward_visits(&self) -> Result<usize, StoreError> {
        self.flows.forward_visits().await
    }

    /// Forwards visits whenever some were stored (and every `every`, in case a wake-up was
    /// missed), until `shutdown` changes.
    pub async fn run_visit_forwarder(&self, every: Duration, shutdown: tokio::sync::watch::Receiver<bool>) {
        let lease = crate::delivery::lease::Lease::always(FORWARDER_LEASE);
        self.flows.run_visit_forwarder(every, lease, shutdown).await;
    }

    /// [`run_visit_forwarder`](Self::run_visit_forwarder), forwarding only while this node
    /// holds `lease` ([`FORWARDER_LEASE`]): one node at a time forwards, from the watermark
    /// the last one committed.
    pub async fn run_visit_forwarder_leased(
        &self,
        every: Duration,
        lease: crate::delivery::lease::Lease,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        self.flows.run_visit_forwarder(every, lease, shutdown).await;
    }

    /// Puts dead letters (all, or these) back in the outbox.
    pub async fn replay(&self, ids: Option<Vec<i64>>) -> Result<Vec<Delivery>, StoreError> {
        let results = self.flows.store.commit(vec![Op::Requeue { ids }]).await?;
        self.flows.outbox_notify.notify_one();
        Ok(results
            .into_iter()
            .find_map(|r| match r {
                OpResult::Requeued(d) => Some(d),
                _ => None,
            })
            .unwrap_or_default())
    }
}
