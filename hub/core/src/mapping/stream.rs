//! Inbound XML without a tree: the mapping's compiled paths matched against the reader's
//! events as they come.
//!
//! This is the hot path of every XML message the hub receives, so it builds nothing it
//! does not keep: element names live in one buffer, only the attributes and text a field
//! asks for are read, and values go straight into the canonical JSON. It keeps the rules
//! of [`super::xml::parse`]: a DTD is refused, nesting is capped, the whole document must
//! be well-formed (a problem anywhere wins over a mapping error), entity references must be
//! known, the payload's namespace must be the mapping's (any prefix), a SOAP 1.1 envelope
//! holds exactly one payload element, and a field takes the first match in document order.

use std::borrow::Cow;

use carehub_model::{ErrorCode, ValidationError};
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use serde_json::{Map, Value};

use super::xml::MAX_DEPTH;
use super::{put_field, Decoded, Direction, EnvelopeKind, Field, Format, Found, Mapping, MappingSet, SOAP11};

fn malformed(reason: impl Into<String>) -> ValidationError {
    ValidationError::new(ErrorCode::MalformedPayload, reason)
}

fn utf8(bytes: &[u8]) -> Result<&str, ValidationError> {
    std::str::from_utf8(bytes).map_err(|_| malformed("a name is not UTF-8"))
}

/// The fields being filled for one element: the payload root, or one item of a list.
struct Frame<'m> {
    fields: &'m [Field],
    /// Depth of the frame's element.
    depth: usize,
    /// Per field: the first value found.
    slots: Vec<Option<String>>,
    /// Per list field: its items so far.
    lists: Vec<Vec<Value>>,
    /// For an item: the frame and field of its list.
    parent: Option<(usize, usize)>,
}

impl<'m> Frame<'m> {
    fn new(fields: &'m [Field], depth: usize, parent: Option<(usize, usize)>) -> Self {
        Frame { fields, depth, slots: vec![None; fields.len()], lists: vec![Vec::new(); fields.len()], parent }
    }

    /// The canonical object of a finished frame, by the engine's shared field rules.
    fn finish(self, m: &Mapping) -> Result<Value, ValidationError> {
        let mut out = Value::Object(Map::new());
        for (f, (slot, list)) in self.fields.iter().zip(self.slots.into_iter().zip(self.lists)) {
            if f.canonical.is_none() {
                continue;
            }
            let found = if f.fields.is_empty() { Found::Scalar(slot.map(Cow::Owned)) } else { Found::List(list) };
            put_field(&mut out, f, found, m)?;
        }
        Ok(out)
    }
}

/// Where the reader is in the document.
enum Phase<'m> {
    /// Before the document's root element.
    Start,
    /// Inside a SOAP envelope (depth 1), before or after its Body.
    Envelope { body_seen: bool },
    /// Inside the SOAP Body (depth 2), before its payload element.
    Body { payload_seen: bool },
    /// Inside the payload, filling frames.
    Payload { mapping: &'m Mapping, enveloped: bool, root_depth: usize },
    /// After the payload (or while skipping a document no mapping reads).
    Done,
}

/// Open elements' local names, in one buffer.
#[derive(Default)]
struct Path {
    buf: String,
    ends: Vec<usize>,
}

impl Path {
    fn push(&mut self, name: &str) {
        self.buf.push_str(name);
        self.ends.push(self.buf.len());
    }

    fn pop(&mut self) {
        self.ends.pop();
        self.buf.truncate(self.ends.last().copied().unwrap_or(0));
    }

    fn depth(&self) -> usize {
        self.ends.len()
    }

    /// The name at depth `d` (1-based).
    fn name(&self, d: usize) -> &str {
        let start = if d <= 1 { 0 } else { self.ends[d - 2] };
        &self.buf[start..self.ends[d - 1]]
    }

    /// Whether the open elements below depth `base` are exactly `segs`.
    fn below_is(&self, base: usize, segs: &[String]) -> bool {
        self.depth() == base + segs.len() && segs.iter().enumerate().all(|(i, s)| self.name(base + 1 + i) == s)
    }
}

