//! The command line (SPEC §8): `carehub demo | serve | check | token | audit verify | replay | bench`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use carehub_core::store::sqlite::SqliteStore;
use carehub_core::store::{DeliveryFilter, Store};
use carehub_model::Clock;
use clap::{Parser, Subcommand};

use crate::auth::{Auth, Role};
use crate::config::{Config, LogFormat};

#[derive(Debug, Parser)]
#[command(name = "carehub", version, about = "The integration hub for Swedish municipal home care")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the demo municipality end to end on an embedded database; no setup needed.
    Demo {
        /// Keep the database here instead of in a temporary folder.
        #[arg(long)]
        db: Option<PathBuf>,
        /// Keep the hub (and the mock vendors) running afterwards, for a look.
        #[arg(long)]
        serve: bool,
        /// Run as if it were this instant (RFC 3339, e.g. 2027-03-28T01:30:00+01:00): the
        /// hub's clock and the demo's dates start there. Default: now.
        #[arg(long, value_parser = parse_instant)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Run the hub.
    Serve {
        #[arg(long, default_value = "carehub.toml")]
        config: PathBuf,
    },
    /// Validate the configuration (every problem at once, each as FILE:LINE:COLUMN where it
    /// has a place), check every configured route has the mappings it needs, run the mapping
    /// samples, then reach every configured system.
    ///
    /// Exit codes: 0 all is well; 2 a configuration problem (the file, a secret, a TLS file,
    /// a missing or failing mapping); 1 the configuration is good but a system cannot be
    /// reached.
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
    Verify(crate::verify_cmd::VerifyArgs),
    /// Write the monthly follow-up (SPEC §4.4) as an HTML page for the committee, and as CSV.
    Report(crate::report_cmd::ReportArgs),
    /// Measure throughput and latency (see BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: crate::bench::BenchCommand,
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
    /// Recompute the message log's hash chain and name the first entry that does not match.
    Verify {
        #[arg(long)]
        db: PathBuf,
    },
}

/// Sets up operational logging on stderr: `CAREHUB_LOG` filters (else `default`), and
/// `CAREHUB_LOG_FORMAT` (`text` or `json`) chooses the format (else `format`).
pub fn init_tracing(default: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAREHUB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let format = match std::env::var("CAREHUB_LOG_FORMAT") {
        Ok(v) => v.parse().unwrap_or_else(|e| {
            eprintln!("CAREHUB_LOG_FORMAT: {e}; using {format:?}");
            format
        }),
        Err(_) => format,
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        // One JSON object a line: the event's fields flattened beside its level, target and
        // timestamp, and the spans it happened in.
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{}", e.report(path));
        eprintln!("{} problem(s) in the configuration", e.0.len());
        ExitCode::from(2)
    })
}

