//! Bad input: each gets its coded error, is logged as rejected where it got far enough to
//! be logged, and nothing panics. Only answers are checked here, so the hub's router is
//! called without a socket ([`TestApp`]).

use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn bad_input_gets_coded_errors_and_is_logged_as_rejected() {
    let hub = TestApp::start();
    let cm = hub.system_token("combine");
    let pnrs = test_pnrs();

    let bad_pnr = SPEC_DECISION.replace("19360101-6987", "19360101-6988");
    let dtd = format!(
        "<?xml version=\"1.0\"?>\n<!DOCTYPE Beslut [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n{}",
        SPEC_DECISION.replace("hl-117", "&xxe;")
    );
    let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]><lolz>&lol2;</lolz>";
    let unknown_provider = decision_xml("DEC-NOPE", &pnrs[5], "5599000022", None);
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "malformed XML",
            "<Beslut xmlns=\"urn:carehub:vendor:combine:1\"><BeslutsId>1</Beslut>".into(),
            StatusCode::BAD_REQUEST,
            "MALFORMED_PAYLOAD",
        ),
        ("neither XML nor JSON", "hello".into(), StatusCode::BAD_REQUEST, "MALFORMED_PAYLOAD"),
        (
            "unknown message type",
            "<Faktura xmlns=\"urn:carehub:vendor:combine:1\"/>".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "UNKNOWN_MESSAGE_TYPE",
        ),
        (
            "invalid personal identity number",
            bad_pnr,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_PERSONAL_IDENTITY_NUMBER",
        ),
        ("a DTD with an external entity", dtd, StatusCode::BAD_REQUEST, "DTD_FORBIDDEN"),
        ("entity expansion", laughs.into(), StatusCode::BAD_REQUEST, "DTD_FORBIDDEN"),
        ("a provider with no route", unknown_provider, StatusCode::UNPROCESSABLE_ENTITY, "UNKNOWN_PROVIDER"),
        (
            "an order confirmation from case management",
            phoniro_ack("O-1", "ACCEPTED"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "UNKNOWN_MESSAGE_TYPE",
        ),
    ];
    let mut logged = Vec::new();
    for (what, body, status, code) in &cases {
        let (got, answer) = hub.post("combine", body.clone(), Some(&cm)).await;
        assert_eq!(got, *status, "{what}: {answer}");
        assert_eq!(answer["code"], *code, "{what}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}");
        let id = answer["message_id"].as_i64().unwrap_or_else(|| panic!("{what}: the refusal names its log entry"));
        logged.push((id, *code));
    }

    // Raw bytes that are not UTF-8 at all.
    let (got, answer) = hub.post("combine", vec![0x3c, 0xff, 0xfe, 0x3e], Some(&cm)).await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    assert_eq!(answer["code"], "MALFORMED_PAYLOAD");

    // A body over the limit (64 KiB in tests).
    let big = format!("<Beslut xmlns=\"urn:carehub:vendor:combine:1\">{}</Beslut>", "x".repeat(100 * 1024));
    let (got, answer) = hub.post("combine", big, Some(&cm)).await;
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["code"], "PAYLOAD_TOO_LARGE");
    logged.push((answer["message_id"].as_i64().expect("logged"), "PAYLOAD_TOO_LARGE"));

    // Missing and forged tokens: refused before anything is read, with their code.
    let (got, answer) = hub.post("combine", SPEC_DECISION, None).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["code"], "UNAUTHENTICATED");
    let forged = carehub_server::auth::Auth::new("some-other-secret-some-other-secret", hub.clock.clone())
        .issue("mallory", carehub_server::auth::Role::Admin, None, None, std::time::Duration::from_secs(60))
        .expect("token");
    let (got, answer) = hub.post("combine", SPEC_DECISION, Some(&forged)).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["code"], "UNAUTHENTICATED");
    let (got, answer) = hub.post("combine", SPEC_DECISION, Some("not.a.jwt")).await;
    assert_eq!(got, StatusCode::UNAUTHORIZED);
    assert_eq!(answer["code"], "UNAUTHENTICATED");
    // An unknown system.
    let (got, answer) = hub.post("procapita", SPEC_DECISION, Some(&cm)).await;
    assert_eq!(got, StatusCode::NOT_FOUND);
    assert_eq!(answer["code"], "UNKNOWN_SYSTEM");
    // A role that may not send as this system.
    let (got, answer) = hub.post("combine", SPEC_DECISION, Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!(got, StatusCode::FORBIDDEN);
    assert_eq!(answer["code"], "FORBIDDEN");

    // Every refusal that was logged is in the log as rejected, with its code and raw bytes.
    let admin = hub.admin();
    for (id, code) in &logged {
        let (status, entry) = hub.get(&format!("/v1/messages/{id}"), Some(&admin)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(entry["status"], "rejected", "{entry}");
        assert_eq!(entry["error_code"], *code, "{entry}");
        assert_eq!(entry["direction"], "in");
    }
    let (_, page) = hub.get("/v1/messages?status=rejected&limit=1000", Some(&admin)).await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(logged.len() + 1), "{page}");
    // Nothing was accepted, nothing queued, and the hub still answers (its store too: the
    // chain below is read from it).
    let (_, orders) = hub.get("/v1/orders", Some(&admin)).await;
    assert_eq!(orders["orders"].as_array().map(Vec::len), Some(0));
    let (_, outbox) = hub.get("/v1/deliveries", Some(&admin)).await;
    assert_eq!(outbox["deliveries"].as_array().map(Vec::len), Some(0), "{outbox}");
    let (status, _) = hub.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    // The chain covers the rejections too.
    let (_, chain) = hub.get("/v1/audit/verify", Some(&admin)).await;
    assert_eq!(chain["ok"], true, "{chain}");
}

