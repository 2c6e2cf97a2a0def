//! Running an assembled hub: the HTTP server on the caller's listener, the delivery loop,
//! the pollers, the visit forwarder and the checkpointer, and stopping them all gracefully.
//!
//! [`start`] serves a [`Runtime`] on a listener the caller bound (tests and the demo bind
//! `127.0.0.1:0`) and returns a [`RunningHub`] that stops it. `carehub serve`, the demo, the
//! benchmarks and the integration tests all start the hub through here.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use carehub_core::metrics::Metrics;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::assemble::Runtime;
use crate::http::AppState;

/// A hub serving HTTP and delivering its outbox.
pub struct RunningHub {
    pub addr: SocketAddr,
    pub scheme: &'static str,
    pub state: AppState,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    delivery: JoinHandle<()>,
    pollers: Vec<JoinHandle<()>>,
}

impl RunningHub {
    /// The base URL of the API.
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }

    /// Stops taking requests, lets in-flight requests and deliveries finish, and returns.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.wait().await;
    }

    /// Resolves when the server has stopped (for `carehub serve`, once its shutdown handle
    /// was used): requests in flight answered (within the drain timeout), the delivery
    /// loop's attempts in flight recorded, every poller's current step done.
    pub async fn wait(self) -> anyhow::Result<()> {
        let result = self.server.await;
        let _ = self.shutdown.send(true);
        let _ = self.delivery.await;
        for p in self.pollers {
            let _ = p.await;
        }
        info!("carehub stopped");
        result.context("the server task failed")?.context("the server failed")
    }

    /// A handle that stops this hub when sent `true`.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }
}

/// Serves `runtime` on `listener` and starts its delivery loop.
pub async fn start(runtime: Runtime, listener: tokio::net::TcpListener) -> anyhow::Result<RunningHub> {
    let addr = listener.local_addr().context("the listener has no address")?;
    let (tx, rx) = watch::channel(false);
    let state = runtime.state.clone();
    let running = state.delivery_running.clone();
    let delivery_rx = rx.clone();
    let delivery_loop = runtime.delivery.clone();
    let delivery = tokio::spawn(async move {
        running.store(true, Ordering::SeqCst);
        delivery_loop.run(delivery_rx).await;
        running.store(false, Ordering::SeqCst);
    });
    let mut pollers: Vec<JoinHandle<()>> = state
        .hub
        .registry()
        .iter()
        .filter_map(|system| {
            let inbox = system.inbox.clone()?;
            let poller =
                carehub_core::delivery::poller::Poller { hub: state.hub.clone(), system: system.clone(), inbox };
            Some(tokio::spawn(poller.run(rx.clone())))
        })
        .collect();
    for system in state.hub.registry().iter() {
        if let Some((feed, every)) = system.feed.clone() {
            let puller = carehub_core::delivery::poller::FeedPoller {
                hub: state.hub.clone(),
                system: system.clone(),
                feed,
                every,
            };
            pollers.push(tokio::spawn(puller.run(rx.clone())));
        }
    }
    let forwarder_hub = state.hub.clone();
    let forwarder_rx = rx.clone();
    pollers.push(tokio::spawn(async move {
        forwarder_hub.run_visit_forwarder(std::time::Duration::from_secs(5), forwarder_rx).await;
    }));
    // Intake's brake reads the outbox's backlog twice a second (see `IntakeGate`).
    let (gate, gate_hub, mut gate_rx) = (state.gate.clone(), state.hub.clone(), rx.clone());
    pollers.push(tokio::spawn(async move {
        loop {
            if let Ok(counts) = gate_hub.store().outbox_counts().await {
                gate.observe(counts.pending);
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                _ = gate_rx.changed() => break,
            }
        }
    }));
    if let (Some(checkpointer), Some(every)) = (state.checkpointer.clone(), runtime.checkpoint_every) {
        pollers.push(tokio::spawn(checkpointer.run(every, rx.clone())));
    }
    let app = crate::http::app(state.clone());
    let (tls, limits) = (runtime.tls.clone(), runtime.limits);
    let events = Arc::new(ConnectionMetrics(state.hub.metrics().clone()));
    let server = tokio::spawn(crate::accept::serve(listener, app, tls, limits, events, rx));
    let scheme = if runtime.tls.is_some() { "https" } else { "http" };
    info!(%addr, scheme, "carehub listening");
    Ok(RunningHub { addr, scheme, state, shutdown: tx, server, delivery, pollers })
}

/// Connection counts for `/metrics`.
struct ConnectionMetrics(Arc<Metrics>);

impl crate::accept::ConnectionEvents for ConnectionMetrics {
    fn opened(&self) {
        self.0.connection_opened();
    }
    fn closed(&self) {
        self.0.connection_closed();
    }
    fn refused(&self) {
        self.0.connection_refused();
    }
}
