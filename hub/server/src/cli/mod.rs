//! The product's commands (SPEC §8): `carehub serve | check | migrate | token | audit verify
//! | replay | tags import | verify | report | db copy`.
//!
//! This module holds the clap definitions ([`Command`]), the dispatch ([`run`]) and what
//! every command shares (loading the configuration, operational logging); each command's
//! work is in its own file. There is no `Parser` here: the `carehub` executable (`hub/bin`)
//! flattens [`Command`] into its own command line beside `demo` and `bench`, which are
//! tooling (`carehub-devkit`) and not the product's.
//!
//! # Layout
//! - `serve`: `carehub serve`.
//! - `check`: `carehub check`.
//! - `migrate`: `carehub migrate`.
//! - `token`: `carehub token`.
//! - `audit`: `carehub audit verify | keygen | prove | export | verify-bundle | retention`.
//! - `replay`: `carehub replay`.
//! - `tags`: `carehub tags import`.
//! - [`verify`]: `carehub verify`.
//! - [`report`]: `carehub report`.
//! - [`db`]: `carehub db copy`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::auth::Role;
use crate::config::{Config, LogFormat};
pub use crate::telemetry::init_tracing;

mod audit;
mod check;
pub mod db;
mod migrate;
mod replay;
pub mod report;
mod serve;
mod tags;
mod token;
pub mod verify;

/// The product's commands, for the executable to flatten into its command line.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub.
    Serve {
        #[arg(long, default_value = "carehub.toml")]
        config: PathBuf,
    },
    /// Validate the configuration (every problem at once, each as FILE:LINE:COLUMN where it
    /// has a place), check every configured route has the mappings it needs, run the mapping
    /// samples, then reach the database and every configured system.
    ///
    /// Exit codes: 0 all is well; 2 a configuration problem (the file, a secret, a TLS file,
    /// a missing or failing mapping); 1 the configuration is good but the database or a
    /// system cannot be reached.
    Check {
        #[arg(long, default_value = "carehub.toml")]
        config: PathBuf,
        /// Validate only (configuration, mappings and their samples, TLS files): do not
        /// reach the systems.
        #[arg(long)]
        offline: bool,
    },
    /// Issue a bearer token signed with the configured key. A system's token
    /// (case_management, provider_system) names its configured system with --system and
    /// may send only as that system. Exit codes: 0 issued, 2 a configuration or argument
    /// error.
    Token {
        #[arg(long, value_enum)]
        role: Role,
        /// The configured system the token speaks for (case_management and provider_system
        /// tokens; required for them).
        #[arg(long)]
        system: Option<String>,
        /// The provider's organisation number (provider_system tokens only).
        #[arg(long)]
        org: Option<String>,
        /// Who the token is for (shown in the log of reads).
        #[arg(long, default_value = "carehub-cli")]
        subject: String,
        /// Lifetime in minutes (default: the configuration's, else 480).
        #[arg(long)]
        ttl_minutes: Option<u64>,
        #[arg(long, default_value = "carehub.toml")]
        config: PathBuf,
    },
    /// Bring the configured database's schema up to this carehub's and exit (the hub also
    /// does at start). Exit codes: 0 migrated, 2 a configuration problem, 1 it failed.
    Migrate {
        #[arg(long, default_value = "carehub.toml")]
        config: PathBuf,
    },
    /// Auditing the message log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Resend dead letters (all, or those named) and report how each ended.
    Replay {
        #[arg(long, default_value = "carehub.toml")]
        config: PathBuf,
        /// A delivery id to replay; repeat for several. All dead letters when absent.
        #[arg(long = "id")]
        ids: Vec<i64>,
        /// Only list the dead letters.
        #[arg(long)]
        list: bool,
    },
    /// The NFC tag registry.
    Tags {
        #[command(subcommand)]
        command: TagsCommand,
    },
    /// Verify every invoice of a month from the store (a dry run: nothing is written) and
    /// print a summary; `--out` writes the reports as JSON.
    Verify(verify::VerifyArgs),
    /// Write the monthly follow-up (SPEC §4.4) as an HTML page for the committee, and as CSV.
    Report(report::ReportArgs),
    /// Moving a hub's database: `db copy` from SQLite to PostgreSQL.
    Db {
        #[command(subcommand)]
        command: db::DbCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TagsCommand {
    /// Load tag registrations from a CSV file: columns tag_uid, client, installed_on and
    /// optionally removed_on (or taggid, personnummer, monterad, nedtagen), `;` or `,`,
    /// UTF-8 or Windows-1252. Bad rows are reported with their line and skipped.
    Import {
        file: PathBuf,
        #[arg(long, default_value = "carehub.toml")]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the message log's and the access log's hash chains and name the first
    /// entry of each that does not match. Exit codes: 0 both verify, 1 one does not, 2 no
    /// such database.
    Verify {
        #[arg(long)]
        db: PathBuf,
    },
    /// Write a new Ed25519 signing key for checkpoints (base64, readable by its owner only)
    /// and print its public key. An existing file is not overwritten (exit code 2).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a proof against the latest signed checkpoint (made now if the log grew since),
    /// as JSON: --entry N, the entry's inclusion proof; --from SIZE, the consistency proof
    /// from the checkpoint of that size.
    Prove {
        #[arg(long, conflicts_with = "from")]
        entry: Option<i64>,
        #[arg(long)]
        from: Option<i64>,
        #[arg(long, default_value = "carehub.toml")]
        config: PathBuf,
    },
    /// Write the bundle of the entries appended from --from up to --to (days, YYYY-MM-DD,
    /// from the day's start in UTC; or RFC 3339 instants): payloads, inclusion proofs, the
    /// signed checkpoint and the public key (docs/audit-log.md). The export is recorded in
    /// the access log.
    Export {
        #[arg(long, value_parser = audit::parse_when)]
        from: chrono::DateTime<chrono::Utc>,
        #[arg(long, value_parser = audit::parse_when)]
        to: chrono::DateTime<chrono::Utc>,
        #[arg(long)]
        out: PathBuf,
        /// Who exports (recorded in the access log).
        #[arg(long, env = "USER", default_value = "carehub-cli")]
        subject: String,
        #[arg(long, default_value = "carehub.toml")]
        config: PathBuf,
    },
    /// Remove the payloads of entries older than the retention policy (`[audit] retention`,
    /// default 10y; --older-than overrides, --before names an instant): each entry keeps its
    /// hash and its payload's hash, so the chain, the tree and every proof still verify. The
    /// run is logged as a `retention` entry. Entries written before payload hashes were kept
    /// keep their payloads (reported).
    Retention {
        #[arg(long, conflicts_with = "before")]
        older_than: Option<String>,
        #[arg(long, value_parser = audit::parse_when)]
        before: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, default_value = "carehub.toml")]
        config: PathBuf,
    },
    /// Verify a bundle with no database and no network: every entry's chain hash, the
    /// chain between them, every inclusion proof, the checkpoint's signature, and earlier
    /// checkpoints (the bundle's and --known files) against it. Exit codes: 0 verifies, 1
    /// does not, 2 no such file.
    VerifyBundle {
        file: PathBuf,
        /// A signed checkpoint kept from before; repeat for several.
        #[arg(long)]
        known: Vec<PathBuf>,
    },
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{}", e.report(path));
        eprintln!("{} problem(s) in the configuration", e.0.len());
        ExitCode::from(2)
    })
}

