//! The monthly follow-up (SPEC §4.4): what a social-services committee and the case
//! officers look at each month.
//!
//! - granted vs performed per client, with the 80-120% band;
//! - the manual-registration share per provider (SPEC §6), against the threshold;
//! - staff continuity: distinct staff per client in the month, and the most in any 14
//!   consecutive days of the month;
//! - plans established on time (`plan_established_on <= plan_due`), late, or missing;
//! - orders not confirmed in time (confirmed after `execute_by`, or not at all);
//! - deviations (avvikelser) and changes of need (bevakningar) per provider and kind.
//!
//! The computation is pure: [`Builder`] takes the month's orders ([`FollowUpOrder`]), then the
//! month's counted visits a provider at a time ([`FollowUpVisit`]), folding each visit into a
//! per-client accumulator (a bit mask of days per staff member), so the visits of a month
//! are never all in memory. [`compute`] reads the store and drives the builder;
//! [`html`] and [`table`] render the report for people and spreadsheets.
//!
//! Clients are named by a pseudonymous key: the id of their (first) order at the provider,
//! never their personal identity number, which [`FollowUpOrder`] carries only to group a
//! client's orders and never prints.
//!
//! # Figures
//! - granted: per order, SPEC §7's rule (minutes per month × active days / days in the
//!   month, active days inside both the order's and the decision's validity, rounded
//!   halves up); a client's granted time is the sum of its orders' figures. A rejected
//!   order grants nothing.
//! - performed: the durations of the client's accepted and flagged visits with outcome
//!   `Performed` whose check-in falls in the month, summed in seconds, then rounded to the
//!   nearest minute (halves up). Declined visits add 0.
//! - band: `within` when 80% × granted <= performed <= 120% × granted (both edges inside),
//!   `under` / `over` outside, `not_granted` when nothing was granted.
//! - continuity counts the staff of performed visits only (a visit cancelled in advance
//!   meets nobody). The 14-day windows are the month's days `d..=d+13` that lie inside the
//!   month.
//! - plans: orders whose plan-due date falls in the month (rejected orders need no plan):
//!   `on_time`, `late` (established after the due date), `missing` (none, and the due date
//!   has passed), `pending` (none yet, due date not passed on the report day).
//! - confirmations: orders whose execute-by date falls in the month: `on_time` (confirmed,
//!   Stockholm date, on or before it), `late`, `not_confirmed` (none, date passed),
//!   `pending`.
//! - reports: deviations and changes of need whose day (occurred or noticed) falls in the
//!   month, counted per provider, type and kind (a deviation's kind, a change of need's
//!   direction), as the hub filed them.

mod build;
mod compute;
pub mod html;
pub mod table;

pub use build::Builder;
pub use compute::{compute, parse_month};

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use carehub_model::Month;

use crate::rules::invoices;
pub use crate::store::{FollowUpOrder, FollowUpVisit};
use crate::store::{FollowUpReportCount, ManualShare, Store, StoreError};

/// The lower edge of the band, as a fraction `num/den` of granted (80%).
const BAND_LOW: (i64, i64) = (4, 5);
/// The upper edge of the band (120%).
const BAND_HIGH: (i64, i64) = (6, 5);
/// The continuity window, in days.
pub const WINDOW_DAYS: u32 = 14;

// ---------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------

impl FollowUpOrder {
    /// Days of `month` inside both the order's and the decision's validity (inclusive),
    /// and in none of the order's pauses.
    pub fn active_days(&self, month: Month) -> i64 {
        self.share(month).active_days
    }

    fn share(&self, month: Month) -> carehub_model::MonthShare {
        self.schedule().share(month, self.decision_valid_from, self.decision_valid_to)
    }

    /// Granted minutes in `month` (SPEC §7), 0 for a rejected order.
    pub fn granted(&self, month: Month) -> i64 {
        if self.rejected {
            return 0;
        }
        invoices::granted_minutes(self.share(month), month)
    }

    /// Whether the order's own dates overlap the month.
    fn overlaps(&self, month: Month) -> bool {
        self.start_date <= month.last_day() && self.end_date.is_none_or(|e| e >= month.first_day())
    }
}

/// Where performed lies against granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Band {
    /// Under 80% of granted.
    Under,
    /// 80-120% of granted, edges included.
    Within,
    /// Over 120% of granted.
    Over,
    /// Nothing granted in the month.
    NotGranted,
}

impl Band {
    /// The band of `performed` against `granted` (exact integer arithmetic).
    pub fn of(granted: i64, performed: i64) -> Band {
        if granted <= 0 {
            return Band::NotGranted;
        }
        let (g, p) = (i128::from(granted), i128::from(performed));
        if p * i128::from(BAND_LOW.1) < g * i128::from(BAND_LOW.0) {
            Band::Under
        } else if p * i128::from(BAND_HIGH.1) > g * i128::from(BAND_HIGH.0) {
            Band::Over
        } else {
            Band::Within
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Band::Under => "under",
            Band::Within => "within",
            Band::Over => "over",
            Band::NotGranted => "not_granted",
        }
    }
}

