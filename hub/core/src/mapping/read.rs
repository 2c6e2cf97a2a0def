//! Inbound: recognising which mapping a payload is, reading it, and the rules of a field
//! every reader shares.
//!
//! XML is read by `stream` (without a tree), CSV by [`csv`] one row at a time,
//! and JSON here, from its `serde_json` tree; all of them put what they find through
//! [`put_field`], which applies a field's `when`, `split`, `list`, default and code table and
//! converts the text to a canonical value (dates and times in the field's zone).

use std::borrow::Cow;
use std::sync::Arc;

use carehub_model::{ErrorCode, Message, MessageType, ValidationError};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

use super::canonical::Canon;
use super::spec::segments;
use super::{csv, stream, text, Direction, Field, FieldType, Format, Mapping, MappingSet};

/// A vendor payload translated to canonical JSON.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub mapping: Arc<str>,
    pub message_type: MessageType,
    /// Compact JSON text, as the message log stores it and
    /// [`Message::from_canonical_json`] reads it.
    pub canonical: String,
}

impl Decoded {
    /// The canonical JSON as a value.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.canonical).unwrap_or(Value::Null)
    }

    /// The typed, validated message.
    pub fn message(&self) -> Result<Message, ValidationError> {
        Message::from_canonical_json(self.message_type, &self.canonical)
    }
}

/// A vendor payload translated to its typed canonical message.
#[derive(Debug, Clone)]
pub struct Translated {
    /// The mapping that read it.
    pub mapping: Arc<str>,
    pub message: Message,
}

/// What a reader made of a payload: the canonical tree, or (from a JSON document or a CSV
/// row, whose tree cannot outlive the reader) its JSON text.
enum Read<'a> {
    Tree(&'a Mapping, Canon<'a>),
    Row(Decoded),
}

/// One data row of an inbound CSV file, translated on its own: a bad row does not cost the
/// good ones, and the line number lets the vendor find it.
#[derive(Debug, Clone)]
pub struct RowDecoded {
    /// The row's line in the file (1-based; the header is normally line 1). A row whose
    /// quoted cell spans lines is numbered by its first line.
    pub line: usize,
    pub result: Result<Decoded, ValidationError>,
}

impl MappingSet {
    /// Decodes an inbound payload's bytes to text within the profile's encodings (see
    /// [`text::detect_accepted`]).
    pub fn text_of<'a>(&self, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, str>, ValidationError> {
        text::detect_accepted(bytes, self.inbound, &self.accepted)?.decode()
    }

    /// Translates an inbound payload's bytes: decodes the text (see
    /// [`MappingSet::text_of`]), then [`MappingSet::decode`].
    pub fn decode_bytes(&self, bytes: &[u8]) -> Result<Decoded, ValidationError> {
        let text = self.text_of(bytes)?;
        self.decode(&text)
    }

    /// Translates an inbound payload (text) to canonical JSON: recognises which message it
    /// is, then applies that mapping's fields.
    pub fn decode(&self, text: &str) -> Result<Decoded, ValidationError> {
        Ok(match self.read(text)? {
            Read::Tree(m, canonical) => {
                Decoded { mapping: m.name.clone(), message_type: m.message, canonical: canonical.to_json() }
            }
            Read::Row(d) => d,
        })
    }

    /// Translates an inbound payload's bytes to its typed canonical message, validated by
    /// the model: what [`MappingSet::decode_bytes`] and [`Decoded::message`] do, in one
    /// pass, the model reading the engine's tree with no JSON text in between. This is the
    /// path every message a system sends takes. A refusal carries the canonical JSON when
    /// the payload translated but the model refused it.
    pub fn translate_bytes(&self, bytes: &[u8]) -> Result<Translated, (Option<Decoded>, ValidationError)> {
        match (text::detect_accepted(bytes, self.inbound, &self.accepted).map_err(|e| (None, e))?, &self.single_byte) {
            // XML in the vendor's single-byte encoding is read as it is (see `stream`).
            (text::Detected::Encoded(enc, body), Some(table))
                if enc == table.encoding && text::starts_like_xml(body) =>
            {
                let (m, canonical) = stream::read(self, stream::Doc::SingleByte(body, table)).map_err(|e| (None, e))?;
                self.typed(m, canonical)
            }
            (detected, _) => {
                let text = detected.decode().map_err(|e| (None, e))?;
                self.translate(&text)
            }
        }
    }

    /// [`MappingSet::translate_bytes`] on text.
    pub fn translate(&self, text: &str) -> Result<Translated, (Option<Decoded>, ValidationError)> {
        match self.read(text).map_err(|e| (None, e))? {
            Read::Tree(m, canonical) => self.typed(m, canonical),
            Read::Row(d) => match d.message() {
                Ok(message) => Ok(Translated { mapping: d.mapping, message }),
                Err(e) => Err((Some(d), e)),
            },
        }
    }

    /// The model's typed message from a canonical tree.
    fn typed(&self, m: &Mapping, canonical: Canon<'_>) -> Result<Translated, (Option<Decoded>, ValidationError)> {
        match Message::from_deserializer(m.message, &canonical) {
            Ok(message) => Ok(Translated { mapping: m.name.clone(), message }),
            Err(e) => Err((
                Some(Decoded { mapping: m.name.clone(), message_type: m.message, canonical: canonical.to_json() }),
                e,
            )),
        }
    }

    /// Recognises which message a payload is and applies that mapping's fields.
    fn read<'a>(&'a self, text: &'a str) -> Result<Read<'a>, ValidationError> {
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        if trimmed.starts_with('<') {
            stream::read(self, stream::Doc::Text(text)).map(|(m, canonical)| Read::Tree(m, canonical))
        } else if trimmed.starts_with('{') || trimmed.starts_with('[') {
            let value: Value = serde_json::from_str(trimmed)
                .map_err(|e| ValidationError::new(ErrorCode::MalformedPayload, format!("not well-formed JSON: {e}")))?;
            let candidates: Vec<&Mapping> =
                self.mappings.iter().filter(|m| m.direction == Direction::In && m.format == Format::Json).collect();
            let mapping = candidates
                .iter()
                .find(|m| match &m.matcher {
                    Some(mt) => json_text(&value, &mt.path).as_deref() == Some(mt.value.as_str()),
                    None => candidates.len() == 1,
                })
                .ok_or_else(|| {
                    ValidationError::new(
                        ErrorCode::UnknownMessageType,
                        format!("no {} mapping recognises this JSON message", self.vendor),
                    )
                })?;
            // The tree borrows from the payload's JSON, which ends here.
            let canonical = decode_fields(Node::Json(&value), &mapping.fields)?.to_json();
            Ok(Read::Row(Decoded { mapping: mapping.name.clone(), message_type: mapping.message, canonical }))
        } else if self.mappings.iter().any(|m| m.direction == Direction::In && m.format == Format::Csv) {
            // One payload is one message: a file of several rows is a batch, and answering
            // for its first row alone would silently drop the others.
            let mut rows = self.decode_rows(text)?;
            if rows.len() > 1 {
                return Err(ValidationError::new(
                    ErrorCode::MalformedPayload,
                    format!("a CSV file with {} rows: one message is one row; read it as a batch", rows.len()),
                ));
            }
            match rows.pop() {
                Some(row) => row.result.map(Read::Row),
                None => Err(ValidationError::new(ErrorCode::MalformedPayload, "a CSV file with a header and no rows")),
            }
        } else {
            Err(ValidationError::new(ErrorCode::MalformedPayload, "the payload is neither XML nor JSON"))
        }
    }
}

