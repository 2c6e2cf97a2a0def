//! Identifiers, validated at construction.
//!
//! Every identifier the hub routes on or shows to a person is parsed once, at the edge, into
//! one of these types: a value of the type is a valid identifier in its normal form (a
//! [`PersonalIdentityNumber`] is always 12 digits, an [`OrgNumber`] always 10). The rest of
//! the hub therefore never re-checks, never compares two spellings of the same number, and
//! never has to decide what to do with a half-valid one. Invalid input is a
//! [`ValidationError`] with a stable [`ErrorCode`] and a short reason.
//!
//! Personal identity numbers are personal data. [`PersonalIdentityNumber`] prints as
//! `**REDACTED**` in both `Debug` and `Display`, and its validation errors never quote the
//! input, so a number cannot reach an operational log by accident;
//! [`PersonalIdentityNumber::expose`] is the one, greppable, way to the digits. Organisation
//! number errors do not quote the input either, as a sole trader's organisation number is
//! their personal identity number.
//!
//! All identifiers serialize as their normal form, a plain string, and validate when they
//! are deserialized, so a payload with an invalid identifier does not deserialize.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{ErrorCode, ValidationError};

/// The Luhn (modulus 10) check digit for `payload`, the digits (values 0-9) without the check
/// digit.
///
/// Weights 2, 1, 2, 1, ... are applied from the rightmost payload digit leftwards, the digits
/// of each product are summed, and the check digit is `(10 - sum % 10) % 10`. For the nine
/// digits `YYMMDDNNN` of a personal identity number this is the usual "2, 1, 2, ... from the
/// left".
pub fn luhn_check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &digit)| {
            let digit = u32::from(digit);
            if i % 2 == 0 {
                let product = digit * 2;
                product / 10 + product % 10
            } else {
                digit
            }
        })
        .sum();
    // Always below 10, so the cast cannot truncate.
    ((10 - sum % 10) % 10) as u8
}

/// Whether `digits` (values 0-9) end in their correct Luhn check digit.
///
/// The last element is the check digit. An empty slice, or one holding a value above 9, is
/// not valid.
pub fn luhn_valid(digits: &[u8]) -> bool {
    match digits.split_last() {
        Some((&check, payload)) if digits.iter().all(|&d| d <= 9) => luhn_check_digit(payload) == check,
        _ => false,
    }
}

/// The ASCII digits of `bytes` as values 0-9; `None` unless `bytes` is exactly `N` ASCII
/// digits.
fn digit_values<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    if bytes.len() != N {
        return None;
    }
    let mut out = [0u8; N];
    for (slot, &b) in out.iter_mut().zip(bytes) {
        if !b.is_ascii_digit() {
            return None;
        }
        *slot = b - b'0';
    }
    Some(out)
}

/// Two digit values as a number.
fn two_digits(tens: u8, ones: u8) -> u32 {
    u32::from(tens) * 10 + u32::from(ones)
}

/// Implements `Serialize` (as the normal form), `Deserialize` (through `parse`) and `FromStr`
/// for a string identifier.
macro_rules! string_identifier {
    ($ty:ident, $text:ident, $expecting:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.$text())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(ParseVisitor::<$ty>::new($expecting))
            }
        }

        impl FromStr for $ty {
            type Err = ValidationError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $ty::parse(s)
            }
        }
    };
}

/// Deserializes a string through `FromStr`, raising the [`ValidationError`] (`CODE: reason`)
/// as the custom error, so [`ValidationError::from_message`] can recover the code.
struct ParseVisitor<T> {
    expecting: &'static str,
    marker: PhantomData<fn() -> T>,
}

impl<T> ParseVisitor<T> {
    fn new(expecting: &'static str) -> Self {
        ParseVisitor { expecting, marker: PhantomData }
    }
}

impl<T: FromStr<Err = ValidationError>> Visitor<'_> for ParseVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

// ---------------------------------------------------------------------------------------
// Personal identity number
// ---------------------------------------------------------------------------------------

