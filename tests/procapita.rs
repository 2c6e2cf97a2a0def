//! Procapita over SFTP against a real OpenSSH server on 127.0.0.1: decision files in
//! (ISO-8859-1), receipts, acknowledgements and plans out as files, and the ways file
//! transfers break.

use reqwest::StatusCode;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::sshd::{LocalSshd, Sshd};
use crate::support::*;

async fn hub_with(sshd: &LocalSshd, phoniro: &MockServer, host_key: &str) -> TestHub {
    let options = Options { procapita: Some(sshd.system_keys(host_key)), ..Options::default() };
    TestHub::start_with(&phoniro.uri(), &phoniro.uri(), options).await
}

async fn wait_for_file(sshd: &LocalSshd, folder: &str, what: &str, pred: impl Fn(&str) -> bool) -> String {
    eventually(what, || async { sshd.files(folder).into_iter().find(|f| pred(f)) }).await
}

#[tokio::test]
async fn a_procapita_file_becomes_an_order_and_the_answers_return_as_files() {
    let sshd = Sshd::start();
    let phoniro = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/orders"))
        .respond_with(ResponseTemplate::new(201))
        .expect(1)
        .mount(&phoniro)
        .await;
    let hub = hub_with(&sshd, &phoniro, &sshd.host_key_sha256.clone()).await;
    sshd.drop_file("beslut-118.xml", &decision_file("PC-2026-118", "193601016987", PROVIDER_A)).expect("drop a file");

    // Taken: archived, receipted, ordered.
    wait_for_file(&sshd, "archive", "the file is archived", |f| f.ends_with("-beslut-118.xml")).await;
    assert!(sshd.files("inbox").is_empty());
    let order = hub.order_of("procapita:PC-2026-118").await;
    hub.wait_for_order_status(&order, "delivered").await;
    let receipt = wait_for_file(&sshd, "outbox", "a receipt is uploaded", |f| f.starts_with("kvitto-")).await;
    let text = std::fs::read(sshd.root.join("outbox").join(&receipt)).expect("receipt");
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("<Fil>beslut-118.xml</Fil>") && text.contains("<Status>Mottaget</Status>"), "{text}");
    assert!(text.contains(&format!("<Uppdrag>{order}</Uppdrag>")), "{text}");
    // The log holds the file's bytes as they came, ISO-8859-1 and all.
    let (_, page) = hub.get("/v1/messages?system=procapita&type=decision", Some(&hub.admin())).await;
    let entry = &page["messages"][0];
    let (_, full) = hub.get(&format!("/v1/messages/{}", entry["id"]), Some(&hub.admin())).await;
    assert_eq!(
        full["payload_encoding"], "base64",
        "ISO-8859-1 bytes are not UTF-8, so the log keeps them as they were"
    );

    // The provider declines; Procapita gets the answer as an ISO-8859-1 file.
    let declined = format!(
        r#"{{"type":"orderConfirmation","orderId":"{order}","status":"REJECTED","reason":"Kunden har flyttat till Gävle","confirmedAt":"2026-11-02T08:15:00Z"}}"#
    );
    let (status, _) = hub.post("phoniro", declined, Some(&hub.provider(PROVIDER_A))).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let answer = wait_for_file(&sshd, "outbox", "the answer is uploaded", |f| f.starts_with("verkstallighet-")).await;
    let bytes = std::fs::read(sshd.root.join("outbox").join(&answer)).expect("answer");
    assert!(
        bytes.starts_with(b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>"),
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let needle = b"<Orsak>Kunden har flyttat till G\xe4vle</Orsak>";
    assert!(bytes.windows(needle.len()).any(|w| w == needle), "ä is one byte, 0xE4, in ISO-8859-1");
    let element = b"<Verkst\xe4llighet";
    assert!(bytes.windows(element.len()).any(|w| w == element));
    assert!(sshd.files("outbox").iter().all(|f| !f.ends_with(".part")), "uploads are renamed into place");
}

#[tokio::test]
async fn partial_unreadable_and_repeated_files_and_a_restarting_server() {
    let mut sshd = Sshd::start();
    let phoniro = MockServer::start().await;
    Mock::given(method("POST")).and(path("/api/orders")).respond_with(ResponseTemplate::new(201)).mount(&phoniro).await;
    let hub = hub_with(&sshd, &phoniro, &sshd.host_key_sha256.clone()).await;
    let pnrs = test_pnrs();

    // A file still being written (temporary name) is left alone, however long it sits.
    let half = &decision_file("PC-1", &pnrs[400], PROVIDER_A)[..120];
    std::fs::write(sshd.root.join("inbox").join("beslut-1.xml.part"), half).expect("write");
    // An unreadable file next to a good one: the bad one goes to the error folder with its
    // reason, the good one is taken in the same poll.
    sshd.drop_file("trasig.xml", b"<Bist\xe5ndsbeslut xmlns=\"urn:carehub:vendor:procapita:1\"><Beslutsnummer>")
        .expect("drop a file");
    sshd.drop_file("beslut-2.xml", &decision_file("PC-2", &pnrs[401], PROVIDER_A)).expect("drop a file");
    wait_for_file(&sshd, "archive", "the good file is archived", |f| f.ends_with("-beslut-2.xml")).await;
    let reason =
        wait_for_file(&sshd, "error", "the bad file has a reason", |f| f.ends_with("-trasig.xml.reason.txt")).await;
    let text = std::fs::read_to_string(sshd.root.join("error").join(&reason)).expect("reason");
    assert!(text.starts_with("MALFORMED_PAYLOAD: "), "{text}");
    assert!(text.contains("message_id: "), "{text}");
    wait_for_file(&sshd, "error", "the bad file is moved beside its reason", |f| f.ends_with("-trasig.xml")).await;
    hub.wait_for_a_full_poll("procapita", "inbox").await;
    assert_eq!(sshd.files("inbox"), vec!["beslut-1.xml.part".to_owned()], "the partial file was never touched");
    // Renamed into place, it is taken.
    let full = decision_file("PC-1", &pnrs[400], PROVIDER_A);
    std::fs::write(sshd.root.join("inbox").join("beslut-1.xml.part"), &full).expect("complete");
    std::fs::rename(sshd.root.join("inbox").join("beslut-1.xml.part"), sshd.root.join("inbox").join("beslut-1.xml"))
        .expect("rename");
    wait_for_file(&sshd, "archive", "the completed file is archived", |f| f.ends_with("-beslut-1.xml")).await;

    // The same file twice is processed once: the second is a repeat, archived, receipted so.
    sshd.drop_file("beslut-2.xml", &decision_file("PC-2", &pnrs[401], PROVIDER_A)).expect("drop a file");
    eventually("the repeat is archived", || async {
        (sshd.files("archive").iter().filter(|f| f.ends_with("-beslut-2.xml")).count() == 2).then_some(())
    })
    .await;
    let (_, orders) = hub.get("/v1/orders", Some(&hub.admin())).await;
    assert_eq!(orders["orders"].as_array().map(Vec::len), Some(2), "PC-1 and PC-2, once each");
    let repeat = eventually("a receipt says 'Redan mottaget'", || async {
        sshd.files("outbox").into_iter().find(|f| {
            f.starts_with("kvitto-")
                && std::fs::read(sshd.root.join("outbox").join(f))
                    .map(|b| String::from_utf8_lossy(&b).contains("<Status>Redan mottaget</Status>"))
                    .unwrap_or(false)
        })
    })
    .await;
    assert!(repeat.contains("beslut-2.xml"));

    // The server restarts between polls: the hub's kept connection dies, and the next poll
    // reconnects and carries on.
    sshd.restart().expect("restart sshd");
    sshd.drop_file("beslut-3.xml", &decision_file("PC-3", &pnrs[402], PROVIDER_A)).expect("drop a file");
    wait_for_file(&sshd, "archive", "a file after the restart is archived", |f| f.ends_with("-beslut-3.xml")).await;
    // ...and while it is down, files wait. (Its receipt delivered first: then only the
    // poller connects to the server's port while it is down.)
    let admin = hub.admin();
    eventually("nothing waits in the outbox", || async {
        let (_, pending) = hub.get("/v1/deliveries?state=pending", Some(&admin)).await;
        pending["deliveries"].as_array().is_some_and(Vec::is_empty).then_some(())
    })
    .await;
    sshd.stop();
    sshd.drop_file("beslut-4.xml", &decision_file("PC-4", &pnrs[403], PROVIDER_A)).expect("drop a file");
    // Something that is not an SSH server answers on the server's port: the poller's second
    // knock there means its first poll since has ended, without a server.
    let mut door = Doorman::open(sshd.port, None);
    door.wait_for_connections(2, "the poller tries the stopped server twice").await;
    assert_eq!(sshd.files("inbox"), vec!["beslut-4.xml".to_owned()]);
    door.close();
    sshd.restart().expect("restart sshd");
    wait_for_file(&sshd, "archive", "the waiting file is archived", |f| f.ends_with("-beslut-4.xml")).await;
    hub.wait_for_order_status(&hub.order_of("procapita:PC-4").await, "delivered").await;
}

#[tokio::test]
async fn a_wrong_host_key_is_refused() {
    let sshd = Sshd::start();
    let phoniro = MockServer::start().await;
    let wrong = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    // The hub reaches the server through a door that counts its connections: each poll
    // connects anew, since none gets past the host key.
    let door = Doorman::open(0, Some(sshd.port));
    let keys = sshd.system_keys(wrong).replace(&format!("port = {}\n", sshd.port), &format!("port = {}\n", door.port));
    let options = Options { procapita: Some(keys), ..Options::default() };
    let hub = TestHub::start_with(&phoniro.uri(), &phoniro.uri(), options).await;
    sshd.drop_file("beslut-9.xml", &decision_file("PC-9", "193601016987", PROVIDER_A)).expect("drop a file");
    // A poll reads the folder only after its connection is made: the next connection's
    // poll could read the file, and once the one after it is made, that poll has ended. (A
    // poll that got in would keep its connection: the file leaving the inbox ends the wait.)
    let knocks = door.connections();
    eventually("two more polls connect", || async {
        (door.connections() >= knocks + 2 || sshd.files("inbox") != ["beslut-9.xml"]).then_some(())
    })
    .await;
    assert_eq!(
        sshd.files("inbox"),
        vec!["beslut-9.xml".to_owned()],
        "nothing is read from a server that is not the one configured"
    );
    let out = carehub(&["check", "--config", hub.config_path.to_str().expect("path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    let line = stdout.lines().find(|l| l.starts_with("system procapita")).expect("a line for procapita").to_owned();
    assert!(line.contains("FAILED: permanent: the server's host key is SHA256:"), "{line}");
    assert!(line.contains(&format!("not the configured {wrong}")), "{line}");

    // The right host key but a key the server does not know: the login is refused, clearly.
    let stranger = hub.dir.path().join("stranger.toml");
    let text = std::fs::read_to_string(&hub.config_path).expect("config").replace(wrong, &sshd.host_key_sha256);
    let text =
        text.replace(&sshd.client_key.display().to_string(), &sshd.dir.path().join("host_key").display().to_string());
    std::fs::write(&stranger, text).expect("write");
    let out = carehub(&["check", "--config", stranger.to_str().expect("path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("system procapita")).expect("a line for procapita").to_owned();
    assert!(line.contains("FAILED: permanent: login as ") && line.contains("refused"), "{line}");

    // With the right key, check says so.
    let good = hub.dir.path().join("good.toml");
    std::fs::write(
        &good,
        std::fs::read_to_string(&hub.config_path).expect("config").replace(wrong, &sshd.host_key_sha256),
    )
    .expect("write");
    let out = carehub(&["check", "--config", good.to_str().expect("path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("system procapita (procapita): reachable at 127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("host key matches"), "{stdout}");
}
