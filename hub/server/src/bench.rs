//! `carehub bench`: the measurements behind BENCHMARKS.md.
//!
//! `carehub bench decisions` starts the real hub in this process on a fresh SQLite file,
//! with a mock Phoniro on loopback that takes every order at once (so deliveries run too),
//! and posts distinct valid Combine decisions over HTTP from N concurrent clients for a
//! fixed time after a warm-up. It reports decisions per second and latency percentiles,
//! then, in the same run and on the same disk, the ceiling: a bare SQLite loop inserting
//! the same rows per decision with the same durability.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;

use crate::auth::{Auth, Role};
use crate::config::Config;
use crate::server;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Decisions per second through the HTTP API with durable logging, with latency
    /// percentiles, beside a bare SQLite insert loop of the same durability.
    Decisions {
        /// Concurrent clients, one run each (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,64")]
        clients: Vec<usize>,
        /// Measured seconds per run (after a 2-second warm-up).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Where to put the databases (default: a temporary folder on the same disk as /tmp).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

pub async fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Decisions { clients, seconds, dir } => decisions(clients, seconds, dir).await,
    }
}

const SECRET: &str = "bench-secret-bench-secret-bench-secret";

/// Latency percentiles of a run.
struct Run {
    clients: usize,
    count: usize,
    errors: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

fn decision(n: usize, pnr: &str) -> String {
    format!(
        "<Beslut xmlns=\"urn:carehub:vendor:combine:1\"><BeslutsId>BENCH-{n}</BeslutsId><Personnummer>{pnr}</Personnummer><Handlaggare>hl-1</Handlaggare><Utforare orgnr=\"5599000014\"/><GiltigFrom>2026-11-01</GiltigFrom><GiltigTom>2027-10-31</GiltigTom><Insats kod=\"SERV\"><MinuterPerManad>480</MinuterPerManad></Insats><Insats kod=\"PO\"><MinuterPerManad>1800</MinuterPerManad></Insats></Beslut>"
    )
}

async fn one_run(
    clients: usize,
    seconds: u64,
    dir: &std::path::Path,
    pnrs: Arc<Vec<&'static str>>,
) -> anyhow::Result<Run> {
    let mock = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mock_url = format!("http://{}", mock.local_addr()?);
    tokio::spawn(async move {
        let app = Router::new().route("/api/orders", post(|| async { StatusCode::CREATED }));
        let _ = axum::serve(mock, app).await;
    });
    let db = dir.join(format!("bench-{clients}.db"));
    let config_text = format!(
        "[hub]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{}\"\n[auth]\njwt_secret = \"{SECRET}\"\n\
         [[systems]]\nname = \"combine\"\nvendor = \"combine\"\ncallback_url = \"{mock_url}/cb\"\n\
         [[systems]]\nname = \"phoniro\"\nvendor = \"phoniro\"\nbase_url = \"{mock_url}/api\"\n\
         [[providers]]\norg = \"5599000014\"\nname = \"Bench AB\"\nsystem = \"phoniro\"\n",
        db.display()
    );
    let config = Config::parse(&config_text, dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let runtime = server::build(&config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hub = server::start(runtime, listener).await?;
    let url = format!("{}/v1/systems/combine/messages", hub.url());
    let token = Auth::new(SECRET).issue("bench", Role::CaseManagement, None, Duration::from_secs(3600))?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;

    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, url, token, pnrs) = (http.clone(), url.clone(), token.clone(), pnrs.clone());
        let (measuring, stop, counter) = (measuring.clone(), stop.clone(), counter.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = decision(n, pnrs[n % pnrs.len()]);
                let t = Instant::now();
                let ok = match http.post(&url).bearer_auth(&token).body(body).send().await {
                    Ok(r) => r.status() == reqwest::StatusCode::ACCEPTED,
                    Err(_) => false,
                };
                if measuring.load(Ordering::Relaxed) {
                    if ok {
                        latencies.push(t.elapsed());
                    } else {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    measuring.store(true, Ordering::SeqCst);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    measuring.store(false, Ordering::SeqCst);
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(r) = tasks.join_next().await {
        let (l, e) = r?;
        all.extend(l);
        errors += e;
    }
    hub.stop().await;
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default()
    };
    Ok(Run {
        clients,
        count: all.len(),
        errors,
        elapsed,
        p50: pct(0.50),
        p99: pct(0.99),
        max: all.last().copied().unwrap_or_default(),
    })
}

async fn decisions(clients: Vec<usize>, seconds: u64, dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let temp =
        tempfile::tempdir_in(dir.as_deref().unwrap_or(&std::env::temp_dir())).context("cannot create a folder")?;
    let pnrs: Arc<Vec<&'static str>> =
        Arc::new(include_str!("../../../data/skatteverket-testpersonnummer.txt").lines().collect());
    out!(
        "carehub bench decisions: {} cores, {seconds} s per run after a 2 s warm-up, databases in {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        temp.path().display()
    );
    out!("");
    out!(
        "{:>8} {:>10} {:>12} {:>9} {:>9} {:>9} {:>7}",
        "clients",
        "decisions",
        "decisions/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors"
    );
    let mut best = 0.0f64;
    for c in clients {
        let r = one_run(c, seconds, temp.path(), pnrs.clone()).await?;
        let rate = r.count as f64 / r.elapsed.as_secs_f64();
        best = best.max(rate);
        out!(
            "{:>8} {:>10} {:>12.0} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            r.clients,
            r.count,
            rate,
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            r.max.as_secs_f64() * 1e3,
            r.errors
        );
    }
    out!("");
    let payload = decision(0, "193601016987").into_bytes();
    let n = 2000;
    for per_commit in [1usize, 64] {
        let path = temp.path().join(format!("bare-{per_commit}.db"));
        let p = path.clone();
        let payload = payload.clone();
        let elapsed = tokio::task::spawn_blocking(move || {
            carehub_core::store::sqlite::bare_insert_loop(&p, n, per_commit, &payload)
        })
        .await??;
        let rate = n as f64 / elapsed.as_secs_f64();
        out!(
            "bare SQLite loop, same rows per decision, WAL + synchronous=FULL, {per_commit:>2} decision(s) per commit: {rate:>8.0} decisions/s  (best hub run / this = {:.2})",
            best / rate
        );
    }
    Ok(ExitCode::SUCCESS)
}
