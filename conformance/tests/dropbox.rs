//! The mock hub's SFTP drop box, over real sockets on 127.0.0.1, with the clients that will
//! meet it: the hub's own SFTP transport (libssh2), OpenSSH's `sftp`, and libssh2 directly
//! for passwords and half-finished uploads.
//!
//! Needs `ssh-keygen` and `sftp` (Debian's openssh-client, which `scripts/test` installs).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carehub_adapters::transport::sftp::{SftpClient, SftpInbox, SftpTransport};
use carehub_adapters::SftpConfig;
use carehub_conformance::dropbox::{Dropbox, DropboxEvent, DropboxOp, DropboxUser};
use carehub_core::adapter::{Envelope, Inbox, Transport};
use carehub_model::Clock;
use chrono::TimeZone;
use tempfile::TempDir;
use tokio::sync::oneshot;

const USER: &str = "procapita";
const PASSWORD: &str = "korrekt-häst-batteri";

/// A key pair made by ssh-keygen: `<dir>/<name>` and `<dir>/<name>.pub`.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "vendor@example.invalid", "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen (scripts/test installs openssh-client)");
    assert!(out.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    (key, public)
}

/// A drop box on 127.0.0.1:0 with one user (password and key), its events, and its stop.
struct TestBox {
    dir: TempDir,
    addr: SocketAddr,
    fingerprint: String,
    key: PathBuf,
    events: Arc<Mutex<Vec<DropboxEvent>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestBox {
    async fn start() -> TestBox {
        let dir = tempfile::tempdir().expect("temp dir");
        let (key, public) = keygen(dir.path(), "vendor_key");
        let user = DropboxUser { name: USER.into(), password: Some(PASSWORD.into()), authorized_keys: vec![public] };
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let dropbox = Dropbox::new(dir.path().join("sftp"), vec![user])
            .expect("drop box")
            .auth_rejection_time(Duration::from_millis(50))
            .observe(move |e| seen.lock().expect("events").push(e));
        let fingerprint = dropbox.host_key_fingerprint();
        for sub in ["inbox", "archive", "error", "outbox"] {
            std::fs::create_dir_all(dropbox.user_root(USER).expect("user").join(sub)).expect("folders");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = dropbox.serve(listener, async move {
            let _ = stopped.await;
        });
        TestBox { dir, addr, fingerprint, key, events, stop: Some(stop), task: Some(task) }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("sftp").join(USER)
    }

    fn files(&self, sub: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.root().join(sub))
            .expect("folder")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        v.sort();
        v
    }

    fn events(&self) -> Vec<DropboxEvent> {
        self.events.lock().expect("events").clone()
    }

    /// Waits (polling, with a deadline) for an event that `matches`.
    async fn wait_for(&self, what: &str, matches: impl Fn(&DropboxEvent) -> bool) -> DropboxEvent {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(e) = self.events().into_iter().find(|e| matches(e)) {
                return e;
            }
            assert!(Instant::now() < deadline, "no event {what}; saw {:?}", self.events());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `[[systems]]` keys as a hub would have them for this drop box, logging in with `key`.
    fn hub_config(&self, key: &Path) -> SftpConfig {
        SftpConfig {
            host: "127.0.0.1".into(),
            port: self.addr.port(),
            username: USER.into(),
            private_key: key.to_path_buf(),
            host_key_sha256: self.fingerprint.clone(),
            inbox: "inbox".into(),
            archive: "archive".into(),
            error: "error".into(),
            outbox: "/outbox".into(),
            poll_seconds: 1,
            timeout_seconds: 5,
        }
    }
}

fn clock() -> Clock {
    Clock::frozen(chrono::Utc.with_ymd_and_hms(2026, 11, 3, 7, 30, 0).single().expect("a time"))
}

/// Runs blocking libssh2 work off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// A libssh2 session to the drop box, logged in with `password`, or the login's error.
fn ssh2_login(addr: SocketAddr, user: &str, password: &str) -> Result<ssh2::Session, ssh2::Error> {
    ssh2_login_with_socket(addr, user, password).map(|(session, _)| session)
}

/// The same, with the session's socket, to cut the connection under it.
fn ssh2_login_with_socket(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> Result<(ssh2::Session, std::net::TcpStream), ssh2::Error> {
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    let socket = tcp.try_clone().expect("socket");
    let mut session = ssh2::Session::new()?;
    session.set_tcp_stream(tcp);
    session.set_timeout(10_000);
    session.handshake()?;
    session.userauth_password(user, password)?;
    assert!(session.authenticated());
    Ok((session, socket))
}

fn sftp_code(e: &ssh2::Error) -> Option<i32> {
    match e.code() {
        ssh2::ErrorCode::SFTP(c) => Some(c),
        ssh2::ErrorCode::Session(_) => None,
    }
}

const NO_SUCH_FILE: Option<i32> = Some(2);
const PERMISSION_DENIED: Option<i32> = Some(3);
const FAILURE: Option<i32> = Some(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_own_transport_polls_archives_and_uploads_receipts_with_a_key() {
    let b = TestBox::start().await;
    std::fs::write(b.root().join("inbox/beslut-17.xml"), b"<beslut id=\"17\"/>").expect("a file");
    std::fs::write(b.root().join("inbox/beslut-18.xml.part"), b"<besl").expect("a partial file");
    let client = Arc::new(SftpClient::new(b.hub_config(&b.key), clock()));

    let check = SftpTransport(client.clone()).check().await.expect("the hub's check");
    assert!(check.contains("host key matches") && check.contains("entries in inbox"), "{check}");
    let inbox = SftpInbox(client.clone());
    assert_eq!(inbox.ready().await.expect("list"), vec!["beslut-17.xml"], "temporary names are not listed");
    assert_eq!(inbox.read("beslut-17.xml").await.expect("read"), b"<beslut id=\"17\"/>");
    inbox.archive("beslut-17.xml").await.expect("archive");
    assert_eq!(b.files("archive"), vec!["20261103T073000000000-beslut-17.xml"]);
    assert_eq!(b.files("inbox"), vec!["beslut-18.xml.part"]);
    let moved = b.wait_for("archive rename", |e| matches!(e.op, DropboxOp::Renamed { .. })).await;
    assert_eq!(moved.op, DropboxOp::Renamed { from: "inbox/beslut-17.xml".into() });
    assert_eq!((moved.path.as_str(), moved.size), ("archive/20261103T073000000000-beslut-17.xml", 17));

    // The receipt: written as `.<name>.part`, then renamed; delivered twice, one file.
    let env = Envelope {
        message_type: "order_ack",
        content_type: "application/xml",
        endpoint: Some("kvittens"),
        body: b"<kvittens ok=\"true\"/>",
        idempotency_key: "ack-17",
        action: None,
    };
    let transport = SftpTransport(client.clone());
    for _ in 0..2 {
        transport.deliver(&env).await.expect("deliver");
    }
    assert_eq!(b.files("outbox"), vec!["kvittens-ack-17.xml"]);
    let receipt = std::fs::read(b.root().join("outbox/kvittens-ack-17.xml")).expect("receipt");
    assert_eq!(receipt, env.body);
    let events = b.events();
    let written = events.iter().find(|e| e.op == DropboxOp::Written).expect("a written event");
    assert_eq!((written.path.as_str(), written.size), ("outbox/.kvittens-ack-17.xml.part", 21));
    assert!(events.iter().any(|e| e.op == DropboxOp::Renamed { from: "outbox/.kvittens-ack-17.xml.part".into() }
        && e.path == "outbox/kvittens-ack-17.xml"));
    assert!(
        events.iter().any(|e| e.op == DropboxOp::Removed && e.path == "outbox/kvittens-ack-17.xml"),
        "the retry removed the first copy before renaming over it: {events:?}"
    );

    // A refused file goes to the error folder with its reason beside it.
    std::fs::write(b.root().join("inbox/trasig.xml"), b"<beslut").expect("a file");
    inbox.reject("trasig.xml", "MAPPING_FAILED: not XML").await.expect("reject");
    assert_eq!(
        b.files("error"),
        vec!["20261103T073000000000-trasig.xml", "20261103T073000000000-trasig.xml.reason.txt"]
    );

    // A daily file: read (missing first), extended, rewritten.
    let c = client.clone();
    let added = blocking(move || {
        let first = c.append_rows("outbox", "uppdrag-20261103.csv", b"Id;Namn\r\n1;a\r\n").expect("append");
        let again = c.append_rows("outbox", "uppdrag-20261103.csv", b"Id;Namn\r\n1;a\r\n2;b\r\n").expect("append");
        (first, again)
    })
    .await;
    assert_eq!(added, (true, true));
    let day = std::fs::read_to_string(b.root().join("outbox/uppdrag-20261103.csv")).expect("day file");
    assert_eq!(day, "Id;Namn\r\n1;a\r\n2;b\r\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_login_lists_downloads_and_renames() {
    let b = TestBox::start().await;
    std::fs::write(b.root().join("inbox/svar.csv"), b"Uppdragsid;Status\r\n").expect("a file");
    let addr = b.addr;
    let (names, bytes, renamed, realpath) = blocking(move || {
        let session = ssh2_login(addr, USER, PASSWORD).expect("password login");
        let sftp = session.sftp().expect("sftp");
        let mut names: Vec<String> = sftp
            .readdir(Path::new("/inbox"))
            .expect("readdir")
            .into_iter()
            .map(|(p, stat)| {
                assert!(stat.is_file() && stat.size == Some(19), "{p:?} {stat:?}");
                p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned()
            })
            .collect();
        names.sort();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut sftp.open(Path::new("inbox/svar.csv")).expect("open"), &mut bytes)
            .expect("read");
        sftp.rename(Path::new("inbox/svar.csv"), Path::new("archive/svar.csv"), None).expect("rename");
        let realpath = sftp.realpath(Path::new("inbox/../archive/.")).expect("realpath");
        (names, bytes, sftp.stat(Path::new("archive/svar.csv")).map(|s| s.size), realpath)
    })
    .await;
    assert_eq!(names, vec!["svar.csv"]);
    assert_eq!(bytes, b"Uppdragsid;Status\r\n");
    assert_eq!(renamed.expect("stat"), Some(19));
    assert_eq!(realpath, Path::new("/archive"));
    assert_eq!(b.files("inbox"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_rename_does_not_replace_and_errors_carry_sftp_codes() {
    let b = TestBox::start().await;
    std::fs::write(b.root().join("inbox/a.xml"), b"a").expect("a file");
    std::fs::write(b.root().join("inbox/b.xml"), b"b").expect("a file");
    let addr = b.addr;
    let codes = blocking(move || {
        let session = ssh2_login(addr, USER, PASSWORD).expect("password login");
        let sftp = session.sftp().expect("sftp");
        let code = |r: Result<(), ssh2::Error>| r.err().and_then(|e| sftp_code(&e));
        vec![
            ("rename over", code(sftp.rename(Path::new("inbox/a.xml"), Path::new("inbox/b.xml"), None))),
            ("open missing", code(sftp.open(Path::new("inbox/none.xml")).map(drop))),
            ("stat missing", code(sftp.stat(Path::new("inbox/none.xml")).map(drop))),
            ("rmdir full", code(sftp.rmdir(Path::new("inbox")))),
            ("unlink folder", code(sftp.unlink(Path::new("inbox")))),
            ("mkdir existing", code(sftp.mkdir(Path::new("inbox"), 0o755))),
            ("symlink", code(sftp.symlink(Path::new("inbox/l"), Path::new("a.xml")))),
            ("mkdir", code(sftp.mkdir(Path::new("inbox/ny"), 0o755))),
            ("rmdir", code(sftp.rmdir(Path::new("inbox/ny")))),
            (
                "setstat",
                code(sftp.setstat(
                    Path::new("inbox/a.xml"),
                    ssh2::FileStat { size: None, uid: None, gid: None, perm: Some(0o600), atime: None, mtime: None },
                )),
            ),
        ]
    })
    .await;
    let expected = vec![
        ("rename over", FAILURE),
        ("open missing", NO_SUCH_FILE),
        ("stat missing", NO_SUCH_FILE),
        ("rmdir full", FAILURE),
        ("unlink folder", FAILURE),
        ("mkdir existing", FAILURE),
        ("symlink", PERMISSION_DENIED),
        ("mkdir", None),
        ("rmdir", None),
        ("setstat", None),
    ];
    assert_eq!(codes, expected);
    assert_eq!(std::fs::read(b.root().join("inbox/b.xml")).expect("b"), b"b", "b.xml was not replaced");
    assert_eq!(b.files("inbox"), vec!["a.xml", "b.xml"]);
    let ops: Vec<DropboxOp> = b.events().into_iter().map(|e| e.op).collect();
    assert_eq!(ops, vec![DropboxOp::MadeDir, DropboxOp::RemovedDir]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_go_to_the_end_and_handles_answer_fstat() {
    let b = TestBox::start().await;
    let addr = b.addr;
    let (content, fstat_size, lstat_is_file, read_only_write) = blocking(move || {
        let session = ssh2_login(addr, USER, PASSWORD).expect("password login");
        let sftp = session.sftp().expect("sftp");
        let path = Path::new("inbox/dag.csv");
        let flags = ssh2::OpenFlags::WRITE | ssh2::OpenFlags::APPEND | ssh2::OpenFlags::CREATE;
        for row in [&b"Id;Namn\r\n"[..], b"1;a\r\n"] {
            let mut file = sftp.open_mode(path, flags, 0o644, ssh2::OpenType::File).expect("open to append");
            std::io::Write::write_all(&mut file, row).expect("append");
        }
        let mut file = sftp.open(path).expect("open to read");
        let fstat_size = file.stat().expect("fstat").size;
        let mut content = String::new();
        std::io::Read::read_to_string(&mut file, &mut content).expect("read");
        // A file opened to read cannot be written through.
        let read_only_write =
            std::io::Write::write_all(&mut file, b"x").and_then(|()| std::io::Write::flush(&mut file));
        let lstat_is_file = sftp.lstat(path).expect("lstat").is_file();
        (content, fstat_size, lstat_is_file, read_only_write.is_err())
    })
    .await;
    assert_eq!(content, "Id;Namn\r\n1;a\r\n");
    assert_eq!(fstat_size, Some(14));
    assert!(lstat_is_file && read_only_write);
    let written: Vec<(String, u64)> =
        b.events().into_iter().filter(|e| e.op == DropboxOp::Written).map(|e| (e.path, e.size)).collect();
    assert_eq!(written, vec![("inbox/dag.csv".to_owned(), 9), ("inbox/dag.csv".to_owned(), 14)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssh_sftp_puts_renames_gets_and_removes_in_batch_mode() {
    let b = TestBox::start().await;
    let work = b.dir.path().join("vendor");
    std::fs::create_dir_all(&work).expect("work dir");
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(work.join("export.xml"), &body).expect("local file");
    let batch = work.join("batch");
    std::fs::write(
        &batch,
        "put export.xml inbox/export.xml.tmp\n\
         rename inbox/export.xml.tmp inbox/export.xml\n\
         ls -l inbox\n\
         get inbox/export.xml fetched.xml\n\
         rm inbox/export.xml\n",
    )
    .expect("batch file");
    let (port, key) = (b.addr.port().to_string(), b.key.clone());
    let out = blocking(move || {
        Command::new("sftp")
            .current_dir(&work)
            .args(["-b", "batch", "-P", port.as_str(), "-i"])
            .arg(&key)
            .args([
                "-F",
                "/dev/null",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{USER}@127.0.0.1"))
            .output()
            .expect("sftp (scripts/test installs openssh-client)")
    })
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sftp failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("export.xml"), "ls shows the file: {stdout}");
    assert_eq!(std::fs::read(b.dir.path().join("vendor/fetched.xml")).expect("fetched"), body);
    assert_eq!(b.files("inbox"), Vec::<String>::new(), "removed at the end");
    let events: Vec<(DropboxOp, String, u64)> = b.events().into_iter().map(|e| (e.op, e.path, e.size)).collect();
    assert_eq!(
        events,
        vec![
            (DropboxOp::Written, "inbox/export.xml.tmp".into(), 100_000),
            (DropboxOp::Renamed { from: "inbox/export.xml.tmp".into() }, "inbox/export.xml".into(), 100_000),
            (DropboxOp::Removed, "inbox/export.xml".into(), 100_000),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_outside_the_users_folder_can_be_reached() {
    let b = TestBox::start().await;
    let outside = tempfile::tempdir().expect("a folder outside");
    std::fs::write(outside.path().join("secret.txt"), b"not for vendors").expect("outside file");
    let inbox = b.root().join("inbox");
    std::os::unix::fs::symlink(outside.path(), inbox.join("out-dir")).expect("link");
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), inbox.join("out-file")).expect("link");
    std::os::unix::fs::symlink(outside.path().join("new.txt"), inbox.join("dangling")).expect("link");
    std::fs::write(inbox.join("own.xml"), b"own").expect("own file");
    std::os::unix::fs::symlink(inbox.join("own.xml"), inbox.join("in-link")).expect("link");
    let addr = b.addr;
    let codes = blocking(move || {
        let session = ssh2_login(addr, USER, PASSWORD).expect("password login");
        let sftp = session.sftp().expect("sftp");
        let code = |r: Result<(), ssh2::Error>| r.err().and_then(|e| sftp_code(&e));
        let open = |p: &str| code(sftp.open(Path::new(p)).map(drop));
        let create = |p: &str| code(sftp.create(Path::new(p)).map(drop));
        vec![
            ("../etc/passwd", open("../etc/passwd")),
            ("inbox/../../etc/passwd", open("inbox/../../etc/passwd")),
            ("/etc/passwd", open("/etc/passwd")),
            ("realpath ..", code(sftp.realpath(Path::new("..")).map(drop))),
            ("write ../x", create("../x")),
            ("link to a file out", open("inbox/out-file")),
            ("stat a link out", code(sftp.stat(Path::new("inbox/out-file")).map(drop))),
            ("list a link out", code(sftp.readdir(Path::new("inbox/out-dir")).map(drop))),
            ("through a link out", open("inbox/out-dir/secret.txt")),
            ("write through a link out", create("inbox/out-dir/planted.txt")),
            ("write a dangling link", create("inbox/dangling")),
            ("rename out", code(sftp.rename(Path::new("inbox/own.xml"), Path::new("inbox/out-dir/own.xml"), None))),
            ("rename the link out", code(sftp.rename(Path::new("inbox/out-file"), Path::new("inbox/x"), None))),
            ("remove through a link", code(sftp.unlink(Path::new("inbox/out-dir/secret.txt")))),
            ("a link inside", open("inbox/in-link")),
        ]
    })
    .await;
    let expected = vec![
        ("../etc/passwd", PERMISSION_DENIED),
        ("inbox/../../etc/passwd", PERMISSION_DENIED),
        // `/` is the user's folder: the host's /etc is not there.
        ("/etc/passwd", NO_SUCH_FILE),
        ("realpath ..", PERMISSION_DENIED),
        ("write ../x", PERMISSION_DENIED),
        ("link to a file out", PERMISSION_DENIED),
        ("stat a link out", PERMISSION_DENIED),
        ("list a link out", PERMISSION_DENIED),
        ("through a link out", PERMISSION_DENIED),
        ("write through a link out", PERMISSION_DENIED),
        ("write a dangling link", PERMISSION_DENIED),
        ("rename out", PERMISSION_DENIED),
        ("rename the link out", PERMISSION_DENIED),
        ("remove through a link", PERMISSION_DENIED),
        ("a link inside", None),
    ];
    assert_eq!(codes, expected);
    let mut outside_now: Vec<String> = std::fs::read_dir(outside.path())
        .expect("outside")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    outside_now.sort();
    assert_eq!(outside_now, vec!["secret.txt"], "nothing was written or removed outside");
    assert!(!b.dir.path().join("sftp/x").exists() && !b.dir.path().join("x").exists());
    assert!(b.events().is_empty(), "nothing changed: {:?}", b.events());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_an_unknown_key_and_an_unknown_user_are_refused() {
    let b = TestBox::start().await;
    let addr = b.addr;
    let (wrong_password, unknown_user) = blocking(move || {
        (ssh2_login(addr, USER, "fel-lösenord").is_err(), ssh2_login(addr, "nobody", PASSWORD).is_err())
    })
    .await;
    assert!(wrong_password, "a wrong password is refused");
    assert!(unknown_user, "an unknown user is refused");

    let (stranger, _) = keygen(b.dir.path(), "stranger_key");
    let client = Arc::new(SftpClient::new(b.hub_config(&stranger), clock()));
    let err = SftpInbox(client).ready().await.expect_err("an unknown key is refused");
    assert!(!err.is_transient() && err.message.contains("login as procapita"), "{err}");

    // The host key is pinned: a hub expecting another refuses before logging in.
    let mut config = b.hub_config(&b.key);
    config.host_key_sha256 = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
    let err = SftpInbox(Arc::new(SftpClient::new(config, clock()))).ready().await.expect_err("pinned");
    assert!(err.message.contains("host key"), "{err}");
    assert!(b.events().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_finished_only_when_closed_and_an_abandoned_one_is_reported_as_such() {
    let b = TestBox::start().await;
    let half = vec![b'x'; 40_000];
    let (addr, path) = (b.addr, b.root().join("inbox/stor.xml"));
    let events = b.events.clone();
    // Open, write half, and look at the observer right after the write was answered.
    let (session, file, seen_while_open, size_while_open) = blocking(move || {
        let session = ssh2_login(addr, USER, PASSWORD).expect("password login");
        let sftp = session.sftp().expect("sftp");
        let mut file = sftp.create(Path::new("inbox/stor.xml")).expect("create");
        std::io::Write::write_all(&mut file, &half).expect("write half");
        let seen = events.lock().expect("events").clone();
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        (session, (sftp, file), seen, size)
    })
    .await;
    assert_eq!(size_while_open, 40_000, "the write was answered, so it is on disk");
    assert!(seen_while_open.is_empty(), "a file open for writing is not finished: {seen_while_open:?}");

    // The second half, then close: now it is finished, with its full size.
    let second = blocking(move || {
        let (sftp, mut file) = file;
        std::io::Write::write_all(&mut file, &[b'y'; 40_000]).expect("write the rest");
        drop(file);
        (session, sftp)
    })
    .await;
    let done = b.wait_for("written", |e| e.op == DropboxOp::Written).await;
    assert_eq!((done.user.as_str(), done.path.as_str(), done.size), (USER, "inbox/stor.xml", 80_000));

    drop(second);

    // Another upload left open when the connection goes: reported as abandoned, not written.
    blocking(move || {
        let (session, socket) = ssh2_login_with_socket(addr, USER, PASSWORD).expect("password login");
        let sftp = session.sftp().expect("sftp");
        let mut file = sftp.create(Path::new("inbox/halv.xml")).expect("create");
        std::io::Write::write_all(&mut file, &[b'z'; 1000]).expect("write");
        // The connection dies before the file is closed (the close in its drop goes nowhere).
        socket.shutdown(std::net::Shutdown::Both).expect("cut the connection");
        drop(file);
    })
    .await;
    let gone = b.wait_for("abandoned", |e| e.op == DropboxOp::Abandoned).await;
    assert_eq!((gone.path.as_str(), gone.size), ("inbox/halv.xml", 1000));
    let written: Vec<String> = b.events().into_iter().filter(|e| e.op == DropboxOp::Written).map(|e| e.path).collect();
    assert_eq!(written, vec!["inbox/stor.xml"], "the abandoned file was never reported finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_key_from_a_file_keeps_its_fingerprint_and_shutdown_closes_the_port() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (host_key, _) = keygen(dir.path(), "host_key");
    let out = Command::new("ssh-keygen").arg("-lf").arg(host_key.with_extension("pub")).output().expect("ssh-keygen");
    let printed = String::from_utf8_lossy(&out.stdout).split_whitespace().nth(1).unwrap_or("").to_owned();
    let dropbox = Dropbox::new(dir.path().join("sftp"), vec![DropboxUser::with_password(USER, PASSWORD)])
        .expect("drop box")
        .with_host_key_file(&host_key)
        .await
        .expect("host key");
    assert_eq!(dropbox.host_key_fingerprint(), printed);
    let missing = Dropbox::new(dir.path(), vec![DropboxUser::with_password(USER, PASSWORD)])
        .expect("drop box")
        .with_host_key_file(dir.path().join("none"))
        .await
        .expect_err("no such key file");
    assert_eq!(missing.code(), "DROPBOX_HOST_KEY");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = dropbox.serve(listener, async move {
        let _ = stopped.await;
    });
    let (session, sftp) = blocking(move || {
        let session = ssh2_login(addr, USER, PASSWORD).expect("login");
        let sftp = session.sftp().expect("sftp");
        (session, sftp)
    })
    .await;
    stop.send(()).expect("stop");
    tokio::time::timeout(Duration::from_secs(10), task).await.expect("stops").expect("task").expect("no error");
    assert!(nothing_listens(addr).await, "nothing listens after shutdown");
    // A connection open at shutdown is told to go: its requests fail from then on.
    let cut = blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if sftp.stat(Path::new("/")).is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(session);
        false
    })
    .await;
    assert!(cut, "the open connection was closed at shutdown");
}

impl Drop for TestBox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Whether nothing accepts connections at `addr`. A connect from an ephemeral port equal to
/// `addr`'s own connects the socket to itself (TCP's simultaneous open) when nothing listens
/// there: that is not a listener either.
async fn nothing_listens(addr: std::net::SocketAddr) -> bool {
    match tokio::net::TcpStream::connect(addr).await {
        Err(_) => true,
        Ok(stream) => stream.local_addr().ok() == Some(addr),
    }
}
