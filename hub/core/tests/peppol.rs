//! Reading PEPPOL BIS Billing 3 documents: the official examples in `data/peppol-bis-3/`
//! and carehub's synthetic home-care samples in `data/peppol-home-care/`.

/// Named so that `cargo test -p carehub-core peppol` selects these tests too.
mod peppol {
    use std::path::PathBuf;

    use carehub_core::peppol::{
        check_totals, home_care_lines, read, totals_from_lines, Decimal, FindingCode, PeppolDocument,
    };
    use carehub_model::{ErrorCode, InvoiceKind};
    use chrono::NaiveDate;

    fn data(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data").join(path)
    }

    fn load(path: &str) -> String {
        std::fs::read_to_string(data(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap_or_else(|| panic!("{s} is a decimal"))
    }

    fn read_file(path: &str) -> PeppolDocument {
        read(&load(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// The official examples, with their kind, number of lines and stated payable amount.
    const EXAMPLES: [(&str, InvoiceKind, usize, &str); 10] = [
        ("Allowance-example.xml", InvoiceKind::Invoice, 3, "6125"),
        ("Norwegian-example-1.xml", InvoiceKind::Invoice, 5, "802"),
        ("Vat-category-S.xml", InvoiceKind::Invoice, 3, "8550"),
        ("base-creditnote-correction.xml", InvoiceKind::CreditNote, 2, "1656.25"),
        ("base-example.xml", InvoiceKind::Invoice, 2, "1656.25"),
        ("base-negative-inv-correction.xml", InvoiceKind::Invoice, 2, "-1656.25"),
        ("sales-order-example.xml", InvoiceKind::Invoice, 2, "1656.25"),
        ("vat-category-E.xml", InvoiceKind::Invoice, 1, "1200"),
        ("vat-category-O.xml", InvoiceKind::Invoice, 1, "3200"),
        ("vat-category-Z.xml", InvoiceKind::Invoice, 1, "1200"),
    ];

    #[test]
    fn every_official_example_reads_and_its_totals_add_up() {
        let dir = std::fs::read_dir(data("peppol-bis-3")).expect("the examples folder");
        let on_disk =
            dir.filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "xml"))).count();
        assert_eq!(on_disk, EXAMPLES.len(), "every example file is listed here");

        for (file, kind, lines, payable) in EXAMPLES {
            let doc = read_file(&format!("peppol-bis-3/{file}"));
            assert_eq!(doc.kind, kind, "{file}");
            assert_eq!(doc.lines.len(), lines, "{file}");
            assert_eq!(doc.totals.payable_amount, d(payable), "{file}");

            let t = &doc.totals;
            let c = totals_from_lines(&doc);
            assert_eq!(Some(c.line_extension_amount), t.line_extension_amount, "{file}: LineExtensionAmount");
            assert_eq!(Some(c.tax_exclusive_amount), t.tax_exclusive_amount, "{file}: TaxExclusiveAmount");
            assert_eq!(Some(c.tax_inclusive_amount), t.tax_inclusive_amount, "{file}: TaxInclusiveAmount");
            assert_eq!(c.allowance_total_amount, t.allowance_total_amount.unwrap_or_default(), "{file}: allowances");
            assert_eq!(c.charge_total_amount, t.charge_total_amount.unwrap_or_default(), "{file}: charges");
            assert_eq!(c.payable_amount, t.payable_amount, "{file}: PayableAmount");
            assert_eq!(c.tax_amount, c.tax_amount_from_subtotals, "{file}: TaxTotal vs its subtotals");
            let findings = check_totals(&doc);
            assert!(findings.is_empty(), "{file}: {findings:#?}");
        }
    }

    #[test]
    fn example_details_are_read() {
        let doc = read_file("peppol-bis-3/Allowance-example.xml");
        assert_eq!(doc.id, "Snippet1");
        assert_eq!(doc.issue_date, NaiveDate::from_ymd_opt(2017, 11, 13).expect("date"));
        assert_eq!(doc.currency, "EUR");
        assert_eq!(doc.tax_currency.as_deref(), Some("SEK"));
        assert_eq!(doc.buyer_reference.as_deref(), Some("0150abc"));
        let period = doc.invoice_period.as_ref().expect("a period");
        assert_eq!(period.start, NaiveDate::from_ymd_opt(2017, 12, 1));
        assert_eq!(period.end, NaiveDate::from_ymd_opt(2017, 12, 31));
        assert_eq!(doc.supplier.name.as_deref(), Some("SupplierTradingName Ltd."));
        assert_eq!(doc.supplier.vat_id.as_deref(), Some("GB1232434"));
        assert_eq!(doc.supplier.company_id.as_ref().map(|c| c.value.as_str()), Some("GB983294"));
        assert_eq!(doc.supplier.endpoint.as_ref().and_then(|e| e.scheme.as_deref()), Some("0088"));
        assert!(!doc.supplier.is_swedish());
        assert!(doc.findings.is_empty());
        assert_eq!(doc.allowance_charges.len(), 2);
        assert_eq!(doc.tax_totals.len(), 2, "one in EUR, one in the tax currency SEK");
        assert_eq!(doc.tax_total().map(|t| t.amount), Some(d("1225")));
        assert_eq!(doc.totals.prepaid_amount, Some(d("1000")));

        let line = &doc.lines[0];
        assert_eq!(line.note.as_deref(), Some("Testing note on line level"));
        assert_eq!((line.quantity.value, line.quantity.unit.as_deref()), (d("10"), Some("C62")));
        assert_eq!(
            line.allowance_charges.iter().map(|a| (a.charge, a.amount)).collect::<Vec<_>>(),
            [(true, d("1")), (false, d("101"))]
        );
        assert_eq!(line.tax_category.as_ref().map(|c| (c.id.as_str(), c.percent)), Some(("S", Some(d("25")))));
        assert_eq!(doc.lines[1].order_line_reference.as_deref(), Some("124"));

        let credit = read_file("peppol-bis-3/base-creditnote-correction.xml");
        assert_eq!(credit.billing_references, ["Snippet1"]);
        assert_eq!(credit.lines[1].quantity.value, d("-3"));

        let norwegian = read_file("peppol-bis-3/Norwegian-example-1.xml");
        assert_eq!(norwegian.totals.payable_rounding_amount, Some(d("0.22")));
    }

    #[test]
    fn example_lines_that_are_not_home_care_get_coded_findings() {
        for (file, ..) in EXAMPLES {
            let doc = read_file(&format!("peppol-bis-3/{file}"));
            let readings = home_care_lines(&doc);
            assert_eq!(readings.len(), doc.lines.len());
            for r in &readings {
                assert!(!r.is_home_care(), "{file} line {}", r.line_id);
                assert!(r.findings.iter().any(|f| f.code == FindingCode::NotTimeUnit), "{file} line {}", r.line_id);
                assert_eq!(r.minutes, None);
                assert!(r.findings.iter().all(|f| f.line.as_deref() == Some(r.line_id.as_str())));
                assert_eq!(r.credit, doc.kind == InvoiceKind::CreditNote);
            }
        }
        // vat-category-O: one line, unit EA, an order line reference, category O.
        let doc = read_file("peppol-bis-3/vat-category-O.xml");
        let codes: Vec<_> = home_care_lines(&doc)[0].findings.iter().map(|f| f.code).collect();
        assert_eq!(codes, [FindingCode::NotTimeUnit, FindingCode::VatNotExempt]);
        // Allowance-example: no order line reference on the first line; line 2 is VAT
        // category E, so no VAT finding there.
        let doc = read_file("peppol-bis-3/Allowance-example.xml");
        let codes: Vec<_> = home_care_lines(&doc)[0].findings.iter().map(|f| f.code).collect();
        assert_eq!(codes, [FindingCode::NotTimeUnit, FindingCode::NoOrderReference, FindingCode::VatNotExempt]);
        let line2 = &home_care_lines(&doc)[1];
        assert_eq!(line2.vat_category.as_deref(), Some("E"));
        assert!(line2.findings.iter().all(|f| f.code != FindingCode::VatNotExempt));
    }

    #[test]
    fn a_swedish_example_supplier_without_a_company_id_has_no_org_number_finding() {
        // vat-category-O's supplier is in Sweden but gives no PartyLegalEntity/CompanyID.
        let doc = read_file("peppol-bis-3/vat-category-O.xml");
        assert!(doc.supplier.is_swedish());
        assert!(doc.findings.is_empty());
        assert_eq!(doc.supplier.org_number, None);
    }

    #[test]
    fn the_home_care_invoice_reads_into_minutes_and_amounts() {
        let doc = read_file("peppol-home-care/home-care-invoice.xml");
        assert_eq!(doc.kind, InvoiceKind::Invoice);
        assert_eq!(doc.id, "HC-2026-03-0042");
        assert_eq!(doc.currency, "SEK");
        assert_eq!(doc.supplier.org_number.as_ref().map(|o| o.as_str()), Some("5599000014"));
        assert_eq!(doc.supplier.vat_id.as_deref(), Some("SE559900001401"), "the VAT scheme, not the F-skatt one");
        assert!(doc.supplier.is_swedish());
        assert!(doc.findings.is_empty(), "{:?}", doc.findings);
        assert!(check_totals(&doc).is_empty(), "{:?}", check_totals(&doc));

        let lines = home_care_lines(&doc);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|l| l.is_home_care()), "{lines:#?}");
        assert!(lines.iter().all(|l| l.order_id.as_deref() == Some("O-2FD54EB2443AFC68")));
        assert!(lines.iter().all(|l| l.vat_category.as_deref() == Some("E") && !l.credit));
        assert_eq!(lines[0].minutes, Some(d("630")));
        assert_eq!(lines[0].amount, d("4095"));
        assert_eq!(lines[0].comment, None);
        assert_eq!(lines[1].minutes, Some(d("90")));
        assert_eq!(lines[1].amount, d("585"));
        assert_eq!(lines[1].comment.as_deref(), Some("Extra tid 14 mars: brukaren föll, väntade på ambulans"));
        assert_eq!(lines[0].net_minutes().and_then(Decimal::round_to_i64), Some(630));
        let total: Decimal = lines.iter().map(|l| l.net_amount()).sum();
        assert_eq!(total, doc.totals.payable_amount);
    }

