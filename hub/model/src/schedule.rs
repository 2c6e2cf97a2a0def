//! An order's days after its decision has changed (SPEC §4.4, §7): when it runs, with which
//! minutes, and when it pauses.
//!
//! An order keeps the services it was placed with; each later version of its decision that
//! changes them adds a [`Revision`] from a day on, and each pause a [`Pause`]. Granted time
//! is then prorated day by day: a day inside the order's dates (and its decision's) and in
//! no pause is active, and adds the minutes per month of the services in force that day.
//! Summed over the month and divided by its days once, it is SPEC §7's figure for an order
//! that never changed, and each version's share for one that did.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::month::Month;
use crate::service::Service;

/// Why help pauses for a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    HospitalStay,
    /// Short-term care (korttidsboende).
    ShortTermCare,
    Travel,
    Other,
}

/// Why a provider's order ends: the decision ended, or the client chose another provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEndReason {
    MovedToResidentialCare,
    Died,
    DeclinedFurtherHelp,
    /// The client chose another provider (LOV) from the day after the order's end.
    ProviderSwitch,
    Other,
}

/// The services of an order from a day on, from a version of its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    #[serde(deserialize_with = "crate::time::date")]
    pub from: NaiveDate,
    /// The decision's version it comes from.
    pub version: u32,
    pub services: Vec<Service>,
}

/// Days with no help: from `from` to `to`, both included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    #[serde(deserialize_with = "crate::time::date")]
    pub from: NaiveDate,
    #[serde(deserialize_with = "crate::time::date")]
    pub to: NaiveDate,
    pub reason: PauseReason,
    /// The decision's version it comes from.
    pub version: u32,
}

impl Pause {
    pub fn covers(&self, day: NaiveDate) -> bool {
        self.from <= day && day <= self.to
    }
}

/// An order's days, borrowed from the order (or from a row that carries the same fields).
#[derive(Debug, Clone, Copy)]
pub struct Schedule<'a> {
    pub start: NaiveDate,
    /// The last day, included.
    pub end: Option<NaiveDate>,
    /// The services the order was placed with.
    pub services: &'a [Service],
    pub revisions: &'a [Revision],
    pub pauses: &'a [Pause],
}

/// An order's share of a month: its active days, and the minutes per month in force summed
/// over them (granted = `minute_days / days in the month`, rounded once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MonthShare {
    pub active_days: i64,
    pub minute_days: i64,
}

impl Schedule<'_> {
    /// Inside the order's dates and in no pause.
    pub fn active_on(&self, day: NaiveDate) -> bool {
        day >= self.start && self.end.is_none_or(|e| day <= e) && !self.pauses.iter().any(|p| p.covers(day))
    }

    /// The services in force on `day`: those of the latest version that applies by then (a
    /// later version overrides an earlier one, whichever day each starts on).
    pub fn services_on(&self, day: NaiveDate) -> &[Service] {
        self.revisions
            .iter()
            .filter(|r| r.from <= day)
            .max_by_key(|r| r.version)
            .map_or(self.services, |r| r.services.as_slice())
    }

    /// The minutes per month in force on `day`, all services summed.
    pub fn minutes_on(&self, day: NaiveDate) -> i64 {
        self.services_on(day).iter().map(|s| i64::from(s.minutes_per_month)).sum()
    }

    /// The order's share of `month`, counting only days also inside the decision's validity
    /// (`valid_from..=valid_to`).
    pub fn share(&self, month: Month, valid_from: NaiveDate, valid_to: Option<NaiveDate>) -> MonthShare {
        let from = month.first_day().max(self.start).max(valid_from);
        let Some(to) = [Some(month.last_day()), self.end, valid_to].into_iter().flatten().min() else {
            return MonthShare::default();
        };
        let mut share = MonthShare::default();
        let simple = self.revisions.is_empty() && self.pauses.is_empty();
        if simple {
            if to >= from {
                share.active_days = (to - from).num_days() + 1;
                share.minute_days = share.active_days * self.minutes_on(from);
            }
            return share;
        }
        for day in from.iter_days().take_while(|d| *d <= to) {
            if !self.pauses.iter().any(|p| p.covers(day)) {
                share.active_days += 1;
                share.minute_days += self.minutes_on(day);
            }
        }
        share
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ServiceCategory;

    fn d(s: &str) -> NaiveDate {
        s.parse().expect("date")
    }

    fn svc(minutes: u32) -> Vec<Service> {
        vec![Service { code: "PO".into(), category: ServiceCategory::PersonalCare, minutes_per_month: minutes }]
    }

    #[test]
    fn a_later_version_overrides_whatever_day_it_starts() {
        let base = svc(300);
        let revisions = vec![
            Revision { from: d("2026-11-20"), version: 1, services: svc(600) },
            Revision { from: d("2026-11-10"), version: 2, services: svc(450) },
        ];
        let s = Schedule { start: d("2026-11-01"), end: None, services: &base, revisions: &revisions, pauses: &[] };
        assert_eq!(s.minutes_on(d("2026-11-09")), 300);
        assert_eq!(s.minutes_on(d("2026-11-10")), 450);
        assert_eq!(s.minutes_on(d("2026-11-25")), 450);
    }

    #[test]
    fn paused_days_are_not_active_and_the_edges_are_inside() {
        let base = svc(300);
        let pauses =
            vec![Pause { from: d("2026-11-05"), to: d("2026-11-12"), reason: PauseReason::HospitalStay, version: 1 }];
        let s = Schedule { start: d("2026-11-01"), end: None, services: &base, revisions: &[], pauses: &pauses };
        assert!(s.active_on(d("2026-11-04")));
        assert!(!s.active_on(d("2026-11-05")));
        assert!(!s.active_on(d("2026-11-12")));
        assert!(s.active_on(d("2026-11-13")));
        let month = Month::of(d("2026-11-01"));
        assert_eq!(s.share(month, d("2026-01-01"), None), MonthShare { active_days: 22, minute_days: 22 * 300 });
    }
}
