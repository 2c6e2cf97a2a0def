//! The invoice flow (SPEC §4.3): a provider's PEPPOL BIS 3 invoice or credit note in, read
//! ([`crate::peppol`]), verified against the store's orders, decisions and validated visits
//! ([`crate::rules::invoices`]), and logged with its report in one commit before the answer.
//!
//! An invoice sent twice at once is still recognised (INV005) by the second: a
//! verification's commit expects the provider's invoice generation it read first, so of two
//! that raced, the second fails as stale and verifies again, now seeing the first's lines
//! ([`crate::store::Op::ExpectInvoiceGeneration`]; no lock, so it holds across processes). A credit note is stored and the invoice it
//! credits is verified again with it: the new report is the adjusted one. An invoice that is
//! not home care (another unit, no order reference, VAT other than exempt) is still read
//! and logged: its lines carry the reader's findings and are not verified.

use std::collections::BTreeSet;

use carehub_model::{
    Decision, ErrorCode, InvoiceKind, Message, MessageType, Month, OrgNumber, ValidationError, VisitOutcome,
};
use chrono::NaiveDate;
use serde_json::json;
use tracing::{debug, info};

use super::{logged_id, outbound_entry, store_unavailable, Correlation, Flows};
use crate::adapter::System;
use crate::intake::{Inbound, Receipt, Rejection, Sender};
use crate::mapping::RowDecoded;
use crate::peppol::{self, PeppolDocument};
use crate::rules::invoices::{
    self, Invoice, InvoiceLine, ManualCounts, OrderEvidence, PlanNoticeFacts, VerificationInput, VisitEvidence,
};
use crate::store::{
    ts, InvoiceRecord, LogLink, LogRef, LogStatus, NewInvoice, NewLogEntry, NewVerification, Op, StoreError,
    VisitFilter,
};

/// Verifications of one invoice that may race others of the same provider's before the
/// hub answers 503 (each race means another verification of the provider committed).
const STALE_ATTEMPTS: u32 = 5;

fn document_kind_str(k: InvoiceKind) -> &'static str {
    match k {
        InvoiceKind::Invoice => "invoice",
        InvoiceKind::CreditNote => "credit_note",
    }
}

/// An invoice or credit note as read, ready to verify: its lines, the invoices it credits,
/// the lines read but not verified, and what the reader adds to the report.
pub(crate) struct Document {
    pub(crate) invoice: Invoice,
    /// For a credit note: the ids of the invoices it credits (the first the hub has counts).
    pub(crate) credits: Vec<String>,
    pub(crate) not_verified: Vec<serde_json::Value>,
    pub(crate) report_extra: serde_json::Map<String, serde_json::Value>,
}

/// Whole öre of an amount in kronor, halves away from zero.
fn ore(d: peppol::Decimal) -> Option<i64> {
    d.mul_int(100).round_to_i64()
}

/// The invoice as verification reads it: home-care lines in minutes and öre.
fn to_invoice(doc: &PeppolDocument, provider: &OrgNumber, month: Month) -> (Invoice, Vec<serde_json::Value>) {
    let mut lines = Vec::new();
    let mut skipped = Vec::new();
    for r in peppol::home_care_lines(doc) {
        let minutes = r.minutes.and_then(|m| m.round_to_i64());
        match (r.is_home_care(), &r.order_id, minutes, ore(r.amount)) {
            (true, Some(order), Some(minutes), Some(amount)) => lines.push(InvoiceLine {
                id: r.line_id.clone(),
                order_id: order.clone(),
                minutes,
                amount,
                comment: r.comment.clone(),
            }),
            _ => skipped.push(json!({ "line_id": r.line_id, "findings": r.findings })),
        }
    }
    (Invoice { id: doc.id.clone(), provider: provider.clone(), kind: doc.kind, period: month, lines }, skipped)
}

