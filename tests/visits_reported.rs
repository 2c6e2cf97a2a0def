//! Visit reports to case management in lists: Combine, whose profile takes lists
//! (`mappings/combine/visits.out.toml`), gets the visits a page brought in a few list
//! messages under the size cap, each visit once and one idempotency key per list; Treserva,
//! whose profile takes none, still gets one message per visit; a list answered 503 is sent
//! again whole, with the same key, and then delivered.

use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::*;

/// A page of Phoniro visits for provider A, pushed as the feed would page them: one
/// visit per client in `clients` (with its tag), each on its own staff member and hour.
fn page(clients: &[(String, String)], prefix: &str) -> String {
    let visits: Vec<Value> = clients
        .iter()
        .enumerate()
        .map(|(n, (client, tag))| {
            // Treserva's orders start the day their decision came (the hub's today,
            // 3 December, 10:00), so every visit is early that morning.
            let from = format!("2026-12-03T{:02}:00", 1 + n);
            let to = format!("2026-12-03T{:02}:40", 1 + n);
            let mut v = phoniro_visit(
                &format!("{prefix}-{n}"),
                PROVIDER_A,
                client,
                &format!("st-{prefix}-{n}"),
                tag,
                &from,
                Some(&to),
                None,
            );
            v.as_object_mut().expect("object").remove("type");
            v
        })
        .collect();
    json!({"type": "visitPage", "visits": visits, "nextCursor": "c"}).to_string()
}

