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
//!
//! # Layout
//!
//! [`MappingSet`], one vendor's mappings, is defined here; its methods live in the module of
//! what they do, as do the rules of a field (an `impl Field` in each).
//!
//! - `spec`: the file's schema, the serde types a mapping file is read into ([`Mapping`],
//!   [`Field`], [`Match`], [`Sample`] and their enums), with the few rules of a field that
//!   reading and writing share.
//! - `load`: files to a [`MappingSet`]: parsing, each field's paths split once, and every
//!   check of a file ([`MappingFileError`]), so a mistake is refused at start-up, not on a
//!   message.
//! - `read`: inbound: which mapping a payload is, handed to its reader; the JSON reader.
//! - `decode`: what every reader shares, so no reader imports another: what they produce
//!   ([`Decoded`], [`Translated`], [`RowDecoded`]), the node a path selects in, and the
//!   field rules and conversions.
//! - `stream`: the XML reader, which follows the fields' paths without building a tree: the
//!   hot path; `plan`: the compiled tree of those paths, kept with each mapping.
//! - [`csv`]: CSV both ways (rows under a header), and the checks of what CSV cannot hold.
//! - `canonical`: the canonical tree the readers build, which the model reads directly.
//! - `write`: outbound: a canonical context rendered as XML or JSON ([`Rendered`]), and
//!   SOAP envelopes.
//! - `encode`: what every writer shares (a field's value found and converted to vendor
//!   text), so the CSV writer and `write` do not import each other.
//! - `samples`: each file's samples run ([`SampleFailure`]).
//! - [`text`]: text encodings and how a payload's is detected; [`xml`]: the hub's one safe
//!   XML tree; `xsd`: the XML Schema of what an inbound XML mapping reads, for the WSDL.

mod canonical;
pub mod csv;
mod decode;
mod encode;
mod load;
mod plan;
mod read;
mod samples;
mod spec;
mod stream;
pub mod text;
mod write;
pub mod xml;
mod xsd;

use carehub_model::MessageType;

pub use self::decode::{Decoded, RowDecoded, Translated};
pub use self::encode::get_path;
pub use self::load::{declared, MappingFileError};
pub use self::samples::SampleFailure;
pub use self::spec::{Direction, EnvelopeKind, Field, FieldType, Format, Mapping, Match, Sample, When, SOAP11};
pub use self::write::{soap_envelope, Rendered};

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
}