/// Runs a command; the exit code says how it went (0 ok, 1 failed, 2 bad configuration).
/// An instant on the command line: RFC 3339 with its offset.
fn parse_instant(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{e}: expected an RFC 3339 instant such as 2027-03-28T01:30:00+01:00"))
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo { db, serve, at } => {
            // The demo's output is its narrative; `CAREHUB_LOG=info` shows the hub's log too.
            init_tracing("error", LogFormat::Text);
            crate::demo::run(crate::demo::DemoOptions { db, serve, at }).await
        }
        Command::Serve { config } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            init_tracing("info", config.hub.log_format);
            serve(config).await
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
            check(config, offline).await
        }
        Command::Token { role, system, org, subject, ttl_minutes, config } => {
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            if let Err(why) = token_system_fits(&config, role, system.as_deref(), org.as_deref()) {
                eprintln!("carehub token: {why}");
                return Ok(ExitCode::from(2));
            }
            let ttl = ttl_minutes.map(|m| Duration::from_secs(m * 60)).unwrap_or(config.token_ttl());
            match Auth::new(config.jwt_secret.expose(), Clock::system()).issue(
                &subject,
                role,
                system.as_deref(),
                org.as_deref(),
                ttl,
            ) {
                Ok(token) => {
                    crate::out!("{token}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e @ crate::auth::TokenError::Sign(_)) => Err(e.into()),
                Err(e) => {
                    eprintln!("carehub token: {e}");
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::Audit { command: AuditCommand::Verify { db } } => audit_verify(&db).await,
        Command::Replay { config, ids, list } => {
            init_tracing("warn", LogFormat::Text);
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            replay(config, ids, list).await
        }
        Command::Tags { command: TagsCommand::Import { file, config } } => {
            init_tracing("warn", LogFormat::Text);
            let config = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return Ok(code),
            };
            import_tags(config, &file).await
        }
        Command::Verify(args) => {
            init_tracing("warn", LogFormat::Text);
            crate::verify_cmd::run(args).await
        }
        Command::Report(args) => crate::report_cmd::run(args).await,
        Command::Bench { command } => {
            init_tracing("error", LogFormat::Text);
            crate::bench::run(command).await
        }
    }
}

/// Whether a token for `role` may name `system` (and `org`): the system must be configured,
/// of the role's kind, and a provider routed elsewhere may not speak through it.
fn token_system_fits(config: &Config, role: Role, system: Option<&str>, org: Option<&str>) -> Result<(), String> {
    use carehub_core::adapter::SystemRole;
    let Some(name) = system else {
        return match role.is_system() {
            true => Err(format!("a {} token needs --system (the configured system it speaks for)", role.as_str())),
            false => Ok(()),
        };
    };
    if !role.is_system() {
        return Err(format!("{} tokens name no system; leave out --system", role.as_str()));
    }
    let Some(sys) = config.systems.iter().find(|s| s.name == name) else {
        let known: Vec<&str> = config.systems.iter().map(|s| s.name.as_str()).collect();
        return Err(format!("no system named '{name}' is configured (configured: {})", known.join(", ")));
    };
    let want = match role {
        Role::ProviderSystem => SystemRole::ProviderSystem,
        _ => SystemRole::CaseManagement,
    };
    if sys.vendor.role() != want {
        return Err(format!(
            "'{name}' is a {} system; a {} token names a {} system",
            sys.vendor.role().as_str(),
            role.as_str(),
            want.as_str()
        ));
    }
    let routed = org
        .and_then(|o| carehub_model::OrgNumber::parse(o).ok())
        .and_then(|o| config.routes().get(o.as_str()).map(|r| r.system.clone()));
    match routed {
        Some(other) if other != name => {
            Err(format!("the provider's orders go to the system '{other}', not '{name}'; name that system"))
        }
        _ => Ok(()),
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let runtime = crate::assemble::build(&config, Clock::system())?;
    let listener = tokio::net::TcpListener::bind(&config.hub.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.hub.listen))?;
    let hub = crate::run::start(runtime, listener).await?;
    let stop = hub.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    hub.wait().await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `carehub check`: the configuration (or, when it has problems, reported already, what
/// could be read of it), then its mappings, TLS files and systems.
async fn check(config: Result<Config, crate::config::Outline>, offline: bool) -> anyhow::Result<ExitCode> {
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
        crate::out!("systems: not contacted (--offline)");
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
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

async fn audit_verify(db: &Path) -> anyhow::Result<ExitCode> {
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

async fn replay(config: Config, ids: Vec<i64>, list: bool) -> anyhow::Result<ExitCode> {
    let runtime = crate::assemble::build(&config, Clock::system())?;
    let store: Arc<dyn Store> = runtime.state.hub.store.clone();
    let dead = store
        .deliveries(DeliveryFilter { state: Some("dead".into()), limit: 10_000, ..DeliveryFilter::default() })
        .await?;
    let chosen: Vec<_> = dead.into_iter().filter(|d| ids.is_empty() || ids.contains(&d.id)).collect();
    if chosen.is_empty() {
        crate::out!("no dead letters{}", if ids.is_empty() { "" } else { " with those ids" });
        return Ok(ExitCode::SUCCESS);
    }
    for d in &chosen {
        crate::out!(
            "dead letter {}: {} to {} (order {}), {} attempts, last error: {}",
            d.id,
            d.message_type,
            d.system,
            d.order_id.as_deref().unwrap_or("-"),
            d.attempts,
            d.last_error.as_deref().unwrap_or("-")
        );
    }
    if list {
        return Ok(ExitCode::SUCCESS);
    }
    let ids: Vec<i64> = chosen.iter().map(|d| d.id).collect();
    let requeued = runtime.state.hub.replay(Some(ids.clone())).await?;
    crate::out!("requeued {} deliveries; delivering", requeued.len());
    let results = runtime.delivery.drain(&ids).await?;
    let mut failed = false;
    for d in results {
        if d.state == "delivered" {
            crate::out!("delivery {}: delivered after {} attempt(s)", d.id, d.attempts);
        } else {
            failed = true;
            crate::out!("delivery {}: {} again: {}", d.id, d.state, d.last_error.as_deref().unwrap_or("-"));
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn import_tags(config: Config, file: &Path) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let cp1252 = carehub_core::mapping::text::encoding("windows-1252").context("windows-1252")?;
    let text =
        carehub_core::mapping::text::decode(&bytes, cp1252).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let header = text.lines().next().unwrap_or("");
    let delimiter = if header.contains(';') { b';' } else { b',' };
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(true).from_reader(text.as_bytes());
    let columns: Vec<String> = reader.headers()?.iter().map(|h| h.trim().to_lowercase()).collect();
    let find = |names: &[&str]| columns.iter().position(|c| names.contains(&c.as_str()));
    let (Some(tag), Some(client), Some(from)) =
        (find(&["tag_uid", "taggid"]), find(&["client", "personnummer"]), find(&["installed_on", "monterad"]))
    else {
        eprintln!(
            "{}: the header needs tag_uid, client and installed_on (or taggid, personnummer, monterad)",
            file.display()
        );
        return Ok(ExitCode::from(2));
    };
    let to = find(&["removed_on", "nedtagen"]);
    let runtime = crate::assemble::build(&config, Clock::system())?;
    let hub = runtime.state.hub.clone();
    let (mut taken, mut refused) = (0, 0);
    for record in reader.records() {
        let record = record?;
        // The line from the byte offset: the csv crate's own line count is off with CRLF.
        // (with CRLF its offset can sit on the previous line's end: skip line-ending bytes).
        let bytes = text.as_bytes();
        let mut at = record.position().map(|p| p.byte() as usize).unwrap_or(0).min(bytes.len());
        while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
            at += 1;
        }
        let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
        let cell = |i: usize| record.get(i).map(str::trim).filter(|v| !v.is_empty());
        let mut row = serde_json::Map::new();
        for (key, index) in
            [("tag_uid", Some(tag)), ("client", Some(client)), ("installed_on", Some(from)), ("removed_on", to)]
        {
            if let Some(v) = index.and_then(cell) {
                row.insert(key.into(), serde_json::Value::String(v.to_owned()));
            }
        }
        let value = serde_json::Value::Object(row);
        let parsed = serde_json::from_value::<carehub_model::TagRegistration>(value.clone())
            .map_err(|e| carehub_model::ValidationError::from_message(&e.to_string()));
        match hub
            .register_tag("import", value.to_string().into_bytes(), parsed, &carehub_core::pipeline::Sender::Trusted)
            .await
        {
            Ok(_) => taken += 1,
            Err(r) => {
                refused += 1;
                crate::out!("line {line}: {}: {}", r.code, r.message);
            }
        }
    }
    crate::out!("{taken} tag registrations taken, {refused} refused ({})", file.display());
    Ok(if refused == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
