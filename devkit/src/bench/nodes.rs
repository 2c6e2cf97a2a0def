//! `carehub bench nodes`: decisions per second and visits per second (Phoniro pages of
//! 1,000 pushed over HTTP) on one node with SQLite, one node with PostgreSQL, and two and
//! three nodes on one PostgreSQL database (SPEC §11), with the CPU each part used.
//!
//! Method:
//! 1. Each run starts its hub nodes as `carehub serve` processes (this executable), on a
//!    fresh database: a SQLite file, or a PostgreSQL database made on the server for the
//!    run and dropped after it. One mock vendor in this process takes every delivery (the
//!    orders to Phoniro, the visit reports to Combine) at once, so deliveries run during
//!    the measurement as in production.
//! 2. The run seeds 200 clients with an order and a tag each over HTTP, then measures two
//!    phases on the same nodes, each a closed loop for `seconds` after a 2-second warm-up:
//!    **decisions** (`clients` clients posting distinct Combine decisions) and **visits**
//!    (`page_clients` clients posting Phoniro pages of 1,000 distinct valid visits for the
//!    seeded clients). The calls go to the nodes in turn.
//! 3. The setups take turns within a round, in reverse order every other round, so a drift
//!    of the shared machine weighs on each alike; the report gives each round and the
//!    medians.
//! 4. CPU: utime + stime from `/proc/<pid>/stat`, read before and after each phase, of the
//!    hub processes, of this process (the load generator, with the mock vendor), and of
//!    PostgreSQL (the backends serving the run's database and the server's own background
//!    processes; other databases' backends on a shared server are not counted). Shares are
//!    of the machine's cores over the phase's wall time; the per-request costs divide the
//!    CPU seconds by the requests acknowledged in the same span, warm-up included.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use carehub_postgres::scratch::{self, ScratchDb};
use chrono::Datelike;
use serde_json::{json, Value};

use carehub_server::auth::{Auth, Role};
use carehub_server::config::Config;

use super::harness::closed_loop;

const SECRET: &str = "bench-secret-bench-secret-bench-secret";
const PROVIDER: &str = "5599000014";
/// Clients seeded with an order and a tag, whose visits the pages carry.
const SEEDED: usize = 200;
/// Where the seeded clients' numbers start in the test numbers (the decisions phase uses
/// the numbers below).
const SEED_FROM: usize = 40_000;
const PAGE: usize = 1000;

/// The bench's options.
#[derive(Debug, Clone, clap::Args)]
pub struct NodesBenchArgs {
    /// Measured seconds per phase (after a 2-second warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Rounds over the setups.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Concurrent clients posting decisions.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Concurrent clients posting pages of 1,000 visits.
    #[arg(long, default_value_t = 6)]
    pub page_clients: usize,
    /// The setups, in the order of the first round: `sqlite`, `pg1`, `pg2`, `pg3`.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,pg1,pg2,pg3")]
    pub setups: Vec<String>,
    /// The PostgreSQL server (a URL without a database); default `CAREHUB_TEST_POSTGRES`
    /// or postgres://postgres@127.0.0.1:5432.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Where to put the SQLite files and the nodes' configurations and logs (default: a
    /// temporary folder).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// One setup: SQLite on one node, or PostgreSQL on `n` nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Sqlite,
    Postgres(usize),
}

impl Setup {
    fn parse(s: &str) -> anyhow::Result<Setup> {
        match s.trim() {
            "sqlite" => Ok(Setup::Sqlite),
            "pg1" => Ok(Setup::Postgres(1)),
            "pg2" => Ok(Setup::Postgres(2)),
            "pg3" => Ok(Setup::Postgres(3)),
            other => anyhow::bail!("unknown setup '{other}': sqlite, pg1, pg2 or pg3"),
        }
    }
    fn nodes(self) -> usize {
        match self {
            Setup::Sqlite => 1,
            Setup::Postgres(n) => n,
        }
    }
    fn name(self) -> String {
        match self {
            Setup::Sqlite => "1 node, SQLite".into(),
            Setup::Postgres(1) => "1 node, PostgreSQL".into(),
            Setup::Postgres(n) => format!("{n} nodes, PostgreSQL"),
        }
    }
}

/// CPU clock ticks of one process (utime + stime), from `/proc/<pid>/stat`.
fn ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The PostgreSQL processes that work for `database`: its backends (their title names the
/// database) and the server's own background processes (no client address in the title).
fn postgres_pids(database: Option<&str>) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| {
        let pid = e.ok()?.file_name().into_string().ok()?;
        pid.parse::<u32>().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        if comm.trim() != "postgres" {
            return None;
        }
        let title = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let title = String::from_utf8_lossy(&title);
        let backend = title.contains("127.0.0.1(") || title.contains("[local]");
        let ours = database.is_some_and(|d| title.contains(&format!(" {d} ")));
        (!backend || ours).then_some(pid)
    })
    .collect()
}

