//! Reading UBL 2.1 XML into a [`PeppolDocument`] through the hub's one safe XML tree, with
//! the Swedish national rules on the supplier's organisation number.

use super::*;

/// Reads a PEPPOL BIS Billing 3 invoice or credit note from bytes: UTF-8, or ISO-8859-1 /
/// Windows-1252 where the declaration says so (what Swedish invoicing systems write); an
/// unknown encoding, or a declaration its bytes contradict, is `UNSUPPORTED_ENCODING`.
pub fn read_bytes(bytes: &[u8]) -> Result<PeppolDocument, ValidationError> {
    const ACCEPTED: [&encoding_rs::Encoding; 2] = [encoding_rs::UTF_8, encoding_rs::WINDOWS_1252];
    let text = crate::mapping::text::detect_accepted(bytes, encoding_rs::UTF_8, &ACCEPTED)?.decode()?;
    read(&text)
}

/// Reads a PEPPOL BIS Billing 3 invoice or credit note.
///
/// Errors: [`ErrorCode::MalformedPayload`] (not XML), [`ErrorCode::DtdForbidden`],
/// [`ErrorCode::UnknownMessageType`] (not a UBL `Invoice` or `CreditNote`),
/// [`ErrorCode::MissingField`] (a mandatory element absent), [`ErrorCode::InvalidValue`]
/// (a number that is not a decimal, a charge indicator that is not a boolean) and
/// [`ErrorCode::InvalidDate`]. Each message names the element.
pub fn read(input: &str) -> Result<PeppolDocument, ValidationError> {
    let root = xml::parse(input)?;
    let kind = match (root.name.as_str(), root.namespace.as_deref()) {
        ("Invoice", Some(NS_INVOICE)) => InvoiceKind::Invoice,
        ("CreditNote", Some(NS_CREDIT_NOTE)) => InvoiceKind::CreditNote,
        _ => {
            return Err(ValidationError::new(
                ErrorCode::UnknownMessageType,
                format!(
                    "the root element <{}> is not a UBL 2.1 Invoice or CreditNote (namespace {NS_INVOICE} or \
                     {NS_CREDIT_NOTE})",
                    root.name
                ),
            ))
        }
    };
    let (line_name, quantity_name, type_code_name) = match kind {
        InvoiceKind::Invoice => ("cac:InvoiceLine", "cbc:InvoicedQuantity", "cbc:InvoiceTypeCode"),
        InvoiceKind::CreditNote => ("cac:CreditNoteLine", "cbc:CreditedQuantity", "cbc:CreditNoteTypeCode"),
    };

    let id = required_text(&root, "cbc:ID")?;
    let issue_date = date(&root, "cbc:IssueDate")?.ok_or_else(|| missing("cbc:IssueDate"))?;
    let currency = required_text(&root, "cbc:DocumentCurrencyCode")?;
    let monetary = at(&root, "cac:LegalMonetaryTotal").ok_or_else(|| missing("cac:LegalMonetaryTotal"))?;
    let totals = MonetaryTotal {
        line_extension_amount: amount(monetary, "cbc:LineExtensionAmount", "cac:LegalMonetaryTotal")?,
        tax_exclusive_amount: amount(monetary, "cbc:TaxExclusiveAmount", "cac:LegalMonetaryTotal")?,
        tax_inclusive_amount: amount(monetary, "cbc:TaxInclusiveAmount", "cac:LegalMonetaryTotal")?,
        allowance_total_amount: amount(monetary, "cbc:AllowanceTotalAmount", "cac:LegalMonetaryTotal")?,
        charge_total_amount: amount(monetary, "cbc:ChargeTotalAmount", "cac:LegalMonetaryTotal")?,
        prepaid_amount: amount(monetary, "cbc:PrepaidAmount", "cac:LegalMonetaryTotal")?,
        payable_rounding_amount: amount(monetary, "cbc:PayableRoundingAmount", "cac:LegalMonetaryTotal")?,
        payable_amount: amount(monetary, "cbc:PayableAmount", "cac:LegalMonetaryTotal")?
            .ok_or_else(|| missing("cac:LegalMonetaryTotal/cbc:PayableAmount"))?,
    };

    let lines = kids(&root, line_name)
        .enumerate()
        .map(|(i, el)| line(el, &format!("{line_name}[{}]", i + 1), quantity_name))
        .collect::<Result<Vec<_>, _>>()?;
    if lines.is_empty() {
        return Err(missing(line_name));
    }

    let tax_totals = kids(&root, "cac:TaxTotal").map(tax_total).collect::<Result<Vec<_>, _>>()?;
    let allowance_charges = kids(&root, "cac:AllowanceCharge")
        .map(|el| allowance_charge(el, "cac:AllowanceCharge"))
        .collect::<Result<_, _>>()?;
    let supplier = party(at(&root, "cac:AccountingSupplierParty/cac:Party"));
    let customer = party(at(&root, "cac:AccountingCustomerParty/cac:Party"));
    let findings = swedish_supplier_findings(&supplier);

    Ok(PeppolDocument {
        kind,
        id,
        issue_date,
        due_date: date(&root, "cbc:DueDate")?,
        type_code: text(&root, type_code_name),
        customization_id: text(&root, "cbc:CustomizationID"),
        profile_id: text(&root, "cbc:ProfileID"),
        currency,
        tax_currency: text(&root, "cbc:TaxCurrencyCode"),
        notes: kids(&root, "cbc:Note").filter_map(own_text).collect(),
        buyer_reference: text(&root, "cbc:BuyerReference"),
        order_reference: text(&root, "cac:OrderReference/cbc:ID"),
        invoice_period: at(&root, "cac:InvoicePeriod").map(period).transpose()?,
        billing_references: kids(&root, "cac:BillingReference")
            .filter_map(|b| text(b, "cac:InvoiceDocumentReference/cbc:ID"))
            .collect(),
        supplier,
        customer,
        allowance_charges,
        tax_totals,
        totals,
        lines,
        findings,
    })
}

