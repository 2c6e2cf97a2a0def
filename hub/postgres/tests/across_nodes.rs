//! The rules that must hold across nodes (issue 19): a visit copy or an overlap sent to
//! two nodes at the same instant is caught once, a decision version is applied once, and
//! of two verifications that read one invoice generation one commits. Two stores on one
//! database play the two nodes; each test has a database of its own.

use std::sync::Arc;

use carehub_core::rules::visits::{Outcome, Thresholds};
use carehub_core::store::*;
use carehub_model::{
    Clock, Deadlines, Decision, Order, OrgNumber, PersonalIdentityNumber, Registration, RegistrationMethod, SourceId,
    TagRegistration, TagUid, Visit, VisitOutcome,
};
use carehub_postgres::scratch::{server, ScratchDb};
use carehub_postgres::PgStore;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};

const PROVIDER: &str = "5599000014";
const HOMES: [(&str, &str); 2] = [("193601016987", "04A21BC3"), ("194202138014", "04A21BC4")];

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).single().expect("a valid instant")
}

fn nov(day: u32, h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, h, m, 0).single().expect("a valid instant")
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).expect("a valid date")
}

/// Two nodes on a fresh database, with two clients' decisions, orders and tags.
async fn two_nodes(label: &str) -> (ScratchDb, Arc<PgStore>, Arc<PgStore>) {
    let db = ScratchDb::create(&server(), label).await.expect("a scratch database");
    let clock = Clock::frozen(start());
    let a = Arc::new(PgStore::open(&db.url(), clock.clone()).await.expect("node a opens"));
    let b = Arc::new(PgStore::open(&db.url(), clock).await.expect("node b opens"));
    for (n, (client, tag)) in HOMES.into_iter().enumerate() {
        let d: Decision = serde_json::from_value(serde_json::json!({
            "id": format!("combine:D-{n}"), "client": client, "case_officer": "hl-1", "provider": PROVIDER,
            "valid_from": "2026-11-01", "valid_to": "2026-11-30",
            "services": [{"code": "PO", "category": "personal_care", "minutes_per_month": 600}]
        }))
        .expect("a valid decision");
        let order = Order::from_decision(format!("O-{n}"), &d, day(1), Deadlines::default());
        a.commit(vec![
            Op::InsertDecision(DecisionRecord {
                id: d.id.as_str().into(),
                system: "combine".into(),
                content_hash: String::new(),
                client: client.into(),
                provider: PROVIDER.into(),
                canonical: serde_json::to_string(&d).expect("json"),
                received_at: start(),
                version: 0,
            }),
            Op::InsertOrder(Box::new(OrderRecord::new(order, "combine", "phoniro", OrderStatus::Accepted, start()))),
            Op::RegisterTag(TagRegistration {
                tag_uid: TagUid::parse(tag).expect("tag"),
                client: PersonalIdentityNumber::parse(client).expect("pnr"),
                installed_on: day(1),
                removed_on: None,
            }),
        ])
        .await
        .expect("a home");
    }
    (db, a, b)
}

fn visit(id: &str, home: usize, staff: &str, from: DateTime<Utc>, minutes: i64) -> Op {
    let (client, tag) = HOMES[home];
    let reg = |t| Registration { at: t, method: RegistrationMethod::Nfc { tag_uid: tag.into() } };
    let visit = IncomingVisit::Visit {
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
    };
    Op::IngestVisits(Box::new(VisitIngest {
        system: "phoniro".into(),
        log: NewLogEntry {
            system: "phoniro".into(),
            vendor: "phoniro".into(),
            direction: "in",
            message_type: "visits".into(),
            content_type: "application/json".into(),
            status: LogStatus::Accepted,
            ..NewLogEntry::default()
        },
        visits: vec![visit],
        thresholds: Thresholds::default(),
        now: start(),
        cursor: None,
    }))
}

/// The one visit result of a batch's commit.
fn result(r: Result<Vec<OpResult>, StoreError>) -> VisitResult {
    match r.expect("the batch commits").as_slice() {
        [OpResult::Visits(report)] => report.results[0].clone(),
        other => panic!("IngestVisits yields Visits, not {other:?}"),
    }
}

