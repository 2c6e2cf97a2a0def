//! `carehub audit verify`: recompute a database's message-log hash chain.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use carehub_core::store::sqlite::SqliteStore;
use carehub_model::Clock;

pub(super) async fn verify(db: &Path) -> anyhow::Result<ExitCode> {
    if !db.is_file() {
        eprintln!("{}: no such database file", db.display());
        return Ok(ExitCode::from(2));
    }
    let store = SqliteStore::open(db, Clock::system()).with_context(|| format!("cannot open {}", db.display()))?;
    let report = carehub_core::store::verify_chain(&store).await?;
    match report.first_bad {
        None => {
            crate::out!("ok: the message log's hash chain verifies ({} entries)", report.entries);
            crate::out!("head: {}", report.head);
            Ok(ExitCode::SUCCESS)
        }
        Some((seq, why)) => {
            crate::out!("FAILED: entry {seq} does not match: {why}");
            crate::out!("({} entries checked up to and including it)", report.entries);
            Ok(ExitCode::FAILURE)
        }
    }
}
