//! The one delivery loop for all outbound traffic.
//!
//! Everything the hub sends (orders to providers, acknowledgements and plan notices to
//! case-management systems, and whatever later flows add) is a row in the outbox, written
//! in the same commit as the message that caused it. This loop leases due rows, hands each
//! to its system's [`Transport`](crate::adapter::Transport), and records the outcome with a
//! log entry: delivered; failed transiently and retried after an exponential backoff with
//! jitter; or, after `max_attempts` or a permanent refusal, dead-lettered until
//! `carehub replay` puts it back. Every attempt carries the row's idempotency key.
//!
//! Leases make the loop safe to run in more than one process and after a crash: a row is
//! sent only by whoever holds its lease, and a lease left by a killed process runs out
//! after `timeout + LEASE_MARGIN`, when the row is picked up again. A lease is not renewed
//! while its attempt runs, and needs not be: the attempt runs under the hard `timeout`,
//! started as soon as the row is claimed, so it ends inside the lease (see
//! [`super::lease`] for the whole argument).
//!
//! The loop wakes when this process writes to the outbox (`notify`), when another node
//! does (the store's [`watch_outbox`](crate::store::OutboxStore::watch_outbox): PostgreSQL's
//! `LISTEN/NOTIFY`), when the next retry falls due, and otherwise every `idle_poll`, the
//! fallback for a wake-up lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify, Semaphore};
use tracing::{info, warn, Instrument};

use crate::adapter::{DeliveryError, Envelope, Registry};
use crate::metrics::Metrics;
use crate::store::{
    AttemptOutcome, Delivery, DeliveryFilter, DeliveryState, LogStatus, NewLogEntry, Op, OpResult, Store, StoreError,
};

/// How long a lease outlives an attempt's timeout.
pub const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// Retry policy for outbound deliveries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before a delivery is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// The wait after the first failed attempt; doubles with each further failure.
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after `attempts` failed attempts: `initial × 2^(attempts-1)`, capped, with
    /// "equal jitter" (between half and all of it) so that many failures do not retry in
    /// lockstep.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let base = self.initial_backoff.saturating_mul(1u32 << exp).min(self.max_backoff);
        let half = base / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// The delivery loop.
pub struct DeliveryLoop {
    pub store: Arc<dyn Store>,
    pub registry: Arc<Registry>,
    pub policy: RetryPolicy,
    pub metrics: Arc<Metrics>,
    pub notify: Arc<Notify>,
    /// Who holds leases taken by this loop (process and instance).
    pub owner: String,
    /// Most deliveries in flight at once.
    pub max_in_flight: usize,
    /// Where "now" comes from for leases and retry times.
    pub clock: carehub_model::Clock,
    /// The longest the loop sleeps when nothing is due and nothing woke it.
    pub idle_poll: Duration,
}

