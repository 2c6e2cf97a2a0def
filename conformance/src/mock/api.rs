//! The mock's own API under `/mock/`, beside the hub's on the same listener: the clock,
//! sending, state per business key, faults, and the journal as JSON and as a page.
//!
//! Errors are `{code, message}` like the hub's, with the mock's `MOCK_*` codes. Without a
//! `mock_token` the routes are open, which the mock allows only on a loopback address;
//! with one, each request must carry it as a bearer token.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::journal::ReportEntry;
use super::{MockError, Shared};
use crate::exchange::{Exchange, Fault, SendCommand};

type Answer = Result<Response, Refusal>;

/// A coded refusal.
pub struct Refusal(StatusCode, &'static str, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"code": self.1, "message": self.2}))).into_response()
    }
}

impl From<MockError> for Refusal {
    fn from(e: MockError) -> Self {
        let status = match &e {
            MockError::Send(_) | MockError::Unsupported { .. } | MockError::UnknownKind(_) => StatusCode::BAD_REQUEST,
            MockError::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            MockError::NoDelivery { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Refusal(status, e.code(), e.to_string())
    }
}

fn bad_json(e: JsonRejection) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, "MOCK_BAD_REQUEST", e.body_text())
}

/// The routes, with the mock's token check.
pub(crate) fn routes(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/mock", get(index))
        .route("/mock/", get(index))
        .route("/mock/clock", get(get_clock).put(put_clock))
        .route("/mock/clock/advance", post(advance_clock))
        .route("/mock/send", post(send))
        .route("/mock/state/{kind}/{key}", get(get_state))
        .route("/mock/state/order/{id}", get(get_order).put(put_order))
        .route("/mock/faults", post(arm_fault))
        .route("/mock/token", get(token))
        .route("/mock/journal", get(journal))
        .route("/mock/journal.html", get(journal_page))
        .route("/mock/journal/{id}", get(exchange))
        .route("/mock/reports", get(reports))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &shared.mock_token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(expected.as_str()) {
            return Refusal(StatusCode::UNAUTHORIZED, "MOCK_UNAUTHENTICATED", "the mock's token is required".into())
                .into_response();
        }
    }
    next.run(request).await
}

async fn index(State(s): State<Arc<Shared>>) -> Response {
    Json(json!({
        "vendor": s.profile.vendor,
        "system": s.profile.vendor,
        "side": match s.profile.side { super::Side::Provider => "provider", super::Side::CaseManagement => "case_management" },
        "sends": super::profile::messages(s.profile.side),
        "clock": s.now().to_rfc3339(),
        "journal": "/mock/journal",
    }))
    .into_response()
}

fn clock_body(s: &Shared) -> Response {
    Json(json!({"at": s.now().to_rfc3339(), "today": s.clock.today().to_string()})).into_response()
}

async fn get_clock(State(s): State<Arc<Shared>>) -> Response {
    clock_body(&s)
}

#[derive(Deserialize)]
struct SetClock {
    at: DateTime<Utc>,
}

async fn put_clock(State(s): State<Arc<Shared>>, body: Result<Json<SetClock>, JsonRejection>) -> Answer {
    let Json(set) = body.map_err(bad_json)?;
    s.set_clock(set.at);
    Ok(clock_body(&s))
}

#[derive(Deserialize)]
struct Advance {
    #[serde(default)]
    days: i64,
    #[serde(default)]
    seconds: i64,
}

async fn advance_clock(State(s): State<Arc<Shared>>, body: Result<Json<Advance>, JsonRejection>) -> Answer {
    let Json(by) = body.map_err(bad_json)?;
    let span = chrono::Duration::try_days(by.days)
        .zip(chrono::Duration::try_seconds(by.seconds))
        .and_then(|(d, s)| d.checked_add(&s))
        .ok_or_else(|| Refusal(StatusCode::BAD_REQUEST, "MOCK_BAD_REQUEST", "days or seconds out of range".into()))?;
    let to = s.now().checked_add_signed(span).ok_or_else(|| {
        Refusal(StatusCode::BAD_REQUEST, "MOCK_BAD_REQUEST", "the clock would leave the calendar".into())
    })?;
    s.set_clock(to);
    Ok(clock_body(&s))
}

