//! `carehub bench mock`: the mock hub a vendor tests against, under load beside Stoplight
//! Prism, and the time a whole conformance catalogue takes (issue 17; targets: at least
//! ten times Prism's throughput, p99 under 10 ms, a catalogue in under 60 s).
//!
//! Why Prism: it is what a vendor would otherwise reach for to mock an API from its
//! OpenAPI document. It checks a request against a schema and answers an example; the mock
//! hub runs the hub itself (mapping, validation, the store) and journals every exchange,
//! so the comparison says what that costs, or saves, against the usual tool.
//!
//! Method:
//! 1. The mock hub for Phoniro starts in this process as `carehub mock --vendor phoniro`
//!    runs it (a fresh data folder, the journal on, default settings), its clock at the
//!    bench's instant, with one order set up through its state API. Prism starts as a child
//!    process (`prism mock`, from npm `@stoplight/prism-cli`) on a free port of 127.0.0.1,
//!    mocking the same endpoint from `devkit/bench/phoniro-visit.openapi.yaml`.
//! 2. Load: a closed loop of `clients` clients, each posting a valid Phoniro visit push
//!    (a distinct visit id each time, for the order set up) to
//!    `POST /v1/systems/phoniro/messages` with the provider's token, again as soon as the
//!    last was answered, for `seconds` after a 2-second warm-up. Mock and Prism take turns
//!    over `rounds`, in reverse order every other round, so a drift of the shared machine
//!    weighs on both alike. A call counts when it is answered 202.
//!
//!    Beside it, unless `--no-journal-off`, a second mock hub exactly like the first but
//!    with its journal off (`carehub mock --journal off`, a measuring aid only), with the
//!    same order set up, takes its turn in each round too: the difference between the two
//!    is what the journal costs, the rest is the hub's own work and the middleware's.
//! 3. The catalogue: the correct Phoniro system (`conformance::http`) behind a fresh mock
//!    hub, every case of the Phoniro catalogue run as `carehub conformance` runs it (as
//!    `tests/conformance/http.rs` does), timed from the first case to the report written.
//!
//! The load generator shares this process, and so the machine's cores, with the mock hub;
//! Prism is a Node process of its own. Both figures are of one machine and its load, which
//! the report's first line gives.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use carehub_conformance::cli::{run_on_mock, ConformanceArgs};
use carehub_conformance::mock::journal::JournalMode;
use carehub_conformance::mock::{MockConfig, MockHub, MockOptions};
use carehub_model::Clock;
use carehub_server::auth::{Auth, Role};
use serde_json::json;

use super::harness::{closed_loop, Run, BENCH_AT};
use crate::conformance::http::{HubAccess, RestVendor};

/// The OpenAPI 3 document Prism mocks: the Phoniro visit push, nothing else.
pub const OPENAPI: &str = include_str!("../../bench/phoniro-visit.openapi.yaml");

/// The order every pushed visit is for, set up through the mock's state API.
const ORDER: &str = "O-BENCH-1";
/// The client of that order: the profiles' sample client.
const CLIENT: &str = "193601016987";
/// Where the catalogue's mock clock starts, as in the conformance tests.
const CATALOGUE_AT: &str = "2026-11-02T08:00:00+01:00";
/// Room in the visits' numbering for one turn's calls: each round numbers its visits from
/// the last round's end (a visit sent again would be a duplicate, answered 200).
const TURN_CALLS: usize = 250_000;
const SECRET: &str = "bench-mock-secret-bench-mock-secret-0123";

