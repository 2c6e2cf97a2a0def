//! A decision's life over the real transports (SPEC §4.4), between every case-management
//! system (Combine XML over HTTP, Treserva SOAP, Procapita ISO-8859-1 files over SFTP,
//! Lifecare JSON) and every provider system (Phoniro JSON, Lifecare Mobil JSON with OAuth,
//! ParaGå Windows-1252 CSV files over SFTP), on loopback: amendments and ends reach the
//! provider in its own format, a provider switch ends one order and starts another at a
//! different provider system, deviations and changes of need reach the order's case officer
//! in that system's format, and an older version arriving late changes nothing.
//!
//! Each check reads what the receiving side got, in its format, back into the few values
//! that matter (the order, the version, the new minutes, the last day and why), so a
//! message that arrives with the wrong content fails as surely as one that never arrives.

use chrono::{Days, NaiveDate};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::life::*;
use crate::support::*;

/// A value of a vendor's JSON as text, whether it was written as a string or a number.
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// A row's column, or "" when it has none.
fn col(row: &std::collections::HashMap<String, String>, name: &str) -> String {
    row.get(name).cloned().unwrap_or_default()
}

/// An order change as a provider system received it: decision reference, client, version,
/// effective date, and each service as (the vendor's word for it, minutes a month).
#[derive(Debug, PartialEq)]
struct Amended {
    decision: String,
    client: String,
    version: String,
    from: String,
    services: Vec<(String, String)>,
}

/// An order end as a provider system received it: decision reference, client, version,
/// last day, and the vendor's word for why.
#[derive(Debug, PartialEq)]
struct Ended {
    decision: String,
    client: String,
    version: String,
    last_day: String,
    reason: String,
}

/// A new order as a provider system received it: decision reference, provider, client,
/// first day, and each service's minutes a month.
#[derive(Debug, PartialEq)]
struct Started {
    decision: String,
    provider: String,
    client: String,
    start: String,
    minutes: Vec<String>,
}

/// The order changes provider system `system` received for `order`.
async fn amended_at(v: &Vendors, system: &str, order: &str) -> Vec<Amended> {
    match system {
        "phoniro" => v
            .provider_json("/api/order-changes", "orderId", order)
            .await
            .iter()
            .map(|b| {
                assert_eq!(b["changeType"], "ACTIVITIES", "{b}");
                Amended {
                    decision: text(&b["externalReference"]),
                    client: text(&b["client"]["personalIdentityNumber"]),
                    version: text(&b["version"]),
                    from: text(&b["effectiveFrom"]),
                    services: b["activities"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| (text(&a["activityCode"]), text(&a["minutesPerMonth"])))
                        .collect(),
                }
            })
            .collect(),
        "lifecare-mobil" => v
            .provider_json("/lcmh/api/assignment-changes", "assignmentId", order)
            .await
            .iter()
            .map(|b| {
                assert_eq!(b["change"]["type"], "SERVICES", "{b}");
                Amended {
                    decision: text(&b["reference"]),
                    client: text(&b["client"]["ssn"]),
                    version: text(&b["version"]),
                    from: text(&b["effectiveFrom"]),
                    services: b["change"]["services"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|s| (text(&s["type"]), text(&s["minutes"])))
                        .collect(),
                }
            })
            .collect(),
        _ => {
            // A row per service; the rows of one version make one change.
            let rows = v.paraga_rows("uppdragsandring", order);
            let mut changes: Vec<Amended> = Vec::new();
            for row in &rows {
                assert_eq!(col(row, "Ändring"), "INSATSER", "{row:?}");
                let service = (col(row, "Insats"), col(row, "Minuter per månad"));
                match changes.iter_mut().find(|c| c.version == col(row, "Version")) {
                    Some(c) => c.services.push(service),
                    None => changes.push(Amended {
                        decision: col(row, "Beslutsreferens"),
                        client: col(row, "Personnummer"),
                        version: col(row, "Version"),
                        from: col(row, "Gäller från"),
                        services: vec![service],
                    }),
                }
            }
            changes
        }
    }
}

