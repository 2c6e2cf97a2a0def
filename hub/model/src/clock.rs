//! The hub's clock: the one place that reads the time of day.
//!
//! Every "now" the hub works with (received-at stamps, deadlines, "today", the visit rules'
//! future and open-visit checks, token lifetimes, the demo's month) comes from a [`Clock`]
//! handed down from where the hub is assembled. In production it is the system clock; tests,
//! the demo and the mock hub start it at an instant of their choosing, so they run on any
//! date as if it were any other, and a test written in November passes in March and on the
//! night the clocks change.
//!
//! A clock set to an instant still ticks (it keeps the real time that has passed since it
//! was set), because retries, leases and backoff need time to pass; a frozen clock does not,
//! for pure unit tests. Either can be set again or advanced, for all its clones at once.
//!
//! Elapsed durations for timeouts and benchmarks are not domain time: they use
//! `std::time::Instant` directly.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};

/// Where "now" comes from. Cheap to clone: clones share their setting.
#[derive(Clone)]
pub struct Clock(Arc<Source>);

enum Source {
    System,
    Set(Mutex<Setting>),
}

#[derive(Clone, Copy)]
struct Setting {
    /// The instant the clock was set to.
    at: DateTime<Utc>,
    /// When it was set, if it ticks from there.
    since: Option<Instant>,
}

impl Clock {
    /// The system clock, for production.
    pub fn system() -> Clock {
        Clock(Arc::new(Source::System))
    }

    /// A clock that reads `at` now and ticks on in real time from there.
    pub fn starting_at(at: DateTime<Utc>) -> Clock {
        Clock(Arc::new(Source::Set(Mutex::new(Setting { at, since: Some(Instant::now()) }))))
    }

    /// A clock that reads `at` until it is set or advanced.
    pub fn frozen(at: DateTime<Utc>) -> Clock {
        Clock(Arc::new(Source::Set(Mutex::new(Setting { at, since: None }))))
    }

    /// Whether this is the system clock.
    pub fn is_system(&self) -> bool {
        matches!(*self.0, Source::System)
    }

    /// The current instant.
    pub fn now(&self) -> DateTime<Utc> {
        match &*self.0 {
            Source::System => Utc::now(),
            Source::Set(setting) => {
                let s = *setting.lock().unwrap_or_else(PoisonError::into_inner);
                match s.since {
                    None => s.at,
                    Some(since) => {
                        s.at + chrono::Duration::from_std(since.elapsed()).unwrap_or(chrono::Duration::zero())
                    }
                }
            }
        }
    }

    /// Today in the municipality's calendar (Europe/Stockholm).
    pub fn today(&self) -> NaiveDate {
        crate::local_date(self.now())
    }

    /// Sets the clock to read `at` from now on (ticking on if it ticked). The system clock
    /// cannot be set: it answers `false`.
    pub fn set(&self, at: DateTime<Utc>) -> bool {
        match &*self.0 {
            Source::System => false,
            Source::Set(setting) => {
                let mut s = setting.lock().unwrap_or_else(PoisonError::into_inner);
                s.at = at;
                if s.since.is_some() {
                    s.since = Some(Instant::now());
                }
                true
            }
        }
    }

    /// Moves the clock forward (or back, for a negative duration). The system clock
    /// cannot be moved: it answers `false`.
    pub fn advance(&self, by: chrono::Duration) -> bool {
        let now = self.now();
        self.set(now + by)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            Source::System => f.write_str("Clock(system)"),
            Source::Set(_) => write!(f, "Clock(set, now {})", self.now()),
        }
    }
}

/// Today by the system clock, for the few pure functions that have no hub clock to ask
/// (the century of a 10-digit personal identity number given without a reference date).
pub fn system_today() -> NaiveDate {
    crate::local_date(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_frozen_clock_reads_what_it_was_set_to_and_moves_only_when_told() {
        let at = Utc.with_ymd_and_hms(2027, 2, 28, 22, 30, 0).single().expect("instant");
        let clock = Clock::frozen(at);
        assert_eq!(clock.now(), at);
        // 23:30 in Stockholm on the 28th: still February there.
        assert_eq!(clock.today(), NaiveDate::from_ymd_opt(2027, 2, 28).expect("date"));
        assert!(clock.advance(chrono::Duration::hours(1)));
        assert_eq!(clock.today(), NaiveDate::from_ymd_opt(2027, 3, 1).expect("date"));
        let copy = clock.clone();
        assert!(copy.set(at));
        assert_eq!(clock.now(), at, "clones share the setting");
    }

    #[test]
    fn a_started_clock_ticks_from_its_instant() {
        let at = Utc.with_ymd_and_hms(2027, 3, 28, 0, 59, 0).single().expect("instant");
        let clock = Clock::starting_at(at);
        let first = clock.now();
        assert!(first >= at && first - at < chrono::Duration::seconds(5));
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(clock.now() > first);
        assert!(!Clock::system().set(at), "the system clock is not settable");
    }
}
