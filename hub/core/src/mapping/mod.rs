//! The mapping engine: one engine, every vendor, mappings as data.
//!
//! A vendor's payloads are translated to and from canonical messages by declarative files
//! under `mappings/<vendor>/`, one file per message and direction. A file names the
//! canonical message, the direction (`in`: vendor to hub, `out`: hub to vendor), the format
//! (XML, JSON or CSV), how to recognise the payload (root element, a JSON field's value, or
//! a CSV file's header), and a list of fields: a vendor path, a canonical path and the
//! transforms between them (type, date format, id prefix, code table, default, constant),
//! plus the few a vendor's layout needs: several paths joined (`join`), a time past
//! midnight (`after`), one side of a text (`split`, `part`), a list in one text (`list`),
//! and a condition on what is already decoded (`when`).
//! Each file carries sample payloads with their expected canonical form, and
//! [`MappingSet::run_samples`] checks them all; the format is documented for municipal IT
//! in `mappings/README.md`.
//!
//! The engine does not know what a decision is: it turns vendor trees into canonical JSON
//! and back. Typing and validation of the result belong to the model
//! ([`carehub_model::Message::from_canonical`]), so a mapping cannot smuggle in an invalid
//! identifier. On the hot path ([`MappingSet::translate_bytes`]) the readers build a
//! canonical tree (`canonical`) that the model reads its typed message from directly; the
//! JSON text is written only where someone keeps it.
//!
//! Paths: vendor paths use `/` between element or key names, `@name` for an XML attribute,
//! and `.` for the current node; in a CSV mapping a vendor path is a column name, taken
//! whole. Canonical paths use `.` between JSON keys; `.` alone, in a list's fields, is the
//! item itself (a list of plain values).

mod canonical;
pub mod csv;
mod load;
mod read;
mod spec;
mod stream;
pub mod text;
pub mod xml;
mod xsd;

use std::borrow::Cow;
use std::fmt;

use carehub_model::{ErrorCode, MessageType, ValidationError};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde_json::{Map, Value};

pub use self::load::MappingFileError;
pub use self::read::{Decoded, RowDecoded, Translated};
use self::spec::segments;
pub use self::spec::{Direction, EnvelopeKind, Field, FieldType, Format, Mapping, Match, Sample, When, SOAP11};
use self::xml::Element;

impl Field {
    /// Whether the field's `when` holds in the outbound context.
    fn applies(&self, ctx: &Value) -> bool {
        if self.when.is_none() {
            return true;
        }
        let found = self.compiled.when.iter().try_fold(ctx, |v, key| v.get(key.as_str()));
        self.when_holds(match found {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(Some(Cow::Borrowed(s.as_str()))),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(Some(Cow::Owned(v.to_string()))),
            Some(_) => Some(None),
        })
    }
}

/// A sample that did not translate as its file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleFailure {
    pub mapping: String,
    pub sample: String,
    pub reason: String,
}

impl fmt::Display for SampleFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} / {}: {}", self.mapping, self.sample, self.reason)
    }
}

/// A canonical message rendered for a vendor.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub mapping: String,
    pub body: Vec<u8>,
    pub content_type: String,
    pub endpoint: Option<String>,
    /// SOAP 1.1's `SOAPAction`, for SOAP messages.
    pub action: Option<String>,
}

/// All mappings of one vendor.
#[derive(Debug, Clone)]
pub struct MappingSet {
    pub vendor: String,
    pub mappings: Vec<Mapping>,
    /// See [`MappingSet::inbound_encoding`]; found once, at load.
    inbound: &'static encoding_rs::Encoding,
    /// The inbound encoding as a table, when it is a single-byte one.
    single_byte: Option<text::SingleByte>,
    /// The encodings the vendor's profile accepts inbound (see [`MappingSet::accepted_encodings`]).
    accepted: Vec<&'static encoding_rs::Encoding>,
}

impl MappingSet {
    /// The outbound mapping for a message type, if the vendor receives that type.
    pub fn outbound(&self, kind: MessageType) -> Option<&Mapping> {
        self.mappings.iter().find(|m| m.direction == Direction::Out && m.message == kind)
    }

