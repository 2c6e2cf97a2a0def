//! The one text form of an instant the log hashes and the store keeps.
//!
//! A log entry's `at` is hashed as text ([`entry_hash`](super::entry_hash)), so the form of
//! that text is part of the chain: changing it would change every later hash. It is defined
//! here, once: UTC, microseconds, fixed width, `2026-11-22T10:48:00.000000Z` ([`ts`]). The
//! store writes every instant it keeps in the same form (so text order is time order in its
//! indexes), and [`parse_store_ts`] reads it back.

use chrono::{DateTime, NaiveDate, Utc};

/// Formats an instant in the hashed form: UTC, microseconds, fixed width.
pub fn ts(at: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    // std's formatting, not chrono's strftime interpreter: this runs several times per
    // visit in the writer's hot loop.
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.nanosecond() / 1000 % 1_000_000
    )
}

/// An instant as the store writes it (`2026-11-22T10:48:00.000000Z`, [`ts`]) without
/// chrono's general parser (this runs twice per visit of the month); any other RFC 3339
/// form through it.
pub fn parse_store_ts(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let fixed = b.len() == 27
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z';
    if !fixed {
        return DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc));
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let date = NaiveDate::from_ymd_opt(i32::try_from(num(0, 4)?).ok()?, num(5, 7)?, num(8, 10)?)?;
    Some(date.and_hms_micro_opt(num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 26)?)?.and_utc())
}

/// Serializes an instant in the hashed form ([`ts`]), for `#[serde(serialize_with)]`: the
/// JSON the API returns keeps the form it always had, whatever type the field has.
pub fn serialize<S: serde::Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts(*at))
}

/// [`serialize`] for an optional instant (`null` when absent).
pub fn serialize_opt<S: serde::Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => s.serialize_some(&ts(*at)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::{parse_store_ts, ts};

    #[test]
    fn ts_is_chronos_fixed_width_form() {
        for (secs, nanos) in [(0, 0), (1_795_000_000, 123_456_789), (1_795_000_059, 999_999_999), (4_102_444_799, 1)] {
            let at = chrono::Utc.timestamp_opt(secs, nanos).single().expect("instant");
            assert_eq!(ts(at), at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
        }
    }

    #[test]
    fn store_timestamps_parse_like_rfc3339() {
        for (secs, micros) in [(0, 0), (1_795_000_000, 123_456), (1_795_000_059, 999_999), (4_102_444_799, 1)] {
            let at = chrono::Utc.timestamp_opt(secs, micros * 1000).single().expect("instant");
            assert_eq!(parse_store_ts(&ts(at)), Some(at));
        }
        assert_eq!(
            parse_store_ts("2026-11-02T09:00:00+01:00").map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-11-02T08:00:00+00:00")
        );
        assert_eq!(parse_store_ts("2026-13-02T09:00:00.000000Z"), None);
        assert_eq!(parse_store_ts("2026-11-02T09:0x:00.000000Z"), None);
    }
}
