//! A whole month's verification rules (SPEC §7): every invoice and credit note of one
//! provider's month, with the same rules as one invoice ([`invoices::verify`]), and the
//! month's figures for every active order, pure over the provider's facts
//! ([`ProviderFacts`]).
//!
//! The driver that gathers the facts from the store provider by provider and sums the
//! results is [`crate::flows::month`]; nothing here reads the store.
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

use carehub_model::{InvoiceKind, Month, OrgNumber};
use serde::Serialize;

use crate::rules::invoices::{
    self, Invoice, InvoiceCode, InvoiceLine, ManualCounts, OrderEvidence, Policy, Rates, ReportFinding,
    VerificationInput, VerificationReport,
};

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
    /// Adds one provider's result to the sums.
    pub fn add(&mut self, r: &ProviderResult) {
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

/// What one provider's month verification reads: the facts, gathered by the driver.
#[derive(Debug, Clone, Default)]
pub struct ProviderFacts {
    pub provider: String,
    /// The provider's orders active in the month, and any other order an invoice line of the
    /// month names, with their decisions' validity and visits.
    pub orders: Vec<OrderEvidence>,
    /// The provider's invoices and credit notes of the month, in the store's order; one that
    /// cannot be read back is the reason why.
    pub documents: Vec<Result<MonthDocument, String>>,
    /// The provider's accepted and flagged visits in the month, and the manual ones among
    /// them (SPEC §6's manual share).
    pub counted_visits: u64,
    pub manual_visits: u64,
    /// Rows of the month's visits read (rejected ones and ones without an order included).
    pub visits_read: u64,
}

/// An invoice or credit note of the month, and for a credit note the invoices it credits.
#[derive(Debug, Clone)]
pub struct MonthDocument {
    pub invoice: Invoice,
    pub credits: Vec<String>,
}

/// An invoice with no lines: what the shared input holds before its first document.
fn claim_placeholder(org: &OrgNumber, month: Month) -> Invoice {
    Invoice { id: String::new(), provider: org.clone(), kind: InvoiceKind::Invoice, period: month, lines: Vec::new() }
}

/// Verifies one provider's month (pure: the facts in, the result out), with `fallback`
/// rates when the policy has none for the provider.
pub fn verify_provider(
    facts: ProviderFacts,
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
    for document in facts.documents {
        match document {
            Ok(d) if d.invoice.kind == InvoiceKind::CreditNote => {
                credits.push(d.credits);
                credit_notes.push(d.invoice);
            }
            Ok(d) => invoices.push(d.invoice),
            Err(why) => result.errors.push(why),
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
    // The month's figures per order: a claim of 0 minutes for each active order of the
    // provider (the rate does not change minutes: any will do when none is contracted).
    let lines = facts
        .orders
        .iter()
        .filter(|f| f.order.provider == org)
        .map(|f| InvoiceLine {
            id: f.order.id.clone(),
            order_id: f.order.id.clone(),
            minutes: 0,
            amount: 0,
            comment: None,
        })
        .collect();
    let claim = Invoice {
        id: format!("{month} figures"),
        provider: org.clone(),
        kind: InvoiceKind::Invoice,
        period: month,
        lines,
    };
    // One input for every document and the claim, its invoice swapped in turn: the orders
    // and their visits (a provider's month) are not copied per document.
    let mut input = VerificationInput {
        invoice: claim_placeholder(&org, month),
        credit_notes: Vec::new(),
        orders: facts.orders,
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
        input.invoice = doc.clone();
        input.credit_notes.clone_from(&credit_notes);
        match invoices::verify(&input, policy) {
            Ok(report) => result.reports.push(report),
            Err(e) => result.errors.push(format!("{}: {e}", doc.id)),
        }
    }

    let rates = rates.unwrap_or_else(|| Rates::flat(0));
    let summary_policy = Policy { rates: BTreeMap::from([(org, rates)]), ..policy.clone() };
    input.invoice = claim;
    input.credit_notes = Vec::new();
    match invoices::verify(&input, &summary_policy) {
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
