//! Section 7 of the demo: a decision's life over the month. The case officer in Combine
//! sends later versions of four decisions (Beslutsandring, in Combine's XML), each on its
//! day: minutes raised after a fall, a hospital stay, a switch to another provider (on
//! another Phoniro system) and an end when the client moves into residential care. The
//! providers send deviations and a change of need in Phoniro's JSON, which the hub carries
//! to the case officer. What the hub derived (order changes, ends, the new order) is read
//! back and checked against what was sent.
//!
//! The events are data ([`EVENTS`], [`REPORTS`]) so that the month's visits
//! ([`super::visits`]) and this section draw on the same story; the visits themselves
//! follow the orders' schedules as the hub stored them, not these constants.

use std::collections::BTreeMap;

use anyhow::Context;
use carehub_core::store::{DeliveryFilter, OrderFilter, Store};
use chrono::NaiveDate;
use serde_json::{json, Value};

use super::scenario::{PlayedMonth, PROVIDERS};
use super::vendors::{MockCaseManagement, MockPhoniro};

/// What a later version of a decision changes (days are days of the played month).
#[derive(Debug, Clone, Copy)]
pub(super) enum Change {
    /// New minutes per month from a day: the whole new list of services.
    Minutes { from: u64, services: &'static [(&'static str, u32)] },
    /// A hospital stay: no help from one day to another, both included.
    Pause { from: u64, to: u64 },
    /// The client chooses another provider (index into [`PROVIDERS`]) from a day.
    Switch { to: usize, from: u64 },
    /// Help ends after a day: the client moves into residential care.
    End { last: u64 },
}

/// A later version of one of the demo's Combine decisions (by its number), sent on a day.
#[derive(Debug, Clone, Copy)]
pub(super) struct Event {
    pub(super) decision: usize,
    pub(super) sent: u64,
    pub(super) change: Change,
}

/// The month's decision changes. Decisions 2, 4 and 6 are at the first provider, 17 at the
/// second; none of them is one the providers answer late or turn down.
pub(super) const EVENTS: [Event; 4] = [
    Event { decision: 4, sent: 5, change: Change::Pause { from: 5, to: 12 } },
    Event {
        decision: 2,
        sent: 9,
        change: Change::Minutes { from: 10, services: &[("PO", 3000), ("MAT", 300), ("LARM", 30)] },
    },
    Event { decision: 6, sent: 14, change: Change::Switch { to: 2, from: 17 } },
    Event { decision: 17, sent: 19, change: Change::End { last: 20 } },
];

/// A provider's report for the case officer.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    /// A deviation (avvikelse): Phoniro's category and severity, and what happened.
    Deviation(&'static str, &'static str, &'static str),
    /// A change of need (bevakning): INCREASED or DECREASED, and what was seen.
    NeedChange(&'static str, &'static str),
}

/// A report by the provider (index into [`PROVIDERS`]) about a decision's client, on a day.
#[derive(Debug, Clone, Copy)]
pub(super) struct Report {
    pub(super) provider: usize,
    pub(super) decision: usize,
    pub(super) day: u64,
    pub(super) kind: Kind,
}

/// The month's reports: a fall and the need it leaves (before the minutes are raised), a
/// missed visit, and the new provider's first deviation after the switch.
pub(super) const REPORTS: [Report; 4] = [
    Report {
        provider: 0,
        decision: 2,
        day: 8,
        kind: Kind::Deviation("FALL", "HIGH", "Låg på hallgolvet vid morgonbesöket; sjuksköterska tillkallad."),
    },
    Report {
        provider: 0,
        decision: 2,
        day: 8,
        kind: Kind::NeedChange("INCREASED", "Behöver hjälp vid förflyttning och dusch sedan fallet."),
    },
    Report {
        provider: 1,
        decision: 19,
        day: 12,
        kind: Kind::Deviation("MISSED_VISIT", "MEDIUM", "Lunchbesöket uteblev, personal sjuk."),
    },
    Report {
        provider: 2,
        decision: 6,
        day: 24,
        kind: Kind::Deviation("CARE_REFUSED", "LOW", "Ville inte duscha i dag; erbjuds igen i morgon."),
    },
];

/// A decision's id in this run.
pub(super) fn decision_id(run: &str, n: usize) -> String {
    format!("DEC-{run}-{n:03}")
}

