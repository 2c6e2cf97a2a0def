//! Outbound: a canonical context rendered as a vendor's payload, XML (in a SOAP envelope
//! when the mapping says so) or JSON here and CSV in [`csv`], then encoded in
//! the mapping's text encoding. A field's value is found and converted by `encode`, which
//! the CSV writer shares.

use carehub_model::{ErrorCode, MessageType, ValidationError};

use serde_json::{Map, Value};

use super::encode::{get_path, missing_out, scalar_out};
use super::spec::segments;
use super::xml::{self, Element};
use super::{csv, text, EnvelopeKind, Field, FieldType, Format, Mapping, MappingSet, SOAP11};

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

impl MappingSet {
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
}

/// Wraps a payload element in a SOAP 1.1 envelope.
pub fn soap_envelope(payload: Element) -> Element {
    let mut envelope = Element::new("Envelope");
    envelope.namespace = Some(SOAP11.into());
    let body = envelope.push_child("Body");
    body.children.push(payload);
    envelope
}

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

fn json_walk<'a, S: AsRef<str>>(v: &'a mut Value, segs: &[S]) -> &'a mut Value {
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
