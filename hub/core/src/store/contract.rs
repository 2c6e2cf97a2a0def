//! The store contract suite: every behaviour a flow relies on, written against [`Store`]
//! alone, so that each backend runs the same checks.
//!
//! Each behaviour is a `pub async fn` taking a fresh, empty store and the frozen [`Clock`]
//! it stamps its writes with; it panics (an `assert!`) when the store breaks the behaviour.
//! A backend's test file runs them all with [`store_contract_suite!`](crate::store_contract_suite),
//! one `#[tokio::test]` per behaviour, given a function that opens a fresh store:
//!
//! ```text
//! async fn fresh() -> (tempfile::TempDir, Arc<dyn Store>, Clock) { ... }
//! carehub_core::store_contract_suite!(fresh);
//! ```
//!
//! The module is compiled in every build (and hidden from the docs) rather than behind a
//! feature or `cfg(test)`: integration tests and another crate's backend see the library
//! without `cfg(test)`, and a `contract` feature would have to be remembered on every
//! `cargo test`. Nothing in the hub calls it, so the linker drops it from the binary.
//!
//! What the suite pins is what the SQLite backend does today. Where that is a choice rather
//! than a necessity (an invoice copy ignored rather than refused), the behaviour's comment
//! says so; a backend that differs must change the suite and every flow that relies on it.
//!
//! # Not pinned, on purpose
//!
//! SQLite does a few things today that a flow should not come to rely on, so the suite
//! leaves them open:
//! - A [`LogRef::Op`] resolves to an `AppendLog` of its commit, and only to one: SQLite
//!   refuses one naming an `IngestVisits` (which appends an entry too, but yields
//!   [`OpResult::Visits`]). No flow refers to a batch's entry, so whether a backend may
//!   resolve it is left open. (That ops link to the entry they name, and that a reference
//!   that does not resolve fails its commit, is pinned: [`an_op_is_linked_to_the_entry_it_names`],
//!   [`a_reference_that_does_not_resolve_fails_its_commit`].)
//! - `IngestVisits` stamps its log entry with the batch's `now`, not the store's clock, so
//!   `at` need not grow with `seq` when a caller's `now` differs from the store's.
//! - `Attempted` does not check the lease: an attempt recorded after the lease ran out
//!   (and the row was claimed again) still counts; the receiver drops the repeat by its
//!   idempotency key.

use std::sync::Arc;

use carehub_model::{
    AckStatus, Clock, Deadlines, Decision, Order, OrderAck, OrgNumber, PersonalIdentityNumber, Registration,
    RegistrationMethod, SourceId, TagRegistration, TagUid, Visit, VisitOutcome,
};
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

use super::*;
use crate::log::{entry_hash, GENESIS};
use crate::rules::visits::{Outcome, Thresholds};

/// Runs every behaviour of the suite as its own `#[tokio::test]`, each on a store from
/// `$fresh`: an `async fn() -> (G, Arc<dyn Store>, Clock)` whose store stamps its writes
/// with that clock, a frozen one ([`Clock::frozen`]); `G` is kept alive for the test (a
/// temporary directory, a database to drop). The calling crate depends on `tokio`.
#[macro_export]
macro_rules! store_contract_suite {
    ($fresh:path) => {
        $crate::store_contract_suite!(@each $fresh;
            a_failing_op_undoes_its_whole_commit,
            a_failing_request_does_not_spoil_those_committed_with_it,
            the_log_is_one_hash_chain_across_commits,
            an_idempotency_key_is_queued_once,
            claims_take_due_rows_and_respect_leases,
            attempts_are_recorded_and_move_the_order,
            requeue_puts_dead_letters_back,
            copies_of_a_visit_are_stored_once,
            a_staff_member_is_not_in_two_homes_at_once,
            a_feed_cursor_moves_only_with_its_committed_page,
            an_invoice_is_keyed_by_provider_kind_and_id,
            of_two_verifications_that_read_one_generation_one_commits,
            an_op_is_linked_to_the_entry_it_names,
            a_reference_that_does_not_resolve_fails_its_commit,
            a_decisions_versions_only_grow,
            a_revised_order_reads_back_and_its_pauses_are_not_active,
            a_provider_report_is_stored_once_and_filtered,
            the_access_log_is_one_hash_chain_searched_by_client_subject_and_time,
            an_access_is_recorded_with_its_commit_or_not_at_all,
            the_logs_leaf_hashes_are_its_chain_hashes_in_order,
            one_checkpoint_is_kept_per_size_and_the_largest_is_the_latest,
            retention_removes_old_payloads_and_the_chain_and_the_tree_still_verify,
            a_lease_is_held_by_one_owner_at_a_time_and_taken_over_after_its_end,
            a_released_lease_is_free_at_once_and_only_its_holder_releases_it,
        );
    };
    (@each $fresh:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (_keep, store, clock) = $fresh().await;
                $crate::store::contract::$name(store, clock).await;
            }
        )*
    };
}

/// The instant every behaviour starts at (the clock is set to it first).
pub fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).single().expect("a valid instant")
}

const PROVIDER: &str = "5599000014";
const OTHER_PROVIDER: &str = "5560360793";
const CLIENT: &str = "193601016987";
const NEIGHBOUR: &str = "194202138014";

fn nov(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).single().expect("a valid instant")
}

fn nov_day(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, day).expect("a valid date")
}

fn inbound(message_type: &str) -> NewLogEntry {
    NewLogEntry {
        system: "combine".into(),
        vendor: "combine".into(),
        direction: "in",
        message_type: message_type.into(),
        content_type: "application/json".into(),
        payload: message_type.as_bytes().to_vec(),
        status: LogStatus::Accepted,
        ..NewLogEntry::default()
    }
}

fn queued(key: &str, order_id: Option<&str>) -> NewLogEntry {
    NewLogEntry {
        system: "phoniro".into(),
        vendor: "phoniro".into(),
        direction: "out",
        message_type: "order".into(),
        content_type: "application/json".into(),
        status: LogStatus::Queued,
        order_id: order_id.map(str::to_owned),
        client: order_id.map(|_| CLIENT.to_owned()),
        delivery_key: Some(key.into()),
        ..NewLogEntry::default()
    }
}

/// A delivery of `key`, linked to the log entry `log` names.
fn delivery(key: &str, order_id: Option<&str>, log: LogRef) -> NewDelivery {
    NewDelivery {
        system: "phoniro".into(),
        message_type: "order".into(),
        order_id: order_id.map(str::to_owned),
        idempotency_key: key.into(),
        content_type: "application/json".into(),
        endpoint: None,
        body: key.as_bytes().to_vec(),
        action: None,
        log,
    }
}

fn decision(n: usize, client: &str) -> Decision {
    serde_json::from_value(serde_json::json!({
        "id": format!("combine:D-{n}"), "client": client, "case_officer": "hl-1", "provider": PROVIDER,
        "valid_from": "2026-11-01", "valid_to": "2026-11-30",
        "services": [{"code": "PO", "category": "personal_care", "minutes_per_month": 600}]
    }))
    .expect("a valid decision")
}

fn decision_record(d: &Decision) -> DecisionRecord {
    DecisionRecord {
        id: d.id.as_str().into(),
        system: "combine".into(),
        content_hash: String::new(),
        client: d.client.expose().into(),
        provider: d.provider.as_str().into(),
        canonical: serde_json::to_string(d).expect("json"),
        received_at: start(),
        version: 0,
    }
}

/// What one decision's message commits: its entry, the decision, the order, the order's
/// outbound entry and its delivery.
fn decision_ops(n: usize, client: &str) -> Vec<Op> {
    let d = decision(n, client);
    let order_id = format!("O-{n}");
    let order = Order::from_decision(order_id.clone(), &d, nov_day(1), Deadlines::default());
    let key = format!("{order_id}:order");
    vec![
        Op::AppendLog(NewLogEntry { decision_id: Some(d.id.as_str().into()), ..inbound("decision") }),
        Op::InsertDecision(decision_record(&d)),
        Op::InsertOrder(Box::new(OrderRecord::new(order, "combine", "phoniro", OrderStatus::Queued, start()))),
        Op::AppendLog(queued(&key, Some(&order_id))),
        Op::Enqueue(delivery(&key, Some(&order_id), LogRef::Op(3))),
    ]
}

async fn all_entries(store: &dyn Store) -> Vec<LogEntry> {
    store
        .log_entries(LogFilter { limit: 10_000, with_payload: true, ..LogFilter::default() })
        .await
        .expect("the log reads")
}

async fn all_deliveries(store: &dyn Store) -> Vec<Delivery> {
    store.deliveries(DeliveryFilter { limit: 10_000, ..DeliveryFilter::default() }).await.expect("the outbox reads")
}

fn logged(results: &[OpResult]) -> Vec<i64> {
    results
        .iter()
        .filter_map(|r| match r {
            OpResult::Logged(seq) => Some(*seq),
            _ => None,
        })
        .collect()
}