impl Field {
    /// Whether the field's `when` holds in the inbound object being built.
    fn applies_in(&self, obj: &Canon<'_>) -> bool {
        self.when.is_none() || self.when_holds(obj.get(&self.compiled.when).map(Canon::as_text))
    }

    /// `split` and `part`: the side of the text the field takes; `None` when that side is
    /// absent or empty.
    fn take_part<'t>(&self, text: Cow<'t, str>) -> Option<Cow<'t, str>> {
        let Some(sep) = self.split.as_deref() else { return Some(text) };
        let part = self.part.unwrap_or(0);
        match text {
            Cow::Borrowed(s) => side(s, sep, part).map(Cow::Borrowed),
            Cow::Owned(s) => side(&s, sep, part).map(|t| Cow::Owned(t.to_owned())),
        }
    }
}

/// Part 0 (before the first `sep`, or all of `s` without one) or part 1 (after it) of
/// `s`, trimmed; `None` when empty or absent.
fn side<'s>(s: &'s str, sep: &str, part: usize) -> Option<&'s str> {
    let side = match (s.split_once(sep), part) {
        (Some((before, _)), 0) => before,
        (Some((_, after)), _) => after,
        (None, 0) => s,
        (None, _) => return None,
    };
    Some(side.trim()).filter(|t| !t.is_empty())
}

#[derive(Clone, Copy)]
pub(super) enum Node<'a> {
    Json(&'a Value),
    Csv(csv::Row<'a>),
}

/// The nodes a path selects (a JSON array along the way is flattened).
fn select<'a>(node: Node<'a>, path: &str) -> Vec<Node<'a>> {
    let mut current = vec![node];
    for seg in segments(path) {
        let mut next = Vec::new();
        for n in current {
            match n {
                Node::Json(v) => match v.get(seg) {
                    Some(Value::Array(items)) => next.extend(items.iter().map(Node::Json)),
                    Some(child) => next.push(Node::Json(child)),
                    None => {}
                },
                // A row is flat: nothing below it (`check` refuses nested CSV fields).
                Node::Csv(_) => {}
            }
        }
        current = next;
    }
    current
}

