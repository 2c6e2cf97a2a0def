//! The `carehub` executable: one command line made of the product's commands
//! ([`carehub_server::cli::Command`]), the vendors' `mock` and `conformance`
//! ([`carehub_conformance`]) and
//! the tooling's `demo` and `bench` ([`carehub_devkit`]).
//!
//! Why a package of its own: the product library (`carehub-server`) must not depend on
//! the devkit's mock vendors, benchmarks and fixtures, yet `carehub demo` and
//! `carehub bench` are commands of the same executable as `carehub serve`. Only this small
//! package sees both, so the dependency points from the executable to the tooling and never
//! from the product to it. It also holds the process-wide choices (the global allocator,
//! the async runtime) and the integration tests, which run this binary.

use std::process::ExitCode;

use carehub_conformance::cli::ConformanceCommand;
use carehub_conformance::mock::MockArgs;
use carehub_devkit::{bench::BenchCommand, demo::DemoArgs};
use carehub_server::cli::init_tracing;
use carehub_server::config::LogFormat;
use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "carehub", version, about = "The integration hub for Swedish municipal home care")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `demo` first and `bench` last, the product's commands between, as `carehub --help` has
/// always listed them.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the demo municipality end to end on an embedded database; no setup needed.
    Demo(DemoArgs),
    /// Play the hub toward one vendor's system, for testing that system (docs/vendors.md).
    Mock(MockArgs),
    /// Run a vendor's conformance catalogue against its system and write the report
    /// (docs/vendors.md); exit 0 all passed, 1 some failed, 2 bad arguments.
    Conformance(ConformanceCommand),
    #[command(flatten)]
    Product(carehub_server::cli::Command),
    /// Measure throughput and latency (see BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(args) => {
            // The demo's output is its narrative; `CAREHUB_LOG=info` shows the hub's log too.
            init_tracing("error", LogFormat::Text);
            carehub_devkit::demo::run(args).await
        }
        Command::Mock(args) => {
            // What the mock prints is where it listens and how to drive it; `CAREHUB_LOG`
            // shows the hub's log too.
            init_tracing("warn", LogFormat::Text);
            carehub_conformance::mock::run(args).await
        }
        Command::Conformance(command) => {
            // The run prints each case and the report's hash; `CAREHUB_LOG` shows the hub's log.
            init_tracing("warn", LogFormat::Text);
            carehub_conformance::cli::main(command).await
        }
        Command::Product(command) => carehub_server::cli::run(command).await,
        Command::Bench { command } => {
            init_tracing("error", LogFormat::Text);
            carehub_devkit::bench::run(command).await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
