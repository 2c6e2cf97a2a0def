//! The totals EN 16931 defines, recomputed from a document's lines, and compared with the
//! totals the document states.

use super::*;

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