/// The scalar at a `/`-separated path of a JSON document, as text.
fn json_text(v: &Value, path: &str) -> Option<String> {
    let segs: Vec<String> = segments(path).map(str::to_owned).collect();
    match first_json(v, &segs)? {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The first value along `segs` (arrays on the way are searched in order).
fn first_json<'a>(v: &'a Value, segs: &[String]) -> Option<&'a Value> {
    let Some((head, rest)) = segs.split_first() else { return Some(v) };
    match v.get(head.as_str())? {
        Value::Array(items) => items.iter().find_map(|i| first_json(i, rest)),
        child => first_json(child, rest),
    }
}

/// The text a field's vendor path selects (or its `join` paths, joined with a space),
/// borrowed where it can be; empty text counts as absent. `at` is the field's position in
/// its list, which a CSV row's column index is kept by.
fn scalar<'a>(node: Node<'a>, at: usize, f: &'a Field) -> Option<Cow<'a, str>> {
    if f.join.is_empty() {
        return text_at(node, at, 0, &f.compiled.elems, f.compiled.attr.is_some());
    }
    let mut joined = String::new();
    for (k, elems) in f.compiled.join.iter().enumerate() {
        let part = text_at(node, at, k, elems, false)?;
        if k > 0 {
            joined.push(' ');
        }
        joined.push_str(&part);
    }
    Some(Cow::Owned(joined))
}

/// The trimmed, non-empty text at one vendor path of field `at`: in a CSV row, its `k`th
/// column (the path's name was resolved to a column once per file); in JSON, the scalar at
/// `elems` (never an attribute).
fn text_at<'a>(node: Node<'a>, at: usize, k: usize, elems: &'a [String], attr: bool) -> Option<Cow<'a, str>> {
    let text: Cow<'a, str> = match node {
        // A column name is taken whole: `/` or `@` in it mean nothing.
        Node::Csv(row) => return row.cell(at, k).map(Cow::Borrowed),
        Node::Json(v) => {
            if attr {
                return None;
            }
            match first_json(v, elems)? {
                Value::String(s) => Cow::Borrowed(s.as_str()),
                Value::Number(n) => Cow::Owned(n.to_string()),
                Value::Bool(b) => Cow::Owned(b.to_string()),
                _ => return None,
            }
        }
    };
    match text {
        Cow::Borrowed(s) => Some(s.trim()).filter(|t| !t.is_empty()).map(Cow::Borrowed),
        Cow::Owned(s) => Some(s.trim()).filter(|t| !t.is_empty()).map(|t| Cow::Owned(t.to_owned())),
    }
}

pub(super) fn decode_fields<'a>(node: Node<'a>, fields: &'a [Field]) -> Result<Canon<'a>, ValidationError> {
    let mut out = Canon::object(fields.len());
    for (at, f) in fields.iter().enumerate() {
        if f.canonical.is_none() || !f.applies_in(&out) {
            continue;
        }
        let found = if !f.fields.is_empty() {
            let items = select(node, f.vendor.as_deref().unwrap_or("."));
            Found::List(items.into_iter().map(|item| decode_fields(item, &f.fields)).collect::<Result<_, _>>()?)
        } else if f.value.is_some() {
            Found::Scalar(None)
        } else {
            Found::Scalar(scalar(node, at, f))
        };
        put_field(&mut out, f, found)?;
    }
    Ok(out)
}

/// What a reader found for one field.
pub(super) enum Found<'a> {
    /// The items of a list field (each already a canonical object).
    List(Vec<Canon<'a>>),
    /// The text of a scalar field, if it was there.
    Scalar(Option<Cow<'a, str>>),
}

/// Puts one field into the canonical object: the rules every reader (XML, JSON, CSV)
/// shares. A field whose `when` does not hold is skipped. A required list needs an item; a
/// scalar is its constant, else the `part` of what was found, else its default, and is
/// required unless optional; the value (or each item of a `list`) is converted and placed.
pub(super) fn put_field<'a>(out: &mut Canon<'a>, f: &'a Field, found: Found<'a>) -> Result<(), ValidationError> {
    let found = match (f.compiled.direct, found) {
        (true, Found::Scalar(Some(text))) => {
            let value = convert_in(f, text, None)?;
            place(out, f, value);
            return Ok(());
        }
        (true, Found::Scalar(None)) if f.optional => return Ok(()),
        (_, found) => found,
    };
    if !f.applies_in(out) {
        return Ok(());
    }
    let value = match found {
        Found::List(items) => {
            if items.is_empty() && !f.optional {
                let path = f.vendor.as_deref().unwrap_or(".");
                return Err(ValidationError::new(ErrorCode::MissingField, format!("{path}: at least one is required")));
            }
            Canon::List(items)
        }
        Found::Scalar(text) => {
            let raw = match &f.value {
                Some(v) => Some(Cow::Borrowed(v.as_str())),
                None => text.and_then(|t| f.take_part(t)).or_else(|| f.default.as_deref().map(Cow::Borrowed)),
            };
            let value = match (raw, &f.list) {
                (None, _) => None,
                (Some(raw), None) => {
                    let floor = (!f.compiled.after.is_empty())
                        .then(|| out.get(&f.compiled.after))
                        .flatten()
                        .and_then(Canon::as_instant);
                    Some(convert_in(f, raw, floor)?)
                }
                (Some(raw), Some(sep)) => {
                    fn pieces<'t>(whole: &'t str, sep: &str) -> Vec<&'t str> {
                        whole.split(sep).map(str::trim).filter(|t| !t.is_empty()).collect()
                    }
                    let pieces: Vec<Cow<'a, str>> = match raw {
                        Cow::Borrowed(whole) => pieces(whole, sep).into_iter().map(Cow::Borrowed).collect(),
                        Cow::Owned(whole) => {
                            pieces(&whole, sep).into_iter().map(|t| Cow::Owned(t.to_owned())).collect()
                        }
                    };
                    let items = pieces.into_iter().map(|t| convert_in(f, t, None)).collect::<Result<Vec<_>, _>>()?;
                    (!items.is_empty()).then_some(Canon::List(items))
                }
            };
            let Some(value) = value else {
                if f.optional {
                    return Ok(());
                }
                return Err(ValidationError::new(ErrorCode::MissingField, format!("{} is required", f.label())));
            };
            value
        }
    };
    place(out, f, value);
    Ok(())
}

