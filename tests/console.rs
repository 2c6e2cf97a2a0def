//! The auditors' web console (`/console`): sign-in through a test OpenID Connect provider
//! played here (discovery, JWKS, authorize and token endpoints on 127.0.0.1:0, signing ID
//! tokens with a P-256 key made for the test), sessions, CSRF, roles, and every read
//! recorded in the access log. The browser test drives a real headless Chromium through
//! chromedriver (`scripts/test` installs Debian's `chromium` and `chromium-driver`); the
//! others speak HTTP with cookies handled by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::StatusCode as AxStatus;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use carehub_model::Clock;
use carehub_server::auth::Role;
use reqwest::header::{COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::StatusCode;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use sha2::Digest;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::webdriver::Browser;
use crate::support::*;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const CLIENT_ID: &str = "carehub-console";
const CLIENT_SECRET: &str = "console-test-secret";

/// Who the test provider signs in next.
#[derive(Debug, Clone)]
struct User {
    sub: &'static str,
    name: &'static str,
    roles: Vec<&'static str>,
    provider: Option<&'static str>,
    /// The ID token's `exp`, in seconds from the hub's now (negative: already expired).
    expires_in: i64,
}

fn auditor() -> User {
    User { sub: "anna.granskare", name: "Anna Granskare", roles: vec!["auditor"], provider: None, expires_in: 3600 }
}

fn provider_staff(org: &'static str) -> User {
    User { sub: "bo.utforare", name: "Bo Utförare", roles: vec!["provider"], provider: Some(org), expires_in: 3600 }
}

#[derive(Debug, Clone)]
struct Grant {
    nonce: String,
    challenge: String,
    redirect_uri: String,
    user: User,
}

struct IdpState {
    url: String,
    pkcs8: Vec<u8>,
    jwk: Value,
    /// The hub's clock, once the hub runs: the provider dates its tokens by it.
    clock: Mutex<Clock>,
    next: Mutex<User>,
    codes: Mutex<HashMap<String, Grant>>,
    /// What the provider refused, for the tests to assert none.
    refusals: Mutex<Vec<String>>,
}

/// The test identity provider.
struct Idp {
    state: Arc<IdpState>,
    task: tokio::task::JoinHandle<()>,
}

impl Idp {
    async fn start(clock: Clock) -> Idp {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key").as_ref().to_vec();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng).expect("key pair");
        let point = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "test-key", "alg": "ES256", "use": "sig",
                         "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..65])});
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(IdpState {
            url,
            pkcs8,
            jwk,
            clock: Mutex::new(clock),
            next: Mutex::new(auditor()),
            codes: Mutex::new(HashMap::new()),
            refusals: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/authorize", get(authorize))
            .route("/token", post(token))
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Idp { state, task }
    }

    fn url(&self) -> &str {
        &self.state.url
    }

    fn sign_in_as(&self, user: User) {
        *self.state.next.lock().expect("lock") = user;
    }

    fn refusals(&self) -> Vec<String> {
        self.state.refusals.lock().expect("lock").clone()
    }

    /// The `[console]` section for a hub using this provider.
    fn section(&self) -> String {
        format!(
            "\n[console]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
             role_claim = \"roles\"\nprovider_claim = \"provider_org\"\n",
            self.url()
        )
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn discovery(State(s): State<Arc<IdpState>>) -> Json<Value> {
    Json(json!({
        "issuer": s.url,
        "authorization_endpoint": format!("{}/authorize", s.url),
        "token_endpoint": format!("{}/token", s.url),
        "jwks_uri": format!("{}/jwks", s.url),
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
    }))
}

async fn jwks(State(s): State<Arc<IdpState>>) -> Json<Value> {
    Json(json!({ "keys": [s.jwk] }))
}

/// Signs the person in at once and sends the browser back with a code.
async fn authorize(State(s): State<Arc<IdpState>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let problems: Vec<&str> = [
        (get("response_type") != "code", "response_type"),
        (get("client_id") != CLIENT_ID, "client_id"),
        (get("code_challenge_method") != "S256", "code_challenge_method"),
        (get("code_challenge").len() != 43, "code_challenge"),
        (get("nonce").len() < 22, "nonce"),
        (get("state").len() < 22, "state"),
        (!get("scope").split(' ').any(|s| s == "openid"), "scope"),
    ]
    .into_iter()
    .filter(|(bad, _)| *bad)
    .map(|(_, what)| what)
    .collect();
    if !problems.is_empty() {
        s.refusals.lock().expect("lock").push(format!("authorize: {problems:?}"));
        return (AxStatus::BAD_REQUEST, "bad authorization request").into_response();
    }
    let code = B64URL.encode(rand_bytes());
    let user = s.next.lock().expect("lock").clone();
    let grant =
        Grant { nonce: get("nonce"), challenge: get("code_challenge"), redirect_uri: get("redirect_uri"), user };
    s.codes.lock().expect("lock").insert(code.clone(), grant);
    let back = format!("{}?code={code}&state={}", get("redirect_uri"), get("state"));
    Redirect::to(&back).into_response()
}

fn rand_bytes() -> [u8; 24] {
    let mut b = [0u8; 24];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).expect("random");
    b
}

/// Exchanges a code for an ID token, checking the PKCE verifier and the client's secret.
async fn token(
    State(s): State<Arc<IdpState>>,
    headers: axum::http::HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let refuse = |why: String| {
        s.refusals.lock().expect("lock").push(format!("token: {why}"));
        (AxStatus::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response()
    };
    let basic =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return refuse("client authentication".into());
    }
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let Some(grant) = s.codes.lock().expect("lock").remove(&get("code")) else {
        return refuse("unknown code".into());
    };
    if get("grant_type") != "authorization_code" || get("redirect_uri") != grant.redirect_uri {
        return refuse("grant_type or redirect_uri".into());
    }
    if B64URL.encode(sha2::Sha256::digest(get("code_verifier").as_bytes())) != grant.challenge {
        return refuse("the PKCE verifier does not match the challenge".into());
    }
    let now = s.clock.lock().expect("lock").now().timestamp();
    let u = &grant.user;
    let mut claims = json!({
        "iss": s.url, "aud": CLIENT_ID, "sub": u.sub, "name": u.name, "nonce": grant.nonce,
        "iat": now, "exp": now + u.expires_in, "roles": u.roles,
    });
    if let Some(p) = u.provider {
        claims["provider_org"] = p.into();
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some("test-key".into());
    let key = jsonwebtoken::EncodingKey::from_ec_der(&s.pkcs8);
    let id_token = jsonwebtoken::encode(&header, &claims, &key).expect("sign");
    Json(json!({"access_token": "unused", "token_type": "Bearer", "expires_in": 300, "id_token": id_token}))
        .into_response()
}

/// A hub with the console, decisions for two providers delivered, one message rejected.
struct Scene {
    hub: TestHub,
    idp: Idp,
    _phoniro: MockServer,
    /// (decision id, client) for PROVIDER_A and PROVIDER_B.
    a: (String, String),
    b: (String, String),
    /// The orders of `a`'s and `b`'s decisions, from their receipts.
    orders: [String; 2],
}

async fn scene() -> Scene {
    let phoniro = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&phoniro).await;
    let clock_for_idp = Clock::starting_at(test_instant());
    let idp = Idp::start(clock_for_idp).await;
    let o = Options { sections: idp.section(), ..Options::default() };
    let hub = TestHub::start_with(&phoniro.uri(), &phoniro.uri(), o).await;
    *idp.state.clock.lock().expect("lock") = hub.clock.clone();
    let pnrs = test_pnrs();
    let cm = hub.system_token("combine");
    let a = ("DEC-CONSOLE-A".to_owned(), pnrs[310].clone());
    let b = ("DEC-CONSOLE-B".to_owned(), pnrs[311].clone());
    let mut orders = Vec::new();
    for ((id, pnr), org) in [(&a, PROVIDER_A), (&b, PROVIDER_B)] {
        let (s, body) = hub.post("combine", decision_xml(id, pnr, org, None), Some(&cm)).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{body}");
        orders.push(body["order_id"].as_str().expect("an order id").to_owned());
    }
    let (s, _) = hub.post("combine", "<broken", Some(&cm)).await;
    assert!(s.is_client_error());
    for order in &orders {
        hub.wait_for_order_status(order, "delivered").await;
    }
    let orders = [orders[0].clone(), orders[1].clone()];
    Scene { hub, idp, _phoniro: phoniro, a, b, orders }
}

// ---------------------------------------------------------------------------------------
// HTTP, cookies by hand

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

/// The value a response's `Set-Cookie` gives `name`.
fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    let prefix = format!("{name}=");
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.split(';').next()?.trim().strip_prefix(prefix.as_str()).map(str::to_owned))
}

fn error_code(resp: &reqwest::Response) -> String {
    resp.headers().get("x-carehub-error").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
}

/// Starts a sign-in as a browser would (sending `cookie` along, if any) and follows it to
/// the identity provider and back: the callback URL and the login cookie the hub set.
async fn start_sign_in(sc: &Scene, user: User, cookie: Option<&str>) -> (String, String) {
    sc.idp.sign_in_as(user);
    let http = no_redirects();
    let mut req = http.get(format!("{}/console/login", sc.hub.url));
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    let start = req.send().await.expect("login");
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let login = set_cookie(&start, "carehub_console_login").expect("a login cookie");
    let to_idp = location(&start);
    assert!(to_idp.starts_with(sc.idp.url()), "{to_idp}");
    let back = http.get(&to_idp).send().await.expect("authorize");
    assert_eq!(back.status(), StatusCode::SEE_OTHER, "{:?}", sc.idp.refusals());
    let callback = location(&back);
    assert!(callback.starts_with(&format!("{}/console/callback?", sc.hub.url)), "{callback}");
    (callback, login)
}

async fn finish_sign_in(callback: &str, cookie: &str) -> reqwest::Response {
    no_redirects().get(callback).header(COOKIE, cookie).send().await.expect("callback")
}

/// A signed-in session: its cookie header and CSRF token.
struct Signed {
    cookie: String,
    csrf: String,
}

async fn sign_in(sc: &Scene, user: User) -> Signed {
    let (callback, login) = start_sign_in(sc, user, None).await;
    let done = finish_sign_in(&callback, &format!("carehub_console_login={login}")).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "{}", error_code(&done));
    assert_eq!(location(&done), "/console/");
    let cookie = format!("carehub_console={}", set_cookie(&done, "carehub_console").expect("a session cookie"));
    let (status, page) = page(sc, &cookie, "/console/").await;
    assert_eq!(status, StatusCode::OK);
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    let csrf = page[at..].split('"').next().expect("its value").to_owned();
    Signed { cookie, csrf }
}

async fn page(sc: &Scene, cookie: &str, path: &str) -> (StatusCode, String) {
    let r = no_redirects().get(format!("{}{path}", sc.hub.url)).header(COOKIE, cookie).send().await.expect("get");
    let status = r.status();
    (status, r.text().await.expect("body"))
}

async fn post_form(
    sc: &Scene,
    cookie: &str,
    path: &str,
    form: &[(&str, &str)],
    origin: Option<&str>,
) -> reqwest::Response {
    let mut req = no_redirects().post(format!("{}{path}", sc.hub.url)).header(COOKIE, cookie).form(form);
    if let Some(o) = origin {
        req = req.header(ORIGIN, o);
    }
    req.send().await.expect("post")
}

#[tokio::test]
async fn sessions_are_new_at_sign_in_and_posts_need_the_sessions_token_and_origin() {
    let sc = scene().await;
    let hub = &sc.hub;

    // Session fixation: a cookie set before sign-in is never promoted.
    let planted = "carehub_console=chosen-by-an-attacker";
    let (callback, login) = start_sign_in(&sc, auditor(), Some(planted)).await;
    let done = finish_sign_in(&callback, &format!("{planted}; carehub_console_login={login}")).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER, "{}", error_code(&done));
    let id = set_cookie(&done, "carehub_console").expect("a new session cookie");
    assert_ne!(id, "chosen-by-an-attacker");
    assert!(id.len() >= 43, "{id}");
    let line = done
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("carehub_console="))
        .expect("the session's Set-Cookie")
        .to_owned();
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/console"] {
        assert!(line.contains(attribute), "{line}");
    }
    let (status, _) = page(&sc, planted, "/console/").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the planted cookie is not a session");
    let (status, body) = page(&sc, &format!("carehub_console={id}"), "/console/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Anna Granskare"), "{body}");

    // A callback is used once, and only by the browser that started the sign-in.
    let again = finish_sign_in(&callback, &format!("carehub_console_login={login}")).await;
    assert_eq!((again.status(), error_code(&again).as_str()), (StatusCode::UNAUTHORIZED, "SIGN_IN_FAILED"));
    let (callback, _) = start_sign_in(&sc, auditor(), None).await;
    let elsewhere = finish_sign_in(&callback, "carehub_console_login=another-browser").await;
    assert_eq!((elsewhere.status(), error_code(&elsewhere).as_str()), (StatusCode::UNAUTHORIZED, "SIGN_IN_FAILED"));
    assert!(set_cookie(&elsewhere, "carehub_console").is_none());

    // CSRF: the session's token and the hub's own origin, or 403 with a code.
    let s = sign_in(&sc, auditor()).await;
    let own = hub.url.as_str();
    let cases: [(Fields, Option<&str>, &str); 4] = [
        (&[], Some(own), "CSRF_TOKEN_INVALID"),
        (&[("csrf", "not-the-sessions-token")], Some(own), "CSRF_TOKEN_INVALID"),
        (&[("csrf", s.csrf.as_str())], Some("http://evil.example"), "ORIGIN_REFUSED"),
        (&[("csrf", s.csrf.as_str())], None, "ORIGIN_REFUSED"),
    ];
    for (form, origin, code) in cases {
        let r = post_form(&sc, &s.cookie, "/console/logout", form, origin).await;
        assert_eq!((r.status(), error_code(&r).as_str()), (StatusCode::FORBIDDEN, code), "{form:?} {origin:?}");
        let text = r.text().await.expect("body");
        assert!(text.contains(code), "the page names the code: {text}");
    }
    let r = post_form(
        &sc,
        &s.cookie,
        "/console/proof/bundle",
        &[("csrf", "forged"), ("from", "2026-11-01"), ("to", "2026-12-31")],
        Some(own),
    )
    .await;
    assert_eq!((r.status(), error_code(&r).as_str()), (StatusCode::FORBIDDEN, "CSRF_TOKEN_INVALID"));
    let (status, _) = page(&sc, &s.cookie, "/console/").await;
    assert_eq!(status, StatusCode::OK, "refused posts leave the session alone");
    // The session's token from the other session does not do either.
    let r =
        post_form(&sc, &format!("carehub_console={id}"), "/console/logout", &[("csrf", s.csrf.as_str())], Some(own))
            .await;
    assert_eq!(error_code(&r), "CSRF_TOKEN_INVALID");
    // With both, sign-out works and the session is gone.
    let r = post_form(&sc, &s.cookie, "/console/logout", &[("csrf", s.csrf.as_str())], Some(own)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(set_cookie(&r, "carehub_console").as_deref(), Some(""));
    let (status, _) = page(&sc, &s.cookie, "/console/").await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // An ID token already expired by the hub's clock is refused; so is a person without a role.
    let expired = User { expires_in: -3600, ..auditor() };
    let (callback, login) = start_sign_in(&sc, expired, None).await;
    let r = finish_sign_in(&callback, &format!("carehub_console_login={login}")).await;
    assert_eq!((r.status(), error_code(&r).as_str()), (StatusCode::UNAUTHORIZED, "ID_TOKEN_EXPIRED"));
    assert!(set_cookie(&r, "carehub_console").is_none());
    let nobody = User { roles: vec!["reader"], ..auditor() };
    let (callback, login) = start_sign_in(&sc, nobody, None).await;
    let r = finish_sign_in(&callback, &format!("carehub_console_login={login}")).await;
    assert_eq!((r.status(), error_code(&r).as_str()), (StatusCode::FORBIDDEN, "NO_CONSOLE_ROLE"));
    // Staff without their provider's organisation number get no session either.
    let unscoped = User { provider: None, ..provider_staff(PROVIDER_B) };
    let (callback, login) = start_sign_in(&sc, unscoped, None).await;
    let r = finish_sign_in(&callback, &format!("carehub_console_login={login}")).await;
    assert_eq!(error_code(&r), "NO_CONSOLE_ROLE");

    assert!(sc.idp.refusals().is_empty(), "the hub spoke OpenID Connect with PKCE: {:?}", sc.idp.refusals());
}