/// A Swedish personal identity number (personnummer) or coordination number
/// (samordningsnummer), normalised to the 12 digits `YYYYMMDDNNNC`.
///
/// A coordination number carries the day of birth plus 60 (61-91); the normal form keeps it
/// that way, and [`birth_date`](Self::birth_date) gives the real day.
///
/// `Debug` prints `PersonalIdentityNumber(**REDACTED**)` and `Display` prints
/// `**REDACTED**`; use [`expose`](Self::expose) where the digits are really needed.
/// Serialized as the 12-digit string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonalIdentityNumber {
    digits: String,
    birth_date: NaiveDate,
}

/// Shown instead of a personal identity number.
const REDACTED: &str = "**REDACTED**";

fn invalid_pin(reason: &str) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidPersonalIdentityNumber, reason)
}

impl PersonalIdentityNumber {
    /// Parses a personal identity number, taking today's local date as the reference for
    /// the century of the 10-digit forms. See [`parse_at`](Self::parse_at).
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        // The clock (and the local zone behind it) is read only for a 10-digit form: the
        // 12-digit normal form, what systems send, is parsed many times a second.
        Self::parse_with(s, crate::clock::system_today)
    }

    /// Parses a personal identity number with `today` as the reference date.
    ///
    /// Accepted, after trimming surrounding whitespace: `YYYYMMDDNNNC`, `YYYYMMDD-NNNC`,
    /// `YYMMDDNNNC`, `YYMMDD-NNNC` and `YYMMDD+NNNC`. A 10-digit form gets the most recent
    /// century in which the birth date is not after `today`; with `+` (a person 100 or
    /// older) a century earlier. The date (day minus 60 for a coordination number) must be a
    /// calendar date, and the last digit must be the Luhn check digit of the nine before it.
    ///
    /// Errors are [`ErrorCode::InvalidPersonalIdentityNumber`]; their reasons never contain
    /// the input.
    pub fn parse_at(s: &str, today: NaiveDate) -> Result<Self, ValidationError> {
        Self::parse_with(s, || today)
    }

    fn parse_with(s: &str, today: impl FnOnce() -> NaiveDate) -> Result<Self, ValidationError> {
        let s = s.trim();

        // Digits, and the one optional separator with the number of digits before it.
        let mut digits = [0u8; 12];
        let mut count = 0;
        let mut separator: Option<(u8, usize)> = None;
        for &b in s.as_bytes() {
            match b {
                b'0'..=b'9' => {
                    let slot = digits.get_mut(count).ok_or_else(|| invalid_pin("expected 10 or 12 digits"))?;
                    *slot = b - b'0';
                    count += 1;
                }
                b'-' | b'+' if separator.is_none() => separator = Some((b, count)),
                _ => {
                    return Err(invalid_pin(
                        "unexpected character: expected digits with an optional '-' or '+' \
                         before the last four",
                    ))
                }
            }
        }
        if count != 10 && count != 12 {
            return Err(invalid_pin("expected 10 or 12 digits"));
        }
        let plus = match separator {
            None => false,
            Some((_, at)) if at != count - 4 => {
                return Err(invalid_pin("the separator must stand before the last four digits"))
            }
            // A 12-digit number has its century already: '+' (100 or older) adds nothing.
            Some((b, _)) => b == b'+' && count == 10,
        };

        // The last ten digits, YYMMDDNNNC, and the full year.
        let mut short = [0u8; 10];
        short.copy_from_slice(&digits[count - 10..count]);
        let month = two_digits(short[2], short[3]);
        let day_field = two_digits(short[4], short[5]);
        let day = if day_field > 60 { day_field - 60 } else { day_field };
        let year: i32 = if count == 12 {
            i32::from(digits[0]) * 1000 + i32::from(digits[1]) * 100 + i32::from(digits[2]) * 10 + i32::from(digits[3])
        } else {
            let yy = i32::from(short[0]) * 10 + i32::from(short[1]);
            let today = today();
            let mut year = today.year().div_euclid(100) * 100 + yy;
            if (year, month, day) > (today.year(), today.month(), today.day()) {
                year -= 100;
            }
            if plus {
                year -= 100;
            }
            year
        };
        if !(0..=9999).contains(&year) {
            return Err(invalid_pin("not a calendar date"));
        }

        let birth_date = NaiveDate::from_ymd_opt(year, month, day).ok_or_else(|| invalid_pin("not a calendar date"))?;
        if short[6..9] == [0, 0, 0] {
            return Err(invalid_pin("serial number 000 is never issued"));
        }
        if !luhn_valid(&short) {
            return Err(invalid_pin("check digit does not match"));
        }

        if count == 12 && separator.is_none() {
            // Already the normal form (what systems send): the text as it is.
            return Ok(PersonalIdentityNumber { digits: s.to_owned(), birth_date });
        }
        let mut normalised = String::with_capacity(12);
        // The year is within 0..=9999 (checked above): four digits.
        normalised.extend([1000, 100, 10, 1].map(|div| char::from(b'0' + (year / div % 10) as u8)));
        normalised.extend(short[2..].iter().map(|&d| char::from(b'0' + d)));
        Ok(PersonalIdentityNumber { digits: normalised, birth_date })
    }

    /// The 12 digits `YYYYMMDDNNNC`. This is personal data: do not log it.
    pub fn expose(&self) -> &str {
        &self.digits
    }

    /// Whether this is a coordination number (samordningsnummer, day of birth plus 60).
    pub fn is_coordination_number(&self) -> bool {
        self.digits.get(6..8).is_some_and(|day| day > "60")
    }

    /// The date of birth, with the day of a coordination number corrected (minus 60).
    pub fn birth_date(&self) -> NaiveDate {
        self.birth_date
    }
}

