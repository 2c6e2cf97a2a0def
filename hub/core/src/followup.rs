//! The monthly follow-up (SPEC §4.4): what a social-services committee and the case
//! officers look at each month.
//!
//! - granted vs performed per client, with the 80-120% band;
//! - the manual-registration share per provider (SPEC §6), against the threshold;
//! - staff continuity: distinct staff per client in the month, and the most in any 14
//!   consecutive days of the month;
//! - plans established on time (`plan_established_on <= plan_due`), late, or missing;
//! - orders not confirmed in time (confirmed after `execute_by`, or not at all).
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

pub mod html;
pub mod table;

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use carehub_model::Month;

use crate::rules::invoices;
pub use crate::store::{FollowUpOrder, FollowUpVisit};
use crate::store::{ManualShare, Store, StoreError};

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
    /// Days of `month` inside both the order's and the decision's validity (inclusive).
    pub fn active_days(&self, month: Month) -> i64 {
        invoices::active_days(month, self.start_date, self.end_date, self.decision_valid_from, self.decision_valid_to)
    }

    /// Granted minutes in `month` (SPEC §7), 0 for a rejected order.
    pub fn granted(&self, month: Month) -> i64 {
        if self.rejected {
            return 0;
        }
        invoices::granted_minutes(self.minutes_per_month, self.active_days(month), month)
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

// ---------------------------------------------------------------------------------------
// The computation
// ---------------------------------------------------------------------------------------

/// A client's figures so far.
#[derive(Default)]
struct ClientAcc {
    orders: Vec<String>,
    granted: i64,
    seconds: i64,
    visits: u64,
    /// Staff member → a bit per day of the month (bit 0 = the 1st).
    staff_days: HashMap<String, u32>,
}

/// Folds the month's orders and visits into a [`FollowUp`].
pub struct Builder {
    month: Month,
    today: NaiveDate,
    /// Order id → (provider, client): the client's row.
    client_of: HashMap<String, (String, String)>,
    clients: BTreeMap<(String, String), ClientAcc>,
    plans: Vec<PlanRow>,
    confirmations: Vec<ConfirmationRow>,
    visits_without_order: u64,
}

impl Builder {
    /// Starts the month from its orders (those that are not relevant are ignored).
    pub fn new(month: Month, today: NaiveDate, orders: &[FollowUpOrder]) -> Builder {
        let mut b = Builder {
            month,
            today,
            client_of: HashMap::new(),
            clients: BTreeMap::new(),
            plans: Vec::new(),
            confirmations: Vec::new(),
            visits_without_order: 0,
        };
        let mut sorted: Vec<&FollowUpOrder> = orders.iter().collect();
        sorted.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        for o in sorted {
            if o.overlaps(month) {
                let row = (o.provider.clone(), o.client.clone());
                b.client_of.insert(o.order_id.clone(), row.clone());
                let granted = o.granted(month);
                if granted > 0 {
                    let acc = b.clients.entry(row).or_default();
                    acc.granted += granted;
                    acc.orders.push(o.order_id.clone());
                }
            }
            if month.contains(o.plan_due) && !o.rejected {
                let (status, days_late) = match o.plan_established_on {
                    Some(on) if on <= o.plan_due => (PlanStatus::OnTime, None),
                    Some(on) => (PlanStatus::Late, Some((on - o.plan_due).num_days())),
                    None if today > o.plan_due => (PlanStatus::Missing, Some((today - o.plan_due).num_days())),
                    None => (PlanStatus::Pending, None),
                };
                b.plans.push(PlanRow {
                    order_id: o.order_id.clone(),
                    provider: o.provider.clone(),
                    plan_due: o.plan_due,
                    established_on: o.plan_established_on,
                    status,
                    days_late,
                });
            }
            if month.contains(o.execute_by) {
                let confirmed_on = o.acked_at.map(carehub_model::local_date);
                let (status, days_late) = match confirmed_on {
                    Some(on) if on <= o.execute_by => (ConfirmStatus::OnTime, None),
                    Some(on) => (ConfirmStatus::Late, Some((on - o.execute_by).num_days())),
                    None if today > o.execute_by => {
                        (ConfirmStatus::NotConfirmed, Some((today - o.execute_by).num_days()))
                    }
                    None => (ConfirmStatus::Pending, None),
                };
                b.confirmations.push(ConfirmationRow {
                    order_id: o.order_id.clone(),
                    provider: o.provider.clone(),
                    execute_by: o.execute_by,
                    confirmed_on,
                    status,
                    days_late,
                });
            }
        }
        b
    }

    /// Folds in counted visits (any provider, any order; those outside the month are
    /// ignored).
    pub fn add_visits<'a>(&mut self, visits: impl IntoIterator<Item = &'a FollowUpVisit>) {
        for v in visits {
            let day = carehub_model::local_date(v.check_in);
            if !self.month.contains(day) || !v.performed {
                continue;
            }
            let Some(row) = self.client_of.get(&v.order_id) else {
                self.visits_without_order += 1;
                continue;
            };
            let acc = self.clients.entry(row.clone()).or_default();
            if !acc.orders.contains(&v.order_id) {
                acc.orders.push(v.order_id.clone());
                acc.orders.sort();
            }
            acc.seconds += v.seconds.unwrap_or(0).max(0);
            acc.visits += 1;
            *acc.staff_days.entry(v.staff.clone()).or_default() |= 1 << (day.day() - 1);
        }
    }

    /// The report, with the store's manual shares and the threshold.
    pub fn finish(self, shares: &[ManualShare], threshold: f64) -> FollowUp {
        let month = self.month;
        let mut providers: BTreeMap<String, ProviderRow> = BTreeMap::new();
        // (Σ staff, Σ max-14, clients with visits) per provider.
        let mut continuity: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        let mut clients = Vec::with_capacity(self.clients.len());
        for ((provider, _client), acc) in self.clients {
            let performed = invoices::performed_minutes(acc.seconds);
            let band = Band::of(acc.granted, performed);
            let staff_in_month = u32::try_from(acc.staff_days.len()).unwrap_or(u32::MAX);
            let max_staff_14_days = max_in_window(acc.staff_days.values().copied(), month);
            let row = providers
                .entry(provider.clone())
                .or_insert_with(|| ProviderRow { provider: provider.clone(), ..Default::default() });
            row.clients += 1;
            row.bands.add(band);
            row.granted_minutes += acc.granted;
            row.performed_minutes += performed;
            if acc.visits > 0 {
                let c = continuity.entry(provider.clone()).or_default();
                c.0 += u64::from(staff_in_month);
                c.1 += u64::from(max_staff_14_days);
                c.2 += 1;
            }
            clients.push(ClientRow {
                key: acc.orders.first().cloned().unwrap_or_default(),
                provider,
                orders: acc.orders,
                granted_minutes: acc.granted,
                performed_minutes: performed,
                ratio: ratio(performed, acc.granted),
                band,
                visits: acc.visits,
                staff_in_month,
                max_staff_14_days,
            });
        }
        clients.sort_by(|a, b| (&a.provider, &a.key).cmp(&(&b.provider, &b.key)));
        for p in &self.plans {
            providers
                .entry(p.provider.clone())
                .or_insert_with(|| ProviderRow { provider: p.provider.clone(), ..Default::default() })
                .plans
                .add(p.status);
        }
        for c in &self.confirmations {
            providers
                .entry(c.provider.clone())
                .or_insert_with(|| ProviderRow { provider: c.provider.clone(), ..Default::default() })
                .confirmations
                .add(c.status);
        }
        for s in shares {
            let row = providers
                .entry(s.provider.clone())
                .or_insert_with(|| ProviderRow { provider: s.provider.clone(), ..Default::default() });
            row.visits = s.visits;
            row.manual = s.manual;
            row.manual_share = s.share;
            row.over_threshold = s.share > threshold;
        }
        let mut summary = Summary { visits_without_order: self.visits_without_order, ..Summary::default() };
        let mut all_continuity = (0u64, 0u64, 0u64);
        for row in providers.values_mut() {
            row.ratio = ratio(row.performed_minutes, row.granted_minutes);
            if let Some(&(staff, max14, n)) = continuity.get(&row.provider) {
                row.avg_staff_per_client = mean(staff, n);
                row.avg_max_staff_14_days = mean(max14, n);
                all_continuity = (all_continuity.0 + staff, all_continuity.1 + max14, all_continuity.2 + n);
            }
            summary.clients += row.clients;
            summary.bands.under += row.bands.under;
            summary.bands.within += row.bands.within;
            summary.bands.over += row.bands.over;
            summary.bands.not_granted += row.bands.not_granted;
            summary.granted_minutes += row.granted_minutes;
            summary.performed_minutes += row.performed_minutes;
            summary.visits += row.visits;
            summary.manual += row.manual;
            summary.providers_over_threshold += u64::from(row.over_threshold);
        }
        summary.ratio = ratio(summary.performed_minutes, summary.granted_minutes);
        summary.manual_share = mean(summary.manual, summary.visits).unwrap_or(0.0);
        summary.avg_staff_per_client = mean(all_continuity.0, all_continuity.2);
        summary.avg_max_staff_14_days = mean(all_continuity.1, all_continuity.2);
        for p in &self.plans {
            summary.plans.add(p.status);
        }
        for c in &self.confirmations {
            summary.confirmations.add(c.status);
        }
        let mut plans = self.plans;
        plans.sort_by(|a, b| (&a.provider, a.plan_due, &a.order_id).cmp(&(&b.provider, b.plan_due, &b.order_id)));
        let mut confirmations = self.confirmations;
        confirmations
            .sort_by(|a, b| (&a.provider, a.execute_by, &a.order_id).cmp(&(&b.provider, b.execute_by, &b.order_id)));
        FollowUp {
            month,
            computed_on: self.today,
            manual_share_threshold: threshold,
            summary,
            providers: providers.into_values().collect(),
            clients,
            plans,
            confirmations,
        }
    }
}

