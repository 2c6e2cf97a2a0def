//! `carehub conformance --vendor V --target URL --out DIR [--cases ID,..] [--trigger URL]`:
//! the arguments and the run, against any [`Counterpart`].
//!
//! Why the counterpart is passed in: the command line starts the mock hub toward the
//! vendor's `--target` and hands it here; this function neither knows nor cares how, so
//! the binary wires it once and the tests drive the same function with a fake.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::exchange::Counterpart;
use crate::report::{write_reports, Written};
use crate::scenario::case::Catalogue;
use crate::scenario::coverage::Universe;
use crate::scenario::play::PlayOptions;
use crate::scenario::run::{run_cases, Run, RunOptions};

#[derive(Debug, Clone, Args)]
pub struct ConformanceArgs {
    /// The vendor whose catalogue runs (`phoniro`, ...).
    #[arg(long)]
    pub vendor: String,
    /// The vendor's implementation: its base URL (or `sftp://...` for a file-based vendor).
    #[arg(long)]
    pub target: String,
    /// The folder the reports are written to (made if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Only these cases, by id, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Where each case's instructions are posted (`{"case": ID, "do": TEXT}`), for an
    /// automated harness on the vendor's side; without it they are printed.
    #[arg(long)]
    pub trigger: Option<String>,
    /// How long to wait for each expected exchange, in seconds.
    #[arg(long, default_value_t = 30)]
    pub wait: u64,
    /// The most one case may take, in seconds.
    #[arg(long, default_value_t = 120)]
    pub case_timeout: u64,
    /// The municipality's mapping folder (`<dir>/<vendor>/`), when it is not the built-in
    /// mappings: the coverage is then over those files.
    #[arg(long)]
    pub mappings: Option<PathBuf>,
}

/// A finished run and where its reports went.
#[derive(Debug)]
pub struct Outcome {
    pub run: Run,
    pub written: Written,
}

impl Outcome {
    /// 0 when every case passed, 1 when one failed (a CI gates on it).
    pub fn exit_code(&self) -> u8 {
        u8::from(self.run.score.failed > 0)
    }
}

/// Runs the vendor's catalogue (or the cases named) against `counterpart` and writes the
/// reports; prints the instructions (without `--trigger`) and a summary.
pub async fn run(args: &ConformanceArgs, counterpart: &dyn Counterpart) -> anyhow::Result<Outcome> {
    let catalogue = Catalogue::builtin(&args.vendor)?;
    let cases = catalogue.select(&args.cases)?;
    let set = carehub_adapters::load_mappings(&args.vendor, args.mappings.as_deref()).map_err(|errors| {
        anyhow::anyhow!(
            "the {} mapping files have problems:\n  - {}",
            args.vendor,
            errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  - ")
        )
    })?;
    let universe = Universe::from_mappings(&set);
    for problem in catalogue.check_against(&universe) {
        tracing::warn!(vendor = %args.vendor, %problem, "a case claims what the mappings do not have");
    }
    let instruct: Option<crate::scenario::play::Instruct> = match args.trigger {
        Some(_) => None,
        None => Some(Arc::new(|case: &str, text: &str| eprintln!("[{case}] now make the vendor's system: {text}"))),
    };
    let options = RunOptions {
        play: PlayOptions {
            default_within: Duration::from_secs(args.wait),
            poll: Duration::from_millis(100),
            trigger_url: args.trigger.clone(),
            instruct,
        },
        case_timeout: Duration::from_secs(args.case_timeout),
        target: args.target.clone(),
    };
    let run = run_cases(counterpart, &catalogue, &cases, &universe, &options).await;
    let written =
        write_reports(&run, &args.out).with_context(|| format!("writing the reports to {}", args.out.display()))?;
    for c in &run.cases {
        match &c.failure {
            None if c.not_applicable.is_some() => {
                println!("n/a     {}  {} -- {}", c.id, c.title, c.not_applicable.as_deref().unwrap_or_default())
            }
            None => println!("passed  {}  {}", c.id, c.title),
            Some(f) => println!("FAILED  {}  {} -- step {}: {}", c.id, c.title, f.step, f.reason),
        }
    }
    println!(
        "score {}/{} ({:.1}%), coverage {:.1}%\nreports: {}, {}, {}\nsha256 of the JSON report: {}",
        run.score.passed,
        run.score.total,
        run.score.share * 100.0,
        run.coverage.share * 100.0,
        written.html.display(),
        written.junit.display(),
        written.json.display(),
        written.sha256
    );
    Ok(Outcome { run, written })
}

