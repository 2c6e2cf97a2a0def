//! Visit validation (SPEC §6): every visit from every time-registration system checked the
//! same way, before it turns into money.
//!
//! The rules are pure: [`validate`] takes the visit, the facts it needs from the store
//! (through [`VisitFacts`]), the thresholds and the time, and returns a [`Verdict`]. The
//! facts are a small synchronous trait so that ingestion can answer them with indexed
//! look-ups inside the store's own transaction (the tag at a date, an active order, an
//! overlapping visit of the same staff member, an earlier copy), a batch at a time.
//!
//! The codes are stable: they are shown to users, stored with the visit and counted in
//! reports.
//!
//! [`ingest`] takes a batch the same way whatever the store: it validates each record,
//! detects copies (VIS007) and stores the rest through a [`VisitLedger`], the narrow,
//! synchronous port a backend implements over its open transaction (facts, inserts, the
//! feed cursor, the log entry's canonical form). The store keeps the data; the decisions
//! are made here, once.

use carehub_model::{Month, OrgNumber, PersonalIdentityNumber, RegistrationMethod, TagUid, Visit, VisitOutcome};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::Serialize;

/// A visit's validation outcome; the strongest of its findings wins. Defined in the model,
/// with the text the store keeps.
pub use carehub_model::ValidationOutcome as Outcome;

/// The visit rule codes of SPEC §6 (VIS001-VIS010); the invoice rules have their own,
/// [`InvoiceCode`](crate::rules::invoices::InvoiceCode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VisitCode {
    /// Tag unknown (flagged, counted as a manual registration).
    Vis001,
    /// Tag registered to another client on the visit date.
    Vis002,
    /// Check-out before check-in, or no check-out 12 hours after check-in.
    Vis003,
    /// Shorter than a minute or longer than 8 hours.
    Vis004,
    /// The same staff member in two homes at once.
    Vis005,
    /// In the future, or in a month already closed.
    Vis006,
    /// A copy of a visit already received.
    Vis007,
    /// A manual registration without a reason.
    Vis008,
    /// No active order for this client at this provider on that date.
    Vis009,
    /// The client's identity is not valid.
    Vis010,
}

impl VisitCode {
    pub fn as_str(self) -> &'static str {
        match self {
            VisitCode::Vis001 => "VIS001",
            VisitCode::Vis002 => "VIS002",
            VisitCode::Vis003 => "VIS003",
            VisitCode::Vis004 => "VIS004",
            VisitCode::Vis005 => "VIS005",
            VisitCode::Vis006 => "VIS006",
            VisitCode::Vis007 => "VIS007",
            VisitCode::Vis008 => "VIS008",
            VisitCode::Vis009 => "VIS009",
            VisitCode::Vis010 => "VIS010",
        }
    }

    /// The outcome a finding with this code gives the visit.
    pub fn outcome(self) -> Outcome {
        match self {
            VisitCode::Vis001 => Outcome::Flagged,
            _ => Outcome::Rejected,
        }
    }
}

/// One broken visit rule and what it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VisitFinding {
    pub code: VisitCode,
    pub detail: String,
}

/// What the rules made of a visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub outcome: Outcome,
    pub findings: Vec<VisitFinding>,
    /// Registered by hand (or with an unknown tag): counts in the manual share.
    pub manual: bool,
    /// VIS007: the visit already received; this one is not stored again.
    pub duplicate_of: Option<String>,
    /// The active order the visit belongs to (VIS009 found it).
    pub order_id: Option<String>,
}

impl Verdict {
    /// VIS007: a copy of the visit `first`, answered with its id and not stored again.
    pub fn copy_of(first: String) -> Verdict {
        Verdict {
            outcome: Outcome::Rejected,
            findings: vec![VisitFinding { code: VisitCode::Vis007, detail: format!("a copy of visit {first}") }],
            manual: false,
            duplicate_of: Some(first),
            order_id: None,
        }
    }
}

