//! Dates and instants read from canonical JSON on their canonical forms, `YYYY-MM-DD` and
//! `YYYY-MM-DDTHH:MM:SSZ`, without chrono's general parser, which costs more than the rest
//! of a field; any other form chrono accepts still goes through chrono, with its errors.
//! Used with `#[serde(deserialize_with = ...)]` on the messages' fields: every message the
//! hub receives has a few.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// Digits at `range` of `b` as a number; `None` unless they are all ASCII digits.
fn digits(b: &[u8], range: std::ops::Range<usize>) -> Option<u32> {
    b.get(range)?.iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
}

/// `YYYY-MM-DD` read by hand; `None` for any other shape.
fn fast_date(b: &[u8]) -> Option<NaiveDate> {
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(i32::try_from(digits(b, 0..4)?).ok()?, digits(b, 5..7)?, digits(b, 8..10)?)
}

fn parse_date(s: &str) -> Result<NaiveDate, chrono::ParseError> {
    match (s.len(), fast_date(s.as_bytes())) {
        (10, Some(d)) => Ok(d),
        _ => s.parse(),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` read by hand; `None` for any other shape.
fn fast_instant(b: &[u8]) -> Option<DateTime<Utc>> {
    if b.len() != 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z' {
        return None;
    }
    let at = fast_date(b)?.and_hms_opt(digits(b, 11..13)?, digits(b, 14..16)?, digits(b, 17..19)?)?;
    Some(at.and_utc())
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match fast_instant(s.as_bytes()) {
        Some(at) => Ok(at),
        None => s.parse::<DateTime<FixedOffset>>().map(|t| t.with_timezone(&Utc)),
    }
}

struct DateVisitor;

impl<'de> Visitor<'de> for DateVisitor {
    type Value = NaiveDate;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a date, YYYY-MM-DD")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<NaiveDate, E> {
        parse_date(v).map_err(E::custom)
    }

    /// The same text as bytes, without checking its digits are UTF-8 first.
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<NaiveDate, E> {
        match fast_date(v) {
            Some(d) if v.len() == 10 => Ok(d),
            _ => self.visit_str(std::str::from_utf8(v).map_err(E::custom)?),
        }
    }

    /// Any other reader: the date as text.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<NaiveDate, D::Error> {
        d.deserialize_str(self)
    }

    /// A date handed over as a value ([`DATE`]): days since 1 January of year 1.
    fn visit_i32<E: de::Error>(self, days: i32) -> Result<NaiveDate, E> {
        NaiveDate::from_num_days_from_ce_opt(days).ok_or_else(|| E::custom("a date out of range"))
    }
}

struct InstantVisitor;

impl<'de> Visitor<'de> for InstantVisitor {
    type Value = DateTime<Utc>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 time")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<DateTime<Utc>, E> {
        parse_instant(v).map_err(E::custom)
    }

    /// The same text as bytes (see the date's).
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<DateTime<Utc>, E> {
        match fast_instant(v) {
            Some(at) => Ok(at),
            None => self.visit_str(std::str::from_utf8(v).map_err(E::custom)?),
        }
    }

    /// Any other reader: the instant as text.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(self)
    }

    /// An instant handed over as a value ([`INSTANT`]): nanoseconds since the Unix epoch.
    fn visit_i128<E: de::Error>(self, nanos: i128) -> Result<DateTime<Utc>, E> {
        let (secs, sub) = (nanos.div_euclid(1_000_000_000), nanos.rem_euclid(1_000_000_000));
        i64::try_from(secs)
            .ok()
            .and_then(|secs| DateTime::from_timestamp(secs, sub as u32))
            .ok_or_else(|| E::custom("an instant out of range"))
    }
}

/// The name under which a date field asks its reader for the date (see [`DATE`]'s
/// protocol below); the name of nothing else.
pub const DATE: &str = "$carehub::date";

/// Likewise for an instant.
pub const INSTANT: &str = "$carehub::instant";

// A date field asks its reader for a newtype struct named `DATE`. Readers of text (JSON, a
// `serde_json::Value`) know no such struct, hand over the newtype's content, and the field
// reads it as text. A reader that holds the date as a value (the mapping engine's canonical
// tree) answers with `visit_i32(days since 1 January of year 1)` instead, so the date is
// neither written as text nor parsed back: this runs for every date of every inbound
// message. An instant likewise, named `INSTANT`, as `visit_i128(nanoseconds since the
// epoch)`. No text format calls these two on a date's visitor, and a number in JSON
// (`visit_i64`/`visit_u64`) is still refused as a date.

/// A date.
pub(crate) fn date<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    d.deserialize_newtype_struct(DATE, DateVisitor)
}

/// An instant.
pub(crate) fn instant<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    d.deserialize_newtype_struct(INSTANT, InstantVisitor)
}

struct Date(NaiveDate);

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        date(d).map(Date)
    }
}

struct Instant(DateTime<Utc>);

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        instant(d).map(Instant)
    }
}

/// An optional date (with `#[serde(default)]` for an absent one).
pub(crate) fn opt_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    Option::<Date>::deserialize(d).map(|o| o.map(|v| v.0))
}

/// An optional instant (with `#[serde(default)]` for an absent one).
pub(crate) fn opt_instant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    Option::<Instant>::deserialize(d).map(|o| o.map(|v| v.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_forms_agree_with_chrono_and_other_forms_still_parse() {
        for s in ["2026-11-01", "2024-02-29", "0001-01-01", "9999-12-31"] {
            assert_eq!(parse_date(s).ok(), s.parse::<NaiveDate>().ok(), "{s}");
        }
        for s in ["2026-02-30", "2026-13-01", "2026-1-01", "20261101", "2026-11-01x", "+2026-11-01"] {
            assert_eq!(parse_date(s).is_ok(), s.parse::<NaiveDate>().is_ok(), "{s}");
        }
        for s in [
            "2026-10-28T09:00:00Z",
            "2026-10-28T23:59:60Z",
            "2026-10-28T24:00:00Z",
            "2026-10-28T10:00:00+01:00",
            "2026-10-28T09:00:00.5Z",
        ] {
            let chrono = s.parse::<DateTime<FixedOffset>>().ok().map(|t| t.with_timezone(&Utc));
            assert_eq!(parse_instant(s).ok(), chrono, "{s}");
            let as_bytes: Result<DateTime<Utc>, serde_json::Error> = InstantVisitor.visit_bytes(s.as_bytes());
            assert_eq!(as_bytes.ok(), chrono, "{s} as bytes");
        }
        for s in ["2026-11-01", "2024-02-29", "2026-02-30", "20261101", "+12026-01-02"] {
            let as_bytes: Result<NaiveDate, serde_json::Error> = DateVisitor.visit_bytes(s.as_bytes());
            assert_eq!(as_bytes.ok(), s.parse::<NaiveDate>().ok(), "{s} as bytes");
        }
    }
}