impl fmt::Debug for PersonalIdentityNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonalIdentityNumber({REDACTED})")
    }
}

impl fmt::Display for PersonalIdentityNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

string_identifier!(PersonalIdentityNumber, expose, "a Swedish personal identity number");

// ---------------------------------------------------------------------------------------
// Organisation number
// ---------------------------------------------------------------------------------------

/// A Swedish organisation number, normalised to 10 digits.
///
/// Accepts `NNNNNNNNNN`, `NNNNNN-NNNN` and the 12-digit form with the prefix `16`. Follows
/// the PEPPOL rules SE-R-003 (numeric), SE-R-004 (10 digits) and SE-R-013 (Luhn check
/// digit). Serialized as the 10-digit string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgNumber(String);

fn invalid_org(reason: &str) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidOrgNumber, reason)
}

impl OrgNumber {
    /// Parses an organisation number (surrounding whitespace trimmed). Errors are
    /// [`ErrorCode::InvalidOrgNumber`]; their reasons never contain the input.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let text = s.trim();
        let s = text.as_bytes();
        // NNNNNN-NNNN without its hyphen, on the stack.
        let mut compact = [0u8; 10];
        let mut bytes = s;
        if s.len() == 11 && s[6] == b'-' {
            compact[..6].copy_from_slice(&s[..6]);
            compact[6..].copy_from_slice(&s[7..]);
            bytes = &compact;
        }
        if !bytes.iter().all(u8::is_ascii_digit) {
            return Err(invalid_org("must be numeric (SE-R-003)"));
        }
        if bytes.len() == 12 && bytes.starts_with(b"16") {
            bytes = &bytes[2..];
        }
        let digits: [u8; 10] = digit_values(bytes).ok_or_else(|| invalid_org("must be 10 digits (SE-R-004)"))?;
        if !luhn_valid(&digits) {
            return Err(invalid_org("check digit does not match (SE-R-013)"));
        }
        if text.len() == 10 {
            // Ten digits as they came: already the normal form.
            return Ok(OrgNumber(text.to_owned()));
        }
        Ok(OrgNumber(digits.iter().map(|&d| char::from(b'0' + d)).collect()))
    }

    /// The 10 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OrgNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrgNumber({})", self.0)
    }
}

impl fmt::Display for OrgNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_identifier!(OrgNumber, as_str, "a Swedish organisation number");