async fn claim(store: &dyn Store, owner: &str, lease_until: DateTime<Utc>, limit: usize) -> Vec<String> {
    let results =
        store.commit(vec![Op::ClaimDue { owner: owner.into(), lease_until, limit }]).await.expect("a claim commits");
    match results.as_slice() {
        [OpResult::Claimed(rows)] => rows.iter().map(|d| d.idempotency_key.clone()).collect(),
        other => panic!("ClaimDue yields Claimed, not {other:?}"),
    }
}

async fn attempted(store: &dyn Store, id: i64, outcome: AttemptOutcome) {
    store.commit(vec![Op::Attempted { id, outcome }]).await.expect("an attempt is recorded");
}

async fn by_key(store: &dyn Store, key: &str) -> Delivery {
    all_deliveries(store).await.into_iter().find(|d| d.idempotency_key == key).expect("the delivery is stored")
}

/// A message's ops land together or not at all: when a later op fails, none of the earlier
/// ones stays (no log entry, no decision, no order, no delivery), the error names why, and
/// the sequence number the failed entry would have taken is the next one's.
pub async fn a_failing_op_undoes_its_whole_commit(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    let first = store.commit(decision_ops(1, CLIENT)).await.expect("the first decision commits");
    assert_eq!(logged(&first), vec![1, 2]);

    // The second decision's ops, then a copy of the first decision: a unique violation.
    let mut ops = decision_ops(2, NEIGHBOUR);
    ops.push(Op::InsertDecision(decision_record(&decision(1, CLIENT))));
    let err = store.commit(ops).await.expect_err("a decision id is stored once");
    assert!(matches!(err, StoreError::Conflict(_)), "a unique key is a Conflict, not {err:?}");
    assert!(store.decision("combine:D-2").await.expect("read").is_none(), "the decision was undone");
    assert!(store.order("O-2").await.expect("read").is_none(), "the order was undone");
    let keys: Vec<String> = all_deliveries(&*store).await.into_iter().map(|d| d.idempotency_key).collect();
    assert_eq!(keys, vec!["O-1:order"], "the delivery was undone");
    assert_eq!(all_entries(&*store).await.len(), 2, "both log entries were undone");

    // A missing row fails a commit the same way.
    let err = store
        .commit(vec![
            Op::AppendLog(inbound("ack")),
            Op::RecordAck(OrderAck {
                order_id: "O-404".into(),
                status: AckStatus::Accepted,
                reason: None,
                at: start(),
            }),
        ])
        .await
        .expect_err("an ack for no order");
    assert!(matches!(err, StoreError::Missing(_)), "an unknown row is Missing, not {err:?}");
    assert_eq!(all_entries(&*store).await.len(), 2, "the ack's entry was undone");

    let next = store.commit(vec![Op::AppendLog(inbound("decision"))]).await.expect("commits");
    assert_eq!(logged(&next), vec![3], "failed commits leave no gap in the sequence");
    let report = verify_chain(&*store).await.expect("verifies");
    assert_eq!((report.entries, report.first_bad), (3, None));
}

/// Requests that fail do not spoil the others that commit at the same moment (a backend
/// that group-commits must undo a failing request alone), and the chain stays one chain.
pub async fn a_failing_request_does_not_spoil_those_committed_with_it(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    store.commit(vec![Op::InsertDecision(decision_record(&decision(0, CLIENT)))]).await.expect("commits");
    let mut tasks = tokio::task::JoinSet::new();
    for n in 1..=24 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut ops = vec![
                Op::AppendLog(NewLogEntry { decision_id: Some(format!("combine:D-{n}")), ..inbound("decision") }),
                Op::InsertDecision(decision_record(&decision(n, CLIENT))),
            ];
            if n % 3 == 0 {
                // Every third request ends in a copy of decision 0.
                ops.push(Op::InsertDecision(decision_record(&decision(0, CLIENT))));
            }
            (n, store.commit(ops).await)
        });
    }
    let mut good = 0;
    while let Some(joined) = tasks.join_next().await {
        let (n, result) = joined.expect("the task runs");
        let stored = store.decision(&format!("combine:D-{n}")).await.expect("read").is_some();
        if n % 3 == 0 {
            assert!(matches!(result, Err(StoreError::Conflict(_))), "request {n}: {result:?}");
            assert!(!stored, "request {n} failed and left its decision");
        } else {
            assert!(result.is_ok(), "request {n}: {result:?}");
            assert!(stored, "request {n} committed without its decision");
            good += 1;
        }
    }
    let entries = all_entries(&*store).await;
    assert_eq!(entries.len(), good, "one entry per committed request, none of the failed ones");
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=good as i64).collect::<Vec<_>>(), "no gaps");
    assert!(entries.iter().all(|e| e.decision_id.as_deref().is_some_and(|d| {
        d.strip_prefix("combine:D-").and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n % 3 != 0)
    })));
    assert_eq!(verify_chain(&*store).await.expect("verifies").first_bad, None);
}

/// Entries appended by one commit and by several chain: seq runs 1, 2, 3... with no gaps,
/// each entry's `prev_hash` is the hash of the one before (the first's is the genesis), each
/// hash is [`entry_hash`] (the same on every backend, so an auditor's head hash survives a
/// move), the store stamps `at` with its clock, and [`verify_chain`] passes.
pub async fn the_log_is_one_hash_chain_across_commits(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    let empty = verify_chain(&*store).await.expect("verifies");
    assert_eq!((empty.entries, empty.head.as_str(), empty.first_bad), (0, GENESIS, None));

    let mut seqs = logged(&store.commit(vec![Op::AppendLog(inbound("decision"))]).await.expect("commits"));
    clock.advance(Duration::seconds(90));
    let ops = (0..3).map(|i| Op::AppendLog(queued(&format!("K-{i}"), None))).collect();
    seqs.extend(logged(&store.commit(ops).await.expect("commits")));
    clock.advance(Duration::seconds(1));
    seqs.extend(logged(&store.commit(vec![Op::AppendLog(inbound("ack"))]).await.expect("commits")));
    assert_eq!(seqs, vec![1, 2, 3, 4, 5], "Logged yields each entry's seq");

    let entries = all_entries(&*store).await;
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(entries[0].prev_hash, GENESIS);
    for pair in entries.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "entry {} links to {}", pair[1].seq, pair[0].seq);
    }
    for e in &entries {
        assert_eq!(e.hash, entry_hash(&e.prev_hash, e), "entry {} hashes as the log module says", e.seq);
    }
    let stamps: Vec<DateTime<Utc>> = entries.iter().map(|e| e.at).collect();
    let (t0, t1, t2) = (start(), start() + Duration::seconds(90), start() + Duration::seconds(91));
    assert_eq!(stamps, vec![t0, t1, t1, t1, t2], "stamped with the store's clock");
    assert_eq!(store.log_entry(3).await.expect("read").as_ref(), Some(&entries[2]), "one entry reads the same");

    let report = verify_chain(&*store).await.expect("verifies");
    assert_eq!(report.entries, 5);
    assert_eq!(report.head, entries[4].hash);
    assert_eq!(report.first_bad, None);
}

/// A delivery's idempotency key is queued once, for good: enqueuing it again is a
/// [`StoreError::Conflict`] that undoes its commit, while the first is pending and after it
/// was delivered. A delivery remembers the log entry that queued it (the `AppendLog` its
/// [`LogRef`] names).
pub async fn an_idempotency_key_is_queued_once(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    let first = store
        .commit(vec![Op::AppendLog(queued("K-1", None)), Op::Enqueue(delivery("K-1", None, LogRef::Op(0)))])
        .await
        .expect("the first enqueue commits");
    assert_eq!(logged(&first), vec![1]);

    for round in ["pending", "delivered"] {
        let err = store
            .commit(vec![Op::AppendLog(queued("K-1", None)), Op::Enqueue(delivery("K-1", None, LogRef::Op(0)))])
            .await
            .expect_err("the key is taken");
        assert!(matches!(err, StoreError::Conflict(_)), "{round}: a Conflict, not {err:?}");
        let rows = all_deliveries(&*store).await;
        assert_eq!(rows.len(), 1, "{round}: one delivery for the key");
        assert_eq!(all_entries(&*store).await.len(), 1, "{round}: the copy's entry was undone");
        attempted(&*store, rows[0].id, AttemptOutcome::Delivered).await;
    }
    let row = by_key(&*store, "K-1").await;
    assert_eq!(row.log_seq, Some(1), "the entry that queued it");
    assert_eq!((row.body.as_slice(), row.state), (b"K-1".as_slice(), DeliveryState::Delivered));
}

