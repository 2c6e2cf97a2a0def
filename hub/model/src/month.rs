//! A calendar month, the period of invoices, verification, closing and follow-up.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Serialize, Serializer};

/// A calendar month in the municipality's time zone. Serialized as `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    first: NaiveDate,
}

impl Month {
    /// The month, if `month` is 1-12 and the year in chrono's range.
    pub fn new(year: i32, month: u32) -> Option<Month> {
        NaiveDate::from_ymd_opt(year, month, 1).map(|first| Month { first })
    }

    /// The month a date falls in.
    pub fn of(date: NaiveDate) -> Month {
        Month { first: date.with_day(1).unwrap_or(date) }
    }

    /// The month an instant falls in, in the municipality's time zone.
    pub fn of_instant(at: DateTime<Utc>) -> Month {
        Month::of(crate::local_date(at))
    }

    pub fn year(self) -> i32 {
        self.first.year()
    }

    pub fn month(self) -> u32 {
        self.first.month()
    }

    pub fn first_day(self) -> NaiveDate {
        self.first
    }

    pub fn last_day(self) -> NaiveDate {
        self.first.checked_add_months(chrono::Months::new(1)).and_then(|d| d.pred_opt()).unwrap_or(NaiveDate::MAX)
    }

    /// The number of days in the month (28-31).
    pub fn days(self) -> i64 {
        (self.last_day() - self.first).num_days() + 1
    }

    pub fn contains(self, date: NaiveDate) -> bool {
        self.first <= date && date <= self.last_day()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

impl Serialize for Month {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
