//! `carehub bench changes`: decision changes per second end to end (SPEC §4.4), beside new
//! decisions in the same run.
//!
//! One hub on a fresh SQLite file, with a mock Phoniro on loopback that takes every order
//! and order change at once and counts them. The run alternates two phases, `rounds` times
//! each, with N concurrent closed-loop clients posting Combine messages over HTTP:
//! - **decisions**: distinct new decisions (each one an order delivered to the mock);
//! - **changes**: a new version of one of the decisions made so far (minutes raised from a
//!   day: derived into an order change, logged, delivered to the mock). Each decision's
//!   versions are handed out in order, and a decision is changed again only after every
//!   other one was, so no change overtakes an earlier one of its decision.
//!
//! A phase's end-to-end rate is the messages the hub accepted divided by the time from the
//! phase's first request to the mock's receipt of the last of their deliveries (warm-up and
//! the outbox's drain included); the acknowledged rate and latencies are the closed loop's
//! measured window. Medians of the rounds are reported, and the ratio changes / decisions
//! of each round, alternating so that the disk and the page cache favour neither.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use carehub_server::auth::{Auth, Role};
use carehub_server::config::Config;
use carehub_server::{assemble, run};

use super::harness::{bench_clock, closed_loop};
use super::SECRET;

/// `carehub bench changes`' options.
#[derive(Debug, Clone, clap::Args)]
pub struct ChangeBenchArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Measured seconds per phase (after a 2-second warm-up).
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Rounds of (decisions, changes).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

fn change(n: usize, version: u32) -> String {
    format!(
        "<Beslutsandring xmlns=\"urn:carehub:vendor:combine:1\"><BeslutsId>BENCH-{n}</BeslutsId><Version>{version}</Version>\
         <GallerFrom>2026-11-10</GallerFrom><Andring typ=\"Insatser\"><Insats kod=\"SERV\"><MinuterPerManad>{}</MinuterPerManad></Insats>\
         <Insats kod=\"PO\"><MinuterPerManad>1800</MinuterPerManad></Insats></Andring></Beslutsandring>",
        480 + version
    )
}

/// What the mock provider system has received.
#[derive(Default)]
struct Received {
    orders: AtomicUsize,
    changes: AtomicUsize,
}

/// One phase's figures.
struct Phase {
    accepted: usize,
    end_to_end: f64,
    acked: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
}

