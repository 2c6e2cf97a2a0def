//! Month verification's bulk reads in SQLite: one provider's month in a handful of
//! statements, never a round trip per order.
//!
//! The visits are read once, streaming, from the covering index `visits_provider_month_cover
//! (provider, month, order_id, check_in, ...)` (migration 0013): a provider's month is one
//! contiguous range of it, read in one sequential pass without touching the visits table,
//! whose pages hold every provider's visits mixed as they arrived. The rows come ordered
//! by order, so they are grouped as they come (an order id is looked up once per order,
//! not per row); orders come with their decision's validity in one join; the invoices and
//! credit notes of the month through `invoices_month`. What is held is one provider's month.

use std::collections::HashMap;

use carehub_model::VisitOutcome;
use chrono::NaiveDate;
use rusqlite::{params, Connection, OptionalExtension};

use super::rows::{invoice_row, order_row_at, ORDER_COLUMNS};
use crate::store::*;
use carehub_model::Month;

use crate::rules::invoices;
use crate::rules::visits::Outcome;

fn backend(e: rusqlite::types::FromSqlError) -> StoreError {
    StoreError::backend("a visit of the month does not read back", e)
}

/// Runs a bulk read with memory-mapped IO off. The store maps up to 4 GiB of the file for
/// its small reads; a month's read touches nearly every page of the visits table, and
/// through the map every one of them would count as the process's resident memory (a
/// national month's file is larger than the map). Read into SQLite's small page cache
/// instead, the batch's memory is its own data, and the pages stay in the OS's file cache.
pub(super) fn without_mmap<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mapped: i64 = conn.query_row("PRAGMA mmap_size", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA mmap_size = 0;")?;
    let result = f(conn);
    conn.execute_batch(&format!("PRAGMA mmap_size = {mapped};"))?;
    result
}

fn key(month: Month) -> String {
    month.to_string()
}

pub(super) fn month_providers(conn: &Connection, month: Month) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider FROM orders WHERE start_date <= ?2 AND (end_date IS NULL OR end_date >= ?1)
         UNION SELECT provider FROM invoices WHERE month = ?3
         ORDER BY 1",
    )?;
    let rows = stmt
        .query_map(params![month.first_day().to_string(), month.last_day().to_string(), key(month)], |r| {
            r.get::<_, String>(0)
        })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// The order columns of a join with `decisions d`, the decision's validity last.
fn order_select() -> String {
    let columns = ORDER_COLUMNS.split(',').map(|c| format!("o.{}", c.trim())).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT {columns}, json_extract(d.canonical, '$.valid_from'), json_extract(d.canonical, '$.valid_to')
         FROM orders o JOIN decisions d ON d.id = o.decision_id"
    )
}

