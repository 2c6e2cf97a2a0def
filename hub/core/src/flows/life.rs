//! A decision's life (SPEC §4.4): later versions of a decision carried to the providers as
//! order changes, order ends and new orders, and what providers report back about a client
//! (deviations, changes of need) carried to the case officer.
//!
//! A change is checked against the latest version the hub holds: a repeat is answered as a
//! duplicate, an older one is logged and answered `stale` with `STALE_VERSION` and changes
//! nothing. A newer one is worked out by [`crate::rules::life::derive`]; the inbound entry,
//! the new version, every revised or new order and every message to a provider with its
//! delivery go to the store in one commit, which refuses a version that is no longer newer
//! (so two nodes taking versions 3 and 4 at once cannot apply 3 after 4). Deliveries start
//! at once: an end or a pause reaches the provider before its date whenever it is sent in
//! time.
//!
//! A deviation or change of need names the client (and the order when the provider's system
//! knows it); it is filed under the client's order at the provider on its day, stored, and
//! delivered to that order's case-management system in its format.

use std::sync::Arc;

use carehub_model::{
    Decision, DecisionChange, Deviation, ErrorCode, MessageType, NeedChange, OrgNumber, PersonalIdentityNumber,
    VersionStanding,
};
use chrono::NaiveDate;
use serde_json::{json, Value};
use tracing::info;

use super::decision::new_order_id;
use super::{logged_id, outbound_entry, store_unavailable, Correlation, Flows};
use crate::adapter::System;
use crate::intake::{Inbound, Receipt, Rejection, Sender};
use crate::rules::life::{derive, Effect, LiveOrder};
use crate::store::{
    DecisionVersion, LogRef, LogStatus, Op, OrderFilter, OrderRecord, OrderStatus, ProviderReport, StoreError,
};

/// A provider's report, deviation or change of need, as the flow handles both.
pub(crate) struct Report {
    kind: MessageType,
    id: String,
    provider: Option<OrgNumber>,
    client: PersonalIdentityNumber,
    order_id: Option<String>,
    day: NaiveDate,
    /// The deviation's kind, or the direction of the change of need.
    code: String,
    severity: Option<String>,
    canonical: Value,
}

fn text_of<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

impl From<Deviation> for Report {
    fn from(d: Deviation) -> Report {
        Report {
            kind: MessageType::Deviation,
            id: d.id.as_str().to_owned(),
            provider: d.provider.clone(),
            client: d.client.clone(),
            order_id: d.order_id.clone(),
            day: d.occurred_on,
            code: text_of(&d.kind),
            severity: Some(text_of(&d.severity)),
            canonical: serde_json::to_value(&d).unwrap_or_default(),
        }
    }
}

impl From<NeedChange> for Report {
    fn from(n: NeedChange) -> Report {
        Report {
            kind: MessageType::NeedChange,
            id: n.id.as_str().to_owned(),
            provider: n.provider.clone(),
            client: n.client.clone(),
            order_id: n.order_id.clone(),
            day: n.noticed_on,
            code: text_of(&n.direction),
            severity: None,
            canonical: serde_json::to_value(&n).unwrap_or_default(),
        }
    }
}

