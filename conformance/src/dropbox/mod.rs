//! The SFTP drop box the mock hub serves itself, for the vendors whose systems exchange files
//! (Procapita, ParaGå).
//!
//! Why it exists: a vendor testing its file export against the mock should not have to run
//! and configure an OpenSSH server (accounts, a chroot owned by root, `internal-sftp`) just to
//! have somewhere to put files. The drop box is an SSH server in the mock's own process
//! (`russh` with `russh-sftp`), listening on a socket the caller binds, so `carehub mock`
//! stays one program and tests bind `127.0.0.1:0`.
//!
//! What it is: SFTP version 3, the operations the hub's own transport
//! (`carehub_adapters::transport::sftp`) and common clients (OpenSSH's `sftp`, WinSCP) use,
//! one folder per user that the user cannot leave, and an observer told of every change to a
//! file, so the mock's journal records uploads and can wake whatever polls the folder.
//! What it is not: a general SSH server (no shell, no exec, no port forwarding), nor a
//! faithful copy of OpenSSH's `sftp-server` corner cases (no links are made, `setstat`
//! changes nothing, names must be UTF-8).
//!
//! # Layout
//! - this module: the public API ([`Dropbox`], [`DropboxUser`], [`DropboxEvent`],
//!   [`DropboxError`]);
//! - `ssh`: the SSH side, logging users in by password or public key and starting the
//!   `sftp` subsystem, nothing else;
//! - `files`: the SFTP operations on the user's folder, with their status codes and the
//!   events they report;
//! - `disk`: `std::fs` on tokio's blocking pool, so no file IO runs on the runtime's threads;
//! - `jail`: the chroot, the one place that turns a client's path into a path on disk or
//!   refuses it.
//!
//! # Conventions it keeps
//! - A file is finished when the client *closes* it after writing: only then does the
//!   observer hear [`DropboxOp::Written`]. A file still open for writing is not reported,
//!   and one left open when the connection ends is reported as [`DropboxOp::Abandoned`], so
//!   a partial upload is never mistaken for a complete one.
//! - `rename` follows SFTP v3 (and OpenSSH): it refuses to replace an existing file. The
//!   `posix-rename@openssh.com` extension, which OpenSSH's `sftp` uses when offered,
//!   replaces. The hub's own uploads remove the target first, as against any v3 server.
//! - Paths the client sends are seen from the user's folder: `/` is that folder, relative
//!   paths start there, `..` above it is refused, and so is any path, symbolic links
//!   included, that resolves outside it.
//!
//! # Example
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use carehub_conformance::dropbox::{Dropbox, DropboxUser};
//! let users = vec![DropboxUser::with_password("procapita", "secret")];
//! let dropbox = Dropbox::new("/var/lib/carehub-mock/sftp", users)?
//!     .observe(|event| println!("{:?} {}", event.op, event.path));
//! println!("host key {}", dropbox.host_key_fingerprint());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:2222").await?;
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = dropbox.serve(listener, async move { let _ = stopped.await; });
//! // ... later
//! let _ = stop.send(());
//! let _ = server.await;
//! # Ok(()) }
//! ```

mod disk;
mod files;
mod jail;
mod ssh;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::ssh_key::authorized_keys::AuthorizedKeys;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey, PublicKey};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One account on the drop box. Its folder is `<root>/<name>`; it logs in with its password,
/// with one of its keys, or either when it has both.
#[derive(Clone, Default)]
pub struct DropboxUser {
    /// The login name, also the name of the user's folder: letters, digits, `.`, `-`, `_`.
    pub name: String,
    /// The password, when the user may log in with one.
    pub password: Option<String>,
    /// Public keys in OpenSSH `authorized_keys` form (`ssh-ed25519 AAAA... comment`), one per
    /// entry or several lines in one; options before a key are allowed and ignored; `#`
    /// lines and blank lines are skipped.
    pub authorized_keys: Vec<String>,
}

impl DropboxUser {
    /// A user who logs in with a password.
    pub fn with_password(name: impl Into<String>, password: impl Into<String>) -> Self {
        DropboxUser { name: name.into(), password: Some(password.into()), authorized_keys: Vec::new() }
    }

    /// A user who logs in with a key (`authorized_keys` lines).
    pub fn with_keys(name: impl Into<String>, authorized_keys: Vec<String>) -> Self {
        DropboxUser { name: name.into(), password: None, authorized_keys }
    }
}

impl fmt::Debug for DropboxUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DropboxUser")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "**REDACTED**"))
            .field("authorized_keys", &self.authorized_keys.len())
            .finish()
    }
}

/// What happened to a file or folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropboxOp {
    /// A file opened for writing was closed: its content is final.
    Written,
    /// A file or folder got a new name; `path` is the new one.
    Renamed {
        /// The old path, relative to the user's folder.
        from: String,
    },
    /// A file was removed; `size` is what it had.
    Removed,
    /// A file opened for writing was still open when the connection ended: a partial upload.
    Abandoned,
    /// A folder was made.
    MadeDir,
    /// A folder was removed.
    RemovedDir,
}

