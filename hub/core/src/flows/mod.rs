//! The flows (SPEC §4): one room per flow, each taking a message from the moment the hub
//! has decoded it to the commit that logs it with everything it causes.
//!
//! [`decision`] is the decision flow (SPEC §4.1): a case officer's decision turned into an
//! order for a provider, and the provider's acknowledgement and plan notice carried back.
//! It still holds [`Hub`](decision::Hub) itself and the entry points
//! ([`Hub::receive`](decision::Hub::receive), answers, tags) that every flow is reached
//! through; those are to be split out into `hub.rs` and `intake.rs` next. [`visits`] is the
//! visit flow (SPEC §4.2): batches of visits validated, stored and forwarded. [`invoice`] is
//! the invoice flow (SPEC §4.3): a PEPPOL invoice or credit note read, verified and logged
//! with its report. The flows call the rules, the mapping engine and the store. One call
//! still goes the other way: [`crate::rules::month`] reads stored invoices back with
//! [`invoice`]'s reader, until that reader moves down beside the rules.

pub mod decision;
pub mod invoice;
pub mod visits;

use carehub_model::MessageType;

use crate::mapping::Rendered;
use crate::store::{LogRef, NewDelivery};

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
