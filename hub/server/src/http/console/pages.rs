//! The console's pages. Each reads through the store's queries (or, for an order's
//! timeline, the API's own trace), applies a provider's scope in the query or check, records
//! the read in the access log, and only then renders.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use base64::Engine as _;
use carehub_core::log::LogEntry;
use carehub_core::store::{ts, AccessFilter, AccessQuery, DeliveryFilter, LogFilter, StoreError};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::html::{self, esc, facts, message_link, opt, order_link, table};
use super::{ConsoleError, SignedIn};
use crate::http::error::{client_param, org_param, ApiError};
use crate::http::orders::build_trace;
use crate::http::state::AppState;
use carehub_model::ErrorCode;

/// Results per page.
const PAGE: usize = 50;
/// Access-log entries per page.
const ACCESS_PAGE: usize = 100;

impl From<StoreError> for ConsoleError {
    fn from(e: StoreError) -> ConsoleError {
        ApiError::from(e).into()
    }
}

fn bad(message: impl Into<String>) -> ConsoleError {
    ConsoleError::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

fn forbidden(message: impl Into<String>) -> ConsoleError {
    ConsoleError::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
}

/// A form field: trimmed, empty as absent.
fn field(v: &Option<String>) -> Option<String> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned)
}

/// A day (`YYYY-MM-DD`, in the municipality's time zone) or an RFC 3339 instant; a day as
/// an upper bound means up to the end of that day.
fn when(v: &Option<String>, name: &str, upper: bool) -> Result<Option<DateTime<Utc>>, ConsoleError> {
    let Some(s) = field(v) else { return Ok(None) };
    if let Ok(day) = NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
        let day = if upper { day.succ_opt().unwrap_or(day) } else { day };
        let local = day.and_hms_opt(0, 0, 0).unwrap_or_default();
        return Ok(local.and_local_timezone(carehub_model::MUNICIPAL_TZ).earliest().map(|t| t.with_timezone(&Utc)));
    }
    DateTime::parse_from_rfc3339(&s)
        .map(|t| Some(t.with_timezone(&Utc)))
        .map_err(|_| bad(format!("{name}: '{s}' är inte ett datum (ÅÅÅÅ-MM-DD) eller en tidpunkt (RFC 3339)")))
}

fn number(v: &Option<String>, name: &str) -> Result<Option<i64>, ConsoleError> {
    field(v).map(|s| s.parse::<i64>().map_err(|_| bad(format!("{name}: '{s}' är inte ett heltal")))).transpose()
}

/// `at` in the municipality's time, to the second.
fn local(at: DateTime<Utc>) -> String {
    at.with_timezone(&carehub_model::MUNICIPAL_TZ).format("%Y-%m-%d %H:%M:%S").to_string()
}

fn local_text(at: &str) -> String {
    DateTime::parse_from_rfc3339(at).map(|t| local(t.with_timezone(&Utc))).unwrap_or_else(|_| at.to_owned())
}

// ---------------------------------------------------------------------------------------
// Search

/// The search form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct SearchForm {
    pub client: Option<String>,
    pub order: Option<String>,
    pub decision: Option<String>,
    pub invoice: Option<String>,
    pub provider: Option<String>,
    pub system: Option<String>,
    #[serde(rename = "type")]
    pub message_type: Option<String>,
    pub status: Option<String>,
    pub error_code: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// The next page: entries before this number.
    pub before: Option<String>,
    /// Present when the form was sent (a search with no filter lists the latest).
    pub go: Option<String>,
}

impl SearchForm {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("client", &self.client),
            ("order", &self.order),
            ("decision", &self.decision),
            ("invoice", &self.invoice),
            ("provider", &self.provider),
            ("system", &self.system),
            ("type", &self.message_type),
            ("status", &self.status),
            ("error_code", &self.error_code),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| field(v).map(|v| (k, v)))
        .collect()
    }
}

