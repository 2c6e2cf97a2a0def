//! The canonical JSON an inbound translation builds, and the text it becomes.
//!
//! Every inbound message ends as canonical JSON text: the message log stores that text, and
//! the model reads its typed message from it
//! ([`carehub_model::Message::from_canonical_json`]). Building a `serde_json::Value` on the
//! way costs an owned key and a sorted map per object on every message, and then a second
//! walk to type it. This tree is what the readers (XML, JSON, CSV) fill instead: its keys
//! are borrowed from the mapping, its text from the payload where nothing changed it, its
//! objects keep their keys in the order the mapping places them, and it is written out
//! once.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Timelike, Utc};

use serde::de::value::{BorrowedStrDeserializer, MapAccessDeserializer, MapDeserializer, SeqDeserializer};
use serde::de::{self, Deserializer, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

/// A canonical value being built.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Canon<'a> {
    Str(Cow<'a, str>),
    /// A date, a string in canonical JSON (`YYYY-MM-DD`): kept as a value and written as
    /// text only where it is read, which the model does without allocating.
    Date(NaiveDate),
    /// An instant, a string in canonical JSON (RFC 3339 in UTC), likewise.
    Instant(DateTime<Utc>),
    Int(i64),
    Bool(bool),
    List(Vec<Canon<'a>>),
    /// Keys in the order they were placed, each once.
    Obj(Vec<(&'a str, Canon<'a>)>),
}

impl<'a> Canon<'a> {
    /// An empty object with room for `fields` keys.
    pub(crate) fn object(fields: usize) -> Self {
        Canon::Obj(Vec::with_capacity(fields))
    }

    /// The value at a canonical path (JSON keys); the value itself for no keys.
    pub(crate) fn get<S: AsRef<str>>(&self, keys: &[S]) -> Option<&Canon<'a>> {
        keys.iter().try_fold(self, |v, key| match v {
            Canon::Obj(entries) => entries.iter().find(|(k, _)| *k == key.as_ref()).map(|(_, v)| v),
            _ => None,
        })
    }

    /// Puts `value` at `keys` (replacing the value itself for no keys): objects on the way
    /// are made as needed, a value already at the last key is replaced.
    pub(crate) fn put(&mut self, keys: &'a [String], value: Canon<'a>) {
        let Some((first, rest)) = keys.split_first() else {
            *self = value;
            return;
        };
        if !matches!(self, Canon::Obj(_)) {
            *self = Canon::object(1);
        }
        let Canon::Obj(entries) = self else { unreachable!("made an object above") };
        let at = match entries.iter().position(|(k, _)| *k == first.as_str()) {
            Some(at) => at,
            None => {
                entries.push((first.as_str(), Canon::object(if rest.is_empty() { 0 } else { 1 })));
                entries.len() - 1
            }
        };
        entries[at].1.put(rest, value);
    }

    /// Adds a key the object does not have yet (the caller knows), without looking for it.
    #[inline(always)]
    pub(crate) fn add(&mut self, key: &'a str, value: Canon<'a>) {
        match self {
            Canon::Obj(entries) => entries.push((key, value)),
            _ => {
                *self = Canon::Obj(vec![(key, value)]);
            }
        }
    }

    /// A scalar as text (a string, or a number or boolean as JSON writes it), for a
    /// condition on a value already decoded.
    pub(crate) fn as_text(&self) -> Option<Cow<'_, str>> {
        match self {
            Canon::Str(s) => Some(Cow::Borrowed(s)),
            Canon::Date(_) | Canon::Instant(_) => self.time_text().map(|t| Cow::Owned(t.as_str().to_owned())),
            Canon::Int(n) => Some(Cow::Owned(n.to_string())),
            Canon::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Canon::List(_) | Canon::Obj(_) => None,
        }
    }

    /// An instant, as a value or as RFC 3339 text.
    pub(crate) fn as_instant(&self) -> Option<DateTime<Utc>> {
        match self {
            Canon::Instant(at) => Some(*at),
            Canon::Str(s) => DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc)),
            _ => None,
        }
    }

    /// A date's or an instant's canonical text.
    fn time_text(&self) -> Option<TimeText> {
        match self {
            Canon::Date(d) => Some(TimeText::date(*d)),
            Canon::Instant(at) => Some(TimeText::instant(*at)),
            _ => None,
        }
    }

    /// The compact JSON text.
    pub(crate) fn to_json(&self) -> String {
        let mut out = String::with_capacity(512);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Canon::Str(s) => write_str(out, s),
            Canon::Date(_) | Canon::Instant(_) => {
                if let Some(t) = self.time_text() {
                    write_str(out, t.as_str());
                }
            }
            Canon::Int(n) => {
                // Digits from the right, without the formatting machinery.
                let mut digits = [0u8; 20];
                let mut at = digits.len();
                let mut rest = n.unsigned_abs();
                loop {
                    at -= 1;
                    digits[at] = b'0' + (rest % 10) as u8;
                    rest /= 10;
                    if rest == 0 {
                        break;
                    }
                }
                if *n < 0 {
                    out.push('-');
                }
                out.extend(digits[at..].iter().map(|&d| char::from(d)));
            }
            Canon::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Canon::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Canon::Obj(entries) => {
                out.push('{');
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, key);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading the typed message straight from the tree

/// The tree as a serde deserializer, so the model's types read it without the JSON text in
/// between (as `serde_json::Value` would be read, with the same errors).
impl<'de> Deserializer<'de> for &'de Canon<'_> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self {
            Canon::Str(s) => visitor.visit_borrowed_str(s),
            // The common forms as bytes, which the model's times read without a UTF-8
            // check (and any string reads as well).
            Canon::Date(_) | Canon::Instant(_) => match self.time_text() {
                Some(TimeText::Short(buf, len)) => visitor.visit_bytes(&buf[..len]),
                Some(TimeText::Long(s)) => visitor.visit_str(&s),
                None => Err(de::Error::custom("not a time")),
            },
            Canon::Int(n) => visitor.visit_i64(*n),
            Canon::Bool(b) => visitor.visit_bool(*b),
            Canon::List(items) => {
                let mut seq = SeqDeserializer::new(items.iter());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            Canon::Obj(entries) => {
                let mut map = MapDeserializer::new(entries.iter().map(|(k, v)| (*k, v)));
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    /// A value is never null: what is absent is not in the tree.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_some(self)
    }

    /// A date or an instant the model asks for as one ([`carehub_model::time::DATE`]) is
    /// handed over as the value it is, not as text to be parsed again.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self {
            Canon::Date(d) if name == carehub_model::time::DATE => visitor.visit_i32(d.num_days_from_ce()),
            Canon::Instant(at) if name == carehub_model::time::INSTANT => {
                visitor.visit_i128(i128::from(at.timestamp()) * 1_000_000_000 + i128::from(at.timestamp_subsec_nanos()))
            }
            _ => visitor.visit_newtype_struct(self),
        }
    }

    /// A unit variant is its name; a variant with data, an object of one key.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self {
            Canon::Str(s) => visitor.visit_enum(BorrowedStrDeserializer::new(s)),
            Canon::Obj(entries) if entries.len() == 1 => visitor
                .visit_enum(MapAccessDeserializer::new(MapDeserializer::new(entries.iter().map(|(k, v)| (*k, v))))),
            _ => Err(de::Error::invalid_type(self.unexpected(), &"a variant name or an object of one key")),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, serde_json::Error> for &'de Canon<'_> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl Canon<'_> {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match self {
            Canon::Str(s) => de::Unexpected::Str(s),
            Canon::Date(_) | Canon::Instant(_) => de::Unexpected::Other("a date or time"),
            Canon::Int(n) => de::Unexpected::Signed(*n),
            Canon::Bool(b) => de::Unexpected::Bool(*b),
            Canon::List(_) => de::Unexpected::Seq,
            Canon::Obj(_) => de::Unexpected::Map,
        }
    }
}

