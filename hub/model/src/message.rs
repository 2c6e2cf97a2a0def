//! Canonical entities and messages (SPEC §3).
//!
//! These are what a mapping produces from a vendor payload and what it renders a vendor
//! payload from. Field names are snake_case in their JSON form, which is also the form the
//! message log stores as a message's "canonical" column and the form mapping samples are
//! written in.

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

pub use crate::service::{Service, ServiceCategory};

use crate::error::{ErrorCode, ValidationError};
use crate::id::{OrgNumber, PersonalIdentityNumber, SourceId};

/// The kinds of canonical message. The wire names (`as_str`) are stable: mapping files,
/// the message log and the API use them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    Decision,
    Order,
    OrderAck,
    PlanNotice,
    /// The hub's receipt for a file it read (systems that exchange files).
    Receipt,
    /// One visit: a webhook push, a CSV row; outbound, a visit reported back to the
    /// case-management system of its order (Combine's återrapportering).
    Visit,
    /// A batch of visits (a page pulled from Phoniro), with the cursor to the next page.
    Visits,
    /// An invoice's verification report, sent back to the provider's system and to the
    /// case-management systems of its orders (outbound only).
    Verification,
    /// One row of a provider system's invoice basis export (Phoniro's, ParaGå's CSV): rows
    /// of the same invoice number make one invoice, verified as a PEPPOL invoice is.
    InvoiceLine,
    /// A later version of a decision (case-management system to hub).
    DecisionChange,
    /// A change of a provider's order (hub to provider system).
    OrderChange,
    /// The end of a provider's order (hub to provider system).
    OrderEnd,
    /// A provider's report of an event at a client (provider system to hub).
    Deviation,
    /// A provider's notice that a client's needs seem to have changed (provider system to
    /// hub).
    NeedChange,
}

impl MessageType {
    pub const ALL: [MessageType; 14] = [
        MessageType::Decision,
        MessageType::Order,
        MessageType::OrderAck,
        MessageType::PlanNotice,
        MessageType::Receipt,
        MessageType::Visit,
        MessageType::Visits,
        MessageType::Verification,
        MessageType::InvoiceLine,
        MessageType::DecisionChange,
        MessageType::OrderChange,
        MessageType::OrderEnd,
        MessageType::Deviation,
        MessageType::NeedChange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Decision => "decision",
            MessageType::Order => "order",
            MessageType::OrderAck => "order_ack",
            MessageType::PlanNotice => "plan_notice",
            MessageType::Receipt => "receipt",
            MessageType::Visit => "visit",
            MessageType::Visits => "visits",
            MessageType::Verification => "verification",
            MessageType::InvoiceLine => "invoice_line",
            MessageType::DecisionChange => "decision_change",
            MessageType::OrderChange => "order_change",
            MessageType::OrderEnd => "order_end",
            MessageType::Deviation => "deviation",
            MessageType::NeedChange => "need_change",
        }
    }

    pub fn parse(s: &str) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A care decision (biståndsbeslut) as the case officer made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Namespaced by the system that issued it: `combine:DEC-2026-0001`.
    pub id: SourceId,
    pub client: PersonalIdentityNumber,
    /// The case officer's id in the case-management system (not a personal identity number).
    pub case_officer: String,
    /// The provider the client chose.
    pub provider: OrgNumber,
    #[serde(deserialize_with = "crate::time::date")]
    pub valid_from: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::time::opt_date")]
    pub valid_to: Option<NaiveDate>,
    pub services: Vec<Service>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::time::opt_instant")]
    pub decided_at: Option<DateTime<Utc>>,
}

impl Decision {
    /// Checks what the field types alone cannot: at least one service, positive minutes, a
    /// validity period that is not reversed.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.services.is_empty() {
            return Err(ValidationError::new(
                ErrorCode::MissingField,
                "services: a decision grants at least one service",
            ));
        }
        if let Some(s) = self.services.iter().find(|s| s.minutes_per_month == 0) {
            return Err(ValidationError::new(
                ErrorCode::InvalidValue,
                format!("services: service {} grants 0 minutes per month", s.code),
            ));
        }
        if self.case_officer.trim().is_empty() {
            return Err(ValidationError::new(ErrorCode::MissingField, "case_officer is empty"));
        }
        if let Some(to) = self.valid_to {
            if to < self.valid_from {
                return Err(ValidationError::new(ErrorCode::InvalidDate, "valid_to is before valid_from"));
            }
        }
        Ok(())
    }
}

