//! Section 7 of the demo: a month of visits. Tags in the homes, NFC check-ins and
//! check-outs drawn for each provider's staff (`VisitPlan::draw`) with faults planted,
//! delivered through the vendors' real paths (Phoniro's feed and pushes, ParaGå's daily
//! files), and what the hub made of it read back and checked against what was planted
//! (`VisitRun::play`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::StatusCode;
use carehub_core::followup::Band;
use carehub_core::store::{DeliveryFilter, LogFilter, OrderFilter, Store};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::{json, Value};

use super::scenario::{rfc3339, stockholm, PlayedMonth, FEED_PAGE, PROVIDERS, SFTP_PROVIDER};
use super::vendors::{MockCaseManagement, MockPhoniro};
use crate::sshd::LocalSshd;

/// A provider whose visits the demo plays.
struct VisitProvider {
    org: &'static str,
    name: &'static str,
    system: &'static str,
    /// Staff ids are `<staff>-sNN` (pseudonymous, as the systems send them).
    staff: &'static str,
    /// One visit in this many is registered by hand, with a reason.
    manual_every: usize,
    /// Its clients' personal identity numbers: one home, one tag each.
    clients: Vec<String>,
    /// Each client's granted time at this provider (by the same index).
    grants: Vec<Grant>,
}

/// A client's granted time at a provider over the month, day by day, as the hub prorates
/// it (SPEC §7), and how much of it the provider performs.
#[derive(Debug, Clone)]
pub(super) struct Grant {
    /// Each day's share of the minutes per month in force (0 on a day with no active
    /// order: before it starts, in a pause, after it ends).
    daily: Vec<f64>,
    /// The month's granted minutes, by the hub's rule.
    granted: i64,
    /// The orders behind it (one, as the demo's decisions are drawn).
    orders: Vec<String>,
}

impl Grant {
    /// The same minutes per month on every day from `from` to `to` (days of the month,
    /// 1-based, both included), as for an order that never changed.
    #[cfg(test)]
    fn steady(minutes: i64, month: &PlayedMonth, from: u64, to: u64) -> Grant {
        #[allow(clippy::cast_precision_loss)]
        let daily: Vec<f64> = (1..=u64::try_from(month.len()).unwrap_or(28))
            .map(|d| if (from..=to).contains(&d) { minutes as f64 / month.len() as f64 } else { 0.0 })
            .collect();
        #[allow(clippy::cast_possible_truncation)]
        let granted = daily.iter().sum::<f64>().round() as i64;
        Grant { daily, granted, orders: vec![format!("O-TEST-{minutes}-{from}")] }
    }
}

/// Minutes a month from which a client's visits may carry a planted fault.
const STURDY: i64 = 1000;

/// The outliers the demo plants: (provider index, client index, share of granted time
/// performed). Everyone else performs 97-105% of what was granted.
const OUTLIERS: [(usize, usize, f64); 4] = [(0, 3, 0.6), (0, 9, 1.45), (1, 4, 1.4), (2, 1, 0.55)];

/// How a registration at the door was made.
#[derive(Debug, Clone)]
enum Reg {
    Nfc(String),
    Manual(Option<&'static str>),
}

/// How a visit reaches the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// A page of Phoniro's feed, pulled by the hub.
    Feed,
    /// Pushed by Phoniro as it was registered.
    Push,
    /// A row of ParaGå's daily file.
    File,
}

/// One visit the demo plants, with the codes the hub should give it.
#[derive(Debug, Clone)]
struct Planned {
    id: String,
    provider: usize,
    client: String,
    staff: String,
    day: NaiveDate,
    start: DateTime<Utc>,
    minutes: i64,
    planned: i64,
    /// Index into [`ACTIVITIES`].
    activity: usize,
    reg: Reg,
    declined: bool,
    channel: Channel,
    codes: Vec<&'static str>,
    /// The client's grant is large enough that a fault planted on this visit leaves it
    /// within 80-120% of it.
    sturdy: bool,
}

impl Planned {
    fn end(&self) -> DateTime<Utc> {
        self.start + chrono::Duration::minutes(self.minutes)
    }

    fn plain(&self) -> bool {
        matches!(self.reg, Reg::Nfc(_)) && !self.declined && self.codes.is_empty()
    }

    fn manual(&self) -> bool {
        matches!(self.reg, Reg::Manual(_)) || self.codes.contains(&"VIS001")
    }

    fn outcome(&self) -> &'static str {
        if self.codes.iter().any(|c| *c != "VIS001") {
            "rejected"
        } else if self.manual() || self.declined {
            "flagged"
        } else {
            "accepted"
        }
    }

    /// As Phoniro sends it: a feed page's element, or with `"type": "visit"` when pushed.
    fn phoniro(&self, org: &str) -> Value {
        let reg = |at: DateTime<Utc>| {
            let mut r = json!({"time": rfc3339(at)});
            match &self.reg {
                Reg::Nfc(tag) => {
                    r["method"] = json!("NFC");
                    r["tagUid"] = json!(tag);
                }
                Reg::Manual(reason) => {
                    r["method"] = json!("MANUAL");
                    if let Some(why) = reason {
                        r["reason"] = json!(why);
                    }
                }
            }
            r
        };
        let mut v = json!({
            "visitId": self.id, "provider": {"organisationNumber": org},
            "client": {"personalIdentityNumber": self.client}, "staffId": self.staff,
            "checkIn": reg(self.start), "checkOut": reg(self.end()), "plannedMinutes": self.planned,
            "activities": [ACTIVITIES[self.activity % ACTIVITIES.len()].0],
            "status": if self.declined { "DECLINED" } else { "PERFORMED" }, "doubleStaffing": false
        });
        if self.channel == Channel::Push {
            v["type"] = json!("visit");
        }
        v
    }

    /// As a row of ParaGå's daily file (local times; a Gick before Kom is the next day).
    fn paraga_row(&self) -> String {
        let tz = carehub_model::MUNICIPAL_TZ;
        let (kom, gick) = (self.start.with_timezone(&tz), self.end().with_timezone(&tz));
        let (tag, registration) = match &self.reg {
            Reg::Nfc(tag) => (tag.as_str(), "NFC".to_owned()),
            Reg::Manual(Some(why)) => ("", format!("Manuell:{why}")),
            Reg::Manual(None) => ("", "Manuell".to_owned()),
        };
        format!(
            "{};{};{};{};{tag};{registration};{};{};{}\r\n",
            self.client,
            kom.format("%Y-%m-%d"),
            kom.format("%H:%M"),
            gick.format("%H:%M"),
            ACTIVITIES[self.activity % ACTIVITIES.len()].1,
            if self.declined { "Avböjd" } else { "Utförd" },
            self.staff
        )
    }
}

