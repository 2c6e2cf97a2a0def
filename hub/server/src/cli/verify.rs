//! `carehub verify --month YYYY-MM`: every invoice and credit note of a month verified from
//! the store (SPEC §7, [`carehub_core::flows::month`]), with a summary.
//!
//! The database is the one named by `--db`, else the configuration's (`--config`). The
//! policy (tolerance, thresholds, contracted rates) is the configuration's when one is
//! given, else SPEC §7's defaults; `--rate KR` is the contracted rate (kronor per hour, flat)
//! of every provider the configuration gives none, which with only `--db` means every
//! provider. A provider with an invoice and no rate at all is reported as an error.
//!
//! A dry run: nothing is written to the store and no line is marked verified (so a later
//! real verification is not INV005 because of it). The reports go to `--out FILE.json`:
//! `{"month", "providers": [{provider, visits_read, reports, orders, findings, errors}],
//! "summary"}`, written provider by provider as they finish. On a terminal, stderr shows a
//! progress line. The summary names no client: personal identity numbers are never printed.

use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use carehub_core::flows::month::verify_month;
use carehub_core::rules::invoices::Rates;
use carehub_core::rules::month::{MonthTotals, Progress, ProviderResult};
use carehub_core::store::Store;
use carehub_model::Month;

use crate::config::Config;

/// `carehub verify`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// The month to verify, `YYYY-MM`.
    #[arg(long)]
    pub month: String,
    /// The database file (default: the configuration's).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The configuration: the database (unless `--db`) and the verification policy.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Contracted rate, kronor per hour with öre (`390`, `412.50`), for every provider the
    /// configuration gives none.
    #[arg(long)]
    pub rate: Option<crate::config::Rate>,
    /// Write every report, as JSON, to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Who reads the verification (recorded in the access log).
    #[arg(long, env = "USER", default_value = "carehub-cli")]
    pub subject: String,
}

/// `YYYY-MM`.
pub fn parse_month(s: &str) -> Option<Month> {
    let (y, m) = s.trim().split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    Month::new(y.parse().ok()?, m.parse().ok()?)
}

/// The process's peak resident memory so far (`VmHWM`), in bytes; Linux only.
pub fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Öre as kronor with two decimals.
fn kronor(ore: i64) -> String {
    let sign = if ore < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", ore.unsigned_abs() / 100, ore.unsigned_abs() % 100)
}

/// Writes the JSON document provider by provider.
struct JsonOut {
    file: BufWriter<std::fs::File>,
    first: bool,
}

impl JsonOut {
    fn create(path: &PathBuf, month: Month) -> anyhow::Result<JsonOut> {
        let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut file = BufWriter::new(file);
        write!(file, "{{\"month\":\"{month}\",\"providers\":[")?;
        Ok(JsonOut { file, first: true })
    }

    fn provider(&mut self, r: &ProviderResult) -> std::io::Result<()> {
        if !self.first {
            self.file.write_all(b",")?;
        }
        self.first = false;
        serde_json::to_writer(&mut self.file, r)?;
        Ok(())
    }

    fn finish(mut self, totals: &MonthTotals) -> std::io::Result<()> {
        self.file.write_all(b"],\"summary\":")?;
        serde_json::to_writer(&mut self.file, totals)?;
        self.file.write_all(b"}\n")?;
        self.file.flush()
    }
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let Some(month) = parse_month(&args.month) else {
        eprintln!("--month {}: expected YYYY-MM", args.month);
        return Ok(ExitCode::from(2));
    };
    let config = match &args.config {
        Some(path) => match Config::load(path) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("{}: {e}", path.display());
                return Ok(ExitCode::from(2));
            }
        },
        None => None,
    };
    let Some(db) = args.db.clone().or_else(|| config.as_ref().map(|c| c.hub.database.clone())) else {
        eprintln!("name the database: --db FILE or --config FILE");
        return Ok(ExitCode::from(2));
    };
    if !crate::assemble::database_exists(&db) {
        eprintln!("{}: no such database file", db.display());
        return Ok(ExitCode::from(2));
    }
    let policy = config.as_ref().map(Config::invoice_policy).unwrap_or_default();
    let fallback = args.rate.map(|r| Rates::flat(r.ore));
    let store: Arc<dyn Store> = crate::assemble::open_store(&db, carehub_model::Clock::system())?;
    let query = carehub_core::store::AccessQuery::new("carehub verify").with("month", Some(month));
    super::record_cli_read(&*store, &args.subject, query).await?;
    let mut out = match &args.out {
        Some(path) => Some(JsonOut::create(path, month)?),
        None => None,
    };

    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let bar = |p: Progress| {
        if tty {
            eprint!(
                "\rverifying {month}: {}/{} providers, {} visits read, {:.1} s   ",
                p.providers_done,
                p.providers_total,
                p.visits_read,
                started.elapsed().as_secs_f64()
            );
        }
    };
    bar(Progress::default());
    let totals = verify_month(store, month, Arc::new(policy), fallback, |r, p| {
        if let Some(out) = out.as_mut() {
            out.provider(r)?;
        }
        for e in &r.errors {
            if tty {
                eprintln!();
            }
            eprintln!("provider {}: {e}", r.provider);
        }
        bar(p);
        Ok(())
    })
    .await?;
    if tty {
        eprintln!();
    }
    if let Some(out) = out {
        out.finish(&totals).context("cannot write the reports")?;
    }
    let took = started.elapsed();
    print_summary(month, &totals, took.as_secs_f64());
    Ok(if totals.errors == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_summary(month: Month, t: &MonthTotals, seconds: f64) {
    crate::out!(
        "month {month}: {} providers, {} orders, {} invoices and {} credit notes verified, {} visits read",
        t.providers,
        t.orders,
        t.invoices,
        t.credit_notes,
        t.visits_read
    );
    let findings: Vec<String> = t.findings.iter().map(|(code, n)| format!("{code} {n}")).collect();
    crate::out!("findings: {}", if findings.is_empty() { "none".to_owned() } else { findings.join(", ") });
    crate::out!(
        "approved: {} min, {} kr; payable with plan compensation: {} kr",
        t.approved_minutes,
        kronor(t.approved_amount),
        kronor(t.payable_amount)
    );
    crate::out!("errors: {}", t.errors);
    match peak_memory() {
        Some(bytes) => crate::out!("wall time: {seconds:.2} s; peak memory: {:.0} MiB", bytes as f64 / 1048576.0),
        None => crate::out!("wall time: {seconds:.2} s; peak memory: unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_kronor() {
        assert_eq!(parse_month("2026-11").map(|m| m.to_string()).as_deref(), Some("2026-11"));
        assert_eq!(parse_month("2026-13"), None);
        assert_eq!(parse_month("2026-1"), None);
        assert_eq!(kronor(195_000), "1950.00");
        assert_eq!(kronor(-5), "-0.05");
    }
}
