//! Wake-ups across nodes: a delivery queued by one node wakes another node's delivery loop
//! through `LISTEN/NOTIFY`, with no poll to fall back on. Node A's loop polls once an hour
//! and node B runs no loop at all, so each delivery reaching the provider within seconds
//! is A's loop woken by B's commit.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use carehub_core::adapter::{DeliveryError, DeliveryReceipt, Envelope, Registry, System, SystemRole, Transport};
use carehub_core::delivery::outbox::{DeliveryLoop, RetryPolicy};
use carehub_core::mapping::MappingSet;
use carehub_core::metrics::Metrics;
use carehub_core::store::*;
use carehub_model::Clock;
use carehub_postgres::scratch::{server, ScratchDb};
use carehub_postgres::PgStore;
use chrono::{TimeZone, Utc};
use tokio::sync::{mpsc, watch, Notify};

/// The provider's system: records each delivery's idempotency key.
struct Provider(mpsc::UnboundedSender<String>);

#[async_trait]
impl Transport for Provider {
    async fn deliver(&self, envelope: &Envelope<'_>) -> Result<DeliveryReceipt, DeliveryError> {
        let _ = self.0.send(envelope.idempotency_key.to_owned());
        Ok(DeliveryReceipt::default())
    }

    async fn check(&self) -> Result<String, DeliveryError> {
        Ok("a test provider".into())
    }
}

/// What a node commits when it queues an order for `key`.
fn queue(key: &str) -> Vec<Op> {
    vec![
        Op::AppendLog(NewLogEntry {
            system: "phoniro".into(),
            vendor: "phoniro".into(),
            direction: "out",
            message_type: "order".into(),
            content_type: "application/json".into(),
            status: LogStatus::Queued,
            delivery_key: Some(key.into()),
            ..NewLogEntry::default()
        }),
        Op::Enqueue(NewDelivery {
            system: "phoniro".into(),
            message_type: "order".into(),
            order_id: None,
            idempotency_key: key.into(),
            content_type: "application/json".into(),
            endpoint: None,
            body: key.as_bytes().to_vec(),
            action: None,
            log: LogRef::Op(0),
        }),
    ]
}

/// Rows of `sql` on the database at `url`, as text.
fn rows(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    carehub_postgres::scratch::text_rows(url, sql)
}

#[tokio::test]
async fn a_delivery_queued_on_one_node_wakes_another_nodes_delivery_loop() {
    let db = ScratchDb::create(&server(), "wakeups").await.expect("a scratch database");
    let clock = Clock::starting_at(Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).single().expect("an instant"));
    let a = Arc::new(PgStore::open(&db.url(), clock.clone()).await.expect("node a opens"));
    let b = Arc::new(PgStore::open(&db.url(), clock.clone()).await.expect("node b opens"));

    let (sent, mut received) = mpsc::unbounded_channel();
    let registry = Registry::new([System {
        name: "phoniro".into(),
        vendor: "phoniro",
        role: SystemRole::ProviderSystem,
        mappings: Arc::new(MappingSet::from_sources("phoniro", std::iter::empty()).expect("an empty mapping set")),
        transport: Arc::new(Provider(sent)),
        inbox: None,
        poll_interval: Duration::from_secs(3600),
        feed: None,
        visit_reports: false,
    }]);
    let wake = Arc::new(Notify::new());
    a.watch_outbox(wake.clone());
    let delivery = Arc::new(DeliveryLoop {
        store: a.clone(),
        registry: Arc::new(registry),
        policy: RetryPolicy::default(),
        metrics: Arc::new(Metrics::for_node("a")),
        notify: wake,
        owner: "a/pid1".into(),
        max_in_flight: 4,
        clock,
        // Without a wake-up, the loop would not look at the outbox again for an hour.
        idle_poll: Duration::from_secs(3600),
    });
    let (stop, stopped) = watch::channel(false);
    let running = tokio::spawn(delivery.run(stopped));

    // Node a listens before anything is queued (its connection's last statement is the
    // LISTEN), so what follows is not found by the wake-up every (re)connection makes.
    let url = db.url();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listening = rows(
            &url,
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
             AND application_name = 'carehub-listen' AND state = 'idle' AND query = 'LISTEN carehub_outbox'",
        );
        if !listening.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node a never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Three orders, one at a time, each queued by node b: node a's loop sends each (at most
    // one of them could have been found by a wake-up left over from a's connecting).
    for key in ["O-1:order", "O-2:order", "O-3:order"] {
        b.commit(queue(key)).await.expect("node b queues an order");
        let got = tokio::time::timeout(Duration::from_secs(20), received.recv())
            .await
            .unwrap_or_else(|_| panic!("{key} was not delivered: node a's loop was not woken"));
        assert_eq!(got.as_deref(), Some(key));
    }
    // Each attempt is recorded after the provider answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let counts = b.outbox_counts().await.expect("counts");
        if (counts.delivered, counts.pending) == (3, 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the attempts were not recorded: {counts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let _ = stop.send(true);
    running.await.expect("the loop stops");
}
