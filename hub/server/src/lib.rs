//! The `carehub` binary's library: everything the command line, the demo and the
//! integration tests share. It is the edge of the system: it reads configuration, serves
//! HTTP and runs commands; what a message is and what the hub does with it live in
//! `carehub_core` and `carehub_model`, below it.
//!
//! # Layout
//! Data flows one way, from the top of this list down: the command line assembles and runs
//! the hub, the hub serves the API, and the API uses the token logic. No two modules import
//! each other.
//!
//! - [`cli`]: the `carehub` command line: the clap definitions and dispatch in `cli/mod.rs`,
//!   one file per command (`serve`, `check`, `token`, `audit verify`, `replay`,
//!   `tags import`, `verify`, `report`); `demo` and `bench` are dispatched to their modules.
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
//! - [`http`]: the HTTP API (axum): `app(state) -> Router` so tests can drive it without a
//!   socket, its state, error answers and extractors, one module per resource, and the
//!   OpenAPI document. It imports nothing from [`assemble`] or [`run`].
//! - [`auth`]: bearer tokens and roles, issued by `carehub token` and checked by the API;
//!   it knows nothing of HTTP, so both can use it without a circle.
//! - [`demo`]: the demo municipality with in-process mock vendors (`carehub demo`).
//! - [`fixtures`]: a local OpenSSH server for the demo, the benchmarks and the tests.
//! - [`bench`](mod@bench), [`bench_verify`], [`bench_visits`]: the throughput, latency and
//!   month-verification benchmarks behind BENCHMARKS.md (`carehub bench`).

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
pub mod bench;
pub mod bench_verify;
pub mod bench_visits;
pub mod cli;
pub mod config;
pub mod demo;
mod demo_invoices;
pub mod fixtures;
pub mod http;
pub mod run;
pub mod tls;