/// Deadlines the municipality sets for an order, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deadlines {
    /// Days from the order date within which the provider must execute (confirm) the order.
    pub execute_days: u32,
    /// Days from the order's start within which the implementation plan must be established.
    pub plan_days: u32,
    /// Whether a changed order must be confirmed again, within `execute_days` of the change
    /// (SPEC §4.4). Off by default: a change is delivered, and the first confirmation stands.
    pub reconfirm_changes: bool,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines { execute_days: 14, plan_days: 14, reconfirm_changes: false }
    }
}

/// An order (beställning, uppdrag) to a provider, derived from a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Order {
    /// The hub's order id, `O-` and 16 hex digits, derived from the decision id.
    pub id: String,
    pub decision_id: SourceId,
    pub provider: OrgNumber,
    pub client: PersonalIdentityNumber,
    pub services: Vec<Service>,
    #[serde(deserialize_with = "crate::time::date")]
    pub start_date: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::time::opt_date")]
    pub end_date: Option<NaiveDate>,
    /// The order date plus the execute deadline.
    #[serde(deserialize_with = "crate::time::date")]
    pub execute_by: NaiveDate,
    /// The start date plus the plan deadline.
    #[serde(deserialize_with = "crate::time::date")]
    pub plan_due: NaiveDate,
    /// The latest version of the decision applied to the order (0: as first sent).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u32,
    /// Services changed from a day on by later versions (SPEC §4.4).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<crate::schedule::Revision>,
    /// Days with no help.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pauses: Vec<crate::schedule::Pause>,
    /// Why the order ended, once it has (its last day is `end_date`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<crate::schedule::OrderEndReason>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Order {
    /// Derives the order for `decision`, placed on `order_date` (the decision's date, or
    /// the day the hub received it). The order starts when the decision becomes valid, or on
    /// the order date if that is later.
    pub fn from_decision(id: String, decision: &Decision, order_date: NaiveDate, deadlines: Deadlines) -> Order {
        let start_date = decision.valid_from.max(order_date);
        Order {
            id,
            decision_id: decision.id.clone(),
            provider: decision.provider.clone(),
            client: decision.client.clone(),
            services: decision.services.clone(),
            start_date,
            end_date: decision.valid_to,
            execute_by: add_days(order_date, deadlines.execute_days),
            plan_due: add_days(start_date, deadlines.plan_days),
            version: 0,
            revisions: Vec::new(),
            pauses: Vec::new(),
            ended: None,
        }
    }

    /// The order's days: its dates, the services in force each day, its pauses.
    pub fn schedule(&self) -> crate::schedule::Schedule<'_> {
        crate::schedule::Schedule {
            start: self.start_date,
            end: self.end_date,
            services: &self.services,
            revisions: &self.revisions,
            pauses: &self.pauses,
        }
    }

    /// Help is due on `day`: inside the order's dates and in no pause.
    pub fn active_on(&self, day: NaiveDate) -> bool {
        self.schedule().active_on(day)
    }
}

fn add_days(date: NaiveDate, days: u32) -> NaiveDate {
    date.checked_add_days(Days::new(u64::from(days))).unwrap_or(NaiveDate::MAX)
}

/// Whether the provider took the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Accepted,
    Rejected,
}

impl AckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AckStatus::Accepted => "accepted",
            AckStatus::Rejected => "rejected",
        }
    }
}

impl std::str::FromStr for AckStatus {
    type Err = crate::status::UnknownStatus;

    /// The stored text back ([`AckStatus::as_str`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "accepted" => Ok(AckStatus::Accepted),
            "rejected" => Ok(AckStatus::Rejected),
            _ => Err(crate::status::UnknownStatus { kind: "acknowledgement status", text: s.to_owned() }),
        }
    }
}

/// The provider's answer to an order (kvittens, verkställighet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderAck {
    pub order_id: String,
    pub status: AckStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(deserialize_with = "crate::time::instant")]
    pub at: DateTime<Utc>,
}

/// The provider established the implementation plan (genomförandeplan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanNotice {
    pub order_id: String,
    #[serde(deserialize_with = "crate::time::date")]
    pub established_on: NaiveDate,
}