fn invoice_json(inv: &Invoice, billing: &[String], skipped: &[serde_json::Value]) -> String {
    let lines: Vec<_> = inv
        .lines
        .iter()
        .map(|l| json!({"id": l.id, "order_id": l.order_id, "minutes": l.minutes, "amount": l.amount, "comment": l.comment}))
        .collect();
    json!({"lines": lines, "billing_references": billing, "not_verified": skipped}).to_string()
}

pub(crate) fn invoice_from_record(r: &InvoiceRecord) -> Option<Invoice> {
    let v: serde_json::Value = serde_json::from_str(&r.canonical).ok()?;
    let lines = v["lines"]
        .as_array()?
        .iter()
        .filter_map(|l| {
            Some(InvoiceLine {
                id: l["id"].as_str()?.to_owned(),
                order_id: l["order_id"].as_str()?.to_owned(),
                minutes: l["minutes"].as_i64()?,
                amount: l["amount"].as_i64()?,
                comment: l["comment"].as_str().map(str::to_owned),
            })
        })
        .collect();
    let month = NaiveDate::parse_from_str(&format!("{}-01", r.month), "%Y-%m-%d").ok()?;
    Some(Invoice {
        id: r.id.clone(),
        provider: OrgNumber::parse(&r.provider).ok()?,
        kind: if r.kind == "credit_note" { InvoiceKind::CreditNote } else { InvoiceKind::Invoice },
        period: Month::of(month),
        lines,
    })
}

impl Flows {
    /// Takes a PEPPOL invoice or credit note a provider's system sent, as intake read it.
    pub(crate) async fn on_invoice(
        &self,
        inbound: &Inbound<'_>,
        document: Result<PeppolDocument, ValidationError>,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        let sys = inbound.system;
        let doc = match document {
            Ok(d) => d,
            Err(e) => return Err(self.reject(inbound, e.code, e.reason, Correlation::default()).await),
        };
        let corr = Correlation {
            provider: doc.supplier.org_number.as_ref().map(|o| o.as_str().to_owned()),
            ..Default::default()
        };
        let Some(provider) = doc.supplier.org_number.clone() else {
            let reason = "the supplier names no Swedish organisation number (PartyLegalEntity/CompanyID)".to_owned();
            return Err(self.reject(inbound, ErrorCode::MissingField, reason, corr).await);
        };
        if let Sender::Provider(org) = sender {
            if *org != provider {
                let reason = "an invoice of another provider".to_owned();
                return Err(self.reject(inbound, ErrorCode::Forbidden, reason, corr).await);
            }
        }
        if self.routes.get(provider.as_str()).is_none_or(|r| r.system != sys.name) {
            let reason = format!("provider {provider} does not use the system {}", sys.name);
            return Err(self.reject(inbound, ErrorCode::UnknownProvider, reason, corr).await);
        }
        let Some(start) = doc.invoice_period.as_ref().and_then(|p| p.start) else {
            let reason = "the invoice names no period (cac:InvoicePeriod/cbc:StartDate)".to_owned();
            return Err(self.reject(inbound, ErrorCode::MissingField, reason, corr).await);
        };
        let (invoice, not_verified) = to_invoice(&doc, &provider, Month::of(start));
        let mut report_extra = serde_json::Map::new();
        report_extra.insert("reader_findings".into(), json!(doc.findings));
        report_extra.insert("totals_check".into(), json!(peppol::check_totals(&doc)));
        let document = Document { invoice, credits: doc.billing_references.clone(), not_verified, report_extra };
        self.verify_document(inbound, document, corr).await
    }

