//! The SFTP vendors the conformance run is held to: a Procapita (case management, XML in
//! ISO-8859-1) and a ParaGå (provider time registration, CSV in Windows-1252), each an SFTP
//! client of the mock hub's drop box, with a test harness on 127.0.0.1 that carries out a
//! case's `trigger` at once.
//!
//! Why they log in over SFTP like any vendor: the catalogue judges what reaches the drop
//! box, byte for byte and event for event (a temporary name and a rename, a connection lost
//! half-way), so the systems it is held to must make those events for real. `ssh2` is
//! blocking, so every session runs on tokio's blocking pool.
//!
//! What each does:
//! - both upload under a temporary name (`<name>.part`) and rename when the file is
//!   complete, in their profile's encoding, and fetch (read, then remove) what the hub
//!   leaves in `outbox`;
//! - ParaGå confirms every order it finds in the hub's daily order files, one confirmation
//!   file per order, and on a trigger rejects the next one, reports a care plan, or
//!   uploads an invoice basis (whose verification report it then fetches);
//! - Procapita uploads decision files on a trigger.
//!
//! The broken ones ([`Mistake`]) each get one thing wrong, as real integrations do.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

/// Which vendor a [`FileVendor`] plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Procapita,
    Paraga,
}

/// The one thing a broken vendor gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mistake {
    /// None: the vendor does what its profile asks.
    None,
    /// Uploads straight under the final name, never a temporary one (either vendor).
    NoTemporaryName,
    /// Writes its CSV as UTF-8 where the profile asks for Windows-1252 (ParaGå).
    Utf8,
    /// Writes a decision's end date as `YYYY-MM-DD` where the profile asks for `YYYYMMDD`
    /// (Procapita's `Giltighet/@till`).
    DashedEndDate,
}

/// Where and how a vendor logs in to the drop box.
#[derive(Debug, Clone)]
pub struct Login {
    pub addr: SocketAddr,
    pub user: String,
    pub password: String,
}

/// The drop box's folders the vendor uses.
const INBOX: &str = "inbox";
const OUTBOX: &str = "outbox";

/// The sample client and provider of the profiles.
const CLIENT: &str = "193601016987";
const PROVIDER: &str = "5599000014";

struct Inner {
    vendor: Vendor,
    mistake: Mistake,
    login: Login,
    /// Orders already confirmed (ParaGå).
    confirmed: Mutex<BTreeSet<String>>,
    /// Told by a trigger: the reason to reject the next order with.
    reject_next: Mutex<Option<String>>,
    /// Every file fetched from `outbox`, by name.
    fetched: Mutex<Vec<(String, Vec<u8>)>>,
    /// Decision numbers handed out.
    seq: Mutex<u32>,
    /// A number of this run, so decision numbers differ between runs on one hub.
    run: u32,
    /// The last file uploaded, to send again.
    last: Mutex<Option<(String, Vec<u8>)>>,
}

