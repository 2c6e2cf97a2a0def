//! The decision flow (SPEC §4.1), and for now the hub itself: what the hub does with a
//! message a system sent it.
//!
//! This module still holds [`Hub`], its entry points ([`Hub::receive`], [`Hub::take_file`]),
//! the answers the hub gives and the tag register, next to the decision flow proper. They
//! are to be split into `hub.rs` (the hub and its wiring) and `intake.rs` (what a payload
//! is, decided once) next; until then the other flows add their `impl Hub` blocks against
//! this one.
//!
//! [`Hub::receive`] decodes the payload with the sending system's mappings, validates it,
//! works out everything it changes (the decision, the order, the outbound messages) and
//! commits all of it, with the inbound message's log entry, in one durable store commit.
//! Only then does it answer; a refused message is logged as `rejected` with its code before
//! the refusal is answered. Outbound messages are rendered here, once, and stored in the
//! outbox exactly as they will be sent; the delivery loop ([`crate::delivery::outbox`]) sends them.

use std::collections::BTreeMap;
use std::sync::Arc;

use carehub_model::{
    Deadlines, Decision, ErrorCode, Message, MessageType, Order, OrderAck, OrgNumber, PlanNotice, ValidationError,
};
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tracing::{debug, info, warn, Instrument};

use crate::adapter::{Registry, System, SystemRole};
use crate::mapping::Decoded;
use crate::metrics::Metrics;
use crate::store::{DecisionRecord, LogRef, LogStatus, NewLogEntry, Op, OrderRecord, OrderStatus, Store, StoreError};

/// Where orders for a provider go.
#[derive(Debug, Clone)]
pub struct Route {
    pub provider_name: String,
    /// The name of the provider's time-registration system.
    pub system: String,
}

/// The answer to a message the hub took: it is durably logged under `message_id`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Receipt {
    pub message_id: i64,
    /// `accepted`, or `duplicate` when the same message was taken before.
    pub status: LogStatus,
    pub message_type: MessageType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// For visits: what became of each, in the order sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub visits: Vec<crate::store::VisitResult>,
    /// For an invoice or credit note: its verification report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<serde_json::Value>,
}

/// A message the hub refused: a stable code, a reason, and the log entry that records the
/// refusal when it got far enough to be logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    pub message_id: Option<i64>,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Rejection { code, message: message.into(), message_id: None }
    }
}

/// Who is sending, as authentication established it.
#[derive(Debug, Clone)]
pub enum Sender {
    /// A case-management system, an administrator, or an internal caller.
    Trusted,
    /// A provider's system, bound to the provider's organisation number.
    Provider(OrgNumber),
}

/// The hub's flows over a store and the configured systems.
pub struct Hub {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub routes: BTreeMap<String, Route>,
    pub deadlines: Deadlines,
    pub metrics: Arc<Metrics>,
    /// Woken whenever something was written to the outbox.
    pub outbox_notify: Arc<Notify>,
    /// The visit rules' thresholds (SPEC §6).
    pub visit_rules: crate::rules::visits::Thresholds,
    /// Woken whenever visits were stored that may go on to a case-management system.
    pub visit_notify: Arc<Notify>,
    /// The municipality's invoice verification policy (SPEC §7).
    pub invoice_policy: crate::rules::invoices::Policy,
    /// Where every "now" of the flows comes from.
    pub clock: carehub_model::Clock,
}

/// The hub's order id for a decision: stable, so a decision can never yield two orders.
pub fn order_id_for(decision_id: &str) -> String {
    let digest = Sha256::digest(decision_id.as_bytes());
    format!("O-{}", hex::encode_upper(&digest[..8]))
}

fn content_hash(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

pub(crate) fn store_unavailable(e: StoreError) -> Rejection {
    warn!(error = %e, "store commit failed");
    Rejection::new(ErrorCode::Unavailable, "the hub could not record the message; send it again later")
}

pub(crate) struct Inbound<'a> {
    pub(crate) system: &'a System,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: String,
    pub(crate) decoded: Option<Decoded>,
}