/// What staff do at a visit: Phoniro's activity code and ParaGå's service code.
const ACTIVITIES: [(&str, &str); 3] = [("CARE", "OMV"), ("MEAL", "MAT"), ("SERVICE", "SERV")];

/// Why a registration was made by hand, as staff write it.
const REASONS: [&str; 6] = [
    "Taggen saknas",
    "Telefonen laddade ur",
    "Taggen gick inte att läsa",
    "Ny personal, appen inte aktiverad",
    "Taggen sitter bakom en garderob",
    "Mobilen glömd på kontoret",
];

/// The visit rules' codes with what each means, for the summary.
const CODES: [(&str, &str); 10] = [
    ("VIS001", "tag unknown: flagged, counted as a manual registration"),
    ("VIS002", "tag registered to another client on the visit date: rejected"),
    ("VIS003", "check-out before check-in, or none 12 hours after: rejected"),
    ("VIS004", "shorter than a minute or longer than 8 hours: rejected"),
    ("VIS005", "the same staff member in two homes at once: the later one rejected"),
    ("VIS006", "in the future, or in a closed month: rejected"),
    ("VIS007", "a copy of a visit already received: not stored again"),
    ("VIS008", "a manual registration without a reason: rejected"),
    ("VIS009", "no active order for the client at the provider that day: rejected"),
    ("VIS010", "the client's identity is not valid: rejected"),
];

/// The tags in the homes: one each, and one moved to another home mid-month.
struct Tags {
    /// Each client's home tag, from the month's first day.
    home: BTreeMap<String, String>,
    moved: Option<TagMove>,
}

/// A tag registered again for another home from `on`; its old home gets `new_tag`. Staff
/// at the old home keep reading the old tag for a while (VIS002).
struct TagMove {
    tag: String,
    from: String,
    to: String,
    on: NaiveDate,
    new_tag: String,
}

impl Tags {
    /// A tag in every home the providers visit; one moves on the 15th, between two homes
    /// only the first provider visits.
    fn for_homes(providers: &[VisitProvider], month: &PlayedMonth) -> Tags {
        let homes: BTreeSet<&String> = providers.iter().flat_map(|p| p.clients.iter()).collect();
        let home: BTreeMap<String, String> =
            homes.iter().enumerate().map(|(i, c)| ((*c).clone(), format!("04D3{:06X}1C80", i + 1))).collect();
        let only_first: Vec<&String> = match providers {
            [first, others @ ..] => first
                .clients
                .iter()
                .zip(&first.grants)
                .filter(|(c, g)| g.granted >= STURDY && !others.iter().any(|o| o.clients.contains(c)))
                .map(|(c, _)| c)
                .collect(),
            [] => Vec::new(),
        };
        let moved = match only_first.as_slice() {
            [_, from, to, ..] => home.get(*from).map(|tag| TagMove {
                tag: tag.clone(),
                from: (*from).clone(),
                to: (*to).clone(),
                on: month.day(15),
                new_tag: "04D4000001A2B3".to_owned(),
            }),
            _ => None,
        };
        Tags { home, moved }
    }

    /// What the municipality registers: (tag, client, installed on).
    fn registrations(&self, month: &PlayedMonth) -> Vec<(String, String, NaiveDate)> {
        let mut all: Vec<(String, String, NaiveDate)> =
            self.home.iter().map(|(c, t)| (t.clone(), c.clone(), month.first)).collect();
        if let Some(m) = &self.moved {
            all.push((m.tag.clone(), m.to.clone(), m.on));
            all.push((m.new_tag.clone(), m.from.clone(), m.on));
        }
        all
    }

    /// The tag hanging in `client`'s home on `day`.
    fn at(&self, client: &str, day: NaiveDate) -> String {
        match &self.moved {
            Some(m) if m.from == client && day >= m.on => m.new_tag.clone(),
            _ => self.home.get(client).cloned().unwrap_or_default(),
        }
    }
}

/// The month of visits the demo sends, with what the hub should make of it.
struct VisitPlan {
    visits: Vec<Planned>,
    /// Phoniro systems' feeds, in the order they serve them.
    feeds: BTreeMap<&'static str, Vec<Planned>>,
    /// The id of the push that is sent twice.
    retried: Option<String>,
}

