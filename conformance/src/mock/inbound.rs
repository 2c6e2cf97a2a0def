//! What the vendor sends the mock: faults played on it, the journal's record of it, and
//! the checks only a counterpart can make.
//!
//! One axum middleware wraps the hub's whole router (not `/mock/`): it plays an armed
//! [`Fault`] first (a delay, a status, a dropped connection), then reads the request,
//! lets the real hub answer it, and records both in the journal with their problems:
//! - the hub's own refusal: its `{code, message}` (or a SOAP fault's `hub:code` and
//!   `faultstring`), and when the hub's message names the vendor's field (`Personnummer:
//!   ...`), that field and the byte offset of its value in the payload as sent;
//! - what only the counterpart sees, checked against the hub's store before the hub
//!   acts: an acknowledgement or plan for an order the hub never sent this vendor
//!   (`MOCK_UNKNOWN_ORDER`), a plan before the acknowledgement (`MOCK_OUT_OF_ORDER`), and
//!   one message id (`Idempotency-Key` or `X-Message-Id`, else the decision's or visit's
//!   own id) sent twice with different content (`MOCK_MESSAGE_ID_REUSED`).
//!
//! What the message is (its type and business key) comes from the vendor's own mapping
//! files, decoded as the hub decodes it, so the journal names messages in the hub's terms.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use carehub_core::hub::Hub;
use serde_json::Value;

use super::journal::Journal;
use crate::exchange::{named_field, Direction, Exchange, Fault, FaultKind, Problem, Wire};

/// The faults armed, each with the requests it has left.
#[derive(Default)]
pub struct Faults(Mutex<Vec<Fault>>);

impl Faults {
    /// Arms a fault (after those armed before it).
    pub fn arm(&self, fault: Fault) {
        if fault.times > 0 {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).push(fault);
        }
    }

    /// The fault for a request to `path`, spending one of its times.
    fn take(&self, path: &str) -> Option<FaultKind> {
        let mut faults = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let i = faults.iter().position(|f| f.path == "*" || path.starts_with(&f.path))?;
        let kind = faults[i].kind.clone();
        faults[i].times -= 1;
        if faults[i].times == 0 {
            faults.remove(i);
        }
        Some(kind)
    }
}

/// What the middleware needs.
pub struct Inbound {
    pub journal: Arc<Journal>,
    pub faults: Arc<Faults>,
    pub hub: Arc<Hub>,
    /// The vendor's system in the hub.
    pub system: String,
    pub wire: Wire,
    pub max_body: usize,
    /// Message ids seen, with a hash of the content they came with.
    seen: Mutex<HashMap<String, u64>>,
}

impl Inbound {
    pub fn new(
        journal: Arc<Journal>,
        faults: Arc<Faults>,
        hub: Arc<Hub>,
        system: String,
        wire: Wire,
        max_body: usize,
    ) -> Inbound {
        Inbound { journal, faults, hub, system, wire, max_body, seen: Mutex::new(HashMap::new()) }
    }
}

/// Headers the journal never keeps the value of.
fn secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n == "authorization"
        || n == "cookie"
        || n == "proxy-authorization"
        || n.contains("token")
        || n.contains("secret")
        || (n.contains("key") && n != "idempotency-key")
}

fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            let name = k.as_str().to_owned();
            let value = if secret_header(&name) {
                "**REDACTED**".to_owned()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (name, value)
        })
        .collect()
}

/// A body that fails at once: hyper drops the connection without an answer.
struct Dropped;

impl axum::body::HttpBody for Dropped {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(Some(Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "a fault: connection reset"))))
    }
}

fn coded(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({"code": code, "message": message}))).into_response()
}

