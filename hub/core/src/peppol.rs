//! Reading PEPPOL BIS Billing 3 invoices and credit notes (UBL 2.1), the format Swedish
//! public buyers receive e-invoices in (SPEC §4.3, §7).
//!
//! What it is: a reader that turns a UBL `Invoice` or `CreditNote` into a plain
//! [`PeppolDocument`] (parties, period, lines, allowances and charges, tax and monetary
//! totals), with exact [`Decimal`] amounts, plus three pure functions over a reading:
//! [`totals_from_lines`] recomputes the totals the way EN 16931 defines them,
//! [`check_totals`] compares them with what the document states, and [`home_care_lines`]
//! says per line what an invoice verifier uses (order id, minutes, amount, comment, VAT
//! category). What it is not: a schematron validator, nor the verification of SPEC §7; it
//! reads what the verifier needs and explains, with a coded [`PeppolFinding`], what it cannot
//! use, instead of failing.
//!
//! Only a document it cannot read at all is an error ([`ValidationError`]): not XML, a DTD
//! (refused by [`crate::mapping::xml::parse`], the hub's one safe XML tree), not a UBL
//! `Invoice`/`CreditNote`, or without one of `cbc:ID`, `cbc:IssueDate`,
//! `cbc:DocumentCurrencyCode`, `cac:LegalMonetaryTotal/cbc:PayableAmount` or a line.
//! Elements are matched by namespace and local name, so any prefixes work.
//!
//! The Swedish national rules SE-R-003, SE-R-004 and SE-R-013 (warnings in PEPPOL) are
//! checked on a Swedish supplier's organisation number (`cac:PartyLegalEntity/cbc:CompanyID`)
//! and reported as findings on the reading. Finding messages never quote an organisation
//! number: a sole trader's is their personal identity number.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, Neg, Sub};
use std::str::FromStr;

use carehub_model::id::luhn_valid;
use carehub_model::{ErrorCode, InvoiceKind, OrgNumber, ValidationError};
use chrono::NaiveDate;
use serde::{Serialize, Serializer};

use crate::mapping::xml::{self, Element};

/// The namespace of a UBL 2.1 `Invoice`.
pub const NS_INVOICE: &str = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2";
/// The namespace of a UBL 2.1 `CreditNote`.
pub const NS_CREDIT_NOTE: &str = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2";
/// UBL common aggregate components (`cac:`).
pub const NS_CAC: &str = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2";
/// UBL common basic components (`cbc:`).
pub const NS_CBC: &str = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2";

// ---------------------------------------------------------------------------------------
// Decimal
// ---------------------------------------------------------------------------------------

/// Decimal places a [`Decimal`] holds.
const SCALE: u32 = 9;
/// `10^SCALE`.
const ONE: i128 = 1_000_000_000;
/// Most integer digits a document's number may have.
const MAX_INTEGER_DIGITS: usize = 18;

/// An exact decimal number with 9 decimal places (a fixed-point `i128` in units of 10⁻⁹),
/// for amounts, prices, quantities and percentages. Never a float.
///
/// Read numbers have at most 18 integer digits and 9 significant decimals (more decimals
/// than 9 are refused unless they are zeros), so sums of any number of lines a document
/// can hold stay far from the `i128` limit; `+` and `-` saturate rather than wrap in the
/// impossible case. Equality is numeric: `1300` equals `1300.00`. `Display` (and `Debug`)
/// print the shortest exact form; serialized as that string.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Decimal(i128);

impl Decimal {
    pub const ZERO: Decimal = Decimal(0);

    /// A whole number.
    pub fn from_int(n: i64) -> Decimal {
        Decimal(i128::from(n) * ONE)
    }

    /// `mantissa × 10^-scale`, e.g. `Decimal::new(165625, 2)` is 1656.25; `None` for a scale
    /// above 9.
    pub fn new(mantissa: i64, scale: u32) -> Option<Decimal> {
        let factor = 10i128.checked_pow(SCALE.checked_sub(scale)?)?;
        Some(Decimal(i128::from(mantissa) * factor))
    }