#[derive(Debug, Clone, clap::Args)]
pub struct MockBenchArgs {
    /// Concurrent clients in the closed loop.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Measured seconds per turn (after a 2-second warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Rounds; each runs the mock hub and Prism once.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// The command that runs Prism (split on spaces); default `prism` when it is on the
    /// PATH, else `npx --yes @stoplight/prism-cli`.
    #[arg(long)]
    pub prism: Option<String>,
    /// Leave Prism out (the mock's figures and the catalogue only).
    #[arg(long)]
    pub no_prism: bool,
    /// Leave the catalogue's timing out.
    #[arg(long)]
    pub no_catalogue: bool,
    /// Leave out the mock hub with its journal off (the turn that shows what the journal
    /// costs).
    #[arg(long)]
    pub no_journal_off: bool,
}

/// How to install what Prism needs, printed when it is missing.
const INSTALL: &str = "Prism needs Node.js: on Debian or Ubuntu `apt-get install -y nodejs npm`, then \
`npm install -g @stoplight/prism-cli` (or `npm install --prefix DIR @stoplight/prism-cli` and \
`--prism DIR/node_modules/.bin/prism`); or run with --no-prism";

/// Whether `program` is an executable file on the PATH (or a path to one).
fn on_path(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// The command that runs Prism: `--prism` split on whitespace, or `prism` on the PATH, or
/// npx; `None` when none of them can run.
pub fn prism_command(given: Option<&str>, on_path: impl Fn(&str) -> bool) -> Option<Vec<String>> {
    match given {
        Some(text) => {
            let words: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
            words.first().is_some_and(|p| on_path(p)).then_some(words)
        }
        None if on_path("prism") => Some(vec!["prism".into()]),
        None if on_path("node") && on_path("npx") => {
            Some(["npx", "--yes", "@stoplight/prism-cli"].iter().map(|s| (*s).to_owned()).collect())
        }
        None => None,
    }
}

/// The visit push the clients send: valid for the order set up, checked in by NFC and out
/// by hand. Each call's visit is distinct in id, staff and time (the hub takes a visit of
/// the same client at the same times as a copy, VIS007): call `n` starts `n` seconds
/// before 10:00 on the bench's day, by one of 997 staff.
fn visit(n: usize) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-28T10:00:00+01:00").unwrap_or_default();
    let back = i64::try_from(n % 1_000_000).unwrap_or(0);
    let check_in = base - chrono::Duration::seconds(back);
    let check_out = check_in + chrono::Duration::minutes(45);
    json!({"type": "visit", "visitId": format!("V-BENCH-{n}"), "provider": {"organisationNumber": "5599000014"},
        "client": {"personalIdentityNumber": CLIENT}, "orderId": ORDER, "staffId": format!("st-{}", n % 997),
        "checkIn": {"time": check_in.to_rfc3339(), "method": "NFC", "tagUid": "04A21BC3"},
        "checkOut": {"time": check_out.to_rfc3339(), "method": "MANUAL", "reason": "Taggen saknades"},
        "plannedMinutes": 45, "activities": ["CARE"], "status": "PERFORMED", "doubleStaffing": false})
    .to_string()
}

/// Prism as a child process, stopped when dropped.
struct Prism {
    child: Child,
    url: String,
}