async fn run_audit(command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { db } => audit::verify(&db).await,
        AuditCommand::Keygen { out } => audit::keygen(&out),
        // Reading and hashing a bundle is blocking work: off the runtime's threads.
        AuditCommand::VerifyBundle { file, known } => {
            tokio::task::spawn_blocking(move || audit::verify_bundle(&file, &known)).await?
        }
        AuditCommand::Prove { entry, from, config } => {
            init_tracing("warn", LogFormat::Text);
            match load_config(&config) {
                Ok(c) => audit::prove(c, entry, from).await,
                Err(code) => Ok(code),
            }
        }
        AuditCommand::Retention { older_than, before, config } => {
            init_tracing("warn", LogFormat::Text);
            match load_config(&config) {
                Ok(c) => audit::retention(c, older_than, before).await,
                Err(code) => Ok(code),
            }
        }
        AuditCommand::Export { from, to, out, subject, config } => {
            init_tracing("warn", LogFormat::Text);
            match load_config(&config) {
                Ok(c) => audit::export(c, from, to, &out, subject).await,
                Err(code) => Ok(code),
            }
        }
    }
}

/// Runs a command; the exit code says how it went (0 ok, 1 failed, 2 bad configuration).
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            init_tracing("info", config.hub.log_format);
            serve::run(config).await
        }
        Command::Check { config, offline } => {
            init_tracing("warn", LogFormat::Text);
            // A configuration with problems is still checked as far as it can be read: the
            // mapping files of its vendors and the mappings its routes need, in the same run.
            let config = Config::load_outlined(&config).map_err(|(e, outline)| {
                eprintln!("{}", e.report(&config));
                eprintln!("{} problem(s) in the configuration", e.0.len());
                outline
            });
            check::run(config, offline).await
        }
        Command::Token { role, system, org, subject, ttl_minutes, config } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            token::run(config, role, system, org, subject, ttl_minutes)
        }
        Command::Audit { command } => run_audit(command).await,
        Command::Migrate { config } => {
            init_tracing("warn", LogFormat::Text);
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            migrate::run(config).await
        }
        Command::Replay { config, ids, list } => {
            init_tracing("warn", LogFormat::Text);
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            replay::run(config, ids, list).await
        }
        Command::Tags { command: TagsCommand::Import { file, config } } => {
            init_tracing("warn", LogFormat::Text);
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            tags::import(config, &file).await
        }
        Command::Verify(args) => {
            init_tracing("warn", LogFormat::Text);
            verify::run(args).await
        }
        Command::Report(args) => report::run(args).await,
        Command::Db { command } => {
            init_tracing("warn", LogFormat::Text);
            db::run(command).await
        }
    }
}

/// Records a read made from the command line in the access log, before its result is
/// written: a report or a verification read by a person is recorded like one read through
/// the API (SPEC §9), with the operating-system user as the subject (`--subject` names
/// another).
pub(crate) async fn record_cli_read(
    store: &dyn carehub_core::store::Store,
    subject: &str,
    query: carehub_core::store::AccessQuery,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let access = carehub_core::store::NewAccess {
        subject: subject.to_owned(),
        role: "admin".into(),
        query,
        clients: Vec::new(),
        entries: Vec::new(),
    };
    store
        .commit(vec![carehub_core::store::Op::RecordAccess(access)])
        .await
        .context("cannot record the read in the access log, so nothing was written")?;
    Ok(())
}
