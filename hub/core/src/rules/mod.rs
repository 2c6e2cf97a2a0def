//! The rules: what makes a visit acceptable and an invoice right, pure functions over the
//! facts they are given.
//!
//! Nothing here reads a clock, a store or the network. [`visits`] holds the visit rules
//! VIS001-VIS010 (SPEC §6); [`invoices`] holds the invoice rules INV001-INV007 and the
//! integer arithmetic of SPEC §7 (granted, performed and invoiced minutes, tolerance bands,
//! one rounding per figure); [`month`] runs the invoice rules over a whole provider's month;
//! [`life`] works out what a later version of a decision does to its orders (SPEC §4.4).
//! The flows gather the facts (from the store) and call these rules
//! ([`crate::flows::month`] is the month's driver); the rules import neither the flows nor
//! the store, so the same facts always give the same verdict.

pub mod invoices;
pub mod life;
pub mod month;
pub mod visits;