    /// The message types this vendor sends to the hub.
    pub fn inbound_types(&self) -> Vec<MessageType> {
        let mut v: Vec<_> = self.mappings.iter().filter(|m| m.direction == Direction::In).map(|m| m.message).collect();
        v.dedup();
        v
    }

    /// The encoding inbound payloads are read in when they do not say: the first legacy
    /// encoding an inbound mapping declares, else UTF-8.
    pub fn inbound_encoding(&self) -> &'static encoding_rs::Encoding {
        self.inbound
    }

    /// The encodings the vendor's profile accepts inbound: each inbound mapping's
    /// `encoding` (UTF-8 when it names none) and `accept_encodings`.
    pub fn accepted_encodings(&self) -> &[&'static encoding_rs::Encoding] {
        &self.accepted
    }

    /// Renders a canonical context (`{"order": {...}, ...}`) as the vendor's payload for
    /// `kind`.
    pub fn encode(&self, kind: MessageType, context: &Value) -> Result<Rendered, ValidationError> {
        let mapping = self.outbound(kind).ok_or_else(|| {
            ValidationError::new(
                ErrorCode::HubMisconfigured,
                format!("{} has no outbound mapping for {kind}", self.vendor),
            )
        })?;
        let label = mapping.encoding.clone().unwrap_or_else(|| "UTF-8".to_owned()).to_ascii_uppercase();
        let enc = text::encoding(&label).unwrap_or(encoding_rs::UTF_8);
        let (text, default_type) = match mapping.format {
            Format::Xml => {
                let mut root = Element::new(mapping.root.clone().unwrap_or_default());
                root.namespace = mapping.namespace.as_deref().map(Into::into);
                encode_fields(&mut Target::Xml(&mut root), context, &mapping.fields, mapping)?;
                let root = match mapping.envelope {
                    Some(EnvelopeKind::Soap11) => soap_envelope(root),
                    None => root,
                };
                let kind = if mapping.envelope.is_some() { "text/xml" } else { "application/xml" };
                (xml::write(&root, &label), format!("{kind}; charset={}", label.to_ascii_lowercase()))
            }
            Format::Json => {
                let mut out = Value::Object(Map::new());
                encode_fields(&mut Target::Json(&mut out), context, &mapping.fields, mapping)?;
                let body = serde_json::to_string(&out)
                    .map_err(|e| ValidationError::new(ErrorCode::Internal, format!("cannot write JSON: {e}")))?;
                (body, "application/json".to_owned())
            }
            Format::Csv => {
                (csv::render(mapping, context)?, format!("text/csv; charset={}", label.to_ascii_lowercase()))
            }
        };
        let body = text::encode(&text, enc)?;
        Ok(Rendered {
            mapping: mapping.name.to_string(),
            body,
            content_type: mapping.content_type.clone().unwrap_or(default_type),
            endpoint: mapping.endpoint.clone(),
            action: mapping.action.clone(),
        })
    }

    /// Runs every sample of every mapping; returns what failed (nothing, when all is well).
    pub fn run_samples(&self) -> (usize, Vec<SampleFailure>) {
        let mut count = 0;
        let mut failures = Vec::new();
        for m in &self.mappings {
            for s in &m.samples {
                count += 1;
                if let Err(reason) = self.run_sample(m, s) {
                    failures.push(SampleFailure { mapping: m.name.to_string(), sample: s.name.clone(), reason });
                }
            }
        }
        (count, failures)
    }

    fn run_sample(&self, m: &Mapping, s: &Sample) -> Result<(), String> {
        match m.direction {
            Direction::In => {
                // The path messages take, to the typed message; compared as the typed
                // message's own JSON: the canonical form after normalisation (12-digit
                // personal identity numbers and so on).
                let result = self.translate(&s.vendor).map_err(|(_, e)| e).and_then(|t| {
                    if t.mapping != m.name {
                        return Err(ValidationError::new(
                            ErrorCode::UnknownMessageType,
                            format!("recognised as {} instead", t.mapping),
                        ));
                    }
                    Ok(serde_json::to_value(&t.message).unwrap_or(Value::Null))
                });
                match (result, &s.error, &s.canonical) {
                    (Ok(got), None, Some(want)) => {
                        let want: Value =
                            serde_json::from_str(want).map_err(|e| format!("its canonical is not JSON: {e}"))?;
                        if got == want {
                            Ok(())
                        } else {
                            Err(format!("canonical differs:\n  got  {got}\n  want {want}"))
                        }
                    }
                    (Ok(got), Some(code), _) => Err(format!("expected {code}, got canonical {got}")),
                    (Err(e), Some(code), _) if e.code.as_str() == code => Ok(()),
                    (Err(e), _, _) => Err(format!("refused: {e}")),
                    (Ok(_), None, None) => Err("a sample needs `canonical` or `error`".into()),
                }
            }
            Direction::Out => {
                let want = s.canonical.as_deref().ok_or("an outbound sample needs `canonical`")?;
                let context: Value =
                    serde_json::from_str(want).map_err(|e| format!("its canonical is not JSON: {e}"))?;
                let rendered = self.encode(m.message, &context).map_err(|e| format!("cannot render: {e}"))?;
                let enc = m.encoding.as_deref().and_then(text::encoding).unwrap_or(encoding_rs::UTF_8);
                let got = text::decode(&rendered.body, enc).map_err(|e| format!("rendered text: {e}"))?.into_owned();
                let same = match m.format {
                    Format::Xml => {
                        let a = xml::parse(&got).map_err(|e| format!("rendered XML does not parse: {e}"))?;
                        let b = xml::parse(&s.vendor).map_err(|e| format!("sample XML does not parse: {e}"))?;
                        a.same_as(&b)
                    }
                    Format::Json => {
                        let a: Value = serde_json::from_str(&got).map_err(|e| e.to_string())?;
                        let b: Value =
                            serde_json::from_str(&s.vendor).map_err(|e| format!("sample JSON does not parse: {e}"))?;
                        a == b
                    }
                    // The text itself is the contract (column order, quoting); only line
                    // endings differ, as a sample is written with LF and the file has CRLF.
                    Format::Csv => {
                        let normal = |t: &str| t.replace("\r\n", "\n").trim_end_matches('\n').to_owned();
                        normal(&got) == normal(&s.vendor)
                    }
                };
                if same {
                    Ok(())
                } else {
                    Err(format!("rendered payload differs:\n  got  {got}\n  want {}", s.vendor.trim()))
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// SOAP 1.1 envelopes

/// Wraps a payload element in a SOAP 1.1 envelope.
pub fn soap_envelope(payload: Element) -> Element {
    let mut envelope = Element::new("Envelope");
    envelope.namespace = Some(SOAP11.into());
    let body = envelope.push_child("Body");
    body.children.push(payload);
    envelope
}

// ---------------------------------------------------------------------------------------
// Writing vendor trees

enum Target<'a> {
    Xml(&'a mut Element),
    Json(&'a mut Value),
}

fn encode_fields(target: &mut Target<'_>, ctx: &Value, fields: &[Field], m: &Mapping) -> Result<(), ValidationError> {
    for f in fields {
        let Some(path) = f.vendor.as_deref() else {
            continue;
        };
        if !f.applies(ctx) {
            continue;
        }
        let source = f.canonical.as_deref().and_then(|c| get_path(ctx, c)).filter(|v| !v.is_null());
        if !f.fields.is_empty() {
            let items = match source {
                Some(Value::Array(items)) => items.as_slice(),
                Some(_) => {
                    return Err(ValidationError::new(
                        ErrorCode::InvalidValue,
                        format!("{path}: canonical value is not a list"),
                    ))
                }
                None if f.optional => continue,
                None => return Err(missing_out(f)),
            };
            for item in items {
                match target {
                    Target::Xml(el) => {
                        let child = xml_push(el, path);
                        encode_fields(&mut Target::Xml(child), item, &f.fields, m)?;
                    }
                    Target::Json(v) => {
                        let child = json_push(v, path);
                        encode_fields(&mut Target::Json(child), item, &f.fields, m)?;
                    }
                }
            }
            continue;
        }
        let Some((text, typed)) = scalar_out(f, source, m)? else {
            continue;
        };
        match target {
            Target::Xml(el) => xml_set(el, path, text),
            Target::Json(v) => {
                let value = match (typed, f.kind) {
                    (true, FieldType::Integer) => text.parse::<i64>().map(Value::from).unwrap_or(Value::String(text)),
                    (true, FieldType::Boolean) => Value::Bool(text == "true"),
                    _ => Value::String(text),
                };
                json_set(v, path, value)
            }
        }
    }
    Ok(())
}

/// A scalar field's vendor text (see [`convert_out`] for the flag): the constant, the
/// converted canonical value, or the default; `None` when an optional field has nothing.
fn scalar_out(f: &Field, source: Option<&Value>, m: &Mapping) -> Result<Option<(String, bool)>, ValidationError> {
    let text = match (&f.value, source) {
        (Some(v), _) => Some((v.clone(), false)),
        (None, Some(v)) => Some(convert_out(f, v, m)?),
        (None, None) => f.default.clone().map(|d| (d, false)),
    };
    match text {
        Some(t) => Ok(Some(t)),
        None if f.optional => Ok(None),
        None => Err(missing_out(f)),
    }
}

fn missing_out(f: &Field) -> ValidationError {
    ValidationError::new(
        ErrorCode::MissingField,
        format!(
            "canonical {} is required for {}",
            f.canonical.as_deref().unwrap_or("?"),
            f.vendor.as_deref().unwrap_or("?")
        ),
    )
}

/// Canonical value to vendor text. The flag says whether the text keeps its canonical type
/// (a JSON target writes numbers and booleans as such); a code table makes it text.
fn convert_out(f: &Field, v: &Value, m: &Mapping) -> Result<(String, bool), ValidationError> {
    match (&f.list, v) {
        (Some(sep), Value::Array(items)) => {
            let texts = items.iter().map(|item| convert_out_one(f, item, m).map(|(t, _)| t));
            Ok((texts.collect::<Result<Vec<_>, _>>()?.join(sep.as_str()), false))
        }
        _ => convert_out_one(f, v, m),
    }
}

/// One canonical scalar to vendor text (see [`convert_out`]).
fn convert_out_one(f: &Field, v: &Value, m: &Mapping) -> Result<(String, bool), ValidationError> {
    let label = f.canonical.as_deref().unwrap_or("?");
    let bad = |what: &str| ValidationError::new(ErrorCode::InvalidValue, format!("canonical {label}: {what}"));
    let mut s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(bad("not a single value")),
    };
    match f.kind {
        FieldType::Date => {
            let d = NaiveDate::parse_from_str(&s, "%Y-%m-%d").map_err(|_| bad("not a date"))?;
            s = d.format(f.format.as_deref().unwrap_or("%Y-%m-%d")).to_string();
        }
        FieldType::Datetime => {
            let d = DateTime::parse_from_rfc3339(&s).map_err(|_| bad("not a time"))?.with_timezone(&Utc);
            s = match f.format.as_deref() {
                Some(fmt) => d.with_timezone(&f.zone()).format(fmt).to_string(),
                None => d.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            };
        }
        _ => {}
    }
    if let Some(p) = &f.prefix {
        if let Some(rest) = s.strip_prefix(p.as_str()) {
            s = rest.to_owned();
        }
    }
    let mut typed = true;
    if let Some(t) = &f.table {
        let table = m.tables.get(t).ok_or_else(|| bad("mapping lacks its table"))?;
        s = table
            .iter()
            .find(|(_, canonical)| **canonical == s)
            .map(|(vendor, _)| vendor.clone())
            .ok_or_else(|| bad(&format!("no code in table {t} for '{s}'")))?;
        typed = false;
    }
    Ok((s, typed))
}

fn xml_walk<'a>(el: &'a mut Element, segs: &[&str]) -> &'a mut Element {
    match segs.split_first() {
        None => el,
        Some((first, rest)) => xml_walk(el.child_mut_or_insert(first), rest),
    }
}

fn xml_set(root: &mut Element, path: &str, text: String) {
    let segs: Vec<&str> = segments(path).collect();
    match segs.split_last() {
        Some((last, head)) if last.starts_with('@') => xml_walk(root, head).set_attr(&last[1..], text),
        _ => xml_walk(root, &segs).text = text,
    }
}

fn xml_push<'a>(root: &'a mut Element, path: &str) -> &'a mut Element {
    let segs: Vec<&str> = segments(path).collect();
    match segs.split_last() {
        Some((last, head)) => xml_walk(root, head).push_child(last),
        None => root,
    }
}