/// Thresholds, configurable, with SPEC §6's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// A check-in with no check-out this long after is VIS003.
    pub open_visit: Duration,
    pub min_duration: Duration,
    pub max_duration: Duration,
    /// How far in the future a time may be (clock skew).
    pub future: Duration,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            open_visit: Duration::hours(12),
            min_duration: Duration::minutes(1),
            max_duration: Duration::hours(8),
            future: Duration::minutes(5),
        }
    }
}

/// What validation needs to know from the store.
pub trait VisitFacts {
    /// The client in whose home the tag hung on `day`, if it was registered anywhere.
    fn tag_client(&self, tag: &TagUid, day: NaiveDate) -> Option<PersonalIdentityNumber>;
    /// The provider's order for the client active on `day` (the one named, if the visit
    /// names one), by its id.
    fn active_order(
        &self,
        provider: &OrgNumber,
        client: &PersonalIdentityNumber,
        day: NaiveDate,
        named: Option<&str>,
    ) -> Option<String>;
    /// A stored visit of the same staff member (in another home) overlapping the interval.
    fn overlapping(&self, staff: &str, client: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<String>;
    /// A visit already received with this source id, or with the same staff, client and times.
    /// (A store may leave the source id to its insert, and answer [`Verdict::copy_of`]
    /// when the insert finds the id taken.)
    fn duplicate_of(&self, visit: &Visit) -> Option<String>;
    /// Whether the municipality has closed this calendar month (year, month).
    fn month_closed(&self, year: i32, month: u32) -> bool;
}

/// Validates a visit at `now`.
pub fn validate(v: &Visit, facts: &dyn VisitFacts, t: &Thresholds, now: DateTime<Utc>) -> Verdict {
    let mut findings = Vec::new();
    let mut found = |code: VisitCode, detail: String| findings.push(VisitFinding { code, detail });

    if let Some(first) = facts.duplicate_of(v) {
        return Verdict::copy_of(first);
    }

    let client = PersonalIdentityNumber::parse(&v.client).ok();
    if client.is_none() {
        found(VisitCode::Vis010, "the client's personal identity number is not valid".into());
    }
    let day = carehub_model::local_date(v.check_in.at);
    let registrations = std::iter::once(&v.check_in).chain(v.check_out.as_ref());

    let mut manual = false;
    for r in registrations {
        match &r.method {
            RegistrationMethod::Manual { reason } => {
                manual = true;
                if reason.as_deref().is_none_or(|s| s.trim().is_empty()) {
                    found(VisitCode::Vis008, "a manual registration without a reason".into());
                }
            }
            RegistrationMethod::Nfc { tag_uid } => match TagUid::parse(tag_uid) {
                Err(_) => {
                    manual = true;
                    found(VisitCode::Vis001, "the tag UID is not a valid UID".into());
                }
                Ok(uid) => match facts.tag_client(&uid, carehub_model::local_date(r.at)) {
                    None => {
                        manual = true;
                        found(VisitCode::Vis001, format!("tag {uid} is not registered"));
                    }
                    Some(owner) if client.as_ref().is_some_and(|c| *c != owner) => {
                        found(VisitCode::Vis002, format!("tag {uid} hung in another client's home that day"));
                    }
                    Some(_) => {}
                },
            },
        }
    }

    match &v.check_out {
        Some(out) if out.at < v.check_in.at => found(VisitCode::Vis003, "check-out before check-in".into()),
        Some(out) => {
            let length = out.at - v.check_in.at;
            if length < t.min_duration || length > t.max_duration {
                found(VisitCode::Vis004, format!("{} minutes long", length.num_minutes()));
            }
        }
        None if now - v.check_in.at > t.open_visit => {
            found(VisitCode::Vis003, format!("no check-out {} hours after check-in", t.open_visit.num_hours()))
        }
        None => {}
    }

    let latest = v.check_out.as_ref().map_or(v.check_in.at, |o| o.at.max(v.check_in.at));
    if latest > now + t.future {
        found(VisitCode::Vis006, "a time in the future".into());
    } else if facts.month_closed(day.year(), day.month()) {
        found(VisitCode::Vis006, format!("{}-{:02} is already closed", day.year(), day.month()));
    }

    if let Some(out) = &v.check_out {
        if out.at > v.check_in.at {
            if let Some(other) = facts.overlapping(&v.staff, &v.client, v.check_in.at, out.at) {
                found(VisitCode::Vis005, format!("the staff member was in another home then (visit {other})"));
            }
        }
    }

    let mut order_id = None;
    match (&client, &v.provider) {
        (Some(c), Some(provider)) => {
            order_id = facts.active_order(provider, c, day, v.order_id.as_deref());
            if order_id.is_none() {
                found(VisitCode::Vis009, format!("no active order at provider {provider} on {day}"));
            }
        }
        (Some(_), None) => found(VisitCode::Vis009, "the visit names no provider".into()),
        (None, _) => {}
    }

    // Check-in and check-out may break a rule the same way (one unknown tag, read twice):
    // say it once.
    let mut seen = std::collections::HashSet::new();
    findings.retain(|f| seen.insert((f.code, f.detail.clone())));
    let mut outcome = findings.iter().map(|f| f.code.outcome()).max().unwrap_or(Outcome::Accepted);
    // A manual registration with a reason, or a visit declined at the door, counts but shows.
    if outcome == Outcome::Accepted && (manual || v.outcome == VisitOutcome::DeclinedAtDoor) {
        outcome = Outcome::Flagged;
    }
    Verdict { outcome, findings, manual, duplicate_of: None, order_id }
}

// ---------------------------------------------------------------------------------------
// Ingestion: a batch validated and stored, over the store's transaction
// ---------------------------------------------------------------------------------------

/// A record of a batch: a visit to validate and store, or one that could not be read.
#[derive(Debug, Clone)]
pub enum IncomingVisit {
    /// With its id and provider filled in.
    Visit { visit: Box<Visit>, line: Option<usize> },
    /// Refused before validation (a CSV row with a bad value): logged with its code.
    Unreadable { line: Option<usize>, code: String, message: String },
}

/// What became of one record of a batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisitResult {
    /// The visit's source id (absent for an unreadable record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Its line in a file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub outcome: Outcome,
    pub codes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<VisitFinding>,
    /// VIS007: the visit first received; this one was not stored again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    /// An unreadable record's reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A visit as [`ingest`] decided to store it: what the ledger writes, nothing it decides.
#[derive(Debug, Clone, Copy)]
pub struct VisitToStore<'a> {
    /// The visit's source id: the ledger's key, unique across systems.
    pub source_id: &'a str,
    /// The system that sent it.
    pub system: &'a str,
    /// The visit as stored, its order filled in from the verdict when it named none.
    pub visit: &'a Visit,
    /// The active order the rules found (VIS009), what the visit counts against.
    pub order_id: Option<&'a str>,
    /// The check-in's month in Stockholm: the month reports and verification read it in.
    pub month: Month,
    /// Counts in the manual share: registered by hand and not rejected.
    pub manual: bool,
    pub verdict: &'a Verdict,
    /// Its line in a file.
    pub line: Option<usize>,
    pub received_at: DateTime<Utc>,
}