/// The order ends provider system `system` received for `order`.
async fn ended_at(v: &Vendors, system: &str, order: &str) -> Vec<Ended> {
    match system {
        "phoniro" => v
            .provider_json("/api/order-ends", "orderId", order)
            .await
            .iter()
            .map(|b| Ended {
                decision: text(&b["externalReference"]),
                client: text(&b["client"]["personalIdentityNumber"]),
                version: text(&b["version"]),
                last_day: text(&b["endDate"]),
                reason: text(&b["endReason"]),
            })
            .collect(),
        "lifecare-mobil" => v
            .provider_json("/lcmh/api/assignment-terminations", "assignmentId", order)
            .await
            .iter()
            .map(|b| Ended {
                decision: text(&b["reference"]),
                client: text(&b["client"]["ssn"]),
                version: text(&b["version"]),
                last_day: text(&b["period"]["end"]),
                reason: text(&b["terminationReason"]),
            })
            .collect(),
        _ => v
            .paraga_rows("avslut", order)
            .iter()
            .map(|row| Ended {
                decision: col(row, "Beslutsreferens"),
                client: col(row, "Personnummer"),
                version: col(row, "Version"),
                last_day: col(row, "Sista dag"),
                reason: col(row, "Orsak"),
            })
            .collect(),
    }
}

/// The new orders provider system `system` received for `order`.
async fn started_at(v: &Vendors, system: &str, order: &str) -> Vec<Started> {
    match system {
        "phoniro" => v
            .provider_json("/api/orders", "orderId", order)
            .await
            .iter()
            .map(|b| Started {
                decision: text(&b["externalReference"]),
                provider: text(&b["provider"]["organisationNumber"]),
                client: text(&b["client"]["personalIdentityNumber"]),
                start: text(&b["startDate"]),
                minutes: b["activities"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| text(&a["minutesPerMonth"]))
                    .collect(),
            })
            .collect(),
        "paraga" => {
            let rows = v.paraga_rows("uppdrag", order);
            let Some(first) = rows.first() else { return Vec::new() };
            vec![Started {
                decision: col(first, "Beslutsreferens"),
                provider: col(first, "Utförare"),
                client: col(first, "Personnummer"),
                start: col(first, "Startdatum"),
                minutes: rows.iter().map(|r| col(r, "Minuter per månad")).collect(),
            }]
        }
        other => panic!("no reader for new orders at {other}"),
    }
}

/// A provider system's word for a service category the tests' decisions use: `personal`
/// for Procapita's decisions (personlig omvårdnad), the service category for the others.
fn service_word(system: &str, personal: bool) -> &'static str {
    match (system, personal) {
        ("phoniro", false) => "SERVICE",
        ("phoniro", true) => "CARE",
        ("lifecare-mobil", false) => "SERVICE",
        ("lifecare-mobil", true) => "PERSONAL_CARE",
        (_, false) => "SERV",
        (_, true) => "OMV",
    }
}

/// A provider system's word for why an order ends: the client moved into residential care,
/// or (`switch`) chose another provider.
fn end_word(system: &str, switch: bool) -> &'static str {
    match (system, switch) {
        ("phoniro", false) => "RESIDENTIAL_CARE",
        ("phoniro", true) => "PROVIDER_CHANGE",
        ("lifecare-mobil", false) => "MOVED_TO_RESIDENTIAL_CARE",
        ("lifecare-mobil", true) => "CHANGE_OF_PROVIDER",
        (_, false) => "SÄBO",
        (_, true) => "UTFÖRARBYTE",
    }
}

fn days_after(day: NaiveDate, n: u64) -> NaiveDate {
    day.checked_add_days(Days::new(n)).expect("a date")
}

/// One decision of the matrix: where it comes from and goes, and what its amendment sets.
struct Pair {
    cm: &'static str,
    system: &'static str,
    id: String,
    pnr: String,
    order: String,
    minutes: u32,
}

