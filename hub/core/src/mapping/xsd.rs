//! An XML Schema for what an inbound XML mapping reads, so that a description of an
//! endpoint (the SOAP endpoint's WSDL) is generated from the same file the engine reads
//! the payload with and never drifts from it.
//!
//! The fields' vendor paths are walked into a tree of elements: every path segment is an
//! element, `@name` an attribute, a list field's last element repeats (`maxOccurs`), and a
//! field's `type` gives the leaf's XSD type (a date or time only with the default format,
//! a code table as an enumeration of its codes). An element is required when a required
//! field passes through it; a field with `optional`, a `default` or a `when` is optional,
//! and a constant (`value`) reads nothing. Elements are declared in the order the file
//! first names them; the engine itself does not mind the order, nor elements it does not
//! read, so the schema says what a sender must send, not all a sender may.

use std::fmt::Write;

use super::{Field, FieldType, Format, Mapping};

/// The XSD type of a value the engine reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Simple {
    String,
    Integer,
    Date,
    DateTime,
    Boolean,
    /// One of a code table's vendor codes.
    Codes(Vec<String>),
}

impl Simple {
    fn of(
        f: &Field,
        tables: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    ) -> Simple {
        if let Some(table) = f.table.as_ref().and_then(|t| tables.get(t)) {
            if f.list.is_none() && f.split.is_none() {
                return Simple::Codes(table.keys().cloned().collect());
            }
        }
        if f.list.is_some() || f.split.is_some() || f.format.is_some() {
            return Simple::String;
        }
        match f.kind {
            FieldType::String => Simple::String,
            FieldType::Integer => Simple::Integer,
            FieldType::Date => Simple::Date,
            FieldType::Datetime => Simple::DateTime,
            FieldType::Boolean => Simple::Boolean,
        }
    }

    /// Two fields reading the same text: the stricter type holds.
    fn merge(self, other: Simple) -> Simple {
        match (self, other) {
            (Simple::String, o) => o,
            (s, _) => s,
        }
    }

    fn builtin(&self) -> &'static str {
        match self {
            Simple::String | Simple::Codes(_) => "xsd:string",
            Simple::Integer => "xsd:integer",
            Simple::Date => "xsd:date",
            Simple::DateTime => "xsd:dateTime",
            Simple::Boolean => "xsd:boolean",
        }
    }
}

/// A value read from an element's text or an attribute.
#[derive(Debug, Clone)]
struct Leaf {
    kind: Simple,
    required: bool,
}

impl Leaf {
    fn merge(into: &mut Option<Leaf>, kind: Simple, required: bool) {
        *into = Some(match into.take() {
            None => Leaf { kind, required },
            Some(l) => Leaf { kind: l.kind.merge(kind), required: l.required || required },
        });
    }
}

/// An element of the tree.
#[derive(Debug, Default)]
struct Node {
    name: String,
    children: Vec<Node>,
    attrs: Vec<(String, Option<Leaf>)>,
    text: Option<Leaf>,
    required: bool,
    repeated: bool,
}

impl Node {
    fn child(&mut self, name: &str) -> &mut Node {
        let at = match self.children.iter().position(|c| c.name == name) {
            Some(at) => at,
            None => {
                self.children.push(Node { name: name.to_owned(), ..Node::default() });
                self.children.len() - 1
            }
        };
        &mut self.children[at]
    }

    /// The node at the end of `path`, marking each on the way as required if `required`.
    fn descend(&mut self, path: &[String], required: bool) -> &mut Node {
        let mut node = self;
        for seg in path {
            node = node.child(seg);
            node.required |= required;
        }
        node
    }

    fn read(&mut self, elems: &[String], attr: Option<&str>, kind: Simple, required: bool) {
        let node = self.descend(elems, required);
        match attr {
            None => Leaf::merge(&mut node.text, kind, required),
            Some(a) => {
                let at = match node.attrs.iter().position(|(n, _)| n == a) {
                    Some(at) => at,
                    None => {
                        node.attrs.push((a.to_owned(), None));
                        node.attrs.len() - 1
                    }
                };
                Leaf::merge(&mut node.attrs[at].1, kind, required);
            }
        }
    }
}

/// Splits a `join` path like the engine does: elements, then an optional `@attribute`.
fn split_path(segments: &[String]) -> (&[String], Option<&str>) {
    match segments.split_last() {
        Some((last, rest)) if last.starts_with('@') => (rest, Some(&last[1..])),
        _ => (segments, None),
    }
}

fn walk(node: &mut Node, fields: &[Field], m: &Mapping) {
    for f in fields {
        if f.value.is_some() {
            continue;
        }
        let required = !f.optional && f.default.is_none() && f.when.is_none();
        if !f.fields.is_empty() {
            let item = node.descend(&f.compiled.elems, required);
            item.repeated = true;
            walk(item, &f.fields, m);
            continue;
        }
        let kind = Simple::of(f, &m.tables);
        if f.vendor.is_some() {
            node.read(&f.compiled.elems, f.compiled.attr.as_deref(), kind, required);
        } else {
            for path in &f.compiled.join {
                let (elems, attr) = split_path(path);
                node.read(elems, attr, Simple::String, required);
            }
        }
    }
}

/// Escapes text for an attribute value.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('"', "&quot;")
}

fn simple_type(out: &mut String, kind: &Simple) {
    if let Simple::Codes(codes) = kind {
        out.push_str("<xsd:simpleType><xsd:restriction base=\"xsd:string\">");
        for c in codes {
            let _ = write!(out, "<xsd:enumeration value=\"{}\"/>", esc(c));
        }
        out.push_str("</xsd:restriction></xsd:simpleType>");
    }
}

