//! Verifying a whole month from the store (SPEC §7, issue: invoices): every invoice and
//! credit note of the month, provider by provider, with the same rules as one invoice
//! ([`invoices::verify`]), and the month's figures for every active order.
//!
//! # How the facts are gathered
//! One provider at a time, in bulk ([`InvoiceStore::provider_month`](crate::store::InvoiceStore::provider_month)): its orders with their
//! decisions in one join, its visits of the month in one pass over `visits_provider_month`
//! grouped by order as they stream, its invoices and credit notes. The next provider is read
//! while the current one is verified (two providers in memory at most, never the month).
//!
//! # What is verified
//! - Each invoice, with the month's credit notes of its provider applied, against every
//!   order of the provider that may be active in the month (so INV006 covers orders the
//!   invoice does not name), plus any order its lines name.
//! - A credit note that credits none of the month's invoices, on its own (as the invoice
//!   flow does when it does not have the invoice credited).
//! - Every provider's month figures per order (granted, performed, under-delivered) by the
//!   same rules: a claim of 0 minutes for each active order, so orders of a provider that
//!   sent no invoice have their figures too, and INV003/INV006 are counted once per
//!   provider, not once per invoice.
//!
//! # A dry run
//! Nothing is written. Each invoice is verified as if for the first time: lines verified
//! before are not INV005 here (that code guards against paying a line twice, and this run
//! pays nothing), and nothing is marked verified, so a later real verification is not
//! INV005 because of this run either. Plan compensation is reported as due.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use carehub_model::{InvoiceKind, Month, OrgNumber};
use serde::Serialize;

use crate::rules::invoices::{
    self, Invoice, InvoiceCode, InvoiceLine, ManualCounts, OrderEvidence, PlanNoticeFacts, Policy, Rates,
    ReportFinding, VerificationInput, VerificationReport,
};
use crate::store::{ProviderMonth, Store, StoreError};

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

/// One order's figures for the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderSummary {
    pub order_id: String,
    pub granted_minutes: i64,
    pub performed_minutes: i64,
    /// INV006: performed under the threshold of granted.
    pub under_delivered: bool,
}

/// One provider's month.
#[derive(Debug, Clone, Serialize)]
pub struct ProviderResult {
    pub provider: String,
    /// Visit rows of the month read for it.
    pub visits_read: u64,
    /// One per invoice, and per credit note that credits none of the month's invoices.
    pub reports: Vec<VerificationReport>,
    /// Every order of the provider active in the month.
    pub orders: Vec<OrderSummary>,
    /// The month's report-level findings for the provider (INV003, INV006), once.
    pub findings: Vec<ReportFinding>,
    /// What could not be verified, and why (no contracted rate, an unreadable document).
    pub errors: Vec<String>,
}

/// How far the run has come (for a progress bar).
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub providers_done: usize,
    pub providers_total: usize,
    pub visits_read: u64,
}

/// The month's sums.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MonthTotals {
    pub providers: usize,
    /// Active orders with figures.
    pub orders: usize,
    pub invoices: usize,
    pub credit_notes: usize,
    pub visits_read: u64,
    /// Line findings of every report, and report-level findings once per provider.
    pub findings: BTreeMap<InvoiceCode, u64>,
    pub approved_minutes: i64,
    /// Öre.
    pub approved_amount: i64,
    /// Approved amount plus plan compensation, öre.
    pub payable_amount: i64,
    pub errors: usize,
}

impl MonthTotals {
    fn add(&mut self, r: &ProviderResult) {
        self.providers += 1;
        self.orders += r.orders.len();
        self.visits_read += r.visits_read;
        self.errors += r.errors.len();
        for report in &r.reports {
            match report.kind {
                InvoiceKind::Invoice => self.invoices += 1,
                InvoiceKind::CreditNote => self.credit_notes += 1,
            }
            for f in report.lines.iter().flat_map(|l| &l.findings) {
                *self.findings.entry(f.code).or_default() += 1;
            }
            self.approved_minutes += report.totals.approved_minutes;
            self.approved_amount += report.totals.approved_amount;
            self.payable_amount += report.totals.payable_amount;
        }
        for f in &r.findings {
            *self.findings.entry(f.code).or_default() += 1;
        }
    }
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
        tokio::spawn(async move { store.provider_month(&p, month).await })
    };
    let mut totals = MonthTotals::default();
    let mut progress = Progress { providers_total: providers.len(), ..Progress::default() };
    let mut next = providers.first().map(|p| read(p.clone()));
    for i in 0..providers.len() {
        let Some(reading) = next.take() else { break };
        let facts = reading.await.map_err(|e| MonthError::Task(e.to_string()))??;
        // Read the next provider while this one is verified.
        next = providers.get(i + 1).map(|p| read(p.clone()));
        let (policy, fallback) = (policy.clone(), fallback.clone());
        let result = tokio::task::spawn_blocking(move || verify_provider(facts, month, &policy, fallback.as_ref()))
            .await
            .map_err(|e| MonthError::Task(e.to_string()))?;
        totals.add(&result);
        progress.providers_done += 1;
        progress.visits_read += result.visits_read;
        sink(&result, progress).map_err(MonthError::Sink)?;
    }
    Ok(totals)
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

