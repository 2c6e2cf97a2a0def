//! A decision's life as the API shows it (SPEC §4.4): a Combine decision changed three
//! times (more minutes, a pause, another provider), read back as the decision with its
//! versions and orders, as the client's orders over time, and in each order's trace; the
//! deviations and changes of need the providers report, listed by provider, month and
//! kind, and counted in the monthly follow-up.

use reqwest::StatusCode;
use serde_json::{json, Value};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

const DECISION: &str = "DEC-API-1";

/// A Combine decision change of `DECISION`: version `v`, from `from`, with `change` (the
/// `Andring` element).
fn change_xml(v: u32, from: &str, change: &str) -> String {
    format!(
        r#"<Beslutsandring xmlns="urn:carehub:vendor:combine:1"><BeslutsId>{DECISION}</BeslutsId><Version>{v}</Version><GallerFrom>{from}</GallerFrom>{change}</Beslutsandring>"#
    )
}

fn v1() -> String {
    change_xml(
        1,
        "2026-11-10",
        r#"<Andring typ="Insatser"><Insats kod="SERV"><MinuterPerManad>600</MinuterPerManad></Insats></Andring>"#,
    )
}

fn v2() -> String {
    change_xml(
        2,
        "2026-11-12",
        r#"<Andring typ="Uppehall"><UppehallFrom>2026-11-12</UppehallFrom><UppehallTom>2026-11-14</UppehallTom><Uppehallsorsak kod="SJUKHUS"/></Andring>"#,
    )
}

fn v3() -> String {
    change_xml(
        3,
        "2026-11-17",
        &format!(
            r#"<Andring typ="Utforarbyte"><Utforare orgnr="{PROVIDER_B}"/><ForstaDag>2026-11-17</ForstaDag></Andring>"#
        ),
    )
}

fn deviation(id: &str, provider: &str, pnr: &str, order: Option<&str>, day: &str, category: &str) -> String {
    let mut d = json!({
        "type": "deviation", "deviationId": id, "provider": {"organisationNumber": provider},
        "client": {"personalIdentityNumber": pnr}, "occurredDate": day, "category": category,
        "severity": "MEDIUM", "description": "Beskrivning av händelsen."
    });
    if let Some(o) = order {
        d["orderId"] = json!(o);
    }
    d.to_string()
}

fn need_change(id: &str, provider: &str, pnr: &str, day: &str, direction: &str) -> String {
    json!({
        "type": "needChange", "needChangeId": id, "provider": {"organisationNumber": provider},
        "client": {"personalIdentityNumber": pnr}, "noticedDate": day, "direction": direction,
        "description": "Behöver mer hjälp på morgonen."
    })
    .to_string()
}

/// A hub whose vendors take every delivery, with the decision sent and changed three
/// times; the old order (at A) and the new one (at B).
struct Life {
    hub: TestHub,
    pnr: String,
    old: String,
    new: String,
    _vendors: (MockServer, MockServer),
}