/// A running vendor system: its fetch loop and its harness.
pub struct FileVendor {
    inner: Arc<Inner>,
    harness: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl FileVendor {
    /// Starts the vendor against the drop box at `login`: its harness on 127.0.0.1:0 and a
    /// loop that fetches the hub's files every 200 ms.
    pub async fn start(vendor: Vendor, mistake: Mistake, login: Login) -> anyhow::Result<FileVendor> {
        let inner = Arc::new(Inner {
            vendor,
            mistake,
            login,
            confirmed: Mutex::default(),
            reject_next: Mutex::default(),
            fetched: Mutex::default(),
            seq: Mutex::default(),
            run: fastrand::u32(1000..10_000),
            last: Mutex::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let harness = format!("http://{}/harness", listener.local_addr()?);
        let app = Router::new().route("/harness", post(trigger)).with_state(inner.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let fetcher = {
            let inner = inner.clone();
            tokio::spawn(async move {
                loop {
                    let i = inner.clone();
                    let _ = tokio::task::spawn_blocking(move || i.fetch_once()).await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        Ok(FileVendor { inner, harness, tasks: vec![server, fetcher] })
    }

    /// The harness's URL, for `carehub conformance --trigger`.
    pub fn trigger_url(&self) -> &str {
        &self.harness
    }

    /// The names of the files fetched from the hub so far.
    pub fn fetched(&self) -> Vec<String> {
        self.inner.fetched.lock().unwrap_or_else(PoisonError::into_inner).iter().map(|(n, _)| n.clone()).collect()
    }

    /// Stops the harness and the fetch loop.
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// The harness: what a case's trigger asks, done before answering.
async fn trigger(State(inner): State<Arc<Inner>>, Json(body): Json<Value>) -> StatusCode {
    let what = body["do"].as_str().unwrap_or_default().to_owned();
    let done = tokio::task::spawn_blocking(move || inner.act(&what)).await;
    match done {
        Ok(Ok(true)) => StatusCode::NO_CONTENT,
        Ok(Ok(false)) => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// The first `O-...` word of an instruction.
fn order_in(text: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '.').find(|w| w.starts_with("O-")).map(str::to_owned)
}

/// The text between the first pair of double quotes.
fn quoted(text: &str) -> Option<String> {
    let (_, rest) = text.split_once('"')?;
    rest.split_once('"').map(|(q, _)| q.to_owned())
}

/// Text as Windows-1252 (and ISO-8859-1, for the letters the profiles use).
pub fn windows_1252(text: &str) -> Vec<u8> {
    text.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect()
}

/// Bytes in Windows-1252 as text.
fn from_8bit(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

impl Inner {
    fn encode(&self, text: &str) -> Vec<u8> {
        if self.mistake == Mistake::Utf8 {
            text.as_bytes().to_vec()
        } else {
            windows_1252(text)
        }
    }

    fn session(&self) -> anyhow::Result<ssh2::Session> {
        Ok(self.session_with_socket()?.0)
    }

    /// A session and its socket, to cut the connection under it.
    fn session_with_socket(&self) -> anyhow::Result<(ssh2::Session, TcpStream)> {
        let tcp = TcpStream::connect_timeout(&self.login.addr, Duration::from_secs(5))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let socket = tcp.try_clone()?;
        let mut s = ssh2::Session::new()?;
        s.set_tcp_stream(tcp);
        s.set_timeout(10_000);
        s.handshake()?;
        s.userauth_password(&self.login.user, &self.login.password)?;
        Ok((s, socket))
    }

    /// Uploads `name` into the inbox: under `<name>.part`, then renamed (or, for the
    /// broken vendor, straight under its name).
    fn upload(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let session = self.session()?;
        let sftp = session.sftp()?;
        let target = format!("{INBOX}/{name}");
        if self.mistake == Mistake::NoTemporaryName {
            sftp.create(Path::new(&target))?.write_all(bytes)?;
        } else {
            let temp = format!("{target}.part");
            sftp.create(Path::new(&temp))?.write_all(bytes)?;
            sftp.rename(Path::new(&temp), Path::new(&target), None)?;
        }
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((name.to_owned(), bytes.to_vec()));
        Ok(())
    }

    /// Starts uploading `name` and loses the connection half-way.
    fn upload_half(&self, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let (session, socket) = self.session_with_socket()?;
        let sftp = session.sftp()?;
        let path = if self.mistake == Mistake::NoTemporaryName {
            format!("{INBOX}/{name}")
        } else {
            format!("{INBOX}/{name}.part")
        };
        let mut file = sftp.create(Path::new(&path))?;
        file.write_all(&bytes[..bytes.len() / 2])?;
        file.flush()?;
        // The connection goes down with the file still open (the close in its drop goes
        // nowhere).
        socket.shutdown(std::net::Shutdown::Both)?;
        drop(file);
        drop(sftp);
        drop(session);
        Ok(())
    }

    /// Waits until the inbox no longer holds `name` (the hub has taken it).
    fn wait_taken(&self, name: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let session = self.session()?;
        let sftp = session.sftp()?;
        while sftp.stat(Path::new(&format!("{INBOX}/{name}"))).is_ok() {
            anyhow::ensure!(Instant::now() < deadline, "the hub did not take {name}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Reads and removes what the hub left in `outbox`; confirms new orders (ParaGå).
    fn fetch_once(&self) -> anyhow::Result<()> {
        let session = self.session()?;
        let sftp = session.sftp()?;
        let mut orders = Vec::new();
        for (path, stat) in sftp.readdir(Path::new(OUTBOX))? {
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
            if !stat.is_file() || name.starts_with('.') || name.ends_with(".part") {
                continue;
            }
            let mut bytes = Vec::new();
            sftp.open(&path)?.read_to_end(&mut bytes)?;
            sftp.unlink(&path)?;
            if self.vendor == Vendor::Paraga && name.starts_with("uppdrag-") {
                let text = from_8bit(&bytes);
                orders.extend(text.lines().skip(1).filter_map(|l| l.split(';').next()).map(str::to_owned));
            }
            self.fetched.lock().unwrap_or_else(PoisonError::into_inner).push((name, bytes));
        }
        drop(sftp);
        for order in orders {
            if order.is_empty() || !self.confirmed.lock().unwrap_or_else(PoisonError::into_inner).insert(order.clone())
            {
                continue;
            }
            let reason = self.reject_next.lock().unwrap_or_else(PoisonError::into_inner).take();
            self.upload(&format!("bekraftelse-{order}.csv"), &self.ack(&order, reason.as_deref()))?;
        }
        Ok(())
    }

    /// ParaGå's confirmation file for `order`.
    fn ack(&self, order: &str, reject: Option<&str>) -> Vec<u8> {
        let row = match reject {
            Some(reason) => format!("{order};Avvisad;{reason};2026-11-02 09:15"),
            None => format!("{order};Accepterad;;2026-11-02 09:15"),
        };
        self.encode(&format!("Uppdragsid;Status;Orsak;Tidpunkt\r\n{row}\r\n"))
    }

    /// A Procapita decision file and its name; `end` adds `Giltighet/@till`.
    fn decision(&self, end: bool) -> (String, Vec<u8>) {
        let n = {
            let mut seq = self.seq.lock().unwrap_or_else(PoisonError::into_inner);
            *seq += 1;
            *seq
        };
        let id = format!("PC-{}-{n}", self.run);
        let till = match (end, self.mistake) {
            (false, _) => String::new(),
            (true, Mistake::DashedEndDate) => " till=\"2027-10-31\"".into(),
            (true, _) => " till=\"20271031\"".into(),
        };
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<Biståndsbeslut xmlns=\"urn:carehub:vendor:procapita:1\">\n  <Beslutsnummer>{id}</Beslutsnummer>\n  <Brukare><Personnummer>{CLIENT}</Personnummer><Namn>Åsa Öberg</Namn></Brukare>\n  <Handläggare signatur=\"ÅÖB\"/>\n  <Utförare><Organisationsnummer>{PROVIDER}</Organisationsnummer></Utförare>\n  <Giltighet från=\"20261101\"{till}/>\n  <Beslutsdag>2026-10-28 10:00</Beslutsdag>\n  <Insatser>\n    <Insats typ=\"Service\" minuterPerMånad=\"480\"/>\n    <Insats typ=\"Personlig omvårdnad\" minuterPerMånad=\"1800\"/>\n  </Insatser>\n</Biståndsbeslut>\n"
        );
        (format!("beslut-{id}.xml"), self.encode(&xml))
    }

    /// Carries out a trigger; `false` when the instruction is not one this system knows.
    fn act(&self, what: &str) -> anyhow::Result<bool> {
        match self.vendor {
            Vendor::Procapita => {
                if what.starts_with("Upload the same decision file twice") {
                    let (name, bytes) = self.decision(false);
                    self.upload(&name, &bytes)?;
                    self.wait_taken(&name)?;
                    self.upload(&name, &bytes)?;
                } else if what.starts_with("Upload a decision and lose the connection") {
                    let (name, bytes) = self.decision(false);
                    self.upload_half(&name, &bytes)?;
                    // Reconnected, it uploads the file again, whole.
                    self.upload(&name, &bytes)?;
                } else if what.starts_with("Start uploading a decision and lose the connection") {
                    let (name, bytes) = self.decision(false);
                    self.upload_half(&name, &bytes)?;
                } else if what.starts_with("Upload a decision with an end date") {
                    let (name, bytes) = self.decision(true);
                    self.upload(&name, &bytes)?;
                } else if what.starts_with("Upload a decision") {
                    let (name, bytes) = self.decision(false);
                    self.upload(&name, &bytes)?;
                } else {
                    return Ok(false);
                }
            }
            Vendor::Paraga => {
                if what.starts_with("Reject the next order") {
                    let reason = quoted(what).unwrap_or_else(|| "Ingen kapacitet".into());
                    *self.reject_next.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
                } else if what.starts_with("Establish the care plan") {
                    let order = order_in(what).ok_or_else(|| anyhow::anyhow!("no order in the instruction"))?;
                    let text = format!("Uppdragsid;Genomförandeplan upprättad\r\n{order};2026-11-03\r\n");
                    self.upload(&format!("plan-{order}.csv"), &self.encode(&text))?;
                } else if what.starts_with("Upload the invoice basis") {
                    let order = order_in(what).ok_or_else(|| anyhow::anyhow!("no order in the instruction"))?;
                    let n = {
                        let mut seq = self.seq.lock().unwrap_or_else(PoisonError::into_inner);
                        *seq += 1;
                        *seq
                    };
                    let text = format!(
                        "Fakturanummer;Typ;Krediterar;Period;Rad;Uppdragsid;Minuter;Belopp (öre);Kommentar\r\nPG-{}-{n};Faktura;;2026-11-01;1;{order};360;;\r\n",
                        self.run
                    );
                    self.upload(&format!("faktura-{}-{n}.csv", self.run), &self.encode(&text))?;
                } else if what.starts_with("Upload the confirmation of order") && what.contains("half-way") {
                    let order = order_in(what).ok_or_else(|| anyhow::anyhow!("no order in the instruction"))?;
                    let name = format!("bekraftelse-{order}-igen.csv");
                    let bytes = self.ack(&order, None);
                    self.upload_half(&name, &bytes)?;
                    self.upload(&name, &bytes)?;
                } else if what.starts_with("Upload the confirmation of order") && what.contains("twice") {
                    let order = order_in(what).ok_or_else(|| anyhow::anyhow!("no order in the instruction"))?;
                    let name = format!("bekraftelse-{order}-igen.csv");
                    let bytes = self.ack(&order, None);
                    self.upload(&name, &bytes)?;
                    self.wait_taken(&name)?;
                    self.upload(&name, &bytes)?;
                } else {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swedish_letters_are_one_byte_each() {
        assert_eq!(windows_1252("på Årsta"), b"p\xe5 \xc5rsta");
        assert_eq!(order_in("Establish the care plan for order O-12AB."), Some("O-12AB".into()));
        assert_eq!(quoted("Reject it with \"Ingen personal\" now"), Some("Ingen personal".into()));
    }
}
