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
