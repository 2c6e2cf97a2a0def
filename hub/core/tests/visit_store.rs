//! The visit store on a real SQLite file: validation facts answered inside the writer's
//! transaction (earlier visits of the same batch included), copies not stored twice, a
//! feed's cursor committed with its page, and what the reports read.

use carehub_core::rules::visits::{Outcome, Thresholds};
use carehub_core::store::sqlite::SqliteStore;
use carehub_core::store::{
    progress, CommitStore, DecisionRecord, IncomingVisit, LogStore, NewLogEntry, Op, OpResult, OrderRecord,
    VisitFilter, VisitIngest, VisitResult, VisitStore,
};
use carehub_model::{
    Deadlines, Decision, Order, OrgNumber, PersonalIdentityNumber, Registration, RegistrationMethod, SourceId,
    TagRegistration, TagUid, Visit, VisitOutcome,
};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};

const PROVIDER: &str = "5599000014";
const CLIENT: &str = "193601016987";
const NEIGHBOUR: &str = "194202138014";

fn at(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).single().expect("time")
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).expect("date")
}

async fn store_with_orders() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("dir");
    let store = SqliteStore::open(&dir.path().join("t.db"), carehub_model::Clock::frozen(at(22, 12, 0))).expect("open");
    for (n, client) in [CLIENT, NEIGHBOUR].iter().enumerate() {
        let decision: Decision = serde_json::from_value(serde_json::json!({
            "id": format!("combine:D-{n}"), "client": client, "case_officer": "hl-1", "provider": PROVIDER,
            "valid_from": "2026-11-01", "valid_to": "2026-11-30",
            "services": [{"code": "PO", "category": "personal_care", "minutes_per_month": 600}]
        }))
        .expect("decision");
        let order = Order::from_decision(format!("O-{n}"), &decision, day(1), Deadlines::default());
        store
            .commit(vec![
                Op::InsertDecision(DecisionRecord {
                    id: decision.id.as_str().into(),
                    system: "combine".into(),
                    content_hash: String::new(),
                    client: (*client).into(),
                    provider: PROVIDER.into(),
                    canonical: serde_json::to_string(&decision).expect("json"),
                    received_at: at(1, 0, 0),
                    version: 0,
                }),
                Op::InsertOrder(Box::new(OrderRecord::new(
                    order,
                    "combine",
                    "phoniro",
                    carehub_core::store::OrderStatus::Accepted,
                    at(1, 0, 0),
                ))),
                Op::RegisterTag(TagRegistration {
                    tag_uid: TagUid::parse(if n == 0 { "04A21BC3" } else { "04A21BC4" }).expect("tag"),
                    client: PersonalIdentityNumber::parse(client).expect("pnr"),
                    installed_on: day(1),
                    removed_on: None,
                }),
            ])
            .await
            .expect("commit");
    }
    (dir, store)
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
            check_out: Some(reg(from + chrono::Duration::minutes(minutes))),
            planned_minutes: Some(30),
            services: Vec::new(),
            outcome: VisitOutcome::Performed,
            double_staffing: false,
        }),
        line: None,
    }
}

