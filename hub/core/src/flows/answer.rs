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
        self.forward(inbound, &record, &source, MessageType::OrderAck, context, Op::RecordAck(ack)).await
    }

    pub(crate) async fn on_plan(
        &self,
        inbound: &Inbound<'_>,
        plan: PlanNotice,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
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
                    code: None,
                })
            }
            // The same acknowledgement or plan notice was queued before.
            Err(StoreError::Conflict(_)) => self.duplicate(inbound, kind, corr).await,
            Err(e) => Err(store_unavailable(e)),
        }
    }
}