impl DeliveryLoop {
    /// Runs until `shutdown` turns true; in-flight deliveries finish first.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(self.max_in_flight.max(1)));
        info!(owner = %self.owner, "delivery loop started");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let free = permits.available_permits();
            let claimed = if free == 0 { Ok(Vec::new()) } else { self.claim(free.min(256)).await };
            let n = match claimed {
                Ok(batch) => {
                    let n = batch.len();
                    for d in batch {
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break;
                        };
                        let this = self.clone();
                        let span =
                            tracing::info_span!("delivery", id = d.id, system = %d.system, kind = %d.message_type);
                        tokio::spawn(
                            async move {
                                this.deliver(d).await;
                                drop(permit);
                            }
                            .instrument(span),
                        );
                    }
                    n
                }
                Err(e) => {
                    warn!(error = %e, "cannot claim deliveries");
                    0
                }
            };
            if n > 0 && n == free.min(256) {
                continue;
            }
            let wait = if free == 0 { Duration::from_millis(20) } else { self.idle_wait().await };
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        let _ = permits.acquire_many(self.max_in_flight.max(1) as u32).await;
        info!("delivery loop stopped");
    }

    /// How long to sleep when nothing is due: until the next row falls due, at most
    /// `idle_poll`.
    async fn idle_wait(&self) -> Duration {
        let max = self.idle_poll.max(Duration::from_millis(5));
        match self.store.next_due().await {
            Ok(Some(at)) => {
                (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO).clamp(Duration::from_millis(5), max)
            }
            _ => max,
        }
    }

    async fn claim(&self, limit: usize) -> Result<Vec<Delivery>, StoreError> {
        let lease =
            chrono::Duration::from_std(self.policy.timeout + LEASE_MARGIN).unwrap_or(chrono::Duration::seconds(30));
        let results = self
            .store
            .commit(vec![Op::ClaimDue { owner: self.owner.clone(), lease_until: self.clock.now() + lease, limit }])
            .await?;
        Ok(results
            .into_iter()
            .find_map(|r| match r {
                OpResult::Claimed(d) => Some(d),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// Claims and delivers whatever is due now, waiting for every attempt to be recorded.
    /// Returns how many attempts were made. For `carehub replay` and tests.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let batch = self.claim(256).await?;
        let n = batch.len();
        let mut tasks = tokio::task::JoinSet::new();
        for d in batch {
            let this = DeliveryLoop {
                store: self.store.clone(),
                registry: self.registry.clone(),
                policy: self.policy,
                metrics: self.metrics.clone(),
                notify: self.notify.clone(),
                owner: self.owner.clone(),
                max_in_flight: self.max_in_flight,
                clock: self.clock.clone(),
                idle_poll: self.idle_poll,
            };
            tasks.spawn(async move { this.deliver(d).await });
        }
        while tasks.join_next().await.is_some() {}
        Ok(n)
    }

    /// Delivers these rows' current state until each is delivered or dead, sleeping through
    /// backoffs. For `carehub replay`.
    pub async fn drain(&self, ids: &[i64]) -> Result<Vec<Delivery>, StoreError> {
        loop {
            self.run_once().await?;
            let rows: Vec<Delivery> = self
                .store
                .deliveries(DeliveryFilter { limit: 10_000, ..DeliveryFilter::default() })
                .await?
                .into_iter()
                .filter(|d| ids.contains(&d.id))
                .collect();
            if rows.iter().all(|d| d.state != DeliveryState::Pending) {
                return Ok(rows);
            }
            tokio::time::sleep(self.idle_wait().await).await;
        }
    }

    /// One attempt, and its record.
    async fn deliver(&self, d: Delivery) {
        let attempt = d.attempts + 1;
        let result = match self.registry.get(&d.system) {
            None => Err((DeliveryError::permanent(format!("system '{}' is not configured", d.system)), "")),
            Some(sys) => {
                let envelope = Envelope {
                    message_type: &d.message_type,
                    content_type: &d.content_type,
                    endpoint: d.endpoint.as_deref(),
                    body: &d.body,
                    idempotency_key: &d.idempotency_key,
                    action: d.action.as_deref(),
                };
                match tokio::time::timeout(self.policy.timeout, sys.transport.deliver(&envelope)).await {
                    Ok(Ok(receipt)) => Ok((receipt, sys.vendor)),
                    Ok(Err(e)) => Err((e, sys.vendor)),
                    Err(_) => Err((
                        DeliveryError::transient(format!("no answer within {} ms", self.policy.timeout.as_millis())),
                        sys.vendor,
                    )),
                }
            }
        };
        let mut entry = NewLogEntry {
            system: d.system.clone(),
            direction: "out",
            message_type: d.message_type.clone(),
            order_id: d.order_id.clone(),
            delivery_key: Some(d.idempotency_key.clone()),
            // The attempt concerns the client and orders the queued message does.
            follows: d.log_seq,
            ..NewLogEntry::default()
        };
        let outcome = match result {
            Ok((receipt, vendor)) => {
                entry.vendor = vendor.to_owned();
                entry.status = LogStatus::Delivered;
                entry.content_type = receipt.content_type.unwrap_or_default();
                entry.payload = receipt.body;
                info!(system = %d.system, delivery = d.id, attempt, "delivered");
                let latency = self.clock.now() - d.created_at;
                self.metrics.delivered_after(&d.system, latency.num_milliseconds() as f64 / 1000.0);
                AttemptOutcome::Delivered
            }
            Err((e, vendor)) => {
                entry.vendor = vendor.to_owned();
                entry.payload = e.body.clone();
                entry.error_code = Some(e.code().as_str().to_owned());
                entry.error_message = Some(format!("attempt {attempt}: {e}"));
                if e.is_transient() && attempt < self.policy.max_attempts {
                    let wait = self.policy.backoff(attempt);
                    let next =
                        self.clock.now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::seconds(1));
                    entry.status = LogStatus::Retrying;
                    warn!(system = %d.system, delivery = d.id, attempt, retry_in_ms = wait.as_millis() as u64, error = %e, "delivery failed, will retry");
                    AttemptOutcome::Retry { next_attempt_at: next, error: e.to_string() }
                } else {
                    entry.status = LogStatus::DeadLetter;
                    warn!(system = %d.system, delivery = d.id, attempt, error = %e, "delivery dead-lettered");
                    AttemptOutcome::Dead { error: e.to_string() }
                }
            }
        };
        self.metrics.delivery(&d.system, entry.status);
        let status = entry.status;
        let ops = vec![Op::Attempted { id: d.id, outcome }, Op::AppendLog(entry)];
        if let Err(e) = self.store.commit(ops).await {
            // The lease runs out and the row is tried again: the receiver drops the repeat
            // by its idempotency key.
            warn!(delivery = d.id, status = status.as_str(), error = %e, "cannot record a delivery attempt");
        }
    }
}
