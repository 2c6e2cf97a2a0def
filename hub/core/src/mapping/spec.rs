//! The mapping file's schema: the types a `mappings/<vendor>/*.toml` file is read into, as
//! `mappings/README.md` documents them for municipal IT, and the few rules of a field that
//! reading and writing share (how messages name it, its zone, its `when`).
//!
//! Nothing here reads a payload or checks a file: loading (`load`) fills [`Compiled`] and
//! refuses what is wrong, and the readers and writers use what it built.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use carehub_model::MessageType;
use serde::Deserialize;

use super::plan::Plan;

/// Which way a mapping translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Vendor payload to canonical message.
    In,
    /// Canonical message to vendor payload.
    Out,
}

/// SOAP 1.1's envelope namespace.
pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";

/// An envelope around the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvelopeKind {
    /// SOAP 1.1: the payload is the one element in `Envelope/Body`.
    Soap11,
}

/// The vendor-side encoding of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Xml,
    Json,
    /// Rows under a header row; vendor paths are column names (see [`csv`](super::csv)).
    Csv,
}

/// How a field's text becomes a canonical value and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    #[default]
    String,
    Integer,
    /// A calendar date; `format` is a strftime pattern, `%Y-%m-%d` by default.
    Date,
    /// An instant; RFC 3339 by default, or a strftime `format` read as UTC.
    Datetime,
    Boolean,
}

/// One field of a mapping. A field with `fields` of its own is a list: the vendor path
/// selects repeated elements (or a JSON array), the canonical path holds an array, and the
/// inner fields map each item.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Field {
    #[serde(default)]
    pub vendor: Option<String>,
    #[serde(default)]
    pub canonical: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: FieldType,
    #[serde(default)]
    pub format: Option<String>,
    /// For a `datetime` with a `format` (a time without an offset): the zone it is in,
    /// Europe/Stockholm (the municipality's) unless it says otherwise.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Added on the way in, removed on the way out (`combine:` namespaces a source id).
    #[serde(default)]
    pub prefix: Option<String>,
    /// A code table: vendor code to canonical value (reversed on the way out).
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub optional: bool,
    /// Used when the source side is absent.
    #[serde(default)]
    pub default: Option<String>,
    /// A constant: written to the target side without reading the source side.
    #[serde(default)]
    pub value: Option<String>,
    /// In, instead of `vendor`: several vendor paths (CSV columns, JSON keys) read and
    /// joined with a space, for a value a vendor spreads over several places (ParaGå's
    /// date in one column and time in the next). Absent when any of them is absent.
    #[serde(default)]
    pub join: Vec<String>,
    /// In, for a `datetime` with a `format` (a wall-clock time): the canonical time, set by
    /// an earlier field, that this one cannot be before. A time read earlier than it is on
    /// the next day (a visit from 23:30 to 00:30), as files that give one date for a
    /// check-in and a check-out mean.
    #[serde(default)]
    pub after: Option<String>,
    /// In, with `part`: the text is split at the first occurrence of this separator, and
    /// the field takes one side (ParaGå's `Manuell:<orsak>` holds a method and a reason).
    #[serde(default)]
    pub split: Option<String>,
    /// With `split`: 0, the text before the separator (all of it when there is none), or
    /// 1, the text after it (absent when there is none).
    #[serde(default)]
    pub part: Option<usize>,
    /// The value is a list in one text, items separated by this (`SERV,OMV` in a CSV
    /// cell): in, a canonical array of the items, each trimmed and converted on its own
    /// (empty items skipped); out, the items converted and joined.
    #[serde(default)]
    pub list: Option<String>,
    /// The field applies only when a canonical value is present (and, with `equals`, has
    /// that value): in, a value set by an earlier field of the same object; out, a value of
    /// the context. A skipped field is neither read nor required: it keeps a tag UID off a
    /// manual registration, or a check-out's method off a visit without a check-out.
    #[serde(default)]
    pub when: Option<When>,
    #[serde(default)]
    pub fields: Vec<Field>,
    /// The paths split once, when the file is loaded, not on every message.
    #[serde(skip)]
    pub(super) compiled: Compiled,
}

/// A field's condition: the canonical value at `canonical` is present, and equals `equals`
/// when that is given.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    pub canonical: String,
    #[serde(default)]
    pub equals: Option<String>,
}

/// A field's paths, split.
#[derive(Debug, Clone, Default)]
pub(super) struct Compiled {
    /// Vendor path: element (or key) names, then an optional attribute.
    pub(super) elems: Vec<String>,
    pub(super) attr: Option<String>,
    /// Canonical path: JSON keys. Empty for `.`, an item of a list that is a plain value.
    pub(super) canonical: Vec<String>,
    /// `join`'s vendor paths: element (or key) names each.
    pub(super) join: Vec<Vec<String>>,
    /// `after`'s canonical path.
    pub(super) after: Vec<String>,
    /// `when`'s canonical path.
    pub(super) when: Vec<String>,
    /// The canonical path is one key that no other field of the same object sets, so
    /// the reader adds it without looking for it first.
    pub(super) sole_key: bool,
    /// A scalar field that only converts what it finds: no condition, constant, default,
    /// split, list or floor. Most fields are; [`put_field`](super::decode::put_field) takes them
    /// the short way.
    pub(super) direct: bool,
    /// Inbound, the field's code table as (vendor code, canonical value) pairs, looked up
    /// by length first: a table has a handful of codes, read for every value.
    pub(super) codes: Vec<(String, String)>,
}

