//! carehub's edge, as a library: it reads configuration, serves HTTP and runs the
//! product's commands; what a message is and what the hub does with it live in
//! `carehub_core` and `carehub_model`, below it.
//!
//! What it is not: an executable, nor home to the tooling. The `carehub` executable
//! (`hub/bin`) parses one command line made of [`cli::Command`] and the demo and benchmark
//! commands of `carehub-devkit`, which builds on this library; nothing here depends on the
//! devkit, so the product ships without mock vendors, benchmarks or test fixtures.
//!
//! # Layout
//! Data flows one way, from the top of this list down: the command line assembles and runs
//! the hub, the hub serves the API, and the API uses the token logic. No two modules import
//! each other.
//!
//! - [`cli`]: the `carehub` command line: the clap definitions and dispatch in `cli/mod.rs`,
//!   one file per command (`serve`, `check`, `token`, `audit verify`, `replay`,
//!   `tags import`, `verify`, `report`), as a clap [`cli::Command`] the executable flattens.
//! - [`config`]: `carehub.toml`, parsed and validated without IO, every error at once, so
//!   `carehub check` and `carehub serve` agree on what a good configuration is.
//! - [`assemble`]: a validated configuration into a [`assemble::Runtime`] (store, systems
//!   and their mappings, flows, delivery loop, the API's state), without serving; and the
//!   mapping checks `carehub check` runs. Apart from [`run`] so that a command can build a
//!   hub it never serves.
//! - [`run`]: serving a runtime on a listener the caller bound (tests bind `127.0.0.1:0`),
//!   starting the delivery loop and pollers, and stopping them gracefully.
//! - [`accept`]: the one accept loop for HTTP and HTTPS: timeouts, connection limit,
//!   draining. Apart from [`run`] because it knows connections, not the hub.
//! - [`tls`]: HTTPS and systems authenticated by client certificates.
//! - [`telemetry`]: operational logging (text or JSON on stderr), set up once per command;
//!   the metrics themselves are counted in `carehub_core::metrics`.
//! - [`http`]: the HTTP API (axum): `app(state) -> Router` so tests can drive it without a
//!   socket, its state, error answers and extractors, one module per resource, and the
//!   OpenAPI document, and the auditors' web console (`http::console`, docs/console.md).
//!   It imports nothing from [`assemble`] or [`run`].
//! - [`auth`]: bearer tokens and roles, issued by `carehub token` and checked by the API;
//!   it knows nothing of HTTP, so both can use it without a circle.

/// Prints a line to standard output, ignoring a closed pipe (`carehub ... | head` must not
/// panic).
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod accept;
pub mod assemble;
pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
pub mod run;
pub mod telemetry;
pub mod tls;