impl Inbound<'_> {
    pub(crate) fn entry(&self, status: LogStatus) -> NewLogEntry {
        NewLogEntry {
            system: self.system.name.clone(),
            vendor: self.system.vendor.to_owned(),
            direction: "in",
            message_type: self
                .decoded
                .as_ref()
                .map(|d| d.message_type.as_str().to_owned())
                .unwrap_or_else(|| "unknown".to_owned()),
            content_type: self.content_type.clone(),
            payload: self.body.clone(),
            canonical: self.decoded.as_ref().map(|d| d.canonical.clone()),
            status,
            ..NewLogEntry::default()
        }
    }
}

impl Hub {
    /// Takes a payload `system` sent. Answers only after the message (and everything it
    /// caused) is durably stored.
    pub async fn receive(
        &self,
        system: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        let span = tracing::info_span!("message", system, bytes = body.len());
        self.receive_in_span(system, body, content_type, sender).instrument(span).await
    }

    async fn receive_in_span(
        &self,
        system: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        let sys = self
            .registry
            .get(system)
            .ok_or_else(|| {
                Rejection::new(ErrorCode::UnknownSystem, format!("no system named '{system}' is configured"))
            })?
            .clone();
        if sys.role == SystemRole::ProviderSystem && crate::flows::invoice::is_ubl(&body) {
            return self.on_invoice(&sys, body, content_type.unwrap_or("application/xml"), sender).await;
        }
        if sys.role == SystemRole::ProviderSystem {
            if let Some((text, rows)) = crate::flows::invoice::invoice_rows(&sys, &body) {
                return self.take_invoice_rows(&sys, &text, rows, sender).await;
            }
        }
        let decoded = sys.decode(&body);
        self.dispatch(&sys, body, content_type.unwrap_or("application/octet-stream"), decoded, sender).await
    }

    /// Acts on a decoded (or undecodable) message: refuses it with its code, or hands it to
    /// its flow.
    pub(crate) async fn dispatch(
        &self,
        sys: &System,
        body: Vec<u8>,
        content_type: &str,
        decoded: Result<(Decoded, Message), (Option<Decoded>, ValidationError)>,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        let mut inbound = Inbound { system: sys, content_type: content_type.to_owned(), body, decoded: None };
        let message = match decoded {
            Ok((decoded, message)) => {
                inbound.decoded = Some(decoded);
                message
            }
            Err((decoded, e)) => {
                inbound.decoded = decoded;
                return Err(self.reject(&inbound, e.code, e.reason, Default::default()).await);
            }
        };
        match (message, sys.role) {
            (Message::Decision(d), SystemRole::CaseManagement) => self.on_decision(&inbound, d).await,
            (Message::OrderAck(a), SystemRole::ProviderSystem) => self.on_ack(&inbound, a, sender).await,
            (Message::PlanNotice(p), SystemRole::ProviderSystem) => self.on_plan(&inbound, p, sender).await,
            (Message::Visit(v), SystemRole::ProviderSystem) => {
                self.on_visits(&inbound, vec![*v], None, sender, MessageType::Visit).await
            }
            (Message::Visits(b), SystemRole::ProviderSystem) => {
                self.on_visits(&inbound, b.visits, b.cursor, sender, MessageType::Visits).await
            }
            (m, role) => {
                let reason = format!("a {} system does not send {} messages", role.as_str(), m.message_type());
                Err(self.reject(&inbound, ErrorCode::MessageNotAllowed, reason, Default::default()).await)
            }
        }
    }

