//! What a vendor's profile is made of, for the coverage figure: its messages and their
//! fields, read from the hub's own mapping files.
//!
//! Why from the mapping files: they are the contract the hub runs, so a field added to a
//! mapping shows at once as a field no case covers, and a case cannot claim a field the
//! profile does not have. A field is named by its vendor path as the mapping writes it
//! (`client/personalIdentityNumber`), a field of a list by the list's path and its own
//! (`activities/activityCode`); a list of plain values (`.`) is the list itself.

use std::collections::{BTreeMap, BTreeSet};

use carehub_core::mapping::{Direction, Field, MappingSet};
use serde::{Deserialize, Serialize};

/// A profile's messages (the hub's message types) and each one's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Universe {
    pub messages: BTreeMap<String, BTreeSet<String>>,
}

impl Universe {
    /// The messages and fields of a vendor's mappings.
    pub fn from_mappings(set: &MappingSet) -> Universe {
        // A profile that takes visit reports in lists (an outbound `visits` mapping, as
        // Combine's) is never sent the single form, which stays beside it only as the
        // fallback for when the list mapping is removed: it is not part of what the
        // vendor's system must take.
        let lists = set.mappings.iter().any(|m| m.direction == Direction::Out && m.message.as_str() == "visits");
        let mut messages: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for m in &set.mappings {
            if lists && m.direction == Direction::Out && m.message.as_str() == "visit" {
                continue;
            }
            let fields = messages.entry(m.message.as_str().to_owned()).or_default();
            collect(&m.fields, "", fields);
        }
        Universe { messages }
    }

    /// Whether the profile has this message and field.
    pub fn has(&self, message: &str, field: &str) -> bool {
        self.messages.get(message).is_some_and(|f| f.contains(field))
    }

    fn field_count(&self) -> usize {
        self.messages.values().map(BTreeSet::len).sum()
    }

    /// The coverage of what was claimed (message to fields), within this universe; claims
    /// outside it do not count.
    pub fn coverage<'a>(&self, claimed: impl IntoIterator<Item = (&'a String, &'a Vec<String>)>) -> Coverage {
        let mut messages = BTreeSet::new();
        let mut fields = BTreeSet::new();
        for (message, names) in claimed {
            if !self.messages.contains_key(message) {
                continue;
            }
            messages.insert(message.clone());
            for f in names {
                if self.has(message, f) {
                    fields.insert(format!("{message}:{f}"));
                }
            }
        }
        let uncovered_messages = self.messages.keys().filter(|m| !messages.contains(*m)).cloned().collect();
        let uncovered_fields = self
            .messages
            .iter()
            .flat_map(|(m, fs)| fs.iter().map(move |f| format!("{m}:{f}")))
            .filter(|f| !fields.contains(f))
            .collect();
        let messages = Figure::new(messages.len(), self.messages.len());
        let fields = Figure::new(fields.len(), self.field_count());
        let share = share(messages.covered + fields.covered, messages.total + fields.total);
        Coverage { messages, fields, share, uncovered_messages, uncovered_fields }
    }
}

fn collect(fields: &[Field], parent: &str, out: &mut BTreeSet<String>) {
    for f in fields {
        let own = match (&f.vendor, f.join.is_empty()) {
            (Some(v), _) => v.clone(),
            (None, false) => f.join.join("+"),
            (None, true) => continue,
        };
        if own == "." {
            continue;
        }
        let path = if parent.is_empty() { own } else { format!("{parent}/{own}") };
        collect(&f.fields, &path, out);
        out.insert(path);
    }
}

/// Covered of total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub covered: usize,
    pub total: usize,
    /// covered / total, 0 to 1, rounded to four decimals (1 when there is nothing to cover).
    pub share: f64,
}

impl Figure {
    pub fn new(covered: usize, total: usize) -> Figure {
        Figure { covered, total, share: share(covered, total) }
    }
}

/// part / whole, rounded to four decimals (1 when there is nothing to cover): what a
/// report shows, and a number that reads back from JSON as the same `f64`.
pub(crate) fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        1.0
    } else {
        (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
    }
}

/// The share of the profile's messages and fields a run exercised: the messages and
/// fields its cases name, for each case that was run (passed or failed: a failed case
/// exercised what it names as much as a passed one; the score says how it went).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    pub messages: Figure,
    pub fields: Figure,
    /// Messages and fields together: (covered messages + covered fields) / (all of both).
    pub share: f64,
    pub uncovered_messages: Vec<String>,
    /// `message:field`.
    pub uncovered_fields: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phoniro() -> Universe {
        let set = carehub_adapters::load_mappings("phoniro", None).expect("phoniro's built-in mappings");
        Universe::from_mappings(&set)
    }

    #[test]
    fn the_universe_has_nested_fields_by_their_paths() {
        let u = phoniro();
        assert!(u.has("order", "orderId"));
        assert!(u.has("order", "client/personalIdentityNumber"));
        assert!(u.has("order", "activities/activityCode"));
        assert!(u.has("visits", "visits/checkIn/tagUid"));
        assert!(u.has("visit", "activities"), "a list of codes is the list");
        assert!(!u.has("visit", "activities/."));
        assert!(u.has("invoice_line", "AmountOre"));
        assert!(!u.has("order", "nope"));
    }

    #[test]
    fn a_profile_that_takes_visits_in_lists_is_not_asked_for_the_single_form() {
        let set = carehub_adapters::load_mappings("combine", None).expect("combine's built-in mappings");
        let u = Universe::from_mappings(&set);
        assert!(u.has("visits", "Besok/BesoksId"));
        assert!(!u.messages.contains_key("visit"), "{:?}", u.messages.keys());
        assert!(phoniro().messages.contains_key("visit"), "Phoniro's own visits are inbound and stay");
    }

    #[test]
    fn coverage_counts_messages_and_fields_and_names_the_rest() {
        let u = phoniro();
        let claimed: BTreeMap<String, Vec<String>> = [
            ("order".to_owned(), vec!["orderId".to_owned(), "nope".to_owned()]),
            ("not_a_message".to_owned(), vec!["x".to_owned()]),
        ]
        .into_iter()
        .collect();
        let c = u.coverage(&claimed);
        assert_eq!(c.messages.covered, 1);
        assert_eq!(c.messages.total, u.messages.len());
        assert_eq!(c.fields.covered, 1, "a field the profile does not have does not count");
        assert!(c.uncovered_messages.contains(&"order_ack".to_owned()));
        assert!(c.uncovered_fields.contains(&"order:startDate".to_owned()));
        assert!(!c.uncovered_fields.contains(&"order:orderId".to_owned()));
        let all = (c.messages.total + c.fields.total) as f64;
        assert!((c.share - 2.0 / all).abs() < 1e-4);
    }
}
