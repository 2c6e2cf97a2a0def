//! [`AppState`], what every request handler can reach.
//!
//! `assemble` builds it from the configuration; the API only reads it, so it lives on the
//! API's side and the API imports nothing from the code that assembles or runs the hub.

use std::sync::atomic::AtomicBool;
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
    /// Signs checkpoints of the message log, when a signing key is configured.
    pub checkpointer: Option<Arc<carehub_core::audit::Checkpointer>>,
}