// ---------------------------------------------------------------------------------------
// HSA-id
// ---------------------------------------------------------------------------------------

/// An HSA-id, the identifier of a person, unit or function in the national HSA directory,
/// such as `SE2321000131-P000000123456`.
///
/// Two uppercase ASCII letters (the country), the 10-digit organisation number of the
/// issuing organisation (not Luhn-checked: real HSA-ids use numbers that are not), `-`, and
/// one or more ASCII letters or digits; at most 31 characters. Case is significant.
/// Serialized as the string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HsaId(String);

/// The longest HSA-id.
const HSA_ID_MAX_LEN: usize = 31;

fn invalid_hsa(reason: &str) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidHsaId, reason)
}

impl HsaId {
    /// Parses an HSA-id (surrounding whitespace trimmed). Errors are
    /// [`ErrorCode::InvalidHsaId`].
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let s = s.trim();
        let bytes = s.as_bytes();
        if bytes.len() > HSA_ID_MAX_LEN {
            return Err(invalid_hsa("must be at most 31 characters"));
        }
        let (country, rest) = bytes.split_at(bytes.len().min(2));
        if country.len() != 2 || !country.iter().all(u8::is_ascii_uppercase) {
            return Err(invalid_hsa("must start with a two-letter uppercase country code"));
        }
        let (org, rest) = rest.split_at(rest.len().min(10));
        if org.len() != 10 || !org.iter().all(u8::is_ascii_digit) {
            return Err(invalid_hsa("the country code must be followed by a 10-digit organisation number"));
        }
        let Some((b'-', suffix)) = rest.split_first() else {
            return Err(invalid_hsa("the organisation number must be followed by '-'"));
        };
        if suffix.is_empty() || !suffix.iter().all(u8::is_ascii_alphanumeric) {
            return Err(invalid_hsa("'-' must be followed by one or more ASCII letters or digits"));
        }
        Ok(HsaId(s.to_owned()))
    }

    /// The HSA-id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for HsaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HsaId({})", self.0)
    }
}

impl fmt::Display for HsaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_identifier!(HsaId, as_str, "an HSA-id");

// ---------------------------------------------------------------------------------------
// NFC tag UID
// ---------------------------------------------------------------------------------------

/// The UID of an NFC tag (4, 7 or 10 bytes), normalised to uppercase hex without
/// separators, such as `04A21BC35D8081`.
///
/// Parsing accepts either case, and the byte pairs may be separated throughout by one of
/// `:`, `-` or a space (`04:a2:1b:c3:5d:80:81`). Serialized as the normalised string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagUid(String);

fn invalid_tag(reason: &str) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidTagUid, reason)
}

impl TagUid {
    /// Parses a tag UID (surrounding whitespace trimmed). Errors are
    /// [`ErrorCode::InvalidTagUid`].
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let s = s.trim();
        let hex = match s.chars().find(|c| matches!(c, ':' | '-' | ' ')) {
            None => s.to_owned(),
            Some(separator) => {
                let mut hex = String::with_capacity(s.len());
                for pair in s.split(separator) {
                    if pair.len() != 2 {
                        return Err(invalid_tag(
                            "separators must stand between every two hex digits, the same \
                             one throughout",
                        ));
                    }
                    hex.push_str(pair);
                }
                hex
            }
        };
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid_tag("must be hexadecimal"));
        }
        if !matches!(hex.len(), 8 | 14 | 20) {
            return Err(invalid_tag("expected 4, 7 or 10 bytes (8, 14 or 20 hex digits)"));
        }
        Ok(TagUid(hex.to_ascii_uppercase()))
    }

    /// The UID as uppercase hex without separators.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The length of the UID in bytes: 4, 7 or 10.
    pub fn bytes_len(&self) -> usize {
        self.0.len() / 2
    }
}

impl fmt::Debug for TagUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TagUid({})", self.0)
    }
}

impl fmt::Display for TagUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_identifier!(TagUid, as_str, "an NFC tag UID in hex");

