//! A decision's life after its first version (SPEC §3, §4.4): the changes a case officer
//! makes, what a provider receives when its order changes or ends, and what a provider
//! reports back about a client.
//!
//! Versions: the decision as first sent is version 0; each [`DecisionChange`] carries a
//! version of 1 or more that only grows. A change is compared with the latest version the
//! hub holds through [`DecisionChange::standing`]: an older one changes nothing and a repeat
//! is a duplicate; what the hub answers then is the flow's business, not the model's.
//!
//! Dates are calendar dates in the municipality's time zone and inclusive: an end `on` a
//! day is the last day with help, a pause `from`/`to` covers both days.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, ValidationError};
use crate::id::{OrgNumber, PersonalIdentityNumber, SourceId};
use crate::schedule::{OrderEndReason, PauseReason};
use crate::service::Service;

/// Why help ends (a decision's [`DecisionChangeKind::Ended`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Moved into residential care (särskilt boende).
    MovedToResidentialCare,
    Died,
    /// The client declined further help.
    DeclinedFurtherHelp,
    Other,
}

impl From<EndReason> for OrderEndReason {
    fn from(reason: EndReason) -> Self {
        match reason {
            EndReason::MovedToResidentialCare => OrderEndReason::MovedToResidentialCare,
            EndReason::Died => OrderEndReason::Died,
            EndReason::DeclinedFurtherHelp => OrderEndReason::DeclinedFurtherHelp,
            EndReason::Other => OrderEndReason::Other,
        }
    }
}

/// What a version of a decision changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DecisionChangeKind {
    /// The services and their minutes from the effective date: the whole new list, not a
    /// difference.
    Services { services: Vec<Service> },
    /// A new last day of the decision (earlier or later than the one before).
    EndDate {
        #[serde(deserialize_with = "crate::time::date")]
        valid_to: NaiveDate,
    },
    /// Help ends: `on` is its last day.
    Ended {
        #[serde(deserialize_with = "crate::time::date")]
        on: NaiveDate,
        reason: EndReason,
    },
    /// Help pauses from `from` to `to`, both days included; it resumes the day after `to`.
    Paused {
        #[serde(deserialize_with = "crate::time::date")]
        from: NaiveDate,
        #[serde(deserialize_with = "crate::time::date")]
        to: NaiveDate,
        reason: PauseReason,
    },
    /// The client chose another provider from `from` (LOV): the old provider's order ends
    /// the day before, the new provider gets a new order from that day.
    NewProvider {
        provider: OrgNumber,
        #[serde(deserialize_with = "crate::time::date")]
        from: NaiveDate,
    },
}

impl DecisionChangeKind {
    /// The wire name of the kind, as the `kind` field carries it.
    pub fn as_str(&self) -> &'static str {
        match self {
            DecisionChangeKind::Services { .. } => "services",
            DecisionChangeKind::EndDate { .. } => "end_date",
            DecisionChangeKind::Ended { .. } => "ended",
            DecisionChangeKind::Paused { .. } => "paused",
            DecisionChangeKind::NewProvider { .. } => "new_provider",
        }
    }
}

/// Where a change's version stands against the latest version the hub holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionStanding {
    /// Later than the latest: it applies.
    Newer,
    /// The latest again: a duplicate, not applied twice.
    Duplicate,
    /// Older than the latest: it arrived late and changes nothing.
    Stale,
}

fn standing(version: u32, latest: u32) -> VersionStanding {
    match version.cmp(&latest) {
        std::cmp::Ordering::Greater => VersionStanding::Newer,
        std::cmp::Ordering::Equal => VersionStanding::Duplicate,
        std::cmp::Ordering::Less => VersionStanding::Stale,
    }
}

/// A later version of a decision, as the case-management system sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionChange {
    /// The decision it changes: `combine:DEC-2026-0001`.
    pub decision_id: SourceId,
    /// 1 or more, growing with each change (the decision as first sent is version 0).
    pub version: u32,
    /// The first day this version applies.
    #[serde(deserialize_with = "crate::time::date")]
    pub effective_from: NaiveDate,
    pub change: DecisionChangeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::time::opt_instant")]
    pub decided_at: Option<DateTime<Utc>>,
}