/// How a visit's arrival (KOM) or departure (GICK) was registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum RegistrationMethod {
    /// The phone read the NFC tag at the door. The UID is kept as sent: one that is not a
    /// valid UID is an unknown tag (VIS001), not a reason to lose the visit.
    Nfc { tag_uid: String },
    /// Registered by hand, with the reason the staff member gave (VIS008 without one).
    Manual {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// One registration: when, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    #[serde(deserialize_with = "crate::time::instant")]
    pub at: DateTime<Utc>,
    #[serde(flatten)]
    pub method: RegistrationMethod,
}

/// What became of a planned visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitOutcome {
    Performed,
    DeclinedAtDoor,
    CancelledInAdvance,
}

impl VisitOutcome {
    /// The wire name (as serialized, and as the store keeps it).
    pub fn as_str(self) -> &'static str {
        match self {
            VisitOutcome::Performed => "performed",
            VisitOutcome::DeclinedAtDoor => "declined_at_door",
            VisitOutcome::CancelledInAdvance => "cancelled_in_advance",
        }
    }

    /// The outcome of a wire name; anything else reads as performed.
    pub fn parse(s: &str) -> VisitOutcome {
        [VisitOutcome::DeclinedAtDoor, VisitOutcome::CancelledInAdvance]
            .into_iter()
            .find(|o| o.as_str() == s)
            .unwrap_or(VisitOutcome::Performed)
    }
}

/// A visit as a time-registration system reports it (SPEC §3). The client's identity is
/// kept as sent: a visit with an invalid one is refused with VIS010 and still stored, so it
/// is not validated here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Visit {
    /// Namespaced by the system that sent it: `phoniro:V-88121`. A system whose visits
    /// carry no id of their own (ParaGå's rows) gets one derived from the staff member,
    /// the client and the check-in time ([`Visit::derived_id`]), so a repeat still matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<SourceId>,
    /// The provider, when the record names it; otherwise the one provider the sending
    /// system serves (filled in by the hub before validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<OrgNumber>,
    pub client: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// A pseudonymous staff id (never a personal identity number).
    pub staff: String,
    pub check_in: Registration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_out: Option<Registration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceCategory>,
    pub outcome: VisitOutcome,
    #[serde(default)]
    pub double_staffing: bool,
}

impl Visit {
    /// A stable id for a visit its system did not name: a digest of the staff member, the
    /// client and the check-in time (never the personal identity number itself).
    pub fn derived_id(&self, vendor: &str) -> Result<SourceId, ValidationError> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for part in [self.staff.as_str(), self.client.as_str(), &self.check_in.at.to_rfc3339()] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        let digest = h.finalize();
        let local: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
        SourceId::new(vendor, &format!("h-{local}"))
    }

    /// The visit's length, when it has a check-out after its check-in.
    pub fn duration(&self) -> Option<chrono::Duration> {
        let out = self.check_out.as_ref()?;
        (out.at >= self.check_in.at).then(|| out.at - self.check_in.at)
    }
}

/// A batch of visits, as a page of Phoniro's visit feed: the visits, and where the next
/// page starts (absent on the last page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitBatch {
    #[serde(default)]
    pub visits: Vec<Visit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// An NFC tag in a client's home, from its installation to its removal (both days
/// inclusive; no removal while it hangs there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagRegistration {
    pub tag_uid: crate::id::TagUid,
    pub client: PersonalIdentityNumber,
    #[serde(deserialize_with = "crate::time::date")]
    pub installed_on: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::time::opt_date")]
    pub removed_on: Option<NaiveDate>,
}

impl TagRegistration {
    /// A removal before the installation is refused.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self.removed_on {
            Some(r) if r < self.installed_on => {
                Err(ValidationError::new(ErrorCode::InvalidDate, "removed_on is before installed_on"))
            }
            _ => Ok(()),
        }
    }

    /// Whether the tag hung in this home on `day`.
    pub fn covers(&self, day: NaiveDate) -> bool {
        self.installed_on <= day && self.removed_on.is_none_or(|r| day <= r)
    }
}

/// The hub's receipt for a file a system left for it: what the hub made of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileReceipt {
    /// The file's name as the hub found it.
    pub file: String,
    /// `accepted`, `duplicate` or `rejected`.
    pub status: String,
    /// The message-log entry that holds the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    #[serde(deserialize_with = "crate::time::instant")]
    pub at: DateTime<Utc>,
}

/// An invoice or a credit note: what an invoice basis row belongs to, what a UBL document
/// is, and how the invoice rules treat a document.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceKind {
    #[default]
    Invoice,
    CreditNote,
}

