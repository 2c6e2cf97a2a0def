//! The follow-up as one self-contained HTML page for a social-services committee
//! (socialnämnd): Swedish wording, inline CSS and inline SVG bar charts; no scripts, no
//! fonts, nothing fetched from the network, so it opens the same from a mail attachment,
//! a file share or a printout.
//!
//! Every chart is an `<svg class="chart" data-chart="NAME">` whose bars are
//! `<rect class="bar ...">` (one per value drawn, zero-length ones included), so a test can
//! count them. Clients appear only by their pseudonymous key (an order id).

use std::fmt::Write as _;

use chrono::NaiveDate;

use super::{Band, ConfirmStatus, FollowUp, PlanStatus};

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const MONTHS: [&str; 12] = [
    "januari",
    "februari",
    "mars",
    "april",
    "maj",
    "juni",
    "juli",
    "augusti",
    "september",
    "oktober",
    "november",
    "december",
];

/// `november 2026`.
fn month_name(r: &FollowUp) -> String {
    let i = usize::try_from(r.month.month()).unwrap_or(1).clamp(1, 12) - 1;
    format!("{} {}", MONTHS[i], r.month.year())
}

/// A number with a decimal comma and `decimals` decimals.
fn dec(x: f64, decimals: usize) -> String {
    format!("{x:.decimals$}").replace('.', ",")
}

/// A fraction as a percentage: `95,0 %`.
fn pct(x: f64) -> String {
    format!("{}\u{a0}%", dec(x * 100.0, 1))
}

fn opt_pct(x: Option<f64>) -> String {
    x.map(pct).unwrap_or_else(|| "–".into())
}

/// Minutes as hours: `38,0 h`.
#[allow(clippy::cast_precision_loss)]
fn hours(minutes: i64) -> String {
    format!("{}\u{a0}h", dec(minutes as f64 / 60.0, 1))
}

fn opt_dec(x: Option<f64>) -> String {
    x.map(|v| dec(v, 1)).unwrap_or_else(|| "–".into())
}

/// One bar of a chart.
struct Bar {
    value: f64,
    /// A CSS class for its colour.
    class: &'static str,
    /// The text after the bar.
    text: String,
}

/// A labelled group of bars.
struct Group {
    label: String,
    bars: Vec<Bar>,
}

const LABEL_W: f64 = 200.0;
const PLOT_W: f64 = 340.0;
const TEXT_W: f64 = 200.0;
const BAR_H: f64 = 16.0;
const BAR_GAP: f64 = 3.0;
const GROUP_GAP: f64 = 12.0;

/// A horizontal bar chart; `max` is the value of a full-length bar; `threshold` draws a
/// dashed line with its label.
fn bar_chart(name: &str, title: &str, groups: &[Group], max: f64, threshold: Option<(f64, String)>) -> String {
    let max = if max > 0.0 { max } else { 1.0 };
    let top = if threshold.is_some() { 18.0 } else { 4.0 };
    let mut height = top;
    for g in groups {
        #[allow(clippy::cast_precision_loss)]
        let n = g.bars.len().max(1) as f64;
        height += n * BAR_H + (n - 1.0) * BAR_GAP + GROUP_GAP;
    }
    let width = LABEL_W + PLOT_W + TEXT_W;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" data-chart="{name}" role="img" aria-label="{title}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}">"#,
        name = escape(name),
        title = escape(title),
    );
    let _ = write!(svg, "<title>{}</title>", escape(title));
    let mut y = top;
    for g in groups {
        #[allow(clippy::cast_precision_loss)]
        let n = g.bars.len().max(1) as f64;
        let group_h = n * BAR_H + (n - 1.0) * BAR_GAP;
        let _ = write!(
            svg,
            r#"<text class="label" x="{x}" y="{ty}" text-anchor="end">{label}</text>"#,
            x = LABEL_W - 8.0,
            ty = y + group_h / 2.0 + 4.0,
            label = escape(&g.label),
        );
        for b in &g.bars {
            let w = (b.value.max(0.0) / max * PLOT_W).min(PLOT_W);
            let _ = write!(
                svg,
                r#"<rect class="bar {class}" x="{LABEL_W}" y="{y}" width="{w:.1}" height="{BAR_H}"><title>{text}</title></rect><text class="value" x="{tx:.1}" y="{ty}">{text}</text>"#,
                class = b.class,
                text = escape(&b.text),
                tx = LABEL_W + w + 4.0,
                ty = y + BAR_H - 4.0,
            );
            y += BAR_H + BAR_GAP;
        }
        y += GROUP_GAP - BAR_GAP;
    }
    if let Some((value, label)) = threshold {
        let x = LABEL_W + (value / max * PLOT_W).min(PLOT_W);
        let _ = write!(
            svg,
            r#"<line class="threshold" x1="{x:.1}" y1="12" x2="{x:.1}" y2="{y2}"/><text class="threshold-label" x="{x:.1}" y="10" text-anchor="middle">{label}</text>"#,
            y2 = height - 2.0,
            label = escape(&label),
        );
    }
    svg.push_str("</svg>");
    svg
}

