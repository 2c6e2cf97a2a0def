//! The mock's SFTP side, for the vendors that exchange files (Procapita, ParaGå): the mock
//! serves its own drop box ([`crate::dropbox::Dropbox`]) and points the real hub's SFTP
//! system at it, and it journals every file the vendor leaves there.
//!
//! Why the hub polls the mock's own drop box instead of the mock reading files itself: the
//! hub's SFTP transport (temporary names skipped, archive and error folders, reason files,
//! receipts, daily CSV files) is what a vendor meets in production, so it is what the
//! vendor must meet here. The mock adds only what sits around it: a drop box on a port of
//! its own, a key the hub logs in with (generated at each start, written to the data
//! folder), the drop box's host key pinned in the hub's configuration, and a watcher that
//! turns the drop box's events into journal entries.
//!
//! What the journal records, and when:
//! - a file the vendor put in the inbox is journaled once its fate is known, so each file
//!   is one inbound exchange with everything wrong in it: when the hub archived it (taken)
//!   or moved it to the error folder (refused: the hub's code from the reason file it wrote
//!   beside it, and the reason as the exchange's response);
//! - a file written under its final name, without a temporary name first, carries
//!   `MOCK_NO_TEMPORARY_NAME`: the hub might have read it half-way;
//! - an upload left open when the vendor's connection ended is journaled at once with
//!   `MOCK_PARTIAL_UPLOAD`; under a temporary name the hub never reads it;
//! - a file whose bytes are UTF-8 with letters beyond ASCII, where the profile asks for
//!   ISO-8859-1 (Procapita) or Windows-1252 (ParaGå), carries `MOCK_WRONG_ENCODING`;
//! - what the hub writes for the vendor (receipts, orders, verification reports) is
//!   journaled by the outbound transport's wrapper, as for every vendor.
//!
//! The vendor logs in as a user named after the vendor, with the password printed at the
//! start (or set in the configuration); the hub logs in as the same user with its key, so
//! both see the same folders.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::LineEnding;
use russh::keys::PrivateKey;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::journal::Journal;
use super::profile::Profile;
use super::MockError;
use crate::dropbox::{Dropbox, DropboxEvent, DropboxOp, DropboxUser};
use crate::exchange::{Direction, Exchange, Problem, Wire};

/// The file the hub's private key is written to, in the data folder.
const HUB_KEY: &str = "hub_ed25519";
/// The drop box's host key, in the data folder.
const HOST_KEY: &str = "sftp_host_ed25519";

/// The folders of the vendor's drop box, as the hub's system is configured with them.
#[derive(Debug, Clone)]
pub struct Folders {
    pub inbox: String,
    pub archive: String,
    pub error: String,
    pub outbox: String,
}

impl Folders {
    fn of(system: &toml::Table) -> Folders {
        let get = |k: &str| system.get(k).and_then(toml::Value::as_str).unwrap_or(k).trim_matches('/').to_owned();
        Folders { inbox: get("inbox"), archive: get("archive"), error: get("error"), outbox: get("outbox") }
    }
}

/// The drop box of a running mock: where it listens, who may log in, its host key.
pub struct DropboxSide {
    /// Where the drop box listens.
    pub addr: SocketAddr,
    /// The vendor's login name (the vendor's name).
    pub user: String,
    /// The vendor's password.
    pub password: String,
    /// The drop box's host key fingerprint (`SHA256:...`), which the hub pins.
    pub fingerprint: String,
    /// The user's folder on disk.
    pub root: PathBuf,
    /// The folders, relative to the user's folder.
    pub folders: Folders,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
    watcher: JoinHandle<()>,
}

impl std::fmt::Debug for DropboxSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DropboxSide")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("password", &"**REDACTED**")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N], MockError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| MockError::Hub(format!("no random bytes: {e}")))?;
    Ok(b)
}

