//! Conformance cases and the catalogue: one TOML file per vendor under
//! `conformance/catalogue/`, built into the binary.
//!
//! A case is a scenario with what a report needs to stand on its own: a stable id
//! (`CONF-<VENDOR>-<MESSAGE>-NNN`, never reused for another check, so a municipality can
//! ask "did you pass CONF-PHONIRO-ORDER-003?" a year later), a title, why (the rule of the
//! profile it comes from: a SPEC section, a mapping file), whether it is negative (the
//! vendor is provoked into a mistake, or meets one of ours, and must handle it as the
//! profile says), and the messages and fields of the profile it exercises, for coverage.
//! Embedded with `include_str!` because a vendor downloads one binary, not a folder.
//!
//! ```toml
//! vendor = "phoniro"
//!
//! [[cases]]
//! id = "CONF-PHONIRO-ORDER-001"
//! title = "An order is confirmed"
//! why = "mappings/phoniro/order.out.toml; SPEC §4"
//! message = "order"
//! covers = { order = ["orderId"], order_ack = ["orderId", "status"] }
//! steps = [
//!   { send = { message = "order", capture = { order_id = "key" } } },
//!   { expect = { direction = "inbound", message = "order_ack", key = "${order_id}", clean = true } },
//! ]
//! ```

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::coverage::Universe;
use super::{line_col, parse_error, Scenario, ScenarioError, Step, TomlInstant};

/// The vendors with a built-in catalogue, and its text.
const BUILTIN: &[(&str, &str, &str)] = &[
    ("phoniro", "conformance/catalogue/phoniro.toml", include_str!("../../catalogue/phoniro.toml")),
    ("procapita", "conformance/catalogue/procapita.toml", include_str!("../../catalogue/procapita.toml")),
    ("paraga", "conformance/catalogue/paraga.toml", include_str!("../../catalogue/paraga.toml")),
    ("combine", "conformance/catalogue/combine.toml", include_str!("../../catalogue/combine.toml")),
    ("treserva", "conformance/catalogue/treserva.toml", include_str!("../../catalogue/treserva.toml")),
    ("lifecare", "conformance/catalogue/lifecare.toml", include_str!("../../catalogue/lifecare.toml")),
    (
        "lifecare-mobil",
        "conformance/catalogue/lifecare-mobil.toml",
        include_str!("../../catalogue/lifecare-mobil.toml"),
    ),
];

/// One conformance case.
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    /// `CONF-<VENDOR>-<MESSAGE>-NNN`.
    pub id: String,
    pub title: String,
    /// The rule of the profile the case comes from (a SPEC section, a mapping file).
    pub why: String,
    pub vendor: String,
    /// The message the case is about (the hub's message type): the JUnit class.
    pub message: String,
    pub negative: bool,
    /// The profile's messages and fields the case exercises: message to field paths.
    pub covers: BTreeMap<String, Vec<String>>,
    /// What the mock hub must offer for the case to apply (`requires = "mtls"`); a run
    /// whose mock does not offer it reports the case as not applicable, outside the score.
    pub requires: Option<Requirement>,
    /// The steps (the scenario's name is the case's id).
    pub scenario: Scenario,
}

/// Something a case needs of the mock hub beyond its plain HTTP API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// HTTPS with client certificates checked against a client CA (`[tls]` with
    /// `client_ca` in the mock's configuration): the cases of refused certificates.
    Mtls,
}

