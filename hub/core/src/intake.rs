//! Intake: what a payload is, decided once, from the sending system's mappings, the file
//! name when it came as a file, and the bytes.
//!
//! A system's payload is one of three things (`Payload`): a vendor message (XML, JSON or
//! a one-row CSV) decoded by the system's mappings, a CSV file to be taken row by row
//! (visits, an invoice basis, or other messages a row each), or a PEPPOL BIS 3 invoice or
//! credit note, read by [`crate::peppol`]. `Payload::of_request` and `Payload::of_file`
//! are the only places that look at a payload's bytes to decide which; the hub
//! ([`crate::hub`]) hands the result to its flow ([`crate::flows`]), and no flow sniffs
//! again. The sending system is looked up once and passed down as `&System`.
//!
//! One decision stays with the mapping engine, on purpose: which of the vendor's syntaxes
//! a single message is written in (XML, JSON or one CSV row). The engine sees that only
//! after it has decoded the text in the encodings the vendor's profile accepts (a UTF-16
//! XML message does not start with `<` as bytes), and it is part of reading one message,
//! not of deciding what kind of payload arrived.
//!
//! Here too are the types every flow and every caller share about a message coming in:
//! who sent it ([`Sender`]), the message as the log will record it (`Inbound`), and the
//! two answers the hub gives ([`Receipt`], [`Rejection`]).

use carehub_model::{ErrorCode, Message, MessageType, OrgNumber, ValidationError};
use serde::Serialize;

use crate::adapter::{System, SystemRole};
use crate::mapping::{Decoded, RowDecoded};
use crate::peppol::{self, PeppolDocument};
use crate::store::{LogStatus, NewLogEntry};

/// The answer to a message the hub took: it is durably logged under `message_id`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Receipt {
    pub message_id: i64,
    /// `accepted`, `duplicate` when the same message was taken before, or `stale` for a
    /// decision's version older than the latest.
    pub status: LogStatus,
    pub message_type: MessageType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// For visits: what became of each, in the order sent.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub visits: Vec<crate::store::VisitResult>,
    /// For an invoice or credit note: its verification report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<serde_json::Value>,
    /// Why a message taken changed nothing: `STALE_VERSION` for a decision's version older
    /// than the latest the hub holds (status `stale`).
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "code_text")]
    pub code: Option<ErrorCode>,
}

fn code_text<S: serde::Serializer>(code: &Option<ErrorCode>, s: S) -> Result<S::Ok, S::Error> {
    match code {
        Some(c) => s.serialize_str(c.as_str()),
        None => s.serialize_none(),
    }
}

/// A message the hub refused: a stable code, a reason, and the log entry that records the
/// refusal when it got far enough to be logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    pub message_id: Option<i64>,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Rejection { code, message: message.into(), message_id: None }
    }
}

/// Who is sending, as authentication established it.
#[derive(Debug, Clone)]
pub enum Sender {
    /// A case-management system, an administrator, or an internal caller.
    Trusted,
    /// A provider's system, bound to the provider's organisation number.
    Provider(OrgNumber),
}

/// A message as the log records it: who sent it, its bytes and content type, and its
/// canonical form when it was decoded.
pub(crate) struct Inbound<'a> {
    pub(crate) system: &'a System,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: String,
    pub(crate) decoded: Option<Decoded>,
}

impl Inbound<'_> {
    pub(crate) fn entry(&self, status: LogStatus) -> NewLogEntry {
        NewLogEntry {
            system: self.system.name.clone(),
            vendor: self.system.vendor.to_owned(),
            direction: "in",
            message_type: self
                .decoded
                .as_ref()
                .map(|d| d.message_type.as_str().to_owned())
                .unwrap_or_else(|| "unknown".to_owned()),
            content_type: self.content_type.clone(),
            payload: self.body.clone(),
            canonical: self.decoded.as_ref().map(|d| d.canonical.clone()),
            status,
            ..NewLogEntry::default()
        }
    }
}

/// A vendor message decoded and typed by the system's mappings, or why it could not be (with
/// the canonical form when it decoded but the model refused it).
pub(crate) type Decoding = Result<(Decoded, Message), (Option<Decoded>, ValidationError)>;

/// What a payload is.
pub(crate) enum Payload {
    /// One vendor message (XML, JSON, or a CSV of one row), decoded, or why not.
    Message(Decoding),
    /// A CSV file, taken row by row.
    Rows(Rows),
    /// A PEPPOL BIS 3 invoice or credit note from a provider's system, read, or why not
    /// (boxed: a document is large, and most payloads are not one).
    Peppol(Box<Result<PeppolDocument, ValidationError>>),
}