/// `ClaimDue` leases due, pending, unleased rows to an owner, oldest due first, up to its
/// limit; a lease holds through its `lease_until` instant (for every owner, its own
/// included) and the row is claimable again after it; a row retried later is not due
/// before its `next_attempt_at`; delivered and dead rows are never claimed.
pub async fn claims_take_due_rows_and_respect_leases(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    for key in ["A", "B", "C"] {
        store
            .commit(vec![Op::AppendLog(queued(key, None)), Op::Enqueue(delivery(key, None, LogRef::Op(0)))])
            .await
            .expect("enqueued");
        clock.advance(Duration::seconds(1));
    }
    clock.set(start() + Duration::seconds(5));
    let lease = start() + Duration::seconds(60);
    assert_eq!(claim(&*store, "w1", lease, 2).await, vec!["A", "B"], "oldest due first, up to the limit");
    assert_eq!(claim(&*store, "w2", lease, 10).await, vec!["C"], "never a row leased to another");
    assert!(claim(&*store, "w2", lease, 10).await.is_empty(), "nor one leased to itself");

    let (a, b) = (by_key(&*store, "A").await, by_key(&*store, "B").await);
    attempted(&*store, a.id, AttemptOutcome::Delivered).await;
    let retry_at = start() + Duration::minutes(10);
    attempted(&*store, b.id, AttemptOutcome::Retry { next_attempt_at: retry_at, error: "503".into() }).await;

    clock.set(lease);
    assert!(claim(&*store, "w3", lease + Duration::seconds(60), 10).await.is_empty(), "a lease holds through its end");
    clock.set(lease + Duration::microseconds(1));
    assert_eq!(claim(&*store, "w3", retry_at, 10).await, vec!["C"], "an expired lease is claimed again");
    assert_eq!(store.next_due().await.expect("reads"), Some(start() + Duration::seconds(2)), "C is still due");

    clock.set(retry_at - Duration::seconds(1));
    assert!(claim(&*store, "w4", retry_at + Duration::minutes(1), 10).await.is_empty(), "B is not due yet");
    clock.set(retry_at);
    assert_eq!(claim(&*store, "w4", retry_at + Duration::minutes(1), 10).await, vec!["B"], "B is due at its time");

    let c = by_key(&*store, "C").await;
    attempted(&*store, c.id, AttemptOutcome::Dead { error: "400".into() }).await;
    clock.advance(Duration::hours(1));
    assert_eq!(claim(&*store, "w5", clock.now() + Duration::minutes(1), 10).await, vec!["B"], "B's lease ran out");
    let b = by_key(&*store, "B").await;
    attempted(&*store, b.id, AttemptOutcome::Delivered).await;
    clock.advance(Duration::hours(1));
    assert!(claim(&*store, "w6", clock.now(), 10).await.is_empty(), "delivered and dead rows are not claimed");
    assert_eq!(store.next_due().await.expect("reads"), None);
}

/// `Attempted` records an attempt's result: a retry keeps the row pending until its
/// `next_attempt_at` with the error kept; delivered and dead rows are stamped with the
/// store's clock; each attempt counts; an order's delivery moves the order (delivered,
/// dead letter), but never moves an order back once the provider answered. An attempt on
/// no row is [`StoreError::Missing`].
pub async fn attempts_are_recorded_and_move_the_order(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    store.commit(decision_ops(1, CLIENT)).await.expect("order 1");
    store.commit(decision_ops(2, NEIGHBOUR)).await.expect("order 2");
    let (one, two) = (by_key(&*store, "O-1:order").await, by_key(&*store, "O-2:order").await);
    assert_eq!(store.pending_deliveries().await.expect("pending"), 2);

    let retry_at = start() + Duration::minutes(5);
    attempted(&*store, one.id, AttemptOutcome::Retry { next_attempt_at: retry_at, error: "timeout".into() }).await;
    let row = by_key(&*store, "O-1:order").await;
    assert_eq!(
        (row.state, row.attempts, row.next_attempt_at, row.last_error.as_deref()),
        (DeliveryState::Pending, 1, retry_at, Some("timeout"))
    );
    assert_eq!(store.order("O-1").await.expect("read").expect("order").status, OrderStatus::Queued);

    clock.set(retry_at);
    attempted(&*store, one.id, AttemptOutcome::Dead { error: "refused".into() }).await;
    let row = by_key(&*store, "O-1:order").await;
    assert_eq!((row.state, row.attempts, row.last_error.as_deref()), (DeliveryState::Dead, 2, Some("refused")));
    assert_eq!(store.order("O-1").await.expect("read").expect("order").status, OrderStatus::DeadLetter);

    // The provider's answer overtakes the delivery record of order 2.
    let ack = OrderAck { order_id: "O-2".into(), status: AckStatus::Accepted, reason: None, at: retry_at };
    store.commit(vec![Op::RecordAck(ack)]).await.expect("ack");
    attempted(&*store, two.id, AttemptOutcome::Delivered).await;
    let row = by_key(&*store, "O-2:order").await;
    assert_eq!((row.state, row.delivered_at), (DeliveryState::Delivered, Some(retry_at)));
    let order = store.order("O-2").await.expect("read").expect("order");
    assert_eq!((order.status, order.delivered_at), (OrderStatus::Accepted, Some(retry_at)));
    assert_eq!(store.outbox_counts().await.expect("counts"), OutboxCounts { pending: 0, delivered: 1, dead: 1 });
    assert_eq!(store.pending_deliveries().await.expect("pending"), 0);

    let err = store
        .commit(vec![Op::Attempted { id: 9999, outcome: AttemptOutcome::Delivered }])
        .await
        .expect_err("no such delivery");
    assert!(matches!(err, StoreError::Missing(_)), "a Missing, not {err:?}");
}

/// `Requeue` puts dead letters (all, or the ones named) back in the outbox, due now, with
/// their attempts reset and claimable at once; their orders go back to queued; each gets
/// a `requeued` log entry following the entry that queued it (its order and client carried
/// over); ids of rows that are not dead are passed over.
pub async fn requeue_puts_dead_letters_back(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    store.commit(decision_ops(1, CLIENT)).await.expect("order 1");
    for key in ["X", "Y"] {
        store
            .commit(vec![Op::AppendLog(queued(key, None)), Op::Enqueue(delivery(key, None, LogRef::Op(0)))])
            .await
            .expect("queued");
    }
    assert_eq!(claim(&*store, "w1", start() + Duration::minutes(1), 10).await, vec!["O-1:order", "X", "Y"]);
    let (one, x, y) = (by_key(&*store, "O-1:order").await, by_key(&*store, "X").await, by_key(&*store, "Y").await);
    attempted(&*store, one.id, AttemptOutcome::Dead { error: "refused".into() }).await;
    attempted(&*store, x.id, AttemptOutcome::Dead { error: "refused".into() }).await;
    attempted(&*store, y.id, AttemptOutcome::Delivered).await;
    let before = all_entries(&*store).await.len();

    clock.set(start() + Duration::hours(2));
    let results = store.commit(vec![Op::Requeue { ids: Some(vec![one.id, y.id]) }]).await.expect("requeued");
    let requeued = match results.as_slice() {
        [OpResult::Requeued(rows)] => rows.clone(),
        other => panic!("Requeue yields Requeued, not {other:?}"),
    };
    assert_eq!(requeued.iter().map(|d| d.id).collect::<Vec<_>>(), vec![one.id], "only dead rows come back");
    let row = by_key(&*store, "O-1:order").await;
    assert_eq!((row.state, row.attempts, row.next_attempt_at), (DeliveryState::Pending, 0, clock.now()));
    assert_eq!(by_key(&*store, "X").await.state, DeliveryState::Dead, "X was not named");
    assert_eq!(store.order("O-1").await.expect("read").expect("order").status, OrderStatus::Queued);

    let entries = all_entries(&*store).await;
    assert_eq!(entries.len(), before + 1, "one entry per requeued delivery");
    let entry = entries.last().expect("an entry");
    assert_eq!(entry.status, LogStatus::Requeued);
    assert_eq!(entry.delivery_key.as_deref(), Some("O-1:order"));
    assert_eq!((entry.order_id.as_deref(), entry.client.as_deref()), (Some("O-1"), Some(CLIENT)));
    assert_eq!(entry.at, clock.now());

    let all = store.commit(vec![Op::Requeue { ids: None }]).await.expect("requeued");
    assert!(matches!(all.as_slice(), [OpResult::Requeued(rows)] if rows.len() == 1 && rows[0].id == x.id));
    assert_eq!(claim(&*store, "w2", clock.now() + Duration::minutes(1), 10).await, vec!["O-1:order", "X"]);
    assert_eq!(verify_chain(&*store).await.expect("verifies").first_bad, None);
}

/// Decisions, orders and tags for [`CLIENT`] (tag 04A21BC3) and [`NEIGHBOUR`] (04A21BC4),
/// both with [`PROVIDER`] through November 2026.
async fn homes(store: &dyn Store) {
    for (n, (client, tag)) in [(CLIENT, "04A21BC3"), (NEIGHBOUR, "04A21BC4")].into_iter().enumerate() {
        let d = decision(n, client);
        let order = Order::from_decision(format!("O-{n}"), &d, nov_day(1), Deadlines::default());
        store
            .commit(vec![
                Op::InsertDecision(decision_record(&d)),
                Op::InsertOrder(Box::new(OrderRecord::new(
                    order,
                    "combine",
                    "phoniro",
                    OrderStatus::Accepted,
                    start(),
                ))),
                Op::RegisterTag(TagRegistration {
                    tag_uid: TagUid::parse(tag).expect("tag"),
                    client: PersonalIdentityNumber::parse(client).expect("pnr"),
                    installed_on: nov_day(1),
                    removed_on: None,
                }),
            ])
            .await
            .expect("a home");
    }
}

