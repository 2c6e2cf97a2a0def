//! The follow-up on a scenario computed by hand.

use chrono::{NaiveDate, TimeZone, Utc};

use super::build::max_in_window;
use super::*;

const P1: &str = "5599000014";
const P2: &str = "5566778899";
const P3: &str = "5560123456";
const C1: &str = "193601016987";
const C2: &str = "194001019808";
const C3: &str = "195001015531";
const C4: &str = "196001012382";
const C5: &str = "197001018785";

fn d(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

fn nov() -> Month {
    Month::new(2026, 11).expect("month")
}

fn order(id: &str, provider: &str, client: &str, minutes: i64, start: &str) -> FollowUpOrder {
    FollowUpOrder {
        order_id: id.into(),
        provider: provider.into(),
        client: client.into(),
        services: vec![carehub_model::Service {
            code: "PO".into(),
            category: carehub_model::ServiceCategory::PersonalCare,
            minutes_per_month: u32::try_from(minutes).expect("minutes"),
        }],
        revisions: Vec::new(),
        pauses: Vec::new(),
        start_date: d(start),
        end_date: None,
        decision_valid_from: d(start),
        decision_valid_to: None,
        execute_by: d("2026-12-31"),
        plan_due: d("2026-12-31"),
        acked_at: None,
        rejected: false,
        plan_established_on: None,
    }
}

/// A performed visit; `at` is UTC.
fn visit(order: &str, staff: &str, at: (u32, u32, u32, u32), seconds: i64) -> FollowUpVisit {
    FollowUpVisit {
        order_id: order.into(),
        staff: staff.into(),
        check_in: Utc.with_ymd_and_hms(2026, at.0, at.1, at.2, at.3, 0).single().expect("instant"),
        seconds: Some(seconds),
        performed: true,
    }
}

fn scenario() -> FollowUp {
    let mut a1 = order("O-A1", P1, C1, 600, "2026-11-01");
    a1.plan_due = d("2026-11-15");
    a1.plan_established_on = Some(d("2026-11-15"));
    a1.execute_by = d("2026-11-15");
    // 23:30 in Stockholm on the 15th: on time.
    a1.acked_at = Utc.with_ymd_and_hms(2026, 11, 15, 22, 30, 0).single();
    let mut a2 = order("O-A2", P1, C2, 300, "2026-11-16");
    a2.decision_valid_from = d("2026-11-10");
    a2.decision_valid_to = Some(d("2026-11-25"));
    a2.plan_due = d("2026-11-20");
    a2.plan_established_on = Some(d("2026-11-22"));
    a2.execute_by = d("2026-11-10");
    // 00:30 in Stockholm on the 11th: a day late.
    a2.acked_at = Utc.with_ymd_and_hms(2026, 11, 10, 23, 30, 0).single();
    let mut b1 = order("O-B1", P2, C4, 600, "2026-11-01");
    b1.rejected = true;
    b1.plan_due = d("2026-11-15");
    b1.execute_by = d("2026-11-05");
    b1.acked_at = Utc.with_ymd_and_hms(2026, 11, 3, 10, 0, 0).single();
    let mut c1 = order("O-C1", P3, C3, 3, "2026-11-26");
    c1.decision_valid_to = Some(d("2026-11-30"));
    c1.plan_due = d("2026-11-20");
    c1.execute_by = d("2026-11-14");
    let mut c2 = order("O-C2", P3, C5, 900, "2026-12-01");
    c2.plan_due = d("2026-11-29");
    c2.execute_by = d("2026-11-30");

    let mut declined = visit("O-A1", "s6", (11, 20, 8, 0), 3600);
    declined.performed = false;
    let visits = vec![
        visit("O-A1", "s1", (11, 1, 8, 0), 120 * 60),
        visit("O-A1", "s2", (11, 2, 8, 0), 120 * 60),
        visit("O-A1", "s5", (11, 14, 8, 0), 120 * 60),
        // 89:30 and 30:30: summed, then rounded (per visit they would round to 121).
        visit("O-A1", "s3", (11, 15, 8, 0), 89 * 60 + 30),
        visit("O-A1", "s4", (11, 30, 8, 0), 30 * 60 + 30),
        declined,
        visit("O-A2", "s1", (11, 20, 9, 0), 121 * 60),
        // 00:30 on 1 December in Stockholm: not November.
        visit("O-A2", "s1", (11, 30, 23, 30), 60 * 60),
        visit("O-ZZ", "s9", (11, 10, 8, 0), 60 * 60),
    ];
    let shares = vec![ManualShare { provider: P1.into(), visits: 7, manual: 1, share: 1.0 / 7.0 }];
    FollowUp::compute(nov(), d("2026-11-28"), &[a1, a2, b1, c1, c2], &visits, &shares, 0.10)
}

#[test]
fn granted_prorates_over_both_validities_and_rounds_halves_up() {
    let mut o = order("O-1", P1, C1, 300, "2026-11-16");
    o.decision_valid_from = d("2026-11-10");
    o.decision_valid_to = Some(d("2026-11-25"));
    assert_eq!(o.active_days(nov()), 10);
    assert_eq!(o.granted(nov()), 100);
    // 3 × 5 / 30 = 0.5: up.
    let mut half = order("O-2", P1, C1, 3, "2026-11-26");
    assert_eq!(half.granted(nov()), 1);
    // 2 × 5 / 30 = 0.33: down.
    half.services[0].minutes_per_month = 2;
    assert_eq!(half.granted(nov()), 0);
    // Not active at all.
    let later = order("O-3", P1, C1, 600, "2026-12-01");
    assert_eq!(later.granted(nov()), 0);
    // Rejected orders grant nothing.
    let mut rejected = order("O-4", P1, C1, 600, "2026-11-01");
    rejected.rejected = true;
    assert_eq!(rejected.granted(nov()), 0);
}

#[test]
fn band_edges_are_inside() {
    assert_eq!(Band::of(600, 479), Band::Under);
    assert_eq!(Band::of(600, 480), Band::Within);
    assert_eq!(Band::of(600, 720), Band::Within);
    assert_eq!(Band::of(600, 721), Band::Over);
    // 80% of 101 is 80.8: 80 is under, 81 within; 120% is 121.2: 121 within, 122 over.
    assert_eq!(Band::of(101, 80), Band::Under);
    assert_eq!(Band::of(101, 81), Band::Within);
    assert_eq!(Band::of(101, 121), Band::Within);
    assert_eq!(Band::of(101, 122), Band::Over);
    assert_eq!(Band::of(0, 50), Band::NotGranted);
}

#[test]
fn fourteen_day_windows_lie_inside_the_month() {
    let day = |d: u32| 1u32 << (d - 1);
    // The 1st and the 15th are 15 days apart: never in one window.
    assert_eq!(max_in_window([day(1), day(15)].into_iter(), nov()), 1);
    assert_eq!(max_in_window([day(1), day(14)].into_iter(), nov()), 2);
    // The last window is the 17th-30th.
    assert_eq!(max_in_window([day(17), day(30)].into_iter(), nov()), 2);
    assert_eq!(max_in_window([day(16), day(30)].into_iter(), nov()), 1);
    // February 2027: 28 days, windows 1-14 .. 15-28.
    let feb = Month::new(2027, 2).expect("month");
    assert_eq!(max_in_window([day(15), day(28)].into_iter(), feb), 2);
    assert_eq!(max_in_window(std::iter::empty(), feb), 0);
}

#[test]
fn clients_are_computed_by_hand() {
    let r = scenario();
    let keys: Vec<_> = r.clients.iter().map(|c| (c.provider.as_str(), c.key.as_str())).collect();
    assert_eq!(keys, vec![(P3, "O-C1"), (P1, "O-A1"), (P1, "O-A2")]);
    let a1 = &r.clients[1];
    assert_eq!((a1.granted_minutes, a1.performed_minutes, a1.band), (600, 480, Band::Within));
    assert_eq!(a1.ratio, Some(0.8));
    assert_eq!((a1.visits, a1.staff_in_month, a1.max_staff_14_days), (5, 5, 3));
    let a2 = &r.clients[2];
    assert_eq!((a2.granted_minutes, a2.performed_minutes, a2.band), (100, 121, Band::Over));
    assert_eq!((a2.visits, a2.staff_in_month, a2.max_staff_14_days), (1, 1, 1));
    let c1 = &r.clients[0];
    assert_eq!((c1.granted_minutes, c1.performed_minutes, c1.band, c1.ratio), (1, 0, Band::Under, Some(0.0)));
    assert_eq!(r.summary.visits_without_order, 1);
}

#[test]
fn providers_and_summary_are_computed_by_hand() {
    let r = scenario();
    let ids: Vec<_> = r.providers.iter().map(|p| p.provider.as_str()).collect();
    assert_eq!(ids, vec![P3, P2, P1]);
    let p1 = &r.providers[2];
    assert_eq!((p1.clients, p1.granted_minutes, p1.performed_minutes), (2, 700, 601));
    assert_eq!((p1.visits, p1.manual, p1.over_threshold), (7, 1, true));
    assert_eq!((p1.avg_staff_per_client, p1.avg_max_staff_14_days), (Some(3.0), Some(2.0)));
    assert_eq!(p1.plans, PlanCounts { due: 2, on_time: 1, late: 1, missing: 0, pending: 0 });
    assert_eq!(p1.confirmations, ConfirmCounts { due: 2, on_time: 1, late: 1, not_confirmed: 0, pending: 0 });
    let p2 = &r.providers[1];
    assert_eq!((p2.clients, p2.plans.due, p2.confirmations.on_time), (0, 0, 1));
    let s = &r.summary;
    assert_eq!((s.clients, s.granted_minutes, s.performed_minutes), (3, 701, 601));
    assert_eq!(s.bands, BandCounts { under: 1, within: 1, over: 1, not_granted: 0 });
    assert_eq!((s.visits, s.manual, s.providers_over_threshold), (7, 1, 1));
    assert_eq!(s.plans, PlanCounts { due: 4, on_time: 1, late: 1, missing: 1, pending: 1 });
    assert_eq!(s.confirmations, ConfirmCounts { due: 5, on_time: 2, late: 1, not_confirmed: 1, pending: 1 });
    assert_eq!((s.avg_staff_per_client, s.avg_max_staff_14_days), (Some(3.0), Some(2.0)));
}

#[test]
fn plans_and_confirmations_say_how_late() {
    let r = scenario();
    let plans: Vec<_> = r.plans.iter().map(|p| (p.order_id.as_str(), p.status, p.days_late)).collect();
    assert_eq!(
        plans,
        vec![
            ("O-C1", PlanStatus::Missing, Some(8)),
            ("O-C2", PlanStatus::Pending, None),
            ("O-A1", PlanStatus::OnTime, None),
            ("O-A2", PlanStatus::Late, Some(2)),
        ]
    );
    let conf: Vec<_> = r.confirmations.iter().map(|c| (c.order_id.as_str(), c.status, c.days_late)).collect();
    assert_eq!(
        conf,
        vec![
            ("O-C1", ConfirmStatus::NotConfirmed, Some(14)),
            ("O-C2", ConfirmStatus::Pending, None),
            ("O-B1", ConfirmStatus::OnTime, None),
            ("O-A2", ConfirmStatus::Late, Some(1)),
            ("O-A1", ConfirmStatus::OnTime, None),
        ]
    );
}

#[test]
fn a_providers_view_keeps_its_own_rows() {
    let mut r = scenario();
    r.only_provider(P3);
    assert_eq!(r.providers.len(), 1);
    assert!(r.clients.iter().all(|c| c.provider == P3));
    assert_eq!((r.summary.clients, r.summary.granted_minutes, r.summary.plans.due), (1, 1, 2));
}

#[test]
fn renderings_never_name_a_client() {
    let mut r = scenario();
    r.name_providers(|p| (p == P1).then(|| "Omsorg & Co <AB>".to_owned()));
    let html = html::render(&r);
    let csv = table::render(&r);
    let json = serde_json::to_string(&r).expect("json");
    for pnr in [C1, C2, C3, C4, C5] {
        assert!(!html.contains(pnr) && !csv.contains(pnr) && !json.contains(pnr), "{pnr} leaked");
    }
    assert!(html.contains("Omsorg &amp; Co &lt;AB&gt;"));
    assert!(!html.contains("<script"));
    assert!(html.contains("november 2026"));
    // Charts: granted/performed 2 bars per provider, bands 4, manual 1 per provider,
    // continuity 2 per provider, plans 4, confirmations 4.
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 6);
    assert_eq!(html.matches("<rect class=\"bar").count(), 6 + 4 + 3 + 6 + 4 + 4);
    assert!(html.contains("class=\"threshold\""));
    assert!(csv.contains("clients;O-A1;5599000014;600;480;0.800;within;5;5;3\r\n"), "{csv}");
    assert!(csv.contains("providers;5599000014;Omsorg & Co <AB>;2;700;601;"), "{csv}");
    assert!(csv.contains("confirmations;O-A2;5599000014;2026-11-10;2026-11-11;late;1\r\n"), "{csv}");
}

