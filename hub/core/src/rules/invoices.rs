//! Invoice verification (SPEC §7): what a provider invoiced for a month, against what the
//! case officer granted and what the provider's staff actually performed.
//!
//! The rules are pure: [`verify`] takes the invoice, the facts the store holds about its
//! orders (a [`VerificationInput`]) and the municipality's [`Policy`], and returns a
//! [`VerificationReport`]. Gathering the facts (orders, decisions, validated visits, plan
//! notices, earlier verifications, credit notes) is the caller's job; nothing here reads a
//! clock or a store, so the same input always gives the same report.
//!
//! # Arithmetic
//! Everything is integer: minutes, seconds and öre are `i64`, intermediate products
//! `i128`; tolerance and thresholds are exact fractions ([`Ratio`], written as decimals
//! such as `1.10`). There is exactly one rounding per figure, at the end:
//! - granted: `Σ minutes_per_month × active_days / days_in_month`, summed exactly, then
//!   rounded to the nearest minute, halves up; an order whose decision changed sums each
//!   active day's minutes in force (SPEC §4.4: each version prorated over its own days,
//!   paused days not active) before the one division;
//! - performed: the visits' seconds, summed, then rounded to the nearest minute, halves up;
//! - cap: `tolerance × granted`, rounded down;
//! - amount: `minutes × rate / 60` rounded to the öre, halves up. With time bands the
//!   rate is the performed-time-weighted mean of the band rates:
//!   `amount = round(minutes × Σ(seconds_b × rate_b) / (60 × Σ seconds_b))`, so the total is
//!   rounded once and is exact to the öre; its split over the bands ([`BandAmount`]) is by
//!   largest remainder (each band floored, the öre left over go to the largest remainders,
//!   ties to the band listed first), so the parts always add up to the total.
//!
//! The codes are stable: they are shown to providers and case officers and counted in
//! reports.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use carehub_model::{InvoiceKind, Month, MonthShare, Order, OrgNumber, VisitOutcome, MUNICIPAL_TZ};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use serde::Serialize;

use crate::rules::visits::Outcome;

/// The invoice finding codes of SPEC §7 (INV001-INV007); the visit rules have their own,
/// [`VisitCode`](crate::rules::visits::VisitCode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum InvoiceCode {
    /// Invoiced more than performed: approved limited to performed.
    Inv001,
    /// Invoiced more than tolerance × granted: limited to the cap, or (with a comment) not
    /// capped and marked for the case officer.
    Inv002,
    /// The provider's manual share this month above the threshold (report-level).
    Inv003,
    /// The line's order is unknown, belongs to another provider, or is not active in the
    /// month: line approved 0.
    Inv004,
    /// The line (or the whole invoice) was already verified: line approved 0, the earlier
    /// result stands.
    Inv005,
    /// Performed under the threshold (80%) of granted: reported for follow-up.
    Inv006,
    /// The line's amount differs by more than 1 krona from its minutes × the contracted
    /// rate: reported, payment uses the contracted rate.
    Inv007,
}

impl InvoiceCode {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceCode::Inv001 => "INV001",
            InvoiceCode::Inv002 => "INV002",
            InvoiceCode::Inv003 => "INV003",
            InvoiceCode::Inv004 => "INV004",
            InvoiceCode::Inv005 => "INV005",
            InvoiceCode::Inv006 => "INV006",
            InvoiceCode::Inv007 => "INV007",
        }
    }
}

impl fmt::Display for InvoiceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What can stop a verification before any rule runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The policy has no contracted rate for the invoicing provider.
    #[error("no contracted rate for provider {0}")]
    NoRate(OrgNumber),
    /// A tolerance or threshold that is not a non-negative decimal.
    #[error("not a ratio: {0:?} (write a decimal such as 1.10)")]
    BadRatio(String),
    /// Visits given as sums for a provider with time bands, which need each visit's times.
    #[error("provider {0} has time bands, but its visits were given summed")]
    SummedWithBands(OrgNumber),
}

// ---------------------------------------------------------------------------------------
// Ratios
// ---------------------------------------------------------------------------------------

/// An exact non-negative fraction, for the tolerance and the thresholds (no floating
/// point: `1.10 × 2280` is 2508, not 2508.0000000000005). Parsed from a decimal (`"1.10"`,
/// `"0.8"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    num: i64,
    den: i64,
}

impl Ratio {
    /// `num / den`, if `num >= 0` and `den > 0`.
    pub const fn new(num: i64, den: i64) -> Option<Ratio> {
        if num >= 0 && den > 0 {
            Some(Ratio { num, den })
        } else {
            None
        }
    }

    /// `percent / 100`.
    pub const fn percent(percent: u32) -> Ratio {
        Ratio { num: percent as i64, den: 100 }
    }

    /// `self × x`, rounded down (x >= 0).
    pub fn floor_mul(self, x: i64) -> i64 {
        narrow((i128::from(x) * i128::from(self.num)).div_euclid(i128::from(self.den)))
    }

    /// Whether `part / whole` is strictly above this ratio (never when `whole` is 0).
    pub fn is_exceeded_by(self, part: i64, whole: i64) -> bool {
        whole > 0 && i128::from(part) * i128::from(self.den) > i128::from(self.num) * i128::from(whole)
    }

    /// Whether `part` is strictly less than this ratio of `whole`.
    pub fn is_undercut_by(self, part: i64, whole: i64) -> bool {
        i128::from(part) * i128::from(self.den) < i128::from(self.num) * i128::from(whole)
    }
}

impl FromStr for Ratio {
    type Err = VerifyError;

    fn from_str(s: &str) -> Result<Ratio, VerifyError> {
        let bad = || VerifyError::BadRatio(s.to_owned());
        let (int, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !all_digits(int) || !all_digits(frac) || int.len() > 9 || frac.len() > 9 {
            return Err(bad());
        }
        let den = 10i64.pow(frac.len() as u32);
        let int: i64 = int.parse().map_err(|_| bad())?;
        let frac: i64 = if frac.is_empty() { 0 } else { frac.parse().map_err(|_| bad())? };
        Ratio::new(int * den + frac, den).ok_or_else(bad)
    }
}

/// As a decimal when the denominator is a power of ten (`1.10`), otherwise `num/den`.
impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.den.to_string();
        let decimals = digits.len() - 1;
        if digits.starts_with('1') && digits[1..].bytes().all(|b| b == b'0') {
            let (int, frac) = (self.num / self.den, self.num % self.den);
            if decimals == 0 {
                write!(f, "{int}")
            } else {
                write!(f, "{int}.{frac:0decimals$}")
            }
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

/// `n / d` rounded to the nearest integer, halves up (towards +∞); `d > 0`.
fn round_half_up(n: i128, d: i128) -> i128 {
    (2 * n + d).div_euclid(2 * d)
}

/// Narrows a figure that cannot leave `i64` for any real invoice (saturating otherwise).
fn narrow(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

// ---------------------------------------------------------------------------------------
// Policy and rates
// ---------------------------------------------------------------------------------------

/// The kind of a time band (for the report; the rate is the band's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BandKind {
    Day,
    Evening,
    Night,
    /// Applies on Saturdays and Sundays only, before any other band.
    Weekend,
}

/// A clock range with its own rate. `from < to` covers `[from, to)` of a day; `from > to`
/// wraps midnight (`22:00-07:00`); `from == to` covers the whole day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    pub kind: BandKind,
    pub from: NaiveTime,
    pub to: NaiveTime,
    /// Öre per hour.
    pub rate: i64,
}

impl Band {
    fn covers(&self, t: NaiveTime) -> bool {
        match self.from.cmp(&self.to) {
            std::cmp::Ordering::Less => self.from <= t && t < self.to,
            std::cmp::Ordering::Greater => t >= self.from || t < self.to,
            std::cmp::Ordering::Equal => true,
        }
    }
}

/// A provider's contracted rates.
///
/// A performed second takes the rate of its band: on a Saturday or Sunday the first
/// `Weekend` band covering its clock time, otherwise (or if none does) the first other band
/// covering it, otherwise the day rate. With no bands every second is at the day rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rates {
    /// The contracted (day) rate, öre per hour: Södertälje's 390 kr/h is `39_000`. Plan
    /// compensation is paid at it, and time outside every band.
    pub day: i64,
    pub bands: Vec<Band>,
}