/// Places a field's value at its canonical path.
#[inline(always)]
fn place<'a>(out: &mut Canon<'a>, f: &'a Field, value: Canon<'a>) {
    if f.compiled.sole_key {
        out.add(&f.compiled.canonical[0], value);
    } else {
        out.put(&f.compiled.canonical, value);
    }
}

/// A date in `fmt`; the common fixed-width forms are read without chrono's general parser.
fn parse_date(s: &str, fmt: &str) -> Option<NaiveDate> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let fast = match fmt {
        "%Y-%m-%d" if b.len() == 10 && b[4] == b'-' && b[7] == b'-' => Some((num(0..4), num(5..7), num(8..10))),
        "%Y%m%d" if b.len() == 8 => Some((num(0..4), num(4..6), num(6..8))),
        _ => None,
    };
    match fast {
        Some((Some(y), Some(m), Some(d))) => NaiveDate::from_ymd_opt(i32::try_from(y).ok()?, m, d),
        Some(_) => None,
        None => NaiveDate::parse_from_str(s, fmt).ok(),
    }
}

/// A wall-clock time of the form `fmt`; `%Y-%m-%d %H:%M` (ParaGå's, a hundred thousand
/// rows a file) is read without chrono's general parser.
fn parse_naive_datetime(s: &str, fmt: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if fmt == "%Y-%m-%d %H:%M" && b.len() == 16 && b[10] == b' ' && b[13] == b':' {
        let num = |r: std::ops::Range<usize>| -> Option<u32> {
            b.get(r)?.iter().try_fold(0u32, |n, c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
        };
        let date = parse_date(s.get(..10)?, "%Y-%m-%d")?;
        return date.and_hms_opt(num(11..13)?, num(14..16)?, 0);
    }
    NaiveDateTime::parse_from_str(s, fmt).ok()
}

/// A wall-clock time in `zone` that is not before `floor` (see [`Field::after`]): of the
/// instants it names that day (two in the hour October repeats), the first not before the
/// floor; failing that, the same time on the next day. Without a floor, [`in_zone`].
/// `None` for a time the spring clock change skips.
fn at_or_after(naive: NaiveDateTime, zone: chrono_tz::Tz, floor: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    use chrono::TimeZone;
    let Some(floor) = floor else { return in_zone(naive, zone) };
    if let Some(offset) = day_offset(zone, naive.date()) {
        // One instant that day: it, or failing the floor, the same time the next day.
        let at = naive.checked_sub_offset(offset)?.and_utc();
        return if at >= floor { Some(at) } else { in_zone(naive.checked_add_days(chrono::Days::new(1))?, zone) };
    }
    let that_day = zone.from_local_datetime(&naive);
    let (first, last) = (that_day.earliest(), that_day.latest());
    if let Some(t) = [first, last].into_iter().flatten().map(|t| t.with_timezone(&Utc)).find(|t| *t >= floor) {
        return Some(t);
    }
    // Earlier than the floor; a time that does not exist that day is compared by the clock.
    let earlier = first.is_some() || naive < floor.with_timezone(&zone).naive_local();
    if earlier {
        in_zone(naive.checked_add_days(chrono::Days::new(1))?, zone)
    } else {
        None
    }
}

/// Vendor text to a canonical value: the code table, the prefix, then the type. `floor`
/// is the time a `datetime` with `after` cannot be before.
#[inline(always)]
fn convert_in<'a>(f: &'a Field, raw: Cow<'a, str>, floor: Option<DateTime<Utc>>) -> Result<Canon<'a>, ValidationError> {
    let label = f.label();
    let mut s = raw;
    if let Some(t) = &f.table {
        let code = s.as_ref();
        let found = f.compiled.codes.iter().find(|(k, _)| k.len() == code.len() && k == code);
        s = Cow::Borrowed(found.map(|(_, v)| v.as_str()).ok_or_else(|| {
            let shown: String = s.chars().take(32).collect();
            ValidationError::new(ErrorCode::InvalidValue, format!("{label}: unknown code '{shown}' (table {t})"))
        })?);
    }
    if let Some(p) = &f.prefix {
        let mut prefixed = String::with_capacity(p.len() + s.len());
        prefixed.push_str(p);
        prefixed.push_str(&s);
        s = Cow::Owned(prefixed);
    }
    Ok(match f.kind {
        FieldType::String => Canon::Str(s),
        FieldType::Integer => s
            .parse::<i64>()
            .map(Canon::Int)
            .map_err(|_| ValidationError::new(ErrorCode::InvalidValue, format!("{label}: not a whole number")))?,
        FieldType::Boolean => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "ja" => Canon::Bool(true),
            "false" | "0" | "no" | "nej" => Canon::Bool(false),
            _ => return Err(ValidationError::new(ErrorCode::InvalidValue, format!("{label}: not a yes/no value"))),
        },
        FieldType::Date => {
            let fmt = f.format.as_deref().unwrap_or("%Y-%m-%d");
            let d = parse_date(&s, fmt).ok_or_else(|| {
                ValidationError::new(ErrorCode::InvalidDate, format!("{label}: not a date of the form {fmt}"))
            })?;
            Canon::Date(d)
        }
        FieldType::Datetime => {
            let at: DateTime<Utc> = match f.format.as_deref() {
                Some(fmt) => {
                    let naive = parse_naive_datetime(&s, fmt).ok_or_else(|| {
                        ValidationError::new(ErrorCode::InvalidDate, format!("{label}: not a time of the form {fmt}"))
                    })?;
                    at_or_after(naive, f.zone(), floor).ok_or_else(|| {
                        ValidationError::new(
                            ErrorCode::InvalidDate,
                            format!("{label}: that time does not exist in {} (a clock change)", f.zone()),
                        )
                    })?
                }
                None => DateTime::parse_from_rfc3339(&s).map(|d| d.with_timezone(&Utc)).map_err(|_| {
                    ValidationError::new(ErrorCode::InvalidDate, format!("{label}: not an RFC 3339 time"))
                })?,
            };
            Canon::Instant(at)
        }
    })
}

