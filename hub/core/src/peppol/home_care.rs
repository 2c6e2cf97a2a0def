//! Per line, what an invoice verifier uses from a home-care invoice: order id, minutes,
//! amount, comment, VAT category.

use super::*;

/// One line as an invoice verifier (SPEC §7) reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineReading {
    /// The line's `cbc:ID`.
    pub line_id: String,
    /// The order id, from `cac:OrderLineReference/cbc:LineID`.
    pub order_id: Option<String>,
    /// The quantity in minutes as written (hours × 60 for `HUR`, as is for `MIN`), exact;
    /// `None` for another unit. Positive on a credit note that credits time: see
    /// [`credit`](Self::credit) and [`net_minutes`](Self::net_minutes).
    pub minutes: Option<Decimal>,
    /// The line's net amount (`cbc:LineExtensionAmount`) as written.
    pub amount: Decimal,
    /// The line's `cbc:Note`: a comment from the provider.
    pub comment: Option<String>,
    /// The line's VAT category (`E` for home care).
    pub vat_category: Option<String>,
    /// Whether the line is on a credit note: it takes back what it states.
    pub credit: bool,
    /// Why the line cannot be verified as home care, or what is odd about it.
    pub findings: Vec<PeppolFinding>,
}

impl LineReading {
    /// Minutes as they count for the invoiced total: negative for a credit.
    pub fn net_minutes(&self) -> Option<Decimal> {
        self.minutes.map(|m| if self.credit { -m } else { m })
    }

    /// The amount as it counts for the invoiced total: negative for a credit.
    pub fn net_amount(&self) -> Decimal {
        if self.credit {
            -self.amount
        } else {
            self.amount
        }
    }

    /// Whether the line reads as home care: time, an order, VAT exempt.
    pub fn is_home_care(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Each line as a home-care verifier uses it. A line that is not home care (another unit,
/// no order reference, a VAT category other than `E`) carries a coded finding; nothing here
/// fails.
pub fn home_care_lines(doc: &PeppolDocument) -> Vec<LineReading> {
    doc.lines
        .iter()
        .map(|l| {
            let mut findings = Vec::new();
            let unit = l.quantity.unit.as_deref();
            let minutes = match unit {
                Some("HUR") => Some(l.quantity.value.mul_int(60)),
                Some("MIN") => Some(l.quantity.value),
                _ => {
                    findings.push(PeppolFinding::line(
                        FindingCode::NotTimeUnit,
                        &l.id,
                        format!(
                            "the quantity's unit is {}, not HUR (hours) or MIN (minutes): not home care",
                            unit.unwrap_or("missing")
                        ),
                    ));
                    None
                }
            };
            if l.order_line_reference.is_none() {
                findings.push(PeppolFinding::line(
                    FindingCode::NoOrderReference,
                    &l.id,
                    "the line has no OrderLineReference/LineID, so no order to verify it against",
                ));
            }
            let vat_category = l.tax_category.as_ref().map(|c| c.id.clone());
            if vat_category.as_deref() != Some("E") {
                findings.push(PeppolFinding::line(
                    FindingCode::VatNotExempt,
                    &l.id,
                    format!(
                        "the line's VAT category is {}, not E (home care is exempt from VAT)",
                        vat_category.as_deref().unwrap_or("missing")
                    ),
                ));
            }
            LineReading {
                line_id: l.id.clone(),
                order_id: l.order_line_reference.clone(),
                minutes,
                amount: l.line_extension_amount,
                comment: l.note.clone(),
                vat_category,
                credit: doc.kind == InvoiceKind::CreditNote,
                findings,
            }
        })
        .collect()
}