/// One row of a provider system's invoice basis export: a line of the invoice (or credit
/// note) `invoice_id` for the month of `period_start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvoiceBasisRow {
    /// The invoice number; the rows that share it make one invoice.
    pub invoice_id: String,
    #[serde(default)]
    pub kind: InvoiceKind,
    /// For a credit note: the invoice number it credits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credits: Option<String>,
    /// A day of the month invoiced (normally its first).
    #[serde(deserialize_with = "crate::time::date")]
    pub period_start: NaiveDate,
    pub line_id: String,
    pub order_id: String,
    pub minutes: i64,
    /// The line's amount in öre; absent, the contracted rate is assumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The provider; absent, the one the sending system serves (or the sender is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<OrgNumber>,
}

impl InvoiceBasisRow {
    /// Ids that are not blank, minutes and amounts that are not negative.
    pub fn validate(&self) -> Result<(), ValidationError> {
        for (name, value) in
            [("invoice_id", &self.invoice_id), ("line_id", &self.line_id), ("order_id", &self.order_id)]
        {
            if value.trim().is_empty() {
                return Err(ValidationError::new(ErrorCode::MissingField, format!("{name} is empty")));
            }
        }
        if self.minutes < 0 {
            return Err(ValidationError::new(ErrorCode::InvalidValue, "minutes: a line has no negative minutes"));
        }
        if self.amount.is_some_and(|a| a < 0) {
            return Err(ValidationError::new(ErrorCode::InvalidValue, "amount: a line has no negative amount"));
        }
        Ok(())
    }
}

/// A canonical message of any type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Message {
    Decision(Decision),
    Order(Order),
    OrderAck(OrderAck),
    PlanNotice(PlanNotice),
    Receipt(FileReceipt),
    Visit(Box<Visit>),
    Visits(VisitBatch),
    InvoiceLine(Box<InvoiceBasisRow>),
    DecisionChange(Box<crate::life::DecisionChange>),
    OrderChange(Box<crate::life::OrderChange>),
    OrderEnd(Box<crate::life::OrderEnd>),
    Deviation(Box<crate::life::Deviation>),
    NeedChange(Box<crate::life::NeedChange>),
}

/// A serde error as a coded error, without the position in the text a reader adds (the
/// reason names the field).
fn invalid(e: &serde_json::Error) -> ValidationError {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    ValidationError::from_message(text.strip_suffix(position.as_str()).unwrap_or(&text))
}