pub(crate) fn json_walk<'a, S: AsRef<str>>(v: &'a mut Value, segs: &[S]) -> &'a mut Value {
    match segs.split_first() {
        None => v,
        Some((first, rest)) => {
            if !v.is_object() {
                *v = Value::Object(Map::new());
            }
            let map = match v {
                Value::Object(map) => map,
                _ => unreachable!("made an object above"),
            };
            let key = first.as_ref();
            if !map.contains_key(key) {
                map.insert(key.to_owned(), Value::Null);
            }
            match map.get_mut(key) {
                Some(slot) => json_walk(slot, rest),
                None => unreachable!("inserted above"),
            }
        }
    }
}

fn json_set(root: &mut Value, path: &str, value: Value) {
    let segs: Vec<&str> = segments(path).collect();
    *json_walk(root, &segs) = value;
}

fn json_push<'a>(root: &'a mut Value, path: &str) -> &'a mut Value {
    let segs: Vec<&str> = segments(path).collect();
    let slot = json_walk(root, &segs);
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(items) => {
            items.push(Value::Object(Map::new()));
            let last = items.len() - 1;
            &mut items[last]
        }
        _ => unreachable!("made an array above"),
    }
}

// ---------------------------------------------------------------------------------------
// Canonical paths

/// The value at a dotted canonical path.
pub fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').filter(|s| !s.is_empty()).try_fold(v, |v, seg| v.get(seg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_mappings_render_json_with_types_and_reverse_tables() {
        let text = r#"
