//! `carehub bench verify --peer postgres`: the same month verified by PostgreSQL 15 as one
//! SQL query, the one a municipality's BI analyst would write over the same data, to put
//! carehub's time beside.
//!
//! # The data
//! A database of its own on the server (`CAREHUB_TEST_POSTGRES`, else 127.0.0.1:5432),
//! created and dropped by the bench, with three plain tables loaded by `COPY` from the
//! seeded SQLite file ([`carehub_core::store::sqlite::bulk::export_month`]): the orders
//! active in the month (granted minutes per month, the order's and its decision's dates),
//! the month's visits (as stored: provider, order, check-in and -out, validation outcome,
//! visit outcome, manual) and the month's invoice lines. No index (the query reads whole
//! tables); `VACUUM ANALYZE` after the load, so the first query does not pay for hint bits.
//! The server's settings are its own (default ones here).
//!
//! # The query
//! [`QUERY`]: SPEC §7 in SQL, for the policy the bench verifies with (SPEC's defaults and
//! a flat contracted rate): per order, granted minutes (minutes per month × active days /
//! days in the month, halves up) and performed minutes (the seconds of accepted and
//! flagged visits with outcome `performed`, halves up); per invoice line, INV001
//! (invoiced above performed), INV002 (above 110% of granted), INV004 (an order not of
//! the provider or not active), INV007 (the amount more than 1 kr off the contracted one)
//! and the approved minutes and amount; per provider INV003 (more than 10% of its visits by
//! hand) and per order INV006 (performed under 80% of granted). It sums them to the
//! figures `carehub verify` prints, which the bench compares. What it leaves out, because
//! the bench's data has none of it: credit notes, pauses and changed orders, rate bands,
//! declined visits paid, comments, plan compensation, several lines for one order.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use carehub_core::store::sqlite::bulk::{export_month, Export};
use carehub_postgres::scratch::ScratchDb;
use postgres::NoTls;

/// The month's figures both sides print: what is compared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    pub orders: i64,
    pub approved_minutes: i64,
    /// Öre.
    pub approved_amount: i64,
    /// Findings by code (`INV001`), zero counts left out.
    pub findings: BTreeMap<String, i64>,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let findings: Vec<String> = self.findings.iter().map(|(c, n)| format!("{c} {n}")).collect();
        write!(
            f,
            "{} orders, approved {} min, {}.{:02} kr; findings {}",
            self.orders,
            self.approved_minutes,
            self.approved_amount / 100,
            self.approved_amount.rem_euclid(100),
            findings.join(", ")
        )
    }
}

impl Figures {
    /// The figures in `carehub verify`'s summary (stdout).
    pub fn from_summary(text: &str) -> anyhow::Result<Figures> {
        let mut out = Figures::default();
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("month ") {
                let orders = rest
                    .split(", ")
                    .find_map(|p| p.strip_suffix(" orders"))
                    .and_then(|p| p.rsplit(' ').next())
                    .context("no orders in the summary")?;
                out.orders = orders.parse()?;
            } else if let Some(rest) = line.strip_prefix("findings: ") {
                for part in rest.split(", ").filter(|p| *p != "none") {
                    let (code, n) = part.split_once(' ').context("a finding without a count")?;
                    out.findings.insert(code.to_owned(), n.parse()?);
                }
            } else if let Some(rest) = line.strip_prefix("approved: ") {
                let (minutes, rest) = rest.split_once(" min, ").context("approved minutes")?;
                let (kr, _) = rest.split_once(" kr").context("approved amount")?;
                let (whole, ore) = kr.split_once('.').context("approved amount in kronor and öre")?;
                out.approved_minutes = minutes.parse()?;
                out.approved_amount = whole.parse::<i64>()? * 100 + ore.parse::<i64>()?;
            }
        }
        Ok(out)
    }
}

