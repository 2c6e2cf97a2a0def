//! Prometheus metrics: what municipal IT alerts on.
//!
//! Counters are updated where things happen; gauges that describe the store (overdue
//! orders, the outbox by state) are set from the store when `/metrics` is scraped, so they
//! are right even after a restart.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::{OutboxCounts, OverdueCounts};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    system: String,
    direction: String,
    message_type: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectionLabels {
    system: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    system: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VisitLabels {
    system: String,
    outcome: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// The hub's metrics.
pub struct Metrics {
    registry: Registry,
    messages: Family<MessageLabels, Counter>,
    rejections: Family<RejectionLabels, Counter>,
    deliveries: Family<DeliveryLabels, Counter>,
    overdue: Family<KindLabels, Gauge>,
    outbox: Family<StateLabels, Gauge>,
    visits: Family<VisitLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("carehub");
        let messages = Family::<MessageLabels, Counter>::default();
        registry.register("messages", "Messages logged, by system, direction, type and status", messages.clone());
        let rejections = Family::<RejectionLabels, Counter>::default();
        registry.register("rejections", "Inbound messages refused, by system and error code", rejections.clone());
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Outbound delivery attempts, by system and outcome (delivered, retrying, dead_letter)",
            deliveries.clone(),
        );
        let overdue = Family::<KindLabels, Gauge>::default();
        registry.register(
            "orders_overdue",
            "Orders past a deadline: not_confirmed (no ack by execute-by), plan_missing (no plan by plan-due)",
            overdue.clone(),
        );
        let outbox = Family::<StateLabels, Gauge>::default();
        registry.register("outbox", "Outbox rows by state (pending, delivered, dead)", outbox.clone());
        let visits = Family::<VisitLabels, Counter>::default();
        registry.register(
            "visit_findings",
            "Visits validated, by sending system, outcome and code (code \"none\" for a visit without findings)",
            visits.clone(),
        );
        Metrics { registry, messages, rejections, deliveries, overdue, outbox, visits }
    }
}

impl Metrics {
    pub fn message(&self, system: &str, direction: &str, message_type: &str, status: &str) {
        self.messages
            .get_or_create(&MessageLabels {
                system: system.to_owned(),
                direction: direction.to_owned(),
                message_type: message_type.to_owned(),
                status: status.to_owned(),
            })
            .inc();
    }

    pub fn rejection(&self, system: &str, code: &str) {
        self.rejections.get_or_create(&RejectionLabels { system: system.to_owned(), code: code.to_owned() }).inc();
    }

    /// Counts `n` validated visits of one kind once per code (or once as `none`).
    pub fn visits(&self, system: &str, outcome: &str, codes: &[String], n: u64) {
        let count = |code: &str| {
            self.visits
                .get_or_create(&VisitLabels {
                    system: system.to_owned(),
                    outcome: outcome.to_owned(),
                    code: code.to_owned(),
                })
                .inc_by(n);
        };
        if codes.is_empty() {
            count("none");
        }
        for c in codes {
            count(c);
        }
    }

    pub fn delivery(&self, system: &str, outcome: &str) {
        self.deliveries.get_or_create(&DeliveryLabels { system: system.to_owned(), outcome: outcome.to_owned() }).inc();
    }

    /// Renders the text exposition format, with the store-derived gauges set first.
    pub fn render(&self, overdue: OverdueCounts, outbox: OutboxCounts) -> String {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.overdue.get_or_create(&KindLabels { kind: "not_confirmed".into() }).set(gauge(overdue.not_confirmed));
        self.overdue.get_or_create(&KindLabels { kind: "plan_missing".into() }).set(gauge(overdue.plan_missing));
        for (state, n) in [("pending", outbox.pending), ("delivered", outbox.delivered), ("dead", outbox.dead)] {
            self.outbox.get_or_create(&StateLabels { state: state.into() }).set(gauge(n));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