impl DecisionChange {
    /// Checks what the field types alone cannot: a version of 1 or more, services as a
    /// decision grants them, a pause that does not end before it starts, and no date of
    /// the change before the version applies.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_version(self.version)?;
        match &self.change {
            DecisionChangeKind::Services { services } => check_services(services),
            DecisionChangeKind::EndDate { valid_to } => not_before("change.valid_to", *valid_to, self.effective_from),
            DecisionChangeKind::Ended { on, .. } => not_before("change.on", *on, self.effective_from),
            DecisionChangeKind::Paused { from, to, .. } => {
                check_pause(*from, *to)?;
                not_before("change.from", *from, self.effective_from)
            }
            DecisionChangeKind::NewProvider { from, .. } => not_before("change.from", *from, self.effective_from),
        }
    }

    /// Where this change stands against `latest`, the latest version the hub holds of the
    /// decision (0 when it holds only the decision as first sent).
    pub fn standing(&self, latest: u32) -> VersionStanding {
        standing(self.version, latest)
    }
}

/// What changes in a provider's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OrderChangeKind {
    /// The services and their minutes from the effective date: the whole new list.
    Services { services: Vec<Service> },
    /// A new last day of the order.
    EndDate {
        #[serde(deserialize_with = "crate::time::date")]
        end_date: NaiveDate,
    },
    /// No visits from `from` to `to`, both days included.
    Paused {
        #[serde(deserialize_with = "crate::time::date")]
        from: NaiveDate,
        #[serde(deserialize_with = "crate::time::date")]
        to: NaiveDate,
        reason: PauseReason,
    },
}

impl OrderChangeKind {
    /// The wire name of the kind, as the `kind` field carries it.
    pub fn as_str(&self) -> &'static str {
        match self {
            OrderChangeKind::Services { .. } => "services",
            OrderChangeKind::EndDate { .. } => "end_date",
            OrderChangeKind::Paused { .. } => "paused",
        }
    }
}

/// What a provider receives when its order changes (from a [`DecisionChange`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderChange {
    pub order_id: String,
    pub decision_id: SourceId,
    /// The decision's version this change comes from.
    pub version: u32,
    pub provider: OrgNumber,
    pub client: PersonalIdentityNumber,
    /// The first day the change applies.
    #[serde(deserialize_with = "crate::time::date")]
    pub effective_from: NaiveDate,
    pub change: OrderChangeKind,
    /// When the municipality wants the changed order confirmed again: the day by which the
    /// provider must acknowledge it. Absent, no new confirmation is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::time::opt_date")]
    pub confirm_by: Option<NaiveDate>,
}

impl OrderChange {
    /// The same checks as a decision change's, and an order id that is not blank.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_order_id(&self.order_id)?;
        check_version(self.version)?;
        match &self.change {
            OrderChangeKind::Services { services } => check_services(services),
            OrderChangeKind::EndDate { end_date } => not_before("change.end_date", *end_date, self.effective_from),
            OrderChangeKind::Paused { from, to, .. } => {
                check_pause(*from, *to)?;
                not_before("change.from", *from, self.effective_from)
            }
        }
    }
}

/// What a provider receives when its order ends: the decision ended, or the client chose
/// another provider (the order then ends the day before the new provider's first day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderEnd {
    pub order_id: String,
    pub decision_id: SourceId,
    /// The decision's version the end comes from.
    pub version: u32,
    pub provider: OrgNumber,
    pub client: PersonalIdentityNumber,
    /// The order's last day, included (as [`crate::Order::end_date`]).
    #[serde(deserialize_with = "crate::time::date")]
    pub end_date: NaiveDate,
    pub reason: OrderEndReason,
}

impl OrderEnd {
    /// An order id that is not blank and a version of 1 or more.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_order_id(&self.order_id)?;
        check_version(self.version)
    }
}

/// The kinds of deviation (avvikelse) a provider reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviationKind {
    MissedVisit,
    LateVisit,
    Fall,
    /// The client refused care.
    CareRefused,
    MedicationIncident,
    Other,
}

/// How serious a deviation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
}