/// CPU seconds so far of the hub nodes, this process and PostgreSQL.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    hubs: f64,
    generator: f64,
    postgres: f64,
}

/// Seconds of one `/proc` clock tick: Linux counts in USER_HZ, 100 a second on every
/// architecture it runs on.
const TICK: f64 = 0.01;

/// The CPU ticks so far of each process that counts, by pid.
struct Sample {
    hubs: Vec<(String, u64)>,
    generator: u64,
    postgres: Vec<(String, u64)>,
}

fn sample(hubs: &[u32], database: Option<&str>) -> Sample {
    let read = |pids: Vec<String>| pids.into_iter().filter_map(|p| ticks(&p).map(|t| (p, t))).collect();
    Sample {
        hubs: read(hubs.iter().map(u32::to_string).collect()),
        generator: ticks("self").unwrap_or(0),
        postgres: read(postgres_pids(database)),
    }
}

/// The CPU seconds each part used from `before` to `after`, process by process: a
/// PostgreSQL backend that started in between counts from its start (one that ended in
/// between is lost, which undercounts; the hubs keep their connections).
fn used(before: &Sample, after: &Sample) -> Cpu {
    let delta = |b: &[(String, u64)], a: &[(String, u64)]| {
        a.iter()
            .map(|(pid, t)| t.saturating_sub(b.iter().find(|(p, _)| p == pid).map_or(0, |(_, t0)| *t0)))
            .sum::<u64>() as f64
            * TICK
    };
    Cpu {
        hubs: delta(&before.hubs, &after.hubs),
        generator: after.generator.saturating_sub(before.generator) as f64 * TICK,
        postgres: delta(&before.postgres, &after.postgres),
    }
}

/// One phase's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Phase {
    /// Acknowledged per second in the measured window (visits: visits, not pages).
    rate: f64,
    errors: usize,
    /// Requests acknowledged from the warm-up's start to the end (visits: visits).
    total: usize,
    wall: f64,
    cpu: Cpu,
}

impl Phase {
    fn share(&self, seconds: f64, cores: f64) -> f64 {
        100.0 * seconds / (self.wall * cores)
    }
}

/// A run's figures.
#[derive(Debug, Clone, Copy)]
struct RunResult {
    setup: Setup,
    decisions: Phase,
    visits: Phase,
    rejected: usize,
}

