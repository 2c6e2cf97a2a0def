//! `carehub db copy --from sqlite:FILE --to postgres://...`: a hub's SQLite database, with
//! its hash chains, moved into an empty PostgreSQL database and verified there
//! ([`carehub_postgres::copy`] says what is copied, what is not, and how).
//!
//! Progress goes to stderr (every table as it finishes, and every [`PROGRESS_EVERY`] rows
//! of a long one); the
//! summary, rows per table on each side and both chains, to stdout. No value of any row is
//! printed: rows hold personal identity numbers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use carehub_core::store::sqlite::snapshot::Snapshot;
use carehub_postgres::copy::{copy_from_sqlite, CopyError, CopyReport, Progress, PROGRESS_EVERY};
use clap::Subcommand;

/// `carehub db ...`.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy a hub's SQLite database, every table that holds its state and both hash chains,
    /// into an empty PostgreSQL database, in one transaction, and verify it there: both
    /// chains walked as `carehub audit verify` walks them, and every table's rows counted
    /// on both sides. Nothing is committed unless all of it holds. Stop the hub first.
    ///
    /// Exit codes: 0 copied and verified; 1 the copy failed or did not verify (nothing
    /// committed); 2 nothing to copy from, nowhere to copy to, or a target that already
    /// holds data.
    Copy {
        /// The SQLite database: `sqlite:FILE` or a file path.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: `postgres://user@host:port/database`, created empty
        /// beforehand (the copy migrates it).
        #[arg(long)]
        to: String,
    },
}

/// The file a `--from` names: `sqlite:FILE`, `sqlite://FILE`, or the path itself.
fn sqlite_path(from: &str) -> PathBuf {
    let rest = from.strip_prefix("sqlite:").unwrap_or(from);
    PathBuf::from(rest.strip_prefix("//").unwrap_or(rest))
}

pub(super) async fn run(command: DbCommand) -> anyhow::Result<ExitCode> {
    match command {
        DbCommand::Copy { from, to } => copy(&from, to).await,
    }
}

async fn copy(from: &str, to: String) -> anyhow::Result<ExitCode> {
    let path = sqlite_path(from);
    if !path.is_file() {
        eprintln!("--from {from}: no such SQLite database file");
        return Ok(ExitCode::from(2));
    }
    if !carehub_postgres::is_postgres_url(&to) {
        eprintln!("--to: a PostgreSQL URL (postgres://user@host:port/database) is needed");
        return Ok(ExitCode::from(2));
    }
    let started = Instant::now();
    let copied = tokio::task::spawn_blocking(move || {
        let snapshot = Snapshot::open(&path).map_err(CopyError::from)?;
        copy_from_sqlite(&snapshot, &to, &mut show_progress)
    })
    .await?;
    let report = match copied {
        Ok(r) => r,
        Err(e @ CopyError::TargetNotEmpty { .. }) => {
            eprintln!("refused: {e}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            eprintln!("nothing was committed to the PostgreSQL database");
            return Ok(ExitCode::FAILURE);
        }
    };
    summary(&report, started.elapsed().as_secs_f64());
    Ok(if report.committed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A line per table when it is done, and on a long one (a [`PROGRESS_EVERY`] rows or more)
/// one when it starts and one every [`PROGRESS_EVERY`] rows.
fn show_progress(p: Progress<'_>) {
    if p.done {
        eprintln!("{}: {} rows copied", p.table, p.copied);
    } else if p.of >= PROGRESS_EVERY {
        eprintln!("{}: {} of {} rows", p.table, p.copied, p.of);
    }
}

fn summary(report: &CopyReport, seconds: f64) {
    crate::out!("{:<22} {:>10} {:>10}", "table", "sqlite", "postgres");
    for t in &report.tables {
        let mark = if t.sqlite == t.postgres { "" } else { "  MISMATCH" };
        crate::out!("{:<22} {:>10} {:>10}{mark}", t.table, t.sqlite, t.postgres);
    }
    for (table, why) in &report.skipped {
        crate::out!("{table:<22} not copied: {why}");
    }
    for (name, entry, chain) in
        [("message log", "entry", &report.chain), ("access log", "access-log entry", &report.access)]
    {
        match &chain.first_bad {
            None => crate::out!("ok: the {name}'s hash chain verifies on PostgreSQL ({} entries)", chain.entries),
            Some((seq, why)) => crate::out!("FAILED: {entry} {seq} does not match on PostgreSQL: {why}"),
        }
    }
    if report.committed {
        crate::out!("copied and verified in {seconds:.1} s; head {}", report.chain.head);
    } else {
        crate::out!("FAILED: the copy does not verify; nothing was committed");
    }
}
