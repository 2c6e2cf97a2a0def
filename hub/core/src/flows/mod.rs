//! The flows (SPEC §4): one room per flow, each taking a message from the moment intake has
//! said what it is to the commit that logs it with everything it causes.
//!
//! - [`decision`]: a case officer's decision turned into an order for a provider (§4.1).
//! - [`answer`]: the provider's acknowledgement and plan notice carried back to case
//!   management (§4.1).
//! - [`visits`]: batches of visits validated, stored, and forwarded to case management
//!   (§4.2).
//! - [`invoice`]: a PEPPOL invoice or credit note, or an invoice basis file, read, verified
//!   and logged with its report (§4.3).
//! - [`life`]: later versions of a decision carried to providers as order changes, ends
//!   and new orders, and providers' deviations and changes of need carried to the case
//!   officer (§4.4).
//! - [`month`]: a whole month verified from the store, provider by provider (§7), for
//!   `carehub verify`: not a message, but the same shape (the store read, the rules run).
//! - [`tags`]: NFC tags registered in clients' homes (VIS002's register).
//!
//! # How the flows are reached
//! Every flow is an `impl` block on `Flows`, the hub's working parts (store, systems,
//! routes, rules' settings, clock, wake-ups), defined here. [`crate::hub::Hub`] owns the one
//! `Flows`, keeps it private, and hands each payload to its flow once [`crate::intake`] has
//! said what the payload is. So the imports go one way: `hub` uses `flows` and `intake`,
//! `flows` uses `intake` (the inbound message, the sender, the answers), the rules, the
//! mapping engine and the store, and no code here names the `Hub`. What the flows share
//! (refusing and logging a message, the correlation ids of a log entry, an outbound entry
//! and its delivery) is below.

pub mod answer;
pub mod decision;
pub mod invoice;
pub mod life;
pub mod month;
pub mod tags;
pub mod visits;

use std::collections::BTreeMap;
use std::sync::Arc;

use carehub_model::{Clock, Deadlines, ErrorCode, MessageType, ValidationError};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::adapter::{Registry, System};
use crate::intake::{Inbound, Receipt, Rejection};
use crate::mapping::Rendered;
use crate::metrics::Metrics;
use crate::store::{LogRef, LogStatus, NewDelivery, NewLogEntry, Op, OpResult, OrderRecord, Store, StoreError};

/// Where orders for a provider go.
#[derive(Debug, Clone)]
pub struct Route {
    pub provider_name: String,
    /// The name of the provider's time-registration system.
    pub system: String,
}

/// What the flows work with: the hub's parts, owned by [`crate::hub::Hub`] and reached from
/// outside the crate only through it.
pub(crate) struct Flows {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Arc<Registry>,
    /// The configured providers by organisation number.
    pub(crate) routes: BTreeMap<String, Route>,
    pub(crate) deadlines: Deadlines,
    pub(crate) metrics: Arc<Metrics>,
    /// Woken whenever something was written to the outbox.
    pub(crate) outbox_notify: Arc<Notify>,
    /// The visit rules' thresholds (SPEC §6).
    pub(crate) visit_rules: crate::rules::visits::Thresholds,
    /// Woken whenever visits were stored that may go on to a case-management system.
    pub(crate) visit_notify: Arc<Notify>,
    /// How visit reports are gathered into lists (see [`visits::ReportBatch`]).
    pub(crate) report_batch: visits::ReportBatch,
    /// The municipality's invoice verification policy (SPEC §7).
    pub(crate) invoice_policy: crate::rules::invoices::Policy,
    /// Where every "now" of the flows comes from.
    pub(crate) clock: Clock,
}

pub(crate) fn store_unavailable(e: StoreError) -> Rejection {
    warn!(error = %e, "store commit failed");
    Rejection::new(ErrorCode::Unavailable, "the hub could not record the message; send it again later")
}

impl Flows {
    /// The providers a system's orders go to, by organisation number: the ones a provider
    /// system's visits and invoice rows may name.
    pub(super) fn providers_of(&self, sys: &System) -> Vec<&str> {
        self.routes.iter().filter(|(_, r)| r.system == sys.name).map(|(org, _)| org.as_str()).collect()
    }