impl VisitPlan {
    /// Draws a month: each client's visits follow its granted time (what it is owed piles
    /// up day by day and is visited off in one to three visits of 15-60 minutes), by a
    /// small staff pool, each staff member's day one visit after another, then the faults.
    fn draw(providers: &[VisitProvider], tags: &Tags, month: &PlayedMonth) -> VisitPlan {
        let mut rng = fastrand::Rng::with_seed(2026);
        let mut visits: Vec<Planned> = Vec::new();
        let mut n = 0usize;
        let yymm = month.first.format("%y%m").to_string();
        let factors: Vec<Vec<f64>> = providers
            .iter()
            .enumerate()
            .map(|(pi, p)| {
                (0..p.clients.len())
                    .map(|ci| {
                        let planted = OUTLIERS.iter().find(|(op, oc, _)| *op == pi && *oc == ci);
                        planted.map_or_else(|| 0.97 + rng.f64() * 0.08, |o| o.2)
                    })
                    .collect()
            })
            .collect();
        for (pi, p) in providers.iter().enumerate() {
            let pool = p.clients.len().div_ceil(4) + 1;
            let paraga = p.system == "paraga-stockholm";
            let mut owed = vec![0.0f64; p.clients.len()];
            for (d, day) in month.days().enumerate() {
                // Minutes after midnight each staff member is free again.
                let mut free = vec![6 * 60 + 45; pool];
                let turn = day.ordinal0() as usize;
                // Today's visits per client, and each one's planned length.
                let today: Vec<(usize, i64)> = (0..p.clients.len())
                    .map(|ci| {
                        let share = p.grants[ci].daily.get(d).copied().unwrap_or(0.0);
                        if share <= 0.0 {
                            return (0, 0);
                        }
                        owed[ci] += share * factors[pi][ci];
                        let count = match owed[ci] {
                            o if o >= 100.0 => 3,
                            o if o >= 55.0 => 2,
                            o if o >= 18.0 => 1,
                            _ => 0,
                        };
                        #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
                        let planned = if count == 0 {
                            0
                        } else {
                            ((owed[ci] / count as f64 / 5.0).round() as i64 * 5).clamp(15, 60)
                        };
                        (count, planned)
                    })
                    .collect();
                for (slot, slot_start) in [(0usize, 7 * 60), (1, 11 * 60 + 30), (2, 17 * 60)] {
                    for k in 0..p.clients.len() {
                        let ci = (k + turn) % p.clients.len();
                        let (count, planned) = today[ci];
                        let visited = match count {
                            0 => false,
                            1 => slot == 0,
                            2 => slot != 1,
                            _ => true,
                        };
                        if !visited {
                            continue;
                        }
                        let s = (0..pool).min_by_key(|s| (free[*s], *s)).unwrap_or(0);
                        let start = i64::max(free[s], slot_start) + rng.i64(0..10);
                        let minutes = planned + rng.i64(-4..=4);
                        #[allow(clippy::cast_precision_loss)]
                        {
                            owed[ci] -= minutes as f64;
                        }
                        free[s] = start + minutes + rng.i64(5..=15);
                        n += 1;
                        visits.push(Planned {
                            id: format!("V-{yymm}-{n:05}"),
                            provider: pi,
                            client: p.clients[ci].clone(),
                            staff: format!("{}-s{:02}", p.staff, s + 1),
                            day,
                            start: stockholm(day, start),
                            minutes,
                            planned,
                            activity: match slot {
                                0 => 0,
                                1 => 1,
                                _ => 2 * (ci % 2),
                            },
                            reg: Reg::Nfc(tags.at(&p.clients[ci], day)),
                            declined: false,
                            channel: if paraga {
                                Channel::File
                            } else if day == month.last {
                                Channel::Push
                            } else {
                                Channel::Feed
                            },
                            codes: Vec::new(),
                            sturdy: p.grants[ci].granted >= STURDY,
                        });
                    }
                }
            }
        }
        // Manual registrations with a reason (one in `manual_every` per provider, at a
        // random place in each run of that many) and a few visits declined at the door.
        for (pi, p) in providers.iter().enumerate() {
            let mine: Vec<usize> = (0..visits.len()).filter(|i| visits[*i].provider == pi).collect();
            for (b, block) in mine.chunks(p.manual_every.max(2)).enumerate() {
                if block.len() == p.manual_every.max(2) {
                    let i = block[rng.usize(0..block.len())];
                    visits[i].reg = Reg::Manual(Some(REASONS[(b + pi) % REASONS.len()]));
                }
            }
            for block in mine.chunks(90) {
                if let Some(&i) = block.get(rng.usize(0..90)) {
                    if visits[i].plain() && visits[i].sturdy {
                        visits[i].declined = true;
                        visits[i].minutes = rng.i64(2..=4);
                    }
                }
            }
        }
        let pick = |visits: &[Planned], provider: usize, channel: Channel, from: NaiveDate| {
            visits
                .iter()
                .position(|v| v.provider == provider && v.channel == channel && v.day >= from && v.plain() && v.sturdy)
        };
        let plant = |visits: &mut Vec<Planned>, at: Option<usize>, code: &'static str, reg: Option<Reg>| {
            if let Some(v) = at.and_then(|i| visits.get_mut(i)) {
                v.codes.push(code);
                if let Some(r) = reg {
                    v.reg = r;
                }
            }
        };
        // VIS008: by hand without a reason, once in each channel.
        let phoniro_last = providers.iter().rposition(|p| p.system != "paraga-stockholm");
        let paraga = providers.iter().position(|p| p.system == "paraga-stockholm");
        let at = pick(&visits, 0, Channel::Feed, month.day(7));
        plant(&mut visits, at, "VIS008", Some(Reg::Manual(None)));
        if let Some(pi) = phoniro_last {
            let at = pick(&visits, pi, Channel::Push, month.last);
            plant(&mut visits, at, "VIS008", Some(Reg::Manual(None)));
        }
        if let Some(pi) = paraga {
            let at = pick(&visits, pi, Channel::File, month.day(13));
            plant(&mut visits, at, "VIS008", Some(Reg::Manual(None)));
        }
        // VIS001: a tag nobody registered (a spare from the drawer), at two providers.
        for (k, (pi, on)) in [(1usize, 4u64), (2, 8)].into_iter().enumerate() {
            if pi < providers.len() {
                let at = pick(&visits, pi, Channel::Feed, month.day(on));
                plant(&mut visits, at, "VIS001", Some(Reg::Nfc(format!("04EE{:06X}5A81", k + 1))));
            }
        }
        // VIS002: the moved tag read at its old home after the move, three times.
        if let Some(m) = &tags.moved {
            for _ in 0..3 {
                let at = visits
                    .iter()
                    .position(|v| v.client == m.from && v.day >= m.on && v.channel == Channel::Feed && v.plain());
                plant(&mut visits, at, "VIS002", Some(Reg::Nfc(m.tag.clone())));
            }
        }
        // VIS004: a check-out forgotten until the night (the staff member's last visit that day).
        if providers.len() > 1 {
            let staff = format!("{}-s01", providers[1].staff);
            let at = (10..20).map(|d| month.day(d)).find_map(|day| {
                let last = (0..visits.len())
                    .filter(|i| visits[*i].provider == 1 && visits[*i].staff == staff && visits[*i].day == day)
                    .max_by_key(|i| visits[*i].start)?;
                (visits[last].plain() && visits[last].sturdy && visits[last].channel == Channel::Feed).then_some(last)
            });
            if let Some(v) = at.and_then(|i| visits.get_mut(i)) {
                v.minutes = 8 * 60 + 30;
                v.codes.push("VIS004");
            }
        }
        // VIS005: a staff member registered in a second home while in the first; the second
        // visit reaches the hub later (at the end of the feed).
        let mut extras = Vec::new();
        for (pi, on) in [(0usize, 5u64), (2, 9)] {
            let Some(p) = providers.get(pi) else { continue };
            let moved_from = tags.moved.as_ref().map(|m| m.from.as_str());
            let original = visits.iter().find(|v| {
                v.provider == pi
                    && v.channel == Channel::Feed
                    && v.day >= month.day(on)
                    && v.plain()
                    && v.sturdy
                    && v.minutes >= 30
                    && Some(v.client.as_str()) != moved_from
            });
            let Some(original) = original else { continue };
            let day0 = (original.day - month.first).num_days();
            let active = |ci: usize| {
                usize::try_from(day0).ok().and_then(|d| p.grants[ci].daily.get(d)).is_some_and(|m| *m > 0.0)
            };
            let Some(other) = p
                .clients
                .iter()
                .enumerate()
                .find(|(ci, c)| **c != original.client && Some(c.as_str()) != moved_from && active(*ci))
                .map(|(_, c)| c)
            else {
                continue;
            };
            n += 1;
            extras.push(Planned {
                id: format!("V-{yymm}-{n:05}"),
                client: other.clone(),
                start: original.start + chrono::Duration::minutes(10),
                minutes: 15,
                planned: 15,
                reg: Reg::Nfc(tags.at(other, original.day)),
                codes: vec!["VIS005"],
                ..original.clone()
            });
        }
        // VIS009: a stand-in goes to a client two days after help ended (at the second
        // provider if one of its clients' orders ended, else the first such client).
        let ended = providers
            .iter()
            .enumerate()
            .flat_map(|(pi, p)| p.grants.iter().enumerate().map(move |(ci, g)| (pi, ci, g)))
            .filter_map(|(pi, ci, g)| {
                let last = g.daily.iter().rposition(|m| *m > 0.0)?;
                let after = month.day(u64::try_from(last).ok()? + 3);
                (after > month.day(u64::try_from(last).ok()? + 1) && providers[pi].system != "paraga-stockholm")
                    .then_some((pi, ci, after))
            })
            .min_by_key(|(pi, _, _)| usize::from(*pi != 1));
        if let Some((pi, ci, day)) = ended {
            let p = &providers[pi];
            n += 1;
            extras.push(Planned {
                id: format!("V-{yymm}-{n:05}"),
                provider: pi,
                client: p.clients[ci].clone(),
                staff: format!("{}-s99", p.staff),
                day,
                start: stockholm(day, 10 * 60),
                minutes: 30,
                planned: 30,
                activity: 0,
                reg: Reg::Nfc(tags.at(&p.clients[ci], day)),
                declined: false,
                channel: if day == month.last { Channel::Push } else { Channel::Feed },
                codes: vec!["VIS009"],
                sturdy: false,
            });
        }
        let mut feeds: BTreeMap<&'static str, Vec<Planned>> = BTreeMap::new();
        for v in visits.iter().filter(|v| v.channel == Channel::Feed) {
            feeds.entry(providers[v.provider].system).or_default().push(v.clone());
        }
        for feed in feeds.values_mut() {
            feed.sort_by_key(|v| v.start);
        }
        for e in extras.iter().filter(|e| e.channel == Channel::Feed) {
            feeds.entry(providers[e.provider].system).or_default().push(e.clone());
        }
        visits.extend(extras);
        // The retried push: one of the second provider's pushes, sent twice.
        let retried =
            visits.iter().find(|v| v.channel == Channel::Push && v.provider == 1 && v.plain()).map(|v| v.id.clone());
        VisitPlan { visits, feeds, retried }
    }

    /// What the follow-up should say of each client at each provider: its granted time
    /// and the minutes of its counted, performed visits.
    fn expected(&self, providers: &[VisitProvider]) -> Vec<Expected> {
        providers
            .iter()
            .enumerate()
            .flat_map(|(pi, p)| {
                p.clients.iter().zip(&p.grants).map(move |(client, g)| Expected {
                    org: p.org,
                    orders: g.orders.clone(),
                    granted: g.granted,
                    performed: self
                        .visits
                        .iter()
                        .filter(|v| v.provider == pi && v.client == *client && v.outcome() != "rejected" && !v.declined)
                        .map(|v| v.minutes)
                        .sum(),
                })
            })
            .collect()
    }

    /// Copies the hub should recognise: the retried push and the feed page served twice.
    fn copies(&self) -> usize {
        let replayed = self.feeds.get("phoniro-norr").map_or(0, |f| match f.len() {
            0 => 0,
            n => n - (n - 1) / FEED_PAGE * FEED_PAGE,
        });
        replayed + usize::from(self.retried.is_some())
    }
}