impl Requirement {
    /// Why a case with this requirement does not apply to a mock that lacks it.
    pub fn unmet(self) -> &'static str {
        match self {
            Requirement::Mtls => {
                "needs the mock hub to serve HTTPS with client certificates (a [tls] section with client_ca, \
                 see docs/vendors.md); this run had none, so the case was not run and is not in the score"
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogueFile {
    vendor: String,
    #[serde(default)]
    cases: Vec<toml::Spanned<CaseFile>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    id: toml::Spanned<String>,
    title: String,
    why: String,
    /// Optional: the catalogue's vendor; when given, it must be that vendor.
    #[serde(default)]
    vendor: Option<String>,
    message: String,
    #[serde(default)]
    negative: bool,
    #[serde(default)]
    covers: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    start: Option<TomlInstant>,
    #[serde(default)]
    requires: Option<Requirement>,
    steps: Vec<toml::Spanned<Step>>,
}

/// A vendor's cases, in the catalogue's order.
#[derive(Debug, Clone)]
pub struct Catalogue {
    pub vendor: String,
    /// Where the catalogue was read from, for messages.
    pub file: String,
    pub cases: Vec<Case>,
}

impl Catalogue {
    /// The built-in catalogue of a vendor.
    pub fn builtin(vendor: &str) -> Result<Catalogue, ScenarioError> {
        match BUILTIN.iter().find(|(v, _, _)| *v == vendor) {
            Some((_, file, text)) => Catalogue::from_toml(file, text),
            None => Err(ScenarioError::UnknownVendor {
                vendor: vendor.to_owned(),
                known: BUILTIN.iter().map(|(v, _, _)| *v).collect::<Vec<_>>().join(", "),
            }),
        }
    }

    /// The vendors with a built-in catalogue.
    pub fn vendors() -> Vec<&'static str> {
        BUILTIN.iter().map(|(v, _, _)| *v).collect()
    }

    /// Reads a catalogue file; `file` names it in errors. Every case is checked: its id's
    /// form and uniqueness, its vendor, and its steps (see [`Scenario`]).
    pub fn from_toml(file: &str, text: &str) -> Result<Catalogue, ScenarioError> {
        let raw: CatalogueFile = toml::from_str(text).map_err(|e| parse_error(file, text, &e))?;
        let mut seen = BTreeSet::new();
        let mut cases = Vec::with_capacity(raw.cases.len());
        for spanned in raw.cases {
            let case_at = line_col(text, spanned.span().start);
            let c = spanned.into_inner();
            let id_at = line_col(text, c.id.span().start);
            let id = c.id.into_inner();
            let invalid = |at: (usize, usize), reason: String| ScenarioError::Invalid {
                file: file.to_owned(),
                at: Some(at),
                reason: format!("case {id}: {reason}"),
            };
            check_id(&id, &raw.vendor, &c.message).map_err(|r| invalid(id_at, r))?;
            if !seen.insert(id.clone()) {
                return Err(invalid(
                    id_at,
                    "the id is used by an earlier case; ids are unique and never reused".into(),
                ));
            }
            if let Some(v) = &c.vendor {
                if *v != raw.vendor {
                    return Err(invalid(case_at, format!("vendor '{v}' in the catalogue of '{}'", raw.vendor)));
                }
            }
            for (what, value) in [("title", &c.title), ("why", &c.why)] {
                if value.trim().is_empty() {
                    return Err(invalid(case_at, format!("`{what}` is empty")));
                }
            }
            if c.steps.is_empty() {
                return Err(invalid(case_at, "a case without steps checks nothing".into()));
            }
            let scenario = Scenario::assemble(id.clone(), c.start.map(|s| s.0), c.steps, text);
            scenario.check(file, &[])?;
            cases.push(Case {
                id,
                title: c.title,
                why: c.why,
                vendor: raw.vendor.clone(),
                message: c.message,
                negative: c.negative,
                covers: c.covers,
                requires: c.requires,
                scenario,
            });
        }
        Ok(Catalogue { vendor: raw.vendor, file: file.to_owned(), cases })
    }

    /// The cases named (all of them when `ids` is empty), in the catalogue's order.
    pub fn select(&self, ids: &[String]) -> Result<Vec<&Case>, ScenarioError> {
        if let Some(id) = ids.iter().find(|id| !self.cases.iter().any(|c| &c.id == *id)) {
            return Err(ScenarioError::UnknownCase { vendor: self.vendor.clone(), id: id.clone() });
        }
        Ok(self.cases.iter().filter(|c| ids.is_empty() || ids.contains(&c.id)).collect())
    }

    /// What the catalogue claims that the vendor's profile does not have: a message or a
    /// field a case covers that no mapping file names, and a case whose message is not
    /// the profile's. Empty when all is well.
    pub fn check_against(&self, universe: &Universe) -> Vec<String> {
        let mut problems = Vec::new();
        for c in &self.cases {
            if !universe.messages.contains_key(&c.message) {
                problems.push(format!("{}: message '{}' is not in the {} profile", c.id, c.message, self.vendor));
            }
            for (message, fields) in &c.covers {
                if !universe.messages.contains_key(message) {
                    problems.push(format!("{}: covers message '{message}', not in the {} profile", c.id, self.vendor));
                    continue;
                }
                for f in fields {
                    if !universe.has(message, f) {
                        problems.push(format!("{}: covers {message}:{f}, not a field of the mapping", c.id));
                    }
                }
            }
        }
        problems
    }
}

impl Case {
    /// What the vendor's system must be made to do, in the order the case asks it.
    pub fn triggers(&self) -> Vec<&str> {
        self.scenario
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Trigger(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The instant the case sets the mock's clock to first, if it does.
    pub fn start(&self) -> Option<DateTime<Utc>> {
        self.scenario.start
    }
}

/// `CONF-<VENDOR>-<MESSAGE>-NNN`, with the vendor's and the message's names in capitals
/// (`-` and `_` as `_`), and three digits.
pub fn check_id(id: &str, vendor: &str, message: &str) -> Result<(), String> {
    let vendor_part = vendor.to_ascii_uppercase().replace('-', "_");
    let message_part = message.to_ascii_uppercase().replace('-', "_");
    let want = format!("CONF-{vendor_part}-{message_part}-");
    let bad = || format!("the id must read {want}NNN (three digits) for a {message} case of {vendor}");
    let number = id.strip_prefix(&want).ok_or_else(bad)?;
    if number.len() == 3 && number.bytes().all(|b| b.is_ascii_digit()) && number != "000" {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
vendor = "phoniro"

[[cases]]
id = "CONF-PHONIRO-ORDER_ACK-001"
title = "t"
why = "w"
message = "order_ack"
covers = { order_ack = ["orderId"] }
steps = [{ trigger = "do it" }, { expect = { message = "order_ack" } }]
"#;

    #[test]
    fn a_case_reads_with_its_vendor_and_triggers() {
        let c = Catalogue::from_toml("c.toml", ONE).expect("reads");
        assert_eq!(c.cases.len(), 1);
        assert_eq!(c.cases[0].vendor, "phoniro");
        assert_eq!(c.cases[0].triggers(), vec!["do it"]);
        assert_eq!(c.cases[0].scenario.name, "CONF-PHONIRO-ORDER_ACK-001");
    }

    #[test]
    fn ids_have_one_form() {
        assert!(check_id("CONF-PHONIRO-ORDER-001", "phoniro", "order").is_ok());
        assert!(check_id("CONF-LIFECARE_MOBIL-VISIT-010", "lifecare-mobil", "visit").is_ok());
        for bad in
            ["CONF-PHONIRO-ORDER-01", "CONF-PHONIRO-ORDER-0001", "CONF-PHONIRO-ORDER-000", "conf-phoniro-order-001"]
        {
            assert!(check_id(bad, "phoniro", "order").is_err(), "{bad}");
        }
        assert!(check_id("CONF-PHONIRO-VISIT-001", "phoniro", "order").is_err(), "the message part is the case's");
    }

    #[test]
    fn a_bad_or_repeated_id_is_refused_at_its_line() {
        let bad = ONE.replace("ORDER_ACK-001", "ORDERACK-1");
        let e = Catalogue::from_toml("c.toml", &bad).expect_err("bad id");
        assert_eq!(e.at().map(|a| a.0), Some(5), "{e}");
        assert!(e.to_string().contains("CONF-PHONIRO-ORDER_ACK-NNN"), "{e}");

        let twice = format!("{ONE}\n{}", &ONE[ONE.find("[[cases]]").expect("a case")..]);
        let e = Catalogue::from_toml("c.toml", &twice).expect_err("repeated id");
        assert!(e.to_string().contains("used by an earlier case"), "{e}");
        assert_eq!(e.at().map(|a| a.0), Some(13), "{e}");
    }

    #[test]
    fn an_unknown_vendor_or_case_is_named() {
        let e = Catalogue::builtin("nosuch").expect_err("no catalogue");
        assert_eq!(e.code(), "CATALOGUE_UNKNOWN_VENDOR");
        assert!(e.to_string().contains("phoniro"), "{e}");
        let c = Catalogue::from_toml("c.toml", ONE).expect("reads");
        let e = c.select(&["CONF-PHONIRO-ORDER_ACK-009".to_owned()]).expect_err("no such case");
        assert_eq!(e.code(), "CATALOGUE_UNKNOWN_CASE");
        assert_eq!(c.select(&[]).expect("all").len(), 1);
    }
}
