//! Identifier validation against Skatteverket's test numbers, and property tests.

use carehub_model::id::{luhn_check_digit, luhn_valid};
use carehub_model::{ErrorCode, OrgNumber, PersonalIdentityNumber, TagUid};
use chrono::{Datelike, Days, NaiveDate};
use proptest::prelude::*;

/// Skatteverket's official test personal identity numbers, one 12-digit number a line.
const TEST_NUMBERS: &str =
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/skatteverket-testpersonnummer.txt"));

/// The fixed reference date of these tests.
fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 22).expect("a calendar date")
}

fn parse(s: &str) -> Result<PersonalIdentityNumber, carehub_model::ValidationError> {
    PersonalIdentityNumber::parse_at(s, today())
}

/// Whether someone born on (`year`, `month`, `day`) is under 100 years old on `today()`.
fn under_100(year: i32, month: u32, day: u32) -> bool {
    let t = today();
    (year + 100, month, day) > (t.year(), t.month(), t.day())
}

/// Every form a valid 12-digit number can be written in at `today()`.
fn forms(twelve: &str) -> Vec<String> {
    let year: i32 = twelve[..4].parse().expect("digits");
    let month: u32 = twelve[4..6].parse().expect("digits");
    let day_field: u32 = twelve[6..8].parse().expect("digits");
    let day = if day_field > 60 { day_field - 60 } else { day_field };
    let separator = if under_100(year, month, day) { '-' } else { '+' };
    let mut forms = vec![
        twelve.to_owned(),
        format!("{}-{}", &twelve[..8], &twelve[8..]),
        format!("{}{separator}{}", &twelve[2..8], &twelve[8..]),
    ];
    if separator == '-' {
        forms.push(twelve[2..].to_owned());
    }
    forms
}

fn digits_of(s: &str) -> Vec<u8> {
    s.bytes().map(|b| b - b'0').collect()
}

#[test]
fn every_skatteverket_test_number_parses_in_every_form() {
    let mut count = 0;
    for line in TEST_NUMBERS.lines().map(str::trim).filter(|l| !l.is_empty()) {
        count += 1;
        for form in forms(line) {
            match parse(&form) {
                Ok(p) => assert_eq!(p.expose(), line, "form {form}"),
                Err(e) => panic!("{form} (line {count}) does not parse: {e}"),
            }
        }
    }
    assert_eq!(count, 41_493);
}

#[test]
fn the_century_of_a_ten_digit_form_follows_today() {
    let t = today();
    // Born today 100 years ago: 100 years old, so '+' ; with '-' it would be today.
    let check = luhn_check_digit(&[2, 6, 1, 1, 2, 2, 0, 0, 2]);
    let short = format!("261122002{check}");
    assert_eq!(parse(&short).expect("valid").birth_date().year(), 2026);
    let plus = format!("261122+002{check}");
    assert_eq!(parse(&plus).expect("valid").birth_date().year(), 1926);
    // Born tomorrow's date: last century.
    let check = luhn_check_digit(&[2, 6, 1, 1, 2, 3, 0, 0, 2]);
    let p = parse(&format!("261123-002{check}")).expect("valid");
    assert_eq!(p.birth_date(), NaiveDate::from_ymd_opt(1926, 11, 23).expect("a date"));
    assert!(p.birth_date() < t);
    // With 12 digits the century is written out: '+' changes nothing.
    assert_eq!(parse(&format!("19261123+002{check}")).expect("valid").birth_date().year(), 1926);
}

#[test]
fn the_current_date_is_used_by_parse() {
    let p = PersonalIdentityNumber::parse("360101-6987").expect("valid");
    assert_eq!(p.expose(), "193601016987");
    let p: PersonalIdentityNumber = "19360101-6987".parse().expect("valid");
    assert_eq!(p.expose(), "193601016987");
}

/// A valid birth date 1890-01-01..=2025-12-31.
fn birth_date() -> impl Strategy<Value = NaiveDate> {
    let start = NaiveDate::from_ymd_opt(1890, 1, 1).expect("a date");
    let end = NaiveDate::from_ymd_opt(2025, 12, 31).expect("a date");
    let span = u64::try_from((end - start).num_days()).expect("positive");
    (0..=span).prop_map(move |n| start + Days::new(n))
}