fn visit(id: &str, client: &str, tag: &str, staff: &str, from: DateTime<Utc>, minutes: i64) -> IncomingVisit {
    let reg = |t| Registration { at: t, method: RegistrationMethod::Nfc { tag_uid: tag.into() } };
    IncomingVisit::Visit {
        visit: Box::new(Visit {
            id: Some(SourceId::parse(id).expect("id")),
            provider: Some(OrgNumber::parse(PROVIDER).expect("org")),
            client: client.into(),
            order_id: None,
            staff: staff.into(),
            check_in: reg(from),
            check_out: Some(reg(from + Duration::minutes(minutes))),
            planned_minutes: Some(30),
            services: Vec::new(),
            outcome: VisitOutcome::Performed,
            double_staffing: false,
        }),
        line: None,
    }
}

fn ingest_op(system: &str, visits: Vec<IncomingVisit>, cursor: Option<&str>) -> Op {
    Op::IngestVisits(Box::new(VisitIngest {
        system: system.into(),
        log: NewLogEntry {
            system: system.into(),
            vendor: system.into(),
            direction: "in",
            message_type: "visits".into(),
            content_type: "application/json".into(),
            status: LogStatus::Accepted,
            ..NewLogEntry::default()
        },
        visits,
        thresholds: Thresholds::default(),
        now: start(),
        cursor: cursor.map(str::to_owned),
    }))
}

/// (outcome, codes, duplicate_of) of each record of a batch.
type Summary = Vec<(Outcome, Vec<String>, Option<String>)>;

async fn ingest(store: &dyn Store, visits: Vec<IncomingVisit>) -> Summary {
    let results = store.commit(vec![ingest_op("phoniro", visits, None)]).await.expect("the batch commits");
    match results.as_slice() {
        [OpResult::Visits(report)] => {
            report.results.iter().map(|r| (r.outcome, r.codes.clone(), r.duplicate_of.clone())).collect()
        }
        other => panic!("IngestVisits yields Visits, not {other:?}"),
    }
}

async fn stored_visits(store: &dyn Store) -> Vec<String> {
    let rows = store.visits(VisitFilter { limit: 1000, ..VisitFilter::default() }).await.expect("visits read");
    rows.into_iter().map(|v| v.id).collect()
}

/// VIS007: a visit is stored once, whether its copy comes in the same batch or a later
/// one, under the same source id or under another id with the same staff member, client
/// and times; the copy is answered with the id first received.
pub async fn copies_of_a_visit_are_stored_once(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    homes(&*store).await;
    let copy = |id: &str| (Outcome::Rejected, vec!["VIS007".to_owned()], Some(id.to_owned()));
    let summary = ingest(
        &*store,
        vec![
            visit("phoniro:V-1", CLIENT, "04A21BC3", "s-1", nov(10, 8, 0), 30),
            visit("phoniro:V-1", CLIENT, "04A21BC3", "s-1", nov(10, 8, 0), 30),
            visit("phoniro:V-1b", CLIENT, "04A21BC3", "s-1", nov(10, 8, 0), 30),
            // Another staff member at the same time is not a copy.
            visit("phoniro:V-2", CLIENT, "04A21BC3", "s-2", nov(10, 8, 0), 30),
        ],
    )
    .await;
    assert_eq!(
        summary,
        vec![
            (Outcome::Accepted, vec![], None),
            copy("phoniro:V-1"),
            copy("phoniro:V-1"),
            (Outcome::Accepted, vec![], None)
        ]
    );
    let later = ingest(
        &*store,
        vec![
            visit("phoniro:V-1", CLIENT, "04A21BC3", "s-1", nov(10, 8, 0), 30),
            visit("phoniro:V-1c", CLIENT, "04A21BC3", "s-1", nov(10, 8, 0), 30),
        ],
    )
    .await;
    assert_eq!(later, vec![copy("phoniro:V-1"), copy("phoniro:V-1")]);
    assert_eq!(stored_visits(&*store).await, vec!["phoniro:V-1", "phoniro:V-2"], "copies are not stored");
}

/// VIS005: the same staff member in two homes at overlapping times is refused (whichever
/// batch the first visit came in); back-to-back visits, another staff member, and an
/// earlier visit that was itself refused do not count as overlaps. Refused visits are
/// stored with their codes.
pub async fn a_staff_member_is_not_in_two_homes_at_once(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    homes(&*store).await;
    let overlap = (Outcome::Rejected, vec!["VIS005".to_owned()], None);
    let ok = (Outcome::Accepted, vec![], None);
    let first = ingest(
        &*store,
        vec![
            visit("phoniro:V-1", CLIENT, "04A21BC3", "s-1", nov(10, 8, 0), 30),
            visit("phoniro:V-2", NEIGHBOUR, "04A21BC4", "s-1", nov(10, 8, 15), 30),
            visit("phoniro:V-3", NEIGHBOUR, "04A21BC4", "s-2", nov(10, 8, 15), 30),
        ],
    )
    .await;
    assert_eq!(first, vec![ok.clone(), overlap.clone(), ok.clone()]);
    let later = ingest(
        &*store,
        vec![
            // Starts as V-1 ends: no overlap.
            visit("phoniro:V-4", NEIGHBOUR, "04A21BC4", "s-1", nov(10, 8, 30), 10),
            // Overlaps V-1 from a later batch.
            visit("phoniro:V-5", NEIGHBOUR, "04A21BC4", "s-1", nov(10, 7, 50), 20),
            // Overlaps only V-2, which was refused.
            visit("phoniro:V-6", CLIENT, "04A21BC3", "s-1", nov(10, 8, 41), 4),
        ],
    )
    .await;
    assert_eq!(later, vec![ok.clone(), overlap, ok]);
    let refused = store
        .visits(VisitFilter { code: Some("VIS005".into()), limit: 10, ..VisitFilter::default() })
        .await
        .expect("visits read");
    assert_eq!(refused.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), vec!["phoniro:V-2", "phoniro:V-5"]);
    assert!(refused.iter().all(|v| v.outcome == "rejected"));
}

/// A pulled feed's cursor is stored with its page, per system: read back by
/// [`VisitStore::feed_cursor`], left alone by a page that carries none, and not moved by a
/// commit that failed (its visits are not stored either, so the page is fetched again).
pub async fn a_feed_cursor_moves_only_with_its_committed_page(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    homes(&*store).await;
    assert_eq!(store.feed_cursor("phoniro").await.expect("reads"), None);
    let page = |id: &str| vec![visit(id, CLIENT, "04A21BC3", "s-1", nov(10, 8, 0), 30)];

    store.commit(vec![ingest_op("phoniro", page("phoniro:V-1"), Some("c-1"))]).await.expect("page 1");
    assert_eq!(store.feed_cursor("phoniro").await.expect("reads").as_deref(), Some("c-1"));
    store.commit(vec![ingest_op("phoniro", Vec::new(), None)]).await.expect("a push");
    assert_eq!(store.feed_cursor("phoniro").await.expect("reads").as_deref(), Some("c-1"), "no cursor, no move");

    let failed = store
        .commit(vec![
            ingest_op("phoniro", vec![visit("phoniro:V-2", CLIENT, "04A21BC3", "s-1", nov(11, 8, 0), 30)], Some("c-2")),
            Op::RecordAck(OrderAck {
                order_id: "O-404".into(),
                status: AckStatus::Accepted,
                reason: None,
                at: start(),
            }),
        ])
        .await;
    assert!(matches!(failed, Err(StoreError::Missing(_))), "{failed:?}");
    assert_eq!(store.feed_cursor("phoniro").await.expect("reads").as_deref(), Some("c-1"), "a failed page stays");
    assert_eq!(stored_visits(&*store).await, vec!["phoniro:V-1"], "nor are its visits stored");

    store.commit(vec![ingest_op("tes", Vec::new(), Some("t-1"))]).await.expect("another feed");
    assert_eq!(store.feed_cursor("tes").await.expect("reads").as_deref(), Some("t-1"));
    assert_eq!(store.feed_cursor("phoniro").await.expect("reads").as_deref(), Some("c-1"), "cursors are per system");
}

/// An invoice linked to the commit's first op, its `AppendLog`.
fn invoice(provider: &str, kind: &str, id: &str, canonical: &str) -> NewInvoice {
    NewInvoice {
        provider: provider.into(),
        kind: kind.into(),
        id: id.into(),
        month: "2026-11".into(),
        canonical: canonical.into(),
        log: LogRef::Op(0),
        received_at: start(),
    }
}

/// A verification of a provider's invoice that verified one line, linked to the log entry
/// `log` names.
fn verification(provider: &str, invoice_id: &str, line: &str, log: LogRef) -> NewVerification {
    NewVerification {
        provider: provider.into(),
        invoice_id: invoice_id.into(),
        month: "2026-11".into(),
        report: format!("{{\"provider\":\"{provider}\"}}"),
        lines: vec![line.into()],
        log,
        created_at: start(),
    }
}

