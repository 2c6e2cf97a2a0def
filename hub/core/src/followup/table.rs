//! The follow-up as CSV, for spreadsheets.
//!
//! One UTF-8 document, `;`-separated (what Swedish spreadsheet software expects), CRLF line
//! ends, with one section per table separated by an empty line. Every line starts with its
//! section's name (`summary`, `providers`, `clients`, `plans`, `confirmations`,
//! `reports`), and each
//! section starts with its header line, so a section is one filter away in a
//! spreadsheet. Numbers use a decimal point; ratios and shares are fractions (`0.950`), an
//! empty cell is "not applicable". Clients are named by their pseudonymous key (an order
//! id), never by personal identity number.

use std::fmt::Write as _;

use super::FollowUp;

/// Quotes a cell when it needs it.
fn cell(s: &str) -> String {
    if s.contains([';', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn line(out: &mut String, cells: &[String]) {
    let joined: Vec<String> = cells.iter().map(|c| cell(c)).collect();
    let _ = write!(out, "{}\r\n", joined.join(";"));
}

fn opt_f(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.3}")).unwrap_or_default()
}

fn opt<T: ToString>(x: Option<T>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

macro_rules! cells {
    ($($e:expr),* $(,)?) => { [$($e.to_string()),*] };
}

/// The report as one CSV document (see the module docs).
pub fn render(r: &FollowUp) -> String {
    let mut out = String::new();
    let s = &r.summary;
    line(&mut out, &cells!["summary", "figure", "value"]);
    let rows: Vec<(&str, String)> = vec![
        ("month", r.month.to_string()),
        ("computed_on", r.computed_on.to_string()),
        ("clients", s.clients.to_string()),
        ("clients_under_80", s.bands.under.to_string()),
        ("clients_within_80_120", s.bands.within.to_string()),
        ("clients_over_120", s.bands.over.to_string()),
        ("clients_not_granted", s.bands.not_granted.to_string()),
        ("granted_minutes", s.granted_minutes.to_string()),
        ("performed_minutes", s.performed_minutes.to_string()),
        ("ratio", opt_f(s.ratio)),
        ("visits", s.visits.to_string()),
        ("manual", s.manual.to_string()),
        ("manual_share", format!("{:.3}", s.manual_share)),
        ("manual_share_threshold", format!("{:.3}", r.manual_share_threshold)),
        ("providers_over_threshold", s.providers_over_threshold.to_string()),
        ("avg_staff_per_client", opt_f(s.avg_staff_per_client)),
        ("avg_max_staff_14_days", opt_f(s.avg_max_staff_14_days)),
        ("plans_due", s.plans.due.to_string()),
        ("plans_on_time", s.plans.on_time.to_string()),
        ("plans_late", s.plans.late.to_string()),
        ("plans_missing", s.plans.missing.to_string()),
        ("plans_pending", s.plans.pending.to_string()),
        ("orders_due", s.confirmations.due.to_string()),
        ("orders_confirmed_on_time", s.confirmations.on_time.to_string()),
        ("orders_confirmed_late", s.confirmations.late.to_string()),
        ("orders_not_confirmed", s.confirmations.not_confirmed.to_string()),
        ("orders_pending", s.confirmations.pending.to_string()),
        ("deviations", s.deviations.to_string()),
        ("need_changes", s.need_changes.to_string()),
    ];
    for (k, v) in rows {
        line(&mut out, &cells!["summary", k, v]);
    }

    out.push_str("\r\n");
    line(
        &mut out,
        &cells![
            "providers",
            "provider",
            "name",
            "clients",
            "granted_minutes",
            "performed_minutes",
            "ratio",
            "clients_under_80",
            "clients_within_80_120",
            "clients_over_120",
            "visits",
            "manual",
            "manual_share",
            "over_threshold",
            "avg_staff_per_client",
            "avg_max_staff_14_days",
            "plans_due",
            "plans_on_time",
            "plans_late",
            "plans_missing",
            "orders_due",
            "orders_confirmed_late",
            "orders_not_confirmed",
            "deviations",
            "need_changes",
        ],
    );
    for p in &r.providers {
        line(
            &mut out,
            &cells![
                "providers",
                p.provider,
                p.name.clone().unwrap_or_default(),
                p.clients,
                p.granted_minutes,
                p.performed_minutes,
                opt_f(p.ratio),
                p.bands.under,
                p.bands.within,
                p.bands.over,
                p.visits,
                p.manual,
                format!("{:.3}", p.manual_share),
                p.over_threshold,
                opt_f(p.avg_staff_per_client),
                opt_f(p.avg_max_staff_14_days),
                p.plans.due,
                p.plans.on_time,
                p.plans.late,
                p.plans.missing,
                p.confirmations.due,
                p.confirmations.late,
                p.confirmations.not_confirmed,
                p.deviations,
                p.need_changes,
            ],
        );
    }

    out.push_str("\r\n");
    line(
        &mut out,
        &cells![
            "clients",
            "key",
            "provider",
            "granted_minutes",
            "performed_minutes",
            "ratio",
            "band",
            "visits",
            "staff_in_month",
            "max_staff_14_days",
        ],
    );
    for c in &r.clients {
        line(
            &mut out,
            &cells![
                "clients",
                c.key,
                c.provider,
                c.granted_minutes,
                c.performed_minutes,
                opt_f(c.ratio),
                c.band.as_str(),
                c.visits,
                c.staff_in_month,
                c.max_staff_14_days,
            ],
        );
    }

    out.push_str("\r\n");
    line(&mut out, &cells!["plans", "order_id", "provider", "plan_due", "established_on", "status", "days_late"]);
    for p in &r.plans {
        line(
            &mut out,
            &cells![
                "plans",
                p.order_id,
                p.provider,
                p.plan_due,
                opt(p.established_on),
                p.status.as_str(),
                opt(p.days_late)
            ],
        );
    }

    out.push_str("\r\n");
    line(
        &mut out,
        &cells!["confirmations", "order_id", "provider", "execute_by", "confirmed_on", "status", "days_late"],
    );
    for c in &r.confirmations {
        line(
            &mut out,
            &cells![
                "confirmations",
                c.order_id,
                c.provider,
                c.execute_by,
                opt(c.confirmed_on),
                c.status.as_str(),
                opt(c.days_late)
            ],
        );
    }

    out.push_str("\r\n");
    line(&mut out, &cells!["reports", "provider", "message_type", "kind", "count"]);
    for r in &r.reports {
        line(&mut out, &cells!["reports", r.provider, r.message_type, r.kind, r.count]);
    }
    out
}
