//! Transports shared by vendors: how bytes travel, independent of what they say.

pub mod http;
pub mod oauth;
pub mod sftp;
pub mod soap;