fn line(el: &Element, context: &str, quantity_name: &str) -> Result<Line, ValidationError> {
    let id = text(el, "cbc:ID").ok_or_else(|| missing(&format!("{context}/cbc:ID")))?;
    let context = format!("{context} (line {id})");
    let invoiced =
        quantity(el, quantity_name, &context)?.ok_or_else(|| missing(&format!("{context}/{quantity_name}")))?;
    let line_extension_amount = amount(el, "cbc:LineExtensionAmount", &context)?
        .ok_or_else(|| missing(&format!("{context}/cbc:LineExtensionAmount")))?;
    let price = match at(el, "cac:Price") {
        Some(p) => match amount(p, "cbc:PriceAmount", &context)? {
            Some(amount) => Some(Price { amount, base_quantity: quantity(p, "cbc:BaseQuantity", &context)? }),
            None => None,
        },
        None => None,
    };
    Ok(Line {
        note: text(el, "cbc:Note"),
        quantity: invoiced,
        line_extension_amount,
        order_line_reference: text(el, "cac:OrderLineReference/cbc:LineID"),
        period: at(el, "cac:InvoicePeriod").map(period).transpose()?,
        item_name: text(el, "cac:Item/cbc:Name"),
        tax_category: at(el, "cac:Item/cac:ClassifiedTaxCategory").map(|c| tax_category(c, &context)).transpose()?,
        price,
        allowance_charges: kids(el, "cac:AllowanceCharge")
            .map(|ac| allowance_charge(ac, &context))
            .collect::<Result<_, _>>()?,
        id,
    })
}

fn party(el: Option<&Element>) -> Party {
    let Some(el) = el else { return Party::default() };
    let identifier = |e: &Element| own_text(e).map(|value| Identifier { value, scheme: attr(e, "schemeID") });
    let vat_id = kids(el, "cac:PartyTaxScheme")
        .find(|s| text(s, "cac:TaxScheme/cbc:ID").as_deref() == Some("VAT"))
        .and_then(|s| text(s, "cbc:CompanyID"));
    let mut party = Party {
        endpoint: at(el, "cbc:EndpointID").and_then(identifier),
        identifiers: kids(el, "cac:PartyIdentification")
            .filter_map(|p| at(p, "cbc:ID"))
            .filter_map(identifier)
            .collect(),
        name: text(el, "cac:PartyName/cbc:Name"),
        registration_name: text(el, "cac:PartyLegalEntity/cbc:RegistrationName"),
        company_id: at(el, "cac:PartyLegalEntity/cbc:CompanyID").and_then(identifier),
        vat_id,
        country: text(el, "cac:PostalAddress/cac:Country/cbc:IdentificationCode"),
        org_number: None,
    };
    if party.is_swedish() {
        let from_company_id = party.company_id.as_ref().and_then(|c| OrgNumber::parse(&c.value).ok());
        let from_vat = || {
            let vat = party.vat_id.as_deref()?;
            let digits = vat.strip_prefix("SE")?.strip_suffix("01")?;
            OrgNumber::parse(digits).ok()
        };
        party.org_number = from_company_id.or_else(from_vat);
    }
    party
}