/// The most staff members with a visit in any window of [`WINDOW_DAYS`] days inside the
/// month (`masks`: a bit per day for each staff member).
fn max_in_window(masks: impl Iterator<Item = u32> + Clone, month: Month) -> u32 {
    let days = u32::try_from(month.days()).unwrap_or(31);
    let window: u32 = (1u32 << WINDOW_DAYS) - 1;
    (0..=days.saturating_sub(WINDOW_DAYS))
        .map(|start| {
            let w = window << start;
            u32::try_from(masks.clone().filter(|m| m & w != 0).count()).unwrap_or(u32::MAX)
        })
        .max()
        .unwrap_or(0)
}

#[allow(clippy::cast_precision_loss)]
fn ratio(performed: i64, granted: i64) -> Option<f64> {
    (granted > 0).then(|| performed as f64 / granted as f64)
}

#[allow(clippy::cast_precision_loss)]
fn mean(sum: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| sum as f64 / n as f64)
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

/// Reads the month's orders and counted visits from the store (one provider's visits at a
/// time, via `visits_provider_month`) and computes the report. `provider` restricts it to
/// one provider's rows.
pub async fn compute(
    store: &dyn Store,
    month: Month,
    today: NaiveDate,
    threshold: f64,
    provider: Option<&str>,
) -> Result<FollowUp, StoreError> {
    let key = month.to_string();
    let mut orders = store.followup_orders(month).await?;
    if let Some(p) = provider {
        orders.retain(|o| o.provider == p);
    }
    let mut providers: Vec<String> = orders.iter().map(|o| o.provider.clone()).collect();
    providers.sort();
    providers.dedup();
    let mut shares = store.manual_shares(&key).await?;
    if let Some(p) = provider {
        shares.retain(|s| s.provider == p);
    }
    for s in &shares {
        if !providers.contains(&s.provider) {
            providers.push(s.provider.clone());
        }
    }
    let mut builder = Builder::new(month, today, &orders);
    drop(orders);
    for p in &providers {
        let visits = store.followup_visits(p, month).await?;
        builder.add_visits(&visits);
    }
    let mut report = builder.finish(&shares, threshold);
    if let Some(p) = provider {
        report.only_provider(p);
    }
    Ok(report)
}

/// Parses `YYYY-MM`.
pub fn parse_month(s: &str) -> Option<Month> {
    let (y, m) = s.trim().split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    Month::new(y.parse().ok()?, m.parse().ok()?)
}

#[cfg(test)]
mod tests;
