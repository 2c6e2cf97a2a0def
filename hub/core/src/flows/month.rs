//! The month run (SPEC §7, `carehub verify`): every invoice and credit note of a month
//! verified from the store, provider by provider, by the month rules
//! ([`crate::rules::month`]), and the results summed.
//!
//! # How the facts are gathered
//! Provider by provider, in bulk ([`InvoiceStore::provider_month`](crate::store::InvoiceStore::provider_month)): its orders with their
//! decisions in one join, its visits of the month in one sequential pass over the covering
//! index `visits_provider_month_cover`, its invoices and credit notes. For a provider
//! whose rates have no time bands the database sums each order's visits as it reads them
//! ([`MonthDetail::Sums`]: a row per order reaches the hub, not a row per visit); with bands
//! the visits come one by one, grouped by order as they stream, since a band splits each
//! visit by its clock times. The next providers (one per core) are read while the current
//! one is verified: a few providers in memory at most, never the month.
//! Nothing is written (see the rules' "A dry run").

use std::sync::Arc;

use carehub_model::{InvoiceKind, Month, OrgNumber};

use super::invoice::invoice_from_record;
use crate::rules::invoices::{OrderEvidence, PlanNoticeFacts, Policy, Rates};
use crate::rules::month::{verify_provider, MonthDocument, MonthTotals, Progress, ProviderFacts, ProviderResult};
use crate::store::{MonthDetail, ProviderMonth, Store, StoreError};

/// What stops a month's verification.
#[derive(Debug, thiserror::Error)]
pub enum MonthError {
    /// The store could not be read.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The caller's sink refused a provider's result (writing the reports failed).
    #[error("writing the results: {0}")]
    Sink(#[source] std::io::Error),
    /// A verification task died.
    #[error("verification task failed: {0}")]
    Task(String),
}

/// Verifies every invoice of `month` in the store, provider by provider. Each provider's
/// result goes to `sink` as soon as it is ready (with the progress so far) and is then
/// dropped; the sums come back. `fallback` rates apply to a provider the policy has none
/// for (a batch run on a bare database file).
pub async fn verify_month<F>(
    store: Arc<dyn Store>,
    month: Month,
    policy: Arc<Policy>,
    fallback: Option<Rates>,
    mut sink: F,
) -> Result<MonthTotals, MonthError>
where
    F: FnMut(&ProviderResult, Progress) -> std::io::Result<()>,
{
    let providers = store.month_providers(month).await?;
    let read = |p: String| {
        let store = store.clone();
        let detail = detail_for(&p, &policy, fallback.as_ref());
        tokio::spawn(async move { store.provider_month(&p, month, detail).await })
    };
    let mut totals = MonthTotals::default();
    let mut progress = Progress { providers_total: providers.len(), ..Progress::default() };
    // Reads run ahead of verification, as many at once as the machine has cores (the
    // store's readers are connections of their own), and are verified in provider order.
    let ahead = std::thread::available_parallelism().map_or(2, usize::from).clamp(1, 8);
    let mut reading: std::collections::VecDeque<_> = providers.iter().take(ahead).map(|p| read(p.clone())).collect();
    for i in 0..providers.len() {
        let Some(next) = reading.pop_front() else { break };
        let facts = next.await.map_err(|e| MonthError::Task(e.to_string()))??;
        if let Some(p) = providers.get(i + ahead) {
            reading.push_back(read(p.clone()));
        }
        let (policy, fallback) = (policy.clone(), fallback.clone());
        let result = tokio::task::spawn_blocking(move || {
            verify_provider(provider_facts(facts), month, &policy, fallback.as_ref())
        })
        .await
        .map_err(|e| MonthError::Task(e.to_string()))?;
        totals.add(&result);
        progress.providers_done += 1;
        progress.visits_read += result.visits_read;
        sink(&result, progress).map_err(MonthError::Sink)?;
    }
    Ok(totals)
}

/// Whether a provider's visits are read one by one or summed: summed unless its rates
/// (the policy's, else the fallback) have time bands, which split each visit by its times.
fn detail_for(provider: &str, policy: &Policy, fallback: Option<&Rates>) -> MonthDetail {
    let rates = OrgNumber::parse(provider).ok().and_then(|org| policy.rates.get(&org).or(fallback));
    match rates {
        Some(r) if r.bands.is_empty() => MonthDetail::Sums,
        // Bands, or no rate at all (verification reports that; the visits are read as ever).
        _ => MonthDetail::Visits,
    }
}

/// The credit notes' `billing_references` (the invoices they credit).
fn billing_references(canonical: &str) -> Vec<String> {
    serde_json::from_str::<serde_json::Value>(canonical)
        .ok()
        .and_then(|v| {
            v["billing_references"].as_array().map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect())
        })
        .unwrap_or_default()
}