impl Flows {
    pub(crate) async fn on_decision_change(
        &self,
        inbound: &Inbound<'_>,
        change: DecisionChange,
    ) -> Result<Receipt, Rejection> {
        let id = change.decision_id.as_str().to_owned();
        let mut corr = Correlation { decision_id: Some(id.clone()), ..Correlation::default() };
        let Some(record) = self.store.decision(&id).await.map_err(store_unavailable)? else {
            let reason = format!("no decision with id {id}: a change follows its decision");
            return Err(self.reject(inbound, ErrorCode::UnknownDecision, reason, corr).await);
        };
        corr.client = Some(record.client.clone());
        corr.provider = Some(record.provider.clone());
        if record.system != inbound.system.name {
            let reason = format!("decision {id} came from another system; only that system may change it");
            return Err(self.reject(inbound, ErrorCode::Forbidden, reason, corr).await);
        }
        match change.standing(record.version) {
            VersionStanding::Duplicate => return self.duplicate(inbound, MessageType::DecisionChange, corr).await,
            VersionStanding::Stale => return self.stale(inbound, change.version, record.version, corr).await,
            VersionStanding::Newer => {}
        }
        let decision: Decision = serde_json::from_str(&record.canonical)
            .map_err(|e| Rejection::new(ErrorCode::Internal, format!("stored decision {id} does not read: {e}")))?;
        let filter = OrderFilter { decision_id: Some(id.clone()), limit: 1000, ..OrderFilter::default() };
        let records = self.store.orders(filter).await.map_err(store_unavailable)?;
        let live: Vec<LiveOrder> = records
            .iter()
            .map(|r| LiveOrder {
                order: r.order.clone(),
                rejected: r.ack_status == Some(carehub_model::AckStatus::Rejected),
            })
            .collect();
        let order_date = change.decided_at.map(carehub_model::local_date).unwrap_or_else(|| self.clock.today());
        let now = self.clock.now();
        let new_id = || new_order_id(&format!("{id}@{}", change.version), now);
        let derived = match derive(&decision, &live, &change, order_date, self.deadlines, new_id) {
            Ok(d) => d,
            Err(e) => return Err(self.reject(inbound, e.code, e.reason, corr).await),
        };

        let mut inbound_entry = inbound.entry(LogStatus::Accepted);
        // The receipt names the order the change leaves running: a switch's new order.
        corr.order_id = derived.effects.last().map(|e| e.order().id.clone());
        corr.provider = Some(derived.decision.provider.as_str().to_owned());
        corr.apply(&mut inbound_entry);
        let current =
            serde_json::to_string(&derived.decision).map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string()))?;
        let mut ops = vec![
            Op::AppendLog(inbound_entry),
            Op::ChangeDecision {
                version: DecisionVersion {
                    decision_id: id.clone(),
                    version: change.version,
                    effective_from: change.effective_from,
                    kind: change.change.as_str().to_owned(),
                    canonical: serde_json::to_value(&change).unwrap_or_default(),
                    system: inbound.system.name.clone(),
                    received_at: self.clock.now(),
                },
                current,
                provider: derived.decision.provider.as_str().to_owned(),
            },
        ];
        let mut sent = Vec::new();
        for effect in &derived.effects {
            let order = effect.order();
            let system_name = match effect {
                Effect::New { order } => match self.routes.get(order.provider.as_str()) {
                    Some(route) => route.system.clone(),
                    None => {
                        let reason = format!("no provider with organisation number {} is configured", order.provider);
                        return Err(self.reject(inbound, ErrorCode::UnknownProvider, reason, corr).await);
                    }
                },
                _ => records
                    .iter()
                    .find(|r| r.order.id == order.id)
                    .map(|r| r.provider_system.clone())
                    .unwrap_or_default(),
            };
            let Some(target) = self.registry.get(&system_name).cloned() else {
                let reason = format!("order {}'s provider system '{system_name}' is no longer configured", order.id);
                return Err(self.reject(inbound, ErrorCode::UnknownSystem, reason, corr).await);
            };
            let (kind, context, canonical, key) = match effect {
                Effect::Changed { order, message } => (
                    MessageType::OrderChange,
                    json!({ "order_change": message, "order": order }),
                    serde_json::to_string(message).ok(),
                    format!("{}:order_change:{}", order.id, change.version),
                ),
                Effect::Ended { order, message } => (
                    MessageType::OrderEnd,
                    json!({ "order_end": message, "order": order }),
                    serde_json::to_string(message).ok(),
                    format!("{}:order_end:{}", order.id, change.version),
                ),
                Effect::New { order } => (
                    MessageType::Order,
                    json!({ "order": order, "decision": derived.decision }),
                    serde_json::to_string(order).ok(),
                    format!("{}:order", order.id),
                ),
            };
            let rendered = match target.encode(kind, &context) {
                Ok(r) => r,
                Err(e) => return Err(self.cannot_render(inbound, &target, e, corr).await),
            };
            match effect {
                Effect::New { order } => ops.push(Op::InsertOrder(Box::new(OrderRecord::new(
                    order.clone(),
                    &inbound.system.name,
                    &target.name,
                    OrderStatus::Queued,
                    self.clock.now(),
                )))),
                Effect::Changed { order, message } => ops
                    .push(Op::ReviseOrder { order: Box::new(order.clone()), reconfirm: message.confirm_by.is_some() }),
                Effect::Ended { order, .. } => {
                    ops.push(Op::ReviseOrder { order: Box::new(order.clone()), reconfirm: false })
                }
            }
            let mut out = outbound_entry(&target, kind, &rendered.content_type, &rendered.body, &key);
            out.canonical = canonical;
            let mut order_corr = corr.clone();
            order_corr.order_id = Some(order.id.clone());
            order_corr.provider = Some(order.provider.as_str().to_owned());
            order_corr.apply(&mut out);
            ops.push(Op::AppendLog(out));
            let log = LogRef::Op(ops.len() - 1);
            ops.push(Op::Enqueue(super::delivery(&target.name, kind, Some(order.id.clone()), key, rendered, log)));
            sent.push((target.name.clone(), kind));
        }
        match self.store.commit(ops).await {
            Ok(results) => {
                self.outbox_notify.notify_one();
                self.metrics.message(&inbound.system.name, "in", "decision_change", LogStatus::Accepted);
                for (system, kind) in &sent {
                    self.metrics.message(system, "out", kind.as_str(), LogStatus::Queued);
                }
                info!(system = %inbound.system.name, decision = %id, version = change.version, kind = change.change.as_str(), messages = sent.len(), "decision change accepted");
                Ok(Receipt {
                    message_id: logged_id(&results).unwrap_or_default(),
                    status: LogStatus::Accepted,
                    message_type: MessageType::DecisionChange,
                    decision_id: corr.decision_id,
                    order_id: corr.order_id,
                    visits: Vec::new(),
                    verification: None,
                    code: None,
                })
            }
            // Another request stored this version, or a later one, between the look-up and
            // the commit.
            Err(StoreError::Conflict(_)) => self.duplicate(inbound, MessageType::DecisionChange, corr).await,
            Err(StoreError::Stale(_)) => {
                let latest = self.store.decision(&id).await.ok().flatten().map(|d| d.version);
                self.stale(inbound, change.version, latest.unwrap_or(change.version), corr).await
            }
            Err(e) => Err(store_unavailable(e)),
        }
    }

    /// Logs a version older than the latest and answers it: it changes nothing.
    async fn stale(
        &self,
        inbound: &Inbound<'_>,
        version: u32,
        latest: u32,
        corr: Correlation,
    ) -> Result<Receipt, Rejection> {
        let mut entry = inbound.entry(LogStatus::Stale);
        entry.error_code = Some(ErrorCode::StaleVersion.as_str().to_owned());
        entry.error_message = Some(format!(
            "version {version} is older than version {latest}, which the hub already holds; nothing changed"
        ));
        corr.apply(&mut entry);
        let results = self.store.commit(vec![Op::AppendLog(entry)]).await.map_err(store_unavailable)?;
        self.metrics.message(&inbound.system.name, "in", "decision_change", LogStatus::Stale);
        info!(system = %inbound.system.name, version, latest, "stale decision version");
        Ok(Receipt {
            message_id: logged_id(&results).unwrap_or_default(),
            status: LogStatus::Stale,
            message_type: MessageType::DecisionChange,
            decision_id: corr.decision_id,
            order_id: corr.order_id,
            visits: Vec::new(),
            verification: None,
            code: Some(ErrorCode::StaleVersion),
        })
    }

    pub(crate) async fn on_provider_report(
        &self,
        inbound: &Inbound<'_>,
        report: Report,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        let mut corr = Correlation { client: Some(report.client.expose().to_owned()), ..Correlation::default() };
        let served = self.providers_of(inbound.system);
        // A report that names no provider is the sending provider's (its token's), or the
        // one provider the system serves.
        let provider = match (&report.provider, sender, served.as_slice()) {
            (Some(p), _, _) => p.as_str().to_owned(),
            (None, Sender::Provider(org), _) => org.as_str().to_owned(),
            (None, Sender::Trusted, [only]) => (*only).to_owned(),
            (None, Sender::Trusted, _) => {
                let reason = "provider: the system serves several providers; the message must name one".to_owned();
                return Err(self.reject(inbound, ErrorCode::MissingField, reason, corr).await);
            }
        };
        corr.provider = Some(provider.clone());
        if !served.contains(&provider.as_str()) {
            let reason = format!("provider {provider} does not use {}", inbound.system.name);
            return Err(self.reject(inbound, ErrorCode::UnknownProvider, reason, corr).await);
        }
        if let Sender::Provider(org) = sender {
            if org.as_str() != provider {
                let reason = "the message names another provider".to_owned();
                return Err(self.reject(inbound, ErrorCode::Forbidden, reason, corr).await);
            }
        }
        let Some(record) = self.report_order(&report, &provider).await? else {
            let reason = match &report.order_id {
                Some(o) => format!("no order {o} for this client at provider {provider}"),
                None => format!("no order for this client at provider {provider} on {}", report.day),
            };
            return Err(self.reject(inbound, ErrorCode::UnknownOrder, reason, corr).await);
        };
        let Some(source) = self.registry.get(&record.source_system).cloned() else {
            let reason =
                format!("the order's case-management system '{}' is no longer configured", record.source_system);
            return Err(self.reject(inbound, ErrorCode::UnknownSystem, reason, Correlation::of(&record)).await);
        };
        self.report_to_case_officer(inbound, report, provider, &record, &source).await
    }

    /// The order a report is about: the one it names, or the client's order at the provider
    /// on its day (the latest that started by then, if none covers the day).
    async fn report_order(&self, report: &Report, provider: &str) -> Result<Option<OrderRecord>, Rejection> {
        let client = report.client.expose();
        if let Some(id) = &report.order_id {
            let found = self.store.order(id).await.map_err(store_unavailable)?;
            return Ok(found.filter(|r| r.order.provider.as_str() == provider && r.order.client.expose() == client));
        }
        let filter = OrderFilter {
            client: Some(client.to_owned()),
            provider: Some(provider.to_owned()),
            limit: 1000,
            ..OrderFilter::default()
        };
        let orders = self.store.orders(filter).await.map_err(store_unavailable)?;
        let started: Vec<&OrderRecord> = orders.iter().filter(|r| r.order.start_date <= report.day).collect();
        let covering = started.iter().rev().find(|r| r.order.end_date.is_none_or(|e| e >= report.day));
        Ok(covering.or(started.last()).map(|r| (*r).clone()))
    }

    async fn report_to_case_officer(
        &self,
        inbound: &Inbound<'_>,
        mut report: Report,
        provider: String,
        record: &OrderRecord,
        source: &Arc<System>,
    ) -> Result<Receipt, Rejection> {
        let kind = report.kind;
        // The case officer sees the order and the provider the hub filed it under.
        report.canonical["provider"] = json!(provider);
        report.canonical["order_id"] = json!(record.order.id);
        let context = json!({ kind.as_str(): report.canonical, "order": record.order });
        let key = format!("{}:{}", kind.as_str(), report.id);
        let canonical = Some(report.canonical.to_string());
        let store = Op::StoreProviderReport(ProviderReport {
            id: report.id,
            message_type: kind.as_str().to_owned(),
            kind: report.code,
            severity: report.severity,
            provider,
            client: report.client.expose().to_owned(),
            order_id: Some(record.order.id.clone()),
            day: report.day,
            system: inbound.system.name.clone(),
            canonical: report.canonical,
            received_at: self.clock.now(),
        });
        let message = super::answer::Forward { kind, context, record_op: store, key, canonical };
        self.forward(inbound, record, source, message).await
    }
}
