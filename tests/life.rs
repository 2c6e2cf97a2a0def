//! A decision's life (SPEC §4.4) in the rules: VIS009 at the edges of a pause and an end,
//! and a provider switch on the 17th verified as two orders, each against its own days.
//! (Every vendor pair over its transport is `life_matrix`; the API is `decisions_api`.)

use reqwest::StatusCode;
use serde_json::Value;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

/// A Combine change of `decision`: `body` is the `<Andring>` element.
fn change(decision: &str, version: u32, from: &str, body: &str) -> String {
    format!(
        r#"<Beslutsandring xmlns="urn:carehub:vendor:combine:1"><BeslutsId>{decision}</BeslutsId><Version>{version}</Version><GallerFrom>{from}</GallerFrom>{body}</Beslutsandring>"#
    )
}

async fn send_change(hub: &TestHub, xml: String) -> Value {
    let (s, r) = hub.post("combine", xml, Some(&hub.system_token("combine"))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["status"], "accepted", "{r}");
    r
}

/// Pushes a 30-minute visit on `day` of November 2026 and returns its result.
async fn visit(hub: &TestHub, id: &str, provider: &str, client: &str, tag: &str, day: u32) -> Value {
    let v = phoniro_visit(
        id,
        provider,
        client,
        // Each provider's own staff.
        &format!("s-{provider}"),
        tag,
        &format!("2026-11-{day:02}T09:00"),
        Some(&format!("2026-11-{day:02}T09:30")),
        None,
    );
    let (s, r) = hub.post("phoniro", v.to_string(), Some(&hub.provider(provider))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    r["visits"][0].clone()
}

fn outcome_and_codes(v: &Value) -> (String, Vec<String>) {
    (v["outcome"].as_str().unwrap_or_default().to_owned(), codes(&v["findings"]))
}

async fn vendor() -> MockServer {
    let vendor = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&vendor).await;
    vendor
}

#[tokio::test]
async fn a_visit_inside_a_pause_or_after_an_end_is_vis009_and_the_day_before_each_is_not() {
    let vendor = vendor().await;
    let hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    let client = &test_pnrs()[820];
    let (s, r) = hub
        .post("combine", november_decision("DEC-LIFE-1", client, PROVIDER_A), Some(&hub.system_token("combine")))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    register_tag(&hub, "04A62001", client, "2026-11-01").await;
    // A hospital stay from the 5th to the 12th, then help ends on the 20th.
    let pause = r#"<Andring typ="Uppehall"><UppehallFrom>2026-11-05</UppehallFrom><UppehallTom>2026-11-12</UppehallTom><Uppehallsorsak kod="SJUKHUS"/></Andring>"#;
    send_change(&hub, change("DEC-LIFE-1", 1, "2026-11-05", pause)).await;
    let end = r#"<Andring typ="Avslut"><SistaDag>2026-11-20</SistaDag><Avslutsorsak kod="SABO"/></Andring>"#;
    send_change(&hub, change("DEC-LIFE-1", 2, "2026-11-20", end)).await;

    let accepted = ("accepted".to_owned(), Vec::<String>::new());
    let vis009 = ("rejected".to_owned(), vec!["VIS009".to_owned()]);
    for (day, want) in [(4, &accepted), (5, &vis009), (12, &vis009), (13, &accepted), (20, &accepted), (21, &vis009)] {
        let v = visit(&hub, &format!("LIFE-1-V{day}"), PROVIDER_A, client, "04A62001", day).await;
        assert_eq!(&outcome_and_codes(&v), want, "the visit on November {day}: {v}");
    }
}

#[tokio::test]
async fn a_switch_on_the_17th_verifies_each_providers_invoice_against_its_own_days() {
    let vendor = vendor().await;
    let hub = TestHub::start(&vendor.uri(), &vendor.uri()).await;
    let client = &test_pnrs()[821];
    let (s, r) = hub
        .post("combine", november_decision("DEC-LIFE-2", client, PROVIDER_A), Some(&hub.system_token("combine")))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    register_tag(&hub, "04A62002", client, "2026-11-01").await;
    let switch = format!(
        r#"<Andring typ="Utforarbyte"><Utforare orgnr="{PROVIDER_B}"/><ForstaDag>2026-11-17</ForstaDag></Andring>"#
    );
    let receipt = send_change(&hub, change("DEC-LIFE-2", 1, "2026-11-17", &switch)).await;
    let orders = hub.orders_of("combine:DEC-LIFE-2").await;
    let [old, new] = &orders[..] else { panic!("the switch leaves two orders: {orders:?}") };
    let (old, new) = (old.clone(), new.clone());
    assert_eq!(receipt["order_id"].as_str(), Some(new.as_str()), "the receipt names the new order: {receipt}");

    // The old provider's last day is the 16th, the new provider's first the 17th.
    let vis009 = ("rejected".to_owned(), vec!["VIS009".to_owned()]);
    for (provider, day, want_order) in
        [(PROVIDER_A, 16, Some(&old)), (PROVIDER_A, 17, None), (PROVIDER_B, 16, None), (PROVIDER_B, 17, Some(&new))]
    {
        let v = visit(&hub, &format!("LIFE-2-{provider}-V{day}"), provider, client, "04A62002", day).await;
        match want_order {
            Some(order) => assert_eq!(v["order_id"].as_str(), Some(order.as_str()), "{provider} on the {day}th: {v}"),
            None => assert_eq!(outcome_and_codes(&v), vis009, "{provider} on the {day}th: {v}"),
        }
    }

    // SERV 480 minutes a month in a 30-day November: the old order has days 1-16,
    // 480 × 16 / 30 = 256; the new one days 17-30, 480 × 14 / 30 = 224.
    for (provider, order, granted) in [(PROVIDER_A, &old, 256), (PROVIDER_B, &new, 224)] {
        let invoice =
            peppol_of(provider, "invoice", &format!("LIFE-{provider}"), None, &[("1", order, "1", "HUR", "390.00")]);
        let (s, r) = hub.post("phoniro", invoice, Some(&hub.provider(provider))).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{r}");
        let line = &r["verification"]["lines"][0];
        assert_eq!(
            (line["granted_minutes"].as_i64(), line["performed_minutes"].as_i64()),
            (Some(granted), Some(30)),
            "{provider}: {r}"
        );
        assert!(!codes(&line["findings"]).contains(&"INV004".to_owned()), "the order is active in November: {r}");
    }
}