fn search_form(f: &SearchForm) -> String {
    let input = |name: &str, label: &str, value: &Option<String>, kind: &str, hint: &str| {
        format!(
            "<label>{label}<input type=\"{kind}\" name=\"{name}\" id=\"f-{name}\" value=\"{}\" placeholder=\"{hint}\"></label>",
            esc(value.as_deref().unwrap_or_default())
        )
    };
    let statuses = ["", "accepted", "rejected", "duplicate", "stale", "queued", "delivered", "retrying", "dead_letter"];
    let mut status = String::from("<label>Status<select name=\"status\" id=\"f-status\">");
    for s in statuses {
        let selected = if f.status.as_deref() == Some(s) { " selected" } else { "" };
        let label = if s.is_empty() { "alla" } else { html::status_sv(s) };
        status.push_str(&format!("<option value=\"{s}\"{selected}>{label}</option>"));
    }
    status.push_str("</select></label>");
    format!(
        "<form method=\"get\" action=\"/console/\" class=\"search\" id=\"search\"><input type=\"hidden\" name=\"go\" value=\"1\">{}{}{}{}{}{}{}{status}{}{}{}\
         <div class=\"actions\"><button type=\"submit\" id=\"search-button\">Sök</button></div></form>",
        input("client", "Personnummer", &f.client, "text", "ÅÅÅÅMMDD-NNNN"),
        input("order", "Beställning", &f.order, "text", "ORD-…"),
        input("decision", "Beslut", &f.decision, "text", ""),
        input("invoice", "Faktura", &f.invoice, "text", ""),
        input("provider", "Utförare (org.nr)", &f.provider, "text", "NNNNNN-NNNN"),
        input("system", "System", &f.system, "text", ""),
        input("type", "Meddelandetyp", &f.message_type, "text", "decision, order, …"),
        input("error_code", "Felkod", &f.error_code, "text", "UNKNOWN_ORDER, …"),
        input("since", "Från", &f.since, "date", ""),
        input("until", "Till och med", &f.until, "date", ""),
    )
}

fn entry_row(e: &LogEntry) -> Vec<String> {
    vec![
        message_link(e.seq),
        esc(&local(e.at)),
        esc(&e.system),
        esc(html::direction_sv(&e.direction)),
        esc(&e.message_type),
        format!("<span class=\"status {}\">{}</span>", esc(e.status.as_str()), esc(html::status_sv(e.status.as_str()))),
        opt(e.error_code.as_deref()),
        e.order_id.as_deref().map(order_link).unwrap_or_else(|| "–".into()),
        opt(e.decision_id.as_deref()),
        opt(e.client.as_deref()),
        opt(e.provider.as_deref()),
    ]
}

const ENTRY_HEADERS: [&str; 11] =
    ["Nr", "Tid", "System", "Riktning", "Typ", "Status", "Felkod", "Beställning", "Beslut", "Personnummer", "Utförare"];

/// `GET /console/`: search the message log by business keys, newest first, in pages.
pub async fn search(
    State(state): State<AppState>,
    signed: SignedIn,
    Query(f): Query<SearchForm>,
) -> Result<Response, ConsoleError> {
    let person = signed.person().clone();
    let form = search_form(&f);
    let searched = f.go.is_some() || !f.pairs().is_empty();
    if !searched {
        let body = format!(
            "{form}<p class=\"hint\">Fyll i ett eller flera fält, eller sök utan fält för de senaste meddelandena.</p>"
        );
        return Ok(html::page_response(html::page("Sök i meddelandeloggen", &person, &signed.session.csrf, &body)));
    }
    let client = client_param(&field(&f.client))?;
    let mut provider = org_param(&field(&f.provider))?;
    if let Some(own) = &person.provider {
        if provider.as_deref().is_some_and(|p| p != own) {
            return Err(forbidden("Du ser bara din egen utförares meddelanden."));
        }
        provider = Some(own.clone());
    }
    let before = number(&f.before, "before")?;
    let filter = LogFilter {
        client: client.clone(),
        provider: provider.clone(),
        order_id: field(&f.order),
        decision_id: field(&f.decision),
        message_type: field(&f.message_type),
        system: field(&f.system),
        status: field(&f.status),
        error_code: field(&f.error_code),
        since: when(&f.since, "since", false)?,
        until: when(&f.until, "until", true)?,
        before_seq: before,
        newest_first: true,
        limit: PAGE,
        ..LogFilter::default()
    };
    let mut query = AccessQuery::new("GET /console/");
    for (k, v) in f.pairs() {
        query = query.with(k, Some(v));
    }
    let query = query.with("before", before);
    let store = state.hub.store();
    let entries = match field(&f.invoice) {
        // An invoice is found by its verification, which names its log entry.
        Some(invoice) => {
            let providers = match &provider {
                Some(p) => vec![p.clone()],
                None => store.verified_providers(&invoice).await?,
            };
            let mut found = Vec::new();
            for p in providers {
                if let Some(v) = store.verification(&p, &invoice).await? {
                    found.extend(store.log_entry(v.log_seq).await?);
                }
            }
            found.sort_by_key(|e| std::cmp::Reverse(e.seq));
            found
        }
        None => store.log_entries(filter).await?,
    };
    let clients = entries.iter().filter_map(|e| e.client.clone()).chain(client);
    signed.record(&state, query, clients, entries.iter().map(|e| e.seq)).await?;
    let rows: Vec<Vec<String>> = entries.iter().map(entry_row).collect();
    let mut body = form;
    body.push_str(&format!("<p class=\"count\" id=\"result-count\">{} träffar, nyast först.</p>", entries.len()));
    body.push_str(&table("results", &ENTRY_HEADERS, &rows));
    if entries.len() == PAGE {
        if let Some(last) = entries.last() {
            let mut next: Vec<String> = f.pairs().into_iter().map(|(k, v)| format!("{k}={}", html::q(&v))).collect();
            next.push(format!("before={}", last.seq));
            next.push("go=1".into());
            body.push_str(&format!("<p><a id=\"older\" href=\"/console/?{}\">Äldre →</a></p>", next.join("&amp;")));
        }
    }
    Ok(html::page_response(html::page("Sök i meddelandeloggen", &person, &signed.session.csrf, &body)))
}

