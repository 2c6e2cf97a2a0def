//! `carehub replay`: resend dead letters (all, or those named) and report how each ended;
//! `--list` only lists them.

use std::process::ExitCode;
use std::sync::Arc;

use carehub_core::store::{DeliveryFilter, Store};
use carehub_model::Clock;

use crate::config::Config;

pub(super) async fn run(config: Config, ids: Vec<i64>, list: bool) -> anyhow::Result<ExitCode> {
    let runtime = crate::assemble::build(&config, Clock::system())?;
    let store: Arc<dyn Store> = runtime.state.hub.store().clone();
    let dead = store
        .deliveries(DeliveryFilter { state: Some("dead".into()), limit: 10_000, ..DeliveryFilter::default() })
        .await?;
    let chosen: Vec<_> = dead.into_iter().filter(|d| ids.is_empty() || ids.contains(&d.id)).collect();
    if chosen.is_empty() {
        crate::out!("no dead letters{}", if ids.is_empty() { "" } else { " with those ids" });
        return Ok(ExitCode::SUCCESS);
    }
    for d in &chosen {
        crate::out!(
            "dead letter {}: {} to {} (order {}), {} attempts, last error: {}",
            d.id,
            d.message_type,
            d.system,
            d.order_id.as_deref().unwrap_or("-"),
            d.attempts,
            d.last_error.as_deref().unwrap_or("-")
        );
    }
    if list {
        return Ok(ExitCode::SUCCESS);
    }
    let ids: Vec<i64> = chosen.iter().map(|d| d.id).collect();
    let requeued = runtime.state.hub.replay(Some(ids.clone())).await?;
    crate::out!("requeued {} deliveries; delivering", requeued.len());
    let results = runtime.delivery.drain(&ids).await?;
    let mut failed = false;
    for d in results {
        if d.state == "delivered" {
            crate::out!("delivery {}: delivered after {} attempt(s)", d.id, d.attempts);
        } else {
            failed = true;
            crate::out!("delivery {}: {} again: {}", d.id, d.state, d.last_error.as_deref().unwrap_or("-"));
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
