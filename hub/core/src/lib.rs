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
//! - [`adapter`]: the contract: [`adapter::System`], [`adapter::Transport`], errors that say
//!   whether a retry can help, the registry of configured systems.
//! - [`mapping`]: the declarative mapping engine and its safe XML tree.
//! - [`flows`]: one room per flow (SPEC §4): [`flows::decision`] (decisions, orders and
//!   their acknowledgements; for now also [`flows::decision::Hub`] and its entry point
//!   [`flows::decision::Hub::receive`]), [`flows::visits`] and [`flows::invoice`].
//! - [`delivery`]: traffic in and out that is not a request: [`delivery::outbox`], the one
//!   delivery loop (retries, backoff, dead letters, replay), and [`delivery::poller`],
//!   reading the files systems leave in their inboxes (SFTP).
//! - [`store`]: the [`store::Store`] trait and the SQLite backend; [`log`]: the hash chain.
//! - [`metrics`]: Prometheus counters and gauges.
//! - [`rules`]: the rules, pure: [`rules::visits`] (VIS001-VIS010), [`rules::invoices`]
//!   (INV001-INV007 and the SPEC §7 arithmetic) and [`rules::month`], the driver that
//!   verifies a whole month from the store.

pub mod adapter;
pub mod delivery;
pub mod flows;
pub mod followup;
pub mod log;
pub mod mapping;
pub mod metrics;
pub mod peppol;
pub mod peppol_write;
pub mod rules;
pub mod store;