#[tokio::test]
async fn amendments_and_ends_travel_from_every_case_management_system_to_every_provider_system() {
    let v = Vendors::start().await;
    let pnrs = test_pnrs();
    let today = v.hub.clock.today();
    let (raised_from, last_day) = (days_after(today, 7), days_after(today, 24));

    // Twelve decisions, each in its system's own format and transport.
    let mut pairs = Vec::new();
    for (i, cm) in CASE_MANAGEMENT.into_iter().enumerate() {
        for (j, (system, org)) in PROVIDERS.into_iter().enumerate() {
            let n = 3 * i + j;
            let (id, pnr) = (format!("LM-{i}{j}"), pnrs[700 + n].clone());
            let order = v.send_decision(cm, &id, &pnr, org).await;
            // Each pair its own minutes: a change that reached the wrong order shows.
            let minutes = 600 + 30 * u32::try_from(n).expect("small");
            pairs.push(Pair { cm, system, id, pnr, order, minutes });
        }
    }
    for p in &pairs {
        v.hub.wait_for_order_status(&p.order, "delivered").await;
    }

    // Version 1 raises the minutes from a day; version 2, sent once the first has reached
    // the provider, ends help.
    for p in &pairs {
        v.send_change(p.cm, &p.id, 1, &Change::Minutes { from: raised_from, minutes: p.minutes }).await;
    }
    for p in &pairs {
        if p.cm == "procapita" {
            v.wait_taken_by_procapita(&change_file(&p.id, 1)).await;
        }
        v.wait_delivered(&p.order, &format!("{}:order_change:1", p.order)).await;
    }
    for p in &pairs {
        v.send_change(p.cm, &p.id, 2, &Change::Ended { on: last_day }).await;
    }
    for p in &pairs {
        if p.cm == "procapita" {
            v.wait_taken_by_procapita(&change_file(&p.id, 2)).await;
        }
        v.wait_delivered(&p.order, &format!("{}:order_end:2", p.order)).await;
    }

    for p in &pairs {
        let decision = format!("{}:{}", p.cm, p.id);
        let service = service_word(p.system, p.cm == "procapita").to_owned();
        assert_eq!(
            amended_at(&v, p.system, &p.order).await,
            vec![Amended {
                decision: decision.clone(),
                client: p.pnr.clone(),
                version: "1".into(),
                from: raised_from.to_string(),
                services: vec![(service, p.minutes.to_string())],
            }],
            "the amendment from {} at {}",
            p.cm,
            p.system
        );
        assert_eq!(
            ended_at(&v, p.system, &p.order).await,
            vec![Ended {
                decision,
                client: p.pnr.clone(),
                version: "2".into(),
                last_day: last_day.to_string(),
                reason: end_word(p.system, false).into(),
            }],
            "the end from {} at {}",
            p.cm,
            p.system
        );
        let (_, o) = v.hub.get(&format!("/v1/orders/{}", p.order), Some(&v.hub.admin())).await;
        assert_eq!(
            (o["order"]["end_date"].as_str(), o["order"]["version"].as_u64()),
            (Some(&*last_day.to_string()), Some(2)),
            "{o}"
        );
    }
    // ParaGå got one daily file of each kind, as Windows-1252 CSV.
    let day = today.format("%Y%m%d");
    let files = v.paraga.files("outbox");
    for name in [format!("uppdragsandring-{day}.csv"), format!("avslut-{day}.csv")] {
        assert!(files.contains(&name), "{name} in {files:?}");
    }
    let avslut = std::fs::read(v.paraga.root.join("outbox").join(format!("avslut-{day}.csv"))).expect("read");
    assert!(avslut.windows(4).any(|w| w == b"S\xc4BO"), "Ä is 0xC4 in Windows-1252");
}