/// Whether an order's plan was established on time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    OnTime,
    Late,
    Missing,
    Pending,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::OnTime => "on_time",
            PlanStatus::Late => "late",
            PlanStatus::Missing => "missing",
            PlanStatus::Pending => "pending",
        }
    }
}

/// Whether an order was confirmed in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmStatus {
    OnTime,
    Late,
    NotConfirmed,
    Pending,
}

impl ConfirmStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmStatus::OnTime => "on_time",
            ConfirmStatus::Late => "late",
            ConfirmStatus::NotConfirmed => "not_confirmed",
            ConfirmStatus::Pending => "pending",
        }
    }
}

// ---------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------

/// The monthly follow-up report.
#[derive(Debug, Clone, Serialize)]
pub struct FollowUp {
    pub month: Month,
    /// The day the figures were computed for (pending vs missing deadlines).
    pub computed_on: NaiveDate,
    pub manual_share_threshold: f64,
    pub summary: Summary,
    pub providers: Vec<ProviderRow>,
    /// Per client at a provider, by provider then key.
    pub clients: Vec<ClientRow>,
    /// Orders whose plan-due date falls in the month.
    pub plans: Vec<PlanRow>,
    /// Orders whose execute-by date falls in the month.
    pub confirmations: Vec<ConfirmationRow>,
    /// Deviations and changes of need per provider, type and kind.
    pub reports: Vec<ReportCountRow>,
}

/// How many deviations or changes of need of one kind a provider reported in the month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportCountRow {
    pub provider: String,
    /// `deviation` or `need_change`.
    pub message_type: String,
    /// A deviation's kind (`fall`, `missed_visit`, ...) or a change of need's direction
    /// (`more`, `less`).
    pub kind: String,
    pub count: u64,
}

/// Plans by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlanCounts {
    pub due: u64,
    pub on_time: u64,
    pub late: u64,
    pub missing: u64,
    pub pending: u64,
}

impl PlanCounts {
    fn add(&mut self, s: PlanStatus) {
        self.due += 1;
        match s {
            PlanStatus::OnTime => self.on_time += 1,
            PlanStatus::Late => self.late += 1,
            PlanStatus::Missing => self.missing += 1,
            PlanStatus::Pending => self.pending += 1,
        }
    }
}

/// Confirmations by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ConfirmCounts {
    pub due: u64,
    pub on_time: u64,
    pub late: u64,
    pub not_confirmed: u64,
    pub pending: u64,
}

impl ConfirmCounts {
    fn add(&mut self, s: ConfirmStatus) {
        self.due += 1;
        match s {
            ConfirmStatus::OnTime => self.on_time += 1,
            ConfirmStatus::Late => self.late += 1,
            ConfirmStatus::NotConfirmed => self.not_confirmed += 1,
            ConfirmStatus::Pending => self.pending += 1,
        }
    }

    /// Confirmed late or not at all.
    pub fn not_in_time(&self) -> u64 {
        self.late + self.not_confirmed
    }
}

/// Clients by band.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BandCounts {
    pub under: u64,
    pub within: u64,
    pub over: u64,
    pub not_granted: u64,
}

impl BandCounts {
    fn add(&mut self, b: Band) {
        match b {
            Band::Under => self.under += 1,
            Band::Within => self.within += 1,
            Band::Over => self.over += 1,
            Band::NotGranted => self.not_granted += 1,
        }
    }
}

/// The month at a glance.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub clients: u64,
    pub bands: BandCounts,
    pub granted_minutes: i64,
    pub performed_minutes: i64,
    /// performed / granted over all clients.
    pub ratio: Option<f64>,
    /// Accepted and flagged visits, and of them manual.
    pub visits: u64,
    pub manual: u64,
    pub manual_share: f64,
    pub providers_over_threshold: u64,
    /// Averages over clients with performed visits.
    pub avg_staff_per_client: Option<f64>,
    pub avg_max_staff_14_days: Option<f64>,
    pub plans: PlanCounts,
    pub confirmations: ConfirmCounts,
    /// Counted visits whose order is not among the month's orders (not in any figure).
    pub visits_without_order: u64,
    /// Deviations and changes of need reported in the month.
    pub deviations: u64,
    pub need_changes: u64,
}

/// One provider's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProviderRow {
    pub provider: String,
    pub name: Option<String>,
    pub clients: u64,
    pub bands: BandCounts,
    pub granted_minutes: i64,
    pub performed_minutes: i64,
    pub ratio: Option<f64>,
    /// Accepted and flagged visits in the month, of which manual (SPEC §6).
    pub visits: u64,
    pub manual: u64,
    pub manual_share: f64,
    pub over_threshold: bool,
    pub avg_staff_per_client: Option<f64>,
    pub avg_max_staff_14_days: Option<f64>,
    pub plans: PlanCounts,
    pub confirmations: ConfirmCounts,
    /// Deviations and changes of need the provider reported in the month.
    pub deviations: u64,
    pub need_changes: u64,
}