/// One change in a user's folder, as the observer hears it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropboxEvent {
    /// The user whose folder changed.
    pub user: String,
    pub op: DropboxOp,
    /// The path relative to the user's folder, with `/` separators and no leading `/`
    /// (`inbox/beslut-17.xml`).
    pub path: String,
    /// The file's size in bytes after the change (before it, for [`DropboxOp::Removed`]);
    /// 0 for folders.
    pub size: u64,
}

/// Who hears of changes: called on the server's tasks, so it should be quick (send on a
/// channel, append to a list).
pub type Observer = Arc<dyn Fn(DropboxEvent) + Send + Sync>;

/// Why the drop box could not be set up. Each variant has a stable [`DropboxError::code`].
#[derive(Debug, thiserror::Error)]
pub enum DropboxError {
    /// A user name that cannot be a folder name, or that is given twice.
    #[error("user name {0:?} cannot be used: it must be unique and made of letters, digits, '.', '-', '_'")]
    UserName(String),
    /// A user with neither a password nor a key could never log in.
    #[error("user {0:?} has neither a password nor an authorized key")]
    NoCredentials(String),
    /// An `authorized_keys` line that is not an OpenSSH public key.
    #[error("user {user:?}: authorized key line {line} is not an OpenSSH public key")]
    AuthorizedKey {
        user: String,
        line: usize,
        #[source]
        source: russh::keys::ssh_key::Error,
    },
    /// The host key file cannot be read or is not an OpenSSH private key without passphrase.
    #[error("host key {path}: {why}")]
    HostKey { path: String, why: String },
    /// The operating system gave no random bytes for a new host key.
    #[error("no random bytes for the host key: {0}")]
    Random(String),
}

impl DropboxError {
    /// A code that never changes meaning.
    pub fn code(&self) -> &'static str {
        match self {
            DropboxError::UserName(_) => "DROPBOX_USER_NAME",
            DropboxError::NoCredentials(_) => "DROPBOX_NO_CREDENTIALS",
            DropboxError::AuthorizedKey { .. } => "DROPBOX_AUTHORIZED_KEY",
            DropboxError::HostKey { .. } => "DROPBOX_HOST_KEY",
            DropboxError::Random(_) => "DROPBOX_RANDOM",
        }
    }
}

/// A user as the server checks it.
struct Account {
    password: Option<String>,
    keys: Vec<PublicKey>,
    root: PathBuf,
}

/// The SFTP drop box: users, their folders under one root, a host key, and an observer.
pub struct Dropbox {
    root: PathBuf,
    accounts: HashMap<String, Account>,
    host_key: PrivateKey,
    observer: Observer,
    auth_rejection_time: Duration,
}

impl fmt::Debug for Dropbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut users: Vec<&String> = self.accounts.keys().collect();
        users.sort();
        f.debug_struct("Dropbox")
            .field("root", &self.root)
            .field("users", &users)
            .field("host_key", &self.host_key_fingerprint())
            .finish()
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

fn parse_keys(user: &str, entries: &[String]) -> Result<Vec<PublicKey>, DropboxError> {
    let mut keys = Vec::new();
    // Line numbers count over all of the user's entries, as if they were one file.
    let lines = entries.iter().flat_map(|e| e.lines());
    for (i, line) in lines.enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let wrong = |source| DropboxError::AuthorizedKey { user: user.to_owned(), line: i + 1, source };
        for entry in AuthorizedKeys::new(line) {
            keys.push(entry.map_err(wrong)?.public_key().clone());
        }
    }
    Ok(keys)
}

/// A new ed25519 host key from the operating system's randomness.
fn new_host_key() -> Result<PrivateKey, DropboxError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| DropboxError::Random(e.to_string()))?;
    Ok(PrivateKey::from(Ed25519Keypair::from_seed(&seed)))
}

impl Dropbox {
    /// A drop box whose users have their folders under `root` (`<root>/<user name>`, made at
    /// first login), with a new ed25519 host key. Checks every user; does no IO.
    pub fn new(root: impl Into<PathBuf>, users: Vec<DropboxUser>) -> Result<Dropbox, DropboxError> {
        let root = root.into();
        let mut accounts = HashMap::new();
        for u in users {
            if !valid_name(&u.name) || accounts.contains_key(&u.name) {
                return Err(DropboxError::UserName(u.name));
            }
            let keys = parse_keys(&u.name, &u.authorized_keys)?;
            if u.password.is_none() && keys.is_empty() {
                return Err(DropboxError::NoCredentials(u.name));
            }
            let account = Account { password: u.password, keys, root: root.join(&u.name) };
            accounts.insert(u.name, account);
        }
        Ok(Dropbox {
            root,
            accounts,
            host_key: new_host_key()?,
            observer: Arc::new(|_: DropboxEvent| {}),
            auth_rejection_time: Duration::from_millis(500),
        })
    }

