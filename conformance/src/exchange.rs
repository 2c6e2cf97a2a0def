//! What the mock hub saw on the wire, and what may be asked of it.
//!
//! Every exchange with the vendor's system (a request it made, a delivery the mock made to
//! it, a file it uploaded or the mock wrote) becomes one [`Exchange`] in the mock's
//! journal, with what was wrong in it as [`Problem`]s down to the field and the byte. A
//! scenario or a conformance case drives the mock only through [`Counterpart`], so the
//! engine that plays them does not know how the mock is built, and a test can play one
//! against a fake.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which way an exchange went, seen from the mock (the hub's side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The vendor's system called the mock, or left a file in its drop box.
    Inbound,
    /// The mock called the vendor's system, or left a file for it.
    Outbound,
}

/// The wire an exchange travelled on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wire {
    /// REST (JSON or XML over HTTP).
    Http,
    /// SOAP 1.1 over HTTP.
    Soap,
    /// A file in the SFTP drop box.
    Sftp,
}

/// One thing wrong with an exchange: a stable code (the hub's error codes, or the mock's
/// own `MOCK_*` codes for what only a counterpart can see, such as message order), a
/// sentence, and where in the payload, when that is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub code: String,
    pub message: String,
    /// The field's path in the vendor's payload (`/order/client/personalIdentityNumber`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The byte offset in the payload as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// One exchange, as the journal keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exchange {
    /// The journal's sequence number, increasing.
    pub id: i64,
    /// When, on the mock's clock (which the tester may have moved).
    pub at: DateTime<Utc>,
    pub direction: Direction,
    pub wire: Wire,
    /// The message type in the hub's terms (`order`, `order_ack`, `visit`, ...), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_type: Option<String>,
    /// The business key it concerns (an order, a decision, a visit, an invoice), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `POST /v1/...`, or the file's path in the drop box.
    pub target: String,
    /// Request headers worth keeping (never a bearer token's value).
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// The payload as it travelled, base64 in JSON.
    #[serde(with = "bytes_b64")]
    pub body: Vec<u8>,
    /// The answer's status (HTTP), when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// The answer's body, base64 in JSON.
    #[serde(default, with = "bytes_b64")]
    pub response: Vec<u8>,
    /// How long the exchange took, in milliseconds of real time.
    pub millis: u64,
    /// What was wrong; empty when nothing was.
    #[serde(default)]
    pub problems: Vec<Problem>,
}

/// A message the mock sends to the vendor's system on command, as the hub would.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SendCommand {
    /// The message type in the hub's terms (`order`, `order_change`, `order_end`,
    /// `order_ack`, `plan_notice`, `visit`, `deviation`, `verification`, ...).
    pub message: String,
    /// Values that replace the defaults (a client, a provider, dates), by canonical field.
    #[serde(default)]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// Deliver it twice with the same idempotency key.
    #[serde(default)]
    pub twice: bool,
}

/// A fault the mock plays on what the vendor sends it (or on its own deliveries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Which requests: a path prefix (`/v1/orders`), or `*` for all.
    pub path: String,
    /// How many matching requests it applies to, then it is spent.
    pub times: u32,
    pub kind: FaultKind,
}

/// What a [`Fault`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer after this many milliseconds (of real time).
    Delay { millis: u64 },
    /// Answer with this status and a coded body, without reading further.
    Status { status: u16 },
    /// Close the connection without answering.
    Reset,
}

/// What a scenario or a conformance case may ask of the mock hub.
#[async_trait::async_trait]
pub trait Counterpart: Send + Sync {
    /// Sends a message to the vendor's system as the hub would; the journal ids of the
    /// exchanges it made.
    async fn send(&self, command: &SendCommand) -> anyhow::Result<Vec<i64>>;
    /// The journal after `after` (exclusive), oldest first.
    async fn exchanges_since(&self, after: i64) -> anyhow::Result<Vec<Exchange>>;
    /// The mock's clock.
    fn now(&self) -> DateTime<Utc>;
    /// Moves the mock's clock to `at` (forward or back).
    fn set_clock(&self, at: DateTime<Utc>);
    /// Arms a fault.
    fn fault(&self, fault: Fault);
    /// The hub's state of one business key (`order`, `client`, `visit`), as JSON; `None`
    /// when it has none.
    async fn state(&self, kind: &str, key: &str) -> anyhow::Result<Option<serde_json::Value>>;
    /// Whether the hub serves HTTPS and checks client certificates against a client CA
    /// (mTLS), so that cases of refused certificates apply.
    fn serves_mtls(&self) -> bool {
        false
    }
}

/// Bytes as base64 text in JSON, so a payload in any encoding survives the journal's API.
mod bytes_b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// The field a hub message names at its start (`Personnummer: ...`, `client.personalIdentityNumber: ...`).
pub fn named_field(message: &str) -> Option<String> {
    let (head, _) = message.split_once(": ")?;
    let plausible = !head.is_empty()
        && head.len() <= 80
        && head.chars().all(|c| c.is_alphanumeric() || matches!(c, '.' | '/' | '_' | '-' | '@' | '[' | ']'))
        && !head.chars().all(|c| c.is_ascii_uppercase() || c == '_');
    plausible.then(|| head.to_owned())
}