/// The transaction port visit ingestion runs over: the [`VisitFacts`] the rules ask, and the
/// few writes ingestion makes, all inside one open transaction of the store (the commit
/// that carries the batch). A backend implements it over its transaction and calls
/// [`ingest`]; the decisions (validation, copies, overlaps, what is stored and what each
/// record's result is) are made here, once, whatever the backend.
///
/// It is synchronous on purpose: SQLite's writer thread calls it inside its transaction, and
/// a server database's backend runs the same code in a blocking task holding its
/// transaction (`spawn_blocking`), so the look-ups are plain calls with no `.await` between
/// a fact and the insert that depends on it. A backend keeps the look-ups one index probe
/// each and may cache within the batch (tags and orders do not change during one), but
/// must answer facts about visits stored earlier in the same batch.
pub trait VisitLedger: VisitFacts {
    type Error: From<IngestError>;
    /// Stores a visit; `false` when its source id is taken (by an earlier batch, or earlier
    /// in this one), and nothing was stored.
    fn insert_visit(&mut self, visit: VisitToStore<'_>) -> Result<bool, Self::Error>;
    /// Stores a pulled feed's next cursor for the batch's system, with the batch.
    fn set_cursor(&mut self, system: &str, cursor: &str) -> Result<(), Self::Error>;
    /// Sets the canonical form of the batch's log entry: every record's result.
    fn set_canonical(&mut self, summary: String) -> Result<(), Self::Error>;
}

/// A batch ingestion cannot take (the caller's mistake, not the data's).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A visit to store without a source id: the flow fills ids in before it commits.
    #[error("a visit reached the store without an id")]
    MissingId,
}

