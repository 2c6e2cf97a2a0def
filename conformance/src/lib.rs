//! What a vendor runs before go-live: a mock hub to develop against, and a conformance run
//! whose report a municipality can accept (SPEC §10).
//!
//! Why a crate of its own: vendors are the hub's second kind of user, and this is their
//! product, not the hub's and not the project's tooling. It builds on the hub itself
//! (`carehub-server` assembles a real hub; the mapping files are the contract), so the mock
//! and the catalogue can never drift from what the hub does: a payload the mock accepts is
//! one the hub accepts, refused with the same code. It is not the devkit: the demo's mock
//! *vendors* play the other side and stay there; the tests run this crate's mock hub and
//! conformance run against them.
//!
//! # Layout
//! - [`exchange`]: what the mock saw on the wire (an [`exchange::Exchange`] with its
//!   problems), and what a scenario or a case may ask of the mock
//!   ([`exchange::Counterpart`]): the one contract between the mock hub and what drives it;
//! - [`mock`]: `carehub mock --vendor V`, a real hub on an embedded database with a clock the
//!   tester sets, state per business key, faults, and a journal of every exchange;
//! - `dropbox/`: the SFTP server the mock serves itself for the file-based vendors, so a
//!   vendor needs no sshd to test;
//! - `scenario/`: scenarios and conformance cases as data (steps, expectations, faults) and
//!   the engine that plays them against a [`exchange::Counterpart`];
//! - `report/`: the conformance report as HTML, JSON and JUnit XML;
//! - [`cli`]: `carehub conformance`'s arguments and its run against any counterpart.

pub mod cli;
pub mod dropbox;
pub mod exchange;
pub mod mock;
pub mod report;
pub mod scenario;