/// One client at one provider.
#[derive(Debug, Clone, Serialize)]
pub struct ClientRow {
    /// Pseudonymous: the id of the client's first order at the provider.
    pub key: String,
    pub provider: String,
    /// The client's orders at the provider that count this month.
    pub orders: Vec<String>,
    pub granted_minutes: i64,
    pub performed_minutes: i64,
    pub ratio: Option<f64>,
    pub band: Band,
    /// Performed visits counted.
    pub visits: u64,
    /// Distinct staff in the month.
    pub staff_in_month: u32,
    /// The most distinct staff in any 14 consecutive days of the month.
    pub max_staff_14_days: u32,
}

/// An order's plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanRow {
    pub order_id: String,
    pub provider: String,
    pub plan_due: NaiveDate,
    pub established_on: Option<NaiveDate>,
    pub status: PlanStatus,
    /// Days after the due date (late plans, or missing ones up to the report day).
    pub days_late: Option<i64>,
}

/// An order's confirmation.
#[derive(Debug, Clone, Serialize)]
pub struct ConfirmationRow {
    pub order_id: String,
    pub provider: String,
    pub execute_by: NaiveDate,
    /// The Stockholm date of the answer.
    pub confirmed_on: Option<NaiveDate>,
    pub status: ConfirmStatus,
    pub days_late: Option<i64>,
}

impl FollowUp {
    /// The pure computation over plain inputs.
    pub fn compute(
        month: Month,
        today: NaiveDate,
        orders: &[FollowUpOrder],
        visits: &[FollowUpVisit],
        shares: &[ManualShare],
        threshold: f64,
    ) -> FollowUp {
        let mut b = Builder::new(month, today, orders);
        b.add_visits(visits);
        b.finish(shares, threshold)
    }

    /// Adds the month's deviations and changes of need: a row per provider, type and kind,
    /// and their totals per provider and in the summary. A provider with reports but no
    /// order or visit in the month gets a row of its own.
    pub fn add_reports(&mut self, counts: &[FollowUpReportCount]) {
        for c in counts {
            let at = match self.providers.binary_search_by(|p| p.provider.as_str().cmp(&c.provider)) {
                Ok(at) => at,
                Err(at) => {
                    self.providers.insert(at, ProviderRow { provider: c.provider.clone(), ..ProviderRow::default() });
                    at
                }
            };
            let (row, total) = match c.message_type.as_str() {
                "deviation" => (&mut self.providers[at].deviations, &mut self.summary.deviations),
                _ => (&mut self.providers[at].need_changes, &mut self.summary.need_changes),
            };
            *row += c.count;
            *total += c.count;
            self.reports.push(ReportCountRow {
                provider: c.provider.clone(),
                message_type: c.message_type.clone(),
                kind: c.kind.clone(),
                count: c.count,
            });
        }
    }

    /// Names the providers (from the configuration).
    pub fn name_providers(&mut self, name: impl Fn(&str) -> Option<String>) {
        for p in &mut self.providers {
            p.name = name(&p.provider);
        }
    }

    /// Keeps only one provider's rows (a provider's own view); the summary is recomputed
    /// from its row.
    pub fn only_provider(&mut self, provider: &str) {
        self.providers.retain(|p| p.provider == provider);
        self.clients.retain(|c| c.provider == provider);
        self.plans.retain(|p| p.provider == provider);
        self.confirmations.retain(|c| c.provider == provider);
        self.reports.retain(|r| r.provider == provider);
        let mut s = Summary { visits_without_order: 0, ..Summary::default() };
        if let Some(p) = self.providers.first() {
            s.clients = p.clients;
            s.bands = p.bands;
            s.granted_minutes = p.granted_minutes;
            s.performed_minutes = p.performed_minutes;
            s.ratio = p.ratio;
            s.visits = p.visits;
            s.manual = p.manual;
            s.manual_share = p.manual_share;
            s.providers_over_threshold = u64::from(p.over_threshold);
            s.avg_staff_per_client = p.avg_staff_per_client;
            s.avg_max_staff_14_days = p.avg_max_staff_14_days;
            s.plans = p.plans;
            s.confirmations = p.confirmations;
            s.deviations = p.deviations;
            s.need_changes = p.need_changes;
        }
        self.summary = s;
    }

    /// A provider's display name: its configured name, else its organisation number.
    pub fn provider_label(&self, provider: &str) -> String {
        self.providers
            .iter()
            .find(|p| p.provider == provider)
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| provider.to_owned())
    }
}

#[cfg(test)]
mod tests;
