//! The server under slow and many clients, and its graceful stop: slow-header clients are
//! closed after the header-read timeout without holding up others, over HTTP and HTTPS; the
//! connection limit closes the connection over it; SIGTERM under HTTPS load answers every
//! request the hub logged.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::*;

/// The value of an unlabelled sample in a metrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    // Every sample carries the node's label: `name{node="test"} 1`.
    let series = format!("{name}{{node=\"{TEST_NODE}\"}}");
    text.lines().find_map(|l| l.strip_prefix(&series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Reads until the peer closes the connection (end of file or reset); what it read.
async fn read_until_closed(socket: &mut (impl tokio::io::AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        match socket.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn slow_header_clients_are_closed_after_the_timeout_while_others_are_answered() {
    const SLOW: usize = 1000;
    // Long enough that the first slow client is still held when the last one has connected,
    // on two cores busy with the rest of the suite.
    const TIMEOUT: Duration = Duration::from_millis(8000);
    let vendor = MockServer::start().await;
    let options = Options {
        hub_extra: format!("header_read_timeout_ms = {}\nmax_connections = 2000", TIMEOUT.as_millis()),
        ..Options::default()
    };
    let hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), options).await;
    let addr = hub.url.trim_start_matches("http://").to_owned();

    // A thousand clients connect, send half a request line, and stall.
    let mut slow = tokio::task::JoinSet::new();
    for _ in 0..SLOW {
        let addr = addr.clone();
        slow.spawn(async move {
            // Taken before the connection exists: the hub's clock for it cannot start earlier.
            let since = Instant::now();
            let mut socket = TcpStream::connect(&addr).await.expect("connect");
            socket.write_all(b"POST /v1/systems/combine/messages HT").await.expect("half a request line");
            (socket, since)
        });
    }
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(SLOW);
    while let Some(s) = slow.join_next().await {
        sockets.push(s.expect("connect task"));
    }
    let connecting = started.elapsed();

    // Meanwhile normal requests are answered, one of them once the hub holds every slow
    // connection (a connection the client sees as open may still be in the kernel's
    // handshake queue for a moment).
    let open = eventually("the hub holds every slow connection and answers", || async {
        let resp = hub.http.get(format!("{}/metrics", hub.url)).send().await.ok()?;
        assert_eq!(resp.status(), StatusCode::OK);
        let open = sample(&resp.text().await.ok()?, "carehub_http_connections")?;
        (open > SLOW as f64).then_some(open)
    })
    .await;
    assert!(open > SLOW as f64, "connecting took {connecting:?}");

    // Each slow connection is closed by the hub, not before the timeout and not long after.
    let mut reads = tokio::task::JoinSet::new();
    for (mut socket, since) in sockets {
        reads.spawn(async move {
            let got = tokio::time::timeout(TIMEOUT + Duration::from_secs(20), read_until_closed(&mut socket))
                .await
                .expect("the hub closes a slow-header connection");
            (since.elapsed(), got)
        });
    }
    let mut closed = 0;
    while let Some(r) = reads.join_next().await {
        let (after, got) = r.expect("read task");
        assert!(after >= TIMEOUT, "closed after {after:?}, before the header-read timeout");
        assert!(!String::from_utf8_lossy(&got).contains("HTTP/1.1 2"), "no answer to half a request line");
        closed += 1;
    }
    assert_eq!(closed, SLOW);
    let (status, _) = hub.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "the hub still answers");
}

#[tokio::test]
async fn a_stalled_tls_client_is_closed_after_the_header_read_timeout() {
    let vendor = MockServer::start().await;
    let options = Options { tls: true, hub_extra: "header_read_timeout_ms = 300".into(), ..Options::default() };
    let hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), options).await;
    let addr = hub.url.trim_start_matches("https://").to_owned();
    let mut stalled = Vec::new();
    for _ in 0..50 {
        // Connects and never starts the handshake.
        // The instant is taken before the connection exists: the hub's header timer starts at
        // its accept, which can run before this task resumes from `connect`.
        let since = Instant::now();
        stalled.push((TcpStream::connect(&addr).await.expect("connect"), since));
    }
    let (status, _) = {
        let r = https_client(None).get(format!("{}/healthz", hub.url)).send().await.expect("healthz over HTTPS");
        (r.status(), ())
    };
    assert_eq!(status, StatusCode::OK, "a normal client is answered meanwhile");
    for (mut socket, since) in stalled {
        tokio::time::timeout(Duration::from_secs(20), read_until_closed(&mut socket))
            .await
            .expect("the hub closes a stalled TLS connection");
        assert!(since.elapsed() >= Duration::from_millis(300));
    }
}