/// SPEC §7 as one query. Parameters: the month's first and last day, `YYYY-MM`, the flat
/// rate in öre per hour. `round_half_up(n, d)` is `(2n + d) / (2d)` in integers.
pub const QUERY: &str = "
WITH p AS (
    SELECT $1::text::date AS first_day, $2::text::date AS last_day, $3::text AS month, $4::bigint AS rate,
           ($2::text::date - $1::text::date + 1) AS days
),
-- Valid (accepted and flagged) visits per provider and order: count, manual, performed time.
visit_sums AS (
    SELECT v.provider, v.order_id, count(*) AS counted, count(*) FILTER (WHERE v.manual) AS manual,
           sum(v.check_out - v.check_in) FILTER (WHERE v.visit_outcome = 'performed' AND v.check_out > v.check_in)
               AS performed
    FROM visits v, p
    WHERE v.month = p.month AND v.outcome IN ('accepted', 'flagged')
    GROUP BY v.provider, v.order_id
),
active AS (
    SELECT o.id, o.provider, o.minutes_per_month,
           least(coalesce(o.end_date, p.last_day), coalesce(o.valid_to, p.last_day), p.last_day)
             - greatest(o.start_date, o.valid_from, p.first_day) + 1 AS active_days
    FROM orders o, p
    WHERE o.start_date <= p.last_day AND (o.end_date IS NULL OR o.end_date >= p.first_day)
),
-- Granted vs. performed minutes per order.
figures AS (
    SELECT a.id, a.provider,
           (2 * a.minutes_per_month::bigint * a.active_days + p.days) / (2 * p.days) AS granted,
           (2 * coalesce(floor(extract(epoch FROM s.performed))::bigint, 0) + 60) / 120 AS performed
    FROM active a CROSS JOIN p
    LEFT JOIN visit_sums s ON s.provider = a.provider AND s.order_id = a.id
    WHERE a.active_days > 0
),
-- Invoice lines per invoice and order, against the order's figures.
lines AS (
    SELECT l.provider, l.invoice_id, l.order_id, sum(l.minutes) AS invoiced, sum(greatest(l.minutes, 0)) AS positive,
           count(*) AS n,
           count(*) FILTER (WHERE abs(l.amount - floor((2 * l.minutes * p.rate + 60)::numeric / 120)) > 100) AS off
    FROM invoice_lines l, p
    WHERE l.month = p.month AND l.kind = 'invoice'
    GROUP BY l.provider, l.invoice_id, l.order_id
),
checked AS (
    SELECT l.*, f.id IS NOT NULL AS known, f.performed, f.granted * 110 / 100 AS cap,
           least(greatest(least(l.invoiced, f.performed, f.granted * 110 / 100), 0), l.positive) AS approved -- numeric (a sum of bigint)
    FROM lines l LEFT JOIN figures f ON f.id = l.order_id AND f.provider = l.provider
),
providers AS (
    SELECT provider FROM active UNION SELECT provider FROM invoice_lines, p WHERE invoice_lines.month = p.month
),
manual AS (
    SELECT s.provider, sum(s.counted) AS counted, sum(s.manual) AS manual
    FROM visit_sums s JOIN providers USING (provider) GROUP BY s.provider
)
SELECT
    (SELECT count(*) FROM figures)::bigint,
    (SELECT coalesce(sum(approved), 0) FROM checked WHERE known)::bigint,
    (SELECT coalesce(sum(floor((2 * approved * p.rate + 60) / 120)), 0) FROM checked, p WHERE known)::bigint,
    (SELECT count(*) FROM checked WHERE known AND invoiced > performed)::bigint,
    (SELECT count(*) FROM checked WHERE known AND invoiced > cap)::bigint,
    (SELECT count(*) FROM manual WHERE counted > 0 AND manual * 100 > 10 * counted)::bigint,
    (SELECT coalesce(sum(n), 0) FROM checked WHERE NOT known)::bigint,
    (SELECT count(*) FROM figures WHERE performed * 100 < 80 * granted)::bigint,
    (SELECT coalesce(sum(off), 0) FROM checked WHERE known)::bigint
FROM p";

const SCHEMA: &str = "
CREATE TABLE orders (
    id text PRIMARY KEY, provider text NOT NULL, minutes_per_month integer NOT NULL,
    start_date date NOT NULL, end_date date, valid_from date NOT NULL, valid_to date
);
CREATE TABLE visits (
    provider text, month text NOT NULL, order_id text, check_in timestamptz NOT NULL, check_out timestamptz,
    outcome text NOT NULL, visit_outcome text NOT NULL, planned_minutes integer, manual boolean NOT NULL
);
CREATE TABLE invoice_lines (
    provider text NOT NULL, invoice_id text NOT NULL, kind text NOT NULL, month text NOT NULL,
    order_id text, minutes bigint NOT NULL, amount bigint NOT NULL
);";