pub async fn run(args: ChangeBenchArgs) -> anyhow::Result<std::process::ExitCode> {
    let temp = tempfile::tempdir().context("cannot create a folder")?;
    let received = Arc::new(Received::default());
    let mock = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mock_url = format!("http://{}", mock.local_addr()?);
    let counts = received.clone();
    tokio::spawn(async move {
        let (o, c) = (counts.clone(), counts);
        let app = Router::new()
            .route(
                "/api/orders",
                post(move || async move {
                    o.orders.fetch_add(1, Ordering::Relaxed);
                    StatusCode::CREATED
                }),
            )
            .route(
                "/api/order-changes",
                post(move || async move {
                    c.changes.fetch_add(1, Ordering::Relaxed);
                    StatusCode::CREATED
                }),
            );
        let _ = axum::serve(mock, app).await;
    });
    let db = temp.path().join("bench-changes.db");
    let config_text = format!(
        "[hub]\nlisten = \"127.0.0.1:0\"\ndatabase = \"{}\"\n[auth]\njwt_secret = \"{SECRET}\"\n\
         [[systems]]\nname = \"combine\"\nvendor = \"combine\"\ncallback_url = \"{mock_url}/cb\"\n\
         [[systems]]\nname = \"phoniro\"\nvendor = \"phoniro\"\nbase_url = \"{mock_url}/api\"\n\
         [[providers]]\norg = \"5599000014\"\nname = \"Bench AB\"\nsystem = \"phoniro\"\n",
        db.display()
    );
    let config = Config::parse(&config_text, temp.path()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let clock = bench_clock();
    let hub = run::start(assemble::build(&config, clock.clone())?, tokio::net::TcpListener::bind("127.0.0.1:0").await?)
        .await?;
    let url = format!("{}/v1/systems/combine/messages", hub.url());
    let token = Auth::new(SECRET, clock).issue(
        "bench",
        Role::CaseManagement,
        Some("combine"),
        None,
        Duration::from_secs(3600),
    )?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;
    let pnrs: Arc<Vec<&'static str>> =
        Arc::new(include_str!("../../../data/skatteverket-testpersonnummer.txt").lines().collect());

    out!(
        "carehub bench changes: {} cores, {} clients, {} s per phase after a 2 s warm-up, {} rounds",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        args.clients,
        args.seconds,
        args.rounds
    );
    out!("");
    out!(
        "{:>5} {:>10} {:>9} {:>12} {:>12} {:>9} {:>9} {:>7}",
        "round",
        "phase",
        "accepted",
        "e2e msg/s",
        "acked msg/s",
        "p50 ms",
        "p99 ms",
        "errors"
    );
    // Decisions made so far, and the next version of each.
    let made = Arc::new(AtomicUsize::new(0));
    let mut versions: Arc<Vec<AtomicU32>> = Arc::new(Vec::new());
    let mut ratios = Vec::new();
    let (mut new_rates, mut change_rates) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        // New decisions, numbered on from the last phase's.
        let (http2, url2, token2, pnrs2, made2) =
            (http.clone(), url.clone(), token.clone(), pnrs.clone(), made.clone());
        let decisions = phase(&args, &received.orders, move |_| {
            let n = made2.fetch_add(1, Ordering::Relaxed);
            let body = super::decision(n, pnrs2[n % pnrs2.len()]);
            let (http, url, token) = (http2.clone(), url2.clone(), token2.clone());
            async move { post_ok(&http, &url, &token, body).await }
        })
        .await?;
        report(round, "decisions", &decisions);
        // Changes over every decision made so far, round robin.
        let pool = made.load(Ordering::Relaxed);
        if versions.len() < pool {
            let old = versions.iter().map(|v| v.load(Ordering::Relaxed));
            versions = Arc::new(old.chain((versions.len()..pool).map(|_| 1)).map(AtomicU32::new).collect());
        }
        let (http2, url2, token2, versions2) = (http.clone(), url.clone(), token.clone(), versions.clone());
        let changes = phase(&args, &received.changes, move |n| {
            let d = n % pool;
            let v = versions2[d].fetch_add(1, Ordering::Relaxed);
            let body = change(d, v);
            let (http, url, token) = (http2.clone(), url2.clone(), token2.clone());
            async move { post_ok(&http, &url, &token, body).await }
        })
        .await?;
        report(round, "changes", &changes);
        ratios.push(changes.end_to_end / decisions.end_to_end);
        new_rates.push(decisions.end_to_end);
        change_rates.push(changes.end_to_end);
    }
    hub.stop().await;
    out!("");
    out!(
        "median end to end: decisions {:.0}/s, changes {:.0}/s; ratio changes / decisions per round: median {:.2} ({})",
        median(&mut new_rates),
        median(&mut change_rates),
        median(&mut ratios.clone()),
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ")
    );
    Ok(std::process::ExitCode::SUCCESS)
}

async fn post_ok(http: &reqwest::Client, url: &str, token: &str, body: String) -> bool {
    match http.post(url).bearer_auth(token).body(body).send().await {
        Ok(r) => r.status() == reqwest::StatusCode::ACCEPTED,
        Err(_) => false,
    }
}

/// Runs one phase: the closed loop, then waits until the mock has every delivery of the
/// messages the hub accepted (counted by `delivered`).
async fn phase<F, Fut>(args: &ChangeBenchArgs, delivered: &AtomicUsize, call: F) -> anyhow::Result<Phase>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let before = delivered.load(Ordering::Relaxed);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    let call = Arc::new(call);
    let started = Instant::now();
    let run = closed_loop(args.clients, args.seconds, move |n| {
        let (call, counted) = (call.clone(), counted.clone());
        async move {
            let ok = call(n).await;
            if ok {
                counted.fetch_add(1, Ordering::Relaxed);
            }
            ok
        }
    })
    .await?;
    let accepted = accepted.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(120);
    while delivered.load(Ordering::Relaxed) - before < accepted {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {accepted} deliveries reached the mock in 2 minutes",
            delivered.load(Ordering::Relaxed) - before
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = started.elapsed().as_secs_f64();
    Ok(Phase {
        accepted,
        end_to_end: accepted as f64 / wall,
        acked: run.count as f64 / run.elapsed.as_secs_f64(),
        p50_ms: run.p50.as_secs_f64() * 1e3,
        p99_ms: run.p99.as_secs_f64() * 1e3,
        errors: run.errors,
    })
}

fn report(round: usize, name: &str, p: &Phase) {
    out!(
        "{:>5} {:>10} {:>9} {:>12.0} {:>12.0} {:>9.2} {:>9.2} {:>7}",
        round,
        name,
        p.accepted,
        p.end_to_end,
        p.acked,
        p.p50_ms,
        p.p99_ms,
        p.errors
    );
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}
