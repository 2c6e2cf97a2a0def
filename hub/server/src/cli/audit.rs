//! `carehub audit verify`: recompute a database's message-log hash chain.

use std::path::Path;
use std::process::ExitCode;

use carehub_model::Clock;

pub(super) async fn verify(db: &Path) -> anyhow::Result<ExitCode> {
    if !crate::assemble::database_exists(db) {
        eprintln!("{}: no such database file", db.display());
        return Ok(ExitCode::from(2));
    }
    let store = crate::assemble::open_store(db, Clock::system())?;
    let report = carehub_core::store::verify_chain(&*store).await?;
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