#[tokio::test]
async fn a_provider_switch_ends_the_old_order_the_day_before_and_starts_a_new_one_at_another_provider_system() {
    let v = Vendors::start().await;
    let pnrs = test_pnrs();
    let from = days_after(v.hub.clock.today(), 10);
    let last_day = from.pred_opt().expect("a date");

    // Combine: Phoniro to ParaGå; Lifecare: Lifecare Mobil to Phoniro.
    for (cm, id, pnr, old_org, new_org) in [
        ("combine", "SW-1", &pnrs[720], PROVIDER_A, PROVIDER_D),
        ("lifecare", "SW-2", &pnrs[721], PROVIDER_C, PROVIDER_A),
    ] {
        let (old_system, new_system) = (system_of(old_org), system_of(new_org));
        let old = v.send_decision(cm, id, pnr, old_org).await;
        v.hub.wait_for_order_status(&old, "delivered").await;
        v.send_change(cm, id, 1, &Change::NewProvider { provider: new_org, from }).await;

        let new = v.hub.orders_of(&format!("{cm}:{id}")).await.pop().expect("the new provider's order");
        assert_ne!(new, old, "the switch made a second order");
        v.wait_delivered(&old, &format!("{old}:order_end:1")).await;
        let o = v.hub.wait_for_order_status(&new, "delivered").await;
        assert_eq!((o["source_system"].as_str(), o["provider_system"].as_str()), (Some(cm), Some(new_system)), "{o}");

        let decision = format!("{cm}:{id}");
        assert_eq!(
            ended_at(&v, old_system, &old).await,
            vec![Ended {
                decision: decision.clone(),
                client: pnr.clone(),
                version: "1".into(),
                last_day: last_day.to_string(),
                reason: end_word(old_system, true).into(),
            }],
            "{old_system} learns its order ends the day before the switch"
        );
        assert_eq!(
            started_at(&v, new_system, &new).await,
            vec![Started {
                decision,
                provider: new_org.into(),
                client: pnr.clone(),
                start: from.to_string(),
                minutes: vec!["480".into()],
            }],
            "{new_system} gets a new order from the day of the switch"
        );
        assert!(started_at(&v, new_system, &old).await.is_empty(), "the old order never reaches {new_system}");
    }
}

/// A deviation and a change of need as the case-management system received them: the
/// report's id, the decision (the system's own id), the order, the vendor's word for the
/// kind or direction, and the description.
#[derive(Debug, PartialEq)]
struct Reported {
    id: String,
    decision: String,
    order: String,
    kind: String,
    description: String,
}

impl Reported {
    fn new(id: &str, decision: &str, order: &str, kind: &str, description: &str) -> Reported {
        let s = str::to_owned;
        Reported { id: s(id), decision: s(decision), order: s(order), kind: s(kind), description: s(description) }
    }
}