/// The Combine XML of a later version.
fn beslutsandring(run: &str, e: &Event, month: &PlayedMonth) -> String {
    let day = |n: u64| month.day(n);
    let (effective, body) = match e.change {
        Change::Minutes { from, services } => (
            day(from),
            services
                .iter()
                .map(|(code, m)| format!("<Insats kod=\"{code}\"><MinuterPerManad>{m}</MinuterPerManad></Insats>"))
                .collect::<String>(),
        ),
        Change::Pause { from, to } => (
            day(from),
            format!(
                "<UppehallFrom>{}</UppehallFrom><UppehallTom>{}</UppehallTom><Uppehallsorsak kod=\"SJUKHUS\"/>",
                day(from),
                day(to)
            ),
        ),
        Change::Switch { to, from } => {
            (day(from), format!("<Utforare orgnr=\"{}\"/><ForstaDag>{}</ForstaDag>", PROVIDERS[to].org, day(from)))
        }
        Change::End { last } => (day(last), format!("<SistaDag>{}</SistaDag><Avslutsorsak kod=\"SABO\"/>", day(last))),
    };
    let kind = match e.change {
        Change::Minutes { .. } => "Insatser",
        Change::Pause { .. } => "Uppehall",
        Change::Switch { .. } => "Utforarbyte",
        Change::End { .. } => "Avslut",
    };
    format!(
        "<Beslutsandring xmlns=\"urn:carehub:vendor:combine:1\"><BeslutsId>{}</BeslutsId><Version>1</Version>\
         <GallerFrom>{effective}</GallerFrom><Beslutstidpunkt>{}</Beslutstidpunkt><Andring typ=\"{kind}\">{body}</Andring></Beslutsandring>",
        decision_id(run, e.decision),
        month.decided_at_on(e.sent)
    )
}

/// Phoniro's JSON for a report, sent now (`at`).
fn phoniro_report(run: &str, k: usize, r: &Report, client: &str, day: NaiveDate, at: &str) -> Value {
    let provider = json!({"organisationNumber": PROVIDERS[r.provider].org});
    match r.kind {
        Kind::Deviation(category, severity, text) => json!({
            "type": "deviation", "deviationId": format!("AV-{run}-{k}"), "provider": provider,
            "client": {"personalIdentityNumber": client}, "occurredDate": day, "category": category,
            "severity": severity, "description": text, "reportedAt": at
        }),
        Kind::NeedChange(direction, text) => json!({
            "type": "needChange", "needChangeId": format!("BEV-{run}-{k}"), "provider": provider,
            "client": {"personalIdentityNumber": client}, "noticedDate": day, "direction": direction,
            "description": text, "reportedAt": at
        }),
    }
}

/// What happened on one day of the decisions' lives, for the section's lines.
pub(super) struct Sent {
    day: NaiveDate,
    line: String,
}

/// Section 7's sender: sends the day's events and reports, then reads back and prints.
pub(super) struct LifeRun<'a> {
    pub(super) http: &'a reqwest::Client,
    pub(super) url: &'a str,
    pub(super) cm_token: &'a str,
    pub(super) tokens: &'a BTreeMap<String, String>,
    pub(super) store: &'a dyn Store,
    pub(super) run: &'a str,
    pub(super) month: PlayedMonth,
    pub(super) clients: &'a [&'static str],
}