fn count(provider: &str, message_type: &str, kind: &str, n: u64) -> FollowUpReportCount {
    FollowUpReportCount { provider: provider.into(), message_type: message_type.into(), kind: kind.into(), count: n }
}

/// Deviations and changes of need add up per provider and in the summary; a provider with
/// reports but no order in the month gets its own row; a provider's view keeps its own.
#[test]
fn deviations_and_changes_of_need_are_counted_per_provider_and_kind() {
    let counts = [
        count(P1, "deviation", "fall", 2),
        count(P1, "deviation", "missed_visit", 1),
        count(P1, "need_change", "more", 3),
        count(P2, "need_change", "less", 1),
        count("5599000030", "deviation", "late_visit", 4),
    ];
    let mut r = scenario();
    let providers_before = r.providers.len();
    r.add_reports(&counts);
    assert_eq!((r.summary.deviations, r.summary.need_changes), (7, 4));
    let row = |p: &str| r.providers.iter().find(|row| row.provider == p).expect("a row");
    assert_eq!((row(P1).deviations, row(P1).need_changes), (3, 3));
    assert_eq!((row(P2).deviations, row(P2).need_changes), (0, 1));
    assert_eq!((row(P3).deviations, row(P3).need_changes), (0, 0));
    assert_eq!(r.providers.len(), providers_before + 1);
    assert!(r.providers.windows(2).all(|w| w[0].provider < w[1].provider), "providers stay in order");
    assert_eq!(r.reports.len(), 5);

    let csv = table::render(&r);
    assert!(csv.contains("summary;deviations;7\r\n") && csv.contains("summary;need_changes;4\r\n"), "{csv}");
    assert!(csv.contains("reports;5599000014;deviation;fall;2\r\n"), "{csv}");
    assert!(csv.contains("reports;5566778899;need_change;less;1\r\n"), "{csv}");
    let p1 = csv.lines().find(|l| l.starts_with("providers;5599000014;")).expect("P1's line");
    assert!(p1.ends_with(";3;3"), "{p1}");
    let html = html::render(&r);
    assert!(html.contains("<h2>Avvikelser och bevakningar</h2>"), "{html}");
    assert!(html.contains("<td>uteblivet besök</td><td class=\"num\">1</td>"), "{html}");
    assert!(html.contains("<td>ökat behov</td><td class=\"num\">3</td>"), "{html}");

    r.only_provider(P1);
    assert_eq!((r.summary.deviations, r.summary.need_changes), (3, 3));
    assert!(r.reports.iter().all(|c| c.provider == P1) && r.reports.len() == 3);
}

#[test]
fn months_parse() {
    assert_eq!(parse_month("2026-11"), Month::new(2026, 11));
    assert_eq!(parse_month("2026-13"), None);
    assert_eq!(parse_month("26-11"), None);
}