fn attributes(out: &mut String, attrs: &[(String, Option<Leaf>)]) {
    for (name, leaf) in attrs {
        let Some(leaf) = leaf else { continue };
        let used = if leaf.required { "required" } else { "optional" };
        let _ = write!(out, "<xsd:attribute name=\"{}\" use=\"{used}\"", esc(name));
        if matches!(leaf.kind, Simple::Codes(_)) {
            out.push('>');
            simple_type(out, &leaf.kind);
            out.push_str("</xsd:attribute>");
        } else {
            let _ = write!(out, " type=\"{}\"/>", leaf.kind.builtin());
        }
    }
}

fn emit(out: &mut String, n: &Node, root: bool) {
    let _ = write!(out, "<xsd:element name=\"{}\"", esc(&n.name));
    if !root && !n.required {
        out.push_str(" minOccurs=\"0\"");
    }
    if n.repeated {
        out.push_str(" maxOccurs=\"unbounded\"");
    }
    match (&n.text, n.children.is_empty(), n.attrs.is_empty()) {
        // A value and nothing else.
        (Some(leaf), true, true) => {
            if matches!(leaf.kind, Simple::Codes(_)) {
                out.push('>');
                simple_type(out, &leaf.kind);
                out.push_str("</xsd:element>");
            } else {
                let _ = write!(out, " type=\"{}\"/>", leaf.kind.builtin());
            }
        }
        // A value with attributes.
        (Some(leaf), true, false) => {
            let _ =
                write!(out, "><xsd:complexType><xsd:simpleContent><xsd:extension base=\"{}\">", leaf.kind.builtin());
            attributes(out, &n.attrs);
            out.push_str("</xsd:extension></xsd:simpleContent></xsd:complexType></xsd:element>");
        }
        // Elements (and perhaps text among them) and attributes.
        (text, _, _) => {
            out.push_str(if text.is_some() { "><xsd:complexType mixed=\"true\">" } else { "><xsd:complexType>" });
            if !n.children.is_empty() {
                out.push_str("<xsd:sequence>");
                for c in &n.children {
                    emit(out, c, false);
                }
                out.push_str("</xsd:sequence>");
            }
            attributes(out, &n.attrs);
            out.push_str("</xsd:complexType></xsd:element>");
        }
    }
}

impl Mapping {
    /// The `xsd:element` declaration of the payload an inbound XML mapping reads (with the
    /// `xsd` prefix, for a schema whose target namespace is the mapping's `namespace` and
    /// whose elements are qualified), or `None` for a mapping that reads no XML root.
    pub fn xml_schema_element(&self) -> Option<String> {
        if self.format != Format::Xml {
            return None;
        }
        let mut root = Node { name: self.root.clone()?, required: true, ..Node::default() };
        walk(&mut root, &self.fields, self);
        let mut out = String::new();
        emit(&mut out, &root, true);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::MappingSet;

    const MAPPING: &str = r#"
message = "decision"
direction = "in"
format = "xml"
root = "Beslut"
namespace = "urn:x"

[[fields]]
vendor = "Id"
canonical = "id"

[[fields]]
vendor = "Utforare/@orgnr"
canonical = "provider"

[[fields]]
vendor = "Period/From"
canonical = "valid_from"
type = "date"

[[fields]]
vendor = "Period/Tom"
canonical = "valid_to"
type = "date"
format = "%Y%m%d"
optional = true

[[fields]]
vendor = "Insats"
canonical = "services"
  [[fields.fields]]
  vendor = "@kod"
  canonical = "code"
  table = "kod"
  [[fields.fields]]
  vendor = "Minuter"
  canonical = "minutes_per_month"
  type = "integer"

[[fields]]
canonical = "origin"
value = "x"

[tables.kod]
SERV = "service"
"A&B" = "personal_care"
"#;

    #[test]
    fn the_schema_follows_the_fields_paths_types_lists_and_attributes() {
        let set = MappingSet::from_sources("x", [("decision.in.toml", MAPPING)]).expect("valid");
        let xsd = set.mappings[0].xml_schema_element().expect("an XML mapping");
        assert_eq!(
            xsd,
            "<xsd:element name=\"Beslut\"><xsd:complexType><xsd:sequence>\
             <xsd:element name=\"Id\" type=\"xsd:string\"/>\
             <xsd:element name=\"Utforare\"><xsd:complexType>\
             <xsd:attribute name=\"orgnr\" use=\"required\" type=\"xsd:string\"/></xsd:complexType></xsd:element>\
             <xsd:element name=\"Period\"><xsd:complexType><xsd:sequence>\
             <xsd:element name=\"From\" type=\"xsd:date\"/>\
             <xsd:element name=\"Tom\" minOccurs=\"0\" type=\"xsd:string\"/>\
             </xsd:sequence></xsd:complexType></xsd:element>\
             <xsd:element name=\"Insats\" maxOccurs=\"unbounded\"><xsd:complexType><xsd:sequence>\
             <xsd:element name=\"Minuter\" type=\"xsd:integer\"/></xsd:sequence>\
             <xsd:attribute name=\"kod\" use=\"required\"><xsd:simpleType><xsd:restriction base=\"xsd:string\">\
             <xsd:enumeration value=\"A&amp;B\"/><xsd:enumeration value=\"SERV\"/>\
             </xsd:restriction></xsd:simpleType></xsd:attribute></xsd:complexType></xsd:element>\
             </xsd:sequence></xsd:complexType></xsd:element>"
        );
    }
}