/// A CSV file, by what its rows are (decided by the rows the system's mappings read).
pub(crate) enum Rows {
    /// Visits (ParaGå's daily file): every row a visit, or a refusal with its line.
    Visits(Vec<RowDecoded>),
    /// A provider system's invoice basis export (SPEC §5): rows gathered into invoices.
    /// `text` is the file as UTF-8, from which each invoice's rows are logged.
    InvoiceBasis { text: String, rows: Vec<RowDecoded> },
    /// Other messages, each row its own message; `text` as for an invoice basis.
    Messages { text: String, rows: Vec<RowDecoded> },
    /// A file that cannot be read as CSV at all (its encoding, or no mapping reads its
    /// header): refused as a whole.
    Unreadable(ValidationError),
}

impl Payload {
    /// What a payload sent in a request is: a provider system's PEPPOL document or invoice
    /// basis file, else one message.
    pub(crate) fn of_request(sys: &System, body: &[u8]) -> Payload {
        if sys.role == SystemRole::ProviderSystem && is_ubl(body) {
            return Payload::Peppol(Box::new(peppol::read_bytes(body)));
        }
        if sys.role == SystemRole::ProviderSystem
            && sys.reads_csv()
            && !matches!(first_byte(body), None | Some(b'<' | b'{' | b'['))
        {
            if let Some((text, rows)) = invoice_basis(sys, body) {
                return Payload::Rows(Rows::InvoiceBasis { text, rows });
            }
        }
        Payload::Message(sys.decode(body))
    }

    /// What a page a system's feed served is: always one vendor message (a page of visits
    /// with the cursor of the next), so only decoded. The feed poller needs the cursor
    /// before the page is taken, to fetch the next page ahead; it asks here rather than
    /// reading the page itself.
    pub(crate) fn of_feed_page(sys: &System, body: &[u8]) -> Decoding {
        sys.decode(body)
    }

    /// What a file `name` a system left in its inbox is: a CSV file (by its name, or by not
    /// looking like XML or JSON) when the system sends CSV, else as [`Payload::of_request`].
    pub(crate) fn of_file(sys: &System, name: &str, bytes: &[u8]) -> Payload {
        if !(sys.reads_csv() && is_csv(name, bytes)) {
            return Payload::of_request(sys, bytes);
        }
        let text = match crate::mapping::text::decode(bytes, sys.mappings.inbound_encoding()) {
            Ok(t) => t.into_owned(),
            Err(e) => return Payload::Rows(Rows::Unreadable(e)),
        };
        let rows = match sys.mappings.decode_rows(&text) {
            Ok(rows) => rows,
            Err(e) => return Payload::Rows(Rows::Unreadable(e)),
        };
        Payload::Rows(if any_row_of(&rows, MessageType::Visit) {
            Rows::Visits(rows)
        } else if any_row_of(&rows, MessageType::InvoiceLine) {
            Rows::InvoiceBasis { text, rows }
        } else {
            Rows::Messages { text, rows }
        })
    }
}

/// Whether some row decoded as a message of `kind`.
fn any_row_of(rows: &[RowDecoded], kind: MessageType) -> bool {
    rows.iter().any(|r| matches!(&r.result, Ok(d) if d.message_type == kind))
}

/// The first byte that is not whitespace or part of a UTF-8 byte order mark.
fn first_byte(bytes: &[u8]) -> Option<u8> {
    bytes.iter().copied().find(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF)
}

/// Whether a payload is a UBL invoice or credit note (by its namespace, near the start).
fn is_ubl(body: &[u8]) -> bool {
    let head = &body[..body.len().min(4096)];
    let text = String::from_utf8_lossy(head);
    text.contains("urn:oasis:names:specification:ubl:schema:xsd:Invoice-2")
        || text.contains("urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2")
}

/// The text (as UTF-8) and rows of a provider system's invoice basis export (SPEC §5:
/// Phoniro's and ParaGå's CSV), when `body` is one; `None` for any other CSV file.
fn invoice_basis(sys: &System, body: &[u8]) -> Option<(String, Vec<RowDecoded>)> {
    let text = sys.mappings.text_of(body).ok()?.into_owned();
    let rows = sys.mappings.decode_rows(&text).ok()?;
    any_row_of(&rows, MessageType::InvoiceLine).then_some((text, rows))
}

