//! `carehub serve`: assemble the hub from its configuration and run it until a signal.

use std::process::ExitCode;

use anyhow::Context;
use carehub_model::Clock;

use crate::config::Config;

pub(super) async fn run(config: Config) -> anyhow::Result<ExitCode> {
    let runtime = crate::assemble::build(&config, Clock::system())?;
    let listener = tokio::net::TcpListener::bind(&config.hub.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.hub.listen))?;
    let hub = crate::run::start(runtime, listener).await?;
    let stop = hub.shutdown_handle();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    hub.wait().await?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
