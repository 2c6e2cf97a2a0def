//! A decision's life (SPEC §3, §4.4): each new message round-trips through its canonical
//! JSON, and each thing its validation refuses has its code.

use carehub_model::{
    DecisionChange, DecisionChangeKind, ErrorCode, Message, MessageType, OrderEndReason, VersionStanding,
};
use serde_json::{json, Value};

/// From Skatteverket's test numbers.
const CLIENT: &str = "193601016987";
const OTHER_CLIENT: &str = "195001182046";
const PROVIDER: &str = "5599000014";
const OTHER_PROVIDER: &str = "5560360793";

fn decision_change(change: Value) -> Value {
    json!({
        "decision_id": "combine:DEC-2026-0001",
        "version": 2,
        "effective_from": "2026-11-10",
        "change": change,
        "decided_at": "2026-11-08T09:30:00Z"
    })
}

fn services_change() -> Value {
    decision_change(json!({
        "kind": "services",
        "services": [
            {"code": "SERV", "category": "service", "minutes_per_month": 480},
            {"code": "PO", "category": "personal_care", "minutes_per_month": 2400}
        ]
    }))
}

fn order_change(change: Value) -> Value {
    json!({
        "order_id": "O-00112233aabbccdd",
        "decision_id": "combine:DEC-2026-0001",
        "version": 2,
        "provider": PROVIDER,
        "client": CLIENT,
        "effective_from": "2026-11-10",
        "change": change,
        "confirm_by": "2026-11-12"
    })
}

fn order_end() -> Value {
    json!({
        "order_id": "O-00112233aabbccdd",
        "decision_id": "combine:DEC-2026-0001",
        "version": 3,
        "provider": PROVIDER,
        "client": CLIENT,
        "end_date": "2026-11-16",
        "reason": "provider_switch"
    })
}

fn deviation() -> Value {
    json!({
        "id": "phoniro:AV-2211",
        "provider": PROVIDER,
        "client": OTHER_CLIENT,
        "order_id": "O-00112233aabbccdd",
        "occurred_on": "2026-11-14",
        "kind": "fall",
        "severity": "high",
        "description": "Found on the kitchen floor at the morning visit; nurse called.",
        "reported_at": "2026-11-14T08:05:00Z"
    })
}

fn need_change() -> Value {
    json!({
        "id": "paraga:BEV-104",
        "client": OTHER_CLIENT,
        "noticed_on": "2026-11-20",
        "direction": "more",
        "description": "Needs help to shower since the fall."
    })
}

fn build(kind: MessageType, v: Value) -> Result<Message, carehub_model::ValidationError> {
    Message::from_canonical(kind, v)
}

fn code(kind: MessageType, v: Value) -> ErrorCode {
    build(kind, v).expect_err("refused").code
}

/// The message builds, has its type, and serializes back to the same JSON.
fn round_trips(kind: MessageType, v: Value) {
    let m = build(kind, v.clone()).unwrap_or_else(|e| panic!("{kind}: {e}"));
    assert_eq!(m.message_type(), kind);
    assert_eq!(serde_json::to_value(&m).expect("serializes"), v, "{kind}");
    let text = serde_json::to_string(&m).expect("serializes");
    assert_eq!(Message::from_canonical_json(kind, &text).expect("reads back"), m, "{kind}");
}

#[test]
fn every_kind_of_decision_change_round_trips() {
    round_trips(MessageType::DecisionChange, services_change());
    round_trips(MessageType::DecisionChange, decision_change(json!({"kind": "end_date", "valid_to": "2027-04-30"})));
    round_trips(
        MessageType::DecisionChange,
        decision_change(json!({"kind": "ended", "on": "2026-11-30", "reason": "moved_to_residential_care"})),
    );
    round_trips(
        MessageType::DecisionChange,
        decision_change(json!({"kind": "paused", "from": "2026-11-10", "to": "2026-11-12", "reason": "hospital_stay"})),
    );
    round_trips(
        MessageType::DecisionChange,
        decision_change(json!({"kind": "new_provider", "provider": OTHER_PROVIDER, "from": "2026-11-17"})),
    );
}

#[test]
fn order_changes_ends_deviations_and_need_changes_round_trip() {
    round_trips(
        MessageType::OrderChange,
        order_change(json!({
            "kind": "services",
            "services": [{"code": "PO", "category": "personal_care", "minutes_per_month": 2400}]
        })),
    );
    round_trips(MessageType::OrderChange, order_change(json!({"kind": "end_date", "end_date": "2026-12-31"})));
    round_trips(
        MessageType::OrderChange,
        order_change(json!({"kind": "paused", "from": "2026-11-10", "to": "2026-11-10", "reason": "travel"})),
    );
    round_trips(MessageType::OrderEnd, order_end());
    round_trips(MessageType::Deviation, deviation());
    round_trips(MessageType::NeedChange, need_change());
}