/// An invoice is identified by its provider, its kind and its id. A copy (the same key
/// again) is ignored, not refused: its commit succeeds and the first stands, so a resent
/// invoice is logged but not stored twice. Two providers may use the same id, and so may an
/// invoice and a credit note. Verifications are kept per provider too.
pub async fn an_invoice_is_keyed_by_provider_kind_and_id(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    let store_one = |i: NewInvoice| {
        let store = store.clone();
        async move { store.commit(vec![Op::AppendLog(inbound("invoice")), Op::StoreInvoice(i)]).await.expect("commits") }
    };
    store_one(invoice(PROVIDER, "invoice", "F-1", "first")).await;
    store_one(invoice(PROVIDER, "invoice", "F-1", "copy")).await;
    store_one(invoice(OTHER_PROVIDER, "invoice", "F-1", "other")).await;
    store_one(invoice(PROVIDER, "credit_note", "F-1", "credit")).await;

    let read = |p: &'static str, k: &'static str| {
        let store = store.clone();
        async move { store.invoice(p, k, "F-1").await.expect("reads").map(|i| (i.canonical, i.log_seq)) }
    };
    assert_eq!(read(PROVIDER, "invoice").await, Some(("first".into(), 1)), "the first stands, with its entry");
    assert_eq!(read(OTHER_PROVIDER, "invoice").await, Some(("other".into(), 3)));
    assert_eq!(read(PROVIDER, "credit_note").await, Some(("credit".into(), 4)));
    let ours = store.invoices(PROVIDER, "2026-11", None).await.expect("reads");
    assert_eq!(ours.len(), 2, "one invoice and one credit note: {ours:?}");
    assert_eq!(store.invoices(PROVIDER, "2026-11", Some("invoice")).await.expect("reads").len(), 1);
    assert_eq!(all_entries(&*store).await.len(), 4, "the copy was logged");

    for (provider, line) in [(PROVIDER, "L-1"), (OTHER_PROVIDER, "L-9")] {
        store
            .commit(vec![
                Op::AppendLog(inbound("verification")),
                Op::RecordVerification(verification(provider, "F-1", line, LogRef::Op(0))),
            ])
            .await
            .expect("verified");
    }
    assert_eq!(store.verified_providers("F-1").await.expect("reads"), vec![OTHER_PROVIDER, PROVIDER]);
    assert_eq!(store.verified_lines(PROVIDER, "F-1").await.expect("reads"), vec!["L-1"]);
    assert_eq!(store.verified_lines(OTHER_PROVIDER, "F-1").await.expect("reads"), vec!["L-9"]);
    let report = store.verification(OTHER_PROVIDER, "F-1").await.expect("reads").expect("a report");
    assert_eq!((report.report.as_str(), report.log_seq), ("{\"provider\":\"5560360793\"}", 6));
}

/// INV005 without a lock in the hub: two verifications of one provider's invoices that read
/// the same invoice generation and both commit expecting it ([`Op::ExpectInvoiceGeneration`])
/// cannot both count the same lines. Sent at once, exactly one commits; the other fails as
/// [`StoreError::Stale`] with nothing of it written, and the generation has moved on so a
/// verification that reads again commits. An invoice already stored (a copy) does not move
/// the generation; one stored for another provider moves only that provider's.
pub async fn of_two_verifications_that_read_one_generation_one_commits(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    assert_eq!(store.invoice_generation(PROVIDER).await.expect("reads"), 0, "nothing stored yet");
    let verify = |n: usize, generation: i64| {
        let store = store.clone();
        async move {
            let id = format!("F-{n}");
            store
                .commit(vec![
                    Op::ExpectInvoiceGeneration { provider: PROVIDER.into(), generation },
                    Op::AppendLog(inbound("invoice")),
                    Op::StoreInvoice(NewInvoice { log: LogRef::Op(1), ..invoice(PROVIDER, "invoice", &id, &id) }),
                    Op::RecordVerification(verification(PROVIDER, &id, "L-1", LogRef::Op(1))),
                ])
                .await
        }
    };
    let (a, b) = tokio::join!(verify(1, 0), verify(2, 0));
    let (won, lost) = match (a, b) {
        (Ok(_), Err(e)) => ("F-1", e),
        (Err(e), Ok(_)) => ("F-2", e),
        other => panic!("exactly one of two commits expecting one generation commits: {other:?}"),
    };
    assert!(matches!(lost, StoreError::Stale(_)), "the other is stale: {lost:?}");
    assert_eq!(all_entries(&*store).await.len(), 1, "only the winner's entry is logged");
    let invoices = store.invoices(PROVIDER, "2026-11", None).await.expect("reads");
    assert_eq!(invoices.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), vec![won], "only the winner's invoice");
    let lost_id = if won == "F-1" { "F-2" } else { "F-1" };
    assert!(store.verification(PROVIDER, lost_id).await.expect("reads").is_none(), "nor its verification");
    assert!(store.verified_lines(PROVIDER, lost_id).await.expect("reads").is_empty(), "nor its lines");

    let now = store.invoice_generation(PROVIDER).await.expect("reads");
    assert!(now > 0, "the winner moved the generation on");
    let again = if won == "F-1" { 2 } else { 1 };
    verify(again, now).await.expect("a verification that read again commits");
    let after = store.invoice_generation(PROVIDER).await.expect("reads");
    assert!(after > now, "and moves it on again");

    store
        .commit(vec![Op::AppendLog(inbound("invoice")), Op::StoreInvoice(invoice(PROVIDER, "invoice", won, "copy"))])
        .await
        .expect("a copy commits");
    assert_eq!(store.invoice_generation(PROVIDER).await.expect("reads"), after, "a copy stores nothing new");
    assert_eq!(store.invoice_generation(OTHER_PROVIDER).await.expect("reads"), 0, "another provider's is its own");
    store
        .commit(vec![
            Op::AppendLog(inbound("invoice")),
            Op::StoreInvoice(invoice(OTHER_PROVIDER, "invoice", "F-9", "x")),
        ])
        .await
        .expect("commits");
    assert_eq!(store.invoice_generation(PROVIDER).await.expect("reads"), after);
    assert!(store.invoice_generation(OTHER_PROVIDER).await.expect("reads") > 0);
}

/// `Enqueue`, `StoreInvoice` and `RecordVerification` link what they write to the log entry
/// their [`LogRef`] names, never to wherever the chain stands: [`LogRef::Op`] is the entry
/// the `AppendLog` at that index of the same commit appended, whatever was appended after
/// it in that commit or by the other requests committed with it (a backend that
/// group-commits must not take its chain head), and [`LogRef::Seq`] is an entry already in
/// the log, however many came after it, from a commit that appends nothing of its own.
pub async fn an_op_is_linked_to_the_entry_it_names(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..32 {
        let store = store.clone();
        tasks.spawn(async move {
            let (key, id) = (format!("K-{n}"), format!("F-{n}"));
            let ops = if n % 2 == 0 {
                vec![
                    Op::AppendLog(queued(&key, None)),
                    Op::AppendLog(inbound("invoice")),
                    // Appended after both: the chain head when the records are written.
                    Op::AppendLog(inbound("noise")),
                    Op::StoreInvoice(NewInvoice { log: LogRef::Op(1), ..invoice(PROVIDER, "invoice", &id, &key) }),
                    Op::RecordVerification(verification(PROVIDER, &id, "L-1", LogRef::Op(1))),
                    Op::Enqueue(delivery(&key, None, LogRef::Op(0))),
                ]
            } else {
                // Another request's entries, in the same group commit when the backend
                // groups them.
                vec![Op::AppendLog(inbound("noise")), Op::AppendLog(inbound("noise"))]
            };
            (n, store.commit(ops).await)
        });
    }
    let mut linked = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (n, result) = joined.expect("the task runs");
        let results = result.unwrap_or_else(|e| panic!("request {n} commits: {e:?}"));
        if n % 2 == 0 {
            let seqs = logged(&results);
            assert_eq!(seqs.len(), 3, "request {n}");
            let (key, id) = (format!("K-{n}"), format!("F-{n}"));
            assert_eq!(by_key(&*store, &key).await.log_seq, Some(seqs[0]), "request {n}: the delivery's entry");
            let stored = store.invoice(PROVIDER, "invoice", &id).await.expect("reads").expect("the invoice");
            assert_eq!(stored.log_seq, seqs[1], "request {n}: the invoice's entry");
            let report = store.verification(PROVIDER, &id).await.expect("reads").expect("the report");
            assert_eq!(report.log_seq, seqs[1], "request {n}: the verification's entry");
            let queued_entry = store.log_entry(seqs[0]).await.expect("reads").expect("the entry");
            assert_eq!(queued_entry.delivery_key.as_deref(), Some(key.as_str()), "request {n}: its own entry");
            linked.push(seqs);
        }
    }
    assert_eq!(verify_chain(&*store).await.expect("verifies").first_bad, None);

    // A commit that logs nothing of its own, and one that logs after the entry it names.
    let first = linked[0].clone();
    store.commit(vec![Op::Enqueue(delivery("LATE-1", None, LogRef::Seq(first[0])))]).await.expect("commits");
    store
        .commit(vec![
            Op::AppendLog(inbound("noise")),
            Op::StoreInvoice(NewInvoice {
                log: LogRef::Seq(first[1]),
                ..invoice(PROVIDER, "invoice", "F-LATE", "late")
            }),
            Op::RecordVerification(verification(PROVIDER, "F-LATE", "L-1", LogRef::Seq(first[1]))),
            Op::Enqueue(delivery("LATE-2", None, LogRef::Seq(first[0]))),
        ])
        .await
        .expect("commits");
    assert_eq!(by_key(&*store, "LATE-1").await.log_seq, Some(first[0]));
    assert_eq!(by_key(&*store, "LATE-2").await.log_seq, Some(first[0]));
    let late = store.invoice(PROVIDER, "invoice", "F-LATE").await.expect("reads").expect("the invoice");
    assert_eq!(late.log_seq, first[1]);
    let report = store.verification(PROVIDER, "F-LATE").await.expect("reads").expect("the report");
    assert_eq!(report.log_seq, first[1]);
}