impl DropboxSide {
    /// Starts the drop box on `listen` with its folders under `data/sftp`, writes the hub's
    /// key to the data folder, and returns the hub system's `[[systems]]` keys for it:
    /// `user_keys` (the configuration's `[system]`) over the mock's own.
    pub async fn start(
        profile: &Profile,
        data: &Path,
        listen: &str,
        password: Option<String>,
        user_keys: Option<&toml::Table>,
        journal: Arc<Journal>,
    ) -> Result<(DropboxSide, toml::Table), MockError> {
        let config = |e: String| MockError::Config(e);
        let key = PrivateKey::from(Ed25519Keypair::from_seed(&random_bytes::<32>()?));
        let private = key.to_openssh(LineEnding::LF).map_err(|e| MockError::Hub(format!("the hub's key: {e}")))?;
        let public = key.public_key().to_openssh().map_err(|e| MockError::Hub(format!("the hub's key: {e}")))?;
        let key_path = data.join(HUB_KEY);
        write_private(&key_path, private.as_bytes())
            .map_err(|e| config(format!("cannot write {}: {e}", key_path.display())))?;
        let password = match password {
            Some(p) => p,
            None => hex::encode(random_bytes::<12>()?),
        };
        let user = profile.vendor.to_owned();
        let account =
            DropboxUser { name: user.clone(), password: Some(password.clone()), authorized_keys: vec![public] };
        let (events, mut heard) = mpsc::unbounded_channel::<DropboxEvent>();
        // The host key is kept in the data folder, so a vendor that trusted it once keeps
        // trusting it when the mock restarts on the same `--data`.
        let host_path = data.join(HOST_KEY);
        let dropbox = Dropbox::new(data.join("sftp"), vec![account])
            .map_err(|e| MockError::Hub(format!("the drop box: {}: {e}", e.code())))?;
        let dropbox = if host_path.is_file() {
            dropbox.with_host_key_file(&host_path).await.map_err(|e| config(format!("{}: {e}", e.code())))?
        } else {
            let host = PrivateKey::from(Ed25519Keypair::from_seed(&random_bytes::<32>()?));
            let text = host.to_openssh(LineEnding::LF).map_err(|e| MockError::Hub(format!("the host key: {e}")))?;
            write_private(&host_path, text.as_bytes())
                .map_err(|e| config(format!("cannot write {}: {e}", host_path.display())))?;
            dropbox.with_host_key(host)
        };
        let dropbox = dropbox.observe(move |e| {
            let _ = events.send(e);
        });
        let fingerprint = dropbox.host_key_fingerprint();
        let root = dropbox.user_root(&user).ok_or_else(|| MockError::Hub("the drop box has no user".into()))?;

        let mut system: toml::Table = toml::from_str(&format!(
            "host = \"127.0.0.1\"\nport = 0\nusername = \"{user}\"\nprivate_key = \"{}\"\nhost_key_sha256 = \"{fingerprint}\"\npoll_seconds = 1\ntimeout_seconds = 10\n",
            key_path.display().to_string().replace('\\', "/")
        ))
        .map_err(|e| MockError::Config(e.to_string()))?;
        if let Some(keys) = user_keys {
            system.extend(keys.clone());
        }
        let folders = Folders::of(&system);
        for f in [&folders.inbox, &folders.archive, &folders.error, &folders.outbox] {
            std::fs::create_dir_all(root.join(f))
                .map_err(|e| config(format!("cannot make the drop box's folder {f}: {e}")))?;
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| config(format!("the drop box cannot listen on {listen}: {e}")))?;
        let addr = listener.local_addr().map_err(|e| config(e.to_string()))?;
        system.insert("port".into(), toml::Value::Integer(i64::from(addr.port())));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = dropbox.serve(listener, async move {
            let _ = stopped.await;
        });
        let mut watch = Watcher::new(profile.vendor, root.clone(), folders.clone(), journal);
        let watcher = tokio::spawn(async move {
            while let Some(event) = heard.recv().await {
                watch.heard(event).await;
            }
        });
        let side = DropboxSide { addr, user, password, fingerprint, root, folders, stop: Some(stop), server, watcher };
        Ok((side, system))
    }

    /// Stops the drop box (open connections end) and its watcher.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.server).await;
        self.watcher.abort();
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// A name the hub never reads: the producers' temporary names (as in the hub's transport).
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') || [".part", ".tmp", ".filepart"].iter().any(|s| name.ends_with(s))
}

/// `name` when `path` is `folder/name`.
fn in_folder<'a>(path: &'a str, folder: &str) -> Option<&'a str> {
    let rest = if folder.is_empty() { Some(path) } else { path.strip_prefix(folder)?.strip_prefix('/') };
    rest.filter(|r| !r.is_empty() && !r.contains('/'))
}