    #[test]
    fn the_home_care_credit_note_reads_as_credits() {
        let doc = read_file("peppol-home-care/home-care-credit-note.xml");
        assert_eq!(doc.kind, InvoiceKind::CreditNote);
        assert_eq!(doc.billing_references, ["HC-2026-03-0042"]);
        assert!(doc.findings.is_empty());
        assert!(check_totals(&doc).is_empty(), "{:?}", check_totals(&doc));

        let lines = home_care_lines(&doc);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert!(l.is_home_care() && l.credit);
        assert_eq!(l.order_id.as_deref(), Some("O-2FD54EB2443AFC68"));
        assert_eq!((l.minutes, l.amount), (Some(d("30")), d("195")));
        assert_eq!((l.net_minutes(), l.net_amount()), (Some(d("-30")), d("-195")));
        assert_eq!(l.comment.as_deref(), Some("Besöket 21 mars ställdes in, felaktigt fakturerat"));
    }

    /// The home-care invoice with the supplier's legal organisation number replaced.
    fn with_org_number(org: &str) -> String {
        let text = load("peppol-home-care/home-care-invoice.xml");
        let legal = r#"<b:CompanyID schemeID="0007">5599000014</b:CompanyID>"#;
        assert!(text.contains(legal));
        text.replace(legal, &format!(r#"<b:CompanyID schemeID="0007">{org}</b:CompanyID>"#))
    }

    #[test]
    fn an_invalid_swedish_org_number_gets_the_se_rule_findings() {
        for (org, expected) in [
            ("5599000015", vec![FindingCode::SeR013]),
            ("559900001", vec![FindingCode::SeR004]),
            ("55990A0014", vec![FindingCode::SeR003]),
            ("5599-AB-01", vec![FindingCode::SeR003]),
            ("559900-0014", vec![FindingCode::SeR003, FindingCode::SeR004]),
        ] {
            let doc = read(&with_org_number(org)).unwrap_or_else(|e| panic!("{org}: {e}"));
            let codes: Vec<_> = doc.findings.iter().map(|f| f.code).collect();
            assert_eq!(codes, expected, "{org}");
            for f in &doc.findings {
                assert!(f.message.starts_with(f.code.as_str()), "{f:?}");
                assert!(!f.message.contains(org), "a finding never quotes the number: {f:?}");
            }
            // The lines still read as home care.
            assert!(home_care_lines(&doc).iter().all(|l| l.is_home_care()));
        }
        // The org number then falls back to the (valid) Swedish VAT id.
        let doc = read(&with_org_number("5599000015")).expect("reads");
        assert_eq!(doc.supplier.org_number.as_ref().map(|o| o.as_str()), Some("5599000014"));

        // A foreign scheme is not a Swedish organisation number: no finding.
        let text = with_org_number("5599000015").replace(
            r#"<b:CompanyID schemeID="0007">5599000015</b:CompanyID>"#,
            r#"<b:CompanyID schemeID="0088">5599000015</b:CompanyID>"#,
        );
        assert!(read(&text).expect("reads").findings.is_empty());

        // Swedish by its VAT id alone (no country): still checked.
        let text = with_org_number("5599000015").replace(
            "<b:IdentificationCode>SE</b:IdentificationCode>",
            "<b:IdentificationCode>GB</b:IdentificationCode>",
        );
        let codes: Vec<_> = read(&text).expect("reads").findings.iter().map(|f| f.code).collect();
        assert_eq!(codes, [FindingCode::SeR013]);
    }

    #[test]
    fn home_care_line_findings_for_unit_order_and_vat() {
        // Line 1 in days.
        let text = load("peppol-home-care/home-care-invoice.xml").replacen(
            r#"unitCode="HUR">10.5<"#,
            r#"unitCode="DAY">10.5<"#,
            1,
        );
        let doc = read(&text).expect("reads");
        let lines = home_care_lines(&doc);
        assert_eq!(lines[0].findings.iter().map(|f| f.code).collect::<Vec<_>>(), [FindingCode::NotTimeUnit]);
        assert_eq!(lines[0].minutes, None);
        assert!(lines[1].is_home_care());

        // Line 2 in category S and without its order reference.
        let text = load("peppol-home-care/home-care-invoice.xml");
        let (head, tail) = text.split_at(text.find("<b:ID>2</b:ID>").expect("line 2"));
        let tail = tail
        .replacen("<a:OrderLineReference>\n            <b:LineID>O-2FD54EB2443AFC68</b:LineID>\n        </a:OrderLineReference>", "", 1)
        .replacen("<b:ID>E</b:ID>", "<b:ID>S</b:ID>", 1);
        let doc = read(&format!("{head}{tail}")).expect("reads");
        let lines = home_care_lines(&doc);
        assert!(lines[0].is_home_care());
        assert_eq!(
            lines[1].findings.iter().map(|f| f.code).collect::<Vec<_>>(),
            [FindingCode::NoOrderReference, FindingCode::VatNotExempt]
        );
        assert_eq!(lines[1].minutes, Some(d("90")));
    }

    #[test]
    fn wrong_totals_are_findings_not_errors() {
        let text = load("peppol-home-care/home-care-invoice.xml")
            .replace(r#"<b:PayableAmount currencyID="SEK">4680.00<"#, r#"<b:PayableAmount currencyID="SEK">4780.00<"#)
            .replace(
                r#"<b:LineExtensionAmount currencyID="SEK">585.00<"#,
                r#"<b:LineExtensionAmount currencyID="SEK">685.00<"#,
            );
        let doc = read(&text).expect("reads");
        let findings = check_totals(&doc);
        let messages: Vec<_> = findings.iter().map(|f| (f.code, f.message.as_str())).collect();
        assert!(
            messages.contains(&(
                FindingCode::TotalMismatch,
                "LegalMonetaryTotal/LineExtensionAmount is 4680, recomputed 4780"
            )),
            "{messages:#?}"
        );
        assert!(findings.iter().any(|f| f.code == FindingCode::LineAmountMismatch && f.line.as_deref() == Some("2")));
        assert!(!findings.iter().any(|f| f.message.starts_with("LegalMonetaryTotal/PayableAmount")), "{messages:#?}");
    }

    #[test]
    fn unreadable_documents_are_coded_errors() {
        let invoice = load("peppol-home-care/home-care-invoice.xml");
        let cases: Vec<(String, ErrorCode, &str)> = vec![
        ("this is not XML".into(), ErrorCode::MalformedPayload, ""),
        ("<Invoice xmlns=\"urn:x\"><ID>1</ID></Invoice>".into(), ErrorCode::UnknownMessageType, "Invoice"),
        (
            "<Order xmlns=\"urn:oasis:names:specification:ubl:schema:xsd:Order-2\"/>".into(),
            ErrorCode::UnknownMessageType,
            "Order",
        ),
        (
            r#"<?xml version="1.0"?><!DOCTYPE Invoice [<!ENTITY x SYSTEM "file:///etc/passwd">]><Invoice>&x;</Invoice>"#
                .into(),
            ErrorCode::DtdForbidden,
            "",
        ),
        (invoice.replace("<b:ID>HC-2026-03-0042</b:ID>", ""), ErrorCode::MissingField, "cbc:ID"),
        (invoice.replace("<b:IssueDate>2026-04-02</b:IssueDate>", ""), ErrorCode::MissingField, "cbc:IssueDate"),
        (invoice.replace("2026-04-02", "2026-02-30"), ErrorCode::InvalidDate, "cbc:IssueDate"),
        (
            invoice.replace("<b:DocumentCurrencyCode>SEK</b:DocumentCurrencyCode>", ""),
            ErrorCode::MissingField,
            "cbc:DocumentCurrencyCode",
        ),
        (
            invoice.replace(r#"<b:PayableAmount currencyID="SEK">4680.00</b:PayableAmount>"#, ""),
            ErrorCode::MissingField,
            "cac:LegalMonetaryTotal/cbc:PayableAmount",
        ),
        (
            invoice.replace(r#"<b:PayableAmount currencyID="SEK">4680.00<"#, r#"<b:PayableAmount currencyID="SEK">4 680,00<"#),
            ErrorCode::InvalidValue,
            "cbc:PayableAmount",
        ),
        (
            invoice.replace(r#"unitCode="MIN">90<"#, r#"unitCode="MIN">ninety<"#),
            ErrorCode::InvalidValue,
            "cbc:InvoicedQuantity",
        ),
        (
            {
                let start = invoice.find("<a:InvoiceLine>").expect("a line");
                let end = invoice.rfind("</a:InvoiceLine>").expect("a line") + "</a:InvoiceLine>".len();
                format!("{}{}", &invoice[..start], &invoice[end..])
            },
            ErrorCode::MissingField,
            "cac:InvoiceLine",
        ),
    ];
        for (text, code, names) in cases {
            let e = read(&text).expect_err(names);
            assert_eq!(e.code, code, "{e}");
            assert!(e.reason.contains(names), "{e} should name {names}");
        }
    }

    #[test]
    fn bytes_in_another_declared_encoding_are_decoded() {
        let text =
            load("peppol-home-care/home-care-invoice.xml").replace("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"");
        let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&text);
        let doc = carehub_core::peppol::read_bytes(&bytes).expect("reads");
        assert_eq!(doc.supplier.registration_name.as_deref(), Some("Omsorg Test AB"));
        assert_eq!(doc.lines[1].note.as_deref(), Some("Extra tid 14 mars: brukaren föll, väntade på ambulans"));
        // An encoding nobody knows, or ISO-8859-1 declared over UTF-8 bytes, is refused.
        let unknown = text.replace("encoding=\"ISO-8859-1\"", "encoding=\"X-EVIL-42\"");
        let lying =
            load("peppol-home-care/home-care-invoice.xml").replace("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\"");
        for bytes in [unknown.as_bytes(), lying.as_bytes()] {
            let e = carehub_core::peppol::read_bytes(bytes).expect_err("refused");
            assert_eq!(e.code, ErrorCode::UnsupportedEncoding, "{e}");
        }
    }
}