async fn ingest(store: &SqliteStore, visits: Vec<IncomingVisit>, cursor: Option<&str>) -> (i64, Vec<VisitResult>) {
    let results = store
        .commit(vec![Op::IngestVisits(Box::new(VisitIngest {
            system: "phoniro".into(),
            log: NewLogEntry {
                system: "phoniro".into(),
                vendor: "phoniro".into(),
                direction: "in",
                message_type: "visits".into(),
                content_type: "application/json".into(),
                status: carehub_core::store::LogStatus::Accepted,
                ..NewLogEntry::default()
            },
            visits,
            thresholds: Thresholds::default(),
            now: at(22, 12, 0),
            cursor: cursor.map(str::to_owned),
        }))])
        .await
        .expect("commit");
    match results.into_iter().next() {
        Some(OpResult::Visits(r)) => (r.log_seq, r.results),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_batch_sees_its_own_earlier_visits_and_copies_are_stored_once() {
    let (_dir, store) = store_with_orders().await;
    let (seq, results) = ingest(
        &store,
        vec![
            visit("phoniro:V-1", CLIENT, "04A21BC3", "s-1", at(10, 8, 0), 30),
            // The same visit again in the same batch: by id, and by staff, client and times.
            visit("phoniro:V-1", CLIENT, "04A21BC3", "s-1", at(10, 8, 0), 30),
            visit("phoniro:V-1b", CLIENT, "04A21BC3", "s-1", at(10, 8, 0), 30),
            // The same staff member in the neighbour's home at the same time.
            visit("phoniro:V-2", NEIGHBOUR, "04A21BC4", "s-1", at(10, 8, 15), 30),
            // Another staff member there: no overlap.
            visit("phoniro:V-3", NEIGHBOUR, "04A21BC4", "s-2", at(10, 8, 15), 30),
        ],
        Some("c-1"),
    )
    .await;
    let summary: Vec<(Outcome, Vec<String>, Option<String>)> =
        results.iter().map(|r| (r.outcome, r.codes.clone(), r.duplicate_of.clone())).collect();
    assert_eq!(
        summary,
        vec![
            (Outcome::Accepted, vec![], None),
            (Outcome::Rejected, vec!["VIS007".into()], Some("phoniro:V-1".into())),
            (Outcome::Rejected, vec!["VIS007".into()], Some("phoniro:V-1".into())),
            (Outcome::Rejected, vec!["VIS005".into()], None),
            (Outcome::Accepted, vec![], None),
        ]
    );
    assert_eq!(results[0].order_id.as_deref(), Some("O-0"), "the active order was found");

    // A later batch: the copy is still recognised; the cursor moved with the page.
    let (_, again) =
        ingest(&store, vec![visit("phoniro:V-1", CLIENT, "04A21BC3", "s-1", at(10, 8, 0), 30)], Some("c-2")).await;
    assert_eq!(again[0].duplicate_of.as_deref(), Some("phoniro:V-1"));
    assert_eq!(store.feed_cursor("phoniro").await.expect("cursor").as_deref(), Some("c-2"));

    let stored = store.visits(VisitFilter { limit: 100, ..VisitFilter::default() }).await.expect("visits");
    let ids: Vec<&str> = stored.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, vec!["phoniro:V-1", "phoniro:V-2", "phoniro:V-3"], "copies are not stored");
    assert_eq!(stored[1].codes, vec!["VIS005"]);
    assert_eq!(stored[0].message_id, seq);

    // The log entry holds every result, rejected ones with their codes.
    let entry = store.log_entry(seq).await.expect("read").expect("entry");
    let logged: serde_json::Value = serde_json::from_str(entry.canonical.as_deref().expect("canonical")).expect("json");
    assert_eq!(logged["results"][3]["codes"], serde_json::json!(["VIS005"]));
    assert_eq!(logged["cursor"], "c-1");

    // Accepted visits with an order wait to be reported; the rejected one is passed over.
    let batch = store.visits_to_report(100).await.expect("to report");
    let waiting: Vec<Option<String>> =
        batch.visits.iter().map(|p| p.visit.id.as_ref().map(|i| i.as_str().to_owned())).collect();
    assert_eq!(waiting, vec![Some("phoniro:V-1".to_owned()), Some("phoniro:V-3".to_owned())]);
    let through = batch.through.expect("a watermark");
    store.commit(vec![Op::SetProgress { name: progress::VISIT_REPORTS, through }]).await.expect("move");
    let after = store.visits_to_report(100).await.expect("to report");
    assert!(after.visits.is_empty() && after.through.is_none(), "nothing is reported twice");
}

#[tokio::test]
async fn filters_and_the_manual_share_read_what_was_stored() {
    let (_dir, store) = store_with_orders().await;
    let mut manual = visit("phoniro:M-1", CLIENT, "04A21BC3", "s-3", at(11, 9, 0), 20);
    if let IncomingVisit::Visit { visit, .. } = &mut manual {
        visit.check_in.method = RegistrationMethod::Manual { reason: Some("Taggen saknas".into()) };
    }
    ingest(
        &store,
        vec![
            visit("phoniro:N-1", CLIENT, "04A21BC3", "s-3", at(11, 8, 0), 20),
            manual,
            // An unknown tag counts as manual too (VIS001, flagged).
            visit("phoniro:N-2", NEIGHBOUR, "04FFFFFF", "s-4", at(11, 8, 0), 20),
            // A tag of the other home: rejected, not counted at all.
            visit("phoniro:N-3", NEIGHBOUR, "04A21BC3", "s-5", at(11, 8, 0), 20),
        ],
        None,
    )
    .await;
    let shares = store.manual_shares("2026-11").await.expect("shares");
    assert_eq!(shares.len(), 1);
    assert_eq!((shares[0].visits, shares[0].manual), (3, 2));
    assert!((shares[0].share - 2.0 / 3.0).abs() < 1e-9);
    assert!(store.manual_shares("2026-10").await.expect("shares").is_empty());

    let by_code = store
        .visits(VisitFilter { code: Some("VIS002".into()), limit: 10, ..VisitFilter::default() })
        .await
        .expect("visits");
    assert_eq!(by_code.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), vec!["phoniro:N-3"]);
    let flagged = store
        .visits(VisitFilter {
            outcome: Some("flagged".into()),
            client: Some(CLIENT.into()),
            limit: 10,
            ..VisitFilter::default()
        })
        .await
        .expect("visits");
    assert_eq!(flagged.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), vec!["phoniro:M-1"]);
}