/// xmlns declarations in scope: (depth, prefix, uri).
type Decls = Vec<(usize, String, String)>;

fn declare(decls: &mut Decls, depth: usize, e: &BytesStart<'_>) -> Result<(), ValidationError> {
    for attr in e.attributes() {
        let attr = attr.map_err(|err| malformed(format!("bad attribute: {err}")))?;
        let key = attr.key.as_ref();
        let prefix = if key == b"xmlns" {
            ""
        } else if let Some(p) = key.strip_prefix(b"xmlns:") {
            utf8(p)?
        } else {
            continue;
        };
        let uri = attr.unescape_value().map_err(|err| malformed(format!("bad attribute value: {err}")))?;
        decls.push((depth, prefix.to_owned(), uri.into_owned()));
    }
    Ok(())
}

fn namespace_of<'d>(decls: &'d Decls, e: &BytesStart<'_>) -> Result<Option<&'d str>, ValidationError> {
    let name = e.name();
    let prefix = match name.prefix() {
        Some(p) => utf8(p.into_inner())?,
        None => "",
    };
    match decls.iter().rev().find(|(_, p, _)| p == prefix) {
        Some((_, _, uri)) if uri.is_empty() => Ok(None),
        Some((_, _, uri)) => Ok(Some(uri.as_str())),
        None if prefix.is_empty() => Ok(None),
        None => Err(malformed(format!("undeclared namespace prefix '{prefix}'"))),
    }
}

/// The value of the attribute with this local name.
fn attribute(e: &BytesStart<'_>, name: &str) -> Result<Option<String>, ValidationError> {
    for attr in e.attributes() {
        let attr = attr.map_err(|err| malformed(format!("bad attribute: {err}")))?;
        if attr.key.local_name().as_ref() == name.as_bytes() && attr.key.as_namespace_binding().is_none() {
            let v = attr.unescape_value().map_err(|err| malformed(format!("bad attribute value: {err}")))?;
            let v = v.trim();
            return Ok((!v.is_empty()).then(|| v.to_owned()));
        }
    }
    Ok(None)
}

