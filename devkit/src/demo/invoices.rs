//! The demo's invoices: at the end of the month each provider sends a PEPPOL BIS 3 invoice
//! over HTTP, as its system would. One provider bills what was performed, one bills more
//! (and then credits part of it), one bills what was performed without claiming plan
//! compensation. The hub verifies each against orders, decisions and validated visits; the
//! demo prints the verification read back from `GET /v1/invoices/{id}/verification`.

use std::collections::BTreeMap;

use super::visits::Expected;
use crate::peppol_write::{self, Kind, Line};
use anyhow::Context;
use carehub_core::followup::Band;
use chrono::NaiveDate;
use serde_json::Value;

/// A provider as the demo's invoices need it.
pub(crate) struct Biller {
    pub org: &'static str,
    pub name: &'static str,
    pub system: &'static str,
    /// Öre per hour, as in the demo's configuration.
    pub rate: i64,
    pub style: Style,
}

/// How a provider bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// What was performed.
    Honest,
    /// A tenth more than performed on its first three orders within their grant, then a
    /// credit note for one.
    OverBilling,
    /// What was performed, with no line for plan compensation (the hub adds it anyway).
    NoPlanClaim,
}

pub(crate) struct InvoiceRun<'a> {
    pub http: &'a reqwest::Client,
    pub url: &'a str,
    pub tokens: &'a BTreeMap<String, String>,
    pub reader: &'a str,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

/// Plans or confirmations due in the month, by how they went (SPEC §4.4's follow-up).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Due {
    pub due: i64,
    pub on_time: i64,
    pub late: i64,
    /// Missing plans, or orders never confirmed.
    pub missing: i64,
    pub pending: i64,
}

impl Due {
    /// One more, answered on `on` (or not) against its `deadline`, as seen on `today`.
    pub(crate) fn add(&mut self, on: Option<NaiveDate>, deadline: NaiveDate, today: NaiveDate) {
        self.due += 1;
        match on {
            Some(on) if on <= deadline => self.on_time += 1,
            Some(_) => self.late += 1,
            None if today > deadline => self.missing += 1,
            None => self.pending += 1,
        }
    }

    fn of(v: &Value, missing: &str) -> Due {
        let n = |k: &str| v[k].as_i64().unwrap_or(0);
        Due { due: n("due"), on_time: n("on_time"), late: n("late"), missing: n(missing), pending: n("pending") }
    }
}

/// What the providers' answers should make of the month's deadlines.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Timeliness {
    pub plans: Due,
    pub confirmations: Due,
}

fn hours(minutes: i64) -> String {
    format!("{}:{:02} h", minutes / 60, minutes % 60)
}

fn kronor(ore: i64) -> String {
    let kr = ore / 100;
    let mut digits = kr.abs().to_string();
    let mut grouped = String::new();
    while digits.len() > 3 {
        let tail = digits.split_off(digits.len() - 3);
        grouped = format!(" {tail}{grouped}");
    }
    format!("{}{digits}{grouped},{:02} kr", if ore < 0 { "-" } else { "" }, (ore % 100).abs())
}

