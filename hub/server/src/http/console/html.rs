//! The console's page frame and the small HTML helpers its pages share. Every text that
//! comes from data is escaped ([`esc`]); pages carry a strict Content-Security-Policy
//! (scripts and styles only from the hub itself, no inline script).

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use carehub_core::followup::html::escape;

use super::Person;

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    escape(s)
}

/// An optional text, or a dash.
pub fn opt(s: Option<&str>) -> String {
    s.map(esc).unwrap_or_else(|| "–".into())
}

/// Percent-encodes a query parameter's value.
pub fn q(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Security headers for every console answer.
pub fn harden(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A finished page as an answer.
pub fn page_response(body: String) -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    harden(r.headers_mut());
    r
}

fn head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"sv\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} – carehub granskning</title>\
         <link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script></head>",
        esc(title)
    )
}

/// A page for a signed-in person: the menu, who they are, sign-out, and `body`.
pub fn page(title: &str, person: &Person, csrf: &str, body: &str) -> String {
    let mut menu = String::from("<a href=\"/console/\">Sök</a>");
    if person.oversees() {
        menu.push_str("<a href=\"/console/access\">Vem har tittat</a><a href=\"/console/proof\">Loggens bevis</a>");
    }
    let scope = person.provider.as_deref().map(|p| format!(", utförare {}", esc(p))).unwrap_or_default();
    format!(
        "{head}<body><header><span class=\"brand\">carehub · granskning</span><nav>{menu}</nav>\
         <div class=\"who\"><span id=\"who\" data-subject=\"{subject}\" data-role=\"{role}\">{name} ({label}{scope})</span>\
         <form method=\"post\" action=\"/console/logout\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button type=\"submit\" id=\"logout\">Logga ut</button></form></div></header>\
         <main><h1>{title}</h1>{body}</main>\
         <footer>Varje sökning och varje visat meddelande registreras i åtkomstloggen med ditt namn.</footer>\
         </body></html>",
        head = head(title),
        subject = esc(&person.subject),
        role = person.role.as_str(),
        name = esc(&person.name),
        label = person.role.label(),
        csrf = esc(csrf),
        title = esc(title),
    )
}

/// The sign-in page.
pub fn signin_page() -> String {
    format!(
        "{}<body><main class=\"narrow\"><h1>carehub · granskning</h1>\
         <p>Här granskar du hubbens meddelandelogg, beställningar och åtkomstlogg. Logga in med kommunens \
         inloggning.</p><p><a class=\"button\" id=\"signin\" href=\"/console/login\">Logga in</a></p></main></body></html>",
        head("Logga in")
    )
}

/// After sign-out.
pub fn signed_out_page() -> String {
    format!(
        "{}<body><main class=\"narrow\"><h1>Du är utloggad</h1>\
         <p><a class=\"button\" href=\"/console/login\">Logga in igen</a></p></main></body></html>",
        head("Utloggad")
    )
}

/// An error page with its code.
pub fn error_page(status: StatusCode, code: &str, message: &str) -> String {
    format!(
        "{}<body><main class=\"narrow\"><h1>Det gick inte</h1><p class=\"error\">{}</p>\
         <p>Felkod: <code id=\"error-code\">{}</code> (HTTP {})</p>\
         <p><a href=\"/console/\">Till sökningen</a></p></main></body></html>",
        head("Fel"),
        esc(message),
        esc(code),
        status.as_u16()
    )
}

/// A table: headers and rows of already-escaped cells.
pub fn table(id: &str, headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\" id=\"{id}-empty\">Inget att visa.</p>");
    }
    let mut out = format!("<table id=\"{id}\"><thead><tr>");
    for h in headers {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            out.push_str(&format!("<td>{cell}</td>"));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A definition list of label and already-escaped value.
pub fn facts(items: &[(&str, String)]) -> String {
    let mut out = String::from("<dl class=\"facts\">");
    for (k, v) in items {
        out.push_str(&format!("<dt>{}</dt><dd>{v}</dd>", esc(k)));
    }
    out.push_str("</dl>");
    out
}

/// A message's number as a link to it.
pub fn message_link(seq: i64) -> String {
    format!("<a class=\"message-link\" href=\"/console/messages/{seq}\">{seq}</a>")
}

/// An order id as a link to its timeline.
pub fn order_link(id: &str) -> String {
    format!("<a class=\"order-link\" href=\"/console/orders/{}\">{}</a>", q(id), esc(id))
}

/// A message status in Swedish.
pub fn status_sv(status: &str) -> &str {
    match status {
        "accepted" => "mottaget",
        "rejected" => "avvisat",
        "duplicate" => "dubblett",
        "stale" => "inaktuellt",
        "queued" => "köat",
        "delivered" => "levererat",
        "retrying" => "nytt försök",
        "dead_letter" => "ej levererbart",
        "requeued" => "köat igen",
        other => other,
    }
}

/// A direction in Swedish.
pub fn direction_sv(d: &str) -> &str {
    match d {
        "in" => "in",
        "out" => "ut",
        "internal" => "intern",
        other => other,
    }
}