/// The peer: its own database on the server, loaded, and a connection to it.
pub struct Peer {
    client: postgres::Client,
    /// Dropped last: closes the connections and drops the database.
    _db: ScratchDb,
    pub loaded_in: Duration,
    pub rows: (u64, u64, u64),
    pub bytes: i64,
    pub server_version: String,
}

impl Peer {
    /// Creates the database and loads the month of the SQLite file at `sqlite` into it.
    pub fn load(sqlite: &Path, month: &str) -> anyhow::Result<Peer> {
        let started = Instant::now();
        let server = carehub_postgres::scratch::server();
        let db = ScratchDb::create_blocking(&server, "verifypeer").map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut client =
            postgres::Client::connect(&db.url(), NoTls).with_context(|| format!("cannot connect to {server}"))?;
        client.batch_execute(SCHEMA).context("creating the peer's tables")?;
        let mut copy = |table: &str, columns: &str, what: Export| -> anyhow::Result<u64> {
            let mut w = client
                .copy_in(&format!("COPY {table} ({columns}) FROM STDIN"))
                .with_context(|| format!("COPY {table}"))?;
            let mut buffered = std::io::BufWriter::with_capacity(1 << 20, &mut w);
            let n = export_month(sqlite, month, what, &mut buffered).map_err(|e| anyhow::anyhow!("{e}"))?;
            buffered.flush()?;
            drop(buffered);
            w.finish().with_context(|| format!("COPY {table}"))?;
            Ok(n)
        };
        let orders = copy(
            "orders",
            "id, provider, minutes_per_month, start_date, end_date, valid_from, valid_to",
            Export::Orders,
        )?;
        let visits = copy(
            "visits",
            "provider, month, order_id, check_in, check_out, outcome, visit_outcome, planned_minutes, manual",
            Export::Visits,
        )?;
        let lines = copy(
            "invoice_lines",
            "provider, invoice_id, kind, month, order_id, minutes, amount",
            Export::InvoiceLines,
        )?;
        client.batch_execute("VACUUM ANALYZE").context("VACUUM ANALYZE")?;
        let bytes: i64 = client.query_one("SELECT pg_database_size(current_database())", &[])?.get(0);
        let server_version: String = client.query_one("SHOW server_version", &[])?.get(0);
        Ok(Peer { client, _db: db, loaded_in: started.elapsed(), rows: (orders, visits, lines), bytes, server_version })
    }

    /// Runs [`QUERY`] once: its figures and its time (sent to the last row back).
    pub fn verify(&mut self, month: carehub_model::Month, rate_ore: i64) -> anyhow::Result<(Figures, Duration)> {
        let started = Instant::now();
        let row = self
            .client
            .query_one(
                QUERY,
                &[&month.first_day().to_string(), &month.last_day().to_string(), &month.to_string(), &rate_ore],
            )
            .context("the peer's query")?;
        let took = started.elapsed();
        let mut figures = Figures {
            orders: row.get(0),
            approved_minutes: row.get(1),
            approved_amount: row.get(2),
            ..Figures::default()
        };
        for (i, code) in [(3, "INV001"), (4, "INV002"), (5, "INV003"), (6, "INV004"), (7, "INV006"), (8, "INV007")] {
            let n: i64 = row.get(i);
            if n != 0 {
                figures.findings.insert(code.to_owned(), n);
            }
        }
        Ok((figures, took))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_of_carehub_verify_reads_back_as_figures() {
        let text = "month 2026-10: 130 providers, 20000 orders, 129 invoices and 0 credit notes verified, 1000000 visits read\n\
                    findings: INV001 2700, INV003 1, INV006 2000\n\
                    approved: 123456 min, 802464.00 kr; payable with plan compensation: 802464.00 kr\n";
        let f = Figures::from_summary(text).expect("figures");
        assert_eq!(f.orders, 20_000);
        assert_eq!((f.approved_minutes, f.approved_amount), (123_456, 80_246_400));
        assert_eq!(f.findings.get("INV003"), Some(&1));
        assert_eq!(f.findings.len(), 3);
        assert!(Figures::from_summary("month 2026-10: x").is_err());
    }
}
