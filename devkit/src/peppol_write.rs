//! Writing a minimal home-care PEPPOL BIS 3 invoice or credit note: what the demo's
//! providers send and what tests post. Only the elements [`carehub_core::peppol`] and the
//! verification read, with totals that add up (VAT exempt, category E).

use std::fmt::Write as _;

/// One line: its id, the order it bills (`OrderLineReference/LineID`), the minutes (unit
/// `MIN`), the amount in öre, and an optional comment (`cbc:Note`).
#[derive(Debug, Clone)]
pub struct Line {
    pub id: String,
    pub order_id: String,
    pub minutes: i64,
    pub amount_ore: i64,
    pub comment: Option<String>,
}

/// What the document is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Invoice,
    CreditNote,
}

fn kr(ore: i64) -> String {
    format!("{}{}.{:02}", if ore < 0 { "-" } else { "" }, ore.abs() / 100, ore.abs() % 100)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A UBL document from `supplier` (a Swedish organisation number) for the period
/// `from..=to`; a credit note names the invoice it credits.
#[allow(clippy::too_many_arguments)]
pub fn home_care(
    kind: Kind,
    id: &str,
    supplier: &str,
    supplier_name: &str,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
    credits: Option<&str>,
    lines: &[Line],
) -> String {
    let (root, ns, line_el, qty_el) = match kind {
        Kind::Invoice => ("Invoice", "Invoice-2", "InvoiceLine", "InvoicedQuantity"),
        Kind::CreditNote => ("CreditNote", "CreditNote-2", "CreditNoteLine", "CreditedQuantity"),
    };
    let total: i64 = lines.iter().map(|l| l.amount_ore).sum();
    let mut body = String::new();
    for l in lines {
        let note = l.comment.as_deref().map(|c| format!("<cbc:Note>{}</cbc:Note>", escape(c))).unwrap_or_default();
        let _ = write!(
            body,
            "<cac:{line_el}><cbc:ID>{id}</cbc:ID>{note}<cbc:{qty_el} unitCode=\"MIN\">{min}</cbc:{qty_el}>\
             <cbc:LineExtensionAmount currencyID=\"SEK\">{amount}</cbc:LineExtensionAmount>\
             <cac:OrderLineReference><cbc:LineID>{order}</cbc:LineID></cac:OrderLineReference>\
             <cac:Item><cbc:Name>Hemtjänst</cbc:Name><cac:ClassifiedTaxCategory><cbc:ID>E</cbc:ID>\
             <cbc:Percent>0</cbc:Percent><cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme>\
             </cac:ClassifiedTaxCategory></cac:Item></cac:{line_el}>",
            id = escape(&l.id),
            min = l.minutes,
            amount = kr(l.amount_ore),
            order = escape(&l.order_id),
        );
    }
    let billing = credits
        .map(|c| {
            format!(
                "<cac:BillingReference><cac:InvoiceDocumentReference><cbc:ID>{}</cbc:ID>\
                 </cac:InvoiceDocumentReference></cac:BillingReference>",
                escape(c)
            )
        })
        .unwrap_or_default();
    let total = kr(total);
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <{root} xmlns=\"urn:oasis:names:specification:ubl:schema:xsd:{ns}\" \
         xmlns:cac=\"urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2\" \
         xmlns:cbc=\"urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2\">\
         <cbc:CustomizationID>urn:cen.eu:en16931:2017#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0</cbc:CustomizationID>\
         <cbc:ProfileID>urn:fdc:peppol.eu:2017:poacc:billing:01:1.0</cbc:ProfileID>\
         <cbc:ID>{id}</cbc:ID><cbc:IssueDate>{issued}</cbc:IssueDate>\
         <cbc:DocumentCurrencyCode>SEK</cbc:DocumentCurrencyCode>\
         <cac:InvoicePeriod><cbc:StartDate>{from}</cbc:StartDate><cbc:EndDate>{to}</cbc:EndDate></cac:InvoicePeriod>\
         {billing}\
         <cac:AccountingSupplierParty><cac:Party><cac:PostalAddress><cac:Country>\
         <cbc:IdentificationCode>SE</cbc:IdentificationCode></cac:Country></cac:PostalAddress>\
         <cac:PartyLegalEntity><cbc:RegistrationName>{name}</cbc:RegistrationName>\
         <cbc:CompanyID schemeID=\"0007\">{supplier}</cbc:CompanyID></cac:PartyLegalEntity></cac:Party>\
         </cac:AccountingSupplierParty>\
         <cac:AccountingCustomerParty><cac:Party><cac:PartyLegalEntity>\
         <cbc:RegistrationName>Kommunen</cbc:RegistrationName></cac:PartyLegalEntity></cac:Party>\
         </cac:AccountingCustomerParty>\
         <cac:TaxTotal><cbc:TaxAmount currencyID=\"SEK\">0.00</cbc:TaxAmount><cac:TaxSubtotal>\
         <cbc:TaxableAmount currencyID=\"SEK\">{total}</cbc:TaxableAmount><cbc:TaxAmount currencyID=\"SEK\">0.00</cbc:TaxAmount>\
         <cac:TaxCategory><cbc:ID>E</cbc:ID><cbc:Percent>0</cbc:Percent>\
         <cbc:TaxExemptionReason>Hemtjänst, undantagen från mervärdesskatt</cbc:TaxExemptionReason>\
         <cac:TaxScheme><cbc:ID>VAT</cbc:ID></cac:TaxScheme></cac:TaxCategory></cac:TaxSubtotal></cac:TaxTotal>\
         <cac:LegalMonetaryTotal><cbc:LineExtensionAmount currencyID=\"SEK\">{total}</cbc:LineExtensionAmount>\
         <cbc:TaxExclusiveAmount currencyID=\"SEK\">{total}</cbc:TaxExclusiveAmount>\
         <cbc:TaxInclusiveAmount currencyID=\"SEK\">{total}</cbc:TaxInclusiveAmount>\
         <cbc:PayableAmount currencyID=\"SEK\">{total}</cbc:PayableAmount></cac:LegalMonetaryTotal>\
         {body}</{root}>",
        id = escape(id),
        issued = to.succ_opt().unwrap_or(to),
        name = escape(supplier_name),
        supplier = escape(supplier),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_with_totals_that_add_up() {
        let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 11, d).expect("date");
        let lines = [
            Line { id: "1".into(), order_id: "O-1".into(), minutes: 90, amount_ore: 58_500, comment: None },
            Line {
                id: "2".into(),
                order_id: "O-2".into(),
                minutes: 30,
                amount_ore: 19_500,
                comment: Some("Extra <besök>".into()),
            },
        ];
        let text = home_care(Kind::Invoice, "F-1", "5599000014", "Norr & Co AB", day(1), day(30), None, &lines);
        let doc = carehub_core::peppol::read(&text).expect("reads");
        assert!(carehub_core::peppol::check_totals(&doc).is_empty());
        let read = carehub_core::peppol::home_care_lines(&doc);
        assert!(read.iter().all(|l| l.is_home_care()), "{read:?}");
        assert_eq!(read[1].comment.as_deref(), Some("Extra <besök>"));
        assert_eq!(doc.supplier.org_number.as_ref().map(|o| o.as_str()), Some("5599000014"));
        let credit =
            home_care(Kind::CreditNote, "C-1", "5599000014", "Norr", day(1), day(30), Some("F-1"), &lines[..1]);
        let doc = carehub_core::peppol::read(&credit).expect("reads");
        assert_eq!(doc.billing_references, vec!["F-1".to_owned()]);
    }
}
