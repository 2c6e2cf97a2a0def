//! A real OpenSSH server on 127.0.0.1 for the SFTP tests: its own host key, a client key
//! the hub logs in with, and a folder tree (`inbox`, `archive`, `error`, `outbox`) in a
//! temporary directory. `scripts/test` installs openssh-server.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running sshd.
pub struct Sshd {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
    /// The folder the hub's SFTP folders live in (absolute paths in the config).
    pub root: PathBuf,
    /// `SHA256:...` of the server's host key.
    pub host_key_sha256: String,
    /// The hub's private key.
    pub client_key: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn fingerprint(public_key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-E")
        .arg("sha256")
        .arg("-f")
        .arg(public_key)
        .output()
        .expect("ssh-keygen -l");
    String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).expect("a fingerprint").to_owned()
}

impl Sshd {
    pub fn start() -> Sshd {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        let root = d.join("sftp");
        for sub in ["inbox", "archive", "error", "outbox"] {
            std::fs::create_dir_all(root.join(sub)).expect("folders");
        }
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(d.join("host_key")));
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(d.join("client_key")));
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).expect("authorized_keys");
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key_sha256 = fingerprint(&d.join("host_key.pub"));
        let mut sshd =
            Sshd { child: None, port: free_port(), root, host_key_sha256, client_key: d.join("client_key"), dir };
        sshd.spawn();
        sshd
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
             Subsystem sftp internal-sftp\nLogLevel ERROR\n",
            port = self.port,
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/sbin/sshd (scripts/test installs openssh-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not start listening on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (existing connections die with it).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // sshd's per-connection children start sessions of their own; a server that goes
            // away takes its connections with it, so they go too.
            for pid in descendants(c.id()) {
                let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // sshd forks a child per connection; give them a moment to go.
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Stops and starts the server on the same port with the same keys.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn user() -> String {
        std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
            let out = Command::new("id").arg("-un").output().expect("id -un");
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
    }

    /// `[[systems]]` keys for an SFTP system on this server.
    pub fn system_keys(&self, host_key: &str) -> String {
        format!(
            "host = \"127.0.0.1\"\nport = {}\nusername = \"{}\"\nprivate_key = \"{}\"\nhost_key_sha256 = \"{host_key}\"\n\
             inbox = \"{r}/inbox\"\narchive = \"{r}/archive\"\nerror = \"{r}/error\"\noutbox = \"{r}/outbox\"\n\
             poll_seconds = 1\ntimeout_seconds = 5\n",
            self.port,
            Sshd::user(),
            self.client_key.display(),
            r = self.root.display()
        )
    }

    /// Names of the files in one of the folders.
    pub fn files(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root.join(sub))
            .map(|rd| rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Puts a complete file into the inbox the way a careful producer does: a temporary
    /// name, then a rename.
    pub fn drop_file(&self, name: &str, bytes: &[u8]) {
        let part = self.root.join("inbox").join(format!("{name}.part"));
        std::fs::write(&part, bytes).expect("write");
        std::fs::rename(&part, self.root.join("inbox").join(name)).expect("rename");
    }
}

/// The processes below `root`, read from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| {
                let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                let after_name = &stat[stat.rfind(')')? + 2..];
                let ppid: u32 = after_name.split_whitespace().nth(1)?.parse().ok()?;
                Some((pid, ppid))
            })
            .collect()
        })
        .unwrap_or_default();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(pid, _)| *pid));
        i += 1;
    }
    found.remove(0);
    found
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop();
    }
}