/// What the demo planted for one client at one provider: the follow-up's row and the
/// provider's invoice line.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    pub(crate) org: &'static str,
    pub(crate) orders: Vec<String>,
    pub(crate) granted: i64,
    pub(crate) performed: i64,
}

impl Expected {
    pub(crate) fn band(&self) -> Band {
        Band::of(self.granted, self.performed)
    }
}

/// What section 8 leaves for the invoices and the follow-up.
#[derive(Debug, Default)]
pub(super) struct Played {
    /// Where the hub's visit figures differ from what was planted.
    pub(super) problems: Vec<String>,
    /// Each client at each provider, as planted; empty when the month was played before.
    pub(super) expected: Vec<Expected>,
}

/// What the message log says the hub received from one system.
#[derive(Debug, Default)]
struct Received {
    /// Feed pages (or files) with at least one record, their records, and those made only of copies.
    batches: usize,
    batch_records: usize,
    repeated_batches: usize,
    /// Visits pushed one at a time, and pushes that were copies.
    pushes: usize,
    repeated_pushes: usize,
}

/// Section 7: tags in the homes, a month of visits through the vendors' real paths, and
/// what the hub made of it, read back from the hub and checked against what was planted.
pub(super) struct VisitRun<'a> {
    pub(super) http: &'a reqwest::Client,
    pub(super) url: &'a str,
    pub(super) cm_token: &'a str,
    pub(super) tokens: &'a BTreeMap<String, String>,
    pub(super) store: &'a dyn Store,
    pub(super) month: PlayedMonth,
    pub(super) feeds: [(&'static str, &'a MockPhoniro); 2],
    pub(super) paraga: Option<&'a LocalSshd>,
    pub(super) procapita: Option<&'a LocalSshd>,
    pub(super) combine: &'a MockCaseManagement,
    pub(super) treserva: &'a MockCaseManagement,
}