    /// Parses an `xsd:decimal` (`-12`, `+1.50`, `.5`; surrounding whitespace trimmed, no
    /// exponent). `None` if it is not one, or is outside the range described on the type.
    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim();
        let (negative, digits) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        if int.len() > MAX_INTEGER_DIGITS || frac.len() > SCALE as usize {
            return None;
        }
        let mut units: i128 = 0;
        for b in int.bytes() {
            units = units * 10 + i128::from(b - b'0');
        }
        units *= ONE;
        let mut place = ONE;
        for b in frac.bytes() {
            place /= 10;
            units += i128::from(b - b'0') * place;
        }
        Some(Decimal(if negative { -units } else { units }))
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn abs(self) -> Decimal {
        Decimal(self.0.saturating_abs())
    }

    /// Whether the number has no fractional part.
    pub fn is_integer(self) -> bool {
        self.0 % ONE == 0
    }

    /// The number rounded to a whole number (halves away from zero), if it fits an `i64`.
    pub fn round_to_i64(self) -> Option<i64> {
        i64::try_from(div_round(self.0, ONE)?).ok()
    }

    /// Rounded to `places` decimals (at most 9), halves away from zero, as in EN 16931.
    pub fn round_dp(self, places: u32) -> Decimal {
        let Some(step) = 10i128.checked_pow(SCALE.saturating_sub(places)) else { return self };
        match div_round(self.0, step) {
            Some(q) => Decimal(q.saturating_mul(step)),
            None => self,
        }
    }

    /// `self × n`, saturating.
    pub fn mul_int(self, n: i64) -> Decimal {
        Decimal(self.0.saturating_mul(i128::from(n)))
    }

    /// `self × factor ÷ divisor` rounded to `places` decimals (halves away from zero),
    /// computed exactly before the one rounding. `None` for a zero divisor or if an
    /// intermediate product overflows.
    pub fn mul_div_round(self, factor: Decimal, divisor: Decimal, places: u32) -> Option<Decimal> {
        let places = places.min(SCALE);
        // (a/1e9 × b/1e9) ÷ (c/1e9) × 10^places = a·b·10^places ÷ (c·1e9)
        let numerator = self.0.checked_mul(factor.0)?.checked_mul(10i128.pow(places))?;
        let denominator = divisor.0.checked_mul(ONE)?;
        let rounded = div_round(numerator, denominator)?;
        Some(Decimal(rounded.checked_mul(10i128.pow(SCALE - places))?))
    }
}

/// `n ÷ d` rounded to the nearest integer, halves away from zero; `None` for `d == 0`.
fn div_round(n: i128, d: i128) -> Option<i128> {
    if d == 0 {
        return None;
    }
    let q = n.checked_div(d)?;
    let r = (n % d).unsigned_abs();
    let d_abs = d.unsigned_abs();
    if r >= d_abs - r {
        let away = if (n < 0) == (d < 0) { 1 } else { -1 };
        Some(q + away)
    } else {
        Some(q)
    }
}

impl FromStr for Decimal {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Decimal::parse(s).ok_or_else(|| ValidationError::new(ErrorCode::InvalidValue, "not a decimal number"))
    }
}