/// The deviations and changes of need case-management system `cm` received, as XML
/// elements or JSON bodies read back to [`Reported`]: (deviations, changes of need).
async fn reported_at(v: &Vendors, cm: &str) -> (Vec<Reported>, Vec<Reported>) {
    let from_xml = |el: &carehub_core::mapping::xml::Element, paths: [&str; 5]| {
        let t = |p: &str| xml_text(el, p).unwrap_or_default().to_owned();
        Reported {
            id: t(paths[0]),
            decision: t(paths[1]),
            order: t(paths[2]),
            kind: t(paths[3]),
            description: t(paths[4]),
        }
    };
    match cm {
        "combine" => {
            let requests = v.cm_http.received_requests().await.unwrap_or_default();
            let read = |endpoint: &str, paths: [&str; 5]| -> Vec<Reported> {
                requests
                    .iter()
                    .filter(|r| r.url.path() == endpoint)
                    .map(|r| {
                        let text = String::from_utf8_lossy(&r.body);
                        from_xml(&carehub_core::mapping::xml::parse(&text).expect("XML"), paths)
                    })
                    .collect()
            };
            (
                read("/callback/avvikelse", ["AvvikelseId", "BeslutsId", "UppdragsId", "Typ", "Beskrivning"]),
                read("/callback/bevakning", ["BevakningsId", "BeslutsId", "UppdragsId", "Behov", "Beskrivning"]),
            )
        }
        "treserva" => {
            let calls = soap_calls(&v.cm_http, "/treserva").await;
            let read = |operation: &str, root: &str, kind: &str| -> Vec<Reported> {
                calls
                    .iter()
                    .filter(|(_, payload)| payload.name == operation)
                    .map(|(action, payload)| {
                        assert_eq!(action, &format!("\"urn:carehub:vendor:treserva:1/{operation}\""));
                        let p = |leaf: &str| format!("{root}/{leaf}");
                        let id = if root == "Avvikelse" { "AvvikelseId" } else { "BevakningId" };
                        from_xml(payload, [&p(id), &p("BeslutId"), &p("UppdragId"), &p(kind), &p("Beskrivning")])
                    })
                    .collect()
            };
            (read("TaEmotAvvikelse", "Avvikelse", "Typ"), read("TaEmotBevakning", "Bevakning", "Behov"))
        }
        "procapita" => {
            let read = |prefix: &str, paths: [&str; 5]| -> Vec<Reported> {
                v.procapita
                    .files("outbox")
                    .iter()
                    .filter(|f| f.starts_with(prefix))
                    .map(|f| {
                        let bytes = std::fs::read(v.procapita.root.join("outbox").join(f)).expect("read");
                        let enc = carehub_core::mapping::text::encoding("iso-8859-1").expect("known");
                        let text = carehub_core::mapping::text::decode(&bytes, enc).expect("ISO-8859-1");
                        assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"ISO-8859-1\""), "{text}");
                        from_xml(&carehub_core::mapping::xml::parse(&text).expect("XML"), paths)
                    })
                    .collect()
            };
            (
                read("avvikelse-", ["Avvikelsenummer", "Beslutsnummer", "Uppdrag", "Avvikelsetyp", "Beskrivning"]),
                read("bevakning-", ["Bevakningsnummer", "Beslutsnummer", "Uppdrag", "Behov", "Beskrivning"]),
            )
        }
        _ => {
            let read = |body: &Value, id: &str, kind: &str| {
                Reported::new(
                    &text(&body[id]),
                    &text(&body["decisionId"]),
                    &text(&body["assignmentId"]),
                    &text(&body[kind]),
                    &text(&body["description"]),
                )
            };
            let deviations = json_bodies(&v.cm_http, "/lifecare/api/deviations").await;
            let needs = json_bodies(&v.cm_http, "/lifecare/api/need-changes").await;
            (
                deviations.iter().map(|b| read(b, "deviationId", "category")).collect(),
                needs.iter().map(|b| read(b, "needChangeId", "direction")).collect(),
            )
        }
    }
}