impl Rates {
    /// One rate for every hour of the week.
    pub fn flat(day: i64) -> Rates {
        Rates { day, bands: Vec::new() }
    }

    /// The number of rate slots: one per band, then the day rate for time outside them.
    fn slots(&self) -> usize {
        self.bands.len() + 1
    }

    fn slot_rate(&self, slot: usize) -> i64 {
        self.bands.get(slot).map_or(self.day, |b| b.rate)
    }

    fn slot_kind(&self, slot: usize) -> BandKind {
        self.bands.get(slot).map_or(BandKind::Day, |b| b.kind)
    }

    fn slot_at(&self, local: NaiveDateTime) -> usize {
        let t = local.time();
        let weekend = matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
        self.bands
            .iter()
            .position(|b| weekend && b.kind == BandKind::Weekend && b.covers(t))
            .or_else(|| self.bands.iter().position(|b| b.kind != BandKind::Weekend && b.covers(t)))
            .unwrap_or(self.bands.len())
    }

    /// Adds the seconds of `[from, to)` (Unix seconds) to the slots they fall in, split by
    /// the municipality's clock.
    fn split(&self, from: i64, to: i64, seconds: &mut [i64]) {
        if self.bands.is_empty() {
            seconds[0] += (to - from).max(0);
            return;
        }
        let mut t = from;
        while t < to {
            let Some(utc) = DateTime::from_timestamp(t, 0) else { return };
            let local = utc.with_timezone(&MUNICIPAL_TZ).naive_local();
            // The next clock time at which the slot may change: a band edge or midnight.
            let day = local.date();
            let next_day = day.succ_opt().unwrap_or(day);
            let edges = self.bands.iter().flat_map(|b| [b.from, b.to]).chain([NaiveTime::MIN]);
            let step = edges
                .flat_map(|e| [day.and_time(e), next_day.and_time(e)])
                .filter(|c| *c > local)
                .map(|c| (c - local).num_seconds())
                .min()
                .unwrap_or(i64::MAX);
            // Within one UTC hour the offset cannot change (Stockholm switches on the hour),
            // so a step in clock time is a step in real time.
            let next_hour = (t.div_euclid(3600) + 1) * 3600;
            let next = t.saturating_add(step).min(next_hour).min(to);
            seconds[self.slot_at(local)] += next - t;
            t = next;
        }
    }
}

/// The municipality's verification policy, with SPEC §7's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Invoiced time up to this share of granted needs no comment (1.10).
    pub tolerance: Ratio,
    /// Whether a visit declined at the door pays its planned duration (false).
    pub declined_visits_paid: bool,
    /// Minutes paid for an implementation plan established in time (120).
    pub plan_compensation_minutes: i64,
    /// INV003 when a provider's manual share is above this (0.10).
    pub manual_share_threshold: Ratio,
    /// INV006 when performed is under this share of granted (0.80).
    pub under_delivery_threshold: Ratio,
    /// INV007 when a line's amount differs from the contracted one by more than this (100
    /// öre, one krona).
    pub amount_tolerance: i64,
    /// Contracted rates per provider.
    pub rates: BTreeMap<OrgNumber, Rates>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            tolerance: Ratio::percent(110),
            declined_visits_paid: false,
            plan_compensation_minutes: 120,
            manual_share_threshold: Ratio::percent(10),
            under_delivery_threshold: Ratio::percent(80),
            amount_tolerance: 100,
            rates: BTreeMap::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------

/// A provider's invoice (or credit note) for a month, as the mapping made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    pub id: String,
    pub provider: OrgNumber,
    pub kind: InvoiceKind,
    /// The month invoiced; the verification's month.
    pub period: Month,
    pub lines: Vec<InvoiceLine>,
}

/// One invoice line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceLine {
    pub id: String,
    /// From `OrderLineReference/LineID`.
    pub order_id: String,
    /// Minutes (the caller converts `HUR` hours × 60). On a credit note: the minutes
    /// credited, positive.
    pub minutes: i64,
    /// The line's amount, öre.
    pub amount: i64,
    /// `cbc:Note`: a non-blank comment explains time above the tolerance.
    pub comment: Option<String>,
}

impl InvoiceLine {
    fn commented(&self) -> bool {
        self.comment.as_deref().is_some_and(|c| !c.trim().is_empty())
    }
}

/// A visit of an order, as the evidence invoice verification counts performed time from
/// (the stored row is [`crate::store::VisitRecord`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitEvidence {
    pub check_in: DateTime<Utc>,
    pub check_out: Option<DateTime<Utc>>,
    /// What visit validation made of it; rejected visits never count.
    pub validation: Outcome,
    pub outcome: VisitOutcome,
    pub planned_minutes: Option<u32>,
    /// Registered by hand (or with an unknown tag).
    pub manual: bool,
}

/// An order's counted visits of a month, summed: all the month's figures need of them when
/// every second has the same rate (a provider without time bands). [`VisitSums::of`] sums
/// listed visits by the rules below; a store may sum its rows in the database instead, by the
/// same rules, which its tests hold to the same figures (`store::sqlite::month`).
///
/// Counted are the accepted and flagged visits checked in during the month. A performed
/// visit counts its duration, check-in to check-out in whole seconds (none without a
/// check-out, or when the check-out is before the check-in): the visit's `seconds` as the
/// store keeps it. A visit declined at the door counts its planned minutes when the policy
/// pays them; a cancelled one counts nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VisitSums {
    /// The performed visits' durations, seconds.
    pub performed_seconds: i64,
    /// The planned minutes of the visits declined at the door.
    pub declined_planned_minutes: i64,
}

impl VisitSums {
    /// The sums of `visits` for `month` (visits outside it and rejected ones do not count).
    pub fn of<'a>(visits: impl IntoIterator<Item = &'a VisitEvidence>, month: Month) -> VisitSums {
        let mut sums = VisitSums::default();
        for v in counted_visits(visits, month) {
            match v.outcome {
                VisitOutcome::Performed => sums.performed_seconds += v.performed_seconds(),
                VisitOutcome::DeclinedAtDoor => {
                    sums.declined_planned_minutes += i64::from(v.planned_minutes.unwrap_or(0))
                }
                VisitOutcome::CancelledInAdvance => {}
            }
        }
        sums
    }

    /// The seconds these sums pay under `policy`.
    fn seconds(&self, policy: &Policy) -> i64 {
        let declined = if policy.declined_visits_paid { self.declined_planned_minutes * 60 } else { 0 };
        self.performed_seconds + declined
    }
}

impl VisitEvidence {
    /// Check-in to check-out in whole seconds, 0 without a check-out or when it comes first.
    pub fn performed_seconds(&self) -> i64 {
        self.check_out.map_or(0, |out| (out - self.check_in).num_seconds().max(0))
    }
}

/// An order's plan notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanNoticeFacts {
    pub established_on: NaiveDate,
    /// When the notice reached the hub.
    pub arrived_at: DateTime<Utc>,
    /// The compensation was already part of an earlier report (another invoice this month).
    pub compensated_before: bool,
}

/// What verification knows about one order of the provider: its decision, its visits and
/// its plan notice, the evidence an invoice line is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderEvidence {
    pub order: Order,
    pub decision_valid_from: NaiveDate,
    pub decision_valid_to: Option<NaiveDate>,
    /// The order's visits (at least those checked in during the month; others are ignored).
    pub visits: Vec<VisitEvidence>,
    /// The order's counted visits of the month already summed, in place of `visits` (which
    /// is then empty). Only for a provider whose rates have no time bands: splitting time
    /// over bands needs each visit's clock times ([`VerifyError::SummedWithBands`]).
    pub sums: Option<VisitSums>,
    pub plan_notice: Option<PlanNoticeFacts>,
}

/// The counts behind a provider's manual share in a month (SPEC §6): manual visits among
/// all accepted and flagged ones. The visit report's row is [`crate::store::ManualShare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ManualCounts {
    pub manual: i64,
    pub counted: i64,
}

