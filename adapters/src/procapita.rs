//! Procapita (Tietoevry), a legacy case-management system that exchanges files over SFTP.
//!
//! In: Procapita writes decision files (XML, ISO-8859-1) to a folder on the municipality's
//! SFTP server; the hub polls it, takes complete files only, logs each, then archives it
//! (or moves it to the error folder with a reason file). Out: the hub uploads a receipt for
//! every file it read, and acknowledgements and plan notices, as XML files (ISO-8859-1)
//! into the outbox folder. The payloads are defined by `mappings/procapita/`; the folders
//! and the file conventions by [`crate::transport::sftp`].

use carehub_core::adapter::SystemRole;

pub const VENDOR: &str = "procapita";
pub const ROLE: SystemRole = SystemRole::CaseManagement;