/// Whether a file is a CSV batch: by its name, or by not looking like XML or JSON.
fn is_csv(file: &str, bytes: &[u8]) -> bool {
    file.to_ascii_lowercase().ends_with(".csv") || !matches!(first_byte(bytes), Some(b'<' | b'{' | b'['))
}

/// The content type a file's name suggests.
pub(crate) fn content_type_of(file: &str) -> &'static str {
    match file.rsplit('.').next().map(str::to_ascii_lowercase).as_deref() {
        Some("xml") => "application/xml",
        Some("json") => "application/json",
        Some("csv") => "text/csv",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::adapter::{DeliveryError, DeliveryReceipt, Envelope, Transport};
    use crate::mapping::MappingSet;

    struct Nowhere;

    #[async_trait::async_trait]
    impl Transport for Nowhere {
        async fn deliver(&self, _: &Envelope<'_>) -> Result<DeliveryReceipt, DeliveryError> {
            Err(DeliveryError::permanent("nowhere"))
        }
        async fn check(&self) -> Result<String, DeliveryError> {
            Ok(String::new())
        }
    }

    /// A system with a vendor's mappings from `mappings/`.
    fn system(vendor: &'static str, role: SystemRole) -> System {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings").join(vendor);
        let mappings = MappingSet::load_dir(vendor, &dir).unwrap_or_else(|e| panic!("{e:?}"));
        System {
            name: vendor.to_owned(),
            vendor,
            role,
            mappings: Arc::new(mappings),
            transport: Arc::new(Nowhere),
            inbox: None,
            poll_interval: Duration::from_secs(60),
            feed: None,
            visit_reports: false,
        }
    }

    const VISITS: &str = "Personnummer;Datum;Kom;Gick;Taggid;Registrering;Insatser;Utfall;Personal\n\
                          193601016987;2026-11-03;08:02;08:47;04A21BC3;NFC;OMV,SERV;Utförd;st-117\n";
    const BASIS: &str = "Fakturanummer;Typ;Krediterar;Period;Rad;Uppdragsid;Minuter;Belopp (öre);Kommentar\n\
                         PG-4711;Faktura;;2026-11-01;1;O-1A2B3C4D5E6F7081;360;234000;\n";
    const ACK: &str = "Uppdragsid;Status;Orsak;Tidpunkt\nO-1A2B3C4D5E6F7081;Accepterad;;2026-11-02 09:15\n";
    const UBL: &str = r#"<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"/>"#;

    fn kind(p: &Payload) -> &'static str {
        match p {
            Payload::Message(_) => "message",
            Payload::Peppol(_) => "peppol",
            Payload::Rows(Rows::Visits(_)) => "visit rows",
            Payload::Rows(Rows::InvoiceBasis { .. }) => "invoice basis",
            Payload::Rows(Rows::Messages { .. }) => "message rows",
            Payload::Rows(Rows::Unreadable(_)) => "unreadable rows",
        }
    }

    #[test]
    fn a_file_of_a_csv_system_is_classified_by_the_rows_its_mappings_read() {
        let paraga = system("paraga", SystemRole::ProviderSystem);
        let of_file = |name: &str, body: &str| kind(&Payload::of_file(&paraga, name, body.as_bytes()));
        assert_eq!(of_file("besok.csv", VISITS), "visit rows");
        // Not by the name alone: CSV by not looking like XML or JSON.
        assert_eq!(of_file("besok.txt", VISITS), "visit rows");
        assert_eq!(of_file("faktura.csv", BASIS), "invoice basis");
        assert_eq!(of_file("kvittens.csv", ACK), "message rows");
        assert_eq!(of_file("okand.csv", "Nej;Rubrik\n1;2\n"), "unreadable rows");
        // A file that looks like XML is a request's payload: here a PEPPOL document.
        assert_eq!(of_file("faktura.xml", UBL), "peppol");
    }

    #[test]
    fn a_request_is_one_message_unless_a_provider_system_sends_a_peppol_document_or_an_invoice_basis() {
        let provider = system("paraga", SystemRole::ProviderSystem);
        let of_request = |sys: &System, body: &str| kind(&Payload::of_request(sys, body.as_bytes()));
        assert_eq!(of_request(&provider, UBL), "peppol");
        assert_eq!(of_request(&provider, BASIS), "invoice basis");
        assert_eq!(of_request(&provider, ACK), "message");
        assert_eq!(of_request(&provider, VISITS), "message");
        let case_management = system("paraga", SystemRole::CaseManagement);
        assert_eq!(of_request(&case_management, UBL), "message");
        assert_eq!(of_request(&case_management, BASIS), "message");
    }
}

