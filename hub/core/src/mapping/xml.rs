//! A small, safe XML element tree for the mapping engine.
//!
//! Vendor XML is parsed into [`Element`]s by local name, with the resolved namespace kept
//! beside it, so producers may choose any namespace prefix. The parser refuses any document
//! type declaration: a DTD is the door to external entities (XXE) and entity expansion
//! ("billion laughs"), and no vendor profile needs one. Undeclared entity references are a
//! parse error. Nesting is capped so a hostile document cannot exhaust the stack.

use std::borrow::Cow;
use std::sync::Arc;

use carehub_model::{ErrorCode, ValidationError};
use quick_xml::events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use quick_xml::Writer;

/// Deepest element nesting accepted. Vendor messages nest a handful of levels.
pub const MAX_DEPTH: usize = 64;

/// One XML element: local name, namespace, attributes by local name, children, and its own
/// text (the concatenation of its direct text and CDATA nodes).
#[derive(Debug, Clone, Default)]
pub struct Element {
    pub name: String,
    /// Shared between the elements of a document, which mostly have one namespace.
    pub namespace: Option<Arc<str>>,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn new(name: impl Into<String>) -> Self {
        Element { name: name.into(), ..Element::default() }
    }

    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first child with this name, created at the end (in this element's namespace)
    /// if there is none.
    pub fn child_mut_or_insert(&mut self, name: &str) -> &mut Element {
        let idx = match self.children.iter().position(|c| c.name == name) {
            Some(i) => i,
            None => {
                self.push_child(name);
                self.children.len() - 1
            }
        };
        &mut self.children[idx]
    }

    /// A new child with this name at the end, in this element's namespace.
    pub fn push_child(&mut self, name: &str) -> &mut Element {
        let mut child = Element::new(name);
        child.namespace = self.namespace.clone();
        self.children.push(child);
        let last = self.children.len() - 1;
        &mut self.children[last]
    }

    pub fn set_attr(&mut self, name: &str, value: String) {
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.attrs.push((name.to_owned(), value)),
        }
    }

    /// Structural equality as a reader of the document sees it: names, namespaces,
    /// attributes in any order, children in order, text with surrounding whitespace
    /// trimmed. Used to compare mapping samples.
    pub fn same_as(&self, other: &Element) -> bool {
        let mut a = self.attrs.clone();
        let mut b = other.attrs.clone();
        a.sort();
        b.sort();
        self.name == other.name
            && self.namespace == other.namespace
            && a == b
            && self.text.trim() == other.text.trim()
            && self.children.len() == other.children.len()
            && self.children.iter().zip(&other.children).all(|(x, y)| x.same_as(y))
    }
}

fn malformed(reason: impl Into<String>) -> ValidationError {
    ValidationError::new(ErrorCode::MalformedPayload, reason)
}

/// Parses a UTF-8 XML document (a leading byte order mark is skipped) into its root element.
pub fn parse(text: &str) -> Result<Element, ValidationError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    // Whitespace between elements means nothing to a mapping (values are trimmed anyway);
    // skipping it spares a string for every line break of a pretty-printed document.
    reader.config_mut().trim_text(true);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut namespaces = Namespaces::default();
    loop {
        let (ns, event) = reader.read_resolved_event().map_err(|e| malformed(format!("not well-formed XML: {e}")))?;
        match event {
            Event::DocType(_) => {
                return Err(ValidationError::new(
                    ErrorCode::DtdForbidden,
                    "XML with a document type declaration (DTD) or entity declarations is refused",
                ))
            }
            Event::Start(e) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(malformed(format!("elements nest deeper than {MAX_DEPTH}")));
                }
                if root.is_some() {
                    return Err(malformed("more than one root element"));
                }
                stack.push(element(ns, &e, &mut namespaces)?);
            }
            Event::Empty(e) => {
                if root.is_some() && stack.is_empty() {
                    return Err(malformed("more than one root element"));
                }
                let el = element(ns, &e, &mut namespaces)?;
                attach(&mut stack, &mut root, el);
            }
            Event::End(_) => {
                let el = stack.pop().ok_or_else(|| malformed("unbalanced end tag"))?;
                attach(&mut stack, &mut root, el);
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| malformed(format!("bad text or entity reference: {e}")))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(malformed("text outside the root element")),
                }
            }
            Event::CData(c) => {
                let bytes = c.into_inner();
                let s = std::str::from_utf8(&bytes).map_err(|_| malformed("CDATA is not UTF-8"))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(s),
                    None => return Err(malformed("CDATA outside the root element")),
                }
            }
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(malformed("document ends inside an element"));
    }
    root.ok_or_else(|| malformed("no root element"))
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

/// The namespaces of one document, each kept once.
#[derive(Default)]
struct Namespaces(Vec<Arc<str>>);

impl Namespaces {
    fn get(&mut self, uri: &str) -> Arc<str> {
        match self.0.iter().find(|n| &***n == uri) {
            Some(n) => n.clone(),
            None => {
                let n: Arc<str> = uri.into();
                self.0.push(n.clone());
                n
            }
        }
    }
}

