//! `carehub migrate`: the configured database's schema brought up to this carehub's, and
//! nothing else, for operators who migrate before they start nodes (every node also
//! migrates at start; on PostgreSQL, nodes starting together apply each migration once).

use std::process::ExitCode;

use anyhow::Context;

use crate::config::Config;

pub(super) async fn run(config: Config) -> anyhow::Result<ExitCode> {
    match config.hub.postgres_url() {
        Some(url) => {
            carehub_postgres::PgStore::migrate(url).await.context("cannot migrate the PostgreSQL database")?;
            let reached = carehub_postgres::PgStore::reach(url).await?;
            crate::out!("database: migrated ({reached})");
        }
        None => {
            let file = &config.hub.database;
            carehub_core::store::sqlite::migrate_file(file)
                .with_context(|| format!("cannot migrate {}", file.display()))?;
            crate::out!("database: migrated (SQLite file {})", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
