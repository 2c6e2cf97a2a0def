//! What the benchmarks share: one clock, so every run plays the same dates whatever day
//! it is run on, and the closed loop of concurrent clients with its latency percentiles.
//! Apart from the benchmarks themselves so that each imports it and none imports another.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The instant every benchmark's clock starts at: late in a month, so a month of visits
/// lies in the past and the month before is complete, whatever day the bench is run on.
pub const BENCH_AT: &str = "2026-11-28T12:00:00+01:00";

/// The benchmarks' clock: [`BENCH_AT`], ticking from there.
pub fn bench_clock() -> carehub_model::Clock {
    let at = chrono::DateTime::parse_from_rfc3339(BENCH_AT).map(|t| t.with_timezone(&chrono::Utc)).unwrap_or_default();
    carehub_model::Clock::starting_at(at)
}

/// Latency percentiles of a run.
pub struct Run {
    pub clients: usize,
    pub count: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Runs `clients` concurrent closed-loop clients, each calling `call(n)` again as soon as its
/// last call answered (`n` counts calls across clients), for `seconds` after a 2-second
/// warm-up. A call answers whether it succeeded; the latencies of the measured successful
/// calls give the percentiles.
pub async fn closed_loop<F, Fut>(clients: usize, seconds: u64, call: F) -> anyhow::Result<Run>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (call, measuring, stop, counter) = (call.clone(), measuring.clone(), stop.clone(), counter.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(1 << 16);
            let mut errors = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                let ok = call(n).await;
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