    /// Verifies an invoice or credit note however it came (PEPPOL, a provider system's
    /// invoice basis), one at a time: gathers what the store knows of its orders, verifies
    /// it, logs it with its report, stores it and the verification, and queues the report
    /// to the provider's and the orders' case-management systems, in one commit.
    pub(crate) async fn verify_document(
        &self,
        inbound: &Inbound<'_>,
        document: Document,
        corr: Correlation,
    ) -> Result<Receipt, Rejection> {
        let Document { invoice: document, credits, not_verified: skipped, report_extra } = document;
        let sys = inbound.system;
        let provider = document.provider.clone();
        let kind = document_kind_str(document.kind);
        let month_key = document.period.first_day().format("%Y-%m").to_string();
        // Stored with the entry that logs it, the commit's second op (the first checks that the
        // provider's invoices did not change meanwhile).
        let record = NewInvoice {
            provider: provider.as_str().to_owned(),
            kind: kind.to_owned(),
            id: document.id.clone(),
            month: month_key.clone(),
            canonical: invoice_json(&document, &credits, &skipped),
            log: LogRef::Op(1),
            received_at: self.clock.now(),
        };

        // INV005 (a line is verified once) without a lock: the provider's invoice generation
        // is read before anything the verification depends on, and the commit expects it
        // unchanged. When another invoice, credit note or verification of the provider
        // committed in between, the commit fails as stale with nothing written, and this
        // verification reads and verifies again (a few times, then 503: send it later).
        let mut attempt = 0;
        let (report, report_json, target, queued, results) = loop {
            attempt += 1;
            let generation = self.store.invoice_generation(provider.as_str()).await.map_err(store_unavailable)?;
            // What is verified: the invoice itself, or, for a credit note, the invoice it credits
            // (again, with the credit) when the hub has it.
            let credited = match document.kind {
                InvoiceKind::Invoice => None,
                InvoiceKind::CreditNote => {
                    let mut found = None;
                    for id in &credits {
                        if let Some(r) =
                            self.store.invoice(provider.as_str(), "invoice", id).await.map_err(store_unavailable)?
                        {
                            found = invoice_from_record(&r);
                            break;
                        }
                    }
                    found
                }
            };
            let adjusting = credited.is_some();
            let target = credited.unwrap_or_else(|| document.clone());
            let mut credit_notes: Vec<Invoice> = self
                .store
                .invoices(provider.as_str(), &month_key, Some("credit_note"))
                .await
                .map_err(store_unavailable)?
                .iter()
                .filter(|r| !(r.id == document.id && document.kind == InvoiceKind::CreditNote))
                .filter_map(invoice_from_record)
                .collect();
            if document.kind == InvoiceKind::CreditNote {
                credit_notes.push(document.clone());
            }
            let already_verified: BTreeSet<(String, String)> = if adjusting {
                BTreeSet::new()
            } else {
                self.store
                    .verified_lines(provider.as_str(), &target.id)
                    .await
                    .map_err(store_unavailable)?
                    .into_iter()
                    .map(|l| (target.id.clone(), l))
                    .collect()
            };
            let orders = self.order_facts(&target, &month_key).await?;
            let links = self.line_links(&[&document, &target], &orders).await?;
            let manual_share = self
                .store
                .manual_shares(&month_key)
                .await
                .map_err(store_unavailable)?
                .into_iter()
                .find(|s| s.provider == provider.as_str())
                .map(|s| ManualCounts {
                    manual: i64::try_from(s.manual).unwrap_or(i64::MAX),
                    counted: i64::try_from(s.visits).unwrap_or(i64::MAX),
                });
            let input =
                VerificationInput { invoice: target.clone(), credit_notes, orders, already_verified, manual_share };
            let report = match invoices::verify(&input, &self.invoice_policy) {
                Ok(r) => r,
                Err(e) => return Err(self.reject(inbound, ErrorCode::InvalidValue, e.to_string(), corr).await),
            };
            let mut report_json =
                serde_json::to_value(&report).map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string()))?;
            report_json["not_verified"] = json!(skipped);
            for (key, value) in &report_extra {
                report_json[key.as_str()] = value.clone();
            }
            let mut entry: NewLogEntry = inbound.entry(LogStatus::Accepted);
            entry.message_type = kind.to_owned();
            entry.canonical = Some(report_json.to_string());
            corr.apply(&mut entry);
            entry.links.clone_from(&links);
            let mut ops = vec![
                Op::ExpectInvoiceGeneration { provider: provider.as_str().to_owned(), generation },
                Op::AppendLog(entry),
                Op::StoreInvoice(record.clone()),
                Op::RecordVerification(NewVerification {
                    provider: provider.as_str().to_owned(),
                    invoice_id: target.id.clone(),
                    month: month_key.clone(),
                    report: report_json.to_string(),
                    lines: target.lines.iter().map(|l| l.id.clone()).collect(),
                    log: LogRef::Op(1),
                    created_at: self.clock.now(),
                }),
            ];
            let before = ops.len();
            self.report_deliveries(sys, &target, &report_json, &links, &mut ops).await?;
            let queued = ops.len() > before;
            match self.store.commit(ops).await {
                Ok(results) => break (report, report_json, target, queued, results),
                Err(StoreError::Stale(why)) if attempt < STALE_ATTEMPTS => {
                    debug!(system = %sys.name, attempt, why, "invoice verification raced another; verifying again");
                }
                Err(e) => return Err(store_unavailable(e)),
            }
        };
        if queued {
            self.outbox_notify.notify_one();
        }
        self.metrics.message(&sys.name, "in", kind, LogStatus::Accepted);
        info!(system = %sys.name, lines = target.lines.len(), codes = report.codes().len(), "invoice verified");
        Ok(Receipt {
            message_id: logged_id(&results).unwrap_or_default(),
            status: LogStatus::Accepted,
            message_type: MessageType::Receipt,
            decision_id: None,
            order_id: None,
            visits: Vec::new(),
            verification: Some(report_json),
            code: None,
        })
    }

    /// The report rendered for the provider's system and for the case-management systems of
    /// the invoice's orders, each in its own format (systems without a `verification`
    /// mapping are left out), as log entries and outbox rows pushed onto the verification's
    /// commit `ops` (each row linked to the entry pushed just before it).
    async fn report_deliveries(
        &self,
        provider_system: &System,
        invoice: &Invoice,
        report: &serde_json::Value,
        links: &[LogLink],
        ops: &mut Vec<Op>,
    ) -> Result<(), Rejection> {
        let mut targets: BTreeSet<String> = BTreeSet::from([provider_system.name.clone()]);
        for id in invoice.lines.iter().map(|l| l.order_id.as_str()).collect::<BTreeSet<_>>() {
            if let Some(o) = self.store.order(id).await.map_err(store_unavailable)? {
                targets.insert(o.source_system);
            }
        }
        let context = json!({ "report": report_context(report) });
        let stamp = ts(self.clock.now());
        for name in targets {
            let Some(target) = self.registry.get(&name).cloned() else { continue };
            if target.mappings.outbound(MessageType::Verification).is_none() {
                continue;
            }
            let rendered = match target.encode(MessageType::Verification, &context) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(system = %target.name, code = e.code.as_str(), "cannot render a verification report");
                    continue;
                }
            };
            let key = format!("{}:{}:verification:{stamp}:{}", invoice.provider, invoice.id, target.name);
            let mut entry =
                outbound_entry(&target, MessageType::Verification, &rendered.content_type, &rendered.body, &key);
            entry.canonical = Some(context.to_string());
            entry.provider = Some(invoice.provider.as_str().to_owned());
            entry.links = links.to_vec();
            let log = LogRef::Op(ops.len());
            ops.push(Op::AppendLog(entry));
            ops.push(Op::Enqueue(super::delivery(&target.name, MessageType::Verification, None, key, rendered, log)));
        }
        Ok(())
    }

    /// The order of every line of `docs`, with its client when the hub knows the order: what
    /// the invoice's log entries link to, so the log finds them by any line's client or order.
    async fn line_links(&self, docs: &[&Invoice], known: &[OrderEvidence]) -> Result<Vec<LogLink>, Rejection> {
        let ids: BTreeSet<&str> = docs.iter().flat_map(|d| &d.lines).map(|l| l.order_id.as_str()).collect();
        let mut links = Vec::with_capacity(ids.len());
        for id in ids {
            let client = match known.iter().find(|f| f.order.id == id) {
                Some(f) => Some(f.order.client.expose().to_owned()),
                None => {
                    self.store.order(id).await.map_err(store_unavailable)?.map(|o| o.order.client.expose().to_owned())
                }
            };
            links.push(LogLink { client, order_id: Some(id.to_owned()) });
        }
        Ok(links)
    }

    /// The facts verification needs about each order an invoice's lines name.
    async fn order_facts(&self, invoice: &Invoice, month: &str) -> Result<Vec<OrderEvidence>, Rejection> {
        let ids: BTreeSet<&str> = invoice.lines.iter().map(|l| l.order_id.as_str()).collect();
        let mut facts = Vec::new();
        for id in ids {
            let Some(record) = self.store.order(id).await.map_err(store_unavailable)? else { continue };
            let Some(decision) =
                self.store.decision(record.order.decision_id.as_str()).await.map_err(store_unavailable)?
            else {
                continue;
            };
            let Ok(decision) = serde_json::from_str::<Decision>(&decision.canonical) else { continue };
            let stored = self
                .store
                .visits(VisitFilter {
                    order_id: Some(id.to_owned()),
                    month: Some(month.to_owned()),
                    limit: 10_000,
                    ..VisitFilter::default()
                })
                .await
                .map_err(store_unavailable)?;
            let visits = stored
                .iter()
                .map(|v| VisitEvidence {
                    check_in: v.check_in,
                    check_out: v.check_out,
                    validation: v.outcome,
                    outcome: VisitOutcome::parse(&v.visit_outcome),
                    planned_minutes: v.planned_minutes.and_then(|m| u32::try_from(m).ok()),
                    manual: v.manual,
                })
                .collect();
            let plan_notice = match (&record.plan_established_on, &record.plan_received_at) {
                (Some(on), Some(at)) => Some(PlanNoticeFacts {
                    established_on: NaiveDate::parse_from_str(on, "%Y-%m-%d").unwrap_or(record.order.plan_due),
                    arrived_at: *at,
                    compensated_before: false,
                }),
                _ => None,
            };
            facts.push(OrderEvidence {
                order: record.order.clone(),
                decision_valid_from: decision.valid_from,
                decision_valid_to: decision.valid_to,
                visits,
                sums: None,
                plan_notice,
            });
        }
        Ok(facts)
    }
}