impl InvoiceRun<'_> {
    async fn send(&self, b: &Biller, body: String) -> anyhow::Result<Value> {
        let token = self.tokens.get(b.org).context("a provider token")?;
        let resp = self
            .http
            .post(format!("{}/v1/systems/{}/messages", self.url, b.system))
            .bearer_auth(token)
            .header("content-type", "application/xml")
            .body(body)
            .send()
            .await?;
        let status = resp.status();
        let answer: Value = resp.json().await.context("the hub's answer to an invoice")?;
        anyhow::ensure!(status.is_success(), "the hub refused an invoice: {answer}");
        Ok(answer)
    }

    /// The latest report of a provider's invoice (two providers on one system may number
    /// their invoices alike).
    async fn report(&self, org: &str, id: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(format!("{}/v1/invoices/{id}/verification?provider={org}", self.url))
            .bearer_auth(self.reader)
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "GET /v1/invoices/{id}/verification answered {}", resp.status());
        Ok(resp.json().await?)
    }

    fn print(&self, b: &Biller, what: &str, r: &Value) {
        let t = &r["totals"];
        let mut codes: BTreeMap<String, usize> = BTreeMap::new();
        for f in
            r["lines"].as_array().into_iter().flatten().flat_map(|l| l["findings"].as_array().into_iter().flatten())
        {
            *codes.entry(f["code"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        }
        for f in r["findings"].as_array().into_iter().flatten() {
            *codes.entry(f["code"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        }
        let codes: Vec<String> = codes.iter().map(|(c, n)| format!("{c} ×{n}")).collect();
        let invoiced: i64 =
            r["lines"].as_array().into_iter().flatten().filter_map(|l| l["invoiced_minutes"].as_i64()).sum();
        out!(
            "   {:<26} {what}: {} lines, invoiced {}, approved {} = {}{}",
            b.name,
            r["lines"].as_array().map_or(0, Vec::len),
            hours(invoiced),
            hours(t["approved_minutes"].as_i64().unwrap_or(0)),
            kronor(t["payable_amount"].as_i64().unwrap_or(0)),
            if codes.is_empty() { String::new() } else { format!("; {}", codes.join(", ")) }
        );
    }

    /// Sends each provider's invoice (and the over-biller's credit note) and prints what the
    /// hub made of them.
    pub(crate) async fn play(
        &self,
        billers: &[Biller],
        expected: &[Expected],
        deadlines: &Timeliness,
    ) -> anyhow::Result<Vec<String>> {
        out!(
            "9. Invoices for {} on {}: PEPPOL BIS 3 over HTTP, verified against orders, decisions and visits",
            self.first.format("%B %Y"),
            self.last.checked_add_days(chrono::Days::new(5)).unwrap_or(self.last)
        );
        let mut problems = Vec::new();
        for b in billers {
            // The provider bills each of its orders with visits: what it performed, against
            // what the order granted this month (after its changes, pauses and end).
            let performed: Vec<(String, i64, i64)> = expected
                .iter()
                .filter(|e| e.org == b.org && e.performed > 0)
                .filter_map(|e| Some((e.orders.first()?.clone(), e.performed, e.granted)))
                .collect();
            if performed.is_empty() {
                continue;
            }
            let id = format!("{}-{}", b.system.to_uppercase(), self.first.format("%Y%m"));
            // An honest provider bills what was performed, not over-delivery beyond the grant.
            // The over-biller adds a tenth on three orders where that stays under the
            // grant's tolerance (110%): over what was performed (INV001), not over the cap
            // (INV002).
            let mut padded = 0;
            let lines: Vec<Line> = performed
                .iter()
                .enumerate()
                .map(|(n, (order, done, granted))| {
                    let honest = (*done).min(*granted);
                    let pad = b.style == Style::OverBilling && padded < 3 && done <= granted;
                    padded += usize::from(pad);
                    let minutes = if pad { done + done / 10 } else { honest };
                    Line {
                        id: (n + 1).to_string(),
                        order_id: order.clone(),
                        minutes,
                        amount_ore: (minutes * b.rate + 30) / 60,
                        comment: None,
                    }
                })
                .collect();
            let doc = peppol_write::home_care(Kind::Invoice, &id, b.org, b.name, self.first, self.last, None, &lines);
            self.send(b, doc).await?;
            let report = self.report(b.org, &id).await?;
            let under = performed.iter().filter(|(_, done, granted)| Band::of(*granted, *done) == Band::Under).count();
            let approved: i64 = performed.iter().map(|(_, done, granted)| (*done).min(*granted)).sum();
            check(&mut problems, &format!("{} INV006 (under 80% of granted)", b.name), under, codes(&report, "INV006"));
            check(&mut problems, &format!("{} INV001 (over performed)", b.name), padded, codes(&report, "INV001"));
            check(
                &mut problems,
                &format!("{} approved minutes", b.name),
                usize::try_from(approved).unwrap_or(0),
                usize::try_from(report["totals"]["approved_minutes"].as_i64().unwrap_or(0)).unwrap_or(0),
            );
            let what = match b.style {
                Style::Honest => "invoice, as performed",
                Style::OverBilling => "invoice, a tenth over on 3 orders",
                Style::NoPlanClaim => "invoice, no plan compensation claimed",
            };
            self.print(b, what, &report);
            let padded_line = lines.iter().zip(&performed).find(|(l, p)| l.minutes > p.1);
            if let (Style::OverBilling, Some((first, (order, done, _)))) = (b.style, padded_line) {
                let extra = first.minutes - done;
                let credit = Line {
                    id: "1".into(),
                    order_id: order.clone(),
                    minutes: extra,
                    amount_ore: (extra * b.rate + 30) / 60,
                    comment: None,
                };
                let cn = format!("{id}-K1");
                let doc = peppol_write::home_care(
                    Kind::CreditNote,
                    &cn,
                    b.org,
                    b.name,
                    self.first,
                    self.last,
                    Some(&id),
                    &[credit],
                );
                self.send(b, doc).await?;
                let report = self.report(b.org, &id).await?;
                self.print(b, &format!("after credit note K1 for line {}", first.id), &report);
                check(
                    &mut problems,
                    &format!("{} INV001 after the credit note", b.name),
                    padded - 1,
                    codes(&report, "INV001"),
                );
            }
        }
        out!("   (amounts: approved minutes at the contracted rate; findings INV001-INV007 as in SPEC §7)");
        problems.extend(self.follow_up(expected, deadlines).await?);
        if problems.is_empty() {
            out!("   every figure above is what the demo planted");
        }
        Ok(problems)
    }

    /// The month's follow-up (SPEC §4.4), read back from `GET /v1/reports/follow-up`;
    /// where it differs from what was planted.
    async fn follow_up(&self, expected: &[Expected], deadlines: &Timeliness) -> anyhow::Result<Vec<String>> {
        let month = self.first.format("%Y-%m");
        let resp = self
            .http
            .get(format!("{}/v1/reports/follow-up?month={month}", self.url))
            .bearer_auth(self.reader)
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "GET /v1/reports/follow-up answered {}", resp.status());
        let r: Value = resp.json().await?;
        let s = &r["summary"];
        let n = |v: &Value| v.as_i64().unwrap_or(0);
        out!("   Follow-up, {month} (GET /v1/reports/follow-up; `carehub report --month {month} --out report.html` draws it):");
        out!(
            "     {} clients: granted {}, performed {}; within 80-120% of granted {}, under {}, over {}",
            n(&s["clients"]),
            hours(n(&s["granted_minutes"])),
            hours(n(&s["performed_minutes"])),
            n(&s["bands"]["within"]),
            n(&s["bands"]["under"]),
            n(&s["bands"]["over"])
        );
        out!(
            "     plans due {}: on time {}, late {}, missing {}; orders to confirm {}: on time {}, late {}, not confirmed {}",
            n(&s["plans"]["due"]),
            n(&s["plans"]["on_time"]),
            n(&s["plans"]["late"]),
            n(&s["plans"]["missing"]),
            n(&s["confirmations"]["due"]),
            n(&s["confirmations"]["on_time"]),
            n(&s["confirmations"]["late"]),
            n(&s["confirmations"]["not_confirmed"])
        );
        out!(
            "     staff continuity: {:.1} staff per client in the month; providers over the manual threshold: {}",
            s["avg_staff_per_client"].as_f64().unwrap_or(0.0),
            n(&s["providers_over_threshold"])
        );
        let mut problems = Vec::new();
        if expected.is_empty() {
            return Ok(problems);
        }
        let bands = |b: Band| expected.iter().filter(|e| e.band() == b).count();
        let as_usize = |v: &Value| usize::try_from(n(v)).unwrap_or(0);
        let sum = |f: fn(&Expected) -> i64| usize::try_from(expected.iter().map(f).sum::<i64>()).unwrap_or(0);
        let p = &mut problems;
        check(p, "follow-up clients", expected.len(), as_usize(&s["clients"]));
        check(p, "follow-up granted minutes", sum(|e| e.granted), as_usize(&s["granted_minutes"]));
        check(p, "follow-up performed minutes", sum(|e| e.performed), as_usize(&s["performed_minutes"]));
        check(p, "clients within 80-120%", bands(Band::Within), as_usize(&s["bands"]["within"]));
        check(p, "clients under 80%", bands(Band::Under), as_usize(&s["bands"]["under"]));
        check(p, "clients over 120%", bands(Band::Over), as_usize(&s["bands"]["over"]));
        for (what, want, got) in [
            ("plans", deadlines.plans, Due::of(&s["plans"], "missing")),
            ("confirmations", deadlines.confirmations, Due::of(&s["confirmations"], "not_confirmed")),
        ] {
            if want != got {
                p.push(format!("follow-up {what}: the providers answered {want:?}, the hub says {got:?}"));
            }
        }
        Ok(problems)
    }
}

/// How many findings with `code` a verification report has, on its lines and in all.
fn codes(report: &Value, code: &str) -> usize {
    let lines =
        report["lines"].as_array().into_iter().flatten().flat_map(|l| l["findings"].as_array().into_iter().flatten());
    lines.chain(report["findings"].as_array().into_iter().flatten()).filter(|f| f["code"] == code).count()
}

/// Notes a figure that differs from what was planted.
fn check(problems: &mut Vec<String>, what: &str, planted: usize, hub: usize) {
    if planted != hub {
        problems.push(format!("{what}: planted {planted}, the hub says {hub}"));
    }
}