// ---------------------------------------------------------------------------------------
// Source id
// ---------------------------------------------------------------------------------------

/// An id namespaced by the system that issued it, written `system:local`, such as
/// `combine:DEC-2026-0001`.
///
/// The system part is one or more of `a-z`, `0-9`, `_` and `-`; the local part is 1 to 128
/// printable ASCII characters without whitespace (it may contain `:`). Serialized as the
/// `system:local` string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId {
    text: String,
    /// The length of the system part, which is where the first `:` sits.
    system_len: usize,
}

/// The longest local part of a [`SourceId`].
const SOURCE_LOCAL_MAX_LEN: usize = 128;

fn invalid_source(reason: &str) -> ValidationError {
    ValidationError::new(ErrorCode::InvalidValue, reason)
}

impl SourceId {
    /// A source id from its two parts, taken as they are. Errors are
    /// [`ErrorCode::InvalidValue`].
    pub fn new(system: &str, local: &str) -> Result<Self, ValidationError> {
        Self::check(system, local)?;
        let mut text = String::with_capacity(system.len() + 1 + local.len());
        text.push_str(system);
        text.push(':');
        text.push_str(local);
        Ok(SourceId { text, system_len: system.len() })
    }

    /// Parses `system:local` (surrounding whitespace trimmed), splitting at the first `:`.
    /// Errors are [`ErrorCode::InvalidValue`].
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let s = s.trim();
        // Every inbound message's id comes this way: the text is already `system:local`,
        // so it is checked in its two parts and kept whole.
        let system_len =
            s.bytes().position(|b| b == b':').ok_or_else(|| invalid_source("source id: expected system:local"))?;
        Self::check(&s[..system_len], &s[system_len + 1..])?;
        Ok(SourceId { text: s.to_owned(), system_len })
    }

    fn check(system: &str, local: &str) -> Result<(), ValidationError> {
        if system.is_empty() || !system.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-')) {
            return Err(invalid_source("source id: the system must be one or more of a-z, 0-9, '_' and '-'"));
        }
        if local.is_empty() || local.len() > SOURCE_LOCAL_MAX_LEN || !local.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid_source(
                "source id: the local part must be 1 to 128 printable ASCII characters \
                 without whitespace",
            ));
        }
        Ok(())
    }

    /// The issuing system, such as `combine`.
    pub fn system(&self) -> &str {
        &self.text[..self.system_len]
    }

    /// The id within the system, such as `DEC-2026-0001`.
    pub fn local(&self) -> &str {
        &self.text[self.system_len + 1..]
    }

    /// The whole id, `system:local`.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Debug for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceId({})", self.text)
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

