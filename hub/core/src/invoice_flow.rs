//! The invoice flow (SPEC §4.3): a provider's PEPPOL BIS 3 invoice or credit note in, read
//! ([`crate::peppol`]), verified against the store's orders, decisions and validated visits
//! ([`crate::verification`]), and logged with its report in one commit before the answer.
//!
//! Verifications of one hub run one at a time (a lock), so an invoice sent twice at once is
//! still recognised (INV005) by the second. A credit note is stored and the invoice it
//! credits is verified again with it: the new report is the adjusted one. An invoice that is
//! not home care (another unit, no order reference, VAT other than exempt) is still read
//! and logged: its lines carry the reader's findings and are not verified.

use std::collections::{BTreeMap, BTreeSet};

use carehub_model::{Decision, ErrorCode, OrgNumber, VisitOutcome};
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;
use tracing::info;

use crate::adapter::System;
use crate::peppol::{self, DocumentKind as PeppolKind, PeppolDocument};
use crate::pipeline::{store_unavailable, Correlation, Hub, Inbound, Receipt, Rejection, Sender};
use crate::store::{now_ts, status, InvoiceRecord, NewLogEntry, Op, VerificationRecord, VisitFilter};
use crate::verification::{
    self, DocumentKind, Invoice, InvoiceLine, ManualShare, Month, OrderFacts, PlanNoticeFacts, VerificationInput,
    VisitRecord,
};
use crate::visits::Outcome;

/// Whether a payload is a UBL invoice or credit note (by its namespace, near the start).
pub fn is_ubl(body: &[u8]) -> bool {
    let head = &body[..body.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    text.contains("urn:oasis:names:specification:ubl:schema:xsd:Invoice-2")
        || text.contains("urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2")
}

fn kind_str(k: PeppolKind) -> &'static str {
    match k {
        PeppolKind::Invoice => "invoice",
        PeppolKind::CreditNote => "credit_note",
    }
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
    let kind = match doc.kind {
        PeppolKind::Invoice => DocumentKind::Invoice,
        PeppolKind::CreditNote => DocumentKind::CreditNote,
    };
    (Invoice { id: doc.id.clone(), provider: provider.clone(), kind, period: month, lines }, skipped)
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
        kind: if r.kind == "credit_note" { DocumentKind::CreditNote } else { DocumentKind::Invoice },
        period: Month::of(month),
        lines,
    })
}

fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

