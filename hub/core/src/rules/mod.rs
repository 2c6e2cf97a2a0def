//! The rules: what makes a visit acceptable and an invoice right, pure functions over the
//! facts they are given.
//!
//! Nothing here reads a clock, a store or the network except [`month`], the driver that
//! gathers a month's facts from the store provider by provider and runs the invoice rules on
//! them. [`visits`] holds the visit rules VIS001-VIS010 (SPEC §6); [`invoices`] holds the
//! invoice rules INV001-INV007 and the integer arithmetic of SPEC §7 (granted, performed and
//! invoiced minutes, tolerance bands, one rounding per figure). The flows call these rules;
//! the rules call nothing above them, so the same facts always give the same verdict.

pub mod invoices;
pub mod month;
pub mod visits;
