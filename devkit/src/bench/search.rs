//! `carehub bench search`: an auditor's search by client on a large message log (SPEC §9;
//! target: the first page in under 200 ms at the 95th percentile on 10,000,000 entries).
//!
//! 1. Seed: N chained message-log entries through the store's bulk loader
//!    ([`carehub_core::store::sqlite::bulk::Batch::log_entry`]), a second apart, for a pool of
//!    clients (Skatteverket's test numbers): each client's entries are spread over the whole
//!    log, as a client's messages arrive over the years, mixed with everyone else's. One
//!    entry in twenty names no client itself and reaches its clients through links (an
//!    invoice's lines, as the hub links them), so the search takes both paths.
//! 2. Measured, alternating per query on random clients: the store's own search
//!    (`LogStore::log_entries`, the SQL the API runs) and the API a console or an auditor
//!    calls, `GET /v1/messages?client=...` over loopback on a hub started on the same file:
//!    token check, the search, and the access-log entry written durably before the answer
//!    leaves (SPEC §9). Percentiles of each, and their ratio.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use carehub_core::store::sqlite::bulk::{BulkLoader, Durability};
use carehub_core::store::{LogFilter, LogLink, LogStatus, NewLogEntry};
use carehub_server::auth::{Auth, Role};
use carehub_server::config::Config;
use carehub_server::{assemble, run};

use super::harness::bench_clock;
use super::SECRET;

#[derive(Debug, clap::Args)]
pub struct SearchBenchArgs {
    /// Entries in the log.
    #[arg(long, default_value_t = 10_000_000)]
    pub entries: usize,
    /// Distinct clients the entries are about (Stockholm has about 20,000 in home care).
    #[arg(long, default_value_t = 20_000)]
    pub clients: usize,
    /// Searches per side (store and API), alternating.
    #[arg(long, default_value_t = 500)]
    pub queries: usize,
    /// Entries per page.
    #[arg(long, default_value_t = 50)]
    pub page: usize,
    /// Where to put the database (default: a temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Reuse the database already seeded in `--dir` (its `search.db`) instead of seeding.
    #[arg(long)]
    pub reuse: bool,
}

