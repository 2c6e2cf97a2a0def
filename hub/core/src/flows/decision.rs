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
use chrono::{DateTime, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};
use tracing::info;

use super::{logged_id, outbound_entry, store_unavailable, Correlation, Flows};
use crate::intake::{Inbound, Receipt, Rejection};
use crate::store::{DecisionRecord, LogRef, LogStatus, Op, OrderRecord, OrderStatus, StoreError};

/// The id of an order made at `at` (the hub's clock) from `source`: the decision's id, or
/// the decision's id and the version that made the order (`id@version`).
///
/// `O-`, the instant's milliseconds in 12 hex digits, then 12 of a SHA-256 of `source`
/// (`O-01A202DEB7002FD54EB2443A`). Orders made later get ids that sort later, so an order's
/// entries in the indexes keyed by order id (the orders table's own, the outbox's, the
/// message log's) go in at the end of each index, a page or two a commit. An id that was
/// a hash alone put each one on a page of its own: the bare SQLite loop with the hub's
/// keys wrote 50 KiB per decision with hashed ids and 12 with these (`carehub bench
/// decisions`, BENCHMARKS.md). The hash keeps apart orders made in the same millisecond.
///
/// An order's id is stored with it and found by its decision ([`OrderStore::first_order_of`]),
/// never worked out again; that a decision yields one order is the store's to hold (a
/// decision is stored once, in the commit that stores its order).
///
/// [`OrderStore::first_order_of`]: crate::store::OrderStore::first_order_of
pub fn new_order_id(source: &str, at: DateTime<Utc>) -> String {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    let digest = Sha256::digest(source.as_bytes());
    format!("O-{millis:012X}{}", hex::encode_upper(&digest[..6]))
}

fn content_hash(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

impl Flows {
    pub(crate) async fn on_decision(&self, inbound: &Inbound<'_>, d: Decision) -> Result<Receipt, Rejection> {
        let mut corr = Correlation {
            decision_id: Some(d.id.as_str().to_owned()),
            order_id: None,
            client: Some(d.client.expose().to_owned()),
            provider: Some(d.provider.as_str().to_owned()),
        };
        let canonical = serde_json::to_string(&d).map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string()))?;
        let hash = content_hash(&canonical);
        for pass in 0..2 {
            let route = self.routes.get(d.provider.as_str());
            // A decision received before is answered from its record. The first pass does
            // not look when the decision can be stored: the store refuses a second copy
            // (`Conflict`, below) and the next pass looks then. Repeats are rare, and the
            // look-up was a read of its own on every decision.
            if pass > 0 || route.is_none() {
                if let Some(existing) = self.store.decision(d.id.as_str()).await.map_err(store_unavailable)? {
                    // The answer names the order the decision made first.
                    let first = self.store.first_order_of(&existing.id).await.map_err(store_unavailable)?;
                    corr.order_id = first.map(|o| o.order.id);
                    if existing.content_hash == hash {
                        return self.duplicate(inbound, MessageType::Decision, corr).await;
                    }
                    let reason = format!("decision {} was received before with different content", d.id);
                    return Err(self.reject(inbound, ErrorCode::DecisionConflict, reason, corr).await);
                }
            }
            let Some(route) = route else {
                let reason = format!("no provider with organisation number {} is configured", d.provider);
                return Err(self.reject(inbound, ErrorCode::UnknownProvider, reason, corr).await);
            };
            let target = self
                .registry
                .get(&route.system)
                .ok_or_else(|| Rejection::new(ErrorCode::Internal, "the provider's system is not configured"))?;
            let order_date = d.decided_at.map(carehub_model::local_date).unwrap_or_else(|| self.clock.today());
            let order_id = new_order_id(d.id.as_str(), self.clock.now());
            corr.order_id = Some(order_id.clone());
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
                // The decision is stored (received before, or by a request racing this
                // one): look it up, and answer as for a repeat.
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(store_unavailable(e)),
            }
        }
        Err(Rejection::new(ErrorCode::Unavailable, "the decision is being stored concurrently; send it again"))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn order_ids_sort_by_the_time_they_were_made_and_differ_by_decision() {
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 10, 48, 0).single().expect("a time");
        let id = new_order_id("combine:DEC-2026-0001", at);
        assert_eq!(id, "O-01A202DEB7002FD54EB2443A", "O-, 12 hex digits of milliseconds, 12 of the hash");
        // Made a millisecond later from a decision whose hash is smaller: later still.
        let later = at + chrono::Duration::milliseconds(1);
        let mut ids: Vec<String> = (0..50).map(|n| new_order_id(&format!("combine:DEC-{n}"), at)).collect();
        let next: Vec<String> = (0..50).map(|n| new_order_id(&format!("combine:DEC-{n}"), later)).collect();
        assert!(ids.iter().all(|a| next.iter().all(|b| a < b)), "every id of a later millisecond sorts after");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 50, "decisions in the same millisecond get ids of their own");
        // The same decision at another time: another id (the store keeps one order a decision).
        assert_ne!(new_order_id("combine:DEC-2026-0001", later), id);
    }
}