/// Turns the drop box's events into journal entries.
struct Watcher {
    vendor: &'static str,
    root: PathBuf,
    folders: Folders,
    journal: Arc<Journal>,
    /// Inbox files written under their final name, not renamed into place.
    no_temporary: HashSet<String>,
}

impl Watcher {
    fn new(vendor: &'static str, root: PathBuf, folders: Folders, journal: Arc<Journal>) -> Watcher {
        Watcher { vendor, root, folders, journal, no_temporary: HashSet::new() }
    }

    async fn heard(&mut self, event: DropboxEvent) {
        let inbox = self.folders.inbox.clone();
        match &event.op {
            DropboxOp::Written => {
                if let Some(name) = in_folder(&event.path, &inbox) {
                    if !is_temporary(name) {
                        self.no_temporary.insert(name.to_owned());
                    }
                }
            }
            DropboxOp::Renamed { from } => {
                let Some(name) = in_folder(from, &inbox) else { return };
                if in_folder(&event.path, &inbox).is_some() {
                    // Put in place: journaled when the hub has taken or refused it.
                    return;
                }
                if is_temporary(name) {
                    return;
                }
                let name = name.to_owned();
                if in_folder(&event.path, &self.folders.archive).is_some() {
                    self.journal_file(&name, &event.path, None, Vec::new()).await;
                } else if in_folder(&event.path, &self.folders.error).is_some() {
                    let reason = disk_read(self.root.join(format!("{}.reason.txt", event.path))).await;
                    let text = String::from_utf8_lossy(&reason).into_owned();
                    let first = text.lines().next().unwrap_or_default();
                    let (code, message) = first.split_once(": ").unwrap_or((first, ""));
                    let refused = Problem {
                        code: if code.is_empty() { "REFUSED".into() } else { code.to_owned() },
                        message: format!("the hub refused the file: {message}"),
                        field: None,
                        offset: None,
                    };
                    self.journal_file(&name, &event.path, Some(reason), vec![refused]).await;
                }
            }
            DropboxOp::Abandoned => {
                if let Some(name) = in_folder(&event.path, &inbox) {
                    let name = name.to_owned();
                    let partial = Problem {
                        code: "MOCK_PARTIAL_UPLOAD".into(),
                        message: format!(
                            "{name} was still open for writing when the connection ended ({} bytes): a partial upload{}",
                            event.size,
                            if is_temporary(&name) {
                                "; its temporary name keeps the hub from reading it"
                            } else {
                                ", under a name the hub reads"
                            }
                        ),
                        field: None,
                        offset: None,
                    };
                    self.no_temporary.remove(&name);
                    self.journal_file(&name, &event.path, None, vec![partial]).await;
                }
            }
            _ => {}
        }
    }

    /// Journals the inbox file `name`, now at `now_at`, with `problems` and the mock's checks.
    async fn journal_file(&mut self, name: &str, now_at: &str, response: Option<Vec<u8>>, mut problems: Vec<Problem>) {
        let body = disk_read(self.root.join(now_at)).await;
        if self.no_temporary.remove(name) {
            problems.insert(
                0,
                Problem {
                    code: "MOCK_NO_TEMPORARY_NAME".into(),
                    message: format!(
                        "{name} was written under its final name: write it as {name}.part (or .tmp, .filepart, or a name starting with '.') and rename it when it is complete, or the hub may read it half-way"
                    ),
                    field: None,
                    offset: None,
                },
            );
        }
        if let Some(p) = wrong_encoding(self.vendor, &body) {
            problems.push(p);
        }
        let (message_type, key) = classify(self.vendor, &body);
        let exchange = Exchange {
            id: 0,
            at: chrono::DateTime::<chrono::Utc>::default(),
            direction: Direction::Inbound,
            wire: Wire::Sftp,
            message_type,
            key,
            target: format!("{}/{name}", self.folders.inbox),
            headers: vec![("file".into(), now_at.to_owned())],
            body,
            status: None,
            response: response.unwrap_or_default(),
            millis: 0,
            problems,
        };
        let journal = self.journal.clone();
        let recorded = tokio::task::spawn_blocking(move || journal.record(&exchange)).await;
        if !matches!(recorded, Ok(Ok(_))) {
            tracing::warn!(vendor = self.vendor, "a file could not be journaled");
        }
    }
}

async fn disk_read(path: PathBuf) -> Vec<u8> {
    tokio::task::spawn_blocking(move || std::fs::read(path).unwrap_or_default()).await.unwrap_or_default()
}

