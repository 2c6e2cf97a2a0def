//! `carehub check`: the configuration, its mappings and their samples, its TLS files, and
//! (unless `--offline`) every configured system reached.

use std::process::ExitCode;
use std::time::Duration;

use carehub_model::Clock;

use crate::config::Config;

/// `carehub check`: the configuration (or, when it has problems, reported already, what
/// could be read of it), then its mappings, TLS files and systems.
pub(super) async fn run(config: Result<Config, crate::config::Outline>, offline: bool) -> anyhow::Result<ExitCode> {
    let outline = match &config {
        Ok(config) => {
            crate::out!("configuration: ok ({} systems, {} providers)", config.systems.len(), config.providers.len());
            config.outline()
        }
        Err(outline) => outline.clone(),
    };
    // A configuration problem is exit 2; an unreachable system is exit 1.
    let mut misconfigured = config.is_err();
    let mappings = crate::assemble::check_mappings(&outline);
    if !mappings.problems.is_empty() {
        misconfigured = true;
        crate::out!("mappings: {} problem(s) in the mapping files:", mappings.problems.len());
        for problem in &mappings.problems {
            crate::out!("{problem}");
        }
    }
    for gap in &mappings.missing {
        misconfigured = true;
        crate::out!("mappings: MISSING: {gap}");
    }
    for (vendor, set) in &mappings.sets {
        let (n, failures) = set.run_samples();
        if failures.is_empty() {
            crate::out!("mappings {vendor}: {} files, {n} samples pass", set.mappings.len());
        } else {
            misconfigured = true;
            crate::out!("mappings {vendor}: {} of {n} samples fail", failures.len());
            for f in failures {
                crate::out!("  - {f}");
            }
        }
    }
    let config = match config {
        Ok(config) => config,
        Err(_) => {
            crate::out!("configuration: FAILED (fix the problems above; exit 2)");
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(section) = &config.hub.tls {
        match crate::tls::Tls::load(section, &config) {
            Ok(_) => crate::out!(
                "tls: ok{}",
                if section.client_ca.is_some() { ", client certificates accepted (mutual TLS)" } else { "" }
            ),
            Err(e) => {
                misconfigured = true;
                crate::out!("tls: FAILED: {e:#}");
            }
        }
    }
    if misconfigured {
        crate::out!("configuration: FAILED (fix the problems above; exit 2)");
        return Ok(ExitCode::from(2));
    }
    let registry = crate::assemble::registry(&config, &Clock::system())?;
    if offline {
        crate::out!("database: not contacted (--offline)");
        crate::out!("systems: not contacted (--offline)");
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = !database(&config).await;
    for sys in registry.iter() {
        match tokio::time::timeout(Duration::from_secs(10), sys.transport.check()).await {
            Ok(Ok(what)) => crate::out!("system {} ({}): {what}", sys.name, sys.vendor),
            Ok(Err(e)) => {
                failed = true;
                crate::out!("system {} ({}): FAILED: {e}", sys.name, sys.vendor);
            }
            Err(_) => {
                failed = true;
                crate::out!("system {} ({}): FAILED: no answer within 10 s", sys.name, sys.vendor);
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Reports the database: a PostgreSQL one reached (within 10 s) with its schema version, or
/// the SQLite file. Whether it was reached.
async fn database(config: &Config) -> bool {
    let Some(url) = config.hub.postgres_url() else {
        let file = &config.hub.database;
        let state = if file.is_file() { "exists" } else { "created at the first start" };
        crate::out!("database: ok (SQLite file {}, {state})", file.display());
        return true;
    };
    match tokio::time::timeout(Duration::from_secs(10), carehub_postgres::PgStore::reach(url)).await {
        Ok(Ok(what)) => {
            crate::out!("database: ok ({what})");
            true
        }
        Ok(Err(e)) => {
            crate::out!("database: FAILED: {e}");
            false
        }
        Err(_) => {
            crate::out!("database: FAILED: no answer within 10 s");
            false
        }
    }
}