message = "order"
direction = "out"
format = "json"
endpoint = "orders"

[[fields]]
vendor = "kind"
value = "order"

[[fields]]
vendor = "orderId"
canonical = "order.id"
prefix = "O-"

[[fields]]
vendor = "services"
canonical = "order.services"
  [[fields.fields]]
  vendor = "activity"
  canonical = "category"
  table = "cat"
  [[fields.fields]]
  vendor = "minutes"
  canonical = "minutes"
  type = "integer"

[[fields]]
vendor = "dates/start"
canonical = "order.start"
type = "date"
format = "%d/%m/%Y"

[[fields]]
vendor = "note"
canonical = "order.note"
optional = true

[tables.cat]
HOME = "service"
"#;
        let s = MappingSet::from_sources("t", [("order.toml", text)]).expect("loads");
        let ctx = serde_json::json!({"order": {"id": "O-12", "services": [{"category": "service", "minutes": 480}], "start": "2026-11-01"}});
        let r = s.encode(MessageType::Order, &ctx).expect("renders");
        let v: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"kind": "order", "orderId": "12", "services": [{"activity": "HOME", "minutes": 480}], "dates": {"start": "01/11/2026"}})
        );
        assert_eq!(r.endpoint.as_deref(), Some("orders"));
    }

    #[test]
    fn outbound_lists_join_when_skips_and_items_write_plain_values() {
        let text = r#"
message = "visit"
direction = "out"
format = "json"

[[fields]]
vendor = "codes"
canonical = "visit.services"
list = ";"
table = "cat"

[[fields]]
vendor = "activities"
canonical = "visit.services"
  [[fields.fields]]
  vendor = "."
  canonical = "."
  table = "cat"

[[fields]]
vendor = "tag"
canonical = "visit.tag"
when = { canonical = "visit.method", equals = "nfc" }

[tables.cat]
A = "alpha"
B = "beta"
"#;
        let s = MappingSet::from_sources("t", [("visit.toml", text)]).expect("loads");
        let render = |ctx: Value| -> Value {
            serde_json::from_slice(&s.encode(MessageType::Visit, &ctx).expect("renders").body).expect("json")
        };
        let ctx = serde_json::json!({"visit": {"services": ["alpha", "beta"], "method": "nfc", "tag": "04A21BC3"}});
        assert_eq!(render(ctx), serde_json::json!({"codes": "A;B", "activities": ["A", "B"], "tag": "04A21BC3"}));
        let ctx = serde_json::json!({"visit": {"services": ["beta"], "method": "manual", "tag": "04A21BC3"}});
        assert_eq!(render(ctx), serde_json::json!({"codes": "B", "activities": ["B"]}));
    }
}