fn legend(items: &[(&str, &str)]) -> String {
    let mut s = String::from(r#"<p class="legend">"#);
    for (class, text) in items {
        let _ = write!(s, r#"<span class="swatch {class}"></span>{} "#, escape(text));
    }
    s.push_str("</p>");
    s
}

const STYLE: &str = r#"
body { font-family: system-ui, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d2a35; margin: 2rem auto; max-width: 960px; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.25rem; margin-top: 2.2rem; border-bottom: 2px solid #d5dde5; padding-bottom: 0.2rem; }
p.sub { color: #55636f; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
.card { border: 1px solid #d5dde5; border-radius: 6px; padding: 0.6rem 0.9rem; min-width: 170px; flex: 1; }
.card .big { font-size: 1.5rem; font-weight: 600; display: block; }
.card.warn { border-color: #c0392b; background: #fdf1ef; }
table { border-collapse: collapse; width: 100%; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid #e3e8ee; }
th { background: #f2f5f8; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.warn td { background: #fdf1ef; }
svg.chart { display: block; max-width: 100%; height: auto; margin: 0.6rem 0; }
svg .label, svg .value, svg .threshold-label { font-size: 12px; fill: #1d2a35; }
svg .threshold { stroke: #c0392b; stroke-width: 2; stroke-dasharray: 5 3; }
svg .threshold-label { fill: #c0392b; }
.granted { fill: #9db7cc; background: #9db7cc; }
.performed { fill: #1f5f8b; background: #1f5f8b; }
.manual { fill: #1f5f8b; background: #1f5f8b; }
.manual.over { fill: #c0392b; background: #c0392b; }
.ok { fill: #2e7d4f; background: #2e7d4f; }
.late { fill: #e0a526; background: #e0a526; }
.missing { fill: #c0392b; background: #c0392b; }
.pending { fill: #9aa5ae; background: #9aa5ae; }
.staff { fill: #6a4c93; background: #6a4c93; }
.staff14 { fill: #b39ddb; background: #b39ddb; }
.legend { font-size: 0.85rem; color: #55636f; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; margin: 0 0.3rem 0 0.8rem; vertical-align: middle; }
.note { font-size: 0.85rem; color: #55636f; }
footer { margin-top: 2.5rem; font-size: 0.8rem; color: #55636f; }
@media print { body { margin: 0; } h2 { break-after: avoid; } svg.chart, table { break-inside: avoid; } }
"#;

/// Most rows a list shows before pointing at the CSV.
const MAX_ROWS: usize = 200;

/// The table of orders whose plan or confirmation came late or not at all: order, provider,
/// the date it was due, the date it came (`done`: its column's header and what shows when
/// it never came), days late. Nothing when there are none.
fn late_table<'r>(
    h: &mut String,
    r: &FollowUp,
    done: (&str, &str),
    rows: impl Iterator<Item = (&'r String, &'r String, NaiveDate, Option<NaiveDate>, Option<i64>)>,
) {
    let mut rows = rows.take(MAX_ROWS).peekable();
    if rows.peek().is_none() {
        return;
    }
    let _ = write!(
        h,
        r#"<table><thead><tr><th>Beställning</th><th>Utförare</th><th>Senast</th><th>{}</th><th class="num">Dagar sen</th></tr></thead><tbody>"#,
        done.0
    );
    for (order, provider, due, came, days_late) in rows {
        let _ = write!(
            h,
            r#"<tr class="warn"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td></tr>"#,
            escape(order),
            escape(&r.provider_label(provider)),
            due,
            came.map(|d| d.to_string()).unwrap_or_else(|| done.1.into()),
            days_late.map(|d| d.to_string()).unwrap_or_default()
        );
    }
    h.push_str("</tbody></table>");
}

/// The report as a self-contained HTML page.
pub fn render(r: &FollowUp) -> String {
    let s = &r.summary;
    let month = month_name(r);
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="sv"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Uppföljning hemtjänst {m}</title><style>{STYLE}</style></head><body>"#,
        m = escape(&month),
    );
    let _ = write!(h, "<h1>Uppföljning av hemtjänsten, {}</h1>", escape(&month));
    let _ = write!(
        h,
        r#"<p class="sub">Månadsuppföljning per utförare: beviljad och utförd tid, manuella registreringar, personalkontinuitet, genomförandeplaner, kvittering av beställningar samt avvikelser och bevakningar. Beräknad {}. Brukare visas endast med pseudonym (beställningens id).</p>"#,
        r.computed_on
    );

    // Summary cards.
    h.push_str(r#"<h2>Sammanfattning</h2><div class="cards">"#);
    let card = |h: &mut String, warn: bool, big: String, text: &str| {
        let _ = write!(
            h,
            r#"<div class="card{}"><span class="big">{}</span>{}</div>"#,
            if warn { " warn" } else { "" },
            escape(&big),
            escape(text)
        );
    };
    card(&mut h, false, s.clients.to_string(), "brukare med beviljad eller utförd tid");
    card(
        &mut h,
        false,
        opt_pct(s.ratio),
        &format!("utförd av beviljad tid ({} av {})", hours(s.performed_minutes), hours(s.granted_minutes)),
    );
    card(
        &mut h,
        s.bands.under + s.bands.over > 0,
        format!("{} / {}", s.bands.within, s.clients),
        "brukare inom 80–120 %",
    );
    card(
        &mut h,
        s.providers_over_threshold > 0,
        pct(s.manual_share),
        &format!(
            "manuella registreringar ({} av {} besök); {} utförare över {}",
            s.manual,
            s.visits,
            s.providers_over_threshold,
            pct(r.manual_share_threshold)
        ),
    );
    card(&mut h, false, opt_dec(s.avg_staff_per_client), "personal per brukare och månad (medel)");
    card(
        &mut h,
        s.plans.late + s.plans.missing > 0,
        format!("{} / {}", s.plans.on_time, s.plans.due),
        "genomförandeplaner upprättade i tid",
    );
    card(
        &mut h,
        s.confirmations.not_in_time() > 0,
        s.confirmations.not_in_time().to_string(),
        &format!("beställningar inte kvitterade i tid (av {})", s.confirmations.due),
    );
    card(&mut h, false, format!("{} / {}", s.deviations, s.need_changes), "avvikelser / bevakningar (ändrat behov)");
    h.push_str("</div>");

    // Granted vs performed.
    h.push_str("<h2>Beviljad och utförd tid per utförare</h2>");
    let max = r.providers.iter().map(|p| p.granted_minutes.max(p.performed_minutes)).max().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    let groups: Vec<Group> = r
        .providers
        .iter()
        .map(|p| Group {
            label: r.provider_label(&p.provider),
            bars: vec![
                Bar {
                    value: p.granted_minutes as f64,
                    class: "granted",
                    text: format!("beviljad {}", hours(p.granted_minutes)),
                },
                Bar {
                    value: p.performed_minutes as f64,
                    class: "performed",
                    text: format!("utförd {} ({})", hours(p.performed_minutes), opt_pct(p.ratio)),
                },
            ],
        })
        .collect();
    #[allow(clippy::cast_precision_loss)]
    h.push_str(&bar_chart("granted-performed", "Beviljad och utförd tid per utförare", &groups, max as f64, None));
    h.push_str(&legend(&[("granted", "beviljad tid"), ("performed", "utförd tid")]));

    // Clients by band.
    h.push_str("<h2>Brukare efter andel utförd tid</h2>");
    h.push_str(r#"<p class="note">Utförd tid jämförd med beviljad tid för månaden. Inom 80–120 % räknas som i nivå med beslutet.</p>"#);
    let b = s.bands;
    #[allow(clippy::cast_precision_loss)]
    let band_groups = vec![
        Group {
            label: "under 80 %".into(),
            bars: vec![Bar { value: b.under as f64, class: "missing", text: format!("{} brukare", b.under) }],
        },
        Group {
            label: "80–120 %".into(),
            bars: vec![Bar { value: b.within as f64, class: "ok", text: format!("{} brukare", b.within) }],
        },
        Group {
            label: "över 120 %".into(),
            bars: vec![Bar { value: b.over as f64, class: "late", text: format!("{} brukare", b.over) }],
        },
        Group {
            label: "ingen beviljad tid".into(),
            bars: vec![Bar {
                value: b.not_granted as f64,
                class: "pending",
                text: format!("{} brukare", b.not_granted),
            }],
        },
    ];
    let band_max = b.under.max(b.within).max(b.over).max(b.not_granted);
    #[allow(clippy::cast_precision_loss)]
    h.push_str(&bar_chart("bands", "Brukare efter andel utförd av beviljad tid", &band_groups, band_max as f64, None));

    // Per provider table.
    h.push_str(r#"<table><thead><tr><th>Utförare</th><th class="num">Brukare</th><th class="num">Beviljad</th><th class="num">Utförd</th><th class="num">Andel</th><th class="num">Under 80 %</th><th class="num">Över 120 %</th></tr></thead><tbody>"#);
    for p in &r.providers {
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
            escape(&r.provider_label(&p.provider)),
            p.clients,
            hours(p.granted_minutes),
            hours(p.performed_minutes),
            opt_pct(p.ratio),
            p.bands.under,
            p.bands.over
        );
    }
    h.push_str("</tbody></table>");
    let outside: Vec<_> = r.clients.iter().filter(|c| matches!(c.band, Band::Under | Band::Over)).collect();
    if !outside.is_empty() {
        let _ = write!(h, "<h3>Brukare utanför 80–120 % ({})</h3>", outside.len());
        h.push_str(r#"<table><thead><tr><th>Brukare (pseudonym)</th><th>Utförare</th><th class="num">Beviljad</th><th class="num">Utförd</th><th class="num">Andel</th></tr></thead><tbody>"#);
        for c in outside.iter().take(MAX_ROWS) {
            let _ = write!(
                h,
                r#"<tr class="warn"><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                escape(&c.key),
                escape(&r.provider_label(&c.provider)),
                hours(c.granted_minutes),
                hours(c.performed_minutes),
                opt_pct(c.ratio)
            );
        }
        h.push_str("</tbody></table>");
        if outside.len() > MAX_ROWS {
            let _ = write!(
                h,
                r#"<p class="note">Visar {MAX_ROWS} av {}; hela listan finns i CSV-filen.</p>"#,
                outside.len()
            );
        }
    }

    // Manual share.
    h.push_str("<h2>Manuella registreringar per utförare</h2>");
    let _ = write!(
        h,
        r#"<p class="note">Andel besök registrerade manuellt (eller med okänd tagg) av alla godkända och flaggade besök. Gränsvärde: {}.</p>"#,
        pct(r.manual_share_threshold)
    );
    let manual_groups: Vec<Group> = r
        .providers
        .iter()
        .map(|p| Group {
            label: r.provider_label(&p.provider),
            bars: vec![Bar {
                value: p.manual_share,
                class: if p.over_threshold { "manual over" } else { "manual" },
                text: format!("{} ({} av {})", pct(p.manual_share), p.manual, p.visits),
            }],
        })
        .collect();
    let manual_max = r.providers.iter().map(|p| p.manual_share).fold(r.manual_share_threshold * 2.0, f64::max).min(1.0);
    h.push_str(&bar_chart(
        "manual-share",
        "Andel manuella registreringar per utförare",
        &manual_groups,
        manual_max,
        Some((r.manual_share_threshold, format!("gräns {}", pct(r.manual_share_threshold)))),
    ));
    h.push_str(&legend(&[("manual", "under gränsen"), ("manual over", "över gränsen")]));

    // Continuity.
    h.push_str("<h2>Personalkontinuitet</h2>");
    h.push_str(r#"<p class="note">Antal olika personal hos en brukare: under månaden, och flest under någon 14-dagarsperiod. Medelvärde över brukare med utförda besök. Färre är bättre.</p>"#);
    let staff_max = r
        .providers
        .iter()
        .map(|p| p.avg_staff_per_client.unwrap_or(0.0).max(p.avg_max_staff_14_days.unwrap_or(0.0)))
        .fold(0.0, f64::max);
    let staff_groups: Vec<Group> = r
        .providers
        .iter()
        .map(|p| Group {
            label: r.provider_label(&p.provider),
            bars: vec![
                Bar {
                    value: p.avg_staff_per_client.unwrap_or(0.0),
                    class: "staff",
                    text: format!("{} under månaden", opt_dec(p.avg_staff_per_client)),
                },
                Bar {
                    value: p.avg_max_staff_14_days.unwrap_or(0.0),
                    class: "staff14",
                    text: format!("{} på 14 dagar", opt_dec(p.avg_max_staff_14_days)),
                },
            ],
        })
        .collect();
    h.push_str(&bar_chart("continuity", "Olika personal per brukare", &staff_groups, staff_max, None));
    h.push_str(&legend(&[("staff", "under månaden"), ("staff14", "flest under 14 dagar")]));

    // Plans.
    h.push_str("<h2>Genomförandeplaner</h2>");
    h.push_str(r#"<p class="note">Beställningar vars plan skulle vara upprättad under månaden.</p>"#);
    let pl = s.plans;
    h.push_str(&status_chart(
        "plans",
        "Genomförandeplaner",
        &[
            ("i tid", pl.on_time, "ok"),
            ("för sent", pl.late, "late"),
            ("saknas", pl.missing, "missing"),
            ("ej förfallen", pl.pending, "pending"),
        ],
    ));
    let bad_plans = r.plans.iter().filter(|p| matches!(p.status, PlanStatus::Late | PlanStatus::Missing));
    late_table(
        &mut h,
        r,
        ("Upprättad", "saknas"),
        bad_plans.map(|p| (&p.order_id, &p.provider, p.plan_due, p.established_on, p.days_late)),
    );

    // Confirmations.
    h.push_str("<h2>Kvittering av beställningar</h2>");
    h.push_str(
        r#"<p class="note">Beställningar som skulle vara verkställda (kvitterade av utföraren) under månaden.</p>"#,
    );
    let c = s.confirmations;
    h.push_str(&status_chart(
        "confirmations",
        "Kvittering av beställningar",
        &[
            ("i tid", c.on_time, "ok"),
            ("för sent", c.late, "late"),
            ("ej kvitterad", c.not_confirmed, "missing"),
            ("ej förfallen", c.pending, "pending"),
        ],
    ));
    let late = r.confirmations.iter().filter(|c| matches!(c.status, ConfirmStatus::Late | ConfirmStatus::NotConfirmed));
    late_table(
        &mut h,
        r,
        ("Kvitterad", "ej kvitterad"),
        late.map(|c| (&c.order_id, &c.provider, c.execute_by, c.confirmed_on, c.days_late)),
    );

    reports_section(&mut h, r);

    h.push_str(r#"<footer><p>Beviljad tid: beslutade minuter per månad × aktiva dagar / dagar i månaden. Utförd tid: godkända och flaggade utförda besök med incheckning under månaden (avböjda besök räknas inte). Manuell andel: manuellt registrerade besök / alla godkända och flaggade besök. Framtagen av carehub.</p></footer>"#);
    h.push_str("</body></html>\n");
    h
}

/// A deviation's kind or a change of need's direction, in Swedish.
fn report_kind_label(message_type: &str, kind: &str) -> String {
    let label = match (message_type, kind) {
        ("deviation", "missed_visit") => "uteblivet besök",
        ("deviation", "late_visit") => "försenat besök",
        ("deviation", "fall") => "fall",
        ("deviation", "care_refused") => "avböjd insats",
        ("deviation", "medication_incident") => "läkemedelsavvikelse",
        ("deviation", "other") => "övrigt",
        ("need_change", "more") => "ökat behov",
        ("need_change", "less") => "minskat behov",
        _ => return kind.replace('_', " "),
    };
    label.to_owned()
}

/// Deviations and changes of need per provider and kind: one table for each.
fn reports_section(h: &mut String, r: &FollowUp) {
    h.push_str("<h2>Avvikelser och bevakningar</h2>");
    h.push_str(r#"<p class="note">Avvikelser och bevakningar (ändrat behov) som utförarna rapporterat, efter dag då de inträffade eller uppmärksammades under månaden.</p>"#);
    for (message_type, title, column) in
        [("deviation", "Avvikelser", "Avvikelse"), ("need_change", "Bevakningar", "Behov")]
    {
        let rows: Vec<_> = r.reports.iter().filter(|c| c.message_type == message_type).collect();
        let _ = write!(h, "<h3>{title}</h3>");
        if rows.is_empty() {
            let _ = write!(h, r#"<p class="note">Inga {} under månaden.</p>"#, title.to_lowercase());
            continue;
        }
        let _ = write!(
            h,
            r#"<table><thead><tr><th>Utförare</th><th>{column}</th><th class="num">Antal</th></tr></thead><tbody>"#
        );
        for c in rows {
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td>{}</td><td class="num">{}</td></tr>"#,
                escape(&r.provider_label(&c.provider)),
                escape(&report_kind_label(&c.message_type, &c.kind)),
                c.count
            );
        }
        h.push_str("</tbody></table>");
    }
}

/// A chart of counts by status, one bar each.
fn status_chart(name: &str, title: &str, items: &[(&str, u64, &'static str)]) -> String {
    #[allow(clippy::cast_precision_loss)]
    let groups: Vec<Group> = items
        .iter()
        .map(|(label, n, class)| Group {
            label: (*label).to_owned(),
            bars: vec![Bar { value: *n as f64, class, text: n.to_string() }],
        })
        .collect();
    let max = items.iter().map(|i| i.1).max().unwrap_or(0);
    #[allow(clippy::cast_precision_loss)]
    bar_chart(name, title, &groups, max as f64, None)
}