/// A provider's bulk read as the month rules read it.
fn provider_facts(facts: ProviderMonth) -> ProviderFacts {
    let documents = facts
        .invoices
        .iter()
        .map(|record| match invoice_from_record(record) {
            Some(invoice) => {
                let credits = match invoice.kind {
                    InvoiceKind::CreditNote => billing_references(&record.canonical),
                    InvoiceKind::Invoice => Vec::new(),
                };
                Ok(MonthDocument { invoice, credits })
            }
            None => Err(format!("{} {}: unreadable as stored", record.kind, record.id)),
        })
        .collect();
    ProviderFacts {
        orders: order_facts(facts.orders),
        documents,
        provider: facts.provider,
        counted_visits: facts.counted_visits,
        manual_visits: facts.manual_visits,
        visits_read: facts.visits_read,
    }
}

/// The facts verification reads about each order, from a provider's bulk read.
fn order_facts(orders: Vec<crate::store::MonthOrder>) -> Vec<OrderEvidence> {
    orders
        .into_iter()
        .map(|o| {
            let plan_notice = match (&o.record.plan_established_on, &o.record.plan_received_at) {
                (Some(on), Some(at)) => Some(PlanNoticeFacts {
                    established_on: chrono::NaiveDate::parse_from_str(on, "%Y-%m-%d")
                        .unwrap_or(o.record.order.plan_due),
                    arrived_at: *at,
                    compensated_before: false,
                }),
                _ => None,
            };
            OrderEvidence {
                order: o.record.order,
                decision_valid_from: o.decision_valid_from,
                decision_valid_to: o.decision_valid_to,
                visits: o.visits,
                sums: o.sums,
                plan_notice,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use carehub_model::{Deadlines, Decision, Order, OrgNumber, VisitOutcome};
    use chrono::{NaiveDate, TimeZone, Utc};
    use serde_json::json;

    use super::*;
    use crate::rules::invoices::{self, InvoiceCode};
    use crate::rules::visits::Outcome;
    use crate::store::{InvoiceRecord, MonthOrder, OrderRecord};

    const PROVIDER: &str = "5599000014";
    const PNR: &str = "193601016987";

    fn month() -> Month {
        Month::new(2026, 11).expect("month")
    }

    fn order(id: &str, minutes: u32, visits: &[(u32, i64)]) -> MonthOrder {
        let decision: Decision = serde_json::from_value(json!({
            "id": format!("combine:{id}"), "client": PNR, "case_officer": "hl-1", "provider": PROVIDER,
            "valid_from": "2026-11-01",
            "services": [{"code": "PO", "category": "personal_care", "minutes_per_month": minutes}]
        }))
        .expect("decision");
        let start = NaiveDate::from_ymd_opt(2026, 11, 1).expect("date");
        let order = Order::from_decision(id.to_owned(), &decision, start, Deadlines::default());
        MonthOrder {
            record: OrderRecord::new(
                order,
                "combine",
                "phoniro",
                crate::store::OrderStatus::Accepted,
                chrono::DateTime::UNIX_EPOCH,
            ),
            decision_valid_from: start,
            decision_valid_to: None,
            sums: None,
            visits: visits
                .iter()
                .map(|&(day, minutes)| {
                    let at = Utc.with_ymd_and_hms(2026, 11, day, 8, 0, 0).single().expect("instant");
                    invoices::VisitEvidence {
                        check_in: at,
                        check_out: Some(at + chrono::Duration::minutes(minutes)),
                        validation: Outcome::Accepted,
                        outcome: VisitOutcome::Performed,
                        planned_minutes: None,
                        manual: false,
                    }
                })
                .collect(),
        }
    }

    fn record(kind: &str, id: &str, lines: serde_json::Value, credits: &[&str]) -> InvoiceRecord {
        InvoiceRecord {
            provider: PROVIDER.into(),
            kind: kind.into(),
            id: id.into(),
            month: "2026-11".into(),
            canonical: json!({"lines": lines, "billing_references": credits, "not_verified": []}).to_string(),
            log_seq: 1,
            received_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn policy() -> Policy {
        let org = OrgNumber::parse(PROVIDER).expect("org");
        Policy { rates: BTreeMap::from([(org, Rates::flat(39_000))]), ..Policy::default() }
    }

    #[test]
    fn every_active_order_gets_figures_and_unbilled_under_delivery_is_inv006() {
        // O-1: 600 granted, 10 × 60 performed, invoiced 650 (INV001, under the cap 660). O-2: 600 granted,
        // 2 × 60 performed, not on the invoice: INV006 all the same.
        let facts = ProviderMonth {
            provider: PROVIDER.into(),
            orders: vec![order("O-1", 600, &[(2, 60); 10]), order("O-2", 600, &[(3, 60), (4, 60)])],
            invoices: vec![record(
                "invoice",
                "HC-1",
                json!([{"id": "1", "order_id": "O-1", "minutes": 650, "amount": 422_500}]),
                &[],
            )],
            counted_visits: 12,
            manual_visits: 0,
            visits_read: 12,
        };
        let r = verify_provider(provider_facts(facts), month(), &policy(), None);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.reports.len(), 1);
        let line = &r.reports[0].lines[0];
        assert_eq!((line.performed_minutes, line.approved_minutes), (600, 600));
        assert_eq!(r.reports[0].codes(), vec![InvoiceCode::Inv001, InvoiceCode::Inv006]);
        let figures: Vec<_> = r
            .orders
            .iter()
            .map(|o| (o.order_id.as_str(), o.granted_minutes, o.performed_minutes, o.under_delivered))
            .collect();
        assert_eq!(figures, vec![("O-1", 600, 600, false), ("O-2", 600, 120, true)]);
        let mut totals = MonthTotals::default();
        totals.add(&r);
        // INV006 once for the month although it is on the invoice's report too.
        assert_eq!(totals.findings, BTreeMap::from([(InvoiceCode::Inv001, 1), (InvoiceCode::Inv006, 1)]));
        assert_eq!((totals.approved_minutes, totals.approved_amount), (600, 390_000));
    }

    #[test]
    fn a_credit_note_adjusts_its_invoice_and_one_crediting_nothing_here_stands_alone() {
        let facts = ProviderMonth {
            provider: PROVIDER.into(),
            orders: vec![order("O-1", 600, &[(2, 60); 10])],
            invoices: vec![
                record(
                    "invoice",
                    "HC-1",
                    json!([{"id": "1", "order_id": "O-1", "minutes": 660, "amount": 429_000}]),
                    &[],
                ),
                record(
                    "credit_note",
                    "CN-1",
                    json!([{"id": "1", "order_id": "O-1", "minutes": 60, "amount": 39_000}]),
                    &["HC-1"],
                ),
                record(
                    "credit_note",
                    "CN-2",
                    json!([{"id": "1", "order_id": "O-1", "minutes": 0, "amount": 0}]),
                    &["HC-0"],
                ),
            ],
            ..ProviderMonth::default()
        };
        let r = verify_provider(provider_facts(facts), month(), &policy(), None);
        let kinds: Vec<_> = r.reports.iter().map(|x| (x.invoice_id.as_str(), x.kind)).collect();
        assert_eq!(kinds, vec![("HC-1", InvoiceKind::Invoice), ("CN-2", InvoiceKind::CreditNote)]);
        let line = &r.reports[0].lines[0];
        assert_eq!((line.invoiced_minutes, line.credited_minutes, line.approved_minutes), (600, 60, 600));
        assert!(line.findings.is_empty(), "{:?}", line.findings);
    }

    #[test]
    fn a_provider_without_a_rate_still_gets_its_figures() {
        let facts = ProviderMonth {
            provider: PROVIDER.into(),
            orders: vec![order("O-1", 600, &[(2, 30)])],
            ..ProviderMonth::default()
        };
        let r = verify_provider(provider_facts(facts), month(), &Policy::default(), None);
        assert!(r.errors.is_empty() && r.reports.is_empty());
        assert_eq!(r.orders[0].performed_minutes, 30);
        assert!(r.orders[0].under_delivered);
    }
}