/// The same visit sent to two nodes at the same instant is stored once; the other node
/// answers it as a copy of the first (VIS007).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visit_sent_to_two_nodes_at_once_is_stored_once() {
    let (_db, a, b) = two_nodes("copy").await;
    let (x, y) = tokio::join!(
        a.commit(vec![visit("phoniro:V-1", 0, "s-1", nov(10, 8, 0), 30)]),
        b.commit(vec![visit("phoniro:V-1", 0, "s-1", nov(10, 8, 0), 30)])
    );
    let mut results = [result(x), result(y)];
    results.sort_by_key(|r| r.duplicate_of.is_some());
    assert_eq!((results[0].outcome, results[0].duplicate_of.as_deref()), (Outcome::Accepted, None));
    assert_eq!(results[1].codes, vec!["VIS007".to_owned()], "{:?}", results[1]);
    assert_eq!(results[1].duplicate_of.as_deref(), Some("phoniro:V-1"));
    let stored = a.visits(VisitFilter { limit: 10, ..VisitFilter::default() }).await.expect("visits read");
    assert_eq!(stored.len(), 1, "stored once");
    assert_eq!(verify_chain(&*b).await.expect("verifies").first_bad, None);
}

/// One staff member in two homes at once, the two visits sent to two nodes at the same
/// instant: the overlap (VIS005) is caught on exactly one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlap_sent_to_two_nodes_at_once_is_caught_once() {
    let (_db, a, b) = two_nodes("overlap").await;
    let (x, y) = tokio::join!(
        a.commit(vec![visit("phoniro:V-3", 0, "s-2", nov(10, 10, 0), 30)]),
        b.commit(vec![visit("phoniro:V-4", 1, "s-2", nov(10, 10, 10), 30)])
    );
    let results = [result(x), result(y)];
    let caught = results.iter().filter(|r| r.codes.iter().any(|c| c == "VIS005")).count();
    assert_eq!(caught, 1, "{results:?}");
    let stored = a.visits(VisitFilter { limit: 10, ..VisitFilter::default() }).await.expect("visits read");
    assert_eq!(stored.len(), 2, "both visits are kept");
}

/// A decision's version sent to two nodes at once is applied once: the other node finds it
/// stored (a duplicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_version_is_applied_once_across_nodes() {
    let (_db, a, b) = two_nodes("version").await;
    let change = || {
        vec![Op::ChangeDecision {
            version: DecisionVersion {
                decision_id: "combine:D-0".into(),
                version: 1,
                effective_from: day(15),
                kind: "end_date".into(),
                canonical: serde_json::json!({"end_date": "2026-11-20"}),
                system: "combine".into(),
                received_at: start(),
            },
            current: "{}".into(),
            provider: PROVIDER.into(),
        }]
    };
    let (x, y) = tokio::join!(a.commit(change()), b.commit(change()));
    let outcomes = [x, y];
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().any(|r| matches!(r, Err(StoreError::Conflict(_)))), "{outcomes:?}");
    let versions = b.decision_versions("combine:D-0").await.expect("versions read");
    assert_eq!(versions.iter().map(|v| v.version).collect::<Vec<_>>(), vec![0, 1]);
}

/// Two verifications of one provider's invoices that read generation 0, committed on two
/// nodes at once: one commits, the other is stale with nothing of it written (INV005).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_verifications_on_two_nodes_one_commits() {
    let (_db, a, b) = two_nodes("verify").await;
    let verify = |n: usize| {
        vec![
            Op::ExpectInvoiceGeneration { provider: PROVIDER.into(), generation: 0 },
            Op::AppendLog(NewLogEntry {
                system: "combine".into(),
                vendor: "combine".into(),
                direction: "out",
                message_type: "verification".into(),
                content_type: "application/json".into(),
                status: LogStatus::Queued,
                ..NewLogEntry::default()
            }),
            Op::RecordVerification(NewVerification {
                provider: PROVIDER.into(),
                invoice_id: "HC-1".into(),
                month: "2026-11".into(),
                report: format!("{{\"n\":{n}}}"),
                lines: vec!["1".into()],
                log: LogRef::Op(1),
                created_at: start(),
            }),
        ]
    };
    let (x, y) = tokio::join!(a.commit(verify(1)), b.commit(verify(2)));
    let outcomes = [x, y];
    assert_eq!(outcomes.iter().filter(|r| r.is_ok()).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().any(|r| matches!(r, Err(StoreError::Stale(_)))), "{outcomes:?}");
    assert_eq!(a.invoice_generation(PROVIDER).await.expect("reads"), 1, "one verification moved it");
    let entries = a.log_entries(LogFilter { limit: 10, ..LogFilter::default() }).await.expect("reads");
    assert_eq!(entries.len(), 1, "the stale one logged nothing");
}
