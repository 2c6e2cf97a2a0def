//! What a reading of a PEPPOL document is: parties, period, lines, allowances and charges,
//! tax and monetary totals, and the coded findings about what could not be used.

use super::*;

/// A UBL invoice or credit note as read. Amounts are in [`currency`](Self::currency)
/// unless said otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeppolDocument {
    /// Which UBL document it is.
    pub kind: InvoiceKind,
    /// `cbc:ID`, the invoice number.
    pub id: String,
    pub issue_date: NaiveDate,
    /// `cbc:DueDate` (invoices only).
    pub due_date: Option<NaiveDate>,
    /// `cbc:InvoiceTypeCode` or `cbc:CreditNoteTypeCode` (380, 381, ...).
    pub type_code: Option<String>,
    pub customization_id: Option<String>,
    pub profile_id: Option<String>,
    /// `cbc:DocumentCurrencyCode`.
    pub currency: String,
    /// `cbc:TaxCurrencyCode`, when VAT is also accounted in another currency.
    pub tax_currency: Option<String>,
    /// Document-level `cbc:Note`s.
    pub notes: Vec<String>,
    pub buyer_reference: Option<String>,
    /// `cac:OrderReference/cbc:ID`.
    pub order_reference: Option<String>,
    /// `cac:InvoicePeriod` at document level.
    pub invoice_period: Option<Period>,
    /// `cac:BillingReference/cac:InvoiceDocumentReference/cbc:ID`: the invoices a credit
    /// note (or a corrective invoice) refers to.
    pub billing_references: Vec<String>,
    /// `cac:AccountingSupplierParty/cac:Party`.
    pub supplier: Party,
    /// `cac:AccountingCustomerParty/cac:Party`.
    pub customer: Party,
    /// Document-level `cac:AllowanceCharge`s.
    pub allowance_charges: Vec<AllowanceCharge>,
    /// Every `cac:TaxTotal`; see [`PeppolDocument::tax_total`].
    pub tax_totals: Vec<TaxTotal>,
    /// `cac:LegalMonetaryTotal`.
    pub totals: MonetaryTotal,
    /// `cac:InvoiceLine`s or `cac:CreditNoteLine`s, in document order.
    pub lines: Vec<Line>,
    /// What was noticed while reading (the Swedish organisation number rules).
    pub findings: Vec<PeppolFinding>,
}

impl PeppolDocument {
    /// The `cac:TaxTotal` in the document currency (the one with the subtotals); a second
    /// one, in the tax currency, may follow it.
    pub fn tax_total(&self) -> Option<&TaxTotal> {
        self.tax_totals.iter().find(|t| t.currency.as_deref().is_none_or(|c| c == self.currency))
    }
}

/// A period, such as `cac:InvoicePeriod`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
}

/// An identifier with its optional `schemeID` (ISO 6523 ICD such as `0007` for a Swedish
/// organisation number, `0088` for a GLN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identifier {
    pub value: String,
    pub scheme: Option<String>,
}

/// A party: the supplier or the customer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Party {
    /// `cbc:EndpointID`, the party's PEPPOL address.
    pub endpoint: Option<Identifier>,
    /// `cac:PartyIdentification/cbc:ID`s.
    pub identifiers: Vec<Identifier>,
    /// `cac:PartyName/cbc:Name`, the trading name.
    pub name: Option<String>,
    /// `cac:PartyLegalEntity/cbc:RegistrationName`.
    pub registration_name: Option<String>,
    /// `cac:PartyLegalEntity/cbc:CompanyID`, the legal registration (for a Swedish party,
    /// the organisation number).
    pub company_id: Option<Identifier>,
    /// `cac:PartyTaxScheme/cbc:CompanyID` where the tax scheme is `VAT`.
    pub vat_id: Option<String>,
    /// `cac:PostalAddress/cac:Country/cbc:IdentificationCode`.
    pub country: Option<String>,
    /// The Swedish organisation number, when the party is Swedish and it is valid: from
    /// [`company_id`](Self::company_id), else from the ten digits of a Swedish VAT id
    /// (`SE` + organisation number + `01`).
    pub org_number: Option<OrgNumber>,
}

impl Party {
    /// Whether the party is Swedish: country `SE`, a VAT id starting `SE`, or a company id
    /// in the Swedish organisation number scheme `0007`.
    pub fn is_swedish(&self) -> bool {
        self.country.as_deref() == Some("SE")
            || self.vat_id.as_deref().is_some_and(|v| v.starts_with("SE"))
            || self.company_id.as_ref().is_some_and(|c| c.scheme.as_deref() == Some("0007"))
    }
}

/// A tax category (`cac:TaxCategory` or `cac:ClassifiedTaxCategory`): `S` standard, `E`
/// exempt, `Z` zero rated, `O` outside the scope of VAT, `AE` reverse charge, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaxCategory {
    pub id: String,
    pub percent: Option<Decimal>,
    pub exemption_reason: Option<String>,
}

/// A `cac:AllowanceCharge`, at document or line level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowanceCharge {
    /// `cbc:ChargeIndicator`: `true` a charge (added), `false` an allowance (subtracted).
    pub charge: bool,
    pub amount: Decimal,
    pub base_amount: Option<Decimal>,
    pub reason: Option<String>,
    pub reason_code: Option<String>,
    /// Present at document level.
    pub tax_category: Option<TaxCategory>,
}