    /// Logs the inbound message as rejected and builds the refusal.
    pub(crate) async fn reject(
        &self,
        inbound: &Inbound<'_>,
        code: ErrorCode,
        reason: String,
        corr: Correlation,
    ) -> Rejection {
        let mut entry = inbound.entry(LogStatus::Rejected);
        entry.error_code = Some(code.as_str().to_owned());
        entry.error_message = Some(reason.clone());
        corr.apply(&mut entry);
        self.metrics.rejection(&inbound.system.name, code.as_str());
        self.metrics.message(&inbound.system.name, "in", &entry.message_type, LogStatus::Rejected);
        info!(system = %inbound.system.name, code = code.as_str(), "message rejected");
        match self.store.commit(vec![Op::AppendLog(entry)]).await {
            Ok(results) => Rejection { code, message: reason, message_id: logged_id(&results) },
            Err(e) => store_unavailable(e),
        }
    }

    pub(crate) async fn duplicate(
        &self,
        inbound: &Inbound<'_>,
        kind: MessageType,
        corr: Correlation,
    ) -> Result<Receipt, Rejection> {
        let mut entry = inbound.entry(LogStatus::Duplicate);
        corr.apply(&mut entry);
        let results = self.store.commit(vec![Op::AppendLog(entry)]).await.map_err(store_unavailable)?;
        self.metrics.message(&inbound.system.name, "in", kind.as_str(), LogStatus::Duplicate);
        debug!(system = %inbound.system.name, "duplicate message");
        Ok(Receipt {
            message_id: logged_id(&results).unwrap_or_default(),
            status: LogStatus::Duplicate,
            message_type: kind,
            decision_id: corr.decision_id,
            order_id: corr.order_id,
            visits: Vec::new(),
            verification: None,
            code: None,
        })
    }

    pub(crate) async fn cannot_render(
        &self,
        inbound: &Inbound<'_>,
        target: &System,
        e: ValidationError,
        corr: Correlation,
    ) -> Rejection {
        warn!(system = %target.name, code = e.code.as_str(), "cannot render for the receiving system");
        // A missing mapping is the hub's fault, not the sender's: it is logged and answered
        // as such (5xx), and `carehub check` names it beforehand.
        let (code, reason) = match e.code {
            ErrorCode::HubMisconfigured => (
                ErrorCode::HubMisconfigured,
                format!("the hub is misconfigured: {} ({}): {}", target.name, target.vendor, e.reason),
            ),
            _ => (ErrorCode::InvalidValue, format!("the message cannot be rendered for {}: {}", target.name, e.reason)),
        };
        self.reject(inbound, code, reason, corr).await
    }
}

/// The correlation ids a log entry carries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Correlation {
    pub(crate) decision_id: Option<String>,
    pub(crate) order_id: Option<String>,
    pub(crate) client: Option<String>,
    pub(crate) provider: Option<String>,
}

impl Correlation {
    pub(crate) fn of(record: &OrderRecord) -> Self {
        Correlation {
            decision_id: Some(record.order.decision_id.as_str().to_owned()),
            order_id: Some(record.order.id.clone()),
            client: Some(record.order.client.expose().to_owned()),
            provider: Some(record.order.provider.as_str().to_owned()),
        }
    }

    pub(crate) fn apply(&self, e: &mut NewLogEntry) {
        e.decision_id.clone_from(&self.decision_id);
        e.order_id.clone_from(&self.order_id);
        e.client.clone_from(&self.client);
        e.provider.clone_from(&self.provider);
    }
}

pub(crate) fn outbound_entry(
    target: &System,
    kind: MessageType,
    content_type: &str,
    body: &[u8],
    key: &str,
) -> NewLogEntry {
    NewLogEntry {
        system: target.name.clone(),
        vendor: target.vendor.to_owned(),
        direction: "out",
        message_type: kind.as_str().to_owned(),
        content_type: content_type.to_owned(),
        payload: body.to_vec(),
        status: LogStatus::Queued,
        delivery_key: Some(key.to_owned()),
        ..NewLogEntry::default()
    }
}

pub(crate) fn logged_id(results: &[OpResult]) -> Option<i64> {
    results.iter().find_map(|r| match r {
        OpResult::Logged(id) => Some(*id),
        _ => None,
    })
}

/// The outbox row that sends a rendered message to `system`, linked to the log entry `log`
/// that records it going out: the one place a rendered message becomes a delivery.
pub(crate) fn delivery(
    system: &str,
    kind: MessageType,
    order_id: Option<String>,
    idempotency_key: String,
    rendered: Rendered,
    log: LogRef,
) -> NewDelivery {
    NewDelivery {
        system: system.to_owned(),
        message_type: kind.as_str().to_owned(),
        order_id,
        idempotency_key,
        content_type: rendered.content_type,
        endpoint: rendered.endpoint,
        body: rendered.body,
        action: rendered.action,
        log,
    }
}
