//! The answer flow (SPEC §4.1): what a provider's system sends back about an order, its
//! acknowledgement and its plan notice, recorded on the order and carried to the
//! case-management system the decision came from.
//!
//! The sender must be the provider the order went to, through the system it went to. The
//! message is recorded on the order, rendered once for the case-management system and
//! queued, with both log entries, in one commit; the same answer sent twice is queued once
//! (the delivery's key) and answered as a duplicate.

use std::sync::Arc;

use carehub_model::{ErrorCode, MessageType, OrderAck, PlanNotice};
use serde_json::json;
use tracing::info;

use super::{logged_id, outbound_entry, store_unavailable, Correlation, Flows};
use crate::adapter::System;
use crate::intake::{Inbound, Receipt, Rejection, Sender};
use crate::store::{LogRef, LogStatus, Op, OrderRecord, StoreError};

/// What [`Flows::forward`] carries to case management: the message's kind, the context its
/// mapping renders, the op recording it on the hub's side, the delivery's idempotency key,
/// and the outbound entry's canonical form.
pub(super) struct Forward {
    pub(super) kind: MessageType,
    pub(super) context: serde_json::Value,
    pub(super) record_op: Op,
    pub(super) key: String,
    pub(super) canonical: Option<String>,
}

impl Flows {
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

    pub(crate) async fn on_ack(
        &self,
        inbound: &Inbound<'_>,
        ack: OrderAck,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        let (record, source) = self.order_for(inbound, &ack.order_id, sender).await?;
        let context = json!({ "ack": ack, "order": record.order });
        let message = Forward {
            kind: MessageType::OrderAck,
            key: format!("{}:order_ack", record.order.id),
            canonical: serde_json::to_string(&ack).ok(),
            context,
            record_op: Op::RecordAck(ack),
        };
        self.forward(inbound, &record, &source, message).await
    }

    pub(crate) async fn on_plan(
        &self,
        inbound: &Inbound<'_>,
        plan: PlanNotice,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        let (record, source) = self.order_for(inbound, &plan.order_id, sender).await?;
        let context = json!({ "plan": plan, "order": record.order });
        let message = Forward {
            kind: MessageType::PlanNotice,
            key: format!("{}:plan_notice", record.order.id),
            canonical: serde_json::to_string(&plan).ok(),
            context,
            record_op: Op::RecordPlan(plan),
        };
        self.forward(inbound, &record, &source, message).await
    }

    /// Records a provider's message on its order (`record_op`) and queues it for the
    /// case-management system the decision came from, under the idempotency `key`: the one
    /// path by which what a provider says about an order (an answer, a plan, a deviation,
    /// a change of need) reaches case management. The outbound entry keeps `canonical` as
    /// its canonical form. The same message again (its key, or what `record_op` stores,
    /// already taken) is answered as a duplicate.
    pub(super) async fn forward(
        &self,
        inbound: &Inbound<'_>,
        record: &OrderRecord,
        source: &System,
        message: Forward,
    ) -> Result<Receipt, Rejection> {
        let Forward { kind, context, record_op, key, canonical } = message;
        let corr = Correlation::of(record);
        let rendered = match source.encode(kind, &context) {
            Ok(r) => r,
            Err(e) => return Err(self.cannot_render(inbound, source, e, corr).await),
        };
        let mut inbound_entry = inbound.entry(LogStatus::Accepted);
        corr.apply(&mut inbound_entry);
        let mut out_entry = outbound_entry(source, kind, &rendered.content_type, &rendered.body, &key);
        out_entry.canonical = canonical;
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
                    code: None,
                })
            }
            // The same message was queued (or stored) before.
            Err(StoreError::Conflict(_)) => self.duplicate(inbound, kind, corr).await,
            Err(e) => Err(store_unavailable(e)),
        }
    }
}
