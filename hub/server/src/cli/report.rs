//! `carehub report`: the monthly follow-up (SPEC §4.4) written as a self-contained HTML page
//! for a social-services committee, and optionally as CSV, from a hub's database.
//!
//! `carehub report --month 2026-11 --out report.html [--csv report.csv] (--db FILE | --config FILE)`
//!
//! With `--config`, the database is the configuration's `[hub] database`, providers carry
//! their configured names and the manual-share threshold is the configured one; with
//! `--db`, providers are named by organisation number and the threshold is 10%. The
//! database is only read.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use carehub_core::followup;
use carehub_model::OrgNumber;
use clap::{ArgGroup, Args};

use crate::config::Config;

/// The manual-share threshold without a configuration (SPEC §7, INV003).
const DEFAULT_THRESHOLD: f64 = 0.10;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["db", "config"])))]
pub struct ReportArgs {
    /// The month, `YYYY-MM` (Stockholm time).
    #[arg(long)]
    pub month: String,
    /// Where to write the HTML page.
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the report as CSV (`;`-separated, one section per table).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// The hub's SQLite database.
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// Who reads the report (recorded in the access log).
    #[arg(long, env = "USER", default_value = "carehub-cli")]
    pub subject: String,
    /// The hub's configuration: its `[hub] database`, provider names and threshold.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The day the report is made on (`YYYY-MM-DD`): deadlines not met by then count as
    /// missed, and days late are counted to it. Default: today in Stockholm.
    #[arg(long)]
    pub as_of: Option<chrono::NaiveDate>,
}

/// Runs `carehub report`: 0 written, 2 bad arguments or configuration.
pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    super::init_tracing("warn", crate::config::LogFormat::Text);
    let Some(month) = followup::parse_month(&args.month) else {
        eprintln!("--month {}: not a month (YYYY-MM)", args.month);
        return Ok(ExitCode::from(2));
    };
    let mut names: Vec<(String, String)> = Vec::new();
    let (db, threshold) = match (&args.db, &args.config) {
        (Some(db), _) => (db.clone(), DEFAULT_THRESHOLD),
        (None, Some(path)) => {
            let config = match Config::load(path) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return Ok(ExitCode::from(2));
                }
            };
            for p in &config.providers {
                let org = OrgNumber::parse(&p.org).map(|o| o.as_str().to_owned()).unwrap_or_else(|_| p.org.clone());
                names.push((org, p.name.clone()));
            }
            (config.hub.database.clone(), config.visits.manual_share_threshold)
        }
        (None, None) => {
            eprintln!("name the database: --db FILE or --config FILE");
            return Ok(ExitCode::from(2));
        }
    };
    if !crate::assemble::database_exists(&db) {
        eprintln!("{}: no such database file", db.display());
        return Ok(ExitCode::from(2));
    }
    let clock = carehub_model::Clock::system();
    let as_of = args.as_of.unwrap_or_else(|| clock.today());
    let store = crate::assemble::open_store(&db, clock)?;
    let mut report = followup::compute(&*store, month, as_of, threshold, None)
        .await
        .with_context(|| format!("cannot read the follow-up for {month} from {}", db.display()))?;
    report.name_providers(|org| names.iter().find(|(o, _)| o == org).map(|(_, n)| n.clone()));
    let query = carehub_core::store::AccessQuery::new("carehub report")
        .with("month", Some(month))
        .with("as_of", Some(as_of))
        .with("format", Some(if args.csv.is_some() { "html,csv" } else { "html" }));
    super::record_cli_read(&*store, &args.subject, query).await?;

    let html = followup::html::render(&report);
    write(&args.out, html).await?;
    if let Some(csv) = &args.csv {
        write(csv, followup::table::render(&report)).await?;
    }
    crate::out!("{}", summary_line(&report, &args));
    Ok(ExitCode::SUCCESS)
}

/// Writes a file off the async runtime.
async fn write(path: &std::path::Path, text: String) -> anyhow::Result<()> {
    let owned = path.to_owned();
    tokio::task::spawn_blocking(move || std::fs::write(&owned, text))
        .await
        .context("the writer task failed")?
        .with_context(|| format!("cannot write {}", path.display()))
}

/// One line: the month's figures and what was written.
fn summary_line(r: &followup::FollowUp, args: &ReportArgs) -> String {
    let s = &r.summary;
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    format!(
        "follow-up {}: {} clients ({} under 80%, {} within 80-120%, {} over 120%), performed {} of {} granted minutes ({}), \
         manual share {} ({} of {} providers over {}), plans on time {} of {}, {} orders not confirmed in time, \
         {} deviations and {} changes of need; wrote {}{}",
        r.month,
        s.clients,
        s.bands.under,
        s.bands.within,
        s.bands.over,
        s.performed_minutes,
        s.granted_minutes,
        s.ratio.map(pct).unwrap_or_else(|| "-".into()),
        pct(s.manual_share),
        s.providers_over_threshold,
        r.providers.len(),
        pct(r.manual_share_threshold),
        s.plans.on_time,
        s.plans.due,
        s.confirmations.not_in_time(),
        s.deviations,
        s.need_changes,
        args.out.display(),
        args.csv.as_ref().map(|c| format!(" and {}", c.display())).unwrap_or_default(),
    )
}