impl Add for Decimal {
    type Output = Decimal;
    fn add(self, rhs: Decimal) -> Decimal {
        Decimal(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Decimal {
    type Output = Decimal;
    fn sub(self, rhs: Decimal) -> Decimal {
        Decimal(self.0.saturating_sub(rhs.0))
    }
}

impl Neg for Decimal {
    type Output = Decimal;
    fn neg(self) -> Decimal {
        Decimal(self.0.saturating_neg())
    }
}

impl Sum for Decimal {
    fn sum<I: Iterator<Item = Decimal>>(iter: I) -> Decimal {
        iter.fold(Decimal::ZERO, Add::add)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let one = ONE.unsigned_abs();
        let (int, frac) = (abs / one, abs % one);
        if frac == 0 {
            return write!(f, "{sign}{int}");
        }
        let frac = format!("{frac:09}");
        write!(f, "{sign}{int}.{}", frac.trim_end_matches('0'))
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

// ---------------------------------------------------------------------------------------
// The reading
// ---------------------------------------------------------------------------------------

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
    fn document(code: FindingCode, message: impl Into<String>) -> PeppolFinding {
        PeppolFinding { code, line: None, message: message.into() }
    }

    fn line(code: FindingCode, line: &str, message: impl Into<String>) -> PeppolFinding {
        PeppolFinding { code, line: Some(line.to_owned()), message: message.into() }
    }
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Totals
// ---------------------------------------------------------------------------------------

/// The totals of a document recomputed from its lines, allowances, charges and tax, as
/// EN 16931 defines them (BR-CO-10 to BR-CO-16, BR-S-08/09 and their kin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComputedTotals {
    /// Σ line net amounts.
    pub line_extension_amount: Decimal,
    /// Σ document-level allowances.
    pub allowance_total_amount: Decimal,
    /// Σ document-level charges.
    pub charge_total_amount: Decimal,
    /// Line total − allowances + charges.
    pub tax_exclusive_amount: Decimal,
    /// The document's VAT total in its currency (`cac:TaxTotal/cbc:TaxAmount`, 0 if absent).
    pub tax_amount: Decimal,
    /// Σ `cac:TaxSubtotal/cbc:TaxAmount` of that tax total.
    pub tax_amount_from_subtotals: Decimal,
    /// Tax exclusive amount + tax amount.
    pub tax_inclusive_amount: Decimal,
    /// As stated (0 if absent): it cannot be recomputed.
    pub prepaid_amount: Decimal,
    /// As stated (0 if absent): it cannot be recomputed.
    pub payable_rounding_amount: Decimal,
    /// Tax inclusive amount − prepaid + rounding.
    pub payable_amount: Decimal,
    /// Per VAT category and rate: the taxable amount from the lines, allowances and
    /// charges in it, and the VAT on it (taxable × rate, rounded to two decimals).
    pub categories: Vec<CategoryTotal>,
}

/// One VAT category and rate of [`ComputedTotals`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategoryTotal {
    pub category: String,
    pub percent: Option<Decimal>,
    pub taxable_amount: Decimal,
    pub tax_amount: Decimal,
}

/// Recomputes the document's totals from its lines, document-level allowances and charges,
/// and tax; compare them with [`PeppolDocument::totals`] (or use [`check_totals`]).
pub fn totals_from_lines(doc: &PeppolDocument) -> ComputedTotals {
    let line_extension_amount: Decimal = doc.lines.iter().map(|l| l.line_extension_amount).sum();
    let allowance_total_amount: Decimal = doc.allowance_charges.iter().filter(|a| !a.charge).map(|a| a.amount).sum();
    let charge_total_amount: Decimal = doc.allowance_charges.iter().filter(|a| a.charge).map(|a| a.amount).sum();
    let tax_exclusive_amount = line_extension_amount - allowance_total_amount + charge_total_amount;
    let tax_total = doc.tax_total();
    let tax_amount = tax_total.map(|t| t.amount).unwrap_or_default();
    let tax_amount_from_subtotals =
        tax_total.map(|t| t.subtotals.iter().map(|s| s.tax_amount).sum()).unwrap_or_default();
    let tax_inclusive_amount = tax_exclusive_amount + tax_amount;
    let prepaid_amount = doc.totals.prepaid_amount.unwrap_or_default();
    let payable_rounding_amount = doc.totals.payable_rounding_amount.unwrap_or_default();
    let payable_amount = tax_inclusive_amount - prepaid_amount + payable_rounding_amount;

    let mut categories: Vec<CategoryTotal> = Vec::new();
    let mut add = |category: Option<&TaxCategory>, amount: Decimal| {
        let (id, percent) = match category {
            Some(c) => (c.id.as_str(), c.percent),
            None => ("", None),
        };
        match categories.iter_mut().find(|c| c.category == id && c.percent == percent) {
            Some(c) => c.taxable_amount = c.taxable_amount + amount,
            None => categories.push(CategoryTotal {
                category: id.to_owned(),
                percent,
                taxable_amount: amount,
                tax_amount: Decimal::ZERO,
            }),
        }
    };
    for l in &doc.lines {
        add(l.tax_category.as_ref(), l.line_extension_amount);
    }
    for a in &doc.allowance_charges {
        add(a.tax_category.as_ref(), if a.charge { a.amount } else { -a.amount });
    }
    let hundred = Decimal::from_int(100);
    for c in &mut categories {
        let rate = c.percent.unwrap_or_default();
        c.tax_amount = c.taxable_amount.mul_div_round(rate, hundred, 2).unwrap_or_default();
    }

    ComputedTotals {
        line_extension_amount,
        allowance_total_amount,
        charge_total_amount,
        tax_exclusive_amount,
        tax_amount,
        tax_amount_from_subtotals,
        tax_inclusive_amount,
        prepaid_amount,
        payable_rounding_amount,
        payable_amount,
        categories,
    }
}

/// A line's net amount recomputed: quantity × price ÷ base quantity − line allowances +
/// line charges, rounded to two decimals. `None` without a price (or on overflow).
pub fn line_net_from_price(line: &Line) -> Option<Decimal> {
    let price = line.price.as_ref()?;
    let base = price.base_quantity.as_ref().map_or(Decimal::from_int(1), |q| q.value);
    if base.is_zero() {
        return None;
    }
    let gross = line.quantity.value.mul_div_round(price.amount, base, 9)?;
    let adjustments: Decimal = line.allowance_charges.iter().map(|a| if a.charge { a.amount } else { -a.amount }).sum();
    Some((gross + adjustments).round_dp(2))
}

/// Compares the document's stated totals with [`totals_from_lines`]: every element of
/// `cac:LegalMonetaryTotal` (an absent optional one counts as 0), the tax total against its
/// subtotals, each subtotal against its category recomputed, and each line's net amount
/// against its price ([`line_net_from_price`]). Each difference is a
/// [`FindingCode::TotalMismatch`] or [`FindingCode::LineAmountMismatch`] naming the element.
pub fn check_totals(doc: &PeppolDocument) -> Vec<PeppolFinding> {
    let c = totals_from_lines(doc);
    let t = &doc.totals;
    let mut findings = Vec::new();
    let mut compare = |element: &str, stated: Decimal, computed: Decimal| {
        if stated != computed {
            findings.push(PeppolFinding::document(
                FindingCode::TotalMismatch,
                format!("{element} is {stated}, recomputed {computed}"),
            ));
        }
    };
    let or0 = Option::unwrap_or_default;
    compare("LegalMonetaryTotal/LineExtensionAmount", or0(t.line_extension_amount), c.line_extension_amount);
    compare("LegalMonetaryTotal/AllowanceTotalAmount", or0(t.allowance_total_amount), c.allowance_total_amount);
    compare("LegalMonetaryTotal/ChargeTotalAmount", or0(t.charge_total_amount), c.charge_total_amount);
    compare("LegalMonetaryTotal/TaxExclusiveAmount", or0(t.tax_exclusive_amount), c.tax_exclusive_amount);
    compare("LegalMonetaryTotal/TaxInclusiveAmount", or0(t.tax_inclusive_amount), c.tax_inclusive_amount);
    compare("LegalMonetaryTotal/PayableAmount", t.payable_amount, c.payable_amount);
    compare("TaxTotal/TaxAmount (as the sum of its TaxSubtotals)", c.tax_amount, c.tax_amount_from_subtotals);

    let subtotals = doc.tax_total().map(|t| t.subtotals.as_slice()).unwrap_or_default();
    for s in subtotals {
        let name = format!(
            "TaxSubtotal {}{}",
            s.category.id,
            s.category.percent.map(|p| format!(" {p}%")).unwrap_or_default()
        );
        match c.categories.iter().find(|k| k.category == s.category.id && k.percent == s.category.percent) {
            Some(k) => {
                compare(&format!("{name} TaxableAmount"), s.taxable_amount, k.taxable_amount);
                compare(&format!("{name} TaxAmount"), s.tax_amount, k.tax_amount);
            }
            None => {
                compare(&format!("{name} TaxableAmount (no line or allowance in it)"), s.taxable_amount, Decimal::ZERO)
            }
        }
    }
    for k in &c.categories {
        let stated = subtotals.iter().any(|s| s.category.id == k.category && s.category.percent == k.percent);
        if !stated {
            findings.push(PeppolFinding::document(
                FindingCode::TotalMismatch,
                format!("no TaxSubtotal for VAT category '{}' of the lines or allowances and charges", k.category),
            ));
        }
    }
    for l in &doc.lines {
        if let Some(net) = line_net_from_price(l) {
            if net != l.line_extension_amount {
                findings.push(PeppolFinding::line(
                    FindingCode::LineAmountMismatch,
                    &l.id,
                    format!(
                        "LineExtensionAmount is {}, quantity × price ÷ base quantity − allowances + charges is {net}",
                        l.line_extension_amount
                    ),
                ));
            }
        }
    }
    findings
}

// ---------------------------------------------------------------------------------------
// Home care
// ---------------------------------------------------------------------------------------

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

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap_or_else(|| panic!("{s} is a decimal"))
    }

    #[test]
    fn decimals_parse_exactly_and_compare_numerically() {
        assert_eq!(d("1300"), d("1300.00"));
        assert_eq!(d("1656.25"), Decimal::new(165625, 2).expect("scale"));
        assert_eq!(d("-.5"), -d("0.5"));
        assert_eq!(d("+1.50").to_string(), "1.5");
        assert_eq!(d("-1500").to_string(), "-1500");
        assert_eq!(d("0.000000001").to_string(), "0.000000001");
        assert_eq!(d("1.2300000000000"), d("1.23"));
        for bad in ["", "-", ".", "1e3", "1,5", "1.2.3", "abc", "0.0000000001", "1234567890123456789"] {
            assert_eq!(Decimal::parse(bad), None, "{bad}");
        }
        assert_eq!(d("0.1") + d("0.2"), d("0.3"));
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(d("2.345").round_dp(2), d("2.35"));
        assert_eq!(d("-2.345").round_dp(2), d("-2.35"));
        assert_eq!(d("2.344").round_dp(2), d("2.34"));
        assert_eq!(d("10").mul_div_round(d("200"), d("3"), 2), Some(d("666.67")));
        assert_eq!(d("-10").mul_div_round(d("200"), d("3"), 2), Some(d("-666.67")));
        assert_eq!(d("1").mul_div_round(d("1"), Decimal::ZERO, 2), None);
        assert_eq!(d("629.5").round_to_i64(), Some(630));
        assert_eq!(d("-629.5").round_to_i64(), Some(-630));
    }

    #[test]
    fn org_number_rules() {
        assert!(org_number_findings("5599000014").is_empty());
        let codes = |s: &str| org_number_findings(s).into_iter().map(|f| f.code).collect::<Vec<_>>();
        assert_eq!(codes("5599000015"), [FindingCode::SeR013]);
        assert_eq!(codes("559900001"), [FindingCode::SeR004]);
        assert_eq!(codes("55990A0014"), [FindingCode::SeR003]);
        assert_eq!(codes("559900-0014"), [FindingCode::SeR003, FindingCode::SeR004]);
        assert!(org_number_findings("5599000015").iter().all(|f| !f.message.contains("5599")));
    }
}