/// The rules SE-R-003, SE-R-004 and SE-R-013, which PEPPOL applies to
/// `cac:PartyLegalEntity/cbc:CompanyID` of a Swedish supplier (without a scheme, or in the
/// organisation number scheme `0007`). As in PEPPOL, the number is checked as written: a
/// hyphen (`NNNNNN-NNNN`) is not numeric, even though [`OrgNumber::parse`] accepts it.
fn swedish_supplier_findings(supplier: &Party) -> Vec<PeppolFinding> {
    let Some(company_id) = &supplier.company_id else { return Vec::new() };
    if !supplier.is_swedish() || company_id.scheme.as_deref().is_some_and(|s| s != "0007") {
        return Vec::new();
    }
    org_number_findings(&company_id.value)
}

/// The SE-R-003/004/013 findings for an organisation number as written. SE-R-013 can only
/// be judged on 10 digits, so it is reported only then. Messages never quote the number.
pub fn org_number_findings(value: &str) -> Vec<PeppolFinding> {
    let value = value.trim();
    let numeric = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    let ten = value.chars().count() == 10;
    let mut findings = Vec::new();
    if !numeric {
        findings.push(PeppolFinding::document(
            FindingCode::SeR003,
            "SE-R-003: the supplier's Swedish organisation number (PartyLegalEntity/CompanyID) should be numeric",
        ));
    }
    if !ten {
        findings.push(PeppolFinding::document(
            FindingCode::SeR004,
            "SE-R-004: the supplier's Swedish organisation number (PartyLegalEntity/CompanyID) should have 10 digits",
        ));
    }
    if numeric && ten {
        let digits: Vec<u8> = value.bytes().map(|b| b - b'0').collect();
        if !luhn_valid(&digits) {
            findings.push(PeppolFinding::document(
                FindingCode::SeR013,
                "SE-R-013: the last digit of the supplier's Swedish organisation number (PartyLegalEntity/CompanyID) \
                 should be a valid Luhn check digit",
            ));
        }
    }
    findings
}

fn period(el: &Element) -> Result<Period, ValidationError> {
    Ok(Period { start: date(el, "cbc:StartDate")?, end: date(el, "cbc:EndDate")? })
}

fn tax_category(el: &Element, context: &str) -> Result<TaxCategory, ValidationError> {
    Ok(TaxCategory {
        id: text(el, "cbc:ID").ok_or_else(|| missing(&format!("{context}/{}/cbc:ID", prefixed(el))))?,
        percent: amount(el, "cbc:Percent", context)?,
        exemption_reason: text(el, "cbc:TaxExemptionReason"),
    })
}

fn allowance_charge(el: &Element, context: &str) -> Result<AllowanceCharge, ValidationError> {
    let context = format!("{context}/cac:AllowanceCharge");
    let charge = match text(el, "cbc:ChargeIndicator").as_deref() {
        Some("true" | "1") => true,
        Some("false" | "0") => false,
        Some(_) => return Err(invalid(&format!("{context}/cbc:ChargeIndicator"), "is not true or false")),
        None => return Err(missing(&format!("{context}/cbc:ChargeIndicator"))),
    };
    Ok(AllowanceCharge {
        charge,
        amount: amount(el, "cbc:Amount", &context)?.ok_or_else(|| missing(&format!("{context}/cbc:Amount")))?,
        base_amount: amount(el, "cbc:BaseAmount", &context)?,
        reason: text(el, "cbc:AllowanceChargeReason"),
        reason_code: text(el, "cbc:AllowanceChargeReasonCode"),
        tax_category: at(el, "cac:TaxCategory").map(|c| tax_category(c, &context)).transpose()?,
    })
}