/// The report as outbound mappings read it (`report.*`): figures per line, codes as one
/// space-separated string (absent when there are none), and the totals.
fn report_context(report: &serde_json::Value) -> serde_json::Value {
    fn codes(findings: &serde_json::Value) -> Option<String> {
        let list: Vec<&str> = findings.as_array()?.iter().filter_map(|f| f["code"].as_str()).collect();
        (!list.is_empty()).then(|| list.join(" "))
    }
    let lines: Vec<serde_json::Value> = report["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let mut line = json!({
                "line_id": l["line_id"], "order_id": l["order_id"], "invoiced_minutes": l["invoiced_minutes"],
                "performed_minutes": l["performed_minutes"], "granted_minutes": l["granted_minutes"],
                "approved_minutes": l["approved_minutes"], "approved_amount": l["approved_amount"],
            });
            if !l["cap_minutes"].is_null() {
                line["cap_minutes"] = l["cap_minutes"].clone();
            }
            if let Some(c) = codes(&l["findings"]) {
                line["codes"] = json!(c);
            }
            line
        })
        .collect();
    let t = &report["totals"];
    let mut out = json!({
        "invoice_id": report["invoice_id"], "provider": report["provider"], "month": report["month"],
        "kind": report["kind"], "lines": lines,
        "approved_minutes": t["approved_minutes"], "approved_amount": t["approved_amount"],
        "plan_compensation_minutes": t["plan_compensation_minutes"],
        "plan_compensation_amount": t["plan_compensation_amount"], "payable_amount": t["payable_amount"],
    });
    if let Some(c) = codes(&report["findings"]) {
        out["codes"] = json!(c);
    }
    out
}

