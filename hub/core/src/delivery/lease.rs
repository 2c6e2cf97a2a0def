//! Work one node at a time does: each SFTP inbox, each feed, the visit forwarder and the
//! checkpointer run only on the node that holds their lease (SPEC §11).
//!
//! A lease is a row of the store, `leases(name, owner, until)`, written by
//! [`Op::HoldLease`]: [`Ownership::hold`] takes it and renews it every `heartbeat` through
//! `now + ttl` (the hub's clock) while the work runs, and gives it up ([`Op::ReleaseLease`])
//! when the work returns, so that on a clean shutdown another node (or the restarted one)
//! takes it at once. A node that dies stops renewing; once its `until` has passed, the next
//! heartbeat of another node takes the lease over: with the defaults (5 s, 15 s) within
//! 20 s of the last renewal. The work sees whether its node holds the lease through a
//! [`Lease`] and runs its pass only while it does; one that loses its lease stops after the
//! pass under way. It resumes where the store says: a feed at the cursor committed with its
//! last page, an inbox at the files still in it (a file is moved only after it is logged),
//! the forwarder at its watermark, the checkpointer at the log's size.
//!
//! # Why lease rows
//! Not advisory locks (PostgreSQL's `pg_advisory_lock`): a lease row needs no database
//! session held open per lock, works the same on SQLite (two processes on one file), and
//! expires by the hub's clock, so the store contract suite pins its behaviour on every
//! backend, moving the clock rather than waiting.
//!
//! # Why deliveries need no heartbeat
//! A delivery's claim is a lease too ([`Op::ClaimDue`]), but not renewed: the delivery loop
//! claims a row through `now + timeout + LEASE_MARGIN`
//! ([`LEASE_MARGIN`](super::outbox::LEASE_MARGIN)), and an attempt may not take longer than
//! `timeout`: the transport call runs under that hard timeout, started as soon as the row is
//! claimed (a row is claimed only when a permit to send it is free). So an attempt ends,
//! and is recorded, inside the claim's lease; only the record's commit must fit in the
//! margin. When it does not (the store stalls), the row may be claimed and sent again, with
//! the same idempotency key, which the receiver drops.
//!
//! # Clocks
//! Each node compares `until` with its own clock, so the nodes' clocks must agree to well
//! under `ttl - heartbeat` (NTP does this easily); a node whose clock runs ahead takes
//! leases over early.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use carehub_model::Clock;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::metrics::Metrics;
use crate::store::{LeaseHold, Op, OpResult, Store};

/// How often a lease is renewed and how long each renewal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    /// How often the holder renews, and another node tries to take the lease.
    pub heartbeat: Duration,
    /// How long a renewal holds: a dead node's lease is taken over this long after its last
    /// renewal, give or take a heartbeat.
    pub ttl: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings { heartbeat: Duration::from_secs(5), ttl: Duration::from_secs(15) }
    }
}

/// Whether this node holds a lease, as its work sees it.
#[derive(Debug, Clone)]
pub struct Lease {
    name: Arc<str>,
    held: watch::Receiver<bool>,
}

impl Lease {
    /// A lease that is always held: for a hub that runs its work without asking the store
    /// (one process, tests of a poller alone).
    pub fn always(name: &str) -> Lease {
        let (_, held) = watch::channel(true);
        Lease { name: name.into(), held }
    }

    /// The lease's name (`inbox:<system>`, `feed:<system>`, `forwarder`, `checkpointer`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this node holds the lease now.
    pub fn is_held(&self) -> bool {
        *self.held.borrow()
    }

    /// Waits until this node holds the lease (at once when it does): `true` then, `false`
    /// when `shutdown` turned true (or its sender went) first.
    pub async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            if *shutdown.borrow_and_update() {
                return false;
            }
            if *self.held.borrow_and_update() {
                return true;
            }
            tokio::select! {
                changed = self.held.changed() => {
                    // The renewing side is gone: the lease is not coming back.
                    if changed.is_err() {
                        let _ = shutdown.wait_for(|stop| *stop).await;
                        return false;
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return false;
                    }
                }
            }
        }
    }
}

/// This node's side of the leases: who it is to the store, and how it renews.
pub struct Ownership {
    store: Arc<dyn Store>,
    clock: Clock,
    owner: String,
    settings: LeaseSettings,
    metrics: Arc<Metrics>,
}

