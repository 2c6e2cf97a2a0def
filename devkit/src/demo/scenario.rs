//! The demo's cast and calendar: the providers it plays, the clients its decisions name,
//! the month it plays and how it writes times. Apart from the steps so that the demo's
//! sections ([`super`], [`super::visits`]) draw on one scenario without importing each
//! other.

use chrono::{DateTime, Datelike, Days, Months, NaiveDate, NaiveTime, TimeZone, Utc};

/// A provider the demo plays.
pub(super) struct Provider {
    pub(super) org: &'static str,
    pub(super) name: &'static str,
    pub(super) system: &'static str,
    pub(super) decisions: usize,
    /// Its staff ids are `<staff>-sNN`.
    pub(super) staff: &'static str,
    /// One visit in this many is registered by hand (with a reason).
    pub(super) manual_every: usize,
}

/// The contracted rate of the demo's providers, kronor per hour (Södertälje's).
pub(super) const DEMO_RATE_KR: u32 = 390;

/// The provider whose orders go to ParaGå over SFTP.
pub(super) const SFTP_PROVIDER: &str = "5599000030";

/// The providers with a contract in Ekerö, on the two Phoniro systems.
pub(super) const PROVIDERS: &[Provider] = &[
    Provider {
        org: "5599000014",
        name: "Hemtjänst Norr AB",
        system: "phoniro-norr",
        decisions: 16,
        staff: "norr",
        manual_every: 6,
    },
    Provider {
        org: "5566778899",
        name: "Omsorgshuset i Ekerö AB",
        system: "phoniro-norr",
        decisions: 12,
        staff: "ekero",
        manual_every: 25,
    },
    Provider {
        org: "5560123456",
        name: "Södra Vård & Omsorg AB",
        system: "phoniro-soder",
        decisions: 8,
        staff: "soder",
        manual_every: 30,
    },
];

/// Clients: Skatteverket's test numbers (shipped in `data/`), people born 1925-1945.
pub(super) fn clients() -> Vec<&'static str> {
    include_str!("../../../data/skatteverket-testpersonnummer.txt")
        .lines()
        .filter(|l| l.len() == 12 && ("1925".."1946").contains(&&l[..4]))
        .step_by(7)
        .collect()
}

/// The calendar month the demo plays: the last complete one before the day it is run for
/// (Stockholm). The hub's clock is set to its first morning and moved forward through it to
/// the fifth of the next month. The demo's decisions are valid from its first day and
/// decided on its first three, so their orders are active over the whole month unless a
/// later version says otherwise.
#[derive(Debug, Clone, Copy)]
pub(super) struct PlayedMonth {
    pub(super) first: NaiveDate,
    pub(super) last: NaiveDate,
}

impl PlayedMonth {
    pub(super) fn before(today: NaiveDate) -> PlayedMonth {
        let this = today.with_day(1).unwrap_or(today);
        let last = this.pred_opt().unwrap_or(this);
        PlayedMonth { first: last.with_day(1).unwrap_or(last), last }
    }

    /// `YYYY-MM`, as the API wants it.
    pub(super) fn label(&self) -> String {
        self.first.format("%Y-%m").to_string()
    }

    pub(super) fn days(&self) -> impl Iterator<Item = NaiveDate> {
        let last = self.last;
        self.first.iter_days().take_while(move |d| *d <= last)
    }

    /// A decision's last valid day: a year on.
    pub(super) fn valid_to(&self) -> NaiveDate {
        self.first.checked_add_months(Months::new(12)).and_then(|d| d.pred_opt()).unwrap_or(self.last)
    }

    /// When the demo's first decisions were made: 09:00 on the first day, Stockholm time.
    pub(super) fn decided_at(&self) -> String {
        self.decided_at_on(1)
    }

    /// 09:00 on the `n`th day, Stockholm time, as Combine writes a decision's time.
    pub(super) fn decided_at_on(&self, n: u64) -> String {
        rfc3339(stockholm(self.day(n), 9 * 60))
    }

    /// The `n`th day of the next month (the demo ends on its fifth, when invoices are due).
    pub(super) fn next(&self, n: u64) -> NaiveDate {
        self.last.checked_add_days(Days::new(n)).unwrap_or(self.last)
    }

    /// Its number of days.
    pub(super) fn len(&self) -> i64 {
        (self.last - self.first).num_days() + 1
    }

    /// The `n`th day of the month (1-based), or its last.
    pub(super) fn day(&self, n: u64) -> NaiveDate {
        self.first.checked_add_days(Days::new(n.saturating_sub(1))).filter(|d| *d <= self.last).unwrap_or(self.last)
    }
}

/// A Stockholm wall-clock time (minutes after midnight on `day`) as an instant.
pub(super) fn stockholm(day: NaiveDate, minutes: i64) -> DateTime<Utc> {
    let local = day.and_time(NaiveTime::MIN) + chrono::Duration::minutes(minutes);
    carehub_model::MUNICIPAL_TZ
        .from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc.from_utc_datetime(&local))
}

/// RFC 3339 with Stockholm's offset, as Phoniro and Combine write times.
pub(super) fn rfc3339(at: DateTime<Utc>) -> String {
    at.with_timezone(&carehub_model::MUNICIPAL_TZ).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// Visits per page of the mock Phoniro feed (the hub asks for this many).
pub(super) const FEED_PAGE: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_month_is_the_last_complete_one() {
        let month = |y, m, d| PlayedMonth::before(NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default());
        let nov = month(2026, 11, 22);
        assert_eq!(
            (nov.first.to_string(), nov.last.to_string(), nov.label()),
            ("2026-10-01".into(), "2026-10-31".into(), "2026-10".into())
        );
        assert_eq!(month(2027, 1, 1).label(), "2026-12");
        assert_eq!(month(2028, 3, 31).last.to_string(), "2028-02-29");
        assert_eq!(nov.decided_at(), "2026-10-01T09:00:00+02:00");
        assert_eq!(month(2027, 1, 5).decided_at(), "2026-12-01T09:00:00+01:00");
        assert_eq!(nov.valid_to().to_string(), "2027-09-30");
        assert_eq!(nov.decided_at_on(3), "2026-10-03T09:00:00+02:00");
        assert_eq!((nov.next(5).to_string(), nov.len()), ("2026-11-05".into(), 31));
        let feb = month(2028, 3, 1);
        assert_eq!(
            (feb.next(1).to_string(), feb.len(), feb.day(31).to_string()),
            ("2028-03-01".into(), 29, "2028-02-29".into())
        );
    }
}
