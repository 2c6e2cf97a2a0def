//! The HTTP API (SPEC §8): the router, its state and error answers, and one module per
//! resource.
//!
//! Every error is `{ "code", "message" }` with a code from [`ErrorCode`] that never changes
//! meaning; internal details are logged, never answered. [`app`] builds the router from a
//! state, so tests can drive it without a socket.
//!
//! # Layout
//! - [`state`]: [`AppState`], what every handler can reach. It lives here, not with the
//!   code that assembles it, so that the API imports nothing from `assemble` or `run`.
//! - [`error`]: [`ApiError`] and the `{code, message}` body, the HTTP status of each code,
//!   and the `Query`/`Path` extractors and parameter checks that refuse in that form.
//! - [`auth`](mod@auth): the `Caller` and `SystemCaller` extractors over the token logic
//!   of [`crate::auth`], and recording who read what.
//! - [`messages`]: a vendor's message in, its WSDL, the message log.
//! - [`orders`]: orders, a client's orders over time, and an order's trace.
//! - [`decisions`]: a decision as it stands, its versions and its orders.
//! - [`deviations`]: deviations and changes of need providers reported.
//! - [`tags`]: the tag registry.
//! - [`visits`]: visits and closing a month.
//! - [`invoices`]: an invoice's verification.
//! - [`reports`]: the monthly follow-up and the manual-registration share.
//! - [`deliveries`]: the outbox and replaying deliveries.
//! - [`ops`]: health, readiness, metrics, the OpenAPI document, verifying the chain.
//! - [`audit`](mod@audit): the access log, the message log's checkpoint and proofs.
//! - [`console`]: the auditors' web console at `/console` (HTML, in Swedish), its
//!   OpenID Connect sign-in and sessions; it reads through the store queries and the
//!   trace the resource modules use, and records its reads like them.
//!
//! Data flows one way: the resource modules use `state`, `error` and `auth`, which use no
//! resource module; `console` uses `orders` (an order's trace), nothing uses `console`
//! but the router; nothing here imports the code that assembles or runs the hub.

use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use carehub_model::ErrorCode;
use utoipa::OpenApi;

pub mod audit;
pub mod auth;
pub mod console;
pub mod decisions;
pub mod deliveries;
pub mod deviations;
pub mod error;
pub mod invoices;
pub mod messages;
pub mod ops;
pub mod orders;
pub mod reports;
pub mod state;
pub mod tags;
pub mod validate;
pub mod visits;

pub use error::{status_of, ApiError, ErrorBody};
pub use state::AppState;

use error::ErrorCodeSchema;

/// The router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/systems/{system}/messages", post(messages::post_message).get(messages::get_wsdl))
        .route("/v1/validate/{system}", post(validate::validate_payload))
        .route("/v1/messages", get(messages::list_messages))
        .route("/v1/messages/{id}", get(messages::get_message))
        .route("/v1/orders", get(orders::list_orders))
        .route("/v1/orders/{id}", get(orders::get_order))
        .route("/v1/orders/{id}/trace", get(orders::order_trace))
        .route("/v1/decisions/{id}", get(decisions::get_decision))
        .route("/v1/deviations", get(deviations::list_deviations))
        .route("/v1/tags", post(tags::post_tag).get(tags::list_tags))
        .route("/v1/visits", get(visits::list_visits))
        .route("/v1/visits/months/{month}/close", post(visits::close_month))
        .route("/v1/reports/manual-registrations", get(reports::manual_registrations))
        .route("/v1/reports/follow-up", get(reports::follow_up))
        .route("/v1/invoices/{id}/verification", get(invoices::invoice_verification))
        .route("/v1/deliveries", get(deliveries::list_deliveries))
        .route("/v1/deliveries/replay", post(deliveries::replay))
        .route("/v1/audit/verify", get(ops::audit_verify))
        .route("/v1/access-log", get(audit::access_log))
        .route("/v1/log/checkpoint", get(audit::checkpoint))
        .route("/v1/log/entries/{seq}/proof", get(audit::inclusion))
        .route("/v1/log/consistency", get(audit::consistency))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .merge(console::routes())
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts every answered request in the request-duration histogram, by its matched route
/// (never the raw path, which carries ids), method and status class.
async fn observe(State(state): State<AppState>, request: Request, next: axum::middleware::Next) -> Response {
    let route = request.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
    let method: &'static str = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PATCH" => "PATCH",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let in_flight = state.hub.metrics().request_in_flight();
    let response = next.run(request).await;
    drop(in_flight);
    state.hub.metrics().http_request(
        route.as_deref().unwrap_or("unmatched"),
        method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The OpenAPI document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "carehub", description = "The integration hub for Swedish municipal home care. Errors are {code, message} with stable codes."),
    paths(messages::post_message, messages::get_wsdl, validate::validate_payload, tags::post_tag, tags::list_tags, visits::list_visits, visits::close_month, reports::manual_registrations, reports::follow_up, invoices::invoice_verification, messages::list_messages, messages::get_message, orders::list_orders, orders::get_order, orders::order_trace, decisions::get_decision, deviations::list_deviations, deliveries::list_deliveries, deliveries::replay, ops::audit_verify, audit::access_log, audit::checkpoint, audit::inclusion, audit::consistency, ops::healthz, ops::readyz, ops::metrics),
    components(schemas(ErrorBody, ErrorCodeSchema, visits::Outcome, reports::ReportFormat, messages::ReceiptBody, validate::ValidationBody, tags::TagBody, tags::TagList, tags::TagRegistered, visits::VisitPage, reports::ManualReport, reports::ManualShareRow, messages::MessageView, messages::MessagePage, orders::OrderView, orders::OrderList, orders::Trace, orders::TraceStep, orders::OrderTerms, decisions::DecisionView, decisions::VersionView, decisions::DecisionOrder, deviations::ReportView, deviations::DeviationList, deliveries::DeliveryView, deliveries::DeliveryList, deliveries::ReplayRequest, ops::ChainView, audit::AccessPage, audit::CheckpointView)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;
