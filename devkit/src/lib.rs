//! carehub's tooling: what is not the product but runs it, measures it and stands in for
//! the systems around it.
//!
//! What it is: the demo municipality (`carehub demo`) with its in-process mock vendors,
//! the benchmarks behind BENCHMARKS.md (`carehub bench`) with their seeds, a writer of
//! PEPPOL invoices for the demo and the tests to send, and a local OpenSSH server for the
//! SFTP vendors. What it is not: the product. Nothing in `carehub-server`,
//! `carehub-core`, `carehub-model` or `carehub-adapters` depends on it, so a change here
//! cannot change what the hub does, and the hub's library carries no mock vendors, no
//! benchmark seeds and no test fixtures.
//!
//! Why a crate of its own rather than modules of the server: the tooling drives the real
//! hub from outside, through the server's `assemble` and `run` and the public API over
//! loopback, exactly as a municipality's systems do; as a separate crate it can only use
//! what the product makes public, so the demo and the benchmarks show the product as it
//! is. The `carehub` executable (`hub/bin`) joins both command lines; the integration
//! tests use [`sshd`] and [`peppol_write`] from here.
//!
//! # Layout
//! - [`demo`]: `carehub demo`, a month of a municipality's decisions, visits and invoices
//!   played end to end, cut into named steps over one scenario (its providers, clients and
//!   month). Its mock vendors ([`demo::vendors`]) are a piece of their own, so a mock hub
//!   for vendors can reuse them; [`demo::visits`] plays the month of visits and
//!   [`demo::invoices`] the providers' invoices.
//! - [`bench`](mod@bench): `carehub bench`, the throughput, latency and month-verification
//!   benchmarks ([`bench::visits`], [`bench::verify`], [`bench::nodes`]) over a shared harness
//!   ([`bench::harness`]: the clock and the closed loop). Their seeds load millions of rows
//!   through the store's documented bulk loader (`carehub_core::store::sqlite::bulk`), so no SQL is
//!   written here.
//! - [`conformance`]: vendor systems for `carehub conformance` to meet, correct and
//!   deliberately broken, one module per kind of vendor.
//! - [`peppol_write`]: minimal home-care PEPPOL BIS 3 invoices and credit notes, as the
//!   demo's providers and the tests send them. The hub only reads PEPPOL; writing it is
//!   what its counterparts do.
//! - [`sshd`]: a real OpenSSH server on 127.0.0.1 with fresh keys, for the SFTP vendors of
//!   the demo, the SFTP benchmark and the tests.

/// Prints a line to standard output, ignoring a closed pipe: the server's `out!`.
macro_rules! out {
    ($($arg:tt)*) => { carehub_server::out!($($arg)*) };
}

pub mod bench;
pub mod conformance;
pub mod demo;
pub mod peppol_write;
pub mod sshd;
