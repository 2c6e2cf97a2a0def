//! The demo's invoices: at the end of the month each provider sends a PEPPOL BIS 3 invoice
//! over HTTP, as its system would. One provider bills what was performed, one bills more
//! (and then credits part of it), one bills what was performed without claiming plan
//! compensation. The hub verifies each against orders, decisions and validated visits; the
//! demo prints the verification read back from `GET /v1/invoices/{id}/verification`.

use std::collections::{BTreeMap, BTreeSet};

use crate::peppol_write::{self, Kind, Line};
use anyhow::Context;
use carehub_core::store::{OrderFilter, Store, VisitFilter};
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
    /// A quarter more than performed on its first three orders, then a credit note for one.
    OverBilling,
    /// What was performed, with no line for plan compensation (the hub adds it anyway).
    NoPlanClaim,
}

pub(crate) struct InvoiceRun<'a> {
    pub http: &'a reqwest::Client,
    pub url: &'a str,
    pub tokens: &'a BTreeMap<String, String>,
    pub reader: &'a str,
    pub store: &'a dyn Store,
    pub first: NaiveDate,
    pub last: NaiveDate,
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
    /// Each order's performed minutes this month, from the hub's validated visits, and what
    /// the order grants a month.
    async fn performed(&self, org: &str) -> anyhow::Result<Vec<(String, i64, i64)>> {
        let month = self.first.format("%Y-%m").to_string();
        let orders = self
            .store
            .orders(OrderFilter { provider: Some(org.to_owned()), limit: 10_000, ..Default::default() })
            .await?;
        let mut out = Vec::new();
        for o in orders.iter().filter(|o| o.ack_status != Some(carehub_model::AckStatus::Rejected)) {
            let visits = self
                .store
                .visits(VisitFilter {
                    order_id: Some(o.order.id.clone()),
                    month: Some(month.clone()),
                    limit: 10_000,
                    ..Default::default()
                })
                .await?;
            let seconds: i64 = visits
                .iter()
                .filter(|v| v.outcome != "rejected" && v.visit_outcome == "performed")
                .filter_map(|v| v.seconds)
                .sum();
            let granted: i64 = o.order.services.iter().map(|s| i64::from(s.minutes_per_month)).sum();
            if seconds > 0 {
                out.push((o.order.id.clone(), (seconds + 30) / 60, granted));
            }
        }
        Ok(out)
    }

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
    pub(crate) async fn play(&self, billers: &[Biller]) -> anyhow::Result<()> {
        out!(
            "8. Invoices for {}: PEPPOL BIS 3 over HTTP, verified against orders, decisions and visits",
            self.first.format("%B %Y")
        );
        let mut sent = BTreeSet::new();
        for b in billers {
            let performed = self.performed(b.org).await?;
            if performed.is_empty() {
                continue;
            }
            let id = format!("{}-{}", b.system.to_uppercase(), self.first.format("%Y%m"));
            // An honest provider bills what was performed, not over-delivery beyond the grant.
            // The over-biller adds a quarter on three orders where that stays under the
            // grant's tolerance: over what was performed (INV001), not over the cap (INV002).
            let mut padded = 0;
            let lines: Vec<Line> = performed
                .iter()
                .enumerate()
                .map(|(n, (order, done, granted))| {
                    let honest = (*done).min(*granted);
                    let pad = b.style == Style::OverBilling && padded < 3 && done * 125 <= granted * 110;
                    padded += usize::from(pad);
                    let minutes = if pad { done + done / 4 } else { honest };
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
            let what = match b.style {
                Style::Honest => "invoice, as performed",
                Style::OverBilling => "invoice, a quarter over on 3 orders",
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
            }
            sent.insert(id);
        }
        out!("   (amounts: approved minutes at the contracted rate; findings INV001-INV007 as in SPEC §7)");
        self.follow_up().await
    }

    /// The month's follow-up (SPEC §4.4), read back from `GET /v1/reports/follow-up`.
    async fn follow_up(&self) -> anyhow::Result<()> {
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
        Ok(())
    }
}
