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
mod write;
pub mod xml;
mod xsd;

use std::fmt;

use carehub_model::{ErrorCode, MessageType, ValidationError};
use serde_json::Value;

pub use self::load::MappingFileError;
pub use self::read::{Decoded, RowDecoded, Translated};
pub use self::spec::{Direction, EnvelopeKind, Field, FieldType, Format, Mapping, Match, Sample, When, SOAP11};
pub use self::write::{get_path, soap_envelope, Rendered};

impl Field {}

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