/// The 12 digits for a birth date, coordination flag and serial, with its check digit.
fn number(date: NaiveDate, coordination: bool, serial: u32) -> String {
    let day = date.day() + if coordination { 60 } else { 0 };
    let nine = format!("{:02}{:02}{day:02}{serial:03}", date.year() % 100, date.month());
    let check = luhn_check_digit(&digits_of(&nine));
    format!("{}{nine}{check}", date.year() / 100)
}

/// Ten digits with the correct check digit for the nine digits `payload`.
fn with_check(payload: &str) -> String {
    format!("{payload}{}", luhn_check_digit(&digits_of(payload)))
}

/// Separators a tag UID's byte pairs may be joined with.
const TAG_SEPARATORS: [&str; 4] = ["", ":", "-", " "];

proptest! {
    #[test]
    fn valid_numbers_parse_in_every_form(
        date in birth_date(),
        coordination in any::<bool>(),
        serial in 1u32..=999,
    ) {
        let twelve = number(date, coordination, serial);
        for form in forms(&twelve) {
            let p = parse(&form).map_err(|e| TestCaseError::fail(format!("{form}: {e}")))?;
            prop_assert_eq!(p.expose(), twelve.as_str());
            prop_assert_eq!(p.birth_date(), date);
            prop_assert_eq!(p.is_coordination_number(), coordination);
            prop_assert!(luhn_valid(&digits_of(&twelve[2..])));
        }
    }

    #[test]
    fn any_other_check_digit_fails(
        date in birth_date(),
        coordination in any::<bool>(),
        serial in 1u32..=999,
    ) {
        let twelve = number(date, coordination, serial);
        let check = twelve.as_bytes()[11] - b'0';
        for wrong in (0..=9).filter(|&d| d != check) {
            let bad = format!("{}{wrong}", &twelve[..11]);
            for form in forms(&bad) {
                let e = parse(&form).expect_err("a wrong check digit");
                prop_assert_eq!(e.code, ErrorCode::InvalidPersonalIdentityNumber);
                prop_assert_eq!(e.reason.as_str(), "check digit does not match");
            }
        }
    }

    #[test]
    fn invalid_dates_fail(
        year in 1890i32..=2025,
        kind in 0usize..7,
        serial in 1u32..=999,
        month in 1u32..=12,
    ) {
        let (month, day) = match kind {
            0 => (13, 1),
            1 => (0, 1),
            2 => (2, 30),
            3 => (month, 32),
            4 => (month, 92),
            5 => (month, 0),
            _ => (month, 45),
        };
        let nine = format!("{:02}{month:02}{day:02}{serial:03}", year % 100);
        let twelve = format!("{}{}", year / 100, with_check(&nine));
        for form in [twelve.clone(), format!("{}-{}", &twelve[..8], &twelve[8..]), twelve[2..].to_owned()] {
            let e = parse(&form).expect_err("not a calendar date");
            prop_assert_eq!(e.code, ErrorCode::InvalidPersonalIdentityNumber);
            prop_assert_eq!(e.reason.as_str(), "not a calendar date");
        }
    }

    #[test]
    fn february_29_needs_a_leap_year(year in 1890i32..=2025, serial in 1u32..=999) {
        let nine = format!("{:02}0229{serial:03}", year % 100);
        let twelve = format!("{}{}", year / 100, with_check(&nine));
        let leap = NaiveDate::from_ymd_opt(year, 2, 29).is_some();
        prop_assert_eq!(parse(&twelve).is_ok(), leap);
    }

    #[test]
    fn wrong_lengths_fail(digits in "[0-9]{0,20}") {
        prop_assume!(digits.len() != 10 && digits.len() != 12);
        let e = parse(&digits).expect_err("wrong length");
        prop_assert_eq!(e.code, ErrorCode::InvalidPersonalIdentityNumber);
    }

    #[test]
    fn plus_on_the_twelve_digit_form_keeps_its_century(
        date in birth_date(),
        serial in 1u32..=999,
    ) {
        let twelve = number(date, false, serial);
        let p = parse(&format!("{}+{}", &twelve[..8], &twelve[8..])).expect("'+' on 12 digits");
        prop_assert_eq!(p.expose(), twelve.as_str());
    }

    #[test]
    fn serial_number_000_is_never_valid(date in birth_date(), coordination in any::<bool>()) {
        let twelve = number(date, coordination, 0);
        for form in [twelve.clone(), format!("{}-{}", &twelve[..8], &twelve[8..]), twelve[2..].to_owned()] {
            let e = parse(&form).expect_err("serial 000");
            prop_assert_eq!(e.code, ErrorCode::InvalidPersonalIdentityNumber);
            prop_assert!(e.to_string().contains("000"), "{}", e);
        }
    }

    #[test]
    fn parse_never_panics(s in any::<String>()) {
        let _ = parse(&s);
        let _ = PersonalIdentityNumber::parse(&s);
        let _ = OrgNumber::parse(&s);
        let _ = TagUid::parse(&s);
        let _ = carehub_model::HsaId::parse(&s);
        let _ = carehub_model::SourceId::parse(&s);
    }

    #[test]
    fn parse_never_panics_on_near_misses(s in "[0-9+\\- ]{0,16}") {
        if let Err(e) = parse(&s) {
            prop_assert_eq!(e.code, ErrorCode::InvalidPersonalIdentityNumber);
        }
        if let Err(e) = OrgNumber::parse(&s) {
            prop_assert_eq!(e.code, ErrorCode::InvalidOrgNumber);
        }
    }

    #[test]
    fn valid_org_numbers_parse_in_every_form(payload in "[0-9]{9}") {
        let ten = with_check(&payload);
        for form in [ten.clone(), format!("{}-{}", &ten[..6], &ten[6..]), format!("16{ten}")] {
            let o = OrgNumber::parse(&form).map_err(|e| TestCaseError::fail(format!("{form}: {e}")))?;
            prop_assert_eq!(o.as_str(), ten.as_str());
            let o2: OrgNumber = form.parse().map_err(|e| TestCaseError::fail(format!("{e}")))?;
            prop_assert_eq!(o2, o);
        }
    }

    #[test]
    fn org_numbers_with_another_check_digit_fail(payload in "[0-9]{9}", wrong in 0u8..=9) {
        prop_assume!(wrong != luhn_check_digit(&digits_of(&payload)));
        let ten = format!("{payload}{wrong}");
        for form in [ten.clone(), format!("{}-{}", &ten[..6], &ten[6..]), format!("16{ten}")] {
            let e = OrgNumber::parse(&form).expect_err("a wrong check digit");
            prop_assert_eq!(e.code, ErrorCode::InvalidOrgNumber);
            prop_assert!(e.reason.contains("SE-R-013"));
        }
    }

    #[test]
    fn tag_uids_round_trip(
        len in prop::sample::select(vec![4usize, 7, 10]),
        bytes in prop::collection::vec(any::<u8>(), 10),
        lower in prop::collection::vec(any::<bool>(), 20),
        separator in prop::sample::select(TAG_SEPARATORS.to_vec()),
    ) {
        let bytes = &bytes[..len];
        let upper: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let written: Vec<String> = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| {
                format!("{b:02X}")
                    .chars()
                    .enumerate()
                    .map(|(j, c)| if lower[2 * i + j] { c.to_ascii_lowercase() } else { c })
                    .collect()
            })
            .collect();
        let input = written.join(separator);
        let tag = TagUid::parse(&input).map_err(|e| TestCaseError::fail(format!("{input}: {e}")))?;
        prop_assert_eq!(tag.as_str(), upper.as_str());
        prop_assert_eq!(tag.bytes_len(), len);
        let json = serde_json::to_string(&tag).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let back: TagUid = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        prop_assert_eq!(back, tag);
    }

    #[test]
    fn tag_uids_of_other_lengths_fail(
        bytes in prop::collection::vec(any::<u8>(), 0..16),
        separator in prop::sample::select(TAG_SEPARATORS.to_vec()),
    ) {
        prop_assume!(![4, 7, 10].contains(&bytes.len()));
        let input = bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(separator);
        let e = TagUid::parse(&input).expect_err("wrong length");
        prop_assert_eq!(e.code, ErrorCode::InvalidTagUid);
    }
}