/// A `cac:TaxTotal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaxTotal {
    /// `cbc:TaxAmount`.
    pub amount: Decimal,
    /// Its `currencyID`.
    pub currency: Option<String>,
    pub subtotals: Vec<TaxSubtotal>,
}

/// A `cac:TaxSubtotal`: the VAT breakdown for one category and rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaxSubtotal {
    pub taxable_amount: Decimal,
    pub tax_amount: Decimal,
    pub category: TaxCategory,
}

/// `cac:LegalMonetaryTotal` as stated by the document. Only `PayableAmount` is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonetaryTotal {
    pub line_extension_amount: Option<Decimal>,
    pub tax_exclusive_amount: Option<Decimal>,
    pub tax_inclusive_amount: Option<Decimal>,
    pub allowance_total_amount: Option<Decimal>,
    pub charge_total_amount: Option<Decimal>,
    pub prepaid_amount: Option<Decimal>,
    pub payable_rounding_amount: Option<Decimal>,
    pub payable_amount: Decimal,
}

/// A quantity with its UN/ECE Rec 20 `unitCode` (`HUR` hours, `MIN` minutes, `C62` one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quantity {
    pub value: Decimal,
    pub unit: Option<String>,
}

/// `cac:Price`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Price {
    /// `cbc:PriceAmount`, the net price per base quantity.
    pub amount: Decimal,
    /// `cbc:BaseQuantity`, 1 when absent.
    pub base_quantity: Option<Quantity>,
}

/// An invoice or credit note line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub id: String,
    /// `cbc:Note`, the line's comment.
    pub note: Option<String>,
    /// `cbc:InvoicedQuantity` or `cbc:CreditedQuantity`.
    pub quantity: Quantity,
    /// `cbc:LineExtensionAmount`, the line's net amount (after its allowances and charges).
    pub line_extension_amount: Decimal,
    /// `cac:OrderLineReference/cbc:LineID`; carehub's order id travels here.
    pub order_line_reference: Option<String>,
    /// `cac:InvoicePeriod` of the line.
    pub period: Option<Period>,
    /// `cac:Item/cbc:Name`.
    pub item_name: Option<String>,
    /// `cac:Item/cac:ClassifiedTaxCategory`.
    pub tax_category: Option<TaxCategory>,
    pub price: Option<Price>,
    /// Line-level `cac:AllowanceCharge`s.
    pub allowance_charges: Vec<AllowanceCharge>,
}

/// What a finding is about. The codes are stable: they are shown to people and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum FindingCode {
    /// PEPPOL SE-R-003: a Swedish organisation number should be numeric.
    #[serde(rename = "SE-R-003")]
    SeR003,
    /// PEPPOL SE-R-004: a Swedish organisation number should have 10 digits.
    #[serde(rename = "SE-R-004")]
    SeR004,
    /// PEPPOL SE-R-013: the last digit of a Swedish organisation number should be a valid
    /// Luhn check digit.
    #[serde(rename = "SE-R-013")]
    SeR013,
    /// The line's quantity is not time (unit other than `HUR` or `MIN`): not home care.
    #[serde(rename = "PEPPOL_NOT_TIME_UNIT")]
    NotTimeUnit,
    /// The line has no `cac:OrderLineReference/cbc:LineID`, so no order to verify against.
    #[serde(rename = "PEPPOL_NO_ORDER_REFERENCE")]
    NoOrderReference,
    /// The line's VAT category is not `E` (home care is exempt from VAT), or is missing.
    #[serde(rename = "PEPPOL_VAT_NOT_EXEMPT")]
    VatNotExempt,
    /// A total of the document differs from the one recomputed from its lines, allowances,
    /// charges and tax ([`check_totals`]).
    #[serde(rename = "PEPPOL_TOTAL_MISMATCH")]
    TotalMismatch,
    /// A line's net amount differs from quantity × price ÷ base quantity − allowances +
    /// charges, rounded to two decimals ([`check_totals`]).
    #[serde(rename = "PEPPOL_LINE_AMOUNT_MISMATCH")]
    LineAmountMismatch,
}

impl FindingCode {
    /// The code as shown and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingCode::SeR003 => "SE-R-003",
            FindingCode::SeR004 => "SE-R-004",
            FindingCode::SeR013 => "SE-R-013",
            FindingCode::NotTimeUnit => "PEPPOL_NOT_TIME_UNIT",
            FindingCode::NoOrderReference => "PEPPOL_NO_ORDER_REFERENCE",
            FindingCode::VatNotExempt => "PEPPOL_VAT_NOT_EXEMPT",
            FindingCode::TotalMismatch => "PEPPOL_TOTAL_MISMATCH",
            FindingCode::LineAmountMismatch => "PEPPOL_LINE_AMOUNT_MISMATCH",
        }
    }
}

impl fmt::Display for FindingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something the PEPPOL reader noticed about a document or one of its lines: not an error,
/// the reading stands (not a rule finding: those are `VisitFinding` and `InvoiceFinding`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeppolFinding {
    pub code: FindingCode,
    /// The line's `cbc:ID`, for a line-level finding.
    pub line: Option<String>,
    pub message: String,
}

impl PeppolFinding {
    pub(super) fn document(code: FindingCode, message: impl Into<String>) -> PeppolFinding {
        PeppolFinding { code, line: None, message: message.into() }
    }

    pub(super) fn line(code: FindingCode, line: &str, message: impl Into<String>) -> PeppolFinding {
        PeppolFinding { code, line: Some(line.to_owned()), message: message.into() }
    }
}