/// A [`LogRef`] that does not resolve fails its whole commit with
/// [`StoreError::Unresolved`], naming the op and its reference, and nothing of the commit
/// is written: an index past the commit's ops, the referring op's own index or a later
/// one's (an entry not appended yet), an op that is not an `AppendLog`, or a sequence
/// number not in the log.
pub async fn a_reference_that_does_not_resolve_fails_its_commit(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    let first = store.commit(vec![Op::AppendLog(inbound("decision"))]).await.expect("commits");
    assert_eq!(logged(&first), vec![1]);

    let bad: Vec<(&str, Vec<Op>, usize, LogRef)> = vec![
        (
            "past the ops",
            vec![Op::AppendLog(queued("K-1", None)), Op::Enqueue(delivery("K-1", None, LogRef::Op(5)))],
            1,
            LogRef::Op(5),
        ),
        (
            "its own index",
            vec![Op::AppendLog(queued("K-1", None)), Op::Enqueue(delivery("K-1", None, LogRef::Op(1)))],
            1,
            LogRef::Op(1),
        ),
        (
            "a later AppendLog",
            vec![Op::Enqueue(delivery("K-1", None, LogRef::Op(1))), Op::AppendLog(queued("K-1", None))],
            0,
            LogRef::Op(1),
        ),
        (
            "not an AppendLog",
            vec![
                Op::AppendLog(inbound("invoice")),
                Op::InsertDecision(decision_record(&decision(1, CLIENT))),
                Op::StoreInvoice(NewInvoice { log: LogRef::Op(1), ..invoice(PROVIDER, "invoice", "F-1", "x") }),
            ],
            2,
            LogRef::Op(1),
        ),
        (
            "a sequence number not in the log",
            vec![
                Op::AppendLog(inbound("verification")),
                Op::RecordVerification(verification(PROVIDER, "F-1", "L-1", LogRef::Seq(99))),
            ],
            1,
            LogRef::Seq(99),
        ),
        (
            "sequence number 0",
            vec![
                Op::AppendLog(inbound("invoice")),
                Op::StoreInvoice(NewInvoice { log: LogRef::Seq(0), ..invoice(PROVIDER, "invoice", "F-1", "x") }),
            ],
            1,
            LogRef::Seq(0),
        ),
    ];
    for (case, ops, at, named) in bad {
        let err = store.commit(ops).await.expect_err(case);
        assert!(
            matches!(err, StoreError::Unresolved { op, reference } if op == at && reference == named),
            "{case}: Unresolved {{ op: {at}, reference: {named:?} }}, not {err:?}"
        );
    }

    assert_eq!(all_entries(&*store).await.len(), 1, "no failed commit left an entry");
    assert!(all_deliveries(&*store).await.is_empty(), "nor a delivery");
    assert!(store.decision("combine:D-1").await.expect("reads").is_none(), "nor a decision");
    assert!(store.invoice(PROVIDER, "invoice", "F-1").await.expect("reads").is_none(), "nor an invoice");
    assert!(store.verification(PROVIDER, "F-1").await.expect("reads").is_none(), "nor a verification");
    assert!(store.verified_lines(PROVIDER, "F-1").await.expect("reads").is_empty(), "nor its lines");
    let next = store.commit(vec![Op::AppendLog(inbound("decision"))]).await.expect("commits");
    assert_eq!(logged(&next), vec![2], "failed commits leave no gap in the sequence");
    assert_eq!(verify_chain(&*store).await.expect("verifies").first_bad, None);
}

fn version(decision_id: &str, version: u32, kind: &str) -> DecisionVersion {
    DecisionVersion {
        decision_id: decision_id.into(),
        version,
        effective_from: nov_day(10),
        kind: kind.into(),
        canonical: serde_json::json!({"version": version}),
        system: "combine".into(),
        received_at: start(),
    }
}

/// A decision's versions (SPEC §4.4) only grow, inside the commit: the same version again
/// is a [`StoreError::Conflict`] (a duplicate), an older one [`StoreError::Stale`], one of a
/// decision not stored [`StoreError::Missing`]; none of them changes anything. Version 0 is
/// the decision as first stored.
pub async fn a_decisions_versions_only_grow(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    store.commit(decision_ops(1, CLIENT)).await.expect("the decision commits");
    let change = |v: u32, current: &str| Op::ChangeDecision {
        version: version("combine:D-1", v, "services"),
        current: current.into(),
        provider: PROVIDER.into(),
    };
    let d = decision(1, CLIENT);
    let current = serde_json::to_string(&d).expect("json");
    store.commit(vec![change(2, &current)]).await.expect("version 2 commits");
    let again = store.commit(vec![Op::AppendLog(inbound("decision_change")), change(2, &current)]).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "the same version again: {again:?}");
    let older = store.commit(vec![Op::AppendLog(inbound("decision_change")), change(1, &current)]).await;
    assert!(matches!(older, Err(StoreError::Stale(_))), "an older version: {older:?}");
    let unknown = store
        .commit(vec![Op::ChangeDecision {
            version: version("combine:D-404", 1, "ended"),
            current: current.clone(),
            provider: PROVIDER.into(),
        }])
        .await;
    assert!(matches!(unknown, Err(StoreError::Missing(_))), "a decision not stored: {unknown:?}");

    let record = store.decision("combine:D-1").await.expect("reads").expect("stored");
    assert_eq!(record.version, 2, "the decision's row knows its latest version");
    let versions = store.decision_versions("combine:D-1").await.expect("reads");
    let seen: Vec<(u32, &str)> = versions.iter().map(|v| (v.version, v.kind.as_str())).collect();
    assert_eq!(seen, vec![(0, "decision"), (2, "services")]);
    assert_eq!(versions[0].effective_from, nov_day(1), "version 0 applies from the decision's first day");
    assert_eq!(all_entries(&*store).await.len(), 2, "the refused commits logged nothing");
    assert!(store.decision_versions("combine:D-404").await.expect("reads").is_empty());
}

/// A revised order (SPEC §4.4) reads back as written; a day in one of its pauses is not an
/// active day for [`OrderStore::client_providers`]; `reconfirm` clears its answer; orders
/// are found by client and by decision.
pub async fn a_revised_order_reads_back_and_its_pauses_are_not_active(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    store.commit(decision_ops(1, CLIENT)).await.expect("the decision commits");
    let ack = OrderAck { order_id: "O-1".into(), status: AckStatus::Accepted, reason: None, at: start() };
    store.commit(vec![Op::RecordAck(ack)]).await.expect("acked");
    let mut order = store.order("O-1").await.expect("reads").expect("stored").order;
    order.pauses.push(carehub_model::Pause {
        from: nov_day(5),
        to: nov_day(12),
        reason: carehub_model::PauseReason::HospitalStay,
        version: 1,
    });
    order.version = 1;
    order.execute_by = nov_day(20);
    store.commit(vec![Op::ReviseOrder { order: Box::new(order.clone()), reconfirm: true }]).await.expect("revised");
    let read = store.order("O-1").await.expect("reads").expect("stored");
    assert_eq!(read.order, order);
    assert_eq!((read.ack_status, read.acked_at), (None, None), "the changed order awaits a new answer");
    let overdue = store.overdue_counts(nov_day(21)).await.expect("reads");
    assert_eq!(overdue.not_confirmed, 1, "and is overdue after its new execute-by date");
    for (day, active) in [(4, true), (5, false), (12, false), (13, true)] {
        let providers = store.client_providers(CLIENT, nov_day(day)).await.expect("reads");
        assert_eq!(!providers.is_empty(), active, "November {day}: {providers:?}");
    }
    let mut ended = order.clone();
    ended.end_date = Some(nov_day(20));
    ended.ended = Some(carehub_model::OrderEndReason::Died);
    store.commit(vec![Op::ReviseOrder { order: Box::new(ended), reconfirm: false }]).await.expect("ended");
    assert!(store.client_providers(CLIENT, nov_day(21)).await.expect("reads").is_empty(), "after its end");
    assert_eq!(store.client_providers(CLIENT, nov_day(20)).await.expect("reads"), vec![PROVIDER.to_owned()]);

    let missing = store
        .commit(vec![Op::ReviseOrder { order: Box::new(Order { id: "O-404".into(), ..order }), reconfirm: false }])
        .await;
    assert!(matches!(missing, Err(StoreError::Missing(_))), "{missing:?}");
    let by = |client: Option<&str>, decision: Option<&str>| OrderFilter {
        client: client.map(Into::into),
        decision_id: decision.map(Into::into),
        limit: 10,
        ..OrderFilter::default()
    };
    assert_eq!(store.orders(by(Some(CLIENT), None)).await.expect("reads").len(), 1);
    assert_eq!(store.orders(by(None, Some("combine:D-1"))).await.expect("reads").len(), 1);
    assert!(store.orders(by(Some("191212121212"), None)).await.expect("reads").is_empty());
}

