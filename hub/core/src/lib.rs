//! carehub's engine: everything between a vendor's bytes and the store, with no HTTP server
//! and no vendor-specific code.
//!
//! What it is: the hub every payload enters by, the intake that decides once what a
//! payload is, the adapter contract every vendor integration follows, the one mapping
//! engine that reads `mappings/<vendor>/*.toml`, the flows that turn a decision into an
//! order and carry acknowledgements back, the one delivery loop for all outbound traffic,
//! the hash-chained message log and the store it lives in. What it is not: it does not
//! know how a vendor's bytes travel (that is `carehub-adapters`) nor how the hub is served
//! or configured (that is the `carehub` binary).
//!
//! # Layout
//! In the order a message travels: in through the hub and intake, through a flow that
//! applies the rules, into the store and the log, out through delivery. A Phoniro visit,
//! for example, enters at [`hub`] (pushed to [`hub::Hub::receive`], or pulled from the feed
//! by [`delivery::poller`]), is classified by [`intake`], taken by [`flows::visits`],
//! validated by [`rules::visits`] (VIS001-VIS010), and stored by [`store`].
//! - [`hub`]: [`hub::Hub`], the one way in: the entry points (a payload received, a file
//!   taken, a tag registered, dead letters replayed, visits forwarded), its parts private
//!   ([`hub::HubParts`] builds it), and the dispatch of what intake found to its flow.
//! - [`intake`]: what a payload is, decided once: a vendor message, CSV rows (visits, an
//!   invoice basis, other messages), or a PEPPOL document; and the types every flow and
//!   caller share about a message coming in ([`intake::Sender`], [`intake::Receipt`],
//!   [`intake::Rejection`]).
//! - [`flows`]: one room per flow (SPEC §4): [`flows::decision`] (a decision becomes an
//!   order), [`flows::answer`] (the provider's acknowledgement and plan notice carried
//!   back), [`flows::visits`] (visits validated, stored, forwarded), [`flows::invoice`]
//!   (invoices and credit notes verified), [`flows::tags`] (NFC tags registered), and
//!   [`flows::month`] (a month verified from the store, for `carehub verify`). The flows
//!   are `impl` blocks on a crate-internal `Flows` (the hub's parts) that the `Hub` owns,
//!   so the imports run one way, `hub` -> `flows` -> `intake`, and no flow names the `Hub`
//!   (see [`flows`] for why).
//! - [`rules`]: what the flows judge by, pure, reading neither the store nor the flows:
//!   [`rules::visits`] (VIS001-VIS010, and [`rules::visits::ingest`], a batch decided and
//!   stored through the [`rules::visits::VisitLedger`] port each store backend implements
//!   over its transaction), [`rules::invoices`] (INV001-INV007 and the SPEC §7
//!   arithmetic), and [`rules::month`] (a provider's whole month by the invoice rules).
//! - [`adapter`]: the contract: [`adapter::System`], [`adapter::Transport`], errors that say
//!   whether a retry can help, the registry of configured systems.
//! - [`mapping`]: the one declarative mapping engine and its safe XML tree, so no vendor's
//!   format is written in code.
//! - [`peppol`]: the PEPPOL BIS 3 reader for invoices and credit notes, a standard format
//!   rather than a vendor's, so it is read here and not through a mapping file (writing
//!   PEPPOL is what the hub's counterparts do: the demo's writer is in `carehub-devkit`).
//! - [`followup`]: the monthly follow-up report (SPEC §4.4), computed from the store and
//!   rendered as HTML and tables.
//! - [`store`]: the [`store::Store`] trait, its contract tests and one folder per backend
//!   ([`store::sqlite`]); the only place that speaks SQL.
//! - [`log`]: the message log's entry, hash chain and hashed time form, the access log's
//!   chain, the Merkle tree, signed checkpoints and the export bundle, kept apart from the
//!   store so they are the same whatever the backend.
//! - [`audit`]: the tree joined to the store: the checkpointer, proofs, the export.
//! - [`delivery`]: traffic that does not arrive as a request: [`delivery::outbox`], the one
//!   delivery loop (retries, backoff, dead letters, replay), and [`delivery::poller`],
//!   reading the files systems leave in their inboxes (SFTP) and the feeds they publish,
//!   handing both to the [`hub`]; [`delivery::lease`], which of several nodes on one
//!   database runs each poller, the visit forwarder and the checkpointer.
//! - [`metrics`]: Prometheus counters and gauges, what municipal IT alerts on.

pub mod adapter;
pub mod audit;
pub mod delivery;
pub mod flows;
pub mod followup;
pub mod hub;
pub mod intake;
pub mod log;
pub mod mapping;
pub mod metrics;
pub mod peppol;
pub mod rules;
pub mod store;