string_identifier!(SourceId, as_str, "a source id, system:local");

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("a calendar date")
    }

    fn pin(s: &str) -> PersonalIdentityNumber {
        PersonalIdentityNumber::parse_at(s, date(2026, 11, 22)).expect("a valid number")
    }

    #[test]
    fn luhn_matches_known_numbers() {
        assert_eq!(luhn_check_digit(&[8, 1, 1, 2, 1, 8, 9, 8, 7]), 6);
        assert!(luhn_valid(&[8, 1, 1, 2, 1, 8, 9, 8, 7, 6]));
        assert!(!luhn_valid(&[8, 1, 1, 2, 1, 8, 9, 8, 7, 5]));
        assert!(!luhn_valid(&[]));
        assert!(!luhn_valid(&[1, 12, 3]));
    }

    #[test]
    fn the_spec_sample_is_valid() {
        let p = pin("19360101-6987");
        assert_eq!(p.expose(), "193601016987");
        assert_eq!(p.birth_date(), date(1936, 1, 1));
        assert!(!p.is_coordination_number());
        assert_eq!(pin("360101-6987"), p);
        assert_eq!(pin(" 3601016987 "), p);
        // The normal form is kept as it came, without the white space around it.
        assert_eq!(pin(" 193601016987\n").expose(), "193601016987");
    }

    #[test]
    fn a_coordination_number_keeps_its_day_and_corrects_the_birth_date() {
        // 1936-01-01 as a coordination number: day 61.
        let check = luhn_check_digit(&[3, 6, 0, 1, 6, 1, 6, 9, 8]);
        let p = pin(&format!("19360161698{check}"));
        assert!(p.is_coordination_number());
        assert_eq!(p.birth_date(), date(1936, 1, 1));
        assert!(p.expose().starts_with("19360161"));
    }

    #[test]
    fn debug_and_display_never_show_a_digit() {
        let p = pin("19360101-6987");
        let debug = format!("{p:?}");
        let display = format!("{p}");
        assert_eq!(debug, "PersonalIdentityNumber(**REDACTED**)");
        assert_eq!(display, "**REDACTED**");
        assert!(!debug.chars().chain(display.chars()).any(|c| c.is_ascii_digit()));
        assert!(!format!("{:?}", Some(&p)).chars().any(|c| c.is_ascii_digit()));
    }

    #[test]
    fn errors_never_quote_the_input() {
        for input in ["19360101-6988", "19361301-6987", "1936010169", "19360101_6987"] {
            let e = PersonalIdentityNumber::parse_at(input, date(2026, 11, 22)).expect_err("an invalid number");
            assert_eq!(e.code, ErrorCode::InvalidPersonalIdentityNumber);
            assert!(!e.to_string().chars().any(|c| c.is_ascii_digit()), "{e}");
        }
    }

    #[test]
    fn serde_round_trips_the_twelve_digits() {
        let p = pin("360101-6987");
        let json = serde_json::to_string(&p).expect("serializes");
        assert_eq!(json, "\"193601016987\"");
        let back: PersonalIdentityNumber = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, p);
    }

    #[test]
    fn deserializing_an_invalid_number_carries_the_code() {
        let e = serde_json::from_str::<PersonalIdentityNumber>("\"19360101-6988\"").expect_err("an invalid number");
        let message = e.to_string();
        assert!(message.contains("INVALID_PERSONAL_IDENTITY_NUMBER"), "{message}");
        assert!(!message.contains("6988"), "{message}");
        assert_eq!(ValidationError::from_message(&message).code, ErrorCode::InvalidPersonalIdentityNumber);
    }

    #[test]
    fn org_numbers() {
        let a = OrgNumber::parse("5599000014").expect("valid");
        let b = OrgNumber::parse("559900-0014").expect("valid");
        let c = OrgNumber::parse("165599000014").expect("valid");
        assert_eq!(a.as_str(), "5599000014");
        assert_eq!(OrgNumber::parse(" 5599000014\t").expect("valid").as_str(), "5599000014");
        assert_eq!(b.as_str(), "5599000014");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(format!("{a}"), "5599000014");
        assert_eq!(format!("{a:?}"), "OrgNumber(5599000014)");

        let e = OrgNumber::parse("5599000015").expect_err("wrong check digit");
        assert_eq!(e.code, ErrorCode::InvalidOrgNumber);
        assert!(e.reason.contains("SE-R-013"));
        let e = OrgNumber::parse("55990A0014").expect_err("not numeric");
        assert!(e.reason.contains("SE-R-003"));
        let e = OrgNumber::parse("559900001").expect_err("too short");
        assert!(e.reason.contains("SE-R-004"));
        assert!(OrgNumber::parse("175599000014").is_err());
        assert!(OrgNumber::parse("55990-00014").is_err());

        let json = serde_json::to_string(&a).expect("serializes");
        assert_eq!(json, "\"5599000014\"");
        assert_eq!(serde_json::from_str::<OrgNumber>(&json).expect("deserializes"), a);
        let e = serde_json::from_str::<OrgNumber>("\"5599000015\"").expect_err("invalid");
        assert!(e.to_string().contains("INVALID_ORG_NUMBER"));
    }

    #[test]
    fn hsa_ids() {
        let id = HsaId::parse("SE2321000131-P000000123456").expect("valid");
        assert_eq!(id.as_str(), "SE2321000131-P000000123456");
        assert_eq!(format!("{id}"), "SE2321000131-P000000123456");
        assert_eq!(HsaId::parse(" SE2321000131-E1 ").expect("valid").as_str(), "SE2321000131-E1");
        assert_eq!("SE2321000131-abc".parse::<HsaId>().expect("valid").as_str(), "SE2321000131-abc");

        for bad in [
            "",
            "se2321000131-P1",
            "S2321000131-P1",
            "SE232100013-P1",
            "SE2321000131P1",
            "SE2321000131-",
            "SE2321000131-P_1",
            "SE2321000131-Pö",
            "SE2321000131-P000000000123456789",
        ] {
            let e = HsaId::parse(bad).expect_err(bad);
            assert_eq!(e.code, ErrorCode::InvalidHsaId, "{bad}");
        }
        assert!(HsaId::parse("SE2321000131-P00000000012345678").is_ok());

        let json = serde_json::to_string(&id).expect("serializes");
        assert_eq!(serde_json::from_str::<HsaId>(&json).expect("deserializes"), id);
        assert!(serde_json::from_str::<HsaId>("\"SE123\"")
            .expect_err("invalid")
            .to_string()
            .contains("INVALID_HSA_ID"));
    }

    #[test]
    fn tag_uids() {
        let t = TagUid::parse("04:a2:1B:c3:5d:80:81").expect("valid");
        assert_eq!(t.as_str(), "04A21BC35D8081");
        assert_eq!(t.bytes_len(), 7);
        assert_eq!(TagUid::parse("04 A2 1B C3").expect("valid").bytes_len(), 4);
        assert_eq!(TagUid::parse("04-A2-1B-C3-5D-80-81-00-11-22").expect("valid").bytes_len(), 10);
        for bad in ["", "04A21B", "04:A2:1B:C3:5D", "04:A2-1B:C3", "04:A21B:C3", "04A2:1BC3", "0G:A2:1B:C3"] {
            assert_eq!(TagUid::parse(bad).expect_err(bad).code, ErrorCode::InvalidTagUid, "{bad}");
        }
        let json = serde_json::to_string(&t).expect("serializes");
        assert_eq!(json, "\"04A21BC35D8081\"");
        assert_eq!(serde_json::from_str::<TagUid>(&json).expect("deserializes"), t);
    }

    #[test]
    fn source_ids() {
        let s = SourceId::parse("combine:DEC-2026-0001").expect("valid");
        assert_eq!(s.system(), "combine");
        assert_eq!(s.local(), "DEC-2026-0001");
        assert_eq!(s.as_str(), "combine:DEC-2026-0001");
        assert_eq!(SourceId::new("combine", "DEC-2026-0001").expect("valid"), s);
        let nested = SourceId::parse("lifecare_2:a:b").expect("valid");
        assert_eq!(nested.system(), "lifecare_2");
        assert_eq!(nested.local(), "a:b");
        let padded = SourceId::parse(" \tcombine:DEC-2026-0001\r\n").expect("trimmed");
        assert_eq!(
            (padded.as_str(), padded.system(), padded.local()),
            ("combine:DEC-2026-0001", "combine", "DEC-2026-0001")
        );
        assert_eq!(padded, s);

        let long = "x".repeat(128);
        assert!(SourceId::new("sys", &long).is_ok());
        for bad in ["combine", ":x", "combine:", "Combine:x", "com bine:x", "combine:a b", "combine:é"] {
            assert_eq!(SourceId::parse(bad).expect_err(bad).code, ErrorCode::InvalidValue, "{bad}");
        }
        assert!(SourceId::new("sys", &format!("{long}x")).is_err());

        let json = serde_json::to_string(&s).expect("serializes");
        assert_eq!(json, "\"combine:DEC-2026-0001\"");
        assert_eq!(serde_json::from_str::<SourceId>(&json).expect("deserializes"), s);
        assert!(serde_json::from_str::<SourceId>("\"nocolon\"")
            .expect_err("invalid")
            .to_string()
            .contains("INVALID_VALUE"));
    }
}
