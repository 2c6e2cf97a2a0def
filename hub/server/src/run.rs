//! Running an assembled hub: the HTTP server on the caller's listener, the delivery loop,
//! the pollers, the visit forwarder and the checkpointer, and stopping them all gracefully.
//! The pollers, the forwarder and the checkpointer each run under a lease of this node's
//! [`Ownership`](carehub_core::delivery::lease::Ownership), so that of several nodes on one
//! database one at a time runs each; stopping gives the leases up.
//!
//! [`start`] serves a [`Runtime`] on a listener the caller bound (tests and the demo bind
//! `127.0.0.1:0`) and returns a [`RunningHub`] that stops it. `carehub serve`, the demo, the
//! benchmarks and the integration tests all start the hub through here.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use carehub_core::delivery::lease::Lease;
use carehub_core::delivery::poller::{FeedPoller, Poller};
use carehub_core::metrics::Metrics;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::assemble::Runtime;
use crate::http::AppState;

/// A poller's work once it is given its lease.
type BoxedWork = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

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

    /// Stops at once, as a killed process would, for tests of what other nodes do then:
    /// every task is aborted where it stands, nothing is drained, no lease is given up
    /// (each runs out at its end), no delivery's claim is let go.
    pub fn abort(self) {
        self.server.abort();
        self.delivery.abort();
        for p in self.pollers {
            p.abort();
        }
    }
}

/// Serves `runtime` on `listener` and starts its delivery loop.
pub async fn start(runtime: Runtime, listener: tokio::net::TcpListener) -> anyhow::Result<RunningHub> {
    start_with(runtime, listener, |app| app).await
}

/// [`start`], serving the hub's router as `wrap` makes it: the mock hub
/// (`carehub-conformance`) adds its journal around the API and its own `/mock/` routes
/// beside it, on the same listener and accept loop as the hub's.
pub async fn start_with(
    runtime: Runtime,
    listener: tokio::net::TcpListener,
    wrap: impl FnOnce(axum::Router) -> axum::Router,
) -> anyhow::Result<RunningHub> {
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
    // Another node's new outbox rows wake this node's delivery loop too (PostgreSQL).
    runtime.delivery.store.watch_outbox(runtime.delivery.notify.clone());
    // Each poller, the visit forwarder and the checkpointer run under a lease, so that of
    // several nodes on one database one at a time runs each (`delivery::lease`).
    let ownership = runtime.ownership.clone();
    let leased = |name: String, work: Box<dyn FnOnce(Lease) -> BoxedWork + Send>| -> JoinHandle<()> {
        let ownership = ownership.clone();
        tokio::spawn(async move { ownership.hold(&name, work).await })
    };
    let mut pollers: Vec<JoinHandle<()>> = Vec::new();
    for system in state.hub.registry().iter() {
        if let Some(inbox) = system.inbox.clone() {
            let poller = Poller { hub: state.hub.clone(), system: system.clone(), inbox };
            let stop = rx.clone();
            pollers.push(leased(
                Poller::lease_name(&system.name),
                Box::new(move |lease| Box::pin(poller.run_leased(lease, stop))),
            ));
        }
        if let Some((feed, every)) = system.feed.clone() {
            let puller = FeedPoller { hub: state.hub.clone(), system: system.clone(), feed, every };
            let stop = rx.clone();
            pollers.push(leased(
                FeedPoller::lease_name(&system.name),
                Box::new(move |lease| Box::pin(puller.run_leased(lease, stop))),
            ));
        }
    }
    let (forwarder_hub, stop) = (state.hub.clone(), rx.clone());
    pollers.push(leased(
        carehub_core::hub::FORWARDER_LEASE.to_owned(),
        Box::new(move |lease| {
            Box::pin(async move {
                forwarder_hub.run_visit_forwarder_leased(std::time::Duration::from_secs(5), lease, stop).await;
            })
        }),
    ));
    // Intake's brake reads the outbox's backlog twice a second (see `IntakeGate`): the
    // pending rows only, since counting the whole outbox grows with every order delivered.
    let (gate, gate_hub, mut gate_rx) = (state.gate.clone(), state.hub.clone(), rx.clone());
    pollers.push(tokio::spawn(async move {
        loop {
            if let Ok(pending) = gate_hub.store().pending_deliveries().await {
                gate.observe(pending);
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                _ = gate_rx.changed() => break,
            }
        }
    }));
    if let (Some(checkpointer), Some(every)) = (state.checkpointer.clone(), runtime.checkpoint_every) {
        let stop = rx.clone();
        pollers.push(leased(
            carehub_core::audit::CHECKPOINTER_LEASE.to_owned(),
            Box::new(move |lease| Box::pin(checkpointer.run_leased(every, lease, stop))),
        ));
    }
    let app = wrap(crate::http::app(state.clone()));
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
