//! The adapter contract (see `ADAPTERS.md` at the repository root for the rules in
//! MUST/SHOULD words).
//!
//! A configured system is a [`System`]: a vendor's [`MappingSet`] (data) and a
//! [`Transport`] (code, shared between vendors that speak the same protocol). Decoding and
//! encoding are the same for every vendor, so an adapter is mostly its mapping files; what
//! differs is only how bytes travel. Transports classify every failure as transient (a retry
//! may help) or permanent, and the one delivery loop in [`crate::delivery::outbox`] acts on that.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use carehub_model::{ErrorCode, Message, MessageType, ValidationError};
use serde_json::Value;

use crate::mapping::{Decoded, MappingSet, Rendered};

/// What a system is to the municipality.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemRole {
    /// A case-management system (verksamhetssystem): sends decisions, receives acks and plans.
    CaseManagement,
    /// A provider's time-registration system: receives orders, sends acks, plans and visits.
    ProviderSystem,
}

impl SystemRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SystemRole::CaseManagement => "case_management",
            SystemRole::ProviderSystem => "provider_system",
        }
    }
}

/// One outbound message, as the delivery loop hands it to a transport.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    pub message_type: &'a str,
    pub content_type: &'a str,
    /// Where to, relative to the system's address (from the mapping's `endpoint`).
    pub endpoint: Option<&'a str>,
    pub body: &'a [u8],
    /// The same on every attempt of this message: receivers drop repeats by it.
    pub idempotency_key: &'a str,
    /// SOAP 1.1's `SOAPAction`, for SOAP messages.
    pub action: Option<&'a str>,
}

/// What the receiving system answered to a delivery it took.
#[derive(Debug, Clone, Default)]
pub struct DeliveryReceipt {
    pub status: Option<u16>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// A delivery that did not go through, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
pub struct DeliveryError {
    pub transient: bool,
    pub status: Option<u16>,
    pub message: String,
    /// What the receiver answered, if anything (kept in the message log).
    pub body: Vec<u8>,
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.transient { "transient" } else { "permanent" };
        match self.status {
            Some(s) => write!(f, "{kind}: status {s}: {}", self.message),
            None => write!(f, "{kind}: {}", self.message),
        }
    }
}

impl DeliveryError {
    pub fn transient(message: impl Into<String>) -> Self {
        DeliveryError { transient: true, status: None, message: message.into(), body: Vec::new() }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryError { transient: false, status: None, message: message.into(), body: Vec::new() }
    }

    /// Whether a retry can help.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The code this failure is logged with.
    pub fn code(&self) -> ErrorCode {
        if self.transient {
            ErrorCode::DeliveryFailed
        } else {
            ErrorCode::DeliveryRefused
        }
    }
}

/// How bytes reach a system. One implementation per protocol, shared by vendors.
#[async_trait]
pub trait Transport: Send + Sync {
    /// One delivery attempt. Must not retry by itself: retries belong to the outbox.
    async fn deliver(&self, envelope: &Envelope<'_>) -> Result<DeliveryReceipt, DeliveryError>;
    /// Reaches the system without changing anything, for `carehub check`; says what it saw.
    async fn check(&self) -> Result<String, DeliveryError>;
}

/// Files a system leaves for the hub (an SFTP folder), read by the poller in
/// [`crate::delivery::poller`]. Only complete files are ready; the producer's convention for files
/// still being written is the implementation's business.
#[async_trait]
pub trait Inbox: Send + Sync {
    /// Names of the complete files waiting, oldest first.
    async fn ready(&self) -> Result<Vec<String>, DeliveryError>;
    async fn read(&self, name: &str) -> Result<Vec<u8>, DeliveryError>;
    /// Moves a file the hub has logged out of the way (to the archive).
    async fn archive(&self, name: &str) -> Result<(), DeliveryError>;
    /// Moves a file the hub could not take to the error folder, with a reason beside it.
    async fn reject(&self, name: &str, reason: &str) -> Result<(), DeliveryError>;
}

/// A feed the hub pulls pages from, by cursor (Phoniro's visits). Each page is a payload
/// the system's mappings read; it carries the cursor of the next page.
#[async_trait]
pub trait Feed: Send + Sync {
    /// The page after `cursor`, or the first page without one.
    async fn page(&self, cursor: Option<&str>) -> Result<Vec<u8>, DeliveryError>;

    /// Where the page after `cursor` is asked for, to show (never with a credential in it);
    /// `None` when the feed cannot say.
    fn shown_url(&self, _cursor: Option<&str>) -> Option<String> {
        None
    }
}

/// A configured system: name, vendor, role, mappings, transport, and for systems that
/// leave files, where they leave them.
pub struct System {
    pub name: String,
    pub vendor: &'static str,
    pub role: SystemRole,
    pub mappings: Arc<MappingSet>,
    pub transport: Arc<dyn Transport>,
    pub inbox: Option<Arc<dyn Inbox>>,
    /// How often the inbox is polled.
    pub poll_interval: std::time::Duration,
    /// A feed the hub pulls (with how often), for systems that are pulled from.
    pub feed: Option<(Arc<dyn Feed>, std::time::Duration)>,
    /// A case-management system: whether visits of its orders are reported to it (and its
    /// vendor has a visit mapping to report them with).
    pub visit_reports: bool,
}

impl fmt::Debug for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("System")
            .field("name", &self.name)
            .field("vendor", &self.vendor)
            .field("role", &self.role)
            .finish()
    }
}

impl System {
    /// Decodes a payload this system sent and validates the canonical message. The
    /// canonical JSON beside it (what the message log keeps) is the typed message's own:
    /// identifiers in their normal form.
    pub fn decode(&self, body: &[u8]) -> Result<(Decoded, Message), (Option<Decoded>, ValidationError)> {
        let t = self.mappings.translate_bytes(body)?;
        let canonical = serde_json::to_string(&t.message).map_err(|e| {
            (None, ValidationError::new(carehub_model::ErrorCode::Internal, format!("canonical JSON: {e}")))
        })?;
        Ok((Decoded { mapping: t.mapping, message_type: t.message.message_type(), canonical }, t.message))
    }

    /// Whether the system calls the hub with SOAP 1.1 (some inbound mapping expects an
    /// envelope): its answers are then SOAP responses and faults.
    pub fn speaks_soap(&self) -> bool {
        self.mappings.mappings.iter().any(|m| {
            m.direction == crate::mapping::Direction::In && m.envelope == Some(crate::mapping::EnvelopeKind::Soap11)
        })
    }

    /// Whether the system sends CSV files (some inbound mapping reads CSV).
    pub fn reads_csv(&self) -> bool {
        self.mappings
            .mappings
            .iter()
            .any(|m| m.direction == crate::mapping::Direction::In && m.format == crate::mapping::Format::Csv)
    }

    /// Renders a canonical context for this system.
    pub fn encode(&self, kind: MessageType, context: &Value) -> Result<Rendered, ValidationError> {
        self.mappings.encode(kind, context)
    }
}

/// The configured systems by name.
#[derive(Debug, Default, Clone)]
pub struct Registry {
    systems: BTreeMap<String, Arc<System>>,
}

impl Registry {
    pub fn new(systems: impl IntoIterator<Item = System>) -> Self {
        Registry { systems: systems.into_iter().map(|s| (s.name.clone(), Arc::new(s))).collect() }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<System>> {
        self.systems.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<System>> {
        self.systems.values()
    }
}
