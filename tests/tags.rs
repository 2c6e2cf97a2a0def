//! The NFC tag registry: which tag hangs in which home, from when to when; a moved tag
//! keeps its history; `carehub tags import` for the initial load. Only answers are checked
//! here, so the hub's router is called without a socket ([`TestApp`]).

use axum::http::Method;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::*;

async fn post_tag(hub: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    hub.post_json("/v1/tags", &body, Some(token)).await
}

#[tokio::test]
async fn a_moved_tag_keeps_its_history_and_bad_registrations_are_coded() {
    let hub = TestApp::start();
    let cm = hub.system_token("combine");
    let pnrs = test_pnrs();
    let (a, b) = (&pnrs[700], &pnrs[701]);

    let (s, r) =
        post_tag(&hub, &cm, json!({"tag_uid": "04:A2:1B:C3:5D:80:81", "client": a, "installed_on": "2026-11-01"}))
            .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    assert!(r["message_id"].as_i64().is_some());
    // The tag moves to another home on the 15th.
    let (s, _) =
        post_tag(&hub, &cm, json!({"tag_uid": "04a21bc35d8081", "client": b, "installed_on": "2026-11-15"})).await;
    assert_eq!(s, StatusCode::CREATED);

    let (s, list) = hub.get("/v1/tags?tag=04A21BC35D8081", Some(&cm)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        list["tags"],
        json!([
            {"tag_uid": "04A21BC35D8081", "client": a, "installed_on": "2026-11-01", "removed_on": "2026-11-14"},
            {"tag_uid": "04A21BC35D8081", "client": b, "installed_on": "2026-11-15"}
        ])
    );
    let (_, mine) = hub.get(&format!("/v1/tags?client={}-{}", &a[..8], &a[8..]), Some(&cm)).await;
    assert_eq!(mine["tags"].as_array().map(Vec::len), Some(1));

    // History is not rewritten, and bad input is coded.
    let cases = [
        (
            json!({"tag_uid": "04A21BC35D8081", "client": a, "installed_on": "2026-11-10"}),
            StatusCode::CONFLICT,
            "TAG_CONFLICT",
        ),
        (
            json!({"tag_uid": "04A21B", "client": a, "installed_on": "2026-11-20"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_TAG_UID",
        ),
        (
            json!({"tag_uid": "04A21BC3", "client": "193601016988", "installed_on": "2026-11-20"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_PERSONAL_IDENTITY_NUMBER",
        ),
        (
            json!({"tag_uid": "04A21BC3", "client": a, "installed_on": "2026-11-20", "removed_on": "2026-11-01"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_DATE",
        ),
        (
            json!({"tag_uid": "04A21BC3", "installed_on": "2026-11-20"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "MISSING_FIELD",
        ),
    ];
    for (body, status, code) in cases {
        let (s, r) = post_tag(&hub, &cm, body).await;
        assert_eq!((s, r["code"].as_str()), (status, Some(code)), "{r}");
        assert!(r["message_id"].as_i64().is_some(), "{code}: the refusal is logged");
    }
    let (status, _, _) = hub.send(Method::POST, "/v1/tags", Some(&cm), &[], "{\"tag_uid\":").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let auditor = hub.token(carehub_server::auth::Role::Auditor, None);
    let (s, _) =
        post_tag(&hub, &auditor, json!({"tag_uid": "04A21BC3", "client": a, "installed_on": "2026-11-20"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, rejected) = hub.get("/v1/messages?type=tag_registration&status=rejected", Some(&hub.admin())).await;
    // Five coded refusals and the malformed body: six, all logged.
    assert_eq!(rejected["messages"].as_array().map(Vec::len), Some(6));
}

#[tokio::test]
async fn tags_import_loads_a_file_and_reports_bad_rows_by_line() {
    let hub = TestApp::start();
    let pnrs = test_pnrs();
    let file = hub.dir.path().join("taggar.csv");
    let text = format!(
        "Taggid;Personnummer;Monterad;Nedtagen\r\n04112233;{};2026-01-10;\r\n04112255;{};2026-01-10;2026-06-30\r\n04112255;{};2026-07-01;\r\nNOT-A-TAG;{};2026-01-10;\r\n",
        pnrs[710], pnrs[711], pnrs[712], pnrs[713]
    );
    std::fs::write(&file, text).expect("write");
    let out =
        carehub(&["tags", "import", file.to_str().expect("path"), "--config", hub.config_path.to_str().expect("path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("line 5: INVALID_TAG_UID"), "{stdout}");
    assert!(stdout.contains("3 tag registrations taken, 1 refused"), "{stdout}");
    let (_, list) = hub.get("/v1/tags?tag=04112255", Some(&hub.admin())).await;
    let tags = list["tags"].as_array().expect("tags");
    assert_eq!(tags.len(), 2);
    assert_eq!(tags[0]["removed_on"], "2026-06-30");
    assert_eq!(tags[1]["client"], pnrs[712].as_str());
}

#[tokio::test]
async fn a_provider_registers_tags_only_for_its_own_clients_and_cannot_rehome_anothers() {
    let hub = TestApp::start();
    let cm = hub.system_token("combine");
    let pnrs = test_pnrs();
    let (a, b) = (&pnrs[720], &pnrs[721]);
    for (id, client, provider) in [("DEC-TAG-A", a, PROVIDER_A), ("DEC-TAG-B", b, PROVIDER_B)] {
        let (s, r) = hub.post("combine", november_decision(id, client, provider), Some(&cm)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    }
    // The tag in B's client's home.
    let (s, r) = post_tag(&hub, &cm, json!({"tag_uid": "04B70001", "client": b, "installed_on": "2026-11-01"})).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let provider_a = hub.provider(PROVIDER_A);

    // A moves it into its own client's home: refused, and the refusal is logged.
    let (s, r) =
        post_tag(&hub, &provider_a, json!({"tag_uid": "04B70001", "client": a, "installed_on": "2026-11-10"})).await;
    assert_eq!((s, r["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "{r}");
    assert!(r["message"].as_str().is_some_and(|m| m.contains("another provider's client")), "{r}");
    assert!(r["message_id"].as_i64().is_some(), "the refusal is logged: {r}");
    // Nor may A register a tag for B's client.
    let (s, r) =
        post_tag(&hub, &provider_a, json!({"tag_uid": "04B70002", "client": b, "installed_on": "2026-11-10"})).await;
    assert_eq!((s, r["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")), "{r}");

    // The tag still hangs in B's client's home, and B's genuine visit there is accepted.
    let (_, list) = hub.get("/v1/tags?tag=04B70001", Some(&cm)).await;
    assert_eq!(list["tags"], json!([{"tag_uid": "04B70001", "client": b, "installed_on": "2026-11-01"}]));
    let visit =
        phoniro_visit("V-TAG-B1", PROVIDER_B, b, "s-b", "04B70001", "2026-11-12T09:00", Some("2026-11-12T09:30"), None);
    let (s, r) = hub.post("phoniro", visit.to_string(), Some(&hub.provider(PROVIDER_B))).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["visits"][0]["outcome"], "accepted", "{r}");
    assert!(!codes_of(&r["visits"][0]).contains(&"VIS002".to_owned()), "{r}");

    // A registers a tag for its own client; case management may still move any tag.
    let (s, r) =
        post_tag(&hub, &provider_a, json!({"tag_uid": "04A70009", "client": a, "installed_on": "2026-11-01"})).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let (s, r) = post_tag(&hub, &cm, json!({"tag_uid": "04B70001", "client": a, "installed_on": "2026-11-20"})).await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let (_, refused) = hub.get("/v1/messages?type=tag_registration&status=rejected", Some(&hub.admin())).await;
    let refused = refused["messages"].as_array().cloned().unwrap_or_default();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused.iter().all(|m| m["provider"] == PROVIDER_A && m["error_code"] == "FORBIDDEN"), "{refused:?}");
}

/// A visit result's codes.
fn codes_of(result: &Value) -> Vec<String> {
    result["codes"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}