impl Field {
    /// The zone of a time without an offset.
    pub(super) fn zone(&self) -> chrono_tz::Tz {
        self.timezone.as_deref().and_then(|z| z.parse().ok()).unwrap_or(carehub_model::MUNICIPAL_TZ)
    }

    /// How messages name the field: its vendor path, its joined paths, or its canonical
    /// path.
    pub(super) fn label(&self) -> Cow<'_, str> {
        match (&self.vendor, self.join.is_empty(), &self.canonical) {
            (Some(v), _, _) => Cow::Borrowed(v),
            (None, false, _) => Cow::Owned(self.join.join(" + ")),
            (None, true, Some(c)) => Cow::Borrowed(c),
            (None, true, None) => Cow::Borrowed("?"),
        }
    }

    /// `when` on what its path holds: nothing, a list or object (`Some(None)`), or a
    /// scalar as text.
    pub(super) fn when_holds(&self, found: Option<Option<Cow<'_, str>>>) -> bool {
        let Some(w) = &self.when else { return true };
        match (found, &w.equals) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(Some(text)), Some(want)) => text == want.as_str(),
            (Some(None), Some(_)) => false,
        }
    }
}

/// How an inbound JSON payload is recognised: the scalar at `path` equals `value`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub path: String,
    pub value: String,
}

/// A sample payload and what it must translate to: a canonical JSON text, or the error
/// code it must be refused with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub name: String,
    pub vendor: String,
    #[serde(default)]
    pub canonical: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// One mapping file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// `vendor/file`, shared (not copied) by every message the mapping reads.
    #[serde(skip)]
    pub name: Arc<str>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(deserialize_with = "de_message_type")]
    pub message: MessageType,
    pub direction: Direction,
    pub format: Format,
    /// XML: the root element's local name.
    #[serde(default)]
    pub root: Option<String>,
    /// XML: the root element's namespace; inbound documents must use it (any prefix).
    #[serde(default)]
    pub namespace: Option<String>,
    /// JSON in: how to recognise the payload.
    #[serde(default, rename = "match")]
    pub matcher: Option<Match>,
    /// Out: where the payload goes, relative to the system's address (a URL path, a file
    /// name pattern); the transport decides what it means.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    /// The text encoding: `utf-8` (default), `iso-8859-1`, `windows-1252`. Inbound, a byte
    /// order mark or an XML declaration in the payload takes precedence, within the
    /// encodings the vendor's profile accepts.
    #[serde(default)]
    pub encoding: Option<String>,
    /// In: encodings a payload may also declare (by byte order mark or XML declaration)
    /// beyond `encoding`. A vendor's profile accepts the union over its inbound mappings;
    /// anything else is refused as `UNSUPPORTED_ENCODING`.
    #[serde(default)]
    pub accept_encodings: Vec<String>,
    /// An envelope around the payload (`soap11`).
    #[serde(default)]
    pub envelope: Option<EnvelopeKind>,
    /// CSV: the cell separator, `;` by default (Swedish systems keep `,` for decimals).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// CSV out: a canonical path to a list; one data row per element, each row's context
    /// being the whole context plus `item` (the element). Without it, one row.
    #[serde(default)]
    pub rows: Option<String>,
    /// CSV out, with `rows`: when the list is absent, one row without `item` instead of
    /// `MISSING_FIELD` (a message whose list belongs to only some of its kinds).
    #[serde(default)]
    pub rows_optional: bool,
    /// Out: the action the transport announces (SOAP 1.1's `SOAPAction` header).
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub fields: Vec<Field>,
    #[serde(default)]
    pub tables: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default)]
    pub samples: Vec<Sample>,
    /// Inbound XML: the fields' paths as the reader follows them, built when the file
    /// loads.
    #[serde(skip)]
    pub(super) xml_plan: Plan,
}

fn de_message_type<'de, D: serde::Deserializer<'de>>(d: D) -> Result<MessageType, D::Error> {
    let s = String::deserialize(d)?;
    MessageType::parse(&s).ok_or_else(|| {
        let known: Vec<_> = MessageType::ALL.iter().map(|t| t.as_str()).collect();
        serde::de::Error::custom(format!("unknown message '{s}', known: {}", known.join(", ")))
    })
}

/// A vendor path's element (or key) names: `/` between them, `.` the current node.
pub(super) fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty() && *s != ".")
}
