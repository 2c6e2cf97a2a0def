//! SFTP, for systems that exchange files (Procapita, ParaGå).
//!
//! `ssh2` is blocking, so every operation runs on tokio's blocking pool. One connection per
//! system is kept and reused; a session error drops it and the operation is tried once on
//! a new connection, so a server that restarted between polls is simply reconnected.
//!
//! Security: the server's host key is pinned by its SHA-256 fingerprint (as `ssh-keygen -l`
//! prints it); an unknown key is refused before anything is sent. Login is by key only.
//!
//! Conventions (the vendor profiles document them for producers):
//! - A file is complete when it has its final name. Producers upload under a temporary name
//!   (`*.part`, `*.tmp`, `*.filepart`, or a leading `.`) and rename when done; the hub never
//!   reads such names. The hub uploads the same way: `.<name>.part`, then a rename.
//! - Taken files move to the archive folder, refused ones to the error folder with a
//!   `<name>.reason.txt` beside them; both get a time prefix so names never collide.
//! - Outbound files are named `<endpoint>-<idempotency key>.<ext>`: a retry rewrites the
//!   same file, never a second one. An endpoint with `{date}` names a daily file instead
//!   (CSV): each message's rows are added to the day's file, rows already there are not
//!   added again, and the file is rewritten atomically.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use carehub_core::adapter::{DeliveryError, DeliveryReceipt, Envelope, Inbox, Transport};
use carehub_model::Clock;
use serde::Deserialize;
use ssh2::{ErrorCode, FileStat, HashType, Session, Sftp};

fn default_port() -> u16 {
    22
}
fn default_poll() -> u64 {
    60
}
fn default_timeout() -> u64 {
    15
}
fn dir(name: &str) -> String {
    name.to_owned()
}

/// `[[systems]]` keys for a system reached over SFTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftpConfig {
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    pub username: String,
    /// The hub's private key (OpenSSH or PEM), relative to the configuration file.
    pub private_key: PathBuf,
    /// The server's host key fingerprint, `SHA256:...` as `ssh-keygen -lf <key>.pub` prints it.
    pub host_key_sha256: String,
    /// Where the system leaves files for the hub.
    #[serde(default = "inbox_dir")]
    pub inbox: String,
    /// Where the hub moves files it took.
    #[serde(default = "archive_dir")]
    pub archive: String,
    /// Where the hub moves files it refused, with a reason file beside each.
    #[serde(default = "error_dir")]
    pub error: String,
    /// Where the hub leaves files for the system.
    #[serde(default = "outbox_dir")]
    pub outbox: String,
    /// Seconds between polls of the inbox.
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    /// Seconds a connection or an operation may take.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn inbox_dir() -> String {
    dir("inbox")
}
fn archive_dir() -> String {
    dir("archive")
}
fn error_dir() -> String {
    dir("error")
}
fn outbox_dir() -> String {
    dir("outbox")
}

impl SftpConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.host.trim().is_empty() {
            p.push("host must not be empty".into());
        }
        if !self.host_key_sha256.starts_with("SHA256:") || self.host_key_sha256.len() < 20 {
            p.push("host_key_sha256 must be the server's key fingerprint, SHA256:... (ssh-keygen -lf key.pub)".into());
        }
        if self.poll_seconds == 0 || self.timeout_seconds == 0 {
            p.push("poll_seconds and timeout_seconds must be positive".into());
        }
        p
    }

    /// Resolves a relative `private_key` against the configuration file's folder.
    pub fn relative_to(mut self, base: &Path) -> Self {
        if self.private_key.is_relative() {
            self.private_key = base.join(&self.private_key);
        }
        self
    }
}

/// Why an SFTP operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    #[error("cannot connect to {0}")]
    Connect(String),
    #[error("the server's host key is {got}, not the configured {expected}: refused (a changed server, or someone in between)")]
    HostKey { expected: String, got: String },
    #[error("login as {user} with {key} refused: {why}")]
    Login { user: String, key: String, why: String },
    #[error("{0}")]
    Io(String),
}

impl From<SftpError> for DeliveryError {
    fn from(e: SftpError) -> Self {
        match e {
            // Configuration problems: retrying cannot help until someone fixes them.
            SftpError::HostKey { .. } | SftpError::Login { .. } => DeliveryError::permanent(e.to_string()),
            other => DeliveryError::transient(other.to_string()),
        }
    }
}