/// A date's or an instant's canonical text: `YYYY-MM-DD`, or RFC 3339 in UTC with `Z` and
/// fractions only when there are some. The common forms (four-digit years, whole seconds)
/// are written into a buffer on the stack, without the formatting machinery: this runs for
/// every date of every inbound message.
enum TimeText {
    Short([u8; 20], usize),
    Long(String),
}

impl TimeText {
    fn date(d: NaiveDate) -> TimeText {
        let mut buf = [0u8; 20];
        if !(0..=9999).contains(&d.year()) {
            return TimeText::Long(d.format("%Y-%m-%d").to_string());
        }
        put_date(&mut buf, d);
        TimeText::Short(buf, 10)
    }

    fn instant(at: DateTime<Utc>) -> TimeText {
        if at.nanosecond() != 0 || !(0..=9999).contains(&at.year()) {
            return TimeText::Long(at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        }
        let mut buf = [0u8; 20];
        put_date(&mut buf, at.date_naive());
        buf[10] = b'T';
        put_digits(&mut buf[11..13], at.hour());
        buf[13] = b':';
        put_digits(&mut buf[14..16], at.minute());
        buf[16] = b':';
        put_digits(&mut buf[17..19], at.second());
        buf[19] = b'Z';
        TimeText::Short(buf, 20)
    }

    fn as_str(&self) -> &str {
        match self {
            // Digits and separators only, so always UTF-8.
            TimeText::Short(buf, len) => std::str::from_utf8(&buf[..*len]).unwrap_or_default(),
            TimeText::Long(s) => s,
        }
    }
}

/// `YYYY-MM-DD` into the first ten bytes; the year is in 0..=9999.
fn put_date(buf: &mut [u8; 20], d: NaiveDate) {
    put_digits(&mut buf[0..4], d.year().unsigned_abs());
    buf[4] = b'-';
    put_digits(&mut buf[5..7], d.month());
    buf[7] = b'-';
    put_digits(&mut buf[8..10], d.day());
}

/// The last `out.len()` decimal digits of `n`, zero-padded.
fn put_digits(out: &mut [u8], mut n: u32) {
    for digit in out.iter_mut().rev() {
        *digit = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// Bytes a JSON string cannot hold as they are: quotes, backslashes, control characters.
static ESCAPED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// Whether any of eight bytes is a control character, a quote or a backslash (the classic
/// "has a zero byte" and "has a byte below n" word tricks).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x;
    let quote = zero_in(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_in(word ^ (ONES * u64::from(b'\\')));
    (below_space | quote | backslash) & HIGHS != 0
}

/// A JSON string literal: quotes, backslashes and control characters escaped, the rest
/// (non-ASCII included) as it is.
fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut plain = 0; // start of the run not yet written
                       // Eight bytes at a time while none needs escaping (values are mostly plain), then
                       // byte by byte from the first chunk that has one.
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        if needs_escape(word) {
            break;
        }
        i += 8;
    }
    for (i, &b) in bytes.iter().enumerate().skip(i) {
        if !ESCAPED[usize::from(b)] {
            continue;
        }
        out.push_str(&s[plain..i]);
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            _ => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_json_that_reads_back_as_the_same_value() {
        let keys = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
        let (id, name, minutes, on, late) = (keys("id"), keys("who.name"), keys("who.minutes"), keys("on"), keys("id"));
        let mut c = Canon::object(4);
        c.put(&id, Canon::Str("first".into()));
        c.put(&name, Canon::Str("Åsa \"Ö\"\\\n\t\u{1}".into()));
        c.put(&minutes, Canon::Int(-30));
        c.put(&on, Canon::List(vec![Canon::Bool(true), Canon::Bool(false)]));
        c.put(&late, Canon::Str("second".into())); // replaces, keeps its place
        let text = c.to_json();
        assert_eq!(text, r#"{"id":"second","who":{"name":"Åsa \"Ö\"\\\n\t\u0001","minutes":-30},"on":[true,false]}"#);
        let back: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back["who"]["name"], "Åsa \"Ö\"\\\n\t\u{1}");
        assert_eq!(back["on"], serde_json::json!([true, false]));
        assert_eq!(c.get(&name).and_then(Canon::as_text).as_deref(), Some("Åsa \"Ö\"\\\n\t\u{1}"));
        assert_eq!(c.get(&minutes).and_then(Canon::as_text).as_deref(), Some("-30"));
        assert_eq!(c.get(&keys("who.nothing")), None);
        // Escapes anywhere in a longer text, found past the word-at-a-time scan.
        for s in [
            "plain text longer than sixteen bytes",
            "sixteen bytes ok\"quote",
            "0123456789abcdef\\",
            "åäö åäö\u{7f}\u{1f}",
        ] {
            let mut out = String::new();
            write_str(&mut out, s);
            assert_eq!(serde_json::from_str::<String>(&out).expect("a JSON string"), s, "{out}");
        }
        // Times are written as canonical text, and read as it by the model.
        let d = NaiveDate::from_ymd_opt(2026, 11, 1).expect("a date");
        let at = d.and_hms_opt(9, 5, 7).expect("a time").and_utc();
        let with_fraction = at + chrono::Duration::milliseconds(250);
        let far = NaiveDate::from_ymd_opt(12026, 1, 2).expect("a date");
        let mut times = Canon::object(4);
        for (key, value) in [("d", Canon::Date(d)), ("at", Canon::Instant(at)), ("f", Canon::Instant(with_fraction))] {
            times.add(key, value);
        }
        times.add("far", Canon::Date(far));
        assert_eq!(
            times.to_json(),
            r#"{"d":"2026-11-01","at":"2026-11-01T09:05:07Z","f":"2026-11-01T09:05:07.250Z","far":"+12026-01-02"}"#
        );
        assert_eq!(Canon::Instant(at).as_text().as_deref(), Some("2026-11-01T09:05:07Z"));
        assert_eq!(Canon::Instant(at).as_instant(), Some(at));
        assert_eq!(Canon::Str("2026-11-01T10:05:07+01:00".into()).as_instant(), Some(at));
        let read: std::collections::BTreeMap<String, String> =
            serde::Deserialize::deserialize(&times).expect("strings to the model");
        assert_eq!(read["f"], "2026-11-01T09:05:07.250Z");
        assert_eq!(read["far"], "+12026-01-02");
        let mut item = Canon::object(0);
        item.put(&[], Canon::Int(7));
        assert_eq!(item.to_json(), "7");
    }

    #[test]
    fn dates_and_instants_reach_the_model_as_values_and_read_as_their_text_does() {
        use carehub_model::{Message, MessageType};
        let service = {
            let mut o = Canon::object(3);
            o.add("code", Canon::Str("S".into()));
            o.add("category", Canon::Str("service".into()));
            o.add("minutes_per_month", Canon::Int(60));
            o
        };
        let decision = |from: Canon<'static>, to: Option<Canon<'static>>, at: Option<Canon<'static>>| {
            let mut o = Canon::object(8);
            o.add("id", Canon::Str("procapita:PC-1".into()));
            o.add("client", Canon::Str("193601016987".into()));
            o.add("case_officer", Canon::Str("ÅÖB".into()));
            o.add("provider", Canon::Str("5599000014".into()));
            o.add("valid_from", from);
            if let Some(to) = to {
                o.add("valid_to", to);
            }
            o.add("services", Canon::List(vec![service.clone()]));
            if let Some(at) = at {
                o.add("decided_at", at);
            }
            o
        };
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("a date");
        let instant = |s: &str| DateTime::parse_from_rfc3339(s).expect("an instant").with_timezone(&Utc);
        let cases = [
            decision(Canon::Date(date(2026, 11, 1)), None, None),
            decision(
                Canon::Date(date(2024, 2, 29)),
                Some(Canon::Date(date(2027, 10, 31))),
                Some(Canon::Instant(instant("2026-10-28T09:00:00Z"))),
            ),
            // Fractions, before the epoch, far years: what the text would carry.
            decision(
                Canon::Date(date(1, 1, 1)),
                Some(Canon::Date(date(12026, 1, 2))),
                Some(Canon::Instant(instant("1969-12-31T23:59:59.250Z"))),
            ),
            // Text where a date is read as text; a number where a date is refused alike.
            decision(Canon::Str("2026-11-01".into()), None, Some(Canon::Str("2026-10-28T10:00:00+01:00".into()))),
            decision(Canon::Int(20261101), None, None),
            decision(Canon::Date(date(2026, 11, 1)), None, Some(Canon::Date(date(2026, 10, 28)))),
        ];
        for tree in &cases {
            let text = tree.to_json();
            let by_tree = Message::from_deserializer(MessageType::Decision, tree);
            let by_text = Message::from_canonical_json(MessageType::Decision, &text);
            let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            let by_value = Message::from_canonical(MessageType::Decision, value);
            match (&by_tree, &by_text, &by_value) {
                (Ok(a), Ok(b), Ok(c)) => assert!(a == b && b == c, "{text}"),
                (Err(a), Err(b), Err(c)) => {
                    assert_eq!((a.code, b.code), (b.code, c.code), "{text}");
                }
                _ => panic!("{text}: tree {by_tree:?}, text {by_text:?}, value {by_value:?}"),
            }
        }
        let Ok(Message::Decision(d)) = Message::from_deserializer(MessageType::Decision, &cases[2]) else {
            panic!("a decision")
        };
        assert_eq!(d.valid_to, Some(date(12026, 1, 2)));
        assert_eq!(d.decided_at, Some(instant("1969-12-31T23:59:59.250Z")));
        assert!(Message::from_deserializer(MessageType::Decision, &cases[4]).is_err(), "a number is not a date");
        assert!(Message::from_deserializer(MessageType::Decision, &cases[5]).is_err(), "a date is not an instant");
    }
}