#[tokio::test]
async fn deviations_and_changes_of_need_from_every_provider_system_reach_the_orders_case_officer() {
    let v = Vendors::start().await;
    let pnrs = test_pnrs();
    let today = v.hub.clock.today().to_string();
    // Phoniro reports on a Combine order, Lifecare Mobil on a Treserva order, ParaGå on a
    // Procapita and a Lifecare order.
    let plan = [
        ("combine", "RP-1", PROVIDER_A),
        ("treserva", "RP-2", PROVIDER_C),
        ("procapita", "RP-3", PROVIDER_D),
        ("lifecare", "RP-4", PROVIDER_D),
    ];
    let mut orders = Vec::new();
    for (n, (cm, id, org)) in plan.into_iter().enumerate() {
        let pnr = pnrs[730 + n].clone();
        let order = v.send_decision(cm, id, &pnr, org).await;
        v.hub.wait_for_order_status(&order, "delivered").await;
        orders.push((order, pnr));
    }
    let [(o1, c1), (o2, c2), (o3, c3), (o4, c4)] = <[(String, String); 4]>::try_from(orders).expect("four");

    // Phoniro: a deviation naming the order, a change of need naming only the client.
    let fall = "Låg på köksgolvet vid morgonbesöket; sjuksköterska tillkallad.";
    let more = "Behöver hjälp att duscha sedan fallet.";
    hub_post_json(
        &v,
        "phoniro",
        PROVIDER_A,
        json!({
            "type": "deviation", "deviationId": "AV-L1", "provider": {"organisationNumber": PROVIDER_A},
        "client": {"personalIdentityNumber": c1}, "orderId": o1,
            "occurredDate": today, "category": "FALL", "severity": "HIGH", "description": fall
        }),
    )
    .await;
    hub_post_json(&v, "phoniro", PROVIDER_A, json!({
        "type": "needChange", "needChangeId": "BEV-L1", "provider": {"organisationNumber": PROVIDER_A},
        "client": {"personalIdentityNumber": c1}, "noticedDate": today, "direction": "INCREASED", "description": more
    }))
    .await;
    // Lifecare Mobil: a deviation naming only the client, a change of need naming the assignment.
    let dose = "Morgondosen låg kvar i dosetten vid lunchbesöket.";
    let less = "Handlar själv igen.";
    hub_post_json(
        &v,
        "lifecare-mobil",
        PROVIDER_C,
        json!({
            "event": "deviation.reported", "eventId": "evt-l2", "timestamp": "2026-12-03T09:05:00Z",
            "deviation": {"id": "LMD-L2", "client": {"ssn": c2}, "date": today, "type": "MEDICATION",
                          "severity": "MEDIUM", "description": dose}
        }),
    )
    .await;
    hub_post_json(
        &v,
        "lifecare-mobil",
        PROVIDER_C,
        json!({
            "event": "needs.changed", "eventId": "evt-l3", "timestamp": "2026-12-03T09:10:00Z",
            "observation": {"id": "LMB-L2", "organisationNumber": PROVIDER_C, "client": {"ssn": c2}, "assignmentId": o2,
                            "date": today, "needs": "DECREASED", "description": less}
        }),
    )
    .await;
    // ParaGå: a file of deviations and a file of changes of need, a row each for two clients.
    let hall = "Låg på golvet i hallen; larmet ej utlöst";
    let refused = "Ville inte duscha i dag.";
    let shower = "Behöver hjälp att duscha.";
    let cooks = "Lagar maten själv igen.";
    let deviations = format!(
        "Avvikelseid;Personnummer;Uppdragsid;Datum;Typ;Allvarlighetsgrad;Beskrivning;Rapporterad\r\n\
         AV-P3;{c3};{o3};{today};FALL;Hög;\"{hall}\";{today} 09:05\r\n\
         AV-P4;{c4};;{today};VÄGRAT;Låg;{refused};\r\n"
    );
    let needs = format!(
        "Bevakningsid;Personnummer;Uppdragsid;Datum;Behov;Beskrivning;Rapporterad\r\n\
         BEV-P3;{c3};;{today};Ökat;{shower};\r\n\
         BEV-P4;{c4};{o4};{today};Minskat;{cooks};{today} 14:30\r\n"
    );
    v.paraga.drop_file("avvikelser.csv", &cp1252(&deviations)).expect("drop a file");
    v.paraga.drop_file("bevakningar.csv", &cp1252(&needs)).expect("drop a file");

    for (order, keys) in [
        (&o1, ["deviation:phoniro:AV-L1", "need_change:phoniro:BEV-L1"]),
        (&o2, ["deviation:lifecare-mobil:LMD-L2", "need_change:lifecare-mobil:LMB-L2"]),
        (&o3, ["deviation:paraga:AV-P3", "need_change:paraga:BEV-P3"]),
        (&o4, ["deviation:paraga:AV-P4", "need_change:paraga:BEV-P4"]),
    ] {
        for key in keys {
            v.wait_delivered(order, key).await;
        }
    }

    let r = Reported::new;
    assert_eq!(
        reported_at(&v, "combine").await,
        (vec![r("phoniro:AV-L1", "RP-1", &o1, "Fall", fall)], vec![r("phoniro:BEV-L1", "RP-1", &o1, "Okat", more)]),
        "Phoniro's reports reach Combine"
    );
    assert_eq!(
        reported_at(&v, "treserva").await,
        (
            vec![r("lifecare-mobil:LMD-L2", "RP-2", &o2, "LAKEMEDELSAVVIKELSE", dose)],
            vec![r("lifecare-mobil:LMB-L2", "RP-2", &o2, "MINSKAT", less)]
        ),
        "Lifecare Mobil's reports reach Treserva"
    );
    assert_eq!(
        reported_at(&v, "procapita").await,
        (vec![r("paraga:AV-P3", "RP-3", &o3, "Fall", hall)], vec![r("paraga:BEV-P3", "RP-3", &o3, "Ökat", shower)]),
        "ParaGå's reports on a Procapita order reach Procapita"
    );
    assert_eq!(
        reported_at(&v, "lifecare").await,
        (
            vec![r("paraga:AV-P4", "RP-4", &o4, "CARE_REFUSED", refused)],
            vec![r("paraga:BEV-P4", "RP-4", &o4, "DECREASED", cooks)]
        ),
        "ParaGå's reports on a Lifecare order reach Lifecare"
    );
}

