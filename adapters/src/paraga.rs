//! ParaGå, Stockholm's time-registration system, over SFTP with CSV files.
//!
//! Out: the hub uploads orders as CSV files (`;`, Windows-1252, Swedish headers, one row
//! per service) into the provider's outbox folder. In: ParaGå leaves CSV files of order
//! confirmations and plan notices in the inbox; the hub takes them row by row, each row
//! its own logged message, a bad row refused with its line number without holding up the
//! others. The payloads are defined by `mappings/paraga/`; folders and file conventions by
//! [`crate::transport::sftp`].

use carehub_core::adapter::SystemRole;

pub const VENDOR: &str = "paraga";
pub const ROLE: SystemRole = SystemRole::ProviderSystem;