#[tokio::test]
async fn acks_for_unknown_or_foreign_orders_are_refused() {
    let hub = TestApp::start();
    let (got, answer) =
        hub.post("phoniro", phoniro_ack("O-0000000000000000", "ACCEPTED"), Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!(got, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["code"], "UNKNOWN_ORDER");

    let (_, receipt) = hub.post("combine", SPEC_DECISION, Some(&hub.system_token("combine"))).await;
    let order = receipt["order_id"].as_str().expect("an order id").to_owned();
    // Provider B may not confirm provider A's order.
    let (got, answer) = hub.post("phoniro", phoniro_ack(&order, "ACCEPTED"), Some(&hub.provider(PROVIDER_B))).await;
    assert_eq!(got, StatusCode::FORBIDDEN, "{answer}");
    assert_eq!(answer["code"], "FORBIDDEN");
    assert!(answer["message_id"].as_i64().is_some(), "the attempt is logged");
    let (got, answer) = hub
        .post("phoniro", "{\"type\":\"orderConfirmation\",\"orderId\":\"x\"}", Some(&hub.provider(PROVIDER_A)))
        .await;
    assert_eq!(got, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["code"], "MISSING_FIELD");
}

/// A vendor's profile names the encodings it accepts (Combine: UTF-8): a declaration that
/// names another, names one nobody knows, or lies about its bytes is refused with its code
/// and logged as rejected; the same text declared truthfully is taken as it was written.
#[tokio::test]
async fn an_encoding_outside_the_profile_or_a_lying_declaration_is_refused() {
    let hub = TestApp::start();
    let (cm, admin) = (hub.system_token("combine"), hub.admin());
    let with = |decl: &str, id: &str| {
        format!("<?xml version=\"1.0\" encoding=\"{decl}\"?>\n{}", SPEC_DECISION)
            .replace("hl-117", "hål-ö")
            .replace("DEC-2026-0001", id)
    };
    // UTF-8 bytes under an ISO-8859-1 declaration: read as declared they would be `hÃ¥l-Ã¶`.
    let lying = with("ISO-8859-1", "DEC-ENC-1").into_bytes();
    let unknown = with("X-EVIL-42", "DEC-ENC-2").into_bytes();
    // Honest Windows-1252 bytes, but Combine's profile is UTF-8.
    let cp1252 = carehub_core::mapping::text::encode(
        &with("windows-1252", "DEC-ENC-3"),
        carehub_core::mapping::text::encoding("windows-1252").expect("known"),
    )
    .expect("encodable");
    for (what, body, says) in [
        // (Combine takes UTF-8 only; where a profile takes ISO-8859-1, the lie itself is
        // named: `mapping::text` tests.)
        ("a lying declaration", lying, "accepts UTF-8"),
        ("an unknown encoding", unknown, "X-EVIL-42"),
        ("an encoding outside the profile", cp1252, "accepts UTF-8"),
    ] {
        let (got, answer) = hub.post("combine", body, Some(&cm)).await;
        assert_eq!(got, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{what}: {answer}");
        assert_eq!(answer["code"], "UNSUPPORTED_ENCODING", "{what}: {answer}");
        assert!(answer["message"].as_str().unwrap_or_default().contains(says), "{what}: {answer}");
        let id = answer["message_id"].as_i64().unwrap_or_else(|| panic!("{what}: logged"));
        let (_, entry) = hub.get(&format!("/v1/messages/{id}"), Some(&admin)).await;
        assert_eq!(
            (entry["status"].as_str(), entry["error_code"].as_str()),
            (Some("rejected"), Some("UNSUPPORTED_ENCODING"))
        );
    }
    // The same text, declared as what it is, is taken, and the case officer is `hål-ö`.
    let (got, answer) = hub.post("combine", with("UTF-8", "DEC-ENC-4"), Some(&cm)).await;
    assert_eq!(got, StatusCode::ACCEPTED, "{answer}");
    let id = answer["message_id"].as_i64().expect("logged");
    let (_, entry) = hub.get(&format!("/v1/messages/{id}"), Some(&admin)).await;
    assert!(entry.to_string().contains("hål-ö"), "{entry}");
    assert!(!entry.to_string().contains("hÃ¥l"), "{entry}");
}
