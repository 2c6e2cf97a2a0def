//! Several nodes on one database (SPEC §11): an SFTP inbox is polled by one node at a time,
//! the one holding its lease, and taken over by another when that node dies, which then
//! takes the next file. Two hubs in this process play the nodes, on one database (a SQLite
//! file, or with `CAREHUB_TEST_DATABASE=postgres` one PostgreSQL database) and one clock the
//! test moves, rather than waiting for a lease to run out.

use chrono::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::sshd::{LocalSshd, Sshd};
use crate::support::*;

const INBOX: &str = "inbox:procapita";

async fn archived(sshd: &LocalSshd, name: &str) {
    eventually(&format!("{name} is archived"), || async {
        sshd.files("archive").into_iter().any(|f| f.ends_with(name)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_dead_nodes_inbox_is_taken_over_after_its_lease_and_the_next_file_taken() {
    let sshd = Sshd::start();
    let phoniro = MockServer::start().await;
    Mock::given(method("POST")).and(path("/api/orders")).respond_with(ResponseTemplate::new(201)).mount(&phoniro).await;
    // A lease far longer than the test: only moving the clock past it lets another node in.
    let options = Options {
        procapita: Some(sshd.system_keys(&sshd.host_key_sha256)),
        hub_extra: "poller_heartbeat_ms = 100\npoller_lease_ttl_ms = 600000".into(),
        node: "a".into(),
        ..Options::default()
    };
    let mut a = TestHub::start_with(&phoniro.uri(), &phoniro.uri(), options).await;
    eventually("node a holds the inbox", || async {
        poller_held(&a.http, &a.url, "a", INBOX).await.filter(|held| *held)
    })
    .await;
    let b = a.another_node("b").await;
    let pnrs = test_pnrs();

    // While a lives, a polls: the first file is taken.
    sshd.drop_file("beslut-1.xml", &decision_file("PC-NODE-1", &pnrs[20], PROVIDER_A)).expect("drop a file");
    archived(&sshd, "beslut-1.xml").await;
    assert_eq!(poller_held(&reqwest::Client::new(), &b.url(), "b", INBOX).await, Some(false), "one node at a time");

    // a dies where it stands: no lease given up. Once its lease has run out by the hub's
    // clock, b's next heartbeat takes the inbox over, and b takes the next file.
    a.hub.take().expect("a runs").abort();
    a.clock.advance(Duration::seconds(601));
    eventually("node b takes the inbox over", || async {
        poller_held(&reqwest::Client::new(), &b.url(), "b", INBOX).await.filter(|held| *held)
    })
    .await;
    sshd.drop_file("beslut-2.xml", &decision_file("PC-NODE-2", &pnrs[21], PROVIDER_A)).expect("drop a file");
    archived(&sshd, "beslut-2.xml").await;
    let admin = a.admin();
    let http = reqwest::Client::new();
    // Node b made the order: asked for the decision's orders, it names one.
    let orders = orders_of_decision(&http, &b.url(), &admin, "procapita:PC-NODE-2").await;
    assert_eq!(orders.len(), 1, "{orders:?}");
    assert!(sshd.files("inbox").is_empty(), "{:?}", sshd.files("inbox"));
    b.stop().await;
}

#[tokio::test]
async fn a_stopped_node_gives_its_inbox_up_at_once() {
    let sshd = Sshd::start();
    let phoniro = MockServer::start().await;
    let options = Options {
        procapita: Some(sshd.system_keys(&sshd.host_key_sha256)),
        hub_extra: "poller_heartbeat_ms = 100\npoller_lease_ttl_ms = 600000".into(),
        node: "a".into(),
        ..Options::default()
    };
    let mut a = TestHub::start_with(&phoniro.uri(), &phoniro.uri(), options).await;
    eventually("node a holds the inbox", || async {
        poller_held(&a.http, &a.url, "a", INBOX).await.filter(|held| *held)
    })
    .await;
    let b = a.another_node("b").await;
    // A clean stop gives the lease up: b takes the inbox with the clock where it stands, long
    // before a's lease would have run out.
    a.stop().await;
    eventually("node b takes the inbox", || async {
        poller_held(&reqwest::Client::new(), &b.url(), "b", INBOX).await.filter(|held| *held)
    })
    .await;
    let pnrs = test_pnrs();
    sshd.drop_file("beslut-3.xml", &decision_file("PC-NODE-3", &pnrs[22], PROVIDER_A)).expect("drop a file");
    archived(&sshd, "beslut-3.xml").await;
    b.stop().await;
}