fn report(id: &str, message_type: &str, kind: &str, day: u32) -> ProviderReport {
    ProviderReport {
        id: id.into(),
        message_type: message_type.into(),
        kind: kind.into(),
        severity: (message_type == "deviation").then(|| "high".to_owned()),
        provider: PROVIDER.into(),
        client: CLIENT.into(),
        order_id: Some("O-1".into()),
        day: nov_day(day),
        system: "phoniro".into(),
        canonical: serde_json::json!({"id": id}),
        received_at: start(),
    }
}

/// Deviations and changes of need are stored once by id ([`StoreError::Conflict`] for the
/// same id again) and listed by provider, month and kind (the message type or its kind).
pub async fn a_provider_report_is_stored_once_and_filtered(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    let ops = vec![
        Op::StoreProviderReport(report("phoniro:AV-1", "deviation", "fall", 3)),
        Op::StoreProviderReport(report("phoniro:AV-2", "deviation", "missed_visit", 9)),
        Op::StoreProviderReport(report("phoniro:BEV-1", "need_change", "more", 9)),
    ];
    store.commit(ops).await.expect("stored");
    let again = store.commit(vec![Op::StoreProviderReport(report("phoniro:AV-1", "deviation", "other", 4))]).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let list = |kind: Option<&str>, month: Option<(i32, u32)>, provider: Option<&str>| {
        let store = store.clone();
        let filter = ProviderReportFilter {
            kind: kind.map(Into::into),
            month: month.and_then(|(y, m)| carehub_model::Month::new(y, m)),
            provider: provider.map(Into::into),
            limit: 100,
            ..ProviderReportFilter::default()
        };
        async move { store.provider_reports(filter).await.expect("reads").into_iter().map(|r| r.id).collect::<Vec<_>>() }
    };
    assert_eq!(list(None, None, None).await, vec!["phoniro:AV-1", "phoniro:AV-2", "phoniro:BEV-1"]);
    assert_eq!(list(Some("deviation"), None, None).await, vec!["phoniro:AV-1", "phoniro:AV-2"]);
    assert_eq!(list(Some("fall"), None, None).await, vec!["phoniro:AV-1"]);
    assert_eq!(list(Some("need_change"), Some((2026, 11)), Some(PROVIDER)).await, vec!["phoniro:BEV-1"]);
    assert!(list(None, Some((2026, 12)), None).await.is_empty());
    assert!(list(None, None, Some("5566778899")).await.is_empty());
}

fn access(subject: &str, endpoint: &str, clients: &[&str], entries: &[i64]) -> Op {
    Op::RecordAccess(NewAccess {
        subject: subject.into(),
        role: "auditor".into(),
        query: AccessQuery::new(endpoint).with("client", clients.first()),
        clients: clients.iter().map(|c| (*c).to_owned()).collect(),
        entries: entries.to_vec(),
    })
}

async fn access_log(store: &dyn Store, filter: AccessFilter) -> Vec<i64> {
    store
        .access_log(AccessFilter { limit: 100, ..filter })
        .await
        .expect("the access log reads")
        .iter()
        .map(|e| e.seq)
        .collect()
}

