//! Vendor systems for the conformance run to meet: for each of the hub's vendors, one that
//! does everything its profile asks, and deliberately broken ones that each get one thing
//! wrong (SPEC §10).
//!
//! Why they are here: `carehub conformance` is only worth a municipality's trust if it
//! passes a correct implementation on every case and catches each kind of mistake by the
//! case named for it and by nothing unrelated. These systems are what the tests hold the
//! catalogues to; they are not the product, and they talk to the mock hub only over the
//! vendors' real transports (HTTP, SOAP, SFTP), as a vendor's system would.
//!
//! # Layout
//! - [`http`]: the provider-side REST vendors (Phoniro, Lifecare Mobil Hemtjänst);
//! - [`case_management`]: the case-management vendors over REST and SOAP (Combine,
//!   Treserva, Lifecare);
//! - [`files`]: the SFTP vendors (Procapita, ParaGå), which use the mock's drop box.

pub mod case_management;
pub mod files;
pub mod http;
