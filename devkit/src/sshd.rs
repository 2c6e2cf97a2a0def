//! Local stand-ins for the demo, the benchmarks and the tests: a real OpenSSH server on
//! 127.0.0.1 with its own host key, a client key the hub logs in with, and a folder tree
//! (`inbox`, `archive`, `error`, `outbox`) in a temporary directory.
//!
//! It needs Debian's `openssh-server` (for `/usr/sbin/sshd`) and `ssh-keygen`;
//! `scripts/test` installs them. [`LocalSshd::available`] says whether they are there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// A running sshd.
pub struct LocalSshd {
    child: Option<Child>,
    pub port: u16,
    pub dir: TempDir,
    /// The folder the SFTP folders live in (absolute paths in the config).
    pub root: PathBuf,
    /// `SHA256:...` of the server's host key.
    pub host_key_sha256: String,
    /// The hub's private key.
    pub client_key: PathBuf,
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let out = cmd.output().map_err(|e| anyhow::anyhow!("cannot run {cmd:?}: {e}"))?;
    anyhow::ensure!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn fingerprint(public_key: &Path) -> anyhow::Result<String> {
    let out = Command::new("ssh-keygen").arg("-l").arg("-E").arg("sha256").arg("-f").arg(public_key).output()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("ssh-keygen printed no fingerprint"))
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

impl LocalSshd {
    /// Whether `/usr/sbin/sshd` and `ssh-keygen` are installed.
    pub fn available() -> bool {
        Path::new("/usr/sbin/sshd").exists()
            && Command::new("ssh-keygen").arg("-?").stderr(Stdio::null()).stdout(Stdio::null()).status().is_ok()
    }

    /// Makes keys and folders and starts sshd on a free port of 127.0.0.1.
    pub fn start() -> anyhow::Result<LocalSshd> {
        let dir = tempfile::tempdir()?;
        let d = dir.path();
        let root = d.join("sftp");
        for sub in ["inbox", "archive", "error", "outbox"] {
            std::fs::create_dir_all(root.join(sub))?;
        }
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(d.join("host_key")))?;
        run(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(d.join("client_key")))?;
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys"))?;
        let _ = std::fs::create_dir_all("/run/sshd");
        let host_key_sha256 = fingerprint(&d.join("host_key.pub"))?;
        let client_key = d.join("client_key");
        let mut sshd = LocalSshd { child: None, port: free_port()?, root, host_key_sha256, client_key, dir };
        sshd.spawn()?;
        Ok(sshd)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let d = self.dir.path();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
             Subsystem sftp internal-sftp\nLogLevel ERROR\nMaxSessions 100\nMaxStartups 100\n",
            port = self.port,
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config)?;
        let child = Command::new("/usr/sbin/sshd")
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(d.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start /usr/sbin/sshd (install openssh-server): {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "sshd did not start listening on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops the server; its connections die with it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // sshd's per-connection children start sessions of their own; a server that goes
            // away takes its connections with it, so they go too.
            for pid in descendants(c.id()) {
                // A child may be gone already: kill's complaint about it is not worth showing.
                let _ =
                    Command::new("kill").arg("-KILL").arg(pid.to_string()).stderr(std::process::Stdio::null()).status();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    /// Stops and starts the server on the same port with the same keys.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    /// The user the server lets in (the one running this process).
    pub fn user() -> String {
        std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| {
            Command::new("id")
                .arg("-un")
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .unwrap_or_else(|_| "root".into())
        })
    }

    /// `[[systems]]` keys for an SFTP system on this server, pinned to `host_key`.
    pub fn system_keys(&self, host_key: &str) -> String {
        format!(
            "host = \"127.0.0.1\"\nport = {}\nusername = \"{}\"\nprivate_key = \"{}\"\nhost_key_sha256 = \"{host_key}\"\n\
             inbox = \"{r}/inbox\"\narchive = \"{r}/archive\"\nerror = \"{r}/error\"\noutbox = \"{r}/outbox\"\n\
             poll_seconds = 1\ntimeout_seconds = 5\n",
            self.port,
            LocalSshd::user(),
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
    pub fn drop_file(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        let part = self.root.join("inbox").join(format!("{name}.part"));
        std::fs::write(&part, bytes)?;
        std::fs::rename(&part, self.root.join("inbox").join(name))
    }
}

impl Drop for LocalSshd {
    fn drop(&mut self) {
        self.stop();
    }
}