/// Everything [`verify`] needs, gathered by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerificationInput {
    pub invoice: Invoice,
    /// Credit notes the provider sent for the month (others are ignored).
    pub credit_notes: Vec<Invoice>,
    /// The orders the lines name, and the provider's other orders with a plan notice or
    /// active in the month (for plan compensation and INV006).
    pub orders: Vec<OrderEvidence>,
    /// Lines verified before: (invoice id, line id).
    pub already_verified: BTreeSet<(String, String)>,
    /// The provider's manual share this month from the visit report; when absent it is
    /// counted from the visits of `orders`.
    pub manual_share: Option<ManualCounts>,
}

// ---------------------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------------------

/// One invoice rule's finding on a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvoiceFinding {
    pub code: InvoiceCode,
    pub detail: String,
}

/// A finding about the provider or one of its orders rather than a line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportFinding {
    pub code: InvoiceCode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub detail: String,
}

/// A share of an amount paid at one band's rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BandAmount {
    pub band: BandKind,
    /// Öre per hour.
    pub rate: i64,
    /// The order's performed seconds in the band.
    pub performed_seconds: i64,
    /// Öre.
    pub amount: i64,
}

/// The verification of one invoice line.
///
/// `invoiced`, `performed`, `granted` and `cap` are the order's figures for the month
/// (SPEC §7 compares per order); when an invoice has several lines for one order they
/// carry the same figures, the order's approved minutes go to its lines in invoice order
/// (each up to its own minutes), and the order's findings INV001/INV002 are on its first
/// line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineReport {
    pub line_id: String,
    pub order_id: String,
    /// The line's own minutes and amount (öre), as invoiced.
    pub line_minutes: i64,
    pub line_amount: i64,
    /// The line's minutes at the contracted rate (öre); INV007 compares it with `line_amount`.
    pub contracted_amount: i64,
    /// The order's invoiced minutes this month, net of credit notes.
    pub invoiced_minutes: i64,
    pub credited_minutes: i64,
    pub performed_minutes: i64,
    pub granted_minutes: i64,
    /// `None` when a comment lifts the cap; 0 on an INV004 line.
    pub cap_minutes: Option<i64>,
    pub approved_minutes: i64,
    /// Öre.
    pub approved_amount: i64,
    /// How `approved_amount` splits over the rate bands (empty when nothing is approved).
    pub bands: Vec<BandAmount>,
    /// INV002 with a comment: the case officer should look at the explained extra time.
    pub for_case_officer: bool,
    pub findings: Vec<InvoiceFinding>,
}

/// Danderyd's pay for an implementation plan established in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanCompensation {
    pub order_id: String,
    pub established_on: NaiveDate,
    pub arrived_on: NaiveDate,
    pub plan_due: NaiveDate,
    pub minutes: i64,
    /// The day rate, öre per hour.
    pub rate: i64,
    /// Öre; 0 when `already_paid`.
    pub amount: i64,
    /// Part of an earlier report (the invoice was verified before, or another invoice).
    pub already_paid: bool,
}

/// Sums over the report (minutes and öre).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    pub line_minutes: i64,
    pub line_amount: i64,
    pub approved_minutes: i64,
    pub approved_amount: i64,
    pub plan_compensation_minutes: i64,
    pub plan_compensation_amount: i64,
    /// Approved amount plus plan compensation: what the municipality pays.
    pub payable_amount: i64,
}

/// The verification of one invoice (SPEC §3 `VerificationReport`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerificationReport {
    pub invoice_id: String,
    pub provider: OrgNumber,
    pub kind: InvoiceKind,
    pub month: Month,
    pub lines: Vec<LineReport>,
    pub findings: Vec<ReportFinding>,
    pub plan_compensation: Vec<PlanCompensation>,
    pub totals: Totals,
}

impl VerificationReport {
    /// Every code in the report, line and report level, in order.
    pub fn codes(&self) -> Vec<InvoiceCode> {
        let lines = self.lines.iter().flat_map(|l| l.findings.iter().map(|f| f.code));
        lines.chain(self.findings.iter().map(|f| f.code)).collect()
    }
}

// ---------------------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------------------

/// An order's figures for the month.
struct Figures {
    active_days: i64,
    granted: i64,
    performed: i64,
    /// Performed seconds per rate slot, and their sum.
    seconds: Vec<i64>,
    total_seconds: i64,
}

/// Performed minutes (SPEC §7): the visits' seconds summed, then rounded to the nearest
/// minute, halves up.
pub fn performed_minutes(seconds: i64) -> i64 {
    narrow(round_half_up(i128::from(seconds), 60))
}

/// Granted minutes (SPEC §7, §4.4): each active day of the month adds the minutes per
/// month in force that day (its version's services; paused days are not active), and the
/// sum over the month's active days is divided by the days in the month once, rounded to
/// the nearest minute, halves up. An order that never changed grants its minutes per month
/// × active days / days in the month.
pub fn granted_minutes(share: MonthShare, month: Month) -> i64 {
    narrow(round_half_up(i128::from(share.minute_days), i128::from(month.days())))
}

fn figures(facts: &OrderEvidence, month: Month, policy: &Policy, rates: &Rates) -> Figures {
    let o = &facts.order;
    let share = o.schedule().share(month, facts.decision_valid_from, facts.decision_valid_to);
    let (active_days, granted) = (share.active_days, granted_minutes(share, month));

    let mut seconds = vec![0; rates.slots()];
    if let Some(sums) = &facts.sums {
        // Without bands every second is in the one slot (`verify` refuses sums with bands).
        seconds[0] = sums.seconds(policy);
    }
    for v in counted_visits(&facts.visits, month) {
        let start = v.check_in.timestamp();
        let end = match v.outcome {
            VisitOutcome::Performed => start + v.performed_seconds(),
            VisitOutcome::DeclinedAtDoor if policy.declined_visits_paid => {
                start + i64::from(v.planned_minutes.unwrap_or(0)) * 60
            }
            VisitOutcome::DeclinedAtDoor | VisitOutcome::CancelledInAdvance => start,
        };
        rates.split(start, end, &mut seconds);
    }
    let total_seconds: i64 = seconds.iter().sum();
    let performed = performed_minutes(total_seconds);
    Figures { active_days, granted, performed, seconds, total_seconds }
}

/// The accepted and flagged visits whose check-in falls in the month.
fn counted_visits<'a>(
    visits: impl IntoIterator<Item = &'a VisitEvidence>,
    month: Month,
) -> impl Iterator<Item = &'a VisitEvidence> {
    visits
        .into_iter()
        .filter(move |v| v.validation != Outcome::Rejected && month.contains(carehub_model::local_date(v.check_in)))
}

/// `minutes` at the contracted rates, spread over the bands in proportion to the performed
/// seconds (see the module docs for the rounding).
fn amount(minutes: i64, fig: &Figures, rates: &Rates) -> (i64, Vec<BandAmount>) {
    if fig.total_seconds == 0 {
        let total = narrow(round_half_up(i128::from(minutes) * i128::from(rates.day), 60));
        return (total, Vec::new());
    }
    let d = 60 * i128::from(fig.total_seconds);
    let parts: Vec<i128> = (0..rates.slots())
        .map(|s| i128::from(minutes) * i128::from(fig.seconds[s]) * i128::from(rates.slot_rate(s)))
        .collect();
    let total = round_half_up(parts.iter().sum(), d);
    let mut shares: Vec<i128> = parts.iter().map(|p| p.div_euclid(d)).collect();
    // The total is at most half an öre above the exact sum and each floor less than an öre
    // below its part, so what is left is fewer öre than there are bands with time.
    let left = usize::try_from(total - shares.iter().sum::<i128>()).unwrap_or(0);
    let mut by_remainder: Vec<usize> = (0..parts.len()).filter(|s| fig.seconds[*s] > 0).collect();
    by_remainder.sort_by_key(|s| std::cmp::Reverse(parts[*s].rem_euclid(d)));
    for s in by_remainder.iter().take(left) {
        shares[*s] += 1;
    }
    let bands = (0..parts.len())
        .filter(|s| fig.seconds[*s] > 0 && minutes != 0)
        .map(|s| BandAmount {
            band: rates.slot_kind(s),
            rate: rates.slot_rate(s),
            performed_seconds: fig.seconds[s],
            amount: narrow(shares[s]),
        })
        .collect();
    (narrow(total), bands)
}