struct Connection {
    // Keeps the session (and its socket) alive as long as the SFTP channel.
    _session: Session,
    sftp: Sftp,
}

/// One SFTP server, its connection, and the folders the hub uses on it.
pub struct SftpClient {
    config: SftpConfig,
    connection: Mutex<Option<Connection>>,
    /// Held while a daily file is read, extended and rewritten, so that two deliveries
    /// never lose each other's rows.
    appends: Mutex<()>,
    /// Dates the daily files and stamps archived names.
    clock: Clock,
}

impl std::fmt::Debug for SftpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SftpClient").field("host", &self.config.host).field("port", &self.config.port).finish()
    }
}

fn is_temporary(name: &str) -> bool {
    name.starts_with('.') || [".part", ".tmp", ".filepart", ".reason.txt"].iter().any(|s| name.ends_with(s))
}

/// A name that is safe as one path component on any server.
pub fn safe_name(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

/// A read or write that failed mid-transfer: treated as a session error, so the operation
/// is tried again on a new connection.
fn transfer_failed(_: std::io::Error) -> ssh2::Error {
    ssh2::Error::new(ErrorCode::Session(-7), "the transfer failed")
}

fn io(e: impl std::fmt::Display) -> SftpError {
    SftpError::Io(e.to_string())
}

impl SftpClient {
    pub fn new(config: SftpConfig, clock: Clock) -> Self {
        SftpClient { config, connection: Mutex::new(None), appends: Mutex::new(()), clock }
    }

    pub fn config(&self) -> &SftpConfig {
        &self.config
    }

    fn connect(&self) -> Result<Connection, SftpError> {
        let c = &self.config;
        let target = format!("{}:{}", c.host, c.port);
        let timeout = Duration::from_secs(c.timeout_seconds);
        let addr = target
            .to_socket_addrs()
            .map_err(|e| SftpError::Connect(format!("{target}: {e}")))?
            .next()
            .ok_or_else(|| SftpError::Connect(format!("{target}: no address")))?;
        let tcp =
            TcpStream::connect_timeout(&addr, timeout).map_err(|e| SftpError::Connect(format!("{target}: {e}")))?;
        let _ = tcp.set_read_timeout(Some(timeout));
        let _ = tcp.set_write_timeout(Some(timeout));
        let mut session = Session::new().map_err(io)?;
        session.set_tcp_stream(tcp);
        session.set_timeout(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
        session.handshake().map_err(|e| SftpError::Connect(format!("{target}: SSH handshake: {e}")))?;
        let got = session
            .host_key_hash(HashType::Sha256)
            .map(|h| format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(h)))
            .unwrap_or_else(|| "(none)".into());
        if got != c.host_key_sha256 {
            return Err(SftpError::HostKey { expected: c.host_key_sha256.clone(), got });
        }
        session.userauth_pubkey_file(&c.username, None, &c.private_key, None).map_err(|e| SftpError::Login {
            user: c.username.clone(),
            key: c.private_key.display().to_string(),
            why: e.message().to_owned(),
        })?;
        if !session.authenticated() {
            return Err(SftpError::Login {
                user: c.username.clone(),
                key: c.private_key.display().to_string(),
                why: "not authenticated".into(),
            });
        }
        let sftp = session.sftp().map_err(|e| io(format!("{target}: cannot start SFTP: {e}")))?;
        for d in [&c.archive, &c.error, &c.outbox] {
            // Best effort: the folders usually exist; a failure shows at first use.
            let _ = sftp.mkdir(Path::new(d), 0o750);
        }
        Ok(Connection { _session: session, sftp })
    }

    /// Runs `op` on the kept connection, connecting first if needed. A session error (the
    /// server went away) drops the connection and `op` runs once more on a new one.
    fn with<T>(&self, op: impl Fn(&Sftp) -> Result<T, ssh2::Error>) -> Result<T, SftpError> {
        let mut guard = self.connection.lock().map_err(|_| io("the connection lock is poisoned"))?;
        if guard.is_none() {
            *guard = Some(self.connect()?);
        }
        let first = match guard.as_ref() {
            Some(c) => op(&c.sftp),
            None => return Err(io("no connection")),
        };
        match first {
            Ok(v) => Ok(v),
            Err(e) if matches!(e.code(), ErrorCode::Session(_)) => {
                *guard = None;
                let fresh = self.connect()?;
                let result = op(&fresh.sftp).map_err(io);
                *guard = Some(fresh);
                result
            }
            Err(e) => Err(io(e)),
        }
    }

    fn path(dir: &str, name: &str) -> PathBuf {
        Path::new(dir).join(name)
    }

    /// Complete files in the inbox, oldest first.
    pub fn ready(&self) -> Result<Vec<String>, SftpError> {
        let inbox = self.config.inbox.clone();
        let mut files: Vec<(u64, String)> = self
            .with(|sftp| sftp.readdir(Path::new(&inbox)))?
            .into_iter()
            .filter(|(_, stat): &(PathBuf, FileStat)| stat.is_file())
            .filter_map(|(path, stat)| {
                let name = path.file_name()?.to_str()?.to_owned();
                (!is_temporary(&name)).then_some((stat.mtime.unwrap_or(0), name))
            })
            .collect();
        files.sort();
        Ok(files.into_iter().map(|(_, n)| n).collect())
    }

    pub fn read(&self, name: &str) -> Result<Vec<u8>, SftpError> {
        let path = Self::path(&self.config.inbox, name);
        self.with(|sftp| {
            let mut file = sftp.open(&path)?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(transfer_failed)?;
            Ok(bytes)
        })
    }

    fn stamp(&self) -> String {
        self.clock.now().format("%Y%m%dT%H%M%S%6f").to_string()
    }

    pub fn archive(&self, name: &str) -> Result<(), SftpError> {
        let from = Self::path(&self.config.inbox, name);
        let to = Self::path(&self.config.archive, &format!("{}-{name}", self.stamp()));
        self.with(|sftp| sftp.rename(&from, &to, None))
    }

    pub fn reject(&self, name: &str, reason: &str) -> Result<(), SftpError> {
        let stamped = format!("{}-{name}", self.stamp());
        self.write_atomic(&self.config.error, &format!("{stamped}.reason.txt"), reason.as_bytes())?;
        let from = Self::path(&self.config.inbox, name);
        let to = Self::path(&self.config.error, &stamped);
        self.with(|sftp| sftp.rename(&from, &to, None))
    }

    /// Writes `dir/name` so that a reader never sees it half-written.
    pub fn write_atomic(&self, dir: &str, name: &str, bytes: &[u8]) -> Result<(), SftpError> {
        let part = Self::path(dir, &format!(".{name}.part"));
        let target = Self::path(dir, name);
        self.with(|sftp| {
            let mut file = sftp.create(&part)?;
            file.write_all(bytes).map_err(transfer_failed)?;
            drop(file);
            // SFTP v3 renames do not replace: a retry of the same file removes the old one.
            let _ = sftp.unlink(&target);
            sftp.rename(&part, &target, None)
        })
    }

    /// Adds the data rows of `body` (a header line, then rows) to the file `dir/name`,
    /// creating it with the header if it is not there; rewrites it atomically. Rows already
    /// in the file are not added again, so a retried delivery changes nothing. Returns
    /// whether anything was added.
    pub fn append_rows(&self, dir: &str, name: &str, body: &[u8]) -> Result<bool, SftpError> {
        let _one_at_a_time = self.appends.lock().map_err(|_| io("the append lock is poisoned"))?;
        let path = Self::path(dir, name);
        let existing = self.with(|sftp| match sftp.open(&path) {
            Ok(mut file) => {
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map_err(transfer_failed)?;
                Ok(Some(bytes))
            }
            Err(e) if matches!(e.code(), ErrorCode::SFTP(2)) => Ok(None), // no such file
            Err(e) => Err(e),
        })?;
        let Some(mut content) = existing else {
            self.write_atomic(dir, name, body)?;
            return Ok(true);
        };
        let rows = body.split_inclusive(|b| *b == b'\n').skip(1).filter(|r| !r.iter().all(u8::is_ascii_whitespace));
        let mut added = false;
        for row in rows {
            if !content.windows(row.len()).any(|w| w == row) {
                if !content.ends_with(b"\n") {
                    content.extend_from_slice(b"\r\n");
                }
                content.extend_from_slice(row);
                added = true;
            }
        }
        if added {
            self.write_atomic(dir, name, &content)?;
        }
        Ok(added)
    }

    /// Connects afresh and looks at the inbox, for `carehub check`.
    pub fn check(&self) -> Result<String, SftpError> {
        let conn = self.connect()?;
        let inbox = Path::new(&self.config.inbox);
        let waiting =
            conn.sftp.readdir(inbox).map_err(|e| io(format!("cannot list {}: {e}", self.config.inbox)))?.len();
        if let Ok(mut guard) = self.connection.lock() {
            *guard = Some(conn);
        }
        Ok(format!(
            "reachable at {}:{}, host key matches, logged in as {}, {waiting} entries in {}",
            self.config.host, self.config.port, self.config.username, self.config.inbox
        ))
    }
}

async fn blocking<T: Send + 'static>(
    client: &Arc<SftpClient>,
    op: impl FnOnce(&SftpClient) -> Result<T, SftpError> + Send + 'static,
) -> Result<T, DeliveryError> {
    let client = client.clone();
    tokio::task::spawn_blocking(move || op(&client))
        .await
        .map_err(|e| DeliveryError::transient(format!("SFTP task failed: {e}")))?
        .map_err(DeliveryError::from)
}

