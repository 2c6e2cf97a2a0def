//! `carehub audit`: verify a database's hash chains (the message log and the access log),
//! write a signing key, prove entries and consistency against signed checkpoints, export a
//! bundle, and verify a bundle offline (docs/audit-log.md).

use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use base64::Engine as _;
use carehub_core::audit::Checkpointer;
use carehub_core::store::{AccessQuery, NewAccess, Op, Store};
use carehub_model::Clock;
use chrono::{DateTime, NaiveDate, Utc};

use crate::config::Config;

pub(super) async fn verify(db: &Path) -> anyhow::Result<ExitCode> {
    if !crate::assemble::database_exists(db) {
        eprintln!("{}: no such database file", db.display());
        return Ok(ExitCode::from(2));
    }
    let store = crate::assemble::open_store(db, Clock::system())?;
    let mut ok = true;
    for (name, entry, report) in [
        ("message log", "entry", carehub_core::store::verify_chain(&*store).await?),
        ("access log", "access-log entry", carehub_core::store::verify_access_chain(&*store).await?),
    ] {
        match report.first_bad {
            None => {
                crate::out!("ok: the {name}'s hash chain verifies ({} entries)", report.entries);
                crate::out!("head: {}", report.head);
            }
            Some((seq, why)) => {
                crate::out!("FAILED: {entry} {seq} does not match: {why}");
                crate::out!("({} entries checked up to and including it)", report.entries);
                ok = false;
            }
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Writes a new signing key (the 32-byte seed, base64) to `out`, readable by its owner only,
/// and prints its public key. An existing file is left alone.
pub(super) fn keygen(out: &Path) -> anyhow::Result<ExitCode> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let text = base64::engine::general_purpose::STANDARD.encode(seed);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(out) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!("{}: already exists; not overwritten", out.display());
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", out.display())),
    };
    std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes())?;
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    crate::out!("wrote {}", out.display());
    crate::out!("public key: {}", carehub_core::log::checkpoint::public_key_text(&key.verifying_key()));
    crate::out!("configure it as [audit] signing_key_file = \"{}\"", out.display());
    Ok(ExitCode::SUCCESS)
}

/// The store and checkpointer of a configuration; exit code 2 without a signing key.
fn open(config: &Config) -> anyhow::Result<Result<Checkpointer, ExitCode>> {
    let Some(key) = config.audit.key() else {
        eprintln!("[audit] signing_key is not configured: write one with carehub audit keygen");
        return Ok(Err(ExitCode::from(2)));
    };
    let db = &config.hub.database;
    let store: Arc<dyn Store> = crate::assemble::open_store(db, Clock::system())?;
    Ok(Ok(Checkpointer::new(store, key, config.audit.origin.clone(), Clock::system())))
}