impl Hub {
    /// Takes a PEPPOL invoice or credit note a provider's system sent.
    pub(crate) async fn on_invoice(
        &self,
        sys: &System,
        body: Vec<u8>,
        content_type: &str,
        sender: &Sender,
    ) -> Result<Receipt, Rejection> {
        let inbound = Inbound { system: sys, body, content_type: content_type.to_owned(), decoded: None };
        let doc = match peppol::read_bytes(&inbound.body) {
            Ok(d) => d,
            Err(e) => return Err(self.reject(&inbound, e.code, e.reason, Correlation::default()).await),
        };
        let corr = Correlation {
            provider: doc.supplier.org_number.as_ref().map(|o| o.as_str().to_owned()),
            ..Default::default()
        };
        let Some(provider) = doc.supplier.org_number.clone() else {
            let reason = "the supplier names no Swedish organisation number (PartyLegalEntity/CompanyID)".to_owned();
            return Err(self.reject(&inbound, ErrorCode::MissingField, reason, corr).await);
        };
        if let Sender::Provider(org) = sender {
            if *org != provider {
                let reason = "an invoice of another provider".to_owned();
                return Err(self.reject(&inbound, ErrorCode::Forbidden, reason, corr).await);
            }
        }
        if self.routes.get(provider.as_str()).is_none_or(|r| r.system != sys.name) {
            let reason = format!("provider {provider} does not use the system {}", sys.name);
            return Err(self.reject(&inbound, ErrorCode::UnknownProvider, reason, corr).await);
        }
        let Some(start) = doc.invoice_period.as_ref().and_then(|p| p.start) else {
            let reason = "the invoice names no period (cac:InvoicePeriod/cbc:StartDate)".to_owned();
            return Err(self.reject(&inbound, ErrorCode::MissingField, reason, corr).await);
        };
        let month = Month::of(start);
        let month_key = month.first_day().format("%Y-%m").to_string();
        let (document, skipped) = to_invoice(&doc, &provider, month);
        let record = InvoiceRecord {
            provider: provider.as_str().to_owned(),
            kind: kind_str(doc.kind).to_owned(),
            id: doc.id.clone(),
            month: month_key.clone(),
            canonical: invoice_json(&document, &doc.billing_references, &skipped),
            log_seq: 0,
            received_at: now_ts(),
        };

        let _one_at_a_time = self.invoice_lock.lock().await;
        // What is verified: the invoice itself, or, for a credit note, the invoice it credits
        // (again, with the credit) when the hub has it.
        let credited = match doc.kind {
            PeppolKind::Invoice => None,
            PeppolKind::CreditNote => {
                let mut found = None;
                for id in &doc.billing_references {
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
            .filter(|r| !(r.id == doc.id && doc.kind == PeppolKind::CreditNote))
            .filter_map(invoice_from_record)
            .collect();
        if doc.kind == PeppolKind::CreditNote {
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
        let manual_share = self
            .store
            .manual_shares(&month_key)
            .await
            .map_err(store_unavailable)?
            .into_iter()
            .find(|s| s.provider == provider.as_str())
            .map(|s| ManualShare {
                manual: i64::try_from(s.manual).unwrap_or(i64::MAX),
                counted: i64::try_from(s.visits).unwrap_or(i64::MAX),
            });
        let input = VerificationInput { invoice: target.clone(), credit_notes, orders, already_verified, manual_share };
        let report = match verification::verify(&input, &self.invoice_policy) {
            Ok(r) => r,
            Err(e) => return Err(self.reject(&inbound, ErrorCode::InvalidValue, e.to_string(), corr).await),
        };
        let mut report_json =
            serde_json::to_value(&report).map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string()))?;
        report_json["not_verified"] = json!(skipped);
        report_json["reader_findings"] = json!(doc.findings);
        report_json["totals_check"] = json!(peppol::check_totals(&doc));
        let mut entry: NewLogEntry = inbound.entry(status::ACCEPTED);
        entry.message_type = kind_str(doc.kind).to_owned();
        entry.canonical = Some(report_json.to_string());
        corr.apply(&mut entry);
        let sends = self.report_deliveries(sys, &target, &report_json).await?;
        let mut ops = vec![
            Op::AppendLog(entry),
            Op::StoreInvoice(record),
            Op::RecordVerification(VerificationRecord {
                provider: provider.as_str().to_owned(),
                invoice_id: target.id.clone(),
                month: month_key,
                report: report_json.to_string(),
                lines: target.lines.iter().map(|l| l.id.clone()).collect(),
                log_seq: 0,
                created_at: now_ts(),
            }),
        ];
        let queued = !sends.is_empty();
        ops.extend(sends);
        let results = self.store.commit(ops).await.map_err(store_unavailable)?;
        if queued {
            self.outbox_notify.notify_one();
        }
        self.metrics.message(&sys.name, "in", kind_str(doc.kind), status::ACCEPTED);
        info!(system = %sys.name, lines = target.lines.len(), codes = report.codes().len(), "invoice verified");
        Ok(Receipt {
            message_id: crate::pipeline::logged_id(&results).unwrap_or_default(),
            status: status::ACCEPTED,
            message_type: carehub_model::MessageType::Receipt,
            decision_id: None,
            order_id: None,
            visits: Vec::new(),
            verification: Some(report_json),
        })
    }

    /// The report rendered for the provider's system and for the case-management systems of
    /// the invoice's orders, each in its own format (systems without a `verification`
    /// mapping are left out), as log entries and outbox rows for the verification's commit.
    async fn report_deliveries(
        &self,
        provider_system: &System,
        invoice: &Invoice,
        report: &serde_json::Value,
    ) -> Result<Vec<Op>, Rejection> {
        let mut targets: BTreeSet<String> = BTreeSet::from([provider_system.name.clone()]);
        for id in invoice.lines.iter().map(|l| l.order_id.as_str()).collect::<BTreeSet<_>>() {
            if let Some(o) = self.store.order(id).await.map_err(store_unavailable)? {
                targets.insert(o.source_system);
            }
        }
        let context = json!({ "report": report_context(report) });
        let stamp = now_ts();
        let mut ops = Vec::new();
        for name in targets {
            let Some(target) = self.registry.get(&name).cloned() else { continue };
            if target.mappings.outbound(carehub_model::MessageType::Verification).is_none() {
                continue;
            }
            let rendered = match target.encode(carehub_model::MessageType::Verification, &context) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(system = %target.name, code = e.code.as_str(), "cannot render a verification report");
                    continue;
                }
            };
            let key = format!("{}:{}:verification:{stamp}:{}", invoice.provider, invoice.id, target.name);
            let mut entry = crate::pipeline::outbound_entry(
                &target,
                carehub_model::MessageType::Verification,
                &rendered.content_type,
                &rendered.body,
                &key,
            );
            entry.canonical = Some(context.to_string());
            entry.provider = Some(invoice.provider.as_str().to_owned());
            ops.push(Op::AppendLog(entry));
            ops.push(Op::Enqueue(crate::store::NewDelivery {
                system: target.name.clone(),
                message_type: carehub_model::MessageType::Verification.as_str().to_owned(),
                order_id: None,
                idempotency_key: key,
                content_type: rendered.content_type,
                endpoint: rendered.endpoint,
                body: rendered.body,
                action: rendered.action,
            }));
        }
        Ok(ops)
    }