/// One invoice of an invoice basis file, as its rows are gathered.
struct BasisInvoice {
    provider: OrgNumber,
    id: String,
    kind: InvoiceKind,
    month: Month,
    credits: Vec<String>,
    lines: Vec<InvoiceLine>,
    /// The file's lines its rows are on.
    file_lines: Vec<usize>,
}

/// A row refused: its line in the file, its code and why.
struct RefusedRow {
    line: usize,
    code: ErrorCode,
    message: String,
    canonical: Option<String>,
}

impl Flows {
    /// An invoice basis file (a CSV export, posted or left in an SFTP inbox): its rows
    /// gathered by invoice number into invoices, each verified as a PEPPOL invoice is
    /// ([`Flows::verify_document`]) and logged with its rows; a bad row is refused with its
    /// line and code (logged as rejected) without stopping the others. The answer's
    /// `verification` holds every invoice's report and every refused row.
    pub(crate) async fn take_invoice_rows(
        &self,
        sys: &System,
        text: &str,
        rows: Vec<RowDecoded>,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        let served = self.providers_of(sys);
        let mut invoices: Vec<BasisInvoice> = Vec::new();
        let mut refused: Vec<RefusedRow> = Vec::new();
        for row in rows {
            let line = row.line;
            let canonical = row.result.as_ref().ok().map(|d| d.canonical.clone());
            let refuse = |code: ErrorCode, message: String| RefusedRow {
                line,
                code,
                message: format!("line {line}: {message}"),
                canonical: canonical.clone(),
            };
            let parsed = row.result.and_then(|d| match d.message() {
                Ok(Message::InvoiceLine(r)) => Ok(r),
                Ok(m) => Err(ValidationError::new(
                    ErrorCode::UnknownMessageType,
                    format!("a {} row in an invoice basis file", m.message_type()),
                )),
                Err(e) => Err(e),
            });
            let r = match parsed {
                Ok(r) => r,
                Err(e) => {
                    refused.push(refuse(e.code, e.reason));
                    continue;
                }
            };
            let provider = match (&r.provider, sender) {
                (Some(p), _) => p.clone(),
                (None, Sender::Provider(org)) => org.clone(),
                (None, Sender::Trusted) if served.len() == 1 => match OrgNumber::parse(served[0]) {
                    Ok(p) => p,
                    Err(e) => {
                        refused.push(refuse(e.code, e.reason));
                        continue;
                    }
                },
                (None, Sender::Trusted) => {
                    let why = format!("the row names no provider, and {} serves {} providers", sys.name, served.len());
                    refused.push(refuse(ErrorCode::MissingField, why));
                    continue;
                }
            };
            if matches!(sender, Sender::Provider(org) if *org != provider) {
                refused.push(refuse(ErrorCode::Forbidden, "an invoice of another provider".into()));
                continue;
            }
            if !served.contains(&provider.as_str()) {
                let why = format!("provider {provider} does not use the system {}", sys.name);
                refused.push(refuse(ErrorCode::UnknownProvider, why));
                continue;
            }
            let kind = r.kind;
            let month = Month::of(r.period_start);
            let at = match invoices.iter().position(|i| i.provider == provider && i.id == r.invoice_id) {
                Some(at) => at,
                None => {
                    invoices.push(BasisInvoice {
                        provider: provider.clone(),
                        id: r.invoice_id.clone(),
                        kind,
                        month,
                        credits: r.credits.iter().cloned().collect(),
                        lines: Vec::new(),
                        file_lines: Vec::new(),
                    });
                    invoices.len() - 1
                }
            };
            let invoice = &mut invoices[at];
            if invoice.kind != kind || invoice.month != month {
                let why = format!("the row's type or period differs from invoice {}'s first row", r.invoice_id);
                refused.push(refuse(ErrorCode::InvalidValue, why));
                continue;
            }
            if invoice.lines.iter().any(|l| l.id == r.line_id) {
                let why = format!("invoice {} has a line {} already", r.invoice_id, r.line_id);
                refused.push(refuse(ErrorCode::InvalidValue, why));
                continue;
            }
            // Without an amount, the contracted one: the line's amount is then not in question.
            let amount = r.amount.unwrap_or_else(|| {
                self.invoice_policy.rates.get(&provider).map(|rates| (rates.day * r.minutes + 30) / 60).unwrap_or(0)
            });
            invoice.lines.push(InvoiceLine {
                id: r.line_id.clone(),
                order_id: r.order_id.clone(),
                minutes: r.minutes,
                amount,
                comment: r.comment.clone(),
            });
            invoice.file_lines.push(line);
        }

        let lines: Vec<&str> = text.split('\n').map(|l| l.trim_end_matches('\r')).collect();
        let header = lines.iter().find(|l| !l.trim().is_empty()).copied().unwrap_or("");
        let payload = |file_lines: &[usize]| {
            let rows: Vec<&str> = file_lines.iter().filter_map(|l| lines.get(l.saturating_sub(1)).copied()).collect();
            format!("{header}\n{}\n", rows.join("\n")).into_bytes()
        };
        let mut first_id = None;
        let mut refusals = Vec::new();
        for r in &refused {
            let mut entry = NewLogEntry {
                system: sys.name.clone(),
                vendor: sys.vendor.to_owned(),
                direction: "in",
                message_type: MessageType::InvoiceLine.as_str().to_owned(),
                content_type: "text/csv; charset=utf-8".to_owned(),
                payload: payload(&[r.line]),
                canonical: r.canonical.clone(),
                status: LogStatus::Rejected,
                error_code: Some(r.code.as_str().to_owned()),
                error_message: Some(r.message.clone()),
                ..NewLogEntry::default()
            };
            if let Sender::Provider(org) = sender {
                entry.provider = Some(org.as_str().to_owned());
            }
            let results = self.store.commit(vec![Op::AppendLog(entry)]).await.map_err(store_unavailable)?;
            self.metrics.rejection(&sys.name, r.code.as_str());
            self.metrics.message(&sys.name, "in", MessageType::InvoiceLine.as_str(), LogStatus::Rejected);
            let id = logged_id(&results);
            first_id = first_id.or(id);
            refusals.push(json!({"line": r.line, "code": r.code.as_str(), "message": r.message, "message_id": id}));
        }
        let mut reports = Vec::new();
        let mut receipt_id = None;
        for invoice in invoices {
            let inbound = Inbound {
                system: sys,
                body: payload(&invoice.file_lines),
                content_type: "text/csv; charset=utf-8".to_owned(),
                decoded: None,
            };
            let corr = Correlation { provider: Some(invoice.provider.as_str().to_owned()), ..Default::default() };
            let document = Document {
                invoice: Invoice {
                    id: invoice.id.clone(),
                    provider: invoice.provider,
                    kind: invoice.kind,
                    period: invoice.month,
                    lines: invoice.lines,
                },
                credits: invoice.credits,
                not_verified: Vec::new(),
                report_extra: serde_json::Map::new(),
            };
            match self.verify_document(&inbound, document, corr).await {
                Ok(r) => {
                    receipt_id.get_or_insert(r.message_id);
                    reports.extend(r.verification);
                }
                Err(r) if r.code == ErrorCode::Unavailable => return Err(r),
                Err(r) => refusals.push(json!({
                    "invoice_id": invoice.id, "code": r.code.as_str(), "message": r.message, "message_id": r.message_id,
                })),
            }
        }
        info!(system = %sys.name, invoices = reports.len(), refused = refusals.len(), "invoice basis taken");
        if reports.is_empty() {
            let (code, why) = match refused.first() {
                Some(r) => (r.code, r.message.clone()),
                None => (ErrorCode::InvalidValue, "no invoice could be verified".to_owned()),
            };
            let message = format!("no invoice of the file was verified; {why}");
            return Err(Rejection { code, message, message_id: first_id });
        }
        Ok(Receipt {
            message_id: receipt_id.unwrap_or_default(),
            status: LogStatus::Accepted,
            message_type: MessageType::InvoiceLine,
            decision_id: None,
            order_id: None,
            visits: Vec::new(),
            verification: Some(json!({ "invoices": reports, "refused": refusals })),
            code: None,
        })
    }
}