// ---------------------------------------------------------------------------------------
// A message

fn parse_id(id: &str) -> Result<i64, ConsoleError> {
    id.parse().map_err(|_| bad(format!("'{id}' är inte ett meddelandenummer")))
}

async fn entry_for(state: &AppState, signed: &SignedIn, id: i64) -> Result<LogEntry, ConsoleError> {
    let entry =
        state.hub.store().log_entry(id).await?.ok_or_else(|| {
            ConsoleError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("Meddelande {id} finns inte."))
        })?;
    if let Some(own) = &signed.person().provider {
        if entry.provider.as_deref() != Some(own.as_str()) {
            return Err(forbidden("Meddelandet gäller en annan utförare."));
        }
    }
    Ok(entry)
}

/// The charset a payload declares: in its content type, else in an XML declaration.
fn declared_charset(content_type: &str, payload: &[u8]) -> Option<String> {
    let from_type = content_type
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"').to_owned());
    from_type.or_else(|| {
        let head = String::from_utf8_lossy(&payload[..payload.len().min(200)]).into_owned();
        let decl = head.strip_prefix("<?xml")?.split("?>").next()?.to_owned();
        let at = decl.find("encoding=")? + "encoding=".len();
        let rest = &decl[at..];
        let quote = rest.chars().next()?;
        rest[1..].split(quote).next().map(str::to_owned)
    })
}

/// The payload decoded from its charset, and the charset's name.
fn decode(content_type: &str, payload: &[u8]) -> (String, &'static str) {
    let encoding = encoding_rs::Encoding::for_bom(payload)
        .map(|(e, _)| e)
        .or_else(|| {
            declared_charset(content_type, payload).and_then(|c| encoding_rs::Encoding::for_label(c.as_bytes()))
        })
        .unwrap_or(encoding_rs::UTF_8);
    let (text, used, _) = encoding.decode(payload);
    (text.into_owned(), used.name())
}

/// JSON or XML indented; anything else as it is.
fn pretty(text: &str) -> String {
    let t = text.trim_start();
    if t.starts_with('{') || t.starts_with('[') {
        if let Ok(v) = serde_json::from_str::<Value>(t) {
            return serde_json::to_string_pretty(&v).unwrap_or_else(|_| text.to_owned());
        }
    }
    if t.starts_with('<') {
        if let Some(x) = pretty_xml(t) {
            return x;
        }
    }
    text.to_owned()
}

fn pretty_xml(text: &str) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    reader.config_mut().trim_text(true);
    let mut writer = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(e) => writer.write_event(e).ok()?,
            Err(_) => return None,
        }
    }
    String::from_utf8(writer.into_inner()).ok()
}