/// A batch of visits for [`ingest`].
#[derive(Debug)]
pub struct Batch<'a> {
    /// The system that sent them.
    pub system: &'a str,
    pub visits: Vec<IncomingVisit>,
    pub thresholds: Thresholds,
    pub now: DateTime<Utc>,
    /// A pulled feed's next cursor, stored with the page.
    pub cursor: Option<&'a str>,
}

/// Validates a batch and stores it through `ledger`, a record at a time (each visit sees
/// those stored before it, in this batch too), then stores the cursor and sets the log
/// entry's canonical form to `{cursor, results}`. Returns each record's result, in order.
///
/// A copy (VIS007) is answered with the first visit's id and not stored: by the rules
/// (the same staff, client and times under another id), or by the ledger (the same source
/// id, found by its insert).
pub fn ingest<L: VisitLedger>(ledger: &mut L, batch: Batch<'_>) -> Result<Vec<VisitResult>, L::Error> {
    let Batch { system, visits, thresholds, now, cursor } = batch;
    let mut results = Vec::with_capacity(visits.len());
    for incoming in visits {
        let (visit, line) = match incoming {
            IncomingVisit::Unreadable { line, code, message } => {
                results.push(VisitResult {
                    id: None,
                    line,
                    outcome: Outcome::Rejected,
                    codes: vec![code],
                    findings: Vec::new(),
                    duplicate_of: None,
                    order_id: None,
                    message: Some(message),
                });
                continue;
            }
            IncomingVisit::Visit { visit, line } => (visit, line),
        };
        let mut verdict = validate(&visit, &*ledger, &thresholds, now);
        let source_id = visit.id.as_ref().map(|i| i.as_str().to_owned());
        if verdict.duplicate_of.is_none() {
            let Some(sid) = &source_id else {
                return Err(IngestError::MissingId.into());
            };
            let mut stored = *visit;
            stored.order_id = verdict.order_id.clone().or(stored.order_id);
            let inserted = ledger.insert_visit(VisitToStore {
                source_id: sid,
                system,
                visit: &stored,
                order_id: verdict.order_id.as_deref(),
                month: Month::of(carehub_model::local_date(stored.check_in.at)),
                manual: verdict.manual && verdict.outcome != Outcome::Rejected,
                verdict: &verdict,
                line,
                received_at: now,
            })?;
            if !inserted {
                // The id was taken: by an earlier batch, or earlier in this one.
                verdict = Verdict::copy_of(sid.clone());
            }
        }
        let codes: Vec<String> = verdict.findings.iter().map(|f| f.code.as_str().to_owned()).collect();
        results.push(VisitResult {
            id: source_id,
            line,
            outcome: verdict.outcome,
            codes,
            findings: verdict.findings,
            duplicate_of: verdict.duplicate_of,
            order_id: verdict.order_id,
            message: None,
        });
    }
    if let Some(c) = cursor {
        ledger.set_cursor(system, c)?;
    }
    let summary = serde_json::json!({ "cursor": cursor, "results": results });
    ledger.set_canonical(summary.to_string())?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use carehub_model::{Registration, SourceId};
    use chrono::TimeZone;

    const CLIENT: &str = "193601016987";
    const OTHER: &str = "194202138014";
    const TAG: &str = "04A21BC3";

    /// The store, as a test wants it.
    struct Facts {
        tags: Vec<(&'static str, &'static str)>,
        order: bool,
        overlap: Option<&'static str>,
        duplicate: Option<&'static str>,
        closed: Option<(i32, u32)>,
    }

    impl Default for Facts {
        fn default() -> Self {
            Facts { tags: vec![(TAG, CLIENT)], order: true, overlap: None, duplicate: None, closed: None }
        }
    }

    impl VisitFacts for Facts {
        fn tag_client(&self, tag: &TagUid, _day: NaiveDate) -> Option<PersonalIdentityNumber> {
            self.tags.iter().find(|(t, _)| *t == tag.as_str()).and_then(|(_, c)| PersonalIdentityNumber::parse(c).ok())
        }
        fn active_order(
            &self,
            _: &OrgNumber,
            _: &PersonalIdentityNumber,
            _: NaiveDate,
            _: Option<&str>,
        ) -> Option<String> {
            self.order.then(|| "O-1".to_owned())
        }
        fn overlapping(&self, _: &str, _: &str, _: DateTime<Utc>, _: DateTime<Utc>) -> Option<String> {
            self.overlap.map(str::to_owned)
        }
        fn duplicate_of(&self, _: &Visit) -> Option<String> {
            self.duplicate.map(str::to_owned)
        }
        fn month_closed(&self, year: i32, month: u32) -> bool {
            self.closed == Some((year, month))
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 10, h, m, 0).single().expect("time")
    }

    fn nfc(t: DateTime<Utc>) -> Registration {
        Registration { at: t, method: RegistrationMethod::Nfc { tag_uid: TAG.into() } }
    }

    fn visit() -> Visit {
        Visit {
            id: Some(SourceId::parse("phoniro:V-1").expect("id")),
            provider: Some(OrgNumber::parse("5599000014").expect("org")),
            client: CLIENT.into(),
            order_id: None,
            staff: "s-17".into(),
            check_in: nfc(at(8, 0)),
            check_out: Some(nfc(at(8, 45))),
            planned_minutes: Some(45),
            services: Vec::new(),
            outcome: VisitOutcome::Performed,
            double_staffing: false,
        }
    }

    fn now() -> DateTime<Utc> {
        at(20, 0)
    }

    fn check(v: &Visit, f: &Facts) -> Verdict {
        validate(v, f, &Thresholds::default(), now())
    }

    fn codes(v: &Verdict) -> Vec<&'static str> {
        v.findings.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn a_clean_visit_is_accepted() {
        let v = check(&visit(), &Facts::default());
        assert_eq!((v.outcome, codes(&v), v.manual), (Outcome::Accepted, vec![], false));
    }

    #[test]
    fn vis001_an_unknown_tag_is_flagged_and_manual() {
        let f = Facts { tags: vec![], ..Facts::default() };
        let v = check(&visit(), &f);
        assert_eq!((v.outcome, v.manual), (Outcome::Flagged, true));
        assert!(codes(&v).iter().all(|c| *c == "VIS001"));
        let mut garbled = visit();
        garbled.check_in.method = RegistrationMethod::Nfc { tag_uid: "zz".into() };
        assert_eq!(codes(&check(&garbled, &Facts::default())), vec!["VIS001"]);
    }

    #[test]
    fn vis002_a_tag_in_another_home_is_rejected() {
        let f = Facts { tags: vec![(TAG, OTHER)], ..Facts::default() };
        let v = check(&visit(), &f);
        assert_eq!(v.outcome, Outcome::Rejected);
        assert!(codes(&v).contains(&"VIS002"));
    }

    #[test]
    fn vis003_out_before_in_or_never_out() {
        let mut v = visit();
        v.check_out = Some(nfc(at(7, 59)));
        assert!(codes(&check(&v, &Facts::default())).contains(&"VIS003"));
        let mut open = visit();
        open.check_in = nfc(at(7, 59));
        open.check_out = None;
        assert_eq!(codes(&check(&open, &Facts::default())), vec!["VIS003"], "12 h and 1 minute open");
        open.check_in = nfc(at(8, 1));
        assert_eq!(codes(&check(&open, &Facts::default())), Vec::<&str>::new(), "11 h 59 min: still open");
    }

    #[test]
    fn vis004_too_short_or_too_long() {
        let mut v = visit();
        v.check_out = Some(nfc(at(8, 0) + Duration::seconds(59)));
        assert_eq!(codes(&check(&v, &Facts::default())), vec!["VIS004"]);
        v.check_out = Some(nfc(at(8, 1)));
        assert!(codes(&check(&v, &Facts::default())).is_empty());
        v.check_out = Some(nfc(at(16, 1)));
        assert_eq!(codes(&check(&v, &Facts::default())), vec!["VIS004"]);
        v.check_out = Some(nfc(at(16, 0)));
        assert!(codes(&check(&v, &Facts::default())).is_empty());
    }

    #[test]
    fn vis005_the_same_staff_in_two_homes_names_the_other_visit() {
        let f = Facts { overlap: Some("phoniro:V-0"), ..Facts::default() };
        let v = check(&visit(), &f);
        assert_eq!((v.outcome, codes(&v)), (Outcome::Rejected, vec!["VIS005"]));
        assert!(v.findings[0].detail.contains("phoniro:V-0"));
    }

    #[test]
    fn vis006_in_the_future_or_in_a_closed_month() {
        let mut v = visit();
        v.check_in = nfc(now() + Duration::minutes(6));
        v.check_out = Some(nfc(now() + Duration::minutes(40)));
        assert_eq!(codes(&check(&v, &Facts::default())), vec!["VIS006"]);
        v.check_in = nfc(now() - Duration::minutes(30));
        v.check_out = Some(nfc(now() + Duration::minutes(4)));
        assert!(codes(&check(&v, &Facts::default())).is_empty(), "within the clock-skew allowance");
        let closed = Facts { closed: Some((2026, 11)), ..Facts::default() };
        assert_eq!(codes(&check(&visit(), &closed)), vec!["VIS006"]);
        let other_month = Facts { closed: Some((2026, 10)), ..Facts::default() };
        assert!(codes(&check(&visit(), &other_month)).is_empty());
    }

    #[test]
    fn vis007_a_copy_answers_with_the_first_visit() {
        let f = Facts { duplicate: Some("phoniro:V-1"), ..Facts::default() };
        let v = check(&visit(), &f);
        assert_eq!((codes(&v), v.duplicate_of.as_deref()), (vec!["VIS007"], Some("phoniro:V-1")));
    }

    #[test]
    fn vis008_manual_needs_a_reason_and_with_one_is_flagged() {
        let mut v = visit();
        v.check_in.method = RegistrationMethod::Manual { reason: None };
        let r = check(&v, &Facts::default());
        assert_eq!((r.outcome, codes(&r)), (Outcome::Rejected, vec!["VIS008"]));
        v.check_in.method = RegistrationMethod::Manual { reason: Some("taggen saknas".into()) };
        let r = check(&v, &Facts::default());
        assert_eq!((r.outcome, codes(&r), r.manual), (Outcome::Flagged, vec![], true));
    }

    #[test]
    fn vis009_no_active_order() {
        let f = Facts { order: false, ..Facts::default() };
        assert_eq!(codes(&check(&visit(), &f)), vec!["VIS009"]);
        let found = check(&visit(), &Facts::default());
        assert_eq!(found.order_id.as_deref(), Some("O-1"), "the order the visit belongs to");
    }

    #[test]
    fn vis010_an_invalid_client() {
        let mut v = visit();
        v.client = "193601016988".into();
        let r = check(&v, &Facts::default());
        assert_eq!(r.outcome, Outcome::Rejected);
        assert!(codes(&r).contains(&"VIS010"));
    }

    #[test]
    fn a_declined_visit_is_flagged_and_the_strongest_outcome_wins() {
        let mut v = visit();
        v.outcome = VisitOutcome::DeclinedAtDoor;
        assert_eq!(check(&v, &Facts::default()).outcome, Outcome::Flagged);
        let f = Facts { tags: vec![], order: false, ..Facts::default() };
        let r = check(&visit(), &f);
        assert_eq!(r.outcome, Outcome::Rejected, "VIS001 flags, VIS009 rejects: rejected");
        assert!(codes(&r).contains(&"VIS001") && codes(&r).contains(&"VIS009"));
    }

    /// A ledger in memory: what [`ingest`] asks of a backend, and nothing more.
    #[derive(Default)]
    struct Ledger {
        facts: Facts,
        stored: Vec<(String, Option<String>, Month, bool)>,
        cursor: Option<(String, String)>,
        canonical: Option<String>,
    }

    impl VisitFacts for Ledger {
        fn tag_client(&self, tag: &TagUid, day: NaiveDate) -> Option<PersonalIdentityNumber> {
            self.facts.tag_client(tag, day)
        }
        fn active_order(
            &self,
            provider: &OrgNumber,
            client: &PersonalIdentityNumber,
            day: NaiveDate,
            named: Option<&str>,
        ) -> Option<String> {
            self.facts.active_order(provider, client, day, named)
        }
        fn overlapping(&self, staff: &str, client: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<String> {
            self.facts.overlapping(staff, client, from, to)
        }
        fn duplicate_of(&self, v: &Visit) -> Option<String> {
            self.facts.duplicate_of(v)
        }
        fn month_closed(&self, year: i32, month: u32) -> bool {
            self.facts.month_closed(year, month)
        }
    }

    impl VisitLedger for Ledger {
        type Error = IngestError;
        fn insert_visit(&mut self, v: VisitToStore<'_>) -> Result<bool, IngestError> {
            if self.stored.iter().any(|(id, ..)| id == v.source_id) {
                return Ok(false);
            }
            self.stored.push((v.source_id.to_owned(), v.order_id.map(str::to_owned), v.month, v.manual));
            Ok(true)
        }
        fn set_cursor(&mut self, system: &str, cursor: &str) -> Result<(), IngestError> {
            self.cursor = Some((system.to_owned(), cursor.to_owned()));
            Ok(())
        }
        fn set_canonical(&mut self, summary: String) -> Result<(), IngestError> {
            self.canonical = Some(summary);
            Ok(())
        }
    }

    #[test]
    fn ingest_decides_what_the_ledger_stores_and_logs() {
        let mut ledger = Ledger::default();
        let batch = Batch {
            system: "phoniro",
            visits: vec![
                IncomingVisit::Visit { visit: Box::new(visit()), line: Some(1) },
                IncomingVisit::Unreadable { line: Some(2), code: "VALIDATION_FAILED".into(), message: "bad".into() },
                IncomingVisit::Visit { visit: Box::new(visit()), line: Some(3) },
            ],
            thresholds: Thresholds::default(),
            now: now(),
            cursor: Some("page-2"),
        };
        let results = ingest(&mut ledger, batch).expect("ingests");
        let outcomes: Vec<_> = results.iter().map(|r| (r.outcome, r.codes.clone(), r.duplicate_of.clone())).collect();
        assert_eq!(
            outcomes,
            vec![
                (Outcome::Accepted, vec![], None),
                (Outcome::Rejected, vec!["VALIDATION_FAILED".to_owned()], None),
                (Outcome::Rejected, vec!["VIS007".to_owned()], Some("phoniro:V-1".to_owned())),
            ],
            "the same id twice in one batch is a copy, found by the ledger's insert"
        );
        assert_eq!(
            ledger.stored,
            vec![("phoniro:V-1".to_owned(), Some("O-1".to_owned()), Month::new(2026, 11).expect("month"), false)]
        );
        assert_eq!(ledger.cursor, Some(("phoniro".to_owned(), "page-2".to_owned())));
        let summary: serde_json::Value = serde_json::from_str(ledger.canonical.as_deref().expect("set")).expect("json");
        assert_eq!(summary["cursor"], "page-2");
        assert_eq!(summary["results"].as_array().map(Vec::len), Some(3));

        let mut nameless = visit();
        nameless.id = None;
        let batch = Batch {
            system: "phoniro",
            visits: vec![IncomingVisit::Visit { visit: Box::new(nameless), line: None }],
            thresholds: Thresholds::default(),
            now: now(),
            cursor: None,
        };
        assert!(matches!(ingest(&mut Ledger::default(), batch), Err(IngestError::MissingId)));
    }
}