fn tax_total(el: &Element) -> Result<TaxTotal, ValidationError> {
    let context = "cac:TaxTotal";
    let amount_el = at(el, "cbc:TaxAmount").ok_or_else(|| missing("cac:TaxTotal/cbc:TaxAmount"))?;
    let subtotals = kids(el, "cac:TaxSubtotal")
        .map(|s| {
            let context = "cac:TaxTotal/cac:TaxSubtotal";
            Ok(TaxSubtotal {
                taxable_amount: amount(s, "cbc:TaxableAmount", context)?
                    .ok_or_else(|| missing(&format!("{context}/cbc:TaxableAmount")))?,
                tax_amount: amount(s, "cbc:TaxAmount", context)?
                    .ok_or_else(|| missing(&format!("{context}/cbc:TaxAmount")))?,
                category: tax_category(
                    at(s, "cac:TaxCategory").ok_or_else(|| missing(&format!("{context}/cac:TaxCategory")))?,
                    context,
                )?,
            })
        })
        .collect::<Result<_, ValidationError>>()?;
    Ok(TaxTotal {
        amount: amount(el, "cbc:TaxAmount", context)?.unwrap_or_default(),
        currency: attr(amount_el, "currencyID"),
        subtotals,
    })
}

// --- element access, by namespace and local name --------------------------------------

/// Whether `el` is the element `step`, written `cac:Name` or `cbc:Name` (the prefixes are
/// this module's, mapped to the UBL namespaces; the document may use any).
fn is(el: &Element, step: &str) -> bool {
    let (prefix, local) = step.split_once(':').unwrap_or(("", step));
    let ns = match prefix {
        "cac" => NS_CAC,
        "cbc" => NS_CBC,
        _ => return false,
    };
    el.name == local && el.namespace.as_deref() == Some(ns)
}

fn kids<'a>(el: &'a Element, step: &'a str) -> impl Iterator<Item = &'a Element> {
    el.children.iter().filter(move |c| is(c, step))
}

/// The first element at `path` (`cac:A/cbc:B`) below `el`.
fn at<'a>(el: &'a Element, path: &str) -> Option<&'a Element> {
    path.split('/').try_fold(el, |cur, step| cur.children.iter().find(|c| is(c, step)))
}

fn own_text(el: &Element) -> Option<String> {
    let t = el.text.trim();
    (!t.is_empty()).then(|| t.to_owned())
}

fn text(el: &Element, path: &str) -> Option<String> {
    at(el, path).and_then(own_text)
}

fn attr(el: &Element, name: &str) -> Option<String> {
    el.attr(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
}

/// `cac:Name` for an element of ours, for messages.
fn prefixed(el: &Element) -> String {
    let prefix = match el.namespace.as_deref() {
        Some(NS_CBC) => "cbc:",
        Some(NS_CAC) => "cac:",
        _ => "",
    };
    format!("{prefix}{}", el.name)
}

fn missing(element: &str) -> ValidationError {
    ValidationError::new(ErrorCode::MissingField, format!("{element} is missing"))
}

fn invalid(element: &str, what: &str) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidValue, format!("{element} {what}"))
}

fn required_text(el: &Element, path: &str) -> Result<String, ValidationError> {
    text(el, path).ok_or_else(|| missing(path))
}

fn date(el: &Element, path: &str) -> Result<Option<NaiveDate>, ValidationError> {
    let Some(t) = text(el, path) else { return Ok(None) };
    NaiveDate::parse_from_str(&t, "%Y-%m-%d")
        .map(Some)
        .map_err(|_| ValidationError::new(ErrorCode::InvalidDate, format!("{path} is not a date (YYYY-MM-DD)")))
}

/// A decimal element below `el`: `None` when absent, an error when present but not a
/// decimal number.
fn amount(el: &Element, path: &str, context: &str) -> Result<Option<Decimal>, ValidationError> {
    let Some(t) = text(el, path) else { return Ok(None) };
    Decimal::parse(&t).map(Some).ok_or_else(|| {
        invalid(&format!("{context}/{path}"), "is not a decimal number (at most 18 integer digits and 9 decimals)")
    })
}

fn quantity(el: &Element, path: &str, context: &str) -> Result<Option<Quantity>, ValidationError> {
    let Some(value) = amount(el, path, context)? else { return Ok(None) };
    let unit = at(el, path).and_then(|q| attr(q, "unitCode"));
    Ok(Some(Quantity { value, unit }))
}