/// `GET /console/messages/{id}`: a message as received, decoded and pretty-printed; its
/// canonical form; status and codes; its deliveries and attempts; related messages.
pub async fn message(
    State(state): State<AppState>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = parse_id(&id)?;
    let entry = entry_for(&state, &signed, id).await?;
    let store = state.hub.store();
    // Related: the same order or decision.
    let mut related: Vec<LogEntry> = Vec::new();
    for filter in [
        entry.order_id.clone().map(|o| LogFilter { order_id: Some(o), limit: 500, ..LogFilter::default() }),
        entry.decision_id.clone().map(|d| LogFilter { decision_id: Some(d), limit: 500, ..LogFilter::default() }),
    ]
    .into_iter()
    .flatten()
    {
        related.extend(store.log_entries(filter).await?);
    }
    related.sort_by_key(|e| e.seq);
    related.dedup_by_key(|e| e.seq);
    related.retain(|e| e.seq != id);
    if let Some(own) = &signed.person().provider {
        related.retain(|e| e.provider.as_deref().is_none_or(|p| p == own));
    }
    let deliveries = match &entry.order_id {
        Some(order) => store
            .deliveries(DeliveryFilter { order_id: Some(order.clone()), limit: 1000, ..DeliveryFilter::default() })
            .await?
            .into_iter()
            .filter(|d| d.log_seq == Some(id) || entry.delivery_key.as_deref() == Some(d.idempotency_key.as_str()))
            .collect(),
        None => Vec::new(),
    };
    let attempts: Vec<&LogEntry> = match &entry.delivery_key {
        Some(key) => related.iter().filter(|e| e.delivery_key.as_deref() == Some(key.as_str())).collect(),
        None => Vec::new(),
    };
    let query = AccessQuery::new("GET /console/messages/{id}").with("id", Some(id));
    let clients = entry.client.iter().cloned().chain(related.iter().filter_map(|e| e.client.clone()));
    let shown = std::iter::once(id).chain(related.iter().map(|e| e.seq));
    signed.record(&state, query, clients, shown).await?;

    let mut body = facts(&[
        ("Nummer", id.to_string()),
        ("Tid", esc(&local(entry.at))),
        ("System", format!("{} ({})", esc(&entry.system), esc(&entry.vendor))),
        ("Riktning", esc(html::direction_sv(&entry.direction))),
        ("Typ", esc(&entry.message_type)),
        ("Innehållstyp", esc(&entry.content_type)),
        (
            "Status",
            format!(
                "<span class=\"status {}\" id=\"message-status\">{}</span>",
                esc(entry.status.as_str()),
                esc(html::status_sv(entry.status.as_str()))
            ),
        ),
        ("Felkod", format!("<span id=\"message-error-code\">{}</span>", opt(entry.error_code.as_deref()))),
        ("Felmeddelande", opt(entry.error_message.as_deref())),
        ("Beslut", opt(entry.decision_id.as_deref())),
        ("Beställning", entry.order_id.as_deref().map(order_link).unwrap_or_else(|| "–".into())),
        ("Personnummer", opt(entry.client.as_deref())),
        ("Utförare", opt(entry.provider.as_deref())),
        ("Leveransnyckel", opt(entry.delivery_key.as_deref())),
        ("Hash", format!("<code>{}</code>", esc(&entry.hash))),
        ("Föregående hash", format!("<code>{}</code>", esc(&entry.prev_hash))),
        ("Innehållets SHA-256", opt(entry.payload_hash.as_deref())),
    ]);
    body.push_str("<h2>Meddelandet som det togs emot</h2>");
    if entry.payload_removed {
        body.push_str(
            "<p id=\"payload-removed\">Innehållet har gallrats; dess hash finns kvar och kedjan verifierar.</p>",
        );
    } else {
        let (text, charset) = decode(&entry.content_type, &entry.payload);
        body.push_str(&format!(
            "<p>{} byte, avkodat som {}. <a id=\"raw-link\" href=\"/console/messages/{id}/raw\">Visa råa byte</a></p>\
             <pre id=\"payload\">{}</pre>",
            entry.payload.len(),
            esc(charset),
            esc(&pretty(&text))
        ));
    }
    body.push_str("<h2>Kanonisk form</h2>");
    match entry.canonical.as_deref().and_then(|c| serde_json::from_str::<Value>(c).ok()) {
        Some(c) => body.push_str(&format!(
            "<pre id=\"canonical\">{}</pre>",
            esc(&serde_json::to_string_pretty(&c).unwrap_or_default())
        )),
        None => body.push_str("<p id=\"canonical-none\">Hubben gjorde ingen kanonisk form av meddelandet.</p>"),
    }
    body.push_str("<h2>Leveranser</h2>");
    let rows: Vec<Vec<String>> = deliveries
        .iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                esc(&d.system),
                esc(&d.message_type),
                esc(&format!("{:?}", d.state).to_lowercase()),
                d.attempts.to_string(),
                opt(d.last_error.as_deref()),
                esc(&local(d.created_at)),
                d.delivered_at.map(local).map(|s| esc(&s)).unwrap_or_else(|| "–".into()),
            ]
        })
        .collect();
    body.push_str(&table(
        "deliveries",
        &["Nr", "Till", "Typ", "Läge", "Försök", "Senaste fel", "Köad", "Levererad"],
        &rows,
    ));
    body.push_str("<h2>Försök</h2>");
    let rows: Vec<Vec<String>> = attempts.iter().map(|e| entry_row(e)).collect();
    body.push_str(&table("attempts", &ENTRY_HEADERS, &rows));
    body.push_str("<h2>Relaterade meddelanden (samma beställning eller beslut)</h2>");
    let rows: Vec<Vec<String>> = related.iter().map(entry_row).collect();
    body.push_str(&table("related", &ENTRY_HEADERS, &rows));
    let title = format!("Meddelande {id}");
    Ok(html::page_response(html::page(&title, signed.person(), &signed.session.csrf, &body)))
}