#[tokio::test]
async fn the_connection_over_the_limit_is_closed_while_the_others_are_held() {
    const N: usize = 5;
    let vendor = MockServer::start().await;
    let options = Options { hub_extra: format!("max_connections = {N}"), ..Options::default() };
    let hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), options).await;
    let addr = hub.url.trim_start_matches("http://").to_owned();

    // N connections, each proven served (and so holding its place) by a kept-alive answer.
    let mut held = Vec::new();
    for _ in 0..N {
        let mut socket = TcpStream::connect(&addr).await.expect("connect");
        socket.write_all(b"GET /healthz HTTP/1.1\r\nhost: hub\r\n\r\n").await.expect("request");
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(20), socket.read(&mut buf))
            .await
            .expect("an answer")
            .expect("read");
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        held.push(socket);
    }

    // Connection N+1 is told 503 and closed at once, before it even asks.
    let mut extra = TcpStream::connect(&addr).await.expect("connect");
    let got = tokio::time::timeout(Duration::from_secs(20), read_until_closed(&mut extra))
        .await
        .expect("the hub closes the connection over the limit");
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("\"code\":\"UNAVAILABLE\""), "{got}");

    // One held connection goes: a new client is served again (and keeps its connection
    // for the next request).
    drop(held.pop());
    let http = reqwest::Client::new();
    let status = eventually("a connection is served once one of the held ones closed", || async {
        let r = http.get(format!("{}/healthz", hub.url)).send().await.ok()?;
        (r.status() == StatusCode::OK).then_some(r.status())
    })
    .await;
    assert_eq!(status, StatusCode::OK);
    let metrics = http.get(format!("{}/metrics", hub.url)).send().await.expect("metrics").text().await.expect("text");
    assert!(
        sample(&metrics, "carehub_http_connections_refused_total").is_some_and(|n| n >= 1.0),
        "the refusal is counted:\n{metrics}"
    );
}