/// The access log (SPEC §9): every read is an entry chained to the one before, stamped by
/// the store's clock, with its clients and entries sorted and without repeats; it is read by
/// a client shown, by who read, by time, and in pages.
pub async fn the_access_log_is_one_hash_chain_searched_by_client_subject_and_time(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    store
        .commit(vec![access("anna", "GET /v1/messages", &[CLIENT, NEIGHBOUR, CLIENT], &[3, 1, 3])])
        .await
        .expect("commit");
    clock.set(start() + Duration::hours(1));
    store.commit(vec![access("bertil", "GET /v1/messages/1", &[NEIGHBOUR], &[1])]).await.expect("commit");
    clock.set(start() + Duration::hours(2));
    store.commit(vec![access("anna", "GET /v1/orders", &[], &[])]).await.expect("commit");

    let all = store.access_log(AccessFilter { limit: 100, ..AccessFilter::default() }).await.expect("reads");
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(all[0].prev_hash, GENESIS);
    assert_eq!(all[1].prev_hash, all[0].hash);
    assert_eq!(all[0].hash, crate::log::access::access_hash(GENESIS, &all[0]), "the documented recipe");
    assert_eq!(all[0].clients, vec![CLIENT.to_owned(), NEIGHBOUR.to_owned()], "sorted, once each");
    assert_eq!(all[0].entries, vec![1, 3]);
    assert_eq!(all[0].query.endpoint, "GET /v1/messages");
    assert_eq!(all[0].query.filters.get("client").map(String::as_str), Some(CLIENT));
    assert_eq!(all[1].at, start() + Duration::hours(1), "stamped by the store's clock");
    let report = verify_access_chain(store.as_ref()).await.expect("verifies");
    assert_eq!((report.entries, report.first_bad, report.head), (3, None, all[2].hash.clone()));

    let by = |client: Option<&str>, subject: Option<&str>| AccessFilter {
        client: client.map(str::to_owned),
        subject: subject.map(str::to_owned),
        ..AccessFilter::default()
    };
    assert_eq!(access_log(store.as_ref(), by(Some(NEIGHBOUR), None)).await, vec![1, 2]);
    assert_eq!(access_log(store.as_ref(), by(Some(CLIENT), None)).await, vec![1]);
    assert_eq!(access_log(store.as_ref(), by(None, Some("anna"))).await, vec![1, 3]);
    assert_eq!(access_log(store.as_ref(), by(Some(NEIGHBOUR), Some("anna"))).await, vec![1]);
    let window = AccessFilter {
        since: Some(start() + Duration::minutes(30)),
        until: Some(start() + Duration::hours(2)),
        ..AccessFilter::default()
    };
    assert_eq!(access_log(store.as_ref(), window).await, vec![2], "since inclusive, until exclusive");
    let page = AccessFilter { after_seq: Some(1), limit: 1, ..AccessFilter::default() };
    assert_eq!(store.access_log(page).await.expect("reads").iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
    let seqs = |entries: Vec<AccessEntry>| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    let newest = AccessFilter { newest_first: true, limit: 2, ..AccessFilter::default() };
    assert_eq!(seqs(store.access_log(newest).await.expect("reads")), vec![3, 2], "newest first");
    let older = AccessFilter { newest_first: true, before_seq: Some(2), limit: 2, ..AccessFilter::default() };
    assert_eq!(seqs(store.access_log(older).await.expect("reads")), vec![1], "the page before the newest");
    let anna_older = AccessFilter { newest_first: true, before_seq: Some(3), ..by(None, Some("anna")) };
    assert_eq!(access_log(store.as_ref(), anna_older).await, vec![1], "paging keeps the filters");
}

/// A read recorded in a commit that fails is not recorded, and the chain goes on from the
/// last entry that was.
pub async fn an_access_is_recorded_with_its_commit_or_not_at_all(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    store.commit(vec![access("anna", "GET /v1/messages", &[CLIENT], &[])]).await.expect("commit");
    let failed = store
        .commit(vec![
            access("anna", "GET /v1/messages", &[NEIGHBOUR], &[]),
            Op::Enqueue(delivery("k", None, LogRef::Seq(999))),
        ])
        .await;
    assert!(failed.is_err(), "the commit names an entry that is not in the log");
    store.commit(vec![access("bertil", "GET /v1/messages", &[CLIENT], &[])]).await.expect("commit");
    let all = store.access_log(AccessFilter { limit: 100, ..AccessFilter::default() }).await.expect("reads");
    assert_eq!(all.iter().map(|e| e.subject.as_str()).collect::<Vec<_>>(), vec!["anna", "bertil"]);
    assert_eq!(
        access_log(store.as_ref(), AccessFilter { client: Some(NEIGHBOUR.into()), ..AccessFilter::default() }).await,
        Vec::<i64>::new()
    );
    assert_eq!(verify_access_chain(store.as_ref()).await.expect("verifies").first_bad, None);
}

/// The Merkle tree's leaves are the message log's chain hashes, in sequence order, read
/// in pages.
pub async fn the_logs_leaf_hashes_are_its_chain_hashes_in_order(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    assert_eq!(store.log_size().await.expect("size"), 0);
    for t in ["a", "b", "c"] {
        store.commit(vec![Op::AppendLog(inbound(t))]).await.expect("commit");
    }
    let entries = all_entries(store.as_ref()).await;
    assert_eq!(store.log_size().await.expect("size"), 3);
    let want: Vec<(i64, String)> = entries.iter().map(|e| (e.seq, e.hash.clone())).collect();
    assert_eq!(store.log_hashes(0, 10).await.expect("hashes"), want);
    assert_eq!(store.log_hashes(1, 1).await.expect("hashes"), want[1..2].to_vec());
    assert_eq!(store.log_hashes(3, 10).await.expect("hashes"), vec![]);
}

/// A checkpoint is kept once per tree size (the first one stored); the latest is the
/// largest; the one covering an entry is the smallest at least its size.
pub async fn one_checkpoint_is_kept_per_size_and_the_largest_is_the_latest(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    assert_eq!(store.latest_checkpoint().await.expect("reads"), None);
    let cp =
        |size: i64, note: &str| CheckpointRecord { size, root: format!("root-{size}"), at: start(), note: note.into() };
    store.commit(vec![Op::StoreCheckpoint(cp(5, "first"))]).await.expect("commit");
    store.commit(vec![Op::StoreCheckpoint(cp(2, "two"))]).await.expect("commit");
    store.commit(vec![Op::StoreCheckpoint(cp(5, "again"))]).await.expect("commit");
    assert_eq!(store.latest_checkpoint().await.expect("reads"), Some(cp(5, "first")));
    assert_eq!(store.checkpoint_covering(2).await.expect("reads"), Some(cp(2, "two")));
    assert_eq!(store.checkpoint_covering(1).await.expect("reads"), Some(cp(2, "two")));
    assert_eq!(store.checkpoint_covering(3).await.expect("reads"), Some(cp(5, "first")));
    assert_eq!(store.checkpoint_covering(6).await.expect("reads"), None);
}

/// Retention removes the payloads of the entries appended before its instant and nothing
/// else: each keeps its hash and its payload's hash, so the chain verifies and the Merkle
/// tree (over the chain hashes) is unchanged; the run is an entry of the log saying what it
/// removed; a second run removes nothing more.
pub async fn retention_removes_old_payloads_and_the_chain_and_the_tree_still_verify(
    store: Arc<dyn Store>,
    clock: Clock,
) {
    clock.set(start());
    for t in ["old-a", "old-b"] {
        store.commit(vec![Op::AppendLog(inbound(t))]).await.expect("commit");
    }
    clock.set(start() + Duration::days(1));
    store.commit(vec![Op::AppendLog(inbound("recent"))]).await.expect("commit");
    let before = all_entries(store.as_ref()).await;
    assert!(before.iter().all(|e| e.payload_hash.as_deref() == Some(crate::log::payload_hash(&e.payload).as_str())));
    let root = crate::audit::tree(store.as_ref(), 3).await.expect("tree").root();

    let cutoff = start() + Duration::hours(1);
    let results =
        store.commit(vec![Op::RemovePayloads { before: cutoff, policy: "test".into() }]).await.expect("commit");
    assert_eq!(logged(&results), vec![4]);
    let after = all_entries(store.as_ref()).await;
    for (b, a) in before.iter().zip(&after) {
        let old = b.seq <= 2;
        assert_eq!(a.payload_removed, old, "entry {}", a.seq);
        assert_eq!(a.payload.is_empty(), old, "entry {}", a.seq);
        assert_eq!((&a.hash, &a.payload_hash), (&b.hash, &b.payload_hash), "entry {} keeps its hashes", a.seq);
    }
    let run = &after[3];
    assert_eq!((run.message_type.as_str(), run.direction.as_str()), ("retention", "internal"));
    let said: serde_json::Value = serde_json::from_str(run.canonical.as_deref().unwrap_or("null")).expect("JSON");
    assert_eq!(
        (&said["removed"], &said["first"], &said["last"], &said["policy"]),
        (&serde_json::json!(2), &serde_json::json!(1), &serde_json::json!(2), &serde_json::json!("test"))
    );
    let report = verify_chain(store.as_ref()).await.expect("verifies");
    assert_eq!((report.entries, report.first_bad), (4, None));
    assert_eq!(crate::audit::tree(store.as_ref(), 3).await.expect("tree").root(), root, "the tree is unchanged");

    let again = store.commit(vec![Op::RemovePayloads { before: cutoff, policy: "test".into() }]).await.expect("commit");
    let run = store.log_entry(logged(&again)[0]).await.expect("reads").expect("the run");
    assert!(run.canonical.as_deref().is_some_and(|c| c.contains(r#""removed":0"#)), "{:?}", run.canonical);
    assert_eq!(verify_chain(store.as_ref()).await.expect("verifies").first_bad, None);
}

async fn hold(store: &dyn Store, name: &str, owner: &str, until: DateTime<Utc>) -> LeaseHold {
    let results = store
        .commit(vec![Op::HoldLease { name: name.into(), owner: owner.into(), until }])
        .await
        .expect("a lease commits");
    match results.as_slice() {
        [OpResult::Lease(hold)] => hold.clone(),
        other => panic!("HoldLease yields Lease, not {other:?}"),
    }
}

async fn release(store: &dyn Store, name: &str, owner: &str) {
    store.commit(vec![Op::ReleaseLease { name: name.into(), owner: owner.into() }]).await.expect("a release commits");
}

/// `HoldLease` gives a lease to one owner at a time: taken when no one holds it, renewed by
/// its holder (even past its end, when no one took it meanwhile), refused to another owner
/// through its `until` (a lease holds through its end, as a claim's does), and taken over by
/// another once the store's clock is past it. Leases of different names are independent.
pub async fn a_lease_is_held_by_one_owner_at_a_time_and_taken_over_after_its_end(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    let ttl = Duration::seconds(15);
    let inbox = "inbox:procapita";
    assert_eq!(hold(&*store, inbox, "node-a/1", start() + ttl).await, LeaseHold::Taken);
    let refused = hold(&*store, inbox, "node-b/1", start() + ttl).await;
    assert_eq!(
        refused,
        LeaseHold::Refused { holder: "node-a/1".into(), until: start() + ttl },
        "two owners, one holds"
    );
    assert!(!refused.held());
    assert_eq!(hold(&*store, "feed:phoniro", "node-b/1", start() + ttl).await, LeaseHold::Taken, "another name");

    clock.set(start() + Duration::seconds(5));
    let renewed_until = start() + Duration::seconds(20);
    assert_eq!(hold(&*store, inbox, "node-a/1", renewed_until).await, LeaseHold::Renewed, "the holder renews");
    clock.set(start() + Duration::seconds(16));
    assert!(!hold(&*store, inbox, "node-b/1", start() + Duration::seconds(31)).await.held(), "renewed: still a's");
    clock.set(renewed_until);
    assert!(!hold(&*store, inbox, "node-b/1", renewed_until + ttl).await.held(), "a lease holds through its end");

    clock.set(renewed_until + Duration::microseconds(1));
    let taken = hold(&*store, inbox, "node-b/1", renewed_until + ttl).await;
    assert_eq!(taken, LeaseHold::TakenOver { from: "node-a/1".into() }, "past its end, another takes it over");
    assert!(taken.held());
    assert_eq!(
        hold(&*store, inbox, "node-a/1", renewed_until + ttl).await,
        LeaseHold::Refused { holder: "node-b/1".into(), until: renewed_until + ttl },
        "the old holder does not get it back while the new one holds it"
    );

    // b's lease on the feed ran out long ago, but no one took it: b renews it.
    assert_eq!(hold(&*store, "feed:phoniro", "node-b/1", clock.now() + ttl).await, LeaseHold::Renewed);
}

/// `ReleaseLease` by the holder frees the lease at once (another owner takes it before its
/// `until`); a release by an owner that does not hold it changes nothing.
pub async fn a_released_lease_is_free_at_once_and_only_its_holder_releases_it(store: Arc<dyn Store>, clock: Clock) {
    clock.set(start());
    let until = start() + Duration::seconds(15);
    assert!(hold(&*store, "checkpointer", "node-a/1", until).await.held());
    release(&*store, "checkpointer", "node-b/1").await;
    assert!(!hold(&*store, "checkpointer", "node-b/1", until).await.held(), "b's release did not free a's lease");
    release(&*store, "checkpointer", "node-a/1").await;
    assert_eq!(hold(&*store, "checkpointer", "node-b/1", until).await, LeaseHold::Taken, "released: free at once");
    release(&*store, "never-held", "node-a/1").await;
    assert_eq!(hold(&*store, "never-held", "node-a/1", until).await, LeaseHold::Taken);
}