#[test]
fn the_message_types_have_stable_wire_names() {
    for (kind, name) in [
        (MessageType::DecisionChange, "decision_change"),
        (MessageType::OrderChange, "order_change"),
        (MessageType::OrderEnd, "order_end"),
        (MessageType::Deviation, "deviation"),
        (MessageType::NeedChange, "need_change"),
    ] {
        assert_eq!(kind.as_str(), name);
        assert_eq!(MessageType::parse(name), Some(kind));
    }
}

#[test]
fn a_version_of_0_is_refused() {
    let mut v = services_change();
    v["version"] = json!(0);
    assert_eq!(code(MessageType::DecisionChange, v), ErrorCode::InvalidValue);
    let mut v = order_end();
    v["version"] = json!(0);
    assert_eq!(code(MessageType::OrderEnd, v), ErrorCode::InvalidValue);
    let mut v = order_change(json!({"kind": "end_date", "end_date": "2026-12-31"}));
    v["version"] = json!(0);
    assert_eq!(code(MessageType::OrderChange, v), ErrorCode::InvalidValue);
}

#[test]
fn a_negative_version_is_refused() {
    let mut v = services_change();
    v["version"] = json!(-1);
    assert_eq!(code(MessageType::DecisionChange, v), ErrorCode::InvalidValue);
}

#[test]
fn a_pause_that_ends_before_it_starts_is_refused() {
    let v = decision_change(json!({"kind": "paused", "from": "2026-11-12", "to": "2026-11-11", "reason": "travel"}));
    assert_eq!(code(MessageType::DecisionChange, v), ErrorCode::InvalidDate);
    let v = order_change(json!({"kind": "paused", "from": "2026-11-12", "to": "2026-11-11", "reason": "travel"}));
    assert_eq!(code(MessageType::OrderChange, v), ErrorCode::InvalidDate);
}

#[test]
fn a_pause_without_a_reason_is_refused() {
    let v = decision_change(json!({"kind": "paused", "from": "2026-11-12", "to": "2026-11-20"}));
    let e = build(MessageType::DecisionChange, v).expect_err("refused");
    assert_eq!(e.code, ErrorCode::MissingField);
    assert!(e.reason.contains("reason"), "{}", e.reason);
}

#[test]
fn an_end_without_a_reason_is_refused() {
    let v = decision_change(json!({"kind": "ended", "on": "2026-11-30"}));
    let e = build(MessageType::DecisionChange, v).expect_err("refused");
    assert_eq!(e.code, ErrorCode::MissingField);
    assert!(e.reason.contains("reason"), "{}", e.reason);
    let mut v = order_end();
    v.as_object_mut().expect("object").remove("reason");
    assert_eq!(code(MessageType::OrderEnd, v), ErrorCode::MissingField);
}

#[test]
fn an_end_reason_that_is_not_ours_is_refused() {
    let v = decision_change(json!({"kind": "ended", "on": "2026-11-30", "reason": "bored"}));
    assert_eq!(code(MessageType::DecisionChange, v), ErrorCode::InvalidValue);
    // A provider switch is a new provider, not an end of the decision.
    let v = decision_change(json!({"kind": "ended", "on": "2026-11-30", "reason": "provider_switch"}));
    assert_eq!(code(MessageType::DecisionChange, v), ErrorCode::InvalidValue);
}

#[test]
fn a_provider_switch_without_an_organisation_number_is_refused() {
    let v = decision_change(json!({"kind": "new_provider", "from": "2026-11-17"}));
    let e = build(MessageType::DecisionChange, v).expect_err("refused");
    assert_eq!(e.code, ErrorCode::MissingField);
    assert!(e.reason.contains("provider"), "{}", e.reason);
    let v = decision_change(json!({"kind": "new_provider", "provider": "5599000015", "from": "2026-11-17"}));
    assert_eq!(code(MessageType::DecisionChange, v), ErrorCode::InvalidOrgNumber);
}

#[test]
fn a_missing_effective_date_is_refused() {
    let mut v = services_change();
    v.as_object_mut().expect("object").remove("effective_from");
    let e = build(MessageType::DecisionChange, v).expect_err("refused");
    assert_eq!(e.code, ErrorCode::MissingField);
    assert!(e.reason.contains("effective_from"), "{}", e.reason);
    let mut v = order_change(json!({"kind": "end_date", "end_date": "2026-12-31"}));
    v.as_object_mut().expect("object").remove("effective_from");
    assert_eq!(code(MessageType::OrderChange, v), ErrorCode::MissingField);
}

#[test]
fn an_effective_date_that_is_not_a_date_is_refused() {
    let mut v = services_change();
    v["effective_from"] = json!("2026-02-30");
    assert_eq!(code(MessageType::DecisionChange, v), ErrorCode::InvalidValue);
}

#[test]
fn a_date_of_the_change_before_the_version_applies_is_refused() {
    for change in [
        json!({"kind": "end_date", "valid_to": "2026-11-09"}),
        json!({"kind": "ended", "on": "2026-11-09", "reason": "died"}),
        json!({"kind": "paused", "from": "2026-11-09", "to": "2026-11-12", "reason": "short_term_care"}),
        json!({"kind": "new_provider", "provider": OTHER_PROVIDER, "from": "2026-11-09"}),
    ] {
        assert_eq!(
            code(MessageType::DecisionChange, decision_change(change.clone())),
            ErrorCode::InvalidDate,
            "{change}"
        );
    }
}

