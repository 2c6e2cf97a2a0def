//! carehub's canonical model.
//!
//! Every vendor payload is translated into these types on the way in and out of them on the
//! way out, so the rest of the hub speaks one language. The crate is pure: serde and
//! validation, no IO; the time of day only through [`Clock`], which callers hand down.
//!
//! Identifiers are validated when they are constructed (parse, don't validate): a
//! [`PersonalIdentityNumber`] that exists is a valid one, normalised to 12 digits. Invalid
//! input is a [`ValidationError`] with a stable [`ErrorCode`]. Personal identity numbers
//! print as `**REDACTED**` in `Debug` and `Display`, so they cannot leak into operational
//! logs by accident; [`PersonalIdentityNumber::expose`] is the one way to the digits.
//!
//! # Layout
//! - [`clock`]: the hub's [`Clock`], the one place "now" is read.
//! - [`error`]: the stable error codes and [`ValidationError`].
//! - [`id`]: personal identity numbers, organisation numbers, HSA-ids, NFC tag UIDs, source ids.
//! - [`secret`]: configuration secrets that print as `**REDACTED**`.
//! - [`service`]: the services a decision grants (a leaf the others name).
//! - [`message`]: decisions, orders, acknowledgements, plan notices and the [`Message`] enum.
//! - [`life`]: a decision's life after its first version: its changes, the order changes and
//!   ends they send providers, and the deviations and changes of need providers report back.
//! - [`time`]: fast readers of canonical dates and instants for the messages' serde fields.
//! - [`schedule`]: an order's days after its decision changed: services revised from a day,
//!   pauses, and the month's share granted time is prorated over.
//! - [`month`]: [`Month`], the calendar month invoices, verification and follow-up are about.
//! - [`status`]: where a message ([`LogStatus`]), an order ([`OrderStatus`]) and a delivery
//!   ([`DeliveryState`]) and a visit's validation ([`ValidationOutcome`]) stand, as closed
//!   sets with their stored text.

pub mod clock;
pub mod error;
pub mod id;
pub mod life;
pub mod message;
pub mod month;
pub mod schedule;
pub mod secret;
pub mod service;
pub mod status;
pub mod time;

use chrono::{DateTime, NaiveDate, Utc};

/// The municipality's time zone (SPEC §7): vendors' times without an offset are read in
/// it, deadlines count its days, months are its calendar months.
pub const MUNICIPAL_TZ: chrono_tz::Tz = chrono_tz::Europe::Stockholm;

/// The municipality's calendar date at an instant.
pub fn local_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&MUNICIPAL_TZ).date_naive()
}

pub use clock::Clock;
pub use error::{ErrorCode, ValidationError};
pub use id::{HsaId, OrgNumber, PersonalIdentityNumber, SourceId, TagUid};
pub use life::*;
pub use message::*;
pub use month::Month;
pub use schedule::{MonthShare, OrderEndReason, Pause, PauseReason, Revision, Schedule};
pub use secret::Secret;
pub use status::{DeliveryState, LogStatus, OrderStatus, UnknownStatus, ValidationOutcome};
