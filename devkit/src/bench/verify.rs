//! `carehub bench verify`: verifying a whole month from the store, at Stockholm scale
//! (20,000 clients, 130 providers, 1,000,000 visits) or national scale (230,000 clients,
//! 300 providers, 11,000,000 visits): wall time and peak memory.
//!
//! Method:
//! 1. Seed (timed apart; not what is measured): a fresh SQLite file gets, through the
//!    store's bulk loader in large transactions like `carehub bench visits`, one decision and one active order per
//!    client (client `c` at provider `c % providers`), and the visits of last month with
//!    every index the hub keeps, in the order a month of visits arrives (day by day, all
//!    providers mixed, so a provider's visits are spread over the whole table, as in
//!    production). Visits last 27-33 minutes; 1% are rejected, 2% flagged; provider 0
//!    registers 15% of its visits by hand (INV003). Every tenth client is granted 2,400
//!    minutes instead of 1,500 (under-delivery, INV006). Then one invoice per provider for
//!    the month (except the last provider, which sends none), a line per order with the
//!    performed time in whole hours; every seventh order is billed two hours more than
//!    performed (INV001), every thirteenth 1.2 × granted (INV002), every eleventh line's
//!    amount is 5 kr off (INV007).
//! 2. Measured: `carehub verify --month M --db FILE --rate 390 --out FILE.json` in a child
//!    process, so its peak memory (the child's own `VmHWM`, which it prints) is the
//!    verification's alone, not the seed's. Wall time is the child's own figure (store
//!    opened to summary printed) and, beside it, the process's from spawn to exit.
//!
//! 3. With `--peer postgres` (the `peer` module): the same month loaded into a database of its own on
//!    the PostgreSQL server (timed apart), and verified there as one SQL query. Then
//!    `--rounds` rounds, each running `carehub verify` and the query once, which goes first
//!    alternating; the medians, their ratio, and both sides' figures (orders, approved
//!    minutes and amount, findings by code), which must be equal.
//!
//! Clients: Stockholm scale uses Skatteverket's test numbers (data/); national scale needs
//! more than the 41,493 there and uses clearly synthetic numbers instead: 12 digits, born
//! 1890-1899, serial and valid Luhn digit, so no living person can have one.

mod peer;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use carehub_core::store::sqlite::bulk::{BulkLoader, Durability, Stamp, VisitRow};
use carehub_model::{Deadlines, Decision, Order, OrgNumber};
use chrono::{Datelike, NaiveDate};
use serde_json::json;

/// The rate every provider is paid in the bench, kronor per hour.
const RATE: i64 = 390;

/// The two scales of the issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    /// 20,000 clients, 130 providers, 1,000,000 visits.
    Stockholm,
    /// 230,000 clients, 300 providers, 11,000,000 visits.
    National,
}

impl Scale {
    fn sizes(self) -> (usize, usize, usize) {
        match self {
            Scale::Stockholm => (20_000, 130, 1_000_000),
            Scale::National => (230_000, 300, 11_000_000),
        }
    }
}

/// The bench's options.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyBenchArgs {
    #[arg(long, value_enum, default_value = "stockholm")]
    pub scale: Scale,
    /// Where to put the database (default: a temporary folder under the system's).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the database (and the reports) afterwards, to run `carehub verify` on by hand.
    #[arg(long)]
    pub keep: bool,
    /// Verify the same month in another database too, as one SQL query, and compare.
    #[arg(long, value_enum)]
    pub peer: Option<PeerKind>,
    /// Measure on a folder kept by an earlier run (`--keep`; its `verify.db`) instead of
    /// seeding a new one: a national seed takes minutes. The scale must be the one it was
    /// seeded at.
    #[arg(long, conflicts_with_all = ["dir", "keep"])]
    pub reuse: Option<PathBuf>,
    /// Rounds of carehub and the peer, taking turns (with `--peer`).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// The databases `--peer` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerKind {
    /// PostgreSQL (`CAREHUB_TEST_POSTGRES`, else postgres://postgres@127.0.0.1:5432).
    Postgres,
}