/// `GET /console/messages/{id}/raw`: the payload's bytes, as a hex dump and base64.
pub async fn raw(
    State(state): State<AppState>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = parse_id(&id)?;
    let entry = entry_for(&state, &signed, id).await?;
    let query = AccessQuery::new("GET /console/messages/{id}/raw").with("id", Some(id));
    signed.record(&state, query, entry.client.clone(), [id]).await?;
    let mut dump = String::new();
    for (i, chunk) in entry.payload.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }).collect();
        dump.push_str(&format!("{:08x}  {:<47}  {ascii}\n", i * 16, hex.join(" ")));
    }
    let body = format!(
        "<p><a href=\"/console/messages/{id}\">← Meddelande {id}</a> · {} byte</p><pre id=\"hexdump\">{}</pre>\
         <h2>Base64</h2><pre class=\"wrap\" id=\"base64\">{}</pre>",
        entry.payload.len(),
        esc(&dump),
        base64::engine::general_purpose::STANDARD.encode(&entry.payload)
    );
    let title = format!("Meddelande {id}: råa byte");
    Ok(html::page_response(html::page(&title, signed.person(), &signed.session.csrf, &body)))
}

// ---------------------------------------------------------------------------------------
// An order's timeline

fn s(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => esc(s),
        other => esc(&other.to_string()),
    }
}