impl LifeRun<'_> {
    fn client(&self, decision: usize) -> &'static str {
        self.clients[decision % self.clients.len()]
    }

    /// Sends what is due on day `n` of the month; a line per message for the section.
    pub(super) async fn send_day(&self, n: u64, now: &str) -> anyhow::Result<Vec<Sent>> {
        let mut sent = Vec::new();
        for e in EVENTS.iter().filter(|e| e.sent == n) {
            let body = beslutsandring(self.run, e, &self.month);
            let answer = self.post("combine-ekero", self.cm_token, "application/xml", body).await?;
            let what = match e.change {
                Change::Minutes { from, services } => format!(
                    "minutes raised from {} after a fall ({} min a month)",
                    self.month.day(from),
                    services.iter().map(|s| s.1).sum::<u32>()
                ),
                Change::Pause { from, to } => {
                    format!("a hospital stay: no help {} to {}", self.month.day(from), self.month.day(to))
                }
                Change::Switch { to, from } => {
                    format!("the client chooses {} from {}", PROVIDERS[to].name, self.month.day(from))
                }
                Change::End { last } => {
                    format!("moves into residential care: last day {}", self.month.day(last))
                }
            };
            sent.push(Sent {
                day: self.month.day(n),
                line: format!("{} v1 {what}: {}", decision_id(self.run, e.decision), status(&answer)),
            });
        }
        for (k, r) in REPORTS.iter().enumerate().filter(|(_, r)| r.day == n) {
            let p = &PROVIDERS[r.provider];
            let token = self.tokens.get(p.org).context("a provider token")?;
            let body = phoniro_report(self.run, k + 1, r, self.client(r.decision), self.month.day(n), now);
            let answer = self.post(p.system, token, "application/json", body.to_string()).await?;
            let what = match r.kind {
                Kind::Deviation(category, ..) => format!("deviation {}", category.to_lowercase().replace('_', " ")),
                Kind::NeedChange(direction, _) => format!("change of need ({})", direction.to_lowercase()),
            };
            sent.push(Sent {
                day: self.month.day(n),
                line: format!("{} reports a {what} for decision {}'s client: {}", p.name, r.decision, status(&answer)),
            });
        }
        Ok(sent)
    }

    async fn post(&self, system: &str, token: &str, content_type: &str, body: String) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(format!("{}/v1/systems/{system}/messages", self.url))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST to {system}"))?;
        let code = resp.status().as_u16();
        let mut v: Value = resp.json().await.unwrap_or(Value::Null);
        v["http"] = json!(code);
        Ok(v)
    }

    /// Prints the section from what was sent and what the hub and the mocks hold now;
    /// returns where that differs from the story.
    pub(super) async fn report(
        &self,
        sent: &[Sent],
        norr: &MockPhoniro,
        soder: &MockPhoniro,
        combine: &MockCaseManagement,
    ) -> anyhow::Result<Vec<String>> {
        out!(
            "7. A decision's life in {}: Combine sends later versions (Beslutsandring), providers report back",
            self.month.first.format("%B %Y")
        );
        for s in sent {
            out!("   {}  {}", s.day, s.line);
        }
        let deliveries = self.store.deliveries(DeliveryFilter { limit: 100_000, ..DeliveryFilter::default() }).await?;
        let count = |kind: &str| deliveries.iter().filter(|d| d.message_type == kind).count();
        let delivered =
            |kind: &str| deliveries.iter().filter(|d| d.message_type == kind && d.state == "delivered").count();
        let (changes, ends) = {
            let (a, b) = norr.changes_and_ends();
            let (c, d) = soder.changes_and_ends();
            (a + c, b + d)
        };
        out!(
            "   derived: {} order changes and {} order ends to the providers' systems ({} and {} delivered; Phoniro took {changes} and {ends})",
            count("order_change"),
            count("order_end"),
            delivered("order_change"),
            delivered("order_end")
        );
        let switched = EVENTS.iter().find_map(|e| match e.change {
            Change::Switch { to, from } => Some((e.decision, to, from)),
            _ => None,
        });
        let mut problems = Vec::new();
        let mut expect = |what: &str, want: usize, got: usize| {
            if want != got {
                problems.push(format!("{what}: the demo sent for {want}, the hub and the mocks say {got}"));
            }
        };
        if let Some((n, to, from)) = switched {
            let orders = self
                .store
                .orders(OrderFilter {
                    decision_id: Some(format!("combine:{}", decision_id(self.run, n))),
                    limit: 10,
                    ..OrderFilter::default()
                })
                .await?;
            let new = orders.iter().find(|o| o.order.provider.as_str() == PROVIDERS[to].org);
            let old = orders.iter().find(|o| o.order.provider.as_str() != PROVIDERS[to].org);
            out!(
                "   the switch: {} ends {} at {}, {} starts {} at {} ({}, execute by {}, plan due {})",
                old.map_or("?", |o| o.order.id.as_str()),
                old.and_then(|o| o.order.end_date).map_or("?".into(), |d| d.to_string()),
                old.map_or("?", |o| o.provider_system.as_str()),
                new.map_or("?", |o| o.order.id.as_str()),
                new.map_or("?".into(), |o| o.order.start_date.to_string()),
                new.map_or("?", |o| o.provider_system.as_str()),
                new.map_or("not answered", |o| o.status.as_str()),
                new.map_or("?".into(), |o| o.order.execute_by.to_string()),
                new.map_or("?".into(), |o| o.order.plan_due.to_string()),
            );
            expect(
                "a new order from the switch day",
                1,
                usize::from(new.is_some_and(|o| o.order.start_date == self.month.day(from))),
            );
            expect(
                "the old order ending the day before the switch",
                1,
                usize::from(old.is_some_and(|o| o.order.end_date == self.month.day(from).pred_opt())),
            );
        }
        let (deviations, needs) = combine.reports();
        let sent_deviations = REPORTS.iter().filter(|r| matches!(r.kind, Kind::Deviation(..))).count();
        let sent_needs = REPORTS.len() - sent_deviations;
        let plural = |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        out!(
            "   Combine received {} (Avvikelse) and {} (Bevakning), each linked to the client's order at that provider",
            plural(deviations, "deviation", "deviations"),
            plural(needs, "change of need", "changes of need")
        );
        let events = |f: fn(&Change) -> bool| EVENTS.iter().filter(|e| f(&e.change)).count();
        // Minutes and pauses change an order; a switch ends one (and starts another), so does an end.
        let want_changes = events(|c| matches!(c, Change::Minutes { .. } | Change::Pause { .. }));
        let want_ends = events(|c| matches!(c, Change::Switch { .. } | Change::End { .. }));
        expect("order changes derived", want_changes, count("order_change"));
        expect("order changes taken by Phoniro", want_changes, changes);
        expect("order ends derived", want_ends, count("order_end"));
        expect("order ends taken by Phoniro", want_ends, ends);
        expect("deviations at Combine", sent_deviations, deviations);
        expect("changes of need at Combine", sent_needs, needs);
        for p in &problems {
            out!("   MISMATCH {p}");
        }
        out!("");
        Ok(problems)
    }
}

/// A receipt in a few words: its status, and its code if it has one.
fn status(answer: &Value) -> String {
    let s = answer["status"].as_str().unwrap_or("?");
    match answer["code"].as_str() {
        Some(code) => format!("{} {s} {code}", answer["http"]),
        None => format!("{} {s}", answer["http"]),
    }
}
