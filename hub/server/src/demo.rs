//! The demo (placeholder while it is written).
use std::path::PathBuf;
use std::process::ExitCode;
pub struct DemoOptions {
    pub db: Option<PathBuf>,
    pub serve: bool,
}
pub async fn run(_o: DemoOptions) -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}