/// Posts a provider system's JSON message with the provider's token; the hub must take it.
async fn hub_post_json(v: &Vendors, system: &str, org: &str, body: Value) {
    let (status, receipt) = v.hub.post(system, body.to_string(), Some(&v.hub.provider(org))).await;
    assert_eq!((status, receipt["status"].as_str()), (StatusCode::ACCEPTED, Some("accepted")), "{receipt}");
}

#[tokio::test]
async fn an_older_version_sent_after_a_newer_one_is_stale_and_reaches_no_provider() {
    let v = Vendors::start().await;
    let pnrs = test_pnrs();
    let today = v.hub.clock.today();
    let raised_from = days_after(today, 5);
    let last_day = days_after(today, 20);

    // Combine answers in JSON, Treserva in SOAP.
    let mut late_answers = Vec::new();
    for (cm, id, pnr, org) in
        [("combine", "ST-1", &pnrs[740], PROVIDER_A), ("treserva", "ST-2", &pnrs[741], PROVIDER_C)]
    {
        let system = system_of(org);
        let order = v.send_decision(cm, id, pnr, org).await;
        v.hub.wait_for_order_status(&order, "delivered").await;

        let (status, receipt) = answer(&v, cm, id, 2, Change::Minutes { from: raised_from, minutes: 900 }).await;
        let accepted = if cm == "treserva" { StatusCode::OK } else { StatusCode::ACCEPTED };
        assert_eq!((status, receipt["status"].as_str()), (accepted, Some("accepted")), "{receipt}");
        v.wait_delivered(&order, &format!("{order}:order_change:2")).await;

        // Version 1 comes late: it is answered as stale (the answer's form is checked
        // last, after what it must not have changed) and changes nothing.
        let (status, receipt) = answer(&v, cm, id, 1, Change::Minutes { from: raised_from, minutes: 300 }).await;
        assert_eq!(receipt["status"], "stale", "{cm}: {receipt}");
        late_answers.push((cm, status, receipt));
        // Version 2 again is a duplicate.
        let (status, receipt) = answer(&v, cm, id, 2, Change::Minutes { from: raised_from, minutes: 900 }).await;
        assert_eq!((status, receipt["status"].as_str()), (StatusCode::OK, Some("duplicate")), "{cm}: {receipt}");

        // Version 3 ends help; once it has reached the provider, everything before it has
        // been delivered or never will be.
        let (_, receipt) = answer(&v, cm, id, 3, Change::Ended { on: last_day }).await;
        assert_eq!(receipt["status"], "accepted", "{receipt}");
        v.wait_delivered(&order, &format!("{order}:order_end:3")).await;

        let changes = amended_at(&v, system, &order).await;
        let versions: Vec<(&str, &[(String, String)])> =
            changes.iter().map(|c| (c.version.as_str(), c.services.as_slice())).collect();
        assert_eq!(versions, vec![("2", &[("SERVICE".to_owned(), "900".to_owned())][..])], "{cm} -> {system}");
        let ends: Vec<String> = ended_at(&v, system, &order).await.into_iter().map(|e| e.version).collect();
        assert_eq!(ends, vec!["3"]);
        let trace = v.hub.trace(&order).await;
        let mut keys: Vec<&str> = trace["deliveries"]
            .as_array()
            .expect("deliveries")
            .iter()
            .filter_map(|d| d["idempotency_key"].as_str())
            .collect();
        keys.sort_unstable();
        let expected = [format!("{order}:order"), format!("{order}:order_change:2"), format!("{order}:order_end:3")];
        assert_eq!(keys, expected.iter().map(String::as_str).collect::<Vec<_>>());
        let (_, o) = v.hub.get(&format!("/v1/orders/{order}"), Some(&v.hub.admin())).await;
        assert_eq!(o["order"]["version"], 3, "{o}");
    }

    // The late versions are logged as stale, with their code.
    let (_, page) = v.hub.get("/v1/messages?status=stale", Some(&v.hub.admin())).await;
    let stale = page["messages"].as_array().expect("messages");
    let mut systems: Vec<&str> = stale.iter().filter_map(|m| m["system"].as_str()).collect();
    systems.sort_unstable();
    assert_eq!(systems, vec!["combine", "treserva"], "{page}");
    assert!(stale.iter().all(|m| m["error_code"] == "STALE_VERSION"), "{page}");
    // Each late version was answered 200 (it was taken, and changed nothing) with the code:
    // Combine's JSON receipt and Treserva's SOAP response alike.
    for (cm, status, receipt) in late_answers {
        assert_eq!((status, receipt["code"].as_str()), (StatusCode::OK, Some("STALE_VERSION")), "{cm}: {receipt}");
    }
}