/// A started node.
struct Node {
    child: Child,
    url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn config_text(database: &str, port: u16, mock: &str, node: Option<&str>) -> String {
    let node = node.map(|n| format!("node = \"{n}\"\n")).unwrap_or_default();
    format!(
        "[hub]\nlisten = \"127.0.0.1:{port}\"\ndatabase = \"{database}\"\nmax_body_bytes = 67108864\n{node}\
         [auth]\njwt_secret = \"{SECRET}\"\n\
         [[systems]]\nname = \"combine\"\nvendor = \"combine\"\ncallback_url = \"{mock}/cb\"\n\
         [[systems]]\nname = \"phoniro\"\nvendor = \"phoniro\"\nbase_url = \"{mock}/api\"\n\
         [[providers]]\norg = \"{PROVIDER}\"\nname = \"Bench AB\"\nsystem = \"phoniro\"\n\
         [delivery]\nmax_in_flight = 256\n"
    )
}

/// Starts `carehub serve` (this executable) as node `name` on `database`; waits until it
/// is ready.
async fn start_node(dir: &Path, name: &str, database: &str, mock: &str) -> anyhow::Result<Node> {
    let port = free_port()?;
    // `[hub] node` where this build knows it.
    let named = config_text(database, port, mock, Some(name));
    let text = if Config::parse(&named, dir).is_ok() { named } else { config_text(database, port, mock, None) };
    Config::parse(&text, dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, text)?;
    let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
    let child = Command::new(std::env::current_exe()?)
        .args(["serve", "--config"])
        .arg(&config)
        .env("CAREHUB_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start carehub serve")?;
    let node = Node { child, url: format!("http://127.0.0.1:{port}") };
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{}/readyz", node.url)).send().await {
            if r.status().is_success() {
                return Ok(node);
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "node {name} was not ready in a minute (see {name}.log)");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The mock vendor: every POST answered 200 at once.
async fn mock_vendor() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = Router::new().route("/{*rest}", post(|| async { StatusCode::OK }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(url)
}

/// The world the visits live in: the month before this one (by the system clock, which the
/// nodes run on), complete, so every visit is in the past.
struct World {
    pnrs: Vec<&'static str>,
    month: chrono::NaiveDate,
}

impl World {
    fn tag(c: usize) -> String {
        format!("04B{c:05X}")
    }

    /// Page `p`: visits `p * 1000 ..`, each of its own staff member's 12 slots a day (35
    /// minutes apart, 30 long), the days running through the month's 1st to 28th.
    fn page(&self, p: usize) -> String {
        let visits: Vec<Value> = (p * PAGE..(p + 1) * PAGE)
            .map(|i| {
                let c = i % SEEDED;
                let day = self.month + chrono::Days::new(((i / 12) % 28) as u64);
                let minutes = 7 * 60 + (i % 12) as u32 * 35;
                let at = |m: u32| format!("{}T{:02}:{:02}:00+01:00", day.format("%Y-%m-%d"), m / 60, m % 60);
                let reg = |m: u32| json!({"time": at(m), "method": "NFC", "tagUid": World::tag(c)});
                json!({"visitId": format!("NB-{i}"), "provider": {"organisationNumber": PROVIDER},
                    "client": {"personalIdentityNumber": self.pnrs[SEED_FROM + c]}, "staffId": format!("nb-{}", i / 12),
                    "checkIn": reg(minutes), "checkOut": reg(minutes + 30),
                    "plannedMinutes": 30, "status": "PERFORMED"})
            })
            .collect();
        json!({"type": "visitPage", "visits": visits}).to_string()
    }

    fn seed_decision(&self, c: usize) -> String {
        format!(
            "<Beslut xmlns=\"urn:carehub:vendor:combine:1\"><BeslutsId>SEED-{c}</BeslutsId><Personnummer>{}</Personnummer><Handlaggare>hl-1</Handlaggare><Utforare orgnr=\"{PROVIDER}\"/><GiltigFrom>{}</GiltigFrom><Beslutstidpunkt>{}T09:00:00+01:00</Beslutstidpunkt><Insats kod=\"PO\"><MinuterPerManad>1800</MinuterPerManad></Insats></Beslut>",
            self.pnrs[SEED_FROM + c],
            self.month,
            self.month
        )
    }
}

struct Tokens {
    combine: String,
    provider: String,
}

/// Seeds the clients whose visits the pages carry: a decision and a tag each, over HTTP.
async fn seed(http: &reqwest::Client, url: &str, world: &World, tokens: &Tokens) -> anyhow::Result<()> {
    for c in 0..SEEDED {
        let r = http
            .post(format!("{url}/v1/systems/combine/messages"))
            .bearer_auth(&tokens.combine)
            .body(world.seed_decision(c))
            .send()
            .await?;
        anyhow::ensure!(r.status() == reqwest::StatusCode::ACCEPTED, "seed decision {c}: {}", r.text().await?);
        let tag = json!({"tag_uid": World::tag(c), "client": world.pnrs[SEED_FROM + c], "installed_on": world.month.to_string()});
        let r = http.post(format!("{url}/v1/tags")).bearer_auth(&tokens.combine).json(&tag).send().await?;
        anyhow::ensure!(r.status().is_success(), "seed tag {c}: {}", r.text().await?);
    }
    Ok(())
}

/// A closed loop over the nodes, with the CPU it took.
async fn phase<F, Fut>(
    clients: usize,
    seconds: u64,
    pids: &[u32],
    database: Option<&str>,
    per_call: usize,
    call: F,
) -> anyhow::Result<Phase>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let acked = Arc::new(AtomicUsize::new(0));
    let client_of = Arc::new(AtomicUsize::new(0));
    let counted = acked.clone();
    let call = Arc::new(call);
    let before = sample(pids, database);
    let started = Instant::now();
    let run = closed_loop(clients, seconds, move |n| {
        let (call, counted) = (call.clone(), counted.clone());
        // The loop numbers calls, not clients; spread calls over the nodes in turn.
        let node = client_of.fetch_add(1, Ordering::Relaxed);
        async move {
            let ok = call(n, node).await;
            if ok {
                counted.fetch_add(1, Ordering::Relaxed);
            }
            ok
        }
    })
    .await?;
    let wall = started.elapsed().as_secs_f64();
    let cpu = used(&before, &sample(pids, database));
    Ok(Phase {
        rate: (run.count * per_call) as f64 / run.elapsed.as_secs_f64(),
        errors: run.errors,
        total: acked.load(Ordering::Relaxed) * per_call,
        wall,
        cpu,
    })
}

async fn one_run(
    setup: Setup,
    args: &NodesBenchArgs,
    dir: &Path,
    mock: &str,
    world: &Arc<World>,
    server: &str,
) -> anyhow::Result<RunResult> {
    let run_dir = tempfile::tempdir_in(dir)?;
    let scratch = match setup {
        Setup::Sqlite => None,
        Setup::Postgres(_) => Some(ScratchDb::create(server, "benchnodes").await?),
    };
    let database = match &scratch {
        Some(db) => db.url(),
        None => run_dir.path().join("bench.db").display().to_string(),
    };
    // The first node migrates the database; the others start on it.
    let mut nodes = Vec::new();
    for k in 0..setup.nodes() {
        nodes.push(start_node(run_dir.path(), &format!("n{}", k + 1), &database, mock).await?);
    }
    let urls: Arc<Vec<String>> = Arc::new(nodes.iter().map(|n| n.url.clone()).collect());
    let pids: Vec<u32> = nodes.iter().map(|n| n.child.id()).collect();
    let db_name = scratch.as_ref().map(|s| s.name().to_owned());
    let auth = Auth::new(SECRET, carehub_model::Clock::system());
    let ttl = Duration::from_secs(3600);
    let tokens = Arc::new(Tokens {
        combine: auth.issue("bench", Role::CaseManagement, Some("combine"), None, ttl)?,
        provider: auth.issue("bench", Role::ProviderSystem, Some("phoniro"), Some(PROVIDER), ttl)?,
    });
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;
    seed(&http, &urls[0], world, &tokens).await?;

    let decisions = {
        let (http, urls, tokens, world) = (http.clone(), urls.clone(), tokens.clone(), world.clone());
        phase(args.clients, args.seconds, &pids, db_name.as_deref(), 1, move |n, k| {
            let url = format!("{}/v1/systems/combine/messages", urls[k % urls.len()]);
            let body = super::decision(n, world.pnrs[n % SEED_FROM]);
            let (http, tokens) = (http.clone(), tokens.clone());
            async move {
                match http.post(&url).bearer_auth(&tokens.combine).body(body).send().await {
                    Ok(r) => r.status() == reqwest::StatusCode::ACCEPTED,
                    Err(_) => false,
                }
            }
        })
        .await?
    };
    let rejected = Arc::new(AtomicUsize::new(0));
    let visits = {
        let (http, urls, tokens, world, rejected) =
            (http.clone(), urls.clone(), tokens.clone(), world.clone(), rejected.clone());
        phase(args.page_clients, args.seconds, &pids, db_name.as_deref(), PAGE, move |n, k| {
            let url = format!("{}/v1/systems/phoniro/messages", urls[k % urls.len()]);
            let body = world.page(n);
            let (http, tokens, rejected) = (http.clone(), tokens.clone(), rejected.clone());
            async move {
                let Ok(r) = http.post(&url).bearer_auth(&tokens.provider).body(body).send().await else {
                    return false;
                };
                let good = r.status() == reqwest::StatusCode::ACCEPTED;
                let text = r.text().await.unwrap_or_default();
                rejected.fetch_add(text.matches("\"outcome\":\"rejected\"").count(), Ordering::Relaxed);
                good
            }
        })
        .await?
    };
    drop(nodes);
    drop(scratch);
    Ok(RunResult { setup, decisions, visits, rejected: rejected.load(Ordering::Relaxed) })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

pub async fn run(args: NodesBenchArgs) -> anyhow::Result<ExitCode> {
    let setups: Vec<Setup> = args.setups.iter().map(|s| Setup::parse(s)).collect::<Result<_, _>>()?;
    let server = args.postgres.clone().unwrap_or_else(scratch::server);
    let temp = tempfile::tempdir_in(args.dir.as_deref().unwrap_or(&std::env::temp_dir()))
        .context("cannot create a folder for the runs")?;
    let today = carehub_model::Clock::system().today();
    let this_month = today.with_day(1).context("a month")?;
    let month = (this_month - chrono::Days::new(1)).with_day(1).context("a month")?;
    let pnrs: Vec<&'static str> = include_str!("../../../data/skatteverket-testpersonnummer.txt").lines().collect();
    anyhow::ensure!(pnrs.len() >= SEED_FROM + SEEDED, "the test numbers file has too few numbers");
    let world = Arc::new(World { pnrs, month });
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let mock = mock_vendor().await?;
    out!(
        "carehub bench nodes: {cores} cores; {} rounds of {}; {} s per phase after a 2 s warm-up; \
         decisions from {} clients, visit pages of {PAGE} from {} clients; visits in {}",
        args.rounds,
        setups.iter().map(|s| s.name()).collect::<Vec<_>>().join(", "),
        args.seconds,
        args.clients,
        args.page_clients,
        month.format("%Y-%m")
    );
    out!("");
    out!(
        "{:>5} {:<22} {:>11} {:>10} {:>7} {:>7} {:>7} {:>11} {:>10} {:>7} {:>7} {:>7} {:>7}",
        "round",
        "setup",
        "decisions/s",
        "errors",
        "hub %",
        "gen %",
        "pg %",
        "visits/s",
        "errors",
        "hub %",
        "gen %",
        "pg %",
        "refused"
    );
    let mut results: Vec<RunResult> = Vec::new();
    for round in 0..args.rounds {
        let order: Vec<Setup> =
            if round.is_multiple_of(2) { setups.clone() } else { setups.iter().rev().copied().collect() };
        for setup in order {
            let r = one_run(setup, &args, temp.path(), &mock, &world, &server).await?;
            let (d, v) = (&r.decisions, &r.visits);
            out!(
                "{:>5} {:<22} {:>11.0} {:>10} {:>7.0} {:>7.0} {:>7.0} {:>11.0} {:>10} {:>7.0} {:>7.0} {:>7.0} {:>7}",
                round + 1,
                setup.name(),
                d.rate,
                d.errors,
                d.share(d.cpu.hubs, cores),
                d.share(d.cpu.generator, cores),
                d.share(d.cpu.postgres, cores),
                v.rate,
                v.errors,
                v.share(v.cpu.hubs, cores),
                v.share(v.cpu.generator, cores),
                v.share(v.cpu.postgres, cores),
                r.rejected
            );
            results.push(r);
        }
    }
    out!("(hub %, gen %, pg %: CPU of the hub processes, of this load generator with its mock vendor, and of PostgreSQL, as a share of all {cores} cores over the phase)");
    out!("");
    out!("Medians over the rounds, and CPU milliseconds per request (warm-up included):");
    out!(
        "{:<22} {:>11} {:>9} {:>9} {:>9} {:>11} {:>12} {:>12} {:>12}",
        "setup",
        "decisions/s",
        "hub ms",
        "pg ms",
        "gen ms",
        "visits/s",
        "hub ms/1000",
        "pg ms/1000",
        "gen ms/1000"
    );
    let mut medians = Vec::new();
    for setup in &setups {
        let mine: Vec<&RunResult> = results.iter().filter(|r| r.setup == *setup).collect();
        let per = |f: &dyn Fn(&RunResult) -> f64| median(mine.iter().map(|r| f(r)).collect());
        let per_req = |p: &Phase, cpu: f64| if p.total == 0 { 0.0 } else { 1e3 * cpu / p.total as f64 };
        let dec = per(&|r| r.decisions.rate);
        let vis = per(&|r| r.visits.rate);
        out!(
            "{:<22} {:>11.0} {:>9.3} {:>9.3} {:>9.3} {:>11.0} {:>12.1} {:>12.1} {:>12.1}",
            setup.name(),
            dec,
            per(&|r| per_req(&r.decisions, r.decisions.cpu.hubs)),
            per(&|r| per_req(&r.decisions, r.decisions.cpu.postgres)),
            per(&|r| per_req(&r.decisions, r.decisions.cpu.generator)),
            vis,
            per(&|r| 1000.0 * per_req(&r.visits, r.visits.cpu.hubs)),
            per(&|r| 1000.0 * per_req(&r.visits, r.visits.cpu.postgres)),
            per(&|r| 1000.0 * per_req(&r.visits, r.visits.cpu.generator)),
        );
        medians.push((*setup, dec, vis));
    }
    let find = |s: Setup| medians.iter().find(|m| m.0 == s).map(|m| (m.1, m.2));
    if let (Some(sqlite), Some(pg1)) = (find(Setup::Sqlite), find(Setup::Postgres(1))) {
        out!("");
        out!(
            "PostgreSQL / SQLite on one node: decisions {:.2}, visits {:.2} (target: at least 0.50)",
            pg1.0 / sqlite.0,
            pg1.1 / sqlite.1
        );
    }
    if let (Some(one), Some(three)) = (find(Setup::Postgres(1)), find(Setup::Postgres(3))) {
        out!(
            "three nodes / one node on PostgreSQL: decisions {:.2}, visits {:.2} (target: no loss, at least 1.00 within the noise)",
            three.0 / one.0,
            three.1 / one.1
        );
    }
    Ok(ExitCode::SUCCESS)
}
