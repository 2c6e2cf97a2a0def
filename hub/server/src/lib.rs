//! The `carehub` binary's library: everything the command line, the demo and the
//! integration tests share.
//!
//! # Layout
//! - [`config`]: `carehub.toml`, parsed and validated without IO, every error at once.
//! - [`auth`]: bearer tokens and roles; it knows nothing of HTTP.
//! - [`http`]: the HTTP API (axum): `app(state)`, its state, error answers and extractors,
//!   one module per resource, and the OpenAPI document.
//! - [`assemble`]: a validated configuration into a [`assemble::Runtime`]: store, systems,
//!   mappings, flows, delivery loop; and the mapping checks `carehub check` runs.
//! - [`run`]: serving a runtime on the caller's listener, and stopping it gracefully.
//! - [`accept`]: the accept loop for HTTP and HTTPS: timeouts, connection limit, draining.
//! - [`tls`]: HTTPS and systems authenticated by client certificates.
//! - [`cli`]: the commands: `serve`, `check`, `token`, `audit verify`, `replay`, `demo`, `bench`.
//! - [`demo`]: the demo municipality with in-process mock vendors.
//! - [`fixtures`]: a local OpenSSH server for the demo, the benchmarks and the tests.
//! - [`bench`](mod@bench): throughput and latency benchmarks.

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