/// A form's fields.
type Fields<'a> = &'a [(&'a str, &'a str)];

/// The message-log entry of a decision as received.
async fn decision_entry(sc: &Scene, client: &str) -> i64 {
    let (_, page) = sc.hub.get(&format!("/v1/messages?client={client}&type=decision"), Some(&sc.hub.admin())).await;
    page["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["direction"] == "in"))
        .and_then(|m| m["id"].as_i64())
        .unwrap_or_else(|| panic!("a decision for {client}: {page}"))
}

async fn access_log(sc: &Scene, subject: &str) -> Vec<Value> {
    let (status, page) = sc.hub.get(&format!("/v1/access-log?subject={subject}"), Some(&sc.hub.admin())).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["entries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn console_reads_are_in_the_access_log_and_a_providers_staff_see_only_their_own() {
    let sc = scene().await;
    let (a_decision, a_client) = &sc.a;
    let (b_decision, b_client) = &sc.b;
    let a_entry = decision_entry(&sc, a_client).await;
    let b_entry = decision_entry(&sc, b_client).await;

    let s = sign_in(&sc, auditor()).await;
    let (status, body) = page(&sc, &s.cookie, &format!("/console/?client={a_client}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(a_decision.as_str()) && !body.contains(b_decision.as_str()), "{body}");
    let (status, body) = page(&sc, &s.cookie, &format!("/console/messages/{a_entry}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Kanonisk form") && body.contains(a_client.as_str()), "{body}");
    // Searches by error code find the rejected message, and only it.
    let (_, body) = page(&sc, &s.cookie, "/console/?error_code=MALFORMED_PAYLOAD").await;
    assert!(body.contains("1 träffar") && body.contains("MALFORMED_PAYLOAD"), "{body}");
    let (status, body) = page(&sc, &s.cookie, "/console/?client=19121212-1213").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.contains("INVALID_PERSONAL_IDENTITY_NUMBER"), "{body}");

    // Each read is in the access log, with the person, the role and the clients shown.
    let log = access_log(&sc, "anna.granskare").await;
    let search = log
        .iter()
        .find(|e| e["query"]["endpoint"] == "GET /console/" && e["query"]["filters"]["client"] == a_client.as_str())
        .unwrap_or_else(|| panic!("the search: {log:?}"));
    assert_eq!(search["role"], "auditor");
    assert_eq!(search["clients"], json!([a_client]));
    assert!(search["entries"].as_array().expect("entries").contains(&json!(a_entry)), "{search}");
    let opened = log
        .iter()
        .find(|e| e["query"]["endpoint"] == "GET /console/messages/{id}")
        .unwrap_or_else(|| panic!("the message opened: {log:?}"));
    assert_eq!(opened["clients"], json!([a_client]));
    assert!(opened["entries"].as_array().expect("entries").contains(&json!(a_entry)));
    // And found by the client, as an auditor asks "who has looked at this client".
    let (_, by_client) = sc.hub.get(&format!("/v1/access-log?client={a_client}"), Some(&sc.hub.admin())).await;
    assert!(by_client["entries"].as_array().expect("entries").iter().any(|e| e["subject"] == "anna.granskare"));
    // The console's own page shows it too (and records that).
    let (_, body) = page(&sc, &s.cookie, &format!("/console/access?client={a_client}")).await;
    assert!(body.contains("anna.granskare") && body.contains("GET /console/messages/{id}"), "{body}");
    let at = |endpoint: &str| body.find(&format!("<code class=\"endpoint\">{endpoint}</code>"));
    let (opened_at, searched_at) = (at("GET /console/messages/{id}"), at("GET /console/"));
    assert!(opened_at.is_some() && searched_at.is_some(), "{body}");
    assert!(opened_at < searched_at, "newest first: the message was opened after the search: {body}");

    // A provider's staff: only their provider's messages and orders, whatever they ask.
    let staff = sign_in(&sc, provider_staff(PROVIDER_B)).await;
    let (status, body) = page(&sc, &staff.cookie, "/console/?go=1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(b_decision.as_str()), "{body}");
    assert!(!body.contains(a_decision.as_str()) && !body.contains(a_client.as_str()), "{body}");
    assert!(!body.contains("MALFORMED_PAYLOAD"), "a rejected message names no provider: {body}");
    let (_, body) = page(&sc, &staff.cookie, &format!("/console/?client={a_client}")).await;
    assert!(body.contains("0 träffar"), "{body}");
    for (path, want) in [
        (format!("/console/?provider={PROVIDER_A}"), StatusCode::FORBIDDEN),
        (format!("/console/messages/{a_entry}"), StatusCode::FORBIDDEN),
        (format!("/console/messages/{a_entry}/raw"), StatusCode::FORBIDDEN),
        (format!("/console/orders/{}", sc.orders[0]), StatusCode::FORBIDDEN),
        ("/console/access".to_owned(), StatusCode::FORBIDDEN),
        ("/console/proof".to_owned(), StatusCode::FORBIDDEN),
        (format!("/console/messages/{b_entry}"), StatusCode::OK),
        (format!("/console/orders/{}", sc.orders[1]), StatusCode::OK),
    ] {
        let (status, body) = page(&sc, &staff.cookie, &path).await;
        assert_eq!(status, want, "{path}: {body}");
        if want == StatusCode::OK {
            assert!(!body.contains(a_client.as_str()), "{path}: {body}");
        }
    }
    let log = access_log(&sc, "bo.utforare").await;
    assert!(!log.is_empty());
    for e in &log {
        assert_eq!(e["role"], "provider", "{e}");
        assert_eq!(e["query"]["filters"]["provider_scope"], PROVIDER_B, "{e}");
        let clients = e["clients"].as_array().expect("clients");
        assert!(
            clients.iter().all(|c| c != a_client.as_str() || e["query"]["filters"]["client"] == a_client.as_str()),
            "{e}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// In Chromium

/// Waits for a finished download in `dir` (Chromium writes `*.crdownload` until done).
async fn downloaded(dir: &std::path::Path) -> std::path::PathBuf {
    eventually("the bundle is downloaded", || async {
        std::fs::read_dir(dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
    })
    .await
}

#[tokio::test]
async fn an_auditor_and_a_providers_staff_use_the_console_in_chromium() {
    let sc = scene().await;
    let hub = &sc.hub;
    let (a_decision, a_client) = &sc.a;
    let (b_decision, _) = &sc.b;
    let dir = tempfile::tempdir().expect("dir");
    let b = Browser::start(dir.path()).await;

    // Sign in: the console sends a stranger to its sign-in page, the button to the identity
    // provider, which sends the browser straight back signed in.
    b.goto(&format!("{}/console/", hub.url)).await;
    assert!(b.url().await.ends_with("/console/signin"));
    let signin = b.find("#signin").await;
    b.click_to_next_page(&signin).await;
    let who = b.text_of("#who").await;
    assert!(who.contains("Anna Granskare") && who.contains("granskare"), "{who}");

    // Search a client.
    let field = b.find("#f-client").await;
    b.type_into(&field, a_client).await;
    let button = b.find("#search-button").await;
    b.click_to_next_page(&button).await;
    let results = b.text_of("#results").await;
    assert!(results.contains(a_decision.as_str()), "{results}");

    // Open a message: the decision as received.
    let decision_row = b
        .script("return [...document.querySelectorAll('#results tr')].filter(r => r.textContent.includes('decision') && r.textContent.includes('in')).map(r => r.querySelector('a.message-link').getAttribute('href'))[0];")
        .await;
    let href = decision_row.as_str().expect("a decision's link").to_owned();
    b.goto(&format!("{}{href}", hub.url)).await;
    let payload = b.text_of("#payload").await;
    assert!(payload.contains(a_decision.as_str()), "{payload}");
    let canonical = b.text_of("#canonical").await;
    assert!(canonical.contains(a_decision.as_str()), "{canonical}");
    let raw = b.find("#raw-link").await;
    b.click_to_next_page(&raw).await;
    assert!(b.text_of("#hexdump").await.starts_with("00000000"));
    b.goto(&format!("{}{href}", hub.url)).await;

    // Follow the order's timeline.
    let order = b.find("dl.facts a.order-link").await;
    b.click_to_next_page(&order).await;
    assert_eq!(b.text_of("#order-status").await, "delivered");
    let steps = b.text_of("#steps").await;
    assert!(steps.contains("delivered to phoniro"), "{steps}");

    // The log's proof: the checkpoint, an entry's inclusion proof, and a bundle.
    b.goto(&format!("{}/console/proof?entry=1", hub.url)).await;
    assert!(b.text_of("#checkpoint").await.starts_with("carehub.test/log"));
    b.find("#proof-ok").await;
    let button = b.find("#bundle-button").await;
    b.click(&button).await;
    let file = downloaded(&dir.path().join("downloads")).await;
    let text = std::fs::read_to_string(&file).expect("the bundle");
    let header: Value = serde_json::from_str(text.lines().next().expect("a header")).expect("json");
    assert_eq!(header["format"], "carehub-audit-bundle/1");
    assert!(text.lines().count() > 3, "{text}");
    let verified = std::process::Command::new(env!("CARGO_BIN_EXE_carehub"))
        .args(["audit", "verify-bundle"])
        .arg(&file)
        .output()
        .expect("verify-bundle");
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stdout));

    // One's own reads, in the access log.
    b.goto(&format!("{}/console/access?subject=anna.granskare", hub.url)).await;
    let log = b.text_of("#access-log").await;
    for read in
        ["GET /console/", "GET /console/messages/{id}", "GET /console/orders/{id}", "POST /console/proof/bundle"]
    {
        assert!(log.contains(read), "{read} in {log}");
    }
    assert!(log.contains(a_client.as_str()), "{log}");
    assert_eq!(b.errors().await, Vec::<String>::new(), "no errors in the browser's console");

    // Sign out; the console is closed again.
    let out = b.find("#logout").await;
    b.click_to_next_page(&out).await;
    assert!(b.page_text().await.contains("Du är utloggad"));
    b.goto(&format!("{}/console/", hub.url)).await;
    assert!(b.url().await.ends_with("/console/signin"));

    // A provider's staff member sees their provider's data only, and no auditor's pages.
    sc.idp.sign_in_as(provider_staff(PROVIDER_B));
    let signin = b.find("#signin").await;
    b.click_to_next_page(&signin).await;
    assert!(b.text_of("#who").await.contains("Bo Utförare"));
    assert!(b.find_all("a[href='/console/access']").await.is_empty());
    let button = b.find("#search-button").await;
    b.click_to_next_page(&button).await;
    let results = b.text_of("#results").await;
    assert!(results.contains(b_decision.as_str()), "{results}");
    assert!(!results.contains(a_decision.as_str()) && !results.contains(a_client.as_str()), "{results}");
    b.goto(&format!("{}/console/orders/{}", hub.url, sc.orders[0])).await;
    assert_eq!(b.text_of("#error-code").await, "FORBIDDEN");
    let errors = b.errors().await;
    // The refused page's own 403 is the one thing Chromium reports.
    assert!(errors.iter().all(|e| e.contains("403")), "{errors:?}");
    b.quit().await;
    assert!(sc.idp.refusals().is_empty(), "{:?}", sc.idp.refusals());
    let _ = Duration::ZERO;
    let _ = Role::Auditor;
}