fn month_order(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<MonthOrder>> {
    let record = order_row_at(r, 0)?;
    let from: Option<String> = r.get(11)?;
    let to: Option<String> = r.get(12)?;
    let day = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    // A decision without a readable validity is skipped, as the invoice flow does.
    let Some(decision_valid_from) = from.as_deref().and_then(day) else { return Ok(None) };
    Ok(Some(MonthOrder {
        record,
        decision_valid_from,
        decision_valid_to: to.as_deref().and_then(day),
        visits: Vec::new(),
        sums: None,
    }))
}

pub(super) fn provider_month(
    conn: &Connection,
    provider: &str,
    month: Month,
    detail: MonthDetail,
) -> Result<ProviderMonth, StoreError> {
    let month_key = key(month);
    let (first, last) = (month.first_day(), month.last_day());
    // Plan notices are stamped in UTC; a day's margin either side of the month catches the
    // ones whose Stockholm date is in it (verification checks the date itself).
    let notices_from = first.pred_opt().unwrap_or(first).to_string();
    let notices_to = last.succ_opt().and_then(|d| d.succ_opt()).unwrap_or(last).to_string();
    let mut out = ProviderMonth { provider: provider.to_owned(), ..ProviderMonth::default() };

    let mut stmt = conn.prepare_cached(&format!(
        "{} WHERE o.provider = ?1
           AND ((o.start_date <= ?3 AND (o.end_date IS NULL OR o.end_date >= ?2))
                OR (o.plan_received_at >= ?4 AND o.plan_received_at < ?5))
         ORDER BY o.id",
        order_select()
    ))?;
    let rows =
        stmt.query_map(params![provider, first.to_string(), last.to_string(), notices_from, notices_to], month_order)?;
    for row in rows {
        if let Some(o) = row? {
            out.orders.push(o);
        }
    }

    let mut stmt = conn.prepare_cached(
        "SELECT provider, kind, id, month, canonical, log_seq, received_at FROM invoices
         WHERE provider = ?1 AND month = ?2 ORDER BY kind DESC, received_at, id",
    )?;
    let rows = stmt.query_map(params![provider, month_key], invoice_row)?;
    out.invoices = rows.collect::<Result<Vec<_>, _>>()?;

    // Orders the month's lines name that are not among the provider's active ones.
    let mut index: HashMap<String, usize> =
        out.orders.iter().enumerate().map(|(i, o)| (o.record.order.id.clone(), i)).collect();
    if !out.invoices.is_empty() {
        let named: Vec<String> = conn
            .prepare_cached(
                "SELECT DISTINCT json_extract(l.value, '$.order_id') FROM invoices i, json_each(i.canonical, '$.lines') l
                 WHERE i.provider = ?1 AND i.month = ?2 AND json_extract(l.value, '$.order_id') IS NOT NULL",
            )?
            .query_map(params![provider, month_key], |r| r.get::<_, String>(0))?
            .collect::<Result<_, _>>()?;
        let mut one = conn.prepare_cached(&format!("{} WHERE o.id = ?1", order_select()))?;
        for id in &named {
            if index.contains_key(id) {
                continue;
            }
            if let Some(Some(o)) = one.query_row([id], month_order).optional()? {
                index.insert(id.clone(), out.orders.len());
                out.orders.push(o);
            }
        }
    }

    if detail == MonthDetail::Sums {
        month_sums(conn, provider, &month_key, &index, &mut out)?;
        return Ok(out);
    }

    // The month's visits, streamed in order id order (the covering index's) and grouped
    // as they come: the order is looked up when the id changes.
    let mut stmt = conn.prepare_cached(
        "SELECT order_id, check_in, check_out, outcome, visit_outcome, planned_minutes, manual FROM visits
         INDEXED BY visits_provider_month_cover WHERE provider = ?1 AND month = ?2",
    )?;
    let mut rows = stmt.query(params![provider, month_key])?;
    let mut current: (Vec<u8>, Option<usize>) = (Vec::new(), None);
    while let Some(r) = rows.next()? {
        out.visits_read += 1;
        let validation = Outcome::parse(r.get_ref(3)?.as_str().map_err(backend)?);
        if validation == Outcome::Rejected {
            continue;
        }
        let manual: bool = r.get(6)?;
        out.counted_visits += 1;
        out.manual_visits += u64::from(manual);
        let Some(order) = r.get_ref(0)?.as_str_or_null().map_err(backend)? else { continue };
        if current.0 != order.as_bytes() {
            current = (order.as_bytes().to_vec(), index.get(order).copied());
        }
        let Some(at) = current.1 else { continue };
        let Some(check_in) = parse_store_ts(r.get_ref(1)?.as_str().map_err(backend)?) else { continue };
        let check_out = r.get_ref(2)?.as_str_or_null().map_err(backend)?.and_then(parse_store_ts);
        let planned: Option<i64> = r.get(5)?;
        out.orders[at].visits.push(invoices::VisitEvidence {
            check_in,
            check_out,
            validation,
            outcome: VisitOutcome::parse(r.get_ref(4)?.as_str().map_err(backend)?),
            planned_minutes: planned.and_then(|m| u32::try_from(m).ok()),
            manual,
        });
    }
    Ok(out)
}

/// The month's visits summed per order by SQLite as it walks the covering index (in order
/// id order, so the grouping streams without a sort): [`invoices::VisitSums::of`]'s rules in
/// SQL, which the tests below hold to the same figures as the visits read one by one. The
/// index's `month` is the check-in's month in Stockholm, and `seconds` is the visit's
/// duration as the rules count it (NULL without a check-out or when it comes first). The
/// store writes `outcome` and `visit_outcome` only as `Outcome::as_str` and
/// `VisitOutcome::as_str` give them, so one comparison each decides a row: a second per
/// row costs about a tenth of the read at national scale (BENCHMARKS.md).
fn month_sums(
    conn: &Connection,
    provider: &str,
    month_key: &str,
    index: &HashMap<String, usize>,
    out: &mut ProviderMonth,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT order_id, count(*),
                count(*) FILTER (WHERE outcome <> 'rejected'),
                count(*) FILTER (WHERE outcome <> 'rejected' AND manual),
                coalesce(sum(seconds) FILTER (WHERE outcome <> 'rejected' AND visit_outcome = 'performed'), 0),
                coalesce(sum(planned_minutes) FILTER (WHERE outcome <> 'rejected' AND visit_outcome = 'declined_at_door'), 0)
         FROM visits INDEXED BY visits_provider_month_cover WHERE provider = ?1 AND month = ?2
         GROUP BY order_id",
    )?;
    let mut rows = stmt.query(params![provider, month_key])?;
    for o in &mut out.orders {
        o.sums = Some(invoices::VisitSums::default());
    }
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    while let Some(r) = rows.next()? {
        out.visits_read += count(r.get(1)?);
        out.counted_visits += count(r.get(2)?);
        out.manual_visits += count(r.get(3)?);
        let order = r.get_ref(0)?.as_str_or_null().map_err(backend)?;
        let Some(&at) = order.and_then(|id| index.get(id)) else { continue };
        out.orders[at].sums =
            Some(invoices::VisitSums { performed_seconds: r.get(4)?, declined_planned_minutes: r.get(5)? });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The one-pass read (the covering index, ordered by order) against a straightforward
    //! one: every visit row of the provider's month read from the table itself in arrival
    //! order, grouped by order. Same facts, same verification, on a varied month.

    use std::collections::BTreeMap;

    use carehub_model::{Deadlines, Decision, Order, OrgNumber};
    use chrono::{NaiveTime, TimeZone, Utc};
    use serde_json::json;

    use super::*;
    use crate::rules::invoices::{Band, BandKind, Policy, Rates};
    use crate::rules::month::{verify_provider, MonthDocument, ProviderFacts};
    use crate::store::sqlite::bulk::{BulkLoader, Durability, Stamp, VisitRow};

    const PNRS: &str = include_str!("../../../../../data/skatteverket-testpersonnummer.txt");

    fn orgs(n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut stem = 0u32;
        while out.len() < n {
            let base = format!("55990{stem:04}");
            stem += 1;
            if let Some(org) = (0..10).map(|c| format!("{base}{c}")).find(|c| OrgNumber::parse(c).is_ok()) {
                out.push(org);
            }
        }
        out
    }

    /// Four providers, 60 orders (some starting mid-month, one of another decision's
    /// validity), 3,000 visits over October and the days either side, mixed as they arrive:
    /// accepted, flagged, rejected, declined, cancelled, by hand, naming another provider's
    /// order or none known; invoices and a credit note, lines naming orders of others.
    fn seed(path: &std::path::Path) -> Vec<String> {
        let providers = orgs(4);
        let pnrs: Vec<&str> = PNRS.lines().take(60).collect();
        let mut loader = BulkLoader::create(path, Durability::WalUnsynced).expect("loader");
        loader
            .load(|batch| -> Result<(), StoreError> {
                for (c, pnr) in pnrs.iter().enumerate() {
                    let from = if c % 9 == 4 { "2026-10-12" } else { "2026-09-01" };
                    let decision: Decision = serde_json::from_value(json!({
                        "id": format!("combine:T-{c}"), "client": pnr, "case_officer": "hl-1",
                        "provider": providers[c % 4], "valid_from": from,
                        "services": [{"code": "PO", "category": "personal_care", "minutes_per_month": 600 + 60 * (c % 7)}]
                    }))
                    .expect("decision");
                    let start = NaiveDate::parse_from_str(from, "%Y-%m-%d").expect("date");
                    let order = Order::from_decision(format!("O-T{c:03}"), &decision, start, Deadlines::default());
                    batch.decision("combine", &decision)?;
                    batch.order(&order, "combine", "phoniro", "accepted")?;
                }
                for i in 0..3000usize {
                    let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
                    let c = (i * 7919) % pnrs.len();
                    // Mostly the order's provider; now and then another one, or an unknown order.
                    let p = if h.is_multiple_of(37) { (c + 1) % 4 } else { c % 4 };
                    let order = if h.is_multiple_of(53) { "O-GONE".to_owned() } else { format!("O-T{c:03}") };
                    let day = Utc.with_ymd_and_hms(2026, 9, 29, 0, 0, 0).single().expect("day")
                        + chrono::Duration::days((i % 36) as i64);
                    let at = day + chrono::Duration::minutes(((h % 1400) as i64) + 1);
                    let out = at + chrono::Duration::seconds(600 + (h % 3000) as i64);
                    let (check_in, check_out) = (Stamp::new(at), Stamp::new(out));
                    let month = carehub_model::local_date(at).format("%Y-%m").to_string();
                    let outcome = ["accepted", "accepted", "accepted", "flagged", "rejected"][(h % 5) as usize];
                    let visit_outcome = ["performed", "performed", "performed", "declined_at_door", "cancelled_in_advance"]
                        [((h >> 3) % 5) as usize];
                    batch.visit(&VisitRow {
                        source_id: &format!("phoniro:T-{i}"),
                        system: "phoniro",
                        provider: &providers[p],
                        client: pnrs[c],
                        order_id: &order,
                        staff: &format!("staff-{}", h % 11),
                        check_in: &check_in,
                        check_out: &check_out,
                        month: &month,
                        seconds: (out - at).num_seconds(),
                        planned_minutes: 20 + (h % 30) as i64,
                        visit_outcome,
                        manual: (h >> 7).is_multiple_of(4),
                        outcome,
                        codes: "",
                        findings: "[]",
                        canonical: "{}",
                        received_at: None,
                    })?;
                }
                for (p, org) in providers.iter().enumerate().take(3) {
                    let lines: Vec<_> = (0..pnrs.len())
                        .filter(|c| c % 4 == p || *c == 5)
                        .map(|c| json!({"id": format!("{c}"), "order_id": format!("O-T{c:03}"),
                                        "minutes": 300 + 37 * (c % 13), "amount": (300 + 37 * (c % 13)) * 650 + 90 * (c % 3)}))
                        .collect();
                    let canonical = json!({"lines": lines, "billing_references": [], "not_verified": []}).to_string();
                    batch.invoice(org, "invoice", &format!("HC-{p}"), "2026-10", &canonical)?;
                }
                let credit = json!({"lines": [{"id": "1", "order_id": "O-T000", "minutes": 60, "amount": 39_000}],
                                    "billing_references": ["HC-0"], "not_verified": []});
                batch.invoice(&providers[0], "credit_note", "CN-0", "2026-10", &credit.to_string())?;
                Ok(())
            })
            .expect("seed");
        loader.finish().expect("finish");
        providers
    }

    /// The straightforward read: the table's rows in arrival order, no index.
    fn visits_read_plainly(conn: &Connection, provider: &str, month: Month, into: &mut ProviderMonth) {
        let index: HashMap<String, usize> =
            into.orders.iter().enumerate().map(|(i, o)| (o.record.order.id.clone(), i)).collect();
        for o in &mut into.orders {
            o.visits.clear();
        }
        (into.visits_read, into.counted_visits, into.manual_visits) = (0, 0, 0);
        let mut stmt = conn
            .prepare(
                "SELECT order_id, check_in, check_out, outcome, visit_outcome, planned_minutes, manual FROM visits
                 NOT INDEXED WHERE provider = ?1 AND month = ?2 ORDER BY id",
            )
            .expect("prepare");
        let mut rows = stmt.query(params![provider, month.to_string()]).expect("query");
        while let Some(r) = rows.next().expect("row") {
            into.visits_read += 1;
            let validation = Outcome::parse(&r.get::<_, String>(3).expect("outcome"));
            if validation == Outcome::Rejected {
                continue;
            }
            let manual: bool = r.get(6).expect("manual");
            into.counted_visits += 1;
            into.manual_visits += u64::from(manual);
            let order: Option<String> = r.get(0).expect("order");
            let Some(&at) = order.as_ref().and_then(|o| index.get(o)) else { continue };
            let check_out: Option<String> = r.get(2).expect("check-out");
            into.orders[at].visits.push(invoices::VisitEvidence {
                check_in: parse_store_ts(&r.get::<_, String>(1).expect("check-in")).expect("instant"),
                check_out: check_out.as_deref().and_then(parse_store_ts),
                validation,
                outcome: VisitOutcome::parse(&r.get::<_, String>(4).expect("visit outcome")),
                planned_minutes: r.get::<_, Option<i64>>(5).expect("planned").and_then(|m| u32::try_from(m).ok()),
                manual,
            });
        }
    }

    fn facts(m: &ProviderMonth) -> ProviderFacts {
        let documents = m
            .invoices
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.canonical).expect("json");
                let lines = v["lines"]
                    .as_array()
                    .expect("lines")
                    .iter()
                    .map(|l| invoices::InvoiceLine {
                        id: l["id"].as_str().expect("id").to_owned(),
                        order_id: l["order_id"].as_str().expect("order").to_owned(),
                        minutes: l["minutes"].as_i64().expect("minutes"),
                        amount: l["amount"].as_i64().expect("amount"),
                        comment: None,
                    })
                    .collect();
                let kind = if r.kind == "credit_note" {
                    carehub_model::InvoiceKind::CreditNote
                } else {
                    carehub_model::InvoiceKind::Invoice
                };
                let credits = v["billing_references"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                Ok(MonthDocument {
                    invoice: invoices::Invoice {
                        id: r.id.clone(),
                        provider: OrgNumber::parse(&r.provider).expect("org"),
                        kind,
                        period: Month::new(2026, 10).expect("month"),
                        lines,
                    },
                    credits,
                })
            })
            .collect();
        ProviderFacts {
            provider: m.provider.clone(),
            orders: m
                .orders
                .iter()
                .map(|o| invoices::OrderEvidence {
                    order: o.record.order.clone(),
                    decision_valid_from: o.decision_valid_from,
                    decision_valid_to: o.decision_valid_to,
                    visits: o.visits.clone(),
                    sums: o.sums,
                    plan_notice: None,
                })
                .collect(),
            documents,
            counted_visits: m.counted_visits,
            manual_visits: m.manual_visits,
            visits_read: m.visits_read,
        }
    }

    fn sorted(mut visits: Vec<invoices::VisitEvidence>) -> Vec<invoices::VisitEvidence> {
        visits.sort_by_key(|v| (v.check_in, v.check_out, v.manual, format!("{:?}{:?}", v.validation, v.outcome)));
        visits
    }

    #[test]
    fn the_one_pass_read_gives_the_same_month_as_reading_the_table_row_by_row() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("month.db");
        let providers = seed(&path);
        let conn = Connection::open(&path).expect("open");
        let month = Month::new(2026, 10).expect("month");
        assert_eq!(month_providers(&conn, month).expect("providers"), providers);
        // Evening and weekend bands, so where in the day each second falls counts too.
        let banded = Rates {
            day: 39_000,
            bands: vec![
                Band { kind: BandKind::Weekend, from: NaiveTime::MIN, to: NaiveTime::MIN, rate: 52_000 },
                Band {
                    kind: BandKind::Evening,
                    from: NaiveTime::from_hms_opt(18, 0, 0).expect("time"),
                    to: NaiveTime::from_hms_opt(22, 0, 0).expect("time"),
                    rate: 45_000,
                },
            ],
        };
        let mut checked = (0, 0);
        for (p, provider) in providers.iter().enumerate() {
            let one_pass = provider_month(&conn, provider, month, MonthDetail::Visits).expect("one pass");
            let mut plain = one_pass.clone();
            visits_read_plainly(&conn, provider, month, &mut plain);
            assert_eq!(
                (one_pass.visits_read, one_pass.counted_visits, one_pass.manual_visits),
                (plain.visits_read, plain.counted_visits, plain.manual_visits),
                "{provider}"
            );
            assert!(one_pass.visits_read > 100 && one_pass.manual_visits > 0, "{provider}: a varied month");
            for (a, b) in one_pass.orders.iter().zip(&plain.orders) {
                assert_eq!(sorted(a.visits.clone()), sorted(b.visits.clone()), "{}", a.record.order.id);
                checked.0 += a.visits.len();
            }
            let org = OrgNumber::parse(provider).expect("org");
            let rates = if p % 2 == 0 { Rates::flat(39_000) } else { banded.clone() };
            let policy = Policy { rates: BTreeMap::from([(org, rates)]), ..Policy::default() };
            let ours = verify_provider(facts(&one_pass), month, &policy, None);
            let theirs = verify_provider(facts(&plain), month, &policy, None);
            assert_eq!(
                serde_json::to_value(&ours).expect("json"),
                serde_json::to_value(&theirs).expect("json"),
                "{provider}"
            );
            checked.1 += ours.reports.iter().map(|r| r.lines.len()).sum::<usize>();
            assert!(ours.errors.is_empty(), "{:?}", ours.errors);

            // The follow-up's read: the same visits as the table's.
            let follow = super::super::followup::visits(&conn, provider, month).expect("follow-up");
            let mut plain_follow: Vec<(String, String, String, Option<i64>)> = conn
                .prepare(
                    "SELECT order_id, staff, check_in, seconds FROM visits NOT INDEXED
                     WHERE provider = ?1 AND month = ?2 AND outcome IN ('accepted', 'flagged') AND order_id IS NOT NULL",
                )
                .expect("prepare")
                .query_map(params![provider, "2026-10"], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            let mut ours_follow: Vec<(String, String, String, Option<i64>)> = follow
                .iter()
                .map(|v| (v.order_id.clone(), v.staff.clone(), crate::store::ts(v.check_in), v.seconds))
                .collect();
            plain_follow.sort();
            ours_follow.sort();
            assert_eq!(ours_follow, plain_follow, "{provider}");
        }
        assert!(checked.0 > 1000 && checked.1 > 30, "{checked:?}");
    }

    #[test]
    fn the_month_summed_in_the_database_verifies_as_the_visits_one_by_one() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("month.db");
        let providers = seed(&path);
        let conn = Connection::open(&path).expect("open");
        let month = Month::new(2026, 10).expect("month");
        let mut paid_declined = 0;
        for provider in &providers {
            let summed = provider_month(&conn, provider, month, MonthDetail::Sums).expect("sums");
            let listed = provider_month(&conn, provider, month, MonthDetail::Visits).expect("visits");
            assert_eq!(
                (summed.visits_read, summed.counted_visits, summed.manual_visits),
                (listed.visits_read, listed.counted_visits, listed.manual_visits),
                "{provider}"
            );
            assert_eq!(summed.orders.len(), listed.orders.len());
            for (s, l) in summed.orders.iter().zip(&listed.orders) {
                assert!(s.visits.is_empty(), "summed, not listed");
                assert_eq!(s.sums, Some(invoices::VisitSums::of(&l.visits, month)), "{}", s.record.order.id);
                paid_declined += s.sums.map_or(0, |x| x.declined_planned_minutes);
            }
            let org = OrgNumber::parse(provider).expect("org");
            for declined_visits_paid in [false, true] {
                let policy = Policy {
                    rates: BTreeMap::from([(org.clone(), Rates::flat(39_000))]),
                    declined_visits_paid,
                    ..Policy::default()
                };
                let ours = verify_provider(facts(&summed), month, &policy, None);
                let theirs = verify_provider(facts(&listed), month, &policy, None);
                assert!(ours.errors.is_empty(), "{:?}", ours.errors);
                assert_eq!(
                    serde_json::to_value(&ours).expect("json"),
                    serde_json::to_value(&theirs).expect("json"),
                    "{provider}, declined visits paid: {declined_visits_paid}"
                );
            }
            // Sums cannot be split over time bands: refused, not guessed.
            let banded = Rates {
                day: 39_000,
                bands: vec![Band { kind: BandKind::Weekend, from: NaiveTime::MIN, to: NaiveTime::MIN, rate: 52_000 }],
            };
            let policy = Policy { rates: BTreeMap::from([(org, banded)]), ..Policy::default() };
            let refused = verify_provider(facts(&summed), month, &policy, None);
            assert!(refused.errors.iter().any(|e| e.contains("time bands")), "{:?}", refused.errors);
        }
        assert!(paid_declined > 0, "the month has declined visits with planned minutes");
    }
}