fn element(ns: ResolveResult<'_>, start: &BytesStart<'_>, known: &mut Namespaces) -> Result<Element, ValidationError> {
    let namespace = match ns {
        ResolveResult::Bound(n) => Some(known.get(utf8(n.as_ref())?)),
        ResolveResult::Unbound => None,
        ResolveResult::Unknown(p) => {
            return Err(malformed(format!("undeclared namespace prefix '{}'", utf8_lossy(&p))))
        }
    };
    let name = utf8(start.local_name().as_ref())?.to_owned();
    let mut attrs = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| malformed(format!("bad attribute: {e}")))?;
        if attr.key.as_namespace_binding().is_some() {
            continue;
        }
        let key = utf8(attr.key.local_name().as_ref())?.to_owned();
        let value = attr.unescape_value().map_err(|e| malformed(format!("bad attribute value: {e}")))?;
        attrs.push((key, value.into_owned()));
    }
    Ok(Element { name, namespace, attrs, children: Vec::new(), text: String::new() })
}

fn utf8(bytes: &[u8]) -> Result<&str, ValidationError> {
    std::str::from_utf8(bytes).map_err(|_| malformed("name is not UTF-8"))
}

fn utf8_lossy(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// Writes `root` as a document with an XML declaration naming `encoding` (the caller
/// encodes the text accordingly). The root's namespace becomes the default namespace;
/// children inherit it; a child in another namespace declares its own.
pub fn write(root: &Element, encoding: &str) -> String {
    let mut writer = Writer::new(Vec::new());
    // Writing into a Vec cannot fail.
    let _ = writer.write_event(Event::Decl(BytesDecl::new("1.0", Some(encoding), None)));
    write_element(&mut writer, root, None);
    String::from_utf8(writer.into_inner()).unwrap_or_default()
}

fn write_element(writer: &mut Writer<Vec<u8>>, el: &Element, parent_ns: Option<&str>) {
    let mut start = BytesStart::new(el.name.as_str());
    if el.namespace.as_deref() != parent_ns {
        start.push_attribute(("xmlns", el.namespace.as_deref().unwrap_or("")));
    }
    for (k, v) in &el.attrs {
        start.push_attribute((k.as_str(), v.as_str()));
    }
    if el.children.is_empty() && el.text.is_empty() {
        let _ = writer.write_event(Event::Empty(start));
        return;
    }
    let _ = writer.write_event(Event::Start(start));
    if !el.text.is_empty() {
        let _ = writer.write_event(Event::Text(BytesText::new(&el.text)));
    }
    for child in &el.children {
        write_element(writer, child, el.namespace.as_deref());
    }
    let _ = writer.write_event(Event::End(BytesEnd::new(el.name.as_str())));
}

/// The benchmarks' ceiling: a bare quick-xml pass over a document's events (no tree, no
/// unescaping, no decoding), returning how many events it saw.
pub fn scan(bytes: &[u8]) -> Result<usize, ValidationError> {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let mut buf = Vec::new();
    let mut events = 0;
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Eof) => return Ok(events),
            Ok(_) => events += 1,
            Err(e) => return Err(malformed(format!("not well-formed XML: {e}"))),
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_resolve_to_the_same_namespace() {
        let a = parse(r#"<Beslut xmlns="urn:x"><Id>1</Id></Beslut>"#).expect("a");
        let b =
            parse("\u{feff}<?xml version=\"1.0\"?>\r\n<c:Beslut xmlns:c=\"urn:x\">\r\n <c:Id>1</c:Id>\r\n</c:Beslut>")
                .expect("b");
        assert!(a.same_as(&b));
        assert_eq!(b.namespace.as_deref(), Some("urn:x"));
        assert_eq!(b.child("Id").map(|e| e.text.as_str()), Some("1"));
    }

    #[test]
    fn a_dtd_is_refused() {
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;
        assert_eq!(parse(xxe).expect_err("dtd").code, ErrorCode::DtdForbidden);
    }

    #[test]
    fn undeclared_entities_and_broken_documents_are_malformed() {
        for bad in ["<r>&x;</r>", "<r><a></r>", "", "<r/><s/>", "text", "<r>", "<p:r/>"] {
            assert_eq!(parse(bad).expect_err(bad).code, ErrorCode::MalformedPayload, "{bad}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let doc = "<a>".repeat(100_000);
        assert_eq!(parse(&doc).expect_err("deep").code, ErrorCode::MalformedPayload);
    }

    #[test]
    fn written_documents_read_back() {
        let mut root = Element::new("Kvittens");
        root.namespace = Some("urn:x".into());
        root.child_mut_or_insert("Text").text = "å & <ä>".into();
        root.set_attr("v", "\"1\"".into());
        let text = write(&root, "UTF-8");
        let back = parse(&text).expect("parse");
        assert!(root.same_as(&back), "{text}");
    }
}