impl Ownership {
    /// `owner` names this node and process (the node's name and the process instance), so
    /// a restarted process is a new owner that waits for the old one's lease to end unless
    /// it was given up.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Clock,
        owner: String,
        settings: LeaseSettings,
        metrics: Arc<Metrics>,
    ) -> Ownership {
        Ownership { store, clock, owner, settings, metrics }
    }

    /// Who this node is to the store.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn settings(&self) -> LeaseSettings {
        self.settings
    }

    /// Runs `work` with the lease `name`: tries to take it at once, then renews it (or tries
    /// again to take it) every heartbeat while `work` runs, telling `work` through its
    /// [`Lease`] whether this node holds it; gives it up when `work` returns. Logs when the
    /// node takes or loses the lease and shows it as `carehub_pollers_held{poller=name}`.
    ///
    /// Dropped before `work` returns (its task aborted, as a killed process would), it
    /// gives nothing up: the lease runs out at its `until`.
    pub async fn hold<F, Fut>(&self, name: &str, work: F)
    where
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = ()>,
    {
        let (tx, rx) = watch::channel(false);
        self.metrics.poller_held(name, false);
        let work = work(Lease { name: name.into(), held: rx });
        let beats = async {
            // Until when this node holds the lease, as far as it knows.
            let mut until: Option<DateTime<Utc>> = None;
            let mut first = true;
            loop {
                let held = self.beat(name, &mut until, first).await;
                first = false;
                if held != *tx.borrow() {
                    self.metrics.poller_held(name, held);
                    tx.send_replace(held);
                }
                tokio::time::sleep(self.settings.heartbeat).await;
            }
        };
        tokio::select! {
            () = work => {}
            () = beats => {}
        }
        // The work has stopped: give the lease up, whether or not the last beat held it
        // (a release by a non-holder changes nothing).
        let released =
            self.store.commit(vec![Op::ReleaseLease { name: name.to_owned(), owner: self.owner.clone() }]).await;
        match released {
            Ok(_) if *tx.borrow() => info!(poller = name, owner = %self.owner, "gave the poller up"),
            Ok(_) => {}
            Err(e) => {
                warn!(poller = name, error = %e, "cannot give the poller up; it is taken over when its lease ends")
            }
        }
        self.metrics.poller_held(name, false);
    }

    /// One heartbeat: take or renew the lease; whether this node holds it now.
    async fn beat(&self, name: &str, until: &mut Option<DateTime<Utc>>, first: bool) -> bool {
        let was = until.is_some();
        let ttl = chrono::Duration::from_std(self.settings.ttl).unwrap_or(chrono::Duration::seconds(15));
        let wanted = self.clock.now() + ttl;
        let op = Op::HoldLease { name: name.to_owned(), owner: self.owner.clone(), until: wanted };
        // A store that does not answer within a heartbeat counts as a failed renewal.
        let outcome = tokio::time::timeout(self.settings.heartbeat, self.store.commit(vec![op])).await;
        let hold = match outcome {
            Ok(Ok(results)) => results.into_iter().find_map(|r| match r {
                OpResult::Lease(hold) => Some(hold),
                _ => None,
            }),
            Ok(Err(e)) => {
                warn!(poller = name, error = %e, "cannot renew the poller's lease");
                None
            }
            Err(_) => {
                warn!(poller = name, "the store did not answer a lease renewal in time");
                None
            }
        };
        match hold {
            Some(hold) => {
                match (&hold, was) {
                    (LeaseHold::Taken, false) => info!(poller = name, owner = %self.owner, "took the poller"),
                    (LeaseHold::TakenOver { from }, false) => {
                        info!(poller = name, owner = %self.owner, from = %from, "took the poller over")
                    }
                    (LeaseHold::Renewed, false) => info!(poller = name, owner = %self.owner, "took the poller back"),
                    (LeaseHold::Refused { holder, .. }, true) => {
                        info!(poller = name, owner = %self.owner, holder = %holder, "lost the poller")
                    }
                    (LeaseHold::Refused { holder, .. }, false) if first => {
                        info!(poller = name, holder = %holder, "another node holds the poller")
                    }
                    (LeaseHold::Taken | LeaseHold::TakenOver { .. }, true) => {
                        // It had run out and was given up or taken meanwhile: taken again.
                        info!(poller = name, owner = %self.owner, "took the poller again")
                    }
                    _ => {}
                }
                *until = hold.held().then_some(wanted);
            }
            None => {
                // Renewal failed: held until the last renewal's end, as far as this node
                // can tell; after it, another node may hold it.
                if until.is_some_and(|u| u < self.clock.now()) {
                    info!(poller = name, owner = %self.owner, "lost the poller: its lease ran out unrenewed");
                    *until = None;
                }
            }
        }
        until.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use carehub_model::Clock;
    use chrono::TimeZone;
    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::store::sqlite::SqliteStore;

    /// A node's work under the lease `inbox:x`: reports each pass with the node's name.
    fn node(
        name: &'static str,
        store: Arc<dyn Store>,
        clock: &Clock,
        passes: mpsc::UnboundedSender<&'static str>,
    ) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let settings = LeaseSettings { heartbeat: Duration::from_millis(20), ttl: Duration::from_secs(15) };
        let ownership =
            Ownership::new(store, clock.clone(), format!("{name}/1"), settings, Arc::new(Metrics::for_node(name)));
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            ownership
                .hold("inbox:x", |mut lease| async move {
                    while lease.wait(&mut stopped).await {
                        let _ = passes.send(name);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await;
        });
        (stop, task)
    }

    /// The next pass reported by `want` (passes of others before it are skipped), within a
    /// generous timeout.
    async fn next_pass_of(passes: &mut mpsc::UnboundedReceiver<&'static str>, want: &str) {
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(by) = passes.recv().await {
                if by == want {
                    return;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{want} never ran a pass"));
    }

    #[tokio::test]
    async fn a_dead_nodes_poller_is_taken_over_after_its_lease_and_a_stopped_nodes_at_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let start = chrono::Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).single().expect("an instant");
        let clock = Clock::frozen(start);
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("leases.db"), clock.clone()).expect("the store opens"));
        let (tx, mut passes) = mpsc::unbounded_channel();

        let (_a_stop, a) = node("a", store.clone(), &clock, tx.clone());
        next_pass_of(&mut passes, "a").await;
        let (b_stop, b) = node("b", store.clone(), &clock, tx.clone());
        // a dies: its task is dropped where it stands, nothing given up. b takes the inbox
        // once a's lease has run out by the hub's clock (a's lease is far from its end
        // until the clock moves: b's heartbeats are refused until then).
        a.abort();
        let _ = a.await;
        clock.set(start + chrono::Duration::seconds(16));
        next_pass_of(&mut passes, "b").await;
        // b stops cleanly: it gives the lease up, and c takes it at once (the clock stands).
        let (_c_stop, _c) = node("c", store.clone(), &clock, tx.clone());
        b_stop.send(true).expect("b is running");
        b.await.expect("b stops");
        next_pass_of(&mut passes, "c").await;
    }
}