    /// Uses this host key instead of the generated one, so clients that pinned it keep
    /// trusting the drop box across restarts.
    pub fn with_host_key(mut self, key: PrivateKey) -> Self {
        self.host_key = key;
        self
    }

    /// Loads the host key from an OpenSSH private key file without passphrase (as
    /// `ssh-keygen -t ed25519 -N ''` writes it).
    pub async fn with_host_key_file(self, path: impl AsRef<Path>) -> Result<Self, DropboxError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = disk::read_to_string(path)
            .await
            .map_err(|e| DropboxError::HostKey { path: shown.clone(), why: e.to_string() })?;
        let key = PrivateKey::from_openssh(text.as_bytes())
            .map_err(|e| DropboxError::HostKey { path: shown.clone(), why: e.to_string() })?;
        if key.is_encrypted() {
            return Err(DropboxError::HostKey { path: shown, why: "it has a passphrase".into() });
        }
        Ok(self.with_host_key(key))
    }

    /// Tells `observer` of every change to a file or folder.
    pub fn observe(mut self, observer: impl Fn(DropboxEvent) + Send + Sync + 'static) -> Self {
        self.observer = Arc::new(observer);
        self
    }

    /// How long a refused login takes, whatever was wrong (500 ms unless changed), so a
    /// client cannot tell a wrong user from a wrong password by the time it took.
    pub fn auth_rejection_time(mut self, time: Duration) -> Self {
        self.auth_rejection_time = time;
        self
    }

    /// The host key's fingerprint as `ssh-keygen -lf` prints it (`SHA256:...`): what the
    /// hub's `host_key_sha256` pins and what a vendor compares on first connect.
    pub fn host_key_fingerprint(&self) -> String {
        self.host_key.public_key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// The host's public key in OpenSSH form, for a `known_hosts` line.
    pub fn host_public_key(&self) -> String {
        self.host_key.public_key().to_openssh().unwrap_or_default()
    }

    /// The folder of a user, whether or not it exists yet.
    pub fn user_root(&self, user: &str) -> Option<PathBuf> {
        self.accounts.get(user).map(|a| a.root.clone())
    }

    /// Serves SFTP on `listener` until `shutdown` completes; then open connections are told
    /// to disconnect and the task ends. The task's result is the accept loop's error, if
    /// the socket failed.
    pub fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<std::io::Result<()>> {
        let config = russh::server::Config {
            server_id: russh::SshId::Standard("SSH-2.0-carehub_mock_dropbox".into()),
            methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey, russh::MethodKind::Password][..]),
            auth_rejection_time: self.auth_rejection_time,
            // OpenSSH's clients start with a "none" login to learn the methods: no need to wait.
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys: vec![self.host_key],
            inactivity_timeout: Some(Duration::from_secs(600)),
            nodelay: true,
            ..Default::default()
        };
        let shared = Arc::new(ssh::Shared { accounts: self.accounts, observer: self.observer });
        tokio::spawn(ssh::run(Arc::new(config), shared, listener, shutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_folder_names() {
        for bad in ["", ".", "..", "a/b", "a b", "../x", "å"] {
            let err = Dropbox::new("/x", vec![DropboxUser::with_password(bad, "p")]).err();
            assert_eq!(err.map(|e| e.code()), Some("DROPBOX_USER_NAME"), "{bad:?}");
        }
        let twice = vec![DropboxUser::with_password("a", "p"), DropboxUser::with_password("a", "q")];
        assert_eq!(Dropbox::new("/x", twice).err().map(|e| e.code()), Some("DROPBOX_USER_NAME"));
    }

    #[test]
    fn a_user_needs_a_way_in_and_keys_must_parse() {
        let none = DropboxUser { name: "a".into(), ..Default::default() };
        assert_eq!(Dropbox::new("/x", vec![none]).err().map(|e| e.code()), Some("DROPBOX_NO_CREDENTIALS"));
        let bad = DropboxUser::with_keys("a", vec!["# a comment\n\nssh-ed25519 not-base64".into()]);
        let err = Dropbox::new("/x", vec![bad]).err();
        assert!(matches!(err, Some(DropboxError::AuthorizedKey { line: 3, .. })), "{err:?}");
    }

    #[test]
    fn the_fingerprint_reads_like_ssh_keygen() {
        let d = Dropbox::new("/x", vec![DropboxUser::with_password("a", "p")]).expect("dropbox");
        let f = d.host_key_fingerprint();
        assert!(f.starts_with("SHA256:") && f.len() == 7 + 43, "{f}");
        assert!(d.host_public_key().starts_with("ssh-ed25519 "));
        assert!(!format!("{:?}", DropboxUser::with_password("a", "hemligt")).contains("hemligt"));
    }
}