async fn decision_with_three_changes() -> Life {
    let phoniro = MockServer::start().await;
    let combine = MockServer::start().await;
    for vendor in [&phoniro, &combine] {
        Mock::given(any()).respond_with(ResponseTemplate::new(200)).mount(vendor).await;
    }
    let hub = TestHub::start_with(&phoniro.uri(), &combine.uri(), Options::default()).await;
    let pnr = test_pnrs().into_iter().find(|p| p.starts_with("195")).expect("a test number from the 1950s");
    let combine_token = hub.system_token("combine");
    let decision = decision_xml(DECISION, &pnr, PROVIDER_A, Some("2026-11-01T09:00:00+01:00"));
    let (status, receipt) = hub.post("combine", decision, Some(&combine_token)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    for (change, kind) in [(v1(), "services"), (v2(), "paused"), (v3(), "new_provider")] {
        let (status, receipt) = hub.post("combine", change, Some(&combine_token)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{kind}: {receipt}");
        assert_eq!(receipt["status"], "accepted", "{kind}: {receipt}");
    }
    let orders = hub.orders_of(&format!("combine:{DECISION}")).await;
    let [old, new] = &orders[..] else { panic!("the switch leaves two orders: {orders:?}") };
    let (old, new) = (old.clone(), new.clone());
    Life { hub, pnr, old, new, _vendors: (phoniro, combine) }
}

#[tokio::test]
async fn a_decision_shows_its_versions_and_the_orders_of_both_providers() {
    let Life { hub, old, new, .. } = decision_with_three_changes().await;
    let admin = hub.admin();
    // The colon of the namespaced id may come encoded or not.
    for path in [format!("/v1/decisions/combine%3A{DECISION}"), format!("/v1/decisions/combine:{DECISION}")] {
        let (status, d) = hub.get(&path, Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {d}");
        assert_eq!(d["id"], format!("combine:{DECISION}"));
        assert_eq!(d["version"], 3);
        assert_eq!(d["provider"], PROVIDER_B, "the decision stands with the new provider");
        assert_eq!(d["decision"]["provider"], PROVIDER_B);
        let versions: Vec<(u64, &str, &str)> = d["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|v| {
                (
                    v["version"].as_u64().expect("n"),
                    v["kind"].as_str().expect("kind"),
                    v["effective_from"].as_str().expect("day"),
                )
            })
            .collect();
        assert_eq!(
            versions,
            [
                (0, "decision", "2026-11-01"),
                (1, "services", "2026-11-10"),
                (2, "paused", "2026-11-12"),
                (3, "new_provider", "2026-11-17")
            ]
        );
        assert!(d["versions"].as_array().expect("versions").iter().all(|v| v["system"] == "combine"));

        let orders = d["orders"].as_array().expect("orders");
        assert_eq!(orders.len(), 2, "{d}");
        let (a, b) = (&orders[0], &orders[1]);
        assert_eq!((a["order_id"].as_str(), a["provider"].as_str()), (Some(old.as_str()), Some(PROVIDER_A)));
        assert_eq!(a["terms"]["start_date"], "2026-11-01");
        assert_eq!(a["terms"]["end_date"], "2026-11-16", "the old order ends the day before the switch");
        assert_eq!(a["terms"]["ended"], "provider_switch");
        assert_eq!(a["terms"]["revisions"][0]["from"], "2026-11-10");
        assert_eq!(a["terms"]["revisions"][0]["services"][0]["minutes_per_month"], 600);
        assert_eq!(a["terms"]["pauses"][0]["from"], "2026-11-12");
        assert_eq!(a["terms"]["pauses"][0]["to"], "2026-11-14");
        assert_eq!(a["terms"]["pauses"][0]["reason"], "hospital_stay");
        assert_eq!((b["order_id"].as_str(), b["provider"].as_str()), (Some(new.as_str()), Some(PROVIDER_B)));
        assert_eq!(b["terms"]["start_date"], "2026-11-17");
        assert_eq!(b["terms"]["ended"], Value::Null);
    }

    // A provider sees the decision through its own order only; a provider without one, or
    // another case-management system, does not see it.
    let path = format!("/v1/decisions/combine:{DECISION}");
    let (status, d) = hub.get(&path, Some(&hub.provider(PROVIDER_B))).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    let ids: Vec<&str> =
        d["orders"].as_array().expect("orders").iter().filter_map(|o| o["order_id"].as_str()).collect();
    assert_eq!(ids, [new.as_str()]);
    let (status, body) = hub.get(&path, Some(&hub.provider(PROVIDER_C))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "{body}");
    let (status, body) = hub.get(&path, Some(&hub.system_token("treserva"))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "{body}");
    let (status, d) = hub.get(&path, Some(&hub.system_token("combine"))).await;
    assert_eq!((status, d["orders"].as_array().map(Vec::len)), (StatusCode::OK, Some(2)), "{d}");
    let (status, body) = hub.get("/v1/decisions/combine:DEC-NO-SUCH", Some(&admin)).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("NOT_FOUND")), "{body}");
    let (status, _) = hub.get(&path, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_clients_orders_read_in_start_order_and_repeats_change_nothing() {
    let Life { hub, pnr, old, new, .. } = decision_with_three_changes().await;
    let admin = hub.admin();
    // The ten-digit form with a separator names the same client.
    let short = format!("{}-{}", &pnr[2..8], &pnr[8..]);
    for client in [pnr.clone(), short] {
        let (status, body) = hub.get(&format!("/v1/orders?client={client}"), Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let orders: Vec<(&str, &str)> = body["orders"]
            .as_array()
            .expect("orders")
            .iter()
            .map(|o| (o["order"]["id"].as_str().expect("id"), o["order"]["start_date"].as_str().expect("start")))
            .collect();
        assert_eq!(orders, [(old.as_str(), "2026-11-01"), (new.as_str(), "2026-11-17")]);
    }
    let (status, body) = hub.get(&format!("/v1/orders?client={pnr}"), Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> =
        body["orders"].as_array().expect("orders").iter().filter_map(|o| o["order"]["id"].as_str()).collect();
    assert_eq!(ids, [old.as_str()], "a provider sees only its own of the client's orders");
    let mut wrong = pnr.clone();
    let last = wrong.pop().expect("a digit").to_digit(10).expect("digit");
    wrong.push(char::from_digit((last + 1) % 10, 10).expect("digit"));
    for bad in [wrong.as_str(), "12345", "not-a-number"] {
        let (status, body) = hub.get(&format!("/v1/orders?client={bad}"), Some(&admin)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["code"], "INVALID_PERSONAL_IDENTITY_NUMBER", "{bad}");
    }

    // An older version after a later one is stale; the latest again is a repeat. Neither
    // changes the decision.
    let combine = hub.system_token("combine");
    let (status, receipt) = hub.post("combine", v1(), Some(&combine)).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!((receipt["status"].as_str(), receipt["code"].as_str()), (Some("stale"), Some("STALE_VERSION")));
    let (status, receipt) = hub.post("combine", v3(), Some(&combine)).await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["status"], "duplicate");
    assert_eq!(receipt.get("code"), None, "{receipt}");
    let (_, d) = hub.get(&format!("/v1/decisions/combine:{DECISION}"), Some(&admin)).await;
    assert_eq!((d["version"].as_u64(), d["versions"].as_array().map(Vec::len)), (Some(3), Some(4)), "{d}");
    assert_eq!(d["orders"].as_array().map(Vec::len), Some(2));
}

/// Posts a provider's report through Phoniro as the provider, and expects it taken.
async fn report(hub: &TestHub, provider: &str, body: String) {
    let (status, receipt) = hub.post("phoniro", body, Some(&hub.provider(provider))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{receipt}");
    assert_eq!(receipt["status"], "accepted", "{receipt}");
}

fn ids(body: &Value) -> Vec<&str> {
    body["reports"].as_array().expect("reports").iter().filter_map(|r| r["id"].as_str()).collect()
}

#[tokio::test]
async fn deviations_and_changes_of_need_list_by_provider_month_and_kind_and_show_in_trace_and_follow_up() {
    let Life { hub, pnr, old, new, .. } = decision_with_three_changes().await;
    report(&hub, PROVIDER_A, deviation("AV-1", PROVIDER_A, &pnr, None, "2026-11-05", "MISSED_VISIT")).await;
    report(&hub, PROVIDER_B, deviation("AV-2", PROVIDER_B, &pnr, Some(&new), "2026-11-20", "FALL")).await;
    report(&hub, PROVIDER_B, need_change("BEV-1", PROVIDER_B, &pnr, "2026-11-21", "INCREASED")).await;
    report(&hub, PROVIDER_B, deviation("AV-3", PROVIDER_B, &pnr, None, "2026-12-02", "FALL")).await;
    let admin = hub.admin();

    let cases = [
        (format!("provider={PROVIDER_B}&month=2026-11"), vec!["phoniro:AV-2", "phoniro:BEV-1"]),
        ("month=2026-11&kind=deviation".to_owned(), vec!["phoniro:AV-1", "phoniro:AV-2"]),
        ("kind=fall".to_owned(), vec!["phoniro:AV-2", "phoniro:AV-3"]),
        ("kind=more".to_owned(), vec!["phoniro:BEV-1"]),
        ("kind=need_change".to_owned(), vec!["phoniro:BEV-1"]),
        (format!("order={old}"), vec!["phoniro:AV-1"]),
        ("month=2026-12".to_owned(), vec!["phoniro:AV-3"]),
        ("month=2026-11&limit=1".to_owned(), vec!["phoniro:AV-1"]),
    ];
    for (query, want) in &cases {
        let (status, body) = hub.get(&format!("/v1/deviations?{query}"), Some(&admin)).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        assert_eq!(&ids(&body), want, "{query}");
    }
    let (_, body) = hub.get("/v1/deviations?kind=fall&month=2026-11", Some(&admin)).await;
    let fall = &body["reports"][0];
    assert_eq!((fall["message_type"].as_str(), fall["provider"].as_str()), (Some("deviation"), Some(PROVIDER_B)));
    assert_eq!((fall["order_id"].as_str(), fall["day"].as_str()), (Some(new.as_str()), Some("2026-11-20")));

    // A provider sees its own, never another's.
    let (status, body) =
        hub.get(&format!("/v1/deviations?provider={PROVIDER_B}"), Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "{body}");
    let (status, body) = hub.get("/v1/deviations", Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!((status, ids(&body)), (StatusCode::OK, vec!["phoniro:AV-1"]), "{body}");
    let (status, body) = hub.get("/v1/deviations", Some(&hub.provider(PROVIDER_C))).await;
    assert_eq!((status, ids(&body)), (StatusCode::OK, Vec::<&str>::new()), "{body}");
    for (query, code) in
        [("month=2026-13", "INVALID_DATE"), ("month=november", "INVALID_DATE"), ("provider=123", "INVALID_ORG_NUMBER")]
    {
        let (status, body) = hub.get(&format!("/v1/deviations?{query}"), Some(&admin)).await;
        assert_eq!((status, body["code"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(code)), "{query}: {body}");
    }

    // The old order's trace: its change, pause and end, its terms, and its deviation.
    let trace = hub.trace(&old).await;
    let steps: Vec<&str> =
        trace["steps"].as_array().expect("steps").iter().filter_map(|s| s["step"].as_str()).collect();
    let has = |what: &str| steps.iter().any(|s| s.contains(what));
    assert!(has("decision change received from combine: version 2, paused 2026-11-12 to 2026-11-14"), "{steps:#?}");
    assert!(has("version 1, services from 2026-11-10"), "{steps:#?}");
    assert!(has("order end") && has("last day 2026-11-16 (provider switch)"), "{steps:#?}");
    // The switch itself is logged under the new order, and is part of the old one's story.
    assert!(has("decision change received from combine: version 3"), "{steps:#?}");
    assert!(has("deviation received from phoniro: missed_visit on 2026-11-05"), "{steps:#?}");
    assert_eq!(trace["terms"]["ended"], "provider_switch");
    assert_eq!(trace["terms"]["version"], 3);
    let summary: Vec<&str> =
        trace["terms"]["summary"].as_array().expect("summary").iter().filter_map(Value::as_str).collect();
    assert_eq!(
        summary,
        [
            "from 2026-11-01: SERV 480 min/month",
            "from 2026-11-10 (version 1): SERV 600 min/month",
            "paused 2026-11-12 to 2026-11-14 (version 2): hospital_stay",
            "last day 2026-11-16, ended: provider_switch"
        ]
    );
    assert_eq!(ids(&trace), ["phoniro:AV-1"]);
    // The new order's: the switch that made it, and what its provider reported.
    let trace = hub.trace(&new).await;
    let steps: Vec<&str> =
        trace["steps"].as_array().expect("steps").iter().filter_map(|s| s["step"].as_str()).collect();
    assert!(
        steps.iter().any(|s| s.contains(&format!("version 3, provider {PROVIDER_B} from 2026-11-17"))),
        "{steps:#?}"
    );
    assert!(
        steps.iter().any(|s| s.contains("need change received from phoniro: more help on 2026-11-21")),
        "{steps:#?}"
    );
    assert_eq!(ids(&trace), ["phoniro:AV-2", "phoniro:BEV-1", "phoniro:AV-3"]);

    // The follow-up counts November's reports per provider and kind.
    let (status, f) = hub.get("/v1/reports/follow-up?month=2026-11", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK, "{f}");
    assert_eq!((f["summary"]["deviations"].as_u64(), f["summary"]["need_changes"].as_u64()), (Some(2), Some(1)), "{f}");
    let row = |p: &str| f["providers"].as_array().expect("providers").iter().find(|r| r["provider"] == p).cloned();
    let b = row(PROVIDER_B).expect("B's row");
    assert_eq!((b["deviations"].as_u64(), b["need_changes"].as_u64()), (Some(1), Some(1)));
    // By provider, type and kind: B (5566...) before A (5599...).
    assert_eq!(
        f["reports"],
        json!([
            {"provider": PROVIDER_B, "message_type": "deviation", "kind": "fall", "count": 1},
            {"provider": PROVIDER_B, "message_type": "need_change", "kind": "more", "count": 1},
            {"provider": PROVIDER_A, "message_type": "deviation", "kind": "missed_visit", "count": 1},
        ])
    );
}