pub async fn run(args: SearchBenchArgs) -> anyhow::Result<ExitCode> {
    let pnrs: Vec<&'static str> = include_str!("../../../data/skatteverket-testpersonnummer.txt")
        .lines()
        .filter(|l| l.len() == 12 && l.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    anyhow::ensure!(args.clients >= 1 && args.clients <= pnrs.len(), "--clients must be 1 to {}", pnrs.len());
    let pnrs: Arc<Vec<&'static str>> = Arc::new(pnrs[..args.clients].to_vec());
    let (_temp, dir) = match &args.dir {
        Some(d) => (None, d.clone()),
        None => {
            let t = tempfile::tempdir().context("cannot create a folder")?;
            let p = t.path().to_path_buf();
            (Some(t), p)
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let db = dir.join("search.db");
    out!(
        "carehub bench search: {} entries, {} clients, {} searches per side, pages of {}, {} cores",
        args.entries,
        args.clients,
        args.queries,
        args.page,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    if !(args.reuse && db.exists()) {
        let _ = std::fs::remove_file(&db);
        let started = Instant::now();
        let (seed_db, n, seed_pnrs) = (db.clone(), args.entries, pnrs.clone());
        tokio::task::spawn_blocking(move || seed(&seed_db, n, &seed_pnrs)).await??;
        let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
        out!("  seeded in {:.1} s ({:.0} MB)", started.elapsed().as_secs_f64(), size as f64 / 1e6);
    } else {
        out!("  reusing {}", db.display());
    }

    let config_text = format!(
        "[hub]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{}\"\n[auth]\njwt_secret = \"{SECRET}\"\n\
         [[systems]]\nname = \"combine\"\nvendor = \"combine\"\ncallback_url = \"http://127.0.0.1:9/cb\"\n",
        db.display()
    );
    let config = Config::parse(&config_text, &dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let clock = bench_clock();
    let runtime = assemble::build(&config, clock.clone())?;
    let store = runtime.state.hub.store().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hub = run::start(runtime, listener).await?;
    let token =
        Auth::new(SECRET, clock).issue("bench-auditor", Role::Auditor, None, None, Duration::from_secs(3600))?;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/messages", hub.url());

    let mut rng = fastrand::Rng::with_seed(7);
    let (mut direct, mut api) = (Vec::with_capacity(args.queries), Vec::with_capacity(args.queries));
    let (mut found_direct, mut found_api) = (0usize, 0usize);
    // A few searches first, untimed, so neither side pays for the first page-cache misses
    // of the other's warm-up.
    for i in 0..(2 * args.queries + 20) {
        let client = pnrs[rng.usize(..pnrs.len())];
        let api_turn = i % 2 == 1;
        let started = Instant::now();
        let n = if api_turn {
            let page: serde_json::Value = http
                .get(&url)
                .bearer_auth(&token)
                .query(&[("client", client), ("limit", &args.page.to_string())])
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            page["messages"].as_array().map_or(0, Vec::len)
        } else {
            let filter = LogFilter { client: Some(client.into()), limit: args.page, ..LogFilter::default() };
            store.log_entries(filter).await?.len()
        };
        let took = started.elapsed().as_secs_f64() * 1000.0;
        if i < 20 {
            continue;
        }
        if api_turn {
            api.push(took);
            found_api += n;
        } else {
            direct.push(took);
            found_direct += n;
        }
    }
    hub.stop().await;
    let (d50, d95, d99) = percentiles(&mut direct);
    let (a50, a95, a99) = percentiles(&mut api);
    out!("  store search (LogStore::log_entries): p50 {d50:.2} ms  p95 {d95:.2} ms  p99 {d99:.2} ms  ({:.1} entries per page)", found_direct as f64 / direct.len().max(1) as f64);
    out!("  API GET /v1/messages?client=...:      p50 {a50:.2} ms  p95 {a95:.2} ms  p99 {a99:.2} ms  ({:.1} entries per page)", found_api as f64 / api.len().max(1) as f64);
    out!(
        "  API / store at p50: {:.2}; target: API p95 under 200 ms: {}",
        a50 / d50.max(1e-9),
        if a95 < 200.0 { "met" } else { "MISSED" }
    );
    Ok(ExitCode::SUCCESS)
}

fn percentiles(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: f64| if v.is_empty() { 0.0 } else { v[((v.len() as f64 - 1.0) * q).round() as usize] };
    (at(0.50), at(0.95), at(0.99))
}

/// N chained entries a second apart, ending at the bench clock's now; entry i is about
/// client `i * 7919 mod clients` (a prime stride: a client's entries spread over the log).
fn seed(db: &std::path::Path, n: usize, pnrs: &[&str]) -> anyhow::Result<()> {
    let end = bench_clock().now();
    let mut loader = BulkLoader::create(db, Durability::Unjournaled)?;
    let mut done = 0;
    let mut shown = Instant::now();
    while done < n {
        let upto = (done + 50_000).min(n);
        loader.load(|b| -> anyhow::Result<()> {
            let mut head = b.log_head()?;
            for i in done..upto {
                let at = end - chrono::Duration::seconds((n - i) as i64);
                let client = pnrs[(i.wrapping_mul(7919)) % pnrs.len()];
                let entry = if i % 20 == 19 {
                    // An invoice: no client of its own, its lines' clients as links.
                    let other = pnrs[(i.wrapping_mul(7919) + 1) % pnrs.len()];
                    NewLogEntry {
                        system: "phoniro".into(),
                        vendor: "phoniro".into(),
                        direction: "in",
                        message_type: "invoice".into(),
                        content_type: "application/xml".into(),
                        payload: format!("<Invoice><ID>INV-{i}</ID></Invoice>").into_bytes(),
                        canonical: Some("{}".into()),
                        status: LogStatus::Accepted,
                        provider: Some("5599000014".into()),
                        links: vec![
                            LogLink { client: Some(client.into()), order_id: None },
                            LogLink { client: Some(other.into()), order_id: None },
                        ],
                        ..NewLogEntry::default()
                    }
                } else {
                    let (system, message_type) = match i % 4 {
                        0 => ("combine", "decision"),
                        1 => ("phoniro", "order_ack"),
                        2 => ("phoniro", "visit"),
                        _ => ("phoniro", "plan"),
                    };
                    NewLogEntry {
                        system: system.into(),
                        vendor: system.into(),
                        direction: "in",
                        message_type: message_type.into(),
                        content_type: "application/json".into(),
                        payload: format!("{{\"id\":\"BENCH-{i}\",\"kind\":\"{message_type}\"}}").into_bytes(),
                        canonical: Some("{}".into()),
                        status: LogStatus::Accepted,
                        decision_id: Some(format!("combine:BENCH-{}", i % 1_000_000)),
                        order_id: Some(format!("ORD-{}", i % 1_000_000)),
                        client: Some(client.into()),
                        provider: Some("5599000014".into()),
                        ..NewLogEntry::default()
                    }
                };
                b.log_entry(&mut head, at, entry)?;
            }
            Ok(())
        })?;
        done = upto;
        if shown.elapsed() > Duration::from_secs(10) {
            out!("  seeding: {done} of {n}");
            shown = Instant::now();
        }
    }
    loader.finish()?;
    Ok(())
}