/// `carehub conformance`: the run's arguments, and where the mock hub it starts listens.
#[derive(Debug, Clone, Args)]
pub struct ConformanceCommand {
    #[command(flatten)]
    pub run: ConformanceArgs,
    /// Where the mock hub listens (the hub's API the vendor's system calls, and `/mock/`),
    /// so the vendor's side can be configured up front. Default `127.0.0.1:8090`.
    #[arg(long)]
    pub listen: Option<String>,
    /// The mock's settings (as `carehub mock --config`); its `[system]` is the vendor's
    /// side, and `--target` is then only the report's name for it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Keep the hub's database and the journal (with the run's entry) here; default a
    /// temporary folder.
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// The vendor system's keys for the mock when no `--config` is given: the profile's
/// defaults, with its URL (and a token endpoint beside it, for the vendors that fetch
/// OAuth tokens) at `target`. A file vendor's system is the client of the mock's own drop
/// box, so its `sftp://` target needs no keys.
///
/// So that a run exercises the whole profile: a vendor whose profile has a feed the hub
/// pulls (Phoniro's visit pages) is pulled every second, and a provider's system is asked
/// to confirm a changed order again (`[deadlines] reconfirm_changes`), so the changes it
/// is sent carry their confirmation deadline.
pub fn system_for_target(vendor: &str, target: &str) -> anyhow::Result<crate::mock::MockConfig> {
    let profile = crate::mock::profile::profile(vendor)?;
    let url = reqwest::Url::parse(target).map_err(|e| anyhow::anyhow!("--target {target}: {e}"))?;
    if profile.transport == crate::mock::profile::Transport::Sftp {
        if url.scheme() != "sftp" {
            anyhow::bail!("--target {target}: {vendor} exchanges files; give the drop box as sftp://user@host:port");
        }
        return Ok(crate::mock::MockConfig::default());
    }
    if !matches!(url.scheme(), "http" | "https") {
        anyhow::bail!("--target {target}: {vendor} takes the hub's calls over HTTP(S); give its base URL");
    }
    let mut keys: toml::Table = toml::from_str(profile.defaults)?;
    for key in ["base_url", "callback_url", "endpoint_url"] {
        if keys.contains_key(key) {
            keys.insert(key.into(), toml::Value::String(target.trim_end_matches('/').to_owned()));
        }
    }
    if keys.contains_key("token_url") {
        let origin = url.origin().ascii_serialization();
        keys.insert("token_url".into(), toml::Value::String(format!("{origin}/oauth/token")));
    }
    let mappings = carehub_adapters::load_mappings(vendor, None)
        .map_err(|_| anyhow::anyhow!("the {vendor} mapping files have problems"))?;
    let pulled = mappings.mappings.iter().any(|m| {
        m.direction == carehub_core::mapping::Direction::In && m.message == carehub_model::MessageType::Visits
    });
    if pulled {
        keys.insert("visits_poll_seconds".into(), toml::Value::Integer(1));
    }
    let deadlines = (profile.side == crate::mock::profile::Side::Provider).then(|| {
        let mut d = toml::Table::new();
        d.insert("reconfirm_changes".into(), toml::Value::Boolean(true));
        d
    });
    Ok(crate::mock::MockConfig { system: Some(keys), deadlines, ..crate::mock::MockConfig::default() })
}

/// Runs the catalogue against the mock hub and keeps the run's entry (score, coverage,
/// cases, the report's SHA-256) in the mock's journal, so `GET /mock/reports` shows which
/// run the vendor passed.
pub async fn run_on_mock(args: &ConformanceArgs, mock: &crate::mock::MockHub) -> anyhow::Result<Outcome> {
    let outcome = run(args, mock).await?;
    let entry = mock.record_report(&outcome.run, &outcome.written).await?;
    println!("kept in the mock's journal as run {} at {} (GET /mock/reports)", entry.id, entry.at.to_rfc3339());
    Ok(outcome)
}

/// `carehub conformance`: starts the mock hub toward the vendor's `--target`, prints where
/// the vendor's system reaches it, runs the catalogue, and exits 0 when every case passed,
/// 1 when one failed, 2 for a mistake in the arguments.
pub async fn main(command: ConformanceCommand) -> anyhow::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let usage = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(2))
    };
    let args = &command.run;
    let catalogue = match Catalogue::builtin(&args.vendor) {
        Ok(c) => c,
        Err(e) => return usage(&e),
    };
    let earliest = match catalogue.select(&args.cases) {
        Ok(cases) => cases.iter().filter_map(|c| c.start()).min(),
        Err(e) => return usage(&e),
    };
    let (mut config, base) = match &command.config {
        Some(path) => match crate::mock::MockConfig::load(path) {
            Ok(c) => c,
            Err(e) => return usage(&e),
        },
        None => match system_for_target(&args.vendor, &args.target) {
            Ok(c) => (c, PathBuf::from(".")),
            Err(e) => return usage(&e),
        },
    };
    // The cases set the mock's clock to their own days; the tokens the mock issues (and
    // prints) must already be valid on the earliest of them, so its clock starts there.
    if config.at.is_none() {
        config.at = earliest.map(|at| at.to_rfc3339());
    }
    let options = crate::mock::MockOptions {
        vendor: args.vendor.clone(),
        config,
        base,
        data: command.data.clone(),
        listen: command.listen.clone(),
        journal: crate::mock::journal::JournalMode::On,
    };
    let mock = match crate::mock::MockHub::start(options).await {
        Ok(m) => m,
        Err(e) if e.is_usage() => return usage(&e),
        Err(e) => return Err(e.into()),
    };
    println!("carehub conformance: {} against {}", args.vendor, args.target);
    println!("  hub API      {}/v1/systems/{}/messages", mock.url(), mock.system());
    println!("  token        {}", mock.token());
    println!("  journal      {}/mock/journal.html", mock.url());
    println!("  data         {}", mock.data().display());
    if let Some(d) = mock.dropbox() {
        println!("  sftp         sftp://{}@{} (password {})", d.user, d.addr, d.password);
        println!("  host key     {}", d.fingerprint);
    }
    let outcome = run_on_mock(args, &mock).await;
    mock.stop().await;
    let outcome = outcome?;
    Ok(ExitCode::from(outcome.exit_code()))
}