impl Drop for Prism {
    /// Stops Prism's whole process group: through npx, Prism is a grandchild of the child.
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port on 127.0.0.1 (bound and let go: Prism binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn start_prism(command: &[String], document: &Path, log: &Path) -> anyhow::Result<Prism> {
    let port = free_port()?;
    let out = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone()?;
    let child = Command::new(&command[0])
        .args(&command[1..])
        .args(["mock", "--host", "127.0.0.1", "--port", &port.to_string(), "--errors"])
        .arg(document)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("cannot start {}", command.join(" ")))?;
    let prism = Prism { child, url: format!("http://127.0.0.1:{port}") };
    // npx may fetch the package first: up to two minutes.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(prism);
        }
        if Instant::now() > deadline {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            anyhow::bail!("Prism did not listen on port {port} within 120 s; its output:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One target of the load: where to post and with what token.
#[derive(Clone)]
struct Target {
    name: &'static str,
    url: String,
    token: String,
}

/// The closed loop on one target, and the first refusal it met (status and body), if any.
/// Calls are numbered from `first`, so no two turns send the same visit.
async fn load(target: &Target, clients: usize, seconds: u64, first: usize) -> anyhow::Result<(Run, Option<String>)> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    let (url, token) = (target.url.clone(), target.token.clone());
    let first_error = Arc::new(OnceLock::new());
    let seen = first_error.clone();
    let run = closed_loop(clients, seconds, move |n| {
        let (http, url, token, seen) = (http.clone(), url.clone(), token.clone(), seen.clone());
        let body = visit(first + n);
        async move {
            let sent = http.post(&url).bearer_auth(&token).header("content-type", "application/json").body(body).send();
            match sent.await {
                Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => r.bytes().await.is_ok(),
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    let _ = seen.set(format!("{status}: {}", text.chars().take(300).collect::<String>()));
                    false
                }
                Err(e) => {
                    let _ = seen.set(e.to_string());
                    false
                }
            }
        }
    })
    .await?;
    Ok((run, first_error.get().cloned()))
}

/// One call before the load, so a target that refuses the visit stops the bench with its
/// answer instead of a run of errors.
async fn probe(target: &Target) -> anyhow::Result<()> {
    let r = reqwest::Client::new()
        .post(&target.url)
        .bearer_auth(&target.token)
        .header("content-type", "application/json")
        .body(visit(999_999))
        .send()
        .await
        .with_context(|| format!("{}: the first visit", target.name))?;
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    anyhow::ensure!(
        status == reqwest::StatusCode::ACCEPTED,
        "{}: the first visit was answered {status}: {body}",
        target.name
    );
    Ok(())
}

fn one_line(name: &str, round: usize, r: &Run) -> f64 {
    let rate = r.count as f64 / r.elapsed.as_secs_f64();
    out!(
        "  {round:>5}  {name:<10} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>7}",
        r.count,
        rate,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3,
        r.max.as_secs_f64() * 1e3,
        r.errors
    );
    rate
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

pub async fn run(args: MockBenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.clients >= 1 && args.rounds >= 1, "--clients and --rounds must be at least 1");
    let prism_cmd = if args.no_prism {
        None
    } else {
        match prism_command(args.prism.as_deref(), on_path) {
            Some(c) => Some(c),
            None => {
                eprintln!(
                    "error: cannot run Prism ({}). {INSTALL}",
                    args.prism.as_deref().unwrap_or("no prism, node or npx on the PATH")
                );
                return Ok(ExitCode::from(2));
            }
        }
    };
    let temp = tempfile::tempdir().context("cannot create a folder")?;
    out!(
        "carehub bench mock: {} clients, {} s per turn after a 2 s warm-up, {} rounds, {} cores, load average {}",
        args.clients,
        args.seconds,
        args.rounds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        load_average()
    );

    // The mock hub, as `carehub mock --vendor phoniro` runs it, with one order to visit;
    // and the same with its journal off.
    let mock = mock_with_order(&temp.path().join("mock"), JournalMode::On).await?;
    let mut targets = vec![Target {
        name: "mock hub",
        url: format!("{}/v1/systems/phoniro/messages", mock.url()),
        token: mock.token().to_owned(),
    }];
    let unjournaled = if args.no_journal_off {
        None
    } else {
        let m = mock_with_order(&temp.path().join("mock-no-journal"), JournalMode::Off).await?;
        targets.push(Target {
            name: NO_JOURNAL,
            url: format!("{}/v1/systems/phoniro/messages", m.url()),
            token: m.token().to_owned(),
        });
        Some(m)
    };
    let prism = match &prism_cmd {
        Some(cmd) => {
            let document = temp.path().join("phoniro-visit.openapi.yaml");
            std::fs::write(&document, OPENAPI)?;
            let p = start_prism(cmd, &document, &temp.path().join("prism.log")).await?;
            targets.push(Target {
                name: "Prism",
                url: format!("{}/v1/systems/phoniro/messages", p.url),
                token: mock.token().to_owned(),
            });
            Some(p)
        }
        None => None,
    };
    for t in &targets {
        probe(t).await?;
    }
    out!("");
    out!(
        "  {:>5}  {:<10} {:>9} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "round",
        "target",
        "requests",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors"
    );
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut p99s: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut p50s: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    for round in 1..=args.rounds {
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if round % 2 == 0 {
            order.reverse();
        }
        for i in order {
            let (r, refused) = load(&targets[i], args.clients, args.seconds, (round - 1) * TURN_CALLS).await?;
            if let Some(why) = refused {
                out!("         {}: first error: {why}", targets[i].name);
            }
            rates[i].push(one_line(targets[i].name, round, &r));
            p50s[i].push(r.p50.as_secs_f64() * 1e3);
            p99s[i].push(r.p99.as_secs_f64() * 1e3);
        }
    }
    let journaled = mock.journal().head();
    drop(prism);
    mock.stop().await;
    if let Some(m) = unjournaled {
        m.stop().await;
    }
    out!("");
    let mut medians = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let (rate, p50, p99) = (median(&mut rates[i]), median(&mut p50s[i]), median(&mut p99s[i]));
        out!(
            "  {:<10} median of {} rounds: {rate:>8.0} requests/s, p50 {p50:.2} ms, p99 {p99:.2} ms",
            t.name,
            args.rounds
        );
        medians.push((rate, p99));
    }
    out!("  the mock's journal holds {journaled} exchanges");
    let (mock_rate, mock_p99) = medians[0];
    if let Some(i) = targets.iter().position(|t| t.name == NO_JOURNAL) {
        let (off_rate, off_p99) = medians[i];
        out!(
            "  the journal's cost: on {mock_rate:.0} requests/s, p99 {mock_p99:.2} ms; off {off_rate:.0} requests/s, p99 {off_p99:.2} ms; on / off throughput {:.2}",
            mock_rate / off_rate.max(1e-9)
        );
    }
    out!("  target: mock p99 under 10 ms: {}", if mock_rate > 0.0 && mock_p99 < 10.0 { "met" } else { "MISSED" });
    if let Some((prism_rate, _)) = targets.iter().position(|t| t.name == "Prism").map(|i| medians[i]) {
        let ratio = mock_rate / prism_rate.max(1e-9);
        out!(
            "  mock / Prism throughput: {ratio:.1}x; target at least 10x: {}",
            if ratio >= 10.0 { "met" } else { "MISSED" }
        );
    }
    if !args.no_catalogue {
        out!("");
        catalogue().await?;
    }
    out!("  load average at the end {}", load_average());
    Ok(ExitCode::SUCCESS)
}