#[tokio::test]
async fn sigterm_under_https_load_answers_every_request_it_logged() {
    const CLIENTS: usize = 8;
    let phoniro = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&phoniro).await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("carehub.db");
    let config = dir.path().join("carehub.toml");
    let options = Options { tls: true, ..Options::default() };
    std::fs::write(&config, config_text(&db, &phoniro.uri(), &phoniro.uri(), &options)).expect("config");
    let (mut child, addr, lines) = serve_binary(&config, &[("CAREHUB_LOG", "info")]);
    let url = format!("https://{addr}");
    let auth = carehub_server::auth::Auth::new(SECRET, carehub_model::Clock::system());
    let token = auth
        .issue("t", carehub_server::auth::Role::CaseManagement, Some("combine"), None, Duration::from_secs(600))
        .expect("token");

    // Several clients post decisions one after another until the hub stops answering.
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let pnrs = test_pnrs();
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (url, token, answered, pnrs) = (url.clone(), token.clone(), answered.clone(), pnrs.clone());
        clients.spawn(async move {
            let http = https_client(None);
            let mut ids = Vec::new();
            for i in 0..2000 {
                let body =
                    decision_xml(&format!("DEC-TERM-{c}-{i}"), &pnrs[(c * 2000 + i) % pnrs.len()], PROVIDER_A, None);
                let sent =
                    http.post(format!("{url}/v1/systems/combine/messages")).bearer_auth(&token).body(body).send().await;
                // A request that failed (connection closed or refused) ends this client.
                let Ok(resp) = sent else { break };
                let status = resp.status();
                let Ok(body) = resp.json::<serde_json::Value>().await else { break };
                assert_eq!(status, StatusCode::ACCEPTED, "{body}");
                ids.push(body["message_id"].as_i64().expect("a message id"));
                answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            ids
        });
    }
    eventually("the clients have had 100 answers", || async {
        (answered.load(std::sync::atomic::Ordering::SeqCst) >= 100).then_some(())
    })
    .await;
    // One more client has sent its headers and half its body when the hub is told to stop:
    // the hub is handling it (counted in flight), and must wait for the rest and answer.
    let (head, rest) = {
        let body = decision_xml("DEC-TERM-SLOW", &pnrs[4000 % pnrs.len()], PROVIDER_A, None);
        let head = format!(
            "POST /v1/systems/combine/messages HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        );
        let (first, second) = body.split_at(body.len() / 2);
        (format!("{head}{first}"), second.to_owned())
    };
    let mut slow = tls_connect(&addr).await;
    slow.write_all(head.as_bytes()).await.expect("headers and half the body");
    slow.flush().await.expect("flush");
    let metrics_client = https_client(None);
    eventually("the half-sent request is in the handlers", || async {
        let text = metrics_client.get(format!("{url}/metrics")).send().await.ok()?.text().await.ok()?;
        // The scrape itself is one.
        (sample(&text, "carehub_http_requests_in_flight")? >= 2.0).then_some(())
    })
    .await;
    let term = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(term.success());
    eventually("the hub drains its connections", || async {
        lines.lock().ok()?.iter().any(|l| l.contains("draining connections")).then_some(())
    })
    .await;
    slow.write_all(rest.as_bytes()).await.expect("the rest of the body");
    slow.flush().await.expect("flush");
    let answer = tokio::time::timeout(Duration::from_secs(20), read_until_closed(&mut slow)).await.expect("an answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 202"), "the request in flight is answered: {answer}");
    let receipt: serde_json::Value =
        serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap_or("")).expect("a JSON receipt");
    let mut received = BTreeSet::from([receipt["message_id"].as_i64().expect("its message id")]);
    while let Some(ids) = clients.join_next().await {
        received.extend(ids.expect("client task"));
    }
    let exit = tokio::task::spawn_blocking(move || child.wait()).await.expect("join").expect("reap");
    let log = lines.lock().map(|l| l.join("\n")).unwrap_or_default();
    assert!(exit.success(), "a graceful stop exits 0: {exit:?}\n{log}");
    assert!(log.contains("carehub stopped"), "{log}");

    // Every decision the log holds as accepted was answered to its client, and no more.
    let (mut child, addr, _) = serve_binary(&config, &[("CAREHUB_LOG", "info")]);
    let url = format!("https://{addr}");
    let admin =
        auth.issue("t", carehub_server::auth::Role::Admin, None, None, Duration::from_secs(600)).expect("token");
    let http = https_client(None);
    let mut logged = BTreeSet::new();
    let mut after: Option<i64> = None;
    for _ in 0..100 {
        let page_url = match after {
            Some(a) => format!("{url}/v1/messages?type=decision&status=accepted&limit=1000&after={a}"),
            None => format!("{url}/v1/messages?type=decision&status=accepted&limit=1000"),
        };
        let page: serde_json::Value =
            http.get(page_url).bearer_auth(&admin).send().await.expect("log").json().await.expect("json");
        logged.extend(page["messages"].as_array().expect("messages").iter().filter_map(|m| m["id"].as_i64()));
        after = page["next_after"].as_i64();
        if after.is_none() {
            break;
        }
    }
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert!(received.len() >= 100, "{} answered", received.len());
    let unanswered: Vec<_> = logged.difference(&received).collect();
    assert!(unanswered.is_empty(), "logged as accepted but never answered: {unanswered:?}");
    assert_eq!(logged, received);
}

/// A TLS connection to the hub at `addr` (trusting the test CA), for writing requests by hand.
async fn tls_connect(addr: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(cert_file("ca.pem")).expect("ca") {
        roots.add(cert.expect("a CA certificate")).expect("usable CA");
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)).connect(name, tcp).await.expect("TLS handshake")
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let vendor = MockServer::start().await;
    // Headers get a long time, idleness a short one: the close is the idle timeout's.
    let options =
        Options { hub_extra: "header_read_timeout_ms = 60000\nidle_timeout_ms = 300".into(), ..Options::default() };
    let hub = TestHub::start_with(&vendor.uri(), &vendor.uri(), options).await;
    let mut socket = TcpStream::connect(hub.url.trim_start_matches("http://")).await.expect("connect");
    // Taken before the request is sent: the hub's idle timer starts after its answer, which
    // can come before this task resumes from the write.
    let since = Instant::now();
    socket.write_all(b"GET /healthz HTTP/1.1\r\nhost: hub\r\n\r\n").await.expect("request");
    let got = tokio::time::timeout(Duration::from_secs(20), read_until_closed(&mut socket))
        .await
        .expect("the hub closes the idle connection");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"), "answered first");
    assert!(since.elapsed() >= Duration::from_millis(300), "closed after {:?}", since.elapsed());
}