impl Message {
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Decision(_) => MessageType::Decision,
            Message::Order(_) => MessageType::Order,
            Message::OrderAck(_) => MessageType::OrderAck,
            Message::PlanNotice(_) => MessageType::PlanNotice,
            Message::Receipt(_) => MessageType::Receipt,
            Message::Visit(_) => MessageType::Visit,
            Message::Visits(_) => MessageType::Visits,
            Message::InvoiceLine(_) => MessageType::InvoiceLine,
            Message::DecisionChange(_) => MessageType::DecisionChange,
            Message::OrderChange(_) => MessageType::OrderChange,
            Message::OrderEnd(_) => MessageType::OrderEnd,
            Message::Deviation(_) => MessageType::Deviation,
            Message::NeedChange(_) => MessageType::NeedChange,
        }
    }

    /// Builds the typed message of `kind` from its canonical JSON form, validating every
    /// identifier and the message's own invariants. Errors carry the code of the first
    /// problem found and the path of the field.
    pub fn from_canonical(kind: MessageType, value: serde_json::Value) -> Result<Message, ValidationError> {
        Self::from_deserializer(kind, value)
    }

    /// [`Message::from_canonical`] on canonical JSON text, what the mapping engine writes
    /// and the message log stores: read straight into the typed message, with no
    /// `serde_json::Value` on the way.
    pub fn from_canonical_json(kind: MessageType, text: &str) -> Result<Message, ValidationError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let message = Self::from_deserializer(kind, &mut de)?;
        de.end().map_err(|e| invalid(&e))?;
        Ok(message)
    }

    /// [`Message::from_canonical`] from any reader of the canonical form (the mapping
    /// engine reads its own tree this way, with no JSON text in between).
    pub fn from_deserializer<'de, D: serde::Deserializer<'de, Error = serde_json::Error>>(
        kind: MessageType,
        value: D,
    ) -> Result<Message, ValidationError> {
        fn typed<'de, T: serde::Deserialize<'de>, D: serde::Deserializer<'de, Error = serde_json::Error>>(
            value: D,
        ) -> Result<T, ValidationError> {
            T::deserialize(value).map_err(|e| invalid(&e))
        }
        let message = match kind {
            MessageType::Decision => {
                let d: Decision = typed(value)?;
                d.validate()?;
                Message::Decision(d)
            }
            MessageType::Order => Message::Order(typed(value)?),
            MessageType::OrderAck => Message::OrderAck(typed(value)?),
            MessageType::PlanNotice => Message::PlanNotice(typed(value)?),
            MessageType::Receipt => Message::Receipt(typed(value)?),
            MessageType::Visit => Message::Visit(Box::new(typed(value)?)),
            MessageType::Visits => Message::Visits(typed(value)?),
            MessageType::InvoiceLine => {
                let row: InvoiceBasisRow = typed(value)?;
                row.validate()?;
                Message::InvoiceLine(Box::new(row))
            }
            MessageType::DecisionChange => {
                let c: crate::life::DecisionChange = typed(value)?;
                c.validate()?;
                Message::DecisionChange(Box::new(c))
            }
            MessageType::OrderChange => {
                let c: crate::life::OrderChange = typed(value)?;
                c.validate()?;
                Message::OrderChange(Box::new(c))
            }
            MessageType::OrderEnd => {
                let e: crate::life::OrderEnd = typed(value)?;
                e.validate()?;
                Message::OrderEnd(Box::new(e))
            }
            MessageType::Deviation => {
                let d: crate::life::Deviation = typed(value)?;
                d.validate()?;
                Message::Deviation(Box::new(d))
            }
            MessageType::NeedChange => {
                let n: crate::life::NeedChange = typed(value)?;
                n.validate()?;
                Message::NeedChange(Box::new(n))
            }
            MessageType::Verification => {
                return Err(ValidationError::new(
                    ErrorCode::MessageNotAllowed,
                    "a verification report is sent by the hub, not to it",
                ))
            }
        };
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decision_json() -> serde_json::Value {
        json!({
            "id": "combine:DEC-2026-0001",
            "client": "193601016987",
            "case_officer": "hl-117",
            "provider": "5599000014",
            "valid_from": "2026-11-01",
            "valid_to": "2027-10-31",
            "services": [
                {"code": "SERV", "category": "service", "minutes_per_month": 480},
                {"code": "PO", "category": "personal_care", "minutes_per_month": 1800}
            ]
        })
    }

    #[test]
    fn a_valid_decision_builds() {
        let m = Message::from_canonical(MessageType::Decision, decision_json()).expect("valid");
        assert_eq!(m.message_type(), MessageType::Decision);
    }

    #[test]
    fn an_invalid_client_is_coded() {
        let mut v = decision_json();
        v["client"] = json!("193601016988");
        let e = Message::from_canonical(MessageType::Decision, v).expect_err("bad luhn");
        assert_eq!(e.code, ErrorCode::InvalidPersonalIdentityNumber);
    }

    #[test]
    fn a_missing_field_is_coded() {
        let mut v = decision_json();
        v.as_object_mut().expect("object").remove("provider");
        let e = Message::from_canonical(MessageType::Decision, v).expect_err("missing");
        assert_eq!(e.code, ErrorCode::MissingField);
        assert!(e.reason.contains("provider"), "{}", e.reason);
    }

    #[test]
    fn reversed_validity_is_refused() {
        let mut v = decision_json();
        v["valid_to"] = json!("2026-10-01");
        let e = Message::from_canonical(MessageType::Decision, v).expect_err("reversed");
        assert_eq!(e.code, ErrorCode::InvalidDate);
    }

    #[test]
    fn order_deadlines_follow_the_order_date_and_start() {
        let Message::Decision(d) = Message::from_canonical(MessageType::Decision, decision_json()).expect("valid")
        else {
            unreachable!()
        };
        let order_date = NaiveDate::from_ymd_opt(2026, 10, 20).expect("date");
        let o = Order::from_decision("O-1".into(), &d, order_date, Deadlines::default());
        assert_eq!(o.start_date, NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"));
        assert_eq!(o.execute_by, NaiveDate::from_ymd_opt(2026, 11, 3).expect("date"));
        assert_eq!(o.plan_due, NaiveDate::from_ymd_opt(2026, 11, 15).expect("date"));
    }
}