/// Uploads outbound messages as files into the system's outbox folder.
#[derive(Debug, Clone)]
pub struct SftpTransport(pub Arc<SftpClient>);

/// In an endpoint, the day's date (`YYYYMMDD`): one file per day, rows appended.
pub const DAY: &str = "{date}";

fn extension(content_type: &str) -> &'static str {
    if content_type.contains("xml") {
        "xml"
    } else if content_type.contains("csv") {
        "csv"
    } else if content_type.contains("json") {
        "json"
    } else {
        "dat"
    }
}

#[async_trait]
impl Transport for SftpTransport {
    async fn deliver(&self, env: &Envelope<'_>) -> Result<DeliveryReceipt, DeliveryError> {
        let outbox = self.0.config().outbox.clone();
        if let Some(stem) = env.endpoint.filter(|e| e.contains(DAY)) {
            // A daily file: this message's rows join the day's file.
            let day = self.0.clock.today().format("%Y%m%d").to_string();
            let name = format!("{}.{}", safe_name(&stem.replace(DAY, &day)), extension(env.content_type));
            let body = env.body.to_vec();
            let file = name.clone();
            let added = blocking(&self.0, move |c| c.append_rows(&outbox, &file, &body)).await?;
            let what = if added { "added to" } else { "already in" };
            return Ok(DeliveryReceipt {
                status: None,
                content_type: Some("text/plain".into()),
                body: format!("rows {what} {name}").into_bytes(),
            });
        }
        let name = format!(
            "{}-{}.{}",
            safe_name(env.endpoint.unwrap_or(env.message_type)),
            safe_name(env.idempotency_key),
            extension(env.content_type)
        );
        let body = env.body.to_vec();
        let file = name.clone();
        blocking(&self.0, move |c| c.write_atomic(&outbox, &file, &body)).await?;
        Ok(DeliveryReceipt {
            status: None,
            content_type: Some("text/plain".into()),
            body: format!("uploaded {name}").into_bytes(),
        })
    }