/// `GET /console/orders/{id}`: an order's timeline from its decision to its invoice lines.
pub async fn timeline(
    State(state): State<AppState>,
    signed: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let caller = signed.person().caller();
    let (trace, client, shown) = build_trace(&state, &caller, &id).await?;
    let query = AccessQuery::new("GET /console/orders/{id}").with("id", Some(&id));
    signed.record(&state, query, Some(client), shown).await?;
    let o = &trace.order;
    let mut body = facts(&[
        ("Beställning", esc(&id)),
        ("Beslut", s(&o.order["decision_id"])),
        ("Personnummer", s(&o.order["client"])),
        ("Utförare", s(&o.order["provider"])),
        ("Från system", esc(&o.source_system)),
        ("Till system", esc(&o.provider_system)),
        ("Läge", format!("<span id=\"order-status\">{}</span>", esc(&o.status))),
        ("Skapad", esc(&local_text(&o.created_at))),
        ("Levererad", o.delivered_at.as_deref().map(local_text).map(|t| esc(&t)).unwrap_or_else(|| "–".into())),
        (
            "Svar",
            format!(
                "{} {}",
                opt(o.ack_status.as_deref()),
                o.ack_reason.as_deref().map(|r| format!("({})", esc(r))).unwrap_or_default()
            ),
        ),
        ("Genomförandeplan", opt(o.plan_established_on.as_deref())),
        ("Försenad", if o.overdue.is_empty() { "nej".into() } else { esc(&o.overdue.join(", ")) }),
    ]);
    body.push_str(&format!(
        "<h2>Beslut och versioner</h2><p>Senaste version som tillämpats: {}.</p><ul id=\"terms\">{}</ul>",
        trace.terms.version,
        trace.terms.summary.iter().map(|l| format!("<li>{}</li>", esc(l))).collect::<String>()
    ));
    body.push_str("<h2>Händelser</h2>");
    let rows: Vec<Vec<String>> = trace
        .steps
        .iter()
        .map(|st| {
            vec![
                message_link(st.message_id),
                esc(&local_text(&st.at)),
                esc(&st.step),
                esc(html::status_sv(&st.status)),
                opt(st.error_code.as_deref()),
            ]
        })
        .collect();
    body.push_str(&table("steps", &["Nr", "Tid", "Vad hände", "Status", "Felkod"], &rows));
    body.push_str("<h2>Leveranser</h2>");
    let rows: Vec<Vec<String>> = trace
        .deliveries
        .iter()
        .map(|d| {
            vec![
                d.id.to_string(),
                esc(&d.system),
                esc(&d.message_type),
                esc(&d.state),
                d.attempts.to_string(),
                opt(d.last_error.as_deref()),
                d.delivered_at.as_deref().map(local_text).map(|t| esc(&t)).unwrap_or_else(|| "–".into()),
            ]
        })
        .collect();
    body.push_str(&table(
        "order-deliveries",
        &["Nr", "Till", "Typ", "Läge", "Försök", "Senaste fel", "Levererad"],
        &rows,
    ));
    body.push_str("<h2>Besök per månad</h2>");
    let mut months: BTreeMap<String, (u64, i64, u64, u64)> = BTreeMap::new();
    for v in &trace.visits {
        let m = months.entry(v["month"].as_str().unwrap_or("?").to_owned()).or_default();
        m.0 += 1;
        m.1 += v["seconds"].as_i64().unwrap_or(0);
        m.2 += u64::from(v["manual"].as_bool().unwrap_or(false));
        m.3 += u64::from(v["outcome"].as_str().is_some_and(|o| o != "approved"));
    }
    let rows: Vec<Vec<String>> = months
        .iter()
        .map(|(m, (n, secs, manual, flagged))| {
            vec![esc(m), n.to_string(), format!("{}", secs / 60), manual.to_string(), flagged.to_string()]
        })
        .collect();
    body.push_str(&table(
        "visits-by-month",
        &["Månad", "Besök", "Minuter", "Manuellt registrerade", "Med anmärkning"],
        &rows,
    ));
    body.push_str("<h2>Fakturarader och verifiering</h2>");
    let rows: Vec<Vec<String>> = trace
        .invoice_lines
        .iter()
        .map(|l| {
            let msg = l["message_id"].as_i64().map(message_link).unwrap_or_else(|| "–".into());
            let line = &l["line"];
            let findings = line["findings"]
                .as_array()
                .map(|f| f.iter().map(|x| s(&x["code"])).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            vec![
                msg,
                s(&l["invoice_id"]),
                s(&l["month"]),
                s(&l["kind"]),
                s(&line["service"]),
                s(&line["amount"]),
                findings,
            ]
        })
        .collect();
    body.push_str(&table(
        "invoice-lines",
        &["Nr", "Faktura", "Månad", "Slag", "Insats", "Belopp", "Anmärkningar"],
        &rows,
    ));
    body.push_str("<h2>Avvikelser och ändrade behov</h2>");
    let rows: Vec<Vec<String>> = trace
        .reports
        .iter()
        .map(|r| {
            let v = serde_json::to_value(r).unwrap_or_default();
            vec![s(&v["message_id"]), s(&v["kind"]), s(&v["day"]), s(&v["received_at"])]
        })
        .collect();
    body.push_str(&table("reports", &["Nr", "Slag", "Dag", "Mottagen"], &rows));
    let title = format!("Beställning {id}");
    Ok(html::page_response(html::page(&title, signed.person(), &signed.session.csrf, &body)))
}

// ---------------------------------------------------------------------------------------
// Who has looked

/// The access-log page's filters.
#[derive(Debug, Default, Deserialize)]
pub struct AccessForm {
    pub client: Option<String>,
    pub subject: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// The page of entries before this sequence number (the next older page).
    pub before: Option<String>,
}

/// `GET /console/access`: the access log by client, person and time (auditors, admins).
pub async fn access(
    State(state): State<AppState>,
    signed: SignedIn,
    Query(f): Query<AccessForm>,
) -> Result<Response, ConsoleError> {
    if !signed.person().oversees() {
        return Err(forbidden("Åtkomstloggen är för granskare och administratörer."));
    }
    let client = client_param(&field(&f.client))?;
    let before = number(&f.before, "before")?;
    let filter = AccessFilter {
        client: client.clone(),
        subject: field(&f.subject),
        since: when(&f.since, "since", false)?,
        until: when(&f.until, "until", true)?,
        before_seq: before,
        newest_first: true,
        limit: ACCESS_PAGE,
        ..AccessFilter::default()
    };
    let query = AccessQuery::new("GET /console/access")
        .with("client", filter.client.as_ref())
        .with("subject", filter.subject.as_ref())
        .with("since", field(&f.since))
        .with("until", field(&f.until))
        .with("before", before);
    let entries = state.hub.store().access_log(filter).await?;
    let clients = entries.iter().flat_map(|e| e.clients.iter().cloned()).chain(client);
    signed.record(&state, query, clients, None).await?;
    let input = |name: &str, label: &str, value: &Option<String>, kind: &str| {
        format!(
            "<label>{label}<input type=\"{kind}\" name=\"{name}\" id=\"a-{name}\" value=\"{}\"></label>",
            esc(value.as_deref().unwrap_or_default())
        )
    };
    let mut body = format!(
        "<form method=\"get\" action=\"/console/access\" class=\"search\" id=\"access-search\">{}{}{}{}\
         <div class=\"actions\"><button type=\"submit\" id=\"access-button\">Visa</button></div></form>",
        input("client", "Personnummer", &f.client, "text"),
        input("subject", "Person eller system", &f.subject, "text"),
        input("since", "Från", &f.since, "date"),
        input("until", "Till och med", &f.until, "date"),
    );
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let filters =
                e.query.filters.iter().map(|(k, v)| format!("{}={}", esc(k), esc(v))).collect::<Vec<_>>().join(", ");
            vec![
                e.seq.to_string(),
                esc(&local(e.at)),
                format!("<span class=\"subject\">{}</span>", esc(&e.subject)),
                esc(&e.role),
                format!("<code class=\"endpoint\">{}</code> {filters}", esc(&e.query.endpoint)),
                format!("<span class=\"clients\">{}</span>", esc(&e.clients.join(", "))),
                e.entries.iter().map(|s| message_link(*s)).collect::<Vec<_>>().join(" "),
            ]
        })
        .collect();
    body.push_str("<p>Nyast först. Din egen visning av den här sidan registreras också.</p>");
    body.push_str(&table(
        "access-log",
        &["Nr", "Tid", "Vem", "Roll", "Fråga", "Personnummer som visades", "Poster"],
        &rows,
    ));
    if entries.len() == ACCESS_PAGE {
        if let Some(oldest) = entries.last() {
            // The next page keeps the filters it was asked with.
            let mut next = vec![format!("before={}", oldest.seq)];
            for (name, value) in
                [("client", &f.client), ("subject", &f.subject), ("since", &f.since), ("until", &f.until)]
            {
                if let Some(v) = field(value) {
                    next.push(format!("{name}={}", html::q(&v)));
                }
            }
            body.push_str(&format!(
                "<p><a id=\"older\" href=\"/console/access?{}\">Äldre →</a></p>",
                next.join("&amp;")
            ));
        }
    }
    Ok(html::page_response(html::page("Vem har tittat", signed.person(), &signed.session.csrf, &body)))
}