/// Decodes an XML payload with `set`'s mappings.
pub(crate) fn decode<'s>(set: &'s MappingSet, text: &str) -> Result<Decoded, ValidationError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().trim_text(true);
    let mut path = Path::default();
    let mut decls: Decls = Vec::new();
    let mut phase = Phase::Start;
    let mut root_done = false;
    let mut frames: Vec<Frame<'s>> = Vec::new();
    // Text wanted from the innermost open element: (frame, field) pairs, and the text so far.
    let mut wanted: Vec<(usize, (usize, usize))> = Vec::new(); // (depth, (frame, field))
    let mut text_buf = String::new();
    // The first mapping problem; a well-formedness problem found later wins over it.
    let mut problem: Option<ValidationError> = None;
    let mut result: Option<(&'s Mapping, Value)> = None;

    loop {
        let event = reader.read_event().map_err(|e| malformed(format!("not well-formed XML: {e}")))?;
        let (start, empty) = match event {
            Event::Start(e) => (e, false),
            Event::Empty(e) => (e, true),
            Event::End(_) => {
                end_element(
                    set,
                    &mut path,
                    &mut decls,
                    &mut phase,
                    &mut frames,
                    &mut wanted,
                    &mut text_buf,
                    &mut problem,
                    &mut result,
                    &mut root_done,
                )?;
                continue;
            }
            Event::Text(t) => {
                if path.depth() == 0 {
                    return Err(malformed("text outside the root element"));
                }
                let s = t.unescape().map_err(|e| malformed(format!("bad text or entity reference: {e}")))?;
                if wanted.last().is_some_and(|(d, _)| *d == path.depth()) {
                    text_buf.push_str(&s);
                }
                continue;
            }
            Event::CData(c) => {
                if path.depth() == 0 {
                    return Err(malformed("CDATA outside the root element"));
                }
                if wanted.last().is_some_and(|(d, _)| *d == path.depth()) {
                    text_buf.push_str(std::str::from_utf8(&c).map_err(|_| malformed("CDATA is not UTF-8"))?);
                }
                continue;
            }
            Event::DocType(_) => {
                return Err(ValidationError::new(
                    ErrorCode::DtdForbidden,
                    "XML with a document type declaration (DTD) or entity declarations is refused",
                ))
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => continue,
            Event::Eof => break,
        };
        // A start (or empty) element.
        if path.depth() >= MAX_DEPTH {
            return Err(malformed(format!("elements nest deeper than {MAX_DEPTH}")));
        }
        if path.depth() == 0 && root_done {
            return Err(malformed("more than one root element"));
        }
        let local = utf8(start.local_name().into_inner())?;
        path.push(local);
        let depth = path.depth();
        if !matches!(phase, Phase::Payload { .. } | Phase::Done) {
            declare(&mut decls, depth, &start)?;
        }
        match phase {
            Phase::Start => {
                let ns = namespace_of(&decls, &start)?;
                if local == "Envelope" && ns == Some(SOAP11) {
                    phase = Phase::Envelope { body_seen: false };
                } else {
                    phase =
                        enter_payload(set, local, ns, false, depth, &start, &mut frames, &mut wanted, &mut problem)?;
                }
            }
            Phase::Envelope { body_seen } if depth == 2 => {
                let ns = namespace_of(&decls, &start)?;
                if local == "Body" && ns == Some(SOAP11) {
                    if body_seen {
                        return Err(malformed("a SOAP envelope with two Bodies"));
                    }
                    phase = Phase::Body { payload_seen: false };
                }
            }
            Phase::Body { payload_seen } if depth == 3 => {
                if payload_seen {
                    return Err(malformed("a SOAP Body with more than one element"));
                }
                let ns = namespace_of(&decls, &start)?;
                phase = enter_payload(set, local, ns, true, depth, &start, &mut frames, &mut wanted, &mut problem)?;
            }
            Phase::Payload { .. } if problem.is_none() => {
                // Every frame whose paths reach this element.
                let frame_count = frames.len();
                for fi in 0..frame_count {
                    let base = frames[fi].depth;
                    let fields = frames[fi].fields;
                    for (k, f) in fields.iter().enumerate() {
                        if f.canonical.is_none()
                            || f.compiled.elems.is_empty()
                            || !path.below_is(base, &f.compiled.elems)
                        {
                            continue;
                        }
                        if !f.fields.is_empty() {
                            frames.push(Frame::new(&f.fields, depth, Some((fi, k))));
                            let new = frames.len() - 1;
                            own_fields(new, &start, &mut frames, &mut wanted, depth)?;
                        } else {
                            capture(fi, k, f, &start, &mut frames, &mut wanted, depth)?;
                        }
                    }
                }
            }
            _ => {}
        }
        if empty {
            end_element(
                set,
                &mut path,
                &mut decls,
                &mut phase,
                &mut frames,
                &mut wanted,
                &mut text_buf,
                &mut problem,
                &mut result,
                &mut root_done,
            )?;
        }
    }
    if path.depth() > 0 {
        return Err(malformed("document ends inside an element"));
    }
    match phase {
        Phase::Start => Err(malformed("no root element")),
        Phase::Envelope { body_seen: false } => Err(malformed("a SOAP envelope without a Body")),
        Phase::Body { payload_seen: false } | Phase::Envelope { .. } if result.is_none() && problem.is_none() => {
            Err(malformed("an empty SOAP Body"))
        }
        _ => match (problem, result) {
            (Some(p), _) => Err(p),
            (None, Some((mapping, canonical))) => {
                Ok(Decoded { mapping: mapping.name.clone(), message_type: mapping.message, canonical })
            }
            (None, None) => Err(malformed("an empty SOAP Body")),
        },
    }
}

/// The payload root: pick the mapping and open the root frame.
#[allow(clippy::too_many_arguments)]
fn enter_payload<'s>(
    set: &'s MappingSet,
    local: &str,
    ns: Option<&str>,
    enveloped: bool,
    depth: usize,
    start: &BytesStart<'_>,
    frames: &mut Vec<Frame<'s>>,
    wanted: &mut Vec<(usize, (usize, usize))>,
    problem: &mut Option<ValidationError>,
) -> Result<Phase<'s>, ValidationError> {
    let mapping = set.mappings.iter().find(|m| {
        m.direction == Direction::In
            && m.format == Format::Xml
            && m.root.as_deref() == Some(local)
            && (m.namespace.is_none() || m.namespace.as_deref() == ns)
            && (m.envelope == Some(EnvelopeKind::Soap11)) == enveloped
    });
    let Some(mapping) = mapping else {
        problem.get_or_insert(ValidationError::new(
            ErrorCode::UnknownMessageType,
            format!(
                "no {} mapping reads {}<{local}>{}",
                set.vendor,
                if enveloped { "a SOAP envelope holding " } else { "an XML " },
                ns.map(|n| format!(" in namespace {n}")).unwrap_or_default()
            ),
        ));
        return Ok(Phase::Done);
    };
    frames.push(Frame::new(&mapping.fields, depth, None));
    own_fields(0, start, frames, wanted, depth)?;
    Ok(Phase::Payload { mapping, enveloped, root_depth: depth })
}

