//! `carehub conformance` held to the project's own vendor systems (`carehub_devkit::
//! conformance`) over their real transports: a correct system of each vendor passes its
//! catalogue in full, and each deliberately broken one fails the case named for its mistake
//! and nothing unrelated. A module per kind of vendor.

mod case_management;
mod files;
mod http;
mod mtls;