// ---------------------------------------------------------------------------------------
// The log's proof

/// `GET /console/proof` parameters.
#[derive(Debug, Default, Deserialize)]
pub struct ProofForm {
    pub entry: Option<String>,
}

/// `GET /console/proof`: the current checkpoint, an entry's inclusion proof, and the
/// bundle download (auditors, admins).
pub async fn proof(
    State(state): State<AppState>,
    signed: SignedIn,
    Query(f): Query<ProofForm>,
) -> Result<Response, ConsoleError> {
    if !signed.person().oversees() {
        return Err(forbidden("Loggens bevis är för granskare och administratörer."));
    }
    let Some(c) = state.checkpointer.clone() else {
        let body = "<p id=\"no-key\">Hubben har ingen signeringsnyckel ([audit] signing_key), så loggen har inga \
                    signerade kontrollpunkter.</p>";
        return Ok(html::page_response(html::page("Loggens bevis", signed.person(), &signed.session.csrf, body)));
    };
    let entry = number(&f.entry, "entry")?;
    let size = state.hub.store().log_size().await?;
    let audit = |e: carehub_core::audit::AuditError| match e {
        carehub_core::audit::AuditError::Store(e) => ConsoleError::from(e),
        e @ (carehub_core::audit::AuditError::Proof(_) | carehub_core::audit::AuditError::NoCheckpoint(_)) => {
            ConsoleError::new(StatusCode::NOT_FOUND, "NOT_FOUND", e.to_string())
        }
        e => {
            tracing::error!(error = %e, "audit failure");
            ConsoleError::from(ApiError::new(ErrorCode::Internal, "the log cannot be proved; see the hub's log"))
        }
    };
    let cp = c.covering(size.max(1)).await.map_err(audit)?;
    let proof = match entry {
        Some(seq) if seq >= 1 => {
            Some(carehub_core::audit::prove_inclusion(state.hub.store().as_ref(), seq, &cp).await.map_err(audit)?)
        }
        Some(seq) => {
            return Err(ConsoleError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("Post {seq} finns inte.")))
        }
        None => None,
    };
    let query = AccessQuery::new("GET /console/proof").with("entry", entry);
    signed.record(&state, query, None, entry).await?;
    let mut body = format!(
        "<h2>Senaste kontrollpunkt</h2>{}<pre id=\"checkpoint\">{}</pre>",
        facts(&[
            ("Logg", esc(c.origin())),
            ("Poster", format!("<span id=\"tree-size\">{}</span>", cp.size)),
            ("Rot", format!("<code id=\"root\">{}</code>", esc(&cp.root))),
            ("Signerad", esc(&local(cp.at))),
            ("Hubbens publika nyckel", format!("<code id=\"public-key\">{}</code>", esc(&c.public_key()))),
        ]),
        esc(&cp.note)
    );
    body.push_str(&format!(
        "<h2>Bevis för en post</h2><form method=\"get\" action=\"/console/proof\" class=\"inline\">\
         <label>Post<input type=\"number\" min=\"1\" name=\"entry\" id=\"p-entry\" value=\"{}\"></label>\
         <button type=\"submit\" id=\"prove-button\">Visa bevis</button></form>",
        entry.map(|e| e.to_string()).unwrap_or_default()
    ));
    if let Some(p) = proof {
        let verified = verify(&p, &cp.root);
        body.push_str(&facts(&[
            ("Post", message_link(p.seq)),
            ("Lövindex", p.leaf_index.to_string()),
            ("Postens hash", format!("<code>{}</code>", esc(&p.hash))),
            ("Trädets storlek", p.tree_size.to_string()),
            (
                "Kontroll",
                if verified {
                    "<span id=\"proof-ok\" class=\"ok\">beviset leder till kontrollpunktens rot</span>".into()
                } else {
                    "<span id=\"proof-bad\" class=\"bad\">beviset leder inte till roten</span>".into()
                },
            ),
        ]));
        body.push_str(&format!("<pre id=\"inclusion-proof\">{}</pre>", esc(&p.proof.join("\n"))));
    }
    let today = state.hub.today();
    body.push_str(&format!(
        "<h2>Hämta ett exportpaket</h2><p>Posterna i perioden med bevis, kontrollpunkten och hubbens publika nyckel, \
         att verifiera utan hubben (<code>carehub audit verify-bundle</code> eller <code>scripts/verify_bundle.py</code>).</p>\
         <form method=\"post\" action=\"/console/proof/bundle\" class=\"inline\" id=\"bundle-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>Från<input type=\"date\" name=\"from\" id=\"b-from\" value=\"{}\"></label>\
         <label>Till och med<input type=\"date\" name=\"to\" id=\"b-to\" value=\"{}\"></label>\
         <button type=\"submit\" id=\"bundle-button\">Hämta paket</button></form>",
        esc(&signed.session.csrf),
        today.checked_sub_months(chrono::Months::new(1)).unwrap_or(today),
        today
    ));
    Ok(html::page_response(html::page("Loggens bevis", signed.person(), &signed.session.csrf, &body)))
}