/// One run of `carehub verify` in a child process.
struct CarehubRun {
    /// Its own wall time (store opened to summary), as it prints it.
    own: Duration,
    /// Spawn to exit.
    process: Duration,
    stdout: String,
}

async fn run_carehub(argv: &[&str]) -> anyhow::Result<CarehubRun> {
    let exe = std::env::current_exe().context("cannot find the carehub binary")?;
    let started = Instant::now();
    let output = tokio::process::Command::new(exe)
        .args(argv)
        .env("CAREHUB_LOG", "warn")
        .stderr(std::process::Stdio::inherit())
        .output()
        .await
        .context("cannot run carehub verify")?;
    let process = started.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(output.status.success(), "carehub verify failed: {}\n{stdout}", output.status);
    let own = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wall time: "))
        .and_then(|l| l.split(' ').next())
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(process, Duration::from_secs_f64);
    Ok(CarehubRun { own, process, stdout })
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs.get(xs.len() / 2).copied().unwrap_or_default()
}

/// `n` valid organisation numbers: 10 digits, a Luhn check digit.
fn providers(n: usize) -> Vec<String> {
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

/// The Luhn check digit of nine digits (personal identity numbers' last digit).
fn luhn_digit(digits: &[u8; 9]) -> u8 {
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let p = u32::from(*d) * if i % 2 == 0 { 2 } else { 1 };
            p / 10 + p % 10
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// `n` clearly synthetic personal identity numbers: born 1890-1899 (no one alive), serial
/// 001-999 per day, valid check digit.
pub(crate) fn synthetic_pnrs(n: usize) -> Vec<String> {
    let mut out = Vec::with_capacity(n);
    let mut day = NaiveDate::from_ymd_opt(1890, 1, 1).unwrap_or_default();
    'days: while out.len() < n {
        for serial in 1..1000u32 {
            if out.len() == n {
                break 'days;
            }
            let short = format!("{:02}{:02}{:02}{serial:03}", day.year() % 100, day.month(), day.day());
            let mut nine = [0u8; 9];
            for (slot, b) in nine.iter_mut().zip(short.bytes()) {
                *slot = b - b'0';
            }
            out.push(format!("{}{}{}", day.year() / 100, short, luhn_digit(&nine)));
        }
        day = day.succ_opt().unwrap_or(day);
    }
    out
}

struct Seeded {
    took: Duration,
    bytes: u64,
    invoices: usize,
    lines: usize,
}

/// The seed: decisions, orders, a month of visits and the invoices, through the bulk loader.
fn seed(db: &Path, scale: Scale, month: NaiveDate) -> anyhow::Result<Seeded> {
    let (clients, n_providers, visits) = scale.sizes();
    let started = Instant::now();
    let pnrs: Vec<String> = match scale {
        Scale::Stockholm => include_str!("../../../data/skatteverket-testpersonnummer.txt")
            .lines()
            .take(clients)
            .map(str::to_owned)
            .collect(),
        Scale::National => synthetic_pnrs(clients),
    };
    anyhow::ensure!(pnrs.len() == clients, "too few personal identity numbers");
    let orgs = providers(n_providers);
    let month_key = format!("{:04}-{:02}", month.year(), month.month());
    let valid_from = (month - chrono::Days::new(1)).with_day(1).context("a month")?;
    let granted = |c: usize| -> i64 {
        if c % 10 == 3 {
            2400
        } else {
            1500
        }
    };

    // A bulk load: no journal, no syncs, a large cache (the hub's own settings come back
    // when it opens the file).
    let mut loader = BulkLoader::create(db, Durability::Unjournaled)?;
    loader.load(|batch| -> anyhow::Result<()> {
        for (c, pnr) in pnrs.iter().enumerate() {
            let org = &orgs[c % n_providers];
            let decision: Decision = serde_json::from_value(json!({
                "id": format!("combine:BENCH-{c}"), "client": pnr, "case_officer": "hl-1",
                "provider": org, "valid_from": valid_from.to_string(),
                "services": [{"code": "PO", "category": "personal_care", "minutes_per_month": granted(c)}]
            }))?;
            let order = Order::from_decision(format!("O-B{c:07}"), &decision, valid_from, Deadlines::default());
            batch.decision("combine", &decision)?;
            batch.order(&order, "combine", "phoniro", "accepted")?;
        }
        Ok(())
    })?;

    // The month's visits, day by day: each day every client gets its share, in an order
    // that mixes providers. Staff member `i / 12` does 12 visits a day, 40 minutes apart.
    let mut performed_seconds = vec![0i64; clients];
    let per_day = visits.div_ceil(28);
    let mut i = 0usize;
    let batch_size = 500_000;
    while i < visits {
        loader.load(|batch| -> anyhow::Result<()> {
            for i in i..(i + batch_size).min(visits) {
                let c = (i * 7919) % clients;
                let p = c % n_providers;
                let day = month + chrono::Days::new((i / per_day) as u64);
                let minutes = 6 * 60 + (i % 12) as u32 * 40; // UTC, 06:00-13:20
                let at = day.and_hms_opt(minutes / 60, minutes % 60, 0).unwrap_or_default().and_utc();
                let seconds = 1800 + ((i * 37) % 7) as i64 * 60 - 180;
                let out = at + chrono::Duration::seconds(seconds);
                // Outcomes from a hash of the visit's number: a plain `i % 100` would line up
                // with the client (and so the provider) the visit goes to.
                let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let (outcome, codes) = match (h >> 32) % 100 {
                    0 => ("rejected", "VIS005"),
                    1 | 2 => ("flagged", "VIS003"),
                    _ => ("accepted", ""),
                };
                let manual = p == 0 && (h >> 48) % 100 < 15;
                if outcome != "rejected" {
                    performed_seconds[c] += seconds;
                }
                let (check_in, check_out) = (Stamp::new(at), Stamp::new(out));
                let staff = format!("bench-{}", i / 12);
                let id = format!("phoniro:B-{i}");
                let order = format!("O-B{c:07}");
                let method = if manual { "manual" } else { "nfc" };
                let canonical = format!(
                    "{{\"id\":\"{id}\",\"provider\":\"{}\",\"client\":\"{}\",\"order_id\":\"{order}\",\"staff\":\"{staff}\",\
                     \"check_in\":{{\"at\":\"{}\",\"method\":\"{method}\",\"tag_uid\":\"04{c:06X}\"}},\
                     \"check_out\":{{\"at\":\"{}\",\"method\":\"{method}\",\"tag_uid\":\"04{c:06X}\"}},\
                     \"planned_minutes\":30,\"activities\":[\"personal_care\"],\"outcome\":\"performed\"}}",
                    orgs[p],
                    pnrs[c],
                    check_in.as_str(),
                    check_out.as_str()
                );
                let findings = if codes.is_empty() {
                    "[]".to_owned()
                } else {
                    format!("[{{\"code\":\"{codes}\",\"detail\":\"bench\"}}]")
                };
                batch.visit(&VisitRow {
                    source_id: &id,
                    system: "phoniro",
                    provider: &orgs[p],
                    client: &pnrs[c],
                    order_id: &order,
                    staff: &staff,
                    check_in: &check_in,
                    check_out: &check_out,
                    month: &month_key,
                    seconds,
                    planned_minutes: 30,
                    visit_outcome: "performed",
                    manual,
                    outcome,
                    codes,
                    findings: &findings,
                    canonical: &canonical,
                    received_at: Some(&check_out),
                })?;
            }
            Ok(())
        })?;
        i = (i + batch_size).min(visits);
    }

    // One invoice per provider (the last sends none), a line per order.
    let (invoices, lines) = loader.load(|batch| -> anyhow::Result<(usize, usize)> {
        let (mut invoices, mut lines) = (0, 0);
        for (p, org) in orgs.iter().enumerate().take(n_providers.saturating_sub(1)) {
            let mut items = Vec::new();
            for c in (p..clients).step_by(n_providers) {
                let performed = (performed_seconds[c] + 30) / 60;
                // Orders are active the whole month: granted is the decision's minutes.
                let minutes = if c % 13 == 0 {
                    granted(c) * 6 / 5
                } else if c % 7 == 0 {
                    performed / 60 * 60 + 120
                } else {
                    performed / 60 * 60
                };
                let mut amount = minutes * RATE * 100 / 60;
                if c % 11 == 0 {
                    amount += 500;
                }
                items.push(json!({"id": format!("{}", items.len() + 1), "order_id": format!("O-B{c:07}"),
                    "minutes": minutes, "amount": amount, "comment": null}));
            }
            lines += items.len();
            invoices += 1;
            let canonical = json!({"lines": items, "billing_references": [], "not_verified": []}).to_string();
            batch.invoice(org, "invoice", &format!("HC-{month_key}-{p}"), &month_key, &canonical)?;
        }
        Ok((invoices, lines))
    })?;
    loader.finish()?;
    let bytes = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0);
    Ok(Seeded { took: started.elapsed(), bytes, invoices, lines })
}