/// A wall-clock time in `zone` as an instant; the earlier one when the clock went back
/// (the hour that occurs twice in October), none when it went forward (the hour March skips).
fn in_zone(naive: NaiveDateTime, zone: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    use chrono::TimeZone;
    if let Some(offset) = day_offset(zone, naive.date()) {
        return Some(naive.checked_sub_offset(offset)?.and_utc());
    }
    zone.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&Utc))
}

/// The UTC offset a zone keeps all through a local day, or `None` for a day its clock
/// changes (or one it cannot tell). Kept per thread in a small table by day: the times in
/// a batch of messages fall on a few days, or weeks, and chrono-tz's search through a
/// zone's changes cost about as much as the rest of a decision's dates together
/// (BENCHMARKS.md). A day is taken to have one offset when it has the same at its start,
/// its noon and its last second: no zone changes its clock twice in a day.
fn day_offset(zone: chrono_tz::Tz, day: NaiveDate) -> Option<chrono::FixedOffset> {
    use chrono::{Datelike, Offset, TimeZone};
    use std::cell::Cell;
    type Known = Option<(chrono_tz::Tz, NaiveDate, Option<chrono::FixedOffset>)>;
    const DAYS: usize = 64;
    thread_local! {
        static KNOWN: [Cell<Known>; DAYS] = const { [const { Cell::new(None) }; DAYS] };
    }
    let at = day.num_days_from_ce().rem_euclid(DAYS as i32) as usize;
    KNOWN.with(|known| {
        if let Some((z, d, offset)) = known[at].get() {
            if z == zone && d == day {
                return offset;
            }
        }
        let offset_at = |h, m, s| zone.offset_from_local_datetime(&day.and_hms_opt(h, m, s)?).single().map(|o| o.fix());
        let offset =
            offset_at(0, 0, 0).filter(|o| offset_at(12, 0, 0) == Some(*o) && offset_at(23, 59, 59) == Some(*o));
        known[at].set(Some((zone, day, offset)));
        offset
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Local times to instants as chrono-tz gives them, without the table of days.
    fn in_zone_direct(naive: NaiveDateTime, zone: chrono_tz::Tz) -> Option<DateTime<Utc>> {
        use chrono::TimeZone;
        zone.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&Utc))
    }

    /// [`at_or_after`] as it read before the table of days.
    fn at_or_after_direct(naive: NaiveDateTime, zone: chrono_tz::Tz, floor: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use chrono::TimeZone;
        let that_day = zone.from_local_datetime(&naive);
        let (first, last) = (that_day.earliest(), that_day.latest());
        if let Some(t) = [first, last].into_iter().flatten().map(|t| t.with_timezone(&Utc)).find(|t| *t >= floor) {
            return Some(t);
        }
        if first.is_some() || naive < floor.with_timezone(&zone).naive_local() {
            in_zone_direct(naive.checked_add_days(chrono::Days::new(1))?, zone)
        } else {
            None
        }
    }

    #[test]
    fn local_times_read_through_the_table_of_days_as_chrono_tz_reads_them() {
        // Every 20 minutes of three years, in zones with clock changes forward and back,
        // by half an hour (Lord Howe), none (Kolkata), and a day skipped (Apia, 2011);
        // on a thread of its own, so the table starts empty and fills and is overwritten.
        std::thread::spawn(|| {
            let zones: [chrono_tz::Tz; 5] = [
                carehub_model::MUNICIPAL_TZ,
                chrono_tz::America::New_York,
                chrono_tz::Australia::Lord_Howe,
                chrono_tz::Asia::Kolkata,
                chrono_tz::Pacific::Apia,
            ];
            let mut checked: i64 = 0;
            for zone in zones {
                let start = if zone == chrono_tz::Pacific::Apia { (2011, 12, 1) } else { (2025, 1, 1) };
                let mut at = NaiveDate::from_ymd_opt(start.0, start.1, start.2)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .expect("a time");
                let end = at + chrono::Duration::days(3 * 366);
                while at < end {
                    assert_eq!(in_zone(at, zone), in_zone_direct(at, zone), "{at} in {zone}");
                    // Floors from three hours before the time read as UTC to one after:
                    // before and after the instant, so both the same and the next day.
                    let floor = at.and_utc() + chrono::Duration::hours(checked % 5 - 3);
                    assert_eq!(
                        at_or_after(at, zone, Some(floor)),
                        at_or_after_direct(at, zone, floor),
                        "{at} in {zone}"
                    );
                    at += chrono::Duration::minutes(20);
                    checked += 1;
                }
            }
            assert!(checked > 5 * 3 * 365 * 72, "{checked}");
        })
        .join()
        .expect("the checks pass");
    }

    const DECISION: &str = r#"
message = "decision"
direction = "in"
format = "xml"
root = "Beslut"
namespace = "urn:x"

[[fields]]
vendor = "Id"
canonical = "id"
prefix = "sys:"

[[fields]]
vendor = "Items/Item"
canonical = "items"
  [[fields.fields]]
  vendor = "@code"
  canonical = "category"
  table = "cat"
  [[fields.fields]]
  vendor = "Minutes"
  canonical = "minutes"
  type = "integer"

[[fields]]
vendor = "From"
canonical = "from"
type = "date"
format = "%Y%m%d"

[tables.cat]
A = "alpha"
"#;

    fn set(text: &str) -> MappingSet {
        MappingSet::from_sources("t", [("decision.toml", text)]).expect("loads")
    }

    #[test]
    fn xml_decodes_through_paths_tables_and_types() {
        let d = set(DECISION)
            .decode(r#"<p:Beslut xmlns:p="urn:x"><p:Id>7</p:Id><p:Items><p:Item code="A"><p:Minutes> 30 </p:Minutes></p:Item></p:Items><p:From>20261101</p:From></p:Beslut>"#)
            .expect("decodes");
        assert_eq!(
            d.value(),
            serde_json::json!({"id": "sys:7", "items": [{"category": "alpha", "minutes": 30}], "from": "2026-11-01"})
        );
    }

    #[test]
    fn decode_errors_are_coded() {
        let s = set(DECISION);
        let e = s.decode(r#"<Beslut xmlns="urn:x"><Items><Item code="A"><Minutes>1</Minutes></Item></Items><From>20261101</From></Beslut>"#);
        assert_eq!(e.expect_err("missing id").code, ErrorCode::MissingField);
        let e = s.decode(r#"<Beslut xmlns="urn:x"><Id>1</Id><Items><Item code="Z"><Minutes>1</Minutes></Item></Items><From>20261101</From></Beslut>"#);
        assert_eq!(e.expect_err("unknown code").code, ErrorCode::InvalidValue);
        let e = s.decode(r#"<Beslut xmlns="urn:x"><Id>1</Id><Items><Item code="A"><Minutes>x</Minutes></Item></Items><From>20261101</From></Beslut>"#);
        assert_eq!(e.expect_err("not a number").code, ErrorCode::InvalidValue);
        let e = s.decode(r#"<Beslut xmlns="urn:x"><Id>1</Id><Items><Item code="A"><Minutes>1</Minutes></Item></Items><From>2026-11-01</From></Beslut>"#);
        assert_eq!(e.expect_err("bad date").code, ErrorCode::InvalidDate);
        let e = s.decode(r#"<Beslut xmlns="urn:other"><Id>1</Id></Beslut>"#);
        assert_eq!(e.expect_err("other namespace").code, ErrorCode::UnknownMessageType);
        assert_eq!(s.decode("hello").expect_err("text").code, ErrorCode::MalformedPayload);
        assert_eq!(s.decode("{\"a\":").expect_err("json").code, ErrorCode::MalformedPayload);
    }

    /// A visit-like inbound JSON mapping using the keys for values spread over several
    /// places: `join`, `after`, `split`/`part`, `list`, `when` and an item's own value.
    const VISIT_JSON: &str = r#"
message = "visit"
direction = "in"
format = "json"

[[fields]]
join = ["day", "in"]
canonical = "check_in.at"
type = "datetime"
format = "%Y-%m-%d %H:%M"

[[fields]]
join = ["day", "out"]
canonical = "check_out.at"
type = "datetime"
format = "%Y-%m-%d %H:%M"
after = "check_in.at"
optional = true

[[fields]]
vendor = "reg"
canonical = "check_in.method"
split = ":"
part = 0
table = "method"

[[fields]]
vendor = "reg"
canonical = "check_in.reason"
split = ":"
part = 1
optional = true
when = { canonical = "check_in.method", equals = "manual" }

[[fields]]
vendor = "tag"
canonical = "check_in.tag_uid"
when = { canonical = "check_in.method", equals = "nfc" }

[[fields]]
vendor = "reg"
canonical = "check_out.method"
split = ":"
part = 0
table = "method"
when = { canonical = "check_out.at" }

[[fields]]
vendor = "codes"
canonical = "services"
list = ","
table = "cat"
optional = true

[[fields]]
vendor = "activities"
canonical = "activities"
optional = true
  [[fields.fields]]
  vendor = "."
  canonical = "."
  table = "cat"

[tables.method]
NFC = "nfc"
Manuell = "manual"

[tables.cat]
A = "alpha"
B = "beta"
"#;

    fn visit(payload: Value) -> Result<Value, ValidationError> {
        let s = MappingSet::from_sources("t", [("visit.toml", VISIT_JSON)]).expect("loads");
        s.decode(&payload.to_string()).map(|d| d.value())
    }

    #[test]
    fn join_reads_several_places_as_one_value() {
        let v = visit(serde_json::json!({"day": "2026-11-03", "in": "08:02", "reg": "NFC", "tag": "04A21BC3"}))
            .expect("decodes");
        assert_eq!(v["check_in"]["at"], "2026-11-03T07:02:00Z");
        assert!(v.get("check_out").is_none(), "no out: the optional joined value is absent, and so its method");
        let e =
            visit(serde_json::json!({"day": "2026-11-03", "in": " ", "reg": "NFC", "tag": "x"})).expect_err("no in");
        assert_eq!((e.code, e.reason.as_str()), (ErrorCode::MissingField, "day + in is required"));
    }

    #[test]
    fn after_moves_a_time_before_its_floor_to_the_next_day() {
        let at = |day: &str, i: &str, o: &str| {
            visit(serde_json::json!({"day": day, "in": i, "out": o, "reg": "Manuell"}))
                .map(|v| (v["check_in"]["at"].clone(), v["check_out"]["at"].clone()))
        };
        assert_eq!(
            at("2026-11-03", "08:02", "08:47").expect("same day"),
            ("2026-11-03T07:02:00Z".into(), "2026-11-03T07:47:00Z".into())
        );
        assert_eq!(
            at("2026-11-03", "23:30", "00:30").expect("midnight"),
            ("2026-11-03T22:30:00Z".into(), "2026-11-03T23:30:00Z".into())
        );
        assert_eq!(
            at("2026-11-03", "08:02", "08:02").expect("equal"),
            ("2026-11-03T07:02:00Z".into(), "2026-11-03T07:02:00Z".into())
        );
        // The hour October repeats: 02:10 after 02:50 is 02:10's second occurrence, 20
        // minutes later, not the next day.
        assert_eq!(
            at("2026-10-25", "02:50", "02:10").expect("repeated hour"),
            ("2026-10-25T00:50:00Z".into(), "2026-10-25T01:10:00Z".into())
        );
        // Across the March change: 23:00 to 03:30 the next morning, which lost an hour.
        assert_eq!(
            at("2026-03-28", "23:00", "03:30").expect("spring night"),
            ("2026-03-28T22:00:00Z".into(), "2026-03-29T01:30:00Z".into())
        );
        // 02:30 the next day does not exist that night; nor on the day itself.
        assert_eq!(at("2026-03-28", "23:00", "02:30").expect_err("skipped").code, ErrorCode::InvalidDate);
        assert_eq!(at("2026-03-29", "01:00", "02:30").expect_err("skipped").code, ErrorCode::InvalidDate);
        // The clock skipped 02:30 on the day, and it is before check-in by the clock: the next day's.
        assert_eq!(at("2026-03-29", "23:00", "02:30").expect("next day").1, "2026-03-30T00:30:00Z");
    }

    #[test]
    fn split_takes_a_side_and_when_keeps_fields_off() {
        let v = visit(serde_json::json!({"day": "2026-11-03", "in": "08:02", "out": "08:40",
            "reg": "Manuell: Taggen saknades: ny beställd ", "tag": "04A21BC3"}))
        .expect("decodes");
        assert_eq!(
            v["check_in"],
            serde_json::json!({"at": "2026-11-03T07:02:00Z", "method": "manual", "reason": "Taggen saknades: ny beställd"}),
            "the reason keeps its colons; the manual registration's tag is not read"
        );
        assert_eq!(v["check_out"]["method"], "manual", "a check-out: its method is read");
        let v = visit(serde_json::json!({"day": "2026-11-03", "in": "08:02", "reg": "Manuell:"})).expect("no reason");
        assert_eq!(v["check_in"], serde_json::json!({"at": "2026-11-03T07:02:00Z", "method": "manual"}));
        let v = visit(serde_json::json!({"day": "2026-11-03", "in": "08:02", "reg": "NFC:x", "tag": "04A21BC3"}))
            .expect("nfc");
        assert_eq!(
            v["check_in"],
            serde_json::json!({"at": "2026-11-03T07:02:00Z", "method": "nfc", "tag_uid": "04A21BC3"})
        );
        let e = visit(serde_json::json!({"day": "2026-11-03", "in": "08:02", "reg": "NFC"})).expect_err("no tag");
        assert_eq!(e.code, ErrorCode::MissingField);
        let e = visit(serde_json::json!({"day": "2026-11-03", "in": "08:02", "reg": ":x"})).expect_err("no method");
        assert_eq!(e.code, ErrorCode::MissingField);
    }

    #[test]
    fn list_splits_a_value_and_an_item_can_be_a_plain_value() {
        let base = serde_json::json!({"day": "2026-11-03", "in": "08:02", "reg": "Manuell:x"});
        let with = |k: &str, v: Value| {
            let mut p = base.clone();
            p[k] = v;
            visit(p)
        };
        let v = with("codes", serde_json::json!(" A, ,B ,")).expect("a list");
        assert_eq!(v["services"], serde_json::json!(["alpha", "beta"]));
        assert!(with("codes", serde_json::json!(" , ")).expect("empty").get("services").is_none());
        assert_eq!(with("codes", serde_json::json!("A,Z")).expect_err("Z").code, ErrorCode::InvalidValue);
        let v = with("activities", serde_json::json!(["B", "A"])).expect("an array of codes");
        assert_eq!(v["activities"], serde_json::json!(["beta", "alpha"]));
        assert_eq!(with("activities", serde_json::json!(["Z"])).expect_err("Z").code, ErrorCode::InvalidValue);
    }

    /// A refusal by the model carries the canonical JSON the tree was, the same JSON a
    /// plain decode gives, from bytes in the vendor's encoding and from text.
    #[test]
    fn a_refused_translation_still_carries_its_canonical_json() {
        let dir = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../mappings/procapita"));
        let s = MappingSet::load_dir("procapita", dir).unwrap_or_else(|e| panic!("{e:?}"));
        let file = |client: &str| {
            format!(
                "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<Biståndsbeslut xmlns=\"urn:carehub:vendor:procapita:1\">\
                 <Beslutsnummer>PC-9</Beslutsnummer><Brukare><Personnummer>{client}</Personnummer></Brukare>\
                 <Handläggare signatur=\"ÅÖB\"/><Utförare><Organisationsnummer>5599000014</Organisationsnummer></Utförare>\
                 <Giltighet från=\"20261101\"/><Insatser><Insats typ=\"Personlig omvårdnad\" minuterPerMånad=\"60\"/>\
                 </Insatser></Biståndsbeslut>"
            )
        };
        let latin = text::encoding("iso-8859-1").expect("latin-1");
        // A checksum that does not hold: the engine reads it, the model refuses it.
        let (good, bad) = (file("193601016987"), file("193601016988"));
        let t = s.translate_bytes(&text::encode(&good, latin).expect("encodes")).expect("translates");
        let Message::Decision(d) = t.message else { panic!("a decision") };
        assert_eq!((d.id.as_str(), d.case_officer.as_str()), ("procapita:PC-9", "ÅÖB"));
        assert_eq!(d.services[0].code, "Personlig omvårdnad");

        let bytes = text::encode(&bad, latin).expect("encodes");
        let expected = s.decode_bytes(&bytes).expect("decodes").canonical;
        assert!(expected.contains("\"case_officer\":\"ÅÖB\""), "{expected}");
        for (how, refused) in [("bytes", s.translate_bytes(&bytes)), ("text", s.translate(&bad))] {
            let (decoded, e) = refused.expect_err(how);
            assert_eq!(e.code, ErrorCode::InvalidPersonalIdentityNumber, "{how}");
            let decoded = decoded.unwrap_or_else(|| panic!("{how}: no canonical JSON"));
            assert_eq!((decoded.canonical.as_str(), decoded.message_type), (expected.as_str(), MessageType::Decision));
        }
    }
}