async fn send(State(s): State<Arc<Shared>>, body: Result<Json<SendCommand>, JsonRejection>) -> Answer {
    let Json(command) = body.map_err(bad_json)?;
    let ids = s.send(&command).await?;
    Ok(Json(json!({"exchanges": ids})).into_response())
}

async fn get_state(State(s): State<Arc<Shared>>, Path((kind, key)): Path<(String, String)>) -> Answer {
    match s.state(&kind, &key).await? {
        Some(v) => Ok(Json(v).into_response()),
        None => Err(Refusal(StatusCode::NOT_FOUND, "MOCK_NO_STATE", format!("the hub has no {kind} {key}"))),
    }
}

async fn get_order(state: State<Arc<Shared>>, Path(id): Path<String>) -> Answer {
    get_state(state, Path(("order".to_owned(), id))).await
}

async fn put_order(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Result<Json<serde_json::Map<String, Value>>, JsonRejection>,
) -> Answer {
    let fields = match body {
        Ok(Json(f)) => f,
        Err(JsonRejection::MissingJsonContentType(_)) => serde_json::Map::new(),
        Err(e) => return Err(bad_json(e)),
    };
    let order = s.set_order(&id, &fields).await?;
    Ok((StatusCode::CREATED, Json(order)).into_response())
}

async fn arm_fault(State(s): State<Arc<Shared>>, body: Result<Json<Fault>, JsonRejection>) -> Answer {
    let Json(fault) = body.map_err(bad_json)?;
    s.faults.arm(fault.clone());
    Ok((StatusCode::CREATED, Json(fault)).into_response())
}

#[derive(Deserialize)]
struct TokenQuery {
    org: Option<String>,
    /// `auditor`: a token of a role that may send nothing, for a vendor testing that the
    /// hub refuses a token of the wrong role (403) as its profile says.
    role: Option<String>,
}

async fn token(State(s): State<Arc<Shared>>, Query(q): Query<TokenQuery>) -> Answer {
    let token = match q.role.as_deref() {
        None => s.token_for(q.org.as_deref())?,
        Some("auditor") => s
            .auth
            .issue(s.profile.vendor, carehub_server::auth::Role::Auditor, None, None, super::TOKEN_TTL)
            .map_err(|e| MockError::Send(format!("cannot issue a token: {e}")))?,
        Some(other) => {
            return Err(MockError::Send(format!(
                "role '{other}': the mock issues the system's own token, or role=auditor"
            ))
            .into())
        }
    };
    Ok(Json(json!({"system": s.profile.vendor, "token": token})).into_response())
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    after: i64,
    limit: Option<usize>,
}

async fn journal(State(s): State<Arc<Shared>>, Query(page): Query<Page>) -> Answer {
    let exchanges = s.exchanges_since(page.after, page.limit.unwrap_or(100).clamp(1, 10_000)).await?;
    Ok(Json(exchanges).into_response())
}

async fn exchange(State(s): State<Arc<Shared>>, Path(id): Path<i64>) -> Answer {
    let journal = s.journal.clone();
    let found = tokio::task::spawn_blocking(move || journal.get(id))
        .await
        .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, "MOCK_JOURNAL", e.to_string()))??;
    match found {
        Some(x) => Ok(Json(x).into_response()),
        None => Err(Refusal(StatusCode::NOT_FOUND, "MOCK_NO_EXCHANGE", format!("no exchange {id}"))),
    }
}

async fn kept_reports(s: &Shared) -> Result<Vec<ReportEntry>, Refusal> {
    let journal = s.journal.clone();
    Ok(tokio::task::spawn_blocking(move || journal.reports())
        .await
        .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, "MOCK_JOURNAL", e.to_string()))??)
}