#[test]
fn changed_services_are_granted_as_a_decision_grants_them() {
    let v = decision_change(json!({"kind": "services", "services": []}));
    assert_eq!(code(MessageType::DecisionChange, v), ErrorCode::MissingField);
    let v = decision_change(json!({
        "kind": "services",
        "services": [{"code": "PO", "category": "personal_care", "minutes_per_month": 0}]
    }));
    assert_eq!(code(MessageType::DecisionChange, v), ErrorCode::InvalidValue);
}

#[test]
fn an_unknown_kind_of_change_or_field_is_refused() {
    let v = decision_change(json!({"kind": "moved", "to": "2026-11-20"}));
    assert_eq!(code(MessageType::DecisionChange, v), ErrorCode::InvalidValue);
    let v = decision_change(json!({"kind": "end_date", "valid_to": "2027-04-30", "note": "x"}));
    assert_eq!(code(MessageType::DecisionChange, v), ErrorCode::InvalidValue);
    let mut v = services_change();
    v["client"] = json!(CLIENT);
    assert_eq!(code(MessageType::DecisionChange, v), ErrorCode::InvalidValue);
}

#[test]
fn order_messages_need_an_order_and_a_valid_client() {
    let mut v = order_end();
    v["order_id"] = json!(" ");
    assert_eq!(code(MessageType::OrderEnd, v), ErrorCode::MissingField);
    let mut v = order_end();
    v["client"] = json!("193601016988");
    assert_eq!(code(MessageType::OrderEnd, v), ErrorCode::InvalidPersonalIdentityNumber);
    let mut v = order_change(json!({"kind": "end_date", "end_date": "2026-12-31"}));
    v["order_id"] = json!("");
    assert_eq!(code(MessageType::OrderChange, v), ErrorCode::MissingField);
}

#[test]
fn a_deviation_needs_a_description_a_kind_and_a_severity() {
    let mut v = deviation();
    v["description"] = json!("  ");
    assert_eq!(code(MessageType::Deviation, v), ErrorCode::MissingField);
    let mut v = deviation();
    v.as_object_mut().expect("object").remove("severity");
    assert_eq!(code(MessageType::Deviation, v), ErrorCode::MissingField);
    let mut v = deviation();
    v["kind"] = json!("sneezed");
    assert_eq!(code(MessageType::Deviation, v), ErrorCode::InvalidValue);
    let mut v = deviation();
    v.as_object_mut().expect("object").remove("occurred_on");
    assert_eq!(code(MessageType::Deviation, v), ErrorCode::MissingField);
    let mut v = deviation();
    v["client"] = json!("193601016988");
    assert_eq!(code(MessageType::Deviation, v), ErrorCode::InvalidPersonalIdentityNumber);
}

#[test]
fn a_need_change_needs_a_description_and_a_direction() {
    let mut v = need_change();
    v["description"] = json!("");
    assert_eq!(code(MessageType::NeedChange, v), ErrorCode::MissingField);
    let mut v = need_change();
    v.as_object_mut().expect("object").remove("direction");
    assert_eq!(code(MessageType::NeedChange, v), ErrorCode::MissingField);
    let mut v = need_change();
    v["order_id"] = json!("");
    assert_eq!(code(MessageType::NeedChange, v), ErrorCode::MissingField);
}

#[test]
fn identity_numbers_do_not_leak_through_debug() {
    for (kind, v) in [
        (MessageType::OrderEnd, order_end()),
        (MessageType::Deviation, deviation()),
        (MessageType::NeedChange, need_change()),
    ] {
        let shown = format!("{:?}", build(kind, v).expect("valid"));
        assert!(!shown.contains(CLIENT) && !shown.contains(OTHER_CLIENT), "{kind}: {shown}");
        assert!(!shown.contains(&CLIENT[2..]) && !shown.contains(&OTHER_CLIENT[2..]), "{kind}: {shown}");
    }
}

#[test]
fn an_older_version_is_stale_and_the_same_one_a_duplicate() {
    let Message::DecisionChange(c) = build(MessageType::DecisionChange, services_change()).expect("valid") else {
        unreachable!()
    };
    assert_eq!(c.version, 2);
    assert_eq!(c.standing(0), VersionStanding::Newer);
    assert_eq!(c.standing(1), VersionStanding::Newer);
    assert_eq!(c.standing(2), VersionStanding::Duplicate);
    assert_eq!(c.standing(3), VersionStanding::Stale);
}

#[test]
fn a_decisions_end_reason_is_an_orders_end_reason() {
    let v = decision_change(json!({"kind": "ended", "on": "2026-11-30", "reason": "died"}));
    let c: DecisionChange = serde_json::from_value(v).expect("valid");
    let DecisionChangeKind::Ended { reason, .. } = c.change else { unreachable!() };
    assert_eq!(OrderEndReason::from(reason), OrderEndReason::Died);
    assert_eq!(c.change.as_str(), "ended");
}