    /// The facts verification needs about each order an invoice's lines name.
    async fn order_facts(&self, invoice: &Invoice, month: &str) -> Result<Vec<OrderFacts>, Rejection> {
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
                .filter_map(|v| {
                    Some(VisitRecord {
                        check_in: parse_ts(&v.check_in)?,
                        check_out: v.check_out.as_deref().and_then(parse_ts),
                        validation: match v.outcome.as_str() {
                            "accepted" => Outcome::Accepted,
                            "flagged" => Outcome::Flagged,
                            _ => Outcome::Rejected,
                        },
                        outcome: match v.visit_outcome.as_str() {
                            "declined_at_door" => VisitOutcome::DeclinedAtDoor,
                            "cancelled_in_advance" => VisitOutcome::CancelledInAdvance,
                            _ => VisitOutcome::Performed,
                        },
                        planned_minutes: v.planned_minutes.and_then(|m| u32::try_from(m).ok()),
                        manual: v.manual,
                    })
                })
                .collect();
            let plan_notice = match (&record.plan_established_on, &record.plan_received_at) {
                (Some(on), Some(at)) => Some(PlanNoticeFacts {
                    established_on: NaiveDate::parse_from_str(on, "%Y-%m-%d").unwrap_or(record.order.plan_due),
                    arrived_at: parse_ts(at).unwrap_or_else(Utc::now),
                    compensated_before: false,
                }),
                _ => None,
            };
            facts.push(OrderFacts {
                order: record.order.clone(),
                decision_valid_from: decision.valid_from,
                decision_valid_to: decision.valid_to,
                visits,
                plan_notice,
            });
        }
        Ok(facts)
    }
}

/// Contracted rates from `(organisation number, kronor per hour)` pairs.
pub fn flat_rates(rates: &[(OrgNumber, i64)]) -> BTreeMap<OrgNumber, verification::Rates> {
    rates.iter().map(|(org, kr)| (org.clone(), verification::Rates::flat(kr * 100))).collect()
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
