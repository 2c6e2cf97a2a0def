//! carehub's engine: everything between a vendor's bytes and the store, with no HTTP server
//! and no vendor-specific code.
//!
//! What it is: the adapter contract every vendor integration follows, the one mapping
//! engine that reads `mappings/<vendor>/*.toml`, the flows that turn a decision into an
//! order and carry acknowledgements back, the one delivery loop for all outbound traffic,
//! the hash-chained message log and the store it lives in. What it is not: it does not
//! know how a vendor's bytes travel (that is `carehub-adapters`) nor how the hub is served
//! or configured (that is the `carehub` binary).
//!
//! # Layout
//! In the order a message travels: in through the adapter contract and the mapping engine,
//! through a flow that applies the rules, into the store and the log, out through delivery.
//! - [`adapter`]: the contract: [`adapter::System`], [`adapter::Transport`], errors that say
//!   whether a retry can help, the registry of configured systems.
//! - [`mapping`]: the one declarative mapping engine and its safe XML tree, so no vendor's
//!   format is written in code.
//! - [`peppol`]: the PEPPOL BIS 3 reader for invoices and credit notes, a standard format
//!   rather than a vendor's, so it is read here and not through a mapping file (writing
//!   PEPPOL is what the hub's counterparts do: the demo's writer is in `carehub-devkit`).
//! - [`flows`]: one room per flow (SPEC §4): [`flows::decision`] (decisions, orders and
//!   their acknowledgements; for now also [`flows::decision::Hub`] and its entry point
//!   [`flows::decision::Hub::receive`]), [`flows::visits`] and [`flows::invoice`].
//! - [`rules`]: what the flows judge by, pure: [`rules::visits`] (VIS001-VIS010),
//!   [`rules::invoices`] (INV001-INV007 and the SPEC §7 arithmetic), and [`rules::month`],
//!   the driver that gathers a month from the store and runs the invoice rules on it.
//! - [`followup`]: the monthly follow-up report (SPEC §4.4), computed from the store and
//!   rendered as HTML and tables.
//! - [`store`]: the [`store::Store`] trait, its contract tests and the SQLite backend; the
//!   only place that speaks SQL.
//! - [`log`]: the message log's hash chain (and, next, its Merkle tree), kept apart from
//!   the store so the chain is the same whatever the backend.
//! - [`delivery`]: traffic that does not arrive as a request: [`delivery::outbox`], the one
//!   delivery loop (retries, backoff, dead letters, replay), and [`delivery::poller`],
//!   reading the files systems leave in their inboxes (SFTP).
//! - [`metrics`]: Prometheus counters and gauges, what municipal IT alerts on.

pub mod adapter;
pub mod delivery;
pub mod flows;
pub mod followup;
pub mod log;
pub mod mapping;
pub mod metrics;
pub mod peppol;
pub mod rules;
pub mod store;
