//! [`AppState`], what every request handler can reach.
//!
//! `assemble` builds it from the configuration; the API only reads it, so it lives on the
//! API's side and the API imports nothing from the code that assembles or runs the hub.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use carehub_core::hub::Hub;

use crate::auth::Auth;

/// What every request handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    pub auth: Arc<Auth>,
    pub max_body: usize,
    pub delivery_running: Arc<AtomicBool>,
    /// `https` when served over TLS (for URLs the hub writes about itself).
    pub scheme: &'static str,
    /// Providers above this manual-registration share are marked in reports.
    pub manual_share_threshold: f64,
    /// Paces intake when the outbox falls behind.
    pub gate: Arc<IntakeGate>,
    /// Signs checkpoints of the message log, when a signing key is configured.
    pub checkpointer: Option<Arc<carehub_core::audit::Checkpointer>>,
    /// The auditors' web console, when `[console]` is configured.
    pub console: Option<Arc<super::console::sessions::Console>>,
}

/// Intake's brake (`[delivery] max_backlog`): once more deliveries are waiting than the
/// hub will hold, messages are refused with 503 and `Retry-After` until the delivery loop
/// has caught up, rather than the outbox and the database growing without bound. The
/// backlog is read from the store every half second by the hub's runner
/// ([`IntakeGate::observe`]), not counted on each request.
#[derive(Debug, Default)]
pub struct IntakeGate {
    /// 0: no brake.
    pub max_backlog: u64,
    backlog: AtomicU64,
}

impl IntakeGate {
    pub fn new(max_backlog: u64) -> IntakeGate {
        IntakeGate { max_backlog, backlog: AtomicU64::new(0) }
    }

    /// Records the outbox's pending deliveries, as last read.
    pub fn observe(&self, pending: u64) {
        self.backlog.store(pending, Ordering::Relaxed);
    }

    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    /// Whether intake should wait: a brake is set and the backlog is past it.
    pub fn closed(&self) -> bool {
        self.max_backlog > 0 && self.backlog() > self.max_backlog
    }
}