/// `--entry N`: the entry's inclusion proof against the latest checkpoint (made now if it
/// does not cover the log); `--from SIZE`: the consistency proof from the checkpoint of that
/// size to the latest. Printed as JSON.
pub(super) async fn prove(config: Config, entry: Option<i64>, from: Option<i64>) -> anyhow::Result<ExitCode> {
    let checkpointer = match open(&config)? {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let store = checkpointer.store().clone();
    let size = store.log_size().await?;
    let latest = match checkpointer.covering(size.max(1)).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let proof = match (entry, from) {
        (Some(seq), None) => carehub_core::audit::prove_inclusion(store.as_ref(), seq, &latest)
            .await
            .map(|p| serde_json::to_value(p).unwrap_or_default()),
        (None, Some(from)) => carehub_core::audit::prove_consistency(store.as_ref(), from, &latest)
            .await
            .map(|p| serde_json::to_value(p).unwrap_or_default()),
        _ => {
            eprintln!("name one of --entry N or --from SIZE");
            return Ok(ExitCode::from(2));
        }
    };
    match proof {
        Ok(mut v) => {
            v["public_key"] = checkpointer.public_key().into();
            crate::out!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A day (`YYYY-MM-DD`, its start in UTC) or an RFC 3339 instant.
pub(super) fn parse_when(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_default());
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| format!("'{s}' is not a date (YYYY-MM-DD) or an RFC 3339 instant"))
}

/// Writes the bundle of entries appended in `[from, to)` and records the export in the
/// access log (an export shows personal data).
pub(super) async fn export(
    config: Config,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    out: &Path,
    subject: String,
) -> anyhow::Result<ExitCode> {
    let checkpointer = match open(&config)? {
        Ok(x) => x,
        Err(code) => return Ok(code),
    };
    let store = checkpointer.store().clone();
    let file = std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let report = match carehub_core::audit::export(&checkpointer, from, to, &mut w).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    drop(w);
    // The clients shown: read back from what was written, so the record is what left.
    let clients = bundle_clients(out)?;
    let query = AccessQuery::new("carehub audit export")
        .with("from", Some(carehub_core::store::ts(from)))
        .with("to", Some(carehub_core::store::ts(to)));
    let access = NewAccess { subject, role: "admin".into(), query, clients, entries: Vec::new() };
    store.commit(vec![Op::RecordAccess(access)]).await?;
    crate::out!("wrote {} entries to {} (checkpoint of {} entries)", report.entries, out.display(), report.tree_size);
    Ok(ExitCode::SUCCESS)
}

fn bundle_clients(path: &Path) -> anyhow::Result<Vec<String>> {
    use std::io::BufRead;
    let mut clients = std::collections::BTreeSet::new();
    for line in BufReader::new(std::fs::File::open(path)?).lines().skip(1) {
        let e: carehub_core::log::bundle::BundleEntry = serde_json::from_str(&line?)?;
        clients.extend(e.client);
    }
    Ok(clients.into_iter().collect())
}

/// Verifies a bundle with no database and no network; `known` are checkpoints the auditor
/// kept from before (a fork shows as two of one size with different roots).
pub(super) fn verify_bundle(file: &Path, known: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let reader = match std::fs::File::open(file) {
        Ok(f) => BufReader::with_capacity(1 << 20, f),
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return Ok(ExitCode::from(2));
        }
    };
    let mut notes = Vec::new();
    for k in known {
        notes.push(std::fs::read_to_string(k).with_context(|| format!("cannot read {}", k.display()))?);
    }
    match carehub_core::log::bundle::verify(reader, &notes) {
        Ok(r) => {
            crate::out!(
                "ok: {} entries ({}..{}) verify against the signed checkpoint of {} entries, root {}",
                r.entries,
                r.first_seq.map_or("-".into(), |s| s.to_string()),
                r.last_seq.map_or("-".into(), |s| s.to_string()),
                r.tree_size,
                r.root
            );
            if r.earlier > 0 {
                crate::out!("{} earlier checkpoint(s) are consistent with it", r.earlier);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            crate::out!("FAILED: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Removes payloads older than the policy and prints what the retention entry says.
pub(super) async fn retention(
    config: Config,
    older_than: Option<String>,
    before: Option<DateTime<Utc>>,
) -> anyhow::Result<ExitCode> {
    let clock = Clock::system();
    let (before, policy) = match before {
        Some(b) => (b, format!("before {}", carehub_core::store::ts(b))),
        None => {
            let age = older_than.unwrap_or_else(|| config.audit.retention.clone());
            match crate::config::before(clock.now(), &age) {
                Ok(b) => (b, format!("older than {age}")),
                Err(e) => {
                    eprintln!("--older-than: {e}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
    };
    let db = &config.hub.database;
    let store: Arc<dyn Store> = crate::assemble::open_store(db, clock)?;
    let results = store.commit(vec![Op::RemovePayloads { before, policy }]).await?;
    let Some(&carehub_core::store::OpResult::Logged(seq)) = results.first() else {
        anyhow::bail!("retention did not log its run");
    };
    let entry = store.log_entry(seq).await?;
    let said = entry.and_then(|e| e.canonical).unwrap_or_default();
    crate::out!("retention logged as entry {seq}: {said}");
    Ok(ExitCode::SUCCESS)
}