// ---------------------------------------------------------------------------------------
// Validation without taking (POST /v1/validate/{system})

/// What the hub would make of a payload, with no side effects: each message it holds, read
/// into its canonical form or refused with its code. Nothing is stored or logged as received.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Validation {
    /// Every message reads and the system may send it.
    pub valid: bool,
    /// One per message: a CSV file gives one per row, a PEPPOL document one.
    pub messages: Vec<ValidatedMessage>,
}

/// One message of a payload, as [`validate`] reads it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ValidatedMessage {
    /// The row's line in a CSV file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    /// The canonical form, also for a message the model refused once it was read (so the
    /// vendor sees what the mapping made of its fields).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical: Option<serde_json::Value>,
    /// The PEPPOL rules' findings on a document's totals (none: they add up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub findings: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ValidationFault>,
}

/// Why a message would be refused: the code and reason the hub would answer with.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ValidationFault {
    pub code: &'static str,
    pub message: String,
}

impl From<ValidationError> for ValidationFault {
    fn from(e: ValidationError) -> Self {
        ValidationFault { code: e.code.as_str(), message: e.reason }
    }
}

/// Whether a system of `role` may send messages of `kind` on their own (the messages
/// [`crate::hub::Hub`] hands to a flow; the rest it refuses with `MESSAGE_NOT_ALLOWED`).
/// An invoice basis row is taken only in its file, with the other rows of its invoice.
pub fn may_send(role: SystemRole, kind: MessageType) -> bool {
    use MessageType as M;
    match role {
        SystemRole::CaseManagement => matches!(kind, M::Decision | M::DecisionChange),
        SystemRole::ProviderSystem => {
            matches!(kind, M::OrderAck | M::PlanNotice | M::Visit | M::Visits | M::Deviation | M::NeedChange)
        }
    }
}

fn checked(line: Option<usize>, result: Result<Decoded, ValidationError>, role: SystemRole) -> ValidatedMessage {
    let mut m = ValidatedMessage { line, message_type: None, canonical: None, findings: None, error: None };
    match result {
        Ok(d) => {
            m.message_type = Some(d.message_type.as_str().to_owned());
            m.canonical = Some(d.value());
            if let Err(e) = Message::from_canonical_json(d.message_type, &d.canonical) {
                m.error = Some(e.into());
            } else if !may_send(role, d.message_type) {
                let reason = format!("a {} system does not send {} messages", role.as_str(), d.message_type);
                m.error = Some(ValidationError::new(ErrorCode::MessageNotAllowed, reason).into());
            }
        }
        Err(e) => m.error = Some(e.into()),
    }
    m
}

/// What `sys` would make of `body` (a request's body, or a file named `file` left in its
/// inbox): the same reading as when the hub takes it, stopped before anything is stored.
pub fn validate(sys: &System, body: &[u8], file: Option<&str>) -> Validation {
    let payload = match file {
        Some(name) => Payload::of_file(sys, name, body),
        None => Payload::of_request(sys, body),
    };
    let messages = match payload {
        Payload::Message(Ok((decoded, _))) => vec![checked(None, Ok(decoded), sys.role)],
        Payload::Message(Err((decoded, e))) => {
            let mut m = checked(None, Err(e), sys.role);
            if let Some(d) = decoded {
                m.message_type = Some(d.message_type.as_str().to_owned());
                m.canonical = Some(d.value());
            }
            vec![m]
        }
        Payload::Peppol(document) => vec![match *document {
            Ok(doc) => {
                let findings = crate::peppol::check_totals(&doc);
                ValidatedMessage {
                    line: None,
                    message_type: Some(document_type(&doc).to_owned()),
                    findings: (!findings.is_empty()).then(|| serde_json::json!(findings)),
                    canonical: serde_json::to_value(&doc).ok(),
                    error: None,
                }
            }
            Err(e) => checked(None, Err(e), sys.role),
        }],
        Payload::Rows(Rows::Visits(rows) | Rows::InvoiceBasis { rows, .. } | Rows::Messages { rows, .. }) => {
            rows.into_iter().map(|r| checked(Some(r.line), r.result, sys.role)).collect()
        }
        Payload::Rows(Rows::Unreadable(e)) => vec![checked(None, Err(e), sys.role)],
    };
    let valid = messages.iter().all(|m| m.error.is_none());
    Validation { valid, messages }
}

fn document_type(doc: &PeppolDocument) -> &'static str {
    match doc.kind {
        carehub_model::InvoiceKind::Invoice => "invoice",
        carehub_model::InvoiceKind::CreditNote => "credit_note",
    }
}
