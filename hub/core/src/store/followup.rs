//! The rows the monthly follow-up (SPEC §4.4) reads, as the store returns them.
//!
//! They are defined here, beside the trait that returns them, and not in
//! [`crate::followup`]: the report imports the store, the store never imports the report.
//! What the report computes from them (granted minutes, bands) stays in the report.

use std::fmt;

use carehub_model::{Order, Pause, Revision, Schedule, Service};
use chrono::{DateTime, NaiveDate, Utc};

/// An order as the monthly follow-up needs it: one that is active in the month, or has its
/// plan-due or execute-by date in it.
#[derive(Clone, PartialEq, Eq)]
pub struct FollowUpOrder {
    pub order_id: String,
    pub provider: String,
    /// The client's identity, only to group the client's orders; never rendered or logged.
    pub client: String,
    /// The services the order was placed with, and how they changed from a day on.
    pub services: Vec<Service>,
    pub revisions: Vec<Revision>,
    /// Days with no help.
    pub pauses: Vec<Pause>,
    pub start_date: NaiveDate,
    pub end_date: Option<NaiveDate>,
    pub decision_valid_from: NaiveDate,
    pub decision_valid_to: Option<NaiveDate>,
    pub execute_by: NaiveDate,
    pub plan_due: NaiveDate,
    /// When the provider answered the order (accepted or rejected).
    pub acked_at: Option<DateTime<Utc>>,
    /// The provider rejected the order.
    pub rejected: bool,
    pub plan_established_on: Option<NaiveDate>,
}

impl fmt::Debug for FollowUpOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FollowUpOrder")
            .field("order_id", &self.order_id)
            .field("provider", &self.provider)
            .field("client", &"**REDACTED**")
            .field("services", &self.services)
            .field("revisions", &self.revisions)
            .field("pauses", &self.pauses)
            .field("start_date", &self.start_date)
            .field("end_date", &self.end_date)
            .field("decision_valid_from", &self.decision_valid_from)
            .field("decision_valid_to", &self.decision_valid_to)
            .field("execute_by", &self.execute_by)
            .field("plan_due", &self.plan_due)
            .field("acked_at", &self.acked_at)
            .field("rejected", &self.rejected)
            .field("plan_established_on", &self.plan_established_on)
            .finish()
    }
}

impl FollowUpOrder {
    /// The order's days, as [`Order::schedule`] gives them.
    pub fn schedule(&self) -> Schedule<'_> {
        Schedule {
            start: self.start_date,
            end: self.end_date,
            services: &self.services,
            revisions: &self.revisions,
            pauses: &self.pauses,
        }
    }

    /// From a stored order and its decision's validity (the order's own dates when the
    /// decision is not found).
    pub fn from_order(
        order: &Order,
        decision_validity: Option<(NaiveDate, Option<NaiveDate>)>,
        acked_at: Option<DateTime<Utc>>,
        rejected: bool,
        plan_established_on: Option<NaiveDate>,
    ) -> FollowUpOrder {
        let (valid_from, valid_to) = decision_validity.unwrap_or((order.start_date, order.end_date));
        FollowUpOrder {
            order_id: order.id.clone(),
            provider: order.provider.as_str().to_owned(),
            client: order.client.expose().to_owned(),
            services: order.services.clone(),
            revisions: order.revisions.clone(),
            pauses: order.pauses.clone(),
            start_date: order.start_date,
            end_date: order.end_date,
            decision_valid_from: valid_from,
            decision_valid_to: valid_to,
            execute_by: order.execute_by,
            plan_due: order.plan_due,
            acked_at,
            rejected,
            plan_established_on,
        }
    }
}

/// A counted (accepted or flagged) visit of the month, as the follow-up needs it (not the
/// visit rules' [`VisitFacts`](crate::rules::visits::VisitFacts) trait, which answers
/// questions about other visits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpVisit {
    pub order_id: String,
    /// The staff member's pseudonymous id.
    pub staff: String,
    pub check_in: DateTime<Utc>,
    /// Check-out minus check-in; none while checked in.
    pub seconds: Option<i64>,
    /// The outcome is `Performed` (not declined at the door or cancelled).
    pub performed: bool,
}

/// How many deviations or changes of need of one kind a provider reported in a month (by
/// the day each happened, or was noticed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpReportCount {
    pub provider: String,
    /// `deviation` or `need_change`.
    pub message_type: String,
    /// A deviation's kind (`fall`, ...) or a change of need's direction (`more`, `less`).
    pub kind: String,
    pub count: u64,
}
