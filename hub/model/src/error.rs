//! Stable error codes.
//!
//! A code is part of carehub's public interface: vendors, municipal IT and auditors see it
//! in HTTP answers, SOAP faults, receipt files and the message log, and script against it.
//! A code never changes meaning; new situations get new codes. The message beside a code is
//! for people and may change.

use std::fmt;

/// Every error code the hub answers with (outside the rule codes VIS*/INV* of the
/// validation and verification rules, which have their own tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// The payload is not well-formed XML, JSON or CSV.
    MalformedPayload,
    /// The XML carries a document type declaration (DTD) or entity declarations: refused
    /// outright, so no external entity or entity expansion can ever be processed.
    DtdForbidden,
    /// The payload is well-formed, but no mapping of the system's vendor recognises it.
    UnknownMessageType,
    /// A field the mapping requires is absent.
    MissingField,
    /// A field has a value that its mapping or the canonical model does not accept.
    InvalidValue,
    /// A date or time that does not parse, or is not a calendar date.
    InvalidDate,
    /// A personal identity number (personnummer or samordningsnummer) that is not valid.
    InvalidPersonalIdentityNumber,
    /// An organisation number that is not valid (PEPPOL SE-R-003, SE-R-004, SE-R-013).
    InvalidOrgNumber,
    /// An HSA-id that is not valid.
    InvalidHsaId,
    /// An NFC tag UID that is not 4, 7 or 10 bytes of hex.
    InvalidTagUid,
    /// The system named in the path is not configured.
    UnknownSystem,
    /// No provider with this organisation number is configured, so the order has no route.
    UnknownProvider,
    /// The message refers to an order the hub does not know.
    UnknownOrder,
    /// A decision with this id was already received with different content.
    DecisionConflict,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// The message type is not one this system may send (for example an order
    /// confirmation from a case-management system).
    MessageNotAllowed,
    /// No valid bearer token (missing, malformed, expired or not signed by the hub's key).
    Unauthenticated,
    /// The token is valid but its role or organisation does not allow this.
    Forbidden,
    /// The resource does not exist.
    NotFound,
    /// The request's parameters are not valid.
    BadRequest,
    /// Something failed inside the hub. The message never leaks internals.
    Internal,
    /// The hub's own configuration cannot handle this message (for example the receiving
    /// system's vendor has no mapping for the message the hub must send it). The sender is
    /// not at fault; `carehub check` reports the gap before the hub runs.
    HubMisconfigured,
    /// The hub cannot take the request now (store unavailable, shutting down); retry later.
    Unavailable,
    /// An outbound delivery failed in a way a retry may cure (timeout, 5xx, 429, no
    /// connection). Seen in the message log, not in API answers.
    DeliveryFailed,
    /// A tag registration that contradicts the tag's history (it would start on or before
    /// the day its current registration started).
    TagConflict,
    /// The receiving system refused an outbound delivery for good (a 4xx other than 408
    /// and 429). Seen in the message log, not in API answers.
    DeliveryRefused,
    /// The payload's encoding is unknown to the hub, not one its vendor's profile accepts,
    /// or contradicted by its bytes (ISO-8859-1 declared over UTF-8).
    UnsupportedEncoding,
    /// An invoice id that several providers have used: the request must name the provider
    /// (an invoice is identified by provider and id). The answer lists the providers.
    AmbiguousInvoice,
    /// A change names a decision the hub has not received.
    UnknownDecision,
    /// A version of a decision older than the latest the hub holds: it changes nothing. Not
    /// a refusal: the receipt carries the code (status `stale`).
    StaleVersion,
}