impl VisitRun<'_> {
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(self.cm_token)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.with_context(|| format!("GET {path}: the answer is not JSON"))?;
        anyhow::ensure!(status.is_success(), "GET {path} answered {status}: {}", body["code"]);
        Ok(body)
    }

    /// The providers whose visits are played, each with the clients it has an order for
    /// and their granted time, day by day, from the orders as the hub holds them now (with
    /// their changes, pauses and ends).
    async fn providers(&self) -> anyhow::Result<Vec<VisitProvider>> {
        let orders = self.store.orders(OrderFilter { limit: 10_000, ..OrderFilter::default() }).await?;
        let mut list: Vec<VisitProvider> = PROVIDERS
            .iter()
            .map(|p| VisitProvider {
                org: p.org,
                name: p.name,
                system: p.system,
                staff: p.staff,
                manual_every: p.manual_every,
                clients: Vec::new(),
                grants: Vec::new(),
            })
            .collect();
        if self.paraga.is_some() {
            list.push(VisitProvider {
                org: SFTP_PROVIDER,
                name: "Hemtjänst i Hägersten AB",
                system: "paraga-stockholm",
                staff: "hagersten",
                manual_every: 20,
                clients: Vec::new(),
                grants: Vec::new(),
            });
        }
        let month =
            carehub_model::Month::new(self.month.first.year(), self.month.first.month()).context("the played month")?;
        #[allow(clippy::cast_precision_loss)]
        let days = self.month.len() as f64;
        for p in &mut list {
            let mut grants: BTreeMap<String, Grant> = BTreeMap::new();
            for o in orders.iter().filter(|o| {
                o.order.provider.as_str() == p.org && o.ack_status != Some(carehub_model::AckStatus::Rejected)
            }) {
                let (valid_from, valid_to) = self.validity(o.order.decision_id.as_str()).await?;
                let schedule = o.order.schedule();
                let share = schedule.share(month, valid_from, valid_to);
                let g = grants.entry(o.order.client.expose().to_owned()).or_insert_with(|| Grant {
                    daily: vec![0.0; self.month.days().count()],
                    granted: 0,
                    orders: Vec::new(),
                });
                g.granted += carehub_core::rules::invoices::granted_minutes(share, month);
                g.orders.push(o.order.id.clone());
                for (d, day) in self.month.days().enumerate() {
                    let valid = day >= valid_from && valid_to.is_none_or(|t| day <= t);
                    if valid && schedule.active_on(day) {
                        #[allow(clippy::cast_precision_loss)]
                        {
                            g.daily[d] += schedule.minutes_on(day) as f64 / days;
                        }
                    }
                }
            }
            grants.retain(|_, g| g.granted > 0);
            (p.clients, p.grants) = grants.into_iter().unzip();
        }
        list.retain(|p| !p.clients.is_empty());
        Ok(list)
    }

    /// A decision's validity, from its canonical form in the store.
    async fn validity(&self, decision: &str) -> anyhow::Result<(NaiveDate, Option<NaiveDate>)> {
        let record = self.store.decision(decision).await?.with_context(|| format!("decision {decision}"))?;
        let d: Value = serde_json::from_str(&record.canonical)?;
        let date = |v: &Value| v.as_str().and_then(|s| s.parse::<NaiveDate>().ok());
        Ok((date(&d["valid_from"]).unwrap_or(self.month.first), date(&d["valid_to"])))
    }

    /// Registers the tags as the municipality does, through `POST /v1/tags`.
    async fn register_tags(&self, tags: &Tags) -> anyhow::Result<()> {
        for (tag, client, on) in tags.registrations(&self.month) {
            let resp = self
                .http
                .post(format!("{}/v1/tags", self.url))
                .bearer_auth(self.cm_token)
                .json(&json!({"tag_uid": tag, "client": client, "installed_on": on}))
                .send()
                .await
                .context("POST /v1/tags")?;
            let status = resp.status();
            if status != StatusCode::CREATED {
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                anyhow::bail!("POST /v1/tags for tag {tag} answered {status}: {}", body["code"]);
            }
        }
        Ok(())
    }

    /// Pushes one visit as its provider's Phoniro system does.
    async fn push(&self, v: &Planned, p: &VisitProvider) -> anyhow::Result<()> {
        let token = self.tokens.get(p.org).with_context(|| format!("no token for provider {}", p.org))?;
        let resp = self
            .http
            .post(format!("{}/v1/systems/{}/messages", self.url, p.system))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(v.phoniro(p.org).to_string())
            .send()
            .await
            .with_context(|| format!("pushing visit {} to {}", v.id, p.system))?;
        let status = resp.status();
        if status != StatusCode::ACCEPTED && status != StatusCode::OK {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            anyhow::bail!("the push of visit {} answered {status}: {}", v.id, body["code"]);
        }
        Ok(())
    }

    /// Every visit result in the log of visit messages from `system`, by message.
    async fn results(&self, system: &str) -> anyhow::Result<(Received, Vec<Value>)> {
        let mut got = Received::default();
        let mut all = Vec::new();
        for kind in ["visits", "visit"] {
            let filter = LogFilter {
                system: Some(system.to_owned()),
                message_type: Some(kind.to_owned()),
                limit: 10_000,
                ..LogFilter::default()
            };
            for entry in self.store.log_entries(filter).await?.into_iter().filter(|e| e.direction == "in") {
                let canonical: Value =
                    entry.canonical.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or(Value::Null);
                let results = canonical["results"].as_array().cloned().unwrap_or_default();
                if results.is_empty() {
                    continue;
                }
                let copies = results.iter().all(|r| r["duplicate_of"].is_string());
                if kind == "visits" {
                    got.batches += 1;
                    got.batch_records += results.len();
                    got.repeated_batches += usize::from(copies);
                } else {
                    got.pushes += results.len();
                    got.repeated_pushes += usize::from(copies);
                }
                all.extend(results);
            }
        }
        Ok((got, all))
    }

    /// Waits until the hub has taken `want` visit records from `systems`.
    async fn wait_received(&self, systems: &[&str], want: usize, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let mut got = 0;
            for s in systems {
                got += self.results(s).await?.1.len();
            }
            if got >= want {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the hub took {got} of the {want} visit records sent within {} s \
                 (Phoniro's feed is pulled and ParaGå's inbox polled every second)",
                limit.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until no visit waits to be reported and the outbox is empty.
    async fn wait_forwarded(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let mut quiet = 0;
        loop {
            let waiting = usize::from(self.store.visits_to_report(1).await?.through.is_some());
            let pending = self.store.outbox_counts().await?.pending;
            if waiting == 0 && pending == 0 {
                quiet += 1;
                if quiet >= 3 {
                    return Ok(());
                }
            } else {
                quiet = 0;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "visit reports were still on their way to the case-management systems after {} s \
                 ({waiting} visits waiting, {pending} deliveries pending)",
                limit.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Plays the month; prints what the hub made of it; returns where that differs from
    /// what was planted.
    pub(super) async fn play(&self) -> anyhow::Result<Played> {
        let month = self.month;
        let label = month.label();
        out!(
            "8. Visits in {}, drawn from each client's granted time: NFC tags at the door, through Phoniro's feed (pulled by cursor), Phoniro's pushes and ParaGå's daily files",
            month.first.format("%B %Y")
        );
        let earlier = self.get(&format!("/v1/visits?month={label}&limit=1")).await?;
        if earlier["visits"].as_array().is_some_and(|v| !v.is_empty()) {
            out!("   the database already holds visits for {label} from an earlier run; they are not played again");
            return Ok(Played::default());
        }
        let providers = self.providers().await?;
        let tags = Tags::for_homes(&providers, &month);
        self.register_tags(&tags).await?;
        let plan = VisitPlan::draw(&providers, &tags, &month);

        // Deliver: the feeds first (the hub pulls them within a second), then the pushes
        // and ParaGå's files while the pulls run.
        for (system, mock) in &self.feeds {
            let visits: Vec<Value> = plan
                .feeds
                .get(system)
                .map(|f| f.iter().map(|v| v.phoniro(providers[v.provider].org)).collect())
                .unwrap_or_default();
            mock.serve_visits(visits, *system == "phoniro-norr");
        }
        let mut pushes: Vec<&Planned> = plan.visits.iter().filter(|v| v.channel == Channel::Push).collect();
        pushes.sort_by_key(|v| v.start);
        for v in pushes {
            self.push(v, &providers[v.provider]).await?;
            if plan.retried.as_deref() == Some(v.id.as_str()) {
                // The answer was lost on the way back; Phoniro sends the visit again.
                self.push(v, &providers[v.provider]).await?;
            }
        }
        if let Some(paraga) = self.paraga {
            use carehub_core::mapping::text;
            let cp1252 = text::encoding("windows-1252").context("Windows-1252")?;
            let mut days: BTreeMap<NaiveDate, String> = BTreeMap::new();
            for v in plan.visits.iter().filter(|v| v.channel == Channel::File) {
                days.entry(v.day)
                    .or_insert_with(|| {
                        "Personnummer;Datum;Kom;Gick;Taggid;Registrering;Insatser;Utfall;Personal\r\n".into()
                    })
                    .push_str(&v.paraga_row());
            }
            for (day, csv) in days {
                let bytes = text::encode(&csv, cp1252).map_err(|e| anyhow::anyhow!("{e}"))?;
                paraga
                    .drop_file(&format!("besok-{}.csv", day.format("%Y%m%d")), &bytes)
                    .context("cannot drop ParaGå's visit file")?;
            }
        }
        let mut systems: Vec<&str> = providers.iter().map(|p| p.system).collect();
        systems.dedup();
        self.wait_received(&systems, plan.visits.len() + plan.copies(), Duration::from_secs(60)).await?;
        self.wait_forwarded(Duration::from_secs(60)).await?;

        // Everything below is read back from the hub.
        let registered = self.store.tags(None, None).await?;
        let mut per_tag: BTreeMap<&str, Vec<NaiveDate>> = BTreeMap::new();
        for t in &registered {
            per_tag.entry(t.tag_uid.as_str()).or_default().push(t.installed_on);
        }
        let homes: BTreeSet<&str> = registered.iter().map(|t| t.client.expose()).collect();
        let moves: Vec<NaiveDate> =
            per_tag.values().filter(|on| on.len() > 1).filter_map(|on| on.iter().max().copied()).collect();
        out!(
            "   tags: {} registrations of {} tags in {} homes (POST /v1/tags); {} moved to another home{}",
            registered.len(),
            per_tag.len(),
            homes.len(),
            moves.len(),
            moves.first().map(|on| format!(" on {on}")).unwrap_or_default()
        );
        let mut results = Vec::new();
        for system in &systems {
            let (got, all) = self.results(system).await?;
            if *system == "paraga-stockholm" {
                out!(
                    "   {system:<17} {} visit rows in {} daily files (Windows-1252 CSV over SFTP)",
                    got.batch_records,
                    got.batches
                );
            } else {
                let repeated = match got.repeated_batches {
                    0 => String::new(),
                    n => format!(" ({n} served twice)"),
                };
                let retried = match got.repeated_pushes {
                    0 => String::new(),
                    n => format!(" ({n} push retried)"),
                };
                out!(
                    "   {system:<17} {} visit records in {} feed pages{repeated}, {} pushed one at a time{retried}",
                    got.batch_records,
                    got.batches,
                    got.pushes
                );
            }
            results.extend(all);
        }
        let mut stored: Vec<Value> = Vec::new();
        let mut after = 0i64;
        loop {
            let page = self.get(&format!("/v1/visits?month={label}&limit=10000&after={after}")).await?;
            stored.extend(page["visits"].as_array().cloned().unwrap_or_default());
            match page["next_after"].as_i64() {
                Some(next) => after = next,
                None => break,
            }
        }
        let copies = results.iter().filter(|r| r["duplicate_of"].is_string()).count();
        out!("   received {} visit records; stored {}; copies recognised {copies}", results.len(), stored.len());
        let outcome = |o: &str| stored.iter().filter(|v| v["outcome"] == o).count();
        out!(
            "   outcomes: accepted {}, flagged {} (manual with a reason, unknown tag, declined at the door), rejected {}",
            outcome("accepted"),
            outcome("flagged"),
            outcome("rejected")
        );
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        for r in &results {
            for c in r["codes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                *codes.entry(c.to_owned()).or_default() += 1;
            }
        }
        for (code, n) in &codes {
            let meaning = CODES.iter().find(|(c, _)| c == code).map_or("", |(_, m)| *m);
            out!("     {code} {n:>5}  {meaning}");
        }
        let declined = stored.iter().filter(|v| v["visit_outcome"] == "declined_at_door").count();
        out!("     declined at the door: {declined} (flagged: they count 0 minutes)");
        let reports: Vec<_> = self
            .store
            .deliveries(DeliveryFilter { limit: 10_000, ..DeliveryFilter::default() })
            .await?
            .into_iter()
            // One row per visit, or one per list for a system that takes lists (Combine).
            .filter(|d| d.message_type == "visit" || d.message_type == "visits")
            .collect();
        // How many visits each row reports: one, or its list's length, read from the
        // canonical list its log entry keeps.
        let mut sizes = Vec::with_capacity(reports.len());
        for d in &reports {
            let n = match (d.message_type.as_str(), d.log_seq) {
                ("visits", Some(seq)) => {
                    let entry = self.store.log_entry(seq).await?;
                    let canonical = entry.and_then(|e| e.canonical).unwrap_or_default();
                    let list: Value = serde_json::from_str(&canonical).unwrap_or(Value::Null);
                    list["visits"].as_array().map_or(0, Vec::len)
                }
                ("visits", None) => 0,
                _ => 1,
            };
            sizes.push(n);
        }
        let reported: usize = sizes.iter().sum();
        let mut by_system: BTreeMap<&str, usize> = BTreeMap::new();
        for (d, n) in reports.iter().zip(&sizes) {
            *by_system.entry(d.system.as_str()).or_default() += n;
        }
        out!(
            "   visit reports on to case management: {reported} visits in {} outbox rows (a visit each, or a list), {} delivered: {}",
            reports.len(),
            reports.iter().zip(&sizes).filter(|(d, _)| d.state == "delivered").map(|(_, n)| n).sum::<usize>(),
            by_system.iter().map(|(s, n)| format!("{s} {n}")).collect::<Vec<_>>().join(", ")
        );
        let files =
            self.procapita.map_or(0, |p| p.files("outbox").iter().filter(|f| f.starts_with("besoksrapport-")).count());
        out!(
            "   Combine took {} Besok reports (in lists), Treserva {} TaEmotBesok calls{}",
            self.combine.visits(),
            self.treserva.visits(),
            if self.procapita.is_some() {
                format!(", Procapita {files} Besöksrapport files (ISO-8859-1)")
            } else {
                String::new()
            }
        );
        let report = self.get(&format!("/v1/reports/manual-registrations?month={label}")).await?;
        let threshold = report["threshold"].as_f64().unwrap_or(0.10);
        out!(
            "   Manual registrations, {label} (GET /v1/reports/manual-registrations; over {:.0}% is marked)",
            threshold * 100.0
        );
        let rows = report["providers"].as_array().cloned().unwrap_or_default();
        for r in &rows {
            let name = r["name"].as_str().or(r["provider"].as_str()).unwrap_or("?");
            out!(
                "     {name:<28} {:>5} visits {:>5} manual {:>6.1}%{}",
                r["visits"].as_u64().unwrap_or(0),
                r["manual"].as_u64().unwrap_or(0),
                r["share"].as_f64().unwrap_or(0.0) * 100.0,
                if r["over_threshold"] == true {
                    format!("  <- over the {:.0}% threshold", threshold * 100.0)
                } else {
                    String::new()
                }
            );
        }

        // What was planted, against what the hub says.
        let mut problems = Vec::new();
        let mut expect = |what: String, want: usize, got: usize| {
            if want != got {
                problems.push(format!("{what}: planted {want}, the hub says {got}"));
            }
        };
        expect("visit records received".into(), plan.visits.len() + plan.copies(), results.len());
        expect("visits stored".into(), plan.visits.len(), stored.len());
        expect("copies recognised".into(), plan.copies(), copies);
        for o in ["accepted", "flagged", "rejected"] {
            expect(format!("{o} visits"), plan.visits.iter().filter(|v| v.outcome() == o).count(), outcome(o));
        }
        let mut planted: BTreeMap<String, usize> = BTreeMap::new();
        for c in plan.visits.iter().flat_map(|v| v.codes.iter()) {
            *planted.entry((*c).to_owned()).or_default() += 1;
        }
        if plan.copies() > 0 {
            planted.insert("VIS007".into(), plan.copies());
        }
        for code in planted.keys().chain(codes.keys()).collect::<BTreeSet<_>>() {
            expect(code.to_string(), planted.get(code).copied().unwrap_or(0), codes.get(code).copied().unwrap_or(0));
        }
        let counted: Vec<&Planned> = plan.visits.iter().filter(|v| v.outcome() != "rejected").collect();
        expect("visit reports".into(), counted.len(), reported);
        for (pi, p) in providers.iter().enumerate() {
            let row = rows.iter().find(|r| r["provider"] == p.org).cloned().unwrap_or(Value::Null);
            let visits = counted.iter().filter(|v| v.provider == pi).count();
            let manual = counted.iter().filter(|v| v.provider == pi && v.manual()).count();
            let as_usize = |v: &Value| v.as_u64().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
            expect(format!("{} visits", p.name), visits, as_usize(&row["visits"]));
            expect(format!("{} manual", p.name), manual, as_usize(&row["manual"]));
            #[allow(clippy::cast_precision_loss)]
            let over = visits > 0 && manual as f64 / visits as f64 > threshold;
            expect(
                format!("{} over the threshold", p.name),
                usize::from(over),
                usize::from(row["over_threshold"] == true),
            );
        }
        if problems.is_empty() {
            out!("   every figure above is what the demo planted");
        }
        let expected = plan.expected(&providers);
        let bands = |b: Band| expected.iter().filter(|e| e.band() == b).count();
        out!(
            "   drawn from granted time: {} clients at their providers, {} within 80-120%; planted under {}, over {}",
            expected.len(),
            bands(Band::Within),
            bands(Band::Under),
            bands(Band::Over)
        );
        Ok(Played { problems, expected })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::scenario::clients;

    /// The demo's providers with clients drawn as its decisions draw them, with the
    /// month's story: a pause from the 5th to the 12th, a switch on the 17th from the
    /// first provider to the third and an end after the 20th at the second.
    fn providers(month: &PlayedMonth) -> Vec<VisitProvider> {
        let clients = clients();
        let last = u64::try_from(month.len()).unwrap_or(28);
        let take = |range: std::ops::Range<usize>, provider: usize| {
            range
                .map(|i| {
                    let pnr = clients[i % clients.len()].to_owned();
                    let minutes = [2280, 240, 2730, 480][i % 4];
                    let grant = match (provider, i) {
                        (0, 6) => Grant::steady(minutes, month, 1, 16),
                        (1, 17) => Grant::steady(minutes, month, 1, 20),
                        (0, 4) => {
                            let mut g = Grant::steady(minutes, month, 1, last);
                            g.daily[4..12].iter_mut().for_each(|m| *m = 0.0);
                            #[allow(clippy::cast_possible_truncation)]
                            {
                                g.granted = g.daily.iter().sum::<f64>().round() as i64;
                            }
                            g
                        }
                        _ => Grant::steady(minutes, month, 1, last),
                    };
                    (pnr, grant)
                })
                .collect::<Vec<_>>()
        };
        let mut lists: Vec<Vec<(String, Grant)>> = vec![take(1..17, 0), take(17..29, 1), take(29..37, 2)];
        let switched = (clients[6].to_owned(), Grant::steady(2280, month, 17, last));
        lists[2].push(switched);
        let mut list: Vec<VisitProvider> = PROVIDERS
            .iter()
            .zip(lists)
            .map(|(p, mut grants)| {
                grants.sort_by(|a, b| a.0.cmp(&b.0));
                let (clients, grants) = grants.into_iter().unzip();
                VisitProvider {
                    org: p.org,
                    name: p.name,
                    system: p.system,
                    staff: p.staff,
                    manual_every: p.manual_every,
                    clients,
                    grants,
                }
            })
            .collect();
        let (clients, grants) = take(40..43, 3).into_iter().unzip();
        list.push(VisitProvider {
            org: SFTP_PROVIDER,
            name: "Hemtjänst i Hägersten AB",
            system: "paraga-stockholm",
            staff: "hagersten",
            manual_every: 20,
            clients,
            grants,
        });
        list
    }

    /// Whatever month the demo runs in, it plants the same faults and nothing else: each
    /// staff member's visits follow one another except the planted overlaps, all in the
    /// month, and one provider well above a 10% manual share.
    #[test]
    fn every_month_plants_the_same_faults_and_nothing_else() {
        for n in 0..30u32 {
            let today = NaiveDate::from_ymd_opt(2026 + (n / 12) as i32, 1 + n % 12, 15).unwrap_or_default();
            let month = PlayedMonth::before(today);
            let providers = providers(&month);
            let tags = Tags::for_homes(&providers, &month);
            assert!(tags.moved.is_some(), "{today}");
            let plan = VisitPlan::draw(&providers, &tags, &month);
            let mut planted: BTreeMap<&str, usize> = BTreeMap::new();
            for c in plan.visits.iter().flat_map(|v| v.codes.iter()) {
                *planted.entry(*c).or_default() += 1;
            }
            let want: BTreeMap<&str, usize> =
                [("VIS001", 2), ("VIS002", 3), ("VIS004", 1), ("VIS005", 2), ("VIS008", 3), ("VIS009", 1)]
                    .into_iter()
                    .collect();
            assert_eq!(planted, want, "{today}");
            assert!(plan.copies() > 1 && plan.retried.is_some(), "{today}");
            let ids: BTreeSet<&str> = plan.visits.iter().map(|v| v.id.as_str()).collect();
            assert_eq!(ids.len(), plan.visits.len(), "unique ids, {today}");
            let mut by_staff: BTreeMap<&str, Vec<&Planned>> = BTreeMap::new();
            for v in &plan.visits {
                assert_eq!(carehub_model::local_date(v.start), v.day, "{today}");
                assert!(v.day >= month.first && v.day <= month.last, "{today}");
                let long = v.codes.contains(&"VIS004");
                assert!(long || (2..=64).contains(&v.minutes), "{} minutes, {today}", v.minutes);
                assert_eq!(v.channel == Channel::Push, v.day == month.last && v.provider < 3, "{today}");
                by_staff.entry(v.staff.as_str()).or_default().push(v);
            }
            for visits in by_staff.values_mut() {
                visits.sort_by_key(|v| v.start);
                for pair in visits.windows(2) {
                    if pair[0].end() > pair[1].start {
                        assert!(pair.iter().any(|v| v.codes.contains(&"VIS005")), "an unplanted overlap, {today}");
                    }
                }
            }
            // Visits only on a client's active days (the planted VIS009 apart), and only the
            // planted outliers outside 80-120% of granted time.
            for v in plan.visits.iter().filter(|v| !v.codes.contains(&"VIS009")) {
                let p = &providers[v.provider];
                let ci = p.clients.iter().position(|c| *c == v.client).unwrap_or(usize::MAX);
                let d = usize::try_from((v.day - month.first).num_days()).unwrap_or(usize::MAX);
                assert!(p.grants[ci].daily[d] > 0.0, "a visit on an inactive day {}, {today}", v.day);
            }
            let expected = plan.expected(&providers);
            let outside: Vec<(usize, usize)> = providers
                .iter()
                .enumerate()
                .flat_map(|(pi, p)| (0..p.clients.len()).map(move |ci| (pi, ci)))
                .zip(&expected)
                .filter(|(_, e)| e.band() != Band::Within)
                .map(|(at, _)| at)
                .collect();
            let planted: Vec<(usize, usize)> = OUTLIERS.iter().map(|(p, c, _)| (*p, *c)).collect();
            assert_eq!(outside, planted, "{today}: {expected:?}");
            for (pi, _) in providers.iter().enumerate() {
                let counted: Vec<&Planned> =
                    plan.visits.iter().filter(|v| v.provider == pi && v.outcome() != "rejected").collect();
                #[allow(clippy::cast_precision_loss)]
                let share = counted.iter().filter(|v| v.manual()).count() as f64 / counted.len() as f64;
                assert_eq!(share > 0.10, pi == 0, "provider {pi}: {share}, {today}");
                assert!(!(0.07..=0.14).contains(&share), "well clear of the threshold: {share}, {today}");
            }
        }
    }
}