/// A provider reports an event at a client (avvikelse). It goes to the case-management
/// system of the client's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deviation {
    /// Namespaced by the system that sent it: `phoniro:AV-2211`.
    pub id: SourceId,
    /// The provider; absent, the one provider the sending system serves (filled in by the
    /// hub).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<OrgNumber>,
    pub client: PersonalIdentityNumber,
    /// The order, when the source knows it; otherwise the client's order at the provider
    /// on the day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The day it happened.
    #[serde(deserialize_with = "crate::time::date")]
    pub occurred_on: NaiveDate,
    pub kind: DeviationKind,
    pub severity: Severity,
    /// What happened, in the provider's words. It may hold health information: it is
    /// confidential like the rest of the message (SoL 11 kap. 5 §).
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::time::opt_instant")]
    pub reported_at: Option<DateTime<Utc>>,
}

impl Deviation {
    /// A description that is not blank, and an order id that is not blank when present.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_description(&self.description)?;
        self.order_id.as_deref().map_or(Ok(()), check_order_id)
    }
}

/// Which way a client's needs seem to have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NeedDirection {
    /// The client seems to need more help.
    More,
    /// The client seems to need less help.
    Less,
}

/// A provider tells the case officer that a client's needs seem to have changed
/// (bevakning), so the decision may need another look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeedChange {
    /// Namespaced by the system that sent it: `paraga:BEV-104`.
    pub id: SourceId,
    /// As a deviation's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<OrgNumber>,
    pub client: PersonalIdentityNumber,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// The day the provider noticed it.
    #[serde(deserialize_with = "crate::time::date")]
    pub noticed_on: NaiveDate,
    pub direction: NeedDirection,
    /// What the provider has seen.
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(deserialize_with = "crate::time::opt_instant")]
    pub reported_at: Option<DateTime<Utc>>,
}

impl NeedChange {
    /// As a deviation's.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_description(&self.description)?;
        self.order_id.as_deref().map_or(Ok(()), check_order_id)
    }
}

fn check_version(version: u32) -> Result<(), ValidationError> {
    if version == 0 {
        return Err(ValidationError::new(
            ErrorCode::InvalidValue,
            "version: a change is version 1 or later (the decision as first sent is version 0)",
        ));
    }
    Ok(())
}

/// As a decision's services: at least one, none with 0 minutes.
fn check_services(services: &[Service]) -> Result<(), ValidationError> {
    if services.is_empty() {
        return Err(ValidationError::new(ErrorCode::MissingField, "change.services: at least one service"));
    }
    if let Some(s) = services.iter().find(|s| s.minutes_per_month == 0) {
        return Err(ValidationError::new(
            ErrorCode::InvalidValue,
            format!("change.services: service {} grants 0 minutes per month", s.code),
        ));
    }
    Ok(())
}

fn check_pause(from: NaiveDate, to: NaiveDate) -> Result<(), ValidationError> {
    if to < from {
        return Err(ValidationError::new(ErrorCode::InvalidDate, "change.to: the pause ends before it starts"));
    }
    Ok(())
}

/// A date of the change that falls before the version applies is refused.
fn not_before(name: &str, date: NaiveDate, effective_from: NaiveDate) -> Result<(), ValidationError> {
    if date < effective_from {
        return Err(ValidationError::new(ErrorCode::InvalidDate, format!("{name} is before effective_from")));
    }
    Ok(())
}

fn check_order_id(order_id: &str) -> Result<(), ValidationError> {
    if order_id.trim().is_empty() {
        return Err(ValidationError::new(ErrorCode::MissingField, "order_id is empty"));
    }
    Ok(())
}

fn check_description(description: &str) -> Result<(), ValidationError> {
    if description.trim().is_empty() {
        return Err(ValidationError::new(ErrorCode::MissingField, "description is empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_stand_against_the_latest() {
        assert_eq!(standing(3, 2), VersionStanding::Newer);
        assert_eq!(standing(2, 2), VersionStanding::Duplicate);
        assert_eq!(standing(1, 2), VersionStanding::Stale);
        assert_eq!(standing(1, 0), VersionStanding::Newer);
    }
}
