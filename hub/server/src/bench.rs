//! Benchmarks (placeholder while they are written).
use std::process::ExitCode;
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    Decisions,
}
pub async fn run(_c: BenchCommand) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