/// The facts verification reads about each order, from a provider's bulk read.
fn order_facts(facts: ProviderMonth) -> Vec<OrderEvidence> {
    facts
        .orders
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
                plan_notice,
            }
        })
        .collect()
}

/// Verifies one provider's month (pure: the facts in, the result out), with `fallback`
/// rates when the policy has none for the provider.
pub fn verify_provider(
    facts: ProviderMonth,
    month: Month,
    policy: &Policy,
    fallback: Option<&Rates>,
) -> ProviderResult {
    let mut result = ProviderResult {
        provider: facts.provider.clone(),
        visits_read: facts.visits_read,
        reports: Vec::new(),
        orders: Vec::new(),
        findings: Vec::new(),
        errors: Vec::new(),
    };
    let Ok(org) = OrgNumber::parse(&facts.provider) else {
        result.errors.push("not a valid organisation number".to_owned());
        return result;
    };
    let manual_share = ManualCounts {
        manual: i64::try_from(facts.manual_visits).unwrap_or(i64::MAX),
        counted: i64::try_from(facts.counted_visits).unwrap_or(i64::MAX),
    };
    let (mut invoices, mut credit_notes) = (Vec::new(), Vec::new());
    let mut credits: Vec<Vec<String>> = Vec::new();
    for record in &facts.invoices {
        match crate::flows::invoice::invoice_from_record(record) {
            Some(inv) if inv.kind == InvoiceKind::CreditNote => {
                credits.push(billing_references(&record.canonical));
                credit_notes.push(inv);
            }
            Some(inv) => invoices.push(inv),
            None => result.errors.push(format!("{} {}: unreadable as stored", record.kind, record.id)),
        }
    }
    let rates = policy.rates.get(&org).or(fallback).cloned();
    let with_fallback;
    let policy = match (&rates, policy.rates.contains_key(&org)) {
        (Some(r), false) => {
            with_fallback = Policy { rates: BTreeMap::from([(org.clone(), r.clone())]), ..policy.clone() };
            &with_fallback
        }
        _ => policy,
    };
    let orders = order_facts(facts);
    let input = |invoice: Invoice, credit_notes: Vec<Invoice>| VerificationInput {
        invoice,
        credit_notes,
        orders: orders.clone(),
        already_verified: BTreeSet::new(),
        manual_share: Some(manual_share),
    };

    let invoice_ids: BTreeSet<&str> = invoices.iter().map(|i| i.id.as_str()).collect();
    let alone: Vec<&Invoice> = credit_notes
        .iter()
        .zip(&credits)
        .filter(|(_, refs)| !refs.iter().any(|r| invoice_ids.contains(r.as_str())))
        .map(|(c, _)| c)
        .collect();
    for doc in invoices.iter().chain(alone) {
        match invoices::verify(&input(doc.clone(), credit_notes.clone()), policy) {
            Ok(report) => result.reports.push(report),
            Err(e) => result.errors.push(format!("{}: {e}", doc.id)),
        }
    }

    // The month's figures per order: a claim of 0 minutes for each active order of the
    // provider (the rate does not change minutes: any will do when none is contracted).
    let own: Vec<&OrderEvidence> = orders.iter().filter(|f| f.order.provider == org).collect();
    let lines = own
        .iter()
        .map(|f| InvoiceLine {
            id: f.order.id.clone(),
            order_id: f.order.id.clone(),
            minutes: 0,
            amount: 0,
            comment: None,
        })
        .collect();
    let rates = rates.unwrap_or_else(|| Rates::flat(0));
    let summary_policy = Policy { rates: BTreeMap::from([(org.clone(), rates)]), ..policy.clone() };
    let claim =
        Invoice { id: format!("{month} figures"), provider: org, kind: InvoiceKind::Invoice, period: month, lines };
    match invoices::verify(&input(claim, Vec::new()), &summary_policy) {
        Ok(figures) => {
            let under: BTreeSet<&str> = figures
                .findings
                .iter()
                .filter(|f| f.code == InvoiceCode::Inv006)
                .filter_map(|f| f.order_id.as_deref())
                .collect();
            result.orders = figures
                .lines
                .iter()
                .filter(|l| !l.findings.iter().any(|f| f.code == InvoiceCode::Inv004))
                .map(|l| OrderSummary {
                    order_id: l.order_id.clone(),
                    granted_minutes: l.granted_minutes,
                    performed_minutes: l.performed_minutes,
                    under_delivered: under.contains(l.order_id.as_str()),
                })
                .collect();
            result.findings = figures.findings;
        }
        Err(e) => result.errors.push(format!("month figures: {e}")),
    }
    result
}

#[cfg(test)]
mod tests {
    use carehub_model::{Deadlines, Decision, Order, VisitOutcome};
    use chrono::{NaiveDate, TimeZone, Utc};
    use serde_json::json;

    use super::*;
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
        let r = verify_provider(facts, month(), &policy(), None);
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
        let r = verify_provider(facts, month(), &policy(), None);
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
        let r = verify_provider(facts, month(), &Policy::default(), None);
        assert!(r.errors.is_empty() && r.reports.is_empty());
        assert_eq!(r.orders[0].performed_minutes, 30);
        assert!(r.orders[0].under_delivered);
    }
}
