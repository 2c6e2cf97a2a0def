//! Prometheus metrics: what municipal IT alerts on.
//!
//! Counters are updated where things happen; gauges that describe the store (overdue
//! orders, the outbox by state) are set from the store when `/metrics` is scraped, so they
//! are right even after a restart.
//!
//! Every sample carries the node's name (`node="..."`, `[hub] node`), so that the nodes of
//! one hub (SPEC §11) can be scraped side by side. What a node counts (messages, requests,
//! delivery attempts, connections) is its own; the gauges read from the store
//! (`carehub_orders_overdue`, `carehub_outbox`) are the whole cluster's, since every node
//! reads the one shared database: every node shows the same figures, so sum counters over
//! nodes but not these. `carehub_pollers_held` says which work (an inbox, a feed, the visit
//! forwarder, the checkpointer) this node runs: 1 on the node holding its lease, 0 on the
//! others.
//!
//! Two text formats: OpenMetrics 1.0 for scrapers that ask for it, and the classic
//! Prometheus format 0.0.4 for everyone else ([`Format`]). A counter family is named
//! `..._total` in both: OpenMetrics names the family without the suffix and its samples
//! with it; the classic format names both with it, so that a classic parser keeps the
//! family's samples together.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The matched route (`/v1/orders/{id}`), never the raw path; `unmatched` otherwise.
    route: String,
    method: String,
    /// `2xx`, `4xx`, ...
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SystemLabels {
    system: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PollerLabels {
    /// The lease's name: `inbox:<system>`, `feed:<system>`, `forwarder`, `checkpointer`.
    poller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PollLabels {
    system: String,
    /// `inbox` (files over SFTP) or `feed` (pages pulled over HTTP).
    kind: String,
}

/// A request in the handlers, counted until dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A text exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The classic Prometheus text format, version 0.0.4.
    Classic,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The format a scraper asks for in its `Accept` header: OpenMetrics only when it
    /// names it.
    pub fn from_accept(accept: &str) -> Format {
        if accept.to_ascii_lowercase().contains("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Classic
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Classic => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

fn delivery_histogram() -> Histogram {
    // 10 ms to about 2.3 days, by fours.
    Histogram::new(exponential_buckets(0.01, 4.0, 14))
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
    requests: HistogramFamily<RequestLabels>,
    delivery_latency: HistogramFamily<SystemLabels>,
    last_poll: Family<PollLabels, Gauge>,
    pollers_held: Family<PollerLabels, Gauge>,
    connections: Gauge,
    connections_refused: Counter,
    wal_bytes: Gauge,
    requests_in_flight: Gauge,
}

/// The node name of metrics made with [`Metrics::default`].
pub const DEFAULT_NODE: &str = "carehub";

impl Default for Metrics {
    /// The metrics of a node named [`DEFAULT_NODE`].
    fn default() -> Self {
        Metrics::for_node(DEFAULT_NODE)
    }
}

impl Metrics {
    /// The metrics of the node named `node`: every sample carries `node="<node>"`.
    pub fn for_node(node: &str) -> Self {
        let mut registry = Registry::with_prefix_and_labels(
            "carehub",
            std::iter::once((std::borrow::Cow::Borrowed("node"), std::borrow::Cow::Owned(node.to_owned()))),
        );
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
        let build = Family::<BuildLabels, Gauge>::default();
        registry.register("build_info", "The running build: always 1, with its version as a label", build.clone());
        build.get_or_create(&BuildLabels { version: env!("CARGO_PKG_VERSION").to_owned() }).set(1);
        let requests = HistogramFamily::<RequestLabels>::new_with_constructor(request_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests answered, by matched route, method and status class, with their duration",
            requests.clone(),
        );
        let delivery_latency = HistogramFamily::<SystemLabels>::new_with_constructor(delivery_histogram);
        registry.register(
            "delivery_latency_seconds",
            "Time from a delivery's enqueueing to its delivery, retries included, by receiving system",
            delivery_latency.clone(),
        );
        let last_poll = Family::<PollLabels, Gauge>::default();
        registry.register(
            "poller_last_success_timestamp_seconds",
            "When each poller last polled successfully (unix seconds, the hub's clock), by system and kind (inbox, feed)",
            last_poll.clone(),
        );
        let pollers_held = Family::<PollerLabels, Gauge>::default();
        registry.register(
            "pollers_held",
            "Whether this node holds a poller's lease and runs it (1) or another node does (0), by poller",
            pollers_held.clone(),
        );
        let connections = Gauge::default();
        registry.register("http_connections", "HTTP connections open", connections.clone());
        let connections_refused = Counter::default();
        registry.register(
            "http_connections_refused",
            "HTTP connections closed at once because max_connections were open",
            connections_refused.clone(),
        );
        let requests_in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "HTTP requests in the handlers (headers read, answer not yet produced)",
            requests_in_flight.clone(),
        );
        let wal_bytes = Gauge::default();
        registry.register(
            "store_wal_bytes",
            "The size of the embedded store's write-ahead log file (0 for a server database)",
            wal_bytes.clone(),
        );
        Metrics {
            wal_bytes,
            registry,
            messages,
            rejections,
            deliveries,
            overdue,
            outbox,
            visits,
            requests,
            delivery_latency,
            last_poll,
            pollers_held,
            connections,
            connections_refused,
            requests_in_flight,
        }
    }

    pub fn message(&self, system: &str, direction: &str, message_type: &str, status: carehub_model::LogStatus) {
        self.messages
            .get_or_create(&MessageLabels {
                system: system.to_owned(),
                direction: direction.to_owned(),
                message_type: message_type.to_owned(),
                status: status.as_str().to_owned(),
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

    pub fn delivery(&self, system: &str, outcome: carehub_model::LogStatus) {
        let outcome = outcome.as_str().to_owned();
        self.deliveries.get_or_create(&DeliveryLabels { system: system.to_owned(), outcome }).inc();
    }

    /// An HTTP request answered: its matched route (or `unmatched`), method, status code and
    /// how long it took.
    pub fn http_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let labels =
            RequestLabels { route: route.to_owned(), method: method.to_owned(), status: format!("{}xx", status / 100) };
        self.requests.get_or_create(&labels).observe(seconds);
    }

    /// A delivery delivered `seconds` after it was enqueued.
    pub fn delivered_after(&self, system: &str, seconds: f64) {
        self.delivery_latency.get_or_create(&SystemLabels { system: system.to_owned() }).observe(seconds.max(0.0));
    }

    /// A poller of `kind` (`inbox` or `feed`) polled `system` successfully at `unix_seconds`.
    pub fn polled(&self, system: &str, kind: &str, unix_seconds: i64) {
        self.last_poll
            .get_or_create(&PollLabels { system: system.to_owned(), kind: kind.to_owned() })
            .set(unix_seconds);
    }

    /// Whether this node holds the lease of `poller` (and runs it).
    pub fn poller_held(&self, poller: &str, held: bool) {
        self.pollers_held.get_or_create(&PollerLabels { poller: poller.to_owned() }).set(i64::from(held));
    }

    /// Counts a request in the handlers until the returned guard is dropped.
    pub fn request_in_flight(&self) -> InFlight {
        self.requests_in_flight.inc();
        InFlight(self.requests_in_flight.clone())
    }

    pub fn connection_opened(&self) {
        self.connections.inc();
    }

    pub fn connection_closed(&self) {
        self.connections.dec();
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Renders a text exposition format, with the store-derived gauges set first.
    pub fn render(&self, overdue: OverdueCounts, outbox: OutboxCounts, wal_bytes: u64, format: Format) -> String {
        let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.wal_bytes.set(gauge(wal_bytes));
        self.overdue.get_or_create(&KindLabels { kind: "not_confirmed".into() }).set(gauge(overdue.not_confirmed));
        self.overdue.get_or_create(&KindLabels { kind: "plan_missing".into() }).set(gauge(overdue.plan_missing));
        for (state, n) in [("pending", outbox.pending), ("delivered", outbox.delivered), ("dead", outbox.dead)] {
            self.outbox.get_or_create(&StateLabels { state: state.into() }).set(gauge(n));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        match format {
            Format::OpenMetrics => out,
            Format::Classic => classic(&out),
        }
    }
}

/// The classic text format (0.0.4) of an OpenMetrics text as `prometheus-client` writes it
/// (each family's `# HELP` before its `# TYPE`, no exemplars, no timestamps): a counter
/// family takes its samples' `_total` name, `unknown` is `untyped`, and `# UNIT` and `# EOF`
/// go. Gauges and histograms read the same in both.
fn classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.rsplit_once(' ').unwrap_or((rest, "untyped"));
            let (name, kind) = match kind {
                "counter" if !name.ends_with("_total") => (format!("{name}_total"), "counter"),
                "unknown" | "info" | "stateset" | "gaugehistogram" => (name.to_owned(), "untyped"),
                k => (name.to_owned(), k),
            };
            if let Some(h) = help.take() {
                let text = h.split_once(' ').map(|(_, t)| t).unwrap_or("");
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_families_are_named_total_in_the_classic_format() {
        let m = Metrics::default();
        m.message("combine", "in", "decision", carehub_model::LogStatus::Accepted);
        m.http_request("/healthz", "GET", 200, 0.002);
        let text = m.render(OverdueCounts::default(), OutboxCounts::default(), 0, Format::Classic);
        assert!(text.contains("# HELP carehub_messages_total Messages logged"), "{text}");
        assert!(text.contains("# TYPE carehub_messages_total counter\n"), "{text}");
        assert!(text.contains("carehub_messages_total{node=\"carehub\",system=\"combine\""), "{text}");
        assert!(text.contains("# TYPE carehub_http_request_duration_seconds histogram\n"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
        let om = m.render(OverdueCounts::default(), OutboxCounts::default(), 0, Format::OpenMetrics);
        assert!(om.contains("# TYPE carehub_messages counter\n") && om.ends_with("# EOF\n"), "{om}");
    }

    #[test]
    fn every_sample_carries_the_nodes_name() {
        let m = Metrics::for_node("vasteras-2");
        m.message("combine", "in", "decision", carehub_model::LogStatus::Accepted);
        m.poller_held("inbox:procapita", true);
        m.connection_opened();
        let text = m.render(
            OverdueCounts::default(),
            OutboxCounts { pending: 3, ..OutboxCounts::default() },
            0,
            Format::Classic,
        );
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
        assert!(!samples.is_empty());
        for sample in &samples {
            assert!(sample.contains("{node=\"vasteras-2\""), "{sample}");
        }
        assert!(text.contains("carehub_pollers_held{node=\"vasteras-2\",poller=\"inbox:procapita\"} 1\n"), "{text}");
        assert!(text.contains("carehub_outbox{node=\"vasteras-2\",state=\"pending\"} 3\n"), "{text}");
        assert!(text.contains("carehub_http_connections{node=\"vasteras-2\"} 1\n"), "{text}");
    }
}