pub async fn run(args: VerifyBenchArgs) -> anyhow::Result<ExitCode> {
    // A fresh folder (deleted at the end unless kept), or the one kept before.
    let (temp, folder) = match &args.reuse {
        Some(kept) => (None, kept.clone()),
        None => {
            let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
            let temp = tempfile::tempdir_in(&parent).context("cannot create a folder for the database")?;
            let folder = temp.path().to_owned();
            (Some(temp), folder)
        }
    };
    let (clients, n_providers, visits) = args.scale.sizes();
    let this_month = super::harness::bench_clock().today().with_day(1).context("a month")?;
    let month = (this_month - chrono::Days::new(1)).with_day(1).context("a month")?;
    let month_key = format!("{:04}-{:02}", month.year(), month.month());
    out!(
        "carehub bench verify: {} cores; {clients} clients, {n_providers} providers, {visits} visits in {month_key}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    );
    let db = folder.join("verify.db");
    if args.reuse.is_some() {
        anyhow::ensure!(db.is_file(), "{}: no verify.db there (a folder kept with --keep)", folder.display());
        out!("reusing {} ({:.0} MB), seeded before", db.display(), std::fs::metadata(&db)?.len() as f64 / 1e6);
    } else {
        let db2 = db.clone();
        let scale = args.scale;
        let seeded = tokio::task::spawn_blocking(move || seed(&db2, scale, month)).await??;
        out!(
            "seeded in {:.1} s ({:.0} MB; {} invoices, {} lines)",
            seeded.took.as_secs_f64(),
            seeded.bytes as f64 / 1e6,
            seeded.invoices,
            seeded.lines
        );
    }

    let reports = folder.join("reports.json");
    let (db_arg, out_arg) = (db.display().to_string(), reports.display().to_string());
    let rate = RATE.to_string();
    let argv = ["verify", "--month", &month_key, "--db", &db_arg, "--rate", &rate, "--out", &out_arg];
    out!("measured: carehub {}", argv.join(" "));
    let outcome = match args.peer {
        None => measure_alone(&argv, &reports).await,
        Some(PeerKind::Postgres) => measure_beside_postgres(&argv, &db, &month_key, args.rounds).await,
    };
    if let (true, Some(temp)) = (args.keep, temp) {
        let kept = temp.keep();
        out!("kept: {}", kept.display());
    }
    let text = outcome?;
    for code in ["INV001", "INV002", "INV003", "INV006", "INV007"] {
        anyhow::ensure!(text.contains(code), "no {code} in the summary: the bench's data is wrong");
    }
    Ok(ExitCode::SUCCESS)
}

/// One run of `carehub verify`; its summary comes back.
async fn measure_alone(argv: &[&str], reports: &Path) -> anyhow::Result<String> {
    let run = run_carehub(argv).await?;
    for line in run.stdout.lines() {
        out!("  {line}");
    }
    let json_bytes = std::fs::metadata(reports).map(|m| m.len()).unwrap_or(0);
    out!(
        "process wall time (spawn to exit): {:.2} s; reports {:.0} MB",
        run.process.as_secs_f64(),
        json_bytes as f64 / 1e6
    );
    Ok(run.stdout)
}

/// Loads the month into PostgreSQL, then `rounds` rounds of carehub and the query taking
/// turns; the medians, the ratio, and both sides' figures, which must be equal.
async fn measure_beside_postgres(argv: &[&str], db: &Path, month_key: &str, rounds: usize) -> anyhow::Result<String> {
    let month = carehub_server::cli::verify::parse_month(month_key).context("a month")?;
    let (sqlite, key) = (db.to_owned(), month_key.to_owned());
    let mut peer = tokio::task::spawn_blocking(move || peer::Peer::load(&sqlite, &key)).await??;
    out!(
        "PostgreSQL {}: loaded {} orders, {} visits, {} invoice lines by COPY in {:.1} s ({:.0} MB)",
        peer.server_version,
        peer.rows.0,
        peer.rows.1,
        peer.rows.2,
        peer.loaded_in.as_secs_f64(),
        peer.bytes as f64 / 1e6
    );
    out!("peer: one SQL query (devkit/src/bench/verify/peer.rs, QUERY)");
    let rate_ore = RATE * 100;
    let (mut ours, mut theirs, mut processes) = (Vec::new(), Vec::new(), Vec::new());
    let (mut our_figures, mut their_figures, mut summary) = (None, None, String::new());
    for round in 0..rounds.max(1) {
        let mut parts = Vec::new();
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                let run = run_carehub(argv).await?;
                parts.push(format!(
                    "carehub {:.2} s (process {:.2} s)",
                    run.own.as_secs_f64(),
                    run.process.as_secs_f64()
                ));
                ours.push(run.own);
                processes.push(run.process);
                our_figures = Some(peer::Figures::from_summary(&run.stdout)?);
                summary = run.stdout;
            } else {
                // A blocking client: off the runtime's other tasks (there are none to starve).
                let (figures, took) = tokio::task::block_in_place(|| peer.verify(month, rate_ore))?;
                parts.push(format!("postgres {:.2} s", took.as_secs_f64()));
                theirs.push(took);
                their_figures = Some(figures);
            }
        }
        let line = format!("round {}: {}", round + 1, parts.join(", "));
        out!("{line}");
    }
    tokio::task::block_in_place(|| drop(peer));
    for l in summary.lines() {
        out!("  {l}");
    }
    let (ours_m, theirs_m) = (median(ours), median(theirs));
    out!(
        "median of {rounds} rounds: carehub {:.2} s (process {:.2} s), PostgreSQL {:.2} s; PostgreSQL / carehub = {:.2}",
        ours_m.as_secs_f64(),
        median(processes).as_secs_f64(),
        theirs_m.as_secs_f64(),
        theirs_m.as_secs_f64() / ours_m.as_secs_f64().max(1e-9)
    );
    let (ours_f, theirs_f) = (our_figures.unwrap_or_default(), their_figures.unwrap_or_default());
    out!("carehub:    {ours_f}");
    out!("PostgreSQL: {theirs_f}");
    anyhow::ensure!(ours_f == theirs_f, "the two sides' figures differ");
    out!("the figures are equal");
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_numbers_are_valid_distinct_and_from_the_1890s() {
        let pnrs = synthetic_pnrs(5000);
        let distinct: std::collections::BTreeSet<_> = pnrs.iter().collect();
        assert_eq!(distinct.len(), 5000);
        for p in &pnrs {
            let parsed = carehub_model::PersonalIdentityNumber::parse(p).expect("valid");
            assert!((1890..1900).contains(&parsed.birth_date().year()));
        }
    }
}