impl ErrorCode {
    /// All codes, for documentation and tests.
    pub const ALL: [ErrorCode; 30] = [
        ErrorCode::MalformedPayload,
        ErrorCode::DtdForbidden,
        ErrorCode::UnknownMessageType,
        ErrorCode::MissingField,
        ErrorCode::InvalidValue,
        ErrorCode::InvalidDate,
        ErrorCode::InvalidPersonalIdentityNumber,
        ErrorCode::InvalidOrgNumber,
        ErrorCode::InvalidHsaId,
        ErrorCode::InvalidTagUid,
        ErrorCode::UnknownSystem,
        ErrorCode::UnknownProvider,
        ErrorCode::UnknownOrder,
        ErrorCode::DecisionConflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::MessageNotAllowed,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::BadRequest,
        ErrorCode::Internal,
        ErrorCode::HubMisconfigured,
        ErrorCode::Unavailable,
        ErrorCode::DeliveryFailed,
        ErrorCode::TagConflict,
        ErrorCode::DeliveryRefused,
        ErrorCode::UnsupportedEncoding,
        ErrorCode::AmbiguousInvoice,
        ErrorCode::UnknownDecision,
        ErrorCode::StaleVersion,
    ];

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedPayload => "MALFORMED_PAYLOAD",
            ErrorCode::DtdForbidden => "DTD_FORBIDDEN",
            ErrorCode::UnknownMessageType => "UNKNOWN_MESSAGE_TYPE",
            ErrorCode::MissingField => "MISSING_FIELD",
            ErrorCode::InvalidValue => "INVALID_VALUE",
            ErrorCode::InvalidDate => "INVALID_DATE",
            ErrorCode::InvalidPersonalIdentityNumber => "INVALID_PERSONAL_IDENTITY_NUMBER",
            ErrorCode::InvalidOrgNumber => "INVALID_ORG_NUMBER",
            ErrorCode::InvalidHsaId => "INVALID_HSA_ID",
            ErrorCode::InvalidTagUid => "INVALID_TAG_UID",
            ErrorCode::UnknownSystem => "UNKNOWN_SYSTEM",
            ErrorCode::UnknownProvider => "UNKNOWN_PROVIDER",
            ErrorCode::UnknownOrder => "UNKNOWN_ORDER",
            ErrorCode::DecisionConflict => "DECISION_CONFLICT",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::MessageNotAllowed => "MESSAGE_NOT_ALLOWED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::HubMisconfigured => "HUB_MISCONFIGURED",
            ErrorCode::Unavailable => "UNAVAILABLE",
            ErrorCode::DeliveryFailed => "DELIVERY_FAILED",
            ErrorCode::DeliveryRefused => "DELIVERY_REFUSED",
            ErrorCode::TagConflict => "TAG_CONFLICT",
            ErrorCode::UnsupportedEncoding => "UNSUPPORTED_ENCODING",
            ErrorCode::AmbiguousInvoice => "AMBIGUOUS_INVOICE",
            ErrorCode::UnknownDecision => "UNKNOWN_DECISION",
            ErrorCode::StaleVersion => "STALE_VERSION",
        }
    }

    /// The code for its wire form, if it is one of ours.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value that failed validation: a stable code and a reason for people.
///
/// `Display` renders `CODE: reason`; [`ValidationError::from_message`] reads that form back,
/// which is how a code survives a trip through serde's string-only custom errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {reason}")]
pub struct ValidationError {
    pub code: ErrorCode,
    pub reason: String,
}

impl ValidationError {
    pub fn new(code: ErrorCode, reason: impl Into<String>) -> Self {
        ValidationError { code, reason: reason.into() }
    }

    /// Recovers a coded error from a message of the form `... CODE: reason ...`, as serde
    /// produces for a custom error raised while deserializing a field. serde's own
    /// "missing field" becomes `MISSING_FIELD`; other messages without a known code become
    /// `INVALID_VALUE`, with the whole message as the reason.
    pub fn from_message(message: &str) -> Self {
        if message.starts_with("missing field") {
            return ValidationError::new(ErrorCode::MissingField, message);
        }
        for (idx, _) in message.match_indices(": ") {
            let head = &message[..idx];
            let start = head.rfind(|c: char| !(c.is_ascii_uppercase() || c == '_')).map_or(0, |i| i + 1);
            if let Some(code) = ErrorCode::parse(&head[start..]) {
                let rest = &message[idx + 2..];
                return ValidationError::new(code, rest);
            }
        }
        ValidationError::new(ErrorCode::InvalidValue, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_wire_form() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn a_code_survives_serde_custom_error_wrapping() {
        let e = ValidationError::new(ErrorCode::InvalidOrgNumber, "check digit");
        let wrapped = format!("client: {e} at line 1 column 5");
        let back = ValidationError::from_message(&wrapped);
        assert_eq!(back.code, ErrorCode::InvalidOrgNumber);
        assert!(back.reason.starts_with("check digit"));
        assert_eq!(ValidationError::from_message("nonsense").code, ErrorCode::InvalidValue);
        assert_eq!(ValidationError::from_message("missing field `client`").code, ErrorCode::MissingField);
    }
}