/// A report that names no provider is the provider's whose token sent it (as
/// `mappings/phoniro/need_change.in.toml` says), even on a system that serves several.
#[tokio::test]
async fn a_report_naming_no_provider_is_filed_under_the_provider_that_sent_it() {
    let v = Vendors::start().await;
    let client = test_pnrs()[750].clone();
    let order = v.send_decision("combine", "RP-9", &client, PROVIDER_A).await;
    v.hub.wait_for_order_status(&order, "delivered").await;
    let today = v.hub.clock.today().to_string();
    let why = "Lagar numera sin frukost själv.";
    hub_post_json(
        &v,
        "phoniro",
        PROVIDER_A,
        json!({
            "type": "needChange", "needChangeId": "BEV-L9", "client": {"personalIdentityNumber": client},
            "noticedDate": today, "direction": "DECREASED", "description": why
        }),
    )
    .await;
    v.wait_delivered(&order, "need_change:phoniro:BEV-L9").await;
    assert_eq!(
        reported_at(&v, "combine").await.1,
        vec![Reported::new("phoniro:BEV-L9", "RP-9", &order, "Minskat", why)]
    );
}

/// Sends version `version` of decision `id` from `cm` over HTTP and returns the answer.
async fn answer(v: &Vendors, cm: &str, id: &str, version: u32, change: Change<'_>) -> (StatusCode, Value) {
    let body = decision_change(cm, id, version, &change);
    receipt_of(cm, v.post_as(cm, body, "RegistreraBeslutsandring").await.expect("over HTTP"))
}

/// A receipt as JSON: Combine's as it is, Treserva's SOAP response's fields by their JSON
/// names (`status`, `order_id`, `code`).
fn receipt_of(cm: &str, (status, body): (StatusCode, String)) -> (StatusCode, Value) {
    if cm != "treserva" {
        return (status, serde_json::from_str(&body).unwrap_or(Value::Null));
    }
    let payload = soap_payload(&body);
    let (code, order_id) = (xml_text(&payload, "Code"), xml_text(&payload, "OrderId"));
    (status, json!({"status": xml_text(&payload, "Status"), "order_id": order_id, "code": code}))
}
