//! `carehub bench bundle`: `carehub audit verify-bundle` over a bundle of N entries (SPEC
//! §9; target: one million in under 10 s).
//!
//! 1. Seed: N message-log entries (decisions of the size Combine sends, a distinct client
//!    each of the test numbers in turn) chained as the hub chains them, through the store's
//!    bulk loader ([`carehub_core::store::sqlite::bulk::Batch::log_entry`]), one instant a second from the bench clock.
//! 2. Export, timed: `carehub audit export` in this process (a fresh checkpoint, the tree,
//!    every entry's proof).
//! 3. Measured: `carehub audit verify-bundle FILE` in a child process, its wall time; and,
//!    when `--python` names an interpreter with `cryptography`, `scripts/verify_bundle.py`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use carehub_core::audit::Checkpointer;
use carehub_core::store::sqlite::bulk::{BulkLoader, Durability};
use carehub_core::store::sqlite::SqliteStore;
use carehub_core::store::{LogStatus, NewLogEntry, Store};

use super::harness::bench_clock;

#[derive(Debug, clap::Args)]
pub struct BundleBenchArgs {
    /// Entries in the log (all of them in the bundle).
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: usize,
    /// Where to put the database and the bundle (default: a temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Also time the independent checker with this Python (one with `cryptography`).
    #[arg(long)]
    pub python: Option<PathBuf>,
}

/// A fixed signing key (base64 of 32 bytes).
const KEY: &str = "YmVuY2gtc2lnbmluZy1rZXktYmVuY2gtc2lnbmluZy0=";

pub async fn run(args: BundleBenchArgs) -> anyhow::Result<ExitCode> {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let temp = tempfile::tempdir_in(&parent).context("cannot create a folder")?;
    let db = temp.path().join("log.db");
    let started = Instant::now();
    let n = args.entries;
    let seed_db = db.clone();
    tokio::task::spawn_blocking(move || seed(&seed_db, n)).await??;
    out!("seeded {n} chained log entries in {:.1} s", started.elapsed().as_secs_f64());

    let clock = bench_clock();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db, clock.clone())?);
    let key = carehub_core::log::checkpoint::signing_key_from_text(KEY).map_err(anyhow::Error::msg)?;
    let checkpointer = Checkpointer::new(store, key, "carehub.bench/log".into(), clock.clone());
    let bundle = temp.path().join("bundle.jsonl");
    let started = Instant::now();
    let mut w = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&bundle)?);
    let from = clock.now() - chrono::Duration::days(365 * 2);
    let to = clock.now() + chrono::Duration::days(1);
    let report = carehub_core::audit::export(&checkpointer, from, to, &mut w).await?;
    drop(w);
    let size = std::fs::metadata(&bundle)?.len();
    out!(
        "exported {} entries ({:.0} MB) in {:.1} s",
        report.entries,
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let exe = std::env::current_exe().context("cannot find the carehub binary")?;
    let file = bundle.display().to_string();
    out!("measured: carehub audit verify-bundle {file}");
    let started = Instant::now();
    let output = tokio::process::Command::new(exe).args(["audit", "verify-bundle", &file]).output().await?;
    let took = started.elapsed().as_secs_f64();
    out!("  {}", String::from_utf8_lossy(&output.stdout).trim());
    out!("  verify-bundle: {took:.2} s ({:.0} entries/s)", report.entries as f64 / took);
    if let Some(python) = args.python {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/verify_bundle.py");
        let started = Instant::now();
        let output = tokio::process::Command::new(python).args([script, &file]).output().await?;
        let took = started.elapsed().as_secs_f64();
        out!("  scripts/verify_bundle.py: {}, {took:.2} s", String::from_utf8_lossy(&output.stdout).trim());
    }
    Ok(if output.status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// N chained entries, a second apart, ending at the bench clock's now.
fn seed(db: &std::path::Path, n: usize) -> anyhow::Result<()> {
    let pnrs: Vec<&str> = include_str!("../../../data/skatteverket-testpersonnummer.txt").lines().collect();
    let end = bench_clock().now();
    let mut loader = BulkLoader::create(db, Durability::Unjournaled)?;
    let mut done = 0;
    while done < n {
        let upto = (done + 50_000).min(n);
        loader.load(|b| -> anyhow::Result<()> {
            let mut head = b.log_head()?;
            for i in done..upto {
                let at = end - chrono::Duration::seconds((n - i) as i64);
                let client = pnrs[i % pnrs.len()];
                let entry = NewLogEntry {
                    system: "combine".into(),
                    vendor: "combine".into(),
                    direction: "in",
                    message_type: "decision".into(),
                    content_type: "application/xml".into(),
                    payload: super::decision(i, client).into_bytes(),
                    canonical: Some("{}".into()),
                    status: LogStatus::Accepted,
                    decision_id: Some(format!("combine:BENCH-{i}")),
                    client: Some(client.into()),
                    provider: Some("5599000014".into()),
                    ..NewLogEntry::default()
                };
                b.log_entry(&mut head, at, entry)?;
            }
            Ok(())
        })?;
        done = upto;
    }
    loader.finish()?;
    Ok(())
}