    async fn check(&self) -> Result<String, DeliveryError> {
        blocking(&self.0, |c| c.check()).await
    }
}

/// Reads the system's inbox folder.
#[derive(Debug, Clone)]
pub struct SftpInbox(pub Arc<SftpClient>);

#[async_trait]
impl Inbox for SftpInbox {
    async fn ready(&self) -> Result<Vec<String>, DeliveryError> {
        blocking(&self.0, |c| c.ready()).await
    }

    async fn read(&self, name: &str) -> Result<Vec<u8>, DeliveryError> {
        let name = name.to_owned();
        blocking(&self.0, move |c| c.read(&name)).await
    }

    async fn archive(&self, name: &str) -> Result<(), DeliveryError> {
        let name = name.to_owned();
        blocking(&self.0, move |c| c.archive(&name)).await
    }

    async fn reject(&self, name: &str, reason: &str) -> Result<(), DeliveryError> {
        let (name, reason) = (name.to_owned(), reason.to_owned());
        blocking(&self.0, move |c| c.reject(&name, &reason)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_are_never_read() {
        for n in [".beslut.xml", "beslut.xml.part", "beslut.xml.tmp", "x.filepart", "a.xml.reason.txt"] {
            assert!(is_temporary(n), "{n}");
        }
        assert!(!is_temporary("beslut-2026-11-01.xml"));
        assert_eq!(safe_name("O-1A:order_ack/../x"), "O-1A_order_ack_.._x");
    }
}