    /// Takes a CSV file row by row. Each row is its own message in the log (the header and
    /// that row, as UTF-8 text), answered by its flow; a bad row is logged as rejected with
    /// its line number and does not stop the others. The file as a whole is refused only
    /// when it cannot be read as CSV at all. The answer describes the file: `accepted`, with
    /// the first row's log entry.
    async fn take_rows(&self, sys: &System, bytes: Vec<u8>) -> Result<Receipt, Rejection> {
        let text = match crate::mapping::text::decode(&bytes, sys.mappings.inbound_encoding()) {
            Ok(t) => t.into_owned(),
            Err(e) => return self.dispatch(sys, bytes, "text/csv", Err((None, e)), &Sender::Trusted).await,
        };
        let rows = match sys.mappings.decode_rows(&text) {
            Ok(rows) => rows,
            Err(e) => return self.dispatch(sys, bytes, "text/csv", Err((None, e)), &Sender::Trusted).await,
        };
        if rows.iter().any(|r| matches!(&r.result, Ok(d) if d.message_type == MessageType::Visit)) {
            return self.take_visit_rows(sys, bytes, rows).await;
        }
        if rows.iter().any(|r| matches!(&r.result, Ok(d) if d.message_type == MessageType::InvoiceLine)) {
            return self.take_invoice_rows(sys, &text, rows, &Sender::Trusted).await;
        }
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
            match self.dispatch(sys, payload.into_bytes(), "text/csv; charset=utf-8", decoded, &Sender::Trusted).await {
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
        }))
    }

    /// Refuses a message whose body was not read (too large, unreadable), logging the
    /// refusal with an empty payload.
    pub async fn refuse_unread(
        &self,
        system: &str,
        content_type: Option<&str>,
        code: ErrorCode,
        reason: String,
    ) -> Rejection {
        let Some(sys) = self.registry.get(system).cloned() else {
            return Rejection::new(ErrorCode::UnknownSystem, format!("no system named '{system}' is configured"));
        };
        let inbound = Inbound {
            system: &sys,
            body: Vec::new(),
            content_type: content_type.unwrap_or("application/octet-stream").to_owned(),
            decoded: None,
        };
        self.reject(&inbound, code, reason, Correlation::default()).await
    }

    /// Logs the inbound message as rejected and builds the refusal.
    pub(crate) async fn reject(
        &self,
        inbound: &Inbound<'_>,
        code: ErrorCode,
        reason: String,
        corr: Correlation,
    ) -> Rejection {
        let mut entry = inbound.entry(LogStatus::Rejected);
        entry.error_code = Some(code.as_str().to_owned());
        entry.error_message = Some(reason.clone());
        corr.apply(&mut entry);
        self.metrics.rejection(&inbound.system.name, code.as_str());
        self.metrics.message(&inbound.system.name, "in", &entry.message_type, LogStatus::Rejected);
        info!(system = %inbound.system.name, code = code.as_str(), "message rejected");
        match self.store.commit(vec![Op::AppendLog(entry)]).await {
            Ok(results) => Rejection { code, message: reason, message_id: logged_id(&results) },
            Err(e) => store_unavailable(e),
        }
    }

    async fn duplicate(
        &self,
        inbound: &Inbound<'_>,
        kind: MessageType,
        corr: Correlation,
    ) -> Result<Receipt, Rejection> {
        let mut entry = inbound.entry(LogStatus::Duplicate);
        corr.apply(&mut entry);
        let results = self.store.commit(vec![Op::AppendLog(entry)]).await.map_err(store_unavailable)?;
        self.metrics.message(&inbound.system.name, "in", kind.as_str(), LogStatus::Duplicate);
        debug!(system = %inbound.system.name, "duplicate message");
        Ok(Receipt {
            message_id: logged_id(&results).unwrap_or_default(),
            status: LogStatus::Duplicate,
            message_type: kind,
            decision_id: corr.decision_id,
            order_id: corr.order_id,
            visits: Vec::new(),
            verification: None,
        })
    }

    async fn on_decision(&self, inbound: &Inbound<'_>, d: Decision) -> Result<Receipt, Rejection> {
        let order_id = order_id_for(d.id.as_str());
        let corr = Correlation {
            decision_id: Some(d.id.as_str().to_owned()),
            order_id: Some(order_id.clone()),
            client: Some(d.client.expose().to_owned()),
            provider: Some(d.provider.as_str().to_owned()),
        };
        let canonical = serde_json::to_string(&d).map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string()))?;
        let hash = content_hash(&canonical);
        for _ in 0..2 {
            if let Some(existing) = self.store.decision(d.id.as_str()).await.map_err(store_unavailable)? {
                if existing.content_hash == hash {
                    return self.duplicate(inbound, MessageType::Decision, corr).await;
                }
                let reason = format!("decision {} was received before with different content", d.id);
                return Err(self.reject(inbound, ErrorCode::DecisionConflict, reason, corr).await);
            }
            let Some(route) = self.routes.get(d.provider.as_str()) else {
                let reason = format!("no provider with organisation number {} is configured", d.provider);
                return Err(self.reject(inbound, ErrorCode::UnknownProvider, reason, corr).await);
            };
            let target = self
                .registry
                .get(&route.system)
                .ok_or_else(|| Rejection::new(ErrorCode::Internal, "the provider's system is not configured"))?;
            let order_date = d.decided_at.map(carehub_model::local_date).unwrap_or_else(|| self.clock.today());
            let order = Order::from_decision(order_id.clone(), &d, order_date, self.deadlines);
            let context = json!({ "order": order, "decision": d });
            let rendered = match target.encode(MessageType::Order, &context) {
                Ok(r) => r,
                Err(e) => return Err(self.cannot_render(inbound, target, e, corr).await),
            };
            let key = format!("{order_id}:order");
            let mut inbound_entry = inbound.entry(LogStatus::Accepted);
            corr.apply(&mut inbound_entry);
            let mut out_entry =
                outbound_entry(target, MessageType::Order, &rendered.content_type, &rendered.body, &key);
            out_entry.canonical = serde_json::to_string(&order).ok();
            corr.apply(&mut out_entry);
            let ops = vec![
                Op::AppendLog(inbound_entry),
                Op::InsertDecision(DecisionRecord {
                    id: d.id.as_str().to_owned(),
                    system: inbound.system.name.clone(),
                    content_hash: hash.clone(),
                    client: d.client.expose().to_owned(),
                    provider: d.provider.as_str().to_owned(),
                    canonical: canonical.clone(),
                    received_at: self.clock.now(),
                }),
                Op::InsertOrder(Box::new(OrderRecord::new(
                    order.clone(),
                    &inbound.system.name,
                    &target.name,
                    OrderStatus::Queued,
                    self.clock.now(),
                ))),
                Op::AppendLog(out_entry),
                Op::Enqueue(super::delivery(
                    &target.name,
                    MessageType::Order,
                    Some(order_id.clone()),
                    key,
                    rendered,
                    LogRef::Op(3),
                )),
            ];
            match self.store.commit(ops).await {
                Ok(results) => {
                    self.outbox_notify.notify_one();
                    self.metrics.message(&inbound.system.name, "in", "decision", LogStatus::Accepted);
                    self.metrics.message(&target.name, "out", "order", LogStatus::Queued);
                    info!(system = %inbound.system.name, order = %order_id, to = %target.name, "decision accepted, order queued");
                    return Ok(Receipt {
                        message_id: logged_id(&results).unwrap_or_default(),
                        status: LogStatus::Accepted,
                        message_type: MessageType::Decision,
                        decision_id: corr.decision_id,
                        order_id: corr.order_id,
                        visits: Vec::new(),
                        verification: None,
                    });
                }
                // Another request stored the same decision between our look-up and our
                // commit: look again, and answer as for a repeat.
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(store_unavailable(e)),
            }
        }
        Err(Rejection::new(ErrorCode::Unavailable, "the decision is being stored concurrently; send it again"))
    }

    /// Looks up the order an ack or plan refers to and checks the sender may speak for it.
    async fn order_for(
        &self,
        inbound: &Inbound<'_>,
        order_id: &str,
        sender: &Sender,
    ) -> Result<(OrderRecord, Arc<System>), Rejection> {
        let corr = Correlation { order_id: Some(order_id.to_owned()), ..Correlation::default() };
        let Some(record) = self.store.order(order_id).await.map_err(store_unavailable)? else {
            let reason = format!("no order with id {order_id}");
            return Err(self.reject(inbound, ErrorCode::UnknownOrder, reason, corr).await);
        };
        let corr = Correlation::of(&record);
        if let Sender::Provider(org) = sender {
            if org != &record.order.provider {
                let reason = "the order belongs to another provider".to_owned();
                return Err(self.reject(inbound, ErrorCode::Forbidden, reason, corr).await);
            }
        }
        if record.provider_system != inbound.system.name {
            let reason = format!("order {order_id} was sent to another system");
            return Err(self.reject(inbound, ErrorCode::UnknownOrder, reason, corr).await);
        }
        let Some(source) = self.registry.get(&record.source_system).cloned() else {
            let reason =
                format!("the order's case-management system '{}' is no longer configured", record.source_system);
            return Err(self.reject(inbound, ErrorCode::UnknownSystem, reason, corr).await);
        };
        Ok((record, source))
    }

    async fn on_ack(&self, inbound: &Inbound<'_>, ack: OrderAck, sender: &Sender) -> Result<Receipt, Rejection> {
        let (record, source) = self.order_for(inbound, &ack.order_id, sender).await?;
        let context = json!({ "ack": ack, "order": record.order });
        self.forward(inbound, &record, &source, MessageType::OrderAck, context, Op::RecordAck(ack)).await
    }

    async fn on_plan(&self, inbound: &Inbound<'_>, plan: PlanNotice, sender: &Sender) -> Result<Receipt, Rejection> {
        let (record, source) = self.order_for(inbound, &plan.order_id, sender).await?;
        let context = json!({ "plan": plan, "order": record.order });
        self.forward(inbound, &record, &source, MessageType::PlanNotice, context, Op::RecordPlan(plan)).await
    }

    /// Records a provider's message on its order and queues it for the case-management
    /// system the decision came from.
    async fn forward(
        &self,
        inbound: &Inbound<'_>,
        record: &OrderRecord,
        source: &System,
        kind: MessageType,
        context: serde_json::Value,
        record_op: Op,
    ) -> Result<Receipt, Rejection> {
        let corr = Correlation::of(record);
        let rendered = match source.encode(kind, &context) {
            Ok(r) => r,
            Err(e) => return Err(self.cannot_render(inbound, source, e, corr).await),
        };
        let key = format!("{}:{}", record.order.id, kind.as_str());
        let mut inbound_entry = inbound.entry(LogStatus::Accepted);
        corr.apply(&mut inbound_entry);
        let mut out_entry = outbound_entry(source, kind, &rendered.content_type, &rendered.body, &key);
        out_entry.canonical = context
            .get(match kind {
                MessageType::OrderAck => "ack",
                _ => "plan",
            })
            .map(|v| v.to_string());
        corr.apply(&mut out_entry);
        let ops = vec![
            Op::AppendLog(inbound_entry),
            record_op,
            Op::AppendLog(out_entry),
            Op::Enqueue(super::delivery(
                &source.name,
                kind,
                Some(record.order.id.clone()),
                key,
                rendered,
                LogRef::Op(2),
            )),
        ];
        match self.store.commit(ops).await {
            Ok(results) => {
                self.outbox_notify.notify_one();
                self.metrics.message(&inbound.system.name, "in", kind.as_str(), LogStatus::Accepted);
                self.metrics.message(&source.name, "out", kind.as_str(), LogStatus::Queued);
                info!(system = %inbound.system.name, order = %record.order.id, kind = kind.as_str(), to = %source.name, "forwarded to case management");
                Ok(Receipt {
                    message_id: logged_id(&results).unwrap_or_default(),
                    status: LogStatus::Accepted,
                    message_type: kind,
                    decision_id: corr.decision_id,
                    order_id: corr.order_id,
                    visits: Vec::new(),
                    verification: None,
                })
            }
            // The same acknowledgement or plan notice was queued before.
            Err(StoreError::Conflict(_)) => self.duplicate(inbound, kind, corr).await,
            Err(e) => Err(store_unavailable(e)),
        }
    }

    async fn cannot_render(
        &self,
        inbound: &Inbound<'_>,
        target: &System,
        e: ValidationError,
        corr: Correlation,
    ) -> Rejection {
        warn!(system = %target.name, code = e.code.as_str(), "cannot render for the receiving system");
        // A missing mapping is the hub's fault, not the sender's: it is logged and answered
        // as such (5xx), and `carehub check` names it beforehand.
        let (code, reason) = match e.code {
            ErrorCode::HubMisconfigured => (
                ErrorCode::HubMisconfigured,
                format!("the hub is misconfigured: {} ({}): {}", target.name, target.vendor, e.reason),
            ),
            _ => (ErrorCode::InvalidValue, format!("the message cannot be rendered for {}: {}", target.name, e.reason)),
        };
        self.reject(inbound, code, reason, corr).await
    }

    /// Takes a file a system left in its inbox: [`Hub::receive`] it, then, when the vendor
    /// wants receipts (it has an outbound `receipt` mapping), queue a receipt file saying what
    /// became of it. Callers move the file only after this returns, and leave it in place on
    /// `UNAVAILABLE` so the next poll tries again.
    pub async fn take_file(&self, system: &str, file: &str, bytes: Vec<u8>) -> Result<Receipt, Rejection> {
        let result = match self.registry.get(system).cloned() {
            Some(sys) if sys.reads_csv() && is_csv(file, &bytes) => self.take_rows(&sys, bytes).await,
            _ => self.receive(system, bytes, Some(content_type_of(file)), &Sender::Trusted).await,
        };
        if matches!(&result, Err(r) if r.code == ErrorCode::Unavailable) {
            return result;
        }
        let Some(sys) = self.registry.get(system).cloned() else { return result };
        if sys.mappings.outbound(MessageType::Receipt).is_none() {
            return result;
        }
        let receipt = match &result {
            Ok(r) => carehub_model::FileReceipt {
                file: file.to_owned(),
                status: r.status.as_str().to_owned(),
                message_id: Some(r.message_id),
                error_code: None,
                error_message: None,
                decision_id: r.decision_id.clone(),
                order_id: r.order_id.clone(),
                at: self.clock.now(),
            },
            Err(r) => carehub_model::FileReceipt {
                file: file.to_owned(),
                status: LogStatus::Rejected.as_str().to_owned(),
                message_id: r.message_id,
                error_code: Some(r.code.as_str().to_owned()),
                error_message: Some(r.message.clone()),
                decision_id: None,
                order_id: None,
                at: self.clock.now(),
            },
        };
        let context = json!({ "receipt": receipt });
        let key = format!("receipt:{}:{}", file, receipt.message_id.unwrap_or_default());
        match sys.encode(MessageType::Receipt, &context) {
            Ok(rendered) => {
                let mut entry =
                    outbound_entry(&sys, MessageType::Receipt, &rendered.content_type, &rendered.body, &key);
                entry.canonical = serde_json::to_string(&receipt).ok();
                entry.decision_id.clone_from(&receipt.decision_id);
                entry.order_id.clone_from(&receipt.order_id);
                // The receipt concerns the order's client and provider too.
                if let Some(order_id) = &receipt.order_id {
                    match self.store.order(order_id).await {
                        Ok(Some(record)) => Correlation::of(&record).apply(&mut entry),
                        Ok(None) => {}
                        Err(e) => warn!(system, error = %e, "cannot read the receipt's order"),
                    }
                }
                let ops = vec![
                    Op::AppendLog(entry),
                    Op::Enqueue(super::delivery(
                        &sys.name,
                        MessageType::Receipt,
                        receipt.order_id.clone(),
                        key,
                        rendered,
                        LogRef::Op(0),
                    )),
                ];
                match self.store.commit(ops).await {
                    Ok(_) => self.outbox_notify.notify_one(),
                    // The same file (by name and log entry) was receipted before.
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => warn!(system, error = %e, "cannot queue a file receipt"),
                }
            }
            Err(e) => warn!(system, code = e.code.as_str(), "cannot render a file receipt"),
        }
        result
    }

    /// Registers an NFC tag in a client's home. The registration is a message like any
    /// other: logged (from `source`, `api` or `import`) with its outcome before the answer;
    /// a refusal is logged as rejected with its code.
    ///
    /// A provider's system registers tags for its own clients only (`Hub::may_register`):
    /// a tag decides whose visits VIS002 rejects, so a provider that could hang another
    /// provider's client's tag in its own client's home could have that provider's genuine
    /// visits rejected and unpaid.
    pub async fn register_tag(
        &self,
        source: &str,
        payload: Vec<u8>,
        parsed: Result<carehub_model::TagRegistration, ValidationError>,
        sender: &Sender,
    ) -> Result<i64, Rejection> {
        let mut entry = NewLogEntry {
            system: source.to_owned(),
            vendor: "carehub".to_owned(),
            direction: "in",
            message_type: "tag_registration".to_owned(),
            content_type: "application/json".to_owned(),
            payload,
            ..NewLogEntry::default()
        };
        let refuse = |mut entry: NewLogEntry, code: ErrorCode, reason: String| async move {
            entry.status = LogStatus::Rejected;
            entry.error_code = Some(code.as_str().to_owned());
            entry.error_message = Some(reason.clone());
            match self.store.commit(vec![Op::AppendLog(entry)]).await {
                Ok(results) => Rejection { code, message: reason, message_id: logged_id(&results) },
                Err(e) => store_unavailable(e),
            }
        };
        let tag = match parsed.and_then(|t| t.validate().map(|_| t)) {
            Ok(t) => t,
            Err(e) => return Err(refuse(entry, e.code, e.reason).await),
        };
        entry.client = Some(tag.client.expose().to_owned());
        entry.canonical = serde_json::to_string(&tag).ok();
        if let Sender::Provider(org) = sender {
            entry.provider = Some(org.as_str().to_owned());
            if let Err(reason) = self.may_register(org, &tag).await? {
                return Err(refuse(entry, ErrorCode::Forbidden, reason).await);
            }
        }
        let mut accepted = entry.clone();
        accepted.status = LogStatus::Accepted;
        match self.store.commit(vec![Op::AppendLog(accepted), Op::RegisterTag(tag)]).await {
            Ok(results) => Ok(logged_id(&results).unwrap_or_default()),
            Err(StoreError::Conflict(why)) => {
                let reason = format!("{why}: a registration cannot start before the tag's latest one");
                Err(refuse(entry, ErrorCode::TagConflict, reason).await)
            }
            Err(e) => Err(store_unavailable(e)),
        }
    }

    /// Whether provider `org` may register `tag`: its client must have an active order at
    /// `org` on the installation day, and the home the tag leaves (its open registration, which
    /// ends the day before) must not be that of another provider's client on that day. A
    /// home whose client has no active order anywhere is no provider's to defend. The reason
    /// when not; `Err` when the store cannot say.
    async fn may_register(
        &self,
        org: &OrgNumber,
        tag: &carehub_model::TagRegistration,
    ) -> Result<Result<(), String>, Rejection> {
        let day = tag.installed_on;
        let providers = self.store.client_providers(tag.client.expose(), day).await.map_err(store_unavailable)?;
        if !providers.iter().any(|p| p == org.as_str()) {
            return Ok(Err(format!(
                "provider {org} may register tags only for its own clients: the client has no active order at {org} on {day}"
            )));
        }
        let history = self.store.tags(None, Some(tag.tag_uid.as_str().to_owned())).await.map_err(store_unavailable)?;
        let Some(home) = history.iter().rev().find(|t| t.removed_on.is_none()) else { return Ok(Ok(())) };
        if home.client == tag.client {
            return Ok(Ok(()));
        }
        let theirs = self.store.client_providers(home.client.expose(), day).await.map_err(store_unavailable)?;
        if !theirs.is_empty() && !theirs.iter().any(|p| p == org.as_str()) {
            return Ok(Err(format!(
                "tag {} hangs in the home of another provider's client; provider {org} may not move it \
                 (case management or an administrator may)",
                tag.tag_uid.as_str()
            )));
        }
        Ok(Ok(()))
    }

    /// Puts dead letters (all, or these) back in the outbox.
    pub async fn replay(&self, ids: Option<Vec<i64>>) -> Result<Vec<crate::store::Delivery>, StoreError> {
        let results = self.store.commit(vec![Op::Requeue { ids }]).await?;
        self.outbox_notify.notify_one();
        Ok(results
            .into_iter()
            .find_map(|r| match r {
                crate::store::OpResult::Requeued(d) => Some(d),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// Today in the municipality's calendar (Europe/Stockholm) by the hub's clock, for
    /// deadlines.
    pub fn today(&self) -> chrono::NaiveDate {
        self.clock.today()
    }
}

/// The correlation ids a log entry carries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Correlation {
    pub(crate) decision_id: Option<String>,
    pub(crate) order_id: Option<String>,
    pub(crate) client: Option<String>,
    pub(crate) provider: Option<String>,
}

impl Correlation {
    pub(crate) fn of(record: &OrderRecord) -> Self {
        Correlation {
            decision_id: Some(record.order.decision_id.as_str().to_owned()),
            order_id: Some(record.order.id.clone()),
            client: Some(record.order.client.expose().to_owned()),
            provider: Some(record.order.provider.as_str().to_owned()),
        }
    }

    pub(crate) fn apply(&self, e: &mut NewLogEntry) {
        e.decision_id.clone_from(&self.decision_id);
        e.order_id.clone_from(&self.order_id);
        e.client.clone_from(&self.client);
        e.provider.clone_from(&self.provider);
    }
}

pub(crate) fn outbound_entry(
    target: &System,
    kind: MessageType,
    content_type: &str,
    body: &[u8],
    key: &str,
) -> NewLogEntry {
    NewLogEntry {
        system: target.name.clone(),
        vendor: target.vendor.to_owned(),
        direction: "out",
        message_type: kind.as_str().to_owned(),
        content_type: content_type.to_owned(),
        payload: body.to_vec(),
        status: LogStatus::Queued,
        delivery_key: Some(key.to_owned()),
        ..NewLogEntry::default()
    }
}

/// Whether a file is a CSV batch: by its name, or by not looking like XML or JSON.
fn is_csv(file: &str, bytes: &[u8]) -> bool {
    let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF);
    file.to_ascii_lowercase().ends_with(".csv") || !matches!(first, Some(b'<' | b'{' | b'['))
}

/// The content type a file's name suggests.
fn content_type_of(file: &str) -> &'static str {
    match file.rsplit('.').next().map(str::to_ascii_lowercase).as_deref() {
        Some("xml") => "application/xml",
        Some("json") => "application/json",
        Some("csv") => "text/csv",
        _ => "application/octet-stream",
    }
}

pub(crate) fn logged_id(results: &[crate::store::OpResult]) -> Option<i64> {
    results.iter().find_map(|r| match r {
        crate::store::OpResult::Logged(id) => Some(*id),
        _ => None,
    })
}
