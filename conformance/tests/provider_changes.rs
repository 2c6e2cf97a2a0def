//! The mock hub sends a provider-side vendor every kind of order change the hub has (new
//! services, a new end date, a pause), made by the hub from a decision change its
//! case-management side injects, to a Phoniro played by an axum server on 127.0.0.1.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use carehub_conformance::exchange::{Counterpart, Direction, SendCommand};
use carehub_conformance::mock::{MockConfig, MockHub};
use serde_json::{json, Value};

type Taken = Arc<Mutex<Vec<Value>>>;

async fn take(State(t): State<Taken>, Json(body): Json<Value>) -> StatusCode {
    t.lock().expect("taken").push(body);
    StatusCode::CREATED
}

fn command(message: &str, fields: Value) -> SendCommand {
    SendCommand { message: message.into(), fields: fields.as_object().cloned().unwrap_or_default(), twice: false }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_change_of_end_date_and_a_pause_reach_the_provider_as_changes() {
    let taken = Taken::default();
    let app = Router::new()
        .route("/api/v1/orders", post(|| async { StatusCode::CREATED }))
        .route("/api/v1/order-changes", post(take))
        .with_state(taken.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let vendor = format!("http://{}/api/v1", listener.local_addr().expect("address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = MockConfig::parse(&format!(
        "at = \"2026-11-02T08:00:00+01:00\"\n[system]\nbase_url = \"{vendor}\"\napi_key = \"k\"\n"
    ))
    .expect("the mock's config");
    let hub = MockHub::on_loopback("phoniro", config).await.expect("the mock starts");

    hub.send(&command("order", json!({}))).await.expect("the order");
    let end = hub
        .send(&command("order_change", json!({"change": "end_date", "valid_to": "2027-04-30"})))
        .await
        .expect("the end date");
    let pause = hub
        .send(&command("order_change", json!({"change": "pause", "from": "2026-11-05", "to": "2026-11-12"})))
        .await
        .expect("the pause");
    let journal = hub.exchanges_since(0).await.expect("the journal");
    let body = |id: i64| -> Value {
        let x = journal.iter().find(|x| x.id == id).expect("journaled");
        assert_eq!(
            (x.direction, x.message_type.as_deref(), x.status),
            (Direction::Outbound, Some("order_change"), Some(201))
        );
        serde_json::from_slice(&x.body).expect("JSON")
    };
    let (end, pause) = (body(end[0]), body(pause[0]));
    assert_eq!(end["changeType"], "END_DATE", "{end}");
    assert_eq!(pause["changeType"], "PAUSE", "{pause}");
    assert_eq!(taken.lock().expect("taken").len(), 2, "the provider took both");

    let wrong = hub.send(&command("order_change", json!({"change": "merge"}))).await.expect_err("refused");
    assert!(wrong.to_string().contains("services, end_date, pause"), "{wrong}");
    hub.stop().await;
}