/// Checks an inclusion proof against a root, as an auditor's own program would.
fn verify(p: &carehub_core::audit::InclusionProof, root: &str) -> bool {
    let b64 = base64::engine::general_purpose::STANDARD;
    let (Ok(raw), Ok(root)) = (hex::decode(&p.hash), hex::decode(root)) else { return false };
    let path: Option<Vec<carehub_core::log::merkle::Hash>> =
        p.proof.iter().map(|h| b64.decode(h).ok().and_then(|v| v.try_into().ok())).collect();
    let (Some(path), Ok(root)) = (path, <[u8; 32]>::try_from(root)) else { return false };
    let leaf = carehub_core::log::merkle::leaf_hash(&raw);
    carehub_core::log::merkle::verify_inclusion(&leaf, p.leaf_index, p.tree_size as u64, &path, &root)
}

/// The bundle form.
#[derive(Debug, Deserialize)]
pub struct BundleForm {
    pub csrf: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// `POST /console/proof/bundle`: the export bundle of the entries in a period, as a
/// download; recorded like `carehub audit export`, with the clients it holds.
pub async fn bundle(
    State(state): State<AppState>,
    signed: SignedIn,
    headers: HeaderMap,
    Form(f): Form<BundleForm>,
) -> Result<Response, ConsoleError> {
    signed.check_post(&state, &headers, f.csrf.as_deref())?;
    if !signed.person().oversees() {
        return Err(forbidden("Exportpaket är för granskare och administratörer."));
    }
    let c = state.checkpointer.clone().ok_or_else(|| {
        ConsoleError::new(StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE", "Hubben har ingen signeringsnyckel.")
    })?;
    let from = when(&f.from, "from", false)?.ok_or_else(|| bad("Ange från vilket datum."))?;
    let to = when(&f.to, "to", true)?.ok_or_else(|| bad("Ange till vilket datum."))?;
    if to <= from {
        return Err(bad("Perioden slutar innan den börjar."));
    }
    let mut out = Vec::new();
    carehub_core::audit::export(&c, from, to, &mut out).await.map_err(|e| {
        tracing::error!(error = %e, "console export failed");
        ConsoleError::from(ApiError::new(ErrorCode::Internal, "the bundle cannot be written; see the hub's log"))
    })?;
    // The clients shown: read back from what is sent, so the record is what leaves.
    let mut clients = std::collections::BTreeSet::new();
    for line in out.split(|b| *b == b'\n').skip(1).filter(|l| !l.is_empty()) {
        if let Ok(e) = serde_json::from_slice::<carehub_core::log::bundle::BundleEntry>(line) {
            clients.extend(e.client);
        }
    }
    let query = AccessQuery::new("POST /console/proof/bundle").with("from", Some(ts(from))).with("to", Some(ts(to)));
    signed.record(&state, query, clients, None).await?;
    let name =
        format!("carehub-bundle-{}-{}.jsonl", field(&f.from).unwrap_or_default(), field(&f.to).unwrap_or_default());
    let name: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')).collect();
    let mut r = out.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    html::harden(h);
    Ok(r)
}