/// Verifies `input.invoice` (SPEC §7).
pub fn verify(input: &VerificationInput, policy: &Policy) -> Result<VerificationReport, VerifyError> {
    let invoice = &input.invoice;
    let month = invoice.period;
    let rates = policy.rates.get(&invoice.provider).ok_or_else(|| VerifyError::NoRate(invoice.provider.clone()))?;
    if !rates.bands.is_empty() && input.orders.iter().any(|o| o.sums.is_some()) {
        return Err(VerifyError::SummedWithBands(invoice.provider.clone()));
    }

    let mut orders: BTreeMap<&str, (&OrderEvidence, Figures)> = BTreeMap::new();
    for f in &input.orders {
        orders.entry(f.order.id.as_str()).or_insert_with(|| (f, figures(f, month, policy, rates)));
    }

    let mut credited: BTreeMap<&str, i64> = BTreeMap::new();
    let credit_notes = input.credit_notes.iter().filter(|c| {
        c.kind == InvoiceKind::CreditNote && c.provider == invoice.provider && c.period == month && c.id != invoice.id
    });
    for line in credit_notes.flat_map(|c| &c.lines) {
        *credited.entry(line.order_id.as_str()).or_default() += line.minutes;
    }

    // The lines of each order (with their places on the invoice), in invoice order.
    // (Found through a map: a provider's invoice has a line per order, hundreds of them.)
    let mut groups: Vec<(&str, Vec<(usize, &InvoiceLine)>)> = Vec::new();
    let mut group_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, line) in invoice.lines.iter().enumerate() {
        match group_of.get(line.order_id.as_str()) {
            Some(&g) => groups[g].1.push((i, line)),
            None => {
                group_of.insert(&line.order_id, groups.len());
                groups.push((&line.order_id, vec![(i, line)]));
            }
        }
    }

    let mut reports: Vec<Option<LineReport>> = vec![None; invoice.lines.len()];
    for (order_id, lines) in &groups {
        let known = orders.get(order_id);
        let problem = match known {
            None => Some(format!("order {order_id} is unknown")),
            Some((f, _)) if f.order.provider != invoice.provider => {
                Some(format!("order {order_id} belongs to provider {}", f.order.provider))
            }
            Some((_, fig)) if fig.active_days == 0 => Some(format!("order {order_id} is not active in {month}")),
            Some(_) => None,
        };
        let credited_minutes = credited.get(order_id).copied().unwrap_or(0);
        let claimed: i64 = lines.iter().map(|(_, l)| l.minutes).sum();
        let invoiced = match invoice.kind {
            InvoiceKind::Invoice => claimed - credited_minutes,
            InvoiceKind::CreditNote => -claimed,
        };
        let commented = lines.iter().any(|(_, l)| l.commented());

        let mut remaining = 0;
        let mut order_findings = Vec::new();
        let mut cap = None;
        let mut for_case_officer = false;
        if let (None, Some((_, fig))) = (&problem, known) {
            let limit = policy.tolerance.floor_mul(fig.granted);
            cap = (!commented).then_some(limit);
            if invoiced > fig.performed {
                order_findings.push(InvoiceFinding {
                    code: InvoiceCode::Inv001,
                    detail: format!("invoiced {invoiced} min, performed {} min", fig.performed),
                });
            }
            if invoiced > limit {
                for_case_officer = commented;
                let detail = if commented {
                    format!(
                        "invoiced {invoiced} min, above {} × granted {} min = {limit} min; explained in a comment, \
                         not capped, for the case officer",
                        policy.tolerance, fig.granted
                    )
                } else {
                    format!(
                        "invoiced {invoiced} min, above {} × granted {} min: capped at {limit} min",
                        policy.tolerance, fig.granted
                    )
                };
                order_findings.push(InvoiceFinding { code: InvoiceCode::Inv002, detail });
            }
            remaining = invoiced.min(fig.performed).min(cap.unwrap_or(i64::MAX)).max(0);
            if invoice.kind == InvoiceKind::CreditNote {
                order_findings.clear();
                remaining = 0;
            }
        }

        for (n, &(place, line)) in lines.iter().enumerate() {
            let mut findings = Vec::new();
            if let Some(p) = &problem {
                findings.push(InvoiceFinding { code: InvoiceCode::Inv004, detail: p.clone() });
            }
            if n == 0 {
                findings.append(&mut order_findings);
            }
            let mut approved = remaining.min(line.minutes.max(0));
            remaining -= approved;
            let (mut performed, mut granted, mut contracted) = (0, 0, 0);
            let (mut approved_amount, mut bands) = (0, Vec::new());
            if let (None, Some((_, fig))) = (&problem, known) {
                performed = fig.performed;
                granted = fig.granted;
                contracted = amount(line.minutes, fig, rates).0;
                if invoice.kind == InvoiceKind::Invoice && (line.amount - contracted).abs() > policy.amount_tolerance {
                    findings.push(InvoiceFinding {
                        code: InvoiceCode::Inv007,
                        detail: format!(
                            "line amount {} öre, {} min at the contracted rate is {contracted} öre; paid at that rate",
                            line.amount, line.minutes
                        ),
                    });
                }
            }
            if input.already_verified.contains(&(invoice.id.clone(), line.id.clone())) {
                findings.push(InvoiceFinding {
                    code: InvoiceCode::Inv005,
                    detail: format!(
                        "line {} of invoice {} was already verified; the earlier result stands",
                        line.id, invoice.id
                    ),
                });
                approved = 0;
            }
            if let (None, Some((_, fig))) = (&problem, known) {
                if approved != 0 {
                    (approved_amount, bands) = amount(approved, fig, rates);
                }
            }
            let sign = if invoice.kind == InvoiceKind::CreditNote { -1 } else { 1 };
            reports[place] = Some(LineReport {
                line_id: line.id.clone(),
                order_id: line.order_id.clone(),
                line_minutes: sign * line.minutes,
                line_amount: sign * line.amount,
                contracted_amount: sign * contracted,
                invoiced_minutes: invoiced,
                credited_minutes,
                performed_minutes: performed,
                granted_minutes: granted,
                cap_minutes: if problem.is_some() { Some(0) } else { cap },
                approved_minutes: approved,
                approved_amount,
                bands,
                for_case_officer,
                findings,
            });
        }
    }
    let lines: Vec<LineReport> = reports.into_iter().flatten().collect();

    // Report level: INV003, then INV006 per order.
    let mut findings = Vec::new();
    let share = input.manual_share.unwrap_or_else(|| {
        let visits = input.orders.iter().filter(|f| f.order.provider == invoice.provider).flat_map(|f| &f.visits);
        let counted: Vec<&VisitEvidence> = counted_visits(visits, month).collect();
        ManualCounts { manual: counted.iter().filter(|v| v.manual).count() as i64, counted: counted.len() as i64 }
    });
    if policy.manual_share_threshold.is_exceeded_by(share.manual, share.counted) {
        findings.push(ReportFinding {
            code: InvoiceCode::Inv003,
            order_id: None,
            detail: format!(
                "{} of {} visits registered by hand in {month}, above {}",
                share.manual, share.counted, policy.manual_share_threshold
            ),
        });
    }
    for (f, fig) in orders.values() {
        let active = f.order.provider == invoice.provider && fig.active_days > 0;
        if active && policy.under_delivery_threshold.is_undercut_by(fig.performed, fig.granted) {
            findings.push(ReportFinding {
                code: InvoiceCode::Inv006,
                order_id: Some(f.order.id.clone()),
                detail: format!(
                    "performed {} min of granted {} min, under {}",
                    fig.performed, fig.granted, policy.under_delivery_threshold
                ),
            });
        }
    }

    // Plan compensation, in the month the notice arrived.
    let verified_before = input.already_verified.iter().any(|(id, _)| *id == invoice.id);
    let mut plan_compensation = Vec::new();
    for (f, _) in orders.values() {
        let Some(notice) = &f.plan_notice else { continue };
        let arrived_on = carehub_model::local_date(notice.arrived_at);
        let on_time = arrived_on <= f.order.plan_due && notice.established_on <= f.order.plan_due;
        if invoice.kind != InvoiceKind::Invoice
            || f.order.provider != invoice.provider
            || !month.contains(arrived_on)
            || !on_time
        {
            continue;
        }
        let already_paid = notice.compensated_before || verified_before;
        let minutes = policy.plan_compensation_minutes;
        let full = narrow(round_half_up(i128::from(minutes) * i128::from(rates.day), 60));
        plan_compensation.push(PlanCompensation {
            order_id: f.order.id.clone(),
            established_on: notice.established_on,
            arrived_on,
            plan_due: f.order.plan_due,
            minutes,
            rate: rates.day,
            amount: if already_paid { 0 } else { full },
            already_paid,
        });
    }

    let mut totals = Totals::default();
    for l in &lines {
        totals.line_minutes += l.line_minutes;
        totals.line_amount += l.line_amount;
        totals.approved_minutes += l.approved_minutes;
        totals.approved_amount += l.approved_amount;
    }
    for p in plan_compensation.iter().filter(|p| !p.already_paid) {
        totals.plan_compensation_minutes += p.minutes;
        totals.plan_compensation_amount += p.amount;
    }
    totals.payable_amount = totals.approved_amount + totals.plan_compensation_amount;

    Ok(VerificationReport {
        invoice_id: invoice.id.clone(),
        provider: invoice.provider.clone(),
        kind: invoice.kind,
        month,
        lines,
        findings,
        plan_compensation,
        totals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use carehub_model::{PersonalIdentityNumber, Service, ServiceCategory, SourceId};
    use chrono::TimeZone;

    const PROVIDER: &str = "5599000014";
    const OTHER_PROVIDER: &str = "5560000001";
    /// 390 kr/h: 650 öre a minute.
    const RATE: i64 = 39_000;

    fn org(s: &str) -> OrgNumber {
        OrgNumber::parse(s).expect("org")
    }

    fn date(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, d).expect("date")
    }

    /// Stockholm wall-clock time in 2026.
    fn local(m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        MUNICIPAL_TZ.with_ymd_and_hms(2026, m, d, h, min, 0).single().expect("time").with_timezone(&Utc)
    }

    fn nov() -> Month {
        Month::new(2026, 11).expect("month")
    }

    fn service(minutes: u32) -> Service {
        Service { code: "PO".into(), category: ServiceCategory::PersonalCare, minutes_per_month: minutes }
    }

    fn performed(check_in: DateTime<Utc>, check_out: DateTime<Utc>) -> VisitEvidence {
        VisitEvidence {
            check_in,
            check_out: Some(check_out),
            validation: Outcome::Accepted,
            outcome: VisitOutcome::Performed,
            planned_minutes: None,
            manual: false,
        }
    }

    /// One visit a day from 2 November at 08:00, of these lengths in minutes.
    fn visits(minutes: &[i64]) -> Vec<VisitEvidence> {
        (0..minutes.len())
            .map(|i| {
                let start = local(11, 2 + i as u32, 8, 0);
                performed(start, start + chrono::Duration::minutes(minutes[i]))
            })
            .collect()
    }

    /// Order O-1: 480 + 1800 = 2280 minutes a month, all November, 2000 minutes performed
    /// (20 visits of 100 minutes).
    fn order(id: &str) -> OrderEvidence {
        OrderEvidence {
            order: Order {
                id: id.into(),
                decision_id: SourceId::parse("combine:DEC-2026-0001").expect("id"),
                provider: org(PROVIDER),
                client: PersonalIdentityNumber::parse("193601016987").expect("pin"),
                services: vec![service(480), service(1800)],
                start_date: date(11, 1),
                end_date: None,
                execute_by: date(11, 15),
                plan_due: date(11, 15),
                version: 0,
                revisions: Vec::new(),
                pauses: Vec::new(),
                ended: None,
            },
            decision_valid_from: date(11, 1),
            decision_valid_to: None,
            visits: visits(&[100; 20]),
            sums: None,
            plan_notice: None,
        }
    }

    fn line(id: &str, order: &str, minutes: i64) -> InvoiceLine {
        // The provider's own amount, at 650 öre a minute.
        InvoiceLine { id: id.into(), order_id: order.into(), minutes, amount: minutes * 650, comment: None }
    }

    fn input(lines: Vec<InvoiceLine>) -> VerificationInput {
        VerificationInput {
            invoice: Invoice {
                id: "INV-1".into(),
                provider: org(PROVIDER),
                kind: InvoiceKind::Invoice,
                period: nov(),
                lines,
            },
            credit_notes: Vec::new(),
            orders: vec![order("O-1")],
            already_verified: BTreeSet::new(),
            manual_share: Some(ManualCounts { manual: 0, counted: 100 }),
        }
    }

    fn policy() -> Policy {
        let mut p = Policy::default();
        p.rates.insert(org(PROVIDER), Rates::flat(RATE));
        p
    }

    fn run(i: &VerificationInput) -> VerificationReport {
        verify(i, &policy()).expect("verified")
    }

    fn codes(r: &VerificationReport) -> Vec<&'static str> {
        r.codes().into_iter().map(InvoiceCode::as_str).collect()
    }

    /// (invoiced, performed, granted, cap, approved minutes, approved amount) of line 0.
    fn figures_of(r: &VerificationReport) -> (i64, i64, i64, Option<i64>, i64, i64) {
        let l = &r.lines[0];
        (
            l.invoiced_minutes,
            l.performed_minutes,
            l.granted_minutes,
            l.cap_minutes,
            l.approved_minutes,
            l.approved_amount,
        )
    }

    #[test]
    fn a_clean_invoice_is_approved_in_full() {
        let r = run(&input(vec![line("L1", "O-1", 2000)]));
        // granted 2280 × 30/30 = 2280, cap floor(1.10 × 2280) = 2508, performed 20 × 100 = 2000;
        // 2000 min × 39000 / 60 = 1 300 000 öre.
        assert_eq!(figures_of(&r), (2000, 2000, 2280, Some(2508), 2000, 1_300_000));
        assert!(codes(&r).is_empty());
        assert_eq!(r.totals.payable_amount, 1_300_000);
    }

    #[test]
    fn inv001_invoiced_more_than_performed_is_limited_to_performed() {
        let r = run(&input(vec![line("L1", "O-1", 2010)]));
        // min(2010, 2000, 2508) = 2000 → 1 300 000 öre.
        assert_eq!(figures_of(&r), (2010, 2000, 2280, Some(2508), 2000, 1_300_000));
        assert_eq!(codes(&r), vec!["INV001"]);
        let twin = run(&input(vec![line("L1", "O-1", 2000)]));
        assert!(codes(&twin).is_empty());
    }

    #[test]
    fn inv002_above_the_tolerance_is_capped_unless_explained() {
        let mut i = input(vec![line("L1", "O-1", 2509)]);
        i.orders[0].visits = visits(&[100; 26]); // performed 2600
        let r = run(&i);
        // cap floor(1.10 × 2280) = floor(2508.0) = 2508 < 2509 → approved 2508, 2508 × 650 = 1 630 200.
        assert_eq!(figures_of(&r), (2509, 2600, 2280, Some(2508), 2508, 1_630_200));
        assert_eq!(codes(&r), vec!["INV002"]);
        assert!(!r.lines[0].for_case_officer);

        i.invoice.lines = vec![line("L1", "O-1", 2508)];
        assert!(codes(&run(&i)).is_empty(), "exactly the cap passes");

        i.invoice.lines =
            vec![InvoiceLine { comment: Some("extra visits after a fall".into()), ..line("L1", "O-1", 2600) }];
        let r = run(&i);
        // With a comment: no cap, min(2600, 2600) = 2600, 2600 × 650 = 1 690 000, for the case officer.
        assert_eq!(figures_of(&r), (2600, 2600, 2280, None, 2600, 1_690_000));
        assert_eq!(codes(&r), vec!["INV002"]);
        assert!(r.lines[0].for_case_officer);
    }

    #[test]
    fn inv003_a_manual_share_above_the_threshold_is_reported_without_payment_change() {
        let mut i = input(vec![line("L1", "O-1", 2000)]);
        i.manual_share = Some(ManualCounts { manual: 11, counted: 100 });
        let r = run(&i);
        // 11/100 = 0.11 > 0.10.
        assert_eq!(codes(&r), vec!["INV003"]);
        assert_eq!(r.totals.approved_amount, 1_300_000);
        i.manual_share = Some(ManualCounts { manual: 10, counted: 100 });
        assert!(codes(&run(&i)).is_empty(), "10% is not above 10%");
    }

    #[test]
    fn inv003_counts_the_visits_when_the_report_gives_no_share() {
        let mut i = input(vec![line("L1", "O-1", 2000)]);
        i.manual_share = None;
        // 3 of the 20 visits manual: 15% > 10%.
        for v in i.orders[0].visits.iter_mut().take(3) {
            v.manual = true;
            v.validation = Outcome::Flagged;
        }
        assert_eq!(codes(&run(&i)), vec!["INV003"]);
        // 2 of 20: 10%, not above.
        i.orders[0].visits[2].manual = false;
        assert!(codes(&run(&i)).is_empty());
    }

    #[test]
    fn inv004_unknown_foreign_or_inactive_orders_are_approved_zero() {
        let r = run(&input(vec![line("L1", "O-9", 60)]));
        assert_eq!((codes(&r), r.lines[0].approved_minutes, r.lines[0].approved_amount), (vec!["INV004"], 0, 0));

        let mut foreign = input(vec![line("L1", "O-1", 2000)]);
        foreign.orders[0].order.provider = org(OTHER_PROVIDER);
        let r = run(&foreign);
        assert_eq!((codes(&r), r.lines[0].approved_minutes), (vec!["INV004"], 0));

        let mut ended = input(vec![line("L1", "O-1", 2000)]);
        ended.orders[0].order.end_date = Some(date(10, 31));
        let r = run(&ended);
        assert_eq!((codes(&r), r.lines[0].approved_minutes), (vec!["INV004"], 0));

        let mut last_day = input(vec![line("L1", "O-1", 76)]);
        last_day.orders[0].order.start_date = date(11, 30);
        last_day.orders[0].visits = visits(&[76]);
        let r = run(&last_day);
        // Active one day: 2280 × 1/30 = 76 granted; not INV004.
        assert_eq!(figures_of(&r), (76, 76, 76, Some(83), 76, 49_400));
        assert!(codes(&r).is_empty());
    }

    #[test]
    fn inv005_a_line_verified_before_is_approved_zero_and_verifying_twice_gives_the_same_report() {
        let first = input(vec![line("L1", "O-1", 2010)]);
        let r1 = run(&first);
        let mut again = first.clone();
        again.already_verified = r1.lines.iter().map(|l| (r1.invoice_id.clone(), l.line_id.clone())).collect();
        let r2 = run(&again);
        assert_eq!(codes(&r2), vec!["INV001", "INV005"]);
        let (a, b) = (&r1.lines[0], &r2.lines[0]);
        assert_eq!(
            (a.invoiced_minutes, a.performed_minutes, a.granted_minutes, a.cap_minutes),
            (b.invoiced_minutes, b.performed_minutes, b.granted_minutes, b.cap_minutes),
            "the same figures"
        );
        assert_eq!((b.approved_minutes, b.approved_amount, r2.totals.payable_amount), (0, 0, 0), "nothing paid twice");
        assert_eq!(run(&again), r2, "deterministic");

        let mut other_invoice = first.clone();
        other_invoice.already_verified.insert(("INV-0".into(), "L1".into()));
        let r = run(&other_invoice);
        assert_eq!((codes(&r), r.lines[0].approved_minutes), (vec!["INV001"], 2000), "another invoice's L1");
    }

    #[test]
    fn inv006_under_delivery_is_reported_without_payment_change() {
        let mut i = input(vec![line("L1", "O-1", 1823)]);
        // 18 × 100 + 23 = 1823 < 0.80 × 2280 = 1824.
        let mut short = vec![100; 18];
        short.push(23);
        i.orders[0].visits = visits(&short);
        let r = run(&i);
        assert_eq!(codes(&r), vec!["INV006"]);
        assert_eq!(r.findings[0].order_id.as_deref(), Some("O-1"));
        assert_eq!(figures_of(&r), (1823, 1823, 2280, Some(2508), 1823, 1_184_950));

        short[18] = 24;
        i.orders[0].visits = visits(&short);
        i.invoice.lines = vec![line("L1", "O-1", 1824)];
        assert!(codes(&run(&i)).is_empty(), "exactly 80% is not under");
    }

    #[test]
    fn inv007_an_amount_off_by_more_than_a_krona_is_paid_at_the_contracted_rate() {
        // Contracted: 2000 × 650 = 1 300 000 öre.
        for (off, fires) in [(101, true), (100, false), (-100, false), (-101, true)] {
            let l = InvoiceLine { amount: 1_300_000 + off, ..line("L1", "O-1", 2000) };
            let r = run(&input(vec![l]));
            assert_eq!(codes(&r) == vec!["INV007"], fires, "off by {off} öre");
            assert_eq!((r.lines[0].contracted_amount, r.lines[0].approved_amount), (1_300_000, 1_300_000));
        }
    }

    #[test]
    fn proration_an_order_starting_on_the_17th_of_a_30_day_month() {
        let mut i = input(vec![line("L1", "O-1", 1064)]);
        i.orders[0].order.start_date = date(11, 17);
        i.orders[0].visits = visits(&[1064]);
        let r = run(&i);
        // Days 17-30: 14; 2280 × 14 / 30 = 1064; cap floor(1.10 × 1064) = floor(1170.4) = 1170.
        assert_eq!(figures_of(&r), (1064, 1064, 1064, Some(1170), 1064, 691_600));

        let mut one = input(vec![line("L1", "O-1", 467)]);
        one.orders[0].order.services = vec![service(1000)];
        one.orders[0].order.start_date = date(11, 17);
        one.orders[0].visits = visits(&[467]);
        // 1000 × 14 / 30 = 466.67 → 467.
        assert_eq!(run(&one).lines[0].granted_minutes, 467);
    }

    #[test]
    fn proration_a_decision_ending_mid_month_and_an_order_starting_late() {
        let mut i = input(vec![line("L1", "O-1", 760)]);
        i.orders[0].decision_valid_to = Some(date(11, 10));
        // Days 1-10: 2280 × 10 / 30 = 760.
        assert_eq!(run(&i).lines[0].granted_minutes, 760);
        i.orders[0].order.start_date = date(11, 5);
        i.orders[0].decision_valid_to = Some(date(11, 20));
        // Days 5-20 inside both: 16; 2280 × 16 / 30 = 1216.
        assert_eq!(run(&i).lines[0].granted_minutes, 1216);
        i.orders[0].decision_valid_from = date(11, 8);
        i.orders[0].order.end_date = Some(date(11, 18));
        // Days 8-18: 11; 2280 × 11 / 30 = 836.
        assert_eq!(run(&i).lines[0].granted_minutes, 836);
    }

    /// SPEC §4.4 by hand, in November 2026 (30 days), an order of 600 minutes a month.
    #[test]
    fn proration_follows_the_decisions_versions() {
        use carehub_model::{Pause, PauseReason, Revision};
        let mut i = input(vec![line("L1", "O-1", 0)]);
        i.orders[0].order.services = vec![service(600)];
        // Untouched: 600.
        assert_eq!(run(&i).lines[0].granted_minutes, 600);

        // A switch on the 17th: the old order ends on the 16th (16 days), the new one runs
        // from the 17th (14 days): 600 × 16 / 30 = 320 and 600 × 14 / 30 = 280.
        let mut old = i.clone();
        old.orders[0].order.end_date = Some(date(11, 16));
        assert_eq!(run(&old).lines[0].granted_minutes, 320);
        let mut new = i.clone();
        new.orders[0].order.start_date = date(11, 17);
        assert_eq!(run(&new).lines[0].granted_minutes, 280);

        // A pause from the 5th to the 12th: 8 days out, 22 active: 600 × 22 / 30 = 440.
        let mut paused = i.clone();
        paused.orders[0].order.pauses =
            vec![Pause { from: date(11, 5), to: date(11, 12), reason: PauseReason::HospitalStay, version: 1 }];
        let r = run(&paused);
        assert_eq!(r.lines[0].granted_minutes, 440);

        // Minutes raised to 900 from the 10th: days 1-9 at 600, 10-30 at 900:
        // (9 × 600 + 21 × 900) / 30 = 24300 / 30 = 810.
        let mut raised = i.clone();
        raised.orders[0].order.revisions =
            vec![Revision { from: date(11, 10), version: 1, services: vec![service(900)] }];
        assert_eq!(run(&raised).lines[0].granted_minutes, 810);

        // All three on one order: raised from the 10th, paused 5-12, ended by a switch on
        // the 16th: days 1-4 at 600 (2400) and 13-16 at 900 (3600): 6000 / 30 = 200.
        let mut all = raised.clone();
        all.orders[0].order.pauses = paused.orders[0].order.pauses.clone();
        all.orders[0].order.end_date = Some(date(11, 16));
        assert_eq!(run(&all).lines[0].granted_minutes, 200);
    }

    #[test]
    fn rounding_granted_halves_up_after_summing() {
        let mut i = input(vec![line("L1", "O-1", 2)]);
        i.orders[0].order.start_date = date(11, 30);
        i.orders[0].order.services = vec![service(45)];
        // 45 × 1 / 30 = 1.5 → 2.
        assert_eq!(run(&i).lines[0].granted_minutes, 2);
        i.orders[0].order.services = vec![service(44)];
        // 44 / 30 = 1.47 → 1.
        assert_eq!(run(&i).lines[0].granted_minutes, 1);
        i.orders[0].order.services = vec![service(15), service(15)];
        // 0.5 + 0.5 = 1.0 → 1 (rounding each first would give 2).
        assert_eq!(run(&i).lines[0].granted_minutes, 1);
    }

    #[test]
    fn rounding_performed_halves_up_after_summing() {
        let start = local(11, 2, 8, 0);
        let secs = chrono::Duration::seconds;
        let mut i = input(vec![line("L1", "O-1", 30)]);
        i.orders[0].visits = vec![performed(start, start + secs(630))];
        // 630 s = 10.5 min → 11.
        assert_eq!(run(&i).lines[0].performed_minutes, 11);
        i.orders[0].visits = vec![performed(start, start + secs(629))];
        // 629 s = 10.48 min → 10.
        assert_eq!(run(&i).lines[0].performed_minutes, 10);
        let next = local(11, 3, 8, 0);
        i.orders[0].visits = vec![performed(start, start + secs(615)), performed(next, next + secs(615))];
        // 1230 s = 20.5 min → 21 (rounding each 10.25 first would give 20).
        assert_eq!(run(&i).lines[0].performed_minutes, 21);
    }

    #[test]
    fn rounding_amount_halves_up() {
        let start = local(11, 2, 8, 0);
        let mut i = input(vec![InvoiceLine { amount: 651, ..line("L1", "O-1", 1) }]);
        i.orders[0].visits = vec![performed(start, start + chrono::Duration::minutes(1))];
        let mut p = policy();
        p.rates.insert(org(PROVIDER), Rates::flat(39_030));
        // 1 × 39030 / 60 = 650.5 → 651.
        assert_eq!(verify(&i, &p).expect("verified").lines[0].approved_amount, 651);
        p.rates.insert(org(PROVIDER), Rates::flat(39_029));
        // 39029 / 60 = 650.48 → 650.
        assert_eq!(verify(&i, &p).expect("verified").lines[0].approved_amount, 650);
    }

    #[test]
    fn month_boundary_a_visit_belongs_to_the_month_of_its_check_in() {
        let mut i = input(vec![line("L1", "O-1", 60)]);
        // 30 November 23:30 to 1 December 00:30.
        i.orders[0].visits = vec![performed(local(11, 30, 23, 30), local(12, 1, 0, 30))];
        let r = run(&i);
        assert_eq!((r.lines[0].performed_minutes, r.lines[0].approved_minutes), (60, 60), "all 60 minutes in November");

        i.invoice.period = Month::new(2026, 12).expect("month");
        let r = run(&i);
        // December: granted 2280 × 31/31, nothing performed, INV001 and INV006.
        assert_eq!((r.lines[0].performed_minutes, r.lines[0].approved_minutes), (0, 0), "none of it in December");
        assert_eq!(codes(&r), vec!["INV001", "INV006"]);
    }

    #[test]
    fn a_visit_across_the_autumn_clock_change_counts_real_time() {
        let mut i = input(vec![line("L1", "O-1", 120)]);
        i.invoice.period = Month::new(2026, 10).expect("month");
        i.orders[0].order.start_date = date(10, 1);
        i.orders[0].decision_valid_from = date(10, 1);
        // 25 October 01:30 CEST (23:30 UTC) to 02:30 CET (01:30 UTC): two real hours.
        let from = Utc.with_ymd_and_hms(2026, 10, 24, 23, 30, 0).single().expect("time");
        i.orders[0].visits = vec![performed(from, from + chrono::Duration::hours(2))];
        let mut p = policy();
        p.rates.insert(org(PROVIDER), bands());
        let r = verify(&i, &p).expect("verified");
        // A Sunday, so all weekend time: 120 × 48000 / 60 = 96 000.
        assert_eq!((r.lines[0].performed_minutes, r.lines[0].approved_amount), (120, 96_000));
    }

    /// Day 07-22 390 kr/h, evening 22-23 450 kr/h, night 23-07 520 kr/h, weekend 480 kr/h.
    fn bands() -> Rates {
        let t = |h| NaiveTime::from_hms_opt(h, 0, 0).expect("time");
        Rates {
            day: RATE,
            bands: vec![
                Band { kind: BandKind::Weekend, from: t(0), to: t(0), rate: 48_000 },
                Band { kind: BandKind::Day, from: t(7), to: t(22), rate: 39_000 },
                Band { kind: BandKind::Evening, from: t(22), to: t(23), rate: 45_000 },
                Band { kind: BandKind::Night, from: t(23), to: t(7), rate: 52_000 },
            ],
        }
    }

    fn banded(visit: VisitEvidence, minutes: i64, amount: i64) -> VerificationReport {
        let mut i = input(vec![InvoiceLine { amount, ..line("L1", "O-1", minutes) }]);
        i.orders[0].visits = vec![visit];
        let mut p = policy();
        p.rates.insert(org(PROVIDER), bands());
        verify(&i, &p).expect("verified")
    }

    fn band_split(r: &VerificationReport) -> Vec<(BandKind, i64, i64)> {
        r.lines[0].bands.iter().map(|b| (b.band, b.performed_seconds, b.amount)).collect()
    }

    #[test]
    fn time_bands_split_a_visit_by_the_clock() {
        // Monday 2 November 21:30-22:30: 30 min day (650 öre/min), 30 min evening (750 öre/min):
        // 19 500 + 22 500 = 42 000.
        let r = banded(performed(local(11, 2, 21, 30), local(11, 2, 22, 30)), 60, 42_000);
        assert_eq!(r.lines[0].approved_amount, 42_000);
        assert_eq!(band_split(&r), vec![(BandKind::Day, 1800, 19_500), (BandKind::Evening, 1800, 22_500)]);
        assert!(!codes(&r).contains(&"INV007"), "the provider's banded amount matches");

        // 45 of the 60 minutes invoiced, spread in proportion: 45 × (30×650 + 30×750)/60 = 45 × 700
        // = 31 500; day 45 × 325 = 14 625, evening 45 × 375 = 16 875.
        let r = banded(performed(local(11, 2, 21, 30), local(11, 2, 22, 30)), 45, 31_500);
        assert_eq!((r.lines[0].approved_minutes, r.lines[0].approved_amount), (45, 31_500));
        assert_eq!(band_split(&r), vec![(BandKind::Day, 1800, 14_625), (BandKind::Evening, 1800, 16_875)]);
    }

    #[test]
    fn time_bands_round_the_total_once_and_the_parts_add_up() {
        // 21:50-22:20: 10 min day, 20 min evening; 1 minute invoiced:
        // (10×650 + 20×750) / 30 = 716.67 → 717. Day 600 × 39000 / 108000 = 216.67, evening
        // 1200 × 45000 / 108000 = 500.00: floors 216 + 500 = 716, the öre left goes to the day
        // (remainder .67): 217 + 500 = 717.
        let r = banded(performed(local(11, 2, 21, 50), local(11, 2, 22, 20)), 1, 717);
        assert_eq!(r.lines[0].approved_amount, 717);
        assert_eq!(band_split(&r), vec![(BandKind::Day, 600, 217), (BandKind::Evening, 1200, 500)]);
    }

    #[test]
    fn time_bands_weekend_and_night() {
        // Saturday 7 November 10:00-11:00: weekend, 60 × 800 = 48 000.
        let r = banded(performed(local(11, 7, 10, 0), local(11, 7, 11, 0)), 60, 48_000);
        assert_eq!(band_split(&r), vec![(BandKind::Weekend, 3600, 48_000)]);
        // The same hour on Monday 9 November is day time: 60 × 650 = 39 000.
        let r = banded(performed(local(11, 9, 10, 0), local(11, 9, 11, 0)), 60, 39_000);
        assert_eq!(band_split(&r), vec![(BandKind::Day, 3600, 39_000)]);
        // Sunday 8 November 23:30 to Monday 00:30: 30 min weekend (800/min) = 24 000, 30 min night
        // (866.67/min) = 26 000.
        let r = banded(performed(local(11, 8, 23, 30), local(11, 9, 0, 30)), 60, 50_000);
        assert_eq!(band_split(&r), vec![(BandKind::Weekend, 1800, 24_000), (BandKind::Night, 1800, 26_000)]);
        assert_eq!(r.lines[0].approved_amount, 50_000);
    }

    #[test]
    fn policy_declined_visits_paid_or_not() {
        let mut i = input(vec![line("L1", "O-1", 2045)]);
        let start = local(11, 28, 9, 0);
        let mut declined = performed(start, start + chrono::Duration::minutes(2));
        declined.outcome = VisitOutcome::DeclinedAtDoor;
        declined.validation = Outcome::Flagged;
        declined.planned_minutes = Some(45);
        let mut cancelled = declined.clone();
        cancelled.outcome = VisitOutcome::CancelledInAdvance;
        let mut rejected = performed(local(11, 29, 9, 0), local(11, 29, 10, 0));
        rejected.validation = Outcome::Rejected;
        i.orders[0].visits.extend([declined, cancelled, rejected]);

        // Not paid: 2000 (the declined visit's 2 minutes at the door count 0 too).
        let r = run(&i);
        assert_eq!((r.lines[0].performed_minutes, r.lines[0].approved_minutes), (2000, 2000));
        assert_eq!(codes(&r), vec!["INV001"]);

        let mut p = policy();
        p.declined_visits_paid = true;
        let r = verify(&i, &p).expect("verified");
        // Paid: 2000 + its planned 45 = 2045; cancelled and rejected still 0.
        assert_eq!((r.lines[0].performed_minutes, r.lines[0].approved_minutes), (2045, 2045));
        assert!(codes(&r).is_empty());
    }

    #[test]
    fn policy_tolerance_one_point_ten_or_one() {
        let mut i = input(vec![line("L1", "O-1", 2400)]);
        i.orders[0].visits = visits(&[100; 26]);
        // 1.10: cap 2508, min(2400, 2600, 2508) = 2400.
        let r = run(&i);
        assert_eq!((r.lines[0].cap_minutes, r.lines[0].approved_minutes), (Some(2508), 2400));
        assert!(codes(&r).is_empty());
        let mut p = policy();
        p.tolerance = "1.00".parse().expect("ratio");
        let r = verify(&i, &p).expect("verified");
        // 1.00: cap 2280, approved 2280 = 1 482 000 öre.
        assert_eq!(
            (r.lines[0].cap_minutes, r.lines[0].approved_minutes, r.lines[0].approved_amount),
            (Some(2280), 2280, 1_482_000)
        );
        assert_eq!(codes(&r), vec!["INV002"]);
    }

    #[test]
    fn a_credit_note_reduces_invoiced_minutes() {
        let mut i = input(vec![line("L1", "O-1", 2100)]);
        let credit = |id: &str, period: Month, order: &str| Invoice {
            id: id.into(),
            provider: org(PROVIDER),
            kind: InvoiceKind::CreditNote,
            period,
            lines: vec![line("C1", order, 500)],
        };
        i.credit_notes = vec![
            credit("CN-1", nov(), "O-1"),
            credit("CN-2", Month::new(2026, 10).expect("month"), "O-1"),
            credit("CN-3", nov(), "O-2"),
        ];
        let r = run(&i);
        // 2100 - 500 (only CN-1: CN-2 is October's, CN-3 another order's) = 1600.
        assert_eq!(figures_of(&r), (1600, 2000, 2280, Some(2508), 1600, 1_040_000));
        assert_eq!(r.lines[0].credited_minutes, 500);
        assert!(codes(&r).is_empty(), "2100 alone would be INV001; net of the credit it is not");

        // A credit note verified on its own pays nothing.
        let mut cn = input(vec![line("C1", "O-1", 500)]);
        cn.invoice.kind = InvoiceKind::CreditNote;
        let r = run(&cn);
        assert_eq!((r.lines[0].line_minutes, r.lines[0].invoiced_minutes, r.totals.approved_amount), (-500, -500, 0));
    }

    #[test]
    fn plan_compensation_for_a_plan_on_time_in_the_month_of_the_notice() {
        let mut i = input(vec![line("L1", "O-1", 2000)]);
        let mut unclaimed = order("O-2");
        unclaimed.plan_notice = Some(PlanNoticeFacts {
            established_on: date(11, 12),
            arrived_at: local(11, 15, 23, 59),
            compensated_before: false,
        });
        i.orders.push(unclaimed);
        let r = run(&i);
        // Due 15 November, arrived that evening: 120 × 39000 / 60 = 78 000 öre, though no line claims it.
        assert_eq!(r.plan_compensation.len(), 1);
        let p = &r.plan_compensation[0];
        assert_eq!((p.order_id.as_str(), p.minutes, p.amount, p.already_paid), ("O-2", 120, 78_000, false));
        assert_eq!(r.totals.payable_amount, 1_300_000 + 78_000);

        let late = |i: &mut VerificationInput| {
            i.orders[1].plan_notice.as_mut().expect("notice").arrived_at = local(11, 16, 0, 1);
        };
        let mut late_input = i.clone();
        late(&mut late_input);
        assert!(run(&late_input).plan_compensation.is_empty(), "arrived a day late");

        let mut october = i.clone();
        october.orders[1].plan_notice.as_mut().expect("notice").arrived_at = local(10, 30, 12, 0);
        assert!(run(&october).plan_compensation.is_empty(), "belongs to October's report");

        let mut paid = i.clone();
        paid.orders[1].plan_notice.as_mut().expect("notice").compensated_before = true;
        let r = run(&paid);
        assert_eq!((r.plan_compensation[0].already_paid, r.totals.plan_compensation_amount), (true, 0));
    }

    #[test]
    fn several_lines_for_one_order_share_its_figures() {
        let r = run(&input(vec![line("L1", "O-1", 1500), line("L2", "O-1", 600)]));
        // invoiced 2100 > performed 2000: approved 2000 → L1 1500, L2 500.
        let approved: Vec<i64> = r.lines.iter().map(|l| l.approved_minutes).collect();
        assert_eq!(approved, vec![1500, 500]);
        assert_eq!(codes(&r), vec!["INV001"]);
        assert_eq!(r.totals.approved_amount, 1_300_000);
    }

    #[test]
    fn the_report_serializes_with_stable_codes() {
        let r = run(&input(vec![line("L1", "O-1", 2010)]));
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["month"], "2026-11");
        assert_eq!(json["kind"], "invoice");
        assert_eq!(json["lines"][0]["findings"][0]["code"], "INV001");
        assert_eq!(json["lines"][0]["approved_amount"], 1_300_000);
    }

    #[test]
    fn a_provider_without_a_rate_is_an_error_and_ratios_parse_exactly() {
        let i = input(vec![line("L1", "O-1", 2000)]);
        assert_eq!(verify(&i, &Policy::default()), Err(VerifyError::NoRate(org(PROVIDER))));
        let r: Ratio = "1.10".parse().expect("ratio");
        assert_eq!((r.floor_mul(2280), r.to_string()), (2508, "1.10".to_owned()));
        assert_eq!(
            (Ratio::percent(80).to_string(), Ratio::new(2, 3).map(|r| r.to_string())),
            ("0.80".into(), Some("2/3".into()))
        );
        assert!("1,10".parse::<Ratio>().is_err() && "-1".parse::<Ratio>().is_err() && ".5".parse::<Ratio>().is_err());
    }
}
