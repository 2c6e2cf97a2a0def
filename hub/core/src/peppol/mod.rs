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
//!
//! # Layout
//! - `decimal`: [`Decimal`], exact fixed-point numbers.
//! - `document`: [`PeppolDocument`] and its parts, [`PeppolFinding`].
//! - `read`: [`read`] and [`read_bytes`], UBL XML to a document.
//! - `totals`: [`totals_from_lines`] and [`check_totals`].
//! - `home_care`: [`home_care_lines`], what the verifier reads per line.

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

mod decimal;
mod document;
mod home_care;
mod read;
mod totals;

pub use decimal::*;
pub use document::*;
pub use home_care::*;
pub use read::*;
pub use totals::*;

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