/// The name of the mock hub's turn with the journal off.
const NO_JOURNAL: &str = "no journal";

/// A mock hub for Phoniro in `data`, as `carehub mock --vendor phoniro [--journal off]`
/// runs it, its clock at the bench's instant, with the order the visits are for set up
/// through its state API.
async fn mock_with_order(data: &Path, journal: JournalMode) -> anyhow::Result<MockHub> {
    let mock = MockHub::start(MockOptions {
        vendor: "phoniro".into(),
        config: MockConfig { at: Some(BENCH_AT.into()), ..MockConfig::default() },
        data: Some(data.to_owned()),
        listen: Some("127.0.0.1:0".into()),
        journal,
        ..MockOptions::default()
    })
    .await?;
    let set_up = reqwest::Client::new()
        .put(format!("{}/mock/state/order/{ORDER}", mock.url()))
        .json(&json!({"client": CLIENT}))
        .send()
        .await?;
    anyhow::ensure!(set_up.status().is_success(), "the mock did not set up the order: {}", set_up.text().await?);
    Ok(mock)
}

/// The Phoniro catalogue against the correct Phoniro, timed.
async fn catalogue() -> anyhow::Result<()> {
    let vendor = RestVendor::phoniro(None).await?;
    let config = MockConfig {
        at: Some(CATALOGUE_AT.into()),
        jwt_secret: Some(SECRET.into()),
        ..carehub_conformance::cli::system_for_target("phoniro", &vendor.base_url)?
    };
    let hub = MockHub::start(MockOptions {
        vendor: "phoniro".into(),
        config,
        listen: Some("127.0.0.1:0".into()),
        ..MockOptions::default()
    })
    .await?;
    // The token of another role, which one case has the system try first.
    let at = chrono::DateTime::parse_from_rfc3339(CATALOGUE_AT)?.to_utc();
    let wrong = Auth::new(SECRET, Clock::starting_at(at)).issue(
        "phoniro",
        Role::CaseManagement,
        Some("phoniro"),
        None,
        Duration::from_secs(10 * 365 * 86_400),
    )?;
    vendor.connect(HubAccess {
        url: hub.url().to_owned(),
        system: hub.system().to_owned(),
        token: hub.token().to_owned(),
        wrong_role_token: Some(wrong),
    });
    let out_dir: PathBuf = tempfile::tempdir()?.keep();
    let args = ConformanceArgs {
        vendor: "phoniro".into(),
        target: vendor.base_url.clone(),
        out: out_dir.clone(),
        cases: Vec::new(),
        trigger: Some(vendor.trigger_url.clone()),
        wait: 20,
        case_timeout: 90,
        mappings: None,
    };
    let started = Instant::now();
    let outcome = run_on_mock(&args, &hub).await;
    let took = started.elapsed().as_secs_f64();
    hub.stop().await;
    vendor.stop();
    let outcome = outcome?;
    out!(
        "  the Phoniro catalogue against the correct Phoniro: {took:.1} s, {} of {} cases passed; target under 60 s: {}",
        outcome.run.score.passed,
        outcome.run.score.total,
        if took < 60.0 { "met" } else { "MISSED" }
    );
    out!("  its reports: {}", out_dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prism_is_run_as_given_or_from_the_path_or_through_npx_or_not_at_all() {
        let only = |have: &'static [&'static str]| move |p: &str| have.contains(&p);
        assert_eq!(
            prism_command(Some("/opt/prism/bin/prism"), only(&["/opt/prism/bin/prism"])),
            Some(vec!["/opt/prism/bin/prism".to_owned()])
        );
        assert_eq!(prism_command(Some("npx --yes @stoplight/prism-cli"), only(&["npx"])).map(|c| c.len()), Some(3));
        assert_eq!(prism_command(Some("/missing/prism"), only(&[])), None);
        assert_eq!(prism_command(None, only(&["prism", "npx"])), Some(vec!["prism".to_owned()]));
        assert_eq!(prism_command(None, only(&["node", "npx"])).map(|c| c[0].clone()), Some("npx".to_owned()));
        assert_eq!(prism_command(None, only(&["npx"])), None, "npx without node cannot run Prism");
    }

    #[test]
    fn the_visit_is_one_the_phoniro_mapping_takes() {
        let set = carehub_adapters::load_mappings("phoniro", None).expect("the phoniro mappings");
        let translated =
            set.translate_bytes(visit(7).as_bytes()).map_err(|(_, e)| e.to_string()).expect("it translates");
        assert_eq!(&*translated.mapping, "phoniro/visit.in.toml", "read by the single visit's mapping");
        assert!(format!("{:?}", translated.message).contains("V-BENCH-7"));
    }

    #[test]
    fn the_openapi_document_describes_the_pushed_endpoint() {
        assert!(OPENAPI.starts_with("# What Stoplight Prism mocks"));
        assert!(OPENAPI.contains("openapi: 3.0.3"));
        assert!(OPENAPI.contains("/v1/systems/phoniro/messages:"));
    }
}