/// `n` clients of Combine with November decisions at provider A, each with a tag.
async fn combine_clients(hub: &TestHub, from: usize, n: usize) -> Vec<(String, String)> {
    let pnrs = test_pnrs();
    let cm = hub.system_token("combine");
    let mut out = Vec::new();
    for i in 0..n {
        let client = pnrs[from + i].clone();
        let (s, r) =
            hub.post("combine", november_decision(&format!("DEC-R{from}-{i}"), &client, PROVIDER_A), Some(&cm)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{r}");
        let tag = format!("04D{:05X}", from + i);
        register_tag(hub, &tag, &client, "2026-11-01").await;
        out.push((client, tag));
    }
    out
}

/// The visit reports Combine received: (idempotency key, the visit ids in the body).
async fn combine_reports(vendor: &MockServer) -> Vec<(String, Vec<String>)> {
    vendor
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/callback/aterrapportering")
        .map(|r| (key_of(&r), visit_ids(&String::from_utf8_lossy(&r.body))))
        .collect()
}

fn key_of(r: &Request) -> String {
    r.headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// Every `<BesoksId>` in a report, in order.
fn visit_ids(body: &str) -> Vec<String> {
    body.split("<BesoksId>").skip(1).filter_map(|rest| rest.split("</BesoksId>").next()).map(str::to_owned).collect()
}

#[tokio::test]
async fn combine_gets_a_page_of_visits_in_lists_under_the_cap_and_treserva_one_call_per_visit() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200).set_body_string("<ok/>")).mount(&vendor).await;
    let o = Options { visits: "report_batch_max = 4\nreport_window_ms = 20".into(), ..Options::default() };
    let mut hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), o).await;
    let mut clients = combine_clients(&hub, 1100, 6).await;
    // Two clients whose decisions came from Treserva, at the same provider.
    let pnrs = test_pnrs();
    for (i, client) in pnrs[1120..1122].iter().enumerate() {
        let resp = hub.post_treserva_decision(treserva_decision(&format!("TRE-R{i}"), client, PROVIDER_A)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let tag = format!("04E0{i:04X}");
        register_tag(&hub, &tag, client, "2026-11-01").await;
        clients.push((client.clone(), tag));
    }

    // One page: six Combine visits and two Treserva ones, stored in one commit.
    let (s, r) = hub.post("phoniro", page(&clients, "VR"), Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let results = r["visits"].as_array().expect("results");
    assert!(results.iter().all(|v| v["outcome"] == "accepted"), "{r}");

    let combine_ids: Vec<String> = (0..6).map(|n| format!("phoniro:VR-{n}")).collect();
    let reports = eventually("Combine has a report of each of its six visits", || async {
        let reports = combine_reports(&vendor).await;
        let seen = reports.iter().map(|(_, ids)| ids.len()).sum::<usize>();
        (seen >= 6).then_some(reports)
    })
    .await;
    // Lists of at most four, in the order the visits were stored: four, then two (the two
    // deliveries may arrive in either order, so they are read by their keys).
    let mut reports = reports;
    reports.sort();
    let sizes: Vec<usize> = reports.iter().map(|(_, ids)| ids.len()).collect();
    assert_eq!(sizes, vec![4, 2], "{reports:?}");
    let mut all: Vec<String> = reports.iter().flat_map(|(_, ids)| ids.clone()).collect();
    all.sort();
    assert_eq!(all, combine_ids, "each Combine visit once, and no Treserva visit");
    // One key per list, naming its first and last visit.
    assert_eq!(
        reports.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        vec!["phoniro:VR-0..phoniro:VR-3:visits", "phoniro:VR-4..phoniro:VR-5:visits"]
    );
    // The lists as Combine got them, in whichever order they arrived: one report of four
    // visits and one of two.
    let bodies: Vec<String> = vendor
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == "/callback/aterrapportering")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert!(bodies.iter().all(|b| b.contains("<Besoksrapport")), "{bodies:?}");
    let mut visits_per_list: Vec<usize> = bodies.iter().map(|b| b.matches("<Besok>").count()).collect();
    visits_per_list.sort();
    assert_eq!(visits_per_list, vec![2, 4], "{bodies:?}");

    // Treserva takes no lists: one TaEmotBesok call per visit, each with its visit's key.
    let calls = eventually("Treserva has a call for each of its two visits", || async {
        let calls: Vec<(String, String)> = vendor
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.url.path() == "/treserva" && String::from_utf8_lossy(&r.body).contains("TaEmotBesok"))
            .map(|r| (key_of(&r), String::from_utf8_lossy(&r.body).into_owned()))
            .collect();
        (calls.len() >= 2).then_some(calls)
    })
    .await;
    let mut keys: Vec<&str> = calls.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["phoniro:VR-6:visit", "phoniro:VR-7:visit"]);
    for (key, body) in &calls {
        assert_eq!(body.matches("<Besok>").count(), 1, "{key}: one visit per call: {body}");
    }

    // Everything is delivered and nothing waits: no visit is reported a second time.
    eventually("the outbox is empty", || async {
        let (_, pending) = hub.get("/v1/deliveries?state=pending", Some(&hub.admin())).await;
        pending["deliveries"].as_array().is_some_and(|a| a.is_empty()).then_some(())
    })
    .await;
    assert_eq!(combine_reports(&vendor).await.len(), 2, "no list was sent twice");

    // An auditor searching by one client finds the list that reported that client's visit.
    let (status, found) =
        hub.get(&format!("/v1/messages?client={}&type=visits", clients[5].0), Some(&hub.admin())).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let lists: Vec<&Value> =
        found["messages"].as_array().expect("messages").iter().filter(|m| m["direction"] == "out").collect();
    // The list as queued and its delivery's record, which follows it (so it concerns the
    // same clients); the first list, of other clients, is not among them. The queued
    // entry's canonical form is compact: the list's key and every visit id it reports, in
    // order (the payload has the visits' fields).
    let queued = lists.iter().find(|m| m["status"] == "queued").expect("the list as queued");
    let delivered = eventually("the client's search finds the list's delivery", || async {
        let (_, found) =
            hub.get(&format!("/v1/messages?client={}&type=visits", clients[5].0), Some(&hub.admin())).await;
        found["messages"].as_array()?.iter().find(|m| m["status"] == "delivered").cloned()
    })
    .await;
    assert_eq!(delivered["delivery_key"], queued["delivery_key"], "{delivered}");
    assert_eq!(queued["canonical"]["list"], "phoniro:VR-4..phoniro:VR-5:visits", "{queued}");
    assert_eq!(queued["canonical"]["visits"], json!(["phoniro:VR-4", "phoniro:VR-5"]), "{queued}");
    // Opened, the entry's payload is the list's exact bytes, the client's visit among them.
    let (status, opened) = hub.get(&format!("/v1/messages/{}", queued["id"]), Some(&hub.admin())).await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    let payload = opened["payload"].as_str().unwrap_or_default();
    assert!(payload.contains(clients[5].0.as_str()) && payload.matches("<Besok>").count() == 2, "{opened}");

    // The lists and their attempts are links of the one hash chain, which still verifies.
    hub.stop().await;
    let db = hub.db.to_str().expect("path").to_owned();
    let verified = carehub(&["audit", "verify", "--db", &db]);
    let said = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success() && said.contains("ok: the message log's hash chain verifies"), "{said}");
    assert!(!found.to_string().contains(clients[0].0.as_str()), "only the list with this client: {found}");
}

#[tokio::test]
async fn a_list_answered_503_is_sent_again_whole_with_the_same_key_and_then_delivered() {
    let vendor = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/callback/aterrapportering"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&vendor)
        .await;
    Mock::given(method("POST")).and(path_regex(".*")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    let hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), Options::default()).await;
    let clients = combine_clients(&hub, 1130, 3).await;
    let (s, r) = hub.post("phoniro", page(&clients, "VF"), Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");

    let attempts = eventually("the list is sent twice", || async {
        let got = combine_reports(&vendor).await;
        (got.len() >= 2).then_some(got)
    })
    .await;
    let want: Vec<String> = (0..3).map(|n| format!("phoniro:VF-{n}")).collect();
    assert_eq!(attempts[0].1, want, "the first attempt carries the whole list");
    assert_eq!(attempts[1], attempts[0], "the retry is the same list with the same key");
    assert_eq!(attempts[0].0, "phoniro:VF-0..phoniro:VF-2:visits");

    let delivered = eventually("the list is delivered", || async {
        let (_, rows) = hub.get("/v1/deliveries?state=delivered", Some(&hub.admin())).await;
        rows["deliveries"].as_array()?.iter().find(|d| d["message_type"] == "visits").cloned()
    })
    .await;
    assert_eq!(delivered["attempts"], 2, "{delivered}");
    assert_eq!(combine_reports(&vendor).await.len(), 2, "no third attempt after the delivery");
}
