//! NFC visit records: each rule VIS001-VIS010 over the real HTTP API (a visit that breaks it
//! gets its code; a near-identical one that does not, does not), copies stored once, the
//! manual share report on a scenario computed by hand, and Phoniro's feed pulled by cursor
//! across a restart. (ParaGå's files and Lifecare Mobil's webhook: `visit_paths.rs`.)

use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

/// Vendors that take everything: Phoniro orders, Combine's callbacks.
async fn vendors() -> MockServer {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    vendor
}

/// A hub with November orders at provider A for `clients`, each with its own tag.
async fn hub_with_orders(vendor: &MockServer, clients: &[&str], tags: &[&str], o: Options) -> TestHub {
    let hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), o).await;
    let cm = hub.system_token("combine");
    for (n, (client, tag)) in clients.iter().zip(tags).enumerate() {
        let (s, r) = hub.post("combine", november_decision(&format!("DEC-V{n}"), client, PROVIDER_A), Some(&cm)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{r}");
        register_tag(&hub, tag, client, "2026-11-01").await;
    }
    hub
}

/// Pushes one Phoniro visit as provider A; the visit's result.
async fn push(hub: &TestHub, visit: &Value) -> Value {
    let (s, r) = hub.post("phoniro", visit.to_string(), Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    r["visits"][0].clone()
}

fn codes(result: &Value) -> Vec<String> {
    result["codes"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn each_rule_fires_on_the_visit_that_breaks_it_and_not_on_its_near_twin() {
    each_rule_fires_at(test_instant()).await;
}

#[tokio::test]
async fn the_rules_hold_in_the_last_half_hour_of_february() {
    each_rule_fires_at(local_instant("2027-02-28T23:30")).await;
}

#[tokio::test]
async fn the_rules_hold_on_the_night_the_clocks_go_forward() {
    each_rule_fires_at(local_instant("2027-03-28T01:30")).await;
}

/// The rules' cases with the hub's clock at `at`: the visits near "now" (VIS006's future
/// one and its near twin, a visit still in progress) are placed relative to it.
async fn each_rule_fires_at(at: chrono::DateTime<chrono::Utc>) {
    let vendor = vendors().await;
    let pnrs = test_pnrs();
    let (a, b, no_order) = (pnrs[900].clone(), pnrs[901].clone(), pnrs[902].clone());
    let hub =
        hub_with_orders(&vendor, &[&a, &b], &["04A10001", "04B10001"], Options { at, ..Options::default() }).await;
    // A tag that hung at A's until the 14th, then moved to B's.
    register_tag(&hub, "04C10001", &a, "2026-11-01").await;
    register_tag(&hub, "04C10001", &b, "2026-11-15").await;

    let v = |id: &str, client: &str, staff: &str, tag: &str, from: &str, to: Option<&str>| {
        phoniro_visit(id, PROVIDER_A, client, staff, tag, from, to, None)
    };
    // (visit, the codes it must get, the outcome)
    // `phoniro_visit` writes times at +01:00.
    let now = hub.clock.now().with_timezone(&chrono::FixedOffset::east_opt(3600).expect("an offset"));
    let soon = (now + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M").to_string();
    let later = (now + chrono::Duration::hours(2)).format("%Y-%m-%dT%H:%M").to_string();
    let past = (now - chrono::Duration::hours(2)).format("%Y-%m-%dT%H:%M").to_string();
    let past_out = (now - chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M").to_string();
    let just_now = (now - chrono::Duration::minutes(30)).format("%Y-%m-%dT%H:%M").to_string();
    let cases: Vec<(&str, Value, Vec<&str>, &str)> = vec![
        ("clean", v("V-01", &a, "s-1", "04A10001", "2026-11-10T08:00", Some("2026-11-10T08:30")), vec![], "accepted"),
        (
            "VIS001",
            v("V-02", &a, "s-1", "04FFFF01", "2026-11-10T09:00", Some("2026-11-10T09:30")),
            vec!["VIS001"],
            "flagged",
        ),
        (
            "VIS002",
            v("V-03", &a, "s-1", "04B10001", "2026-11-10T10:00", Some("2026-11-10T10:30")),
            vec!["VIS002"],
            "rejected",
        ),
        (
            "moved tag, before",
            v("V-04", &a, "s-1", "04C10001", "2026-11-14T08:00", Some("2026-11-14T08:30")),
            vec![],
            "accepted",
        ),
        (
            "moved tag, after",
            v("V-05", &a, "s-1", "04C10001", "2026-11-15T08:00", Some("2026-11-15T08:30")),
            vec!["VIS002"],
            "rejected",
        ),
        (
            "VIS003 out before in",
            v("V-06", &a, "s-2", "04A10001", "2026-11-11T08:30", Some("2026-11-11T08:00")),
            vec!["VIS003"],
            "rejected",
        ),
        ("VIS003 never out", v("V-07", &a, "s-2", "04A10001", "2026-11-11T10:00", None), vec!["VIS003"], "rejected"),
        ("still in", v("V-08", &a, "s-2", "04A10001", &just_now, None), vec![], "accepted"),
        (
            "VIS004 too short",
            v("V-09", &a, "s-3", "04A10001", "2026-11-12T08:00", Some("2026-11-12T08:00")),
            vec!["VIS004"],
            "rejected",
        ),
        (
            "one minute",
            v("V-10", &a, "s-3", "04A10001", "2026-11-12T09:00", Some("2026-11-12T09:01")),
            vec![],
            "accepted",
        ),
        (
            "VIS004 too long",
            v("V-11", &a, "s-3", "04A10001", "2026-11-12T10:00", Some("2026-11-12T18:01")),
            vec!["VIS004"],
            "rejected",
        ),
        (
            "eight hours",
            v("V-12", &a, "s-4", "04A10001", "2026-11-13T08:00", Some("2026-11-13T16:00")),
            vec![],
            "accepted",
        ),
        (
            "first home",
            v("V-13", &a, "s-5", "04A10001", "2026-11-16T08:00", Some("2026-11-16T08:45")),
            vec![],
            "accepted",
        ),
        (
            "VIS005",
            v("V-14", &b, "s-5", "04B10001", "2026-11-16T08:30", Some("2026-11-16T09:00")),
            vec!["VIS005"],
            "rejected",
        ),
        (
            "right after",
            v("V-15", &b, "s-5", "04B10001", "2026-11-16T08:45", Some("2026-11-16T09:15")),
            vec![],
            "accepted",
        ),
        (
            "double staffing",
            v("V-16", &a, "s-6", "04A10001", "2026-11-16T08:00", Some("2026-11-16T08:45")),
            vec![],
            "accepted",
        ),
        ("VIS006", v("V-17", &a, "s-7", "04A10001", &soon, Some(&later)), vec!["VIS006"], "rejected"),
        ("just before now", v("V-18", &a, "s-7", "04A10001", &past, Some(&past_out)), vec![], "accepted"),
        (
            "VIS008",
            phoniro_visit("V-19", PROVIDER_A, &a, "s-8", "", "2026-11-17T08:00", Some("2026-11-17T08:30"), Some(None)),
            vec!["VIS008"],
            "rejected",
        ),
        (
            "manual with a reason",
            phoniro_visit(
                "V-20",
                PROVIDER_A,
                &a,
                "s-8",
                "",
                "2026-11-17T09:00",
                Some("2026-11-17T09:30"),
                Some(Some("Taggen saknas")),
            ),
            vec![],
            "flagged",
        ),
        (
            "VIS009",
            v("V-21", &no_order, "s-9", "04A10001", "2026-11-18T08:00", Some("2026-11-18T08:30")),
            vec!["VIS002", "VIS009"],
            "rejected",
        ),
        (
            "VIS010",
            v("V-22", "193601016988", "s-9", "04A10001", "2026-11-18T09:00", Some("2026-11-18T09:30")),
            vec!["VIS010"],
            "rejected",
        ),
    ];
    for (name, visit, want, outcome) in &cases {
        let r = push(&hub, visit).await;
        let mut got = codes(&r);
        got.sort();
        assert_eq!(
            (got, r["outcome"].as_str().unwrap_or("")),
            (want.iter().map(|c| (*c).to_owned()).collect(), *outcome),
            "{name}: {r}"
        );
    }
    // VIS009 alone: a client with no order whose tag is unknown gets VIS001 and VIS009.
    let r = push(&hub, &v("V-23", &no_order, "s-9", "04DDDD01", "2026-11-18T10:00", Some("2026-11-18T10:30"))).await;
    assert_eq!(codes(&r), vec!["VIS001", "VIS009"], "{r}");

    // VIS005 names the visit it overlaps.
    let (_, page) = hub.get("/v1/visits?code=VIS005", Some(&hub.admin())).await;
    let found = page["visits"].as_array().expect("visits");
    assert_eq!(found.len(), 1, "{page}");
    assert!(found[0]["findings"][0]["detail"].as_str().unwrap_or("").contains("phoniro:V-13"), "{}", found[0]);

    // VIS006 for a closed month too: October is closed by an administrator.
    let r = hub
        .http
        .post(format!("{}/v1/visits/months/2026-10/close", hub.url))
        .bearer_auth(hub.admin())
        .send()
        .await
        .expect("close");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = push(&hub, &v("V-24", &a, "s-10", "04A10001", "2026-10-30T08:00", Some("2026-10-30T08:30"))).await;
    assert!(codes(&r).contains(&"VIS006".to_owned()), "{r}");
    let r = push(&hub, &v("V-25", &a, "s-10", "04A10001", "2026-11-19T08:00", Some("2026-11-19T08:30"))).await;
    assert!(codes(&r).is_empty(), "November is open: {r}");

    // Rejected visits stay in the store with their codes; filters read them back.
    let (_, rejected) = hub.get("/v1/visits?outcome=rejected&provider=5599000014", Some(&hub.admin())).await;
    let n = rejected["visits"].as_array().map(Vec::len).unwrap_or(0);
    // The cases' rejections, V-23 (VIS001 and VIS009) and V-24 (October, closed).
    assert_eq!(n, cases.iter().filter(|c| c.3 == "rejected").count() + 2, "{rejected}");
    let (_, october) =
        hub.get("/v1/visits?outcome=rejected&provider=5599000014&month=2026-10", Some(&hub.admin())).await;
    assert_eq!(october["visits"].as_array().map(Vec::len), Some(1), "the month filter: {october}");
    // A provider's token sees only its own visits.
    let (s, _) = hub.get("/v1/visits?provider=5566778899", Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Accepted and flagged visits go on to Combine, the order's case-management system.
    eventually("the clean visit is reported to Combine", || async {
        let requests = vendor.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .any(|r| r.url.path().starts_with("/callback") && String::from_utf8_lossy(&r.body).contains("V-01"))
            .then_some(())
    })
    .await;
    let requests = vendor.received_requests().await.unwrap_or_default();
    assert!(
        !requests.iter().any(|r| String::from_utf8_lossy(&r.body).contains("V-03")),
        "a rejected visit is not reported"
    );
}

#[tokio::test]
async fn copies_are_stored_once_whether_in_one_batch_two_batches_or_retried_pushes() {
    let vendor = vendors().await;
    let pnrs = test_pnrs();
    let a = pnrs[910].clone();
    let hub = hub_with_orders(&vendor, &[&a], &["04A20001"], Options::default()).await;
    let token = hub.provider(PROVIDER_A);
    let visit = |id: &str, h: u32| {
        let mut v = phoniro_visit(
            id,
            PROVIDER_A,
            &a,
            "s-1",
            "04A20001",
            &format!("2026-11-10T{h:02}:00"),
            Some(&format!("2026-11-10T{h:02}:30")),
            None,
        );
        v.as_object_mut().expect("object").remove("type");
        v
    };
    let page = |visits: Vec<Value>| json!({"type": "visitPage", "visits": visits, "nextCursor": "c"}).to_string();

    // The same visit twice in one page.
    let (s, r) = hub.post("phoniro", page(vec![visit("V-1", 8), visit("V-1", 8), visit("V-2", 9)]), Some(&token)).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["visits"][1]["duplicate_of"], "phoniro:V-1", "{r}");
    assert_eq!(r["visits"][1]["codes"], json!(["VIS007"]));
    // Again in a later page.
    let (_, r) = hub.post("phoniro", page(vec![visit("V-2", 9), visit("V-3", 10)]), Some(&token)).await;
    assert_eq!(r["visits"][0]["duplicate_of"], "phoniro:V-2", "{r}");
    assert!(r["visits"][1]["duplicate_of"].is_null());
    // A push retried: the second answer is a duplicate naming the first visit.
    let mut single = visit("V-4", 11);
    single["type"] = json!("visit");
    let (_, first) = hub.post("phoniro", single.to_string(), Some(&token)).await;
    let (_, retry) = hub.post("phoniro", single.to_string(), Some(&token)).await;
    assert_eq!(first["status"], "accepted");
    assert_eq!(
        (retry["status"].as_str(), retry["visits"][0]["duplicate_of"].as_str()),
        (Some("duplicate"), Some("phoniro:V-4"))
    );

    let (_, all) = hub.get("/v1/visits", Some(&hub.admin())).await;
    let ids: Vec<&str> = all["visits"].as_array().expect("visits").iter().filter_map(|v| v["id"].as_str()).collect();
    assert_eq!(ids, vec!["phoniro:V-1", "phoniro:V-2", "phoniro:V-3", "phoniro:V-4"]);
    // Every message is in the log, copies included.
    let (_, log) = hub.get("/v1/messages?system=phoniro&type=visits", Some(&hub.admin())).await;
    assert_eq!(log["messages"].as_array().map(Vec::len), Some(2), "{log}");
}

#[tokio::test]
async fn the_manual_share_per_provider_matches_a_hand_computation() {
    let vendor = vendors().await;
    let pnrs = test_pnrs();
    let (a, b) = (pnrs[920].clone(), pnrs[921].clone());
    let hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), Options::default()).await;
    let cm = hub.system_token("combine");
    for (n, (client, provider, tag)) in [(&a, PROVIDER_A, "04A30001"), (&b, PROVIDER_B, "04B30001")].iter().enumerate()
    {
        let (s, _) = hub.post("combine", november_decision(&format!("DEC-M{n}"), client, provider), Some(&cm)).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        register_tag(&hub, tag, client, "2026-11-01").await;
    }
    // Provider A, 11 visits: 6 by tag, 3 manual with a reason, 1 with an unknown tag (manual,
    // VIS001), 1 manual without a reason (rejected: not counted). Share 4 / 10 = 40%.
    // Provider B, 10 visits: 9 by tag, 1 manual with a reason. Share 1 / 10 = 10%: not above.
    let mut n = 0;
    let mut send = |provider: &'static str, client: &str, tag: &str, manual: Option<Option<&str>>| {
        n += 1;
        let day = 1 + n % 20;
        phoniro_visit(
            &format!("M-{n}"),
            provider,
            client,
            &format!("s-{n}"),
            tag,
            &format!("2026-11-{day:02}T08:00"),
            Some(&format!("2026-11-{day:02}T08:40")),
            manual,
        )
    };
    let mut visits = Vec::new();
    for _ in 0..6 {
        visits.push((PROVIDER_A, send(PROVIDER_A, &a, "04A30001", None)));
    }
    for _ in 0..3 {
        visits.push((PROVIDER_A, send(PROVIDER_A, &a, "", Some(Some("Taggen borta")))));
    }
    visits.push((PROVIDER_A, send(PROVIDER_A, &a, "04EEEE01", None)));
    visits.push((PROVIDER_A, send(PROVIDER_A, &a, "", Some(None))));
    for _ in 0..9 {
        visits.push((PROVIDER_B, send(PROVIDER_B, &b, "04B30001", None)));
    }
    visits.push((PROVIDER_B, send(PROVIDER_B, &b, "", Some(Some("Ny personal utan app")))));
    for (provider, v) in &visits {
        let (s, r) = hub.post("phoniro", v.to_string(), Some(&hub.provider(provider))).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    }

    let (s, report) = hub.get("/v1/reports/manual-registrations?month=2026-11", Some(&hub.admin())).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    assert_eq!(
        report,
        json!({"month": "2026-11", "threshold": 0.1, "providers": [
            {"provider": PROVIDER_B, "name": "Omsorgshuset AB", "visits": 10, "manual": 1, "share": 0.1, "over_threshold": false},
            {"provider": PROVIDER_A, "name": "Hemtjänst Norr AB", "visits": 10, "manual": 4, "share": 0.4, "over_threshold": true},
        ]})
    );
    // A provider sees its own row only; a bad month is coded.
    let (_, own) = hub.get("/v1/reports/manual-registrations?month=2026-11", Some(&hub.provider(PROVIDER_B))).await;
    assert_eq!(own["providers"].as_array().map(Vec::len), Some(1));
    let (s, bad) = hub.get("/v1/reports/manual-registrations?month=2026-13", Some(&hub.admin())).await;
    assert_eq!((s, bad["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("INVALID_DATE")));
}

/// A page of Phoniro's feed with visits `from..to`, pointing at `next`.
fn feed_page(client: &str, from: usize, to: usize, next: &str) -> Value {
    let visits: Vec<Value> = (from..to)
        .map(|i| {
            let mut v = phoniro_visit(
                &format!("F-{i}"),
                PROVIDER_A,
                client,
                &format!("s-{i}"),
                "04A40001",
                &format!("2026-11-{:02}T08:00", 1 + i % 20),
                Some(&format!("2026-11-{:02}T08:30", 1 + i % 20)),
                None,
            );
            v.as_object_mut().expect("object").remove("type");
            v
        })
        .collect();
    json!({"type": "visitPage", "visits": visits, "nextCursor": next})
}

#[tokio::test]
async fn a_phoniro_pull_restarted_mid_paging_resumes_at_its_cursor() {
    let vendor = vendors().await;
    let pnrs = test_pnrs();
    let a = pnrs[930].clone();
    let serve = |cursor: Option<&'static str>, body: Value| {
        let mut m = Mock::given(method("GET")).and(path("/api/visits"));
        if let Some(c) = cursor {
            m = m.and(query_param("cursor", c));
        }
        m.respond_with(ResponseTemplate::new(200).set_body_json(body))
    };
    // Pages: (start) -> c1 -> c2 -> c3 (empty, the end). Page c2 fails at first: the hub
    // stops with c2 stored, as if stopped in the middle of paging.
    serve(Some("c1"), feed_page(&a, 5, 10, "c2")).mount(&vendor).await;
    Mock::given(method("GET"))
        .and(path("/api/visits"))
        .and(query_param("cursor", "c2"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&vendor)
        .await;
    serve(Some("c2"), feed_page(&a, 10, 15, "c3")).mount(&vendor).await;
    serve(Some("c3"), feed_page(&a, 0, 0, "c3")).mount(&vendor).await;
    // The first page: asked without a cursor (lowest priority, matched last).
    Mock::given(method("GET"))
        .and(path("/api/visits"))
        .respond_with(ResponseTemplate::new(200).set_body_json(feed_page(&a, 0, 5, "c1")))
        .with_priority(10)
        .mount(&vendor)
        .await;

    let o = Options { phoniro_extra: "visits_poll_seconds = 1\nvisits_page_size = 5".into(), ..Options::default() };
    let mut hub = hub_with_orders(&vendor, &[&a], &["04A40001"], o).await;
    eventually("the first two pages are stored", || async {
        let (_, all) = hub.get("/v1/visits", Some(&hub.admin())).await;
        (all["visits"].as_array().map(Vec::len) == Some(10)).then_some(())
    })
    .await;
    hub.restart().await;
    eventually("every page is stored after the restart", || async {
        let (_, all) = hub.get("/v1/visits", Some(&hub.admin())).await;
        (all["visits"].as_array().map(Vec::len) == Some(15)).then_some(())
    })
    .await;
    let (_, all) = hub.get("/v1/visits", Some(&hub.admin())).await;
    let mut ids: Vec<String> =
        all["visits"].as_array().expect("visits").iter().filter_map(|v| v["id"].as_str().map(str::to_owned)).collect();
    ids.sort();
    let mut want: Vec<String> = (0..15).map(|i| format!("phoniro:F-{i}")).collect();
    want.sort();
    assert_eq!(ids, want, "no visit skipped");
    // No page was asked for twice: the start and c1 once each (c2 twice: the failure, then
    // after the restart), and no copy was ever received.
    let asked: Vec<Option<String>> = vendor
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == "/api/visits")
        .map(|r| r.url.query_pairs().find(|(k, _)| k == "cursor").map(|(_, v)| v.into_owned()))
        .collect();
    assert_eq!(asked.iter().filter(|c| c.is_none()).count(), 1, "{asked:?}");
    assert_eq!(asked.iter().filter(|c| c.as_deref() == Some("c1")).count(), 1, "{asked:?}");
    let (_, copies) = hub.get("/v1/visits?code=VIS007", Some(&hub.admin())).await;
    assert_eq!(copies["visits"].as_array().map(Vec::len), Some(0));
    // Polls that find nothing new are not logged: three pages, three entries, however long
    // the hub keeps polling (every second here): after another whole pull, still three.
    hub.wait_for_a_full_poll("phoniro", "feed").await;
    let (_, log) = hub.get("/v1/messages?system=phoniro&type=visits", Some(&hub.admin())).await;
    assert_eq!(log["messages"].as_array().map(Vec::len), Some(3), "{log}");
    for m in log["messages"].as_array().expect("messages") {
        assert!(!m["canonical"].to_string().contains("duplicate_of"), "no visit came twice: {m}");
    }
}
