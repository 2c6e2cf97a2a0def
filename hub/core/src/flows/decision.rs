//! The decision flow (SPEC §4.1): a case officer's decision turned into an order for the
//! provider it names.
//!
//! A decision is stored once (by its id and a hash of its content, so a repeat is answered
//! as a duplicate and a changed one refused), its order is worked out
//! ([`carehub_model::Order::from_decision`]), rendered once for the provider's
//! time-registration system and queued in the outbox. The inbound message's log entry, the
//! decision, the order, the outbound entry and the delivery go to the store in one commit;
//! only then does the hub answer. What the provider sends back about the order is
//! [`super::answer`]'s.

use carehub_model::{Decision, ErrorCode, MessageType, Order};
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::info;

use super::{logged_id, outbound_entry, store_unavailable, Correlation, Flows};
use crate::intake::{Inbound, Receipt, Rejection};
use crate::store::{DecisionRecord, LogRef, LogStatus, Op, OrderRecord, OrderStatus, StoreError};

/// The hub's order id for a decision: stable, so a decision can never yield two orders.
pub fn order_id_for(decision_id: &str) -> String {
    let digest = Sha256::digest(decision_id.as_bytes());
    format!("O-{}", hex::encode_upper(&digest[..8]))
}

fn content_hash(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

impl Flows {
    pub(crate) async fn on_decision(&self, inbound: &Inbound<'_>, d: Decision) -> Result<Receipt, Rejection> {
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
                    version: 0,
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
                        code: None,
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
}