/// The conformance runs played against this mock, with their reports' hashes.
async fn reports(State(s): State<Arc<Shared>>) -> Answer {
    Ok(Json(kept_reports(&s).await?).into_response())
}

async fn journal_page(State(s): State<Arc<Shared>>, Query(page): Query<Page>) -> Answer {
    let exchanges = s.exchanges_since(page.after, page.limit.unwrap_or(500).clamp(1, 10_000)).await?;
    let reports = kept_reports(&s).await?;
    Ok(Html(page_html(s.profile.vendor, &exchanges, &reports)).into_response())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The journal as one plain page: no scripts, no external assets.
pub fn page_html(vendor: &str, exchanges: &[Exchange], reports: &[ReportEntry]) -> String {
    let mut runs = String::new();
    for r in reports {
        runs.push_str(&format!(
            "<tr><td>{id}</td><td>{at}</td><td>{vendor}</td><td>{passed}/{total} ({score:.1}%)</td><td>{coverage:.1}%</td><td>{cases}</td><td><code>{sha}</code></td></tr>\n",
            id = r.id,
            at = esc(&r.at.to_rfc3339()),
            vendor = esc(&r.vendor),
            passed = r.passed,
            total = r.total,
            score = r.score * 100.0,
            coverage = r.coverage * 100.0,
            cases = r.cases.len(),
            sha = esc(&r.sha256),
        ));
    }
    let runs = if reports.is_empty() {
        String::new()
    } else {
        format!(
            "<h2>Conformance runs</h2><p>Each run's report is its JSON file; its SHA-256 is kept here. \
             JSON: <a href=\"/mock/reports\">/mock/reports</a>.</p>\
             <table><thead><tr><th>run</th><th>at (mock clock)</th><th>vendor</th><th>score</th><th>coverage</th><th>cases</th><th>report SHA-256</th></tr></thead>\
             <tbody>\n{runs}</tbody></table><h2>Exchanges</h2>"
        )
    };
    let mut rows = String::new();
    for x in exchanges {
        let problems: String = x
            .problems
            .iter()
            .map(|p| {
                let place = match (&p.field, p.offset) {
                    (Some(f), Some(o)) => format!(" <span class=\"at\">{} @ byte {o}</span>", esc(f)),
                    (Some(f), None) => format!(" <span class=\"at\">{}</span>", esc(f)),
                    (None, Some(o)) => format!(" <span class=\"at\">@ byte {o}</span>"),
                    (None, None) => String::new(),
                };
                format!("<li><code>{}</code> {}{place}</li>", esc(&p.code), esc(&p.message))
            })
            .collect();
        let body: String = String::from_utf8_lossy(&x.body).chars().take(4000).collect();
        let response: String = String::from_utf8_lossy(&x.response).chars().take(4000).collect();
        rows.push_str(&format!(
            "<tr class=\"{cls}\"><td>{id}</td><td>{at}</td><td>{dir}</td><td>{wire}</td><td>{target}</td><td>{kind}</td><td>{key}</td><td>{status}</td><td>{millis}</td>\
             <td>{problems}<details><summary>payload</summary><pre>{body}</pre><pre>{response}</pre></details></td></tr>\n",
            cls = if x.problems.is_empty() { "ok" } else { "bad" },
            id = x.id,
            at = esc(&x.at.to_rfc3339()),
            dir = esc(&format!("{:?}", x.direction).to_lowercase()),
            wire = esc(&format!("{:?}", x.wire).to_lowercase()),
            target = esc(&x.target),
            kind = esc(x.message_type.as_deref().unwrap_or("")),
            key = esc(x.key.as_deref().unwrap_or("")),
            status = x.status.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
            millis = x.millis,
            problems = if problems.is_empty() { String::new() } else { format!("<ul>{problems}</ul>") },
            body = esc(&body),
            response = esc(&response),
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>carehub mock: {vendor} journal</title>\
         <style>body{{font:14px system-ui,sans-serif;margin:1.5em}}table{{border-collapse:collapse;width:100%}}\
         td,th{{border-bottom:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}}\
         tr.bad td:first-child{{border-left:4px solid #b00}}tr.ok td:first-child{{border-left:4px solid #080}}\
         pre{{white-space:pre-wrap;max-width:60em;background:#f6f6f6;padding:.4em}}.at{{color:#555}}</style></head>\
         <body><h1>Journal of the mock hub toward {vendor}</h1>{runs}<p>{n} exchanges, oldest first. \
         JSON: <a href=\"/mock/journal\">/mock/journal</a>.</p>\
         <table><thead><tr><th>id</th><th>at (mock clock)</th><th>way</th><th>wire</th><th>target</th><th>message</th><th>key</th><th>status</th><th>ms</th><th>problems</th></tr></thead>\
         <tbody>\n{rows}</tbody></table></body></html>\n",
        vendor = esc(vendor),
        n = exchanges.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::{Direction, Problem, Wire};

    /// With the journal off (a measuring aid) the hub still takes what the vendor sends,
    /// nothing is journaled, and a send is refused with a code instead of waiting for a
    /// delivery it could never see.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_the_journal_off_the_hub_answers_nothing_is_journaled_and_a_send_is_refused() {
        let mock = crate::mock::MockHub::start(crate::mock::MockOptions {
            vendor: "phoniro".into(),
            config: crate::mock::MockConfig { at: Some("2026-11-02T08:00:00+01:00".into()), ..Default::default() },
            listen: Some("127.0.0.1:0".into()),
            journal: crate::mock::journal::JournalMode::Off,
            ..Default::default()
        })
        .await
        .expect("the mock starts");
        let http = reqwest::Client::new();
        let ack = json!({"type": "orderConfirmation", "orderId": "O-0000000000000001", "status": "ACCEPTED",
                         "confirmedAt": "2026-11-02T09:15:00+01:00"});
        let answer = http
            .post(format!("{}/v1/systems/phoniro/messages", mock.url()))
            .bearer_auth(mock.token())
            .json(&ack)
            .send()
            .await
            .expect("answered");
        assert!(answer.status().is_client_error(), "the hub itself answered: {}", answer.status());
        let journal: Value =
            http.get(format!("{}/mock/journal", mock.url())).send().await.expect("read").json().await.expect("json");
        assert_eq!(journal, json!([]), "nothing journaled");
        let send = http
            .post(format!("{}/mock/send", mock.url()))
            .json(&json!({"message": "order"}))
            .send()
            .await
            .expect("answered");
        assert_eq!(send.status(), StatusCode::BAD_REQUEST);
        let body: Value = send.json().await.expect("json");
        assert_eq!(body["code"], "MOCK_BAD_COMMAND", "{body}");
        mock.stop().await;
    }

    #[test]
    fn the_page_escapes_what_the_vendor_sent_and_shows_each_problem_in_place() {
        let x = Exchange {
            id: 7,
            at: DateTime::<Utc>::default(),
            direction: Direction::Inbound,
            wire: Wire::Http,
            message_type: Some("order_ack".into()),
            key: Some("O-1".into()),
            target: "POST /v1/systems/phoniro/messages".into(),
            headers: Vec::new(),
            body: b"<script>alert(1)</script>".to_vec(),
            status: Some(422),
            response: Vec::new(),
            millis: 3,
            problems: vec![Problem {
                code: "INVALID_DATE".into(),
                message: "confirmedAt: not an RFC 3339 time".into(),
                field: Some("confirmedAt".into()),
                offset: Some(35),
            }],
        };
        let page = page_html("phoniro", &[x], &[]);
        assert!(!page.contains("<script>"), "the payload is escaped");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("<code>INVALID_DATE</code>") && page.contains("confirmedAt @ byte 35"));
    }
}
