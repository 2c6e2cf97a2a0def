//! Where a message, an order, a delivery and a visit's validation stand: closed sets, stored
//! and shown as text.
//!
//! Each enum's text ([`as_str`](LogStatus::as_str), and its serde form) is what the store
//! keeps and the API shows, and for [`LogStatus`] part of what the message log hashes, so a
//! variant's text never changes. [`FromStr`] reads the text back and refuses anything else.

use std::fmt;
use std::str::FromStr;

/// A status's text that names none of its enum's variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind}: {text:?}")]
pub struct UnknownStatus {
    /// Which enum was read (`log status`, `order status`, `delivery state`).
    pub kind: &'static str,
    pub text: String,
}

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $kind:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (and shown) text.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownStatus { kind: $kind, text: s.to_owned() }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

text_enum! {
    /// What became of a message, as its log entry says.
    LogStatus, "log status" {
        /// An inbound message the hub took.
        Accepted => "accepted",
        /// An inbound message the hub refused, with its error code.
        Rejected => "rejected",
        /// An inbound message the hub had already taken.
        Duplicate => "duplicate",
        /// An inbound version of a decision older than the latest the hub holds: logged,
        /// answered with `STALE_VERSION`, and it changes nothing.
        Stale => "stale",
        /// An outbound message written to the outbox.
        Queued => "queued",
        /// A delivery attempt the receiver acknowledged.
        Delivered => "delivered",
        /// A delivery attempt that failed and will be retried.
        Retrying => "retrying",
        /// A delivery given up on (attempts exhausted or a permanent error).
        DeadLetter => "dead_letter",
        /// A dead letter put back in the outbox by `carehub replay`.
        Requeued => "requeued",
    }
}

text_enum! {
    /// Where an order stands.
    OrderStatus, "order status" {
        /// In the outbox, not yet delivered.
        Queued => "queued",
        /// Delivered to the provider's system, not yet answered.
        Delivered => "delivered",
        /// Given up on: its delivery is a dead letter.
        DeadLetter => "dead_letter",
        /// The provider accepted it.
        Accepted => "accepted",
        /// The provider rejected it.
        Rejected => "rejected",
    }
}

text_enum! {
    /// Where a row of the outbox stands.
    DeliveryState, "delivery state" {
        /// Waiting for its next attempt.
        Pending => "pending",
        /// Acknowledged by the receiver.
        Delivered => "delivered",
        /// Given up on; `carehub replay` can put it back.
        Dead => "dead",
    }
}

text_enum! {
    /// What validation made of a visit (SPEC §6); the strongest of its findings wins, so
    /// the order of the variants is their strength.
    ValidationOutcome, "validation outcome" {
        Accepted => "accepted",
        /// Counts, but is shown: a manual registration, an unknown tag, a declined visit.
        Flagged => "flagged",
        /// Does not count; stored with its codes.
        Rejected => "rejected",
    }
}

impl ValidationOutcome {
    /// The outcome of a stored text; anything else reads as rejected (never counted).
    pub fn parse(s: &str) -> ValidationOutcome {
        s.parse().unwrap_or(ValidationOutcome::Rejected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_text_and_nothing_else_does() {
        for s in LogStatus::ALL {
            assert_eq!(s.as_str().parse::<LogStatus>(), Ok(*s));
            assert_eq!(serde_json::to_string(s).expect("json"), format!("\"{}\"", s.as_str()));
        }
        for s in OrderStatus::ALL {
            assert_eq!(s.as_str().parse::<OrderStatus>(), Ok(*s));
        }
        for s in ValidationOutcome::ALL {
            assert_eq!(s.as_str().parse::<ValidationOutcome>(), Ok(*s));
        }
        assert_eq!(ValidationOutcome::parse("unknown"), ValidationOutcome::Rejected);
        for s in DeliveryState::ALL {
            assert_eq!(s.as_str().parse::<DeliveryState>(), Ok(*s));
        }
        assert!("Accepted".parse::<LogStatus>().is_err());
        assert_eq!(serde_json::from_str::<DeliveryState>("\"dead\"").expect("reads"), DeliveryState::Dead);
    }
}