/// Bytes as ISO-8859-1 text: exact for the ASCII the classifying looks at.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// `MOCK_WRONG_ENCODING` when the file's letters beyond ASCII are UTF-8 where the profile
/// asks for an 8-bit encoding; the offset is the first such byte.
pub fn wrong_encoding(vendor: &str, body: &[u8]) -> Option<Problem> {
    let expected = match vendor {
        "procapita" => "ISO-8859-1",
        "paraga" => "Windows-1252",
        _ => return None,
    };
    let first = body.iter().position(|b| !b.is_ascii())?;
    std::str::from_utf8(body).ok()?;
    Some(Problem {
        code: "MOCK_WRONG_ENCODING".into(),
        message: format!(
            "the file is UTF-8, and the profile's files are {expected}: å, ä and ö are one byte each (0xE5, 0xE4, 0xF6), and the hub reads these bytes as other letters"
        ),
        field: None,
        offset: u64::try_from(first).ok(),
    })
}

/// The message type and business key of a file the vendor left, as far as its first lines
/// tell: Procapita's root element and `Beslutsnummer`, ParaGå's header and first row's
/// order id.
pub fn classify(vendor: &str, body: &[u8]) -> (Option<String>, Option<String>) {
    let text = latin1(body);
    match vendor {
        "procapita" => {
            let root = text
                .match_indices('<')
                .map(|(i, _)| &text[i + 1..])
                .find(|rest| !rest.starts_with('?') && !rest.starts_with('!'))
                .map(|rest| rest.split(|c: char| c.is_whitespace() || c == '>').next().unwrap_or_default().to_owned());
            let kind = match root.as_deref() {
                Some(r) if r.starts_with("Bist") => Some("decision"),
                Some(r) if r.starts_with("Beslut") => Some("decision_change"),
                _ => None,
            };
            let key = text.split_once("<Beslutsnummer>").and_then(|(_, rest)| rest.split_once('<')).map(|(k, _)| {
                let k = k.trim();
                format!("procapita:{k}")
            });
            (kind.map(str::to_owned), key)
        }
        "paraga" => {
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default().trim_start_matches('\u{ef}');
            let kind = if header.starts_with("Uppdragsid;Status") {
                Some("order_ack")
            } else if header.starts_with("Uppdragsid;Genomf") {
                Some("plan_notice")
            } else if header.starts_with("Personnummer;Datum;Kom") {
                Some("visit")
            } else if header.starts_with("Fakturanummer") {
                Some("invoice_line")
            } else if header.starts_with("Avvikelseid") {
                Some("deviation")
            } else if header.starts_with("Bevakningsid") {
                Some("need_change")
            } else {
                None
            };
            let key = match kind {
                Some("order_ack" | "plan_notice") => {
                    lines.find(|l| !l.trim().is_empty()).and_then(|l| l.split(';').next()).map(|k| k.trim().to_owned())
                }
                _ => None,
            };
            (kind.map(str::to_owned), key)
        }
        _ => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_told_apart_by_their_root_or_header() {
        let decision = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<Bist\xe5ndsbeslut xmlns=\"x\"><Beslutsnummer>PC-1</Beslutsnummer>";
        assert_eq!(classify("procapita", decision), (Some("decision".into()), Some("procapita:PC-1".into())));
        let ack = b"Uppdragsid;Status;Orsak;Tidpunkt\r\nO-1;Accepterad;;2026-11-03 07:30\r\n";
        assert_eq!(classify("paraga", ack), (Some("order_ack".into()), Some("O-1".into())));
    }

    #[test]
    fn utf8_letters_are_the_wrong_encoding_and_8_bit_ones_are_not() {
        assert_eq!(wrong_encoding("paraga", "Avb\u{f6}jd".as_bytes()).map(|p| p.offset), Some(Some(3)));
        assert!(wrong_encoding("paraga", b"Avb\xf6jd").is_none());
        assert!(wrong_encoding("paraga", b"ascii only").is_none());
    }

    #[test]
    fn names_in_folders_and_stamps() {
        assert_eq!(in_folder("inbox/a.xml", "inbox"), Some("a.xml"));
        assert_eq!(in_folder("inboxes/a.xml", "inbox"), None);
        assert!(is_temporary("a.xml.part") && is_temporary(".a.xml") && !is_temporary("a.xml"));
    }
}