/// The fields of a frame that read its own element (an attribute, or its text).
fn own_fields(
    fi: usize,
    start: &BytesStart<'_>,
    frames: &mut [Frame<'_>],
    wanted: &mut Vec<(usize, (usize, usize))>,
    depth: usize,
) -> Result<(), ValidationError> {
    let fields = frames[fi].fields;
    for (k, f) in fields.iter().enumerate() {
        if f.canonical.is_some() && f.fields.is_empty() && f.compiled.elems.is_empty() && f.vendor.is_some() {
            capture(fi, k, f, start, frames, wanted, depth)?;
        }
    }
    Ok(())
}

/// Takes a field's value from this element: its attribute now, or its text at its end.
fn capture(
    fi: usize,
    k: usize,
    f: &Field,
    start: &BytesStart<'_>,
    frames: &mut [Frame<'_>],
    wanted: &mut Vec<(usize, (usize, usize))>,
    depth: usize,
) -> Result<(), ValidationError> {
    if frames[fi].slots[k].is_some() {
        return Ok(()); // the first match wins
    }
    match &f.compiled.attr {
        Some(a) => frames[fi].slots[k] = attribute(start, a)?,
        None => wanted.push((depth, (fi, k))),
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn end_element<'s>(
    set: &'s MappingSet,
    path: &mut Path,
    decls: &mut Decls,
    phase: &mut Phase<'s>,
    frames: &mut Vec<Frame<'s>>,
    wanted: &mut Vec<(usize, (usize, usize))>,
    text_buf: &mut String,
    problem: &mut Option<ValidationError>,
    result: &mut Option<(&'s Mapping, Value)>,
    root_done: &mut bool,
) -> Result<(), ValidationError> {
    let _ = set;
    let depth = path.depth();
    if depth == 0 {
        return Err(malformed("unbalanced end tag"));
    }
    // Text the closing element's fields wanted.
    if wanted.last().is_some_and(|(d, _)| *d == depth) {
        let value = text_buf.trim();
        let value = (!value.is_empty()).then(|| value.to_owned());
        while let Some((d, (fi, k))) = wanted.last().copied() {
            if d != depth {
                break;
            }
            wanted.pop();
            if let Some(frame) = frames.get_mut(fi) {
                if frame.slots[k].is_none() {
                    frame.slots[k].clone_from(&value);
                }
            }
        }
    }
    text_buf.clear();
    if let Phase::Payload { mapping, enveloped, root_depth } = *phase {
        while frames.last().is_some_and(|f| f.depth == depth) {
            let Some(frame) = frames.pop() else { break };
            let parent = frame.parent;
            if problem.is_some() {
                continue;
            }
            match frame.finish(mapping) {
                Ok(value) => match parent {
                    Some((pf, pk)) => frames[pf].lists[pk].push(value),
                    None => *result = Some((mapping, value)),
                },
                Err(e) => *problem = Some(e),
            }
        }
        if depth == root_depth {
            *phase = if enveloped { Phase::Body { payload_seen: true } } else { Phase::Done };
        }
    }
    decls.retain(|(d, _, _)| *d < depth);
    path.pop();
    if path.depth() == 0 {
        *root_done = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPPING: &str = r#"
message = "plan_notice"
direction = "in"
format = "xml"
root = "Plan"
namespace = "urn:x"

[[fields]]
vendor = "Order/@id"
canonical = "order_id"

[[fields]]
vendor = "On"
canonical = "established_on"
type = "date"
"#;

    fn set(text: &str) -> MappingSet {
        MappingSet::from_sources("t", [("m.toml", text)]).expect("loads")
    }

    #[test]
    fn the_first_match_wins_and_prefixes_do_not_matter() {
        let d = set(MAPPING)
            .decode(r#"<x:Plan xmlns:x="urn:x"><x:Order id=" O-1 "/><x:Order id="O-2"/><x:On>2026-11-10</x:On><x:On>2027-01-01</x:On></x:Plan>"#)
            .expect("decodes");
        assert_eq!(d.canonical, serde_json::json!({"order_id": "O-1", "established_on": "2026-11-10"}));
    }

    #[test]
    fn a_broken_document_is_malformed_even_when_a_field_is_missing_first() {
        let e = set(MAPPING).decode(r#"<Plan xmlns="urn:x"><On>2026-11-10</On><Extra>"#).expect_err("truncated");
        assert_eq!(e.code, ErrorCode::MalformedPayload);
        let e = set(MAPPING).decode(r#"<Plan xmlns="urn:x"><On>2026-11-10</On></Plan>"#).expect_err("missing");
        assert_eq!(e.code, ErrorCode::MissingField);
        let e =
            set(MAPPING).decode(r#"<Plan xmlns="urn:x"><Order id="1"/><On>&nope;</On></Plan>"#).expect_err("entity");
        assert_eq!(e.code, ErrorCode::MalformedPayload);
        let e = set(MAPPING).decode(r#"<p:Plan xmlns:q="urn:x"/>"#).expect_err("prefix");
        assert_eq!(e.code, ErrorCode::MalformedPayload);
        let e = set(MAPPING)
            .decode(r#"<Plan xmlns="urn:y"><Order id="1"/><On>2026-11-10</On></Plan>"#)
            .expect_err("namespace");
        assert_eq!(e.code, ErrorCode::UnknownMessageType);
    }

    #[test]
    fn a_soap_body_holds_exactly_one_payload_and_headers_are_ignored() {
        let soap = MAPPING.replace("format = \"xml\"", "format = \"xml\"\nenvelope = \"soap11\"");
        let s = set(&soap);
        let env = |body: &str| {
            format!(
                r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Header><Plan xmlns="urn:x"/></s:Header><s:Body>{body}</s:Body></s:Envelope>"#
            )
        };
        let plan = r#"<Plan xmlns="urn:x"><Order id="O-9"/><On>2026-11-10</On></Plan>"#;
        let d = s.decode(&env(plan)).expect("decodes");
        assert_eq!(d.canonical["order_id"], "O-9");
        assert_eq!(s.decode(&env("")).expect_err("empty").code, ErrorCode::MalformedPayload);
        assert_eq!(s.decode(&env(&format!("{plan}{plan}"))).expect_err("two").code, ErrorCode::MalformedPayload);
        assert_eq!(s.decode(plan).expect_err("bare").code, ErrorCode::UnknownMessageType);
        let no_body = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"></s:Envelope>"#;
        assert_eq!(s.decode(no_body).expect_err("no body").code, ErrorCode::MalformedPayload);
    }
}