/// The middleware: fault, forward, journal.
pub async fn journal_layer(State(inbound): State<Arc<Inbound>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let target = format!("{} {}", parts.method, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
    let headers = kept_headers(&parts.headers);
    let fault = inbound.faults.take(parts.uri.path());
    let mut problems = Vec::new();
    match fault {
        Some(FaultKind::Delay { millis }) => {
            tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
            problems.push(problem("MOCK_FAULT_DELAY", &format!("answered {millis} ms late, as a fault armed")));
        }
        Some(FaultKind::Status { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let message = format!("a fault armed on the mock answered {}", status.as_u16());
            let response = coded(status, "MOCK_FAULT", &message);
            let x = exchange(
                &inbound,
                target,
                headers,
                Vec::new(),
                Some(status.as_u16()),
                message.clone().into_bytes(),
                started,
                vec![problem("MOCK_FAULT_STATUS", &message)],
                None,
            );
            record(&inbound, x).await;
            return response;
        }
        Some(FaultKind::Reset) => {
            let message = "a fault armed on the mock dropped the connection";
            let x = exchange(
                &inbound,
                target,
                headers,
                Vec::new(),
                None,
                Vec::new(),
                started,
                vec![problem("MOCK_FAULT_RESET", message)],
                None,
            );
            record(&inbound, x).await;
            return Response::new(Body::new(Dropped));
        }
        None => {}
    }
    let bytes = match axum::body::to_bytes(body, inbound.max_body.saturating_add(1)).await {
        Ok(b) => b,
        Err(_) => {
            let message = format!("the body is larger than {} bytes (or was cut off)", inbound.max_body);
            let x = exchange(
                &inbound,
                target,
                headers,
                Vec::new(),
                Some(413),
                Vec::new(),
                started,
                vec![problem("PAYLOAD_TOO_LARGE", &message)],
                None,
            );
            record(&inbound, x).await;
            return coded(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", &message);
        }
    };
    // What the message is, by the vendor's mappings, and what the hub knew before it.
    let is_message = parts.method == axum::http::Method::POST
        && parts.uri.path() == format!("/v1/systems/{}/messages", inbound.system);
    let mut what = if is_message { inbound.what(&bytes) } else { None };
    if let Some(w) = &what {
        problems.extend(inbound.before(w, &parts.headers, &bytes).await);
    } else if is_message {
        what = peppol(&bytes, &mut problems);
    }
    let response = next.run(Request::from_parts(parts, Body::from(bytes.clone()))).await;
    let (rparts, rbody) = response.into_parts();
    let answer = axum::body::to_bytes(rbody, usize::MAX).await.unwrap_or_default();
    let status = rparts.status.as_u16();
    if status >= 400 {
        if let Some(mut p) = refusal(&answer, &bytes) {
            if p.field.is_none() {
                if let Some((field, offset)) = inbound.field_for(&p.code, &bytes) {
                    (p.field, p.offset) = (Some(field), offset);
                }
            }
            problems.push(p);
        }
    }
    let x = exchange(&inbound, target, headers, bytes.to_vec(), Some(status), answer.to_vec(), started, problems, what);
    record(&inbound, x).await;
    Response::from_parts(rparts, Body::from(answer))
}

/// A PEPPOL BIS 3 invoice or credit note (which no mapping file decodes: the hub reads
/// UBL itself): its type and number, and the EN 16931 totals rules it breaks (BR-CO-10 to
/// BR-CO-16), which the hub reports in its verification rather than refusing the document.
fn peppol(body: &[u8], problems: &mut Vec<Problem>) -> Option<What> {
    let doc = carehub_core::peppol::read_bytes(body).ok()?;
    problems.extend(carehub_core::peppol::check_totals(&doc).into_iter().map(|f| problem(f.code.as_str(), &f.message)));
    let message_type = match doc.kind {
        carehub_model::InvoiceKind::Invoice => "invoice",
        carehub_model::InvoiceKind::CreditNote => "credit_note",
    };
    Some(What { message_type: message_type.to_owned(), key: Some(doc.id), own_id: None })
}

fn problem(code: &str, message: &str) -> Problem {
    Problem { code: code.to_owned(), message: message.to_owned(), field: None, offset: None }
}

#[allow(clippy::too_many_arguments)]
fn exchange(
    inbound: &Inbound,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    status: Option<u16>,
    response: Vec<u8>,
    started: Instant,
    problems: Vec<Problem>,
    what: Option<What>,
) -> Exchange {
    Exchange {
        id: 0,
        at: chrono::DateTime::<chrono::Utc>::default(),
        direction: Direction::Inbound,
        wire: inbound.wire,
        message_type: what.as_ref().map(|w| w.message_type.clone()),
        key: what.and_then(|w| w.key),
        target,
        headers,
        body,
        status,
        response,
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        problems,
    }
}

/// Hands the exchange to the journal's writer; the request does not wait for the disk.
async fn record(inbound: &Inbound, x: Exchange) {
    if let Err(e) = inbound.journal.put(x) {
        tracing::warn!(error = %e, "journal write failed");
    }
}

/// A message in the hub's terms.
#[derive(Debug, Clone)]
pub struct What {
    pub message_type: String,
    /// The order, decision or visit it concerns.
    pub key: Option<String>,
    /// Its own id, when it has one apart from the key's order (a decision's, a visit's).
    pub own_id: Option<String>,
}

impl Inbound {
    /// Decodes the payload with the vendor's mappings (as the hub will), for its type and key.
    fn what(&self, body: &[u8]) -> Option<What> {
        let sys = self.hub.registry().get(&self.system)?.clone();
        let (decoded, _) = sys.decode(body).ok()?;
        let canonical: Value = serde_json::from_str(&decoded.canonical).ok()?;
        let text = |k: &str| canonical.get(k).and_then(Value::as_str).map(str::to_owned);
        let message_type = decoded.message_type.as_str().to_owned();
        let own_id = match message_type.as_str() {
            "decision" | "visit" => text("id"),
            "decision_change" => text("decision_id").map(|d| format!("{d}#{}", canonical["version"])),
            _ => None,
        };
        Some(What {
            message_type,
            key: text("order_id").or_else(|| text("id")).or_else(|| text("decision_id")),
            own_id,
        })
    }

    /// The counterpart's checks, against what the hub knew before it took the message.
    async fn before(&self, what: &What, headers: &HeaderMap, body: &[u8]) -> Vec<Problem> {
        let mut problems = Vec::new();
        if matches!(what.message_type.as_str(), "order_ack" | "plan_notice") {
            if let Some(order) = &what.key {
                let unknown = || {
                    problem(
                        "MOCK_UNKNOWN_ORDER",
                        &format!("{} for order {order}, which the mock never sent this system", what.message_type),
                    )
                };
                match self.hub.store().order(order).await {
                    Ok(Some(o)) if o.provider_system == self.system => {
                        let (journal, key) = (self.journal.clone(), order.clone());
                        // Delivered, tried, or set up through `PUT /mock/state/order/{id}`
                        // (whose decisions the mock names `mock:`).
                        let sent = o.delivered_at.is_some()
                            || o.order.decision_id.as_str().starts_with("mock:")
                            || tokio::task::spawn_blocking(move || journal.sent(&key)).await.unwrap_or(false);
                        if !sent {
                            problems.push(unknown());
                        } else if what.message_type == "plan_notice" && o.ack_status.is_none() {
                            problems.push(problem(
                                "MOCK_OUT_OF_ORDER",
                                &format!("a plan for order {order} before its acknowledgement"),
                            ));
                        }
                    }
                    Ok(_) => problems.push(unknown()),
                    Err(e) => tracing::warn!(error = %e, "cannot read the order for the mock's checks"),
                }
            }
        }
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let id = header("idempotency-key").or_else(|| header("x-message-id")).or_else(|| what.own_id.clone());
        if let Some(id) = id {
            let hash = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                body.hash(&mut h);
                h.finish()
            };
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            match seen.get(&id) {
                Some(before) if *before != hash => problems.push(problem(
                    "MOCK_MESSAGE_ID_REUSED",
                    &format!("message id {id} was sent before with different content"),
                )),
                Some(_) => {}
                None => {
                    seen.insert(id, hash);
                }
            }
        }
        problems
    }
}

impl Inbound {
    /// The vendor's field an identifier's code is about, when the hub's message does not
    /// name it (a check digit is checked where the identifier is typed, past the mapping):
    /// the inbound mapping fields whose canonical field holds that kind of identifier, the
    /// first found in the payload, with its value's offset.
    fn field_for(&self, code: &str, body: &[u8]) -> Option<(String, Option<u64>)> {
        let holds: &[&str] = match code {
            "INVALID_PERSONAL_IDENTITY_NUMBER" => &["client", "personal_identity_number"],
            "INVALID_ORG_NUMBER" => &["provider", "org", "organisation_number"],
            "INVALID_HSA_ID" => &["hsa", "hsa_id", "staff"],
            "INVALID_TAG_UID" => &["tag", "tag_uid"],
            _ => return None,
        };
        let sys = self.hub.registry().get(&self.system)?.clone();
        let candidates = sys
            .mappings
            .mappings
            .iter()
            .filter(|m| m.direction == carehub_core::mapping::Direction::In)
            .flat_map(|m| m.fields.iter())
            .filter(|f| {
                f.canonical.as_deref().is_some_and(|c| {
                    let last = c.rsplit('.').next().unwrap_or(c);
                    holds.contains(&last)
                })
            })
            .filter_map(|f| f.vendor.clone());
        candidates.into_iter().find_map(|vendor| locate(body, &vendor).map(|offset| (vendor, Some(offset))))
    }
}

/// The hub's refusal in its answer (`{code, message}`, or a SOAP fault), with the vendor's
/// field and its byte offset in `body` when the message names it.
fn refusal(answer: &[u8], body: &[u8]) -> Option<Problem> {
    let (code, message) = if let Ok(v) = serde_json::from_slice::<Value>(answer) {
        (v.get("code")?.as_str()?.to_owned(), v.get("message").and_then(Value::as_str).unwrap_or("").to_owned())
    } else {
        let text = String::from_utf8_lossy(answer);
        let between = |open: &str, close: &str| -> Option<String> {
            let start = text.find(open)? + open.len();
            let end = text[start..].find(close)? + start;
            Some(xml_unescape(&text[start..end]))
        };
        (between("<hub:code>", "</hub:code>")?, between("<faultstring>", "</faultstring>").unwrap_or_default())
    };
    let field = named_field(&message);
    let offset = field.as_deref().and_then(|f| locate(body, f));
    Some(Problem { code, message, field, offset })
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// The byte offset of the value of `field` (its last path segment) in a payload: after
/// `<Field>` or `Field="` in XML, after `"field":` in JSON.
pub fn locate(body: &[u8], field: &str) -> Option<u64> {
    let name = field.rsplit(['.', '/']).next().unwrap_or(field).trim_start_matches('@');
    if name.is_empty() {
        return None;
    }
    let find = |needle: &[u8]| body.windows(needle.len()).position(|w| w == needle).map(|p| p + needle.len());
    let element = |prefix: &str| -> Option<usize> {
        // `<Name>` or `<p:Name>`.
        let open = format!("{prefix}{name}>");
        find(open.as_bytes())
    };
    let json = || -> Option<usize> {
        let key = format!("\"{name}\"");
        let after = find(key.as_bytes())?;
        let rest = &body[after..];
        let skip = rest.iter().position(|b| !matches!(b, b' ' | b':' | b'\t' | b'\r' | b'\n'))?;
        Some(after + skip)
    };
    let attribute = || find(format!("{name}=\"").as_bytes());
    let colon_element = || {
        let needle = format!(":{name}>");
        find(needle.as_bytes())
    };
    element("<").or_else(colon_element).or_else(json).or_else(attribute).and_then(|p| u64::try_from(p).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_field_is_found_in_xml_and_json() {
        let xml = b"<Beslut><Personnummer>19360101-6988</Personnummer></Beslut>";
        assert_eq!(named_field("Personnummer: the check digit is wrong").as_deref(), Some("Personnummer"));
        assert_eq!(locate(xml, "Personnummer"), Some(22));
        let json = br#"{"orderId": "O-1", "confirmedAt": "2026-11-02"}"#;
        assert_eq!(locate(json, "confirmedAt"), Some(34));
        assert_eq!(&json[34..35], b"\"");
        assert_eq!(named_field("INVALID_DATE: not a date"), None);
    }

    #[test]
    fn a_fault_is_spent_after_its_times() {
        let faults = Faults::default();
        faults.arm(Fault { path: "/v1/".into(), times: 1, kind: FaultKind::Status { status: 503 } });
        assert_eq!(faults.take("/healthz"), None);
        assert_eq!(faults.take("/v1/systems/x/messages"), Some(FaultKind::Status { status: 503 }));
        assert_eq!(faults.take("/v1/systems/x/messages"), None);
    }
}
